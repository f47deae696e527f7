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
import math
import secrets
from types import TracebackType
from typing import Final, Self

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from paytabs_guard.resilience.breaker import CircuitBreaker
from paytabs_guard.resilience.manual import ManualAction, ManualOutcome
from paytabs_guard.resilience.shared_core import logger
from paytabs_guard.resilience.shared_listener import SharedListener
from paytabs_guard.resilience.shared_wire import (
    RELEASE_LEASE,
    TAKE_OR_RENEW,
    Lease,
    LeaseState,
    default_instance_id,
    encode_message,
)
from paytabs_guard.resilience.stats import SharedStatus

__all__ = ["ManualAction", "ManualOutcome", "SharedBreakerState", "default_instance_id"]

LEASE_POLL_SECONDS: Final = 0.05
"""How often a caller held for admission asks again while the trial lease is being requested
(one Redis round trip, normally a millisecond or two)."""


class SharedBreakerState(SharedListener):
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

    # -- publishing ----------------------------------------------------------------------------

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
