"""Run an ASGI app factory under uvicorn with the settings of ``paytabs-guard serve``, for
``bench load``: the service (``paytabs_guard.entrypoints.api.main:service``) and the bare
ceiling (``load_bare:create_app``) go through this same function, so they differ only in the
app.

One deliberate difference from ``uvicorn.run(..., workers=N)``: with several workers uvicorn
binds the shared listening socket as ``socket.socket(family)``, whose ``proto`` is 0. asyncio
turns on ``TCP_NODELAY`` only for accepted sockets whose ``proto`` is ``IPPROTO_TCP``, so every
worker's connections keep Nagle's algorithm, and a response written in two pieces (headers,
then body) waits for the client's delayed ACK: about 40 ms per keep-alive request. Here the
socket is made with ``IPPROTO_TCP`` and handed to uvicorn's own ``Multiprocess`` supervisor,
exactly as ``uvicorn.run`` does after binding.

``python -m paytabs_guard.entrypoints.bench.load_server --app MODULE:FACTORY --port P
--workers N``.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Sequence

import uvicorn
from uvicorn.supervisors import Multiprocess

from paytabs_guard.entrypoints.serve import GRACEFUL_SHUTDOWN_SECONDS

SERVICE_APP = "paytabs_guard.entrypoints.api.main:service"
BARE_APP = "paytabs_guard.entrypoints.bench.load_bare:create_app"


def tcp_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose ``proto`` says TCP, inheritable by worker processes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def config(app: str, host: str, port: int, workers: int) -> uvicorn.Config:
    """The keyword arguments ``serve.run`` gives ``uvicorn.run``."""
    return uvicorn.Config(
        app,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=False,
        forwarded_allow_ips=None,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def run(app: str, host: str, port: int, workers: int) -> None:
    settings = config(app, host, port, workers)
    if workers > 1:
        Multiprocess(settings, sockets=[tcp_listener(host, port)]).run()
    else:
        uvicorn.Server(settings).run()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="load_server")
    parser.add_argument("--app", required=True, help="module:factory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    run(args.app, args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
