"""Callback (IPN) delivery: signed POSTs in the background, retried until a 200."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import httpx

from paytabs_simulator.records import JsonObject
from paytabs_simulator.wire import iso_time

logger = logging.getLogger(__name__)

NotificationKind = Literal["normal", "duplicate", "stale"]


@dataclass(frozen=True)
class Notification:
    """One callback body, already encoded and signed, so retries resend the exact same bytes."""

    url: str
    body: bytes
    signature: str
    tran_ref: str
    ipn_trace: str
    response_status: str
    kind: NotificationKind = "normal"


@dataclass(frozen=True)
class DeliveryAttempt:
    url: str
    tran_ref: str
    ipn_trace: str
    response_status: str
    kind: NotificationKind | Literal["withheld"]
    attempt: int
    status_code: int | None
    error: str | None
    time: datetime

    def as_json(self) -> JsonObject:
        return {
            "url": self.url,
            "tran_ref": self.tran_ref,
            "ipn_trace": self.ipn_trace,
            "response_status": self.response_status,
            "kind": self.kind,
            "attempt": self.attempt,
            "status_code": self.status_code,
            "error": self.error,
            "time": iso_time(self.time),
        }


class CallbackDispatcher:
    """Sends notifications from tasks it tracks, so shutdown can cancel them cleanly."""

    def __init__(
        self,
        *,
        retry_delays: tuple[float, ...],
        timeout_seconds: float,
        user_agent: str,
        transport: httpx.AsyncBaseTransport | None,
        clock: Callable[[], datetime],
    ) -> None:
        self._retry_delays = retry_delays
        self._timeout = timeout_seconds
        self._user_agent = user_agent
        self._transport = transport
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self.log: list[DeliveryAttempt] = []

    def dispatch(self, notifications: Sequence[Notification], *, delay_seconds: float) -> None:
        task = asyncio.get_running_loop().create_task(
            self._deliver_all(notifications, delay_seconds)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def record_withheld(self, notification: Notification) -> None:
        self._record(notification, "withheld", attempt=0, status_code=None, error=None)

    async def wait_idle(self) -> None:
        """Wait until every callback scheduled so far has been delivered or given up."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def clear_log(self) -> None:
        self.log.clear()

    async def _deliver_all(self, notifications: Sequence[Notification], delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        if self._transport is not None:
            # An injected transport belongs to the caller: closing our client would close it.
            client = httpx.AsyncClient(transport=self._transport, timeout=self._timeout)
            for notification in notifications:
                await self._deliver(client, notification)
            return
        async with httpx.AsyncClient(timeout=self._timeout, trust_env=False) as client:
            for notification in notifications:
                await self._deliver(client, notification)

    async def _deliver(self, client: httpx.AsyncClient, notification: Notification) -> None:
        headers = {
            "Content-Type": "application/json",
            "Signature": notification.signature,
            "User-Agent": self._user_agent,
        }
        for attempt, delay in enumerate((0.0, *self._retry_delays), start=1):
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                response = await client.post(
                    notification.url, content=notification.body, headers=headers
                )
            except httpx.HTTPError as error:
                self._record(notification, notification.kind, attempt, None, type(error).__name__)
                continue
            self._record(notification, notification.kind, attempt, response.status_code, None)
            # PayTabs wants exactly 200; any other status, 2xx included, is retried.
            if response.status_code == 200:
                return
        logger.warning(
            "callback for %s not accepted after %d attempts",
            notification.tran_ref,
            len(self._retry_delays) + 1,
        )

    def _record(
        self,
        notification: Notification,
        kind: NotificationKind | Literal["withheld"],
        attempt: int,
        status_code: int | None,
        error: str | None,
    ) -> None:
        self.log.append(
            DeliveryAttempt(
                url=notification.url,
                tran_ref=notification.tran_ref,
                ipn_trace=notification.ipn_trace,
                response_status=notification.response_status,
                kind=kind,
                attempt=attempt,
                status_code=status_code,
                error=error,
                time=self._clock(),
            )
        )
