"""Two ``Content-Type`` headers over real HTTP: refused (400), never picked from, on the merchant
API, the PayTabs callback, the browser return and the console's forms. The first one used to
win: a create sent as JSON then multipart was processed, and a callback sent as JSON then
text/plain passed the content-type check, while a proxy reading the last one saw another body.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from .api_support import ADMIN_KEY, Service, encode, signed_headers, transaction
from .test_browser_return import _withhold_callbacks

pytestmark = pytest.mark.anyio

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
ORDERS = [
    (JSON, "multipart/form-data; boundary=x"),
    (JSON, "text/plain"),
    ("text/plain", JSON),
    (JSON, JSON),
]
IDS = ["json-then-multipart", "json-then-text", "text-then-json", "json-twice"]


def _refused(answer_json: dict[str, object]) -> None:
    assert str(answer_json["type"]).endswith("/invalid-content-type")
    assert "one Content-Type header" in str(answer_json["detail"])


@pytest.mark.parametrize(("first", "second"), ORDERS, ids=IDS)
async def test_a_create_with_two_content_types_is_a_400_and_creates_nothing(
    service: Service, first: str, second: str
) -> None:
    body = b'{"amount": "1.00", "currency": "SAR", "description": "x"}'
    headers = [("Content-Type", first), ("Content-Type", second), ("Idempotency-Key", "ct-1-0001")]
    created = await service.api.post("/payments/v2/create", content=body, headers=headers)
    assert created.status_code == 400, created.text
    assert created.headers["content-type"] == "application/problem+json"
    _refused(created.json())
    assert (await service.api.get("/payments/v2")).json()["data"] == []
    # One of them alone is a create again, under the same key (the refusal was not kept).
    alone = await service.api.post(
        "/payments/v2/create", content=body, headers=[("Content-Type", JSON), headers[2]]
    )
    assert alone.status_code == 201, alone.text


@pytest.mark.parametrize(("first", "second"), ORDERS, ids=IDS)
async def test_a_callback_with_two_content_types_is_a_400_and_changes_nothing(
    service: Service, first: str, second: str
) -> None:
    payment = await service.create()
    raw = encode(transaction(payment, "A"))
    signature = signed_headers(raw)["Signature"]
    headers = [("Signature", signature), ("Content-Type", first), ("Content-Type", second)]
    response = await service.anonymous.post("/payments/v2/webhook", content=raw, headers=headers)
    assert response.status_code == 400, response.text
    _refused(response.json())
    assert (await service.get(payment["id"]))["state"] == payment["state"]
    assert await service.inbox_keys() == 0
    rejected = {"endpoint": "ipn", "outcome": "rejected_content_type"}
    assert service.metric("paytabs_guard_webhook_requests_total", **rejected) == 1


@pytest.mark.parametrize(
    ("first", "second"), [(FORM, JSON), (FORM, FORM)], ids=["form-json", "form-twice"]
)
async def test_a_browser_return_with_two_content_types_is_a_400_page(
    service: Service, first: str, second: str
) -> None:
    _withhold_callbacks(service)  # only the return could move the payment
    payment = await service.create()
    paid = await service.pay(payment)
    body = urlencode(paid["return"]["fields"]).encode()
    headers = [("Content-Type", first), ("Content-Type", second)]
    response = await service.anonymous.post("/payments/v2/return", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html")  # a page for the shopper
    # Refused before it was verified: no query confirmed the payment that PayTabs has taken.
    assert (await service.get(payment["id"]))["state"] == payment["state"]


async def test_a_console_form_with_two_content_types_is_a_400(service: Service) -> None:
    body = urlencode({"key": ADMIN_KEY, "next": "/console"}).encode()
    headers = [("Content-Type", FORM), ("Content-Type", "text/plain")]
    signed = await service.anonymous.post("/console/login", content=body, headers=headers)
    assert signed.status_code == 400, signed.text
    _refused(signed.json())
    assert "set-cookie" not in signed.headers
