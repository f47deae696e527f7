"""Operators' manual states (forced open, forced closed, disabled, reset) shared between
instances: a command applied here and stored in Redis for the others, and the states the
others stored, taken when their message or a poll brings them (``shared.py``'s docstring,
"Manual states")."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Final

from redis.asyncio.client import Pipeline

from paytabs_guard.resilience.breaker import CircuitBreaker
from paytabs_guard.resilience.manual import ManualAction, ManualOutcome, apply_manual
from paytabs_guard.resilience.shared_core import SharedCore, logger
from paytabs_guard.resilience.shared_wire import ManualRecord, encode_message

SHARED_REASON: Final = "shared"  # the reason of a state change another instance's command caused


class SharedManualStates(SharedCore):
    """The manual states of a SharedBreakerState."""

    async def command(self, name: str, action: ManualAction) -> ManualOutcome:
        """Apply an operator's manual state (or reset) to breaker ``name`` everywhere.

        The change applies to this instance's breaker before anything is sent, so callers
        here are affected at once whatever Redis does. Then it is stored and published in one
        round trip bounded by ``op_timeout`` (skipped when Redis is known to be unreachable);
        the outcome says whether that worked. A client that goes away meanwhile does not
        cancel the write. Raises ``KeyError`` for a breaker this instance does not have.
        """
        breaker = self._breakers[name]
        apply_manual(breaker, action)
        self._leases.pop(name, None)
        if self._redis is None or self._reachable is False:
            self._manual_local.add(name)
            return ManualOutcome(False, self._last_error or "Redis not connected")
        token = secrets.token_hex(8)
        self._manual_sending.add(name)
        task = asyncio.get_running_loop().create_task(self._send_manual(name, action, token))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            stored = await asyncio.shield(task)
        finally:
            if task.done():
                self._manual_sending.discard(name)
            else:  # the caller went away; the write finishes in the background
                task.add_done_callback(lambda _: self._manual_sending.discard(name))
        if not stored:
            return ManualOutcome(False, self._last_error or "Redis unreachable")
        return ManualOutcome(True)

    async def _send_manual(self, name: str, action: ManualAction, token: str) -> bool:
        key = self._keys.manual(name)
        if action == "reset":
            message = encode_message(self.instance_id, name, "reset")
        else:
            record = ManualRecord(action, token, self.instance_id, datetime.now(UTC).isoformat())
            message = encode_message(self.instance_id, name, "manual", state=action, token=token)

        def queue(pipe: Pipeline) -> None:
            if action == "reset":
                # Reset means closed everywhere: an automatic opening left in Redis would
                # re-open this instance at its next poll, and the others with it.
                pipe.delete(key, self._keys.open_until(name))
            else:
                pipe.set(key, record.encode())
            pipe.publish(self._channel, message)

        stored = await self._send(queue)
        if stored:
            self._manual_local.discard(name)
            if action == "reset":
                self._manual_seen.pop(name, None)
            else:
                self._manual_seen[name] = token
        else:
            self._manual_local.add(name)
        return stored

    def _catch_up_manual(self, breaker: CircuitBreaker, raw: str | None) -> None:
        """Apply the manual state stored for ``breaker`` if this instance has not yet."""
        name = breaker.name
        if raw is None:
            if self._manual_seen.pop(name, None) is not None and name not in self._manual_local:
                # The state this instance took from Redis is gone: a reset whose message was
                # missed (or a key deleted by hand, which means the same).
                apply_manual(breaker, "reset", reason=SHARED_REASON)
            return
        record = ManualRecord.decode(raw)
        if record is None:
            logger.warning("ignoring unreadable manual state of breaker %s in Redis", name)
            return
        if self._manual_seen.get(name) != record.token:
            self._take_manual(breaker, record.state, record.token)

    def _take_manual(self, breaker: CircuitBreaker, state: str, token: str) -> None:
        self._manual_seen[breaker.name] = token
        self._manual_local.discard(breaker.name)
        self._leases.pop(breaker.name, None)
        apply_manual(breaker, state, reason=SHARED_REASON)

    def _take_reset(self, breaker: CircuitBreaker) -> None:
        """Another instance reset ``breaker``: back to automatic, here too."""
        self._manual_seen.pop(breaker.name, None)
        self._manual_local.discard(breaker.name)
        self._leases.pop(breaker.name, None)
        apply_manual(breaker, "reset", reason=SHARED_REASON)
