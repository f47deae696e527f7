"""return_url and its kind: a URL is taken only if a browser and an HTTP client can follow it."""

from __future__ import annotations

import pytest

from paytabs_guard.domain.urls import InvalidUrl, check_http_url


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example/thank-you?order=7#top",
        "HTTPS://SHOP.EXAMPLE/done",
        "http://127.0.0.1:8000/done",
        "http://[::1]:8080/done",
        "https://مثال.السعودية/شكرا",  # an internationalised domain name
        "https://intranet_host.example/done",
        "https://shop.example.:443/",
    ],
)
def test_urls_a_browser_follows_are_kept_as_written(url: str) -> None:
    assert check_http_url(url) == url


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("javascript:alert(1)", "http://"),
        ("ftp://shop.example/", "http://"),
        ("https://shop .example/", "http://"),
        ("https://shop.example/" + "a" * 2048, "2048"),
        ("http://[::1", "not a valid URL"),
        ("https://shop.example:99999/", "not a valid URL"),
        ("https://shop.example:abc/", "not a valid URL"),
        ("https://shop.example:0/", "port 0"),
        ("https:///thank-you", "must name a host"),
        ("https://:80/x", "must name a host"),
        ("http://[v1.x]/", "not an IPv6 address"),
        ("http://[fe80::1%25eth0]/r", "not an IPv6 address"),  # a zone: browsers refuse it
        ("http://999.1.1.1/", "not an IPv4 address"),
        ("https://-shop.example/", "not a domain name"),
        ("https://shop..example/", "not a domain name"),
        ("https://shop.example@evil.example/", "user name"),
        ("https://user:secret@shop.example/", "user name"),
    ],
)
def test_urls_no_browser_could_follow_are_refused_saying_why(url: str, words: str) -> None:
    with pytest.raises(InvalidUrl, match=words):
        check_http_url(url)
