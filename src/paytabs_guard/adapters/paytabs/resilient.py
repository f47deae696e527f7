"""PayTabs behind a circuit breaker per operation family and the one retry policy.

Order (outermost first): retry -> breaker (with its call timeout) -> one HTTP attempt. A breaker
rejection is never retried. What may be re-sent depends on what the failure proves:

* ``retry_safe`` (connect error, 429, 503): the request never took effect; re-send after backoff.
  A 429 or 503 *answer* to a write that moves money (a recurring charge, a refund, capture,
  void or release) is the exception: "usually not processed" is not "never", and a charge
  reported as not sent is one the merchant makes again. So the cart is queried first, as
  below; only a hosted page, which moves no money, is re-sent on the answer's word.
* ``needs_resolution`` (timeout or reset after sending, 500/502/504, 409 Duplicate Request): the
  request may have taken effect. Ask PayTabs first (query by ``cart_id``, which lists every
  attempt); use what it holds; re-send only when it provably holds nothing. The re-send is the
  *identical* request, so if the first one still lands late, PayTabs' own duplicate window
  refuses one of the two (409) instead of charging twice.
* anything else (declines are results; invalid requests, authentication): final.

Reads (queries) are idempotent and may be retried on any gateway failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Protocol, TypeVar

from paytabs_guard import tracing
from paytabs_guard.adapters.paytabs.client import ClientClosed, PayTabsClient
from paytabs_guard.adapters.paytabs.errors import (
    AmbiguousGatewayError,
    DuplicateRequest,
    PayTabsError,
    PayTabsUnavailable,
)
from paytabs_guard.adapters.paytabs.transformers import (
    FollowUpRequest,
    HostedPageRequest,
    PayTabsPaymentPage,
    PayTabsTransaction,
    TokenChargeRequest,
)
from paytabs_guard.domain.money import InvalidMoney, Money
from paytabs_guard.resilience import BreakerError, BreakerState, CallTimeout
from paytabs_guard.resilience.retry import RetryPolicy
from paytabs_guard.service.gateway_calls import write_leaving

T = TypeVar("T")


class Breaker(Protocol):
    """What this module needs of a circuit breaker (name and state for the attempt spans)."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> BreakerState: ...

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T: ...


@dataclass(frozen=True, slots=True)
class OperationBreakers:
    """One breaker per PayTabs operation family, so a sick query path does not stop payments."""

    create: Breaker
    query: Breaker
    follow_up: Breaker
    token: Breaker


def counts_against_gateway(error: BaseException) -> bool:
    """The breaker's failure predicate: only what says the gateway is unwell."""
    if isinstance(error, PayTabsError):
        return error.counts_against_gateway
    return isinstance(error, CallTimeout)


def went_unanswered(error: Exception) -> bool:
    """The breaker's ``is_unanswered``: PayTabs gave no answer in time (a read timeout), which
    the breaker judges as its own call timeout (old news once a later call was answered)."""
    return isinstance(error, PayTabsError) and error.unanswered


@dataclass(frozen=True, slots=True)
class PageOutcome:
    """Where a hosted page stands after ``create_payment_page``.

    ``redirect_url`` is None when the page was found by query after an ambiguous answer: PayTabs
    holds it, but its URL was lost with the answer, so the customer cannot be sent there. It
    expires unpaid after its TTL; the caller may open a new attempt under a new ``cart_id``.
    """

    tran_ref: str
    redirect_url: str | None
    resolved_by_query: bool
    page: PayTabsPaymentPage | None = None
    transaction: PayTabsTransaction | None = None


class ResilientPayTabs:
    """The PayTabs operations the service uses, each breaker-guarded and retried safely."""

    def __init__(
        self, client: PayTabsClient, breakers: OperationBreakers, retry: RetryPolicy
    ) -> None:
        self.client = client
        self.breakers = breakers
        self.retry = retry

    # --- reads ---------------------------------------------------------------------------------
    async def query_transaction(self, tran_ref: str) -> PayTabsTransaction:
        """What PayTabs holds for ``tran_ref`` (``TransactionNotFound`` when nothing)."""
        return await self._read(
            "query_transaction",
            self.breakers.query,
            lambda: self.client.query_transaction(tran_ref),
        )

    async def query_cart(self, cart_id: str) -> list[PayTabsTransaction]:
        """Every transaction of ``cart_id`` at PayTabs, oldest first (empty when none)."""
        return await self._read(
            "query_cart", self.breakers.query, lambda: self.client.query_cart(cart_id)
        )

    async def query_token(self, token: str) -> PayTabsTransaction:
        """The transaction that saved ``token`` (a card saved for recurring charges)."""
        return await self._read(
            "query_token", self.breakers.token, lambda: self.client.query_token(token)
        )

    async def delete_token(self, token: str) -> None:
        """Delete a saved card's ``token`` at PayTabs (past charges stay as they are)."""
        # deleting twice is harmless, so any gateway failure may be retried
        await self._read(
            "delete_token", self.breakers.token, lambda: self.client.delete_token(token)
        )

    # --- writes: never sent twice blind ----------------------------------------------------------
    async def create_payment_page(self, request: HostedPageRequest) -> PageOutcome:
        """A hosted page for ``request.cart_id``; at most one page per cart at PayTabs."""

        async def send() -> PageOutcome:
            page = await self.client.create_payment_page(request)
            return PageOutcome(page.tran_ref, page.redirect_url, resolved_by_query=False, page=page)

        async def resolve() -> PageOutcome | None:
            # A page of this cart for another amount is not this request's (a cart id used
            # again for a changed order): resolving to it would send the customer to pay the
            # old amount.
            found = [
                t
                for t in await self.query_cart(request.cart_id)
                if t.tran_type.lower() == request.tran_type.value and _for(t, request.amount)
            ]
            if not found:
                return None
            latest = found[-1]
            url = (latest.model_extra or {}).get("redirect_url")
            return PageOutcome(
                latest.tran_ref,
                url if isinstance(url, str) and url else None,
                resolved_by_query=True,
                transaction=latest,
            )

        return await self._write_once("create_payment_page", self.breakers.create, send, resolve)

    async def follow_up(
        self, request: FollowUpRequest, *, known_tran_refs: Collection[str] | None = None
    ) -> PayTabsTransaction:
        """Capture, void, refund or release exactly once.

        ``known_tran_refs`` are follow-ups of this cart already on record, so that an earlier,
        legitimate refund of the same amount is not mistaken for this one after an ambiguous
        answer. Without them (None), the cart's transactions are queried before the first
        send, and those already at PayTabs are the known ones: one query more, and a second
        refund of the same amount is never taken for the first.
        """
        known = await self._known(request.cart_id, known_tran_refs)
        twins: dict[str, None] = {}  # earlier ones PayTabs may take this request for

        def send() -> Awaitable[PayTabsTransaction]:
            return self.client.follow_up(request)

        async def resolve() -> PayTabsTransaction | None:
            for transaction in reversed(await self.query_cart(request.cart_id)):
                if (
                    transaction.tran_type.lower() == request.kind.value
                    and transaction.previous_tran_ref == request.tran_ref
                    and _for(transaction, request.amount)
                ):
                    if transaction.tran_ref not in known:
                        return transaction
                    twins[transaction.tran_ref] = None
            return None

        try:
            return await self._write_once(
                f"follow_up {request.kind.value}",
                self.breakers.follow_up,
                send,
                resolve,
                moves_money=True,
            )
        except DuplicateRequest as refused:
            _explain_duplicate(refused, request.kind.value, twins)
            raise

    async def charge_token(
        self, request: TokenChargeRequest, *, known_tran_refs: Collection[str] | None = None
    ) -> PayTabsTransaction:
        """A recurring charge with a saved token, exactly once per ``cart_id``.

        ``known_tran_refs`` as for :meth:`follow_up`: without them, a cart id used again (last
        month's charge of the same amount) is queried first, so that it is not taken for this
        charge after an ambiguous answer."""
        known = await self._known(request.cart_id, known_tran_refs)
        twins: dict[str, None] = {}

        def send() -> Awaitable[PayTabsTransaction]:
            return self.client.charge_token(request)

        async def resolve() -> PayTabsTransaction | None:
            for transaction in reversed(await self.query_cart(request.cart_id)):
                if transaction.tran_type.lower() == request.tran_type.value and _for(
                    transaction, request.amount
                ):
                    if transaction.tran_ref not in known:
                        return transaction
                    twins[transaction.tran_ref] = None
            return None

        try:
            return await self._write_once(
                "charge_token", self.breakers.token, send, resolve, moves_money=True
            )
        except DuplicateRequest as refused:
            _explain_duplicate(refused, f"{request.tran_type.value} charge", twins)
            raise

    async def _known(self, cart_id: str, given: Collection[str] | None) -> Collection[str]:
        """The transactions of ``cart_id`` already at PayTabs before this write: ``given``,
        or, when the caller keeps no record, what a query finds now. When the query cannot be
        made (its breaker open, PayTabs' query path down) the write goes out anyway, so a sick
        query path does not stop refunds: its resolution then tells an earlier follow-up from
        this one by amount alone."""
        if given is not None:
            return given
        try:
            return frozenset(t.tran_ref for t in await self.query_cart(cart_id))
        except (PayTabsUnavailable, BreakerError):
            return frozenset()

    # --- the two loops ---------------------------------------------------------------------------
    async def _read(self, operation: str, breaker: Breaker, fetch: Callable[[], Awaitable[T]]) -> T:
        # Before the breaker: an open one answered CircuitOpenError to a closed client, as if
        # PayTabs were down, instead of naming the caller's mistake.
        self.client.ensure_open()
        number = 0

        def attempt() -> Awaitable[T]:
            nonlocal number
            number += 1
            return _attempt(operation, number, breaker, fetch)

        return await self.retry.call(
            attempt, is_retryable=_is_gateway_failure, retry_after=_retry_after
        )

    async def _write_once(
        self,
        operation: str,
        breaker: Breaker,
        send: Callable[[], Awaitable[T]],
        resolve: Callable[[], Awaitable[T | None]],
        *,
        moves_money: bool = False,
    ) -> T:
        self.client.ensure_open()  # before the breaker, as in _read
        attempts = self.retry.start()
        number = 0
        # The first attempt whose outcome was unknown and that a query did not find. PayTabs
        # holding nothing *yet* does not prove it never will: that request may still be on its
        # way and land after the query. Once there is one, the write can end only in what a
        # later attempt or query shows, or as unknown (reconciliation settles it), never as
        # "nothing was sent": the caller would let the merchant pay again.
        unclear: PayTabsError | None = None
        while True:
            number += 1
            write_leaving(operation)
            try:
                return await _attempt(operation, number, breaker, send)
            except (BreakerError, ClientClosed) as rejected:
                if unclear is None:
                    raise
                raise _still_unclear(unclear, rejected) from rejected
            except PayTabsError as error:
                # A 429/503 answer: PayTabs (or what stands before it) had the request whole.
                answered = moves_money and error.retry_safe and error.http_status is not None
                if error.needs_resolution or answered:
                    try:
                        found = await resolve()
                    except (PayTabsError, BreakerError, ClientClosed) as query_error:
                        # Cannot tell whether it happened: report the ambiguity, never guess.
                        # (Closed while the write was out: a "closed" RuntimeError would read
                        # as a call that never left, and a caller would make it again.)
                        error.add_note(f"resolution by query failed: {query_error!r}")
                        if answered:
                            raise _may_have_landed(error) from query_error
                        raise error from query_error
                    if found is not None:
                        return found
                    # Not at PayTabs now: a re-send is safe (PayTabs refuses a duplicate of
                    # a request that lands late, and the query then finds the one it took).
                    # An answered 429/503 is over at PayTabs: one not found did not happen.
                    if not answered:
                        unclear = unclear or error
                elif not error.retry_safe:
                    if unclear is not None:
                        raise _still_unclear(unclear, error) from error
                    raise
                delay = attempts.next_delay(error.retry_after)
                if delay is None:
                    error.add_note(f"retry stopped: {attempts.stop_reason}")
                    if unclear is not None and unclear is not error:
                        raise _still_unclear(unclear, error) from error
                    raise
                await attempts.wait(delay)


def _explain_duplicate(refused: DuplicateRequest, what: str, twins: Collection[str]) -> None:
    """Say why PayTabs refused a write as a duplicate when the cart already held one of the
    same amount from before the call (a second refund of an equal amount, say): PayTabs
    refuses a request identical to one it took, for a while, and only the description may
    tell the two apart. Without this, a caller read the 409 as "this one may have landed"."""
    if twins:
        refused.add_note(
            f"PayTabs already held {', '.join(twins)}, a {what} of the same amount from before "
            "this call, and refuses an identical request (same amount and description) for a "
            "while: if this is another one, give it a description of its own"
        )


def _for(transaction: PayTabsTransaction, amount: Money) -> bool:
    """Whether ``transaction`` is for ``amount`` (its cart amount and currency)."""
    try:
        return Money.parse_gateway(transaction.cart_amount, transaction.cart_currency) == amount
    except InvalidMoney:
        return False


def _may_have_landed(answer: PayTabsError) -> AmbiguousGatewayError:
    """A 429/503 to a money-moving write that no query could check: its outcome is unknown."""
    unknown = AmbiguousGatewayError(
        f"PayTabs answered HTTP {answer.http_status} and could not be asked whether the "
        "request took effect",
        operation=answer.operation,
        http_status=answer.http_status,
    )
    for note in getattr(answer, "__notes__", ()):
        unknown.add_note(note)
    return unknown


def _still_unclear(unclear: PayTabsError, last: BaseException) -> PayTabsError:
    """The earlier unclear attempt, told how the write ended: its outcome is still unknown."""
    unclear.add_note(f"a later attempt ended with {last!r}; the first may still take effect")
    return unclear


async def _guarded(breaker: Breaker, fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return await breaker.call(fn)
    except CallTimeout as timeout:
        # The breaker cancelled the call after sending: the outcome is unknown.
        raise AmbiguousGatewayError(str(timeout), operation="timeout") from timeout


def _attempt(
    operation: str, number: int, breaker: Breaker, fn: Callable[[], Awaitable[T]]
) -> Awaitable[T]:
    """One attempt through ``breaker``; while tracing, in a client span of its own."""
    if not tracing.ENABLED:
        return _guarded(breaker, fn)
    return _traced_attempt(operation, number, breaker, fn)


async def _traced_attempt(
    operation: str, number: int, breaker: Breaker, fn: Callable[[], Awaitable[T]]
) -> T:
    # a breaker's rejection gets its span too: the trace shows the call that never left
    with tracing.span(f"PayTabs {operation}", "client") as span:
        span.set("paytabs.operation", operation)
        span.set("paytabs.attempt", number)
        span.set("paytabs.retry", number - 1)
        span.set("paytabs.breaker.name", breaker.name)
        span.set("paytabs.breaker.state", breaker.state.value)
        try:
            result = await _guarded(breaker, fn)
        except BaseException as error:
            span.set("paytabs.outcome", type(error).__name__)
            raise
        span.set("paytabs.outcome", "ok")
        return result


def _is_gateway_failure(error: BaseException) -> bool:
    return isinstance(error, PayTabsUnavailable)


def _retry_after(error: BaseException) -> float | None:
    return error.retry_after if isinstance(error, PayTabsError) else None
