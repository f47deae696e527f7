"""An in-memory PayTabs behind the ``Gateway`` port (``paytabs_guard.service.gateway``).

It keeps what PayTabs would keep, per cart: the page and every follow-up, so a query
(``transactions``) tells the truth about what happened. A test plays the customer with
:meth:`FakeGateway.pay` (which returns the callback PayTabs would send) and scripts trouble
with :meth:`FakeGateway.fail_next` (the next call of an operation raises the given error),
:meth:`FakeGateway.lose_next_answer` (the next follow-up is done, then its answer is lost) or
:attr:`FakeGateway.open_circuits`, and settles a pending transaction with
:meth:`FakeGateway.settle`. Like PayTabs it refuses a refund beyond what was captured
and answers a re-sent follow-up (same parent, kind and sequence) with the same transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from paytabs_guard.domain import (
    FollowUpType,
    GatewayResult,
    GatewayStatus,
    Money,
    Payment,
    TranType,
)
from paytabs_guard.domain.gateway_results import ResultSource
from paytabs_guard.service.gateway import (
    Gateway,
    GatewayError,
    GatewayRejected,
    GatewayTurnedAway,
    PageDetails,
    PageOpened,
)

PAGE_BASE = "https://paytabs.invalid/payment/page/"


@dataclass
class FakeGateway:
    """One merchant profile's view of an in-memory PayTabs."""

    open_circuits: dict[str, float] = field(default_factory=dict)
    """operation -> seconds until it may be tried again (an open breaker)."""
    carts: dict[str, list[GatewayResult]] = field(default_factory=dict)
    pages: list[PageDetails] = field(default_factory=list)
    """What every opened page was asked for, in order."""
    tokens: set[str] = field(default_factory=set)
    follow_up_status: GatewayStatus = GatewayStatus.AUTHORIZED
    """How follow-ups are answered (PENDING: a refund the acquirer settles later)."""
    _failures: dict[str, list[GatewayError]] = field(default_factory=dict)
    _lost_answers: list[GatewayError] = field(default_factory=list)
    _follow_ups: dict[tuple[str, FollowUpType, int], GatewayResult] = field(default_factory=dict)
    _sequence: int = 0

    def fail_next(self, operation: str, error: GatewayError) -> None:
        """The next ``operation`` call ("create", "query", "follow_up", "charge") raises."""
        self._failures.setdefault(operation, []).append(error)

    def lose_next_answer(self, error: GatewayError) -> None:
        """The next follow-up is done and recorded, then ``error`` is raised instead of its
        answer (what an ambiguous failure after the work looks like to the service)."""
        self._lost_answers.append(error)

    def settle(self, tran_ref: str, status: GatewayStatus = GatewayStatus.AUTHORIZED) -> None:
        """PayTabs decides a pending transaction later (and its callback, if any, is lost)."""
        for cart in self.carts.values():
            for index, known in enumerate(cart):
                if known.tran_ref == tran_ref:
                    cart[index] = dataclasses.replace(known, status=status)
                    return
        raise KeyError(tran_ref)

    def follow_ups_sent(self) -> int:
        """Follow-ups PayTabs took (re-sends of one answered with it are not counted)."""
        return len(self._follow_ups)

    def pay(self, cart_id: str, status: GatewayStatus = GatewayStatus.AUTHORIZED) -> GatewayResult:
        """The customer finishes the page of ``cart_id``; returns PayTabs' callback for it."""
        page = self.carts[cart_id][0]
        paid = dataclasses.replace(
            page, status=status, source=ResultSource.CALLBACK, charged=page.amount
        )
        self.carts[cart_id][0] = paid
        return paid

    # ---- the Gateway port --------------------------------------------------------------------

    def unavailable_for(self, operation: str) -> float | None:
        return self.open_circuits.get(operation)

    def turn_away(self, operation: str) -> float | None:
        return self.unavailable_for(operation)

    def reserve(self, operation: str) -> contextlib.AbstractContextManager[object]:
        wait = self.turn_away(operation)
        if wait is not None:
            raise GatewayTurnedAway("circuit open", retry_after=wait)
        return contextlib.nullcontext()

    async def wait_available(self, operation: str, max_wait: float) -> bool:
        wait = self.open_circuits.get(operation)
        return wait is None or wait <= max_wait

    async def open_page(self, payment: Payment, details: PageDetails) -> PageOpened:
        self._raise_scripted("create")
        self.pages.append(details)
        page = self._record(payment, status=None, source=ResultSource.QUERY)
        return PageOpened(tran_ref=page.tran_ref, redirect_url=PAGE_BASE + page.tran_ref)

    async def transactions(self, cart_id: str) -> Sequence[GatewayResult]:
        self._raise_scripted("query")
        return [
            dataclasses.replace(r, source=ResultSource.QUERY) for r in self.carts.get(cart_id, [])
        ]

    async def follow_up(
        self,
        payment: Payment,
        kind: FollowUpType,
        amount: Money,
        *,
        parent_tran_ref: str,
        known_tran_refs: Collection[str],  # noqa: ARG002 - PayTabs keeps its own records
        sequence: int = 1,
    ) -> GatewayResult:
        self._raise_scripted("follow_up")
        resent = self._follow_ups.get((parent_tran_ref, kind, sequence))
        if resent is not None:
            return resent
        cart = self.carts.get(payment.cart_id, [])
        if kind is FollowUpType.REFUND and self._refundable(cart, amount) < amount:
            raise GatewayRejected("Refund amount exceeds the captured amount", code=321)
        result = self._record(
            payment,
            status=self.follow_up_status,
            tran_type=TranType(kind.value),
            amount=amount,
            previous_tran_ref=parent_tran_ref,
        )
        self._follow_ups[(parent_tran_ref, kind, sequence)] = result
        if self._lost_answers:
            raise self._lost_answers.pop(0)
        return result

    async def charge_token(
        self,
        payment: Payment,
        *,
        token: str,
        token_tran_ref: str,  # noqa: ARG002 - the token alone identifies the card here
        callback_url: str,  # noqa: ARG002 - no callbacks are sent by this fake
    ) -> GatewayResult:
        self._raise_scripted("charge")
        if token not in self.tokens:
            raise GatewayRejected("Invalid token", code=206)
        return self._record(payment, charged=payment.amount)

    async def delete_token(self, token: str) -> None:
        if token not in self.tokens:
            raise GatewayRejected("Invalid token", code=206)
        self.tokens.remove(token)

    # ---- helpers -----------------------------------------------------------------------------

    def _raise_scripted(self, operation: str) -> None:
        queued = self._failures.get(operation)
        if queued:
            raise queued.pop(0)

    def _record(
        self,
        payment: Payment,
        *,
        status: GatewayStatus | None = GatewayStatus.AUTHORIZED,
        source: ResultSource = ResultSource.API,
        tran_type: TranType | None = None,
        amount: Money | None = None,
        previous_tran_ref: str | None = None,
        charged: Money | None = None,
    ) -> GatewayResult:
        """A new transaction of ``payment``'s cart, kept as PayTabs keeps it."""
        self._sequence += 1
        result = GatewayResult(
            tran_ref=f"TST2{self._sequence:011d}",
            cart_id=payment.cart_id,
            profile_id=payment.profile_id,
            tran_type=tran_type or payment.tran_type,
            status=status,
            amount=amount or payment.amount,
            source=source,
            previous_tran_ref=previous_tran_ref,
            charged=charged,
        )
        self.carts.setdefault(payment.cart_id, []).append(result)
        return result

    @staticmethod
    def _refundable(cart: Sequence[GatewayResult], like: Money) -> Money:
        """Captured minus refunded so far, in the currency of ``like``."""
        captured = [
            r.amount
            for r in cart
            if r.status is GatewayStatus.AUTHORIZED
            and r.tran_type in (TranType.SALE, TranType.CAPTURE)
        ]
        refunded = [  # a pending refund is on its way back: not refundable again
            r.amount
            for r in cart
            if r.status in (GatewayStatus.AUTHORIZED, GatewayStatus.PENDING)
            and r.tran_type is TranType.REFUND
        ]
        total = like - like
        for amount in captured:
            total = total + amount
        for amount in refunded:
            total = total - amount
        return total


def as_gateway(fake: FakeGateway) -> Gateway:
    """The fake as the port it implements (mypy checks it here)."""
    return fake
