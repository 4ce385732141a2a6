"""Limits of controllers bound to cgroup v1 (a hybrid host, as this one): applied in that
hierarchy with runc's v1 semantics, under the caller's own cgroup there; the container
joins only the hierarchies its limits need; delete removes every directory it made (the
leak guard walks the v1 hierarchies too). The machine's v1 memory hierarchy is never
touched here (memory limits in v1 belong to the VM lane)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

V1 = Path("/sys/fs/cgroup")


def _bound(controller: str) -> bool:
    """Bound to v1 here: its v1 hierarchy is mounted and cgroup2 (unified) lacks it."""
    unified = V1 / "unified" / "cgroup.controllers"
    return (V1 / controller).is_dir() and unified.is_file() and \
        controller not in unified.read_text().split()


pytestmark = pytest.mark.skipif(not _bound("pids") or not _bound("cpu"),
                                reason="needs cpu and pids bound to cgroup v1 (a hybrid host)")

SLEEP = ["sleep", "1000"]


def _v1_dirs(runtime, c) -> dict:
    return json.loads((runtime.root / c / "state.json").read_text())["cgroup"]["v1"]


def _read(path) -> str:
    return Path(path).read_text().strip()


def _member(pid: int, controller: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return path
    return ""


@pytest.mark.minirun_only
def test_cpu_shares_quota_and_pids_limit_in_v1(runtime, bundle, cid):
    c = cid()
    res = {"cpu": {"shares": 512, "quota": 50000, "period": 100000}, "pids": {"limit": 64}}
    runtime.ok("run", "-d", "--bundle", bundle(SLEEP, {"linux": {"resources": res}}), c)
    dirs = _v1_dirs(runtime, c)
    # cpuacct goes with cpu (the cpu usage of `events --stats`)
    assert set(dirs) == {"cpu", "pids"} | ({"cpuacct"} if (V1 / "cpuacct").is_dir() else set())
    assert _read(f"{dirs['cpu']}/cpu.shares") == "512"
    assert _read(f"{dirs['cpu']}/cpu.cfs_quota_us") == "50000"
    assert _read(f"{dirs['cpu']}/cpu.cfs_period_us") == "100000"
    assert _read(f"{dirs['pids']}/pids.max") == "64"
    pid = runtime.state(c)["pid"]
    assert _member(pid, "pids").endswith("/" + c) and _member(pid, "cpu").endswith("/" + c)
    assert not _member(pid, "cpuset").endswith("/" + c)  # no cpuset limit: not joined
    runtime.ok("delete", "--force", c)
    assert not any(Path(d).exists() for d in dirs.values())


@pytest.mark.minirun_only
def test_exec_joins_the_v1_cgroups(runtime, bundle, cid):
    c = cid()
    res = {"pids": {"limit": 64}}
    runtime.ok("run", "-d", "--bundle", bundle(SLEEP, {"linux": {"resources": res}}), c)
    out = runtime.ok("exec", c, "cat", "/proc/self/cgroup").stdout
    pids_line = next(ln for ln in out.splitlines() if ":pids:" in ln)
    assert pids_line.endswith("/" + c), out
    runtime.ok("delete", "--force", c)


@pytest.mark.minirun_only
def test_pids_limit_is_enforced(sh):
    out = sh("for i in 1 2 3 4 5 6 7 8; do sleep 5 & done 2>&1 | head -1; echo done",
             {"linux": {"resources": {"pids": {"limit": 4}}}})
    assert "can't fork" in out or "Resource temporarily unavailable" in out, out


@pytest.mark.minirun_only
def test_cpuset_inherits_then_limits(runtime, bundle, cid):
    c = cid()
    res = {"cpu": {"cpus": "0"}}
    runtime.ok("run", "-d", "--bundle", bundle(SLEEP, {"linux": {"resources": res}}), c)
    d = _v1_dirs(runtime, c)["cpuset"]
    assert _read(f"{d}/cpuset.cpus") == "0"
    assert _read(f"{d}/cpuset.mems") != ""  # copied from the parent, as v1 requires
    runtime.ok("delete", "--force", c)


@pytest.mark.minirun_only
def test_update_in_v1(runtime, bundle, cid):
    c = cid()
    res = {"pids": {"limit": 64}, "cpu": {"shares": 256}}
    runtime.ok("run", "-d", "--bundle", bundle(SLEEP, {"linux": {"resources": res}}), c)
    runtime.ok("update", "--pids-limit", "100", "--cpu-share", "1024", c)
    dirs = _v1_dirs(runtime, c)
    assert _read(f"{dirs['pids']}/pids.max") == "100"
    assert _read(f"{dirs['cpu']}/cpu.shares") == "1024"
    runtime.ok("delete", "--force", c)


@pytest.mark.minirun_only
def test_v2_only_fields_refused_in_v1(run_container):
    r = run_container(["true"], {"linux": {"resources": {"cpu": {"shares": 512, "idle": 1}}}})
    assert r.returncode != 0 and "linux.resources.cpu.idle" in r.stderr, r.result


@pytest.mark.minirun_only  # the suite runs runc in a cgroup2-only view of this host
def test_events_stats_read_the_v1_hierarchies(runtime, bundle, cid):
    # runc's v1 readings: cpu usage from cpuacct, throttling from cpu.stat, pids from
    # pids.current / pids.max; the same JSON fields as on cgroup2
    c = cid()
    res = {"cpu": {"shares": 512, "quota": 20000, "period": 100000}, "pids": {"limit": 64}}
    busy = ["sh", "-c", "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; exec sleep 1000"]
    runtime.ok("run", "-d", "--bundle", bundle(busy, {"linux": {"resources": res}}), c)
    deadline = time.monotonic() + 20
    while True:
        ev = json.loads(runtime.ok("events", "--stats", c).stdout)
        data = ev["data"]
        if data["cpu"]["throttling"].get("throttledPeriods") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ev["type"] == "stats" and ev["id"] == c
    usage = data["cpu"]["usage"]
    assert usage["total"] > 0 and len(usage["percpu"]) >= 1, data["cpu"]
    assert {"kernel", "user"} <= set(usage), data["cpu"]
    assert data["cpu"]["throttling"]["periods"] > 0, data["cpu"]  # quota: cfs periods ran
    assert data["pids"]["limit"] == 64 and data["pids"]["current"] >= 1, data["pids"]
    runtime.ok("delete", "--force", c)


@pytest.mark.minirun_only
@pytest.mark.skipif((V1 / "net_cls").is_dir(), reason="a v1 net_cls hierarchy is mounted here")
def test_net_cls_without_its_v1_hierarchy_is_refused(run_container):
    r = run_container(["true"], {"linux": {"resources": {"network": {"classID": 1048577}}}})
    assert r.returncode != 0, r.result
    assert "linux.resources.network.classID" in r.stderr, r.result
    assert "no v1 net_cls hierarchy is mounted" in r.stderr, r.result


@pytest.mark.minirun_only
@pytest.mark.parametrize("network, field", [
    ({"classID": -1}, "network.classID"),
    ({"classID": "x"}, "network.classID"),
    ({"priorities": [{"name": "", "priority": 1}]}, "network.priorities[0].name"),
    ({"priorities": [{"name": "lo", "priority": -3}]}, "network.priorities[0].priority"),
])
def test_network_values_checked(run_container, network, field):
    r = run_container(["true"], {"linux": {"resources": {"network": network}}})
    assert r.returncode != 0 and f"linux.resources.{field}" in r.stderr, r.result


@pytest.mark.minirun_only
def test_update_of_a_limit_the_container_was_created_without(runtime, bundle, cid):
    # runc joins every v1 hierarchy at create, so any later update lands; minirun makes
    # the directory then and moves the container's processes in
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(["sh", "-c", "sleep 1000 & wait"]), c)
    st = json.loads((runtime.root / c / "state.json").read_text())
    assert "v1" not in st["cgroup"]  # no limit: cgroup2 only
    runtime.ok("update", "--pids-limit", "50", "--cpu-share", "512", c)
    dirs = _v1_dirs(runtime, c)
    assert _read(f"{dirs['pids']}/pids.max") == "50"
    assert _read(f"{dirs['cpu']}/cpu.shares") == "512"
    pids = json.loads(runtime.ok("ps", "--format", "json", c).stdout)
    assert len(pids) == 2
    for pid in pids:
        assert _member(pid, "pids").endswith("/" + c), pid
    out = runtime.ok("exec", c, "cat", "/proc/self/cgroup").stdout  # exec joins them too
    assert next(ln for ln in out.splitlines() if ":pids:" in ln).endswith("/" + c), out
    runtime.ok("delete", "--force", c)
    assert not any(Path(d).exists() for d in dirs.values())



def _root_disk() -> tuple[int, int] | None:
    """major:minor of a whole disk of this host (blkio throttles take disks)."""
    base = Path("/sys/block")
    for name in sorted(base.iterdir()) if base.is_dir() else []:
        if name.name.startswith(("loop", "ram", "zram")):
            continue
        major, minor = (name / "dev").read_text().split(":")
        return int(major), int(minor)
    return None


@pytest.mark.minirun_only
@pytest.mark.skipif(not _bound("blkio") or _root_disk() is None,
                    reason="needs blkio bound to cgroup v1 and a disk")
def test_blkio_throttles_in_v1(runtime, bundle, cid):
    major, minor = _root_disk()
    c = cid()
    dev = {"major": major, "minor": minor}
    res = {"blockIO": {"throttleReadBpsDevice": [{**dev, "rate": 1048576}],
                       "throttleWriteIOPSDevice": [{**dev, "rate": 100}]}}
    runtime.ok("run", "-d", "--bundle", bundle(SLEEP, {"linux": {"resources": res}}), c)
    d = _v1_dirs(runtime, c)["blkio"]
    assert f"{major}:{minor} 1048576" in _read(f"{d}/blkio.throttle.read_bps_device")
    assert f"{major}:{minor} 100" in _read(f"{d}/blkio.throttle.write_iops_device")
    runtime.ok("delete", "--force", c)
    assert not Path(d).exists()


def test_features_say_cgroup_v1(runtime):
    # as runc's: limits are applied in v1 hierarchies (hybrid and v1-only hosts)
    cg = json.loads(runtime.ok("features").stdout)["linux"]["cgroup"]
    assert cg["v1"] is True and cg["v2"] is True, cg


@pytest.mark.minirun_only
@pytest.mark.parametrize("cgroupns", [False, True])
def test_sys_fs_cgroup_shows_the_v1_hierarchies(runtime, bundle, cid, cgroupns):
    # runc's v1 layout inside the container: a tmpfs with each hierarchy (here: those
    # the container joined) and cgroup2 at unified, read-only as the mount asks
    c = cid()
    res = {"cpu": {"shares": 512}, "pids": {"limit": 64}}
    b = bundle(SLEEP, {"linux": {"resources": res}})
    if cgroupns:
        cfg = json.loads((b / "config.json").read_text())
        cfg["linux"]["namespaces"].append({"type": "cgroup"})
        (b / "config.json").write_text(json.dumps(cfg))
    runtime.ok("run", "-d", "--bundle", b, c)
    sh = "ls /sys/fs/cgroup; cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares; " \
         "cat /sys/fs/cgroup/unified/cgroup.procs | wc -l; echo 9 > /sys/fs/cgroup/pids/pids.max"
    r = runtime("exec", c, "sh", "-c", sh)
    lines = r.stdout.split()
    assert {"cpu", "pids", "unified"} <= set(lines), r
    assert "memory" not in lines, r  # not joined: the machine's memory cgroup stays hidden
    assert lines[lines.index("unified") + 1:][:2] == ["64", "512"], r
    assert "Read-only file system" in r.stderr, r
    runtime.ok("delete", "--force", c)
