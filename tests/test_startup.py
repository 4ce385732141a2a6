"""What `run` and `exec` import (issue 11): the modules the lite layer keeps off the hot
path stay off it, in the runtime and in its set-up processes. Checked through
`python -X importtime` on the real launcher with real containers, not by timing."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MINIRUN_BIN, TIMEOUT, under_runc

pytestmark = [pytest.mark.minirun_only,
              pytest.mark.skipif(under_runc(), reason="minirun's own imports")]

# Each costs 1-5 ms of a run's ~40 (enum through re/socket/signal, collections, ...);
# minirun/lite has what the path needs from them.
HEAVY = {"re", "enum", "json", "socket", "signal", "selectors", "subprocess", "collections",
         "copy", "typing", "functools", "dataclasses", "threading", "secrets", "random",
         "prctl", "pyroute2", "google.protobuf", "asyncio", "logging", "tempfile", "shutil",
         "termios", "minirun.terminal"}


def _imports(runtime, *args: object) -> set[str]:
    """The modules imported by `minirun ARGS` and the processes it forks."""
    python = Path(MINIRUN_BIN).read_text().splitlines()[0][2:].split()[0]
    argv = [python, "-IS", "-X", "importtime", *runtime.argv(*args)]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert res.returncode == 0, res.stderr
    names = {line.rsplit("|", 1)[1].strip() for line in res.stderr.splitlines()
             if line.startswith("import time:") and "|" in line}
    assert "minirun.cli" in names, res.stderr[-2000:]  # the launcher did run, traced
    return names


def test_run_imports_nothing_heavy(runtime, bundle, cid):
    names = _imports(runtime, "run", "--bundle", bundle(["true"]), cid())
    assert "minirun.linux.init" in names  # the set-up processes' imports are in it too
    assert not names & HEAVY, sorted(names & HEAVY)


def test_exec_imports_nothing_heavy(runtime, bundle, cid):
    c = cid()
    r = runtime("run", "-d", "--bundle", bundle(["sleep", "100"]), c)
    assert r.returncode == 0, r
    try:
        names = _imports(runtime, "exec", c, "true")
        assert not names & HEAVY, sorted(names & HEAVY)
    finally:
        runtime("delete", "--force", c)


def test_the_launcher_is_the_entry_that_warms_up():
    first = Path(MINIRUN_BIN).read_text()
    if not first.startswith("#!") or "python" not in first.splitlines()[0]:
        pytest.skip(f"{MINIRUN_BIN} is not a Python launcher")
    assert "from minirun.entry import main" in first, first


def test_the_shim_starts_without_heavy_imports():
    """containerd runs the shim's `start` and `delete` for every container."""
    python = Path(MINIRUN_BIN).read_text().splitlines()[0][2:].split()[0]
    res = subprocess.run([python, "-IS", "-X", "importtime", "-c",
                          f"import sys; sys.path[:0] = {sys.path!r}; import minirun.shim.main"],
                         capture_output=True, text=True, timeout=TIMEOUT, check=True)
    names = {line.rsplit("|", 1)[1].strip() for line in res.stderr.splitlines()
             if line.startswith("import time:") and "|" in line}
    assert "minirun.shim.main" in names
    assert not names & (HEAVY | {"hashlib", "_hashlib"}), sorted(names & HEAVY)


@pytest.mark.parametrize("argv", [["run", "--no-such-flag", "x"],
                                  ["exec", "no-such-container", "true"],
                                  ["run", "--bundle", "/no/such/bundle", "x"],
                                  ["run", "--network", "bridge", "--bundle", "/no/such", "x"]])
def test_the_warmer_never_outlives_minirun(runtime, argv):
    """The processes forked at start (warmup.py's warmer; the network helper when the
    command line asks for a bridge) are reaped even when the command fails early: run
    as a subreaper, nothing is left to re-parent to us once minirun has exited."""
    code = (
        "import ctypes, os, subprocess, sys\n"
        "ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER\n"
        "rc = subprocess.run(sys.argv[1:], capture_output=True).returncode\n"
        "left = [int(d) for d in os.listdir('/proc') if d.isdigit()\n"
        "        and open(f'/proc/{d}/stat').read().rsplit(')', 1)[1].split()[1]\n"
        "        == str(os.getpid())]\n"
        "print(rc, left)\n")
    res = subprocess.run([sys.executable, "-c", code, *runtime.argv(*argv)],
                         capture_output=True, text=True, timeout=TIMEOUT, check=True)
    rc, left = res.stdout.split(" ", 1)
    assert rc != "0" and left.strip() == "[]", res.stdout
