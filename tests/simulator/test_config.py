"""Configuration from code, environment variables and the command line."""

from __future__ import annotations

from decimal import Decimal

import pytest

from paytabs_simulator.__main__ import parse_args
from paytabs_simulator.config import (
    DEFAULT_CURRENCIES,
    DEFAULT_PROFILE_ID,
    DEFAULT_SERVER_KEY,
    Profile,
    SimulatorConfig,
)
from paytabs_simulator.faults import Faults


def test_defaults_match_the_documented_test_profile() -> None:
    config = SimulatorConfig()
    [profile] = config.profiles
    assert (profile.profile_id, profile.server_key) == (987654, "SGJNZ96JLG-JDMKHGRWT9-RWRK2KJNRJ")
    assert profile.currencies == frozenset(
        {"SAR", "AED", "BHD", "EGP", "EUR", "GBP", "JOD", "KWD", "OMR", "QAR", "USD"}
    )
    assert profile.transaction_limit == Decimal(5000)
    assert config.callback_retry_delays == (1.0, 2.0, 4.0, 8.0, 16.0)
    assert config.duplicate_window_seconds == 120
    assert config.faults == Faults()


def test_server_key_is_not_in_repr() -> None:
    assert DEFAULT_SERVER_KEY not in repr(SimulatorConfig())


def test_from_env_reads_simulator_variables() -> None:
    config = SimulatorConfig.from_env(
        {
            "SIMULATOR_PROFILE_ID": "111",
            "SIMULATOR_SERVER_KEY": "SKEY",
            "SIMULATOR_MERCHANT_ID": "42",
            "SIMULATOR_CURRENCIES": "sar, usd",
            "SIMULATOR_TRANSACTION_LIMIT": "99.5",
            "SIMULATOR_PUBLIC_BASE_URL": "https://sim.example/",
            "SIMULATOR_DUPLICATE_WINDOW_SECONDS": "5",
            "SIMULATOR_CALLBACK_RETRY_DELAYS": "0.5,1",
            "SIMULATOR_CALLBACK_TIMEOUT_SECONDS": "3",
            "SIMULATOR_PAGE_TTL_MINUTES": "2",
            "SIMULATOR_SEED": "9",
            "SIMULATOR_STRICT_URLS": "true",
            "SIMULATOR_FAULTS": '{"error_rate": 0.2, "latency_ms": 10}',
        }
    )
    assert config.profiles == [Profile(111, "SKEY", frozenset({"SAR", "USD"}), 42, Decimal("99.5"))]
    assert config.public_base_url == "https://sim.example"
    assert (config.duplicate_window_seconds, config.callback_timeout_seconds) == (5, 3)
    assert config.callback_retry_delays == (0.5, 1.0)
    assert (config.page_ttl_minutes, config.seed, config.strict_urls) == (2, 9, True)
    assert (config.faults.error_rate, config.faults.latency_ms) == (0.2, 10)


def test_from_env_without_variables_gives_defaults() -> None:
    config = SimulatorConfig.from_env({})
    assert config.profiles[0].profile_id == DEFAULT_PROFILE_ID
    assert config.profiles[0].currencies == DEFAULT_CURRENCIES
    assert config.seed is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SIMULATOR_PROFILE_ID", "abc"),
        ("SIMULATOR_TRANSACTION_LIMIT", "lots"),
        ("SIMULATOR_CALLBACK_RETRY_DELAYS", "1,x"),
        ("SIMULATOR_STRICT_URLS", "maybe"),
        ("SIMULATOR_FAULTS", '{"error_rate": 3}'),
        ("SIMULATOR_FAULTS", "not json"),
    ],
)
def test_from_env_names_the_bad_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        SimulatorConfig.from_env({name: value})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"profiles": []},
        {"profiles": [Profile(1, "a"), Profile(1, "b")]},
        {"duplicate_window_seconds": -1},
        {"callback_timeout_seconds": 0},
        {"page_ttl_minutes": 0},
        {"callback_retry_delays": (1.0, -1.0)},
    ],
)
def test_invalid_config_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        SimulatorConfig(**kwargs)  # type: ignore[arg-type]


def test_profile_needs_a_key_and_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="server_key"):
        Profile(1, "")
    with pytest.raises(ValueError, match="transaction_limit"):
        Profile(1, "k", transaction_limit=Decimal(0))


def test_command_line_flags_override_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIMULATOR_FAULTS", raising=False)
    config, host, port, _ = parse_args(
        [
            "--host",
            "localhost",
            "--port",
            "9000",
            "--seed",
            "3",
            "--faults",
            '{"latency_ms": 7}',
            "--error-rate",
            "0.5",
            "--error-phase",
            "after",
            "--down",
        ]
    )
    assert (host, port, config.seed) == ("localhost", 9000, 3)
    faults = config.faults
    assert (faults.latency_ms, faults.error_rate, faults.error_phase, faults.down) == (
        7,
        0.5,
        "after",
        True,
    )
