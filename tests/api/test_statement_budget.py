"""The statement budget (docs/storage.md, "Statement budget"): what one create, one callback and
one refund cost the database, on SQLite and on PostgreSQL. A change that adds a statement or a
round trip to the request path fails here and has to update the budget on purpose."""

from __future__ import annotations

import pytest

from paytabs_guard.adapters.sql.statements import StatementCount, counting

from .api_support import Service, deliver, new_key, start_up_reported

pytestmark = pytest.mark.anyio

# (statements, round trips) per operation and database; round trips include BEGIN/COMMIT and
# pre-pings where they reach the server.
BUDGET: dict[tuple[str, str], tuple[int, int]] = {
    ("sqlite", "create"): (10, 2),
    ("sqlite", "callback"): (6, 2),
    ("sqlite", "refund"): (11, 11),
    ("sqlite", "refund callback"): (2, 2),
    ("postgresql", "create"): (2, 2),
    ("postgresql", "callback"): (2, 2),
    ("postgresql", "refund"): (9, 13),
    ("postgresql", "refund callback"): (2, 2),
}


def _within(service: Service, operation: str, count: StatementCount) -> None:
    database = service.container.engine.dialect.name
    statements, round_trips = BUDGET[(database, operation)]
    print(f"{database} {operation}: {count.describe()}")
    assert count.statements <= statements, count.describe()
    assert count.round_trips <= round_trips, count.describe()


async def test_a_create_a_callback_and_a_refund_stay_within_the_budget(
    any_service: Service,
) -> None:
    await start_up_reported()  # the start's own reads run beside the requests otherwise
    await any_service.create()  # warm-up: the pool's first connections, compiled statements
    engine = any_service.container.engine

    with counting(engine) as create_count:
        payment = await any_service.create()
    _within(any_service, "create", create_count)

    with counting(engine) as callback_count:
        await any_service.pay(payment)
        await any_service.callbacks_done()
    assert (await any_service.get(payment["id"]))["state"] == "completed"
    _within(any_service, "callback", callback_count)

    # The refund, then PayTabs' callback for it (follow-ups carry the callback URL), each counted
    # on its own. The callback is held back while the refund runs: PayTabs sends it as it
    # answers, so left alone it races the refund's own answer and the count would depend on
    # which lands first.
    engine_sim = any_service.sim.engine
    engine_sim.set_faults(engine_sim.faults.model_copy(update={"callback_withhold_rate": 1.0}))
    with counting(engine) as refund_count:
        refunded = await any_service.api.post(
            f"/payments/v2/{payment['id']}/refund",
            json={"amount": "30.00"},
            headers={"Idempotency-Key": new_key()},
        )
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["refunded"] == "30.00"
    _within(any_service, "refund", refund_count)

    # By then the refund is applied: its callback is a duplicate, one read and its inbox row.
    [refund] = [
        t for t in await any_service.simulated(payment["cart_id"]) if t["tran_type"] == "Refund"
    ]
    with counting(engine) as callback_count:
        answered = await deliver(any_service.anonymous, refund)
    assert answered.status_code == 200, answered.text
    assert (await any_service.get(payment["id"]))["refunded"] == "30.00"
    _within(any_service, "refund callback", callback_count)
