"""Commands from outside the call path: an operator's manual states and other instances' state.

Manual states (forced open, forced closed, disabled) hold until :meth:`ManualControl.reset`
and ignore automatic shared state. Shared state arrives through
:meth:`ManualControl.apply_shared_open` and :meth:`ManualControl.apply_shared_close`, called by
the listener of :class:`~paytabs_guard.resilience.shared.SharedBreakerState`; nothing here
awaits Redis.

The methods here change this breaker only. To give every instance sharing a Redis the same
manual state, call :meth:`SharedBreakerState.command
<paytabs_guard.resilience.shared.SharedBreakerState.command>`, which applies it here at once and
then stores and publishes it; the other instances' listeners call these same methods with
``reason="shared"``.
"""

from __future__ import annotations

import math

from paytabs_guard.resilience.breaker_core import BreakerCore
from paytabs_guard.resilience.events import BreakerState


class ManualControl(BreakerCore):
    """Manual and shared-state commands of a
    :class:`~paytabs_guard.resilience.breaker.CircuitBreaker`."""

    __slots__ = ()

    # ``reason`` is the state-change event's reason: ``shared`` when another instance's
    # command is applied here, so the history tells the two apart.

    def force_open(self, *, reason: str = "forced") -> None:
        """Reject every call until :meth:`reset` (or another manual state). This breaker only."""
        if self._state is not BreakerState.FORCED_OPEN:
            self._retry_at = math.inf
            self._transition(BreakerState.FORCED_OPEN, self._clock(), reason)

    def force_closed(self, *, reason: str = "forced") -> None:
        """Admit every call (timeout, classification, fallback and counting still apply), never
        trip, ignore shared state, until :meth:`reset`."""
        if self._state is not BreakerState.FORCED_CLOSED:
            self._transition(BreakerState.FORCED_CLOSED, self._clock(), reason)

    def disable(self, *, reason: str = "disabled") -> None:
        """Become a pass-through: no timeout, no rejection, no fallback; calls are still counted
        and reported. :meth:`reset` re-enables the breaker."""
        if self._state is not BreakerState.DISABLED:
            self._transition(BreakerState.DISABLED, self._clock(), reason)

    def reset(self, *, reason: str = "reset") -> None:
        """Back to closed with a fresh window (lifetime totals are kept); ends manual states."""
        if self._state is BreakerState.CLOSED:
            self._window.clear()
        else:
            self._transition(BreakerState.CLOSED, self._clock(), reason)

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

    def apply_shared_close(self, *, degraded: bool = False) -> None:
        """Another instance's trial call succeeded: close (fresh window) if open or half-open;
        ``degraded``: its trials partly failed, so the error rate is set aside here too."""
        if self._state is BreakerState.OPEN or self._state is BreakerState.HALF_OPEN:
            self._transition(BreakerState.CLOSED, self._clock(), "shared")
            self._degraded = degraded
