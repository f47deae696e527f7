"""The hosted payment page a customer's browser visits: card form, 3-D Secure step, return."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from paytabs_simulator.cards import InvalidCard, read_card
from paytabs_simulator.engine import Engine, PageUnavailable
from paytabs_simulator.pages import (
    payment_form,
    result_page,
    return_form,
    three_ds_challenge,
    unavailable_page,
)
from paytabs_simulator.records import Transaction
from paytabs_simulator.returns import browser_return

#: The status of each reason a page takes no payment (the words are in pages.TEXT).
UNAVAILABLE_STATUS = {"unknown": 404, "expired": 410, "used": 410, "no_3ds": 409}

#: A page that takes card numbers: nothing from elsewhere, no caching, no referrer. The inline
#: style and the return form's one-line script are the pages' own; the form posts to the
#: merchant's return URL, wherever it is.
_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
    "form-action *; base-uri 'none'"
)
_NONE = "'none'"


def html(content: str, tx: Transaction | None = None, status_code: int = 200) -> HTMLResponse:
    """A page of the hosted flow with a card page's headers. Framing is refused unless the
    page was created ``framed`` (PayTabs' iframe mode), as the merchant asked for it then."""
    framed = tx is not None and tx.page is not None and tx.page.options.get("framed") is True
    headers = {
        "Content-Security-Policy": f"{_POLICY}; frame-ancestors {'*' if framed else _NONE}",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
    }
    if not framed:
        headers["X-Frame-Options"] = "DENY"
    return HTMLResponse(content, status_code=status_code, headers=headers)


def unavailable(problem: PageUnavailable) -> HTMLResponse:
    page = unavailable_page(problem.problem, problem.lang)
    return html(page, status_code=UNAVAILABLE_STATUS[problem.problem])


def finished(tx: Transaction) -> Response:
    """Send the browser back to the merchant, or show the result when there is no `return`."""
    target = browser_return(tx)
    if target is None:
        return html(result_page(tx), tx)
    if target.method == "GET":
        return RedirectResponse(target.url, status_code=303)
    return html(return_form(target, tx.page.paypage_lang if tx.page else "en"), tx)


def hosted_page_routes(engine: Engine) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/payment/page/{page_id}")
    async def show(page_id: str) -> Response:
        try:
            tx = engine.open_page(page_id)
        except PageUnavailable as problem:
            return unavailable(problem)
        if tx.page is not None and tx.page.state == "3ds":
            return html(three_ds_challenge(tx, page_id), tx)
        return html(payment_form(tx, page_id), tx)

    def sent_again(page_id: str, problem: PageUnavailable) -> Response:
        # A form sent to a page that was just paid (a double click on Pay, a second tap on
        # the 3-D Secure step): the same way back to the merchant, not "already used", which
        # left the shopper on our error page after paying and maybe paying again.
        tx = engine.paid_page(page_id)
        return unavailable(problem) if tx is None else finished(tx)

    @router.post("/payment/page/{page_id}")
    async def submit(page_id: str, request: Request) -> Response:
        try:
            tx = engine.open_page(page_id)
        except PageUnavailable as problem:
            return sent_again(page_id, problem)
        async with request.form() as form:
            fields = {key: value for key, value in form.items() if isinstance(value, str)}
        if fields.get("action") == "cancel":
            engine.cancel_page(tx)
            return finished(tx)
        try:
            card = read_card(
                fields.get("card_number", ""),
                fields.get("expiry_month", ""),
                fields.get("expiry_year", ""),
                fields.get("cvv", ""),
                engine.now(),
            )
        except InvalidCard as problem:
            kept = {key: value for key, value in fields.items() if key != "cvv"}
            return html(payment_form(tx, page_id, error=problem.reason, values=kept), tx, 400)
        if engine.submit_card(tx, card, save_card=bool(fields.get("save_card"))):
            return finished(tx)
        return html(three_ds_challenge(tx, page_id), tx)

    @router.post("/payment/page/{page_id}/3ds")
    async def three_ds(page_id: str) -> Response:
        try:
            tx = engine.open_page(page_id)
            engine.complete_3ds(tx)
        except PageUnavailable as problem:
            return sent_again(page_id, problem)
        return finished(tx)

    return router
