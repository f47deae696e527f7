"""Entrypoints: the CLI and, later, the HTTP service."""
