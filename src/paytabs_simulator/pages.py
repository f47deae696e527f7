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
.row{display:flex;gap:.5rem;align-items:flex-end}.row>div{flex:1}.error{color:#b00020}.banner{color:#666;font-size:.8rem}
button{margin-top:1rem;padding:.5rem 1.2rem}.amount{font-size:1.4rem;font-weight:bold}
.description,.customer{overflow-wrap:anywhere}
"""


# The hosted page's words in the languages of paypage_lang the simulator renders (others: en).
TEXT: dict[str, dict[str, str]] = {
    "en": {
        "banner": "PayTabs simulator: test cards only",
        "title": "Payment",
        "pay_heading": "Pay",
        "card_number": "Card number",
        "month": "Month",
        "year": "Year",
        "cvv": "CVV",
        "name": "Name on card",
        "save_card": "Save this card",
        "pay": "Pay",
        "cancel": "Cancel",
        "paying_as": "Paying as",
        "cvv_again": "Enter the CVV again.",
        "invalid_number": "The card number is not valid.",
        "invalid_expired": "The card has expired.",
        "invalid_cvv": "The security code (CVV) must be 3 or 4 digits.",
        "invalid_expiry": "The expiry date is not valid.",
        "three_ds_title": "Authentication",
        "three_ds_before": "",
        "three_ds_ask": "Your bank asks you to confirm this payment.",
        "three_ds_confirm": "Complete authentication",
        "redirecting": "Redirecting",
        "returning": "Returning to the merchant…",
        "continue": "Continue",
        "unknown_title": "Page not found",
        "unknown_text": "There is no payment page at this address.",
        "expired_title": "Page expired",
        "expired_text": "This payment page has expired. Please start again.",
        "used_title": "Page already used",
        "used_text": "This payment page has already been used.",
        "no_3ds_title": "Nothing to authenticate",
        "no_3ds_text": "This payment is not waiting for 3-D Secure.",
    },
    "ar": {
        "banner": "محاكي PayTabs: بطاقات اختبار فقط",
        "title": "الدفع",
        "pay_heading": "ادفع",
        "card_number": "رقم البطاقة",
        "month": "الشهر",
        "year": "السنة",
        "cvv": "رمز التحقق (CVV)",
        "name": "الاسم على البطاقة",
        "save_card": "احفظ هذه البطاقة",
        "pay": "ادفع",
        "cancel": "إلغاء",
        "paying_as": "الدفع باسم",
        "cvv_again": "أدخل رمز التحقق مرة أخرى.",
        "invalid_number": "رقم البطاقة غير صالح.",
        "invalid_expired": "انتهت صلاحية البطاقة.",
        "invalid_cvv": "يجب أن يتكون رمز التحقق (CVV) من 3 أو 4 أرقام.",
        "invalid_expiry": "تاريخ انتهاء الصلاحية غير صالح.",
        "three_ds_title": "المصادقة",
        "three_ds_before": "التحقق عبر ",
        "three_ds_ask": "يطلب منك مصرفك تأكيد هذه الدفعة.",
        "three_ds_confirm": "أكمل المصادقة",
        "redirecting": "إعادة التوجيه",
        "returning": "جارٍ الرجوع إلى التاجر…",
        "continue": "متابعة",
        "unknown_title": "الصفحة غير موجودة",
        "unknown_text": "لا توجد صفحة دفع على هذا العنوان.",
        "expired_title": "انتهت صلاحية الصفحة",
        "expired_text": "انتهت صلاحية صفحة الدفع هذه. يُرجى البدء من جديد.",
        "used_title": "استُخدمت الصفحة من قبل",
        "used_text": "استُخدمت صفحة الدفع هذه من قبل.",
        "no_3ds_title": "لا شيء للمصادقة",
        "no_3ds_text": "هذه الدفعة لا تنتظر التحقق عبر 3-D Secure.",
    },
}


def _words(lang: str) -> dict[str, str]:
    return TEXT.get(lang, TEXT["en"])


def _document(title: str, body: str, *, lang: str = "en") -> str:
    direction = "rtl" if lang == "ar" else "ltr"
    return (
        f'<!DOCTYPE html><html lang="{escape(lang)}" dir="{direction}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        # no favicon: without this link every page load asks for /favicon.ico (a 404)
        f'<link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>"
        f'<p class="banner">{escape(_words(lang)["banner"])}</p>{body}</main></body></html>'
    )


def _summary(tx: Transaction) -> str:
    amount = format_amount(tx.cart_amount, tx.cart_currency)
    return (
        f'<p class="amount">{escape(amount)} {escape(tx.cart_currency)}</p>'
        f'<p class="description">{escape(tx.cart_description)}</p>'
    )


def _customer(tx: Transaction) -> dict[str, str]:
    details = tx.customer_details or {}
    return {key: value for key, value in details.items() if isinstance(value, str) and value}


def _field(name: str, label: str, autocomplete: str, value: str = "", *, numeric: bool = True,
           required: bool = True, invalid: bool = False) -> str:  # fmt: skip
    """One input with the autofill hint browsers and password managers look for. Digits are
    written left to right in Arabic too (in a right-to-left field a card number's groups came
    out reversed); the field an error is about is marked, described by it and focused."""
    return (
        f'<label for="{name}">{escape(label)}</label>'
        f'<input id="{name}" name="{name}" autocomplete="{autocomplete}"'
        + (' inputmode="numeric" dir="ltr"' if numeric else "")
        + (f' value="{escape(value)}"' if value else "")
        + (" required" if required else "")
        + (' aria-invalid="true" aria-describedby="problem" autofocus' if invalid else "")
        + ">"
    )


#: The field each card error is about (InvalidCard reasons).
_ERROR_FIELDS = {
    "number": "card_number",
    "expired": "expiry_month",
    "expiry": "expiry_month",
    "cvv": "cvv",
}


def payment_form(
    tx: Transaction,
    page_id: str,
    *,
    error: str | None = None,
    values: dict[str, str] | None = None,
) -> str:
    """The card form. After an error (an ``InvalidCard`` reason, or a text) ``values`` (what
    the customer typed) fill it again, except the CVV, which is never written back into a
    page."""
    page = tx.page
    lang = page.paypage_lang if page else "en"
    words = _words(lang)
    typed = values or {}
    customer = _customer(tx)
    save_card = (
        '<label><input type="checkbox" name="save_card" value="1" style="width:auto"> '
        f"{escape(words['save_card'])}</label>"
        if page is not None and page.show_save_card
        else ""
    )
    problem = ""
    if error:
        again = f" {words['cvv_again']}" if typed else ""
        said = words.get(f"invalid_{error}", error)
        problem = f'<p id="problem" class="error" role="alert">{escape(said)}{escape(again)}</p>'
    who = " · ".join(customer[key] for key in ("name", "email") if key in customer)
    paying_as = (
        f'<p class="customer">{escape(words["paying_as"])}: {escape(who)}</p>' if who else ""
    )
    name = typed.get("cardholder_name") or customer.get("name", "")
    action = f"/payment/page/{escape(page_id)}"
    wrong = _ERROR_FIELDS.get(error or "")
    body = (
        f"<h1>{escape(words['pay_heading'])}</h1>{_summary(tx)}{paying_as}{problem}"
        f'<form method="post" action="{action}">'
        + _field(
            "card_number",
            words["card_number"],
            "cc-number",
            typed.get("card_number", ""),
            invalid=wrong == "card_number",
        )
        + '<div class="row"><div>'
        + _field(
            "expiry_month",
            words["month"],
            "cc-exp-month",
            typed.get("expiry_month", ""),
            invalid=wrong == "expiry_month",
        )
        + "</div><div>"
        + _field("expiry_year", words["year"], "cc-exp-year", typed.get("expiry_year", ""))
        + "</div><div>"
        + _field("cvv", words["cvv"], "cc-csc", invalid=wrong == "cvv")
        + "</div></div>"
        + _field("cardholder_name", words["name"], "cc-name", name, numeric=False, required=False)
        + f"{save_card}"
        f'<button type="submit" name="action" value="pay">{escape(words["pay"])}</button> '
        f'<button type="submit" name="action" value="cancel" formnovalidate>'
        f"{escape(words['cancel'])}</button>"
        "</form>"
    )
    return _document(words["title"], body, lang=lang)


def three_ds_challenge(tx: Transaction, page_id: str) -> str:
    lang = tx.page.paypage_lang if tx.page else "en"
    words = _words(lang)
    body = (
        # the Latin name isolated: in a right-to-left line "3-D Secure" came out "D Secure-3"
        f'<h1>{escape(words["three_ds_before"])}<bdi dir="ltr">3-D Secure</bdi></h1>'
        f"{_summary(tx)}<p>{escape(words['three_ds_ask'])}</p>"
        f'<form method="post" action="/payment/page/{escape(page_id)}/3ds">'
        f'<button type="submit">{escape(words["three_ds_confirm"])}</button></form>'
    )
    return _document(words["three_ds_title"], body, lang=lang)


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


def return_form(target: BrowserReturn, lang: str = "en") -> str:
    """Auto-submitting form that carries the browser back to the merchant's `return` URL."""
    words = _words(lang)
    inputs = "".join(
        f'<input type="hidden" name="{escape(key)}" value="{escape(value)}">'
        for key, value in target.fields.items()
    )
    body = (
        f"<p>{escape(words['returning'])}</p>"
        f'<form id="return" method="post" action="{escape(target.url)}">{inputs}'
        f'<noscript><button type="submit">{escape(words["continue"])}</button></noscript></form>'
        "<script>document.getElementById('return').submit()</script>"
    )
    return _document(words["redirecting"], body, lang=lang)


def unavailable_page(problem: str, lang: str = "en") -> str:
    """Why a page takes no payment (``problem``: unknown, expired, used, no_3ds)."""
    words = _words(lang)
    title = words[f"{problem}_title"]
    body = f"<h1>{escape(title)}</h1><p>{escape(words[f'{problem}_text'])}</p>"
    return _document(title, body, lang=lang)
