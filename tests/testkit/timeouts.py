"""A pytest plugin (loaded by ``tests/conftest.py``): a test stays bounded after its timeout.

Two gaps in pytest-timeout's signal method, both of which hung the whole run until CI's outer
limit killed it, with every result lost:

- pytest-timeout stops a test's timer as soon as the test fails (its
  ``pytest_exception_interact`` hook, there so that a debugger opened on the failure is not
  interrupted). The failed test's fixtures were then torn down with no timeout at all, and a
  teardown that waits for something the failure left undone (a thread that never answers, a
  server that never stops) never ended. This arms the timer again for what is left of the test,
  unless a debugger is in use.
- The alarm fires once. An async test's timeout leaves its event loop through the runner, which
  then cancels every task still running and waits for them; a task that swallows its
  cancellation (the kind of bug the timeout is there to catch) kept that wait going for ever.
  So the alarm re-arms itself each time it fires: the next period raises again, out of the
  runner's clean-up, until the test is over (pytest-timeout's cancel stops it then). That
  interrupts anyio's pytest plugin while it closes its shared runner, leaving it holding the
  closed runner, and every later async test failed with "Runner is closed"; after each test a
  runner nobody leases any more is let go, so only the stuck test fails.
"""

from __future__ import annotations

import signal
from collections.abc import Generator
from types import FrameType
from typing import Any

import anyio.pytest_plugin
import pytest
import pytest_timeout


@pytest.hookimpl(trylast=True)
def pytest_exception_interact(node: pytest.Item | pytest.Collector) -> None:
    if not isinstance(node, pytest.Item):
        return
    config = node.config
    if config.getoption("usepdb", False) or config.getoption("trace", False):
        return
    settings = pytest_timeout._get_item_settings(node)
    if settings.timeout and settings.timeout > 0:
        config.pluginmanager.hook.pytest_timeout_set_timer(item=node, settings=settings)


@pytest.hookimpl(wrapper=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Generator[None, object, object]:
    armed = yield
    fire = signal.getsignal(signal.SIGALRM)
    if callable(fire) and signal.getitimer(signal.ITIMER_REAL)[0] > 0:  # the signal method
        period = float(settings.timeout)

        def fire_and_rearm(signum: int, frame: FrameType | None) -> None:
            __tracebackhide__ = True
            signal.setitimer(signal.ITIMER_REAL, period)
            fire(signum, frame)

        signal.signal(signal.SIGALRM, fire_and_rearm)
    return armed


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    try:
        return (yield)
    finally:
        plugin: Any = anyio.pytest_plugin
        # anyio's private state (pinned in constraints.txt); read with defaults so that a
        # version that renamed it makes this a no-op, not a failure of every test
        leases = getattr(plugin, "_runner_leases", None)
        if leases == 0 and getattr(plugin, "_current_runner", None) is not None:
            # its close was cut short by the timeout (see above): drop it, the next test
            # makes a new one
            plugin._runner_stack = plugin._current_runner = None
