"""Outgoing webhooks: the envelope POSTed to each merchant endpoint, signed (Standard Webhooks).

Every endpoint is a sink of its own (``webhook:<name>``) with its own ``whsec_`` secret (several
during a rotation: one signature per secret). The request body is the exact envelope stored in
the outbox; ``webhook-id`` is the CloudEvents ``id`` (the receiver's dedupe key), and
``webhook-timestamp`` the time of this attempt, so a retry carries a fresh, verifiable time.
``traceparent`` (and ``tracestate``) continue the trace of the request that caused the event,
when it was traced (docs/observability.md).
A 2xx answer means delivered; anything else (3xx included: redirects are not followed), no
answer within the timeout (once connected, for the request and the answer's head together) or
a connection error is retried by the relay with backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import SecretStr

from paytabs_guard import tracing
from paytabs_guard.adapters.webhooks import standard

from .cloudevents import CONTENT_TYPE, OutboxEvent
from .delivery_spans import delivery_span
from .sinks import DeliveryFailed, SinkUnreachable

SINK_PREFIX: Final = "webhook:"
DEFAULT_TIMEOUT_SECONDS: Final = 15.0  # Standard Webhooks: consumers get 15-30 s
#: Requests to one endpoint at once (a relay wave's, each of another payment).
MAX_IN_FLIGHT: Final = 8
USER_AGENT: Final = "paytabs-guard-webhooks/1"


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def endpoint_name(url: str) -> str:
    """A name for the endpoint at ``url`` that stays its own wherever the URL stands in a list:
    12 hex digits of the SHA-256 of the URL normalised (scheme and host in lower case, a
    default port left out, an empty path as ``/``, no fragment). The service names its sinks
    ``webhook:<this>``; a name by position moved one URL's backlog to another when a URL
    before it was removed. It never shows the URL, whose query may carry a token."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = parts.hostname or ""  # lower case already
    if ":" in host:
        host = f"[{host}]"  # IPv6
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    if "@" in parts.netloc:
        netloc = f"{parts.netloc.rpartition('@')[0]}@{netloc}"
    normalised = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A merchant URL with its signing secrets; ``event_types`` empty = every event."""

    name: str
    url: str
    secrets: tuple[SecretStr, ...]
    event_types: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a webhook endpoint needs a name (it names its sink)")
        if not self.url.startswith(("https://", "http://")):
            raise ValueError(f"webhook endpoint {self.name!r}: the URL must be http(s)")
        if not self.secrets:
            raise ValueError(f"webhook endpoint {self.name!r}: at least one secret is needed")
        for secret in self.secrets:
            standard.decode_secret(secret)  # a bad secret fails at start-up, not per delivery

    def __repr__(self) -> str:  # URLs can carry tokens: keep them out of logs
        return f"WebhookEndpoint(name={self.name!r})"


class WebhookSink:
    """POSTs each event to one endpoint with Standard Webhooks headers."""

    def __init__(
        self,
        endpoint: WebhookEndpoint,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], datetime] = _utc_now,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._endpoint = endpoint
        self._http = http
        self._clock = clock
        self._timeout = timeout_seconds

    @property
    def name(self) -> str:
        return SINK_PREFIX + self._endpoint.name

    def accepts(self, event_type: str) -> bool:
        types = self._endpoint.event_types
        return not types or event_type in types

    @property
    def accepted_types(self) -> frozenset[str] | None:
        return self._endpoint.event_types or None

    def request_for(self, event: OutboxEvent) -> httpx.Request:
        """The signed request for one attempt (signed at the clock's current time)."""
        body = event.envelope.encode("utf-8")
        headers = standard.headers_for(event.event_id, body, self._endpoint.secrets, self._clock())
        headers["content-type"] = CONTENT_TYPE
        headers["user-agent"] = USER_AGENT
        # W3C trace context, outside the signature: the receiver's trace joins the payment's
        headers.update(tracing.outgoing_headers(event.traceparent, event.tracestate))
        return self._http.build_request(
            "POST", self._endpoint.url, content=body, headers=headers, timeout=self._timeout
        )

    async def deliver_many(self, events: Sequence[OutboxEvent]) -> list[Exception | None]:
        """:meth:`deliver_each` of events not attempted before."""
        return await self.deliver_each(events, [0] * len(events))

    async def deliver_each(
        self, events: Sequence[OutboxEvent], attempts_before: Sequence[int]
    ) -> list[Exception | None]:
        """A wave of the relay (at most one event per payment) at once, at most
        ``MAX_IN_FLIGHT`` requests to the endpoint at a time: an endpoint that hangs on one
        payment's event holds up no other payment's (one after the other, it held them all
        for its timeout). Each request has its own delivery span in its event's trace, which
        its ``traceparent`` names (one span for the wave named a trace of its own)."""
        gate = asyncio.Semaphore(MAX_IN_FLIGHT)

        async def one(event: OutboxEvent, attempts: int) -> Exception | None:
            async with gate:
                try:
                    with delivery_span(self.name, (event,), attempts):
                        await self.deliver(event)
                except Exception as error:  # the relay records it, as for deliver()
                    return error
                return None

        return list(
            await asyncio.gather(
                *(one(event, n) for event, n in zip(events, attempts_before, strict=True))
            )
        )

    async def deliver(self, event: OutboxEvent) -> None:
        request = self.request_for(event)
        try:
            # httpx's timeouts bound each read, so an endpoint sending a byte now and then held
            # the delivery (and its lease) forever: once connected, the whole answer has the
            # timeout. Connecting keeps httpx's own timeout (a cancelled TLS handshake would
            # leave its socket open), and missing it stays the endpoint's outage.
            async with asyncio.timeout(None) as deadline:
                request.extensions["trace"] = _AnswerDeadline(deadline, self._timeout).trace
                # stream=True and close unread: only the status matters, whatever its size.
                response = await self._http.send(request, stream=True, follow_redirects=False)
                await response.aclose()
        except TimeoutError as error:
            raise DeliveryFailed(f"{self.name}: no answer within {self._timeout:g} s") from error
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            # Nothing reached the endpoint: its host is down, not this event refused.
            raise SinkUnreachable(f"{self.name}: {type(error).__name__}") from error
        except httpx.HTTPError as error:
            raise DeliveryFailed(f"{self.name}: {type(error).__name__}") from error
        if not response.is_success:
            raise DeliveryFailed(f"{self.name}: HTTP {response.status_code}")


class _AnswerDeadline:
    """Starts ``deadline`` when the request starts going out on a connection (httpcore's
    trace events), so it bounds sending the request and receiving the answer's head."""

    def __init__(self, deadline: asyncio.Timeout, seconds: float) -> None:
        self._deadline = deadline
        self._seconds = seconds

    async def trace(self, name: str, _info: Mapping[str, object]) -> None:
        if name.endswith("send_request_headers.started") and self._deadline.when() is None:
            self._deadline.reschedule(asyncio.get_running_loop().time() + self._seconds)


def webhook_sinks(
    endpoints: Sequence[WebhookEndpoint],
    http: httpx.AsyncClient,
    *,
    clock: Callable[[], datetime] = _utc_now,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> list[WebhookSink]:
    """One sink per endpoint; endpoint names must be unique."""
    names = [endpoint.name for endpoint in endpoints]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"webhook endpoint names must be unique: {', '.join(duplicates)}")
    return [
        WebhookSink(endpoint, http, clock=clock, timeout_seconds=timeout_seconds)
        for endpoint in endpoints
    ]
