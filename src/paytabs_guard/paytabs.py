"""``PayTabs``: the resilient PayTabs client in one line, for library users.

::

    async with PayTabs(profile_id=12345, server_key="S...", region="SAU") as paytabs:
        page = await paytabs.create_payment_page(HostedPageRequest(...))

What you get with the defaults, without wiring anything: one circuit breaker per operation family
(create, query, follow-up, token) with a rolling error-rate window, recovery probes while open
and an adaptive, jittered open period; one retry policy with full jitter, a deadline and a retry
budget; and writes that are never re-sent blind — an ambiguous failure (timeout after sending,
5xx, 409) is resolved by a query before anything is sent again, so a retry cannot charge twice.

Only the core dependencies (httpx, pydantic) are needed: no web framework, no database.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Self

import httpx
from pydantic import SecretStr

from paytabs_guard.adapters.paytabs.client import PayTabsClient, http_timeout_within
from paytabs_guard.adapters.paytabs.regions import Region, base_url_for
from paytabs_guard.adapters.paytabs.resilient import (
    OperationBreakers,
    ResilientPayTabs,
    counts_against_gateway,
    went_unanswered,
)
from paytabs_guard.adapters.paytabs.signature import (
    callback_body,
    verify_callback,
    verify_return,
)
from paytabs_guard.adapters.paytabs.transformers import PayTabsTransaction, decode_json
from paytabs_guard.domain import Operation
from paytabs_guard.resilience import (
    BreakerConfig,
    BreakerProber,
    BreakerRegistry,
    every_exception,
    no_exception,
)
from paytabs_guard.resilience.retry import RetryConfig, RetryPolicy

#: Breaker defaults for a library user: the seed's (BreakerConfig's own defaults), with the
#: service's: open after 10 failures in a row too, or once calls have waited 5 s unanswered (a
#: gateway that hangs), probes every second, an adaptive jittered open period, 3 trials.
DEFAULT_BREAKER = BreakerConfig(
    half_open_max_calls=3, is_failure=counts_against_gateway, is_unanswered=went_unanswered
).with_recovery(
    min_open_time=2.0,
    open_jitter=0.2,
    probe_interval=1.0,
    consecutive_failures=10,
    stall_after=5.0,
)


class PayTabs(ResilientPayTabs):
    """A PayTabs PT2 client with retries that never charge twice, behind circuit breakers.

    Args:
        profile_id: The merchant's PayTabs profile id: a positive int (its digits as a str
            will do); anything else is ``ValueError`` at once.
        server_key: The profile's server key (kept as a ``SecretStr``; never logged).
        previous_server_keys: During a key rotation, the keys that came before
            ``server_key``: callbacks and returns signed with one of them still verify
            (:meth:`verify_callback`, :meth:`verify_return`); calls to PayTabs always use
            ``server_key``. Drop them once PayTabs signs with the new key only.
        region: Where the profile lives (``"SAU"``, ``"ARE"``, ... or a :class:`Region`).
            Defaults to ``SAU`` (``https://secure.paytabs.sa``); the service's
            ``PAYTABS_REGION`` defaults to ``ARE``. A key only works on its region's host.
            Another name is ``ValueError`` listing the regions (Saudi Arabia is ``SAU``, not
            ``KSA``).
        base_url: Another host instead of the region's (a proxy, the simulator): an
            absolute ``http://`` or ``https://`` URL, else ``ValueError`` at once.
        timeout: Seconds one attempt may take in all (> 0): waiting for a connection,
            connecting, sending and the whole answer, however steadily a slow answer's bytes
            come. It is the breakers' call timeout (``breaker.call_timeout`` when that is
            shorter); a cut there is an unknown outcome (:class:`AmbiguousGatewayError`). The
            HTTP timeouts (waiting for a pooled connection, connecting, at most 10 s, and the
            wait for each next byte) are 90 % of it, so that a connection that cannot be made
            fails as never sent (:class:`TransientGatewayError`, re-sent safely).
        retry: How retries are spaced and bounded (:class:`RetryConfig`). Its ``deadline``
            (60 s by default) only stops retries from starting: none starts if its backoff
            would end after the deadline; an attempt under way runs to its ``timeout``. A
            write whose outcome is unknown (a timeout after sending, 5xx, 409) is still
            resolved by a query, itself an operation with its own retries and deadline. So a
            query or a token deletion takes at most about ``deadline + timeout``, and a write
            at most about twice that.
        breaker: How the breakers decide (:data:`DEFAULT_BREAKER`). A config that leaves
            ``is_failure`` at BreakerConfig's own default gets :func:`counts_against_gateway`
            (a decline, a refusal of a bad request or "not found" is not a gateway failure);
            pass another predicate to count otherwise. One that leaves ``is_unanswered`` at its
            default gets :func:`went_unanswered` (a read timeout is judged as a call timeout).
        transport: An httpx transport (tests: ``httpx.MockTransport`` or ASGI), used as given
            on every event loop.

    Use it as an async context manager (or call :meth:`start` and :meth:`aclose`) so that the
    recovery prober runs while a breaker is open and the connections are closed at the end.
    One instance may also be kept for the process and called from one event loop after
    another (``asyncio.run`` per call): each loop gets its own connections, closed as it ends;
    without the prober, an open breaker admits its trials when its open period ends. One loop
    at a time: it is not thread-safe.
    Cancelling a write yourself (``asyncio.wait_for``, a cancelled task) after it left leaves
    its outcome unknown with no query made: query the cart before sending it again, or bound
    calls with ``timeout`` and ``retry`` instead, which settle a cut write by a query.
    All of :class:`ResilientPayTabs`' operations are available: ``create_payment_page``,
    ``query_transaction``, ``query_cart``, ``follow_up``, ``charge_token``, ``query_token``,
    ``delete_token``.
    """

    def __init__(
        self,
        *,
        profile_id: int,
        server_key: str | SecretStr,
        previous_server_keys: Iterable[str | SecretStr] | str | SecretStr = (),
        region: Region | str = Region.SAU,
        base_url: str | None = None,
        timeout: float = 30.0,
        retry: RetryConfig | None = None,
        breaker: BreakerConfig | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be > 0 s, got {timeout!r}")
        key = server_key if isinstance(server_key, SecretStr) else SecretStr(server_key)
        self._server_key = key
        self._verifying_keys = (key, *_previous_keys(previous_server_keys))
        config = breaker or DEFAULT_BREAKER
        if config.is_failure is every_exception:
            # BreakerConfig's default suits a breaker around anything; around PayTabs every
            # "not found" and refused request would count as an outage and open the breaker.
            config = replace(config, is_failure=counts_against_gateway)
        if config.is_unanswered is no_exception:
            config = replace(config, is_unanswered=went_unanswered)
        # The HTTP timeouts bound each step (connecting, each next byte), not the attempt: a
        # server that drips its answer a byte at a time holds an attempt for as long as it
        # likes. The breaker's call timeout is what cuts a whole attempt off, so it must not
        # be longer than what the caller asked for (its default, 30 s, would be).
        attempt = timeout if config.call_timeout is None else min(config.call_timeout, timeout)
        self.registry = BreakerRegistry(replace(config, call_timeout=attempt))
        # The HTTP timeouts end a little before the attempt does (http_timeout_within says why).
        client = PayTabsClient(
            profile_id=profile_id,
            server_key=key,
            base_url=base_url_for(region, base_url),
            timeout_seconds=http_timeout_within(attempt),
            transport=transport,
        )
        families = OperationBreakers(
            create=self.registry.get(Operation.CREATE),
            query=self.registry.get(Operation.QUERY),
            follow_up=self.registry.get(Operation.FOLLOW_UP),
            token=self.registry.get(Operation.TOKEN),
        )
        super().__init__(client, families, RetryPolicy(retry or RetryConfig()))

        async def probe() -> object:
            # A cart id that cannot exist: any PayTabs answer proves PayTabs answers.
            return await client.query_cart("probe-paytabs-guard-recovery")

        # A probe may take as long as a real call: a slow answer is still an answer.
        self.prober = BreakerProber(
            self.registry, dict.fromkeys(self.registry.names(), probe), timeout=attempt
        )

    def verify_callback(
        self, body: bytes | bytearray | memoryview, signature: str | None
    ) -> PayTabsTransaction:
        """Check a callback's ``Signature`` header over the raw body, then parse it.

        Raises :class:`~paytabs_guard.adapters.paytabs.signature.InvalidSignature` when the
        signature is missing or wrong (compared in constant time), and ``ValueError`` when the
        body is not a PayTabs transaction: not JSON (``json.JSONDecodeError``) or not the
        transaction's shape (pydantic's ``ValidationError``); both are ``ValueError``. Apply
        the result only if its ``cart_id``, amount and currency match your order.

        ``body`` is the raw request body as bytes (a bytearray or memoryview will do); a str,
        or the parsed JSON, raises ``ValueError`` saying what to pass: the signature is over
        the exact bytes, which text need not encode back to. So does a ``signature`` that is
        neither a str nor None.
        """
        raw = callback_body(body)
        verify_callback(raw, signature, self._verifying_keys)
        return PayTabsTransaction.model_validate(decode_json(raw))

    def verify_return(self, fields: Mapping[str, object]) -> None:
        """Check a browser return's ``signature`` field (the POSTed form, or a GET return's
        query parameters as they came; the return URL's own parameters are not signed).

        Raises :class:`~paytabs_guard.adapters.paytabs.signature.InvalidSignature` when it is
        missing or wrong, and ``ValueError``, saying what to pass, when ``fields`` is not a
        mapping of names to one str each (a list value, as ``parse_qs`` gives, or an upload
        in a form; any mapping type is taken, Starlette's ``FormData`` included). A valid
        return only says what the customer's browser was shown: ask PayTabs
        (``query_transaction``) before you ship the order."""
        verify_return(fields, self._verifying_keys)

    def __repr__(self) -> str:  # never the key
        return f"PayTabs(profile_id={self.client.profile_id}, base_url={self.client.base_url!r})"

    def start(self) -> None:
        """Start the recovery prober (needs a running event loop)."""
        self.prober.start()

    async def aclose(self) -> None:
        """Stop the prober and close the HTTP connections (closing twice is harmless)."""
        try:
            await self.prober.aclose()
        finally:
            await self.client.aclose()

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _previous_keys(keys: Iterable[str | SecretStr] | str | SecretStr) -> tuple[SecretStr, ...]:
    """The rotation's earlier keys, checked when the client is built: a str is one key (not
    its characters), and another type is a ValueError saying what to pass. Blank ones verify
    nothing (the signature checks skip them)."""
    found: tuple[object, ...] = (keys,) if isinstance(keys, str | SecretStr) else tuple(keys)
    checked: list[SecretStr] = []
    for key in found:
        if not isinstance(key, str | SecretStr):
            raise ValueError(
                f"pass previous_server_keys as str (or SecretStr) keys, not {type(key).__name__}"
            )
        checked.append(key if isinstance(key, SecretStr) else SecretStr(key))
    return tuple(checked)
