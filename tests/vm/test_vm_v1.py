"""Memory limits (and net_cls / net_prio) in cgroup v1 hierarchies, for the VM lane's
hybrid and pure v1 layouts (`make test-vm`: tests/vm/guest.sh builds them when
VM_LAYOUT=hybrid or v1); and, on the pure v1 layout, the container's life without any
cgroup2: tracking, freezer, kill --all, ps, devices, the cgroup namespace.

On the development machines the v1 memory hierarchy belongs to the machine, so these
tests run only in a guest that built its own layout: they are skipped anywhere
VM_LAYOUT is not "hybrid" or "v1", whatever the host's layout.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

CG = Path("/sys/fs/cgroup")
MEMORY = CG / "memory"

pytestmark = [
    pytest.mark.minirun_only,
    pytest.mark.skipif(os.environ.get("VM_LAYOUT") not in ("hybrid", "v1")
                       or not MEMORY.is_dir(),
                       reason="needs the VM lane's own v1 layouts (VM_LAYOUT=hybrid or v1)"),
]

SLEEP = ["sleep", "1000"]
MiB = 1 << 20


def _v1_dirs(runtime, c) -> dict:
    return json.loads((runtime.root / c / "state.json").read_text())["cgroup"]["v1"]


def _read(path) -> str:
    return Path(path).read_text().strip()


def _oom_control(d: str) -> dict[str, int]:
    return {k: int(v) for k, v in (ln.split() for ln in _read(f"{d}/memory.oom_control")
                                   .splitlines())}


def test_memory_limits_land_in_the_v1_hierarchy(runtime, bundle, cid):
    c = cid()
    mem = {"limit": 64 * MiB, "reservation": 32 * MiB, "swappiness": 10}
    swap = (MEMORY / "memory.memsw.limit_in_bytes").exists()
    if swap:
        mem["swap"] = 96 * MiB  # v1: memory + swap, as runc writes it
    runtime.ok("run", "-d", "--bundle",
               bundle(SLEEP, {"linux": {"resources": {"memory": mem}}}), c)
    d = _v1_dirs(runtime, c)["memory"]
    assert _read(f"{d}/memory.limit_in_bytes") == str(64 * MiB)
    assert _read(f"{d}/memory.soft_limit_in_bytes") == str(32 * MiB)
    assert _read(f"{d}/memory.swappiness") == "10"
    if swap:
        assert _read(f"{d}/memory.memsw.limit_in_bytes") == str(96 * MiB)
    pid = runtime.state(c)["pid"]
    assert str(pid) in _read(f"{d}/cgroup.procs").split()
    stats = json.loads(runtime.ok("events", "--stats", c).stdout)["data"]["memory"]
    assert stats["usage"]["limit"] == 64 * MiB and stats["usage"]["usage"] > 0, stats
    runtime.ok("update", "--memory", str(48 * MiB), c)
    assert _read(f"{d}/memory.limit_in_bytes") == str(48 * MiB)
    runtime.ok("delete", "--force", c)
    assert not Path(d).exists()


def test_disable_oom_killer(runtime, bundle, cid):
    c = cid()
    mem = {"limit": 64 * MiB, "disableOOMKiller": True}
    runtime.ok("run", "-d", "--bundle",
               bundle(SLEEP, {"linux": {"resources": {"memory": mem}}}), c)
    d = _v1_dirs(runtime, c)["memory"]
    assert _oom_control(d)["oom_kill_disable"] == 1
    runtime.ok("delete", "--force", c)


def test_oom_kill_and_its_event(runtime, bundle, cid):
    # the limit is enforced (dd's 200 MiB buffer is killed), and `events` reports it; dd
    # starts (on SIGUSR1) only once `events` runs (its first stats line): an OOM kill
    # before that is in the count events starts from, and no event (runc's eventfd
    # misses it too)
    c = cid()
    script = ("trap 'dd if=/dev/zero of=/dev/null bs=200M count=1' USR1; "
              "while :; do sleep 0.1; done")
    runtime.ok("run", "-d", "--bundle",
               bundle(["sh", "-c", script],
                      {"linux": {"resources": {"memory": {"limit": 32 * MiB}}}}), c)
    d = _v1_dirs(runtime, c)["memory"]
    ev = subprocess.Popen(runtime.argv("events", "--interval", "1s", c),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first = json.loads(ev.stdout.readline() or "{}")
        assert first.get("type") == "stats", first
        runtime.ok("kill", c, "USR1")  # the shell runs dd
        deadline = time.monotonic() + 240
        oom = False
        while not oom and time.monotonic() < deadline:
            line = ev.stdout.readline()
            if not line:
                break
            oom = json.loads(line)["type"] == "oom"
        assert oom, "no oom event"
        assert _oom_control(d)["oom_kill"] >= 1
    finally:
        ev.kill()
        ev.wait()
    runtime.ok("delete", "--force", c)


@pytest.mark.skipif(not (CG / "net_cls").is_dir() or not (CG / "net_prio").is_dir(),
                    reason="no v1 net_cls / net_prio hierarchy")
def test_net_cls_and_net_prio(runtime, bundle, cid):
    c = cid()
    net = {"classID": 0x100001, "priorities": [{"name": "lo", "priority": 5}]}
    runtime.ok("run", "-d", "--bundle",
               bundle(SLEEP, {"linux": {"resources": {"network": net}}}), c)
    dirs = _v1_dirs(runtime, c)
    assert _read(f"{dirs['net_cls']}/net_cls.classid") == str(0x100001)
    assert "lo 5" in _read(f"{dirs['net_prio']}/net_prio.ifpriomap").splitlines()
    runtime.ok("delete", "--force", c)


V1_ONLY = pytest.mark.skipif(os.environ.get("VM_LAYOUT") != "v1",
                             reason="the pure v1 layout (VM_LAYOUT=v1)")


def _state_cgroup(runtime, c) -> dict:
    return json.loads((runtime.root / c / "state.json").read_text())["cgroup"]


@V1_ONLY
def test_v1_only_every_hierarchy_limits_and_devices(runtime, bundle, cid):
    c = cid()
    res = {"cpu": {"shares": 512}, "pids": {"limit": 32}, "memory": {"limit": 64 * MiB}}
    b = bundle(SLEEP, {"linux": {"resources": res}})
    cfg = json.loads((b / "config.json").read_text())
    cfg["linux"]["namespaces"].append({"type": "cgroup"})
    (b / "config.json").write_text(json.dumps(cfg))
    runtime.ok("run", "-d", "--bundle", b, c)
    rec = _state_cgroup(runtime, c)
    dirs = rec["v1"]
    assert rec["v1_only"] and {"freezer", "devices", "pids", "cpu", "memory"} <= set(dirs)
    assert _read(f"{dirs['cpu']}/cpu.shares") == "512"
    assert _read(f"{dirs['pids']}/pids.max") == "32"
    assert _read(f"{dirs['memory']}/memory.limit_in_bytes") == str(64 * MiB)
    allowed = _read(f"{dirs['devices']}/devices.list").splitlines()
    assert "a *:* rwm" not in allowed and "c 1:3 rwm" in allowed, allowed  # /dev/null
    pid = runtime.state(c)["pid"]
    for d in set(dirs.values()):
        assert str(pid) in _read(f"{d}/cgroup.procs").split(), d
    # the cgroup namespace is rooted at the container's cgroups (name=systemd, which
    # minirun does not join, shows the root too: the runtime's own cgroup there is /)
    inside = runtime.ok("exec", c, "cat", "/proc/self/cgroup").stdout.splitlines()
    assert all(line.endswith(":/") for line in inside), inside
    # /sys/fs/cgroup: runc's v1 layout, every hierarchy, no cgroup2
    seen = runtime.ok("exec", c, "sh", "-c", "ls /sys/fs/cgroup; "
                      "cat /sys/fs/cgroup/memory/memory.limit_in_bytes").stdout.split()
    assert {"memory", "pids", "freezer", "devices", "cpu"} <= set(seen), seen
    assert "unified" not in seen and seen[-1] == str(64 * MiB), seen
    runtime.ok("delete", "--force", c)
    assert not any(Path(d).exists() for d in dirs.values())


@V1_ONLY
def test_v1_only_pause_ps_kill_all(runtime, bundle, cid):
    c = cid()
    runtime.ok("run", "-d", "--bundle",
               bundle(["sh", "-c", "sleep 1000 & sleep 1001 & wait"]), c)
    pids = json.loads(runtime.ok("ps", "--format", "json", c).stdout)
    assert len(pids) == 3, pids
    runtime.ok("pause", c)
    assert runtime.state(c)["status"] == "paused"
    freezer = _state_cgroup(runtime, c)["v1"]["freezer"]
    assert _read(f"{freezer}/freezer.state") == "FROZEN"
    runtime.ok("resume", c)
    assert runtime.state(c)["status"] == "running"
    runtime.ok("kill", "--all", c, "KILL")
    deadline = time.monotonic() + 60
    while runtime.state(c)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert runtime.state(c)["status"] == "stopped"
    runtime.ok("delete", c)


@V1_ONLY
def test_v1_only_refuses_what_needs_cgroup2(run_container):
    r = run_container(["true"], {"linux": {"resources": {"unified": {"memory.high": "1M"}}}})
    assert r.returncode != 0 and "cgroup v1 only" in r.stderr, r.result


@pytest.mark.skipif(not (CG / "hugetlb").is_dir() or
                    not Path("/sys/kernel/mm/hugepages/hugepages-2048kB").is_dir(),
                    reason="no v1 hugetlb hierarchy, or no 2 MB huge pages")
def test_hugetlb_limit_in_v1(runtime, bundle, cid):
    c = cid()
    res = {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MiB}]}
    runtime.ok("run", "-d", "--bundle", bundle(SLEEP, {"linux": {"resources": res}}), c)
    d = _v1_dirs(runtime, c)["hugetlb"]
    assert _read(f"{d}/hugetlb.2MB.limit_in_bytes") == str(4 * MiB)
    runtime.ok("delete", "--force", c)
