"""containerd 1.6 (``ctr``, ``io.containerd.runc.v2`` shim) driving the runtime under
test through ``--runc-binary``: the calls measured in ``shared/notes/engines.md``.

Each scenario checks the exit codes ctr reports and the output the container wrote;
the harness (``conftest.py``) checks that nothing is left behind.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import (
    IMAGE,
    cgroups_of,
    children_table,
    engine_v1_mount,
    hybrid_view,
    pid_alive,
    skip_unless_usable,
    wait_for,
)

skip_unless_usable("containerd", "ctr", "containerd-shim-runc-v2", "script")

# PID 1 ignores SIGTERM unless it traps it
LOOP = 'trap "exit 7" TERM; while :; do sleep 0.1; done'
# the counter file is replaced by rename: a pause never freezes it half-written
COUNTER = ('trap "exit 7" TERM; i=0; while :; do i=$((i+1)); '
           'echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.05; done')
TWO_SLEEPS = "sleep 1000 & sleep 1001 & wait"
FIFO_DIR = Path("/run/containerd/fifo")  # ctr's stdio fifos, one directory per task


def start(ctr, script: str) -> tuple[str, int]:
    """``ctr run -d`` a container running ``sh -c script``; returns (id, host pid)."""
    c = ctr.cid()
    r = ctr.run(c, "sh", "-c", script, detach=True)
    assert r.returncode == 0, r
    ctr.wait_status(c, "RUNNING")
    return c, ctr.pid(c)


def remove(ctr, c: str) -> None:
    r = ctr("task", "delete", "-f", c)
    assert r.returncode == 0, r
    r = ctr("containers", "rm", c)
    assert r.returncode == 0, r


def ps_pids(ctr, c: str) -> list[int]:
    r = ctr("task", "ps", c)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines and lines[0].split()[0] == "PID", r
    return [int(line.split()[0]) for line in lines[1:] if line.strip()]


def host_tree(pid: int) -> set[int]:
    table = children_table()
    out, todo = {pid}, [pid]
    while todo:
        for ch in table.get(todo.pop(), []):
            out.add(ch)
            todo.append(ch)
    return out


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


# --------------------------------------------------------------------------


def test_run_rm(ctr):
    c = ctr.cid()
    r = ctr.run(c, "sh", "-c", "echo out; echo err >&2; echo pid=$$; exit 3", rm=True)
    assert r.returncode == 3, r
    assert r.stdout == "out\npid=1\n", r
    assert "err\n" in r.stderr, r
    assert c not in ctr.containers()


def test_run_rm_stdin(ctr):
    # ctr run never closes the container's stdin at EOF: read one line, not to EOF
    c = ctr.cid()
    r = ctr.run(c, "sh", "-c", '[ -t 0 ] || echo not-a-tty; read line; echo "got $line"',
                rm=True, input="through the pipe\n")
    assert r.returncode == 0, r
    assert r.stdout == "not-a-tty\ngot through the pipe\n", r


def test_run_rm_tty(ctr):
    c = ctr.cid()
    r = ctr.run(c, "sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both-ttys; exit 4",
                rm=True, tty=True)
    assert r.returncode == 4, r
    assert "/dev/pts/0\n" in r.stdout, r
    assert "both-ttys\n" in r.stdout, r
    assert c not in ctr.containers()


def test_run_detached_and_exec(ctr):
    c, pid = start(ctr, LOOP)
    assert pid_alive(pid)
    r = ctr("task", "exec", "--exec-id", f"{c}-x1", c, "sh", "-c",
            "echo in-exec; [ $$ != 1 ] && echo not-pid-1; "
            "tr '\\0' ' ' < /proc/1/cmdline; echo; [ -t 0 ] || echo not-a-tty; exit 5")
    assert r.returncode == 5, r
    assert r.stdout.splitlines() == ["in-exec", "not-pid-1", f"sh -c {LOOP} ", "not-a-tty"], r
    r = ctr("task", "exec", "--exec-id", f"{c}-x2", c, "sh", "-c", 'read line; echo "got $line"',
            input="exec stdin\n")
    assert r.returncode == 0, r
    assert r.stdout == "got exec stdin\n", r
    assert ctr.status(c) == "RUNNING"
    remove(ctr, c)


def test_exec_tty(ctr):
    c, _ = start(ctr, LOOP)
    r = ctr("task", "exec", "-t", "--exec-id", f"{c}-x1", c, "sh", "-c",
            "tty; [ -t 0 ] && [ -t 1 ] && echo both-ttys; exit 6", tty=True)
    assert r.returncode == 6, r
    assert "/dev/pts/" in r.stdout and "both-ttys\n" in r.stdout, r
    assert ctr.status(c) == "RUNNING"
    remove(ctr, c)


def test_task_ps(ctr):
    c, pid = start(ctr, TWO_SLEEPS)
    wait_for(lambda: len(host_tree(pid)) == 3, "the two sleeps to start")
    pids = ps_pids(ctr, c)
    assert sorted(pids) == sorted(host_tree(pid)), pids
    assert pid in pids
    assert sorted(cmdline(p) for p in pids if p != pid) == ["sleep 1000", "sleep 1001"]
    remove(ctr, c)


def _count(pid: int) -> int:
    def read():
        try:
            return int(Path(f"/proc/{pid}/root/tmp/count").read_text())
        except (OSError, ValueError):
            return None  # not yet written, or caught mid-write
    return wait_for(read, "the counter file", 10)


def test_pause_resume(ctr):
    c, pid = start(ctr, COUNTER)
    _count(pid)
    r = ctr("task", "pause", c)
    assert r.returncode == 0, r
    assert ctr.status(c) == "PAUSED"
    before = _count(pid)
    time.sleep(0.4)
    assert _count(pid) == before, "the counter moved while paused"
    r = ctr("task", "resume", c)
    assert r.returncode == 0, r
    assert ctr.status(c) == "RUNNING"
    wait_for(lambda: _count(pid) > before, "the counter to move again", 10)
    remove(ctr, c)


def test_kill(ctr):
    c, pid = start(ctr, LOOP)
    r = ctr("task", "kill", c)  # SIGTERM, trapped: exit 7
    assert r.returncode == 0, r
    ctr.wait_status(c, "STOPPED")
    assert not pid_alive(pid)
    r = ctr("task", "delete", c)
    assert r.returncode == 0, r
    assert "exit code 7" in r.stderr, r
    r = ctr("containers", "rm", c)
    assert r.returncode == 0, r


def test_kill_all(ctr):
    c, pid = start(ctr, TWO_SLEEPS)
    wait_for(lambda: len(host_tree(pid)) == 3, "the two sleeps to start")
    pids = host_tree(pid)
    r = ctr("task", "kill", "-a", "-s", "KILL", c)
    assert r.returncode == 0, r
    ctr.wait_status(c, "STOPPED")
    wait_for(lambda: not any(pid_alive(p) for p in pids), "every process of the container to die")
    r = ctr("task", "delete", c)
    assert r.returncode == 0, r
    assert "exit code 137" in r.stderr, r
    r = ctr("containers", "rm", c)
    assert r.returncode == 0, r


def test_delete_force(ctr):
    c, pid = start(ctr, TWO_SLEEPS)
    wait_for(lambda: len(host_tree(pid)) == 3, "the two sleeps to start")
    pids = host_tree(pid)
    r = ctr("task", "delete", "-f", c)
    assert r.returncode == 0, r
    assert c not in ctr.tasks()
    wait_for(lambda: not any(pid_alive(p) for p in pids), "every process of the container to die")
    r = ctr("containers", "rm", c)
    assert r.returncode == 0, r
    assert c not in ctr.containers()


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "tty"])
def test_run_rm_bad_command(ctr, tty):
    """A command missing from the image: the runtime's error reaches the user and
    nothing is left (the harness checks)."""
    c = ctr.cid()
    r = ctr.run(c, "/no/such/binary", rm=True, tty=tty)
    assert r.returncode != 0, r
    out = r.stdout + r.stderr
    assert "/no/such/binary" in out, r
    assert c not in ctr.containers()


@pytest.mark.skipif(not hybrid_view(), reason="the engines see no cgroup v1 hierarchy here")
def test_stock_cpu_shares_land_in_the_v1_cpu_hierarchy(ctr):
    # ctr's stock settings ask for cpu shares 1024; on a hybrid host cpu is bound to
    # v1, where runc writes cpu.shares in the container's cgroup /<namespace>/<id>.
    c, pid = start(ctr, LOOP)
    cg = cgroups_of(pid)
    rel = f"/{ctr.session.namespace}/{c}"
    assert cg["cpu"] == rel, cg
    assert (engine_v1_mount("cpu") / rel.lstrip("/") / "cpu.shares").read_text() == "1024\n"
    assert cg[""] == rel, cg  # tracked (ps, pause, kill --all) in its cgroup2 directory
    # the machine's memory hierarchy: no limit asked, so the container stays where
    # containerd's shim is
    assert cg["memory"] == cgroups_of("self")["memory"], cg
    remove(ctr, c)


def test_containerd_restarted_while_a_container_runs(ctr):
    # containerd reconnects to the running shim (its address file in the bundle) and
    # carries on: the task is still there, exec works, kill and delete end it
    c, pid = start(ctr, LOOP)
    ctr.host.restart_containerd()
    wait_for(lambda: ctr("version", timeout=10).returncode == 0, "containerd to answer", 30)
    ctr.wait_status(c, "RUNNING")
    assert ctr.pid(c) == pid and pid_alive(pid)
    r = ctr("task", "exec", "--exec-id", f"{c}-x1", c, "echo", "after-restart")
    assert r.returncode == 0 and r.stdout == "after-restart\n", r
    r = ctr("task", "kill", c)
    assert r.returncode == 0, r
    ctr.wait_status(c, "STOPPED")
    remove(ctr, c)


def test_ctr_killed_container_lives(ctr):
    # `ctr run` (no -d) reads the container's output from containerd's fifos; killed,
    # it stops reading. As with runc's shim, the container writes on (into the fifo,
    # which its shim holds open for reading too) instead of dying of SIGPIPE.
    c = ctr.cid()
    argv = ctr.session.argv("run", *ctr.runtime_flags, IMAGE, c, "sh", "-c",
                            'trap "exit 7" TERM; while :; do echo tick; sleep 0.02; done')
    err = ctr.host.scratch / f"{c}.ctr.err"
    with open(err, "wb") as err_f:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=err_f)
    try:
        assert p.stdout.readline() == b"tick\n", err.read_text()
        fifos = {d for d in FIFO_DIR.iterdir()} if FIFO_DIR.is_dir() else set()
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    time.sleep(1)  # ~50 writes with nobody reading
    assert ctr.status(c) == "RUNNING", ctr("task", "ls")
    remove(ctr, c)
    # a killed ctr leaves its fifos (its own to remove): not the runtime's leak
    for d in (FIFO_DIR.iterdir() if FIFO_DIR.is_dir() else []):
        if d in fifos and any(n.name.startswith(c) for n in d.iterdir()):
            shutil.rmtree(d)
