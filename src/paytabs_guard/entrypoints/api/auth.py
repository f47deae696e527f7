"""Bearer API keys for the merchant API (API_KEYS) and its admin scope (ADMIN_API_KEYS).

A presented key is hashed once and compared, in constant time, with the hash of *every*
configured key, with no early exit: timing tells neither whether a key matched nor which one.
An admin key also works on the merchant endpoints. Every key acts for the one merchant, so
Idempotency-Keys are the merchant's, not a key's (idempotency.py); ``ApiClient.id``, derived
from the key and never the key itself, names the key in logs and console sessions.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from pydantic import SecretStr

from .problems import Problem

#: Where a request's state holds the :class:`ApiClient` once its key was checked.
API_CLIENT: Final = "api_client"


@dataclass(frozen=True, slots=True)
class ApiClient:
    """Who called: a stable, non-secret id of the key, and whether it has the admin scope."""

    id: str
    is_admin: bool


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """The configured keys, kept only as SHA-256 digests.

    What leaves the process about a key (its client id in log lines and cookies, the secret
    that signs its console sessions) is keyed with ``pepper``, the PayTabs server key every
    instance of the merchant shares. Unkeyed, a client id or a cookie was enough to test
    guessed keys offline, at millions a second, without asking the service once; rotating
    the server key ends console sessions."""

    def __init__(
        self,
        merchant: Iterable[SecretStr],
        admin: Iterable[SecretStr],
        *,
        pepper: SecretStr | None = None,
    ) -> None:
        self._pepper = pepper.get_secret_value().encode("utf-8") if pepper is not None else b""
        self._keys = [(_digest(k.get_secret_value()), False) for k in merchant] + [
            (_digest(k.get_secret_value()), True) for k in admin
        ]
        # A secret per admin key for signing console sessions: derived from the key, so
        # every instance with the same keys accepts the same cookie, and removing a key
        # from ADMIN_API_KEYS ends its sessions.
        self._session_secrets = {
            self._client_id(digest): self._keyed(b"console-session:", digest)
            for digest, is_admin in self._keys
            if is_admin
        }

    def _keyed(self, purpose: bytes, digest: bytes) -> bytes:
        return hmac.new(self._pepper, purpose + digest, hashlib.sha256).digest()

    def _client_id(self, digest: bytes) -> str:
        return "key_" + self._keyed(b"client:", digest).hex()[:16]

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def identify(self, presented: str) -> ApiClient | None:
        """The client ``presented`` belongs to, or None."""
        digest = _digest(presented)
        found: ApiClient | None = None
        for known, is_admin in self._keys:
            if hmac.compare_digest(known, digest) and (found is None or is_admin):
                found = ApiClient(id=self._client_id(digest), is_admin=is_admin)
        return found

    def session_secret(self, client_id: str) -> bytes | None:
        """The signing secret of an admin key's console sessions (None: no such admin key)."""
        return self._session_secrets.get(client_id)


def unauthenticated(detail: str) -> Problem:
    """401 with the Bearer challenge."""
    return Problem(
        "unauthenticated",
        "Authentication required",
        401,
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="payments"'},
    )


def forbidden_scope() -> Problem:
    """403: the key is valid but lacks the admin scope."""
    return Problem(
        "forbidden",
        "Admin scope required",
        403,
        "This endpoint needs a key from ADMIN_API_KEYS; your key is a merchant key.",
    )


def invalid_key() -> Problem:
    return unauthenticated("The API key is not valid; check API_KEYS on the service.")


def bearer_token(keys: ApiKeys, authorization: Sequence[str]) -> str:
    """The API key a request presents (its ``Authorization`` header values, every one sent),
    or a 401 problem saying how to send one. Two are refused, not picked from: a proxy and
    this service could each pick a different one. Checking the key is ``KeyGuesses``'s job
    (key_guesses.py), which counts the wrong ones."""
    if not keys.configured:
        raise unauthenticated("No API keys are configured on this service; set API_KEYS.")
    if len(authorization) > 1:
        raise unauthenticated("Send one Authorization header, not several.")
    if not authorization or not authorization[0]:
        raise unauthenticated("Send 'Authorization: Bearer <API key>'.")
    scheme, _, token = authorization[0].partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthenticated("Use the Bearer scheme: 'Authorization: Bearer <API key>'.")
    return token
