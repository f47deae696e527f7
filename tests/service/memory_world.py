"""The use cases wired to the in-memory ports of ``testkit``: no database, no simulator.

The ``*_unit.py`` tests beside the database-backed ones use this to check the use cases' own
decisions in milliseconds; the database-backed tests keep checking the same paths on SQL.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime

from paytabs_guard.domain import Money, Payment
from paytabs_guard.service.payment_steps import ServiceUrls
from paytabs_guard.service.payments import CreatePayment, PaymentDeps
from testkit.clock import FakeClock
from testkit.gateway import FakeGateway
from testkit.storage import MemoryStore
from testkit.unit_of_work import memory_uow_factory

PROFILE_ID = 87654


@dataclass
class MemoryWorld:
    store: MemoryStore = field(default_factory=MemoryStore)
    gateway: FakeGateway = field(default_factory=FakeGateway)
    clock: FakeClock = field(default_factory=FakeClock)
    pages_opened: list[datetime] = field(default_factory=list)
    """Deadlines the use cases announced (what wakes the page-expiry sleeper)."""
    deps: PaymentDeps = field(init=False)

    def __post_init__(self) -> None:
        ids = itertools.count(1)
        self.deps = PaymentDeps(
            uow=memory_uow_factory(self.store),
            gateway=self.gateway,
            clock=self.clock,
            profile_id=PROFILE_ID,
            urls=ServiceUrls(
                callback_url="https://shop.example/payments/v2/webhook",
                return_url="https://shop.example/payments/v2/return",
            ),
            new_id=lambda: f"pay_{next(ids)}",
            page_opened=self.pages_opened.append,
        )

    def stored(self, payment_id: str) -> Payment:
        return self.store.payment(payment_id)

    def outbox_types(self, payment_id: str) -> list[str]:
        return [e.type for e in self.store.outbox if e.payment_id == payment_id]


def order(amount: str = "100.00", currency: str = "SAR") -> CreatePayment:
    return CreatePayment(amount=Money.of(amount, currency), description="NestCMS plan")
