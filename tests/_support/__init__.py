"""Helpers shared by the test modules: real servers, proxies, stores and the app the processes run.

Each helper lives here once; test modules import them (``from _support.asgi import serve``). The SSE
parser is the package's own (``litestar_resumable.testing``), which app authors use too.
"""
