"""``pip install 'paytabs-guard[simulator]'`` alone gives a simulator whose hosted page pays.

The hosted page reads its form with Starlette's ``request.form()``, which needs
python-multipart; the service extra brought it in, so only an install of the simulator extra
on its own shows whether the simulator's own extra does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Pays a page through the simulator's HTML form, in process (no socket needed for this).
PAY_THROUGH_THE_FORM = """
import asyncio, httpx
from paytabs_simulator.app import create_app
from paytabs_simulator.config import DEFAULT_SERVER_KEY

async def main():
    app = create_app()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sim"
    ) as sim:
        page = await sim.post("/payment/request", headers={"authorization": DEFAULT_SERVER_KEY},
            json={"profile_id": 987654, "tran_type": "sale", "tran_class": "ecom",
                  "cart_id": "extra-1", "cart_currency": "SAR", "cart_amount": "5",
                  "cart_description": "d"})
        paid = await sim.post(page.json()["redirect_url"].removeprefix("http://sim"),
            data={"card_number": "4111111111111111", "expiry_month": "12",
                  "expiry_year": "2030", "cvv": "123", "action": "pay"})
        print(paid.status_code)
    await app.state.simulator.aclose()

asyncio.run(main())
"""


@pytest.mark.timeout(600)
def test_the_simulator_extra_alone_can_pay_a_hosted_page(tmp_path: Path) -> None:
    env_dir = tmp_path / "simulator-only"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(  # noqa: S603 - our own commands
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-c", str(ROOT / "constraints.txt"), f"{ROOT}[simulator]"],
        check=True, capture_output=True, timeout=500, env=environment,
    )  # fmt: skip
    done = subprocess.run(  # noqa: S603 - our own commands
        [python, "-c", PAY_THROUGH_THE_FORM],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
        timeout=60,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "200", done.stderr[-2000:]
    assert sys.executable != python  # the point: not the suite's environment
