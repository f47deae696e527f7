"""PayTabs signatures (docs/paytabs.md §12), written afresh rather than shared with the client.

* Callbacks/IPN: lower-hex HMAC-SHA256 of the exact body bytes, keyed with the server key.
* Browser return: drop ``signature`` and empty values, sort by key, encode like PHP's
  ``http_build_query`` (RFC 1738), then lower-hex HMAC-SHA256 of that string.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote_plus


def php_urlencode(value: str) -> str:
    """PHP ``urlencode``: space -> ``+``; all but ``A-Za-z0-9-_.`` as upper-hex ``%XX`` of UTF-8.

    Python's ``quote_plus`` leaves ``~`` alone where PHP writes ``%7E``.
    """
    return quote_plus(value, safe="").replace("~", "%7E")


def http_build_query(fields: Mapping[str, str]) -> str:
    return "&".join(f"{php_urlencode(key)}={php_urlencode(value)}" for key, value in fields.items())


def return_string_to_sign(fields: Mapping[str, str]) -> str:
    signed = {key: value for key, value in fields.items() if key != "signature" and value != ""}
    return http_build_query(dict(sorted(signed.items())))


def sign_return(fields: Mapping[str, str], server_key: str) -> str:
    message = return_string_to_sign(fields).encode()
    return hmac.new(server_key.encode(), message, hashlib.sha256).hexdigest()


def sign_body(body: bytes, server_key: str) -> str:
    return hmac.new(server_key.encode(), body, hashlib.sha256).hexdigest()
