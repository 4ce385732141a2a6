"""Faults and bad input (issue 13): nothing lost, nothing left, one clear line.

- Fault injection: the process that reaches a named set-up step (the runtime, the set-up
  process or the container's init) is SIGKILLed there (MINIRUN_FAULT_AT, a test hook);
  then `delete --force` must leave nothing (the leak guard checks mounts, cgroups,
  processes and state after every test). The step names come from a trace of a real
  create, so a new step is covered as soon as it exists.
- Write-ahead state: leftovers of a killed create are listed, and removable.
- Corrupted state.json, a read-only or full --root, bad --pid-file and --root paths.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import TIMEOUT

pytestmark = pytest.mark.minirun_only


def _traced_step_names(runtime, bundle, cid, tmp_path) -> list[str]:
    out = tmp_path / "steps.json"
    c = cid("trace")
    runtime.ok("create", "--trace", out, "--bundle", bundle, c)
    runtime.ok("delete", "--force", c)
    names = []
    for e in json.loads(out.read_text())["traceEvents"]:
        if e["ph"] != "X" or e["name"].startswith("minirun "):
            continue
        name = e.get("args", {}).get("step") or e["name"]
        if name not in names:
            names.append(name)
    return names


def _call(runtime, *args, env=None):
    """Runtime call with extra environment; output to a file (created containers keep
    the runtime's stdio open)."""
    with open(runtime.workdir / "fault.out", "w+") as out:
        rc = subprocess.run(runtime.argv(*args), stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            timeout=TIMEOUT).returncode
        out.seek(0)
        return rc, out.read()


def test_sigkill_at_every_set_up_step_leaves_nothing(runtime, bundle, cid, tmp_path):
    b = bundle(["sleep", "1000"])
    names = _traced_step_names(runtime, b, cid, tmp_path)
    # the runtime's phases, the set-up process's and the init's steps are all there
    assert {"fork", "unshare", "pivot_root", "cgroup: create and apply limits"} <= set(names)
    for name in names:
        c = cid(name[:12])
        rc, out = _call(runtime, "create", "--bundle", b, c, env={"MINIRUN_FAULT_AT": name})
        assert rc != 0, f"create survived a SIGKILL at {name!r}: {out}"
        assert "Traceback" not in out, out
        rc, out = _call(runtime, "delete", "--force", c)
        assert rc == 0, f"delete --force after a kill at {name!r}: {out}"
        assert not (runtime.root / c).exists(), f"state left after a kill at {name!r}"


def test_sigkill_at_start_leaves_nothing(runtime, bundle, cid):
    c = cid()
    runtime.ok("create", "--bundle", bundle(["sleep", "1000"]), c)
    rc, _ = _call(runtime, "start", c, env={"MINIRUN_FAULT_AT": "start"})
    rc, out = _call(runtime, "run", "--bundle", bundle(["true"]), cid("run"),
                    env={"MINIRUN_FAULT_AT": "start"})
    assert rc != 0
    runtime.ok("delete", "--force", c)


def test_create_killed_after_its_cgroup_was_made(runtime, bundle, cid):
    """Write-ahead: the cgroup is in state.json before it is made, so a create killed
    after the mkdir leaves a container `state` and `list` show and `delete --force`
    removes, cgroup included (the leak guard checks it)."""
    c = cid()
    rc, _ = _call(runtime, "create", "--bundle", bundle(["sleep", "1000"]), c,
                  env={"MINIRUN_FAULT_AT": "set-up processes, once the cgroup is made"})
    assert rc != 0
    st = json.loads((runtime.root / c / "state.json").read_text())
    assert st["status"] == "creating" and st["cgroup"]["path"].endswith(c)
    assert runtime.state(c)["status"] == "creating"
    assert c in runtime.ok("list", "-q").stdout
    runtime.ok("delete", "--force", c)


def test_leftover_directory_without_state(runtime, bundle, cid):
    c = cid()
    (runtime.root / c).mkdir(parents=True)
    (runtime.root / c / ".state.json.tmp").write_text("{")
    r = runtime("state", c)
    assert r.returncode != 0 and "left by a create that did not finish" in r.stderr, r
    r = runtime("list")
    assert r.returncode == 0 and c in r.stdout and "unknown" in r.stdout, r
    assert "did not finish" in r.stderr
    runtime.ok("delete", "--force", c)
    assert not (runtime.root / c).exists()
    runtime.ok("run", "--bundle", bundle(["true"]), c)  # the id is usable again


@pytest.mark.parametrize("garbage", ["", '{"id": "x", "sta', "garbage", "[]", "{}"],
                         ids=["empty", "truncated", "garbage", "list", "object"])
def test_corrupted_state(runtime, bundle, cid, garbage):
    good, bad = cid("good"), cid("bad")
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "1000"]), good)
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "1000"]), bad)
    pid = runtime.state(bad)["pid"]
    (runtime.root / bad / "state.json").write_text(garbage)
    r = runtime("list", "--format", "json")
    assert r.returncode == 0, r
    ids = {e["id"]: e["status"] for e in json.loads(r.stdout)}
    assert ids == {good: "running", bad: "unknown"}
    assert "corrupted state" in r.stderr
    r = runtime("state", bad)
    assert r.returncode != 0 and "corrupted state" in r.stderr and "Traceback" not in r.stderr
    runtime.ok("delete", "--force", bad)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    runtime.ok("delete", "--force", good)


@pytest.fixture
def small_root(runtime, ctx, tmp_path):
    """--root on a tmpfs of its own (to fill it, or make it read-only), unmounted after."""
    d = tmp_path / "smallroot"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(d)], check=True)
    ctx.cleanups.append(lambda: subprocess.run(["umount", "-l", str(d)]))
    runtime.root = d / "root"
    return d


def test_read_only_root_stops_start_before_the_process_runs(runtime, bundle, cid, small_root):
    c = cid()
    flag = small_root.parent / "ran"
    b = bundle(["sh", "-c", f"echo ran > {flag}"],
               {"mounts": [{"destination": str(small_root.parent), "type": "bind",
                            "source": str(small_root.parent), "options": ["rbind"]}]})
    runtime.ok("create", "--bundle", b, c)
    subprocess.run(["mount", "-o", "remount,ro", str(small_root)], check=True)
    try:
        r = runtime("start", c)
        assert r.returncode != 0
        err = r.stderr.strip()
        assert "cannot write the container's state" in err and "Read-only" in err, err
        assert len(err.splitlines()) == 1
        assert not flag.exists(), "the process ran although start failed"
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_root)], check=True)
    assert runtime.state(c)["status"] == "created"
    runtime.ok("delete", "--force", c)


def test_full_root_fails_create_cleanly(runtime, bundle, cid, small_root):
    runtime.root.mkdir()
    filler = small_root / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=1000"],
                   capture_output=True)
    c = cid()
    r = runtime("create", "--bundle", bundle(["sleep", "1000"]), c)
    assert r.returncode != 0
    err = r.stderr.strip()
    assert "No space left on device" in err and len(err.splitlines()) == 1, err
    assert os.listdir(runtime.root) == []


@pytest.mark.parametrize("flag,value,want", [
    ("--pid-file", "/", "--pid-file /: is a directory"),
    ("--pid-file", "/nonexistent-minirun-dir/pid", "directory /nonexistent-minirun-dir does "
     "not exist"),
])
def test_bad_pid_file_is_one_line_and_leaves_nothing(runtime, bundle, cid, flag, value, want):
    before = set(os.listdir("/"))
    r = runtime("run", flag, value, "--bundle", bundle(["true"]), cid())
    assert r.returncode != 0 and want in r.stderr and "internal error" not in r.stderr, r
    assert set(os.listdir("/")) == before  # no stray temp file in /


@pytest.mark.parametrize("root", ["/dev/null", "/dev/null/x"])
def test_bad_root_is_one_line(runtime, bundle, cid, root):
    for args in (["list"], ["run", "--bundle", bundle(["true"]), cid()]):
        r = runtime(*args, global_args=["--root", root], root=False)
        assert r.returncode != 0 and f"--root {root}" in r.stderr, r
        assert "internal error" not in r.stderr


def test_dot_directories_are_not_containers(runtime, bundle, cid):
    """--root also holds minirun's own `.network` leases: never listed as a leftover."""
    (runtime.root / ".network").mkdir(parents=True)
    try:
        r = runtime.ok("list", "--format", "json")
        assert json.loads(r.stdout) is None and r.stderr == "", r
    finally:
        (runtime.root / ".network").rmdir()
