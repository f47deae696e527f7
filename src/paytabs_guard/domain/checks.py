"""Input checks of the Payment aggregate: raised before anything changes or leaves."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Final

from .errors import CurrencyMismatch, InvalidPaymentRequest
from .gateway_results import TranType
from .money import Money

if TYPE_CHECKING:
    from .payment import Payment

MAX_CART_ID_LENGTH: Final = 64  # PayTabs rejects longer cart ids (error 101)
MAX_DESCRIPTION_LENGTH: Final = 128  # PayTabs rejects longer descriptions (error 102)


def require_aware(at: datetime) -> None:
    """Every time the domain records is aware: a naive one would compare wrongly with UTC."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at!r} has no timezone; pass an aware datetime (UTC)")


def optional_aware(at: datetime | None) -> datetime | None:
    """``at`` after ``require_aware``, or None."""
    if at is not None:
        require_aware(at)
    return at


def check_cart_id(cart_id: str) -> None:
    """A cart id PayTabs accepts."""
    if not cart_id.strip() or len(cart_id) > MAX_CART_ID_LENGTH:
        raise InvalidPaymentRequest(
            "cart_id", f"must be 1 to {MAX_CART_ID_LENGTH} characters, got {len(cart_id)}"
        )


def check_positive(amount: Money) -> None:
    """Nobody pays, captures or refunds nothing (or less)."""
    if amount.minor_units <= 0:
        raise InvalidPaymentRequest("amount", f"must be more than zero, got {amount}")


def check_new_payment(payment: Payment) -> None:
    """What ``Payment.create`` requires of a new payment (checked before anyone sees it)."""
    id, cart_id, description = payment.id, payment.cart_id, payment.description
    if not id.strip():
        raise InvalidPaymentRequest("id", "must not be empty")
    check_cart_id(cart_id)
    if not description.strip() or len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidPaymentRequest(
            "description",
            f"must be 1 to {MAX_DESCRIPTION_LENGTH} characters, got {len(description)}",
        )
    if payment.profile_id <= 0:
        raise InvalidPaymentRequest(
            "profile_id", f"must be a PayTabs profile id, got {payment.profile_id}"
        )
    check_positive(payment.amount)
    if payment.tran_type not in (TranType.SALE, TranType.AUTH):
        raise InvalidPaymentRequest("tran_type", f"must be sale or auth, got {payment.tran_type}")


def check_operation_amount(payment_amount: Money, amount: Money) -> None:
    """A capture or refund amount: the payment's currency, more than zero."""
    if amount.currency != payment_amount.currency:
        raise CurrencyMismatch(payment_amount.currency, amount.currency)
    check_positive(amount)
