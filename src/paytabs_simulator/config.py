"""Simulator configuration: merchant profiles, timings, faults, randomness and the clock."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TypeVar

import httpx
from pydantic import ValidationError

from paytabs_simulator.faults import Faults

DEFAULT_PROFILE_ID = 987654
# The key PayTabs uses in its own signature documentation (sp/60000718961), so the documented
# test vectors verify against a simulator running on defaults.
DEFAULT_SERVER_KEY = "SGJNZ96JLG-JDMKHGRWT9-RWRK2KJNRJ"
DEFAULT_MERCHANT_ID = 123456
DEFAULT_CURRENCIES = frozenset(
    {"SAR", "AED", "BHD", "EGP", "EUR", "GBP", "JOD", "KWD", "OMR", "QAR", "USD"}
)
DEFAULT_TRANSACTION_LIMIT = Decimal(5000)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Profile:
    """A PayTabs merchant profile: the id and server key clients authenticate with."""

    profile_id: int
    server_key: str = field(repr=False)
    currencies: frozenset[str] = DEFAULT_CURRENCIES
    merchant_id: int = DEFAULT_MERCHANT_ID
    # One limit whatever the currency: the simulator does no exchange rates.
    transaction_limit: Decimal = DEFAULT_TRANSACTION_LIMIT

    def __post_init__(self) -> None:
        if not self.server_key:
            raise ValueError(f"profile {self.profile_id}: server_key must not be empty")
        if self.transaction_limit <= 0:
            raise ValueError(f"profile {self.profile_id}: transaction_limit must be positive")
        object.__setattr__(self, "currencies", frozenset(c.upper() for c in self.currencies))


def default_profiles() -> list[Profile]:
    return [Profile(DEFAULT_PROFILE_ID, DEFAULT_SERVER_KEY)]


@dataclass
class SimulatorConfig:
    """How one simulator instance behaves; every field has a working default."""

    profiles: list[Profile] = field(default_factory=default_profiles)
    # Where `redirect_url` points; None means the scheme and host the request came in on.
    public_base_url: str | None = None
    duplicate_window_seconds: float = 120.0
    # Delays before each retry after the first callback attempt: 5 retries, as PayTabs documents.
    callback_retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    callback_timeout_seconds: float = 10.0
    # Used when a request carries no `paypage_ttl`.
    page_ttl_minutes: float = 20.0
    faults: Faults = field(default_factory=Faults)
    seed: int | None = None
    clock: Callable[[], datetime] = utc_now
    # Lets in-process tests deliver callbacks to an ASGI app (httpx.ASGITransport) without sockets.
    callback_transport: httpx.AsyncBaseTransport | None = None
    callback_user_agent: str = "Go-http-client/1.1"
    # Real PayTabs wants HTTPS callback/return URLs without a port; off so local runs work.
    strict_urls: bool = False

    def __post_init__(self) -> None:
        if not self.profiles:
            raise ValueError("at least one profile is required")
        ids = [p.profile_id for p in self.profiles]
        if len(set(ids)) != len(ids):
            raise ValueError("profile ids must be unique")
        if self.duplicate_window_seconds < 0:
            raise ValueError("duplicate_window_seconds must not be negative")
        if any(delay < 0 for delay in self.callback_retry_delays):
            raise ValueError("callback_retry_delays must not be negative")
        if self.callback_timeout_seconds <= 0:
            raise ValueError("callback_timeout_seconds must be positive")
        if self.page_ttl_minutes <= 0:
            raise ValueError("page_ttl_minutes must be positive")
        if self.public_base_url is not None:
            self.public_base_url = self.public_base_url.rstrip("/")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SimulatorConfig:
        """A config from ``SIMULATOR_*`` variables; a bad value raises ValueError naming it."""
        env = os.environ if environ is None else environ
        reader = _EnvReader(env)
        profile = Profile(
            profile_id=reader.integer("SIMULATOR_PROFILE_ID", DEFAULT_PROFILE_ID),
            server_key=env.get("SIMULATOR_SERVER_KEY", DEFAULT_SERVER_KEY),
            currencies=reader.words("SIMULATOR_CURRENCIES", DEFAULT_CURRENCIES),
            merchant_id=reader.integer("SIMULATOR_MERCHANT_ID", DEFAULT_MERCHANT_ID),
            transaction_limit=reader.decimal(
                "SIMULATOR_TRANSACTION_LIMIT", DEFAULT_TRANSACTION_LIMIT
            ),
        )
        seed_text = env.get("SIMULATOR_SEED")
        return cls(
            profiles=[profile],
            public_base_url=env.get("SIMULATOR_PUBLIC_BASE_URL") or None,
            duplicate_window_seconds=reader.number("SIMULATOR_DUPLICATE_WINDOW_SECONDS", 120.0),
            callback_retry_delays=reader.numbers(
                "SIMULATOR_CALLBACK_RETRY_DELAYS", (1.0, 2.0, 4.0, 8.0, 16.0)
            ),
            callback_timeout_seconds=reader.number("SIMULATOR_CALLBACK_TIMEOUT_SECONDS", 10.0),
            page_ttl_minutes=reader.number("SIMULATOR_PAGE_TTL_MINUTES", 20.0),
            faults=reader.faults("SIMULATOR_FAULTS"),
            seed=None if not seed_text else reader.integer("SIMULATOR_SEED", 0),
            strict_urls=reader.flag("SIMULATOR_STRICT_URLS"),
        )


T = TypeVar("T")


class _EnvReader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _get(self, name: str) -> str | None:
        value = self._env.get(name)
        return value.strip() if value and value.strip() else None

    def integer(self, name: str, default: int) -> int:
        return self._parsed(name, default, int, "an integer")

    def number(self, name: str, default: float) -> float:
        return self._parsed(name, default, float, "a number")

    def decimal(self, name: str, default: Decimal) -> Decimal:
        return self._parsed(name, default, Decimal, "a decimal number")

    def _parsed(self, name: str, default: T, parse: Callable[[str], T], what: str) -> T:
        text = self._get(name)
        if text is None:
            return default
        try:
            return parse(text)
        except (ValueError, InvalidOperation):  # Decimal's own error for text it cannot read
            raise ValueError(f"{name} must be {what}, got {text!r}") from None

    def numbers(self, name: str, default: tuple[float, ...]) -> tuple[float, ...]:
        text = self._env.get(name)
        if text is None:
            return default
        try:
            return tuple(float(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise ValueError(f"{name} must be comma-separated numbers, got {text!r}") from None

    def words(self, name: str, default: frozenset[str]) -> frozenset[str]:
        text = self._get(name)
        if text is None:
            return default
        return frozenset(part.strip().upper() for part in text.split(",") if part.strip())

    def flag(self, name: str) -> bool:
        text = (self._get(name) or "false").lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"{name} must be true or false, got {text!r}")

    def faults(self, name: str) -> Faults:
        text = self._get(name)
        if text is None:
            return Faults()
        try:
            return Faults.model_validate(json.loads(text))
        except (ValueError, ValidationError) as error:
            raise ValueError(f"{name} is not a valid faults JSON object: {error}") from None
