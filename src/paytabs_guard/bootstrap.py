"""Composition root: builds the application's parts from Settings. No globals, nothing at import."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from paytabs_guard.adapters.paytabs.client import Observer, PayTabsClient
from paytabs_guard.adapters.paytabs.gateway import PayTabsGateway
from paytabs_guard.adapters.paytabs.regions import base_url_for
from paytabs_guard.adapters.paytabs.resilient import (
    OperationBreakers,
    ResilientPayTabs,
    counts_against_gateway,
)
from paytabs_guard.resilience import BreakerConfig, BreakerRegistry, SharedAttachable
from paytabs_guard.resilience.retry import RetryConfig, RetryPolicy, Sleep
from paytabs_guard.settings import Settings


def build_paytabs_client(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    observer: Observer | None = None,
) -> PayTabsClient:
    """The PayTabs client for the configured profile, region (or base-URL override) and timeout."""
    profile_id, server_key = settings.require_paytabs_credentials()
    return PayTabsClient(
        profile_id=profile_id,
        server_key=server_key,
        base_url=base_url_for(settings.paytabs_region, settings.paytabs_base_url),
        timeout_seconds=settings.paytabs_timeout / 1000,
        transport=transport,
        observer=observer,
    )


def breaker_config(settings: Settings) -> BreakerConfig:
    """The seed's CIRCUIT_BREAKER_* settings, with PayTabs' failure classification."""
    return BreakerConfig.from_milliseconds(
        timeout_ms=settings.circuit_breaker_timeout,
        error_threshold=settings.circuit_breaker_error_threshold,
        reset_timeout_ms=settings.circuit_breaker_reset_timeout,
        rolling_timeout_ms=settings.circuit_breaker_rolling_timeout,
        rolling_buckets=settings.circuit_breaker_rolling_buckets,
        volume_threshold=settings.circuit_breaker_volume_threshold,
        half_open_max_calls=settings.circuit_breaker_half_open_max_calls,
        is_failure=counts_against_gateway,
    )


def retry_config(settings: Settings) -> RetryConfig:
    return RetryConfig(
        retries=settings.paytabs_retry_attempts,
        base_delay=settings.paytabs_retry_delay / 1000,
        max_delay=settings.paytabs_retry_max_delay / 1000,
        deadline=settings.paytabs_operation_deadline / 1000,
        budget_ratio=settings.paytabs_retry_budget_percent / 100,
    )


@dataclass(frozen=True, slots=True)
class GatewayParts:
    """Everything between the use cases and PayTabs; ``breakers`` feeds stats and health."""

    client: PayTabsClient
    breakers: BreakerRegistry
    retry: RetryPolicy
    paytabs: ResilientPayTabs
    gateway: PayTabsGateway

    async def aclose(self) -> None:
        await self.client.aclose()


def build_gateway(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    observer: Observer | None = None,
    shared: SharedAttachable | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Sleep | None = None,
    rng: random.Random | None = None,
) -> GatewayParts:
    """Client -> one breaker per operation family -> the one retry policy -> the Gateway."""
    client = build_paytabs_client(settings, transport=transport, observer=observer)
    breakers = BreakerRegistry(breaker_config(settings), clock=clock, shared=shared)
    retry = (
        RetryPolicy(retry_config(settings), clock=clock, rng=rng)
        if sleep is None
        else RetryPolicy(retry_config(settings), clock=clock, sleep=sleep, rng=rng)
    )
    families = OperationBreakers(
        create=breakers.get("create"),
        query=breakers.get("query"),
        follow_up=breakers.get("follow_up"),
        token=breakers.get("token"),
    )
    paytabs = ResilientPayTabs(client, families, retry)
    return GatewayParts(client, breakers, retry, paytabs, PayTabsGateway(paytabs, breakers))
