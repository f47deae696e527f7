"""The page a shopper sees after the PayTabs page when the payment has no ``return_url``.

Mobile first (viewport meta, one narrow column), English or Arabic (right to left) from
``Accept-Language``, with the amount, the order and a reference, and no external asset: the
styles are inline and the Content-Security-Policy allows nothing else. Every interpolated value
is escaped (``html_text``), and the values shown (amount, the merchant's description, the
reference) are each isolated in ``<bdi>`` with bidirectional controls shown, never obeyed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Final

from starlette.responses import HTMLResponse

from paytabs_guard.domain import Payment, PaymentState

from .html_text import isolated

SECURITY_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    # frame-ancestors: default-src does not cover framing, and another site framing the
    # result page could dress it up as its own (clickjacking).
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Language": "en",
}
_STYLE: Final = (
    "body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',Tahoma,sans-serif;"
    "background:#f4f5f7;color:#1d2330;line-height:1.5}"
    "main{max-width:30rem;margin:0 auto;padding:1.5rem 1rem}"
    ".card{background:#fff;border-radius:12px;padding:1.25rem;box-shadow:0 1px 4px #0002}"
    "h1{font-size:1.4rem;margin:0 0 .5rem}dl{margin:1rem 0 0}dt{color:#5b6478;font-size:.85rem}"
    "dd{margin:0 0 .6rem;font-size:1.05rem;word-break:break-all}"
    ".hint{color:#5b6478;font-size:.9rem}"
    ".ok h1{color:#0a7a3b}.bad h1{color:#b00020}"
)

TEXT: Final[dict[str, dict[str, str]]] = {
    "en": {
        "title": "Payment",
        "completed": "Payment received",
        "authorized": "Payment authorised",
        "failed": "Payment not completed",
        "cancelled": "Payment cancelled",
        "expired": "Payment page expired",
        "pending": "Confirming your payment",
        "msg_completed": "Thank you! Your payment was received.",
        "msg_authorized": "Thank you! Your payment was authorised.",
        "msg_failed": "The payment did not go through. No money was taken.",
        "msg_expired_card": "Your card has expired. No money was taken; try another card.",
        "msg_cancelled": "The payment was cancelled. No money was taken.",
        "msg_expired": "The payment page expired before it was paid. No money was taken.",
        "msg_pending": "We are confirming your payment with the bank. You will get a "
        "confirmation shortly; please do not pay again.",
        "amount": "Amount",
        "order": "Order",
        "reference": "Reference",
        "close": "You can close this page and go back to the shop.",
        "nothing": "There is no payment result to show here. If you paid, the shop will "
        "confirm it to you.",
        "unknown": "We do not know this payment. If you paid, the shop will confirm it to you.",
        "unreadable": "The payment result could not be read. If you paid, the shop will "
        "confirm it to you.",
        "msg_other": "This payment is already settled; the shop has its details.",
    },
    "ar": {
        "title": "الدفع",
        "completed": "تم استلام الدفعة",
        "authorized": "تم تفويض الدفعة",
        "failed": "لم تكتمل عملية الدفع",
        "cancelled": "تم إلغاء الدفع",
        "expired": "انتهت صلاحية صفحة الدفع",
        "pending": "جارٍ تأكيد دفعتك",
        "msg_completed": "شكرًا لك! تم استلام دفعتك.",
        "msg_authorized": "شكرًا لك! تم تفويض دفعتك.",
        "msg_failed": "لم تتم عملية الدفع. لم يُخصم أي مبلغ.",
        "msg_expired_card": "انتهت صلاحية بطاقتك. لم يُخصم أي مبلغ؛ جرّب بطاقة أخرى.",
        "msg_cancelled": "تم إلغاء الدفع. لم يُخصم أي مبلغ.",
        "msg_expired": "انتهت صلاحية صفحة الدفع قبل إتمام الدفع. لم يُخصم أي مبلغ.",
        "msg_pending": "نتحقق من دفعتك مع البنك. سيصلك تأكيد قريبًا؛ يرجى عدم الدفع مرة أخرى.",
        "amount": "المبلغ",
        "order": "الطلب",
        "reference": "المرجع",
        "close": "يمكنك إغلاق هذه الصفحة والعودة إلى المتجر.",
        "nothing": "لا توجد نتيجة دفع لعرضها هنا. إذا كنت قد دفعت، فسيؤكد لك المتجر ذلك.",
        "unknown": "لا نعرف هذه الدفعة. إذا كنت قد دفعت، فسيؤكد لك المتجر ذلك.",
        "unreadable": "تعذّرت قراءة نتيجة الدفع. إذا كنت قد دفعت، فسيؤكد لك المتجر ذلك.",
        "msg_other": "تمت تسوية هذه الدفعة؛ لدى المتجر تفاصيلها.",
    },
}
_TAG: Final = re.compile(r"\s*([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]+))?")


def language(accept_language: str | None) -> str:
    """``ar`` or ``en``: the listed language the shopper prefers most (``en`` otherwise)."""
    best, best_q = "en", -1.0
    for position, item in enumerate((accept_language or "").split(",")[:20]):
        match = _TAG.fullmatch(item)
        if match is None:
            continue
        code = match.group(1).lower()
        try:
            weight = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            continue
        # Earlier entries win ties, as browsers list them in order of preference.
        if code in TEXT and weight > 0 and weight - position * 1e-6 > best_q:
            best, best_q = code, weight - position * 1e-6
    return best


def render(lang: str, title: str, message: str, *, details: Sequence[tuple[str, str]] = (),
           status: int = 200, tone: str = "") -> HTMLResponse:  # fmt: skip
    words = TEXT[lang]
    rows = "".join(
        f"<dt>{html.escape(words[label])}</dt><dd>{isolated(value)}</dd>"
        for label, value in details
    )
    body = (
        f"<!doctype html><html lang='{lang}' dir='{'rtl' if lang == 'ar' else 'ltr'}'><head>"
        "<meta charset='utf-8'><meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body><main>"
        f"<div class='card {tone}'><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
        + (f"<dl>{rows}</dl>" if rows else "")
        + f"</div><p class='hint'>{html.escape(words['close'])}</p></main></body></html>"
    )
    headers = SECURITY_HEADERS | {"Content-Language": lang}
    return HTMLResponse(body, status_code=status, headers=headers)


def problem_page(lang: str, reason: str, status: int) -> HTMLResponse:
    """A return that shows no result (``reason``: nothing, unknown or unreadable)."""
    words = TEXT[lang]
    return render(lang, words["title"], words[reason], status=status, tone="bad")


def result_page(lang: str, payment: Payment) -> HTMLResponse:
    """The payment as PayTabs confirmed it, in the shopper's language."""
    words = TEXT[lang]
    state = payment.state
    key = {
        PaymentState.COMPLETED: "completed",
        PaymentState.AUTHORIZED: "authorized",
        PaymentState.FAILED: "failed",
        PaymentState.CANCELLED: "cancelled",
        PaymentState.EXPIRED: "expired",
    }.get(state, "other" if state.is_final else "pending")
    message = words[f"msg_{key}"]
    error = payment.last_payment_error
    if error is not None and error.decline_category == "expired_card":
        # Code 54 is the card's expiry at the issuer (a decline), not the page's expiry.
        key, message = "failed", words["msg_expired_card"]
    details = [
        ("amount", f"{payment.amount.format()} {payment.amount.currency}"),
        ("order", payment.description),
        ("reference", payment.id),
    ]
    tone = {"completed": "ok", "authorized": "ok", "pending": "", "other": ""}.get(key, "bad")
    title = words["title"] if key == "other" else words[key]
    return render(lang, title, message, details=details, tone=tone)
