"""The payment domain: standard library only, no I/O.

``Payment`` is the aggregate; ``Payment.apply_gateway_result`` is the one way a gateway result
(callback, query, reconciliation, follow-up response) reaches it, and ``TRANSITIONS`` is the
table every change is checked against (docs/states.md draws it).
"""

from .declines import PaymentError
from .errors import (
    AmountExceedsAvailable,
    CaptureExceedsAuthorized,
    CaptureNotAllowed,
    CurrencyMismatch,
    DomainError,
    FollowUpInProgress,
    InvalidPaymentRequest,
    InvalidTransition,
    PageNotExpired,
    PaymentNotVoidable,
    PaymentStateError,
    RefundExceedsCaptured,
    RefundNotAllowed,
    UnknownGatewayValue,
)
from .events import (
    ExpiryCause,
    FailureReason,
    PaymentAuthorized,
    PaymentCancelled,
    PaymentCaptured,
    PaymentCompleted,
    PaymentConflict,
    PaymentCreated,
    PaymentEvent,
    PaymentExpired,
    PaymentFailed,
    PaymentInitiated,
    PaymentRefunded,
    PaymentVoided,
)
from .gateway_results import (
    CardDetails,
    FollowUpType,
    GatewayResult,
    GatewayStatus,
    Operation,
    ResultSource,
    Signal,
    TranType,
    signal_of,
)
from .money import InvalidMoney, Money
from .payment import Outcome, Payment
from .records import ConflictNote, FollowUpHold, GatewayTransaction, Transition
from .states import TRANSITIONS, OutcomeKind, PaymentState, Trigger, decide

__all__ = [
    "TRANSITIONS",
    "AmountExceedsAvailable",
    "CaptureExceedsAuthorized",
    "CaptureNotAllowed",
    "CardDetails",
    "ConflictNote",
    "CurrencyMismatch",
    "DomainError",
    "ExpiryCause",
    "FailureReason",
    "FollowUpHold",
    "FollowUpInProgress",
    "FollowUpType",
    "GatewayResult",
    "GatewayStatus",
    "GatewayTransaction",
    "InvalidMoney",
    "InvalidPaymentRequest",
    "InvalidTransition",
    "Money",
    "Operation",
    "Outcome",
    "OutcomeKind",
    "PageNotExpired",
    "Payment",
    "PaymentAuthorized",
    "PaymentCancelled",
    "PaymentCaptured",
    "PaymentCompleted",
    "PaymentConflict",
    "PaymentCreated",
    "PaymentError",
    "PaymentEvent",
    "PaymentExpired",
    "PaymentFailed",
    "PaymentInitiated",
    "PaymentNotVoidable",
    "PaymentRefunded",
    "PaymentState",
    "PaymentStateError",
    "PaymentVoided",
    "RefundExceedsCaptured",
    "RefundNotAllowed",
    "ResultSource",
    "Signal",
    "TranType",
    "Transition",
    "Trigger",
    "UnknownGatewayValue",
    "decide",
    "signal_of",
]
