"""API keys: what leaves the process about a key is keyed with the server key, so a client id
in a log line or a console cookie cannot be tested against guessed keys offline."""

from __future__ import annotations

import hashlib

from pydantic import SecretStr

from paytabs_guard.entrypoints.api.auth import ApiKeys
from paytabs_guard.entrypoints.api.console import session

ADMIN = "admin1"  # a weak key, as an attacker would hope for


def _keys(pepper: str) -> ApiKeys:
    return ApiKeys([SecretStr("shop")], [SecretStr(ADMIN)], pepper=SecretStr(pepper))


def test_client_ids_need_the_server_key_to_be_recomputed() -> None:
    here, there, rotated = _keys("server-key-A"), _keys("server-key-A"), _keys("server-key-B")
    client = here.identify(ADMIN)
    assert client is not None
    assert client.is_admin
    other = there.identify(ADMIN)
    assert other is not None
    assert other.id == client.id
    rotated_client = rotated.identify(ADMIN)
    assert rotated_client is not None
    assert rotated_client.id != client.id
    # not the unkeyed hash of the key, which anyone can compute for a guess
    digest = hashlib.sha256(ADMIN.encode()).digest()
    assert client.id != "key_" + hashlib.sha256(b"client:" + digest).hexdigest()[:16]


def test_a_console_cookie_verifies_only_where_the_server_key_is_the_same() -> None:
    here, there, rotated = _keys("server-key-A"), _keys("server-key-A"), _keys("server-key-B")
    client = here.identify(ADMIN)
    assert client is not None
    cookie = session.issue(here, client.id, now=1_000.0)
    assert cookie is not None
    assert session.verify(there, cookie, now=1_001.0) is not None
    assert session.verify(rotated, cookie, now=1_001.0) is None
    # an offline guesser without the server key: the same cookie shape, another MAC
    guessed = ApiKeys([], [SecretStr(ADMIN)])
    guessed_client = guessed.identify(ADMIN)
    assert guessed_client is not None
    assert guessed_client.id != client.id
