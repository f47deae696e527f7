"""The library's face: what ``import paytabs_guard`` offers is pinned, needs only the core
dependencies, and the README's example runs end to end against the simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

import paytabs_guard

ROOT = Path(__file__).resolve().parents[2]

# Adding a name is a feature; removing or renaming one breaks users. Change this list on purpose.
PUBLIC = [
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
    "sign_callback",
    "verify_callback",
    "verify_return",
    "counts_against_gateway",
]

SERVICE_ONLY = (
    "fastapi", "starlette", "sqlalchemy", "aiosqlite", "asyncpg", "alembic", "redis",
    "structlog", "prometheus_client", "pydantic_settings", "uvicorn", "opentelemetry",
)  # fmt: skip


def test_the_public_api_is_pinned() -> None:
    assert sorted(paytabs_guard.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(paytabs_guard, name) is not None
    assert isinstance(paytabs_guard.__version__, str)
    assert paytabs_guard.__version__.count(".") >= 2


def test_the_readme_tells_what_each_public_error_means() -> None:
    """Each exception a library user can catch is named in the README's library section (it
    says what to do next): InvalidSignature, what a forged callback raises, was not there."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Using it as a library") : readme.index("## Numbers")]
    errors = [
        name
        for name in paytabs_guard.__all__
        if isinstance(value := getattr(paytabs_guard, name), type) and issubclass(value, Exception)
    ]
    assert "InvalidSignature" in errors
    assert [name for name in errors if f"`{name}`" not in section] == []


def test_the_readme_and_the_docstring_say_a_cancelled_write_may_have_been_taken() -> None:
    """``asyncio.wait_for`` around a refund is the first thing a newcomer writes to bound it;
    a cut there is no AmbiguousGatewayError and no query settles it, so a retry on the
    TimeoutError may refund twice. Nothing said so."""
    readme = (ROOT / "README.md").read_text()
    section = " ".join(readme[readme.index("## Using it as a library") :].split())
    assert "`asyncio.wait_for`, a cancelled task" in section
    assert "query the cart (`query_cart`) before sending it again" in section
    assert "asyncio.wait_for" in (paytabs_guard.PayTabs.__doc__ or "")


def test_importing_the_library_loads_nothing_of_the_service() -> None:
    probe = (
        "import json, sys, paytabs_guard; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = json.loads(
        subprocess.run(  # noqa: S603 - our own commands
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout
    )
    assert not set(SERVICE_ONLY) & set(loaded)


def test_one_line_gives_the_resilient_client_with_production_defaults() -> None:
    paytabs = paytabs_guard.PayTabs(profile_id=1, server_key="S-secret", region="ARE")
    assert paytabs.client.base_url == "https://secure.paytabs.com"
    assert set(paytabs.registry.names()) == {"create", "query", "follow_up", "token"}
    config = paytabs.registry.config
    assert config.probe_interval == 1.0  # recovery by probes, not only by a timer
    assert config.min_open_time is not None
    assert config.open_jitter > 0
    assert "S-secret" not in repr(paytabs.client.__dict__)


@pytest.mark.timeout(120)
def test_the_library_example_runs_against_the_simulator() -> None:
    done = subprocess.run(  # noqa: S603 - our own commands
        [sys.executable, str(ROOT / "examples" / "library_quickstart.py")],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "paid: " in done.stdout
    assert " A\n" in done.stdout  # authorised
    assert "refunded 50.00 SAR" in done.stdout


@pytest.mark.timeout(600)
def test_the_wheel_is_the_library_and_installs_without_the_service(tmp_path: Path) -> None:
    """Build the wheel, check what is in it, install it with only the core dependencies."""
    python = sys.executable
    wheels = tmp_path / "wheels"
    subprocess.run(  # noqa: S603 - our own commands
        [python, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("paytabs_guard-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "paytabs_guard/paytabs.py" in names
    assert not [n for n in names if "/bench/" in n or "/chaos/" in n or n.endswith("bench.py")]

    env_dir = tmp_path / "core"
    venv.create(env_dir, with_pip=True)
    core_python = str(env_dir / "bin" / "python")
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(  # noqa: S603 - our own commands
        [core_python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-c", str(ROOT / "constraints.txt"), str(wheel)],
        check=True, capture_output=True, timeout=300, env=environment,
    )  # fmt: skip
    check = (
        "import importlib.util as u; from paytabs_guard import PayTabs; "
        f"missing = [m for m in {SERVICE_ONLY!r} if u.find_spec(m) is None]; "
        "print(len(missing))"
    )
    done = subprocess.run(  # noqa: S603 - our own commands
        [core_python, "-c", check], capture_output=True, text=True, env=environment, check=True
    )
    assert done.stdout.strip() == str(len(SERVICE_ONLY))  # none of the service is installed
    cli = subprocess.run(  # noqa: S603 - our own commands
        [str(env_dir / "bin" / "paytabs-guard"), "config", "check"],
        capture_output=True, text=True, env=environment, check=False,
    )  # fmt: skip
    assert cli.returncode == 2
    assert "paytabs-guard[service" in cli.stderr
    assert "Traceback" not in cli.stderr

    # With the simulator extra alone: the library's example runs (it starts a simulator and a
    # callback endpoint), and so does `paytabs-guard simulator`, as the example says.
    subprocess.run(  # noqa: S603 - our own commands
        [core_python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-c", str(ROOT / "constraints.txt"), f"{wheel}[simulator]"],
        check=True, capture_output=True, timeout=300, env=environment,
    )  # fmt: skip
    example = subprocess.run(  # noqa: S603 - our own commands
        [core_python, str(ROOT / "examples" / "library_quickstart.py")],
        capture_output=True, text=True, env=environment, check=False, timeout=100,
    )  # fmt: skip
    assert example.returncode == 0, example.stderr
    assert "refunded 50.00 SAR" in example.stdout
    simulator = subprocess.run(  # noqa: S603 - our own commands
        [str(env_dir / "bin" / "paytabs-guard"), "simulator", "--help"],
        capture_output=True, text=True, env=environment, check=False,
    )  # fmt: skip
    assert simulator.returncode == 0, simulator.stderr
    bench = subprocess.run(  # noqa: S603 - our own commands
        [str(env_dir / "bin" / "paytabs-guard"), "bench", "breaker"],
        capture_output=True, text=True, env=environment, check=False,
    )  # fmt: skip
    assert bench.returncode == 2
    assert "checkout of the repository" in bench.stderr


def test_signing_takes_the_key_as_the_client_does_and_a_bad_body_is_a_value_error() -> None:
    # PayTabs(server_key="...") takes a plain string; the signing helpers wanted a SecretStr
    # ("'str' object has no attribute 'get_secret_value'"), and a signed body that was not
    # JSON escaped as json.JSONDecodeError where the docstring promised a ValueError kind.
    from pydantic import SecretStr

    body = b'{"tran_ref": "TST1", "cart_id": "c1"}'
    signature = paytabs_guard.sign_callback(body, "S-secret")
    assert signature == paytabs_guard.sign_callback(body, SecretStr("S-secret"))
    paytabs_guard.verify_callback(body, signature, ["S-secret"])
    with pytest.raises(paytabs_guard.InvalidSignature):
        paytabs_guard.verify_callback(body, signature, ["another"])
    client = paytabs_guard.PayTabs(profile_id=1, server_key="S-secret")
    not_json = b"tran_ref=TST1"
    with pytest.raises(ValueError, match="Expecting value"):
        client.verify_callback(not_json, paytabs_guard.sign_callback(not_json, "S-secret"))
    with pytest.raises(ValueError, match="validation error"):
        client.verify_callback(b"[]", paytabs_guard.sign_callback(b"[]", "S-secret"))


def test_the_distribution_says_it_is_typed_and_under_which_license() -> None:
    """PyPI and the tools that read a wheel's metadata learn from its classifiers that
    ``py.typed`` ships; the wheel had none at all (only ``License: MIT``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    classifiers = project.get("classifiers", [])
    assert "Typing :: Typed" in classifiers
    assert (ROOT / "src" / "paytabs_guard" / "py.typed").is_file()
    assert project["license"] == {"text": "MIT"}
    assert "License :: OSI Approved :: MIT License" in classifiers
    python = project["requires-python"].removeprefix(">=")
    assert f"Programming Language :: Python :: {python}" in classifiers
