"""Races between runtime calls: the same id twice, many lifecycles at once, delete against
start, kill against the init's exit.

Each race is run several times with the two sides started together; whatever order the
kernel picks, every call either succeeds or fails with one clear line (never a
traceback), and nothing is left behind (the leak guard checks mounts, state, cgroups
and processes after each test).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import TIMEOUT

ROUNDS = 8


def _spawn(rt, *args, tag: str) -> tuple[subprocess.Popen, Path]:
    """Start one runtime call in the background; its stderr goes to a file (see Result)."""
    err = rt.workdir / f"race-{tag}.err"
    out = rt.workdir / f"race-{tag}.out"
    with open(out, "wb") as o, open(err, "wb") as e:
        p = subprocess.Popen(rt.argv(*args), stdin=subprocess.DEVNULL, stdout=o, stderr=e)
    return p, err


def _finish(p: subprocess.Popen, err: Path) -> tuple[int, str]:
    rc = p.wait(timeout=TIMEOUT)
    return rc, err.read_text(errors="replace")


def _one_clear_line(text: str) -> None:
    assert "Traceback" not in text, text
    assert "internal error" not in text, text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) <= 1, f"more than one line of error:\n{text}"


@pytest.mark.minirun_only  # runc 1.1.5 can fail both creates ("file exists" + init state error)
def test_same_id_twice_exactly_one_wins(runtime, bundle, cid):
    b = bundle(["sleep", "1000"])
    for n in range(ROUNDS):
        c = cid(f"r{n}")
        a = _spawn(runtime, "create", "--bundle", b, c, tag=f"{n}a")
        z = _spawn(runtime, "create", "--bundle", b, c, tag=f"{n}b")
        results = [_finish(*a), _finish(*z)]
        codes = sorted(rc for rc, _ in results)
        assert codes[0] == 0 and codes[1] != 0, results
        loser = next(text for rc, text in results if rc != 0)
        assert "already exists" in loser or "exists" in loser, loser
        _one_clear_line(loser)
        assert runtime.state(c)["status"] == "created"
        runtime.ok("delete", "--force", c)


def test_fifty_parallel_lifecycles(runtime, bundle, cid):
    b = bundle(["true"])
    procs = [(_spawn(runtime, "run", "--bundle", b, c, tag=c), c)
             for c in (cid(f"p{n}") for n in range(50))]
    failures = []
    for (p, err), c in procs:
        rc, text = _finish(p, err)
        if rc != 0:
            failures.append((c, rc, text))
    assert not failures, failures
    r = runtime.ok("list", "--format", "json")
    assert json.loads(r.stdout or "null") in (None, []), r.stdout


@pytest.mark.parametrize("rounds", [ROUNDS])
def test_delete_against_start(runtime, bundle, cid, rounds):
    b = bundle(["sleep", "1000"])
    for n in range(rounds):
        c = cid(f"d{n}")
        runtime.ok("create", "--bundle", b, c)
        s = _spawn(runtime, "start", c, tag=f"{n}s")
        d = _spawn(runtime, "delete", "--force", c, tag=f"{n}d")
        (src, stext), (drc, dtext) = _finish(*s), _finish(*d)
        assert src == 0 or stext.strip(), "start failed without saying why"
        assert drc == 0, dtext
        _one_clear_line(stext)
        _one_clear_line(dtext)
        # Whoever won, the container is gone: no state, no process (the leak guard
        # checks processes and cgroups at the end of the test).
        gone = runtime("state", c)
        assert gone.returncode != 0 and "does not exist" in gone.stderr, gone


def test_kill_against_exit(runtime, bundle, cid):
    # The init exits on its own (after a short sleep) while kill is on its way:
    # kill either delivers or says the container is not running; never more.
    b = bundle(["sh", "-c", "sleep 0.0$((RANDOM % 5))"])
    for n in range(ROUNDS):
        c = cid(f"k{n}")
        runtime.ok("create", "--bundle", b, c)
        runtime.ok("start", c)
        k = _spawn(runtime, "kill", c, "KILL", tag=f"{n}k")
        rc, text = _finish(*k)
        if rc != 0:
            _one_clear_line(text)
            assert "not running" in text or "stopped" in text, text
        runtime.wait_status(c, "stopped")
        runtime.ok("delete", c)
