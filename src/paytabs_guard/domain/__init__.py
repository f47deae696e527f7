"""The payment domain: standard library only, no I/O."""
