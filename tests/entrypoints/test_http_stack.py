"""serve, the service and the benchmark's bare endpoint run on uvloop and httptools when present."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from paytabs_guard.entrypoints.http_head_limit import BoundedHttpToolsProtocol
from paytabs_guard.entrypoints.serve import http_stack, uvicorn_config


def test_uvicorn_picks_uvloop_and_httptools() -> None:
    config = uvicorn_config("paytabs_guard.entrypoints.api.app:create_service", "127.0.0.1", 0, 1)
    assert config.loop == "auto"
    # httptools, with the head bounded (test_http_head_limit.py)
    assert config.http is BoundedHttpToolsProtocol
    assert issubclass(BoundedHttpToolsProtocol, HttpToolsProtocol)
    assert http_stack() == "uvloop + httptools"
    assert AutoHTTPProtocol is HttpToolsProtocol
    factory = config.get_loop_factory()
    assert factory is not None
    loop = factory()  # what uvicorn.Server.run starts the server on
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()
    assert not isinstance(loop, asyncio.BaseEventLoop)
