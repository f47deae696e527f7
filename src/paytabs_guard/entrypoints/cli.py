"""``paytabs-guard``: one command for the service, the simulator, the demo and the benchmarks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from paytabs_guard.settings import ConfigError, Settings, load_settings

EXIT_CONFIG = 2


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as error:
        for problem in error.problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _cmd_config(args: argparse.Namespace) -> int:
    if args.action == "table":
        from paytabs_guard.entrypoints.config_table import config_table

        print(config_table())
        return 0
    settings = _settings()
    print(
        f"configuration OK: region {settings.paytabs_region.value}, "
        f"database {settings.database_url.split('://', 1)[0]}, "
        f"redis {'on' if settings.redis_url else 'off'}"
    )
    return 0


def _cmd_simulator(args: argparse.Namespace) -> int:
    from paytabs_guard.entrypoints.simulator import run_simulator_command

    return run_simulator_command(host=args.host, port=args.port, seed=args.seed)


def _cmd_demo(_args: argparse.Namespace) -> int:
    from paytabs_guard.entrypoints.demo import run_demo

    return run_demo(settings=_settings())


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.which == "breaker":
        from paytabs_guard.resilience.bench import main as bench_breaker

        return bench_breaker(args.rest)
    raise AssertionError(args.which)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paytabs-guard", description="Resilient, secure PayTabs payments."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    config = commands.add_parser("config", help="check the configuration or print its table")
    config.add_argument("action", choices=["check", "table"])
    config.set_defaults(handler=_cmd_config)

    simulator = commands.add_parser("simulator", help="run the PayTabs simulator")
    simulator.add_argument("--host", default="127.0.0.1")
    simulator.add_argument("--port", type=int, default=8090)
    simulator.add_argument("--seed", type=int, default=None)
    simulator.set_defaults(handler=_cmd_simulator)

    demo = commands.add_parser(
        "demo", help="start the simulator and run one payment round trip through the client"
    )
    demo.set_defaults(handler=_cmd_demo)

    bench = commands.add_parser("bench", help="benchmarks that print numbers")
    bench.add_argument("which", choices=["breaker"])
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="options of that benchmark")
    bench.set_defaults(handler=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
