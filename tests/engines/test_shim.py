"""minirun's own containerd shim (containerd-shim-minirun-v1) beyond the scenarios every
route shares (test_containerd.py runs those through it too): one server for the
containers of a namespace, metrics, a shim killed with SIGKILL and cleaned up by
containerd through `shim delete`, bad requests answered while the server stays up."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from .conftest import pid_alive, skip_unless_usable, wait_for
from .test_containerd import LOOP, remove, start

skip_unless_usable("containerd", "ctr", "script")

ROUTE = pytest.mark.parametrize("ctr", ["minirun-shim"], indirect=True)


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2:].split()[1])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@ROUTE
def test_ten_containers_share_one_shim(ctr, record_property):
    started = [start(ctr, LOOP) for _ in range(10)]
    shims = {_ppid(pid) for _, pid in started}
    assert len(shims) == 1, f"one shim process per namespace, not {shims}"
    shim = shims.pop()
    assert "containerd-shim-minirun-v1" in Path(f"/proc/{shim}/cmdline").read_text()
    record_property("shim_rss_kib_10_containers", _rss_kib(shim))
    for c, _ in started:
        remove(ctr, c)
    # the server ends once its last container is gone (after a short grace)
    wait_for(lambda: not pid_alive(shim), "the shim server to end", 15)


@ROUTE
def test_metrics(ctr):
    c, _ = start(ctr, LOOP)
    r = ctr("task", "metrics", c)
    assert r.returncode == 0, r
    assert c in r.stdout and "pids.current" in r.stdout, r
    remove(ctr, c)


@ROUTE
def test_killed_shim_cleaned_by_containerd(ctr):
    c, pid = start(ctr, LOOP)
    shim = _ppid(pid)
    os.kill(shim, signal.SIGKILL)  # the shim server this test's container made
    # containerd sees the connection drop and runs `shim delete`: the container is
    # force-deleted (its processes killed, its state and rootfs mount gone)
    wait_for(lambda: not pid_alive(pid), "the container to be killed", 20)
    wait_for(lambda: not (ctr.state_root / c).exists(), "its runtime state to go", 20)
    # and the dead server's socket (no later start in this namespace would remove it)
    from minirun.shim.main import socket_path

    sock = Path(socket_path(ctr.session.address, ctr.session.namespace))
    wait_for(lambda: not sock.exists(), "the killed shim's socket to go", 20)
    r = ctr("task", "delete", "-f", c)  # containerd may have removed the task already
    r = ctr("containers", "rm", c)
    assert r.returncode == 0, r
    # ctr's stdio fifos of a task whose shim died are ctr's to remove, and it does not
    # (the runc shim's route leaves the same fifos, and its shim socket too): removed
    # here, so that the leak check judges what the shim and the runtime left
    fifo = Path("/run/containerd/fifo")
    for d in fifo.iterdir() if fifo.is_dir() else []:
        if any(n.name.startswith(c) for n in d.iterdir()):
            shutil.rmtree(d)


@ROUTE
def test_bad_requests_leave_the_server_up(ctr):
    c, pid = start(ctr, LOOP)
    shim = _ppid(pid)
    r = ctr("task", "exec", "--exec-id", "x1", c, "/no/such/binary")
    assert r.returncode != 0, r
    assert "no/such/binary" in r.stderr, r  # the runtime's own words reach the user
    r = ctr("task", "resume", c)  # not paused
    assert r.returncode != 0, r
    r = ctr("task", "checkpoint", c)
    assert r.returncode != 0, r
    assert pid_alive(shim) and ctr.status(c) == "RUNNING"
    r = ctr("task", "exec", "--exec-id", "x2", c, "echo", "still-served")
    assert r.returncode == 0 and r.stdout == "still-served\n", r
    remove(ctr, c)
