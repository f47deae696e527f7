"""Wrong API keys from one source: after too many, that source is answered 429 for a while.

API_KEYS are whatever the operator set, and nothing stops one from being short. Without a
limit, a stranger could try keys at thousands a second, each answer saying whether the guess
was right. So wrong keys are counted per source (the client's address, an IPv6 client's
``/64``: :func:`~.rate_limit.source_key`), and a source that sends ``max_failures``
*different* wrong keys within ``window_seconds`` is *blocked* until the oldest of them leaves
the window. Different keys, because that is what guessing is: the same wrong key sent again
is counted once. One of a shop's servers still sending a key rotated out, however often,
never blocks the address its other servers share.

What a blocked source is told does not depend on the key it sends: 429 with ``Retry-After``,
right key or wrong, and a key it had not sent before moves the block as a new wrong key would,
so neither the status nor the wait says whether a guess was right. One exception: a key that
was accepted from that source before the block goes on being accepted (an attacker behind the
shop's own egress address must not cost it its sales). That memory is per process, so a worker
that has not served the shop's key from there yet answers 429 like the rest while the block
lasts. What is remembered is bounded (``remembered`` entries each of accepted keys and of keys
seen, the least recently used forgotten first), as is the limiter's state.

Only keys that were presented count: a request without the header, or with another scheme, is
told how to send one and learns nothing about any key. State is per process, as for callbacks
(rate_limit.py): with N instances a source gets N times the budget, and an attacker with many
addresses (an IPv6 prefix) gets the budget of each. Long random keys are the protection; this
makes guessing visible and slow, and stopping a flood belongs at the edge.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from paytabs_guard.observability import get_logger

from .auth import ApiClient, ApiKeys, bearer_token, invalid_key
from .problems import too_many_wrong_keys
from .rate_limit import FailureLimiter

log = get_logger("paytabs_guard.api")

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class KeyGuesses:
    """The merchant API's authentication, with different wrong keys counted per source."""

    __slots__ = ("_accepted", "_clock", "_failures", "_remembered", "_seen", "_window")

    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        remembered: int = 10_000,
    ) -> None:
        self._failures = FailureLimiter(max_failures, window_seconds, clock=clock)
        self._window = window_seconds
        self._clock = clock
        self._remembered = remembered
        self._accepted: OrderedDict[tuple[str, str], None] = OrderedDict()
        # (source, digest of a key it sent that was not accepted) -> when it was last sent
        self._seen: OrderedDict[tuple[str, bytes], float] = OrderedDict()

    def authenticate(self, keys: ApiKeys, authorization: Sequence[str], source: str) -> ApiClient:
        """The caller, or a problem: 401 for a missing or wrong key, 429 while blocked."""
        token = bearer_token(keys, authorization)
        client = keys.identify(token)
        was_blocked = self._failures.is_blocked(source)
        if client is not None:
            pair = (source, client.id)
            if pair in self._accepted:
                self._accepted.move_to_end(pair)
                return client
            if not was_blocked:
                _remember(self._accepted, pair, None, self._remembered)
                return client
            # blocked, and never accepted from here: answered exactly as a guess is
        if self._first_time(source, token):
            self._failures.record_failure(source)
        wait = self._failures.retry_after(source)
        if not wait:
            raise invalid_key()
        if not was_blocked:
            log.warning("security_event", kind="api_keys_guessed", client=source)
        raise too_many_wrong_keys(wait)

    def _first_time(self, source: str, token: str) -> bool:
        """Whether ``source`` sends ``token`` for the first time within the window."""
        now = self._clock()
        seen = (source, hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()[:16])
        last = self._seen.get(seen)
        _remember(self._seen, seen, now, self._remembered)
        return last is None or now - last >= self._window


def _remember(table: OrderedDict[_K, _V], key: _K, value: _V, bound: int) -> None:
    """Put ``key`` last in ``table``, dropping the least recently used entry at ``bound``."""
    if key in table:
        table.move_to_end(key)
    elif len(table) >= bound:
        table.popitem(last=False)
    table[key] = value
