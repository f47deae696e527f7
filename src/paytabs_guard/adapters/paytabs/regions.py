"""PayTabs hosts per region (``paytabs-pt2.md`` §1.1). There is no separate sandbox host."""

from __future__ import annotations

from typing import Final

from paytabs_guard.settings import Region

REGION_HOSTS: Final[dict[Region, str]] = {
    Region.ARE: "https://secure.paytabs.com",
    Region.SAU: "https://secure.paytabs.sa",
    Region.OMN: "https://secure-oman.paytabs.com",
    Region.JOR: "https://secure-jordan.paytabs.com",
    Region.EGY: "https://secure-egypt.paytabs.com",
    Region.IRQ: "https://secure-iraq.paytabs.com",
    Region.KWT: "https://secure-kuwait.paytabs.com",
    Region.QAT: "https://secure-doha.paytabs.com",  # doha, not qatar
    Region.MAR: "https://secure-morocco.paytabs.com",
    Region.GLOBAL: "https://secure-global.paytabs.com",
}


def base_url_for(region: Region, override: str | None = None) -> str:
    """The override when set (a simulator, a proxy), else the region's PayTabs host."""
    return override.rstrip("/") if override else REGION_HOSTS[region]
