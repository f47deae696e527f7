"""Log audit (checklist 26): after the service's scenarios, no secret, signature, token, card
number or body is in the logs; every line is JSON and request lines carry the request id."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paytabs_guard import observability
from paytabs_guard.observability import Redactor, json_formatter

from .api_support import (
    ADMIN_KEY,
    API_KEY,
    SERVER_KEY,
    VISA,
    Service,
    deliver,
    encode,
    new_key,
    signed_headers,
    transaction,
)

pytestmark = pytest.mark.anyio

MARKER = "Layla-Unique-Body-Marker"
TOKEN = "2C4652BF67A3EA33C6B590FE658078BD"


async def test_logs_after_the_scenarios_hold_no_secrets(
    service: Service, captured: io.StringIO
) -> None:
    signatures: list[str] = []
    payment = await service.create(customer={"name": MARKER, "email": "layla@example.com"})
    paid = await service.pay(payment)
    await service.callbacks_done()
    signatures.append(paid["return"]["fields"]["signature"])
    await service.anonymous.post("/payments/v2/return", data=paid["return"]["fields"])

    other = await service.create("20.00")
    body = transaction(other, token=TOKEN, customer_details={"name": MARKER})
    raw = encode(body)
    signatures.append(signed_headers(raw)["Signature"])
    await deliver(service.anonymous, raw)
    forged = await deliver(service.anonymous, raw, key="SOMEONE-ELSES-KEY-123")
    assert forged.status_code == 401
    signatures.append(signed_headers(raw, "SOMEONE-ELSES-KEY-123")["Signature"])
    await service.anonymous.post(
        "/payments/v2/webhook", content=raw, headers={"Content-Type": "application/json",
                                                      "Signature": "not-hex " + VISA}
    )  # fmt: skip
    await service.api.post(
        f"/payments/v2/{payment['id']}/refund",
        json={"amount": "1.00"},
        headers={"Idempotency-Key": new_key()},
    )
    await service.anonymous.get("/payments/v2", headers={"Authorization": f"Bearer {API_KEY}x"})

    text = captured.getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) >= 10
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for forbidden in (SERVER_KEY, API_KEY, ADMIN_KEY, TOKEN, MARKER, VISA, "layla@example.com",
                      "4111 1111 1111 1111", *signatures):  # fmt: skip
        assert forbidden not in text, forbidden
    assert not re.search(r"[0-9a-f]{64}", text)
    requests = [r for r in records if r.get("event") == "request"]
    assert requests
    assert all(str(r.get("request_id", "")).startswith("req_") for r in requests)
    assert any(r.get("kind") == "webhook_rejected" for r in records)


def test_the_redactor_scrubs_keys_values_and_card_numbers() -> None:
    redact = Redactor(secrets=["s3cr3t-value"])
    event = {
        "event": "x s3cr3t-value y",
        "signature": "abc",
        "Authorization": "Bearer zzz",
        "nested": {"api_key": "k", "note": "card 4111-1111-1111-1111 ok, order 1234567890123"},
        "digest": "a" * 64,
        "std": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    out = redact(None, "info", event)
    assert out["event"] == "x [redacted] y"
    assert out["signature"] == out["Authorization"] == "[redacted]"
    assert out["nested"] == {
        "api_key": "[redacted]",
        "note": "card [card redacted] ok, order 1234567890123",
    }
    assert out["digest"] == "[redacted]"
    assert "g0hM9" not in out["std"]


_PIECES = st.sampled_from(
    ["4111 1111 1111 1111", "4111-1111-1111-1111", " ", "-", "a" * 32, "F" * 33, "v1,",
     "v1a,", "whsec_", "Bearer ", "bearer\t", "x", "/", "+", "=", "0", "12345678901", "AbC9"]
) | st.text(alphabet="0123456789 -", max_size=24)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_the_redactors_quick_check_never_lets_a_match_through(text: str) -> None:
    # scrub() skips its five substitutions when one cheap search finds nothing any of them
    # could match; applied one by one, they must give the same text every time.
    slow = text
    slow = observability._HEX_DIGEST.sub("[redacted]", slow)
    slow = observability._STANDARD_SIGNATURE.sub("[redacted]", slow)
    slow = observability._WHSEC.sub("[redacted]", slow)
    slow = observability._BEARER.sub("Bearer [redacted]", slow)
    slow = observability._CARD_CANDIDATE.sub(observability._mask_card, slow)
    assert Redactor().scrub(text) == slow


def test_control_characters_and_unicode_are_escaped_in_log_lines() -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(json_formatter())
    logger = logging.getLogger("paytabs_guard.test_escape")
    logger.addHandler(handler)
    try:
        logger.warning("name %s", "ليلى\u202e\u0000\nforged line")
    finally:
        logger.removeHandler(handler)
    line = buffer.getvalue()
    assert line.count("\n") == 1
    assert "\u202e" not in line
    assert "\u0000" not in line
    assert json.loads(line)["event"] == "name ليلى\u202e\u0000\nforged line"
