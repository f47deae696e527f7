"""Typed configuration from the environment (and an optional ``.env`` file).

Every variable of the seed keeps its name, unit and default. Invalid values stop start-up with one
line per problem that names the variable and the rule (:class:`ConfigError`); secret values are
``SecretStr`` and never appear in messages, ``repr`` or logs.

Built once by the entrypoint (``load_settings()``) and passed down; nothing reads the environment
at import time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any, Final, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from paytabs_guard.adapters.paytabs.regions import Region
from paytabs_guard.adapters.paytabs.signature import server_key_problem
from paytabs_guard.setting_types import (
    MIN_PROBE_INTERVAL_MS,
    Ms,
    NetworkList,
    PositiveMs,
    ProxyList,
    SecretList,
    UrlList,
)
from paytabs_guard.setting_values import (
    check_database_url,
    check_redis_url,
    env_file_problem,
    env_name,
    redact_url,
    require_http_url,
    split_list,
)

# PayTabs signs callbacks and return forms with HMAC-SHA256 and nothing else. The setting may only
# confirm that; any other value would be a silent downgrade or a scheme nobody sends.
SUPPORTED_SIGNATURE_ALGORITHMS: Final = frozenset({"sha256"})


class ConfigError(Exception):
    """Configuration that cannot run: one message line per invalid variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


#: RECONCILE_STUCK_AFTER_SECONDS' bound (30 days); reconcile --stuck-after takes the same.
MAX_STUCK_AFTER_SECONDS: Final = 2_592_000

#: Settings whose values are URLs that may carry credentials.
_URL_FIELDS: Final = frozenset(
    {"database_url", "redis_url", "paytabs_base_url", "public_base_url", "events_webhook_urls"}
)


class Settings(BaseSettings):
    """All configuration. Field descriptions are the rules shown in errors and in the docs."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    # --- PayTabs (seed) -------------------------------------------------------------------------
    paytabs_profile_id: int | None = Field(
        None,
        gt=0,
        le=9_223_372_036_854_775_807,  # the database column's BIGINT
        description="PayTabs profile id (a positive integer); required by `serve`",
    )
    paytabs_server_key: SecretStr | None = Field(
        None, description="PayTabs server key (secret); required by `serve`"
    )
    paytabs_region: Region = Field(
        Region.ARE, description="PayTabs region code: " + ", ".join(r.value for r in Region)
    )
    paytabs_webhook_secret: SecretList = Field(
        (),
        description="Keys that may sign callbacks, comma-separated for rotation, and whsec_ "
        "secrets of Standard Webhooks deliveries; without a PayTabs key in it (empty, or only "
        "whsec_ secrets) the server key (PayTabs signs with it)",
    )
    paytabs_timeout: PositiveMs = Field(
        30000,
        description="PayTabs HTTP timeouts, in ms (1-86400000): connecting, and waiting for each "
        "next byte of an answer; capped at 90 % of CIRCUIT_BREAKER_TIMEOUT, which bounds a "
        "whole attempt",
    )
    paytabs_retry_attempts: int = Field(
        3, ge=0, le=10, description="Retries after the first attempt (0-10; 3 = at most 4 attempts)"
    )
    paytabs_retry_delay: Ms = Field(
        1000, description="Base of the exponential backoff with full jitter, in ms (0-86400000)"
    )
    paytabs_retry_max_delay: PositiveMs = Field(
        10000, description="Cap on any single backoff delay, in ms (1-86400000)"
    )
    paytabs_operation_deadline: PositiveMs = Field(
        60000,
        description="Deadline of one PayTabs operation with its retries, in ms (1-86400000): no "
        "retry starts after it (an attempt under way runs to its own timeout)",
    )
    paytabs_retry_budget_percent: int = Field(
        20,
        ge=0,
        le=100,
        description="Retries allowed as a percentage of calls in the window (0-100)",
    )
    paytabs_currency_conversion: bool = Field(
        False,
        description="Accept authorised results charged in another currency (currency conversion "
        "on the PayTabs profile); the charge is recorded and shown. Off: quarantined",
    )
    paytabs_base_url: str | None = Field(
        None, description="Override of the region's PayTabs host (http/https URL), e.g. a simulator"
    )

    # --- Circuit breaker (seed) -----------------------------------------------------------------
    circuit_breaker_timeout: PositiveMs = Field(
        30000,
        description="Call timeout inside the breaker, in ms (1-86400000); a timeout is a failure",
    )
    circuit_breaker_error_threshold: int = Field(
        50, ge=1, le=100, description="Error rate in percent (1-100) at which the breaker opens"
    )
    circuit_breaker_reset_timeout: PositiveMs = Field(
        30000,
        description="Longest open period before a trial call, in ms (1-86400000): the bound of "
        "the "
        "adaptive open period (it starts at CIRCUIT_BREAKER_MIN_OPEN_TIME)",
    )
    circuit_breaker_rolling_timeout: PositiveMs = Field(
        10000, description="Length of the rolling error-rate window, in ms (1-86400000)"
    )
    circuit_breaker_rolling_buckets: int = Field(
        10, ge=1, le=1000, description="Buckets in the window (1-1000; must divide the window)"
    )
    circuit_breaker_volume_threshold: int = Field(
        5,
        ge=1,
        le=1_000_000,
        description="Completed calls in the window before the breaker may open (1-1000000)",
    )
    circuit_breaker_half_open_max_calls: int = Field(
        3,
        ge=1,
        le=100,
        description="Trial calls admitted at once while half-open (1-100); it closes when that "
        "many succeeded with the failed share under the error threshold",
    )
    circuit_breaker_consecutive_failures: int = Field(
        10,
        ge=0,
        le=1000,
        description="Also open after this many failed PayTabs calls in a row, whatever the "
        "window's error rate: a gateway that went down hard is seen in a second, not after its "
        "failures outweigh the window's earlier successes (0-1000; 0 = the rate alone decides)",
    )
    circuit_breaker_stall_after: Ms = Field(
        5000,
        description="Also open when CIRCUIT_BREAKER_VOLUME_THRESHOLD calls have waited this many "
        "ms for PayTabs and it has answered none since they left: a gateway that hangs is seen "
        "then, not at the call timeout (0 = off; only matters below CIRCUIT_BREAKER_TIMEOUT)",
    )
    circuit_breaker_probe_interval: Ms = Field(
        1000,
        description="While open, probe PayTabs (a harmless query) every this many ms (0, or "
        "50 and more), jittered, and four times as often while creates are being turned away; "
        "an answer moves the breaker to half-open at once (0 = no probes)",
    )
    circuit_breaker_min_open_time: PositiveMs = Field(
        2000,
        description="First open period after a trip, in ms (> 0; set, at most "
        "CIRCUIT_BREAKER_RESET_TIMEOUT), randomised +/-20 %; doubled after each failed trial up "
        "to CIRCUIT_BREAKER_RESET_TIMEOUT (spread over its last 20 %). While probes get no "
        "answer, the timer's trial waits for that spread bound instead",
    )
    circuit_breaker_return_rate: int = Field(
        50,
        ge=0,
        le=100_000,
        description="After an outage, creates start in turns, oldest first (the ones the "
        "breaker turned away or held, then new ones), at this many per second per worker, "
        "while any turned-away create is still waiting (0-100000; 0 = no turns: all at once)",
    )
    prefer_wait_max_seconds: int = Field(
        30,
        ge=0,
        le=300,
        description="Longest a request with 'Prefer: wait=N' is held while the breaker is open, "
        "in s (0-300; 0 = never hold)",
    )
    prefer_wait_max_held: int = Field(
        500,
        ge=0,
        le=100_000,
        description="Requests held at once per worker for 'Prefer: wait' (0-100000); beyond "
        "that they get the fast 503",
    )
    circuit_breaker_shared: bool = Field(
        True, description="Share breaker state across instances through Redis when REDIS_URL is set"
    )

    # --- Webhook security (seed) ----------------------------------------------------------------
    webhook_signature_algorithm: str = Field(
        "sha256", description="Callback signature algorithm; PayTabs uses sha256 (the only value)"
    )
    webhook_timestamp_tolerance: int = Field(
        300,
        gt=0,
        le=86400,
        description="Max age and future skew of signed timestamps (Standard Webhooks), s (1-86400)",
    )
    paytabs_ip_whitelist: NetworkList = Field(
        (), description="IPs/CIDRs (IPv4, IPv6) allowed to send callbacks; empty = no restriction"
    )
    trusted_proxies: ProxyList = Field(
        (), description="Proxies whose X-Forwarded-For is believed (addresses/CIDRs); empty = none"
    )
    webhook_max_body_bytes: int = Field(
        65536,
        ge=1024,
        le=10_485_760,
        description="Largest callback body accepted, in bytes (1024-10485760)",
    )

    # --- Service ---------------------------------------------------------------------------------
    database_url: str = Field(
        "sqlite+aiosqlite:///./paytabs-guard.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///file or postgresql+asyncpg://...",
    )
    redis_url: str | None = Field(
        None,
        description="Redis URL (redis://, rediss:// or unix://) for shared state and events; "
        "unset = off",
    )
    public_base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Public URL of this service, used for PayTabs callback and return URLs",
    )
    api_keys: SecretList = Field(
        (), description="Bearer API keys for the merchant API, comma-separated for rotation"
    )
    admin_api_keys: SecretList = Field(
        (), description="Bearer API keys with the admin scope (breaker control), comma-separated"
    )
    api_max_body_bytes: int = Field(
        65536,
        ge=1024,
        le=10_485_760,
        description="Largest merchant API request body accepted, in bytes (1024-10485760)",
    )
    paypage_ttl_minutes: int = Field(
        20, ge=1, le=1440, description="Minutes a hosted payment page stays valid (1-1440)"
    )
    reconcile_interval_seconds: int = Field(
        60,
        ge=1,
        le=86400,
        description="Seconds between reconciliation passes inside `serve` (1-86400)",
    )
    reconcile_stuck_after_seconds: int = Field(
        300,
        ge=1,
        le=MAX_STUCK_AFTER_SECONDS,
        description="Undecided payments older than this (s) are asked about again "
        "(1-2592000, 30 days)",
    )
    stats_cache_seconds: int = Field(
        10,
        ge=0,
        le=3600,
        description="How long GET /payments/v2/stats answers are cached (s, 0-3600)",
    )

    # --- Events ----------------------------------------------------------------------------------
    events_redis_stream: str = Field(
        "paytabs-guard:events",
        min_length=1,
        description="Redis Stream that lifecycle events are added to (when REDIS_URL is set)",
    )
    events_webhook_urls: UrlList = Field(
        (), description="Merchant URLs that receive every event as a signed Standard Webhook"
    )
    events_webhook_secret: SecretList = Field(
        (), description="whsec_ secret(s) that sign outgoing events; required with the URLs"
    )
    events_max_attempts: int = Field(
        8,
        ge=1,
        le=100,
        description="Delivery attempts per event and sink before a dead letter (1-100); a "
        "sink that cannot be reached is not an attempt",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level: debug, info, warning or error"
    )

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # The password in a DATABASE_URL or REDIS_URL is as secret as the server key: repr()
        # (and str(), which uses this) shows the URLs with it masked.
        for name, value in super().__repr_args__():
            if name in _URL_FIELDS and isinstance(value, str):
                yield name, redact_url(value)
            elif name in _URL_FIELDS and isinstance(value, tuple):
                yield name, tuple(redact_url(str(item)) for item in value)
            else:
                yield name, value

    # --- validators ------------------------------------------------------------------------------
    @field_validator("events_webhook_urls", mode="before")
    @classmethod
    def _url_list(cls, value: object) -> object:
        items = split_list(value)
        if isinstance(items, list | tuple):
            for item in items:
                require_http_url(str(item))
            if len({str(item).strip() for item in items}) < len(items):
                # a sink is named by its URL: a URL twice would be one sink sent to twice
                raise ValueError("the same URL is listed twice")
        return items

    @field_validator(
        "paytabs_webhook_secret",
        "api_keys",
        "admin_api_keys",
        "events_webhook_secret",
        mode="before",
    )
    @classmethod
    def _secret_list(cls, value: object) -> object:
        return split_list(value)

    @field_validator("paytabs_region", mode="before")
    @classmethod
    def _region(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("webhook_signature_algorithm")
    @classmethod
    def _algorithm(cls, value: str) -> str:
        normalised = value.strip().lower().replace("-", "")
        if normalised not in SUPPORTED_SIGNATURE_ALGORITHMS:
            raise ValueError(
                f"PayTabs signs with sha256 only; {value!r} is not an algorithm it uses"
            )
        return normalised

    @field_validator("paytabs_base_url", "public_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else require_http_url(value, base=True).rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        check_database_url(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return check_redis_url(value) if value else None

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Settings:
        if self.circuit_breaker_rolling_timeout % self.circuit_breaker_rolling_buckets:
            raise ValueError(
                "CIRCUIT_BREAKER_ROLLING_TIMEOUT: "
                f"{self.circuit_breaker_rolling_timeout} ms is not divisible by "
                f"CIRCUIT_BREAKER_ROLLING_BUCKETS={self.circuit_breaker_rolling_buckets}"
            )
        if self.events_webhook_urls and not self.events_webhook_secret:
            raise ValueError(
                "EVENTS_WEBHOOK_SECRET: required when EVENTS_WEBHOOK_URLS is set "
                "(a whsec_ secret, at least 24 random bytes in base64)"
            )
        if 0 < self.circuit_breaker_probe_interval < MIN_PROBE_INTERVAL_MS:
            raise ValueError(
                f"CIRCUIT_BREAKER_PROBE_INTERVAL: {self.circuit_breaker_probe_interval} ms "
                "would flood a gateway that is down; use 0 (no probes) or "
                f"{MIN_PROBE_INTERVAL_MS} or more"
            )
        if (
            "circuit_breaker_min_open_time" in self.model_fields_set
            and self.circuit_breaker_min_open_time > self.circuit_breaker_reset_timeout
        ):
            # Set above the longest open period, it would be cut to it and do nothing. Its
            # default (2 s) is only capped, so a short reset timeout alone stays valid.
            raise ValueError(
                "CIRCUIT_BREAKER_MIN_OPEN_TIME: must be <= CIRCUIT_BREAKER_RESET_TIMEOUT, the "
                f"longest open period ({self.circuit_breaker_min_open_time} > "
                f"{self.circuit_breaker_reset_timeout}); above it, it would do nothing"
            )
        if self.paytabs_retry_max_delay < self.paytabs_retry_delay:
            raise ValueError(
                "PAYTABS_RETRY_MAX_DELAY: must be >= PAYTABS_RETRY_DELAY "
                f"({self.paytabs_retry_max_delay} < {self.paytabs_retry_delay})"
            )
        return self

    # --- derived values -----------------------------------------------------------------------
    @property
    def webhook_secrets(self) -> tuple[SecretStr, ...]:
        """Keys that may sign PayTabs callbacks and returns, then Standard Webhooks' ``whsec_``
        secrets: the configured list, led by the server key when it names no PayTabs key (a
        list of ``whsec_`` secrets alone refused every callback and return)."""
        configured = self.paytabs_webhook_secret
        if any(not secret.get_secret_value().startswith("whsec_") for secret in configured):
            return configured
        server_key = (self.paytabs_server_key,) if self.paytabs_server_key else ()
        return (*server_key, *configured)

    @property
    def longest_paytabs_write(self) -> timedelta:
        """How long after a write to PayTabs starts PayTabs may still receive it: the last
        retry starts by the operation deadline and runs to the call timeout. Bounds the page
        PayTabs may have opened (expiry) and a request's hold on its Idempotency-Key."""
        return timedelta(
            milliseconds=self.paytabs_operation_deadline + self.circuit_breaker_timeout
        )

    def require_paytabs_credentials(self) -> tuple[int, SecretStr]:
        """The profile id and server key, or a ConfigError naming what is missing."""
        problems = []
        if self.paytabs_profile_id is None:
            problems.append("PAYTABS_PROFILE_ID: required (your PayTabs profile id)")
        key = self.paytabs_server_key
        if key is None or not key.get_secret_value().strip():  # blanks sign nothing real
            problems.append("PAYTABS_SERVER_KEY: required (your PayTabs server key)")
        elif (problem := server_key_problem(key.get_secret_value())) is not None:
            problems.append(f"PAYTABS_SERVER_KEY: {problem}")
        if problems or self.paytabs_profile_id is None or self.paytabs_server_key is None:
            raise ConfigError(problems)
        return self.paytabs_profile_id, self.paytabs_server_key


def _describe(error: Mapping[str, Any]) -> str:
    location = error.get("loc") or ()
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if not location:
        # cross-field rules name their variables themselves
        return message
    field = str(location[0])
    info = Settings.model_fields.get(field)
    rule = info.description if info is not None and info.description else ""
    return f"{env_name(field)}: {message}" + (f" (rule: {rule})" if rule else "")


def load_settings(
    env: Mapping[str, str] | None = None, *, env_file: str | None = ".env"
) -> Settings:
    """Build settings from ``env`` (default: the process environment) or raise ConfigError."""
    try:
        if env is None:
            return Settings(_env_file=env_file)
        values = {key.lower(): value for key, value in env.items()}
        known = {name: values[name] for name in Settings.model_fields if name in values}
        # model_validate skips the environment sources: the mapping is the only input.
        return Settings.model_validate(known)
    except ValidationError as error:
        raise ConfigError([_describe(item) for item in error.errors()]) from None
    except (OSError, UnicodeDecodeError) as error:  # the .env file; its text is never shown
        raise ConfigError([env_file_problem(env_file, error)]) from None
