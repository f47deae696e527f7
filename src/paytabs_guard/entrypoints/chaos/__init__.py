"""``paytabs-guard bench chaos``: the real service against a misbehaving simulator, in numbers.

``scenarios`` says what goes wrong and how the service is configured, ``simulator`` runs the
PayTabs simulator (in this process or a child), ``service`` runs one service instance with its
recorders, ``driver`` plays the merchants and their customers, ``analysis`` turns what they saw
into figures, ``report`` prints and draws them, ``chaos`` ties it together. See
``docs/benchmarks.md`` ("Chaos").
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chaos benchmark with command-line ``argv``; returns the exit code."""
    from .chaos import main as chaos_main

    return chaos_main(argv)


__all__ = ["main"]
