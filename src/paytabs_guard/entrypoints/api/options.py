"""Tunables of the HTTP layer that are not deployment configuration (documented constants).

Defaults suit production; tests shorten the waits. None of them is a secret or differs between
instances, so they are code, not environment variables.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """How long the API waits for things, and how long it caches answers."""

    body_read_seconds: float = 30.0
    """A request body must arrive whole within this many seconds, else 408: a client that
    sends a few bytes and stops would otherwise hold its connection and a task forever."""
    idempotency_wait_seconds: float = 10.0
    """A request whose key is in flight waits this long for the first one, then gets 409."""
    sync_wait_seconds: float = 5.0
    """``process`` and the browser return wait this long for PayTabs; the query goes on after."""
    sync_min_interval_seconds: float = 2.0
    """``process`` and the browser return ask PayTabs about one payment at most once per this
    many seconds per process (replies in between come from its stored state, which holds the
    last answer); a query under way is shared, never doubled."""
    paytabs_probe_cache_seconds: float = 5.0
    """``GET /health/paytabs`` asks PayTabs at most once per this many seconds."""
    failed_verifications: int = 20
    """Failed webhook verifications from one source within ``failure_window_seconds`` that
    block it (429); valid deliveries are never blocked."""
    failure_window_seconds: float = 60.0
    failed_sign_ins: int = 10
    """Failed console sign-ins from one source within ``sign_in_window_seconds`` that lock
    it out of signing in (429) until the oldest of them leaves the window."""
    sign_in_window_seconds: float = 300.0
    failed_api_keys: int = 20
    """Different wrong API keys from one source within ``api_key_window_seconds`` that block
    it (429) until the oldest of them leaves the window; a key already accepted from that
    source still works (key_guesses.py)."""
    api_key_window_seconds: float = 60.0
    outbox_lag_warn_seconds: float = 60.0
    """The oldest undelivered event older than this turns the outbox check to warn."""
    shutdown_grace_seconds: float = 10.0
    """How long shutdown waits for background work (relay batch, queries) to finish."""
