"""The PayTabs simulator as ``bench load`` runs it: one process, no access log.

``python -m paytabs_simulator`` logs every request at info level; under load that would bill
the simulator's logging to the numbers. Faults stay off; callbacks are not involved (the load
generator sends the service signed callbacks itself).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from paytabs_simulator.app import create_app
from paytabs_simulator.config import SimulatorConfig


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="load_simulator")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    config = SimulatorConfig(seed=1)
    uvicorn.run(
        create_app(config),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
