"""Typed requests to PayTabs, and their PayTabs JSON bodies (``docs/paytabs.md`` §4-§6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

from paytabs_guard.domain.money import Money


class PageTranType(StrEnum):
    SALE = "sale"
    AUTH = "auth"


class FollowUpType(StrEnum):
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"
    RELEASE = "release"


@dataclass(frozen=True, slots=True)
class Address:
    """Customer or shipping details; all optional (the hosted page asks for what is missing)."""

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


@dataclass(frozen=True, slots=True)
class HostedPageRequest:
    """A hosted payment page (sale or auth) for one cart."""

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

    def to_wire(self, profile_id: int) -> dict[str, Any]:
        return _referring(
            profile_id, self.kind.value, "ecom", self.tran_ref, self.cart_id, self.amount,
            self.description, self.callback_url,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class TokenChargeRequest:
    """A recurring sale or auth with a saved token, from the transaction that created it."""

    token: str
    tran_ref: str
    cart_id: str
    amount: Money
    description: str
    tran_type: PageTranType = PageTranType.SALE
    callback_url: str | None = None

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
