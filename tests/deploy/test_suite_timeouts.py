"""The suite cannot hang on a failed test's teardown (``testkit/timeouts.py``): run pytest on
a test that fails and leaves a fixture whose teardown never ends, and it must stop on its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

STUCK = """
import asyncio
import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
async def never_torn_down():
    yield
    await asyncio.get_running_loop().create_future()  # nothing will ever complete this


async def test_fails(never_torn_down):
    assert 1 == 2


async def test_after_it_runs():
    assert True
"""


def test_a_failed_test_whose_teardown_hangs_is_stopped_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_stuck.py").write_text(STUCK)
    pytest_args = ["-p", "testkit.timeouts", "-p", "no:cacheprovider", "-o", "timeout=2"]
    run = subprocess.run(  # noqa: S603 - our own interpreter on a file this test wrote
        [sys.executable, "-m", "pytest", *pytest_args, "--rootdir", str(tmp_path), "test_stuck.py"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=45,  # without the plugin the child waits forever; this fails the test instead
        check=False,
    )
    summary = run.stdout.strip().splitlines()[-1]
    assert run.returncode == 1, run.stdout[-2000:]
    assert "1 failed, 1 passed, 1 error" in summary, run.stdout[-2000:]
    assert "Timeout" in run.stdout


SWALLOWS_CANCELLATION = """
import asyncio
import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_a_task_that_swallows_its_cancellation():
    while True:
        try:
            await asyncio.sleep(1000)
        except asyncio.CancelledError:
            pass  # the bug under test: a cancellation eaten, the wait goes on


async def test_after_it_runs():
    assert True
"""


def test_a_test_that_swallows_the_cancellation_after_its_timeout_is_stopped(
    tmp_path: Path,
) -> None:
    # The timeout leaves the event loop; the runner then cancels the test's task and waits for
    # it. The task ignores the cancellation, so that wait must be cut by the timeout too.
    (tmp_path / "test_stuck.py").write_text(SWALLOWS_CANCELLATION)
    pytest_args = ["-p", "testkit.timeouts", "-p", "no:cacheprovider", "-o", "timeout=2"]
    run = subprocess.run(  # noqa: S603 - our own interpreter on a file this test wrote
        [sys.executable, "-m", "pytest", *pytest_args, "--rootdir", str(tmp_path), "test_stuck.py"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=45,  # without the re-armed alarm the child waits forever; this fails the test
        check=False,
    )
    summary = run.stdout.strip().splitlines()[-1]
    assert run.returncode == 1, run.stdout[-2000:]
    assert "1 failed, 1 passed" in summary, run.stdout[-2000:]
    assert "Timeout" in run.stdout
