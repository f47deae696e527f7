"""The PayTabs callback receiver against the security checklist (docs/webhook-security.md).

Every rejection also asserts the absence of side effects: the payment's state, its outbox
events and the webhook inbox are exactly as before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from paytabs_guard.adapters.webhooks import standard
from paytabs_guard.bootstrap import Container
from paytabs_guard.service.ports import UnitOfWork, UnitOfWorkFactory
from paytabs_guard.settings import ConfigError, load_settings
from paytabs_simulator.server import RunningSimulator

from .api_support import (
    SERVER_KEY,
    Service,
    deliver,
    encode,
    running_service,
    signed_headers,
    transaction,
)

pytestmark = pytest.mark.anyio

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def _awaiting(service: Service, amount: str = "100.00") -> dict[str, Any]:
    payment: dict[str, Any] = await service.create(amount)
    return payment


class NoSideEffects:
    """Snapshot of what a rejected delivery must not change."""

    def __init__(self, service: Service, payment: dict[str, Any]) -> None:
        self.service = service
        self.payment = payment

    async def __aenter__(self) -> NoSideEffects:
        self.state = (await self.service.get(self.payment["id"]))["state"]
        self.events = await self.service.outbox_events(self.payment["id"])
        self.inbox = await self.service.inbox_keys()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if exc_info[0] is not None:
            return
        assert (await self.service.get(self.payment["id"]))["state"] == self.state
        assert await self.service.outbox_events(self.payment["id"]) == self.events
        assert await self.service.inbox_keys() == self.inbox


# ---- 1. the valid case ----------------------------------------------------------------------


async def test_1_valid_signature_over_the_raw_bytes_applies_once(service: Service) -> None:
    payment = await _awaiting(service)
    response = await deliver(service.anonymous, transaction(payment, "A"))
    assert response.status_code == 200
    assert response.json() == {"received": True, "outcome": "processed"}
    assert (await service.get(payment["id"]))["state"] == "completed"
    assert await service.outbox_events(payment["id"], "payment.completed") == 1
    assert (
        service.metric("paytabs_guard_webhook_requests_total", endpoint="ipn", outcome="processed")
        == 1
    )
    assert (
        service.metric(
            "paytabs_guard_payment_transitions_total",
            from_state="awaiting_customer",
            to_state="completed",
            source="callback",
        )
        == 1
    )


# ---- 2-7. the signature -----------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, ""])
async def test_2_missing_or_empty_signature_is_401(service: Service, header: str | None) -> None:
    payment = await _awaiting(service)
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Signature"] = header
    async with NoSideEffects(service, payment):
        response = await service.anonymous.post(
            "/payments/v2/webhook", content=encode(transaction(payment)), headers=headers
        )
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["reason"] == "missing"


def _paytabs_signature(raw: bytes, key: str = SERVER_KEY) -> str:
    return hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()


MALFORMED = [
    lambda _sig: "zz" * 32,  # not hex
    lambda sig: sig[:-2],  # too short
    lambda sig: sig + "ab",  # too long
    lambda sig: sig + "=",
    lambda sig: sig + ",",
    lambda sig: "v1," + sig,
    lambda sig: "sha256=" + sig,
    lambda sig: sig[:32] + "\u00e9" + sig[33:],
]


@pytest.mark.parametrize("mangle", MALFORMED)
async def test_3_malformed_paytabs_signature_is_401_never_500(
    service: Service, mangle: Any
) -> None:
    payment = await _awaiting(service)
    raw = encode(transaction(payment))
    async with NoSideEffects(service, payment):
        response = await service.anonymous.post(
            "/payments/v2/webhook",
            content=raw,
            headers={"Content-Type": "application/json",
                     "Signature": mangle(_paytabs_signature(raw)).encode("utf-8")},
        )  # fmt: skip
        assert response.status_code == 401


@pytest.mark.parametrize(
    "token", ["v1", "v1,a,b", "garbage", "v2,AAAA", "v1,====", "v1," + "A" * 43, ","]
)
async def test_3_malformed_standard_webhooks_signature_is_401_never_500(
    sim: RunningSimulator, sqlite_url: str, token: str
) -> None:
    env = {"PAYTABS_WEBHOOK_SECRET": f"{SERVER_KEY},{WHSEC}"}
    async with running_service(sim, sqlite_url, env=env) as service:
        payment = await _awaiting(service)
        raw = encode(transaction(payment))
        headers = standard.headers_for("msg_1", raw, WHSEC, datetime.now(UTC))
        headers[standard.SIGNATURE_HEADER] = token
        async with NoSideEffects(service, payment):
            response = await service.anonymous.post(
                "/payments/v2/webhook",
                content=raw,
                headers=headers | {"Content-Type": "application/json"},
            )
            assert response.status_code == 401


async def test_4_wrong_key_is_401_and_old_keys_work_only_while_listed(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    rotating = {"PAYTABS_WEBHOOK_SECRET": f"NEW-SERVER-KEY-2,{SERVER_KEY}"}
    async with running_service(sim, sqlite_url, env=rotating) as service:
        payment = await _awaiting(service)
        other = await _awaiting(service)
        async with NoSideEffects(service, payment):
            assert (
                await deliver(service.anonymous, transaction(payment), key="TEST-KEY")
            ).status_code == 401
        assert (
            await deliver(service.anonymous, transaction(payment), key=SERVER_KEY)
        ).status_code == 200
        assert (
            await deliver(service.anonymous, transaction(other), key="NEW-SERVER-KEY-2")
        ).status_code == 200

    after = {"PAYTABS_WEBHOOK_SECRET": "NEW-SERVER-KEY-2"}
    async with running_service(sim, sqlite_url, env=after) as service:
        payment = await _awaiting(service)
        async with NoSideEffects(service, payment):
            revoked = await deliver(service.anonymous, transaction(payment), key=SERVER_KEY)
            assert revoked.status_code == 401


async def test_4_whsec_secrets_alone_leave_paytabs_signing_with_the_server_key(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    # A relay's whsec_ secret is no PayTabs key: listing it alone must not take the server key
    # away from PayTabs' callbacks and the customers' returns, both signed with it.
    async with running_service(sim, sqlite_url, env={"PAYTABS_WEBHOOK_SECRET": WHSEC}) as service:
        payment = await _awaiting(service)
        response = await deliver(service.anonymous, transaction(payment, "A"))
        assert response.json() == {"received": True, "outcome": "processed"}
        assert (await service.get(payment["id"]))["state"] == "completed"

        paid = await service.pay(await _awaiting(service))
        returned = await service.anonymous.post(
            "/payments/v2/return", data=paid["return"]["fields"]
        )
        assert returned.status_code == 200, returned.text
        assert "could not be read" not in returned.text

        relayed = await _awaiting(service)
        raw = encode(transaction(relayed, "A"))
        headers = standard.headers_for("msg_1", raw, WHSEC, datetime.now(UTC))
        still = await service.anonymous.post(
            "/payments/v2/webhook",
            content=raw,
            headers=headers | {"Content-Type": "application/json"},
        )
        assert still.json()["outcome"] == "processed"


async def test_5_signature_off_by_one_character_is_401(service: Service) -> None:
    payment = await _awaiting(service)
    raw = encode(transaction(payment))
    signature = _paytabs_signature(raw)
    near_miss = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    async with NoSideEffects(service, payment):
        response = await service.anonymous.post(
            "/payments/v2/webhook",
            content=raw,
            headers={"Content-Type": "application/json", "Signature": near_miss},
        )
        assert response.status_code == 401
        assert response.json()["reason"] == "mismatch"


REFERENCE_BODY = (
    b'{"tran_ref":"TST0000000000001","cart_id":"cart_1","payment_result":{"response_status":"A"}}'
)
REFERENCE_SIGNATURE = "1131558be52119e53b72d4e3982a7e99189173a3ce1021a598a089c989f9fd67"


async def test_6_one_altered_byte_breaks_the_reference_signature(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    async with running_service(
        sim, sqlite_url, env={"PAYTABS_WEBHOOK_SECRET": "TEST-SERVER-KEY"}
    ) as service:
        headers = {"Content-Type": "application/json", "Signature": REFERENCE_SIGNATURE}
        genuine = await service.anonymous.post(
            "/payments/v2/webhook", content=REFERENCE_BODY, headers=headers
        )
        # Authentic, but not a whole transaction: past the signature, refused as a payload.
        assert genuine.status_code == 400
        altered = REFERENCE_BODY.replace(b'"A"', b'"D"')
        forged = await service.anonymous.post(
            "/payments/v2/webhook", content=altered, headers=headers
        )
        assert forged.status_code == 401


async def test_7_reserialised_json_fails_verification(service: Service) -> None:
    payment = await _awaiting(service)
    body = transaction(payment)
    signature = _paytabs_signature(encode(body))
    respaced = json.dumps(body, indent=1, ensure_ascii=False).encode()
    async with NoSideEffects(service, payment):
        response = await service.anonymous.post(
            "/payments/v2/webhook",
            content=respaced,
            headers={"Content-Type": "application/json", "Signature": signature},
        )
        assert response.status_code == 401


# ---- 10. Standard Webhooks timestamps ---------------------------------------------------------


NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
async def standard_service(sim: RunningSimulator, sqlite_url: str) -> AsyncIterator[Service]:
    env = {"PAYTABS_WEBHOOK_SECRET": f"{SERVER_KEY},{WHSEC}", "WEBHOOK_TIMESTAMP_TOLERANCE": "300"}
    async with running_service(sim, sqlite_url, env=env, clock=lambda: NOW) as service:
        yield service


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-301, False), (-300, True), (0, True), (300, True), (301, False)],
)
async def test_10_signed_timestamps_are_checked_both_ways(
    standard_service: Service, offset: int, accepted: bool
) -> None:
    payment = await _awaiting(standard_service)
    raw = encode(transaction(payment))
    headers = standard.headers_for("msg_abc", raw, WHSEC, NOW + timedelta(seconds=offset))
    response = await standard_service.anonymous.post(
        "/payments/v2/webhook", content=raw, headers=headers | {"Content-Type": "application/json"}
    )
    assert response.status_code == (200 if accepted else 401), response.text
    state = (await standard_service.get(payment["id"]))["state"]
    assert state == ("completed" if accepted else "awaiting_customer")


async def test_10_a_relay_secret_signs_only_its_timestamped_scheme(
    standard_service: Service,
) -> None:
    # Signed PayTabs' way (no timestamp) with the relay's whsec_ secret: were that accepted,
    # its holder could replay a delivery long after the relay's window, whenever they liked.
    payment = await _awaiting(standard_service)
    async with NoSideEffects(standard_service, payment):
        forged = await deliver(standard_service.anonymous, transaction(payment), key=WHSEC)
        assert forged.status_code == 401
    paytabs = await deliver(standard_service.anonymous, transaction(payment), key=SERVER_KEY)
    assert paytabs.status_code == 200


BETWEEN_SECONDS = NOW + timedelta(milliseconds=300)  # where a real clock usually is


@pytest.fixture
async def fractional_clock_service(
    sim: RunningSimulator, sqlite_url: str
) -> AsyncIterator[Service]:
    env = {"PAYTABS_WEBHOOK_SECRET": f"{SERVER_KEY},{WHSEC}", "WEBHOOK_TIMESTAMP_TOLERANCE": "300"}
    clock = lambda: BETWEEN_SECONDS  # noqa: E731 - an injected clock, fixed
    async with running_service(sim, sqlite_url, env=env, clock=clock) as service:
        yield service


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-301, False), (-300, True), (300, True), (301, False)],
)
async def test_10_the_edges_are_whole_seconds_when_the_clock_is_between_seconds(
    fractional_clock_service: Service, offset: int, accepted: bool
) -> None:
    # Signed at the whole second NOW + offset, received 0.3 s into a second: exactly 300 s old
    # and 300 s ahead are both inside, one second more either way is outside.
    service = fractional_clock_service
    payment = await _awaiting(service)
    raw = encode(transaction(payment))
    headers = standard.headers_for("msg_abc", raw, WHSEC, NOW + timedelta(seconds=offset))
    response = await service.anonymous.post(
        "/payments/v2/webhook", content=raw, headers=headers | {"Content-Type": "application/json"}
    )
    assert response.status_code == (200 if accepted else 401), response.text
    if not accepted:
        expected = "timestamp_too_old" if offset < 0 else "timestamp_in_future"
        assert response.json()["reason"] == expected


async def test_10_non_integer_timestamp_is_rejected(standard_service: Service) -> None:
    payment = await _awaiting(standard_service)
    raw = encode(transaction(payment))
    headers = standard.headers_for("msg_abc", raw, WHSEC, NOW)
    headers[standard.TIMESTAMP_HEADER] = headers[standard.TIMESTAMP_HEADER] + ".5"
    response = await standard_service.anonymous.post(
        "/payments/v2/webhook", content=raw, headers=headers | {"Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert response.json()["reason"] == "malformed_timestamp"


# ---- 11-14. replays, concurrency, channels, order ----------------------------------------------


async def test_11_a_replay_after_success_has_no_second_effect(service: Service) -> None:
    payment = await _awaiting(service)
    raw = encode(transaction(payment))
    assert (await deliver(service.anonymous, raw)).status_code == 200
    async with NoSideEffects(service, payment):
        replay = await deliver(service.anonymous, raw)
        assert replay.status_code == 200
        assert replay.json()["outcome"] == "duplicate"


async def test_12_twenty_concurrent_identical_deliveries_apply_once(any_service: Service) -> None:
    payment = await any_service.create()
    raw = encode(transaction(payment))
    answers = await asyncio.gather(*(deliver(any_service.anonymous, raw) for _ in range(20)))
    assert {a.status_code for a in answers} == {200}
    outcomes = sorted(a.json()["outcome"] for a in answers)
    assert outcomes.count("processed") == 1
    assert await any_service.outbox_events(payment["id"], "payment.completed") == 1
    assert (await any_service.get(payment["id"]))["state"] == "completed"


async def test_13_the_same_result_on_two_channels_applies_once(service: Service) -> None:
    payment = await _awaiting(service)
    # The per-request callback and a dashboard IPN: same transaction, other bytes (ipn_trace).
    callback = transaction(payment, ipn_trace="IPNS0001.aaaa")
    dashboard = transaction(payment, ipn_trace="IPNS0002.bbbb")
    assert (await deliver(service.anonymous, callback)).json()["outcome"] == "processed"
    assert (await deliver(service.anonymous, dashboard)).json()["outcome"] == "duplicate"
    assert await service.outbox_events(payment["id"], "payment.completed") == 1


async def test_13_the_same_result_on_many_channels_at_once_applies_once(
    any_service: Service,
) -> None:
    # Each delivery first tries without the row lock; all but one find the delivery seen or
    # the payment saved by another since they read it, and are answered again under the lock.
    payment = await any_service.create()
    bodies = [encode(transaction(payment, ipn_trace=f"IPNS{n:04d}.trace")) for n in range(12)]
    answers = await asyncio.gather(*(deliver(any_service.anonymous, raw) for raw in bodies * 2))
    assert {a.status_code for a in answers} == {200}
    outcomes = sorted(a.json()["outcome"] for a in answers)
    assert outcomes == ["duplicate"] * 23 + ["processed"]
    assert await any_service.outbox_events(payment["id"], "payment.completed") == 1
    paid = await any_service.get(payment["id"])
    assert paid["state"] == "completed"
    assert paid["has_conflict"] is False
    # one key per transaction and status, whatever the channel: PayTabs' retries stay duplicates
    assert await any_service.inbox_keys() == 1
    again = await deliver(any_service.anonymous, bodies[5])
    assert again.json()["outcome"] == "duplicate"


async def test_14_older_news_and_contradictions_never_move_a_completed_payment(
    service: Service,
) -> None:
    payment = await _awaiting(service)
    assert (await deliver(service.anonymous, transaction(payment, "A"))).status_code == 200
    stale = await deliver(service.anonymous, transaction(payment, "P"))
    assert stale.json()["outcome"] == "stale"
    conflict = await deliver(service.anonymous, transaction(payment, "D"))
    assert conflict.status_code == 200
    assert conflict.json()["outcome"] == "conflict"
    now = await service.get(payment["id"])
    assert now["state"] == "completed"
    assert now["has_conflict"] is True
    assert await service.outbox_events(payment["id"], "payment.conflict") == 1
    assert (
        service.metric("paytabs_guard_payment_results_total", kind="conflict", source="callback")
        == 1
    )


# ---- 15, 17. never acknowledged and dropped -----------------------------------------------------


async def test_15_a_result_for_an_unknown_payment_is_not_acknowledged(service: Service) -> None:
    stranger = {
        "tran_ref": "TST2599900000001",
        "cart_id": "nobody-knows",
        "description": "x",
        "currency": "SAR",
        "amount": "1.00",
    }
    inbox = await service.inbox_keys()
    response = await deliver(service.anonymous, transaction(stranger))
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["reason"] == "unknown_payment"
    assert await service.inbox_keys() == inbox


class FailingOnce:
    """A unit of work whose first commit fails, as when the database drops mid-request."""

    def __init__(self, inner: UnitOfWork, state: dict[str, bool]) -> None:
        self._inner = inner
        self._state = state
        self.payments = inner.payments
        self.inbox = inner.inbox
        self.idempotency = inner.idempotency
        self.cards = inner.cards

    async def __aenter__(self) -> FailingOnce:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._inner.__aexit__(*exc_info)

    def after_commit(self, callback: Callable[[], object]) -> None:
        self._inner.after_commit(callback)

    async def commit(self) -> None:
        if not self._state["failed"]:
            self._state["failed"] = True
            raise ConnectionResetError("database connection lost")
        await self._inner.commit()


class FailFirstCommit:
    """A container hook: once armed, the next unit of work fails at commit."""

    def __init__(self) -> None:
        self.state = {"failed": False}
        self.armed = False

    def __call__(self, container: Container) -> Container:
        inner: UnitOfWorkFactory = container.uow

        def factory() -> UnitOfWork:
            uow = inner()
            return FailingOnce(uow, self.state) if self.armed else uow

        return container.with_payments(dataclasses.replace(container.payments, uow=factory))


async def test_17_a_storage_failure_is_5xx_and_the_retry_applies(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    hook = FailFirstCommit()
    async with running_service(sim, sqlite_url, container_hook=hook) as service:
        payment = await _awaiting(service)
        hook.armed = True
        async with NoSideEffects(service, payment):
            failed = await deliver(service.anonymous, transaction(payment))
            assert failed.status_code == 503
        retried = await deliver(service.anonymous, transaction(payment))
        assert retried.status_code == 200
        assert retried.json()["outcome"] == "processed"
        assert (await service.get(payment["id"]))["state"] == "completed"


# ---- 18-21. size, content type, method, source -------------------------------------------------


async def test_18_oversized_bodies_are_413_with_and_without_content_length(
    service: Service,
) -> None:
    payment = await _awaiting(service)
    limit = service.container.settings.webhook_max_body_bytes
    big = b'{"pad":"' + b"x" * limit + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    async with NoSideEffects(service, payment):
        declared = await deliver(service.anonymous, big)
        assert declared.status_code == 413
        chunked = await service.anonymous.post(
            "/payments/v2/webhook",
            content=chunks(),
            headers={"Content-Type": "application/json", "Signature": "0" * 64},
        )
        assert chunked.status_code == 413
    # Refused before verification: no failed signature was counted.
    assert len(service.app.state.runtime.limiter) == 0
    assert (
        service.metric(
            "paytabs_guard_webhook_requests_total", endpoint="ipn", outcome="rejected_size"
        )
        == 2
    )


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "multipart/form-data; boundary=x", "application/json; charset=latin-1", None],
)
async def test_19_wrong_content_type_is_415(service: Service, content_type: str | None) -> None:
    payment = await _awaiting(service)
    raw = encode(transaction(payment))
    headers = {"Signature": _paytabs_signature(raw)}
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with NoSideEffects(service, payment):
        response = await service.anonymous.post(
            "/payments/v2/webhook", content=raw, headers=headers
        )
        assert response.status_code == 415


async def test_19_json_with_utf8_charset_is_accepted(service: Service) -> None:
    payment = await _awaiting(service)
    raw = encode(transaction(payment))
    headers = signed_headers(raw) | {"Content-Type": "application/json; charset=UTF-8"}
    response = await service.anonymous.post("/payments/v2/webhook", content=raw, headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_19_methods_other_than_post_are_405(service: Service, method: str) -> None:
    response = await service.anonymous.request(method, "/payments/v2/webhook")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_20_a_source_off_the_allowlist_is_403_before_the_signature(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    env = {"PAYTABS_IP_WHITELIST": "203.0.113.0/24"}
    async with running_service(sim, sqlite_url, env=env) as service:
        payment = await _awaiting(service)
        async with NoSideEffects(service, payment):
            unsigned = await service.anonymous.post(
                "/payments/v2/webhook",
                content=encode(transaction(payment)),
                headers={"Content-Type": "application/json", "Signature": "bad"},
            )
            assert unsigned.status_code == 403
            signed = await deliver(service.anonymous, transaction(payment))
            assert signed.status_code == 403
        assert len(service.app.state.runtime.limiter) == 0


async def test_20_ipv6_peers_follow_the_allowlist(sim: RunningSimulator, sqlite_url: str) -> None:
    async with running_service(
        sim, sqlite_url, host="::1", env={"PAYTABS_IP_WHITELIST": "127.0.0.1"}
    ) as service:
        payment = await _awaiting(service)
        assert (await deliver(service.anonymous, transaction(payment))).status_code == 403
    async with running_service(
        sim, sqlite_url, host="::1", env={"PAYTABS_IP_WHITELIST": "::1/128"}
    ) as service:
        payment = await _awaiting(service)
        assert (await deliver(service.anonymous, transaction(payment))).status_code == 200


async def test_20_ipv4_mapped_ipv6_matches_ipv4_networks(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    env = {"PAYTABS_IP_WHITELIST": "203.0.113.0/24", "TRUSTED_PROXIES": "127.0.0.1"}
    async with running_service(sim, sqlite_url, env=env) as service:
        payment = await _awaiting(service)
        response = await deliver(
            service.anonymous, transaction(payment), **{"X-Forwarded-For": "::ffff:203.0.113.9"}
        )
        assert response.status_code == 200


async def test_21_forwarded_for_counts_only_through_trusted_proxies(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    untrusted = {"PAYTABS_IP_WHITELIST": "203.0.113.9"}
    async with running_service(sim, sqlite_url, env=untrusted) as service:
        payment = await _awaiting(service)
        spoofed = await deliver(
            service.anonymous, transaction(payment), **{"X-Forwarded-For": "203.0.113.9"}
        )
        assert spoofed.status_code == 403

    behind_proxy = {"PAYTABS_IP_WHITELIST": "203.0.113.9", "TRUSTED_PROXIES": "127.0.0.1"}
    async with running_service(sim, sqlite_url, env=behind_proxy) as service:
        payment = await _awaiting(service)
        # The client wrote the left-most entry; our proxy appended the real peer.
        left_spoof = await deliver(
            service.anonymous,
            transaction(payment),
            **{"X-Forwarded-For": "203.0.113.9, 198.51.100.7"},
        )
        assert left_spoof.status_code == 403
        genuine = await deliver(
            service.anonymous,
            transaction(payment),
            **{"X-Forwarded-For": "198.51.100.7, 203.0.113.9"},
        )
        assert genuine.status_code == 200


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRUSTED_PROXIES", "*"),
        # '*' by another name: every peer's X-Forwarded-For believed, so any client could
        # name an allowlisted address (and its own rate-limit key) with one header.
        ("TRUSTED_PROXIES", "0.0.0.0/0"),
        ("TRUSTED_PROXIES", "10.0.0.1, ::/0"),
        ("TRUSTED_PROXIES", "::ffff:0:0/96"),
        # The same by parts: halves, or an IPv4 half next to its IPv4-mapped other half.
        ("TRUSTED_PROXIES", "0.0.0.0/1, 128.0.0.0/1"),
        ("TRUSTED_PROXIES", "::/1, 10.0.0.1, 8000::/1"),
        ("TRUSTED_PROXIES", "0.0.0.0/1, ::ffff:128.0.0.0/97"),
        ("TRUSTED_PROXIES", "10.0.0.1/8"),
        ("PAYTABS_IP_WHITELIST", "010.1.1.1"),
        ("PAYTABS_IP_WHITELIST", "not-an-ip"),
    ],
)
def test_21_unsafe_proxy_or_allowlist_configuration_stops_startup(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({name: value})
    assert refused.value.problems[0].startswith(name)


def test_21_proxies_that_leave_addresses_out_are_taken() -> None:
    """Half the addresses is still a list of proxies, however unwise: only every address is '*'."""
    settings = load_settings({"TRUSTED_PROXIES": "0.0.0.0/1, ::ffff:128.0.0.0/98, 8000::/1"})
    assert len(settings.trusted_proxies) == 3


# ---- 22-23. payload ---------------------------------------------------------------------------


def _deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


EDGE_BODIES = {
    "invalid_utf8": b'{"tran_ref":"\xff\xfe"}',
    "bom": b'\xef\xbb\xbf{"tran_ref":"x"}',
    "duplicate_key": (
        b'{"tran_ref":"x","payment_result":{"response_status":"A","response_status":"D"}}'
    ),
    "nan": b'{"cart_amount":NaN}',
    "infinity": b'{"cart_amount":-Infinity}',
    "huge_exponent": b'{"cart_amount":1e999}',
    "deep": _deep(100),
    "long_string": b'{"tran_ref":"' + b"x" * 5000 + b'"}',
    "not_an_object": b'["tran_ref"]',
    "garbage": b"tran_ref=1",
}


@pytest.mark.parametrize("case", sorted(EDGE_BODIES))
async def test_22_hostile_json_is_400_after_verification(service: Service, case: str) -> None:
    raw = EDGE_BODIES[case]
    inbox = await service.inbox_keys()
    response = await deliver(service.anonymous, raw)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await service.inbox_keys() == inbox


async def test_22_unicode_in_names_is_stored_safely(service: Service) -> None:
    payment = await _awaiting(service)
    hostile = {"name": "ليلى \u202eevil\u0000 🙂 <script>", "email": "a@example.com"}
    response = await deliver(service.anonymous, transaction(payment, customer_details=hostile))
    assert response.status_code == 200
    assert (await service.get(payment["id"]))["state"] == "completed"


@pytest.mark.parametrize(
    "change",
    [
        {"payment_result": {"response_status": "Z"}},
        {"tran_ref": None},
        {"tran_ref": 12345},
        {"cart_amount": "twelve"},
        {"tran_type": "Teleport"},
        {"payment_result": None},
    ],
)
async def test_23_unusable_transactions_are_400(service: Service, change: dict[str, Any]) -> None:
    payment = await _awaiting(service)
    body = {k: v for k, v in (transaction(payment) | change).items() if v is not None}
    async with NoSideEffects(service, payment):
        response = await deliver(service.anonymous, body)
        assert response.status_code == 400


@pytest.mark.parametrize("blank", ["", " ", "\t"])
async def test_23_a_blank_tran_ref_is_400_not_500(service: Service, blank: str) -> None:
    payment = await _awaiting(service)
    async with NoSideEffects(service, payment):
        body = transaction(payment) | {"tran_ref": blank}  # "" is not "use the default"
        response = await deliver(service.anonymous, body)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["reason"] == "schema"
        assert "tran_ref" in response.json()["detail"]


FINER_THAN_A_HALALA = ["12.495", "12.505", "12.501"]
NOT_PLAIN = [
    "1_2.50",
    "\u0661\u0662.\u0665\u0660",
    " 12.50",
    "12.50\u00a0",
    "+12.50",
    "0012.50",
    "1.25e1",
]


@pytest.mark.parametrize("field", ["cart_amount", "tran_total"])
@pytest.mark.parametrize("raw", FINER_THAN_A_HALALA + NOT_PLAIN)
async def test_23_an_amount_that_is_not_exactly_one_in_the_currency_is_400(
    service: Service, field: str, raw: str
) -> None:
    # Read exactly, never rounded: "12.505" is finer than SAR's minor unit, so it is not an
    # amount in SAR; and only plain ASCII decimals are amounts at all.
    payment = await _awaiting(service, "12.50")
    async with NoSideEffects(service, payment):
        response = await deliver(service.anonymous, transaction(payment) | {field: raw})
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["reason"] == "schema"


@pytest.mark.parametrize("raw", ["12.500", "12.5"])
async def test_23_extra_decimals_that_are_zeros_are_the_same_amount(
    service: Service, raw: str
) -> None:
    payment = await _awaiting(service, "12.50")
    body = transaction(payment) | {"cart_amount": raw, "tran_total": raw}
    response = await deliver(service.anonymous, body)
    assert response.json()["outcome"] == "processed"
    assert (await service.get(payment["id"]))["state"] == "completed"


@pytest.mark.parametrize(
    ("field", "literal"),
    [("cart_amount", b"100.00"), ("cart_amount", b"100"), ("tran_total", b"100.0")],
)
async def test_22_money_as_a_json_number_is_400(
    service: Service, field: str, literal: bytes
) -> None:
    payment = await _awaiting(service)
    raw = encode(transaction(payment))
    quoted = f'"{field}":"100.00"'.encode()
    assert quoted in raw
    raw = raw.replace(quoted, f'"{field}":'.encode() + literal)
    async with NoSideEffects(service, payment):
        response = await deliver(service.anonymous, raw)
        assert response.status_code == 400
        assert response.json()["reason"] == "money_not_string"
        assert "decimal strings" in response.json()["detail"]


@pytest.mark.parametrize(
    "change",
    [{"profile_id": 111111}, {"amount": "99.99"}, {"currency": "AED"}],
)
async def test_23_a_result_that_is_not_this_payments_is_quarantined(
    service: Service, change: dict[str, Any]
) -> None:
    payment = await _awaiting(service)
    events = await service.outbox_events(payment["id"])
    response = await deliver(service.anonymous, transaction(payment, **change))
    assert response.status_code == 200
    assert response.json()["outcome"] == "quarantined"
    stored = await service.get(payment["id"])
    assert stored["state"] == "awaiting_customer"
    # Another profile's result writes nothing here; one for this payment's own cart that moved
    # money the payment cannot accept is noted for review (one payment.conflict event).
    ours = "profile_id" not in change
    assert stored["has_conflict"] is ours
    assert await service.outbox_events(payment["id"]) == events + ours
    assert (
        service.metric("paytabs_guard_payment_results_total", kind="quarantined", source="callback")
        == 1
    )


# ---- 25, 27. rate limit, latency ----------------------------------------------------------------


async def test_25_failed_verifications_are_throttled_but_valid_ones_never(
    service: Service,
) -> None:
    payment = await _awaiting(service)
    codes = []
    for _ in range(7):
        bad = await deliver(service.anonymous, transaction(payment), key="WRONG-KEY")
        codes.append(bad.status_code)
    assert codes[:4] == [401] * 4
    assert codes[-1] == 429
    valid = await deliver(service.anonymous, transaction(payment))
    assert valid.status_code == 200
    assert (await service.get(payment["id"]))["state"] == "completed"


async def test_27_p99_acknowledgement_under_load_is_far_below_provider_timeouts(
    service: Service,
) -> None:
    payments = [await service.create(f"{n + 1}.00") for n in range(30)]

    async def timed(payment: dict[str, Any]) -> float:
        started = time.perf_counter()
        response = await deliver(service.anonymous, transaction(payment))
        assert response.status_code == 200
        return time.perf_counter() - started

    durations = sorted(await asyncio.gather(*(timed(p) for p in payments)))
    p99 = durations[max(0, int(len(durations) * 0.99) - 1)]
    assert p99 < 5.0


async def test_every_rejection_is_counted_by_reason(service: Service) -> None:
    await service.anonymous.post(
        "/payments/v2/webhook", content=b"{}", headers={"Content-Type": "text/plain"}
    )
    await deliver(service.anonymous, b"{}", key="WRONG")
    count = service.metric
    assert count("paytabs_guard_webhook_requests_total", endpoint="ipn",
                 outcome="rejected_content_type") == 1  # fmt: skip
    assert count("paytabs_guard_webhook_requests_total", endpoint="ipn",
                 outcome="rejected_signature") == 1  # fmt: skip


async def test_a_follow_up_before_its_payment_is_decided_is_redelivered(service: Service) -> None:
    payment = await _awaiting(service, "50.00")
    refund = transaction(
        payment,
        "A",
        tran_ref="TST2599900000099",
        tran_type="Refund",
        amount="10.00",
        previous_tran_ref=payment["tran_ref"],
    )
    async with NoSideEffects(service, payment):
        early = await deliver(service.anonymous, refund)
        assert early.status_code == 503
        assert early.json()["reason"] == "too_early"
    assert (await deliver(service.anonymous, transaction(payment, "A"))).status_code == 200
    later = await deliver(service.anonymous, refund)
    assert later.status_code == 200
    assert (await service.get(payment["id"]))["refunded"] == "10.00"


@pytest.mark.parametrize("missing", ["profile_id", "payment_result", "tran_type"])
async def test_a_signed_callback_missing_a_required_field_is_told_which(
    service: Service, missing: str
) -> None:
    """The 400 names what to add: a body with every field the schema listed, but no
    profile_id, was told only to send the fields it had sent."""
    payment = await service.create()
    body = transaction(payment)
    del body[missing]
    answer = await deliver(service.anonymous, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["type"].endswith("/invalid-payload")
    assert f"Wrong or missing: {missing}." in answer.json()["detail"]
