"""The customer's browser coming back from PayTabs: verified, confirmed by query, redirected."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import update

from paytabs_guard.adapters.sql.tables import payments
from paytabs_guard.resilience.clock import ManualClock

from .api_support import Service, deliver, signed_return, transaction

pytestmark = pytest.mark.anyio


def _withhold_callbacks(service: Service) -> None:
    engine = service.sim.engine
    engine.set_faults(engine.faults.model_copy(update={"callback_withhold_rate": 1.0}))


async def _return(service: Service, fields: dict[str, str]) -> Any:
    return await service.anonymous.post("/payments/v2/return", data=fields)


async def test_the_return_confirms_by_query_and_redirects_to_the_merchant(service: Service) -> None:
    _withhold_callbacks(service)  # only the browser comes back: the query must decide
    payment = await service.create(return_url="https://shop.example/done?order=7#top")
    paid = await service.pay(payment)
    assert paid["return"]["method"] == "POST"

    response = await _return(service, paid["return"]["fields"])
    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert (target.scheme, target.netloc, target.path) == ("https", "shop.example", "/done")
    assert parse_qs(target.query) == {
        "order": ["7"],
        "payment_id": [payment["id"]],
        "state": ["completed"],
    }
    assert target.fragment == "top"
    assert "set-cookie" not in response.headers
    assert (await service.get(payment["id"]))["state"] == "completed"


async def test_the_redirect_carries_one_payment_id_and_state_and_an_ascii_host(
    service: Service,
) -> None:
    # The merchant's own payment_id and state would make two of each (which one does the
    # merchant's page read?); an internationalised host was sent percent-encoded.
    payment = await service.create(
        return_url="https://bücher.example/done?payment_id=evil&state=completed&order=7"
    )
    paid = await service.pay(payment)
    response = await _return(service, paid["return"]["fields"])
    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert target.netloc == "xn--bcher-kva.example"
    assert parse_qs(target.query) == {
        "order": ["7"],
        "payment_id": [payment["id"]],
        "state": ["completed"],
    }


async def test_a_stored_return_url_no_browser_can_follow_gets_the_result_page(
    service: Service,
) -> None:
    # A payment created before creates checked return_url as they do now: the customer has
    # paid and still gets an answer, the result page, instead of a 500.
    payment = await service.create(return_url="https://shop.example/done")
    async with service.container.engine.begin() as connection:
        await connection.execute(
            update(payments).where(payments.c.id == payment["id"]).values(return_url="http://[::1")
        )
    paid = await service.pay(payment)
    response = await _return(service, paid["return"]["fields"])
    assert response.status_code == 200, response.text
    assert "Payment received" in response.text


async def test_without_a_return_url_a_small_page_shows_the_confirmed_state(
    service: Service,
) -> None:
    payment = await service.create()
    paid = await service.pay(payment)
    response = await _return(service, paid["return"]["fields"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "Payment received" in response.text
    assert "script-src" not in response.headers["content-security-policy"]
    # No other site may frame it (default-src does not cover framing).
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


async def test_a_get_return_verifies_only_paytabs_fields(service: Service) -> None:
    payment = await service.create(return_url="https://shop.example/done")
    paid = await service.pay(payment)
    fields = {
        k: paid["return"]["fields"][k] for k in ("cartId", "respCode", "respStatus", "tranRef")
    }
    query = signed_return(fields) | {"utm_source": "mail", "ours": "ignored"}
    response = await service.anonymous.get("/payments/v2/return", params=query)
    assert response.status_code == 303
    assert "state=completed" in response.headers["location"]


@pytest.mark.parametrize("tamper", ["respStatus", "signature", "drop"])
async def test_a_bad_signature_is_a_400_page_and_changes_nothing(
    service: Service, tamper: str
) -> None:
    _withhold_callbacks(service)
    payment = await service.create()
    paid = await service.pay(payment)
    fields = dict(paid["return"]["fields"])
    if tamper == "respStatus":
        fields["respStatus"] = "D" if fields["respStatus"] == "A" else "A"
    elif tamper == "signature":
        fields["signature"] = "0" * 64
    else:
        del fields["signature"]
    response = await _return(service, fields)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert (await service.get(payment["id"]))["state"] == "awaiting_customer"


async def test_php_style_encoding_of_awkward_values_verifies(service: Service) -> None:
    payment = await service.create()
    fields = {
        "cartId": payment["cart_id"],
        "tranRef": payment["tran_ref"],
        "respStatus": "C",
        "respCode": "321",
        "respMessage": "Cancelled ~ by + the customer: تم الإلغاء",
        "customerEmail": "",
        "acquirerMessage": "",
    }
    response = await _return(service, signed_return(fields))
    # Verified (not 400); the state shown is PayTabs' by query, not the form's "C".
    assert response.status_code == 200
    assert "Confirming your payment" in response.text  # still undecided at PayTabs
    assert "Payment cancelled" not in response.text


async def test_an_unknown_payment_and_a_wrong_content_type_are_refused(service: Service) -> None:
    fields = signed_return({"cartId": "nobody", "tranRef": "TST0", "respStatus": "A"})
    assert (await _return(service, fields)).status_code == 404
    as_json = await service.anonymous.post("/payments/v2/return", json=fields)
    assert as_json.status_code == 415


async def test_callback_and_return_racing_end_in_one_state_and_one_event(
    any_service: Service,
) -> None:
    service = any_service  # PostgreSQL too: there the two race without a lock first
    _withhold_callbacks(service)
    payments = [await service.create(f"{n + 10}.00") for n in range(5)]
    paid = [await service.pay(p) for p in payments]

    async def both(payment: dict[str, Any], answer: dict[str, Any]) -> None:
        callback = transaction(payment, tran_ref=answer["transaction"]["tran_ref"])
        results = await asyncio.gather(
            deliver(service.anonymous, callback), _return(service, answer["return"]["fields"])
        )
        assert [r.status_code for r in results] == [200, 200]

    await asyncio.gather(*(both(p, a) for p, a in zip(payments, paid, strict=True)))
    for payment in payments:
        assert (await service.get(payment["id"]))["state"] == "completed"
        assert await service.outbox_events(payment["id"], "payment.completed") == 1


async def test_a_replayed_return_for_an_undecided_payment_asks_paytabs_once(
    service: Service,
) -> None:
    """The return needs no credentials and its signed form never expires: replayed in a loop
    for a payment that stays pending, each replay was a PayTabs query with the merchant's
    server key. Concurrent replays share one query; later ones within the interval are
    answered from the stored state, which holds PayTabs' answer."""
    _withhold_callbacks(service)
    # The interval (2 s) on a clock that stands still: forty returns and a /process on a
    # loaded machine can take longer than 2 s, and then one more query was due, rightly.
    service.app.state.runtime.sync_gate.clock = ManualClock()
    payment = await service.create()
    paid = await service.pay(payment, card="4000000000000044")  # stays pending
    stats = service.sim.engine.stats
    before = stats["requests /payment/query"]
    answers = await asyncio.gather(*(_return(service, paid["return"]["fields"]) for _ in range(20)))
    answers += [await _return(service, paid["return"]["fields"]) for _ in range(20)]
    assert {a.status_code for a in answers} == {200}
    assert stats["requests /payment/query"] - before == 1
    assert (await service.get(payment["id"]))["state"] == "pending"
    # The merchant's own /process shares the same rule: the answer is fresh enough.
    process = await service.api.get(f"/payments/v2/process/{payment['id']}")
    assert process.json()["confirmed"] is True
    assert stats["requests /payment/query"] - before == 1
