"""A PayTabs transaction the domain cannot use is ``UnusableTransaction`` wherever it arrives:
a callback turns it into a 400, a query answer into GatewayOutcomeUnknown; never a bare
ValueError (a 500, or a crashed reconciliation)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from paytabs_guard.adapters.paytabs.transformers import (
    PayTabsTransaction,
    UnusableTransaction,
    to_gateway_result,
)
from paytabs_guard.bootstrap import build_gateway
from paytabs_guard.domain import ResultSource
from paytabs_guard.service.gateway import GatewayOutcomeUnknown
from paytabs_guard.settings import load_settings

pytestmark = pytest.mark.anyio

BLANKS = ["", " ", "\t", " \n "]


def _transaction(**changes: Any) -> dict[str, Any]:
    return {
        "tran_ref": "TST2633824054353",
        "profile_id": 987654,
        "cart_id": "cart-1",
        "cart_currency": "SAR",
        "cart_amount": "12.50",
        "tran_currency": "SAR",
        "tran_total": "12.50",
        "tran_type": "Sale",
        "payment_result": {"response_status": "A", "response_code": "G1"},
    } | changes


def test_a_usable_transaction_becomes_a_result() -> None:
    result = to_gateway_result(
        PayTabsTransaction.model_validate(_transaction()), ResultSource.CALLBACK
    )
    assert result.tran_ref == "TST2633824054353"
    assert result.amount.format() == "12.50"


@pytest.mark.parametrize("blank", BLANKS)
def test_a_blank_tran_ref_is_unusable(blank: str) -> None:
    transaction = PayTabsTransaction.model_validate(_transaction(tran_ref=blank))
    with pytest.raises(UnusableTransaction, match="tran_ref"):
        to_gateway_result(transaction, ResultSource.CALLBACK)


@pytest.mark.parametrize("blank", BLANKS)
async def test_a_query_answer_with_a_blank_tran_ref_is_an_unknown_outcome(blank: str) -> None:
    answer = [_transaction(tran_ref=blank)]
    settings = load_settings(
        {
            "PAYTABS_PROFILE_ID": "987654",
            "PAYTABS_SERVER_KEY": "S-KEY",
            "PAYTABS_BASE_URL": "https://secure.paytabs.com",
        }
    )
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json=answer))
    parts = build_gateway(settings, transport=transport)
    try:
        # The same answer as any other unusable one: reconciliation and the return's query
        # treat it as "PayTabs' answer could not be read", not as an unexpected crash.
        with pytest.raises(GatewayOutcomeUnknown, match="unusable answer from PayTabs"):
            await parts.gateway.transactions("cart-1")
    finally:
        await parts.aclose()
