"""Whether PayTabs can deliver to PUBLIC_BASE_URL: its callbacks and the customer's way back.

PayTabs documents what its ``callback`` and ``return`` URLs must be (docs/paytabs.md §5,
§11, §13): a public HTTPS URL without a port, not localhost. Over plain HTTP it sends the
callback with an **empty body** (which no signature verifies) and the browser back **without**
the signed fields. The simulator accepts loopback and ported HTTP URLs unless ``strict_urls``
(docs/simulator.md, choice 11), so such a configuration passes every simulated run and then
leaves each real payment waiting for reconciliation: ``serve`` and ``config check`` say so.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from paytabs_guard.adapters.paytabs.regions import REGION_HOSTS
from paytabs_guard.setting_values import redact_url
from paytabs_guard.settings import Settings


def _talks_to_paytabs(settings: Settings) -> bool:
    # PAYTABS_BASE_URL set to anything else (a simulator, a test double) may take any URL.
    override = settings.paytabs_base_url
    return override is None or override.rstrip("/") in REGION_HOSTS.values()


def _not_public(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: whether it is public is DNS's to say
    return not address.is_global


def public_url_warning(settings: Settings) -> str | None:
    """Why PayTabs cannot deliver to PUBLIC_BASE_URL, or None (also when PayTabs is not the
    real one)."""
    if not _talks_to_paytabs(settings):
        return None
    parts = urlsplit(settings.public_base_url)
    if parts.scheme != "https":
        reason = (
            "is not HTTPS: PayTabs would send its callbacks with an empty body and the "
            "customer back without the signed result"
        )
    elif parts.port is not None:
        reason = "has a port: PayTabs takes callback URLs without one"
    elif _not_public(parts.hostname or ""):
        reason = "is not a public address: PayTabs cannot reach it"
    else:
        return None
    return (
        f"PUBLIC_BASE_URL: {redact_url(settings.public_base_url)} {reason}; no payment "
        "would be decided until reconciliation queried it (use the service's public HTTPS "
        "URL, without a port)"
    )
