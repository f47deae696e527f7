"""Payment states, the triggers that move them, and the transition table.

``TRANSITIONS`` *is* the documentation (docs/states.md shows it as a table and a
diagram). Each row names a from-state, a trigger and the target; every
(state, trigger) pair that is not a row is never applied. ``decide`` says what such a pair is:

- ``DUPLICATE``: the trigger leads to the state the payment is already in (consistent news);
- ``STALE``: older news (``P`` after ``A``, an auth's ``A`` after its capture);
- ``CONFLICT``: a contradiction about a decided payment (``D`` after ``A``, ``A`` after expiry),
  recorded and alerted, never applied;
- ``ILLEGAL``: anything else (a refund before the sale, our own step in the wrong state).

Where the usual rules leave a choice we decided (docs/states.md, "Decisions"):

- UNKNOWN maps a queried status like AWAITING_CUSTOMER does ("query finds transaction → map its
  status"); a query that finds the page but no payment yet moves UNKNOWN → AWAITING_CUSTOMER.
- A further partial refund keeps PARTIALLY_REFUNDED (a self-loop that records the refund).
- PARTIALLY_REFUNDED counts as final (decided, money moved) like COMPLETED: refunds still follow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Final


class PaymentState(StrEnum):
    """Where one payment is in its life. Values are stored, so never rename them."""

    CREATED = "created"
    INITIATING = "initiating"
    AWAITING_CUSTOMER = "awaiting_customer"
    PENDING = "pending"
    ON_HOLD = "on_hold"
    UNKNOWN = "unknown"
    AUTHORIZED = "authorized"
    COMPLETED = "completed"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    VOIDED = "voided"

    @property
    def is_final(self) -> bool:
        """Decided: the attempt's outcome is known and no payment result will change it."""
        return self in FINAL_STATES

    @property
    def is_closed(self) -> bool:
        """Nothing can follow: not even a refund."""
        return self in CLOSED_STATES


class Trigger(StrEnum):
    """What moves a payment: one of our own steps, or what a gateway result says."""

    # Our own steps: the Payment's command methods.
    CREATE = "create"
    REQUEST_PAGE = "request_page"
    PAGE_CREATED = "page_created"
    GATEWAY_REJECTED = "gateway_rejected"
    AMBIGUOUS_FAILURE = "ambiguous_failure"
    NO_GATEWAY_RECORD = "no_gateway_record"
    PAGE_TTL_PASSED = "page_ttl_passed"
    NEW_ATTEMPT = "new_attempt"
    # What a gateway result (callback, query, reconciliation) says.
    PAGE_FOUND = "page_found"
    PENDING = "pending"
    HELD = "held"
    CHARGED = "charged"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    VOIDED = "voided"
    PARTIAL_REFUND = "partial_refund"
    FULL_REFUND = "full_refund"


class OutcomeKind(StrEnum):
    """What applying a step or a gateway result did. Only APPLIED and CONFLICT change anything."""

    APPLIED = "applied"
    """Applied: a transition, or a follow-up recorded without a state change (refund ``P``)."""
    DUPLICATE = "duplicate"
    """The same news again: nothing changed."""
    STALE = "stale"
    """Older news than what the payment already knows (``P`` after ``A``): nothing changed."""
    CONFLICT = "conflict"
    """Contradicts a decided payment: state unchanged, a conflict note and event recorded."""
    QUARANTINED = "quarantined"
    """Not this payment's (profile, cart id, amount, currency, transaction): nothing changed."""
    ILLEGAL = "illegal"
    """Not in the table (a refund before the sale): nothing changed; deliver it again later."""
    IGNORED = "ignored"
    """A browser return never decides: nothing changed; query the gateway now."""


_S = PaymentState
_T = Trigger

FINAL_STATES: Final = frozenset(
    {
        _S.COMPLETED,
        _S.PARTIALLY_REFUNDED,
        _S.REFUNDED,
        _S.FAILED,
        _S.CANCELLED,
        _S.EXPIRED,
        _S.VOIDED,
    }
)
"""Decided: the terminal states plus PARTIALLY_REFUNDED (a completed payment)."""

CLOSED_STATES: Final = frozenset({_S.REFUNDED, _S.FAILED, _S.CANCELLED, _S.EXPIRED, _S.VOIDED})
"""Final and nothing may follow."""

REFUNDABLE_STATES: Final = frozenset({_S.COMPLETED, _S.PARTIALLY_REFUNDED})
"""Decided, money moved, and refunds still allowed."""

MONEY_MOVED_STATES: Final = frozenset({_S.COMPLETED, _S.PARTIALLY_REFUNDED, _S.REFUNDED})
"""The customer was charged (some of it may have been refunded since)."""

DECIDED_STATES: Final = FINAL_STATES | {_S.AUTHORIZED}
"""The gateway has answered the attempt: an authorisation is a decision too."""

IN_FLIGHT_STATES: Final = frozenset({_S.AWAITING_CUSTOMER, _S.PENDING, _S.ON_HOLD, _S.UNKNOWN})
"""Waiting for the gateway: what reconciliation polls (with INITIATING rows stuck too long)."""

_BEFORE_PAGE: Final = frozenset({_S.CREATED, _S.INITIATING})
# The states in which a queried status is mapped: the ones awaiting the customer's payment
# (AWAITING_CUSTOMER, PENDING, ON_HOLD) plus UNKNOWN, which takes whatever a query finds.
_UNDECIDED: Final = frozenset({_S.AWAITING_CUSTOMER, _S.PENDING, _S.ON_HOLD, _S.UNKNOWN})


def _table(
    *rows: tuple[PaymentState | Iterable[PaymentState], Trigger, PaymentState],
) -> Mapping[tuple[PaymentState, Trigger], PaymentState]:
    table: dict[tuple[PaymentState, Trigger], PaymentState] = {}
    for sources, trigger, target in rows:
        for source in [sources] if isinstance(sources, PaymentState) else sources:
            if (source, trigger) in table:  # a typo here must not silently shadow a row
                raise ValueError(f"duplicate row {source} --{trigger}-->")
            table[source, trigger] = target
    return table


TRANSITIONS: Final[Mapping[tuple[PaymentState, Trigger], PaymentState]] = _table(
    # ---- our own steps ------------------------------------------------------------------
    (_S.CREATED, _T.REQUEST_PAGE, _S.INITIATING),
    (_S.INITIATING, _T.PAGE_CREATED, _S.AWAITING_CUSTOMER),
    (_S.INITIATING, _T.GATEWAY_REJECTED, _S.FAILED),  # 4xx validation
    (_S.INITIATING, _T.AMBIGUOUS_FAILURE, _S.UNKNOWN),  # timeout / reset / 5xx
    (_S.UNKNOWN, _T.NO_GATEWAY_RECORD, _S.FAILED),  # retries exhausted, nothing at PayTabs
    # decision: PayTabs holds only an unpaid page whose URL was lost with an ambiguous answer;
    # nobody can pay it, so a new attempt goes out under a new cart id
    (_S.UNKNOWN, _T.NEW_ATTEMPT, _S.INITIATING),
    ({_S.AWAITING_CUSTOMER, _S.PENDING, _S.ON_HOLD}, _T.PAGE_TTL_PASSED, _S.EXPIRED),
    # ---- what the gateway says about the payment's own transaction ----------------------
    (_S.UNKNOWN, _T.PAGE_FOUND, _S.AWAITING_CUSTOMER),  # decision: page exists, unpaid
    ({_S.AWAITING_CUSTOMER, _S.UNKNOWN}, _T.PENDING, _S.PENDING),
    ({_S.AWAITING_CUSTOMER, _S.PENDING, _S.UNKNOWN}, _T.HELD, _S.ON_HOLD),
    (_UNDECIDED, _T.CHARGED, _S.COMPLETED),  # A on sale
    (_UNDECIDED, _T.AUTHORIZED, _S.AUTHORIZED),  # A on auth
    (_UNDECIDED, _T.DECLINED, _S.FAILED),  # D or E
    (_UNDECIDED, _T.CANCELLED, _S.CANCELLED),  # C
    (_UNDECIDED | {_S.AUTHORIZED}, _T.EXPIRED, _S.EXPIRED),  # X: page, request or auth expired
    # ---- follow-ups: their own tran_ref, previous_tran_ref = ours -----------------------
    (_UNDECIDED | {_S.AUTHORIZED}, _T.CAPTURED, _S.COMPLETED),  # A on capture
    (_S.AUTHORIZED, _T.VOIDED, _S.VOIDED),  # A on void/release, or V
    (REFUNDABLE_STATES, _T.PARTIAL_REFUND, _S.PARTIALLY_REFUNDED),  # decision: self-loop too
    (REFUNDABLE_STATES, _T.FULL_REFUND, _S.REFUNDED),
)
"""Every legal (from-state, trigger) pair and its target. Nothing else is ever applied."""


def _targets() -> Mapping[Trigger, PaymentState]:
    targets: dict[Trigger, PaymentState] = {_T.CREATE: _S.CREATED}
    for (_, trigger), target in TRANSITIONS.items():
        if targets.setdefault(trigger, target) is not target:
            raise ValueError(f"{trigger} leads to two states")  # decide() relies on one target
    return targets


TRIGGER_TARGET: Final[Mapping[Trigger, PaymentState]] = _targets()
"""The one state each trigger leads to, wherever it is legal."""

OWN_TRIGGERS: Final = frozenset(
    {
        _T.CREATE,
        _T.REQUEST_PAGE,
        _T.PAGE_CREATED,
        _T.GATEWAY_REJECTED,
        _T.AMBIGUOUS_FAILURE,
        _T.NO_GATEWAY_RECORD,
        _T.PAGE_TTL_PASSED,
        _T.NEW_ATTEMPT,
    }
)
"""Triggers fired by our own steps rather than by a gateway result."""

_PROGRESS: Final = frozenset({_T.PAGE_FOUND, _T.PENDING, _T.HELD})
_MONEY: Final = frozenset({_T.CHARGED, _T.AUTHORIZED, _T.CAPTURED})
_DECIDING: Final = _MONEY | {_T.DECLINED, _T.CANCELLED, _T.EXPIRED, _T.VOIDED}


def decide(
    state: PaymentState,
    trigger: Trigger,
    *,
    visited: frozenset[PaymentState] = frozenset(),
) -> OutcomeKind:
    """What firing ``trigger`` on a payment in ``state`` does; ``visited`` = states it has been in.

    First match wins: a row of the table → APPLIED; the trigger leads where the payment already
    is → DUPLICATE; our own step, or anything before the page exists → ILLEGAL; progress news
    (page found, P, H) or a target already visited → STALE; money news on a payment that moved
    money → STALE; a deciding result on a decided payment → CONFLICT; the rest → ILLEGAL.
    Never QUARANTINED or IGNORED: those are about the result, not the table.
    """
    if (state, trigger) in TRANSITIONS:
        return OutcomeKind.APPLIED
    target = TRIGGER_TARGET[trigger]
    if target is state:
        return OutcomeKind.DUPLICATE
    if trigger in OWN_TRIGGERS or state in _BEFORE_PAGE:
        # Our steps have no stale form, and nothing from the gateway fits before its page exists.
        return OutcomeKind.ILLEGAL
    if trigger in _PROGRESS or target in visited:
        return OutcomeKind.STALE
    if trigger in _MONEY and state in MONEY_MOVED_STATES:
        # Money-moved news reaching a payment that already moved money (an auth's A after its
        # capture arrived first) is older news, never a contradiction.
        return OutcomeKind.STALE
    if trigger in _DECIDING and state in DECIDED_STATES:
        return OutcomeKind.CONFLICT
    return OutcomeKind.ILLEGAL
