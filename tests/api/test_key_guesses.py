"""Wrong API keys from one source are throttled (key_guesses.py): a blocked source learns
nothing about the keys it tries, and a merchant's key already accepted there keeps working."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from paytabs_guard.entrypoints.api.auth import ApiKeys
from paytabs_guard.entrypoints.api.key_guesses import KeyGuesses
from paytabs_guard.entrypoints.api.problems import Problem
from testkit.clock import FakeClock

from .api_support import API_KEY, Service, new_key

SHOP, OTHER_SHOP_SERVER = "shop-key-1", "shop-key-2"
KEYS = ApiKeys([SecretStr(SHOP), SecretStr(OTHER_SHOP_SERVER)], [], pepper=SecretStr("pepper"))
HERE, THERE = "203.0.113.7", "198.51.100.9"


def _status(guesses: KeyGuesses, key: str | None, source: str = HERE) -> int:
    header = [] if key is None else [f"Bearer {key}"]
    try:
        guesses.authenticate(KEYS, header, source)
    except Problem as problem:
        return problem.status
    return 200


def test_a_source_that_keeps_guessing_learns_nothing_until_the_window_has_passed() -> None:
    clock = FakeClock()
    guesses = KeyGuesses(3, 60.0, clock=clock.monotonic)
    assert [_status(guesses, f"guess-{n}") for n in range(3)] == [401, 401, 429]
    # blocked: the right key looks exactly like a wrong one from here
    assert (_status(guesses, SHOP), _status(guesses, "guess-3")) == (429, 429)
    assert _status(guesses, SHOP, source=THERE) == 200  # another address is not blocked
    clock.advance(59.0)
    assert _status(guesses, SHOP) == 429  # the guess made while blocked kept it blocked
    clock.advance(60.0)
    assert _status(guesses, SHOP) == 200
    assert _status(guesses, "guess-4") == 401


def test_a_key_accepted_from_a_source_keeps_working_while_that_source_is_blocked() -> None:
    clock = FakeClock()
    guesses = KeyGuesses(3, 60.0, clock=clock.monotonic)
    assert _status(guesses, SHOP) == 200
    # someone behind the shop's own egress address guesses
    assert [_status(guesses, f"guess-{n}") for n in range(4)] == [401, 401, 429, 429]
    assert _status(guesses, SHOP) == 200  # the shop goes on selling
    assert _status(guesses, OTHER_SHOP_SERVER) == 429  # never accepted here: no exception


def test_one_wrong_key_sent_again_and_again_is_no_guessing() -> None:
    """A shop server still sending a key rotated out never blocks its neighbours' address."""
    guesses = KeyGuesses(3, 60.0, clock=FakeClock().monotonic)
    assert [_status(guesses, "rotated-out") for _ in range(50)] == [401] * 50
    assert _status(guesses, OTHER_SHOP_SERVER) == 200


def test_while_blocked_the_wait_does_not_tell_a_right_key_from_a_wrong_one() -> None:
    def waits(key: str) -> tuple[int, int]:
        clock = FakeClock()
        guesses = KeyGuesses(3, 60.0, clock=clock.monotonic)
        for n in range(3):
            clock.advance(2.0)
            _status(guesses, f"guess-{n}")
        clock.advance(2.0)
        try:
            guesses.authenticate(KEYS, [f"Bearer {key}"], HERE)
        except Problem as problem:
            return problem.status, int(problem.headers["Retry-After"])
        return 200, 0

    # each moved the block as a new key does: the oldest of the last three is now guess-1
    assert waits(SHOP) == waits("guess-new") == (429, 56)


def test_only_presented_keys_count() -> None:
    guesses = KeyGuesses(2, 60.0, clock=FakeClock().monotonic)
    for _ in range(5):
        assert _status(guesses, None) == 401  # told how to send a key; no key was guessed
        with pytest.raises(Problem):
            guesses.authenticate(KEYS, [f"Basic {SHOP}"], HERE)
    assert _status(guesses, SHOP) == 200


def test_what_is_remembered_is_bounded() -> None:
    guesses = KeyGuesses(1, 60.0, clock=FakeClock().monotonic, remembered=2)
    for source in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert _status(guesses, SHOP, source) == 200
    for source in ("10.0.0.1", "10.0.0.3"):
        assert _status(guesses, "wrong", source) == 429
    assert _status(guesses, SHOP, "10.0.0.3") == 200  # remembered
    assert _status(guesses, SHOP, "10.0.0.1") == 429  # forgotten first, as least recent


@pytest.mark.anyio
async def test_the_api_answers_a_guessing_client_429_on_reads_and_writes(
    any_service: Service,
) -> None:
    await any_service.create()  # the merchant's key, accepted from this address
    async with httpx.AsyncClient(base_url=any_service.url, timeout=10) as stranger:
        answers = [
            await stranger.get(f"/payments/v2/pay_{n}", headers={"Authorization": f"Bearer g{n}"})
            for n in range(20)
        ]
        assert [a.status_code for a in answers] == [401] * 19 + [429]
        blocked = answers[-1]
        assert blocked.headers["content-type"].startswith("application/problem+json")
        assert int(blocked.headers["Retry-After"]) > 0
        assert blocked.json()["type"].endswith("/too-many-wrong-keys")
        create = await stranger.post(
            "/payments/v2/create",
            json={"amount": "10.00", "currency": "SAR", "description": "x"},
            headers={"Authorization": f"Bearer {API_KEY}x", "Idempotency-Key": new_key()},
        )
        assert create.status_code == 429, create.text
    # the merchant's own client, on the same address, still works
    payment = await any_service.create()
    assert payment["state"] == "awaiting_customer"
