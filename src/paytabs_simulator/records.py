"""What the simulator's store holds: transactions, hosted pages and tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from paytabs_simulator.cards import CardInfo, CardOutcome, ResponseStatus
from paytabs_simulator.config import Profile

JsonObject = dict[str, Any]
PageState = Literal["open", "3ds", "done"]


@dataclass
class PaymentResult:
    response_status: ResponseStatus
    response_code: str
    response_message: str
    transaction_time: datetime
    # None leaves the key out of the wire object (follow-ups carry no acquirer data).
    acquirer_ref: str | None = None
    cvv_result: str | None = None
    avs_result: str | None = None


@dataclass(frozen=True)
class PendingCard:
    """A card waiting for the 3-D Secure step; masked data only."""

    card: CardInfo
    outcome: CardOutcome
    save_card: bool


@dataclass
class HostedPage:
    page_id: str
    tran_ref: str
    expires_at: datetime
    return_url: str | None = None
    return_using_get: bool = False
    tokenise: int | None = None
    show_save_card: bool = False
    hide_shipping: bool = False
    paypage_lang: str = "en"
    # Accepted and kept for inspection, but without effect on the flow (framed, payment_methods…).
    options: JsonObject = field(default_factory=dict)
    state: PageState = "open"
    pending: PendingCard | None = None


@dataclass
class Transaction:
    tran_ref: str
    profile: Profile
    tran_type: str  # capitalised as on the wire: Sale, Auth, Capture, Void, Release, Refund
    tran_class: str  # ECom or Recurring
    cart_id: str
    cart_description: str
    cart_currency: str
    cart_amount: Decimal
    created_at: datetime
    previous_tran_ref: str | None = None
    customer_ref: str | None = None
    customer_details: JsonObject | None = None
    shipping_details: JsonObject | None = None
    user_defined: JsonObject | None = None
    callback: str | None = None
    result: PaymentResult | None = None
    card: CardInfo | None = None
    token: str | None = None
    page: HostedPage | None = None
    # The customer ticked "save card" (or the page did not ask): a token comes with the first
    # A, also when the payment was pending or on hold first and settles later.
    save_card: bool = False

    @property
    def status(self) -> ResponseStatus | None:
        return None if self.result is None else self.result.response_status


@dataclass
class StoredToken:
    token: str
    profile_id: int
    # The transaction that created the token first, then every recurring charge made with it.
    tran_refs: list[str]
    card: CardInfo
    customer_details: JsonObject | None = None
    deleted: bool = False
