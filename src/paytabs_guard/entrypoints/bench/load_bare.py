"""The ceiling of ``bench load``: a bare FastAPI JSON endpoint.

``POST /bare`` validates a body shaped like a create request with pydantic and answers a small
JSON object: what FastAPI and uvicorn cost on their own, with no middleware, database or
gateway. ``load_server`` runs it under the same uvicorn settings as the service.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel


class BareIn(BaseModel):
    amount: str
    currency: str
    description: str


def create_app() -> FastAPI:
    app = FastAPI(title="bench: bare endpoint")

    @app.post("/bare", status_code=201)
    async def bare(body: BareIn) -> dict[str, str]:
        return {"id": "bare", "amount": body.amount, "currency": body.currency}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "pass"}

    return app
