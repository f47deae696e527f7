"""What the other instances say, heard by a SharedBreakerState: their messages on the
channel, and a poll of the stored keys every ``poll_interval`` for what a missed message said
(``shared.py``'s docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import redis.asyncio as redis

from paytabs_guard.resilience.shared_core import logger
from paytabs_guard.resilience.shared_manual import SharedManualStates
from paytabs_guard.resilience.shared_wire import MANUAL_STATES


class SharedListener(SharedManualStates):
    """The listener task of a SharedBreakerState."""

    async def _listen(self) -> None:
        client = self._redis
        if client is None:  # pragma: no cover - start() sets it first
            return
        loop = asyncio.get_running_loop()
        while not self._closing:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(self._op_timeout):
                    await pubsub.subscribe(self._channel)
                    await self._poll(client)
                self._mark_reachable()
                self._synced.set()
                next_poll = loop.time() + self._poll_interval
                while not self._closing:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True,
                        timeout=max(next_poll - loop.time(), 0.0),
                    )
                    if message is not None:
                        self._on_message(message)
                    if loop.time() >= next_poll:
                        async with asyncio.timeout(self._op_timeout):
                            await self._poll(client)
                        next_poll = loop.time() + self._poll_interval
            except Exception as error:
                self._mark_unreachable(error)
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._op_timeout):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
            if not self._closing:
                await asyncio.sleep(self._reconnect_delay)

    async def _poll(self, client: redis.Redis) -> None:
        """Catch up with openings whose message this instance missed."""
        names = list(self._breakers)
        if not names:
            return
        async with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(self._keys.open_until(name))
                pipe.pttl(self._keys.open_until(name))
                pipe.get(self._keys.probe_ok(name))
                pipe.get(self._keys.manual(name))
            results = await pipe.execute()
        for index, name in enumerate(names):
            owner, remaining, probe_ok, manual = results[4 * index : 4 * index + 4]
            breaker = self._breakers[name]
            if name not in self._manual_sending:
                self._catch_up_manual(breaker, manual)
            if owner is not None and owner != self.instance_id and int(remaining) > 0:
                breaker.apply_shared_open(int(remaining) / 1000)
            if probe_ok is not None and self._probe_ok_seen.get(name) != probe_ok:
                self._probe_ok_seen[name] = probe_ok
                if not probe_ok.startswith(f"{self.instance_id}:"):
                    breaker.apply_shared_probe(succeeded=True)

    def _on_message(self, message: dict[str, Any]) -> None:
        try:
            body = json.loads(message["data"])
            if body.get("instance") == self.instance_id:
                return  # our own publish, echoed back
            breaker = self._breakers.get(body["name"])
            event = body["event"]
            open_for = float(body["open_for"]) if event == "opened" else 0.0
            probe_result = str(body["result"]) if event == "probe" else ""
            token = str(body.get("token", "")) if event in ("probe", "manual") else ""
            manual_state = str(body["state"]) if event == "manual" else ""
        except (KeyError, TypeError, ValueError):
            logger.warning("ignoring malformed breaker message on %s", self._channel)
            return
        if breaker is None:
            return
        if event == "opened":
            self._leases.pop(breaker.name, None)
            breaker.apply_shared_open(open_for)
        elif event == "closed":
            self._leases.pop(breaker.name, None)
            breaker.apply_shared_close(degraded=body.get("degraded") is True)
        elif event == "probe" and probe_result in ("succeeded", "failed"):
            if token:
                self._probe_ok_seen[breaker.name] = token
            breaker.apply_shared_probe(succeeded=probe_result == "succeeded")
        elif event == "manual" and manual_state in MANUAL_STATES and token:
            self._take_manual(breaker, manual_state, token)
        elif event == "reset":
            self._take_reset(breaker)
