"""The core flows over real HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json

import pytest

from .api_support import DECLINED, Service, new_key

pytestmark = pytest.mark.anyio


async def test_a_paid_page_completes_the_payment_through_the_signed_callback(
    any_service: Service,
) -> None:
    payment = await any_service.create("150.000", "KWD", metadata={"order": "1001"})
    assert payment["state"] == "awaiting_customer"
    assert payment["amount"] == "150.000"
    assert payment["redirect_url"].startswith(any_service.sim.base_url)
    assert payment["metadata"] == {"order": "1001"}

    await any_service.pay(payment)
    await any_service.callbacks_done()

    paid = await any_service.get(payment["id"])
    assert paid["state"] == "completed"
    assert paid["captured"] == "150.000"
    assert await any_service.outbox_events(payment["id"], "payment.completed") == 1


async def test_a_declined_card_fails_the_payment(any_service: Service) -> None:
    payment = await any_service.create()
    await any_service.pay(payment, card=DECLINED)
    await any_service.callbacks_done()
    assert (await any_service.get(payment["id"]))["state"] == "failed"


async def test_partial_then_full_refund(any_service: Service) -> None:
    payment = await any_service.create("100.00")
    await any_service.pay(payment)
    await any_service.callbacks_done()

    first = await any_service.api.post(
        f"/payments/v2/{payment['id']}/refund",
        json={"amount": "30.00"},
        headers={"Idempotency-Key": new_key()},
    )
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "partially_refunded"
    assert first.json()["refundable"] == "70.00"

    too_much = await any_service.api.post(
        f"/payments/v2/{payment['id']}/refund",
        json={"amount": "70.01"},
        headers={"Idempotency-Key": new_key()},
    )
    assert too_much.status_code == 422
    assert too_much.headers["content-type"] == "application/problem+json"
    assert too_much.json()["available"] == "70.00"

    rest = await any_service.api.post(
        f"/payments/v2/{payment['id']}/refund",
        json={"amount": "70.00", "currency": "SAR"},
        headers={"Idempotency-Key": new_key()},
    )
    assert rest.status_code == 200, rest.text
    assert rest.json()["state"] == "refunded"


async def test_auth_then_capture_and_auth_then_void(any_service: Service) -> None:
    captured = await any_service.create("50.00", tran_type="auth")
    voided = await any_service.create("20.00", tran_type="auth")
    for payment in (captured, voided):
        await any_service.pay(payment)
    await any_service.callbacks_done()
    assert (await any_service.get(captured["id"]))["state"] == "authorized"

    capture = await any_service.api.post(
        f"/payments/v2/{captured['id']}/capture", headers={"Idempotency-Key": new_key()}
    )
    assert capture.status_code == 200, capture.text
    assert capture.json()["state"] == "completed"

    void = await any_service.api.post(
        f"/payments/v2/{voided['id']}/void", headers={"Idempotency-Key": new_key()}
    )
    assert void.status_code == 200, void.text
    assert void.json()["state"] == "voided"

    again = await any_service.api.post(
        f"/payments/v2/{voided['id']}/void", headers={"Idempotency-Key": new_key()}
    )
    assert again.status_code == 409
    assert "voided" in again.json()["detail"]


@pytest.mark.parametrize("path", ["void", "release"])
async def test_a_void_refuses_fields_it_would_ignore_and_takes_an_empty_object(
    service: Service, path: str
) -> None:
    # {"amount": ...} ignored would read to the client as a partial void: the whole
    # authorisation would be released.
    payment = await service.create("20.00", tran_type="auth")
    await service.pay(payment)
    await service.callbacks_done()
    url = f"/payments/v2/{payment['id']}/{path}"
    partial = await service.api.post(
        url, json={"amount": "1.00", "reason": "partial"}, headers={"Idempotency-Key": new_key()}
    )
    assert partial.status_code == 422, partial.text
    assert {error["field"] for error in partial.json()["errors"]} == {"amount", "reason"}
    assert (await service.get(payment["id"]))["state"] == "authorized"  # nothing released
    empty = await service.api.post(url, json={}, headers={"Idempotency-Key": new_key()})
    assert empty.status_code == 200, empty.text
    assert empty.json()["state"] == "voided"


async def test_process_confirms_with_paytabs_before_answering(any_service: Service) -> None:
    payment = await any_service.create()
    # The customer pays but PayTabs' callback is lost: process asks PayTabs itself.
    any_service.sim.engine.set_faults(
        any_service.sim.engine.faults.model_copy(update={"callback_withhold_rate": 1.0})
    )
    await any_service.pay(payment)
    assert (await any_service.get(payment["id"]))["state"] == "awaiting_customer"

    processed = await any_service.api.get(f"/payments/v2/process/{payment['id']}")
    assert processed.status_code == 200
    assert processed.json()["state"] == "completed"
    assert processed.json()["confirmed"] is True


async def test_list_filters_and_paginates_newest_first(service: Service) -> None:
    ids = [(await service.create(f"{10 + n}.00"))["id"] for n in range(5)]
    first = await service.api.get("/payments/v2", params={"limit": 2})
    assert first.status_code == 200
    page = first.json()
    assert [p["id"] for p in page["data"]] == ids[::-1][:2]
    seen = [p["id"] for p in page["data"]]
    cursor = page["next_cursor"]
    while cursor:
        following = await service.api.get("/payments/v2", params={"limit": 2, "cursor": cursor})
        seen += [p["id"] for p in following.json()["data"]]
        cursor = following.json()["next_cursor"]
    assert seen == ids[::-1]

    only = await service.api.get(
        "/payments/v2", params={"state": ["completed", "failed"], "limit": 10}
    )
    assert only.json()["data"] == []
    waiting = await service.api.get("/payments/v2", params={"state": "awaiting_customer"})
    assert len(waiting.json()["data"]) == 5

    future = await service.api.get("/payments/v2", params={"created_from": "2999-01-01T00:00:00Z"})
    assert future.json() == {"data": [], "next_cursor": None}
    naive = await service.api.get("/payments/v2", params={"created_from": "2025-01-01T00:00:00"})
    assert naive.status_code == 422
    # Valid ISO 8601 with no UTC time (year 1 at +14:00, year 9999 at -14:00) was a 500: the
    # database driver overflowed converting it.
    for edge in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        for name in ("created_from", "created_to"):
            refused = await service.api.get("/payments/v2", params={name: edge})
            assert refused.status_code == 422, refused.text
            assert name in refused.json()["detail"]
    # A bare number is no date-time, though pydantic would read it as Unix seconds.
    for number in ("1700000000", "1700000000.5", "-5"):
        unix = await service.api.get("/payments/v2", params={"created_from": number})
        assert unix.status_code == 422, unix.text
        assert "not a number" in unix.text
    in_range = await service.api.get("/payments/v2", params={"created_to": "9999-12-31T00:00:00Z"})
    assert len(in_range.json()["data"]) == 5  # every payment: all before the end of 9999
    bad_cursor = await service.api.get("/payments/v2", params={"cursor": "%%%"})
    assert bad_cursor.status_code == 400


async def test_a_payment_is_sent_as_compact_utf8_json_and_replayed_byte_for_byte(
    service: Service,
) -> None:
    body = {
        "amount": "10.00",
        "currency": "SAR",
        "description": "اشتراك NestCMS — plan",
        "metadata": {"note": 'مرحبا </script> \u2028 "quoted"'},
    }
    key = {"Idempotency-Key": new_key()}
    first = await service.api.post("/payments/v2/create", json=body, headers=key)
    assert first.status_code == 201, first.text
    assert first.headers["content-type"] == "application/json"
    # Arabic stays UTF-8, nothing is padded: the bytes a client hashes or a proxy caches
    compact = json.dumps(first.json(), ensure_ascii=False, separators=(",", ":"))
    assert first.content == compact.encode("utf-8")
    assert "اشتراك".encode() in first.content
    replay = await service.api.post("/payments/v2/create", json=body, headers=key)
    assert replay.content == first.content
    fetched = await service.api.get(f"/payments/v2/{first.json()['id']}")
    assert fetched.json()["metadata"] == body["metadata"]
