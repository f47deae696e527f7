"""What a payment keeps for humans about results it does not apply: a note and an event."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from .events import PaymentConflict
from .gateway_results import GatewayResult
from .outcome import Outcome
from .records import QUARANTINED_NOTE, ConflictNote
from .states import OutcomeKind

if TYPE_CHECKING:
    from .payment import Payment


def record_conflict(
    payment: Payment,
    result: GatewayResult,
    *,
    at: datetime,
    reason: str,
    kind: OutcomeKind = OutcomeKind.CONFLICT,
) -> Outcome:
    """Keep a note of ``result`` and queue a ``payment.conflict`` event; the state stays.

    CONFLICT: the result contradicts the decided payment. QUARANTINED: it cannot be this
    payment's, yet says money moved on its cart (``screening.needs_review``); its note is
    marked (``QUARANTINED_NOTE``) so that the genuine result may still apply."""
    noted = QUARANTINED_NOTE + reason if kind is OutcomeKind.QUARANTINED else reason
    payment.conflicts.append(
        ConflictNote(
            tran_ref=result.tran_ref,
            tran_type=result.tran_type,
            reported_status=result.status,
            state=payment.state,
            source=result.source,
            at=at,
            reason=noted,
        )
    )
    payment._touch(at)
    event = PaymentConflict(
        **payment._envelope(at),
        tran_ref=result.tran_ref,
        tran_type=result.tran_type,
        reported_status=result.status,
        source=result.source,
        reason=noted,
    )
    payment.pending_events.append(event)
    return Outcome(kind, payment.state, payment.state, reason, (event,))
