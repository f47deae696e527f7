"""PayTabs errors, organised by what the caller must do next.

::

    PayTabsError
    ├── AuthenticationFailed    401 code 1: wrong key, profile or region.
    │                           Fix the configuration; never retry.
    ├── InvalidRequest          400 (codes 2, 3, 101, 102, 106, 206, 209, 301, 302 ...):
    │   │                       our request is wrong or not allowed. Fix it; never retry.
    │   └── TransactionNotFound 113: no such tran_ref (an answer, not a gateway failure).
    ├── DuplicateRequest        409 code 4: an identical request was already taken.
    │                           Query by cart_id first; re-send (identically) only when
    │                           PayTabs provably holds nothing for the cart.
    └── PayTabsUnavailable      no usable answer. Counts against the gateway's health.
        ├── TransientGatewayError  the request provably never took effect
        │                          (connect error, 429, 503): re-send after ``retry_after``.
        └── AmbiguousGatewayError  it may have taken effect (timeout or reset after sending,
                                   500/502/504, an unreadable answer, a 4xx without PayTabs'
                                   error body): query before re-sending.

Only an answer carrying PayTabs' error object (``{"code", "message", "trace"}``) is PayTabs
refusing: a 4xx without one (HTML or empty, from a proxy, firewall, WAF or maintenance page in
front of PayTabs) is no answer from PayTabs, hence ambiguous (429 excepted: turned away).

A declined or failed *transaction* is a result (a ``PayTabsTransaction`` with its status), not
an exception.
``error_from_response`` and ``error_from_transport`` are the only places that choose a class.
"""

from __future__ import annotations

from typing import ClassVar

import httpx

from paytabs_guard.adapters.paytabs.transformers import ErrorBody


class PayTabsError(Exception):
    """Base of every PayTabs failure; carries what PayTabs said, never secrets."""

    #: May the same request be sent again as it is?
    retry_safe: ClassVar[bool] = False
    #: Must the outcome be found out by a query before anything is re-sent?
    needs_resolution: ClassVar[bool] = False
    #: Does this failure say something about the gateway's health (circuit breaker)?
    counts_against_gateway: ClassVar[bool] = False
    #: Did the gateway give no answer at all (a read or write timeout)? The breaker judges
    #: such a failure as a timeout of its own (``resilient.went_unanswered``).
    unanswered: bool = False

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        http_status: int | None = None,
        code: int | None = None,
        trace: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.http_status = http_status
        self.code = code
        self.trace = trace
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(operation={self.operation!r}, http_status={self.http_status}, "
            f"code={self.code}, message={self.message!r})"
        )


class AuthenticationFailed(PayTabsError):
    """PayTabs refused our credentials (profile id, server key or region host)."""


class InvalidRequest(PayTabsError):
    """PayTabs refused the request itself; sending it again gives the same answer."""


class TransactionNotFound(InvalidRequest):
    """PayTabs has no transaction with that reference."""


class DuplicateRequest(PayTabsError):
    """PayTabs already took an identical request (409 code 4); find it by query."""

    needs_resolution = True


class PayTabsUnavailable(PayTabsError):
    """No usable answer from PayTabs."""

    counts_against_gateway = True


class TransientGatewayError(PayTabsUnavailable):
    """The request never took effect; it may be sent again."""

    retry_safe = True


class AmbiguousGatewayError(PayTabsUnavailable):
    """The request may have taken effect; query before sending anything again."""

    needs_resolution = True


_NOT_FOUND_CODES = frozenset({113})


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP-date: rare from gateways, ignored rather than mis-parsed
    return seconds if seconds >= 0 else None


def error_from_response(
    operation: str, response: httpx.Response, body: ErrorBody | None
) -> PayTabsError:
    """The error for a non-success HTTP answer from PayTabs."""
    status = response.status_code
    code = body.code if body else None
    message = body.message if body and body.message else f"HTTP {status} from PayTabs"
    retry_after = _retry_after(response)

    def make(kind: type[PayTabsError], text: str = message) -> PayTabsError:
        return kind(
            text,
            operation=operation,
            http_status=status,
            code=code,
            trace=body.trace if body else None,
            retry_after=retry_after,
        )

    if body is None:
        # No PayTabs error object: HTML, empty, or JSON of another shape. PayTabs refuses with
        # one (docs/paytabs.md §7.3), so a 4xx without it is not PayTabs' answer but that of a
        # proxy, firewall, WAF or maintenance page in front of it. It proves neither that
        # PayTabs answers (a probe must not take it for recovery) nor that PayTabs refused
        # the payment; and it may have replaced PayTabs' answer to a request PayTabs took, so
        # only a query may tell what happened.
        if status in (429, 503):
            return make(TransientGatewayError)  # turned away before anything was done
        if 400 <= status < 500:
            foreign = f"HTTP {status} without PayTabs' error body: not PayTabs' answer"
            return make(AmbiguousGatewayError, foreign)
        return make(AmbiguousGatewayError)
    if status == 401 or code == 1:
        return make(AuthenticationFailed)
    if status == 409 or code == 4:
        return make(DuplicateRequest)
    if status in (429, 503):
        return make(TransientGatewayError)
    if status >= 500:
        return make(AmbiguousGatewayError)
    # 4xx, or a 2xx carrying an error object (PayTabs' SDKs treat code > 0 as an error)
    if code in _NOT_FOUND_CODES:
        return make(TransactionNotFound)
    return make(InvalidRequest)


def error_from_transport(operation: str, error: httpx.TransportError) -> PayTabsUnavailable:
    """The error for a failure below HTTP. Only a connection never made is provably safe."""
    kind = type(error).__name__
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return TransientGatewayError(f"{kind}: request never sent", operation=operation)
    unknown = AmbiguousGatewayError(f"{kind}: outcome unknown", operation=operation)
    unknown.unanswered = isinstance(error, httpx.TimeoutException)
    return unknown
