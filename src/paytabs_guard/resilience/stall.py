"""Calls in flight, watched for a gateway that has stopped answering (``StallWatch``).

A breaker counts a call when it completes. A gateway that hangs completes nothing until the
call timeout: with the defaults the breaker saw the first failure 27 s into such an outage,
every call sent meanwhile hung (their creates ending ``unknown``), and the connections they
held were still taken after the recovery. The watch sees the hang sooner: once enough calls
have been in flight for ``after`` seconds, and not one call has been answered since the
oldest of them left, nothing is coming back.

A slow gateway is not a stalled one: its calls keep being answered, each answer newer than the
calls still out, so nothing sent before the latest answer is ever counted.
"""

from __future__ import annotations


class StallWatch:
    """When each call in flight left, and when the gateway last answered one (breaker clock)."""

    __slots__ = ("_flying", "_next", "after", "last_answer")

    def __init__(self, after: float, now: float) -> None:
        self.after = after
        self.last_answer = now  # a breaker that just started has seen nothing hang yet
        self._flying: dict[int, float] = {}  # key -> when it left; insertion order = age
        self._next = 0

    def enter(self, now: float) -> int:
        """A call leaves now; returns its key for :meth:`leave`."""
        self._next += 1
        self._flying[self._next] = now
        return self._next

    def leave(self, key: int, now: float, *, answered: bool) -> None:
        """The call ended; ``answered``: with the gateway's answer (a result or an error), not
        a timeout or its caller giving up."""
        self._flying.pop(key, None)
        if answered and now > self.last_answer:
            self.last_answer = now

    def stalled(self, now: float, enough: int) -> bool:
        """Whether at least ``enough`` calls (one at least) that left after the last answer
        have been in flight for ``after`` seconds. Cheap while nothing is that old: one look
        at the oldest call."""
        flying = self._flying
        if not flying:
            return False
        cutoff = now - self.after
        if next(iter(flying.values())) > cutoff:
            return False  # the oldest call in flight is younger than ``after``
        since = self.last_answer
        enough = max(enough, 1)
        count = 0
        for left in flying.values():
            if left > cutoff:
                break
            if left > since:
                count += 1
                if count >= enough:
                    return True
        return False
