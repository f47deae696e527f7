"""The ``paytabs-guard`` command's entry point: a clear word when an extra is missing.

The core distribution is the library; the command line drives the service and the simulator,
which are extras (the benchmarks run from a checkout of the repository). Without them, say
which extra to install instead of a traceback.
"""

from __future__ import annotations

import sys


def main() -> int:
    # The exit code: 2 for a configuration error, a busy port, bad options, a missing extra.
    # Each command imports what it needs when it runs (`simulator` needs only the simulator
    # extra), so a missing extra shows up then, not at start.
    try:
        from paytabs_guard.entrypoints.cli import main as cli_main

        return cli_main()
    except ModuleNotFoundError as error:
        missing = error.name or "a dependency"
        if missing.startswith("paytabs_guard"):
            raise  # our own module: a bug or a broken install, not a missing extra
        extra = "simulator" if sys.argv[1:2] == ["simulator"] else "service"
        print(
            f"paytabs-guard: this command needs the {extra} extra ({missing} is not "
            f"installed): pip install 'paytabs-guard[{extra}]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
