"""HTML of the hosted payment page. Every value from a request goes through ``escape``."""

from __future__ import annotations

from html import escape

from paytabs_simulator.money import format_amount
from paytabs_simulator.records import Transaction
from paytabs_simulator.returns import BrowserReturn

STYLE = """
body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;padding:2rem}
main{max-width:28rem;margin:auto;background:#fff;border-radius:8px;padding:1.5rem;
box-shadow:0 1px 4px #0002}
label{display:block;margin:.6rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}
.row{display:flex;gap:.5rem}.row>div{flex:1}.error{color:#b00020}.banner{color:#666;font-size:.8rem}
button{margin-top:1rem;padding:.5rem 1.2rem}.amount{font-size:1.4rem;font-weight:bold}
"""


def _document(title: str, body: str, *, lang: str = "en") -> str:
    direction = "rtl" if lang == "ar" else "ltr"
    return (
        f'<!DOCTYPE html><html lang="{escape(lang)}" dir="{direction}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>"
        f'<p class="banner">PayTabs simulator: test cards only</p>{body}</main></body></html>'
    )


def _summary(tx: Transaction) -> str:
    amount = format_amount(tx.cart_amount, tx.cart_currency)
    return (
        f'<p class="amount">{escape(amount)} {escape(tx.cart_currency)}</p>'
        f'<p class="description">{escape(tx.cart_description)}</p>'
    )


def payment_form(tx: Transaction, page_id: str, *, error: str | None = None) -> str:
    page = tx.page
    save_card = (
        '<label><input type="checkbox" name="save_card" value="1" style="width:auto"> '
        "Save this card</label>"
        if page is not None and page.show_save_card
        else ""
    )
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    action = f"/payment/page/{escape(page_id)}"
    body = (
        f"<h1>Pay</h1>{_summary(tx)}{problem}"
        f'<form method="post" action="{action}">'
        '<label for="card_number">Card number</label>'
        '<input id="card_number" name="card_number" inputmode="numeric" autocomplete="off"'
        " required>"
        '<div class="row"><div><label for="expiry_month">Month</label>'
        '<input id="expiry_month" name="expiry_month" inputmode="numeric" required></div>'
        '<div><label for="expiry_year">Year</label>'
        '<input id="expiry_year" name="expiry_year" inputmode="numeric" required></div>'
        '<div><label for="cvv">CVV</label>'
        '<input id="cvv" name="cvv" inputmode="numeric" autocomplete="off" required></div></div>'
        '<label for="cardholder_name">Name on card</label>'
        '<input id="cardholder_name" name="cardholder_name">'
        f"{save_card}"
        '<button type="submit" name="action" value="pay">Pay</button> '
        '<button type="submit" name="action" value="cancel" formnovalidate>Cancel</button>'
        "</form>"
    )
    return _document("Payment", body, lang=page.paypage_lang if page else "en")


def three_ds_challenge(tx: Transaction, page_id: str) -> str:
    body = (
        f"<h1>3-D Secure</h1>{_summary(tx)}"
        "<p>Your bank asks you to confirm this payment.</p>"
        f'<form method="post" action="/payment/page/{escape(page_id)}/3ds">'
        '<button type="submit">Complete authentication</button></form>'
    )
    return _document("Authentication", body, lang=tx.page.paypage_lang if tx.page else "en")


def result_page(tx: Transaction) -> str:
    result = tx.result
    status = result.response_status if result else ""
    message = result.response_message if result else ""
    body = (
        f"<h1>Payment result</h1>{_summary(tx)}"
        f'<p>Status: <strong class="status">{escape(status)}</strong> {escape(message)}</p>'
        f"<p>Reference: {escape(tx.tran_ref)}</p>"
    )
    return _document("Payment result", body)


def return_form(target: BrowserReturn) -> str:
    """Auto-submitting form that carries the browser back to the merchant's `return` URL."""
    inputs = "".join(
        f'<input type="hidden" name="{escape(key)}" value="{escape(value)}">'
        for key, value in target.fields.items()
    )
    body = (
        "<p>Returning to the merchant…</p>"
        f'<form id="return" method="post" action="{escape(target.url)}">{inputs}'
        '<noscript><button type="submit">Continue</button></noscript></form>'
        "<script>document.getElementById('return').submit()</script>"
    )
    return _document("Redirecting", body)


def unavailable_page(title: str, message: str) -> str:
    return _document(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>")
