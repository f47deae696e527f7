"""`/payment/request` bodies checked the way PayTabs checks them, into typed requests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

from paytabs_simulator import errors
from paytabs_simulator.config import Profile
from paytabs_simulator.money import parse_amount
from paytabs_simulator.records import JsonObject

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
CURRENCY = re.compile(r"^[A-Za-z]{3}$")
PAYMENT_TYPES = {"sale": "Sale", "auth": "Auth"}
FOLLOW_UP_TYPES = {"capture": "Capture", "void": "Void", "refund": "Refund", "release": "Release"}
# Accepted and stored, without effect on the simulated flow.
PAGE_OPTIONS = (
    "framed",
    "framed_return_parent",
    "framed_return_top",
    "framed_message_target",
    "force_full_ui",
    "payment_methods",
    "config_id",
    "alt_currency",
    "card_filter",
    "card_filter_title",
    "card_discounts",
    "plugin_info",
)
MAX_URL_LENGTH = 255


@dataclass(frozen=True)
class Cart:
    cart_id: str
    cart_description: str
    cart_currency: str
    cart_amount: Decimal


@dataclass(frozen=True)
class HostedPageRequest:
    tran_type: str
    cart: Cart
    callback: str | None
    return_url: str | None
    return_using_get: bool
    customer_ref: str | None
    customer_details: JsonObject | None
    shipping_details: JsonObject | None
    user_defined: JsonObject | None
    tokenise: int | None
    show_save_card: bool
    hide_shipping: bool
    paypage_lang: str
    paypage_ttl: int | None
    options: JsonObject


@dataclass(frozen=True)
class FollowUpRequest:
    tran_type: str
    tran_ref: str
    cart: Cart
    callback: str | None
    customer_details: JsonObject | None
    user_defined: JsonObject | None


@dataclass(frozen=True)
class RecurringRequest:
    tran_type: str
    tran_ref: str
    token: str
    cart: Cart
    callback: str | None
    customer_ref: str | None
    customer_details: JsonObject | None
    user_defined: JsonObject | None


PaymentRequest = HostedPageRequest | FollowUpRequest | RecurringRequest


def parse_profile_id(raw: object) -> int | None:
    """An int, or a string of digits (PayTabs' own samples send ``"987654"``)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw.strip())
    return None


def parse_payment_request(
    body: JsonObject, profile: Profile, *, strict_urls: bool
) -> PaymentRequest:
    """Raise the ApiError PayTabs would answer, or return the typed request."""
    tran_type = _word(body, "tran_type")
    tran_class = _word(body, "tran_class")
    if tran_type not in PAYMENT_TYPES and tran_type not in FOLLOW_UP_TYPES:
        raise errors.invalid_request("tran_type")
    if tran_class not in {"ecom", "recurring"}:
        raise errors.invalid_request("tran_class")

    if tran_type in FOLLOW_UP_TYPES:
        tran_ref = _required_text(body, "tran_ref")
        cart = _cart(body, enabled=None)
        return FollowUpRequest(
            tran_type=FOLLOW_UP_TYPES[tran_type],
            tran_ref=tran_ref,
            cart=cart,
            callback=_url(body, "callback", strict_urls),
            customer_details=_details(body, "customer_details"),
            user_defined=_user_defined(body),
        )

    if tran_class == "recurring":
        token = _required_text(body, "token")
        tran_ref = _required_text(body, "tran_ref")
        cart = _cart(body, enabled=profile.currencies)
        return RecurringRequest(
            tran_type=PAYMENT_TYPES[tran_type],
            tran_ref=tran_ref,
            token=token,
            cart=cart,
            callback=_url(body, "callback", strict_urls),
            customer_ref=_optional_text(body, "customer_ref"),
            customer_details=_details(body, "customer_details"),
            user_defined=_user_defined(body),
        )

    cart = _cart(body, enabled=profile.currencies)
    return HostedPageRequest(
        tran_type=PAYMENT_TYPES[tran_type],
        cart=cart,
        callback=_url(body, "callback", strict_urls),
        return_url=_url(body, "return", strict_urls),
        return_using_get=_flag(body, "return_using_get"),
        customer_ref=_optional_text(body, "customer_ref"),
        customer_details=_details(body, "customer_details"),
        shipping_details=_details(body, "shipping_details"),
        user_defined=_user_defined(body),
        tokenise=_small_int(body, "tokenise", low=1, high=6),
        show_save_card=_flag(body, "show_save_card"),
        hide_shipping=_flag(body, "hide_shipping"),
        paypage_lang=_optional_text(body, "paypage_lang") or "en",
        paypage_ttl=_small_int(body, "paypage_ttl", low=1, high=None),
        options={key: _plain_json(body[key]) for key in PAGE_OPTIONS if key in body},
    )


def _word(body: JsonObject, name: str) -> str:
    value = body.get(name)
    return value.strip().lower() if isinstance(value, str) else ""


def _required_text(body: JsonObject, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise errors.invalid_request(name)
    return value.strip()


def _optional_text(body: JsonObject, name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.invalid_request(name)
    return value


def _cart(body: JsonObject, enabled: frozenset[str] | None) -> Cart:
    cart_id = body.get("cart_id")
    # PayTabs rejects a JSON number here even though it looks like an id (docs/paytabs.md §4.1).
    if not isinstance(cart_id, str) or not 1 <= len(cart_id) <= 64:
        raise errors.cart_id_not_valid()
    description = body.get("cart_description")
    if not isinstance(description, str) or not 1 <= len(description) <= 128:
        raise errors.description_not_valid()
    currency = body.get("cart_currency")
    if not isinstance(currency, str):
        raise errors.invalid_request("cart_currency")
    currency = currency.strip().upper()
    if not CURRENCY.match(currency) or (enabled is not None and currency not in enabled):
        raise errors.invalid_currency()
    amount = parse_amount(body.get("cart_amount"), currency)
    if amount is None:
        raise errors.invalid_amount()
    return Cart(cart_id, description, currency, amount)


def _details(body: JsonObject, name: str) -> JsonObject | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.invalid_request(name)
    email = value.get("email")
    if email not in (None, "") and (not isinstance(email, str) or not EMAIL.match(email)):
        raise errors.email_not_valid()
    details: JsonObject = _plain_json(value)
    return details


def _user_defined(body: JsonObject) -> JsonObject | None:
    value = body.get("user_defined")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise errors.invalid_request("user_defined")
    return dict(value)


def _flag(body: JsonObject, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise errors.invalid_request(name)
    return value


def _small_int(body: JsonObject, name: str, *, low: int, high: int | None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        raise errors.invalid_request(name)
    return value


def _url(body: JsonObject, name: str, strict: bool) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH:
        raise errors.invalid_request(name)
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        raise errors.invalid_request(name) from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise errors.invalid_request(name)
    if strict and (parts.scheme != "https" or port is not None or _is_loopback(parts.hostname)):
        raise errors.invalid_request(name)
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _plain_json(value: Any) -> Any:
    """Give numbers inside free-form objects (zip codes, ids) back as plain JSON numbers.

    Only echoed details pass through here, never an amount the simulator computes with.
    """
    if isinstance(value, dict):
        return {key: _plain_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_json(item) for item in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
