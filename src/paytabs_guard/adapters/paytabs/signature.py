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

from paytabs_guard.domain.gateway_results import RETURN_FIELDS

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_HEADER_SAFE_KEY = re.compile(r"[\x21-\x7e]+")


def server_key_problem(key: str) -> str | None:
    """What is wrong with ``key`` as a server key, or None.

    The key is sent as the ``authorization`` header. A blank key authenticates nothing and
    would verify callbacks anyone can sign. A space, a line break (a key read from a file with
    its newline) or a character outside printable ASCII cannot go in a header: every request
    would fail before it left, and each failure would look like a gateway outage."""
    if not key.strip():
        return "the server key is blank"
    if not _HEADER_SAFE_KEY.fullmatch(key):
        return (
            "the server key holds a space, a line break or a character outside printable "
            "ASCII (read from a file with its newline?); PayTabs server keys are letters, "
            "digits and dashes"
        )
    return None


class InvalidSignature(Exception):
    """The signature is missing, malformed or made with a key we do not hold."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: A server key, as the library's ``PayTabs`` takes it (a plain string) or as settings hold it.
Key = SecretStr | str


def _hmac_hex(key: Key, message: bytes) -> str:
    return hmac.new(_secret(key).encode(), message, hashlib.sha256).hexdigest()


def sign_callback(body: bytes | bytearray | memoryview, key: Key) -> str:
    """The ``Signature`` header PayTabs sends with ``body`` (for tests and relays); ``body`` as
    for :func:`verify_callback`."""
    return _hmac_hex(key, callback_body(body))


def _usable_keys(keys: object) -> tuple[Key, ...]:  # Key | Iterable[Key], checked here
    """``keys`` as a tuple of keys, refusing what would let anyone sign.

    A plain string is one key, not the characters it holds: ``verify_callback(body, sig,
    server_key)`` is an easy call to write, and iterating the string would accept an HMAC
    made with any one character of the key. A blank key (an unset environment variable read
    as ``""``, or None) would accept an HMAC anyone can make, so it verifies nothing. A key of
    another type (bytes) is a mistake in the calling code: ValueError, saying what to pass."""
    found: tuple[object, ...] = (keys,)
    if isinstance(keys, Iterable) and not isinstance(keys, (str, bytes, bytearray, memoryview)):
        found = tuple(keys)
    for key in found:
        if key is not None and not isinstance(key, (str, SecretStr)):
            raise ValueError(
                f"pass the server key as str (or SecretStr), or several in a list, not "
                f"{type(key).__name__}"
            )
    usable = tuple(
        key for key in found if isinstance(key, (str, SecretStr)) and _secret(key).strip()
    )
    if not usable:
        raise InvalidSignature("no key configured")
    return usable


def _secret(key: Key) -> str:
    return key.get_secret_value() if isinstance(key, SecretStr) else key


def callback_body(body: object) -> bytes:
    """``body`` as the bytes a callback's signature is checked over, or ValueError saying what
    to pass: the raw request body, as bytes (or a bytearray or memoryview of them).

    Text is refused, not encoded: the signature is over the exact bytes PayTabs sent, and
    which bytes a str came from (its encoding, how a framework decoded them) is not known.
    Parsed JSON (a dict) cannot be turned back into those bytes either."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        raise ValueError(
            "pass the raw request body as bytes, not str (Django: request.body; Flask: "
            "request.get_data(); Starlette: await request.body()): the signature is over the "
            "exact bytes PayTabs sent, and text need not encode back to them"
        )
    raise ValueError(
        f"pass the raw request body as bytes, not {type(body).__name__}: the signature is over "
        "the exact bytes PayTabs sent, before any parsing"
    )


def _signature_text(signature: object) -> str | None:
    if signature is None or isinstance(signature, str):
        return signature
    raise ValueError(
        f"pass the signature as str (the header's or the form field's value), or None when "
        f"there is none, not {type(signature).__name__}"
    )


def _return_fields(fields: object) -> dict[str, str]:
    """A browser return's fields, one str per name, or ValueError saying what to pass.

    Read through ``items()``, which a framework's multi-valued form (Django's ``QueryDict``,
    werkzeug's ``MultiDict``) answers with one value per name; ``dict(...)`` of Django's
    gives lists."""
    if not isinstance(fields, Mapping):
        raise ValueError(
            "pass the return's fields as a mapping of names to str values (the POSTed form, "
            f"or a GET return's query parameters), not {type(fields).__name__}"
        )
    taken: dict[str, str] = {}
    for name, value in fields.items():
        if not (isinstance(name, str) and isinstance(value, str)):
            hint = (
                " (urllib's parse_qs gives lists: pass dict(parse_qsl(query)) instead)"
                if isinstance(value, (list, tuple))
                else ""
            )
            raise ValueError(
                f"pass each return field as one str: {name!r} is {type(value).__name__}{hint}"
            )
        taken[name] = value
    return taken


def _check(messages: Iterable[bytes], signature: str | None, keys: Iterable[Key]) -> None:
    if signature is None or not signature.strip():
        raise InvalidSignature("missing")
    candidate = signature.strip()
    if not _HEX_SHA256.fullmatch(candidate):
        raise InvalidSignature("malformed")
    # ASCII hex from here on: compare_digest raises TypeError for a str that is not ASCII.
    candidate = candidate.lower()
    matched = False
    # compare with every key (no early exit), so timing does not tell which key matched
    for message in messages:
        for key in keys:
            matched |= hmac.compare_digest(_hmac_hex(key, message), candidate)
    if not matched:
        raise InvalidSignature("mismatch")


def verify_callback(
    body: bytes | bytearray | memoryview, signature: str | None, keys: Key | Iterable[Key]
) -> None:
    """Raise InvalidSignature unless ``signature`` is a valid HMAC of the raw ``body``.

    ``keys``: the server key, or several during a rotation; blank keys are ignored. An
    argument of another type (a str or parsed body, a bytes signature or key) raises
    ValueError saying what to pass (:func:`callback_body`)."""
    raw = callback_body(body)
    text = _signature_text(signature)
    _check((raw,), text, _usable_keys(keys))


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


def verify_return(fields: Mapping[str, object], keys: Key | Iterable[Key]) -> None:
    """Raise InvalidSignature unless the return's ``signature`` field signs its other fields.

    ``fields``: the POSTed form, or a GET return's query parameters as they came. The
    merchant's own parameters in its ``return_url`` are not signed, so when ``fields`` holds
    any besides PayTabs' (:data:`RETURN_FIELDS`), the signature over PayTabs' fields alone is
    accepted too: only those are vouched for. ``keys`` as for :func:`verify_callback`.
    ``fields`` other than a mapping of str to one str each (a list value, as ``parse_qs``
    gives, or an upload in a form) raise ValueError saying what to pass; the hint takes any
    mapping, so that a framework's form (Starlette's ``FormData``) is passed as it comes."""
    usable = _usable_keys(keys)
    taken = _return_fields(fields)
    readings = [taken]
    if not RETURN_FIELDS.issuperset(taken):
        readings.append({key: value for key, value in taken.items() if key in RETURN_FIELDS})
    messages = []
    for reading in readings:
        messages.append(return_signing_string(reading).encode())
        if "0" in reading.values():
            messages.append(return_signing_string(reading, drop_zero=True).encode())
    _check(messages, taken.get("signature"), usable)
