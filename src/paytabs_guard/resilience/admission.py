"""Admission taken ahead of the call: a half-open trial slot held from the moment a caller is let
in until the call it was let in for.

The API asks the breaker before it stores anything, so that a create the breaker turns away
costs nothing and leaves nothing behind. Asking alone is not enough in half-open: a crowd that
arrives at once finds the trial slots free, every request stores its payment and its events,
and only the first few get a slot when they finally call; the rest are turned away with
"nothing is stored" after all. :meth:`CircuitBreaker.reserve
<paytabs_guard.resilience.breaker.CircuitBreaker.reserve>` therefore admits for real: in
half-open it takes the trial slot when it says yes, and returns a :class:`Reservation`.

Within the reservation's ``with`` block, the next call through that breaker made in this task
(or in a task started from it: asyncio copies the context) is the trial admitted then and takes
no second slot. A slot still unused when the block ends (the caller left before calling: bad
input, an idempotent replay, an error) is given back, and one caller waiting for a slot is
woken. The reservation lives in a context variable rather than being passed down: the call is
several layers below the caller (use case, gateway port, adapter, retry loop), none of which
has anything to do with it.

A reservation is of one trial generation: if the breaker changes state (or presumes its trials
lost) before the call, the reservation is stale and the call is admitted as any other. In the
closed state nothing is reserved and nothing is looked up: the fast path stays as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType, TracebackType

_NONE_HELD: Mapping[object, Reservation] = MappingProxyType({})

#: The reservations held in this context, by breaker. Replaced (never changed in place) when a
#: block starts, so a task started inside it sees the same reservations and no other does.
_HELD: ContextVar[Mapping[object, Reservation]] = ContextVar(
    "paytabs_guard_breaker_reservations", default=_NONE_HELD
)


class Reservation:
    """A trial slot of ``breaker``'s ``generation``, held for the next call of the ``with``
    block; generation 0 holds nothing (the breaker admitted without a slot)."""

    __slots__ = ("_give_back", "_token", "breaker", "generation", "used")

    def __init__(
        self, breaker: object, generation: int, give_back: Callable[[int], None] | None
    ) -> None:
        self.breaker = breaker
        self.generation = generation
        self.used = generation == 0
        self._give_back = give_back
        self._token: Token[Mapping[object, Reservation]] | None = None

    def __enter__(self) -> None:
        if not self.used:
            self._token = _HELD.set({**_HELD.get(), self.breaker: self})

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _HELD.reset(self._token)
            self._token = None
        self.release()

    def release(self) -> None:
        """Give the slot back unless a call used it (or it was given back already)."""
        if not self.used:
            self.used = True
            if self._give_back is not None:
                self._give_back(self.generation)

    def __repr__(self) -> str:
        state = "used" if self.used else "held"
        return f"<Reservation {self.breaker!r} generation {self.generation} {state}>"


NOTHING_RESERVED = Reservation(None, 0, None)
"""The admission of a breaker that admits every call: nothing to hold, nothing to give back."""


def take_reserved(breaker: object) -> int:
    """The generation reserved for ``breaker``'s next call in this context, now used up; 0 when
    none is held. The breaker checks the generation is still its own."""
    reservation = _HELD.get().get(breaker)
    if reservation is None or reservation.used:
        return 0
    reservation.used = True
    return reservation.generation
