"""Smoke tests of the core for the VM lane (`make test-vm`).

They are meant for the pure cgroup v2 guest that tests/vm/run.py boots, and are
skipped on any host that still mounts a cgroup v1 hierarchy (such as the
hybrid development machines). They use the shared fixtures of tests/conftest.py,
leak check included.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def cgroup2_only() -> bool:
    """True if /sys/fs/cgroup is cgroup2 and no cgroup v1 hierarchy is mounted."""
    v2 = False
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        if fields[2] == "cgroup":
            return False
        if fields[2] == "cgroup2" and fields[1] == "/sys/fs/cgroup":
            v2 = True
    return v2


pytestmark = pytest.mark.skipif(
    not cgroup2_only(), reason="needs a pure cgroup v2 host: run it with `make test-vm`"
)


def test_busybox_container_exit_pid1_hostname(run_container):
    r = run_container(
        ["/bin/sh", "-c", 'echo "pid=$$ hostname=$(hostname)"; exit 7'],
        {"hostname": "vm-smoke"},
    )
    assert r.returncode == 7, f"the container's exit status must be run's:\n{r.result}"
    assert "pid=1 hostname=vm-smoke" in r.stdout.splitlines(), r.result


def test_root_cgroup_offers_memory_pids_cpu():
    controllers = Path("/sys/fs/cgroup/cgroup.controllers").read_text().split()
    missing = [c for c in ("memory", "pids", "cpu") if c not in controllers]
    assert not missing, f"cgroup.controllers lacks {missing}: {controllers}"
