"""Who is looking at the console: an admin key, once, then a signed session cookie.

A browser cannot send ``Authorization: Bearer`` on a link, and the key must never ride in a
URL (it would land in history, logs and Referer headers). So the login form takes the key once
and answers with a cookie that carries no secret: the key's client id, an expiry, a random
session part and an HMAC over them, keyed by a secret derived from that admin key
(``ApiKeys.session_secret``). Any instance with the same ADMIN_API_KEYS accepts it; dropping
the key ends its sessions. Signing
out ends one: the cookie holds no state to revoke, so the routes record it (``SignOuts``,
in the database every instance reads) and refuse it from then on.

The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it)
and Secure when the console is reached over https (or PUBLIC_BASE_URL is https, behind a
proxy that ends TLS). Every POST also carries a CSRF token
derived from the session, checked in constant time. ``Authorization: Bearer <admin key>`` works
too (curl, scripts): a browser never adds that header on its own, so it needs no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from paytabs_guard.entrypoints.api.auth import ApiKeys

COOKIE: Final = "pg_console"
PATH: Final = "/console"
LIFETIME_SECONDS: Final = 8 * 3600


@dataclass(frozen=True, slots=True)
class Operator:
    """A signed-in admin: their key's client id and the CSRF token their forms carry; for a
    cookie, the session (its MAC, which names it) and when it expires, for signing out."""

    client_id: str
    csrf: str
    by_bearer: bool = False
    session: str = ""
    expires: int = 0


def _mac(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def _csrf(secret: bytes, cookie_mac: str) -> str:
    return _mac(secret, f"csrf:{cookie_mac}")[:32]


def issue(keys: ApiKeys, client_id: str, now: float) -> str | None:
    """A cookie value for an admin key's client id (None: not an admin key)."""
    secret = keys.session_secret(client_id)
    if secret is None:
        return None
    # A random part, so that two sign-ins in the same second are two sessions: signing out of
    # one must not end the other.
    body = f"{client_id}.{int(now) + LIFETIME_SECONDS}.{secrets.token_hex(8)}"
    return f"{body}.{_mac(secret, body)}"


def _same(expected: str, presented: str) -> bool:
    """Whether ``presented`` is ``expected``, in constant time. As bytes: ``compare_digest``
    raises TypeError for a str that is not ASCII, and a cookie or a form field holds whatever
    the client sent (a 500 for ``\xe9``, unauthenticated)."""
    return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "surrogatepass"))


def verify(keys: ApiKeys, value: str | None, now: float) -> Operator | None:
    """The operator of a cookie value, or None (forged, expired, or its key was removed)."""
    # Every cookie issue() makes is ASCII; anything else is no session. Checked first, as
    # str.isdigit() takes "²" and "①", which int() refuses.
    if not value or len(value) > 200 or not value.isascii():
        return None
    parts = value.split(".")
    if len(parts) != 4:
        return None
    client_id, expires, nonce, mac = parts
    secret = keys.session_secret(client_id)
    if secret is None or not expires.isdigit() or int(expires) <= now:
        return None
    if not _same(_mac(secret, f"{client_id}.{expires}.{nonce}"), mac):
        return None
    return Operator(client_id, _csrf(secret, mac), session=mac, expires=int(expires))


def bearer_token(request: Request) -> str | None:
    """The key a request presents as Bearer: None when it presents none (the session cookie
    decides), ``""`` when it sends several ``Authorization`` headers (nobody, as the API's
    ``bearer_token`` refuses them)."""
    values = request.headers.getlist("authorization")
    if len(values) > 1:
        return ""
    scheme, _, token = (values[0] if values else "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def from_bearer(keys: ApiKeys, token: str) -> Operator | None:
    """The operator an admin key presented as Bearer names; None for any other key."""
    client = keys.identify(token) if token else None
    if client is None or not client.is_admin:
        return None
    return Operator(client.id, "", by_bearer=True)


def csrf_ok(operator: Operator, presented: str | None) -> bool:
    """Whether a form's token is the operator's (Bearer callers need none)."""
    if operator.by_bearer:
        return True
    return bool(presented) and _same(operator.csrf, presented or "")


def secure(request: Request) -> bool:
    """Whether the browser reaches the console over https: the request says so, or, behind a
    proxy that ends TLS (uvicorn does not rewrite the scheme from its headers), the service's
    PUBLIC_BASE_URL does."""
    if request.url.scheme == "https":
        return True
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        return False
    base: str = runtime.container.settings.public_base_url
    return base.lower().startswith("https://")


def set_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(COOKIE, value, max_age=LIFETIME_SECONDS, path=PATH, httponly=True,
                        samesite="strict", secure=secure(request))  # fmt: skip


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict",
                           secure=secure(request))  # fmt: skip
