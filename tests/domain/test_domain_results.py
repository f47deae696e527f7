"""The signal → trigger table of results.py covers every signal (a dict has no assert_never)."""

from paytabs_guard.domain.gateway_results import Signal
from paytabs_guard.domain.results import _TRIGGERS

# Signals recorded beside the state (follow-ups) or refused before the table (not a payment).
NO_TRIGGER = {Signal.FOLLOW_UP_PENDING, Signal.FOLLOW_UP_FAILED, Signal.NOT_A_PAYMENT}


def test_every_signal_fires_a_trigger_or_is_recorded_beside_the_state() -> None:
    # REFUNDED fires a full or partial refund depending on the amount, outside the table.
    assert set(_TRIGGERS) | {Signal.REFUNDED} | NO_TRIGGER == set(Signal)
    assert not set(_TRIGGERS) & (NO_TRIGGER | {Signal.REFUNDED})
