"""Log audit (checklist 26): after the service's scenarios, no secret, signature, token, card
number or body is in the logs; every line is JSON and request lines carry the request id."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from structlog.typing import EventDict

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
     "v1a,", "whsec_", "Bearer ", "bearer\t", "x", "/", "+", "=", "0", "12345678901", "AbC9",
     "4111.1111.1111.1111", "\u0664\u0661\u0661\u0661", "\uff11\uff11", "\u00a0",
     "\u200b", "_", "."]
) | st.text(alphabet="0123456789 -./_\u00a0\u200b\u0661\uff14", max_size=24)  # fmt: skip


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


LUHN_TRAN_REF = "TST2633824054353"  # a PayTabs-shaped reference whose 13 digits pass Luhn


def _luhn_completed(body: str) -> str:
    """``body`` plus the check digit that makes it pass the Luhn check: a card-number shape."""
    for check in "0123456789":
        if observability.luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable: one check digit always fits")


_PANS = st.builds(
    lambda prefix, rest: _luhn_completed(prefix + rest),
    st.sampled_from(["4", "51", "37", "6011", "35"]),
    st.text(alphabet="0123456789", min_size=11, max_size=14),  # 13-19 digits
)
# What may sit right before or after a card number: never a digit, space or hyphen (those
# would make it part of a longer digit run, which is not a card number's shape).
_EDGES = st.text(alphabet="TSabcXYZ:=/()'\"[]{}", max_size=6)
_TRAN_REF_KEYS = st.sampled_from(["tran_ref", "previous_tran_ref", "tranRef", "gateway_ref"])
_OTHER_KEYS = st.sampled_from(["event", "cart_id", "reason", "note", "ref", "payment_id"])


def test_a_luhn_valid_tran_ref_stays_readable_while_card_numbers_are_redacted() -> None:
    assert observability.luhn_valid(LUHN_TRAN_REF[3:])
    out = Redactor()(None, "info", {
        "event": "webhook",
        "tran_ref": LUHN_TRAN_REF,
        "previous_tran_ref": LUHN_TRAN_REF,
        "nested": {"tranRef": LUHN_TRAN_REF, "pan_in_text": f"paid with {VISA} today"},
        "card": VISA,
        "reason": f"sale {LUHN_TRAN_REF} (A) is for 1.00 SAR",
        "note": f"customer typed {VISA[:4]} {VISA[4:8]} {VISA[8:12]} {VISA[12:]}",
        "gateway_ref": f"TST {VISA}",  # not a reference's shape: scrubbed like any text
    })  # fmt: skip
    assert out["tran_ref"] == out["previous_tran_ref"] == LUHN_TRAN_REF
    assert out["nested"]["tranRef"] == LUHN_TRAN_REF
    assert out["nested"]["pan_in_text"] == "paid with [card redacted] today"
    assert out["card"] == "[card redacted]"
    assert out["note"] == "customer typed [card redacted]"
    assert out["gateway_ref"] == "TST [card redacted]"
    # Outside a reference field the digits are still hidden: only the field's whole value
    # is known to be a reference.
    assert LUHN_TRAN_REF not in out["reason"]


LUHN_PAYMENT_ID = "pay_2f4608417100431a3f22668f"  # made by the service; "4608417100431" passes


def test_our_own_ids_keep_their_digits_in_their_own_fields() -> None:
    # About one payment id in a thousand holds a Luhn-valid run; hidden, the access line of
    # a callback named "pay_2f[card redacted]a3f22668f" and no search found its payment.
    assert "[card redacted]" in Redactor().scrub(LUHN_PAYMENT_ID)
    card_id = "card_" + LUHN_PAYMENT_ID.removeprefix("pay_")
    out = Redactor()(None, "info", {
        "event": "callback",
        "payment_id": LUHN_PAYMENT_ID,
        "saved_card_id": card_id,
        "nested": {"card_id": card_id},
        "reason": f"payment {LUHN_PAYMENT_ID} is completed",  # not the field's whole value
        "cart_id": LUHN_PAYMENT_ID,  # not an id field of ours: a merchant's text
        "payment-id": f"pay_{VISA}abcdefgh",  # 24 characters, not 24 hex digits of ours
    })  # fmt: skip
    assert out["payment_id"] == LUHN_PAYMENT_ID
    assert out["saved_card_id"] == out["nested"]["card_id"] == card_id
    assert LUHN_PAYMENT_ID not in out["reason"]
    assert out["cart_id"] != LUHN_PAYMENT_ID
    assert VISA not in json.dumps(out)


@settings(max_examples=300, deadline=None)
@given(pan=_PANS, before=_EDGES, after=_EDGES, key=_OTHER_KEYS, ref_key=_TRAN_REF_KEYS)
def test_a_card_number_is_redacted_wherever_it_is_but_in_a_reference_value(
    pan: str, before: str, after: str, key: str, ref_key: str
) -> None:
    # Loosening the card rule (letters glued in front, any key, any reference-like text)
    # lets one of these through; only a reference field's whole value keeps its digits.
    redact = Redactor()
    text = f"{before}{pan}{after}"
    out = redact(None, "info", {key: text, "nested": {key: [text]}})
    assert pan not in json.dumps(out)
    spaced = f"TST {pan}" if not before else f"{before} {pan}{after}"
    assert pan not in json.dumps(redact(None, "info", {ref_key: spaced}))
    glued = f"{before}{pan}" if before.isascii() and before.isalpha() and len(before) >= 2 else ""
    if glued:  # a reference's shape: kept readable, whole, under a reference key only
        assert redact(None, "info", {ref_key: glued})[ref_key] == glued


@settings(max_examples=300, deadline=None)
@given(
    pan=_PANS,
    groups_before=st.lists(st.text(alphabet="0123456789", min_size=1, max_size=4), max_size=3),
    groups_after=st.lists(st.text(alphabet="0123456789", min_size=1, max_size=4), max_size=3),
    separator=st.sampled_from([" ", "-"]),
    grouped=st.booleans(),
)
def test_a_card_number_written_among_other_digit_groups_is_still_redacted(
    pan: str, groups_before: list[str], groups_after: list[str], separator: str, grouped: bool
) -> None:
    # "order 12 4111 1111 1111 1111": the whole run failed the Luhn check (or, past 19
    # digits, was not a candidate at all), and the card number inside it was logged.
    written = separator.join(pan[i : i + 4] for i in range(0, len(pan), 4)) if grouped else pan
    text = separator.join([*groups_before, written, *groups_after])
    out = Redactor()(None, "info", {"note": f"order {text} done"})
    assert pan not in re.sub(r"[ -]", "", json.dumps(out))


async def test_a_luhn_valid_tran_ref_is_readable_in_the_service_logs(
    service: Service, captured: io.StringIO
) -> None:
    # A signed callback for a transaction we do not know yet is logged with its tran_ref, so
    # an operator can find it at PayTabs; the card number in the same body is not logged.
    body = {
        "tran_ref": LUHN_TRAN_REF, "profile_id": 987654, "cart_id": "cart-unknown-1",
        "cart_currency": "SAR", "cart_amount": "12.50", "tran_currency": "SAR",
        "tran_total": "12.50", "tran_type": "Sale", "cart_description": f"card {VISA}",
        "payment_result": {"response_status": "A", "response_code": "G1"},
    }  # fmt: skip
    response = await deliver(service.anonymous, body)
    assert response.status_code == 503  # no payment owns it yet: PayTabs delivers it again
    records = [json.loads(line) for line in captured.getvalue().splitlines() if line.strip()]
    unknown = [r for r in records if "unknown payment" in r.get("event", "")]
    assert unknown
    assert unknown[0]["tran_ref"] == LUHN_TRAN_REF
    assert VISA not in captured.getvalue()


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


async def test_the_request_id_in_the_answer_is_the_one_in_the_logs(
    service: Service, captured: io.StringIO
) -> None:
    # A client's id holding a card number was redacted in the log but echoed in the answer,
    # and a generated hex id now and then held a Luhn-valid run of 13 digits and was too.
    sent = await service.anonymous.get("/livez", headers={"X-Request-ID": "req_4111111111111111ab"})
    assert sent.headers["x-request-id"] != "req_4111111111111111ab"  # replaced, not echoed
    answers = [sent] + [await service.anonymous.get("/livez") for _ in range(20)]
    ids = [answer.headers["x-request-id"] for answer in answers]
    assert all(re.fullmatch(r"req_[a-z2-7]{20}", request_id) for request_id in ids), ids
    logged = {
        json.loads(line).get("request_id")
        for line in captured.getvalue().splitlines()
        if line.strip()
    }
    assert set(ids) <= logged
    assert "4111111111111111" not in captured.getvalue()


class _FieldByField(Redactor):
    """The redactor without its whole-line check: every field looked at on its own."""

    def _line_is_clean(self, _event_dict: EventDict) -> bool:
        return False


_LINE_KEYS = st.sampled_from(
    ["event", "cart_id", "reason", "note", "tran_ref", "signature", "api_key", "_record", "n"]
)
_LINE_VALUES = (
    st.lists(_PIECES, max_size=6).map("".join)
    | st.sampled_from(
        ["s3cr3t-value", "x s3cr3t-value y", VISA, f"TST{VISA}", TOKEN, LUHN_TRAN_REF, "TST0042"]
    )
    | st.integers()
    | st.none()
    | st.lists(st.lists(_PIECES, max_size=3).map("".join), max_size=2)
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_LINE_KEYS, _LINE_VALUES, max_size=8))
@example({"event": "webhook", "tran_ref": LUHN_TRAN_REF})
@example({"event": "webhook", "note": f"TST{VISA}"})
def test_the_whole_line_check_redacts_exactly_what_the_field_by_field_path_does(
    line: dict[str, object],
) -> None:
    # The redactor searches a line's strings joined, once, and skips the line when nothing is
    # found; a field that holds a match on its own must still reach the field-by-field path.
    # A reference value is left out of the patterns' search but not the secrets': the second
    # secret sits inside LUHN_TRAN_REF.
    secrets = ["s3cr3t-value", LUHN_TRAN_REF[4:11]]
    assert Redactor(secrets)(None, "info", dict(line)) == _FieldByField(secrets)(
        None, "info", dict(line)
    )
