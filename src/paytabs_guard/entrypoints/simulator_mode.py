"""``serve --simulator``: the simulator as a child process, and the variables that point the
service at it, with a warning for each setting of the operator's that they replace."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Final

import httpx
from pydantic import SecretStr

SIMULATOR_PROFILE_ID: Final = "987654"
SIMULATOR_START_SECONDS: Final = 15.0

#: What ``--simulator`` sets in place of the operator's value, and why it must.
_REPLACED: Final = {
    "PUBLIC_BASE_URL": "the simulator calls back and sends the browser to this service",
    "PAYTABS_BASE_URL": "calls go to the simulator",
    "PAYTABS_PROFILE_ID": "the simulator's own profile",
    "PAYTABS_SERVER_KEY": "the simulator's own key",
}


@contextlib.contextmanager
def simulator_process(port: int) -> Iterator[str]:
    """A simulator child process on loopback ``port``; yields its base URL once it answers."""
    base_url = f"http://127.0.0.1:{port}"
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
        # Warnings and errors only: its plain uvicorn lines would interleave with our JSON logs.
        [
            sys.executable,
            "-m",
            "paytabs_simulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + SIMULATOR_START_SECONDS
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"the simulator exited with code {child.returncode}")
            try:
                if httpx.get(f"{base_url}/_sim/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the simulator did not start in time")
            time.sleep(0.1)
        yield base_url
    finally:
        child.terminate()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def simulator_environment(
    env: Mapping[str, str], simulator_url: str, service_url: str
) -> dict[str, str]:
    """The variables that point the service at a simulator (an API key and an admin key, for
    the console, are made where none is set)."""
    from paytabs_simulator.config import DEFAULT_SERVER_KEY

    changes = {
        "PAYTABS_BASE_URL": simulator_url,
        "PAYTABS_PROFILE_ID": SIMULATOR_PROFILE_ID,
        "PAYTABS_SERVER_KEY": DEFAULT_SERVER_KEY,
        "PUBLIC_BASE_URL": service_url,
    }
    if not env.get("API_KEYS"):
        changes["API_KEYS"] = f"demo_{secrets.token_urlsafe(18)}"
    if not env.get("ADMIN_API_KEYS"):
        changes["ADMIN_API_KEYS"] = f"demo_admin_{secrets.token_urlsafe(18)}"
    return changes


def simulator_webhook_secret(configured: Sequence[SecretStr]) -> tuple[str, list[str]]:
    """PAYTABS_WEBHOOK_SECRET for a run against the simulator, and what to warn about.

    A configured list replaces the server key as the keys that verify PayTabs callbacks, and
    the simulator signs its callbacks with its own server key: passed on as it is, the list
    would make every simulated callback a 401. That is why ``--simulator`` used to blank the
    variable, which also dropped the ``whsec_`` secrets of Standard Webhooks deliveries (from
    a relay, not from PayTabs) without a word. So the simulator's key comes first and the
    ``whsec_`` secrets are kept, as the IP allow-list and trusted proxies are; other keys are a
    real profile's PayTabs keys, which no simulated callback carries: left out, with a warning.
    """
    from paytabs_guard.adapters.webhooks import standard
    from paytabs_simulator.config import DEFAULT_SERVER_KEY

    values = [secret.get_secret_value() for secret in configured]
    kept = [value for value in values if value.startswith(standard.SECRET_PREFIX)]
    warnings = []
    if dropped := len(values) - len(kept):
        warnings.append(
            f"PAYTABS_WEBHOOK_SECRET: {dropped} PayTabs key(s) not used with --simulator "
            "(its callbacks are signed with the simulator's server key); "
            f"{len(kept)} whsec_ secret(s) kept for Standard Webhooks deliveries"
        )
    return ",".join([DEFAULT_SERVER_KEY, *kept]), warnings


def replaced_settings(env: Mapping[str, str], changes: Mapping[str, str]) -> list[str]:
    """A warning for each of the operator's settings in ``env`` that ``changes`` replaces with
    another value: a ``PUBLIC_BASE_URL`` that became ``http://127.0.0.1:...`` took the console
    cookie's ``Secure`` and the return URL's host with it, without a word. Names and the new
    URLs only; a key or a profile id is never shown."""
    warnings = []
    for name, why in _REPLACED.items():
        before = env.get(name, "").strip()
        after = changes.get(name)
        if before and after is not None and before != after:
            shown = f" by {after}" if name.endswith("_URL") else ""
            warnings.append(f"{name}: replaced with --simulator{shown} ({why})")
    return warnings
