"""Test cards: which number gives which outcome, and how a card is checked and masked.

The full card number and the CVV never leave this module: callers get a CardInfo holding only
the masked number (``4111 11## #### 1111``), scheme and expiry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

ResponseStatus = Literal["A", "H", "P", "V", "E", "D", "X", "C"]


@dataclass(frozen=True)
class CardOutcome:
    """The result a payment gets; ``response_code`` None means a fresh ``G`` + 5 digits code."""

    response_status: ResponseStatus
    response_code: str | None
    response_message: str
    needs_3ds: bool = False


AUTHORISED = CardOutcome("A", None, "Authorised")
DO_NOT_HONOUR = CardOutcome("D", "05", "Do not honour")
CANCELLED = CardOutcome("C", "321", "Cancelled")
MERCHANT_LIMITS_EXCEEDED = CardOutcome("D", "325", "Merchant limits exceeded")
PENDING = CardOutcome("P", "100", "Pending")
# X: a transaction that expired unpaid (an APM payment request), never the card's expiry.
EXPIRED = CardOutcome("X", "54", "Expired")
# A card past its expiry: the issuer's decline, whose reason PayTabs puts in response_code for
# D and E (54: expired card, the ISO 8583 code). The test card below and a charge on a saved
# card past its expiry month both get it.
CARD_EXPIRED = CardOutcome("D", "54", "Expired card")

TEST_CARDS: dict[str, CardOutcome] = {
    "4111111111111111": AUTHORISED,
    "5200000000000114": AUTHORISED,
    "4000000000000002": CardOutcome("A", None, "Authorised", needs_3ds=True),
    "4000000000000010": CardOutcome("D", "51", "Insufficient Funds"),
    "4000000000000028": CardOutcome("E", "96", "Error"),
    # H = authorised by the acquirer but held for fraud review, hence an authorisation code.
    "4000000000000036": CardOutcome("H", None, "On hold"),
    "4000000000000044": PENDING,
    "4000000000000069": CARD_EXPIRED,
    "4000000000000077": CANCELLED,
}

# What `POST /_sim/transactions/<ref>/settle` turns a P or H transaction into.
SETTLED_OUTCOMES: dict[str, CardOutcome] = {
    "A": AUTHORISED,
    "D": DO_NOT_HONOUR,
    "E": CardOutcome("E", "96", "Error"),
    "X": EXPIRED,
}


class InvalidCard(ValueError):
    """What the hosted page shows above the form; the transaction does not change. ``reason``
    names the message in the page's language (``pages.TEXT``, ``invalid_<reason>``); the text
    itself is the English one."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class CardInfo:
    """The part of a card PayTabs reports back (``payment_info``)."""

    payment_method: str
    card_type: str
    card_scheme: str
    payment_description: str
    expiry_month: int
    expiry_year: int

    def expired(self, now: datetime) -> bool:
        """Whether the card's last valid month is behind ``now`` (it is good through the end
        of its expiry month)."""
        return (self.expiry_year, self.expiry_month) < (now.year, now.month)


@dataclass(frozen=True)
class EnteredCard:
    info: CardInfo
    outcome: CardOutcome


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def mask(digits: str) -> str:
    """First six and last four digits, the rest as ``#``, in groups of four."""
    hidden = digits[:6] + "#" * (len(digits) - 10) + digits[-4:]
    return " ".join(hidden[i : i + 4] for i in range(0, len(hidden), 4))


def scheme(digits: str) -> str:
    if digits.startswith("4"):
        return "Visa"
    if digits[:2] in {"51", "52", "53", "54", "55"} or 2221 <= int(digits[:4]) <= 2720:
        return "MasterCard"
    if digits[:2] in {"34", "37"}:
        return "Amex"
    return "Unknown"


def read_card(
    number: str, expiry_month: int | str, expiry_year: int | str, cvv: str, now: datetime
) -> EnteredCard:
    """Check what the customer typed and pick the outcome; raises InvalidCard."""
    digits = "".join(ch for ch in number if ch not in " -")
    if not digits.isdigit() or not 12 <= len(digits) <= 19 or not luhn_valid(digits):
        raise InvalidCard("The card number is not valid.", "number")
    month, year = _expiry(expiry_month, expiry_year)
    if (year, month) < (now.year, now.month):  # CardInfo.expired, before there is a CardInfo
        raise InvalidCard("The card has expired.", "expired")
    cvv = cvv.strip()
    if not cvv.isdigit() or len(cvv) not in (3, 4):
        raise InvalidCard("The security code (CVV) must be 3 or 4 digits.", "cvv")
    card_scheme = scheme(digits)
    info = CardInfo(
        payment_method=card_scheme,
        card_type="Credit",
        card_scheme=card_scheme,
        payment_description=mask(digits),
        expiry_month=month,
        expiry_year=year,
    )
    return EnteredCard(info, TEST_CARDS.get(digits, DO_NOT_HONOUR))


def _expiry(raw_month: int | str, raw_year: int | str) -> tuple[int, int]:
    try:
        month, year = int(raw_month), int(raw_year)
    except ValueError:
        raise InvalidCard("The expiry date is not valid.", "expiry") from None
    if year < 100:
        year += 2000
    if not 1 <= month <= 12 or not 2000 <= year <= 2099:
        raise InvalidCard("The expiry date is not valid.", "expiry")
    return month, year
