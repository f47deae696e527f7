"""Who sent a request: the client address behind trusted proxies, and the IP allowlist check.

Policy (docs/webhook-security.md, check 3 and checklist items 20-21):

* A direct peer that is **not** a trusted proxy is the client; its ``X-Forwarded-For`` is
  ignored, because anyone can write that header.
* Behind trusted proxies, ``X-Forwarded-For`` is walked from the **right**: each trusted proxy
  appended the address of its own peer, so every entry up to the first untrusted one was written
  by a proxy we trust. That first untrusted entry is the client. If every entry is a trusted
  proxy, the left-most one is (a request from inside the proxy tier).
* IPv4-mapped IPv6 (``::ffff:10.1.2.3``) is normalised to IPv4 everywhere, in addresses and in
  configured networks, so it matches IPv4 CIDRs. IPv6 zone ids (``%eth0``) are dropped.
* An entry is parsed only where that is unambiguous: ``1.2.3.4``, ``1.2.3.4:443``, ``2001:db8::1``,
  ``[2001:db8::1]`` and ``[2001:db8::1]:443``. Anything else (``unknown``, ``for=...``, obfuscated
  ids, hostnames, leading-zero IPv4) reached during the walk was passed on by our own proxy tier,
  so the client cannot be known: the result is ``None`` and, with an allowlist configured, the
  request is refused. Empty list elements are skipped, as RFC 9110 §5.6.1.2 requires.

The service must run uvicorn with ``proxy_headers=False``: uvicorn otherwise rewrites the peer
from ``X-Forwarded-For`` itself (trusting 127.0.0.1 by default) before this code sees it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")
_PORT: Final = re.compile(r":[0-9]{1,5}")
_MAX_ENTRY: Final = 64  # longer than any address with a port: refuse before parsing


def normalise_address(ip: IPAddress) -> IPAddress:
    """``ip`` with an IPv4-mapped IPv6 address turned into IPv4 and any zone id dropped."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.scope_id is not None:
            return ipaddress.IPv6Address(int(ip))
    return ip


def normalise_network(network: IPNetwork) -> IPNetwork:
    """``network``, as an IPv4 network when it lies inside ``::ffff:0:0/96``."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        base = int(network.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((base, network.prefixlen - 96))
    return network


def parse_address(text: str) -> IPAddress | None:
    """One peer or ``X-Forwarded-For`` entry as a normalised address, or ``None`` if unclear."""
    candidate = text.strip(" \t")
    if len(candidate) > _MAX_ENTRY:
        return None
    bracketed = candidate.startswith("[")
    if bracketed:
        host, closing, rest = candidate[1:].partition("]")
        if not closing or (rest and not _PORT.fullmatch(rest)):
            return None
        candidate = host
    elif candidate.count(":") == 1:
        # One colon can only be IPv4 with a port; a bare IPv6 address has at least two.
        candidate, _, port = candidate.partition(":")
        if not _PORT.fullmatch(":" + port):
            return None
    try:
        ip = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if bracketed and ip.version != 6:
        return None
    return normalise_address(ip)


def _within(ip: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    # Mixed versions are simply "not in" (ipaddress returns False), never an error.
    return any(ip in network for network in networks)


def _entries(forwarded_for: Sequence[str]) -> list[str]:
    # Several header lines form one list, in order (RFC 9110 §5.3).
    entries = [entry.strip(" \t") for value in forwarded_for for entry in value.split(",")]
    return [entry for entry in entries if entry]


def client_ip(
    peer: str | None,
    forwarded_for: Sequence[str],
    trusted_proxies: Sequence[IPNetwork],
) -> IPAddress | None:
    """The client's address, or ``None`` when it cannot be known (see the module policy).

    ``peer`` is the socket peer (``request.client.host``; ``None`` on a Unix socket);
    ``forwarded_for`` is every ``X-Forwarded-For`` value in order
    (``request.headers.getlist("x-forwarded-for")``).
    """
    peer_ip = parse_address(peer) if peer is not None else None
    if peer_ip is None:
        return None
    trusted = [normalise_network(network) for network in trusted_proxies]
    if not _within(peer_ip, trusted):
        return peer_ip
    leftmost = peer_ip
    for entry in reversed(_entries(forwarded_for)):
        hop = parse_address(entry)
        if hop is None:
            return None
        if not _within(hop, trusted):
            return hop
        leftmost = hop
    return leftmost


def ip_allowed(ip: IPAddress | None, allowlist: Sequence[IPNetwork]) -> bool:
    """Whether ``ip`` may call: an empty allowlist allows all; an unknown client passes none."""
    if not allowlist:
        return True
    if ip is None:
        return False
    return _within(normalise_address(ip), (normalise_network(n) for n in allowlist))
