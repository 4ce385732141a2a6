"""podman 4.3 (with conmon 2.1) driving the runtime under test through
``podman --runtime``: the calls measured in ``shared/notes/engines.md``.

Each scenario checks the exit codes podman reports and the output the container
wrote; the harness (``conftest.py``) checks that nothing is left behind, including
the state podman leaves under the runtime's default root.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from .conftest import (
    cgroups_of,
    engine_v1_mount,
    hybrid_view,
    pid_alive,
    skip_unless_usable,
    wait_for,
)

skip_unless_usable("podman", "conmon", "nsenter", "script")

LOOP = 'trap "exit 7" TERM; trap "exit 9" USR1; while :; do sleep 0.1; done'
# the counter file is replaced by rename: a pause never freezes it half-written
COUNTER = ('trap "exit 7" TERM; i=0; while :; do i=$((i+1)); '
           'echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.05; done')


def start(podman, script: str) -> tuple[str, int]:
    """``podman run -d`` a container running ``sh -c script``; returns (name, host pid)."""
    n = podman.cid()
    r = podman.run(n, "sh", "-c", script, detach=True)
    assert r.returncode == 0, r
    assert re.fullmatch(r"[0-9a-f]{64}", podman.full_ids[n]), r
    assert podman.inspect(n, "{{.State.Status}}") == "running"
    return n, int(podman.inspect(n, "{{.State.Pid}}"))


def remove(podman, n: str) -> None:
    r = podman("rm", "-f", "-t", "0", n)
    assert r.returncode == 0, r


def wait_exit(podman, n: str) -> int:
    r = podman("wait", n)
    assert r.returncode == 0, r
    return int(r.stdout.strip())


# --------------------------------------------------------------------------


def test_run_rm(podman):
    n = podman.cid()
    r = podman.run(n, "sh", "-c", "echo out; echo err >&2; echo pid=$$; exit 3", rm=True)
    assert r.returncode == 3, r
    assert r.stdout == "out\npid=1\n", r
    assert "err\n" in r.stderr, r
    assert n not in podman.names()


def test_run_rm_stdin(podman):
    n = podman.cid()
    r = podman.run(n, "sh", "-c", "[ -t 0 ] || echo not-a-tty; cat", rm=True,
                   interactive=True, input="through the pipe\n")
    assert r.returncode == 0, r
    assert r.stdout == "not-a-tty\nthrough the pipe\n", r


def test_run_rm_tty(podman):
    n = podman.cid()
    r = podman.run(n, "sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both-ttys; exit 4",
                   rm=True, tty=True)
    assert r.returncode == 4, r
    assert "/dev/pts/0\n" in r.stdout and "both-ttys\n" in r.stdout, r
    assert n not in podman.names()


def test_run_detached_and_exec(podman):
    n, pid = start(podman, LOOP)
    assert pid_alive(pid)
    r = podman("exec", n, "sh", "-c",
               "echo in-exec; [ $$ != 1 ] && echo not-pid-1; "
               "tr '\\0' ' ' < /proc/1/cmdline; echo; [ -t 0 ] || echo not-a-tty; exit 5")
    assert r.returncode == 5, r
    assert r.stdout.splitlines() == ["in-exec", "not-pid-1", f"sh -c {LOOP} ", "not-a-tty"], r
    r = podman("exec", "-i", n, "cat", input="exec stdin\n")
    assert r.returncode == 0, r
    assert r.stdout == "exec stdin\n", r
    assert podman.inspect(n, "{{.State.Status}}") == "running"
    remove(podman, n)


def test_exec_tty(podman):
    n, _ = start(podman, LOOP)
    r = podman("exec", "-t", n, "sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both-ttys; exit 6",
               tty=True)
    assert r.returncode == 6, r
    assert "/dev/pts/" in r.stdout and "both-ttys\n" in r.stdout, r
    remove(podman, n)


def test_top(podman):
    n, _ = start(podman, "sleep 1000 & sleep 1001 & wait")
    r = wait_for(lambda: (lambda r: r if "sleep 1001" in r.stdout else None)(podman("top", n)),
                 "podman top to show both sleeps")
    assert r.returncode == 0, r
    assert "sleep 1000" in r.stdout, r
    r = podman("top", n, "pid", "args")
    assert r.returncode == 0, r
    rows = [line.split(None, 1) for line in r.stdout.splitlines()[1:]]
    assert ["1", "sh -c sleep 1000 & sleep 1001 & wait"] in [[a, b.strip()] for a, b in rows], r
    remove(podman, n)


def _count(pid: int) -> int:
    def read():
        try:
            return int(Path(f"/proc/{pid}/root/tmp/count").read_text())
        except (OSError, ValueError):
            return None
    return wait_for(read, "the counter file", 10)


def test_pause_unpause(podman):
    n, pid = start(podman, COUNTER)
    _count(pid)
    r = podman("pause", n)
    assert r.returncode == 0, r
    assert podman.inspect(n, "{{.State.Status}}") == "paused"
    before = _count(pid)
    time.sleep(0.4)
    assert _count(pid) == before, "the counter moved while paused"
    r = podman("unpause", n)
    assert r.returncode == 0, r
    assert podman.inspect(n, "{{.State.Status}}") == "running"
    wait_for(lambda: _count(pid) > before, "the counter to move again", 10)
    remove(podman, n)


def test_kill_signal(podman):
    n, pid = start(podman, LOOP)
    r = podman("kill", "-s", "USR1", n)  # trapped: exit 9
    assert r.returncode == 0, r
    assert wait_exit(podman, n) == 9
    assert not pid_alive(pid)
    remove(podman, n)


def test_kill(podman):
    n, pid = start(podman, LOOP)
    r = podman("kill", n)  # SIGKILL
    assert r.returncode == 0, r
    assert wait_exit(podman, n) == 137
    assert not pid_alive(pid)
    remove(podman, n)


def test_stop(podman):
    n, pid = start(podman, LOOP)
    r = podman("stop", "-t", "10", n)  # SIGTERM, trapped: exit 7
    assert r.returncode == 0, r
    assert podman.inspect(n, "{{.State.Status}}") == "exited"
    assert podman.inspect(n, "{{.State.ExitCode}}") == "7"
    assert not pid_alive(pid)
    remove(podman, n)


def test_rm_force(podman):
    n, pid = start(podman, "sleep 1000 & wait")
    r = podman("rm", "-f", n)
    assert r.returncode == 0, r
    assert n not in podman.names()
    wait_for(lambda: not pid_alive(pid), "the container's init to die")


def test_run_rm_bad_command(podman):
    n = podman.cid()
    r = podman.run(n, "/no/such/binary", rm=True)
    assert r.returncode != 0, r
    assert "/no/such/binary" in r.stdout + r.stderr, r
    assert n not in podman.names()


@pytest.mark.skipif(not hybrid_view(), reason="the engines see no cgroup v1 hierarchy here")
def test_stock_pids_limit_lands_in_the_v1_pids_hierarchy(podman):
    # podman's stock pids_limit (2048) is a v1 pids.max on a hybrid host
    n, pid = start(podman, LOOP)
    cg = cgroups_of(pid)
    rel = f"{podman.session.cgroup_parent}/libpod-{podman.full_ids[n]}"
    assert cg["pids"] == rel, cg
    assert (engine_v1_mount("pids") / rel.lstrip("/") / "pids.max").read_text() == "2048\n"
    assert cg["memory"] == cgroups_of("self")["memory"], cg
    remove(podman, n)
