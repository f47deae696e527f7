"""The types of the settings' fields: durations in milliseconds bounded by a day, and lists
read from one comma-separated string (never decoded as JSON), which ``setting_values`` parses.
Apart from ``settings.py`` so that its field list reads as the configuration table does."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import NoDecode

from paytabs_guard.setting_values import IPNetwork, parse_networks, parse_proxies

ONE_DAY_MS: Final = 86_400_000
MIN_PROBE_INTERVAL_MS: Final = 50  # 20 probes a second per breaker and worker, at most
# A day bounds every duration: a larger one is a typo, and Redis refuses expiries past 2^63 ms
# (a breaker's shared open state would silently stop being shared).
PositiveMs = Annotated[int, Field(gt=0, le=ONE_DAY_MS)]
Ms = Annotated[int, Field(ge=0, le=ONE_DAY_MS)]  # 0 allowed: "off" or "no delay"
SecretList = Annotated[tuple[SecretStr, ...], NoDecode]
UrlList = Annotated[tuple[str, ...], NoDecode]
#: A setting of networks, read from one comma-separated string (never decoded as JSON).
NetworkList = Annotated[tuple[IPNetwork, ...], NoDecode, BeforeValidator(parse_networks)]
#: Trusted proxies: networks, none of them every address.
ProxyList = Annotated[tuple[IPNetwork, ...], NoDecode, BeforeValidator(parse_proxies)]
