"""Pure conversions: PayTabs wire objects -> domain values. The domain never sees PayTabs JSON."""

from __future__ import annotations

import re
from datetime import datetime

from paytabs_guard.adapters.paytabs.wire import PaymentInfo, Transaction
from paytabs_guard.domain import (
    CardDetails,
    GatewayResult,
    GatewayStatus,
    Money,
    ResultSource,
    TranType,
)

_LAST_FOUR = re.compile(r"([0-9]{4})\s*$")


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


def _month_or_year(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def card_details(info: PaymentInfo | None) -> CardDetails | None:
    """Scheme, last four digits and expiry from ``payment_info`` (``expiryMonth`` and
    ``expiryYear`` are extra fields in PayTabs' answers); None when it says nothing."""
    if info is None:
        return None
    extra = info.model_extra or {}
    last_four = _LAST_FOUR.search(info.payment_description or "")
    return CardDetails(
        scheme=(info.card_scheme or None) and info.card_scheme[:32],
        last_four=last_four.group(1) if last_four else None,
        expiry_month=_month_or_year(extra.get("expiryMonth")),
        expiry_year=_month_or_year(extra.get("expiryYear")),
    )


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
        card=card_details(transaction.payment_info),
    )
