"""Exceptions the breaker raises itself.

::

    BreakerError
    ├── CircuitOpenError   the call was not attempted: the circuit is open (or half-open and busy)
    └── CallTimeout        the call was attempted and cancelled after the breaker's call timeout

Both are cheap to build: a rejection creates a fresh instance every time (one shared instance
re-raised forever grows its traceback without bound, the purgatory leak) and carries its data in
``args`` so that construction stays in C.
"""

from __future__ import annotations

from typing import TYPE_CHECKING


class BreakerError(Exception):
    """Base class of the breaker's own errors."""

    __slots__ = ()

    @property
    def name(self) -> str:
        """Name of the breaker that raised the error."""
        name: str = self.args[0]
        return name


class CircuitOpenError(BreakerError):
    """The circuit is open: the call was rejected without being attempted.

    ``retry_after_seconds`` says when the breaker expects to admit a trial call; a caller may
    surface it as ``Retry-After``. Never retry on this error right away: that is the point.
    """

    __slots__ = ()

    if TYPE_CHECKING:  # the C constructor of BaseException stores args; this is its shape

        def __init__(self, name: str, retry_after_seconds: float) -> None: ...

    @property
    def retry_after_seconds(self) -> float:
        """Seconds until the breaker expects to admit a trial call (0 when it may be any moment)."""
        seconds: float = self.args[1]
        return seconds

    def __str__(self) -> str:
        return f"circuit '{self.args[0]}' is open; retry after {self.args[1]:.3f} s"


class CallTimeout(BreakerError):
    """The protected call ran longer than the breaker's call timeout and was cancelled.

    Counted as a failure. For a payment request this is an *ambiguous* outcome: the gateway may
    have processed it, so reconcile by query before sending again.
    """

    __slots__ = ()

    if TYPE_CHECKING:

        def __init__(self, name: str, timeout_seconds: float) -> None: ...

    @property
    def timeout_seconds(self) -> float:
        """The call timeout that expired."""
        seconds: float = self.args[1]
        return seconds

    def __str__(self) -> str:
        return f"call through circuit '{self.args[0]}' timed out after {self.args[1]:.3f} s"
