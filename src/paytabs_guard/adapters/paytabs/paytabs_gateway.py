"""PayTabs as the service's ``Gateway`` port: domain in, domain out, errors translated in one
place. Domain values become PayTabs requests here; answers go back through ``transformers``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractContextManager
from typing import Literal, TypeVar

from paytabs_guard.adapters.paytabs.errors import (
    AuthenticationFailed,
    InvalidRequest,
    PayTabsError,
    PayTabsUnavailable,
)
from paytabs_guard.adapters.paytabs.resilient import ResilientPayTabs
from paytabs_guard.adapters.paytabs.transformers import (
    Address,
    FollowUpRequest,
    HostedPageRequest,
    PageTranType,
    PayTabsTransaction,
    TokenChargeRequest,
    UnusableTransaction,
    to_gateway_result,
)
from paytabs_guard.domain import FollowUpType, GatewayResult, Money, Payment, ResultSource, TranType
from paytabs_guard.resilience import BreakerRegistry, CircuitOpenError
from paytabs_guard.service.gateway import (
    GatewayNotReached,
    GatewayOutcomeUnknown,
    GatewayRejected,
    GatewayTurnedAway,
    PageDetails,
    PageOpened,
)

T = TypeVar("T")


class PayTabsGateway:
    """Implements ``service.gateway.Gateway`` with the resilient PayTabs client."""

    def __init__(
        self,
        paytabs: ResilientPayTabs,
        breakers: BreakerRegistry,
        *,
        follow_up_callback_url: str | None = None,
    ) -> None:
        self._paytabs = paytabs
        self._breakers = breakers
        self._follow_up_callback_url = follow_up_callback_url
        self._profile_id = paytabs.client.profile_id

    def unavailable_for(self, operation: str) -> float | None:
        # Open, forced open, or half-open with every trial slot taken: the call would be
        # rejected, so say so before any work (a snapshot would miss the half-open case).
        return self._breakers.get(operation).rejection_wait()

    def turn_away(self, operation: str) -> float | None:
        breaker = self._breakers.get(operation)
        if breaker.rejection_wait() is None:
            return None
        return breaker.count_turned_away()

    def reserve(self, operation: str) -> AbstractContextManager[object]:
        try:
            return self._breakers.get(operation).reserve()
        except CircuitOpenError as open_circuit:
            raise GatewayTurnedAway(
                str(open_circuit), retry_after=open_circuit.retry_after_seconds
            ) from None

    async def wait_available(self, operation: str, max_wait: float) -> bool:
        return await self._breakers.get(operation).wait_admitting(max_wait)

    async def open_page(self, payment: Payment, details: PageDetails) -> PageOpened:
        customer = details.customer
        is_auth = payment.tran_type is TranType.AUTH
        request = HostedPageRequest(
            cart_id=payment.cart_id,
            amount=payment.amount,
            description=payment.description,
            tran_type=PageTranType.AUTH if is_auth else PageTranType.SALE,
            callback_url=details.callback_url,
            return_url=details.return_url,
            customer=None
            if customer is None
            else Address(
                name=customer.name,
                email=customer.email,
                phone=customer.phone,
                street1=customer.street,
                city=customer.city,
                country=customer.country,
                zip=customer.zip,
                ip=customer.ip,
            ),
            paypage_lang=_language(details.language),
            paypage_ttl_minutes=details.ttl_minutes,
            # 2: PayTabs' default token format; issued only for an authorised card payment
            tokenise=2 if details.save_card else None,
        )
        outcome = await _translated(lambda: self._paytabs.create_payment_page(request))
        found = None
        if outcome.transaction is not None:
            found = self._result(outcome.transaction, ResultSource.QUERY)
        return PageOpened(outcome.tran_ref, outcome.redirect_url, found)

    async def transactions(self, cart_id: str) -> Sequence[GatewayResult]:
        found = await _translated(lambda: self._paytabs.query_cart(cart_id))
        return [self._result(transaction, ResultSource.QUERY) for transaction in found]

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
        request = FollowUpRequest(
            kind=kind,
            tran_ref=parent_tran_ref,
            cart_id=payment.cart_id,
            amount=amount,
            # PayTabs refuses an identical request within its duplicate window: the sequence
            # keeps a second, legitimate refund of the same amount from looking like one
            description=f"{kind.value} {sequence} of {payment.cart_id}",
            callback_url=self._follow_up_callback_url,
        )
        answer = await _translated(
            lambda: self._paytabs.follow_up(request, known_tran_refs=known_tran_refs)
        )
        return self._result(answer, ResultSource.API)

    async def charge_token(
        self, payment: Payment, *, token: str, token_tran_ref: str, callback_url: str
    ) -> GatewayResult:
        request = TokenChargeRequest(
            token=token,
            tran_ref=token_tran_ref,
            cart_id=payment.cart_id,
            amount=payment.amount,
            description=payment.description,
            callback_url=callback_url,
        )
        # The cart id is this payment's own, charged once: PayTabs holds nothing of it before
        # this charge, so no query first to learn what is already there.
        answer = await _translated(lambda: self._paytabs.charge_token(request, known_tran_refs=()))
        return self._result(answer, ResultSource.API)

    async def delete_token(self, token: str) -> None:
        await _translated(lambda: self._paytabs.delete_token(token))

    def _result(self, transaction: PayTabsTransaction, source: ResultSource) -> GatewayResult:
        try:
            return to_gateway_result(transaction, source, profile_id=self._profile_id)
        except UnusableTransaction as error:
            raise GatewayOutcomeUnknown(f"unusable answer from PayTabs: {error}") from error


def _language(language: str | None) -> Literal["en", "ar"] | None:
    if language == "en":
        return "en"
    if language == "ar":
        return "ar"
    return None


async def _translated(call: Callable[[], Awaitable[T]]) -> T:
    """PayTabs' error classes -> what the use case may conclude."""
    try:
        return await call()
    except CircuitOpenError as open_circuit:
        raise GatewayNotReached(
            str(open_circuit), retry_after=open_circuit.retry_after_seconds
        ) from open_circuit
    except (InvalidRequest, AuthenticationFailed) as refused:
        raise GatewayRejected(refused.message, refused.code) from refused
    except PayTabsError as failure:
        if failure.retry_safe and isinstance(failure, PayTabsUnavailable):
            raise GatewayNotReached(failure.message, failure.retry_after) from failure
        raise GatewayOutcomeUnknown(failure.message) from failure
