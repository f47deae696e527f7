"""Authentication, validation, error shapes, stats and breaker control of the merchant API."""

from __future__ import annotations

from typing import Any

import pytest

from paytabs_simulator.faults import Faults

from .api_support import Service, new_key

pytestmark = pytest.mark.anyio

BODY = {"amount": "25.00", "currency": "SAR", "description": "Order 7"}
PROBLEM = "application/problem+json"


async def _create(service: Service, body: dict[str, Any]) -> Any:
    return await service.api.post(
        "/payments/v2/create", json=body, headers={"Idempotency-Key": new_key()}
    )


@pytest.mark.parametrize(
    "authorization", [None, "Basic bWU6eW91", "Bearer", "Bearer wrong-key-123", "Token abc"]
)
async def test_missing_or_invalid_keys_get_401(service: Service, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await service.anonymous.get("/payments/v2", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_breaker_control_needs_the_admin_scope(service: Service) -> None:
    merchant = await service.api.post("/payments/v2/circuit-breaker/create/open")
    assert merchant.status_code == 403
    unknown = await service.admin.post("/payments/v2/circuit-breaker/nope/open")
    assert unknown.status_code == 404
    assert "create" in unknown.json()["detail"]
    wrong = await service.admin.post("/payments/v2/circuit-breaker/create/explode")
    assert wrong.status_code == 422
    closed = await service.admin.post("/payments/v2/circuit-breaker/create/close")
    assert closed.json()["breakers"]["create"]["state"] == "forced_closed"
    # It takes no body: a field sent anyway is named, not ignored.
    extra = await service.admin.post("/payments/v2/circuit-breaker/create/reset", json={"x": 1})
    assert extra.status_code == 422
    assert extra.json()["errors"][0]["field"] == "x"


async def test_breaker_stats_list_every_operation_family(service: Service) -> None:
    assert (await service.anonymous.get("/payments/v2/circuit-breaker/stats")).status_code == 401
    stats = await service.api.get("/payments/v2/circuit-breaker/stats")
    assert stats.status_code == 200
    breakers = stats.json()["breakers"]
    assert set(breakers) >= {"create", "query", "follow_up", "token"}
    assert breakers["create"]["window"]["calls"] == 0


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"amount": 25.5}, "amount", "send the amount as a string"),
        ({"amount": 25}, "amount", "send the amount as a string"),
        ({"amount": True}, "amount", "not true or false"),
        ({"amount": "1e3"}, "amount", "decimal string"),
        ({"amount": "-5.00"}, "amount", "decimal string"),
        ({"amount": "1.001"}, "amount", "SAR takes at most 2 decimal places; this amount has 3"),
        ({"currency": "XXX"}, "currency", "unsupported currency"),
        ({"description": ""}, "description", "at least 1"),
        ({"tran_type": "refund"}, "tran_type", "sale"),
        ({"return_url": "javascript:alert(1)"}, "return_url", "http"),
        # URLs a browser cannot follow: the customer's return after paying would fail on them
        ({"return_url": "http://[::1"}, "return_url", "not a valid URL"),
        ({"return_url": "https:///thank-you"}, "return_url", "must name a host"),
        ({"return_url": "https://:80/x"}, "return_url", "must name a host"),
        ({"return_url": "https://shop.example:99999/x"}, "return_url", "port"),
        ({"return_url": "http://[v1.x]/"}, "return_url", "not an IPv6 address"),
        ({"return_url": "https://shop.example@evil.example/"}, "return_url", "user name"),
        ({"return_url": "http://999.1.1.1/"}, "return_url", "not an IPv4 address"),
        ({"surprise": True}, "surprise", "not permitted"),
        # Stored and shown to shoppers, operators and PayTabs: refused, not echoed back later
        ({"description": "Order \u0007 1"}, "description", "control characters"),
        ({"description": "Order \u001b[31m"}, "description", "control characters"),
        ({"customer": {"street": "Olaya\u007f"}}, "customer.street", "control characters"),
        ({"metadata": {"note": "a\u0085b"}}, "metadata", "control characters"),
        ({"customer": {"ip": "not-an-ip"}}, "customer.ip", "IPv4 or IPv6"),
        ({"customer": {"ip": "999.1.1.1"}}, "customer.ip", "IPv4 or IPv6"),
        ({"customer": {"phone": "call me"}}, "customer.phone", "phone number"),
        ({"customer": {"email": "a\u001b[31m@b.example"}}, "customer.email", "control"),
        # PayTabs answers "Email not valid" (code 106): a 422 here, not a failed payment
        ({"customer": {"email": "a@b.com."}}, "customer.email", "pattern"),
        ({"customer": {"email": "a@b..com"}}, "customer.email", "pattern"),
        ({"customer": {"ip": "fe80::1%eth0"}}, "customer.ip", "IPv4 or IPv6"),
        ({"metadata": {"k": 1}}, "metadata.k", "string"),
    ],
)
async def test_invalid_bodies_get_422_saying_what_to_fix(
    service: Service, change: dict[str, Any], field: str, words: str
) -> None:
    response = await _create(service, BODY | change)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"].endswith("/invalid-request")
    fields = {e["field"]: e["message"] for e in problem["errors"]}
    assert field in fields, fields
    assert words.lower() in fields[field].lower()
    assert "25.5" not in response.text or "amount" in fields  # the value is never echoed


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"amount":"12.50"', b"  ", b"{}{}", b'{"a": 1} x']
)
async def test_malformed_json_is_a_422_problem_that_says_so(service: Service, body: bytes) -> None:
    response = await service.api.post(
        "/payments/v2/create",
        content=body,
        headers={"Content-Type": "application/json", "Idempotency-Key": new_key()},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    # The body as a whole is at fault, not a field named after a character offset.
    [error] = response.json()["errors"]
    assert error["field"] == "body", error
    assert "is not valid JSON" in error["message"]
    assert "well-formed JSON document" in response.json()["detail"]


async def test_a_paytabs_refusal_is_422_with_its_message(service: Service) -> None:
    # JPY is a valid currency, but not enabled on the simulator's profile.
    response = await _create(service, BODY | {"amount": "2500", "currency": "JPY"})
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/gateway-rejected")
    assert "Invalid currency code" in problem["detail"]
    # The answer says that a failed payment was kept, and which.
    assert f"kept as payment {problem['payment_id']} in state failed" in problem["detail"]
    assert response.headers["x-payment-id"] == problem["payment_id"]
    stored = await service.get(problem["payment_id"])
    assert stored["state"] == "failed"
    # Read later, the payment still says why: PayTabs refused it, no card was involved.
    assert (stored["failure_reason"], stored["last_payment_error"]) == ("gateway_rejected", None)


async def test_a_replayed_answer_names_its_payment_as_the_first_did(service: Service) -> None:
    key = new_key()
    for body in (BODY, BODY | {"amount": "2500", "currency": "JPY"}):  # 201, then a 422
        headers = {"Idempotency-Key": key}
        first = await service.api.post("/payments/v2/create", json=body, headers=headers)
        again = await service.api.post("/payments/v2/create", json=body, headers=headers)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["x-payment-id"] == first.headers["x-payment-id"]
        assert first.headers["x-payment-id"] in first.text
        key = new_key()


async def test_an_ambiguous_gateway_answer_is_202_with_state_unknown(service: Service) -> None:
    service.sim.engine.set_faults(Faults(error_rate=1.0, error_statuses=[502], error_phase="after"))
    response = await _create(service, BODY)
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "unknown"
    assert response.headers["location"] == f"/payments/v2/{response.json()['id']}"


@pytest.mark.parametrize("status", [503, 429])
async def test_a_create_paytabs_turned_away_names_its_failed_attempt_and_claims_nothing_untrue(
    service: Service, status: int
) -> None:
    # PayTabs answers 503 (or 429) after making the page: "usually not processed" is not
    # "never". The answer must not say nothing was sent; what holds is that nothing was
    # charged and no page was handed out, and it names the failed payment the merchant will
    # see in its events. The key is free again: the retry starts a new payment.
    turned_away = Faults(
        error_rate=1.0,
        error_statuses=[status],
        error_phase="after",
        fault_paths=["/payment/request"],
    )
    service.sim.engine.set_faults(turned_away)
    key = new_key()
    response = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
    )
    assert response.status_code == 503, response.text
    problem = response.json()
    assert problem["type"].endswith("/gateway-unavailable")
    assert "nothing was sent" not in problem["detail"]
    assert "no payment page was handed out" in problem["detail"]
    assert response.headers["x-payment-id"] == problem["payment_id"]  # as a created one is named
    stored = await service.get(problem["payment_id"])
    assert stored["state"] == "failed"
    assert stored["redirect_url"] is None

    service.sim.engine.set_faults(Faults())
    retried = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
    )
    assert retried.status_code == 201, retried.text
    assert retried.json()["id"] != problem["payment_id"]


async def test_pages_whose_answers_were_all_lost_are_a_502_never_a_201_without_a_page(
    service: Service,
) -> None:
    # PayTabs opens each page and its answer is lost; queries find the pages, not their URLs.
    only_creates = Faults(
        error_rate=1.0, error_statuses=[502], error_phase="after", fault_paths=["/payment/request"]
    )
    service.sim.engine.set_faults(only_creates)
    response = await _create(service, BODY)
    assert response.status_code == 502, response.text
    problem = response.json()
    assert problem["type"].endswith("/gateway-no-page")
    assert "new Idempotency-Key" in problem["detail"]
    stored = await service.get(problem["payment_id"])
    assert stored["state"] == "failed"
    assert stored["redirect_url"] is None


async def test_process_without_paytabs_answers_the_last_known_state(service: Service) -> None:
    payment = await service.create()
    await service.admin.post("/payments/v2/circuit-breaker/query/open")
    processed = await service.api.get(f"/payments/v2/process/{payment['id']}")
    assert processed.status_code == 200
    body = processed.json()
    assert body["state"] == "awaiting_customer"
    assert body["confirmed"] is False
    assert "unavailable" in body["reason"]


async def test_errors_are_problems_with_the_request_id(service: Service) -> None:
    missing = await service.api.get("/payments/v2/pay_0000", headers={"X-Request-ID": "abc-123"})
    assert missing.status_code == 404
    assert missing.headers["x-request-id"] == "abc-123"
    assert missing.json()["request_id"] == "abc-123"
    assert missing.json()["type"].endswith("/payment-not-found")

    hostile = await service.api.get("/payments/v2/pay_0000", headers={"X-Request-ID": "a b<c>"})
    assert hostile.headers["x-request-id"] != "a b<c>"
    assert hostile.headers["x-request-id"].startswith("req_")

    nowhere = await service.anonymous.get("/nowhere")
    assert (nowhere.status_code, nowhere.headers["content-type"]) == (404, PROBLEM)
    wrong_method = await service.api.delete("/payments/v2/stats")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == PROBLEM
    assert "GET" in wrong_method.headers["allow"]
    for path in ("/payments/v2/create", "/payments/v2/recurring"):
        # Not "there is no payment 'recurring'": the path exists, for POST.
        get = await service.api.get(path)
        assert (get.status_code, get.headers["allow"]) == (405, "POST"), path


async def test_a_405_lists_every_method_the_url_takes(service: Service) -> None:
    """RFC 9110: Allow lists the methods the resource supports. The return URL (PayTabs
    returns either way) and the console's sign-in take GET and POST from two routes each; the
    router's own 405 named only the first."""
    for method in ("PUT", "DELETE", "OPTIONS"):
        refused = await service.anonymous.request(method, "/payments/v2/return")
        assert refused.status_code == 405, method
        allowed = {m.strip() for m in refused.headers["allow"].split(",")}
        assert {"GET", "POST"} <= allowed, refused.headers["allow"]
        assert "GET" in refused.json()["detail"]
        assert "POST" in refused.json()["detail"]
    webhook = await service.anonymous.put("/payments/v2/webhook")
    assert (webhook.status_code, webhook.headers["allow"]) == (405, "POST")
    sign_in = await service.anonymous.delete("/console/login")
    assert (sign_in.status_code, sign_in.headers["allow"]) == (405, "GET, POST")


async def test_refund_of_an_unpaid_payment_is_409_saying_why(service: Service) -> None:
    payment = await service.create()
    response = await service.api.post(
        f"/payments/v2/{payment['id']}/refund",
        json={"amount": "1.00"},
        headers={"Idempotency-Key": new_key()},
    )
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "only completed or partially refunded" in detail
    assert ". Reload the payment" in detail  # two sentences, not one run-on
    other_currency = await service.api.post(
        f"/payments/v2/{payment['id']}/refund",
        json={"amount": "1.00", "currency": "AED"},
        headers={"Idempotency-Key": new_key()},
    )
    assert other_currency.status_code == 422
    assert "SAR" in other_currency.json()["detail"]


async def test_stats_count_states_and_total_money_as_strings(service: Service) -> None:
    paid = await service.create("10.50")
    await service.create("3.25")
    declined = await service.create("1.00")
    await service.pay(paid)
    await service.pay(declined, card="4000000000000010")
    await service.callbacks_done()

    response = await service.api.get("/payments/v2/stats", params={"window": "1h"})
    assert response.status_code == 200
    assert response.headers["x-cache"] == "miss"
    stats = response.json()
    assert stats["counts"]["completed"] == 1
    assert stats["counts"]["failed"] == 1
    assert stats["counts"]["awaiting_customer"] == 1
    assert stats["decided"] == 2
    assert stats["success_rate"] == 0.5
    assert stats["totals"]["SAR"] == {
        "payments": 3,
        "amount": "14.75",
        "captured": "10.50",
        "refunded": "0.00",
        "net": "10.50",
    }
    assert stats["gateway"]["calls"] >= 3
    assert stats["gateway"]["operations"]["create"]["state"] == "closed"

    again = await service.api.get("/payments/v2/stats", params={"window": "1h"})
    assert again.headers["x-cache"] == "hit"
    assert (await service.api.get("/payments/v2/stats", params={"window": "1y"})).status_code == 422


async def test_docs_and_openapi_are_served(service: Service) -> None:
    schema = await service.anonymous.get("/openapi.json")
    assert schema.status_code == 200
    assert "/payments/v2/create" in schema.json()["paths"]
    docs = await service.anonymous.get("/docs")
    assert docs.status_code == 200


async def test_customer_details_as_people_write_them_are_taken(service: Service) -> None:
    customer = {
        "phone": "(050) 123-4567",
        "ip": "2001:db8::7",
        "street": "King Fahd Rd\nTower 2",  # a line break is text
        "email": "layla@example.com",
    }
    response = await _create(service, BODY | {"customer": customer})
    assert response.status_code == 201, response.text


async def test_answers_about_payments_are_never_cached(any_service: Service) -> None:
    """A payment's answer holds its customer's details and metadata: no browser cache or shared
    proxy may keep it, found or not."""
    payment = await any_service.create()
    found = await any_service.api.get(f"/payments/v2/{payment['id']}")
    listed = await any_service.api.get("/payments/v2", params={"limit": 2})
    missing = await any_service.api.get("/payments/v2/pay_missing")
    for answer in (found, listed, missing):
        assert answer.headers["cache-control"] == "no-store", answer.request.url
