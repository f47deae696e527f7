"""Every configuration rule: defaults, parsing, and one clear line per invalid variable."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from datetime import timedelta

import pytest

from paytabs_guard.adapters.paytabs.regions import Region
from paytabs_guard.setting_values import redact_url
from paytabs_guard.settings import ConfigError, Settings, load_settings


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    return caught.value.problems


def test_seed_defaults_keep_their_names_units_and_values() -> None:
    settings = load_settings({})
    assert settings.paytabs_region is Region.ARE
    assert settings.paytabs_timeout == 30000
    assert settings.paytabs_retry_attempts == 3
    assert settings.paytabs_retry_delay == 1000
    assert settings.circuit_breaker_timeout == 30000
    assert settings.circuit_breaker_error_threshold == 50
    assert settings.circuit_breaker_reset_timeout == 30000
    assert settings.circuit_breaker_rolling_timeout == 10000
    assert settings.circuit_breaker_rolling_buckets == 10
    assert settings.circuit_breaker_volume_threshold == 5
    assert settings.webhook_signature_algorithm == "sha256"
    assert settings.webhook_timestamp_tolerance == 300
    assert settings.paytabs_ip_whitelist == ()
    assert settings.database_url.startswith("sqlite+aiosqlite:///")


@pytest.mark.parametrize(
    ("env", "variable", "rule"),
    [
        ({"PAYTABS_TIMEOUT": "abc"}, "PAYTABS_TIMEOUT", "valid integer"),
        ({"PAYTABS_TIMEOUT": "-1"}, "PAYTABS_TIMEOUT", "greater than 0"),
        ({"PAYTABS_RETRY_ATTEMPTS": "-1"}, "PAYTABS_RETRY_ATTEMPTS", "greater than or equal to 0"),
        ({"PAYTABS_RETRY_DELAY": "1.5"}, "PAYTABS_RETRY_DELAY", "valid integer"),
        ({"PAYTABS_PROFILE_ID": "0"}, "PAYTABS_PROFILE_ID", "greater than 0"),
        (
            {"CIRCUIT_BREAKER_ERROR_THRESHOLD": "101"},
            "CIRCUIT_BREAKER_ERROR_THRESHOLD",
            "less than or equal to 100",
        ),
        ({"CIRCUIT_BREAKER_RESET_TIMEOUT": "0"}, "CIRCUIT_BREAKER_RESET_TIMEOUT", "greater than 0"),
        ({"PAYTABS_REGION": "XYZ"}, "PAYTABS_REGION", "'ARE'"),
        ({"PAYTABS_IP_WHITELIST": "10.0.0.1/8"}, "PAYTABS_IP_WHITELIST", "host bits set"),
        ({"PAYTABS_IP_WHITELIST": "300.1.1.1"}, "PAYTABS_IP_WHITELIST", "not an IPv4/IPv6"),
        ({"PAYTABS_IP_WHITELIST": "2001:db8::1/32"}, "PAYTABS_IP_WHITELIST", "host bits set"),
        ({"TRUSTED_PROXIES": "*"}, "TRUSTED_PROXIES", "every address"),
        (
            {"CIRCUIT_BREAKER_ROLLING_TIMEOUT": "10001"},
            "CIRCUIT_BREAKER_ROLLING_TIMEOUT",
            "not divisible by CIRCUIT_BREAKER_ROLLING_BUCKETS",
        ),
        ({"WEBHOOK_SIGNATURE_ALGORITHM": "md5"}, "WEBHOOK_SIGNATURE_ALGORITHM", "sha256 only"),
        ({"WEBHOOK_SIGNATURE_ALGORITHM": "sha1"}, "WEBHOOK_SIGNATURE_ALGORITHM", "sha256 only"),
        ({"WEBHOOK_TIMESTAMP_TOLERANCE": "0"}, "WEBHOOK_TIMESTAMP_TOLERANCE", "greater than 0"),
        ({"PAYTABS_BASE_URL": "ftp://x"}, "PAYTABS_BASE_URL", "http:// or https://"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL", "sqlite+aiosqlite://"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL", "redis://"),
        ({"EVENTS_WEBHOOK_URLS": "ftp://x"}, "EVENTS_WEBHOOK_URLS", "http:// or https://"),
        (
            {"EVENTS_WEBHOOK_URLS": "https://shop.example/hooks"},
            "EVENTS_WEBHOOK_SECRET",
            "required when EVENTS_WEBHOOK_URLS is set",
        ),
        ({"RECONCILE_INTERVAL_SECONDS": "0"}, "RECONCILE_INTERVAL_SECONDS", "greater than"),
        # URLs a client could not connect to, found at start-up, not as failed calls later
        ({"PAYTABS_BASE_URL": "http://127.0.0.1:99999"}, "PAYTABS_BASE_URL", "port must be"),
        ({"PAYTABS_BASE_URL": "http://exa mple.com"}, "PAYTABS_BASE_URL", "host name"),
        ({"PUBLIC_BASE_URL": "https://shop.example/b?x=1"}, "PUBLIC_BASE_URL", "no query"),
        ({"PUBLIC_BASE_URL": "https://shop.example/#frag"}, "PUBLIC_BASE_URL", "no query"),
        ({"REDIS_URL": "redis://:pw@127.0.0.1:99999/0"}, "REDIS_URL", "port must be"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/notadb"}, "REDIS_URL", "database number"),
        ({"EVENTS_WEBHOOK_URLS": "https://:0"}, "EVENTS_WEBHOOK_URLS", "host name"),
        (
            {"EVENTS_WEBHOOK_URLS": "https://shop.example/h?t=1,https://shop.example/h?t=1"},
            "EVENTS_WEBHOOK_URLS",
            "the same URL is listed twice",
        ),
        # numbers past what the database column or a date can hold
        (
            {"PAYTABS_PROFILE_ID": "99999999999999999999999"},
            "PAYTABS_PROFILE_ID",
            "less than or equal to",
        ),
        (
            {"RECONCILE_STUCK_AFTER_SECONDS": "99999999999999"},
            "RECONCILE_STUCK_AFTER_SECONDS",
            "less than or equal to 2592000",
        ),
        (
            {"CIRCUIT_BREAKER_MIN_OPEN_TIME": "40000"},
            "CIRCUIT_BREAKER_MIN_OPEN_TIME",
            "<= CIRCUIT_BREAKER_RESET_TIMEOUT",
        ),
        (
            {"PAYTABS_RETRY_DELAY": "5000", "PAYTABS_RETRY_MAX_DELAY": "1000"},
            "PAYTABS_RETRY_MAX_DELAY",
            ">= PAYTABS_RETRY_DELAY",
        ),
    ],
)
def test_invalid_value_names_the_variable_and_the_rule(
    env: dict[str, str], variable: str, rule: str
) -> None:
    found = problems(env)
    assert len(found) == 1
    assert found[0].startswith(f"{variable}: ")
    assert rule in found[0]
    assert "\n" not in found[0]


def test_networks_accept_ipv4_ipv6_and_bare_addresses() -> None:
    settings = load_settings(
        {
            "PAYTABS_IP_WHITELIST": " 10.0.0.0/8, 2001:db8::/32 ,203.0.113.7",
            "TRUSTED_PROXIES": "::1",
        }
    )
    assert settings.paytabs_ip_whitelist == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("203.0.113.7/32"),
    )
    assert settings.trusted_proxies == (ipaddress.ip_network("::1/128"),)


def test_region_is_case_insensitive_and_qatar_is_known() -> None:
    assert load_settings({"PAYTABS_REGION": "qat"}).paytabs_region is Region.QAT


def test_webhook_secret_defaults_to_the_server_key_and_accepts_a_rotation_list() -> None:
    only_key = load_settings({"PAYTABS_SERVER_KEY": "S-KEY"})
    assert [s.get_secret_value() for s in only_key.webhook_secrets] == ["S-KEY"]
    rotating = load_settings({"PAYTABS_SERVER_KEY": "S-KEY", "PAYTABS_WEBHOOK_SECRET": "new, old"})
    assert [s.get_secret_value() for s in rotating.webhook_secrets] == ["new", "old"]
    # whsec_ secrets are no PayTabs keys: listed alone, they leave the server key in place.
    relay = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    relay_only = load_settings({"PAYTABS_SERVER_KEY": "S-KEY", "PAYTABS_WEBHOOK_SECRET": relay})
    assert [s.get_secret_value() for s in relay_only.webhook_secrets] == ["S-KEY", relay]


def test_secrets_never_appear_in_repr_or_errors() -> None:
    settings = load_settings(
        {"PAYTABS_SERVER_KEY": "S-TOPSECRET", "API_KEYS": "k-TOPSECRET", "PAYTABS_PROFILE_ID": "1"}
    )
    assert "TOPSECRET" not in repr(settings)
    assert "TOPSECRET" not in str(settings.model_dump())
    found = problems({"PAYTABS_SERVER_KEY": "S-TOPSECRET", "PAYTABS_TIMEOUT": "x"})
    assert "TOPSECRET" not in "".join(found)


def test_passwords_in_database_and_redis_urls_never_appear_in_repr() -> None:
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql+asyncpg://guard:DB-TOPSECRET@db:5432/payments",
            "REDIS_URL": "redis://:REDIS-TOPSECRET@redis:6379/0",
            "EVENTS_WEBHOOK_URLS": "https://hook:HOOK-TOPSECRET@merchant.example/events",
            "EVENTS_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        }
    )
    shown = repr(settings) + str(settings)
    assert "TOPSECRET" not in shown
    assert "database_url='postgresql+asyncpg://guard:***@db:5432/payments'" in shown
    assert "redis_url='redis://:***@redis:6379/0'" in shown
    # the values themselves are untouched: the service still connects with them
    assert settings.database_url == "postgresql+asyncpg://guard:DB-TOPSECRET@db:5432/payments"
    found = problems({"PUBLIC_BASE_URL": "ftp://user:URL-TOPSECRET@host"})
    assert "TOPSECRET" not in "".join(found)


def test_missing_credentials_are_named() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}).require_paytabs_credentials()
    assert [p.split(":")[0] for p in caught.value.problems] == [
        "PAYTABS_PROFILE_ID",
        "PAYTABS_SERVER_KEY",
    ]
    blank = load_settings({"PAYTABS_PROFILE_ID": "1", "PAYTABS_SERVER_KEY": "   "})
    with pytest.raises(ConfigError) as caught:
        blank.require_paytabs_credentials()
    assert caught.value.problems == ["PAYTABS_SERVER_KEY: required (your PayTabs server key)"]


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(ValueError, match="frozen"):
        settings.paytabs_timeout = 1  # type: ignore[misc]  # the point: assignment must fail


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path: object) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "paytabs_guard.entrypoints.cli", "config", "check"],
        env={"PAYTABS_TIMEOUT": "-5", "PAYTABS_SERVER_KEY": "S-TOPSECRET", "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
        cwd=str(tmp_path),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("configuration error: PAYTABS_TIMEOUT: ")
    assert "Traceback" not in result.stderr
    assert "TOPSECRET" not in result.stderr + result.stdout


def test_every_field_has_a_rule_for_the_docs() -> None:
    assert all(field.description for field in Settings.model_fields.values())


def test_a_probe_interval_that_would_flood_a_down_gateway_is_refused() -> None:
    found = problems({"CIRCUIT_BREAKER_PROBE_INTERVAL": "1"})
    assert any(p.startswith("CIRCUIT_BREAKER_PROBE_INTERVAL") for p in found), found
    assert (
        load_settings({"CIRCUIT_BREAKER_PROBE_INTERVAL": "0"}).circuit_breaker_probe_interval == 0
    )
    assert (
        load_settings({"CIRCUIT_BREAKER_PROBE_INTERVAL": "50"}).circuit_breaker_probe_interval == 50
    )


def test_a_duration_past_a_day_is_a_typo_and_refused() -> None:
    found = problems({"CIRCUIT_BREAKER_RESET_TIMEOUT": str(10**15)})
    assert any("CIRCUIT_BREAKER_RESET_TIMEOUT" in p for p in found), found


def test_a_short_reset_timeout_alone_caps_the_default_first_open_period() -> None:
    # The first open period's default (2 s) is above a 1 s reset timeout: not an error, the
    # breaker's own cap applies. Only a first period set above the longest one is refused.
    settings = load_settings({"CIRCUIT_BREAKER_RESET_TIMEOUT": "1000"}, env_file=None)
    assert settings.circuit_breaker_reset_timeout == 1000
    equal = {"CIRCUIT_BREAKER_RESET_TIMEOUT": "1000", "CIRCUIT_BREAKER_MIN_OPEN_TIME": "1000"}
    assert load_settings(equal, env_file=None).circuit_breaker_min_open_time == 1000


def test_a_token_in_a_webhook_urls_query_is_never_echoed() -> None:
    found = problems({"EVENTS_WEBHOOK_URLS": "hxxps://hooks.example/in?token=SUPERSECRETPW"})
    assert len(found) == 1
    assert "SUPERSECRETPW" not in found[0]
    assert "hooks.example" in found[0]  # still says which URL


def test_the_cli_bound_of_stuck_after_is_the_settings_one() -> None:
    from paytabs_guard.entrypoints.cli import MAX_STUCK_AFTER_SECONDS as cli_bound
    from paytabs_guard.settings import MAX_STUCK_AFTER_SECONDS

    assert cli_bound == MAX_STUCK_AFTER_SECONDS


def test_an_idempotency_key_outlasts_the_longest_request_the_settings_allow() -> None:
    from paytabs_guard.bootstrap import key_lease_seconds

    defaults = load_settings({})
    assert defaults.longest_paytabs_write == timedelta(seconds=90)  # 60 s deadline + 30 s call
    assert key_lease_seconds(defaults) == 210.0
    # A longer deadline: a create still running at 125 s was taken over by its retry (a
    # second payment) with the fixed 120 s lease; the lease now grows with the deadline.
    slow = load_settings({"PAYTABS_OPERATION_DEADLINE": "100000"})
    assert key_lease_seconds(slow) == 2 * 130 + 30


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite+aiosqlite:////var/lib/guard/x.db", "sqlite+aiosqlite:////var/lib/guard/x.db"),
        ("sqlite+aiosqlite:///./rel/x.db", "sqlite+aiosqlite:///./rel/x.db"),
        ("postgresql+asyncpg://u:pw@h:5432/db?ssl=x", "postgresql+asyncpg://u:***@h:5432/db?***"),
        ("https://hooks.example/in?token=abc", "https://hooks.example/in?***"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ],
)
def test_a_redacted_url_keeps_everything_but_its_secrets(url: str, shown: str) -> None:
    # a file URL without a host lost its slashes: ////var/lib/x.db was shown as //var/lib/x.db
    assert redact_url(url) == shown
