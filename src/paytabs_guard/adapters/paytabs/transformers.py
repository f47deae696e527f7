"""PayTabs on the wire, and the conversions both ways (``docs/paytabs.md`` §4-§8).

Outgoing: typed requests (``HostedPageRequest``, ``FollowUpRequest``, ``TokenChargeRequest``)
and their PayTabs JSON bodies (``to_wire``), encoded by :func:`encode_body`, which writes amounts
as exact JSON numbers.

Incoming: response models with PayTabs' own field names that accept the real shapes (amounts as
strings, capitalised ``tran_type``, ``ECom``, numeric strings for ids, unknown extra fields kept,
never rejected), and :func:`to_gateway_result`, the one way a PayTabs transaction becomes a
domain value. The domain never sees PayTabs JSON.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from paytabs_guard.domain import (
    CardDetails,
    FollowUpType,
    GatewayResult,
    GatewayStatus,
    Money,
    ResultSource,
    TranType,
)

# --- requests, domain values in, PayTabs JSON out ------------------------------------------------


class PageTranType(StrEnum):
    SALE = "sale"
    AUTH = "auth"


_Choice = TypeVar("_Choice", bound=StrEnum)


def _checked(request: object, amount: object, name: str, choices: type[_Choice]) -> None:
    """Refuse a request's field of the wrong type when it is built, saying what to pass, not
    at its first call as an AttributeError from deep inside the client, which no documented
    error class catches: ``amount`` must be Money; an enum field written as its text
    (``"auth"``, which mypy would not let pass) is read as the enum member."""
    if not isinstance(amount, Money):
        raise ValueError(
            f"amount must be Money (Money.of('150.00', 'SAR')), not {type(amount).__name__}"
        )
    value = getattr(request, name)
    if isinstance(value, choices):
        return
    try:
        member = choices(value)
    except ValueError:
        listed = ", ".join(choice.value for choice in choices)
        raise ValueError(
            f"{name} must be a {choices.__name__}: one of {listed}, not {value!r}"
        ) from None
    object.__setattr__(request, name, member)


@dataclass(frozen=True, slots=True, repr=False)
class Address:
    """Customer or shipping details; all optional (the hosted page asks for what is missing).

    Its repr names the fields that are set, not their values: a person's name, e-mail and
    phone have no place in a log line or a traceback."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    street1: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None
    zip: str | None = None
    ip: str | None = None

    def to_wire(self) -> dict[str, str]:
        return {key: value for key, value in asdict(self).items() if value}

    def __repr__(self) -> str:
        given = ", ".join(name for name in self.to_wire())
        return f"Address(given: {given or 'nothing'})"


@dataclass(frozen=True, slots=True)
class HostedPageRequest:
    """A hosted payment page (sale or auth) for one cart (``docs/paytabs.md`` §4.2).

    ``amount`` is :class:`Money` (``Money.of("150.00", "SAR")``); ``callback_url`` receives
    PayTabs' signed result, ``return_url`` the customer's browser (``return_using_get``: a GET
    with a query string instead of a form POST). ``tokenise`` (2-6, the token's format; 2 = 32
    hex characters) saves the card for :class:`TokenChargeRequest`, with ``show_save_card``
    letting the customer choose. ``user_defined`` keys are ``udf1`` ... ``udf9``, echoed
    back; ``paypage_ttl_minutes`` (at least 1, PayTabs' default 20) is how long the page
    stays valid."""

    cart_id: str
    amount: Money
    description: str
    tran_type: PageTranType = PageTranType.SALE
    callback_url: str | None = None
    return_url: str | None = None
    return_using_get: bool = False
    customer: Address | None = None
    shipping: Address | None = None
    hide_shipping: bool | None = None
    paypage_lang: Literal["en", "ar", "tr"] | None = None
    framed: bool | None = None
    tokenise: int | None = None
    show_save_card: bool | None = None
    payment_methods: Sequence[str] = ()
    user_defined: Mapping[str, str] = field(default_factory=dict)
    paypage_ttl_minutes: int | None = None
    customer_ref: str | None = None

    def __post_init__(self) -> None:
        _checked(self, self.amount, "tran_type", PageTranType)

    def to_wire(self, profile_id: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "profile_id": profile_id,
            "tran_type": self.tran_type.value,
            "tran_class": "ecom",
            "cart_id": self.cart_id,
            "cart_currency": self.amount.currency,
            "cart_amount": self.amount.amount,
            "cart_description": self.description,
            "paypage_lang": self.paypage_lang,
            "callback": self.callback_url,
            "return": self.return_url,
            "return_using_get": True if self.return_using_get else None,
            "hide_shipping": self.hide_shipping,
            "framed": self.framed,
            "tokenise": self.tokenise,
            "show_save_card": self.show_save_card,
            "paypage_ttl": self.paypage_ttl_minutes,
            "customer_ref": self.customer_ref,
        }
        if self.customer is not None:
            body["customer_details"] = self.customer.to_wire()
        if self.shipping is not None:
            body["shipping_details"] = self.shipping.to_wire()
        if self.payment_methods:
            body["payment_methods"] = list(self.payment_methods)
        if self.user_defined:
            body["user_defined"] = dict(self.user_defined)
        # PayTabs' own SDK strips nulls before sending; so do we.
        return {key: value for key, value in body.items() if value is not None}


@dataclass(frozen=True, slots=True)
class FollowUpRequest:
    """A capture, void, refund or release of an earlier transaction (``tran_ref``)."""

    kind: FollowUpType
    tran_ref: str
    cart_id: str
    amount: Money
    description: str
    callback_url: str | None = None

    def __post_init__(self) -> None:
        _checked(self, self.amount, "kind", FollowUpType)

    def to_wire(self, profile_id: int) -> dict[str, Any]:
        return _referring(
            profile_id, self.kind.value, "ecom", self.tran_ref, self.cart_id, self.amount,
            self.description, self.callback_url,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class TokenChargeRequest:
    """A recurring sale or auth with a saved token, from the transaction that created it."""

    token: str = field(repr=False)  # a saved card: whoever holds it can charge it
    tran_ref: str
    cart_id: str
    amount: Money
    description: str
    tran_type: PageTranType = PageTranType.SALE
    callback_url: str | None = None

    def __post_init__(self) -> None:
        _checked(self, self.amount, "tran_type", PageTranType)

    def to_wire(self, profile_id: int) -> dict[str, Any]:
        body = _referring(
            profile_id, self.tran_type.value, "recurring", self.tran_ref, self.cart_id,
            self.amount, self.description, self.callback_url,
        )  # fmt: skip
        return {**body, "token": self.token}


def _referring(
    profile_id: int,
    tran_type: str,
    tran_class: str,
    tran_ref: str,
    cart_id: str,
    amount: Money,
    description: str,
    callback_url: str | None,
) -> dict[str, Any]:
    """The body of a request that refers to an earlier transaction (follow-up, token charge)."""
    body: dict[str, Any] = {
        "profile_id": profile_id,
        "tran_type": tran_type,
        "tran_class": tran_class,
        "tran_ref": tran_ref,
        "cart_id": cart_id,
        "cart_currency": amount.currency,
        "cart_amount": amount.amount,
        "cart_description": description,
    }
    if callback_url:
        body["callback"] = callback_url
    return body


# --- responses, PayTabs JSON in -------------------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # A repr ends up in logs and tracebacks: the fields we model, without a saved card's
        # token, and none of the extras PayTabs sent (customer_details: an e-mail, a phone).
        for name, value in super().__repr_args__():
            if name in type(self).model_fields:
                yield name, "[hidden]" if name in _HIDDEN_IN_REPR and value else value


_HIDDEN_IN_REPR: Final = frozenset({"token"})


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


class PayTabsTransaction(_Wire):
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


class PayTabsPaymentPage(_Wire):
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


# --- PayTabs transaction -> domain result ---------------------------------------------------------

_LAST_FOUR = re.compile(r"([0-9]{4})\s*$")


class UnusableTransaction(ValueError):
    """A transaction object that cannot become a gateway result (says which field and why;
    ``field`` names it where one field is the cause)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


#: The instants a transaction time may name. Outside them it is no time PayTabs recorded: Go,
#: which sends PayTabs' notifications, writes an unset time as ``0001-01-01T00:00:00Z``. Such
#: an instant cannot be stored either: asyncpg sends the first and last datetime as PostgreSQL's
#: ``-infinity`` and ``infinity``, which no read turns back into a time.
_PLAUSIBLE_TIMES: Final = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def _time(raw: str | None) -> datetime | None:
    """The transaction time PayTabs sent, in UTC, or None when it is missing, malformed,
    without an offset or implausible. The time is informative only: a bad one never blocks a
    result (the result is applied with the time it arrived)."""
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            return None
        at = parsed.astimezone(UTC)  # 0001-01-01T00:00:00+01:00 overflows here
    except (ValueError, OverflowError):
        return None
    earliest, latest = _PLAUSIBLE_TIMES
    return at if earliest <= at < latest else None


def _charged(transaction: PayTabsTransaction) -> Money:
    """``tran_total`` in ``tran_currency``: what PayTabs charged. Before payment PayTabs sends
    an empty currency and "0" or ""; that is a zero charge (in the cart's currency), never
    "unknown". Any other total is read as strictly as ``cart_amount`` (no blanks around it)."""
    total = transaction.tran_total or "0"
    currency = transaction.tran_currency.strip() or transaction.cart_currency
    return Money.parse_gateway(total, currency)


def _month_or_year(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


_NUL: Final = "\x00"


def _storable(text: str) -> str:
    """PayTabs' free text without NUL characters, which PostgreSQL's text cannot hold: an
    answer carrying one is still applied (its message is only shown), not failed for good."""
    return text.replace(_NUL, "") if _NUL in text else text


def card_details(info: PaymentInfo | None) -> CardDetails | None:
    """Scheme, last four digits and expiry from ``payment_info`` (``expiryMonth`` and
    ``expiryYear`` are extra fields in PayTabs' answers); None when it says nothing."""
    if info is None:
        return None
    extra = info.model_extra or {}
    last_four = _LAST_FOUR.search(info.payment_description or "")
    return CardDetails(
        scheme=(info.card_scheme or None) and _storable(info.card_scheme)[:32],
        last_four=last_four.group(1) if last_four else None,
        expiry_month=_month_or_year(extra.get("expiryMonth")),
        expiry_year=_month_or_year(extra.get("expiryYear")),
    )


def to_gateway_result(
    transaction: PayTabsTransaction, source: ResultSource, *, profile_id: int | None = None
) -> GatewayResult:
    """The domain's view of one PayTabs transaction (callback, query or follow-up answer).

    ``profile_id`` stands in when the object carries none (some direct answers omit it).
    Raises UnusableTransaction, never a bare ValueError: a callback then gets a 400 and a
    query answer counts as unusable, instead of either crashing into a 500.
    """
    if not transaction.tran_ref.strip():
        # The dedupe key and every lookup need a reference; a blank one names no transaction.
        raise UnusableTransaction("tran_ref is empty", field="tran_ref")
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
        raise UnusableTransaction("profile_id is missing", field="profile_id")
    references = (transaction.tran_ref, transaction.previous_tran_ref, transaction.cart_id,
                  transaction.token)  # fmt: skip
    if any(_NUL in reference for reference in references if reference):
        # No payment of ours has such a reference, and PostgreSQL cannot even look one up.
        raise UnusableTransaction("a reference holds a NUL character")
    try:
        return GatewayResult(
            tran_ref=transaction.tran_ref,
            previous_tran_ref=transaction.previous_tran_ref,
            cart_id=transaction.cart_id,
            profile_id=owner,
            tran_type=tran_type,
            status=status,
            amount=amount,
            source=source,
            response_code=_storable(result.response_code) if result else "",
            response_message=_storable(result.response_message) if result else "",
            transaction_time=_time(result.transaction_time if result else None),
            token=transaction.token,
            charged=charged,
            card=card_details(transaction.payment_info),
        )
    except ValueError as error:  # a domain invariant the checks above did not foresee
        raise UnusableTransaction(str(error)) from None
