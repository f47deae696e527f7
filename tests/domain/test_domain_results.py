"""The signal → trigger table of results.py covers every signal (a dict has no assert_never)."""

import dataclasses

from domain_builders import at, payment_in, result, sar

from paytabs_guard.domain import GatewayStatus, OutcomeKind, PaymentState, ResultSource
from paytabs_guard.domain.gateway_results import Signal
from paytabs_guard.domain.results import _TRIGGERS

# Signals recorded beside the state (follow-ups) or refused before the table (not a payment).
NO_TRIGGER = {Signal.FOLLOW_UP_PENDING, Signal.FOLLOW_UP_FAILED, Signal.NOT_A_PAYMENT}


def test_every_signal_fires_a_trigger_or_is_recorded_beside_the_state() -> None:
    # REFUNDED fires a full or partial refund depending on the amount, outside the table.
    assert set(_TRIGGERS) | {Signal.REFUNDED} | NO_TRIGGER == set(Signal)
    assert not set(_TRIGGERS) & (NO_TRIGGER | {Signal.REFUNDED})


def test_quarantine_reason_predicts_quarantine_and_changes_nothing() -> None:
    # Storage asks before dedupe (webhook-security.md, checks 6 then 7), so the answer must be
    # the one apply_gateway_result gives, and asking must leave the payment as it was.
    payment = payment_in(PaymentState.COMPLETED)
    payment.collect_events()
    genuine = result(payment, GatewayStatus.AUTHORIZED, tran_ref=payment.tran_ref or "")
    cases = {
        "genuine": genuine,
        "profile": dataclasses.replace(genuine, profile_id=111111),
        "amount": dataclasses.replace(genuine, amount=sar("0.01")),
        "return": dataclasses.replace(
            genuine, profile_id=111111, source=ResultSource.BROWSER_RETURN
        ),
    }
    for name, case in cases.items():
        payment.collect_events()  # applying "amount" notes it for review (an event)
        before = (payment.state, payment.version, payment.updated_at, len(payment.history))
        reason = payment.quarantine_reason(case)
        assert (payment.state, payment.version, payment.updated_at, len(payment.history)) == before
        assert not payment.pending_events
        outcome = payment.apply_gateway_result(case, at=at(30))
        quarantined = outcome.kind is OutcomeKind.QUARANTINED
        assert (reason is not None) == quarantined, name
        assert quarantined == (name in ("profile", "amount")), name
