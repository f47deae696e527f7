"""Benchmarks of the running service (``paytabs-guard bench ...``)."""
