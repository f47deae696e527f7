"""Wait for the outbox relay: the app's own relay runs in the background, so a test that wants
"every event handed to every sink" drives passes itself until nothing is left (both relays
claim safely), instead of guessing with a sleep."""

from __future__ import annotations

import asyncio
import time

from paytabs_guard.entrypoints.health_checks import outbox_lag

from .api_support import Service

DRAIN_SECONDS = 15.0


async def drained(service: Service) -> None:
    """Every event fanned out and every due delivery made or given up (dead)."""
    container = service.container
    deadline = time.monotonic() + DRAIN_SECONDS
    while True:
        lag = await outbox_lag(container)
        if lag.unpublished == 0 and lag.pending_deliveries == 0:
            return
        assert time.monotonic() < deadline, f"the relay did not drain: {lag}"
        stats = await container.relay.run_once()
        if not (stats.delivered or stats.dead or stats.retried):
            await asyncio.sleep(0.01)  # the background relay holds the rest: let it finish
