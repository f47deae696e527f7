"""Breaker state shared between service instances through Redis, never on the call path.

The decision stays local (each instance's own rolling window); what is shared is the outcome:

* **Opening.** When a breaker trips, the instance writes ``<prefix>breaker:<name>:open_until``
  (value: its instance id, ``PX`` = the open period; each failed recovery probe writes it again
  for two probe intervals, a successful one deletes it) and publishes ``opened`` on
  ``<prefix>breaker:events`` (``<prefix>breaker:events:db<n>`` for a database other than 0:
  channels are server-wide, keys are per database). Every other instance's listener task
  opens its own breaker for the remaining time. The listener also reads the keys every
  ``poll_interval`` (1 s), so an instance that missed the message (it was reconnecting, or
  started later) still learns within a second.
* **Trial calls.** An open breaker whose reset timeout has passed asks :meth:`probe_permitted`.
  The first ask starts ``SET <prefix>breaker:<name>:probe <instance> NX PX <ttl>`` in the
  background and answers "not yet" (the call is rejected). The instance that wins the lease
  goes half-open and probes; the others stay open until the winner publishes ``closed`` (they
  close too) or ``opened`` (they stay open for the new period), or until its lease expires.
* **Recovery probes.** One instance probes an open breaker at a time: it holds
  ``<prefix>breaker:<name>:prober`` (``SET NX PX``, renewed by each probe, deleted when it stops)
  and publishes each verdict as ``probe``; a successful one is also written to
  ``<prefix>breaker:<name>:probe_ok`` (a fresh token, short expiry) so that an instance that
  missed the message learns it at its next poll. Every instance acts on a verdict as if it had
  probed itself (an answer moves an open breaker to half-open).
* **Manual states.** :meth:`SharedBreakerState.command` applies an operator's forced open,
  forced closed or disabled state (or reset) to this instance's breaker at once, then writes
  ``<prefix>breaker:<name>:manual`` (JSON: state, a fresh token, instance, time; no expiry, so
  the state survives restarts) and publishes ``manual``; a reset deletes the key and the
  ``open_until`` key and publishes ``reset``. Every other instance applies it on the message,
  at its next poll if it missed the message, and at start-up (the listener's first poll). A
  manual state still ignores automatic shared state. If Redis cannot take the command, the
  change holds on this instance only and :class:`ManualOutcome` says so; polls never undo such
  a local-only state, and the next shared command replaces it.
* **Redis unreachable.** Every operation has a short timeout and runs in a task; failures mark
  Redis unreachable (visible in every snapshot's ``shared`` block), drop pending leases, and
  :meth:`probe_permitted` answers ``True``: breakers behave exactly as purely local ones until
  the listener reconnects.

A breaker opened by one instance's own trouble (its DNS, its network) opens everywhere; that is
the price of not letting N instances each fail ``volume_threshold`` payments per incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from paytabs_guard.resilience.breaker import CircuitBreaker
from paytabs_guard.resilience.clock import MonotonicClock
from paytabs_guard.resilience.manual import ManualAction, ManualOutcome, apply_manual
from paytabs_guard.resilience.shared_wire import (
    MANUAL_STATES,
    RELEASE_LEASE,
    TAKE_OR_RENEW,
    Keys,
    Lease,
    LeaseState,
    ManualRecord,
    default_instance_id,
    encode_message,
)
from paytabs_guard.resilience.stats import SharedStatus

__all__ = ["ManualAction", "ManualOutcome", "SharedBreakerState", "default_instance_id"]

logger = logging.getLogger(__name__)

_SHARED: Final = "shared"  # the reason of a state change another instance's command caused


LEASE_POLL_SECONDS: Final = 0.05
"""How often a caller held for admission asks again while the trial lease is being requested
(one Redis round trip, normally a millisecond or two)."""


class SharedBreakerState:
    """Relays breaker openings and coordinates trial calls between instances through Redis.

    Args:
        url: Redis URL (``redis://host:port/db``).
        prefix: Key and channel prefix, e.g. ``"paytabs-guard:"``.
        instance_id: This instance's name in keys and messages (default: host-pid-random).
        poll_interval: Seconds between reads of the ``open_until`` keys, the upper bound on how
            late an instance learns of an opening whose message it missed.
        op_timeout: Timeout of every Redis operation (connect included).
        reconnect_delay: Pause before the listener reconnects after an error.
        clock: Monotonic clock for lease bookkeeping (the breakers' clock, in tests).

    Start the listener with :meth:`start` (or ``async with``) once an event loop runs, and stop
    it with :meth:`aclose`. Give the instance to a
    :class:`~paytabs_guard.resilience.BreakerRegistry`, which attaches every breaker it creates.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "paytabs-guard:",
        instance_id: str | None = None,
        poll_interval: float = 1.0,
        op_timeout: float = 0.5,
        reconnect_delay: float = 1.0,
        clock: MonotonicClock = time.monotonic,
    ) -> None:
        self._url = url
        self._keys = Keys(prefix, int(parse_url(url).get("db") or 0))
        self._channel = self._keys.channel
        self.instance_id = instance_id or default_instance_id()
        self._poll_interval = poll_interval
        self._op_timeout = op_timeout
        self._reconnect_delay = reconnect_delay
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._leases: dict[str, Lease] = {}
        self._redis: redis.Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reachable: bool | None = None
        self._last_error: str | None = None
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._synced = asyncio.Event()  # the stored state was read once
        self._closing = False
        self._probe_ok_seen: dict[str, str] = {}
        # The token of the shared manual state each breaker last took from Redis (or put there):
        # a poll that finds another token applies it, one that finds no key resets the breaker
        # (a reset whose message was missed).
        self._manual_seen: dict[str, str] = {}
        # Breakers whose manual state was set here while Redis could not take it: polls leave
        # them alone until the next shared command.
        self._manual_local: set[str] = set()
        # Breakers with a command of ours on its way to Redis: polls leave their manual state
        # alone meanwhile (they would read the state before it).
        self._manual_sending: set[str] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the listener task. Returns at once; Redis may come up later (or never)."""
        if self._listener is not None:
            return
        self._redis = redis.Redis.from_url(
            self._url,
            decode_responses=True,
            socket_connect_timeout=self._op_timeout,
            socket_timeout=self._op_timeout,
            # Our loop reconnects; redis-py's own retries would only stretch each failure.
            retry=Retry(NoBackoff(), 0),
        )
        self._listener = asyncio.create_task(
            self._listen(), name=f"breaker-sharing:{self._keys.prefix}"
        )

    async def aclose(self) -> None:
        """Stop the listener and background operations, and close the connections.

        Never waits longer than about ``poll_interval + op_timeout``: a cancellation that
        redis-py swallows (a read whose own timeout expires as it is cancelled turns the
        cancellation into "no message yet" on Python 3.11) must not hang the shutdown, so the
        listener also checks a closing flag on every turn of its loop and the wait is bounded.
        """
        self._closing = True
        listener, self._listener = self._listener, None
        pending = {*self._tasks} | ({listener} if listener is not None else set())
        for task in pending:
            task.cancel()
        if pending:
            grace = self._poll_interval + 2 * self._op_timeout + self._reconnect_delay
            _, stuck = await asyncio.wait(pending, timeout=grace)
            for task in stuck:  # pragma: no cover - only if redis-py ignores the flag too
                logger.warning("breaker sharing: %s did not stop within %.1f s", task, grace)
        client, self._redis = self._redis, None
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._op_timeout):
                    await client.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def wait_reachable(self, reachable: bool = True) -> None:
        """Wait until Redis is known to be reachable (or, with ``False``, unreachable).

        Bound it with ``asyncio.timeout``: it waits for ever if that never happens.
        """
        await (self._up if reachable else self._down).wait()

    async def wait_synced(self) -> bool:
        """Wait until the listener has read the state stored in Redis once, manual states
        included, or found Redis unreachable; ``True`` if it read it. Bound it with
        ``asyncio.timeout``.

        The service waits for it (briefly) at start-up, so that an instance starting while a
        breaker is forced open starts forced open; without Redis the breakers start from local
        state and catch up when it answers.
        """
        if not (self._synced.is_set() or self._down.is_set()):
            waiters = {asyncio.ensure_future(e.wait()) for e in (self._synced, self._down)}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        return self._synced.is_set()

    async def flush(self) -> None:
        """Wait for the background operations started so far (publishes, lease requests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- registry side -------------------------------------------------------------------------

    def attach(self, breaker: CircuitBreaker) -> None:
        """Relay shared state to and from ``breaker`` (the registry calls this)."""
        self._breakers[breaker.name] = breaker

    # -- operator commands ---------------------------------------------------------------------

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

    # -- SharedHook: called by breakers, must not block ----------------------------------------

    def status(self) -> SharedStatus:
        """Enabled, whether Redis answered last time, and the last error seen."""
        return SharedStatus(
            enabled=True,
            reachable=self._reachable,
            last_error=self._last_error,
            instance=self.instance_id,
        )

    def probe_permitted(self, name: str) -> bool:
        """``True`` if this instance may start a trial call of breaker ``name`` now.

        Without a working Redis the answer is always ``True`` (local behaviour). Otherwise the
        first ask requests the lease in the background and answers ``False``; once the lease is
        won, the next ask answers ``True`` and consumes it.
        """
        if self._reachable is not True or self._redis is None:
            return True
        lease = self._requested_lease(name)
        if lease is None:
            return True  # no running loop to ask Redis from: decide locally
        if lease.state is LeaseState.HELD:
            del self._leases[name]
            return True
        return False

    def trial_wait(self, name: str) -> float | None:
        """Seconds before a call of ``name`` could be this instance's trial; None when it could
        be now (no working Redis, or the lease is held here and not yet used).

        Starts the lease request as the first :meth:`probe_permitted` would, but consumes
        nothing: the trial call still takes the lease through ``probe_permitted``. While the
        request is under way the answer is a short poll; when another instance holds the lease,
        the time until it lapses (its trial's verdict, published, ends the wait sooner).
        """
        if self._reachable is not True or self._redis is None:
            return None
        lease = self._requested_lease(name)
        if lease is None or lease.state is LeaseState.HELD:
            return None
        if lease.state is LeaseState.ACQUIRING:
            return LEASE_POLL_SECONDS
        return max(lease.until - self._clock(), LEASE_POLL_SECONDS)

    def _requested_lease(self, name: str) -> Lease | None:
        """This instance's trial lease of ``name``: the one it holds or is asking for, or the
        other holder's until it lapses; asked for (in the background) when there is none.
        None when there is no running loop to ask Redis from."""
        lease = self._leases.get(name)
        if lease is not None and (
            lease.state is not LeaseState.LOST or self._clock() < lease.until
        ):
            return lease
        lease = Lease(LeaseState.ACQUIRING)
        if not self._spawn(self._acquire(name, lease)):
            return None
        self._leases[name] = lease
        return lease

    def opened(self, name: str, open_for: float) -> None:
        """Breaker ``name`` tripped here: tell the others (in the background)."""
        self._spawn(self._publish_opened(name, open_for, release_lease=False))

    def trial_finished(
        self, name: str, *, succeeded: bool, open_for: float, degraded: bool = False
    ) -> None:
        """A trial call here decided: publish ``closed`` or ``opened`` and free the lease."""
        self._leases.pop(name, None)
        if succeeded:
            self._spawn(self._publish_closed(name, degraded))
        else:
            self._spawn(self._publish_opened(name, open_for, release_lease=True))

    def probe_finished(self, name: str, *, succeeded: bool) -> None:
        """This instance's recovery probe of ``name`` decided: tell the others."""
        self._spawn(self._publish_probe(name, succeeded))

    # -- ProbeLease: called by the prober's task, may await Redis -------------------------------

    async def acquire_prober(self, name: str, ttl: float) -> bool:
        """Take or renew the prober lease of ``name``; ``True`` also when Redis is unreachable."""
        client = self._redis
        if client is None or self._reachable is not True:
            return True
        try:
            async with asyncio.timeout(self._op_timeout):
                won = await client.eval(
                    TAKE_OR_RENEW,
                    1,
                    self._keys.prober(name),
                    self.instance_id,
                    str(max(math.ceil(ttl * 1000), 1)),
                )
        except Exception as error:
            self._mark_unreachable(error)
            return True
        self._mark_reachable()
        return bool(won)

    async def release_prober(self, name: str) -> None:
        """Give up the prober lease of ``name`` if this instance holds it."""
        client = self._redis
        if client is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._op_timeout):
                await client.eval(RELEASE_LEASE, 1, self._keys.prober(name), self.instance_id)

    # -- background operations -----------------------------------------------------------------

    def _spawn(self, operation: Coroutine[Any, Any, None]) -> bool:
        try:
            task = asyncio.get_running_loop().create_task(operation)
        except RuntimeError:  # no running loop (a snapshot taken from synchronous code)
            operation.close()
            return False
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _send(self, queue: Callable[[Pipeline], object]) -> bool:
        """Send the commands ``queue`` adds to a pipeline in one round trip. False when there
        is no connection or it failed (then Redis is marked unreachable)."""
        client = self._redis
        if client is None:
            return False
        try:
            async with asyncio.timeout(self._op_timeout):
                async with client.pipeline(transaction=False) as pipe:
                    queue(pipe)
                    await pipe.execute()
        except Exception as error:
            self._mark_unreachable(error)
            return False
        self._mark_reachable()
        return True

    async def _publish_opened(self, name: str, open_for: float, *, release_lease: bool) -> None:
        milliseconds = max(math.ceil(open_for * 1000), 1)
        message = encode_message(self.instance_id, name, "opened", open_for=open_for)

        def queue(pipe: Pipeline) -> None:
            pipe.set(self._keys.open_until(name), self.instance_id, px=milliseconds)
            pipe.publish(self._channel, message)
            if release_lease:
                pipe.eval(RELEASE_LEASE, 1, self._keys.probe(name), self.instance_id)

        await self._send(queue)

    async def _publish_probe(self, name: str, succeeded: bool) -> None:
        breaker = self._breakers.get(name)
        if breaker is None:
            return
        result = "succeeded" if succeeded else "failed"
        interval = breaker.config.probe_interval or 1.0
        token = f"{self.instance_id}:{secrets.token_hex(4)}"
        message = encode_message(self.instance_id, name, "probe", result=result, token=token)

        def queue(pipe: Pipeline) -> None:
            if succeeded:
                pipe.set(self._keys.probe_ok(name), token, px=math.ceil(2000 * interval))
                # PayTabs answers: no instance's poll may open a breaker again on the way to
                # its trials.
                pipe.delete(self._keys.open_until(name))
            else:
                # Still down: the opening lives on while probes fail. Written for one open
                # period only, it lapsed about 2 s into an outage, and an instance started
                # then began closed and sent its first payments into the outage.
                pipe.set(
                    self._keys.open_until(name), self.instance_id, px=math.ceil(2000 * interval)
                )
            pipe.publish(self._channel, message)

        if await self._send(queue):
            self._probe_ok_seen[name] = token

    async def _publish_closed(self, name: str, degraded: bool) -> None:
        message = encode_message(self.instance_id, name, "closed", degraded=degraded)

        def queue(pipe: Pipeline) -> None:
            pipe.delete(self._keys.open_until(name))
            pipe.publish(self._channel, message)
            pipe.eval(RELEASE_LEASE, 1, self._keys.probe(name), self.instance_id)

        await self._send(queue)

    async def _acquire(self, name: str, lease: Lease) -> None:
        client = self._redis
        breaker = self._breakers.get(name)
        if client is None or breaker is None:
            self._leases.pop(name, None)
            return
        config = breaker.config
        # The lease covers the wait for a caller plus the trial itself; if it lapses first,
        # a second instance may probe too, which is harmless.
        ttl = max(config.reset_timeout, config.call_timeout or 0.0)
        try:
            async with asyncio.timeout(self._op_timeout):
                won = await client.set(
                    self._keys.probe(name), self.instance_id, nx=True, px=math.ceil(ttl * 1000)
                )
                remaining = 0 if won else await client.pttl(self._keys.probe(name))
        except Exception as error:
            if self._leases.get(name) is lease:
                del self._leases[name]
            self._mark_unreachable(error)
            return
        self._mark_reachable()
        if self._leases.get(name) is not lease:
            return  # the breaker was opened or closed by a message meanwhile
        if won:
            lease.state = LeaseState.HELD
        else:
            lease.state = LeaseState.LOST
            # Ask again when the holder's lease lapses (it may have died mid-trial).
            lease.until = self._clock() + max(int(remaining), 0) / 1000

    # -- listener ------------------------------------------------------------------------------

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

    def _catch_up_manual(self, breaker: CircuitBreaker, raw: str | None) -> None:
        """Apply the manual state stored for ``breaker`` if this instance has not yet."""
        name = breaker.name
        if raw is None:
            if self._manual_seen.pop(name, None) is not None and name not in self._manual_local:
                # The state this instance took from Redis is gone: a reset whose message was
                # missed (or a key deleted by hand, which means the same).
                apply_manual(breaker, "reset", reason=_SHARED)
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
        apply_manual(breaker, state, reason=_SHARED)

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
            self._manual_seen.pop(breaker.name, None)
            self._manual_local.discard(breaker.name)
            self._leases.pop(breaker.name, None)
            apply_manual(breaker, "reset", reason=_SHARED)

    # -- reachability --------------------------------------------------------------------------

    def _mark_reachable(self) -> None:
        if self._reachable is not True:
            if self._reachable is False:
                logger.info("breaker sharing: Redis reachable again")
            self._reachable = True
            self._down.clear()
            self._up.set()

    def _mark_unreachable(self, error: BaseException) -> None:
        if not isinstance(error, RedisError | OSError | TimeoutError):
            logger.error("breaker sharing: unexpected error", exc_info=error)
        detail = str(error)
        self._last_error = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
        if self._reachable is not False:
            logger.warning("breaker sharing: Redis unreachable, using local state (%s)", error)
            self._reachable = False
            # Pending lease requests died with the connection; decide locally from now on.
            self._leases.clear()
            self._up.clear()
            self._down.set()
