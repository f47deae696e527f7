"""What a step or a gateway result did to a payment (``Outcome``), and what a legal transition
writes besides the state (``Effect``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .events import PaymentEvent
from .gateway_results import GatewayResult
from .money import Money
from .records import GatewayTransaction
from .screening import describe
from .states import TRANSITIONS, OutcomeKind, PaymentState, Trigger


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one step or gateway result did to the payment, and why."""

    kind: OutcomeKind
    previous_state: PaymentState
    state: PaymentState
    reason: str
    events: tuple[PaymentEvent, ...] = ()

    @property
    def changed(self) -> bool:
        """True when the payment must be saved (a transition, a recorded follow-up, a conflict,
        a quarantined result noted for review)."""
        return self.kind in (OutcomeKind.APPLIED, OutcomeKind.CONFLICT) or bool(self.events)


@dataclass(frozen=True, slots=True)
class Effect:
    """What a legal transition writes besides the state (``Payment._move`` applies it)."""

    adopt_tran_ref: str | None = None
    redirect_url: str | None = None
    expires_at: datetime | None = None
    record: GatewayTransaction | None = None
    captured: Money | None = None
    refunded: Money | None = None


def explain(kind: OutcomeKind, state: PaymentState, trigger: Trigger, result: GatewayResult) -> str:
    """The reason an ``Outcome`` gives for what the table decided about ``result``."""
    what = describe(result)
    if kind is OutcomeKind.APPLIED:
        return f"{what}: {state} -> {TRANSITIONS[state, trigger]}"
    if kind is OutcomeKind.DUPLICATE:
        return f"{what} changes nothing: the payment is already {state}"
    if kind is OutcomeKind.STALE:
        return f"{what} is older news than the payment's {state}"
    if kind is OutcomeKind.CONFLICT:
        return f"{what} contradicts the payment's {state}; not applied, review it"
    return f"{what}: '{trigger}' is not allowed from {state}"
