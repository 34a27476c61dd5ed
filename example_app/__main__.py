"""``python -m example_app``: serve the example on http://127.0.0.1:8000."""

import os

import uvicorn

if __name__ == "__main__":
    uvicorn.run("example_app.app:app", host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
