"""Container limits enforced by the kernel, through the `minirun` command line: these need a
pure cgroup v2 host (memory, pids and cpu in the cgroup2 hierarchy), so on the hybrid
development host they are skipped and the VM lane runs them (`make test-vm`, Debian's 6.1
kernel under qemu, where code runs 50-100x slower: timeouts come from
MINIRUN_TEST_TIMEOUT, nothing asserts on speed).

What is checked is what the processes in the container live through: an allocation
beyond memory.limit is OOM-killed (`run` exits 137, `events` reports the oom), the fork
beyond pids.limit fails, a busy loop gets no more CPU than its quota, `update` changes a
live limit with an effect the container sees, and Python's own memory is not charged to
the container (`/bin/true` runs under a 1 MiB limit).

The cgroup side that works on any host (pause, kill --all, devices, paths, the hybrid
refusals) is in tests/test_cgroups_cli.py.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from conftest import CGROUP2_ROOT, TIMEOUT

MOUNT = CGROUP2_ROOT
CONTROLLERS = set((MOUNT / "cgroup.controllers").read_text().split())
pytestmark = pytest.mark.skipif(
    "memory" not in CONTROLLERS,
    reason="no memory controller in cgroup2 (not a pure cgroup v2 host): run it with "
           "`make test-vm`")

MiB = 1 << 20
BUSY = ["sh", "-c", "while :; do :; done"]
# dd allocates (and fills) its block: 200 MiB in one piece
DD_200M = "dd if=/dev/zero of=/dev/null bs=200M count=1"


def wait_for(pred, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def resources(**res) -> dict:
    return {"linux": {"resources": res}}


def started(runtime, bundle, cid, args, edits=None):
    c = cid()
    r = runtime.create(c, bundle(args, edits))
    assert r.returncode == 0, r
    runtime.ok("start", c)
    return c, r


def usage_usec(c: str) -> int:
    text = (MOUNT / "minirun" / c / "cpu.stat").read_text()
    return int(dict(line.split() for line in text.splitlines())["usage_usec"])


def stats(runtime, c: str) -> dict:
    event = json.loads(runtime.ok("events", "--stats", c).stdout)
    assert event["type"] == "stats" and event["id"] == c, event
    return event["data"]


# --------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------


def test_memory_limit_oom_kills_and_run_exits_137(run_container):
    r = run_container(DD_200M.split(), resources(memory={"limit": 32 * MiB}))
    assert r.returncode == 137, f"expected the OOM killer's SIGKILL (128+9):\n{r.result}"


def test_events_report_the_oom(runtime, bundle, cid, tmp_path):
    c = cid()
    script = f'{DD_200M}; echo "dd exit $?"; exec sleep 600'
    r = runtime.create(c, bundle(["sh", "-c", script], resources(memory={"limit": 32 * MiB})))
    assert r.returncode == 0, r
    out = tmp_path / "events.out"
    with open(out, "wb") as f:
        events = subprocess.Popen(runtime.argv("events", "--interval", "100ms", c),
                                  stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        # the first stats line: events is watching before the process allocates
        wait_for(lambda: out.read_text().strip(), "the first event")
        runtime.ok("start", c)
        wait_for(lambda: "dd exit 137" in r.read_stdout(), "dd to be OOM-killed")

        def oom_event():
            lines = out.read_text().splitlines()
            parsed = [json.loads(line) for line in lines[:-1]]  # the last may be partial
            return [e for e in parsed if e.get("type") == "oom"]

        got = wait_for(oom_event, "an oom event from `events`")
        assert got[0]["id"] == c, got
        data = stats(runtime, c)
        assert data["memory"]["usage"]["limit"] == 32 * MiB, data["memory"]
        runtime.ok("kill", c, "KILL")
        assert events.wait(timeout=TIMEOUT) == 0, out.read_text()
    finally:
        if events.poll() is None:
            events.kill()  # ours, by pid
            events.wait()


def test_events_report_the_oom_that_kills_the_init(runtime, bundle, cid, tmp_path):
    c = cid()
    r = runtime.create(c, bundle(DD_200M.split(), resources(memory={"limit": 32 * MiB})))
    assert r.returncode == 0, r
    out = tmp_path / "events.out"
    with open(out, "wb") as f:
        events = subprocess.Popen(runtime.argv("events", "--interval", "100ms", c),
                                  stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: out.read_text().strip(), "the first event")
        runtime.ok("start", c)
        assert events.wait(timeout=TIMEOUT) == 0, out.read_text()  # ends with the container
        kernel = (MOUNT / "minirun" / c / "memory.events").read_text().split()
        assert int(kernel[kernel.index("oom_kill") + 1]) >= 1, kernel  # it did happen
        types = [json.loads(line)["type"] for line in out.read_text().splitlines()]
        assert "oom" in types, f"no oom event among {len(types)} events"
    finally:
        if events.poll() is None:
            events.kill()  # ours, by pid
            events.wait()


def test_true_runs_under_a_1mib_memory_limit(run_container):
    """Python's memory is not charged to the container before exec."""
    r = run_container(["/bin/true"], resources(memory={"limit": 1 * MiB}))
    assert r.returncode == 0, r.result


def test_update_memory_on_a_live_container(runtime, bundle, cid):
    c, _ = started(runtime, bundle, cid, ["sleep", "600"], resources(memory={"limit": 256 * MiB}))
    dd = ["exec", c, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]
    r = runtime(*dd)
    assert r.returncode == 0, f"64 MiB under a 256 MiB limit:\n{r}"
    runtime.ok("update", "--memory", "16m", c)
    assert stats(runtime, c)["memory"]["usage"]["limit"] == 16 * MiB
    r = runtime(*dd)
    assert r.returncode == 137, f"64 MiB under a 16 MiB limit must be OOM-killed:\n{r}"
    assert runtime.state(c)["status"] == "running"  # only dd, the largest, was killed


# --------------------------------------------------------------------------
# pids
# --------------------------------------------------------------------------


def test_pids_limit_makes_the_sixth_process_fail_to_fork(run_container):
    script = 'i=0; while [ $i -lt 10 ]; do sleep 600 & i=$((i+1)); echo "started $i"; done'
    r = run_container(["sh", "-c", script], resources(pids={"limit": 5}))
    # sh (1) + 4 sleeps = 5; the next fork fails and the shell exits 2
    assert r.stdout.splitlines() == [f"started {i}" for i in range(1, 5)], r.result
    assert "can't fork: Resource temporarily unavailable" in r.stderr, r.result
    assert r.returncode == 2, r.result


def test_update_pids_limit_on_a_live_container(runtime, bundle, cid):
    c, _ = started(runtime, bundle, cid, ["sleep", "600"], resources(pids={"limit": 2}))
    fork = ["exec", c, "sh", "-c", "sleep 0 & wait $!; echo forked"]
    r = runtime(*fork)  # sleep 600 + sh = 2: sh's fork is the third
    assert r.returncode != 0 and "can't fork" in r.stderr, r
    runtime.ok("update", "--pids-limit", "10", c)
    assert stats(runtime, c)["pids"]["limit"] == 10
    r = runtime(*fork)
    assert r.returncode == 0 and r.stdout == "forked\n", r
    runtime.ok("update", "--pids-limit", "2", c)
    r = runtime(*fork)
    assert r.returncode != 0 and "can't fork" in r.stderr, r


# --------------------------------------------------------------------------
# cpu
# --------------------------------------------------------------------------


def test_cpu_quota_caps_a_busy_loop(runtime, bundle, cid):
    c, _ = started(runtime, bundle, cid, BUSY,
                   resources(cpu={"quota": 20000, "period": 100000}))
    wait_for(lambda: usage_usec(c) > 100_000, "the busy loop to use CPU")
    used0, wall0 = usage_usec(c), time.monotonic()
    time.sleep(2.0)
    used, wall = usage_usec(c) - used0, time.monotonic() - wall0
    share = used / (wall * 1e6)
    assert 0 < share <= 0.30, f"the loop got {share:.0%} of a CPU under a 20% quota"
    throttling = stats(runtime, c)["cpu"]["throttling"]
    assert throttling.get("throttledPeriods", 0) > 0, throttling
