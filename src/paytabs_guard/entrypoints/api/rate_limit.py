"""Limit failed webhook verifications per source (docs/webhook-security.md, checklist 25).

Policy for the receiver:

1. IP allowlist (403), body limit (413), content type (415), then **always verify** the
   signature, even for a source that is blocked.
2. Verified: process it. A valid delivery is never throttled, whatever the source's record.
3. Failed: ``record_failure(key)``, then answer 429 with ``Retry-After`` if ``is_blocked(key)``,
   else 401.

Why verify first: PayTabs and an attacker can share an address (one cloud NAT, one egress
proxy), and the limiter only knows addresses. If a block were checked before verification, the
attacker's garbage would lock PayTabs out and its five retries could all be lost. Verifying a
body that is already size-limited costs one HMAC, which is cheap; stopping a flood is the edge's
job (WAF, security group), and the ``rate_limited`` metric and log tell operators whom to block
there. The 429 itself makes well-behaved but misconfigured senders back off (Standard Webhooks
treats 429 as "throttle").

Blocking is per resolved client address (:func:`source_key`: an IPv6 client is keyed by its
``/64``, which one host can fill with addresses) and expires on its own: a source is blocked
while it has ``max_failures`` failures within the last ``window_seconds``. Memory is bounded:
at most ``max_keys`` sources are tracked, each with at most ``max_failures`` timestamps; the
least recently failing source is evicted first, and expired ones are pruned as calls arrive.
State is per process: with N instances a source gets up to N times the budget, which is fine
for a signal whose enforcement belongs at the edge.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence

from .client_address import IPAddress, IPNetwork, client_ip, normalise_address


def source_key(ip: IPAddress | None) -> str:
    """The limiter key of a client: the IPv4 address, the IPv6 ``/64``, or ``"unknown"``."""
    if ip is None:
        return "unknown"
    ip = normalise_address(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


def request_source(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[IPNetwork]
) -> str:
    """The limiter key of a request: its client address as resolved through trusted proxies."""
    return source_key(client_ip(peer, forwarded_for, trusted_proxies))


class FailureLimiter:
    """Counts failures per key in a sliding window; a key with too many is blocked for a while.

    Every call is O(1) amortised. ``clock`` returns monotonic seconds (``time.monotonic``).
    """

    __slots__ = ("_clock", "_failures", "_max_failures", "_max_keys", "_window")

    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, not {max_failures}")
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, not {window_seconds}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, not {max_keys}")
        self._max_failures = max_failures
        self._window = window_seconds
        self._clock = clock
        self._max_keys = max_keys
        # key -> times of its last max_failures failures, ordered by the key's latest failure
        self._failures: OrderedDict[Hashable, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        """How many sources are tracked right now."""
        return len(self._failures)

    def record_failure(self, key: Hashable) -> None:
        """Count one failed verification from ``key``."""
        now = self._clock()
        self._prune(now)
        times = self._failures.get(key)
        if times is None:
            if len(self._failures) >= self._max_keys:
                self._failures.popitem(last=False)  # the source that failed least recently
            times = self._failures[key] = deque(maxlen=self._max_failures)
        else:
            self._failures.move_to_end(key)
        times.append(now)

    def retry_after(self, key: Hashable) -> float:
        """Seconds until ``key`` is no longer blocked; 0.0 when it is not blocked."""
        times = self._failures.get(key)
        if times is None or len(times) < self._max_failures:
            return 0.0
        # Blocked while the oldest of the last max_failures failures is inside the window.
        return max(0.0, times[0] + self._window - self._clock())

    def is_blocked(self, key: Hashable) -> bool:
        """Whether ``key`` has ``max_failures`` failures within the last ``window_seconds``."""
        return self.retry_after(key) > 0.0

    def _prune(self, now: float) -> None:
        # The head is the key whose latest failure is oldest: once that has left the window,
        # the key can neither be blocked nor count towards a block, so it is dropped.
        while self._failures:
            times = next(iter(self._failures.values()))
            if times[-1] + self._window > now:
                break
            self._failures.popitem(last=False)
