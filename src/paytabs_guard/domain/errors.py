"""Domain errors, organised by what the caller must do next.

Every error is raised *before* anything changes: the payment is left exactly as it was, and no
gateway call may follow. Gateway results never raise (they return an ``Outcome``), because a
callback must always be answered; these errors are for our own steps and requests.

::

    DomainError                       a payment rule refused the request; nothing changed
    ├── InvalidPaymentRequest         fix the input and send it again            (HTTP 422)
    │   └── CurrencyMismatch          use the payment's own currency
    ├── PaymentStateError             reload the payment: the step does not fit  (HTTP 409)
    │   ├── InvalidTransition         our own step is not in the transition table
    │   ├── PageNotExpired            the hosted page is still valid: retry after expires_at
    │   ├── RefundNotAllowed          only completed or partly refunded payments refund
    │   ├── CaptureNotAllowed         only authorized payments capture
    │   ├── PaymentNotVoidable        only authorized payments with nothing captured void
    │   └── FollowUpInProgress        another capture/refund/void is in flight: retry later
    ├── AmountExceedsAvailable        lower the amount to at most ``available``  (HTTP 422)
    │   ├── RefundExceedsCaptured     captured - refunded - pending refunds
    │   └── CaptureExceedsAuthorized  authorized - captured - pending captures
    └── UnknownGatewayValue           the gateway said something we do not know: quarantine it

Programming errors (a naive ``datetime``, an empty transaction reference in a ``GatewayResult``)
raise plain ``ValueError``: they are bugs to fix, not requests to refuse.
"""

from __future__ import annotations

from typing import ClassVar

from .money import Money


class DomainError(Exception):
    """A payment rule refused the request. Nothing was changed."""


class InvalidPaymentRequest(DomainError, ValueError):
    """The input cannot form a valid payment or operation; ``field`` names what to fix."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class CurrencyMismatch(InvalidPaymentRequest):
    """An amount in another currency than the payment's."""

    def __init__(self, expected: str, given: str) -> None:
        super().__init__(
            "currency", f"the payment is in {expected}; send the amount in {expected}, not {given}"
        )
        self.expected = expected
        self.given = given


class PaymentStateError(DomainError):
    """The payment's current state does not allow this step. Reload it and decide again."""

    def __init__(self, payment_id: str, state: str, message: str) -> None:
        super().__init__(f"payment {payment_id} is {state}: {message}")
        self.payment_id = payment_id
        self.state = state


class InvalidTransition(PaymentStateError):
    """One of our own steps was asked of a payment in a state the transition table forbids."""

    def __init__(self, payment_id: str, state: str, trigger: str, detail: str = "") -> None:
        super().__init__(
            payment_id,
            state,
            detail
            or f"'{trigger}' is not allowed from {state} (docs/states.md lists the legal steps)",
        )
        self.trigger = trigger


class PageNotExpired(PaymentStateError):
    """The hosted page's time to live has not passed yet, or was never known."""

    def __init__(self, payment_id: str, state: str, expires_at: str | None) -> None:
        detail = (
            f"its hosted page is valid until {expires_at}; expire it only after that"
            if expires_at
            else "its hosted page has no known expiry; resolve it by querying the gateway"
        )
        super().__init__(payment_id, state, detail)
        self.expires_at = expires_at


class FollowUpInProgress(PaymentStateError):
    """Another capture, refund or void of this payment is waiting for the gateway's answer."""

    def __init__(self, payment_id: str, state: str, kind: str, since: str) -> None:
        super().__init__(
            payment_id,
            state,
            f"a {kind} sent at {since} is still waiting for PayTabs; retry when it is settled",
        )


class RefundNotAllowed(PaymentStateError):
    """Refunds need a completed (or partly refunded) payment: money must have moved."""

    def __init__(self, payment_id: str, state: str) -> None:
        super().__init__(
            payment_id, state, "only completed or partially refunded payments can be refunded"
        )


class CaptureNotAllowed(PaymentStateError):
    """Captures need an authorized payment that has not been captured, voided or expired."""

    def __init__(self, payment_id: str, state: str) -> None:
        super().__init__(payment_id, state, "only authorized payments can be captured")


class PaymentNotVoidable(PaymentStateError):
    """Voids release an authorisation; they need an authorized payment with nothing captured."""

    def __init__(self, payment_id: str, state: str, reason: str) -> None:
        super().__init__(payment_id, state, f"cannot be voided: {reason}")
        self.reason = reason


class AmountExceedsAvailable(DomainError):
    """The requested amount is more than what is left; ``available`` says how much is."""

    operation: ClassVar[str] = "operation"
    limit: ClassVar[str] = "the available amount"

    def __init__(self, payment_id: str, requested: Money, available: Money) -> None:
        super().__init__(
            f"payment {payment_id}: a {self.operation} of {requested} exceeds {self.limit}; "
            f"at most {available} is available"
        )
        self.payment_id = payment_id
        self.requested = requested
        self.available = available


class RefundExceedsCaptured(AmountExceedsAvailable):
    """A refund beyond captured - refunded - pending refunds."""

    operation: ClassVar[str] = "refund"
    limit: ClassVar[str] = "what was captured minus what is refunded or being refunded"


class CaptureExceedsAuthorized(AmountExceedsAvailable):
    """A capture beyond authorized - captured - pending captures."""

    operation: ClassVar[str] = "capture"
    limit: ClassVar[str] = "what was authorized minus what is captured or being captured"


class UnknownGatewayValue(DomainError, ValueError):
    """A status letter or transaction type the gateway vocabulary does not know."""

    def __init__(self, field: str, value: str) -> None:
        super().__init__(
            f"unknown {field} {value!r} from the gateway: quarantine the result and tell a human"
        )
        self.field = field
        self.value = value
