"""A pytest plugin (loaded by ``tests/conftest.py``): a failed test's teardown keeps a timeout.

pytest-timeout stops a test's timer as soon as the test fails (its ``pytest_exception_interact``
hook, there so that a debugger opened on the failure is not interrupted). The failed test's
fixtures are then torn down with no timeout at all, and a teardown that waits for something the
failure left undone (a thread that never answers, a server that never stops) hung the whole
run until CI's outer limit killed it, with every result lost. This arms the timer again for
what is left of the test, unless a debugger is in use.
"""

from __future__ import annotations

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
