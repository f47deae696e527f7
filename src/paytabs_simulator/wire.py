"""PayTabs JSON on the wire: key order, amount strings, compact encoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from paytabs_simulator.money import format_amount
from paytabs_simulator.records import JsonObject, Transaction


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON, the way PayTabs sends IPN bodies (no spaces, no ``\\u`` escapes)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def iso_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_object(code: int, message: str, trace: str) -> JsonObject:
    return {"code": code, "message": message, "trace": trace}


def _put_present(target: JsonObject, source: object, *names: str) -> None:
    """Copy the attributes ``names`` of ``source`` into ``target``, in order, leaving out the
    ones that are None (PayTabs leaves absent fields out rather than sending null)."""
    for name in names:
        value = getattr(source, name)
        if value is not None:
            target[name] = value


def page_created(tx: Transaction, redirect_url: str, trace: str) -> JsonObject:
    """The `/payment/request` answer for a new hosted page (docs/paytabs.md §7.1, key order)."""
    return {
        "tran_ref": tx.tran_ref,
        "tran_type": tx.tran_type,
        "cart_id": tx.cart_id,
        "cart_description": tx.cart_description,
        "cart_currency": tx.cart_currency,
        "cart_amount": format_amount(tx.cart_amount, tx.cart_currency),
        "tran_currency": "",
        "tran_total": "0",
        # Simulator choice: "none" for a missing callback too, as PayTabs does for `return`.
        "callback": tx.callback or "none",
        "return": (tx.page.return_url if tx.page else None) or "none",
        "redirect_url": redirect_url,
        "serviceId": 2,
        "profileId": tx.profile.profile_id,
        "merchantId": tx.profile.merchant_id,
        "trace": trace,
    }


def transaction_object(
    tx: Transaction, *, trace: str | None = None, ipn_trace: str | None = None
) -> JsonObject:
    """The transaction object of docs/paytabs.md §8, keys in PayTabs' order.

    A hosted page that has not been paid has no ``payment_result`` (simulator choice), so a
    client can tell "page exists, not paid" from a result.
    """
    paid = tx.result is not None
    amount = format_amount(tx.cart_amount, tx.cart_currency)
    body: JsonObject = {"tran_ref": tx.tran_ref}
    if tx.previous_tran_ref is not None:
        body["previous_tran_ref"] = tx.previous_tran_ref
    body |= {
        "merchant_id": tx.profile.merchant_id,
        "profile_id": tx.profile.profile_id,
        "cart_id": tx.cart_id,
        "cart_description": tx.cart_description,
        "cart_currency": tx.cart_currency,
        "cart_amount": amount,
        "tran_currency": tx.cart_currency if paid else "",
        "tran_total": amount if paid else "0",
        "tran_type": tx.tran_type,
        "tran_class": tx.tran_class,
    }
    _put_present(body, tx, "customer_ref", "customer_details", "shipping_details")
    if tx.result is not None:
        result = tx.result
        payment_result: JsonObject = {
            "response_status": result.response_status,
            "response_code": result.response_code,
            "response_message": result.response_message,
        }
        _put_present(payment_result, result, "acquirer_ref", "cvv_result", "avs_result")
        payment_result["transaction_time"] = iso_time(result.transaction_time)
        body["payment_result"] = payment_result
    if tx.card is not None and paid:
        body["payment_info"] = {
            "payment_method": tx.card.payment_method,
            "card_type": tx.card.card_type,
            "card_scheme": tx.card.card_scheme,
            "payment_description": tx.card.payment_description,
            "expiryMonth": tx.card.expiry_month,
            "expiryYear": tx.card.expiry_year,
        }
    _put_present(body, tx, "token", "user_defined")
    if ipn_trace is not None:
        body["ipn_trace"] = ipn_trace
    if trace is not None:
        body["trace"] = trace
    return body
