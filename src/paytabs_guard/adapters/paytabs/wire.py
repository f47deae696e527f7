"""PayTabs JSON as it is on the wire, with PayTabs' own field names (``docs/paytabs.md`` §4-§8).

Response models accept the real shapes: amounts as strings, capitalised ``tran_type``, ``ECom``,
numeric strings for ids, and unknown extra fields (kept, never rejected). Request bodies are built
as plain dicts and encoded by :func:`encode_body`, which writes amounts as exact JSON numbers.
"""

from __future__ import annotations

import json
import secrets
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


def _text(value: object) -> object:
    # PayTabs sends some numbers as strings and some strings as numbers; amounts stay exact.
    if isinstance(value, int | Decimal):
        return str(value)
    return value


class PaymentResult(_Wire):
    response_status: str
    response_code: str = ""
    response_message: str = ""
    acquirer_ref: str | None = None
    transaction_time: str | None = None

    _coerce = field_validator("response_code", "response_message", mode="before")(_text)


class PaymentInfo(_Wire):
    payment_method: str | None = None
    card_type: str | None = None
    card_scheme: str | None = None
    payment_description: str | None = None


class Transaction(_Wire):
    """A transaction object: query result, callback body, direct (follow-up/recurring) response.

    ``payment_result`` is absent for a hosted page that exists but has not been paid.
    """

    tran_ref: str
    previous_tran_ref: str | None = None
    profile_id: int | None = None
    merchant_id: int | None = None
    cart_id: str
    cart_description: str = ""
    cart_currency: str
    cart_amount: str
    tran_currency: str = ""
    tran_total: str = ""
    tran_type: str
    tran_class: str = ""
    payment_result: PaymentResult | None = None
    payment_info: PaymentInfo | None = None
    token: str | None = None
    user_defined: dict[str, str] | None = None
    ipn_trace: str | None = None

    _coerce = field_validator("cart_id", "cart_amount", "tran_total", mode="before")(_text)

    @field_validator("profile_id", "merchant_id", mode="before")
    @classmethod
    def _int_id(cls, value: object) -> object:
        return int(value) if isinstance(value, str) and value.isdigit() else value


class PaymentPage(_Wire):
    """The answer to a hosted-page request (docs/paytabs.md §7.1): where to send the customer."""

    tran_ref: str
    tran_type: str
    cart_id: str
    cart_currency: str
    cart_amount: str
    redirect_url: str
    profile_id: int | None = Field(None, alias="profileId")
    trace: str | None = None

    _coerce = field_validator("cart_id", "cart_amount", mode="before")(_text)


class ErrorBody(_Wire):
    """PayTabs' error shape: ``{"code": 4, "message": "Duplicate Request", "trace": "PMNT..."}``."""

    code: int
    message: str = ""
    trace: str | None = None

    @field_validator("code", mode="before")
    @classmethod
    def _int_code(cls, value: object) -> object:
        return int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else value


def decode_json(raw: bytes) -> Any:  # JSON is untyped until a model validates it
    """Parse JSON keeping every number exact (Decimal, never float)."""
    return json.loads(raw, parse_float=Decimal)


def encode_body(body: dict[str, Any]) -> bytes:
    """Compact JSON with Decimal values written as exact JSON numbers (``12.50``, not ``12.5``).

    The json module cannot emit a Decimal as a number, and a float would round money; so each
    Decimal is swapped for a unique placeholder string, which is then replaced by the digits.
    """
    placeholders: dict[str, str] = {}

    def swap(value: Any) -> Any:  # walks arbitrary JSON
        if isinstance(value, Decimal):
            token = f"__decimal_{secrets.token_hex(8)}__"
            placeholders[f'"{token}"'] = format(value, "f")
            return token
        if isinstance(value, dict):
            return {key: swap(item) for key, item in value.items() if item is not None}
        if isinstance(value, list | tuple):
            return [swap(item) for item in value]
        return value

    text = json.dumps(swap(body), separators=(",", ":"), ensure_ascii=False)
    for token, digits in placeholders.items():
        text = text.replace(token, digits)
    return text.encode()
