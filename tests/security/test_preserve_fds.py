"""--preserve-fds N hands over fds 3..3+N-1 of the caller, and nothing of minirun's
(issue 13, item 2): a missing fd in the range is refused with runc's words before minirun
opens anything, so none of its own fds (the set-up socket, a cgroup.procs, start's
connection, the --log file) can take such a number and reach the container."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import TIMEOUT

PROBE = ("for f in /proc/self/fd/*; do n=${f##*/}; [ $n -gt 2 ] && "
         "echo fd $n $(readlink $f); done; true")


def _run(runtime, *args, pass_fds=()):
    with open(runtime.workdir / "pf.out", "w+") as out:
        r = subprocess.run(runtime.argv(*args), stdin=subprocess.DEVNULL, stdout=out,
                           stderr=subprocess.STDOUT, pass_fds=pass_fds, timeout=TIMEOUT)
        out.seek(0)
        return r.returncode, out.read()


@pytest.mark.parametrize("command", ["run", "create"])
def test_missing_preserved_fds_are_refused(runtime, bundle, cid, command, tmp_path):
    log = tmp_path / "log.json"
    rc, out = _run(runtime, "--log", log, "--log-format", "json", command, "--preserve-fds",
                   "10", "--bundle", bundle(["sh", "-c", PROBE]), cid())
    assert rc != 0
    assert "unable to stat preserved-fd 0 (of 10)" in out, out
    assert "unable to stat preserved-fd 0 (of 10)" in log.read_text()
    assert not runtime.root.exists() or os.listdir(runtime.root) == []


def test_exec_missing_preserved_fds_are_refused(runtime, bundle, cid):
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "1000"]), c)
    rc, out = _run(runtime, "exec", "--preserve-fds", "5", c, "sh", "-c", PROBE)
    assert rc != 0 and "unable to stat preserved-fd 0 (of 5)" in out, out
    runtime.ok("delete", "--force", c)


def test_only_the_callers_fds_reach_the_container(runtime, bundle, tmp_path, cid):
    rc, out = _run_shifted(runtime, tmp_path, bundle(["sh", "-c", PROBE]), cid())
    assert rc == 0, out
    # (the shell's own directory fd while it globs /proc/self/fd is gone by readlink)
    seen = {f[1]: f[2] for f in (line.split() for line in out.splitlines())
            if f[0] == "fd" and len(f) == 3}
    assert set(seen) == {"3", "4"}, out
    assert seen["3"].endswith("/a") and seen["4"].endswith("/b"), out


def _run_shifted(runtime, tmp_path, bundle_dir, c):
    """run --preserve-fds 2 with the caller's fds 3 and 4 being files a and b."""
    script = (f'exec 3>"{tmp_path}/a" 4>"{tmp_path}/b"; exec "$@"')
    with open(runtime.workdir / "pf.out", "w+") as out:
        r = subprocess.run(["sh", "-c", script, "sh", *runtime.argv(
            "run", "--preserve-fds", "2", "--bundle", bundle_dir, c)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=TIMEOUT,
            close_fds=True)
        out.seek(0)
        return r.returncode, out.read()


@pytest.mark.minirun_only
def test_a_second_pid_message_is_refused():
    """Defence in depth: were the set-up socket ever reachable from the container, a
    forged {"type": "pid"} could name a host pid for the runtime to kill on error."""
    import importlib
    import json
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    try:
        launch = importlib.import_module("minirun.launch")
        wire = importlib.import_module("minirun.wire")
    except ImportError:
        pytest.skip("minirun's source tree is not importable here")
    finally:
        sys.path.pop(0)
    s = launch.SetupSession()
    try:
        wire.send(s.theirs, json.dumps({"type": "pid", "pid": 123456}).encode())
        wire.send(s.theirs, json.dumps({"type": "pid", "pid": 1}).encode())
        with pytest.raises(Exception, match="second pid"):
            s.listen(until="ready")
        assert s.pids == [123456]
    finally:
        s.theirs.close()
        s.ours.close()
        os.close(s.done_r)
        os.close(s.done_w)
