"""OpenTelemetry traces, optional: spans when the ``otel`` extra is installed and asked for.

Off unless the standard OTel variables ask for an exporter (:func:`wanted`); then
:func:`configure` builds a tracer provider of our own (the process-wide global one is left to the
application embedding us) exporting over OTLP/HTTP. The exporter itself reads
``OTEL_EXPORTER_OTLP_*`` (endpoint, headers, timeout, ...), the resource ``OTEL_SERVICE_NAME``
and ``OTEL_RESOURCE_ATTRIBUTES``; we read only what decides *whether* to trace.

Off costs one check of the module-level :data:`ENABLED` per instrumentation point: :func:`span`
hands back the one shared :data:`NO_SPAN`, no span object is made and ``opentelemetry`` is never
imported, so the library (``from paytabs_guard import PayTabs``) works without it.

Attributes never carry secrets or card data: no server key, signature, API key, token, card
number, customer name, email, phone or address, no request or response bodies and no query
strings (the browser return's signature travels in one). Payment ids, cart ids, ``tran_ref``,
event ids and types, routes, status codes and outcomes are what a trace is searched by.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:  # only for the checker: importing opentelemetry is for configure()
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span as OtelSpan
    from opentelemetry.trace import Tracer

ENABLED: bool = False
"""Whether spans are made; every instrumentation point checks this first."""

DEFAULT_SERVICE_NAME: Final = "paytabs-guard"
PAYMENT_ID: Final = "paytabs_guard.payment_id"
"""The attribute every span of a payment carries (request, attempts, units of work, ...)."""

Kind = Literal["internal", "server", "client", "producer", "consumer"]
_FALSE: Final = frozenset({"false", "0", "no", "off", ""})

log = logging.getLogger(__name__)

_tracer: Tracer | None = None
_provider: TracerProvider | None = None


@dataclass(slots=True)
class _PaymentScope:
    """The payment a request (or a delivery) is about, once known. Mutable and shared, so a
    payment noted deep inside (or in a task the request started) reaches the spans that end
    later: the request's own span is named before the payment id exists."""

    payment_id: str | None = None


_scope: ContextVar[_PaymentScope | None] = ContextVar("paytabs_guard_trace_scope", default=None)


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the standard OTel variables ask for traces: an OTLP endpoint (for all signals
    or for traces), or ``OTEL_TRACES_EXPORTER`` naming an exporter; ``OTEL_SDK_DISABLED=true``
    and ``OTEL_TRACES_EXPORTER=none`` turn it off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return any(
        environ.get(name, "").strip()
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure(
    environ: Mapping[str, str] | None = None, *, exporter: SpanExporter | None = None
) -> bool:
    """Start tracing if :func:`wanted`; returns whether spans are now made.

    ``exporter`` replaces the one ``OTEL_TRACES_EXPORTER`` names (tests: the SDK's in-memory
    exporter, with synchronous export). Without the ``otel`` extra a warning is logged and
    tracing stays off. Calling it again replaces the previous provider (shut down first).
    """
    global ENABLED, _tracer, _provider
    environ = os.environ if environ is None else environ
    shutdown()
    if not wanted(environ):
        return False
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        log.warning("OTEL_* variables ask for traces, but paytabs-guard[otel] is not installed")
        return False
    name = service_name(environ)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        chosen = _exporter(environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp")
        if chosen is None:
            return False
        provider.add_span_processor(BatchSpanProcessor(chosen))
    _provider = provider
    _tracer = provider.get_tracer("paytabs_guard")
    ENABLED = True
    return True


def service_name(environ: Mapping[str, str] | None = None) -> str:
    """``OTEL_SERVICE_NAME``, or paytabs-guard."""
    environ = os.environ if environ is None else environ
    return environ.get("OTEL_SERVICE_NAME", "").strip() or DEFAULT_SERVICE_NAME


def _exporter(name: str) -> SpanExporter | None:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console, none)", name[:40])
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def shutdown() -> None:
    """Export what is buffered and stop making spans."""
    global ENABLED, _tracer, _provider
    ENABLED = False
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


# ---- spans ---------------------------------------------------------------------------------


class Span:
    """What :func:`span` gives; this base does nothing: while tracing is off it is the one
    shared :data:`NO_SPAN`."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        return None

    def set(self, key: str, value: str | int | float | bool | None) -> None:  # noqa: ARG002
        return None

    def rename(self, name: str) -> None:  # noqa: ARG002 - nothing to rename
        return None

    def fail(self, reason: str) -> None:  # noqa: ARG002 - nothing to mark
        """Mark the span an error without an exception (e.g. a 5xx answer)."""
        return


NO_SPAN: Final = Span()


class _LiveSpan(Span):
    """A span that becomes the current one while entered; an exception marks it an error."""

    __slots__ = (
        "_attributes",
        "_kind",
        "_links",
        "_name",
        "_new_scope",
        "_parent",
        "_scope",
        "_span",
        "_tokens",
    )

    def __init__(
        self,
        name: str,
        kind: Kind,
        parent: Context | None,
        links: Sequence[Context],
        payment_id: str | None,
        new_scope: bool,
    ) -> None:
        self._name = name
        self._kind = kind
        self._parent = parent
        self._links = links
        self._new_scope = _PaymentScope(payment_id) if new_scope else None
        self._scope: _PaymentScope | None = None
        self._attributes: dict[str, str | int | float | bool] = {}
        self._span: OtelSpan | None = None
        self._tokens: tuple[Token[Context], Token[_PaymentScope | None] | None] | None = None

    def __enter__(self) -> _LiveSpan:
        from opentelemetry import context, trace

        tracer = _tracer
        if tracer is None:  # shut down meanwhile
            return self
        scope = self._scope = self._new_scope or _scope.get()
        links = [trace.Link(trace.get_current_span(c).get_span_context()) for c in self._links]
        span = tracer.start_span(
            self._name,
            context=self._parent,
            kind=trace.SpanKind[self._kind.upper()],
            links=links,
            attributes=self._attributes,
        )
        if scope is not None and scope.payment_id is not None:
            span.set_attribute(PAYMENT_ID, scope.payment_id)
        self._span = span
        scope_token = _scope.set(self._new_scope) if self._new_scope is not None else None
        self._tokens = (context.attach(trace.set_span_in_context(span)), scope_token)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        from opentelemetry import context, trace

        span, tokens = self._span, self._tokens
        if span is None or tokens is None:
            return
        if isinstance(exc, BaseException):
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", type(exc).__name__)
        scope = self._scope  # a payment noted since the start (or in a task started inside)
        if scope is not None and scope.payment_id is not None:
            span.set_attribute(PAYMENT_ID, scope.payment_id)
        otel_token, scope_token = tokens
        context.detach(otel_token)
        if scope_token is not None:
            _scope.reset(scope_token)
        span.end()

    def set(self, key: str, value: str | int | float | bool | None) -> None:
        if value is None:
            return
        if self._span is None:  # not started yet: given to the span when it starts
            self._attributes[key] = value
        else:
            self._span.set_attribute(key, value)

    def rename(self, name: str) -> None:
        if self._span is not None:
            self._span.update_name(name)

    def fail(self, reason: str) -> None:
        from opentelemetry import trace

        if self._span is not None:
            self._span.set_status(trace.Status(trace.StatusCode.ERROR, reason))


def span(
    name: str,
    kind: Kind = "internal",
    *,
    parent: tuple[str | None, str | None] | None = None,
    links: Sequence[tuple[str | None, str | None]] = (),
    payment_id: str | None = None,
    new_scope: bool = False,
) -> Span:
    """A span to enter with ``with``, or :data:`NO_SPAN` while tracing is off.

    ``parent`` and ``links`` are W3C ``(traceparent, tracestate)`` pairs (an incoming request,
    an outbox row); without ``parent`` the current span is the parent. ``new_scope`` starts a
    payment scope (a request, a delivery): payments noted inside name the spans started after.
    """
    if not ENABLED:
        return NO_SPAN
    linked = [c for c in (_extract(pair) for pair in links) if c is not None]
    return _LiveSpan(
        name, kind, None if parent is None else _extract(parent), linked, payment_id, new_scope
    )


def note_payment(payment_id: str) -> None:
    """The work under way is about ``payment_id``: on the current span, and on every span of
    this request or delivery from now on."""
    if not ENABLED:
        return
    from opentelemetry import trace

    scope = _scope.get()
    if scope is not None:
        scope.payment_id = payment_id
    trace.get_current_span().set_attribute(PAYMENT_ID, payment_id)


def annotate(key: str, value: str | int | float | bool) -> None:
    """One attribute on the current span (e.g. the HTTP status, where only the client knows)."""
    if not ENABLED:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attribute(key, value)


# ---- W3C trace context ----------------------------------------------------------------------


def current_context() -> tuple[str | None, str | None]:
    """``(traceparent, tracestate)`` of the current span, to store with an outbox row;
    ``(None, None)`` while off or outside any span."""
    if not ENABLED:
        return None, None
    carrier = _inject()
    return carrier.get("traceparent"), carrier.get("tracestate") or None


def outgoing_headers(traceparent: str | None, tracestate: str | None) -> dict[str, str]:
    """W3C headers for an outgoing webhook: the current span's while tracing (the delivery
    span, a child of the event's trace), else the stored ones passed on as they are."""
    carrier = _inject() if ENABLED else {}
    if not carrier and traceparent:
        carrier = {"traceparent": traceparent}
        if tracestate:
            carrier["tracestate"] = tracestate
    return carrier


def _inject() -> dict[str, str]:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier


def _extract(pair: tuple[str | None, str | None]) -> Context | None:
    traceparent, tracestate = pair
    if not traceparent:
        return None
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, Any] = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    extracted = TraceContextTextMapPropagator().extract(carrier)
    valid = trace.get_current_span(extracted).get_span_context().is_valid
    return extracted if valid else None  # a malformed header starts a fresh trace
