"""``Annotated`` dependency aliases: what a route declares it needs.

The container is resolved from ``request.app.state`` at request time, so the same routes serve
an app built around a ready container (tests) and one whose lifespan builds it (``serve``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from paytabs_guard.bootstrap import Container
from paytabs_guard.service.payments import PaymentService

from .auth import API_CLIENT, ApiClient, forbidden_scope
from .options import ApiOptions
from .problems import Problem
from .rate_limit import request_source
from .runtime import Runtime

_IDEMPOTENCY_KEY: Final = re.compile(r"[\x21-\x7e]{8,255}")
_bearer = HTTPBearer(auto_error=False, description="An API key from API_KEYS")


async def get_runtime(request: Request) -> Runtime:
    runtime = getattr(request.app.state, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise RuntimeError("the app has no runtime: build it with create_app()")
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_container(runtime: RuntimeDep) -> Container:
    return runtime.container


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_payment_service(container: ContainerDep) -> PaymentService:
    return container.service


#: What a payment route calls, and all it calls for payments.
PaymentServiceDep = Annotated[PaymentService, Depends(get_payment_service)]


async def get_options(runtime: RuntimeDep) -> ApiOptions:
    return runtime.options


OptionsDep = Annotated[ApiOptions, Depends(get_options)]


async def get_client(
    request: Request,
    runtime: RuntimeDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiClient:
    return _client_of(request, runtime)


def _client_of(request: Request, runtime: Runtime) -> ApiClient:
    known = request.scope.get("state", {}).get(API_CLIENT)
    if isinstance(known, ApiClient):  # a request with a body: the front door checked the key
        return known
    source = request_source(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        runtime.container.settings.trusted_proxies,
    )
    # The raw header, not HTTPBearer's parse: it also tells a wrong scheme from a missing one.
    authorization = request.headers.getlist("authorization")
    client = runtime.key_guesses.authenticate(runtime.api_keys, authorization, source)
    request.state.client_id = client.id  # the access line names the key
    return client


ClientDep = Annotated[ApiClient, Depends(get_client)]


async def get_admin(client: ClientDep) -> ApiClient:
    if not client.is_admin:
        raise forbidden_scope()
    return client


AdminDep = Annotated[ApiClient, Depends(get_admin)]


_IDEMPOTENCY_KEY_HEADER: Final = Header(
    alias="Idempotency-Key",
    description="8-255 visible ASCII characters, unique per operation (a UUID is best); "
    "repeating a request with the same key replays the first answer for 24 h, whichever of "
    "the merchant's API keys sends it (the old or new key of a rotation). The same request "
    'is the same body, whatever its spacing, key order or zeros in an amount ("5.0" is '
    '"5.00"); another body under the key is a 422 idempotency-key-reused',
    # Documented for clients and generators; checked here, so a bad key is our 400 that says
    # what to send, not the framework's 422.
    json_schema_extra={"pattern": "^[\\x21-\\x7e]{8,255}$"},
)


def _checked_idempotency_key(request: Request, idempotency_key: str | None) -> str | None:
    """The request's Idempotency-Key, checked (400 when it is repeated or malformed)."""
    if idempotency_key is None:
        return None
    if len(request.headers.getlist("idempotency-key")) > 1:
        # Which one would be the key? A proxy and this service could each pick another.
        raise _invalid_idempotency_key("Send one Idempotency-Key header, not several.")
    if not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise _invalid_idempotency_key(
            "Send Idempotency-Key as 8-255 visible ASCII characters without spaces; a random "
            "UUID per operation is best."
        )
    return idempotency_key


def _invalid_idempotency_key(detail: str) -> Problem:
    return Problem("invalid_idempotency_key", "Invalid Idempotency-Key", 400, detail)


@dataclass(frozen=True, slots=True)
class PaymentWrite:
    """What every payment write (a create, a recurring charge, a follow-up) runs with: the
    request, the app's runtime, the payment service, the client and its Idempotency-Key."""

    request: Request
    runtime: Runtime
    service: PaymentService
    client: ApiClient
    key: str | None


async def get_payment_write(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    idempotency_key: Annotated[str | None, _IDEMPOTENCY_KEY_HEADER] = None,
) -> PaymentWrite:
    # One dependency doing in order what the runtime, client and key dependencies did (401
    # before 400): FastAPI solved each of those separately on every write, twelve solves per
    # create that cost more than the checks themselves. The parameters are the same, so the
    # API description still shows the bearer scheme and the header.
    runtime = await get_runtime(request)
    client = _client_of(request, runtime)
    key = _checked_idempotency_key(request, idempotency_key)
    return PaymentWrite(request, runtime, runtime.container.service, client, key)


PaymentWriteDep = Annotated[PaymentWrite, Depends(get_payment_write)]
