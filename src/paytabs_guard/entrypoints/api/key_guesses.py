"""Wrong API keys from one source: after too many, that source is answered 429 for a while.

API_KEYS are whatever the operator set, and nothing stops one from being short. Without a
limit, a stranger could try keys at thousands a second, each answer saying whether the guess
was right. So wrong keys are counted per source (the client's address, an IPv6 client's
``/64``: :func:`~.rate_limit.source_key`), and a source with ``max_failures`` of them within
``window_seconds`` is *blocked* until the oldest leaves the window.

What a blocked source is told does not depend on the key it sends: 429 with ``Retry-After``,
right key or wrong, so a guess made while blocked learns nothing. One exception keeps a
merchant from being locked out of its own API: a key that has already been accepted from that
source goes on being accepted. Its servers share an egress address, and one of them still
sending a rotated-out key must not cost the others their sales; an attacker at a new address
has no accepted key there to use. What is remembered is bounded (``remembered`` pairs of source
and key id, the least recently used forgotten first), as is the limiter's state.

Only keys that were presented count: a request without the header, or with another scheme, is
told how to send one and learns nothing about any key. State is per process, as for callbacks
(rate_limit.py): with N instances a source gets N times the budget, still thousands of times
fewer guesses than unlimited.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from paytabs_guard.observability import get_logger

from .auth import ApiClient, ApiKeys, bearer_token, invalid_key
from .problems import too_many_wrong_keys
from .rate_limit import FailureLimiter

log = get_logger("paytabs_guard.api")


class KeyGuesses:
    """The merchant API's authentication, with wrong keys counted per source."""

    __slots__ = ("_accepted", "_failures", "_remembered")

    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        remembered: int = 10_000,
    ) -> None:
        self._failures = FailureLimiter(max_failures, window_seconds, clock=clock)
        self._accepted: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._remembered = remembered

    def authenticate(self, keys: ApiKeys, authorization: Sequence[str], source: str) -> ApiClient:
        """The caller, or a problem: 401 for a missing or wrong key, 429 while blocked."""
        client = keys.identify(bearer_token(keys, authorization))
        if client is None:
            was_blocked = self._failures.is_blocked(source)
            self._failures.record_failure(source)
            wait = self._failures.retry_after(source)
            if not wait:
                raise invalid_key()
            if not was_blocked:
                log.warning("security_event", kind="api_keys_guessed", client=source)
            raise too_many_wrong_keys(wait)
        pair = (source, client.id)
        if pair in self._accepted:
            self._accepted.move_to_end(pair)
            return client
        wait = self._failures.retry_after(source)
        if wait:
            raise too_many_wrong_keys(wait)
        if len(self._accepted) >= self._remembered:
            self._accepted.popitem(last=False)
        self._accepted[pair] = None
        return client
