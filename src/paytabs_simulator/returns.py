"""The browser's way back to the merchant after a payment: signed return fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from paytabs_simulator.records import JsonObject, Transaction
from paytabs_simulator.signing import http_build_query, sign_return


@dataclass(frozen=True)
class BrowserReturn:
    """A form POST to ``url`` with ``fields``, or a GET to ``url`` (query string included)."""

    method: Literal["POST", "GET"]
    url: str
    fields: dict[str, str]

    def as_json(self) -> JsonObject:
        return {"method": self.method, "url": self.url, "fields": self.fields}


def browser_return(tx: Transaction) -> BrowserReturn | None:
    """None when the request named no `return` URL: the page then shows the result itself."""
    page = tx.page
    if page is None or page.return_url is None or tx.result is None:
        return None
    result = tx.result
    email = (tx.customer_details or {}).get("email")
    fields = {
        # PayTabs sends exactly these, empty ones as "" (docs/paytabs.md §11).
        "acquirerMessage": "",
        "acquirerRRN": "",
        "cartId": tx.cart_id,
        "customerEmail": email if isinstance(email, str) else "",
        "respCode": result.response_code,
        "respMessage": result.response_message,
        "respStatus": result.response_status,
        "signature": "",
        "token": tx.token or "",
        "tranRef": tx.tran_ref,
    }
    if page.return_using_get:
        # The observed GET sample carries only these five (docs/paytabs.md §11).
        fields = {key: fields[key] for key in ("cartId", "respCode", "respStatus", "tranRef")}
        fields["signature"] = sign_return(fields, tx.profile.server_key)
        separator = "&" if "?" in page.return_url else "?"
        return BrowserReturn(
            "GET", f"{page.return_url}{separator}{http_build_query(fields)}", fields
        )
    fields["signature"] = sign_return(fields, tx.profile.server_key)
    return BrowserReturn("POST", page.return_url, fields)
