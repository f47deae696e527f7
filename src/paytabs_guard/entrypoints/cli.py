"""``paytabs-guard``: one command for the service, the simulator, the demo and the benchmarks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from paytabs_guard.entrypoints.arguments import int_in

# settings.MAX_STUCK_AFTER_SECONDS (30 days); settings is imported only by the commands that
# read it, so a simulator-only install runs this CLI.
MAX_STUCK_AFTER_SECONDS = 2_592_000
# A pass's two lists are read into memory, and a number past a 64-bit integer ended in an
# OverflowError traceback out of the SQLite driver (an "out of int64 range" on PostgreSQL).
MAX_RECONCILE_LIMIT = 1_000_000

if TYPE_CHECKING:
    from paytabs_guard.settings import Settings

# Settings (pydantic-settings, the service extra) are imported by the commands that read them:
# `paytabs-guard simulator` needs only the simulator extra.

EXIT_CONFIG = 2


_port = int_in(0, 65535, name="port")


def _settings() -> Settings:
    from paytabs_guard.settings import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as error:
        from paytabs_guard.entrypoints.config_report import print_config_problems

        print_config_problems(error.problems)
        raise SystemExit(EXIT_CONFIG) from None


def _cmd_config(args: argparse.Namespace) -> int:
    if args.action == "table":
        from paytabs_guard.entrypoints.config_table import config_table

        print(config_table())
        return 0
    from paytabs_guard.entrypoints.serve import serve_problems, serve_warnings

    settings = _settings()
    if problems := serve_problems(settings):
        from paytabs_guard.entrypoints.config_report import print_config_problems

        print_config_problems(problems)
        return EXIT_CONFIG
    for warning in serve_warnings(settings):
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"configuration OK: region {settings.paytabs_region.value}, "
        f"database {settings.database_url.split('://', 1)[0]}, "
        f"redis {'on' if settings.redis_url else 'off'}"
    )
    return 0


def _cmd_simulator(args: argparse.Namespace) -> int:
    from paytabs_simulator.__main__ import main as simulator_main

    simulator_main(args.rest, prog="paytabs-guard simulator")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from paytabs_guard.entrypoints.demo import run_demo

    return run_demo(settings=_settings(), port=args.port, wait=not args.no_wait)


def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        return _run_bench(args)
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("paytabs_guard.entrypoints."):
            raise
        # The benchmarks are not in the wheel (they drive the whole repository: the service,
        # the simulator, PostgreSQL, their own tests and docs).
        print(
            "paytabs-guard bench: the benchmarks run from a checkout of the repository "
            "(scripts/run, or .venv/bin/paytabs-guard bench ...); an installed package "
            "does not carry them",
            file=sys.stderr,
        )
        return 2


def _run_bench(args: argparse.Namespace) -> int:
    if args.which == "breaker":
        from paytabs_guard.entrypoints.bench.breaker import main as bench_breaker

        return bench_breaker(args.rest)
    if args.which == "load":
        from paytabs_guard.entrypoints.bench.load import main as bench_load

        return bench_load(args.rest)
    if args.which == "chaos":
        from paytabs_guard.entrypoints.chaos import main as bench_chaos

        return bench_chaos(args.rest)
    raise AssertionError(args.which)


def _cmd_serve(args: argparse.Namespace) -> int:
    from paytabs_guard.entrypoints.serve import ServeOptions, run

    return run(
        ServeOptions(
            host=args.host,
            port=args.port,
            workers=args.workers,
            simulator=args.simulator,
            simulator_port=args.simulator_port,
        )
    )


def _cmd_db(_args: argparse.Namespace) -> int:
    from paytabs_guard.entrypoints.serve import upgraded_database

    settings = _settings()
    # An operator's first command on a new host: say which database and why, in a line.
    if (unusable := upgraded_database(settings)) is not None:
        print(f"paytabs-guard db upgrade: {unusable}", file=sys.stderr)
        return 1
    print(f"database at the newest schema ({settings.database_url.split('://', 1)[0]})")
    return 0


def _cmd_reconcile(args: argparse.Namespace) -> int:
    from paytabs_guard.entrypoints.reconcile import run_reconcile

    return run_reconcile(_settings(), limit=args.limit, stuck_after_seconds=args.stuck_after)


def _cmd_openapi(args: argparse.Namespace) -> int:
    from pathlib import Path

    from paytabs_guard.entrypoints.api.app import openapi_document
    from paytabs_guard.entrypoints.api.reference import render_json, render_markdown

    document = openapi_document()
    if args.json is None and args.markdown is None:
        sys.stdout.write(render_json(document))
    outputs = [(args.json, render_json), (args.markdown, render_markdown)]
    for path, render in outputs:
        if path is None:
            continue
        try:
            Path(path).write_text(render(document), encoding="utf-8")
        except OSError as error:
            print(f"paytabs-guard openapi: cannot write {path}: {error.strerror}", file=sys.stderr)
            return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paytabs-guard", description="Resilient, secure PayTabs payments."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    config = commands.add_parser("config", help="check the configuration or print its table")
    config.add_argument("action", choices=["check", "table"])
    config.set_defaults(handler=_cmd_config)

    # The simulator and the benchmarks own their options: main() hands them everything after
    # their name untouched. These entries only list them in --help.
    simulator = commands.add_parser(
        "simulator",
        help="run the PayTabs simulator (options: paytabs-guard simulator --help)",
        add_help=False,
    )
    simulator.set_defaults(handler=_cmd_simulator)

    demo = commands.add_parser(
        "demo",
        help="the service and the simulator on embedded defaults, a scripted story, then serve",
    )
    demo.add_argument("--port", type=_port, default=8000, help="service port (another if busy)")
    demo.add_argument(
        "--no-wait", action="store_true", help="stop after the story instead of serving on"
    )
    demo.set_defaults(handler=_cmd_demo)

    serve = commands.add_parser("serve", help="run the payments v2 HTTP service (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=8000, help="port to listen on")
    serve.add_argument("--workers", type=int_in(1), default=1, help="worker processes")
    serve.add_argument(
        "--simulator",
        action="store_true",
        help="also start the PayTabs simulator and point the service at it",
    )
    serve.add_argument(
        "--simulator-port", type=_port, default=0, help="simulator port (default: any free port)"
    )
    serve.set_defaults(handler=_cmd_serve)

    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"], help="migrate to the newest schema")
    db.set_defaults(handler=_cmd_db)

    reconcile = commands.add_parser(
        "reconcile", help="one reconciliation pass over stuck payments (prints a JSON report)"
    )
    reconcile.add_argument(
        "--limit", type=int_in(1, MAX_RECONCILE_LIMIT), default=500, help="payments to look at"
    )
    reconcile.add_argument(
        "--stuck-after",
        type=int_in(0, MAX_STUCK_AFTER_SECONDS),
        default=None,
        help="seconds without change before a payment is asked about "
        "(default RECONCILE_STUCK_AFTER_SECONDS)",
    )
    reconcile.set_defaults(handler=_cmd_reconcile)

    openapi = commands.add_parser("openapi", help="print or write the OpenAPI document")
    openapi.add_argument("--json", metavar="PATH", help="write the JSON document here")
    openapi.add_argument("--markdown", metavar="PATH", help="write the Markdown reference here")
    openapi.set_defaults(handler=_cmd_openapi)

    bench = commands.add_parser(
        "bench", help="benchmarks that print numbers (options: paytabs-guard bench NAME --help)"
    )
    bench.add_argument("which", choices=BENCHMARKS)
    bench.set_defaults(handler=_cmd_bench)
    return parser


BENCHMARKS = ("breaker", "load", "chaos")


def _delegated(argv: Sequence[str]) -> argparse.Namespace | None:
    """The command line of a command that parses its own options, or None.

    argparse cannot pass options through a subcommand reliably (``REMAINDER`` drops a leading
    ``--port`` into the parent's unknowns, and ``parse_known_args`` reorders them), so these
    commands get everything after their name exactly as typed.
    """
    if argv[:1] == ["simulator"]:
        return argparse.Namespace(command="simulator", handler=_cmd_simulator, rest=argv[1:])
    if len(argv) >= 2 and argv[0] == "bench" and argv[1] in BENCHMARKS:
        return argparse.Namespace(command="bench", handler=_cmd_bench, which=argv[1], rest=argv[2:])
    return None


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    args = _delegated(words) or build_parser().parse_args(words)
    try:
        result: int = args.handler(args)
    except Exception as error:
        # A rule only a command checks (reconcile needs the PayTabs credentials) is reported
        # like one load_settings() found: a line per problem, exit 2, no traceback. Only a
        # command that imported the settings can raise their ConfigError.
        settings = sys.modules.get("paytabs_guard.settings")
        if settings is None or not isinstance(error, settings.ConfigError):
            raise
        from paytabs_guard.entrypoints.config_report import print_config_problems

        print_config_problems(error.problems)
        return EXIT_CONFIG
    return result


if __name__ == "__main__":
    raise SystemExit(main())
