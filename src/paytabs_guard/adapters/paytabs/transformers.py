"""Pure conversions: PayTabs wire objects -> domain values. The domain never sees PayTabs JSON."""

from __future__ import annotations

from datetime import datetime

from paytabs_guard.adapters.paytabs.wire import Transaction
from paytabs_guard.domain import GatewayResult, GatewayStatus, Money, ResultSource, TranType


class UnusableTransaction(ValueError):
    """A transaction object that cannot become a gateway result (says which field and why)."""


def _time(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None  # the event time is informative only; a bad one never blocks a result
    return parsed if parsed.tzinfo is not None else None


def _charged(transaction: Transaction) -> Money:
    """``tran_total`` in ``tran_currency``: what PayTabs charged. Before payment PayTabs sends
    an empty currency and "0"; that is a zero charge (in the cart's currency), never "unknown"."""
    total = transaction.tran_total.strip()
    currency = transaction.tran_currency.strip() or transaction.cart_currency
    if not total:
        total = "0"
    return Money.parse_gateway(total, currency)


def to_gateway_result(
    transaction: Transaction, source: ResultSource, *, profile_id: int | None = None
) -> GatewayResult:
    """The domain's view of one PayTabs transaction (callback, query or follow-up answer).

    ``profile_id`` stands in when the object carries none (some direct answers omit it).
    """
    result = transaction.payment_result
    try:
        status = GatewayStatus.parse(result.response_status) if result is not None else None
        tran_type = TranType.parse(transaction.tran_type)
        amount = Money.parse_gateway(transaction.cart_amount, transaction.cart_currency)
        charged = _charged(transaction)
    except ValueError as error:
        raise UnusableTransaction(str(error)) from None
    owner = transaction.profile_id if transaction.profile_id is not None else profile_id
    if owner is None:
        raise UnusableTransaction("profile_id is missing")
    return GatewayResult(
        tran_ref=transaction.tran_ref,
        previous_tran_ref=transaction.previous_tran_ref,
        cart_id=transaction.cart_id,
        profile_id=owner,
        tran_type=tran_type,
        status=status,
        amount=amount,
        source=source,
        response_code=result.response_code if result else "",
        response_message=result.response_message if result else "",
        transaction_time=_time(result.transaction_time if result else None),
        token=transaction.token,
        charged=charged,
    )
