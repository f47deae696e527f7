"""Commands from outside the call path: an operator's manual states and other instances' state.

Manual states (forced open, forced closed, disabled) hold until :meth:`ManualControl.reset`
and ignore shared state. Shared state arrives through :meth:`ManualControl.apply_shared_open`
and :meth:`ManualControl.apply_shared_close`, called by the listener of
:class:`~paytabs_guard.resilience.shared.SharedBreakerState`; nothing here awaits Redis.
"""

from __future__ import annotations

import math

from paytabs_guard.resilience.breaker_core import BreakerCore
from paytabs_guard.resilience.events import BreakerState


class ManualControl(BreakerCore):
    """Manual and shared-state commands of a
    :class:`~paytabs_guard.resilience.breaker.CircuitBreaker`."""

    __slots__ = ()

    def force_open(self) -> None:
        """Reject every call until :meth:`reset` (or another manual state). Not shared."""
        if self._state is not BreakerState.FORCED_OPEN:
            self._retry_at = math.inf
            self._transition(BreakerState.FORCED_OPEN, self._clock(), "forced")

    def force_closed(self) -> None:
        """Admit every call (timeout, classification, fallback and counting still apply), never
        trip, ignore shared state, until :meth:`reset`."""
        if self._state is not BreakerState.FORCED_CLOSED:
            self._transition(BreakerState.FORCED_CLOSED, self._clock(), "forced")

    def disable(self) -> None:
        """Become a pass-through: no timeout, no rejection, no fallback; calls are still counted
        and reported. :meth:`reset` re-enables the breaker."""
        if self._state is not BreakerState.DISABLED:
            self._transition(BreakerState.DISABLED, self._clock(), "disabled")

    def reset(self) -> None:
        """Back to closed with a fresh window (lifetime totals are kept); ends manual states."""
        if self._state is BreakerState.CLOSED:
            self._window.clear()
        else:
            self._transition(BreakerState.CLOSED, self._clock(), "reset")

    # -- shared state (called by the listener, on the loop) ------------------------------------

    def apply_shared_open(self, open_for: float) -> None:
        """Another instance opened this breaker for ``open_for`` more seconds: open here too.

        A closed or half-open breaker opens (without publishing it again); an open one extends
        its open period if the other's ends later. Manual states ignore shared state.
        """
        now = self._clock()
        until = now + open_for
        state = self._state
        if state is BreakerState.CLOSED or state is BreakerState.HALF_OPEN:
            self._retry_at = until
            self._transition(BreakerState.OPEN, now, "shared")
        elif state is BreakerState.OPEN and until > self._retry_at:
            self._retry_at = until

    def apply_shared_close(self) -> None:
        """Another instance's trial call succeeded: close (fresh window) if open or half-open."""
        if self._state is BreakerState.OPEN or self._state is BreakerState.HALF_OPEN:
            self._transition(BreakerState.CLOSED, self._clock(), "shared")
