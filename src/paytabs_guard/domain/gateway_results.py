"""The gateway's vocabulary in domain terms: statuses, transaction types, and one result.

The PayTabs adapter parses wire JSON (callback, query, follow-up response) into a
``GatewayResult``; the payment only ever sees that. ``signal_of`` reads what a status means for a
transaction type (docs/paytabs.md §9, §10, §5), independent of any payment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final, assert_never

from .errors import UnknownGatewayValue
from .money import Money

#: The fields PayTabs puts in a browser return (``docs/paytabs.md`` §11). On a GET return any
#: other query parameter is the merchant's own (part of its ``return_url``) and is not signed.
RETURN_FIELDS: Final = frozenset(
    {
        "acquirerMessage",
        "acquirerRRN",
        "cartId",
        "customerEmail",
        "respCode",
        "respMessage",
        "respStatus",
        "signature",
        "token",
        "tranRef",
    }
)


class GatewayStatus(StrEnum):
    """PayTabs ``payment_result.response_status``: one letter."""

    AUTHORIZED = "A"
    ON_HOLD = "H"  # authorised, held for anti-fraud review
    PENDING = "P"  # pending refund, or an APM payment request not paid yet
    VOIDED = "V"
    ERROR = "E"
    DECLINED = "D"
    EXPIRED = "X"
    CANCELLED = "C"  # the customer cancelled the page; not in PayTabs' doc table, but sent

    @classmethod
    def parse(cls, raw: str) -> GatewayStatus:
        """Read a status letter, ignoring case and surrounding blanks."""
        try:
            return cls(raw.strip().upper())
        except ValueError:
            raise UnknownGatewayValue("response_status", raw) from None


class TranType(StrEnum):
    """PayTabs ``tran_type``: lower case in requests, capitalised in responses."""

    SALE = "sale"
    AUTH = "auth"
    CAPTURE = "capture"
    VOID = "void"
    RELEASE = "release"
    REFUND = "refund"
    REGISTER = "register"
    PAYMENT_REQUEST = "payment_request"

    @classmethod
    def parse(cls, raw: str) -> TranType:
        """Read a type as PayTabs spells it: ``Sale``, ``sale``, ``Payment Request``."""
        words = raw.replace("-", " ").replace("_", " ").split()
        try:
            return cls("_".join(words).lower())
        except ValueError:
            raise UnknownGatewayValue("tran_type", raw) from None


class Operation(StrEnum):
    """A family of gateway calls that shares one circuit breaker (and a metric label).

    Every layer names breakers by these: the adapter labels its calls with them, the service
    asks whether one is available, the API holds requests on one, the chaos harness injects
    faults per family. A StrEnum, so labels and JSON keep the plain strings.
    """

    CREATE = "create"  # a hosted page
    QUERY = "query"  # what PayTabs holds for a cart or transaction
    FOLLOW_UP = "follow_up"  # capture, refund, void, release
    TOKEN = "token"  # noqa: S105 - recurring charges and token queries/deletes, not a password


class FollowUpType(StrEnum):
    """What a follow-up does to an earlier transaction (PayTabs' ``tran_type`` for it)."""

    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"
    RELEASE = "release"


class ResultSource(StrEnum):
    """Where a result (or one of our own steps) came from. Only a browser return never decides."""

    API = "api"
    CALLBACK = "callback"
    BROWSER_RETURN = "browser_return"
    QUERY = "query"
    RECONCILIATION = "reconciliation"


class Signal(StrEnum):
    """What one gateway result says, before it is held against a payment."""

    PAGE_OPEN = "page_open"  # the hosted page exists, nobody has paid yet
    PENDING = "pending"
    HELD = "held"
    CHARGED = "charged"  # money moved: A on a sale or a payment request
    AUTHORIZED = "authorized"  # money reserved: A on an auth
    CAPTURED = "captured"
    DECLINED = "declined"  # D or E
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    VOIDED = "voided"
    REFUNDED = "refunded"
    FOLLOW_UP_PENDING = "follow_up_pending"  # a capture, void or refund not decided yet
    FOLLOW_UP_FAILED = "follow_up_failed"  # a capture, void or refund that did not happen
    NOT_A_PAYMENT = "not_a_payment"  # register: a card registration moves no money


ORIGINATING_TYPES = frozenset({TranType.SALE, TranType.AUTH, TranType.PAYMENT_REQUEST})
"""Types that start a payment; the others follow one (``previous_tran_ref``)."""

FOLLOW_UP_TYPES = frozenset({TranType.CAPTURE, TranType.VOID, TranType.RELEASE, TranType.REFUND})
"""Types that refer to an earlier transaction through ``previous_tran_ref``."""


def signal_of(status: GatewayStatus | None, tran_type: TranType) -> Signal:
    """What ``status`` means on a ``tran_type`` transaction; ``None`` = nobody paid yet."""
    match tran_type:
        case TranType.SALE | TranType.PAYMENT_REQUEST | TranType.AUTH:
            return _originating(status, is_auth=tran_type is TranType.AUTH)
        case TranType.CAPTURE:
            return _follow_up(status, success=Signal.CAPTURED, void_means_success=False)
        case TranType.VOID | TranType.RELEASE:
            # A void that is itself reported "V" (voided) succeeded.
            return _follow_up(status, success=Signal.VOIDED, void_means_success=True)
        case TranType.REFUND:
            return _follow_up(status, success=Signal.REFUNDED, void_means_success=False)
        case TranType.REGISTER:
            return Signal.NOT_A_PAYMENT
        case _:
            assert_never(tran_type)


def _originating(status: GatewayStatus | None, *, is_auth: bool) -> Signal:
    match status:
        case None:
            return Signal.PAGE_OPEN
        case GatewayStatus.AUTHORIZED:
            return Signal.AUTHORIZED if is_auth else Signal.CHARGED
        case GatewayStatus.ON_HOLD:
            return Signal.HELD
        case GatewayStatus.PENDING:
            return Signal.PENDING
        case GatewayStatus.VOIDED:
            return Signal.VOIDED
        case GatewayStatus.DECLINED | GatewayStatus.ERROR:
            return Signal.DECLINED
        case GatewayStatus.EXPIRED:
            return Signal.EXPIRED
        case GatewayStatus.CANCELLED:
            return Signal.CANCELLED
        case _:
            assert_never(status)


def _follow_up(
    status: GatewayStatus | None, *, success: Signal, void_means_success: bool
) -> Signal:
    match status:
        case GatewayStatus.AUTHORIZED:
            return success
        case GatewayStatus.VOIDED:
            return success if void_means_success else Signal.FOLLOW_UP_FAILED
        case None | GatewayStatus.PENDING | GatewayStatus.ON_HOLD:
            return Signal.FOLLOW_UP_PENDING
        case (
            GatewayStatus.DECLINED
            | GatewayStatus.ERROR
            | GatewayStatus.EXPIRED
            | GatewayStatus.CANCELLED
        ):
            return Signal.FOLLOW_UP_FAILED
        case _:
            assert_never(status)


@dataclass(frozen=True, slots=True, kw_only=True)
class CardDetails:
    """What PayTabs tells about the card that paid (``payment_info``): never the number.

    ``last_four`` comes from PayTabs' masked number (``4111 11## #### 1111``)."""

    scheme: str | None = None
    last_four: str | None = None
    expiry_month: int | None = None
    expiry_year: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayResult:
    """One gateway transaction as a callback, a query or a follow-up response reported it.

    ``amount`` is ``cart_amount`` in ``cart_currency`` (for a follow-up: the amount captured,
    voided or refunded). ``charged`` is ``tran_total`` in ``tran_currency``, what PayTabs
    actually charged: zero before payment, ``None`` when the source does not report it.
    ``status`` is ``None`` when the hosted page exists but nobody paid yet.
    ``token`` is kept out of ``repr`` so it never reaches a log line; ``card`` describes the
    card (scheme, last four, expiry) when PayTabs said.
    """

    tran_ref: str
    cart_id: str
    profile_id: int
    tran_type: TranType
    status: GatewayStatus | None
    amount: Money
    source: ResultSource
    previous_tran_ref: str | None = None
    response_code: str = ""
    response_message: str = ""
    transaction_time: datetime | None = None
    token: str | None = field(default=None, repr=False)
    charged: Money | None = None
    card: CardDetails | None = None

    def __post_init__(self) -> None:
        if not self.tran_ref.strip():
            raise ValueError("a GatewayResult needs a tran_ref")
        if self.previous_tran_ref is not None and not self.previous_tran_ref.strip():
            # PayTabs leaves the field empty rather than absent on some payloads.
            object.__setattr__(self, "previous_tran_ref", None)

    @property
    def signal(self) -> Signal:
        """What this result says, before it is held against a payment."""
        return signal_of(self.status, self.tran_type)
