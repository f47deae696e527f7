"""The ``paytabs-guard`` command's entry point: a clear word when an extra is missing.

The core distribution is the library; the command line drives the service, the simulator and
the benchmarks, which are extras. Without them, say which extra to install instead of a
traceback.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from paytabs_guard.entrypoints.cli import main as cli_main
    except ModuleNotFoundError as error:
        missing = error.name or "a dependency"
        print(
            f"paytabs-guard: the command line needs the service extra ({missing} is not "
            "installed): pip install 'paytabs-guard[service,simulator]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    return cli_main()  # the exit code: 2 for a configuration error, a busy port, bad options
