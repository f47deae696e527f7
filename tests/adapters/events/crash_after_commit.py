"""Commit a new payment (and so its ``payment.created`` outbox row), then die by SIGKILL.

Run as ``python crash_after_commit.py <database url> <payment id>``: no relay ever runs in this
process, and nothing after the commit (no cleanup, no engine disposal) gets a chance to.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime

from paytabs_guard.adapters.sql.engine import create_engine
from paytabs_guard.adapters.sql.unit_of_work import SqlUnitOfWork
from paytabs_guard.domain import Money, Payment, TranType


async def commit_then_die(url: str, payment_id: str) -> None:
    engine = create_engine(url)
    payment = Payment.create(
        id=payment_id,
        cart_id=f"cart-{payment_id}",
        profile_id=1,
        amount=Money.of("12.500", "KWD"),
        tran_type=TranType.SALE,
        description="killed after commit",
        at=datetime.now(UTC),
    )
    async with SqlUnitOfWork(engine) as uow:
        uow.payments.add(payment)
        await uow.commit()
    print("committed", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(commit_then_die(sys.argv[1], sys.argv[2]))
