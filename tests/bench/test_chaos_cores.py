"""The chaos benchmark gives the service a core of its own (merchants and PayTabs are other
machines in production), and puts the test process's affinity back afterwards."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from paytabs_guard.entrypoints.chaos.cores import service_pinned, split_cores

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs CPU affinity and two cores",
)


def test_the_service_core_is_kept_apart_from_the_others() -> None:
    cores = split_cores()
    assert cores is not None
    assert cores.service
    assert cores.others
    assert not cores.service & cores.others
    assert cores.service | cores.others == os.sched_getaffinity(0)


def test_the_service_runs_on_its_core_and_gets_its_affinity_back() -> None:
    cores = split_cores()
    assert cores is not None
    before = os.sched_getaffinity(0)
    with service_pinned(cores):
        assert os.sched_getaffinity(0) == cores.service
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            cores.pin_other(child.pid)
            assert os.sched_getaffinity(child.pid) == cores.others
        finally:
            child.kill()
            child.wait()
    assert os.sched_getaffinity(0) == before
