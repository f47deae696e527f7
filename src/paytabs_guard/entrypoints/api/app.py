"""The FastAPI application: routers, error mapping, request context, lifespan.

``create_app(container)`` serves a container someone else owns (tests, embedding);
``create_service(settings)`` builds and closes its own container in the lifespan (``serve``).

Lifespan: background work starts with the app (the outbox relay; reconciliation when its
interval is set, and the sleeper that expires unpaid pages at their deadlines) and stops after
uvicorn has finished the in-flight requests: the relay ends its current batch, queries started
by requests get ``shutdown_grace_seconds`` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from fastapi import FastAPI

from paytabs_guard import tracing
from paytabs_guard.bootstrap import DATABASE_UNREACHABLE, Container, build_container
from paytabs_guard.entrypoints.background import (
    adopt_position_names_until,
    expire_pages_until,
    reconcile_until,
    report_unconfigured_sinks,
)
from paytabs_guard.entrypoints.collector import settle_after_start
from paytabs_guard.metrics import Metrics
from paytabs_guard.observability import get_logger
from paytabs_guard.setting_values import redact_url
from paytabs_guard.settings import Settings

from . import breakers, callbacks, cards, events, follow_up_routes, health, payments, stats
from .console import install_console
from .docs_pages import install_docs
from .errors import install_error_handlers
from .front_door import FrontDoorMiddleware
from .middleware import RequestContextMiddleware
from .options import ApiOptions
from .runtime import Runtime

TITLE: Final = "paytabs-guard payments v2"
METRICS_WRITE_SECONDS: Final = 1.0
DESCRIPTION: Final = (
    "Take payments through PayTabs hosted pages with idempotent writes, verified callbacks and "
    "graceful degradation. Errors are RFC 9457 problem details; every response carries "
    "`X-Request-ID`. Money is a decimal string in the currency's units. The API key is "
    "checked before a request body is read; an address that sends 20 different wrong keys "
    "within a minute is answered 429 `too-many-wrong-keys` (with `Retry-After`) until the "
    "oldest of them is a minute old, whatever key it sends, except a key already accepted "
    "from that address. Bodies are limited to API_MAX_BODY_BYTES "
    "(413 when declared or streamed past it) and must arrive whole within 30 seconds (408). "
    "A body is JSON (`Content-Type: "
    "application/json`, or another `application/...+json` type), sent uncompressed: another "
    "media type (`text/json` included) or a `Content-Encoding` is a 415. JSON bodies are read "
    "strictly: a key repeated in "
    "an object, NaN or Infinity, invalid UTF-8, a byte order mark, a lone surrogate, a NUL "
    "character (\\u0000) or nesting deeper than 32 levels is a 400 `invalid-payload` whose "
    "`reason` names the rule, and nothing is stored; a NUL (`%00`) in the URL is a 400 "
    "`invalid-url`, and so is a path that percent-encodes a letter, digit, `-._~` or `/` "
    "(`/%6detrics`), a target in absolute form (`GET http://host/metrics`) or with a fragment "
    "(`/metrics#x`), which an edge rule on the plain path would miss. An HTTP/1.1 request "
    "without a `Host` header, or one with two, is a 400 `invalid-host`. `Authorization`, "
    "`Idempotency-Key` and "
    "`Content-Type` are sent once each: two of any are "
    "refused (401, 400, 400), never picked from, and so is a query parameter that takes one "
    "value sent twice (422). A query parameter an endpoint does not take is "
    "a 422 that names it, as an unknown body field is (a write that takes no body, such as a "
    "void, accepts `{}`); a name or id holding a card number is shown as `[card redacted]`. "
    "Free text that is stored and shown (a description, customer "
    "details, metadata), `return_url`, `customer.phone` and `customer_id` must not hold a "
    "card number "
    "(13-19 digits in any script passing the Luhn check, with the prefix and length of a card "
    "network's cards (so an Emirates ID or a VAT number is no card number), with at most one "
    "separator of any kind between two digits, not glued to letters): a 422 naming the "
    "field. Send an "
    "`Idempotency-Key` (a random "
    "UUID) with every write: a write without one still runs, but its answer carries "
    '`Warning: 299 paytabs-guard "No Idempotency-Key: ..."` because a retry may repeat it '
    "(a second charge or refund). A write that reached PayTabs is never run twice under its "
    "key: one that then failed here (a restart, a database blip) answers, and keeps for the "
    "key, a 502 `gateway-outcome-unknown` naming the payment; one whose worker died answers "
    "409 `idempotency-key-interrupted` once its lease is over (look for its effect; a new key "
    "tries again); one cut off by a restart answers 503 `interrupted` (send it again with the "
    "same key)."
)
log = get_logger(__name__)

ContainerFactory = Callable[[], Awaitable[Container]]


async def _background(runtime: Runtime, stop: asyncio.Event) -> list[asyncio.Task[None]]:
    container = runtime.container
    tasks = [
        asyncio.create_task(container.relay.run_forever(stop), name="outbox-relay"),
        asyncio.create_task(report_unconfigured_sinks(container), name="unconfigured-sinks"),
        asyncio.create_task(adopt_position_names_until(container, stop), name="position-names"),
    ]
    if container.reconciliation.interval is not None:
        tasks.append(asyncio.create_task(reconcile_until(container, stop), name="reconcile"))
    if container.page_expiry is not None:
        expiring = expire_pages_until(container, stop)
        tasks.append(asyncio.create_task(expiring, name="page-expiry"))
    if container.metrics.shared_dir is not None:
        tasks.append(asyncio.create_task(_write_metrics(runtime, stop), name="metrics"))
    return tasks


async def _write_metrics(runtime: Runtime, stop: asyncio.Event) -> None:
    """With several workers, write this one's watched gauges every second: a scrape answered
    by another worker reads them from this one's file (metrics.py)."""
    metrics = runtime.container.metrics
    while not stop.is_set():
        runtime.container.gateway.breakers.snapshot()  # a due half-open, for the state gauge
        metrics.refresh()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), METRICS_WRITE_SECONDS)


async def _stop(runtime: Runtime, stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    stop.set()
    grace = runtime.options.shutdown_grace_seconds
    await runtime.background.drain(grace)
    if tasks:
        # run_forever returns after its current pass: the relay batch is finished, not cut.
        _, late = await asyncio.wait(tasks, timeout=grace)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _build(runtime_of: Callable[[FastAPI], Runtime | None], lifespan: object) -> FastAPI:
    app = FastAPI(
        title=TITLE,
        description=DESCRIPTION,
        version="2",
        lifespan=lifespan,  # type: ignore[arg-type]  # a factory of async context managers
        docs_url=None,  # /docs and /redoc are served offline by install_docs
        redoc_url=None,
        # Starlette sent "/docs-assets" on to "/docs-assets/" with a 307 to an absolute URL
        # built from the Host header (http://evil.example/docs-assets/). No route needs a
        # slash added, and one too many is the front door's (``_trailing_slash``).
        redirect_slashes=False,
    )
    install_docs(app, TITLE)

    def metrics_of() -> Metrics | None:
        runtime = runtime_of(app)
        return runtime.container.metrics if runtime is not None else None

    # Added first, so it runs inside the request context (request id) and before FastAPI.
    app.add_middleware(FrontDoorMiddleware, runtime_of=lambda: runtime_of(app))
    app.add_middleware(RequestContextMiddleware, metrics_of=metrics_of)
    install_error_handlers(app)
    # The busiest route first (every route is matched in this order), then fixed paths before
    # /payments/v2/{payment_id}, which would otherwise swallow them.
    app.include_router(payments.creates)
    for router in (health.router, callbacks.router, breakers.router, stats.router):
        app.include_router(router)
    install_console(app)
    app.include_router(events.router)
    app.include_router(cards.router)
    app.include_router(payments.router)
    app.include_router(follow_up_routes.router)
    _describe_problems_as_problem_json(app)
    return app


_PROBLEM_SCHEMA: Final = {"$ref": "#/components/schemas/ProblemOut"}


def _describe_problems_as_problem_json(app: FastAPI) -> None:
    """Describe every error answer as what it is on the wire: ``application/problem+json``
    with the ProblemOut schema. FastAPI files a response model under ``application/json``
    (and, unless a route says otherwise, its 422 as its own ``HTTPValidationError``), so a
    client generated from the description would expect the wrong media type."""
    build = app.openapi

    def described() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                for answer in operation.get("responses", {}).values():
                    content = answer.get("content", {})
                    if "application/problem+json" not in content:
                        continue
                    if content.get("application/json", {}).get("schema") == _PROBLEM_SCHEMA:
                        del content["application/json"]
                    content["application/problem+json"] = {"schema": _PROBLEM_SCHEMA}
                _plain_parameters(operation)
                _describe_front_door(operation)
        return document

    app.openapi = described  # type: ignore[method-assign]


#: What the front door and the Idempotency-Key check answer before a route runs, so no route
#: declares them: a body not JSON or not whole in time, or too large; a malformed key; a NUL
#: in the URL.
_BODY_ANSWERS: Final = {
    "400": "Bad Request (a body that breaks the strict JSON rules)",
    "408": "Request Timeout (the body did not arrive whole in time)",
    "413": "Request Entity Too Large",
    "415": "Unsupported Media Type (not application/json, or compressed)",
}
_KEY_ANSWER: Final = "Bad Request (a malformed or repeated Idempotency-Key)"
#: Any request: the front door refuses a NUL (``%00``) in the path or the query string.
_URL_ANSWER: Final = "Bad Request (a NUL character in the URL)"


def _plain_parameters(operation: dict[str, Any]) -> None:
    """An optional parameter as its one type, not ``anyOf: [type, null]``. FastAPI describes
    ``str | None = None`` that way, but a query parameter or a header is absent or a string,
    never null (``required: false`` already says it may be left out). Generators and fuzzers
    took the sibling ``pattern`` and lengths as applying to neither branch, and sent
    Idempotency-Keys the route then refused."""
    for parameter in operation.get("parameters", ()):
        schema = parameter.get("schema", {})
        branches = schema.get("anyOf", ())
        kept = [branch for branch in branches if branch != {"type": "null"}]
        if len(branches) == 2 and len(kept) == 1:
            rest = {key: value for key, value in schema.items() if key != "anyOf"}
            parameter["schema"] = {**kept[0], **rest}


def _describe_front_door(operation: dict[str, Any]) -> None:
    """Add the answers a request, its JSON body or its ``Idempotency-Key`` can get before the
    route runs, so a generated client parses them (it drops an answer whose status is not
    described)."""
    answers: dict[str, Any] = operation.get("responses", {})
    added: dict[str, str] = {}
    if "application/json" in operation.get("requestBody", {}).get("content", {}):
        added.update(_BODY_ANSWERS)
    if any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", ())):
        added.setdefault("400", _KEY_ANSWER)
    added.setdefault("400", _URL_ANSWER)
    for status, description in added.items():
        answer = answers.setdefault(status, {"description": description})
        content = answer.setdefault("content", {})
        if "application/problem+json" not in content:
            # A route's own answer in another form (the browser return's 400 page) gets the
            # front door's problem beside it.
            if content:
                answer["description"] = f"{answer['description']}; or {description}"
            content["application/problem+json"] = {"schema": _PROBLEM_SCHEMA}
    operation["responses"] = dict(sorted(answers.items(), key=lambda item: str(item[0])))


def _runtime_of(app: FastAPI) -> Runtime | None:
    runtime = getattr(app.state, "runtime", None)
    return runtime if isinstance(runtime, Runtime) else None


def create_app(container: Container, options: ApiOptions | None = None) -> FastAPI:
    """The service around a ready ``container`` (the caller closes it)."""
    runtime = Runtime.build(container, options or ApiOptions())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks = await _background(runtime, stop)
        try:
            yield
        finally:
            await _stop(runtime, stop, tasks)

    app = _build(_runtime_of, lifespan)
    app.state.runtime = runtime
    return app


def create_service(settings: Settings, options: ApiOptions | None = None) -> FastAPI:
    """The service for ``serve``: the lifespan builds the container (migrations included) and
    closes it after shutdown. Traces are on when the standard OTEL_* variables ask for them."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if tracing.configure():
            log.info("tracing on", service_name=tracing.service_name())
        try:
            container = await build_container(settings)
        except DATABASE_UNREACHABLE as error:
            # uvicorn prints the traceback as it exits; this line says what to fix first.
            log.error(
                "cannot start: the database cannot be reached or used",
                database=redact_url(settings.database_url),
                error=f"{type(error).__name__}: {error}",
            )
            raise
        runtime = Runtime.build(container, options or ApiOptions())
        app.state.runtime = runtime
        if not runtime.api_keys.configured:
            log.warning("no API keys configured: every merchant API call will get 401")
        stop = asyncio.Event()
        tasks = await _background(runtime, stop)
        settle_after_start()  # this process is the service's worker from here on
        log.info("service started", database=container.engine.dialect.name,
                 redis=container.redis is not None)  # fmt: skip
        try:
            yield
        finally:
            await _stop(runtime, stop, tasks)
            await container.aclose()
            container.metrics.close()  # with several workers: this one's gauges leave the sum
            tracing.shutdown()  # exports the spans still buffered
            log.info("service stopped")

    return _build(_runtime_of, lifespan)


def openapi_document() -> dict[str, object]:
    """The OpenAPI document of the service (no container needed)."""
    return _build(_runtime_of, None).openapi()
