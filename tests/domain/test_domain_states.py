"""The transition table and ``decide``, checked against a restatement written out by hand."""

from __future__ import annotations

import pytest

from paytabs_guard.domain.states import (
    CLOSED_STATES,
    FINAL_STATES,
    REFUNDABLE_STATES,
    TRANSITIONS,
    OutcomeKind,
    PaymentState,
    Trigger,
    decide,
)

S = PaymentState
T = Trigger

# Every (state, trigger) pair, written out by hand from the transition table and the decisions
# in docs/states.md. A = applied, D = duplicate, S = stale, C = conflict, I = illegal.
# Columns: created initiating awaiting_customer pending on_hold unknown authorized completed
# partially_refunded refunded failed cancelled expired voided.
MATRIX = """
                   cr in aw pe oh un au co pr rf fa ca ex vo
create             D  I  I  I  I  I  I  I  I  I  I  I  I  I
request_page       A  D  I  I  I  I  I  I  I  I  I  I  I  I
page_created       I  A  D  I  I  I  I  I  I  I  I  I  I  I
gateway_rejected   I  A  I  I  I  I  I  I  I  I  D  I  I  I
ambiguous_failure  I  A  I  I  I  D  I  I  I  I  I  I  I  I
no_gateway_record  I  I  I  I  I  A  I  I  I  I  D  I  I  I
page_ttl_passed    I  I  A  A  A  I  I  I  I  I  I  I  D  I
new_attempt        I  D  I  I  I  A  I  I  I  I  I  I  I  I
page_found         I  I  D  S  S  A  S  S  S  S  S  S  S  S
pending            I  I  A  D  S  A  S  S  S  S  S  S  S  S
held               I  I  A  A  D  A  S  S  S  S  S  S  S  S
charged            I  I  A  A  A  A  C  D  S  S  C  C  C  C
authorized         I  I  A  A  A  A  D  S  S  S  C  C  C  C
captured           I  I  A  A  A  A  A  D  S  S  C  C  C  C
declined           I  I  A  A  A  A  C  C  C  C  D  C  C  C
cancelled          I  I  A  A  A  A  C  C  C  C  C  D  C  C
expired            I  I  A  A  A  A  A  C  C  C  C  C  D  C
voided             I  I  I  I  I  I  A  C  C  C  C  C  C  D
partial_refund     I  I  I  I  I  I  I  A  A  I  I  I  I  I
full_refund        I  I  I  I  I  I  I  A  A  D  I  I  I  I
"""
COLUMNS = [
    S.CREATED,
    S.INITIATING,
    S.AWAITING_CUSTOMER,
    S.PENDING,
    S.ON_HOLD,
    S.UNKNOWN,
    S.AUTHORIZED,
    S.COMPLETED,
    S.PARTIALLY_REFUNDED,
    S.REFUNDED,
    S.FAILED,
    S.CANCELLED,
    S.EXPIRED,
    S.VOIDED,
]
LETTERS = {
    "A": OutcomeKind.APPLIED,
    "D": OutcomeKind.DUPLICATE,
    "S": OutcomeKind.STALE,
    "C": OutcomeKind.CONFLICT,
    "I": OutcomeKind.ILLEGAL,
}
TARGETS = {
    T.CREATE: S.CREATED,
    T.REQUEST_PAGE: S.INITIATING,
    T.PAGE_CREATED: S.AWAITING_CUSTOMER,
    T.GATEWAY_REJECTED: S.FAILED,
    T.AMBIGUOUS_FAILURE: S.UNKNOWN,
    T.NO_GATEWAY_RECORD: S.FAILED,
    T.PAGE_TTL_PASSED: S.EXPIRED,
    T.NEW_ATTEMPT: S.INITIATING,
    T.PAGE_FOUND: S.AWAITING_CUSTOMER,
    T.PENDING: S.PENDING,
    T.HELD: S.ON_HOLD,
    T.CHARGED: S.COMPLETED,
    T.AUTHORIZED: S.AUTHORIZED,
    T.CAPTURED: S.COMPLETED,
    T.DECLINED: S.FAILED,
    T.CANCELLED: S.CANCELLED,
    T.EXPIRED: S.EXPIRED,
    T.VOIDED: S.VOIDED,
    T.PARTIAL_REFUND: S.PARTIALLY_REFUNDED,
    T.FULL_REFUND: S.REFUNDED,
}


def _expected() -> dict[tuple[PaymentState, Trigger], OutcomeKind]:
    lines = [line.split() for line in MATRIX.strip().splitlines()[1:]]
    expected = {}
    for trigger_name, *cells in lines:
        assert len(cells) == len(COLUMNS), trigger_name
        for state, cell in zip(COLUMNS, cells, strict=True):
            expected[state, Trigger(trigger_name)] = LETTERS[cell]
    return expected


EXPECTED = _expected()
ALL_PAIRS = [(state, trigger) for state in PaymentState for trigger in Trigger]


def test_the_matrix_covers_every_state_and_trigger() -> None:
    assert set(COLUMNS) == set(PaymentState)
    assert set(EXPECTED) == set(ALL_PAIRS)


def test_the_table_holds_exactly_the_applied_cells_with_their_targets() -> None:
    legal = {pair for pair, kind in EXPECTED.items() if kind is OutcomeKind.APPLIED}
    assert set(TRANSITIONS) == legal
    for (_, trigger), target in TRANSITIONS.items():
        assert target is TARGETS[trigger]


@pytest.mark.parametrize(("state", "trigger"), ALL_PAIRS, ids=lambda v: str(v))
def test_decide_classifies_every_pair(state: PaymentState, trigger: Trigger) -> None:
    assert decide(state, trigger) is EXPECTED[state, trigger]


@pytest.mark.parametrize("state", [S.EXPIRED, S.VOIDED, S.COMPLETED, S.REFUNDED])
def test_an_authorisation_seen_again_after_the_payment_moved_on_is_stale(
    state: PaymentState,
) -> None:
    visited = frozenset({S.CREATED, S.AUTHORIZED, state})
    assert decide(state, T.AUTHORIZED, visited=visited) is OutcomeKind.STALE


def test_money_after_a_page_expired_without_payment_is_a_conflict() -> None:
    visited = frozenset({S.CREATED, S.AWAITING_CUSTOMER, S.EXPIRED})
    assert decide(S.EXPIRED, T.AUTHORIZED, visited=visited) is OutcomeKind.CONFLICT
    assert decide(S.EXPIRED, T.CHARGED, visited=visited) is OutcomeKind.CONFLICT


def test_completed_never_becomes_failed() -> None:
    for state in (S.COMPLETED, S.PARTIALLY_REFUNDED, S.REFUNDED):
        for trigger in (T.DECLINED, T.CANCELLED, T.EXPIRED, T.VOIDED):
            assert decide(state, trigger) is OutcomeKind.CONFLICT


def test_nothing_leaves_a_closed_state() -> None:
    for state in CLOSED_STATES:
        assert not [trigger for (source, trigger) in TRANSITIONS if source is state]


def test_refunds_follow_only_money_that_moved() -> None:
    assert {source for (source, trigger) in TRANSITIONS if "refund" in trigger} == REFUNDABLE_STATES


def test_final_and_closed_sets_match_the_reference() -> None:
    terminal = {S.COMPLETED, S.FAILED, S.CANCELLED, S.EXPIRED, S.VOIDED, S.REFUNDED}
    assert terminal | {S.PARTIALLY_REFUNDED} == FINAL_STATES
    assert CLOSED_STATES == FINAL_STATES - REFUNDABLE_STATES
    assert S.COMPLETED.is_final
    assert not S.COMPLETED.is_closed
    assert S.REFUNDED.is_closed
    assert not S.AUTHORIZED.is_final
