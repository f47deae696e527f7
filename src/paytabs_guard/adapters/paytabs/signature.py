"""PayTabs signatures (``docs/paytabs.md`` §12), verified on the raw bytes in constant time.

* Callback / IPN: ``Signature`` header = lower-case hex HMAC-SHA256 of the exact request body,
  keyed with the profile's server key.
* Browser return: the form fields minus ``signature`` and minus empty values, sorted by key,
  encoded like PHP's ``http_build_query`` (space -> ``+``, ``~`` -> ``%7E``), then HMAC-SHA256.

Several keys are accepted during a key rotation; the algorithm is fixed (never taken from input).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote_plus

from pydantic import SecretStr

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class InvalidSignature(Exception):
    """The signature is missing, malformed or made with a key we do not hold."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: A server key, as the library's ``PayTabs`` takes it (a plain string) or as settings hold it.
Key = SecretStr | str


def _hmac_hex(key: Key, message: bytes) -> str:
    secret = key.get_secret_value() if isinstance(key, SecretStr) else key
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_callback(body: bytes, key: Key) -> str:
    """The ``Signature`` header PayTabs sends with ``body`` (for tests and relays)."""
    return _hmac_hex(key, body)


def _check(messages: Iterable[bytes], signature: str | None, keys: Iterable[Key]) -> None:
    if signature is None or not signature.strip():
        raise InvalidSignature("missing")
    candidate = signature.strip()
    if not _HEX_SHA256.fullmatch(candidate):
        raise InvalidSignature("malformed")
    candidate = candidate.lower()
    matched = False
    # compare with every key (no early exit), so timing does not tell which key matched
    for message in messages:
        for key in keys:
            matched |= hmac.compare_digest(_hmac_hex(key, message), candidate)
    if not matched:
        raise InvalidSignature("mismatch")


def verify_callback(body: bytes, signature: str | None, keys: Iterable[Key]) -> None:
    """Raise InvalidSignature unless ``signature`` is a valid HMAC of the raw ``body``."""
    keys = tuple(keys)
    if not keys:
        raise InvalidSignature("no key configured")
    _check((body,), signature, keys)


def php_http_build_query(fields: Mapping[str, str]) -> str:
    """``http_build_query`` of PHP (RFC 1738): only ``A-Za-z0-9-_.`` stay literal."""
    return "&".join(
        f"{quote_plus(key, safe='')}={quote_plus(value, safe='')}".replace("~", "%7E")
        for key, value in fields.items()
    )


def return_signing_string(fields: Mapping[str, str], *, drop_zero: bool = False) -> str:
    """The string PayTabs signs for a browser return: no signature, no empty fields, sorted.

    PayTabs' current SDK keeps ``"0"`` values; its older core (``array_filter``) drops them too,
    which ``drop_zero`` reproduces.
    """
    dropped = ("", "0") if drop_zero else ("",)
    kept = {
        key: value for key, value in fields.items() if key != "signature" and value not in dropped
    }
    return php_http_build_query(dict(sorted(kept.items())))


def sign_return(fields: Mapping[str, str], key: Key) -> str:
    """The ``signature`` field PayTabs adds to a browser return form."""
    return _hmac_hex(key, return_signing_string(fields).encode())


def verify_return(fields: Mapping[str, str], keys: Iterable[Key]) -> None:
    """Raise InvalidSignature unless the form's ``signature`` field signs the other fields."""
    keys = tuple(keys)
    if not keys:
        raise InvalidSignature("no key configured")
    messages = [return_signing_string(fields).encode()]
    if "0" in fields.values():
        messages.append(return_signing_string(fields, drop_zero=True).encode())
    _check(messages, fields.get("signature"), keys)
