"""Why a payment attempt failed, in the shape Stripe users know (``last_payment_error``).

PayTabs reports a failed transaction as a status letter (``D`` declined, ``E`` error, ``X``
expired, ``C`` cancelled) with the acquirer's response code and message. The message is shown
as PayTabs sent it; the *decline category* groups codes into a few stable words a merchant can
act on (ask for another card, retry later, nothing to do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .gateway_results import GatewayStatus

# ISO 8583 response codes as PayTabs passes them on, and PayTabs' own three-digit codes.
_BY_CODE: Final[dict[str, str]] = {
    "05": "do_not_honor",
    "51": "insufficient_funds",
    "54": "expired_card",
    "14": "invalid_card_number",
    "41": "lost_or_stolen_card",
    "43": "lost_or_stolen_card",
    "57": "transaction_not_allowed",
    "62": "transaction_not_allowed",
    "61": "limit_exceeded",
    "65": "limit_exceeded",
    "82": "incorrect_cvc",
    "N7": "incorrect_cvc",
    "59": "suspected_fraud",
    "325": "merchant_limits_exceeded",
}
_BY_STATUS: Final[dict[GatewayStatus, str]] = {
    GatewayStatus.DECLINED: "card_declined",
    GatewayStatus.ERROR: "processing_error",
    GatewayStatus.EXPIRED: "expired",
    GatewayStatus.CANCELLED: "cancelled_by_customer",
}
FAILED_STATUSES: Final = frozenset(_BY_STATUS)


@dataclass(frozen=True, slots=True)
class PaymentError:
    """The last failed attempt: PayTabs' ``code`` and ``message``, and a ``decline_category``."""

    code: str
    message: str
    decline_category: str
    status: GatewayStatus


def payment_error(status: GatewayStatus, code: str, message: str) -> PaymentError:
    """The error of a failed transaction (``status`` one of ``FAILED_STATUSES``)."""
    if status is GatewayStatus.CANCELLED:
        category = _BY_STATUS[status]  # a customer's cancel is not the card's fault
    else:
        category = _BY_CODE.get(code.strip().upper(), _BY_STATUS[status])
    return PaymentError(code=code, message=message, decline_category=category, status=status)
