"""How long a failed delivery waits before the relay tries it again."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Backoff:
    """Full-jitter exponential backoff: attempt n waits U(0, min(cap, base * 2**(n-1))) seconds."""

    base_seconds: float = 5.0
    cap_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.base_seconds <= 0 or self.cap_seconds < self.base_seconds:
            raise ValueError("backoff needs 0 < base_seconds <= cap_seconds")

    def ceiling(self, attempts: int) -> float:
        """The longest wait after ``attempts`` failed attempts (>= 1)."""
        exponent = min(max(attempts - 1, 0), 62)  # 2**62 s is already far beyond any cap
        return min(self.cap_seconds, self.base_seconds * 2.0**exponent)

    def delay(self, attempts: int, rng: random.Random) -> float:
        return rng.uniform(0.0, self.ceiling(attempts))


DEFAULT_BACKOFF: Final = Backoff()
