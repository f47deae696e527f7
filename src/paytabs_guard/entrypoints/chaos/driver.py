"""The merchants and their customers: orders arrive on a seeded schedule and go end to end.

One order is what a shop's checkout does for one customer:

1. **create** ``POST /payments/v2/create`` with an ``Idempotency-Key``. On 503/409/429 (and on a
   5xx or a connection failure) it waits ``Retry-After`` (1 s when absent) and sends the same
   request with the same key again, until the order's budget is spent. On 202 (PayTabs' answer
   was lost) it asks ``GET /payments/v2/process/{id}`` until the payment has a page (every
   second, or sooner when the answer's ``retry_after_ms`` says when PayTabs can be asked
   again; with ``Prefer: wait`` in the wait configuration, as on create); a payment
   that ends without one (failed: nothing at PayTabs, or a page whose URL was lost) is replaced
   by a new payment under a new key, still within the budget.
2. **pay** the hosted page at the simulator (``/_sim/pages/{id}/pay``, the success card).
3. **completed**: the signed callback reaches the service, which completes the payment and
   emits ``payment.completed``; the order waits for that event (the benchmark's subscriber
   passes it on, see merchants.py), and at the end of its wait reads the payment once
   (``GET /payments/v2/{id}``).
4. **renewal** (one order in ``RECURRING_EVERY``): that order's create asked to save the card,
   and once it completed the merchant charges the saved card again with
   ``POST /payments/v2/recurring`` (no page), retried with one key like a create. The renewal's
   payment is not one of the order's ``payment_ids`` (the order's two charges are legitimate);
   the duplicate count still covers it per cart and per payment.

Arrivals are open-loop (a Poisson process from the seed): the same orders arrive at the same
times whatever the service does, so configurations are compared on the same demand. At most
``max_in_flight`` orders run at once; the rest wait for a slot (their wait is in their time).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from .simulator import Simulator

VISA: Final = "4111111111111111"
CURRENCY: Final = "SAR"
COMPLETED_STATES: Final = frozenset({"completed", "partially_refunded", "refunded"})
DEFAULT_RETRY_AFTER: Final = 1.0
RETRY_AFTER_MS_FIELD: Final = "retry_after_ms"
"""The precise wait in a 503 problem+json body (Retry-After is whole seconds)."""
CONFIRM_INTERVAL: Final = 1.0
PAY_ATTEMPTS: Final = 3
RECURRING_EVERY: Final = 10
"""One order in this many saves its card and is charged again (a renewal) once completed."""
TRANSPORT_ERROR: Final = 0
"""``CreateCall.status`` when no HTTP answer came (connection failure or client timeout)."""


@dataclass(slots=True)
class CreateCall:
    """One ``POST /payments/v2/create`` as the merchant saw it (times since the run started)."""

    order: int
    start: float
    end: float
    status: int
    retry_after: float | None = None

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(slots=True)
class Order:
    """One customer's checkout."""

    index: int
    arrival: float
    amount: str
    outcome: str = "pending"
    started: float | None = None
    page_at: float | None = None
    paid_at: float | None = None
    completed_at: float | None = None
    completed_by_event: bool = False
    first_try: bool = False
    keys: int = 0
    creates: int = 0
    confirms: int = 0
    payment_ids: list[str] = field(default_factory=list)
    renewal: str | None = None  # the outcome of its recurring charge, for orders that have one
    renewal_ids: list[str] = field(default_factory=list)

    @property
    def saves_card(self) -> bool:
        return self.index % RECURRING_EVERY == RECURRING_EVERY - 1


class CompletionWaiters:
    """``payment.completed`` events by payment id, for orders waiting on them."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def waiter(self, payment_id: str) -> asyncio.Event:
        return self._events.setdefault(payment_id, asyncio.Event())

    def completed(self, payment_id: str) -> None:
        self.waiter(payment_id).set()


def arrivals(seed: int, rate: float, duration: float) -> list[tuple[float, str]]:
    """(seconds since start, amount) of every order: a Poisson process of ``rate`` per second."""
    rng = random.Random(seed)
    schedule: list[tuple[float, str]] = []
    at = rng.expovariate(rate)
    while at < duration:
        minor = rng.randint(100, 250_000)
        schedule.append((at, f"{minor // 100}.{minor % 100:02d}"))
        at += rng.expovariate(rate)
    return schedule


@dataclass
class Budgets:
    order: float
    completion: float


class Driver:
    """Runs the orders of one scenario against one service instance."""

    def __init__(
        self,
        *,
        service_urls: Sequence[str],
        api_key: str,
        simulator: Simulator,
        waiters: CompletionWaiters,
        budgets: Budgets,
        max_in_flight: int = 400,
        clock: Callable[[], float] = time.monotonic,
        on_progress: Callable[[], None] | None = None,
        prefer_wait: bool = False,
    ) -> None:
        self._urls = tuple(service_urls)
        self._prefer_wait = prefer_wait
        self._api_key = api_key
        self._simulator = simulator
        self._waiters = waiters
        self._budgets = budgets
        self._slots = asyncio.Semaphore(max_in_flight)
        self._clock = clock
        self._on_progress = on_progress
        self._t0 = 0.0
        self._http: list[httpx.AsyncClient] = []
        self.orders: list[Order] = []
        self.creates: list[CreateCall] = []

    def now(self) -> float:
        """Seconds since the run started."""
        return self._clock() - self._t0

    async def run(self, schedule: list[tuple[float, str]], t0: float) -> None:
        """Start every order at its time (``t0`` is the run's start, on ``clock``); return when
        every order has ended."""
        self._t0 = t0
        self.orders = [Order(i, at, amount) for i, (at, amount) in enumerate(schedule)]
        # Every connection may stay open: a crowd turned away by a 503 comes back together,
        # and opening hundreds of connections anew each time is client work a merchant's
        # pooled client does not do.
        limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
        async with contextlib.AsyncExitStack() as stack:
            self._http = [
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=url,
                        headers={"Authorization": f"Bearer {self._api_key}"},
                        limits=limits,
                        timeout=30.0,
                    )
                )
                for url in self._urls
            ]
            tasks: list[asyncio.Task[None]] = []
            for order in self.orders:
                delay = order.arrival - self.now()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(
                    asyncio.create_task(self._run_order(order), name=f"order-{order.index}")
                )
            await asyncio.gather(*tasks)
            self._http = []

    async def _run_order(self, order: Order) -> None:
        async with self._slots:
            order.started = self.now()
            try:
                await self._checkout(order)
            except Exception as error:  # a bug in the benchmark must not hide in the numbers
                order.outcome = f"driver_error:{type(error).__name__}"
        if self._on_progress is not None:
            self._on_progress()

    # ---- one order -----------------------------------------------------------------------

    async def _checkout(self, order: Order) -> None:
        deadline = order.arrival + self._budgets.order
        page = await self._get_page(order, deadline)
        if page is None:
            return
        order.page_at = self.now()
        payment_id = str(page["id"])
        done = self._waiters.waiter(payment_id)
        page_id = str(page["redirect_url"]).rsplit("/", 1)[-1]
        paid = await self._pay(page_id)
        if paid is None:
            order.outcome = "pay_unreachable"
            return
        if paid.status_code != 200:
            order.outcome = f"pay_failed_{paid.status_code}"
            return
        order.paid_at = self.now()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=self._budgets.completion)
        if done.is_set():
            order.completed_by_event = True
            order.completed_at = self.now()
            order.outcome = "completed"
        else:
            state = await self._state(order, payment_id)
            if state in COMPLETED_STATES:
                order.completed_at = self.now()
                order.outcome = "completed"
            else:
                order.outcome = f"not_completed_{state}"
        card_id = page.get("saved_card_id")
        if order.outcome == "completed" and order.saves_card and isinstance(card_id, str):
            await self._renew(order, card_id)

    async def _pay(self, page_id: str) -> httpx.Response | None:
        """The customer pays the hosted page; a dropped connection (a keep-alive connection the
        page's server closed as it was reused) is tried again, as a browser would."""
        for _ in range(PAY_ATTEMPTS):
            with contextlib.suppress(httpx.TransportError):
                return await self._simulator.pay(page_id, VISA)
        return None

    async def _renew(self, order: Order, card_id: str) -> None:
        """Charge the order's saved card once more: one key, re-sent on 409/429/5xx/no answer
        after Retry-After, confirmed by ``process`` when the answer was 202."""
        http = self._client(order)
        deadline = self.now() + self._budgets.order
        key = f"order-{order.index}-renewal"
        body = {
            "saved_card_id": card_id,
            "amount": order.amount,
            "currency": CURRENCY,
            "description": f"Renewal of order {order.index}",
        }
        order.renewal = "no_answer"
        while (remaining := deadline - self.now()) > 0:
            retry_after: float | None = DEFAULT_RETRY_AFTER
            with contextlib.suppress(httpx.HTTPError):
                response = await http.post(
                    "/payments/v2/recurring",
                    json=body,
                    headers={"Idempotency-Key": key},
                    timeout=max(remaining, 1.0),
                )
                retry_after = _retry_after(response)
                if response.status_code in (201, 202):
                    payment_id = str(response.json()["id"])
                    order.renewal_ids.append(payment_id)
                    state = str(response.json()["state"])
                    if response.status_code == 202:
                        state = await self._settled(order, payment_id, deadline)
                    order.renewal = "completed" if state in COMPLETED_STATES else state
                    return
                if response.status_code in (404, 422):
                    order.renewal = f"refused_{response.status_code}"
                    return
            wait = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
            await asyncio.sleep(min(wait, max(0.0, deadline - self.now())))

    async def _settled(self, order: Order, payment_id: str, deadline: float) -> str:
        """Ask the service to confirm an undecided payment until it is final; its last state."""
        state = "unknown"
        while self.now() < deadline:
            await asyncio.sleep(min(CONFIRM_INTERVAL, max(0.0, deadline - self.now())))
            with contextlib.suppress(httpx.HTTPError, ValueError):
                response = await self._client(order).get(f"/payments/v2/process/{payment_id}")
                state = str(response.json().get("state", state))
                if response.json().get("final"):
                    return state
        return state

    async def _get_page(self, order: Order, deadline: float) -> dict[str, Any] | None:
        """A payment with a page to send the customer to, or None when the budget ran out."""
        key = self._new_key(order)
        body: dict[str, Any] = {
            "amount": order.amount,
            "currency": CURRENCY,
            "description": f"Order {order.index}",
            "metadata": {"order": str(order.index)},
        }
        if order.saves_card:
            body |= {"save_card": True, "customer_id": f"customer-{order.index}"}
        while True:
            remaining = deadline - self.now()
            if remaining <= 0:
                order.outcome = "no_page"
                return None
            status, payload, retry_after = await self._create(order, key, body, remaining)
            if status == 201 and payload is not None:
                order.payment_ids.append(str(payload["id"]))
                order.first_try = order.creates == 1
                return payload
            if status == 202 and payload is not None:
                payment_id = str(payload["id"])
                order.payment_ids.append(payment_id)
                found = await self._confirm(order, payment_id, deadline)
                if found is not None:
                    return found
                key = self._new_key(order)  # that payment cannot be paid: start another
                continue
            if status == 422:
                order.outcome = "rejected"
                return None
            wait = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
            wait = min(wait, max(0.0, deadline - self.now()))
            await asyncio.sleep(wait)

    async def _create(
        self, order: Order, key: str, body: dict[str, Any], remaining: float
    ) -> tuple[int, dict[str, Any] | None, float | None]:
        http = self._client(order)
        order.creates += 1
        start = self.now()
        headers = {"Idempotency-Key": key}
        if self._prefer_wait:
            headers["Prefer"] = prefer_wait(remaining)
        try:
            response = await http.post(
                "/payments/v2/create",
                json=body,
                headers=headers,
                timeout=max(remaining, 1.0),
            )
        except httpx.HTTPError:
            self.creates.append(CreateCall(order.index, start, self.now(), TRANSPORT_ERROR))
            return TRANSPORT_ERROR, None, DEFAULT_RETRY_AFTER
        end = self.now()
        retry_after = _retry_after(response)
        self.creates.append(CreateCall(order.index, start, end, response.status_code, retry_after))
        payload = response.json() if response.status_code in (201, 202) else None
        return response.status_code, payload, retry_after

    async def _confirm(
        self, order: Order, payment_id: str, deadline: float
    ) -> dict[str, Any] | None:
        """Ask the service to confirm an undecided payment until it has a page (returned) or
        cannot get one (None); gives up at ``deadline``."""
        http = self._client(order)
        wait = CONFIRM_INTERVAL
        while self.now() < deadline:
            await asyncio.sleep(min(wait, max(0.0, deadline - self.now())))
            wait = CONFIRM_INTERVAL
            order.confirms += 1
            remaining = deadline - self.now()
            headers = {"Prefer": prefer_wait(remaining)} if self._prefer_wait else {}
            try:
                response = await http.get(
                    f"/payments/v2/process/{payment_id}",
                    headers=headers,
                    timeout=max(remaining, 1.0),
                )
            except httpx.HTTPError:
                continue
            if response.status_code != 200:
                continue
            payment: dict[str, Any] = response.json()
            precise = payment.get(RETRY_AFTER_MS_FIELD)
            if isinstance(precise, int | float) and not isinstance(precise, bool):
                wait = max(0.0, float(precise) / 1000.0)  # PayTabs can be asked again then
            if payment.get("redirect_url") and payment.get("state") == "awaiting_customer":
                return payment
            if payment.get("final") or payment.get("state") == "awaiting_customer":
                return None  # failed, or a page whose URL was lost with PayTabs' answer
        return None

    async def _state(self, order: Order, payment_id: str) -> str:
        try:
            response = await self._client(order).get(f"/payments/v2/{payment_id}", timeout=10.0)
        except httpx.HTTPError as error:
            return f"unreadable:{type(error).__name__}"
        if response.status_code != 200:
            return f"http_{response.status_code}"
        return str(response.json().get("state"))

    def _client(self, order: Order) -> httpx.AsyncClient:
        """The instance this order talks to: orders are spread round-robin, as a load
        balancer would, and an order stays with its instance."""
        if not self._http:
            raise RuntimeError("the driver is not running")
        return self._http[order.index % len(self._http)]

    @staticmethod
    def _new_key(order: Order) -> str:
        order.keys += 1
        return f"order-{order.index}-attempt-{order.keys}"


def prefer_wait(remaining: float) -> str:
    """``Prefer: wait=N`` (RFC 7240) with the order's remaining budget in whole seconds, rounded
    down so the service never holds a request past the merchant's deadline; 0 at the end."""
    return f"wait={max(0, math.floor(remaining))}"


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait before sending again: the 503 body's ``retry_after_ms`` when the
    service gives one (precise, jittered), else the ``Retry-After`` header (whole seconds)."""
    if response.status_code == 503 and response.headers.get("content-type", "").startswith(
        "application/problem+json"
    ):
        with contextlib.suppress(ValueError):
            body = response.json()
            precise = body.get(RETRY_AFTER_MS_FIELD) if isinstance(body, dict) else None
            if isinstance(precise, int | float) and not isinstance(precise, bool):
                return max(0.0, float(precise) / 1000.0)
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
