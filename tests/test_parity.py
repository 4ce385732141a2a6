"""runc parity where scripts and engines notice (issue 12): exit codes, messages, output
formats, flags. Each check runs runc (RUNC_BIN) and minirun on the same bundle, each with
its own --root, and compares what a caller sees."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
from conftest import MINIRUN_BIN, RUNC_BIN

if not os.path.exists(RUNC_BIN):
    pytest.skip(f"reference runc {RUNC_BIN} is not installed", allow_module_level=True)

SLEEP = ["sleep", "1000"]


@pytest.fixture
def pair(make_runtime):
    return make_runtime(RUNC_BIN, "runc"), make_runtime(MINIRUN_BIN, "minirun")


def _both_running(pair, bundle, cid, args=SLEEP):
    b = bundle(args)
    ids = []
    for rt in pair:
        c = cid(rt.name)
        rt.ok("run", "-d", "--bundle", b, c)
        ids.append(c)
    return ids


# ---------------------------------------------------------------- exit codes


@pytest.mark.parametrize("case", ["no-such-container", "missing-binary", "paused",
                                  "pid-file-dir"])
def test_exec_failures_exit_255(pair, bundle, cid, case, tmp_path):
    ids = _both_running(pair, bundle, cid)
    codes = []
    for rt, c in zip(pair, ids, strict=True):
        args = ["exec", c, "true"]
        if case == "no-such-container":
            args = ["exec", "nope-" + c, "true"]
        elif case == "missing-binary":
            args = ["exec", c, "/no/such/binary"]
        elif case == "paused":
            rt.ok("pause", c)
        else:
            args = ["exec", "--pid-file", str(tmp_path / "no" / "dir" / "pid"), c, "true"]
        r = rt(*args)
        codes.append(r.returncode)
        if case == "paused":
            assert "cannot exec in a paused container" in r.stderr, r
            rt.ok("resume", c)
            if rt.is_runc:
                continue
            rt.ok("pause", c)
            # --ignore-paused lets it through: the process starts frozen, so exec
            # returns once the container is resumed
            with open(rt.workdir / "ignore-paused.out", "w") as out:
                p = subprocess.Popen(rt.argv("exec", "--ignore-paused", "-d", c, "true"),
                                     stdout=out, stderr=subprocess.STDOUT)
            time.sleep(0.5)
            rt.ok("resume", c)
            assert p.wait(timeout=30) == 0
    assert codes == [255, 255], codes


def test_kill_signal_zero_is_a_liveness_probe(pair, bundle, cid):
    ids = _both_running(pair, bundle, cid)
    for rt, c in zip(pair, ids, strict=True):
        assert rt("kill", c, "0").returncode == 0
        rt.ok("kill", c, "KILL")
        rt.wait_status(c, "stopped")
        assert rt("kill", "--all", c, "0").returncode == 0  # nothing left: not an error
        assert rt("kill", c, "0").returncode != 0  # the init is gone


@pytest.mark.parametrize("spelling", ["KILL", "SIGKILL", "9", "kill", "sigkill"])
def test_kill_signal_spellings(pair, bundle, cid, spelling):
    ids = _both_running(pair, bundle, cid)
    for rt, c in zip(pair, ids, strict=True):
        r = rt("kill", c, spelling)
        assert r.returncode == 0, (rt.name, r)
        rt.wait_status(c, "stopped")


# ---------------------------------------------------------------- output formats


def test_json_outputs_are_compact_as_gos(pair, bundle, cid):
    ids = _both_running(pair, bundle, cid)
    for rt, c in zip(pair, ids, strict=True):
        for args in (["list", "--format", "json"], ["ps", "--format", "json", c]):
            out = rt.ok(*args).stdout
            assert ", " not in out and '": ' not in out, (rt.name, out)
            json.loads(out)
        ev = rt.ok("events", "--stats", c).stdout
        assert ev.startswith('{"type":"stats","id":"' + c + '"'), (rt.name, ev[:80])


def test_state_layout(pair, bundle, cid):
    ids = _both_running(pair, bundle, cid)
    outs = [rt.ok("state", c).stdout for rt, c in zip(pair, ids, strict=True)]
    for out in outs:
        assert out.startswith('{\n  "ociVersion": "') and out.endswith("}"), out
    keys = [list(json.loads(o)) for o in outs]
    assert keys[0] == keys[1]


def test_ps_takes_ps_arguments(pair, bundle, cid):
    ids = _both_running(pair, bundle, cid)
    for rt, c in zip(pair, ids, strict=True):
        lines = rt.ok("ps", c).stdout.splitlines()
        assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        assert len(lines) == 2 and lines[1].endswith("sleep 1000"), (rt.name, lines)
        lines = rt.ok("ps", c, "-o", "pid,comm").stdout.splitlines()
        assert lines[0].split() == ["PID", "COMMAND"] and lines[1].split()[1] == "sleep"


def test_log_format_json_lines(pair, tmp_path):
    for rt in pair:
        log = tmp_path / f"{rt.name}.log"
        rt("--log", log, "--log-format", "json", "kill", "nope", "9", root=True)
        line = log.read_text().strip().splitlines()[-1]
        doc = json.loads(line)
        assert list(doc) == ["level", "msg", "time"] and doc["level"] == "error"
        assert ", " not in line.replace(doc["msg"], "")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["time"]), doc


def test_debug_lines_are_logrus_text(pair, bundle, cid):
    b = bundle(["true"])
    for rt in pair:
        r = rt("--debug", "run", "--bundle", b, cid(rt.name))
        assert re.search(r'^time="[^"]+" level=debug msg=', r.stderr, re.M), (rt.name, r)


@pytest.mark.minirun_only
def test_debug_exec_prints_its_steps(runtime, bundle, cid):
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(SLEEP), c)
    r = runtime("--debug", "exec", c, "true")
    assert r.returncode == 0 and "level=debug" in r.stderr and "setns" in r.stderr, r


# ---------------------------------------------------------------- flags


def test_run_keep(pair, bundle, cid):
    b = bundle(["true"])
    for rt in pair:
        c = cid(rt.name)
        rt.ok("run", "--keep", "--bundle", b, c)
        assert rt.state(c)["status"] == "stopped"
        rt.ok("delete", c)


def test_no_subreaper_accepted(pair, bundle, cid):
    b = bundle(["sh", "-c", "exit 3"])
    for rt in pair:
        assert rt("run", "--no-subreaper", "--bundle", b, cid(rt.name)).returncode == 3


@pytest.mark.parametrize("sub", ["..", "../x", "/abs", "a/../.."])
def test_exec_cgroup_outside_is_refused(runtime, bundle, cid, sub):
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(SLEEP), c)
    r = runtime("exec", "--cgroup", sub, c, "true")
    assert r.returncode == 255 and "is not a sub cgroup path" in r.stderr, r


@pytest.mark.minirun_only
def test_exec_cgroup_sub_cgroup(runtime, bundle, cid):
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(SLEEP), c)
    rec = json.loads((runtime.root / c / "state.json").read_text())["cgroup"]
    sub = os.path.join(rec["mount"] + rec["path"], "tools")
    os.mkdir(sub)
    try:
        r = runtime("exec", "--cgroup", "tools", c, "cat", "/proc/self/cgroup")
        assert r.returncode == 0 and r.stdout.strip().endswith("/tools"), r
    finally:
        runtime.ok("delete", "--force", c)
        if os.path.isdir(sub):
            os.rmdir(sub)


@pytest.mark.parametrize("flag", ["--l3-cache-schema", "--mem-bw-schema"])
def test_update_intel_rdt_refused(runtime, bundle, cid, flag):
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(SLEEP), c)
    r = runtime("update", flag, "L3:0=ff", c)
    assert r.returncode != 0 and "Intel RDT" in r.stderr, r


def test_global_runc_flags_accepted(runtime):
    r = runtime("--criu", "/usr/sbin/criu", "--rootless", "auto", "list")
    assert r.returncode == 0, r


@pytest.mark.minirun_only
def test_cgroup_not_empty_is_a_warning(runtime, bundle, cid):
    """A cgroupsPath that already holds a process: runc warns and goes on."""
    first, second = cid("a"), cid("b")
    path = f"/minirun-test-shared-{first}"
    b = bundle(SLEEP, {"linux": {"cgroupsPath": path}})
    runtime.ok("run", "-d", "--bundle", b, first)
    r = runtime("run", "-d", "--bundle", b, second)
    assert r.returncode == 0 and "container's cgroup is not empty" in r.stderr, r
    runtime.ok("delete", "--force", second)
    assert runtime.state(first)["status"] == "running"  # the other one is left alone
    runtime.ok("delete", "--force", first)


@pytest.mark.minirun_only
def test_frozen_cgroup_is_an_error(runtime, bundle, cid):
    first, second = cid("a"), cid("b")
    path = f"/minirun-test-frozen-{first}"
    b = bundle(SLEEP, {"linux": {"cgroupsPath": path}})
    runtime.ok("run", "-d", "--bundle", b, first)
    runtime.ok("pause", first)
    r = runtime("--debug", "create", "--bundle", b, second)
    assert r.returncode != 0 and "container's cgroup unexpectedly frozen" in r.stderr, r
    assert "Traceback" not in r.stderr
    runtime.ok("resume", first)
    runtime.ok("delete", "--force", first)


def test_field_names_in_another_case(pair, bundle, cid):
    """Go's JSON decoding ignores case: runc runs `"Process"` and `resources.CPU`."""
    def edits(cfg):
        cfg["Process"] = cfg.pop("process")
        cfg["Process"]["Args"] = ["sh", "-c", "echo $((1 + 1))"]
        del cfg["Process"]["args"]
        cfg["linux"]["resources"]["CPU"] = {}

    b = bundle(None, edits)
    for rt in pair:
        r = rt("run", "--bundle", b, cid(rt.name))
        assert r.returncode == 0 and r.stdout.strip() == "2", (rt.name, r)
        if not rt.is_runc:
            assert "Process taken as process" in r.stderr and "Go's JSON" in r.stderr
