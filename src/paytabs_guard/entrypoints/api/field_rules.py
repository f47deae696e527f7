"""The rules of single fields of the merchant API's bodies, as pydantic validators.

Each raises ``ValueError`` with a sentence that says what to send instead: FastAPI turns it
into the 422's entry for the field (``errors.validation_problem``), never echoing the value.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from typing import Annotated, Final

from pydantic import AfterValidator, Field

from paytabs_guard.domain.urls import MAX_URL_LENGTH, check_http_url
from paytabs_guard.observability import has_card_number

# The shape only: how many decimals a currency takes is checked with the currency (_money).
AMOUNT_SHAPE: Final = re.compile(r"[0-9]{1,12}(\.[0-9]{1,12})?")
# PayTabs' cart_amount ceiling (docs/paytabs.md): PayTabs refuses more, so a create above it
# became a stored failed payment, and a refund or capture a failed follow-up.
MAX_AMOUNT: Final = Decimal("9999999999.99")
MAX_METADATA_KEYS: Final = 20


def amount_string(value: object) -> object:
    if isinstance(value, bool):  # before int: a bool is one, and "JSON numbers" would puzzle
        raise ValueError('must be a decimal string such as "12.50", not true or false')
    if isinstance(value, int | float):
        raise ValueError(
            'send the amount as a string, e.g. "12.50": JSON numbers lose precision in many clients'
        )
    if isinstance(value, str) and not AMOUNT_SHAPE.fullmatch(value):
        raise ValueError(
            'must be a decimal string such as "12.50": 1 to 12 digits, then optionally a point '
            "and 1 to 12 more (no sign, no exponent, no spaces)"
        )
    if isinstance(value, str) and Decimal(value) > MAX_AMOUNT:
        raise ValueError(f"must be at most {MAX_AMOUNT}, the largest amount PayTabs takes")
    return value


def http_url(value: str) -> str:
    if len(value) > MAX_URL_LENGTH:
        return check_http_url(value)  # too long: refused before any costly search
    if has_card_number(value):
        # Stored, shown by every GET and the console, and sent to PayTabs, as free text is; and
        # checked first, because the URL rules' messages name the host as sent.
        raise ValueError(f"{_NOT_A_CARD}; put your own order reference in the URL")
    return check_http_url(value)  # its InvalidUrl is a ValueError: a 422 naming the field


def metadata_rules(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError(f"at most {MAX_METADATA_KEYS} keys")
    for key, item in value.items():
        if not 1 <= len(key) <= 40 or len(item) > 500:
            raise ValueError("keys must be 1-40 characters and values at most 500 characters")
        printable(key)
        printable(item)
    return value


# C0 controls but tab and line breaks, DEL and C1: no text a shopper reads has them, and a
# BEL or an ESC sequence stored here is echoed to every log viewer and page that shows it.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_PHONE: Final = re.compile(r"\+?[0-9(][0-9 ().\-/]{3,31}")


def printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (tab and line breaks are allowed)")
    if has_card_number(value):
        # Stored, shown on pages and in the console: card data must never get that far.
        raise ValueError(_NOT_A_CARD)
    return value


_NOT_A_CARD: Final = (
    "must not contain a card number (13-19 digits with a card network's prefix and length, "
    "passing the Luhn check); card data "
    "goes only into PayTabs' hosted page"
)
_E164_DIGITS: Final = 15


def phone_number(value: str) -> str:
    if not _PHONE.fullmatch(value):
        raise ValueError(
            "must be a phone number: digits, an optional leading +, spaces, ( ) . - / "
            "(4-32 characters)"
        )
    if _card_in_phone(value):
        # Not stored, but sent to PayTabs, which keeps and shows it: no card data there.
        raise ValueError(f"{_NOT_A_CARD}; write a phone number with its + and country code")
    return value


def _card_in_phone(value: str) -> bool:
    """Whether a phone number is a card number. Phone numbers have up to 15 digits, card
    numbers 13 to 19, so a phone of 13 to 15 digits passes the Luhn check one time in ten.
    Two forms tell a phone apart: after a leading + (E.164) a phone has at most 15 digits, and
    no card number starts with 0 (ISO/IEC 7812 gives 0 to no card issuer) where a trunk or
    international prefix does (050..., 00966...)."""
    if value.startswith("+") and sum(char.isdigit() for char in value) <= _E164_DIGITS:
        return False
    return has_card_number(value)  # which no number starting with 0 is


def not_a_card_number(reference: str) -> str:
    """An id the merchant chooses (``customer_id``): stored, listed, and part of addresses."""
    if has_card_number(reference):
        raise ValueError(f"{_NOT_A_CARD}; use your own customer reference")
    return reference


def ip_address(value: str) -> str:
    try:
        if "%" in value:  # an IPv6 zone (fe80::1%eth0) names an interface of the shopper's own
            raise ValueError
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("must be an IPv4 or IPv6 address, e.g. 203.0.113.7") from None
    return value


Text = Annotated[str, AfterValidator(printable)]
# An optional field's length inside the Annotated: given to the union (``Text | None =
# Field(max_length=...)``) it was checked after ``printable``, whose card-number search took a
# second on 60 KB of ``1/1/1...``.
Text16 = Annotated[str, Field(max_length=16), AfterValidator(printable)]
Text64 = Annotated[str, Field(max_length=64), AfterValidator(printable)]
Text128 = Annotated[str, Field(max_length=128), AfterValidator(printable)]
