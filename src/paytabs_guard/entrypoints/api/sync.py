"""Ask PayTabs about a payment, but never make the caller wait longer than a bound.

The query runs as a background task: when it outlasts ``sync_wait_seconds`` the caller gets the
last known state at once (``confirmed`` false), and the task goes on, so an answer that arrives
later is still applied (and shutdown waits for it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from paytabs_guard.domain import Payment
from paytabs_guard.service.gateway import GatewayNotReached, GatewayOutcomeUnknown
from paytabs_guard.service.payments import PaymentService

from .runtime import Runtime


@dataclass(frozen=True, slots=True)
class Synced:
    """The payment after asking PayTabs; ``reason`` says why it is not confirmed."""

    payment: Payment
    confirmed: bool
    reason: str | None = None
    retry_after: float | None = None
    """Seconds until PayTabs may be asked again, when an open circuit said so."""


@dataclass(frozen=True, slots=True)
class _NotAsked:
    reason: str
    retry_after: float | None = None


async def _sync_quietly(service: PaymentService, known: Payment) -> Payment | _NotAsked:
    """The synced payment, or why PayTabs could not be asked (expected, so not raised)."""
    try:
        return await service.sync(known.id, known=known)
    except GatewayNotReached as error:
        return _NotAsked(f"PayTabs is unavailable: {error}", error.retry_after)
    except GatewayOutcomeUnknown:
        return _NotAsked("PayTabs gave no clear answer; the payment is reconciled later")


async def sync_within(runtime: Runtime, service: PaymentService, payment_id: str) -> Synced:
    """``PaymentService.sync`` bounded in time (raises PaymentNotFound for an unknown id)."""
    before = await service.get(payment_id)
    if before.state.is_final and not before.awaits_follow_up:
        # Decided, and no refund, capture or void whose outcome PayTabs alone knows.
        return Synced(before, confirmed=True)
    task = runtime.background.spawn(_sync_quietly(service, before), name=f"sync-{payment_id}")
    done, _ = await asyncio.wait({task}, timeout=runtime.options.sync_wait_seconds)
    if not done:
        wait = runtime.options.sync_wait_seconds
        return Synced(before, False, f"PayTabs did not answer within {wait:g} s; asked again later")
    outcome = task.result()
    if isinstance(outcome, _NotAsked):
        payment = await service.get(payment_id)
        return Synced(payment, False, outcome.reason, outcome.retry_after)
    return Synced(outcome, confirmed=True)
