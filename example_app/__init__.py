"""A chat page whose answers survive reloads and network drops (see app.py)."""
