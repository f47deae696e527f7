"""What counts as a usable absolute http(s) URL: a merchant's return page, a setting's base URL.

A URL is taken only if a browser and an HTTP client can both use it as written. A loose check
(a scheme and something after it) let ``http://[::1`` or ``https:///x`` through at create,
and the customer's return after paying then failed, on a URL nobody could follow.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH: Final = 2048

_SHAPE: Final = re.compile(r"https?://\S+", re.IGNORECASE)
# Underscores are not in the DNS host name rules, but browsers follow them and some intranet
# hosts use them.
_LABEL: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


class InvalidUrl(ValueError):
    """Not an absolute http(s) URL a browser can follow; the message says why."""


def check_http_url(value: str) -> str:
    """``value`` unchanged if it is an absolute http:// or https:// URL with a real host (a
    domain name, which may be internationalised, or an IP address), an optional port in
    1-65535 and no user name or password; else InvalidUrl saying what is wrong."""
    if len(value) > MAX_URL_LENGTH or not _SHAPE.fullmatch(value):
        raise InvalidUrl(
            f"must be an absolute http:// or https:// URL of at most {MAX_URL_LENGTH} characters"
        )
    try:
        parts = urlsplit(value)
        port = parts.port  # raises for a port that is not a number in 0-65535
    except ValueError as error:
        raise InvalidUrl(f"is not a valid URL ({error})") from None
    if parts.username is not None or parts.password is not None:
        # https://shop.example@evil.example/ reads as the shop and goes to evil.example
        raise InvalidUrl("must not carry a user name or password before the host")
    if port == 0:
        raise InvalidUrl("has port 0; a port is in 1-65535")
    _check_host(parts)
    return value


def _check_host(parts: SplitResult) -> None:
    host = parts.hostname
    if not host:
        raise InvalidUrl("must name a host, e.g. https://shop.example/thank-you")
    if "[" in parts.netloc:
        try:
            if "%" in host:  # a zone (fe80::1%eth0) names an interface: browsers refuse it
                raise ValueError
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidUrl(f"has [{host}] as its host, which is not an IPv6 address") from None
        return
    name = host[:-1] if host.endswith(".") else host
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidUrl(f"has {host!r} as its host, which is not a domain name") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidUrl(f"has {host!r} as its host, which is not a domain name")
    if all(label.isdigit() for label in labels):
        # A browser reads digits and dots as an IPv4 address: 999.1.1.1 is none.
        try:
            ipaddress.IPv4Address(ascii_name)
        except ValueError:
            raise InvalidUrl(f"has {host!r} as its host, which is not an IPv4 address") from None
