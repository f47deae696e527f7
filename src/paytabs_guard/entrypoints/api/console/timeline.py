"""One payment on one page: what it is, then everything that happened to it in time order,
then the same facts grouped (gateway transactions, what PayTabs told us and how it was judged,
refunds, events and their deliveries per sink).

Everything shown is what the service stores: the payment's history (each state change with
its trigger, source and reason), its gateway transactions (latest status and PayTabs'
response per transaction), results that contradicted it, and the outbox events with their
deliveries. What is not stored per payment is said on the page rather than guessed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from starlette.responses import HTMLResponse

from paytabs_guard.domain import Payment
from paytabs_guard.domain.gateway_results import ResultSource, TranType
from paytabs_guard.service.events import EventWithDeliveries

from .layout import e, ltr, moment, money, page, pill, ref, table, text, with_query
from .pages import Frame, header
from .words import WORDS

_RECEIVED = frozenset({ResultSource.CALLBACK, ResultSource.BROWSER_RETURN, ResultSource.QUERY,
                       ResultSource.RECONCILIATION})  # fmt: skip


def _section(title: str, inner: str, *, note: str = "") -> str:
    remark = f"<p class='note'>{e(note)}</p>" if note else ""
    return f"<h2>{e(title)}</h2><div class='card'>{inner}{remark}</div>"


def stamp(payment: Payment, events: Sequence[EventWithDeliveries]) -> str:
    """Changes whenever the page would show something new (for the live update)."""
    parts = [str(payment.version), payment.state.value]
    for item in events:
        parts += [item.event.id, *(f"{d.sink}:{d.status}:{d.attempts}" for d in item.deliveries)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _summary(lang: str, payment: Payment) -> str:
    words = WORDS[lang]
    rows = [
        ("id", ref(payment.id)),
        (words["state"], pill(payment.state.value, "payment_state")),
        (
            words["amount"],
            ltr(f"{money(payment.amount)} ({e(payment.tran_type.value)})"),
        ),
        (words["captured"], ltr(e(payment.captured.format()))),
        (words["refunded"], ltr(e(payment.refunded.format()))),
        (words["description"], text(payment.description)),
        (words["cart_id"], ref(payment.cart_id)),
        (words["tran_ref"], ref(payment.tran_ref or "-")),
        (words["created"], moment(payment.created_at)),
        (words["updated"], moment(payment.updated_at)),
    ]
    if payment.saved_card_id is not None:
        # The card this payment saves (save_card) or charges (a recurring charge): the id
        # the merchant API names it by; the token itself is never shown.
        rows.append((words["saved_card"], ref(payment.saved_card_id)))
    if payment.abandoned_cart_ids:
        cart_ids = ", ".join(ref(c) for c in payment.abandoned_cart_ids)
        rows.append((words["abandoned"], cart_ids))
    if payment.metadata:
        pairs = "<br>".join(f"{text(k)} = {text(v)}" for k, v in sorted(payment.metadata.items()))
        rows.append((words["metadata"], pairs))
    if payment.hold is not None:
        hold = payment.hold
        rows.append((words["hold"], f"{e(hold.kind.value)} {ltr(e(hold.amount.format()))} "
                                    f"({moment(hold.started_at)})"))  # fmt: skip
    cells = "".join(f"<dt>{e(label)}</dt><dd>{value}</dd>" for label, value in rows)
    return f"<div class='card'><dl>{cells}</dl></div>"


def _entries(lang: str, payment: Payment, events: Sequence[EventWithDeliveries]) -> str:
    """Every dated fact, oldest first, as list items."""
    words = WORDS[lang]
    items: list[tuple[datetime, float, str]] = []
    for order, step in enumerate(payment.history):
        # "from → to" in English, "from ← to" in Arabic: the arrow follows the reading order.
        moved = f"{pill(step.from_state.value)} {e(words['onward'])} " if step.from_state else ""
        gateway_ref = f" {ref(step.gateway_ref)}" if step.gateway_ref else ""
        items.append((step.at, order, (
            f"<strong>{e(words['transition'])}</strong> {moved}{pill(step.to_state.value)} "
            f"· {e(step.trigger.value)} · {e(step.source.value)}{gateway_ref}<br>"
            f"{text(step.reason)}"
        )))  # fmt: skip
    # A gateway transaction goes next to the state change it caused: PayTabs' transaction
    # time has whole seconds only, so by time alone it would come before its own request.
    placed = {
        step.gateway_ref: (step.at, order + 0.5) for order, step in enumerate(payment.history)
    }
    for record in payment.transactions:
        status = record.status.value if record.status else "-"
        at, rank = placed.get(record.tran_ref, (record.at, 10_000.0))
        items.append((at, rank, (
            f"<strong>{e(words['gateway_call'])}</strong> {e(record.tran_type.value)} "
            f"{ref(record.tran_ref)} {e(status)} ({e(record.signal.value)}) "
            f"{money(record.amount)}"
            + (f" · {text(record.response_code)} {text(record.response_message)}"
               if record.response_code or record.response_message else "")
        )))  # fmt: skip
    for note in payment.conflicts:
        reported = note.reported_status.value if note.reported_status else "-"
        items.append((note.at, 20_000, (
            f"<strong>{e(words['conflict'])}</strong> {pill('conflict')} {e(note.source.value)} "
            f"{ref(note.tran_ref)} {e(reported)}<br>{text(note.reason)}"
        )))  # fmt: skip
    for item in events:
        sinks = ", ".join(f"{e(d.sink)} {pill(d.status)}" for d in item.deliveries)
        items.append((item.event.created_at, 30_000, (
            f"<strong>{e(words['event'])}</strong> {e(item.event.type)} "
            f"· {sinks or e(words['not_handed'])}"
        )))  # fmt: skip
    items.sort(key=lambda entry: (entry[0], entry[1]))
    body = "".join(
        f"<li><div class='at'><time datetime='{e(at.isoformat())}'>{moment(at)}</time></div>"
        f"{entry}</li>"
        for at, _, entry in items
    )
    return (
        f"<h2>{e(words['timeline'])}</h2><div class='card'><ol class='timeline'>{body}</ol></div>"
    )


def _gateway(lang: str, payment: Payment) -> str:
    words = WORDS[lang]
    rows = [
        (
            ref(r.tran_ref),
            e(r.tran_type.value),
            pill(r.signal.value) + (f" {e(r.status.value)}" if r.status else ""),
            money(r.amount),
            "" if r.charged is None else money(r.charged),
            f"{text(r.response_code)} {text(r.response_message)}",
            moment(r.at),
        )
        for r in payment.transactions
    ]
    headings = (words["tran_ref"], words["type"], words["status"], words["amount"],
                words["charged"], words["response"], words["at"])  # fmt: skip
    return _section(words["gateway"], table(headings, rows), note=words["latency_note"])


def _received(lang: str, payment: Payment) -> str:
    words = WORDS[lang]
    rows = [
        (moment(step.at), e(step.source.value), ref(step.gateway_ref or ""),
         f"{e(words['applied'])}: {pill(step.to_state.value)} · {text(step.reason)}")
        for step in payment.history
        if step.source in _RECEIVED
    ] + [
        (moment(note.at), e(note.source.value), ref(note.tran_ref),
         f"{pill('conflict')} {e(words['conflicted'])} · {text(note.reason)}")
        for note in payment.conflicts
    ]  # fmt: skip
    rows.sort(key=lambda row: row[0])
    headings = (words["at"], words["source"], words["tran_ref"], words["judged"])
    listing = table(headings, rows) if rows else f"<p>{e(words['nothing_received'])}</p>"
    return _section(words["received"], listing, note=words["received_note"])


def _refunds(lang: str, payment: Payment) -> str:
    words = WORDS[lang]
    rows = [
        (ref(r.tran_ref), pill(r.signal.value),
         money(r.amount),
         f"{text(r.response_code)} {text(r.response_message)}", moment(r.at))
        for r in payment.transactions
        if r.tran_type is TranType.REFUND
    ]  # fmt: skip
    headings = (words["tran_ref"], words["status"], words["amount"], words["response"],
                words["at"])  # fmt: skip
    listing = table(headings, rows) if rows else f"<p>{e(words['no_refunds'])}</p>"
    total = f"<p>{e(words['refunded'])}: {money(payment.refunded)}</p>"
    return _section(words["refunds"], listing + total)


def _events(lang: str, events: Sequence[EventWithDeliveries]) -> str:
    words = WORDS[lang]
    if not events:
        return _section(words["events"], f"<p>{e(words['no_events'])}</p>")
    blocks = []
    for item in events:
        rows = [
            (e(d.sink), pill(d.status), str(d.attempts), text(d.last_error or ""),
             moment(d.delivered_at or d.dead_at or d.next_attempt_at))
            for d in item.deliveries
        ]  # fmt: skip
        headings = (words["sink"], words["status"], words["attempts"], words["last_error"],
                    words["at"])  # fmt: skip
        deliveries = table(headings, rows) if rows else f"<p>{e(words['not_handed'])}</p>"
        blocks.append(
            f"<h3>{e(item.event.type)} <code class='wide' dir='ltr'>{e(item.event.id)}</code> "
            f"<small>{moment(item.event.created_at)}</small></h3>{deliveries}"
        )
    return _section(words["events"], "".join(blocks))


def payment_page(
    frame: Frame, payment: Payment, events: Sequence[EventWithDeliveries]
) -> HTMLResponse:
    words = WORDS[frame.lang]
    content = (
        _summary(frame.lang, payment)
        + _entries(frame.lang, payment, events)
        + _gateway(frame.lang, payment)
        + _received(frame.lang, payment)
        + _refunds(frame.lang, payment)
        + _events(frame.lang, events)
    )
    live = with_query("/console/live.json", {"view": "payment", "id": payment.id})
    return page(frame.lang, f"{words['payment']} {payment.id}", content, header=header(frame),
                live=live, stamp=stamp(payment, events))  # fmt: skip


def not_found(frame: Frame, payment_id: str) -> HTMLResponse:
    words = WORDS[frame.lang]
    content = (
        f"<div class='card'><p>{e(words['not_found'])}</p><p>{ref(payment_id)}</p>"
        f"<p><a href='/console'>{e(words['payments'])}</a></p></div>"
    )
    return page(frame.lang, words["payment"], content, header=header(frame), status=404)
