"""Run an ASGI app factory under uvicorn exactly as ``paytabs-guard serve`` does, for ``bench
load``: the service (``serve.SERVICE_APP``) and the bare ceiling (``load_bare:create_app``) go
through the same function (``serve.run_uvicorn``), so they differ only in the app.

``python -m paytabs_guard.entrypoints.bench.load_server --app MODULE:FACTORY --port P
--workers N``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from paytabs_guard.entrypoints.serve import run_uvicorn

BARE_APP = "paytabs_guard.entrypoints.bench.load_bare:create_app"


def run(app: str, host: str, port: int, workers: int) -> None:
    run_uvicorn(app, host, port, workers)


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
