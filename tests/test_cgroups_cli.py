"""The container's cgroup through the `minirun` command line, on any host with a cgroup2
hierarchy (here: a hybrid one, where cgroup2 at /sys/fs/cgroup/unified only has hugetlb).

What the kernel does is what is checked, through `create`, `start`, `pause`, `resume`,
`kill --all`, `ps`, `events`, `update` and `delete`: a paused busy loop accumulates no CPU
time (/proc/PID/stat), `kill --all` leaves no process alive, the device filter makes
open() of a node that `linux.devices` made but `linux.resources.devices` does not allow
fail with EPERM inside the container, the init is in its cgroup (/proc/PID/cgroup) from
`create` on. On a hybrid host, limits of v1-bound controllers are refused (by `create`
and `update`) with one line naming the controller, leaving nothing behind.

The limits themselves (memory, pids, cpu) need a pure cgroup v2 host:
tests/test_cgroups_cli_v2.py, in the VM lane.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CGROUP2_ROOT, TIMEOUT, cmdline, proc_table

MOUNT = CGROUP2_ROOT
V2_CONTROLLERS = set((MOUNT / "cgroup.controllers").read_text().split())


def _v1_bound(controller: str) -> bool:
    """True if a cgroup v1 hierarchy with this controller is mounted."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        _, _, post = line.partition(" - ")
        fields = post.split()
        if len(fields) >= 3 and fields[0] == "cgroup" and controller in fields[2].split(","):
            return True
    return False


HYBRID = "memory" not in V2_CONTROLLERS and _v1_bound("memory")
hybrid_only = pytest.mark.skipif(not HYBRID, reason="needs a hybrid cgroup host")

BUSY = ["sh", "-c", "while :; do :; done"]  # builtins only: one process, always on a CPU
FAMILY = ["sh", "-c", "sleep 600 & sleep 600 & sleep 600 & wait"]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def wait_for(pred, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    t = proc_table()
    return pid in t and t[pid][1] not in ("Z", "X")


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (clock ticks), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def cgroup_of(pid: int) -> str:
    """The process's cgroup v2 path, as the kernel reports it."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError(f"no cgroup v2 line in /proc/{pid}/cgroup")


def cgroup_dir(path: str) -> Path:
    return MOUNT / path.lstrip("/")


def one_line_error(r) -> str:
    """The runtime failed with exactly one line on stderr; that line."""
    assert r.returncode != 0, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr:\n{r}"
    return lines[0]


def created(runtime, bundle, cid, args, edits=None) -> tuple[str, int]:
    c = cid()
    b = bundle(args, edits)
    r = runtime.create(c, b)
    assert r.returncode == 0, r
    return c, runtime.state(c)["pid"]


def started(runtime, bundle, cid, args, edits=None) -> tuple[str, int]:
    c, pid = created(runtime, bundle, cid, args, edits)
    runtime.ok("start", c)
    return c, pid


def ps_json(runtime, c: str) -> list[int]:
    r = runtime.ok("ps", "--format", "json", c)
    return json.loads(r.stdout) or []


def no_pidns(cfg: dict) -> None:
    cfg["linux"]["namespaces"] = [ns for ns in cfg["linux"]["namespaces"] if ns["type"] != "pid"]


# --------------------------------------------------------------------------
# The cgroup: where, from when, until when
# --------------------------------------------------------------------------


def test_cgroup_holds_the_init_from_create_and_delete_removes_it(runtime, bundle, cid):
    c, pid = created(runtime, bundle, cid, ["sleep", "600"])
    # between create and start: the init already is in /minirun/<id>
    assert cgroup_of(pid) == f"/minirun/{c}"
    d = cgroup_dir(f"/minirun/{c}")
    assert d.is_dir()
    assert (d / "cgroup.procs").read_text().split() == [str(pid)]
    runtime.ok("start", c)
    assert runtime.state(c)["status"] == "running"
    assert cgroup_of(pid) == f"/minirun/{c}"
    runtime.ok("kill", c, "KILL")
    runtime.wait_status(c, "stopped")
    runtime.ok("delete", c)
    assert not d.exists()
    assert not alive(pid)


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_cgroups_path_lands_where_expected(runtime, bundle, cid, kind):
    c = cid()
    if kind == "absolute":
        path = f"/{c}-abs/leaf"
        want = path
    else:
        path = f"{c}-rel"
        # as runc: below the parent of the runtime's own cgroup (ours, inherited)
        own = cgroup_of(os.getpid()).rstrip("/")
        want = f"{own.rsplit('/', 1)[0]}/{path}"
    b = bundle(["sleep", "600"], {"linux": {"cgroupsPath": path}})
    parent = cgroup_dir(f"/{c}-abs")
    try:
        r = runtime.create(c, b)
        assert r.returncode == 0, r
        pid = runtime.state(c)["pid"]
        assert cgroup_of(pid) == want
        assert cgroup_dir(want).is_dir()
        assert not cgroup_dir(f"/minirun/{c}").exists()
        runtime.ok("delete", "--force", c)
        assert not cgroup_dir(want).exists()
        assert not alive(pid)
    finally:
        if kind == "absolute" and parent.is_dir():
            leaf = parent / "leaf"
            if leaf.is_dir() and not (leaf / "cgroup.procs").read_text().split():
                leaf.rmdir()
            parent.rmdir()  # the runtime only tidies its default parent (/minirun)


@pytest.mark.parametrize("path", ["/{c}/../{c}-esc", "{c}/../../{c}-esc", "/{c}/./x"])
def test_dotdot_in_cgroups_path_is_an_error_leaving_nothing(runtime, bundle, cid, path):
    c = cid()
    path = path.format(c=c)
    b = bundle(["true"], {"linux": {"cgroupsPath": path}})
    r = runtime.create(c, b)
    line = one_line_error(r)
    assert line.startswith("minirun: linux.cgroupsPath: "), line
    assert not (runtime.root / c).exists()
    for d in (f"/{c}", f"/{c}-esc", f"/minirun/{c}", f"/{c}/x"):
        assert not cgroup_dir(d).exists(), d
    assert not cgroup_dir(os.path.normpath(cgroup_of(os.getpid()) + f"/../{c}-esc")).exists()


# --------------------------------------------------------------------------
# pause / resume
# --------------------------------------------------------------------------


def test_pause_stops_cpu_time_and_resume_gives_it_back(runtime, bundle, cid):
    c, pid = started(runtime, bundle, cid, BUSY)
    t0 = cpu_ticks(pid)
    wait_for(lambda: cpu_ticks(pid) >= t0 + 10, "the busy loop to use CPU")

    runtime.ok("pause", c)
    assert runtime.state(c)["status"] == "paused"
    frozen = cpu_ticks(pid)
    usage = json.loads(runtime.ok("events", "--stats", c).stdout)["data"]["cpu"]["usage"]
    time.sleep(1.2)
    assert cpu_ticks(pid) == frozen, "a paused process kept running"
    again = json.loads(runtime.ok("events", "--stats", c).stdout)["data"]["cpu"]["usage"]
    assert again["total"] == usage["total"], "the paused cgroup's CPU usage grew"
    assert runtime.state(c)["status"] == "paused"

    runtime.ok("resume", c)
    assert runtime.state(c)["status"] == "running"
    wait_for(lambda: cpu_ticks(pid) >= frozen + 10, "the loop to run again after resume")


def test_pause_stopped_and_resume_running_fail_with_one_line(runtime, bundle, cid):
    c, pid = started(runtime, bundle, cid, ["true"])
    runtime.wait_status(c, "stopped")
    line = one_line_error(runtime("pause", c))
    assert line == f"minirun: cannot pause container {c!r}: it is stopped", line
    line = one_line_error(runtime("resume", c))
    assert line == f"minirun: cannot resume container {c!r}: it is stopped", line

    c2, pid2 = started(runtime, bundle, cid, ["sleep", "600"])
    line = one_line_error(runtime("resume", c2))
    assert line == f"minirun: cannot resume container {c2!r}: it is running", line
    assert runtime.state(c2)["status"] == "running"
    runtime.ok("pause", c2)
    line = one_line_error(runtime("pause", c2))
    assert line == f"minirun: cannot pause container {c2!r}: it is paused", line
    runtime.ok("resume", c2)
    assert runtime.state(c2)["status"] == "running"


# --------------------------------------------------------------------------
# ps and kill --all
# --------------------------------------------------------------------------


def _family(runtime, c: str, init: int) -> list[int]:
    """Wait until the init and its three sleeps are up; their pids as `ps` lists them."""
    def four():
        pids = ps_json(runtime, c)
        return pids if len(pids) == 4 and all(
            cmdline(p) == "sleep 600" for p in pids if p != init) else None
    return sorted(wait_for(four, "ps to list the init and its three sleeps"))


@pytest.mark.parametrize("pidns,sig", [(True, "KILL"), (False, "KILL"), (False, "TERM")],
                         ids=["pidns-KILL", "no-pidns-KILL", "no-pidns-TERM"])
def test_kill_all_leaves_no_process(runtime, bundle, cid, pidns, sig):
    c, init = started(runtime, bundle, cid, FAMILY, None if pidns else no_pidns)
    pids = _family(runtime, c, init)
    assert init in pids
    table = proc_table()
    assert all(table[p][0] == init for p in pids if p != init), "not the init's children"
    assert sorted(int(p) for p in (cgroup_dir(f"/minirun/{c}") / "cgroup.procs")
                  .read_text().split()) == pids

    runtime.ok("kill", "--all", c, sig)
    wait_for(lambda: not any(alive(p) for p in pids), f"kill --all {sig} to kill every process")
    runtime.wait_status(c, "stopped")
    assert (cgroup_dir(f"/minirun/{c}") / "cgroup.procs").read_text() == ""
    runtime.ok("delete", c)
    assert not cgroup_dir(f"/minirun/{c}").exists()


def test_kill_all_of_a_paused_container(runtime, bundle, cid):
    c, init = started(runtime, bundle, cid, FAMILY, no_pidns)
    pids = _family(runtime, c, init)
    runtime.ok("pause", c)
    runtime.ok("kill", "--all", c, "KILL")
    wait_for(lambda: not any(alive(p) for p in pids), "kill --all KILL to kill frozen processes")
    runtime.wait_status(c, "stopped")


def test_ps_lists_the_processes_of_a_paused_container(runtime, bundle, cid):
    c, init = started(runtime, bundle, cid, FAMILY)
    pids = _family(runtime, c, init)
    runtime.ok("pause", c)
    assert sorted(ps_json(runtime, c)) == pids


# --------------------------------------------------------------------------
# The device filter
# --------------------------------------------------------------------------

DEVICE_SCRIPT = ("head -c1 /dev/zero | wc -c; head -c1 /dev/sda; echo sda=$?; "
                 "true </dev/loop-control; echo loop-control=$?")
NODES = [
    # nodes the runtime makes (linux.devices), not allowed by runc's default list
    {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 0o666},
    {"path": "/dev/loop-control", "type": "c", "major": 10, "minor": 237, "fileMode": 0o666},
]


def test_device_filter_denies_what_resources_devices_does_not_allow(run_container):
    # the default spec's deny-all, plus runc's allow-list (which has /dev/zero)
    r = run_container(["sh", "-c", DEVICE_SCRIPT], {"linux": {"devices": NODES}})
    assert r.returncode == 0, r.result
    assert r.stdout.splitlines() == ["1", "sda=1", "loop-control=1"], r.result
    assert "head: /dev/sda: Operation not permitted" in r.stderr, r.result
    assert "/dev/loop-control: Operation not permitted" in r.stderr, r.result


def test_device_filter_allows_what_resources_devices_allows(run_container):
    """The control: the same nodes allowed, the EPERM goes (8:0 has no disk here: ENXIO)."""
    def edit(cfg):
        cfg["linux"]["devices"] = NODES
        cfg["linux"]["resources"]["devices"] += [
            {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"},
            {"allow": True, "type": "c", "major": 10, "minor": 237, "access": "rw"}]

    if not Path("/sys/dev/char/10:237").exists():
        pytest.skip("no loop-control device (10:237) on this host")
    r = run_container(["sh", "-c", DEVICE_SCRIPT], edit)
    assert r.returncode == 0, r.result
    assert r.stdout.splitlines()[0] == "1", r.result
    assert "loop-control=0" in r.stdout.splitlines(), r.result
    assert "Operation not permitted" not in r.stderr, r.result


def test_update_replaces_the_device_rules_of_a_live_container(runtime, bundle, cid):
    if not Path("/sys/dev/char/10:237").exists():
        pytest.skip("no loop-control device (10:237) on this host")
    c, _ = started(runtime, bundle, cid, ["sleep", "600"], {"linux": {"devices": NODES[1:]}})
    probe = ["exec", c, "sh", "-c", "true </dev/loop-control && echo opened"]
    r = runtime(*probe)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r
    allow = {"devices": [{"allow": False, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 10, "minor": 237, "access": "rw"}]}
    runtime.ok("update", "--resources", "-", c, input=json.dumps(allow))
    r = runtime(*probe)
    assert r.returncode == 0 and r.stdout == "opened\n", r
    assert runtime.ok("exec", c, "sh", "-c", "head -c1 /dev/zero | wc -c").stdout == "1\n"
    deny = {"devices": [{"allow": False, "access": "rwm"}]}
    runtime.ok("update", "--resources", "-", c, input=json.dumps(deny))
    r = runtime(*probe)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r


def test_cgroup_namespace_is_rooted_at_the_container_cgroup(runtime, bundle, cid):
    def edit(cfg):
        cfg["linux"]["namespaces"].append({"type": "cgroup"})

    c, pid = started(runtime, bundle, cid, ["sleep", "600"], edit)
    assert cgroup_of(pid) == f"/minirun/{c}"  # seen from here
    r = runtime.ok("exec", c, "cat", "/proc/self/cgroup")
    assert r.stdout.splitlines()[-1] == "0::/", r  # seen from inside


# --------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------


def test_events_stats_prints_stats_json(runtime, bundle, cid):
    c, pid = started(runtime, bundle, cid, BUSY)
    t0 = cpu_ticks(pid)
    wait_for(lambda: cpu_ticks(pid) >= t0 + 5, "the busy loop to use CPU")
    r = runtime.ok("events", "--stats", c)
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r
    event = json.loads(lines[0])
    assert event["type"] == "stats" and event["id"] == c, event
    assert event["data"]["cpu"]["usage"]["total"] >= 50_000_000, event  # ns: ≥ 5 ticks
    assert event["data"]["pids"]["current"] == 1, event


def test_events_streams_until_the_container_stops(runtime, bundle, cid, tmp_path):
    c, pid = started(runtime, bundle, cid, ["sleep", "600"])
    out = tmp_path / "events.out"
    with open(out, "wb") as f:
        p = subprocess.Popen(runtime.argv("events", "--interval", "100ms", c),
                             stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(out.read_text().splitlines()) >= 3, "three events")
        events = [json.loads(line) for line in out.read_text().splitlines()[:3]]
        assert all(e["type"] == "stats" and e["id"] == c for e in events), events
        runtime.ok("kill", c, "KILL")
        assert p.wait(timeout=TIMEOUT) == 0, out.read_text()
    finally:
        if p.poll() is None:
            p.kill()  # ours, by pid
            p.wait()


# --------------------------------------------------------------------------
# Limits of v1-bound controllers on a hybrid host
# --------------------------------------------------------------------------


@hybrid_only
@pytest.mark.parametrize("flags,hierarchy,file,value", [
    (["--pids-limit", "5"], "pids", "pids.max", "5"),
    (["--cpu-quota", "20000", "--cpu-period", "100000"], "cpu", "cpu.cfs_quota_us", "20000"),
    (["--cpuset-cpus", "0"], "cpuset", "cpuset.cpus", "0"),
])
def test_update_of_a_v1_bound_limit_lands(runtime, bundle, cid, flags, hierarchy, file,
                                          value):
    """The container joined no v1 hierarchy (its config limits none): a new v1 limit
    gets its directory now, the container moved in, as runc (which joined them all at
    create) would have it (never the machine's own v1 memory hierarchy)."""
    c, pid = started(runtime, bundle, cid, ["sleep", "600"])
    runtime.ok("update", *flags, c)
    d = json.loads((runtime.root / c / "state.json").read_text())["cgroup"]["v1"][hierarchy]
    assert Path(d, file).read_text().strip() == value
    assert str(pid) in Path(d, "cgroup.procs").read_text().split()
    assert runtime.state(c)["status"] == "running"
    assert alive(pid)


@hybrid_only
def test_update_resources_from_stdin_lands_too(runtime, bundle, cid):
    c, pid = started(runtime, bundle, cid, ["sleep", "600"])
    runtime.ok("update", "--resources", "-", c, input=json.dumps({"pids": {"limit": 5}}))
    d = json.loads((runtime.root / c / "state.json").read_text())["cgroup"]["v1"]["pids"]
    assert Path(d, "pids.max").read_text().strip() == "5"
    assert runtime.state(c)["status"] == "running"


@hybrid_only
@pytest.mark.parametrize("command", ["create", "run"])
def test_v2_only_limit_is_refused_at_create_leaving_nothing(runtime, bundle, cid, command):
    # cpu.idle has no meaning in cgroup v1, where cpu is bound here (never a memory limit
    # on this host: the v1 memory hierarchy is the machine's)
    c = cid()
    b = bundle(["true"], {"linux": {"resources": {"cpu": {"idle": 1}}}})
    r = runtime(command, "--bundle", b, c)
    assert "linux.resources.cpu.idle: has no meaning in cgroup v1" in one_line_error(r)
    assert not (runtime.root / c).exists()
    assert not cgroup_dir(f"/minirun/{c}").exists()
    assert runtime("state", c).returncode != 0
