"""Standard Webhooks v1: HMAC-SHA256 over ``{webhook-id}.{webhook-timestamp}.{raw body}``.

* ``webhook-id``: the message id; receivers dedupe on it. It may not contain ``.``.
* ``webhook-timestamp``: integer Unix seconds when the message was signed.
* ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` tokens. Several tokens let
  a sender sign with an old and a new secret during a rotation; tokens of other versions
  (``v1a`` is ed25519) are skipped.
* Secrets are ``whsec_`` + base64 of 24-64 random bytes; the HMAC key is the decoded bytes.

:func:`verify` turns *every* malformed input into :class:`WebhookVerificationError` with a reason
from :data:`Reason`, never ``ValueError`` or ``IndexError`` (the reference library raises
``ValueError`` on a token such as ``"v1"``), so a receiver can answer 401 and never 500. The
timestamp tolerance applies both ways (too old and too far in the future), in whole seconds like
the timestamp itself (``now`` is floored): exactly ``tolerance`` seconds old or ahead is
accepted, one second more either way is not. Signatures are compared with
:func:`hmac.compare_digest` against every secret, with no early exit, so timing tells neither
whether nor which secret matched.

A valid signature inside the window can still be a replay: dedupe on ``webhook-id``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from secrets import token_bytes
from typing import Final, Literal

from pydantic import SecretStr

WebhookSecret = str | bytes | SecretStr
"""A ``whsec_``-prefixed (or bare) base64 secret, or the raw key bytes."""

ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - a format marker, not a secret
MIN_SECRET_BYTES: Final = 24  # the spec's lower bound; shorter keys are refused, not used

Reason = Literal[
    "no_secret_configured",
    "missing_header",
    "duplicate_header",
    "malformed_id",
    "malformed_timestamp",
    "malformed_signature",
    "timestamp_too_old",
    "timestamp_in_future",
    "no_supported_signature",
    "no_matching_signature",
]

# Printable ASCII except "." (it separates the signed fields); bounded: ids become dedupe keys.
_ID = re.compile(r"[\x21-\x2d\x2f-\x7e]{1,256}")
# Integer seconds only: no sign, fraction, exponent, spaces, leading zeros or non-ASCII digits
# (int() would accept "١٢٣" and "1_000").
_TIMESTAMP = re.compile(r"0|[1-9][0-9]{0,11}")
_VERSION = re.compile(r"v[0-9]{1,3}[a-z]{0,3}")
_MAX_TOKENS: Final = 32  # bounds the work an attacker can ask for with one header
_DIGEST_BYTES: Final = 32


class WebhookVerificationError(Exception):
    """The delivery is not authentic or not fresh; ``reason`` says which check failed.

    The message names the failed check only: never a secret, a signature or the body.
    """

    def __init__(self, reason: Reason, header: str | None = None) -> None:
        super().__init__(f"{reason} ({header})" if header else reason)
        self.reason: Reason = reason
        self.header = header


class InvalidWebhookSecret(ValueError):
    """A configured secret is not usable: a configuration error, raised before any request."""


@dataclass(frozen=True, slots=True)
class VerifiedWebhook:
    """What a verified delivery proved: its id (the dedupe key) and its signed timestamp."""

    msg_id: str
    timestamp: int


def decode_secret(secret: WebhookSecret) -> bytes:
    """The HMAC key of ``secret``; call it at start-up to reject bad configuration early.

    Strings may carry the ``whsec_`` prefix or not (the reference library accepts both);
    missing base64 padding is tolerated. Raises :class:`InvalidWebhookSecret` without
    quoting the secret.
    """
    if isinstance(secret, bytes):
        key = secret
    else:
        text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        text = text.strip().removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidWebhookSecret("the webhook secret is not whsec_ + base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise InvalidWebhookSecret(
            f"the webhook secret has {len(key)} bytes; use at least {MIN_SECRET_BYTES}"
        )
    return key


def generate_secret(num_bytes: int = 32) -> str:
    """A fresh random secret in the ``whsec_`` form, for a new endpoint or a rotation."""
    if not MIN_SECRET_BYTES <= num_bytes <= 64:
        raise ValueError(f"num_bytes must be {MIN_SECRET_BYTES}-64, not {num_bytes}")
    return SECRET_PREFIX + base64.b64encode(token_bytes(num_bytes)).decode("ascii")


def _signed_content(msg_id: str, timestamp: str, body: bytes) -> bytes:
    # The body is appended as bytes: re-encoding or re-serialising it would break verification.
    return f"{msg_id}.{timestamp}.".encode("ascii") + body


def _digest(key: bytes, content: bytes) -> bytes:
    return hmac.new(key, content, hashlib.sha256).digest()


def sign(msg_id: str, timestamp: int, body: bytes, secret: WebhookSecret) -> str:
    """One ``v1,<base64>`` signature token for ``body`` sent as ``msg_id`` at ``timestamp``."""
    if not _ID.fullmatch(msg_id):
        raise ValueError("msg_id must be 1-256 printable ASCII characters without '.'")
    if isinstance(timestamp, bool) or timestamp < 0:  # bool is an int subclass, never a time
        raise ValueError("timestamp must be non-negative integer Unix seconds")
    digest = _digest(decode_secret(secret), _signed_content(msg_id, str(timestamp), body))
    return "v1," + base64.b64encode(digest).decode("ascii")


def _unix_seconds(now: datetime | float) -> float:
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware (a naive datetime has no instant)")
        return now.timestamp()
    return float(now)


def headers_for(
    msg_id: str,
    body: bytes,
    secret: WebhookSecret | Sequence[WebhookSecret],
    now: datetime | float,
) -> dict[str, str]:
    """The three headers of a delivery of ``body``; one signature per secret when rotating."""
    secrets = (secret,) if isinstance(secret, str | bytes | SecretStr) else tuple(secret)
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    timestamp = math.floor(_unix_seconds(now))
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(sign(msg_id, timestamp, body, s) for s in secrets),
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    # Case-insensitive, and a repeated header is refused rather than guessed at. Starlette's
    # Headers.items() yields every occurrence, so duplicates are visible here.
    values = [value for key, value in headers.items() if key.lower() == name]
    if len(values) > 1:
        raise WebhookVerificationError("duplicate_header", name)
    value = values[0].strip(" \t") if values else ""
    if not value:
        raise WebhookVerificationError("missing_header", name)
    return value


def _candidates(header: str) -> list[bytes]:
    """The decoded ``v1`` digests of a ``webhook-signature`` value; other versions are skipped."""
    tokens = [token for token in header.split(" ") if token]
    if len(tokens) > _MAX_TOKENS:
        raise WebhookVerificationError("malformed_signature", SIGNATURE_HEADER)
    digests: list[bytes] = []
    for token in tokens:
        version, comma, encoded = token.partition(",")
        if not comma or not encoded or not _VERSION.fullmatch(version):
            raise WebhookVerificationError("malformed_signature", SIGNATURE_HEADER)
        if version != "v1":
            continue
        try:
            digest = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
            raise WebhookVerificationError("malformed_signature", SIGNATURE_HEADER) from None
        # Only the canonical encoding of a 32-byte digest: no padding tricks, no spare bits.
        # ``encoded`` is ASCII here (b64decode refused anything else), as compare_digest
        # needs of a str.
        canonical = base64.b64encode(digest).decode("ascii")
        if len(digest) != _DIGEST_BYTES or not hmac.compare_digest(canonical, encoded):
            raise WebhookVerificationError("malformed_signature", SIGNATURE_HEADER)
        digests.append(digest)
    if not digests:
        raise WebhookVerificationError("no_supported_signature", SIGNATURE_HEADER)
    return digests


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[WebhookSecret],
    *,
    tolerance_seconds: float,
    now: datetime | float,
) -> VerifiedWebhook:
    """Check that ``body`` was signed by a holder of one of ``secrets`` within the tolerance.

    ``headers`` is any case-insensitive or lower-case mapping (Starlette ``Headers`` works);
    ``body`` the exact raw bytes received; ``now`` an aware datetime or Unix seconds. Returns
    the id and timestamp for deduplication; raises :class:`WebhookVerificationError` otherwise.
    """
    if tolerance_seconds < 0:
        raise ValueError("tolerance_seconds must be >= 0")
    keys = [decode_secret(secret) for secret in secrets]
    if not keys:
        raise WebhookVerificationError("no_secret_configured")
    msg_id = _header(headers, ID_HEADER)
    timestamp_text = _header(headers, TIMESTAMP_HEADER)
    signature_header = _header(headers, SIGNATURE_HEADER)
    if not _ID.fullmatch(msg_id):
        raise WebhookVerificationError("malformed_id", ID_HEADER)
    if not _TIMESTAMP.fullmatch(timestamp_text):
        raise WebhookVerificationError("malformed_timestamp", TIMESTAMP_HEADER)
    candidates = _candidates(signature_header)

    timestamp = int(timestamp_text)
    # Whole seconds on both sides, as the timestamp is: a fractional now (a real clock) made
    # the old edge exclusive (T - tol < T + 0.3 - tol) while the future edge stayed inclusive.
    current = math.floor(_unix_seconds(now))
    if timestamp < current - tolerance_seconds:
        raise WebhookVerificationError("timestamp_too_old", TIMESTAMP_HEADER)
    if timestamp > current + tolerance_seconds:
        raise WebhookVerificationError("timestamp_in_future", TIMESTAMP_HEADER)

    content = _signed_content(msg_id, timestamp_text, body)
    matched = False
    for key in keys:  # every key against every token: no early exit, nothing to time
        expected = _digest(key, content)
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookVerificationError("no_matching_signature", SIGNATURE_HEADER)
    return VerifiedWebhook(msg_id=msg_id, timestamp=timestamp)
