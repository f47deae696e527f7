"""An operator's manual breaker states (forced open, forced closed, disabled) and the reset,
applied to one instance's breaker; ``shared.py`` carries them to the other instances."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from paytabs_guard.resilience.breaker import CircuitBreaker

ManualAction = Literal["forced_open", "forced_closed", "disabled", "reset"]
"""What :meth:`SharedBreakerState.command` does: a manual state, or back to closed."""


@dataclass(frozen=True, slots=True)
class ManualOutcome:
    """Where an operator's command took effect.

    ``shared`` is True when Redis stored and published it (every instance sharing this Redis
    applies it, and it survives restarts); False when it holds on this instance only, with
    ``error`` saying why.
    """

    shared: bool
    error: str | None = None


def apply_manual(breaker: CircuitBreaker, action: str, *, reason: str | None = None) -> None:
    """Put ``breaker`` in the manual state ``action`` names (or reset it), on this instance."""
    extra = {} if reason is None else {"reason": reason}
    if action == "forced_open":
        breaker.force_open(**extra)
    elif action == "forced_closed":
        breaker.force_closed(**extra)
    elif action == "disabled":
        breaker.disable(**extra)
    elif action == "reset":
        breaker.reset(**extra)
    else:
        raise ValueError(f"unknown manual action {action!r}")
