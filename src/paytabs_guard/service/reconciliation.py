"""Reconciliation: the safety net for lost callbacks, ambiguous answers and abandoned pages.

Finds payments stuck in an undecided state past a threshold, and decided payments whose
follow-up (refund, capture, void) is unsettled: its answer was lost, or PayTabs reported it
pending, and PayTabs' callback about it was lost too; and deletes at PayTabs the tokens of
saved cards deleted before PayTabs issued them. Asks
PayTabs through the resilient gateway (a query: nothing is ever sent again from here), and
applies the answer through the same transition function as callbacks. Safe on every instance at
once: the claim skips rows another reconciler holds, and applying a result twice changes
nothing (locked, idempotent transitions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from paytabs_guard.domain import Operation, Outcome, OutcomeKind, Payment, PaymentState
from paytabs_guard.service.gateway import GatewayNotReached, GatewayOutcomeUnknown
from paytabs_guard.service.payment_steps import PaymentDeps, PaymentNotFound
from paytabs_guard.service.results import sync_payment
from paytabs_guard.service.saved_cards import delete_left_tokens

log = logging.getLogger(__name__)

#: Waiting for the gateway or the customer; INITIATING rows are stuck when a process died
#: between starting a create and recording its answer.
RECONCILABLE = frozenset(
    {
        PaymentState.INITIATING,
        PaymentState.UNKNOWN,
        PaymentState.AWAITING_CUSTOMER,
        PaymentState.PENDING,
        PaymentState.ON_HOLD,
    }
)


@dataclass
class ReconcileReport:
    """What one pass looked at and changed."""

    started_at: datetime
    examined: int = 0
    changed: int = 0
    #: payments PayTabs could not be asked about, and left tokens it could not be asked to delete
    unreachable: int = 0
    #: payments whose settling failed with an error (logged with the payment's id); the next
    #: pass tries them again
    failed: int = 0
    #: tokens of cards deleted before PayTabs issued them, deleted at PayTabs by this pass
    tokens_deleted: int = 0
    states: dict[str, int] = field(default_factory=dict)
    #: (before, after) of every payment this pass moved, for the transition metrics
    transitions: list[tuple[PaymentState, PaymentState]] = field(default_factory=list)


#: How the loop waits between passes: until the interval is over or ``stop`` is set.
Pause = Callable[[asyncio.Event, timedelta], Awaitable[None]]


async def pause_until_stopped(stop: asyncio.Event, interval: timedelta) -> None:
    """The loop's pause in a serving instance: ``interval``, cut short by ``stop``."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=interval.total_seconds())


@dataclass(slots=True)
class ReconciliationStatus:
    """The serving loop's schedule (``interval``, None when it does not run, and how it waits
    between passes) and what the health endpoint says about it: when it last finished a pass."""

    interval: timedelta | None
    pause: Pause = pause_until_stopped
    last_run_at: datetime | None = None
    last_examined: int = 0
    last_changed: int = 0
    last_unreachable: int = 0

    def record(self, report: ReconcileReport, finished_at: datetime) -> None:
        self.last_run_at = finished_at
        self.last_examined = report.examined
        self.last_changed = report.changed
        self.last_unreachable = report.unreachable


async def reconcile_once(
    deps: PaymentDeps, *, stuck_after: timedelta = timedelta(minutes=5), limit: int = 100
) -> ReconcileReport:
    """One pass over the payments stuck for longer than ``stuck_after``, and those whose page
    deadline has passed however recently they changed: an unpaid page expires within one pass
    of its deadline, not ``stuck_after`` later. Then over up to ``limit`` payments whose
    follow-up is unsettled: held for longer than ``stuck_after``, or pending and unchanged as
    long."""
    report = ReconcileReport(started_at=deps.clock())
    cutoff = report.started_at - stuck_after
    async with deps.uow() as uow:
        ids = list(
            await uow.payments.stuck(
                RECONCILABLE, updated_before=cutoff, limit=limit, expired_before=report.started_at
            )
        )
        held = await uow.payments.awaiting_follow_ups(before=cutoff, limit=limit)
    ids.extend(payment_id for payment_id in held if payment_id not in ids)
    for payment_id in ids:
        if deps.gateway.unavailable_for(Operation.QUERY) is not None:
            report.unreachable += len(ids) - report.examined
            break  # the circuit is open: the next pass will try again
        report.examined += 1
        try:
            settled = await settle(deps, payment_id)
        except PaymentNotFound:
            continue
        except Exception:
            # One payment the pass cannot settle (a row it cannot read, a write that fails)
            # must not stop the others: the stuck ones come oldest first, so a failure that
            # ended the pass would end every later pass at the same payment.
            log.exception("reconcile: settling a payment failed", extra={"payment_id": payment_id})
            report.failed += 1
            continue
        if settled is None:
            report.unreachable += 1
            continue
        report.states[settled.after.value] = report.states.get(settled.after.value, 0) + 1
        report.transitions.extend(settled.transitions)
        if settled.changed:
            report.changed += 1
    tokens = await delete_left_tokens(deps, limit=limit)
    report.tokens_deleted = tokens.deleted
    report.unreachable += tokens.unreachable
    return report


@dataclass(frozen=True, slots=True)
class Settled:
    """What settling one payment did: its state before and after, whether anything was
    written (a further partial refund changes the payment but not its state), and the
    transitions this pass committed itself (not a callback's that landed meanwhile)."""

    before: PaymentState
    after: PaymentState
    changed: bool
    transitions: tuple[tuple[PaymentState, PaymentState], ...] = ()


async def settle(deps: PaymentDeps, payment_id: str) -> Settled | None:
    """Ask PayTabs about one undecided payment, or one with an unsettled follow-up, and apply
    its answer (``sync_payment``: a page past its deadline that PayTabs holds nothing for
    expires). Returns what changed, or None when PayTabs could not be asked (logged); raises
    PaymentNotFound."""
    moved: list[tuple[PaymentState, PaymentState]] = []

    def seen(outcome: Outcome) -> None:
        if outcome.kind is OutcomeKind.APPLIED and outcome.previous_state is not outcome.state:
            moved.append((outcome.previous_state, outcome.state))

    try:
        before = await _current(deps, payment_id)
        after = await sync_payment(deps, payment_id, on_outcome=seen)
    except (GatewayNotReached, GatewayOutcomeUnknown) as error:
        log.info("reconcile: PayTabs could not be asked", extra={"reason": str(error)})
        return None
    return Settled(
        before.state, after.state, changed=after.version != before.version, transitions=tuple(moved)
    )


async def _current(deps: PaymentDeps, payment_id: str) -> Payment:
    async with deps.uow() as uow:
        payment = await uow.payments.get(payment_id)
    if payment is None:
        raise PaymentNotFound(payment_id)
    return payment


async def reconcile_forever(
    deps: PaymentDeps,
    stop: asyncio.Event,
    *,
    interval: timedelta = timedelta(seconds=60),
    stuck_after: timedelta = timedelta(minutes=5),
    on_report: Callable[[ReconcileReport], None] | None = None,
    on_abort: Callable[[], None] | None = None,
    pause: Pause = pause_until_stopped,
) -> None:
    """Run passes every ``interval`` until ``stop`` is set (inside ``serve``); between two
    passes the loop waits in ``pause`` (tests drive it by hand). ``on_report`` hears of each
    pass that finished, ``on_abort`` of each that failed as a whole (the database down)."""
    while not stop.is_set():
        try:
            report = await reconcile_once(deps, stuck_after=stuck_after)
        except Exception:  # a pass must never kill the worker; the next one retries
            log.exception("reconcile pass failed")
            if on_abort is not None:
                on_abort()
        else:
            if on_report is not None:
                on_report(report)
        await pause(stop, interval)
