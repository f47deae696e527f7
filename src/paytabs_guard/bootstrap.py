"""Composition root: builds the application's parts from Settings. No globals, nothing at import."""

from __future__ import annotations

import httpx

from paytabs_guard.adapters.paytabs.client import Observer, PayTabsClient
from paytabs_guard.adapters.paytabs.regions import base_url_for
from paytabs_guard.settings import Settings


def build_paytabs_client(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    observer: Observer | None = None,
) -> PayTabsClient:
    """The PayTabs client for the configured profile, region (or base-URL override) and timeout."""
    profile_id, server_key = settings.require_paytabs_credentials()
    return PayTabsClient(
        profile_id=profile_id,
        server_key=server_key,
        base_url=base_url_for(settings.paytabs_region, settings.paytabs_base_url),
        timeout_seconds=settings.paytabs_timeout / 1000,
        transport=transport,
        observer=observer,
    )
