"""What the use cases need from the payment gateway, in domain terms (implemented by the PayTabs
adapter, ``adapters/paytabs/paytabs_gateway.py``).

Errors say what the caller can conclude, which is all a use case needs to decide::

    GatewayError
    ├── GatewayRejected       the gateway refused the request: nothing happened, sending it
    │                         again gives the same answer (invalid request, credentials).
    ├── GatewayNotReached    nothing happened and the gateway could not be asked (breaker
    │   │                     open, connection refused, 503): try later (``retry_after``).
    │   └── GatewayTurnedAway the breaker turned the call away when asked, before the caller
    │                         stored or sent anything.
    └── GatewayOutcomeUnknown it may have happened and we could not find out yet: record the
                              uncertainty and resolve it by query later; never re-send blind.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from paytabs_guard.domain import FollowUpType, GatewayResult, Money, Operation, Payment


class GatewayError(Exception):
    """Base of what a gateway call can conclude besides a result."""


class GatewayRejected(GatewayError):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class GatewayNotReached(GatewayError):
    """Nothing was sent: PayTabs could not be reached, or its circuit turned the call away.
    (Not the library's ``paytabs_guard.GatewayUnavailable``, PayTabs' own failure classes.)"""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        #: The payment stored as failed for this attempt, when one was (``save_unanswered``).
        self.payment_id: str | None = None


class GatewayTurnedAway(GatewayNotReached):
    """The breaker's answer to being asked ahead (``ensure_available``, ``Gateway.reserve``):
    the caller has stored and sent nothing."""


class GatewayOutcomeUnknown(GatewayError):
    pass


@dataclass(frozen=True, slots=True)
class Customer:
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    country: str | None = None
    city: str | None = None
    street: str | None = None
    zip: str | None = None
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class PageDetails:
    """What the hosted page needs besides the payment itself."""

    callback_url: str
    return_url: str
    customer: Customer | None = None
    language: str | None = None
    ttl_minutes: int | None = None
    save_card: bool = False
    """Ask PayTabs for a token of the card that pays (``tokenise``)."""


@dataclass(frozen=True, slots=True)
class PageOpened:
    """A hosted page for the payment's current cart id.

    ``redirect_url`` is None when the page was found by query after an ambiguous answer: the
    gateway holds it but its URL was lost, so the customer can never reach it.
    """

    tran_ref: str
    redirect_url: str | None
    found: GatewayResult | None = None


class Gateway(Protocol):
    def unavailable_for(self, operation: Operation) -> float | None:
        """Seconds until ``operation`` (a breaker family) may be tried again,
        when its circuit is open; None when it may be tried now."""
        ...

    def turn_away(self, operation: Operation) -> float | None:
        """``unavailable_for``, for a call the caller turns away when it answers a wait: the
        breaker counts that call as one it rejected (its stats and reject event), as it would
        have had the call been made."""
        ...

    def reserve(self, operation: Operation) -> AbstractContextManager[object]:
        """Admit a call of ``operation`` now, ahead of the work that ends in it.

        Raises GatewayTurnedAway (counted as ``turn_away`` counts it) when the breaker would
        turn the call away. Otherwise returns a context manager within which this task's next
        call of ``operation`` is the call admitted now: in half-open, a trial slot taken now,
        so that a crowd arriving at once cannot all pass the check, store their payments and
        only then be turned away. A slot unused when the block ends (the caller left before
        calling: a replay, a refused card, an error) is given back."""
        ...

    async def wait_available(self, operation: Operation, max_wait: float) -> bool:
        """Sleep until ``operation`` may be tried (its circuit closes or admits a trial), at
        most ``max_wait`` seconds; True when it may. Costs no CPU while it waits."""
        ...

    async def open_page(self, payment: Payment, details: PageDetails) -> PageOpened: ...

    async def transactions(self, cart_id: str) -> Sequence[GatewayResult]:
        """Every transaction the gateway holds for ``cart_id``, oldest first."""
        ...

    async def follow_up(
        self,
        payment: Payment,
        kind: FollowUpType,
        amount: Money,
        *,
        parent_tran_ref: str,
        known_tran_refs: Collection[str],
        sequence: int = 1,
    ) -> GatewayResult:
        """Send one follow-up. ``sequence`` numbers this kind of follow-up for the payment, so
        two legitimate refunds differ while re-sends of one stay identical."""
        ...

    async def charge_token(
        self, payment: Payment, *, token: str, token_tran_ref: str, callback_url: str
    ) -> GatewayResult:
        """Charge a saved card (PayTabs' recurring sale, no page) for the payment's cart, once:
        an ambiguous answer is resolved by querying the cart before anything is re-sent."""
        ...

    async def delete_token(self, token: str) -> None:
        """Delete a saved card's token at the gateway (GatewayRejected: it holds no such token)."""
        ...


def ensure_available(gateway: Gateway, operation: Operation) -> None:
    """The breaker check, before anything is stored or sent: GatewayTurnedAway (with the
    wait) when ``operation``'s circuit would turn the call away. Graceful degradation: no row,
    no gateway call, an answer in microseconds. It holds nothing: work that ends in the call
    admits with ``Gateway.reserve`` (the half-open trial slots may be gone by then)."""
    wait = gateway.turn_away(operation)
    if wait is not None:
        raise GatewayTurnedAway("PayTabs is unavailable (circuit open)", retry_after=wait)
