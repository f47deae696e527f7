"""PayTabs regions and their hosts. Each region is a separate PayTabs platform with its own
host; there is no separate sandbox host (test profiles live on the same hosts)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Region(StrEnum):
    """A PayTabs region: where the merchant's profile lives (``PAYTABS_REGION``)."""

    ARE = "ARE"
    SAU = "SAU"
    OMN = "OMN"
    JOR = "JOR"
    EGY = "EGY"
    IRQ = "IRQ"
    KWT = "KWT"
    QAT = "QAT"
    MAR = "MAR"
    GLOBAL = "GLOBAL"

    @classmethod
    def _missing_(cls, value: object) -> Region | None:
        # "are" and " SAU" are the region a person meant, as PAYTABS_REGION=are is
        return cls.__members__.get(value.strip().upper()) if isinstance(value, str) else None


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


def base_url_for(region: Region | str, override: str | None = None) -> str:
    """The override when set (a simulator, a proxy), else the region's PayTabs host."""
    if override:
        return override.rstrip("/")
    try:
        return REGION_HOSTS[Region(region)]
    except ValueError:
        names = ", ".join(Region)
        raise ValueError(f"{region!r} is not a valid Region: one of {names}") from None
