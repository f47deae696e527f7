"""What a circuit breaker tells the shared-state layer (shared.py implements it)."""

from __future__ import annotations

from typing import Protocol

from paytabs_guard.resilience.stats import SharedStatus


class SharedHook(Protocol):
    """What a breaker tells the shared-state layer. Every method must return at once.

    :class:`~paytabs_guard.resilience.shared.SharedBreakerState` implements it; anything slow
    (Redis round trips) happens in its background tasks.
    """

    def probe_permitted(self, name: str) -> bool:
        """May this instance admit a trial call now? ``True`` when sharing is unavailable."""
        ...

    def trial_wait(self, name: str) -> float | None:
        """Seconds before this instance could run the trial call (None: it could now), asking
        for the lease when nobody has yet; nothing is consumed. For ``rejection_wait``, so a
        caller held for admission keeps waiting while the instances settle who tries."""
        ...

    def opened(self, name: str, open_for: float) -> None:
        """The breaker tripped on its own window and stays open ``open_for`` seconds."""
        ...

    def trial_finished(
        self, name: str, *, succeeded: bool, open_for: float, degraded: bool = False
    ) -> None:
        """A trial closed the breaker (``degraded``: with the error rate set aside), or failed
        and re-opened it for ``open_for`` seconds."""
        ...

    def status(self) -> SharedStatus:
        """Whether sharing is enabled and Redis reachable, for the snapshot."""
        ...

    def probe_finished(self, name: str, *, succeeded: bool) -> None:
        """A recovery probe from this instance was answered (or not): tell the others."""
        ...
