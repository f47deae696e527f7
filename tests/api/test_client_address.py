"""The client address behind trusted proxies, and the allowlist (checklist items 20-21)."""

from __future__ import annotations

import ipaddress

import pytest

from paytabs_guard.entrypoints.api.client_address import (
    IPNetwork,
    client_ip,
    ip_allowed,
    normalise_network,
    parse_address,
)


def nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


PROXIES = nets("10.0.0.0/8", "fd00::/8")
CLIENT = "203.0.113.9"
SPOOF = "198.51.100.1"


# --- untrusted peers: the peer is the client ------------------------------------------------


def test_an_untrusted_peer_is_the_client_and_its_forwarded_for_is_ignored() -> None:
    assert client_ip(CLIENT, [SPOOF], PROXIES) == ip(CLIENT)


def test_with_no_trusted_proxies_forwarded_for_is_never_believed() -> None:
    assert client_ip("10.0.0.1", [SPOOF], ()) == ip("10.0.0.1")


def test_an_untrusted_peer_with_garbage_forwarded_for_is_still_known() -> None:
    assert client_ip(CLIENT, ["unknown, for=_x"], PROXIES) == ip(CLIENT)


@pytest.mark.parametrize("peer", [None, "", "testclient", "/run/app.sock", "localhost"])
def test_a_peer_that_is_not_an_address_is_unknown(peer: str | None) -> None:
    assert client_ip(peer, [], PROXIES) is None


# --- trusted proxies: walk X-Forwarded-For from the right ------------------------------------


def test_a_spoofed_leftmost_entry_through_a_trusted_proxy_is_skipped() -> None:
    # The client wrote "SPOOF"; our proxy appended the real peer address on the right.
    assert client_ip("10.0.0.2", [f"{SPOOF}, {CLIENT}"], PROXIES) == ip(CLIENT)


def test_a_chain_of_trusted_proxies_is_walked_to_the_first_untrusted_hop() -> None:
    chain = f"{SPOOF}, {CLIENT}, 10.1.1.1, 10.2.2.2"
    assert client_ip("10.0.0.2", [chain], PROXIES) == ip(CLIENT)


def test_several_header_lines_form_one_list_in_order() -> None:
    lines = [f"{SPOOF}", f"{CLIENT}, 10.1.1.1", "10.2.2.2"]
    assert client_ip("10.0.0.2", lines, PROXIES) == ip(CLIENT)


def test_when_every_hop_is_trusted_the_leftmost_is_the_client() -> None:
    assert client_ip("10.0.0.2", ["10.9.9.9, 10.1.1.1"], PROXIES) == ip("10.9.9.9")


def test_a_trusted_peer_without_forwarded_for_is_itself_the_client() -> None:
    assert client_ip("10.0.0.2", [], PROXIES) == ip("10.0.0.2")


def test_a_trusted_client_pretending_to_be_a_proxy_is_still_found() -> None:
    # An outsider cannot hide behind a forged trusted-looking entry: ours is appended after it.
    assert client_ip("10.0.0.2", [f"10.5.5.5, {CLIENT}"], PROXIES) == ip(CLIENT)


def test_empty_list_elements_are_ignored() -> None:
    assert client_ip("10.0.0.2", [f" , {CLIENT},, 10.1.1.1 ,", ""], PROXIES) == ip(CLIENT)


# --- IPv6 and IPv4-mapped addresses ---------------------------------------------------------


def test_an_ipv6_peer_is_the_client() -> None:
    assert client_ip("2001:db8::7", [SPOOF], PROXIES) == ip("2001:db8::7")


def test_an_ipv6_proxy_forwarding_an_ipv6_client() -> None:
    assert client_ip("fd00::1", [f"{SPOOF}, 2001:db8::7"], PROXIES) == ip("2001:db8::7")


def test_a_mapped_peer_is_matched_against_ipv4_proxies() -> None:
    # A dual-stack socket reports an IPv4 proxy as ::ffff:10.0.0.2.
    assert client_ip("::ffff:10.0.0.2", [f"{SPOOF}, {CLIENT}"], PROXIES) == ip(CLIENT)


def test_a_mapped_untrusted_peer_comes_back_as_ipv4() -> None:
    assert client_ip(f"::ffff:{CLIENT}", [SPOOF], PROXIES) == ip(CLIENT)


def test_mapped_hops_are_normalised() -> None:
    chain = f"::ffff:{CLIENT}, ::ffff:10.1.1.1"
    assert client_ip("10.0.0.2", [chain], PROXIES) == ip(CLIENT)


def test_trusted_proxies_written_as_mapped_networks_match_ipv4_peers() -> None:
    mapped = nets("::ffff:10.0.0.0/104")
    assert normalise_network(mapped[0]) == ipaddress.ip_network("10.0.0.0/8")
    assert client_ip("10.0.0.2", [CLIENT], mapped) == ip(CLIENT)


def test_zone_ids_are_dropped() -> None:
    assert client_ip("fe80::1%eth0", [], ()) == ip("fe80::1")


# --- entry formats --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        (" 203.0.113.9\t", "203.0.113.9"),
        ("203.0.113.9:5678", "203.0.113.9"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[::ffff:203.0.113.9]:443", "203.0.113.9"),
    ],
)
def test_unambiguous_entries_are_parsed(entry: str, expected: str) -> None:
    assert parse_address(entry) == ip(expected)


@pytest.mark.parametrize(
    "entry",
    [
        "unknown",
        "for=203.0.113.9",
        '"[2001:db8::1]"',
        "_hidden",
        "example.com",
        "203.0.113.9:",
        "203.0.113.9:http",
        "203.0.113.9:123456",
        "[203.0.113.9]",
        "[2001:db8::1",
        "[2001:db8::1]443",
        "[2001:db8::1]:",
        "010.1.1.1",  # leading zeros: octal on some systems, refused by ipaddress
        "203.0.113",
        "1" * 100,
        "",
    ],
)
def test_unclear_entries_are_refused(entry: str) -> None:
    assert parse_address(entry) is None


@pytest.mark.parametrize("garbage", ["unknown", "for=203.0.113.9", "_hidden", "[::1", "1.2.3"])
def test_garbage_reached_during_the_walk_makes_the_client_unknown(garbage: str) -> None:
    assert client_ip("10.0.0.2", [f"{CLIENT}, {garbage}, 10.1.1.1"], PROXIES) is None


def test_garbage_left_of_the_client_is_never_reached() -> None:
    assert client_ip("10.0.0.2", [f"unknown, {CLIENT}, 10.1.1.1"], PROXIES) == ip(CLIENT)


def test_ports_and_brackets_are_stripped_during_the_walk() -> None:
    chain = "[2001:db8::7]:51000, 10.1.1.1:8080"
    assert client_ip("10.0.0.2", [chain], PROXIES) == ip("2001:db8::7")


# --- allowlist ------------------------------------------------------------------------------

ALLOW = nets("203.0.113.0/24", "2001:db8:100::/48")


def test_an_empty_allowlist_allows_everyone_even_unknown_clients() -> None:
    assert ip_allowed(ip(CLIENT), ())
    assert ip_allowed(None, ())


def test_an_unknown_client_never_passes_a_configured_allowlist() -> None:
    assert not ip_allowed(None, ALLOW)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("203.0.113.9", True),
        ("203.0.114.9", False),
        ("2001:db8:100:5::1", True),
        ("2001:db8:101::1", False),
        ("::ffff:203.0.113.9", True),  # ipaddress alone says no: 4 and 6 are separate types
        ("::ffff:203.0.114.9", False),
        ("::203.0.113.9", False),  # IPv4-compatible (deprecated) is not IPv4-mapped
    ],
)
def test_allowlist_with_ipv4_and_ipv6_cidrs(address: str, allowed: bool) -> None:
    assert ip_allowed(ip(address), ALLOW) is allowed


def test_a_mapped_allowlist_entry_matches_plain_ipv4() -> None:
    assert ip_allowed(ip(CLIENT), nets("::ffff:203.0.113.0/120"))


def test_single_addresses_are_host_networks() -> None:
    assert ip_allowed(ip(CLIENT), nets(CLIENT))
    assert not ip_allowed(ip("203.0.113.10"), nets(CLIENT))
