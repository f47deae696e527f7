"""A signed PayTabs callback that carries a NUL character, on both databases.

PostgreSQL's text cannot hold U+0000. A NUL in PayTabs' free text (the response message) made
the callback fail to store on every delivery, a 503 that PayTabs retried until it gave up. The
text is now stored without it. A NUL in a reference (tran_ref, cart_id) matches no payment of
ours, so such a body is refused as unreadable, a 400, and not retried.
"""

from __future__ import annotations

import pytest

from .api_support import Service, deliver, transaction

pytestmark = pytest.mark.anyio


async def test_a_nul_in_paytabs_free_text_is_dropped_and_the_result_applied(
    any_service: Service,
) -> None:
    payment = await any_service.create("7.00")
    body = transaction(payment, "D")
    body["payment_result"]["response_message"] = "Insufficient\x00 funds"
    body["payment_info"]["card_scheme"] = "Vi\x00sa"
    answer = await deliver(any_service.anonymous, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "processed"
    stored = await any_service.get(payment["id"])
    assert stored["state"] == "failed"
    assert "Insufficient funds" in str(stored["last_payment_error"])
    assert "\x00" not in str(stored)


async def test_a_nul_in_a_reference_is_refused_as_unreadable(any_service: Service) -> None:
    payment = await any_service.create("7.00")
    for field in ("tran_ref", "cart_id"):
        body = transaction(payment)
        body[field] = str(body[field]) + "\x00"
        answer = await deliver(any_service.anonymous, body)
        assert answer.status_code == 400, (field, answer.text)
        assert answer.json()["type"].endswith("/invalid-payload")
    assert (await any_service.get(payment["id"]))["state"] == "awaiting_customer"
