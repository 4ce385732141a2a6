"""Container lifecycle and the command-line contract, checked against runc 1.1.5's behaviour.

Every test here passes with MINIRUN_BIN=/usr/sbin/runc except the ones marked minirun_only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import TIMEOUT, cmdline, default_config, descendants, proc_table

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

SLEEP = ["sleep", "1000"]


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    t = proc_table()
    return pid in t and t[pid][1] not in ("Z", "X")


def wait_for(pred, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_output(path: Path, text: str, timeout: float = TIMEOUT) -> str:
    wait_for(lambda: text in path.read_text(errors="replace"), f"{text!r} in {path}", timeout)
    return path.read_text(errors="replace")


# ---------------------------------------------------------------- spec


def test_spec_writes_runc_default(runtime, tmp_path):
    d = tmp_path / "spec"
    d.mkdir()
    r = runtime("spec", "--bundle", d)
    assert r.returncode == 0, r
    cfg = json.loads((d / "config.json").read_text())
    want = default_config(["sh"])
    want["process"]["terminal"] = True  # `runc spec` asks for a terminal
    # runc adds a cgroup namespace when it finds a cgroup2-only /sys/fs/cgroup
    # (as on a pure v2 host, or runc in this suite's cgroup2 wrapper); accept either.
    nss = cfg.get("linux", {}).get("namespaces", [])
    if nss and nss[-1] == {"type": "cgroup"}:
        want["linux"]["namespaces"].append({"type": "cgroup"})
    assert cfg == want


def test_spec_defaults_to_cwd(runtime, tmp_path):
    d = tmp_path / "cwd"
    d.mkdir()
    r = runtime("spec", cwd=d)
    assert r.returncode == 0, r
    assert json.loads((d / "config.json").read_text())["process"]["args"] == ["sh"]


def test_spec_refuses_to_overwrite(runtime, tmp_path):
    d = tmp_path / "spec"
    d.mkdir()
    (d / "config.json").write_text('{"mine": true}')
    r = runtime("spec", "--bundle", d)
    assert r.returncode != 0
    assert "config.json" in r.stderr
    assert (d / "config.json").read_text() == '{"mine": true}'


# ---------------------------------------------------------------- create / start / state


def test_create_start_stop(runtime, bundle, cid, tmp_path):
    b = bundle(["sh", "-c", "echo started; exec sleep 1000"])
    c = cid()
    pidfile = tmp_path / "init.pid"
    r = runtime.create(c, b, "--pid-file", pidfile)
    assert r.returncode == 0, r

    st = runtime.state(c)
    assert st["status"] == "created"
    pid = st["pid"]
    assert isinstance(pid, int) and pid > 0
    raw = pidfile.read_bytes()
    assert raw == str(pid).encode(), f"pid file must hold the bare pid, got {raw!r}"
    assert pid_alive(pid)
    # The init has not exec'd the container's process yet.
    assert "sleep" not in cmdline(pid)
    assert "started" not in r.read_stdout()

    r = runtime("start", c)
    assert r.returncode == 0, r
    st = runtime.state(c)
    assert st["status"] == "running"
    assert st["pid"] == pid
    wait_for(lambda: cmdline(pid) == "sleep 1000", "the container process to exec")

    r2 = runtime("kill", c, "KILL")
    assert r2.returncode == 0, r2
    st = runtime.wait_status(c, "stopped")
    assert st["pid"] == 0  # runc reports pid 0 once stopped
    runtime.ok("delete", c)
    assert runtime("state", c).returncode != 0


def test_output_of_created_container_goes_to_create_stdio(runtime, bundle, cid):
    b = bundle(["sh", "-c", "echo out-line; echo err-line >&2"])
    c = cid()
    r = runtime.create(c, b)
    assert r.returncode == 0, r
    runtime.ok("start", c)
    runtime.wait_status(c, "stopped")
    assert "out-line" in r.read_stdout()
    assert "err-line" in r.read_stderr()
    runtime.ok("delete", c)


def test_process_exit_gives_stopped(runtime, bundle, cid):
    b = bundle(["true"])
    c = cid()
    runtime.ok("create", "--bundle", b, c)
    runtime.ok("start", c)
    st = runtime.wait_status(c, "stopped")
    assert st["pid"] == 0
    assert st["id"] == c


def test_zombie_init_is_stopped(runtime, bundle, cid):
    """The caller is a child subreaper (as containerd's shim and conmon are):
    the container's init re-parents to it and, once it exits, stays a zombie
    until the caller reaps it. A zombie init is a stopped container."""
    c = cid()
    runtime.ok("create", "--bundle", bundle(["true"]), c)
    pid = runtime.state(c)["pid"]
    runtime.ok("start", c)
    wait_for(lambda: proc_table().get(pid, (0, "?"))[1] == "Z", "the init to become a zombie")
    assert proc_table()[pid][0] == os.getpid(), "the init must re-parent to the caller"
    st = runtime.state(c)
    assert st["status"] == "stopped"
    assert st["pid"] == 0
    runtime.ok("delete", c)


def test_start_twice_fails(runtime, bundle, cid):
    c = cid()
    runtime.ok("create", "--bundle", bundle(SLEEP), c)
    runtime.ok("start", c)
    r = runtime("start", c)
    assert r.returncode != 0
    assert r.stderr.strip()
    assert runtime.status(c) == "running"


def test_start_stopped_fails(runtime, bundle, cid):
    c = cid()
    runtime.ok("create", "--bundle", bundle(["true"]), c)
    runtime.ok("start", c)
    runtime.wait_status(c, "stopped")
    r = runtime("start", c)
    assert r.returncode != 0
    assert r.stderr.strip()
    assert runtime.status(c) == "stopped"


def test_start_unknown_fails(runtime, cid):
    r = runtime("start", cid())
    assert r.returncode != 0
    assert r.stderr.strip()


def test_state_unknown_fails(runtime, cid):
    r = runtime("state", cid())
    assert r.returncode != 0
    assert r.stderr.strip()
    assert r.stdout == ""


# ---------------------------------------------------------------- delete


def test_delete_running_needs_force(runtime, bundle, cid):
    c = cid()
    runtime.ok("run", "--detach", "--bundle", bundle(SLEEP), c)
    pid = runtime.state(c)["pid"]
    r = runtime("delete", c)
    assert r.returncode != 0
    assert r.stderr.strip()
    assert runtime.status(c) == "running"
    assert pid_alive(pid)

    runtime.ok("delete", "--force", c)
    assert runtime("state", c).returncode != 0
    wait_for(lambda: not pid_alive(pid), "the container process to die")


def test_delete_created_kills_init(runtime, bundle, cid):
    """runc deletes a created (never started) container without --force."""
    c = cid()
    runtime.ok("create", "--bundle", bundle(SLEEP), c)
    pid = runtime.state(c)["pid"]
    runtime.ok("delete", c)
    assert runtime("state", c).returncode != 0
    wait_for(lambda: not pid_alive(pid), "the created init to die")


def test_delete_stopped(runtime, bundle, cid):
    c = cid()
    runtime.ok("create", "--bundle", bundle(["true"]), c)
    runtime.ok("start", c)
    runtime.wait_status(c, "stopped")
    runtime.ok("delete", c)
    assert runtime("state", c).returncode != 0
    assert not (runtime.root / c).exists()


def test_delete_force_unknown_is_ok(runtime, cid):
    r = runtime("delete", "--force", cid())
    assert r.returncode == 0, r


def test_delete_unknown_fails(runtime, cid):
    r = runtime("delete", cid())
    assert r.returncode != 0
    assert r.stderr.strip()


# ---------------------------------------------------------------- kill

TRAP_SCRIPT = "trap 'echo got-TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done"


@pytest.mark.parametrize("sig", ["TERM", "SIGTERM", "15"])
def test_kill_term_forms(runtime, bundle, cid, sig):
    c = cid()
    r = runtime.create(c, bundle(["sh", "-c", TRAP_SCRIPT]))
    assert r.returncode == 0, r
    runtime.ok("start", c)
    wait_output(r.stdout_path, "ready")
    k = runtime("kill", c, sig)
    assert k.returncode == 0, k
    runtime.wait_status(c, "stopped")
    assert "got-TERM" in r.read_stdout()


def test_kill_default_signal_is_term(runtime, bundle, cid):
    c = cid()
    r = runtime.create(c, bundle(["sh", "-c", TRAP_SCRIPT]))
    assert r.returncode == 0, r
    runtime.ok("start", c)
    wait_output(r.stdout_path, "ready")
    runtime.ok("kill", c)
    runtime.wait_status(c, "stopped")
    assert "got-TERM" in r.read_stdout()


@pytest.mark.parametrize("sig", ["KILL", "9", "SIGKILL"])
def test_kill_kill(runtime, bundle, cid, sig):
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(SLEEP), c)
    pid = runtime.state(c)["pid"]
    runtime.ok("kill", c, sig)
    runtime.wait_status(c, "stopped")
    wait_for(lambda: not pid_alive(pid), "the init to die")


def test_kill_created_container(runtime, bundle, cid):
    c = cid()
    runtime.ok("create", "--bundle", bundle(SLEEP), c)
    runtime.ok("kill", c, "KILL")
    runtime.wait_status(c, "stopped")


def test_kill_stopped_fails(runtime, bundle, cid):
    """runc: kill of a stopped container fails ("container not running")."""
    c = cid()
    runtime.ok("create", "--bundle", bundle(["true"]), c)
    runtime.ok("start", c)
    runtime.wait_status(c, "stopped")
    r = runtime("kill", c, "KILL")
    assert r.returncode != 0
    assert r.stderr.strip()


def test_kill_unknown_fails(runtime, cid):
    r = runtime("kill", cid(), "KILL")
    assert r.returncode != 0
    assert r.stderr.strip()


def test_kill_bad_signal_fails(runtime, bundle, cid):
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(SLEEP), c)
    r = runtime("kill", c, "NOTASIGNAL")
    assert r.returncode != 0
    assert r.stderr.strip()
    assert runtime.status(c) == "running"


def test_kill_all(runtime, bundle, cid):
    """kill --all reaches every process of the container, not just its init."""
    # A trap handler (not "ignore", which children would inherit): the init
    # survives TERM, its children (default disposition) do not.
    script = ("trap 'echo init-got-TERM' TERM; sleep 1000 & sleep 1001 & echo ready; "
              "while :; do sleep 0.1; done")
    c = cid()
    r = runtime.create(c, bundle(["sh", "-c", script]))
    assert r.returncode == 0, r
    runtime.ok("start", c)
    wait_output(r.stdout_path, "ready")
    init = runtime.state(c)["pid"]

    def sleepers() -> list[int]:
        return [p for p, s in descendants(init).items()
                if s not in ("Z", "X") and cmdline(p) in ("sleep 1000", "sleep 1001")]

    wait_for(lambda: len(sleepers()) == 2, "both background sleeps")
    bg = sleepers()
    runtime.ok("kill", "--all", c, "TERM")
    wait_for(lambda: not any(pid_alive(p) for p in bg), "kill --all to reach the background sleeps")
    # the init ignores TERM and is still there
    assert pid_alive(init)
    assert runtime.status(c) == "running"
    runtime.ok("kill", "--all", c, "KILL")
    runtime.wait_status(c, "stopped")


def test_kill_all_stopped_is_ok(runtime, bundle, cid):
    """runc 1.1.5 accepts kill --all on a stopped container (exit 0)."""
    c = cid()
    runtime.ok("create", "--bundle", bundle(["true"]), c)
    runtime.ok("start", c)
    runtime.wait_status(c, "stopped")
    r = runtime("kill", "--all", c, "KILL")
    assert r.returncode == 0, r


# ---------------------------------------------------------------- run


def test_run_exit_status(run_container):
    r = run_container(["sh", "-c", "echo hello; exit 3"])
    assert r.returncode == 3, r.result
    assert "hello" in r.stdout


def test_run_exit_zero(run_container):
    r = run_container(["true"])
    assert r.returncode == 0, r.result


def test_run_signal_status_without_pidns(run_container):
    """128+signal when the container's process dies from a signal. (With a PID
    namespace `kill -9 $$` from pid 1 itself is ignored by the kernel, so this
    variant drops the PID namespace.)"""

    def no_pidns(cfg):
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "pid"]

    r = run_container(["sh", "-c", "kill -9 $$"], no_pidns)
    assert r.returncode == 137, r.result
    r = run_container(["sh", "-c", "kill -15 $$"], no_pidns)
    assert r.returncode == 143, r.result


def test_run_killed_from_outside(runtime, bundle, cid, tmp_path):
    c = cid()
    b = bundle(["sh", "-c", "echo ready; exec sleep 1000"])
    out = tmp_path / "run.out"
    with open(out, "wb") as f, open(os.devnull, "rb") as devnull:
        p = subprocess.Popen(runtime.argv("run", "--bundle", b, c), stdin=devnull, stdout=f,
                             stderr=subprocess.STDOUT)
    try:
        wait_output(out, "ready")
        runtime.ok("kill", c, "KILL")
        rc = p.wait(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 137, out.read_text()
    # run deletes the container when it ends
    assert runtime("state", c).returncode != 0


def test_run_removes_container(run_container, runtime):
    r = run_container(["true"])
    assert r.returncode == 0
    assert runtime("state", r.id).returncode != 0
    assert not (runtime.root / r.id).exists()


def test_run_detach(runtime, bundle, cid):
    c = cid()
    r = runtime("run", "--detach", "--bundle", bundle(SLEEP), c)
    assert r.returncode == 0, r
    st = runtime.state(c)
    assert st["status"] == "running"
    assert pid_alive(st["pid"])
    wait_for(lambda: cmdline(st["pid"]) == "sleep 1000", "exec of sleep")
    runtime.ok("delete", "--force", c)
    wait_for(lambda: not pid_alive(st["pid"]), "the container to die")


def test_run_detach_short_flag_and_pid_file(runtime, bundle, cid, tmp_path):
    c = cid()
    pf = tmp_path / "p.pid"
    runtime.ok("run", "-d", "--pid-file", pf, "--bundle", bundle(SLEEP), c)
    assert pf.read_text() == str(runtime.state(c)["pid"])


def test_run_passes_stdin(run_container, runtime, bundle, cid):
    b = bundle(["sh", "-c", "cat; echo done"])
    r = runtime("run", "--bundle", b, cid(), input="line one\nline two\n")
    assert r.returncode == 0, r
    assert r.stdout == "line one\nline two\ndone\n"


def test_init_killed_from_host_is_stopped(runtime, bundle, cid):
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(SLEEP), c)
    pid = runtime.state(c)["pid"]
    os.kill(pid, signal.SIGKILL)  # the container this test started
    st = runtime.wait_status(c, "stopped")
    assert st["pid"] == 0
    runtime.ok("delete", c)


def test_delete_force_created_and_running(runtime, bundle, cid):
    c1, c2 = cid("created"), cid("running")
    runtime.ok("create", "--bundle", bundle(SLEEP), c1)
    runtime.ok("run", "-d", "--bundle", bundle(SLEEP), c2)
    pids = [runtime.state(c)["pid"] for c in (c1, c2)]
    for c in (c1, c2):
        runtime.ok("delete", "--force", c)
        assert runtime("state", c).returncode != 0
    wait_for(lambda: not any(pid_alive(p) for p in pids), "both inits to die")


def test_commands_do_not_hold_caller_pipes(runtime, bundle, cid, tmp_path):
    """start, state, kill, delete and list are run by engines with pipes they
    read to EOF: nothing the runtime leaves running may hold them open."""
    c = cid()
    runtime.ok("create", "--bundle", bundle(SLEEP), c)  # the container gets files
    for args in (["start", c], ["state", c], ["list"], ["kill", c, "KILL"],
                 ["delete", "--force", c]):
        p = subprocess.run(runtime.argv(*args), stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=TIMEOUT)
        assert p.returncode == 0, (args, p)


# ---------------------------------------------------------------- list / state


def test_list_formats(runtime, bundle, cid):
    c1, c2 = cid("a"), cid("b")
    b = bundle(SLEEP)
    runtime.ok("create", "--bundle", b, c1)
    runtime.ok("run", "-d", "--bundle", bundle(SLEEP), c2)

    r = runtime.ok("list")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
    assert set(rows) == {c1, c2}
    assert rows[c1][2] == "created"
    assert rows[c2][2] == "running"
    assert rows[c1][3] == str(b)
    assert rows[c1][5] == "root"

    r = runtime.ok("list", "--format", "json")
    data = json.loads(r.stdout)
    by_id = {d["id"]: d for d in data}
    assert set(by_id) == {c1, c2}
    assert by_id[c1]["status"] == "created"
    assert by_id[c2]["status"] == "running"
    assert by_id[c1]["pid"] == runtime.state(c1)["pid"]
    assert by_id[c1]["bundle"] == str(b)
    assert by_id[c1]["owner"] == "root"
    assert RFC3339.match(by_id[c1]["created"])

    r = runtime.ok("list", "-f", "json")
    assert {d["id"] for d in json.loads(r.stdout)} == {c1, c2}

    r = runtime.ok("list", "-q")
    assert sorted(r.stdout.split()) == sorted([c1, c2])
    r = runtime.ok("list", "--quiet")
    assert sorted(r.stdout.split()) == sorted([c1, c2])


def test_list_empty(runtime):
    r = runtime.ok("list")
    assert r.stdout.split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    r = runtime.ok("list", "--format", "json")
    assert json.loads(r.stdout) in (None, [])  # runc prints null
    assert runtime.ok("list", "-q").stdout == ""


def test_state_fields(runtime, bundle, cid):
    b = bundle(SLEEP, {"annotations": {"org.example.key": "value", "x": "y"}})
    c = cid()
    runtime.ok("create", "--bundle", b, c)
    st = runtime.state(c)
    for k in ("ociVersion", "id", "status", "pid", "bundle", "annotations", "created", "owner"):
        assert k in st, f"state lacks {k}: {st}"
    assert st["ociVersion"] == "1.0.2-dev"
    assert st["id"] == c
    assert st["status"] == "created"
    assert st["bundle"] == str(b)
    assert st["annotations"] == {"org.example.key": "value", "x": "y"}
    assert RFC3339.match(st["created"]), st["created"]
    assert st["owner"] == ""  # runc prints "" for root in `state` (list says "root")


def test_state_bundle_is_absolute(runtime, bundle, cid, tmp_path):
    b = bundle(SLEEP)
    c = cid()
    runtime.ok("create", "--bundle", b.name, c, cwd=tmp_path)
    assert runtime.state(c)["bundle"] == str(b)


# ---------------------------------------------------------------- global flags


def test_global_flag_forms(runtime, bundle, cid, tmp_path):
    c = cid()
    runtime.ok("create", "--bundle", bundle(SLEEP), c)
    root = str(runtime.root)
    for gl in (["--root", root], [f"--root={root}"],
               ["--log-format", "json", f"--root={root}"],
               ["--log", str(tmp_path / "l1.log"), "--root", root, "--log-format=text"]):
        r = runtime("state", c, global_args=gl, root=False)
        assert r.returncode == 0, r
        assert json.loads(r.stdout)["id"] == c


def test_log_json_on_error(runtime, cid, tmp_path):
    log = tmp_path / "log.json"
    bad = cid()
    for gl in (["--log", str(log), "--log-format", "json"],
               ["--log-format=json", f"--log={log}"]):
        r = runtime("state", bad, global_args=gl)
        assert r.returncode != 0
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    assert lines, "nothing logged"
    errors = []
    for ln in lines:
        rec = json.loads(ln)
        assert {"level", "msg", "time"} <= set(rec), rec
        assert RFC3339.match(rec["time"]), rec
        if rec["level"] == "error":
            errors.append(rec)
    assert len(errors) >= 2
    assert errors[-1]["msg"]


def test_log_file_appends(runtime, cid, tmp_path):
    log = tmp_path / "log.json"
    log.write_text('{"level":"info","msg":"pre-existing","time":"2020-01-01T00:00:00Z"}\n')
    r = runtime("state", cid(), global_args=["--log", str(log), "--log-format", "json"])
    assert r.returncode != 0
    lines = log.read_text().splitlines()
    assert "pre-existing" in lines[0]
    assert len(lines) >= 2


# ---------------------------------------------------------------- concurrency


@pytest.mark.minirun_only
def test_concurrent_create_same_id(runtime, bundle, cid, tmp_path):
    """Two creates of one id race: exactly one wins, the other fails cleanly.

    runc 1.1.5 does not get this right: both creates may fail ("file exists"
    and "unable to store init state"), hence minirun_only."""
    for attempt in range(3):
        c = cid(f"r{attempt}")
        b1, b2 = bundle(SLEEP), bundle(SLEEP)
        procs = []
        outs = []
        for i, b in enumerate((b1, b2)):
            o = tmp_path / f"cc{attempt}-{i}.out"
            e = tmp_path / f"cc{attempt}-{i}.err"
            outs.append((o, e))
            with open(o, "wb") as fo, open(e, "wb") as fe, open(os.devnull, "rb") as fi:
                procs.append(subprocess.Popen(runtime.argv("create", "--bundle", b, c),
                                              stdin=fi, stdout=fo, stderr=fe))
        rcs = [p.wait(timeout=TIMEOUT) for p in procs]
        errs = [e.read_text() for _, e in outs]
        assert sorted(rc == 0 for rc in rcs) == [False, True], (rcs, errs)
        loser = rcs.index(0) ^ 1
        assert errs[loser].strip(), "the losing create must say why"
        winner_bundle = (b1, b2)[rcs.index(0)]
        st = runtime.state(c)
        assert st["status"] == "created"
        assert st["bundle"] == str(winner_bundle)
        assert [d["id"] for d in json.loads(runtime.ok("list", "-f", "json").stdout)] == [c]
        runtime.ok("delete", "--force", c)
        winner_pid = st["pid"]
        wait_for(lambda: not pid_alive(winner_pid), "the winner's init to die")  # noqa: B023


# ---------------------------------------------------------------- fds


def _fds_from_ls(out: str) -> dict[int, str]:
    """fd -> target from `exec ls -l /proc/self/fd` output, without ls's own
    directory fd (the one pointing at /proc/<pid>/fd)."""
    fds = {}
    for line in out.splitlines():
        m = re.search(r"\s(\d+) -> (.*)$", line)
        if m and not re.fullmatch(r"/proc/\d+/fd", m.group(2)):
            fds[int(m.group(1))] = m.group(2)
    return fds


def _host_fds(pid: int) -> dict[int, str]:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out


def _with_fds(argv: list[str], path: Path, fds: str = "3") -> list[str]:
    """Run argv with the given fds (e.g. "3 4 9") open on path."""
    redirs = " ".join(f"{n}<\"$0\"" for n in fds.split())
    return ["sh", "-c", f'exec {redirs}; exec "$@"', str(path), *argv]


def test_preserve_fds_run(runtime, bundle, cid, tmp_path):
    data = tmp_path / "fd3.txt"
    data.write_text("through-fd-3\n")
    b = bundle(["sh", "-c", "cat <&3; echo fds:; exec ls -l /proc/self/fd"])
    c = cid()
    argv = _with_fds(runtime.argv("run", "--preserve-fds", "1", "--bundle", b, c), data)
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert p.returncode == 0, p
    assert "through-fd-3" in p.stdout
    fds = _fds_from_ls(p.stdout.split("fds:")[1])
    assert set(fds) == {0, 1, 2, 3}, p.stdout


def test_preserve_fds_create(runtime, bundle, cid, tmp_path):
    data = tmp_path / "fd3.txt"
    data.write_text("x\n")
    c = cid()
    argv = _with_fds(runtime.argv("create", "--preserve-fds", "1", "--bundle", bundle(SLEEP), c),
                     data, "3 4")
    # files, not pipes: the created container inherits the caller's stdio
    err = tmp_path / "create.err"
    with open(err, "wb") as ef:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=ef,
                           timeout=TIMEOUT)
    assert p.returncode == 0, err.read_text()
    runtime.ok("start", c)
    pid = runtime.state(c)["pid"]
    wait_for(lambda: cmdline(pid) == "sleep 1000", "exec of sleep")
    fds = _host_fds(pid)
    assert set(fds) == {0, 1, 2, 3}, fds
    assert fds[3] == str(data)


def test_no_fd_leaks_run(runtime, bundle, cid, tmp_path):
    """fds the caller holds do not reach the container without --preserve-fds,
    and the runtime's own fds do not either."""
    data = tmp_path / "fd3.txt"
    data.write_text("secret\n")
    b = bundle(["sh", "-c", "echo fds:; exec ls -l /proc/self/fd"])
    c = cid()
    argv = _with_fds(runtime.argv("run", "--bundle", b, c), data, "3 4 9")
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert p.returncode == 0, p
    assert set(_fds_from_ls(p.stdout.split("fds:")[1])) == {0, 1, 2}, p.stdout


def test_no_fd_leaks_create_start(runtime, bundle, cid, tmp_path):
    data = tmp_path / "fd3.txt"
    data.write_text("secret\n")
    c = cid()
    argv = _with_fds(runtime.argv("create", "--bundle", bundle(SLEEP), c), data, "3 5")
    # files, not pipes: the created container inherits the caller's stdio
    err = tmp_path / "create.err"
    with open(err, "wb") as ef:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=ef,
                           timeout=TIMEOUT)
    assert p.returncode == 0, err.read_text()
    runtime.ok("start", c)
    pid = runtime.state(c)["pid"]
    wait_for(lambda: cmdline(pid) == "sleep 1000", "exec of sleep")
    fds = _host_fds(pid)
    assert set(fds) == {0, 1, 2}, fds


# ---------------------------------------------------------------- paths


def test_relative_pid_file_and_bundle(runtime, bundle, cid, tmp_path):
    b = bundle(SLEEP)
    sub = tmp_path / "caller"
    sub.mkdir()
    c = cid()
    r = runtime("create", "--pid-file", "rel.pid", "--bundle", os.path.relpath(b, sub), c, cwd=sub)
    assert r.returncode == 0, r
    st = runtime.state(c)
    assert (sub / "rel.pid").read_text() == str(st["pid"])
    assert st["bundle"] == str(b)


def test_bundle_defaults_to_cwd(runtime, bundle, cid):
    b = bundle(SLEEP)
    c = cid()
    runtime.ok("create", c, cwd=b)
    assert runtime.state(c)["bundle"] == str(b)


# ---------------------------------------------------------------- features


def test_features(runtime):
    r = runtime.ok("features")
    f = json.loads(r.stdout)
    assert f["ociVersionMin"].startswith("1.0")
    assert re.match(r"^1\.\d+\.\d+", f["ociVersionMax"])
    opts = set(f["mountOptions"])
    assert {"bind", "rbind", "ro", "nosuid", "nodev", "noexec",
            "rprivate", "rslave", "rshared"} <= opts
    nss = set(f["linux"]["namespaces"])
    assert {"cgroup", "ipc", "mount", "network", "pid", "user", "uts"} <= nss
    caps = set(f["linux"]["capabilities"])
    assert {"CAP_KILL", "CAP_AUDIT_WRITE", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"} <= caps
    assert all(c.startswith("CAP_") for c in caps)
