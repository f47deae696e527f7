"""``paytabs-guard serve``: the payments service under uvicorn, optionally with a simulator.

uvicorn runs with ``proxy_headers=False`` (the app resolves client addresses itself, trusting
only TRUSTED_PROXIES) and a graceful shutdown: on SIGTERM it stops accepting, finishes the
in-flight requests, then the lifespan stops the relay after its batch and closes the pools.

``--simulator`` starts the PayTabs simulator as a child process on loopback and points
PAYTABS_BASE_URL and the credentials at it (its documented test profile), and PUBLIC_BASE_URL
at this service so the simulator's callbacks and returns reach it. PAYTABS_WEBHOOK_SECRET keeps
its ``whsec_`` secrets after the simulator's key (:func:`simulator_webhook_secret`). The child
ends with us.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib.util
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import uvicorn
from uvicorn.supervisors import Multiprocess

from paytabs_guard.entrypoints.config_report import misspelt_settings, print_config_problems
from paytabs_guard.entrypoints.public_url import public_url_warning
from paytabs_guard.entrypoints.simulator_mode import (
    replaced_settings,
    simulator_environment,
    simulator_process,
    simulator_webhook_secret,
)
from paytabs_guard.metrics import SHARED_DIR_VARIABLE
from paytabs_guard.observability import configure_logging
from paytabs_guard.settings import ConfigError, Settings, load_settings

GRACEFUL_SHUTDOWN_SECONDS: Final = 20


@dataclass(frozen=True, slots=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    simulator: bool = False
    simulator_port: int = 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def public_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - display only
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def banner(
    service_url: str,
    simulator_url: str | None,
    demo_key: str | None = None,
    warnings: Sequence[str] = (),
    *,
    demo_admin_key: str | None = None,
) -> str:
    """What ``serve`` prints on start. ``demo_key`` and ``demo_admin_key`` are keys ``serve``
    generated itself (with ``--simulator`` and no API_KEYS or ADMIN_API_KEYS): only those may
    be shown. Keys from the environment are secrets that belong to the operator and never
    reach a terminal or a log collector from here."""
    key = demo_key or "<a key from API_KEYS>"
    lines = [
        f"paytabs-guard is serving on {service_url}",
        f"  API docs      {service_url}/docs   (OpenAPI: {service_url}/openapi.json)",
        f"  health        {service_url}/payments/v2/health   {service_url}/readyz   "
        f"{service_url}/health/paytabs",
        f"  metrics       {service_url}/metrics",
    ]
    if simulator_url:
        lines.append(f"  simulator     {simulator_url}   (test cards: docs/simulator.md)")
    if demo_key:
        lines.append(f"  demo API key  {demo_key}   (generated for this run)")
    else:
        lines.append("  API key       one of API_KEYS, from your environment or .env (not shown)")
    if demo_admin_key:
        lines.append(
            f"  console       {service_url}/console   "
            f"(sign in with {demo_admin_key}, generated for this run)"
        )
    else:
        lines.append(f"  console       {service_url}/console   (an admin key: ADMIN_API_KEYS)")
    lines += [
        "create a payment:",
        *create_curl(service_url, key, indent="  "),
        "then open its redirect_url, pay with 4111 1111 1111 1111, and GET "
        f"{service_url}/payments/v2/<id>",
    ]
    lines += [f"warning: {warning}" for warning in warnings]
    return "\n".join(lines)


CREATE_BODY: Final = '{"amount": "12.50", "currency": "SAR", "description": "Order 1001"}'


def create_curl(service_url: str, key: str, *, indent: str = "") -> list[str]:
    """A create with curl, one option per line (each under 76 characters besides the URL and
    the key, so it survives an 80-column terminal or panel), with a fresh Idempotency-Key from
    python3, which every machine running this has (uuidgen is not on a fresh Debian)."""
    more = indent + "  "
    return [
        f"{indent}curl -s -X POST {service_url}/payments/v2/create \\",
        f"{more}-H 'Authorization: Bearer {key}' \\",
        f"{more}-H \"Idempotency-Key: $(python3 -c 'import uuid;print(uuid.uuid4())')\" \\",
        f"{more}-H 'Content-Type: application/json' \\",
        f"{more}-d '{CREATE_BODY}'",
    ]


def serve_problems(settings: Settings) -> list[str]:
    """What ``serve`` cannot start without, one line per variable (empty: it can start).

    ``paytabs-guard config check`` runs the same checks, so "configuration OK" means ``serve``
    will not refuse the configuration."""
    from paytabs_guard.adapters.webhooks import standard

    problems: list[str] = []
    try:
        settings.require_paytabs_credentials()
    except ConfigError as error:
        problems += error.problems
    named = {
        "PAYTABS_WEBHOOK_SECRET": [
            s for s in settings.webhook_secrets
            if s.get_secret_value().startswith(standard.SECRET_PREFIX)
        ],
        "EVENTS_WEBHOOK_SECRET": list(settings.events_webhook_secret),
    }  # fmt: skip
    for variable, secrets_ in named.items():
        for secret in secrets_:
            try:
                standard.decode_secret(secret)
            except standard.InvalidWebhookSecret as error:
                problems.append(f"{variable}: {error}")
    return problems


WEAK_KEY_CHARACTERS: Final = 20


def serve_warnings(settings: Settings) -> list[str]:
    """What ``serve`` starts with but probably should not."""
    unreachable = public_url_warning(settings)
    unknown = misspelt_settings()
    return [*([unreachable] if unreachable else []), *_key_warnings(settings), *unknown]


def _key_warnings(settings: Settings) -> list[str]:
    if not settings.api_keys and not settings.admin_api_keys:
        return ["API_KEYS: unset; every merchant API call will get 401"]
    warnings = []
    for name, keys in (
        ("API_KEYS", settings.api_keys),
        ("ADMIN_API_KEYS", settings.admin_api_keys),
    ):
        # Named by position, never shown: a warning line is not a place for a key.
        short = [
            str(n)
            for n, key in enumerate(keys, 1)
            if len(key.get_secret_value()) < WEAK_KEY_CHARACTERS
        ]
        if short:
            warnings.append(
                f"{name}: key {', '.join(short)} of {len(keys)} is shorter than "
                f"{WEAK_KEY_CHARACTERS} characters and can be guessed; use random keys "
                "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
    merchant = {key.get_secret_value() for key in settings.api_keys}
    admin = {key.get_secret_value() for key in settings.admin_api_keys}
    server_key = settings.paytabs_server_key
    if server_key is not None and server_key.get_secret_value() in merchant | admin:
        warnings.append(
            "API_KEYS/ADMIN_API_KEYS: a key is the PayTabs server key; whoever holds it can "
            "sign callbacks as PayTabs: use keys of their own"
        )
    if merchant & admin:
        warnings.append(
            "API_KEYS: a key is in ADMIN_API_KEYS too; it has the admin scope everywhere"
        )
    return warnings


def listen(host: str, port: int) -> socket.socket | None:
    """The service's listening socket, bound before anything else happens (no simulator, no
    key, no banner for a port we cannot have); None after one clear line on stderr."""
    try:
        sock = tcp_listener(host, port)
        sock.listen(2048)  # uvicorn's backlog; listening now makes a second `serve` fail here
    except OSError as error:
        print(f"paytabs-guard serve: {host} port {port} {_why(error, '--port')}", file=sys.stderr)
        return None
    return sock


def simulator_port_problem(port: int) -> str | None:
    """Why the simulator child cannot have loopback ``port``, or None. Asked before it starts:
    the child fails to bind a busy port, and whatever answered there (another simulator, any
    server saying 200) was taken for it; anything else ended in a RuntimeError traceback."""
    try:
        tcp_listener("127.0.0.1", port).close()
    except OSError as error:
        return f"the simulator's 127.0.0.1 port {port} {_why(error, '--simulator-port')}"
    return None


def _why(error: OSError, option: str) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"is already in use; stop what listens there or choose another with {option}"
    return f"cannot be bound: {error.strerror or error}"


def run(options: ServeOptions) -> int:
    """Serve until interrupted; returns the exit code."""
    service_url = public_url(options.host, options.port)
    listener = listen(options.host, options.port)
    if listener is None:
        return 2
    with listener, contextlib.ExitStack() as stack:
        simulator_url = None
        demo_key = demo_admin_key = None
        warnings: list[str] = []
        if options.simulator:
            port = options.simulator_port or free_port()
            if (problem := simulator_port_problem(port)) is not None:
                print(f"paytabs-guard serve: {problem}", file=sys.stderr)
                return 2
            try:
                simulator_url = stack.enter_context(simulator_process(port))
            except RuntimeError as error:  # it exited, or did not answer in time
                print(f"paytabs-guard serve: {error}", file=sys.stderr)
                return 1
            changes = simulator_environment(os.environ, simulator_url, service_url)
            demo_key = changes.get("API_KEYS")  # generated here, not the operator's
            demo_admin_key = changes.get("ADMIN_API_KEYS")
            warnings = replaced_settings(os.environ, changes)
            os.environ.update(changes)
        try:
            settings = load_settings()
            if options.simulator:
                # The workers read the environment: the kept secrets must be in it.
                secret, dropped = simulator_webhook_secret(settings.paytabs_webhook_secret)
                warnings = [*warnings, *dropped]
                os.environ["PAYTABS_WEBHOOK_SECRET"] = secret
                settings = load_settings()
            if problems := serve_problems(settings):
                raise ConfigError(problems)
            warnings = [*warnings, *serve_warnings(settings)]
        except ConfigError as error:
            print_config_problems(error.problems)
            return 2
        configure_logging(settings.log_level, secrets=secret_values(settings))
        if (unusable := upgraded_database(settings)) is not None:
            print(f"paytabs-guard serve: {unusable}", file=sys.stderr)
            return 1
        text = banner(service_url, simulator_url, demo_key, warnings, demo_admin_key=demo_admin_key)
        print(text, flush=True)
        # uvicorn re-raises SIGTERM after its graceful shutdown; with the default handler that
        # would kill us before the simulator child is stopped, so it becomes a clean exit.
        signal.signal(signal.SIGTERM, _exit_cleanly)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn already shut down
            run_uvicorn(SERVICE_APP, options.host, options.port, options.workers, listener)
    return 0


def upgraded_database(settings: Settings) -> str | None:
    """Migrate the database to the newest schema; what is wrong with it, in a line, when it
    cannot be reached or used. ``serve`` does this before it says it is serving: its workers
    migrate too (a no-op then), but a worker that cannot starts, says "serving", and dies
    with a traceback."""
    from paytabs_guard.bootstrap import DATABASE_UNREACHABLE, upgrade_database
    from paytabs_guard.setting_values import redact_url

    where = redact_url(settings.database_url)
    try:
        asyncio.run(upgrade_database(settings))
    except DATABASE_UNREACHABLE as error:
        why = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"cannot use {where}: {why}"
    except TypeError as error:  # the driver refused an argument the URL's query gave it
        if "unexpected keyword argument" not in str(error):
            raise
        return (
            f"cannot use {where}: the driver takes no {str(error).rpartition(' ')[2]} "
            "parameter (a libpq-style URL? asyncpg takes ssl=require, not sslmode=require)"
        )
    return None


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


SERVICE_APP: Final = "paytabs_guard.entrypoints.api.main:service"


def tcp_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose ``proto`` says TCP, inheritable by worker processes.

    uvicorn binds the shared socket of several workers as ``socket.socket(family)`` (proto 0),
    and asyncio turns on TCP_NODELAY only for accepted sockets whose proto is IPPROTO_TCP:
    without this every keep-alive response of a multi-worker server waited ~40 ms for the
    client's delayed ACK (measured in docs/benchmarks.md, "Load").
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()  # a port that cannot be had leaves no socket open behind it
        raise
    sock.set_inheritable(True)
    return sock


def http_stack() -> str:
    """The event loop and HTTP parser uvicorn picks here: ``uvloop + httptools`` when both are
    installed (they are dependencies, on CPython off Windows), else the pure-Python fallbacks."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop} + {http}"


def http_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's ``http``: httptools with a bound on a request's head where httptools is
    installed (``http_head_limit``), else uvicorn's h11, which bounds it at 16 KiB itself."""
    if importlib.util.find_spec("httptools") is None:
        return "h11"
    from paytabs_guard.entrypoints.http_head_limit import BoundedHttpToolsProtocol

    return BoundedHttpToolsProtocol


def uvicorn_config(app: str, host: str, port: int, workers: int) -> uvicorn.Config:
    """How ``serve`` runs uvicorn: uvloop and httptools where installed (falling back to asyncio
    and h11 cleanly), a request's head bounded (:func:`http_protocol`), no proxy-header
    rewriting (the app resolves clients through TRUSTED_PROXIES itself), our logging, a
    graceful shutdown."""
    return uvicorn.Config(
        app,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="auto",
        http=http_protocol(),
        proxy_headers=False,
        forwarded_allow_ips=None,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def run_uvicorn(
    app: str, host: str, port: int, workers: int, sock: socket.socket | None = None
) -> None:
    """Serve ``app`` (a factory) with ``workers`` processes sharing one TCP listener (``sock``
    if the caller bound it already)."""
    config = uvicorn_config(app, host, port, workers)
    if workers > 1:
        with shared_metrics():
            Multiprocess(config, sockets=[sock or tcp_listener(host, port)]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock] if sock is not None else None)


@contextlib.contextmanager
def shared_metrics() -> Iterator[str]:
    """A fresh directory where the workers started inside write their metrics, so that a
    scrape of any of them adds up all of them (metrics.py); removed afterwards. Fresh each
    time: values left by an earlier run would be added to this one's."""
    directory = tempfile.mkdtemp(prefix="paytabs-guard-metrics-")
    before = os.environ.get(SHARED_DIR_VARIABLE)
    os.environ[SHARED_DIR_VARIABLE] = directory  # the workers inherit it
    try:
        yield directory
    finally:
        if before is None:
            os.environ.pop(SHARED_DIR_VARIABLE, None)
        else:
            os.environ[SHARED_DIR_VARIABLE] = before
        shutil.rmtree(directory, ignore_errors=True)


def secret_values(settings: Settings) -> list[str]:
    """Every configured secret, for the log redactor."""
    values = [s.get_secret_value() for s in (*settings.api_keys, *settings.admin_api_keys)]
    values += [s.get_secret_value() for s in settings.webhook_secrets]
    if settings.paytabs_server_key is not None:
        values.append(settings.paytabs_server_key.get_secret_value())
    return values
