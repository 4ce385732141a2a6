"""minirun.cgroups against the kernel, as root, on any host with a cgroup2 hierarchy
(here: a hybrid one, where cgroup2 at /sys/fs/cgroup/unified only has hugetlb).

What the kernel does is what is checked: a frozen process gets no CPU time, kill_all
leaves no process, the device filter makes open() and mknod() fail with EPERM, a process
joins through a file descriptor opened before it dropped its privileges. Every test
works in a cgroup of its own (/minirun-test-*), and removes it.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minirun.cgroups import Cgroup, CgroupError, devices, find_v2_mount, host
from minirun.cgroups.validate import validate_resources
from minirun.errors import ConfigError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

try:
    MOUNT = find_v2_mount()
except CgroupError:
    pytest.skip("no cgroup2 hierarchy on this host", allow_module_level=True)
HYBRID = "memory" not in host.v2_controllers(MOUNT) and "memory" in host.v1_bound_controllers()

# Helper processes run from / so that they import the installed minirun, not the
# source tree. A process that runs commands sent as JSON lines and answers each with a JSON line.
PROBE = r"""
import json, os, sys
FLAGS = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}
def run(cmd):
    op = cmd[0]
    try:
        if op == "open":
            os.close(os.open(cmd[1], FLAGS[cmd[2]]))
        elif op == "mknod":
            kind = 0o020000 if cmd[2] == "c" else 0o060000
            os.mknod(cmd[1], kind | 0o600, os.makedev(cmd[3], cmd[4]))
            os.unlink(cmd[1])
        elif op == "cgroup":
            return [l for l in open("/proc/self/cgroup").read().splitlines()]
        return "ok"
    except OSError as e:
        return e.errno
for line in sys.stdin:
    print(json.dumps(run(json.loads(line))), flush=True)
"""


class Procs:
    """Processes a test starts; all are SIGKILLed by pid at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, code: str, **kwargs) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd="/", **kwargs)
        self.started.append(p)
        return p

    def busy(self) -> subprocess.Popen:
        return self.start("while True: pass")

    def kill_all(self) -> None:
        for p in self.started:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
            for f in (p.stdin, p.stdout):
                if f:
                    f.close()


def ask(p: subprocess.Popen, *cmd) -> object:
    p.stdin.write(json.dumps(cmd) + "\n")
    p.stdin.flush()
    return json.loads(p.stdout.readline())


@pytest.fixture
def procs():
    ps = Procs()
    yield ps
    ps.kill_all()


@pytest.fixture
def cg():
    """A fresh cgroup /minirun-test-XXXX under the cgroup2 mount, removed afterwards."""
    top = f"/minirun-test-{secrets.token_hex(4)}"
    cgroup = Cgroup(MOUNT, top)
    cgroup.create()
    yield cgroup
    if cgroup.exists():
        cgroup.kill_all(signal.SIGKILL)
        cgroup.destroy(timeout=10)
    assert not os.path.exists(MOUNT + top), "test cgroup left behind"


def cpu_ns(pid: int) -> int:
    """Time the process has spent on a CPU (ns)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


# --------------------------------------------------------------------------
# The hierarchy
# --------------------------------------------------------------------------


def test_find_v2_mount_is_the_unified_hierarchy():
    assert os.path.exists(os.path.join(MOUNT, "cgroup.controllers"))
    if HYBRID:
        assert MOUNT == "/sys/fs/cgroup/unified"


def test_create_enables_controllers_along_the_path_and_destroy_removes_the_leaf():
    top = f"/minirun-test-{secrets.token_hex(4)}"
    leaf = Cgroup(MOUNT, f"{top}/a/b")
    try:
        leaf.create({"hugetlb"})
        for parent in (MOUNT, MOUNT + top, MOUNT + top + "/a"):
            assert "hugetlb" in Path(parent, "cgroup.subtree_control").read_text().split()
        assert Path(leaf.dir, "hugetlb.2MB.max").exists()
        leaf.create({"hugetlb"})  # idempotent
        leaf.destroy()
        assert not os.path.exists(leaf.dir)
        assert os.path.isdir(MOUNT + top + "/a")  # only the default parent is tidied
    finally:
        for d in (f"{top}/a/b", f"{top}/a", top):
            if os.path.isdir(MOUNT + d):
                os.rmdir(MOUNT + d)


def test_destroy_tidies_the_default_minirun_parent():
    cid = f"minirun-test-{secrets.token_hex(4)}"
    cgroup = Cgroup(MOUNT, f"/minirun/{cid}")
    cgroup.create()
    cgroup.destroy()
    assert not os.path.exists(cgroup.dir)
    parent = Path(MOUNT, "minirun")
    assert not parent.exists() or any(p.is_dir() for p in parent.iterdir())
    cgroup.destroy()  # idempotent


def test_destroy_waits_for_killed_processes_then_removes(cg, procs):
    p = procs.busy()
    cg.add_pid(p.pid)
    os.kill(p.pid, signal.SIGKILL)
    cg.destroy()
    assert not cg.exists()


def test_destroy_refuses_while_processes_live(cg, procs):
    p = procs.start("import time; time.sleep(60)")
    cg.add_pid(p.pid)
    with pytest.raises(CgroupError, match=rf"processes still in it: \[{p.pid}\]"):
        cg.destroy(timeout=0.2)


def test_add_pid_of_a_missing_process_is_a_clear_error(cg):
    with pytest.raises(CgroupError, match=r"move process 999999999 .*\(ESRCH|EINVAL\)"):
        cg.add_pid(999999999)


def test_joining_leaves_v1_memberships_alone(cg, procs):
    p = procs.start(PROBE)
    before = ask(p, "cgroup")
    cg.add_pid(p.pid)
    after = ask(p, "cgroup")
    assert f"0::{cg.path}" in after
    assert [line for line in before if not line.startswith("0::")] == \
        [line for line in after if not line.startswith("0::")]


# --------------------------------------------------------------------------
# Joining late, through a file descriptor (the integration this library recommends)
# --------------------------------------------------------------------------

JOIN_AFTER_DROP = r"""
import os, sys
from minirun.cgroups import join
fd, path = int(sys.argv[1]), sys.argv[2]
os.setgroups([]); os.setgid(65534); os.setuid(65534)
try:
    os.close(os.open(path, os.O_WRONLY))
    print("opened by path")
except PermissionError:
    print("no access by path")
join(fd)
print(open("/proc/self/cgroup").read().splitlines()[-1])
"""


def test_join_through_a_preopened_fd_after_dropping_privileges(cg):
    fd = cg.open_procs()
    try:
        p = subprocess.run([sys.executable, "-c", JOIN_AFTER_DROP, str(fd),
                            os.path.join(cg.dir, "cgroup.procs")],
                           pass_fds=[fd], capture_output=True, text=True, timeout=60, cwd="/")
    finally:
        os.close(fd)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["no access by path", f"0::{cg.path}"]


CGROUPNS_DANCE = r"""
import os, sys
from minirun._native import ffi, lib
from minirun.cgroups import join
container_fd, own_fd, mnt = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def me():
    return open("/proc/self/cgroup").read().splitlines()[-1]
join(container_fd)                                   # in, for an instant
assert lib.mr_unshare(lib.CLONE_NEWCGROUP) == 0      # the namespace is rooted here
join(own_fd)                                         # and back out
print(me())
assert lib.mr_unshare(lib.CLONE_NEWNS) == 0
assert lib.mr_mount(ffi.NULL, b"/", ffi.NULL, lib.MS_REC | lib.MS_PRIVATE, ffi.NULL) == 0
assert lib.mr_mount(b"cgroup2", mnt.encode(), b"cgroup2", 0, ffi.NULL) == 0
print(sorted(e for e in os.listdir(mnt) if not "." in e))
join(container_fd)                                   # the last step before exec
print(me())
"""


def test_cgroup_namespace_rooted_at_the_container_while_outside_it(cg, tmp_path):
    marker = Cgroup(MOUNT, cg.path + "/marker")
    marker.create()
    mnt = tmp_path / "cgmnt"
    mnt.mkdir()
    own = host.own_cgroup()
    container_fd = cg.open_procs()
    own_fd = os.open(os.path.join(MOUNT + own.rstrip("/"), "cgroup.procs"),
                     os.O_WRONLY | os.O_CLOEXEC)
    try:
        p = subprocess.run([sys.executable, "-c", CGROUPNS_DANCE, str(container_fd),
                            str(own_fd), str(mnt)], pass_fds=[container_fd, own_fd],
                           capture_output=True, text=True, timeout=60, cwd="/")
    finally:
        os.close(container_fd)
        os.close(own_fd)
    assert p.returncode == 0, p.stderr
    outside, listing, inside = p.stdout.splitlines()
    assert outside.startswith("0::/..")  # its own cgroup is above its namespace's root
    assert listing == "['marker']"      # a cgroup2 mount shows the container's subtree
    assert inside == "0::/"             # joined: at the root of its namespace


# --------------------------------------------------------------------------
# Freezer and kill
# --------------------------------------------------------------------------


def test_freeze_stops_cpu_time_and_thaw_resumes_it(cg, procs):
    p = procs.busy()
    cg.add_pid(p.pid)
    start = cpu_ns(p.pid)
    wait_for(lambda: cpu_ns(p.pid) > start + 50_000_000, what="the busy loop to run")
    cg.freeze()
    assert cg.is_frozen() and cg.events()["frozen"] == "1"
    frozen_at, usage_at = cpu_ns(p.pid), cg.stats()["cpu"]["usage"]["total"]
    time.sleep(1.0)
    assert cpu_ns(p.pid) == frozen_at
    assert cg.stats()["cpu"]["usage"]["total"] == usage_at
    cg.thaw()
    assert not cg.is_frozen()
    wait_for(lambda: cpu_ns(p.pid) > frozen_at + 50_000_000, what="the loop to resume")


def test_freeze_and_thaw_an_empty_cgroup(cg):
    cg.freeze()
    assert cg.is_frozen()
    cg.freeze()
    cg.thaw()
    assert not cg.is_frozen()


FAMILY = r"""
import os, sys, time
sys.stdin.readline()
for _ in range(3):
    if os.fork() == 0:
        os.write(1, b"child\n")  # one write: lines of the four do not mix
        time.sleep(600)
        os._exit(0)
os.write(1, b"parent\n")
time.sleep(600)
"""


def start_family(cg: Cgroup, procs: Procs) -> tuple[subprocess.Popen, list[int]]:
    """A process with three children, all in the cgroup."""
    return start_in(cg, procs, FAMILY)


def start_in(cg: Cgroup, procs: Procs, code: str) -> tuple[subprocess.Popen, list[int]]:
    p = procs.start(code)
    cg.add_pid(p.pid)
    p.stdin.write("go\n")
    p.stdin.flush()
    # each process says when it is ready (signals that reach a child Python before its
    # after-fork bookkeeping are forgotten)
    assert sorted(p.stdout.readline() for _ in range(4)) == ["child\n"] * 3 + ["parent\n"]
    return p, sorted(cg.pids())


def test_kill_all_sigkill_leaves_no_process(cg, procs):
    p, pids = start_family(cg, procs)
    cg.kill_all(signal.SIGKILL)
    wait_for(lambda: cg.events()["populated"] == "0", what="an empty cgroup")
    assert cg.pids() == []
    assert p.wait(timeout=10) == -signal.SIGKILL
    assert not any(alive(pid) for pid in pids)


def test_kill_all_other_signals_go_to_each_process(cg, procs):
    p, pids = start_family(cg, procs)
    cg.kill_all(signal.SIGTERM)
    assert not cg.is_frozen()
    wait_for(lambda: cg.pids() == [], what="every process to die of SIGTERM")
    assert p.wait(timeout=10) == -signal.SIGTERM
    assert not any(alive(pid) for pid in pids)


TRAPPING_FAMILY = FAMILY.replace("import os, sys, time", """import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: os._exit(7))""")


def test_kill_all_keeps_a_paused_cgroup_paused(cg, procs):
    p, pids = start_in(cg, procs, TRAPPING_FAMILY)
    cg.freeze()
    cg.kill_all(signal.SIGTERM)
    assert cg.freeze_requested()
    wait_for(cg.is_frozen, what="the cgroup to settle frozen")
    time.sleep(0.3)
    assert sorted(cg.pids()) == pids  # the handlers wait for the thaw
    cg.thaw()
    wait_for(lambda: cg.pids() == [], what="the handlers to run once thawed")
    assert p.wait(timeout=10) == 7


def test_a_fatal_signal_kills_even_frozen_processes(cg, procs):
    p, pids = start_family(cg, procs)
    cg.freeze()
    cg.kill_all(signal.SIGTERM)
    wait_for(lambda: cg.pids() == [], what="SIGTERM to kill frozen processes")
    assert cg.freeze_requested()
    assert p.wait(timeout=10) == -signal.SIGTERM


def test_kill_all_in_sub_cgroups(cg, procs):
    sub = Cgroup(MOUNT, cg.path + "/inner")
    sub.create()
    p = procs.start("import time; time.sleep(600)")
    sub.add_pid(p.pid)
    assert cg.pids() == [p.pid]
    cg.kill_all(signal.SIGKILL)
    assert p.wait(timeout=10) == -signal.SIGKILL
    cg.destroy()
    assert not cg.exists()


# --------------------------------------------------------------------------
# The device filter (eBPF)
# --------------------------------------------------------------------------


@pytest.fixture
def nodes(tmp_path):
    """Device nodes made outside the cgroup: the filter judges the opener, not the node."""
    made = {}
    for name, kind, major, minor in (("null", stat.S_IFCHR, 1, 3), ("zero", stat.S_IFCHR, 1, 5),
                                     ("kmsg", stat.S_IFCHR, 1, 11),
                                     ("loop", stat.S_IFBLK, 7, 0)):
        path = tmp_path / name
        os.mknod(path, kind | 0o600, os.makedev(major, minor))
        made[name] = str(path)
    made["new"] = str(tmp_path / "new")
    return made


def test_default_rules_deny_all_but_runcs_allow_list(cg, procs, nodes):
    cg.set_devices([{"allow": False, "access": "rwm"}])
    p = procs.start(PROBE)
    cg.add_pid(p.pid)
    assert ask(p, "open", nodes["null"], "rw") == "ok"
    assert ask(p, "open", nodes["zero"], "r") == "ok"
    assert ask(p, "open", nodes["kmsg"], "r") == errno.EPERM
    assert ask(p, "open", nodes["loop"], "r") == errno.EPERM
    assert ask(p, "mknod", nodes["new"], "c", 1, 11) == "ok"  # runc allows mknod of any
    # the same process, outside the cgroup again: no filter
    Path(MOUNT + host.own_cgroup().rstrip("/"), "cgroup.procs").write_text(str(p.pid))
    assert ask(p, "open", nodes["kmsg"], "r") == "ok"


def test_updating_the_rules_replaces_the_program_live(cg, procs, nodes):
    p = procs.start(PROBE)
    cg.add_pid(p.pid)
    cg.set_devices([{"allow": False, "access": "rwm"}])
    assert ask(p, "open", nodes["kmsg"], "r") == errno.EPERM
    cg.set_devices([{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rw"},
                    {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "w"}])
    assert len(devices.attached_ids(cg.dir)) == 1
    assert ask(p, "open", nodes["kmsg"], "r") == "ok"       # the last rule wins:
    assert ask(p, "open", nodes["kmsg"], "w") == errno.EPERM  # w was taken back
    devices.detach_all(cg.dir)
    assert devices.attached_ids(cg.dir) == []
    assert ask(p, "open", nodes["kmsg"], "r") == "ok"


def test_mknod_of_a_denied_device_fails_with_eperm(cg, procs, nodes):
    # without runc's defaults (which allow mknod of anything): only /dev/null
    rules = devices.parse_rules([{"allow": False, "access": "rwm"},
                                 {"allow": True, "type": "c", "major": 1, "minor": 3,
                                  "access": "rwm"}])
    devices.install(cg.dir, devices.assemble(devices.reduce_rules(rules)))
    p = procs.start(PROBE)
    cg.add_pid(p.pid)
    assert ask(p, "mknod", nodes["new"], "c", 1, 5) == errno.EPERM
    assert ask(p, "mknod", nodes["new"], "b", 7, 0) == errno.EPERM
    assert ask(p, "mknod", nodes["new"], "c", 1, 3) == "ok"
    assert ask(p, "open", nodes["zero"], "r") == errno.EPERM
    assert ask(p, "open", nodes["null"], "w") == "ok"


def test_processes_of_sub_cgroups_are_filtered_too(cg, procs, nodes):
    cg.set_devices([{"allow": False, "access": "rwm"}])
    sub = Cgroup(MOUNT, cg.path + "/inner")
    sub.create()
    p = procs.start(PROBE)
    sub.add_pid(p.pid)
    assert ask(p, "open", nodes["kmsg"], "r") == errno.EPERM
    assert ask(p, "open", nodes["zero"], "r") == "ok"


# --------------------------------------------------------------------------
# Limits on this host
# --------------------------------------------------------------------------


@pytest.mark.skipif(not HYBRID, reason="a hybrid cgroup host")
@pytest.mark.parametrize("res,field,controller", [
    ({"memory": {"limit": 32 << 20}}, "linux.resources.memory", "memory"),
    ({"cpu": {"quota": 20000, "period": 100000}}, "linux.resources.cpu", "cpu"),
    ({"cpu": {"cpus": "0"}}, "linux.resources.cpu", "cpuset"),
    ({"pids": {"limit": 10}}, "linux.resources.pids", "pids"),
    ({"blockIO": {"weight": 100}}, "linux.resources.blockIO", "io"),
])
def test_v1_bound_limits_are_accepted_for_their_v1_hierarchy(res, field, controller):
    # validation only: they are applied in v1 (tests/test_cgroups_v1.py; memory in v1
    # only ever in the VM lane: the machine's own v1 memory hierarchy is not ours)
    validate_resources(res, MOUNT)


@pytest.mark.skipif(not HYBRID, reason="a hybrid cgroup host")
def test_v2_only_settings_are_refused_for_a_v1_bound_controller():
    with pytest.raises(ConfigError, match="linux.resources.cpu.burst: has no meaning in "
                                          "cgroup v1"):
        validate_resources({"cpu": {"quota": 20000, "period": 100000, "burst": 1000}}, MOUNT)


def test_device_rules_and_hugetlb_are_accepted_here():
    validate_resources({"devices": [{"allow": False, "access": "rwm"}],
                        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}]}, MOUNT)


@pytest.mark.skipif(not HYBRID, reason="a hybrid cgroup host")
def test_apply_without_validation_still_refuses_clearly(cg):
    with pytest.raises(CgroupError, match="cannot enable the memory controller"):
        cg.apply({"memory": {"limit": 1 << 20}}, devices=False)


@pytest.mark.skipif("hugetlb" not in host.v2_controllers(MOUNT), reason="no hugetlb in v2")
def test_apply_hugetlb_and_unified_keys(cg):
    size = host.hugepage_sizes()[0]
    cg.apply({"hugepageLimits": [{"pageSize": size, "limit": 4 << 20}],
              "unified": {"cgroup.max.descendants": "5"}}, devices=False)
    pages = (4 << 20) // _size_bytes(size) * _size_bytes(size)
    assert Path(cg.dir, f"hugetlb.{size}.max").read_text().strip() == str(pages)
    assert Path(cg.dir, "cgroup.max.descendants").read_text().strip() == "5"
    with pytest.raises(CgroupError, match=r"unified\.hugetlb\.2MB\.bogus: no such file"):
        cg.apply({"unified": {"hugetlb.2MB.bogus": "1"}}, devices=False)


def _size_bytes(name: str) -> int:
    return int(name[:-2]) << {"KB": 10, "MB": 20, "GB": 30}[name[-2:]]


def test_stats_here(cg, procs):
    p = procs.busy()
    cg.add_pid(p.pid)
    wait_for(lambda: cg.stats()["cpu"]["usage"].get("total", 0) > 20_000_000, what="CPU use")
    data = cg.stats()
    assert data["pids"]["current"] == 1
    assert data["cpu"]["usage"]["total"] >= data["cpu"]["usage"]["user"]
    for size in host.hugepage_sizes():
        if "hugetlb" in host.v2_controllers(MOUNT):
            assert data["hugetlb"][size]["failcnt"] == 0
    json.dumps(data)
    assert cg.oom_count() == 0
