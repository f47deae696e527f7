"""Benchmarks run small: their reports' structure and invariants, never their timings."""
