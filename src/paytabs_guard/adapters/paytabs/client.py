"""The PayTabs PT2 client: the only code that sends HTTP to PayTabs.

One call = one attempt. Retries, the circuit breaker and ambiguity resolution wrap this client
(``paytabs_guard.adapters.paytabs.resilient``); the client itself never retries, so there is
exactly one retry layer.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Any, Final, Self, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from paytabs_guard import tracing
from paytabs_guard.adapters.paytabs.direct_post import DirectPost, proxied_by_environment
from paytabs_guard.adapters.paytabs.errors import (
    AmbiguousGatewayError,
    AuthenticationFailed,
    PayTabsError,
    error_from_response,
    error_from_transport,
)
from paytabs_guard.adapters.paytabs.http11 import pool_transport
from paytabs_guard.adapters.paytabs.loop_clients import ClientPerLoop, OneClient
from paytabs_guard.adapters.paytabs.signature import server_key_problem
from paytabs_guard.adapters.paytabs.transformers import (
    ErrorBody,
    FollowUpRequest,
    HostedPageRequest,
    PayTabsPaymentPage,
    PayTabsTransaction,
    TokenChargeRequest,
    decode_json,
    encode_body,
)
from paytabs_guard.domain import Operation
from paytabs_guard.setting_values import require_http_url

REQUEST_PATH: Final = "/payment/request"
QUERY_PATH: Final = "/payment/query"
TOKEN_QUERY_PATH: Final = "/payment/token"  # noqa: S105 - a URL path, not a password
TOKEN_DELETE_PATH: Final = "/payment/token/delete"  # noqa: S105 - a URL path

#: Called after every attempt with (operation, seconds, outcome) for metrics; never raises.
Observer = Callable[[str, float, str], None]

HTTP_SHARE_OF_ATTEMPT: Final = 0.9
DEFAULT_MAX_CONNECTIONS: Final = 300
"""Connections to PayTabs per client (per worker), made as needed. Calls that hang at PayTabs
hold theirs until their timeout, and the breaker opens about 5 s into such a hang
(``BreakerConfig.stall_after``): 300 is what 50 calls a second send in 6 s. With 100, at 30
calls a second the pool filled in 3.4 s, and after the recovery the trials waited for the hung
calls to time out (an outside check: the first sale 12-14 s late)."""
POOL_WAIT_SECONDS: Final = 5.0
"""How long a call waits for a free connection when all ``max_connections`` are in use: then
it fails as "never sent" (safe to send again, and a failure the breaker counts). Before, a call
queued behind calls hanging at PayTabs for the whole timeout (27 s with the defaults), and
after a recovery the trials waited behind calls still hanging. Not shorter: a burst of more
calls than connections, each answered in a second or two, must not fail (ten failures before
the first answer would open the breaker on a healthy PayTabs); a gateway slower than this is
seen by the breaker's stall watch at the same 5 s."""
"""The HTTP timeouts (connect, waiting for a pooled connection, each next byte) end by this
share of the attempt's timeout (the breaker's call timeout) at the latest."""


def http_timeout_within(attempt_seconds: float, http_seconds: float | None = None) -> float:
    """The client's HTTP timeouts for attempts the breaker cuts after ``attempt_seconds``:
    ``http_seconds`` (what the operator asked for), but never past ``HTTP_SHARE_OF_ATTEMPT``
    of the attempt.

    A cut by the breaker cannot tell whether the request left, so it is an unknown outcome (a
    query before any re-send, a create in ``unknown``). A connection that cannot be made, or a
    pooled one that never comes free, is provably "never sent" and safe to send again; only
    the transport's own connect and pool timeouts can say so, and only if they end first (at
    equal timeouts the breaker, whose timer starts first, wins)."""
    bound = attempt_seconds * HTTP_SHARE_OF_ATTEMPT
    return bound if http_seconds is None else min(http_seconds, bound)


_Model = TypeVar("_Model", bound=BaseModel)


class ClientClosed(RuntimeError):
    """The client was used after ``aclose()``: the caller's mistake, not a gateway failure."""


def checked_profile_id(value: object) -> int:
    """``value`` as a profile id: a positive int, or its digits as a str (read from the
    environment). Anything else is a ValueError when the client is built: PayTabs answers a
    wrong profile id on every call alike, as a refusal that reads like a bad key."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise ValueError(f"profile_id must be a positive integer (e.g. 12345), got {value!r}")
    return value


class PayTabsClient:
    """Async PayTabs PT2 client with pooled connections and a per-attempt timeout."""

    def __init__(
        self,
        *,
        profile_id: int,
        server_key: SecretStr | str,
        base_url: str,
        timeout_seconds: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        observer: Observer | None = None,
    ) -> None:
        key = server_key.get_secret_value() if isinstance(server_key, SecretStr) else server_key
        problem = server_key_problem(key)
        if problem is not None:
            raise ValueError(problem)
        # Refused here, not at the first call: a URL without http(s):// failed each attempt as
        # "outcome unknown" (AmbiguousGatewayError), a payment that never left reported as one
        # that may have been taken, after seconds of retries counted against the breakers.
        require_http_url(base_url, base=True)
        self.profile_id = checked_profile_id(profile_id)
        self.base_url = base_url.rstrip("/")
        self._closed = False
        self._observer = observer
        headers = {
            # authorization is the raw server key, no scheme (docs/paytabs.md §3)
            "authorization": key,
            "content-type": "application/json",
            "accept": "application/json",
            "user-agent": "paytabs-guard",
        }
        timeout = httpx.Timeout(
            timeout_seconds,
            connect=min(timeout_seconds, 10.0),
            pool=min(timeout_seconds, POOL_WAIT_SECONDS),
        )
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        # A test's transport; else, when a proxy from the environment applies, httpx's own
        # transport, since httpx mounts those proxies only on a client built without one; else
        # the lean pooled HTTP/1.1 transport (http11.py), where httptools is installed.
        own = None
        if transport is None and not proxied_by_environment(self.base_url):
            own = pool_transport(max_connections)
        self._clients: OneClient | ClientPerLoop
        if transport is not None or own is not None:
            self._clients = OneClient(
                httpx.AsyncClient(
                    base_url=self.base_url,
                    headers=headers,
                    timeout=timeout,
                    transport=transport or own,
                    limits=limits,
                    follow_redirects=False,
                )
            )
        else:
            # httpx's own transport: its connections belong to the loop they were made on, so
            # each loop gets a client of its own (loop_clients.py says what went wrong before).
            # One TLS context for them all: loading the CA bundle per loop would cost each
            # asyncio.run call tens of milliseconds.
            verify = _lazy_tls_context()
            self._clients = ClientPerLoop(
                lambda: httpx.AsyncClient(
                    base_url=self.base_url,
                    headers=headers,
                    timeout=timeout,
                    limits=limits,
                    verify=verify(),
                    follow_redirects=False,
                )
            )
        # Calls go straight to the lean transport, not through httpx's client: a third of the
        # CPU (direct_post.DirectPost). httpx's client stays for the other cases and for closing.
        self._direct = (
            DirectPost(own, httpx.URL(self.base_url), headers, timeout)
            if own is not None and self.base_url.startswith(("http:", "https:"))
            else None
        )

    def __repr__(self) -> str:
        return f"PayTabsClient(profile_id={self.profile_id}, base_url={self.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        await self._clients.aclose()

    # --- operations ---------------------------------------------------------------------------
    async def create_payment_page(self, request: HostedPageRequest) -> PayTabsPaymentPage:
        """Create a hosted payment page (sale or auth); the customer pays at ``redirect_url``."""
        payload = await self._post(Operation.CREATE, REQUEST_PATH, request.to_wire(self.profile_id))
        return self._model(Operation.CREATE, PayTabsPaymentPage, payload)

    async def query_transaction(self, tran_ref: str) -> PayTabsTransaction:
        """One transaction by reference; TransactionNotFound if PayTabs has none."""
        payload = await self._post(
            Operation.QUERY, QUERY_PATH, {"profile_id": self.profile_id, "tran_ref": tran_ref}
        )
        return self._model(Operation.QUERY, PayTabsTransaction, payload)

    async def query_cart(self, cart_id: str) -> list[PayTabsTransaction]:
        """Every transaction PayTabs holds for a cart, oldest first (empty: none at all)."""
        payload = await self._post(
            Operation.QUERY, QUERY_PATH, {"profile_id": self.profile_id, "cart_id": cart_id}
        )
        if isinstance(payload, dict):
            # some answers carry a single object rather than a one-element list
            payload = [payload]
        if not isinstance(payload, list):
            raise AmbiguousGatewayError(
                "query by cart_id did not return a list", operation=Operation.QUERY
            )
        return [self._model(Operation.QUERY, PayTabsTransaction, item) for item in payload]

    async def follow_up(self, request: FollowUpRequest) -> PayTabsTransaction:
        """Capture, void, refund or release: a new transaction with ``previous_tran_ref``."""
        payload = await self._post(
            Operation.FOLLOW_UP, REQUEST_PATH, request.to_wire(self.profile_id)
        )
        return self._model(Operation.FOLLOW_UP, PayTabsTransaction, payload)

    async def charge_token(self, request: TokenChargeRequest) -> PayTabsTransaction:
        """A recurring sale or auth with a saved token; answered directly, no page."""
        payload = await self._post(Operation.TOKEN, REQUEST_PATH, request.to_wire(self.profile_id))
        return self._model(Operation.TOKEN, PayTabsTransaction, payload)

    async def query_token(self, token: str) -> PayTabsTransaction:
        """The transaction that created ``token``."""
        payload = await self._post(
            Operation.TOKEN, TOKEN_QUERY_PATH, {"profile_id": self.profile_id, "token": token}
        )
        return self._model(Operation.TOKEN, PayTabsTransaction, payload)

    async def delete_token(self, token: str) -> None:
        """Delete a saved token; past transactions are unaffected."""
        payload = await self._post(
            Operation.TOKEN, TOKEN_DELETE_PATH, {"profile_id": self.profile_id, "token": token}
        )
        self._model(Operation.TOKEN, ErrorBody, payload)

    # --- one attempt --------------------------------------------------------------------------
    def ensure_open(self) -> None:
        """Raise ``RuntimeError`` once the client is closed: a mistake in the caller's code, not
        a gateway failure (no retry, no breaker)."""
        if self._closed:
            raise ClientClosed(
                "this PayTabs client is closed (its `async with` block ended, or aclose() was "
                "called); use it inside the block, or build a new one"
            )

    async def _post(self, operation: str, path: str, body: dict[str, Any]) -> Any:  # JSON
        self.ensure_open()
        started = time.perf_counter()
        outcome = "error"
        try:
            try:
                content = encode_body(body)
                if self._direct is not None:
                    response = await self._direct.post(path, content)
                else:
                    http = await self._clients.current()
                    response = await http.post(path, content=content)
            except httpx.TransportError as error:
                raise error_from_transport(operation, error) from error
            if tracing.ENABLED:  # the attempt's span (resilient.py) is the current one
                tracing.annotate("http.response.status_code", response.status_code)
            payload = self._payload(operation, response)
            outcome = "ok"
            return payload
        except PayTabsError as error:
            outcome = type(error).__name__
            if isinstance(error, AuthenticationFailed):
                # PayTabs says "Check authentication header."; the cause is nearly always a
                # key of another profile, or a profile of another region than this host's.
                error.add_note(
                    f"PayTabs at {self.base_url} refused profile {self.profile_id} with this "
                    "server key: check both, and that the profile is in this host's region (a "
                    "key works only on its own region's host)"
                )
            raise
        finally:
            if self._observer is not None:
                self._observer(operation, time.perf_counter() - started, outcome)

    @staticmethod
    def _payload(operation: str, response: httpx.Response) -> Any:  # JSON
        try:
            payload = decode_json(response.content) if response.content else None
        except ValueError:
            payload = None
        error_body = _error_body(payload)
        # PayTabs may answer 200 with an error object (code > 0); code 0 is a plain success.
        if (
            response.is_success
            and payload is not None
            and (error_body is None or error_body.code == 0)
        ):
            return payload
        if response.is_success and payload is None:
            raise AmbiguousGatewayError(
                f"unreadable answer (HTTP {response.status_code})",
                operation=operation,
                http_status=response.status_code,
            )
        raise error_from_response(operation, response, error_body)

    @staticmethod
    def _model(operation: str, model: type[_Model], payload: Any) -> _Model:  # JSON
        try:
            return model.model_validate(payload)
        except ValidationError as error:
            # The gateway answered but not in a shape we know: the operation may have happened.
            raise AmbiguousGatewayError(
                f"unexpected answer shape for {model.__name__}: {error.error_count()} problems",
                operation=operation,
            ) from None


def _lazy_tls_context() -> Callable[[], ssl.SSLContext]:
    """httpx's default TLS context (certifi, ``SSL_CERT_FILE``), made when the first loop's
    client is built and shared by the rest: a client built and never called (at import time
    of a web app, say) loads no CA bundle."""
    made: list[ssl.SSLContext] = []

    def context() -> ssl.SSLContext:
        if not made:
            made.append(httpx.create_ssl_context())
        return made[0]

    return context


def _error_body(payload: Any) -> ErrorBody | None:  # JSON
    if isinstance(payload, dict) and "code" in payload and "tran_ref" not in payload:
        try:
            return ErrorBody.model_validate(payload)
        except ValidationError:
            return None
    return None
