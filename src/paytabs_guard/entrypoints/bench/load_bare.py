"""The ceiling of ``bench load``: a bare FastAPI JSON endpoint.

``POST /bare`` validates a body shaped like a create request with pydantic and answers a small
JSON object: what FastAPI and uvicorn cost on their own, with no middleware, database or
gateway. ``load_server`` runs it under the same uvicorn settings as the service, and it
settles the cycle collector after start-up as the service does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from pydantic import BaseModel

from paytabs_guard.entrypoints.collector import settle_after_start


class BareIn(BaseModel):
    amount: str
    currency: str
    description: str


def create_app() -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        settle_after_start()
        yield

    app = FastAPI(title="bench: bare endpoint", lifespan=lifespan)

    @app.post("/bare", status_code=201)
    async def bare(body: BareIn) -> dict[str, str]:
        return {"id": "bare", "amount": body.amount, "currency": body.currency}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "pass"}

    return app
