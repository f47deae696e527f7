"""Entrypoints: the HTTP service (``api``) and the command line (``cli``) and what it runs."""
