"""paytabs-guard: resilient, secure PayTabs PT2 payments for Python.

The library face. Everything here needs only the core dependencies (httpx, pydantic); the
payments service and the simulator are extras (``paytabs-guard[service]``, ``[simulator]``);
the benchmarks run from a checkout of the repository, whose ``[bench]`` extra installs the
breaker libraries they compare against::

    from paytabs_guard import PayTabs, HostedPageRequest, Money

    async with PayTabs(profile_id=12345, server_key="S...", region="SAU") as paytabs:
        page = await paytabs.create_payment_page(
            HostedPageRequest(cart_id="order-1", amount=Money.of("12.50", "SAR"),
                              description="Order 1", return_url="https://shop.example/done")
        )

``__all__`` is the public API; a test pins it.
"""

from importlib.metadata import PackageNotFoundError, version

from paytabs_guard.adapters.paytabs.client import PayTabsClient
from paytabs_guard.adapters.paytabs.errors import (
    AmbiguousGatewayError,
    AuthenticationFailed,
    DuplicateRequest,
    InvalidRequest,
    PayTabsError,
    PayTabsUnavailable,
    TransactionNotFound,
    TransientGatewayError,
)
from paytabs_guard.adapters.paytabs.regions import Region
from paytabs_guard.adapters.paytabs.resilient import PageOutcome, counts_against_gateway
from paytabs_guard.adapters.paytabs.signature import (
    InvalidSignature,
    sign_callback,
    verify_callback,
    verify_return,
)
from paytabs_guard.adapters.paytabs.transformers import (
    Address,
    FollowUpRequest,
    HostedPageRequest,
    PageTranType,
    PayTabsPaymentPage,
    PayTabsTransaction,
    TokenChargeRequest,
)
from paytabs_guard.domain import FollowUpType
from paytabs_guard.domain.money import InvalidMoney, Money
from paytabs_guard.paytabs import DEFAULT_BREAKER, PayTabs
from paytabs_guard.resilience import (
    BreakerConfig,
    BreakerError,
    BreakerProber,
    BreakerRegistry,
    CallTimeout,
    CircuitBreaker,
    CircuitOpenError,
    RetryConfig,
    RetryPolicy,
)

# Inside the package the PayTabs-side names say "PayTabs" (a service, a database and the domain
# have their own transactions and pages); to a library user ``paytabs_guard.Transaction`` is
# already unambiguous, so the public face keeps its short names.
GatewayUnavailable = PayTabsUnavailable
PaymentPage = PayTabsPaymentPage
Transaction = PayTabsTransaction

try:
    __version__ = version("paytabs-guard")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_BREAKER",
    "Address",
    "AmbiguousGatewayError",
    "AuthenticationFailed",
    "BreakerConfig",
    "BreakerError",
    "BreakerProber",
    "BreakerRegistry",
    "CallTimeout",
    "CircuitBreaker",
    "CircuitOpenError",
    "DuplicateRequest",
    "FollowUpRequest",
    "FollowUpType",
    "GatewayUnavailable",
    "HostedPageRequest",
    "InvalidMoney",
    "InvalidRequest",
    "InvalidSignature",
    "Money",
    "PageOutcome",
    "PageTranType",
    "PayTabs",
    "PayTabsClient",
    "PayTabsError",
    "PaymentPage",
    "Region",
    "RetryConfig",
    "RetryPolicy",
    "TokenChargeRequest",
    "Transaction",
    "TransactionNotFound",
    "TransientGatewayError",
    "__version__",
    "counts_against_gateway",
    "sign_callback",
    "verify_callback",
    "verify_return",
]
