"""Tests of the adapters, one directory per adapter package in src/paytabs_guard/adapters."""
