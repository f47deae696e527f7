"""`python -m paytabs_simulator`: run a simulator from the command line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from pydantic import ValidationError

from paytabs_simulator.config import SimulatorConfig
from paytabs_simulator.faults import Faults
from paytabs_simulator.server import DEFAULT_PORT, serve


def _port(text: str) -> int:
    """A TCP port: a bad one is a usage error, not uvicorn's "Servname not supported"."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {port}")
    return port


def _problems(error: ValidationError) -> str:
    """Pydantic's errors as one line: ``error_rate: Input should be ...; ...``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'faults'}: {item['msg']}"
        for item in error.errors()
    )


def parse_args(
    argv: Sequence[str] | None = None, prog: str = "python -m paytabs_simulator"
) -> tuple[SimulatorConfig, str, int, str]:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A PayTabs PT2 simulator. SIMULATOR_* variables set the defaults.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT)
    parser.add_argument("--seed", type=int, help="make ids, codes and faults reproducible")
    parser.add_argument("--public-base-url", help="what redirect_url points at")
    parser.add_argument("--faults", help="fault settings as JSON, e.g. '{\"error_rate\": 0.1}'")
    parser.add_argument("--error-rate", type=float)
    parser.add_argument("--error-phase", choices=["before", "after", "mixed"])
    parser.add_argument("--latency-ms", type=float)
    parser.add_argument("--hang-rate", type=float)
    parser.add_argument("--reset-rate", type=float)
    parser.add_argument("--down", action="store_true", help="start with the gateway down")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="uvicorn's log level; below info the access log is off too",
    )
    args = parser.parse_args(argv)

    # Bad SIMULATOR_* values, --faults JSON or fault values are usage errors: one line, exit 2.
    try:
        config = SimulatorConfig.from_env()
    except ValueError as error:
        parser.error(str(error))
    if args.seed is not None:
        config.seed = args.seed
    if args.public_base_url:
        config.public_base_url = args.public_base_url.rstrip("/")
    settings = config.faults.model_dump()
    if args.faults:
        try:
            given = json.loads(args.faults)
        except ValueError as error:
            parser.error(f"--faults is not JSON: {error}")
        if not isinstance(given, dict):
            parser.error("--faults must be a JSON object, e.g. '{\"error_rate\": 0.1}'")
        settings |= given
    flags = {
        "error_rate": args.error_rate,
        "error_phase": args.error_phase,
        "latency_ms": args.latency_ms,
        "hang_rate": args.hang_rate,
        "reset_rate": args.reset_rate,
        "down": args.down or None,
    }
    settings |= {key: value for key, value in flags.items() if value is not None}
    try:
        config.faults = Faults.model_validate(settings)
    except ValidationError as error:
        parser.error(f"invalid faults: {_problems(error)}")
    return config, args.host, args.port, args.log_level


def main(argv: Sequence[str] | None = None, prog: str = "python -m paytabs_simulator") -> None:
    config, host, port, log_level = parse_args(argv, prog)
    serve(config, host, port, log_level=log_level)


if __name__ == "__main__":
    main()
