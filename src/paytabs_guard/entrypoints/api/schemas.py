"""The HTTP contract of the merchant API: request and response bodies (pydantic).

Money crosses the wire as a decimal *string* with the currency's decimals (``"12.50"``,
``"1.250"`` for KWD), never a JSON number, which many clients parse into a float.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from fastapi import Body
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from paytabs_guard.domain import (
    FailureReason,
    InvalidMoney,
    Money,
    Payment,
    PaymentError,
    PaymentState,
    TranType,
    ledger,
)
from paytabs_guard.domain.cards import SavedCard
from paytabs_guard.domain.money import currency_exponent
from paytabs_guard.service.gateway import Customer
from paytabs_guard.service.payments import CreatePayment
from paytabs_guard.service.saved_cards import RecurringCharge

from .field_rules import (
    AMOUNT_SHAPE,
    MAX_AMOUNT,
    Text,
    Text16,
    Text64,
    Text128,
    amount_string,
    http_url,
    ip_address,
    metadata_rules,
    not_a_card_number,
    phone_number,
    printable,
)

AmountString = Annotated[
    str,
    BeforeValidator(amount_string),
    Field(
        description='Decimal string in the currency\'s units, e.g. "12.50"; at most '
        f"{MAX_AMOUNT} (PayTabs' limit)",
        examples=["12.50"],
        # documented only: amount_string checks it first, with a message that says the rule
        json_schema_extra={"pattern": f"^{AMOUNT_SHAPE.pattern}$", "maxLength": 25},
    ),
]
Currency = Annotated[
    str,
    Field(pattern=r"^[A-Za-z]{3}$", description="ISO 4217 code", examples=["SAR"]),
    AfterValidator(str.upper),
]
HttpUrl = Annotated[str, AfterValidator(http_url)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class EmptyIn(_Input):
    """No fields: the operation takes none. A field sent anyway is a 422 naming it rather
    than ignored: ``{"amount": "1.00"}`` on a void must not read as a partial void."""


#: The body of a write that takes none: absent, ``null`` or ``{}``.
NoBody = Annotated[
    EmptyIn | None, Body(title="No body", description="Nothing to send; {} is accepted too")
]


class CustomerIn(_Input):
    """Who pays; PayTabs shows it on the hosted page. Every field is optional."""

    name: Text128 | None = None
    # The pattern inside Annotated: on the union it is enforced but left out of the schema.
    email: (
        Annotated[
            str,
            # No empty label in the domain ("a@b.com.", "a@b..com"): PayTabs answers
            # "Email not valid", and the create became a stored failed payment.
            Field(max_length=254, pattern=r"^[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+$"),
            AfterValidator(printable),
        ]
        | None
    ) = None
    phone: Annotated[str, AfterValidator(phone_number)] | None = Field(
        None,
        max_length=32,
        description="Digits, an optional leading +, spaces, ( ) . - /; not a card number",
    )
    country: str | None = Field(None, pattern=r"^[A-Za-z]{2,3}$")
    city: Text64 | None = None
    street: Text128 | None = None
    zip: Text16 | None = None
    ip: Annotated[str, AfterValidator(ip_address)] | None = Field(None, max_length=45)

    def to_customer(self) -> Customer:
        return Customer(**self.model_dump())


CUSTOMER_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$"
CUSTOMER_ID_DESCRIPTION: Final = (
    "Your own id of the customer (1-64 letters, digits, . _ : @ -); not a card number, and "
    "best not an e-mail address: it is part of the cards' URL, so it reaches access logs and "
    "traces"
)
CustomerId = Annotated[
    str,
    Field(pattern=CUSTOMER_ID_PATTERN, description=CUSTOMER_ID_DESCRIPTION, examples=["cust_1001"]),
    # Stored with each saved card, listed and part of the cards' address: never card data.
    AfterValidator(not_a_card_number),
]
Metadata = Annotated[
    dict[str, str],
    AfterValidator(metadata_rules),
    Field(description="Your own string key-values (at most 20), echoed back"),
]


class _ChargeIn(_Input):
    """What every charge states: how much, in which currency, for what."""

    amount: AmountString
    currency: Currency
    description: Text = Field(min_length=1, max_length=128)

    @model_validator(mode="after")
    def _money(self) -> _ChargeIn:
        self.money()  # raises ValueError naming the rule (unknown currency, too many decimals)
        return self

    def money(self) -> Money:
        try:
            currency_exponent(self.currency)
        except InvalidMoney as error:
            raise ValueError(f"currency: {error}") from None
        try:
            money = Money.parse_request(self.amount, self.currency)
        except InvalidMoney as error:
            raise ValueError(f"amount: {error}") from None
        if money.minor_units <= 0:
            smallest = Money(1, self.currency).format()
            raise ValueError(f"amount: must be more than zero (the smallest is {smallest})")
        return money


class CreatePaymentIn(_ChargeIn):
    """A payment to take through a PayTabs hosted page."""

    # What Swagger UI's "Try it out" sends unless edited: a request that works as it is.
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "amount": "12.50",
                    "currency": "SAR",
                    "description": "Order 1001",
                    "return_url": "https://shop.example/thank-you",
                    "customer": {
                        "name": "Layla Ahmed",
                        "email": "layla@example.com",
                        "country": "SA",
                    },
                    "metadata": {"order_id": "1001"},
                }
            ]
        }
    )

    tran_type: Literal["sale", "auth"] = "sale"
    customer: CustomerIn | None = None
    return_url: HttpUrl | None = Field(
        None,
        description="Where the customer goes after paying. We add payment_id and state, "
        "unsigned: anyone can type that address, so confirm with GET /payments/v2/{id} (or the "
        "payment.completed event) before you fulfil the order",
    )
    metadata: Metadata = Field(default_factory=dict)
    language: Literal["en", "ar"] | None = Field(
        None,
        description="Language of the PayTabs hosted page (en or ar, right to left); "
        "left out, PayTabs chooses",
    )
    save_card: bool = Field(
        False,
        strict=True,
        description="Save the card that pays for later charges (POST /payments/v2/recurring); "
        "needs customer_id. The payment's saved_card_id names the card.",
    )
    customer_id: CustomerId | None = Field(
        None, description="Whose card is saved (with save_card: true, and only then)"
    )

    @model_validator(mode="after")
    def _card_owner(self) -> CreatePaymentIn:
        if self.save_card and self.customer_id is None:
            raise ValueError("customer_id: required with save_card: true (whose card it is)")
        if not self.save_card and self.customer_id is not None:
            raise ValueError("customer_id: only with save_card: true")
        return self

    def command(self) -> CreatePayment:
        return CreatePayment(
            amount=self.money(),
            description=self.description,
            tran_type=TranType(self.tran_type),
            customer=self.customer.to_customer() if self.customer else None,
            return_url=self.return_url,
            metadata=dict(self.metadata),
            language=self.language,
            save_card_for=self.customer_id if self.save_card else None,
        )


class RecurringChargeIn(_ChargeIn):
    """A charge of a saved card (PayTabs' recurring sale): no page, no customer present."""

    # What Swagger UI's "Try it out" sends unless edited: a request that works as it is.
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "amount": "12.50",
                    "currency": "SAR",
                    "description": "Monthly membership",
                    "saved_card_id": "card_0123456789abcdef01234567",
                }
            ]
        }
    )

    saved_card_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The saved_card_id of the payment that saved the card",
    )
    metadata: Metadata = Field(default_factory=dict)

    def command(self) -> RecurringCharge:
        return RecurringCharge(
            card_id=self.saved_card_id,
            amount=self.money(),
            description=self.description,
            metadata=dict(self.metadata),
        )


class RefundIn(_Input):
    """A refund of part or all of what was captured."""

    # What Swagger UI's "Try it out" sends unless edited: a request that works as it is.
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"amount": "5.00", "currency": "SAR"}]}
    )

    amount: AmountString
    currency: Currency | None = Field(None, description="Optional; must be the payment's")


class CaptureIn(_Input):
    """A capture of an authorised payment; without ``amount`` the whole authorisation."""

    # What Swagger UI's "Try it out" sends unless edited: a request that works as it is.
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"amount": "12.50", "currency": "SAR"}]}
    )

    amount: AmountString | None = Field(
        None, description=f"Decimal string, at most {MAX_AMOUNT}; left out, the whole authorisation"
    )
    currency: Currency | None = Field(None, description="Optional; must be the payment's")


class PaymentErrorOut(BaseModel):
    """Why the last attempt failed, as PayTabs reported it."""

    code: str = Field(description="PayTabs' response code (the acquirer's, e.g. 51)")
    message: str = Field(description="PayTabs' response message, as sent")
    decline_category: str = Field(
        description="A stable word to act on: insufficient_funds, do_not_honor, expired_card, "
        "invalid_card_number, lost_or_stolen_card, transaction_not_allowed, limit_exceeded, "
        "incorrect_cvc, suspected_fraud, merchant_limits_exceeded, card_declined, "
        "processing_error, expired, cancelled_by_customer"
    )
    status: str = Field(description="PayTabs' response_status: D, E, X or C")

    @classmethod
    def of(cls, error: PaymentError | None) -> PaymentErrorOut | None:
        return None if error is None else cls.from_error(error)

    @classmethod
    def from_error(cls, error: PaymentError) -> PaymentErrorOut:
        return cls(
            code=error.code,
            message=error.message,
            decline_category=error.decline_category,
            status=error.status.value,
        )


class PaymentOut(BaseModel):
    """A payment as the merchant sees it."""

    id: str
    cart_id: str
    state: PaymentState
    final: bool = Field(description="Decided: no gateway result will change it")
    tran_type: str
    amount: str
    currency: str
    captured: str
    refunded: str
    refundable: str
    pending_refunds: str = Field(
        description="Refunds not settled yet: reported pending by PayTabs, or sent and still "
        "waiting for its answer (a refund answered 202). In neither `refunded` (until PayTabs "
        "settles them) nor `refundable`. A refund answered 200 that grew this is not done yet"
    )
    pending_captures: str = Field(
        description="Captures not settled yet (reported pending, or waiting for PayTabs' "
        "answer): not in `captured`"
    )
    description: str
    redirect_url: str | None = Field(description="The hosted page to send the customer to")
    return_url: str | None
    tran_ref: str | None
    expires_at: datetime | None = Field(
        description="When an unpaid page expires here: PAYPAGE_TTL_MINUTES after PayTabs "
        "answered the create (PayTabs counts from when it received it, a little earlier)"
    )
    created_at: datetime
    updated_at: datetime
    has_conflict: bool = Field(
        description="PayTabs contradicted this payment, or reported money moving on it that "
        "it cannot accept (quarantined): review it"
    )
    charged_amount: str | None = Field(
        description="What PayTabs reported charging the customer once authorised; in another "
        "currency than `currency` only with PAYTABS_CURRENCY_CONVERSION"
    )
    charged_currency: str | None
    last_payment_error: PaymentErrorOut | None = Field(
        description="Why the payment failed (PayTabs' code and message), null unless it failed "
        "on a transaction PayTabs reported (see `failure_reason`)"
    )
    failure_reason: FailureReason | None = Field(
        description="Why the payment failed, as its payment.failed event says: `declined` (D), "
        "`error` (E), `gateway_rejected` (PayTabs refused the create: the create's 422 said "
        "why, or a saved card's 409 when PayTabs refused its token: the card was deleted, or "
        "is no longer valid at PayTabs) or `no_gateway_record` (no answer to the create, and "
        "PayTabs holds nothing for it); null unless the state is failed"
    )
    metadata: dict[str, str]
    saved_card_id: str | None = Field(
        description="The saved card this payment saves (asked with save_card; chargeable once "
        "the payment completed) or the one it charged (a recurring charge). Never the token."
    )

    @classmethod
    def of(cls, payment: Payment) -> PaymentOut:
        # A follow-up sent and not answered (its hold) counts as pending until PayTabs' answer,
        # a callback or reconciliation settles it: its amount is taken, so not refundable.
        nothing = Money(0, payment.amount.currency)
        unsettled = {TranType.REFUND: nothing, TranType.CAPTURE: nothing}
        hold = payment.hold
        if hold is not None and hold.kind in unsettled:
            unsettled[hold.kind] = hold.amount
        return cls(
            id=payment.id,
            cart_id=payment.cart_id,
            state=payment.state,
            final=payment.state.is_final,
            tran_type=payment.tran_type.value,
            amount=payment.amount.format(),
            currency=payment.amount.currency,
            captured=payment.captured.format(),
            refunded=payment.refunded.format(),
            refundable=(payment.refundable - unsettled[TranType.REFUND]).format(),
            pending_refunds=(payment.pending_refunds + unsettled[TranType.REFUND]).format(),
            pending_captures=(payment.pending_captures + unsettled[TranType.CAPTURE]).format(),
            description=payment.description,
            redirect_url=payment.redirect_url,
            return_url=payment.return_url,
            tran_ref=payment.tran_ref,
            expires_at=payment.expires_at,
            created_at=payment.created_at,
            updated_at=payment.updated_at,
            has_conflict=payment.has_conflict,
            charged_amount=payment.charged.format() if payment.charged else None,
            charged_currency=payment.charged.currency if payment.charged else None,
            last_payment_error=PaymentErrorOut.of(payment.last_payment_error),
            failure_reason=ledger.failure_reason(payment),
            metadata=dict(payment.metadata),
            saved_card_id=payment.saved_card_id,
        )


class SavedCardOut(BaseModel):
    """A saved card as the merchant sees it: never its token, never more than the last four."""

    id: str
    customer_id: str
    payment_id: str = Field(description="The payment that saved it")
    card_scheme: str | None = Field(description="As PayTabs reported it, e.g. Visa")
    last_four: str | None
    masked: str | None = Field(description='e.g. "**** 1111"', examples=["**** 1111"])
    expiry_month: int | None
    expiry_year: int | None
    created_at: datetime
    deleted_at: datetime | None

    @classmethod
    def of(cls, card: SavedCard) -> SavedCardOut:
        details = card.details
        return cls(
            id=card.id,
            customer_id=card.customer_id,
            payment_id=card.payment_id,
            card_scheme=details.scheme,
            last_four=details.last_four,
            masked=f"**** {details.last_four}" if details.last_four else None,
            expiry_month=details.expiry_month,
            expiry_year=details.expiry_year,
            created_at=card.created_at,
            deleted_at=card.deleted_at,
        )


class SavedCardListOut(BaseModel):
    """A customer's cards that can be charged, oldest first."""

    data: list[SavedCardOut]


class ConfirmedPaymentOut(PaymentOut):
    """A payment after asking PayTabs; ``confirmed`` is false when PayTabs could not answer."""

    confirmed: bool
    reason: str | None = Field(None, description="Why the state is not confirmed")
    retry_after_ms: int | None = Field(
        None,
        description="When PayTabs could not be asked because its circuit is open: milliseconds "
        "until it may be asked again (the next recovery probe or trial). Ask again then, or "
        "send 'Prefer: wait=N' to be held until PayTabs can be asked. While the payment's own "
        "request may still be under way or reach PayTabs: milliseconds until that is over.",
    )


class PaymentListOut(BaseModel):
    """One page, newest first; pass ``next_cursor`` as ``cursor`` for the next one."""

    data: list[PaymentOut]
    next_cursor: str | None


class ProblemOut(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    request_id: str | None = None


PROBLEM_RESPONSE: Final[dict[str, Any]] = {
    "model": ProblemOut,
    "content": {"application/problem+json": {}},
}
"""An error answer in an OpenAPI ``responses`` entry: RFC 9457 problem+json."""
