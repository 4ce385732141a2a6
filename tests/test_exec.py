"""`exec` and `ps`: another process in a created or running container.

The exec'd process is checked from inside (its output) and from the host (its
/proc entry): every namespace of the container's init, the configured user,
capabilities and no_new_privs, no fd of the runtime beyond 0-2 and --preserve-fds,
and it re-parents to the caller (a subreaper, as containerd's shim and conmon are).
Bad input fails with one line and leaves no process behind.

Wording checks carry the minirun_only mark; the rest passes against runc 1.1.5
(``MINIRUN_BIN=/usr/sbin/runc``).
"""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
from conf_util import (
    Background,
    add_caps,
    add_ns,
    alive,
    cmdline,
    fds_of,
    ns_links,
    nspid,
    proc_status,
    set_process,
    stop_and_reap,
    wait_for,
)
from conftest import TIMEOUT, reap_zombie_children, under_runc

SLEEP = ["sleep", "1000"]


def one_line_error(r) -> str:
    """The runtime failed with exactly one non-empty line on stderr, naming itself."""
    assert r.returncode != 0, r
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one error line:\n{r}"
    if not under_runc():
        assert lines[0].startswith("minirun: "), r
    return lines[0]


@pytest.fixture
def running(runtime, bundle, cid, ctx):
    """``running(config_edits=None, args=SLEEP, base=None)`` -> (id, init pid): a
    started container (its processes killed and reaped after the test)."""

    def make(config_edits=None, args=SLEEP, base=None):
        c = cid()
        r = runtime("run", "-d", "--bundle", bundle(args, config_edits, base=base), c)
        assert r.returncode == 0, r
        ctx.cleanups.append(lambda: stop_and_reap(runtime, c, reap_zombie_children))
        return c, runtime.state(c)["pid"]

    return make


@pytest.fixture
def created(runtime, bundle, cid, ctx):
    """``created(config_edits=None, args=SLEEP)`` -> (id, init pid): a created container."""

    def make(config_edits=None, args=SLEEP, base=None):
        c = cid()
        r = runtime.create(c, bundle(args, config_edits, base=base))
        assert r.returncode == 0, r
        ctx.cleanups.append(lambda: stop_and_reap(runtime, c, reap_zombie_children))
        return c, runtime.state(c)["pid"]

    return make


def container_pids(runtime, c) -> list[int]:
    r = runtime("ps", "--format", "json", c)
    assert r.returncode == 0, r
    return json.loads(r.stdout)


def exec_detached(runtime, c, tmp_path, *args, extra=(), **kw) -> int:
    """exec --detach --pid-file; the pid from the file."""
    pidfile = tmp_path / f"exec-{os.urandom(3).hex()}.pid"
    r = runtime("exec", "--detach", "--pid-file", pidfile, *extra, c, *args, **kw)
    assert r.returncode == 0, r
    return int(pidfile.read_bytes())


# ---------------------------------------------------------------- basics


def test_exec_output_and_exit_status(runtime, running):
    c, _ = running()
    r = runtime("exec", c, "sh", "-c", "echo to-out; echo to-err >&2; exit 7")
    assert r.returncode == 7, r
    assert r.stdout == "to-out\n"
    assert "to-err" in r.stderr


def test_exec_exit_status_zero(runtime, running):
    c, _ = running()
    r = runtime("exec", c, "true")
    assert r.returncode == 0, r
    assert r.stdout == "" and r.stderr == ""


def test_exec_killed_by_signal_returns_128_plus_signal(runtime, running):
    c, _ = running()
    r = runtime("exec", c, "sh", "-c", "kill -9 $$")
    assert r.returncode == 128 + signal.SIGKILL, r


def test_exec_arguments_after_id_are_the_command(runtime, running):
    """Flags after the id belong to the command, not to the runtime."""
    c, _ = running()
    r = runtime("exec", c, "ls", "-d", "--color=never", "/dev")
    assert r.returncode == 0, r
    assert r.stdout.strip() == "/dev"


def test_exec_stdin_is_passed(runtime, running):
    c, _ = running()
    r = runtime("exec", c, "sh", "-c", "read x; echo got:$x", input="hello\n")
    assert r.returncode == 0, r
    assert r.stdout == "got:hello\n"


def test_exec_into_created_container(runtime, created):
    """exec works before `start`; the container stays created and its process unrun."""
    c, pid = created(args=["sh", "-c", "echo user-program-ran; exec sleep 1000"])
    r = runtime("exec", c, "sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '")
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0] != "1"
    assert "sleep" not in lines[1]
    st = runtime.state(c)
    assert st["status"] == "created" and st["pid"] == pid
    assert "sleep" not in cmdline(pid)
    runtime.ok("start", c)
    wait_for(lambda: cmdline(pid) == SLEEP, "the container's process to start")
    assert runtime.state(c)["status"] == "running"


def test_exec_many_times(runtime, running):
    c, _ = running()
    for i in range(5):
        r = runtime("exec", c, "sh", "-c", f"exit {i}")
        assert r.returncode == i, r
    assert runtime.state(c)["status"] == "running"


# ---------------------------------------------------------------- process settings


def test_exec_env(runtime, running):
    """--env adds or overrides; the rest of the container's env is kept, HOME as run."""
    c, _ = running(set_process(env=["PATH=/bin:/usr/bin", "KEEP=kept", "OVER=old"]))
    r = runtime("exec", "--env", "NEW=new", "--env", "OVER=new value", c,
                "sh", "-c", 'echo "$KEEP|$OVER|$NEW|$HOME|$PATH"')
    assert r.returncode == 0, r
    assert r.stdout == "kept|new value|new|/root|/bin:/usr/bin\n"


def test_exec_cwd(runtime, running):
    c, _ = running(set_process(cwd="/srv/work"))
    r = runtime("exec", c, "pwd")
    assert r.stdout == "/srv/work\n", r  # the container's process cwd by default
    r = runtime("exec", "--cwd", "/tmp", c, "pwd")
    assert r.returncode == 0, r
    assert r.stdout == "/tmp\n"


def test_exec_user(runtime, running):
    c, _ = running()
    r = runtime("exec", "--user", "1000:1001", c, "sh", "-c", "id -u; id -g; id -G")
    assert r.returncode == 0, r
    assert r.stdout.split() == ["1000", "1001", "1001"]
    r = runtime("exec", "--user", "1000", c, "sh", "-c", "id -u; id -g")
    assert r.returncode == 0, r
    assert r.stdout.split() == ["1000", "0"]


def test_exec_additional_gids(runtime, running):
    c, _ = running()
    r = runtime("exec", "--user", "1000:1001", "--additional-gids", "2000",
                "--additional-gids", "2001", c, "grep", "^Groups:", "/proc/self/status")
    assert r.returncode == 0, r
    assert r.stdout.split()[1:] == ["2000", "2001"]


def test_exec_user_from_container_config(runtime, running):
    c, _ = running(set_process(user={"uid": 1234, "gid": 1235}))
    r = runtime("exec", c, "sh", "-c", "id -u; id -g")
    assert r.stdout.split() == ["1234", "1235"], r


def test_exec_process_file(runtime, running, tmp_path):
    """--process F: an OCI process object, as containerd and podman send it."""
    c, _ = running()
    proc = {
        "terminal": False,
        "user": {"uid": 1000, "gid": 1001, "additionalGids": [3000], "umask": 0o027},
        "args": ["sh", "-c", 'echo "$FOO"; pwd; id -u; id -g; id -G; umask; '
                 "grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status; "
                 "ulimit -n; ulimit -Hn; exit 5"],
        "env": ["PATH=/bin:/usr/bin", "FOO=from the file"],
        "cwd": "/tmp",
        # a non-root user keeps capabilities across execve only through the ambient set
        "capabilities": {"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"],
                         "permitted": ["CAP_KILL"], "inheritable": ["CAP_KILL"],
                         "ambient": ["CAP_KILL"]},
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}],
        "noNewPrivileges": True,
    }
    f = tmp_path / "process.json"
    f.write_text(json.dumps(proc))
    r = runtime("exec", "--process", f, c)
    assert r.returncode == 5, r
    lines = r.stdout.splitlines()
    assert lines[:6] == ["from the file", "/tmp", "1000", "1001", "1001 3000", "0027"]
    st = dict(ln.split(":\t") for ln in lines[6:11])
    assert int(st["CapEff"], 16) == 1 << 5  # CAP_KILL
    assert int(st["CapPrm"], 16) == 1 << 5
    assert int(st["CapAmb"], 16) == 1 << 5
    assert int(st["CapBnd"], 16) == (1 << 5) | (1 << 0)  # CAP_KILL, CAP_CHOWN
    assert st["NoNewPrivs"] == "1"
    assert lines[11:] == ["321", "654"]


def test_exec_capabilities_and_no_new_privs_of_the_container(runtime, running, tmp_path):
    """Without --process, the exec'd process gets the container's capability sets and
    no_new_privs, compared with the init's from the host."""
    edits = [add_caps("CAP_SYS_ADMIN"), set_process(noNewPrivileges=True)]
    c, init = running(edits)
    pid = exec_detached(runtime, c, tmp_path, *SLEEP)
    want = proc_status(init)
    got = proc_status(pid)
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Uid", "Gid"):
        assert got[key] == want[key], key
    assert int(got["CapEff"], 16) & (1 << 21)  # CAP_SYS_ADMIN
    assert got["NoNewPrivs"] == "1"


def test_exec_cap_flag_adds_capability(runtime, running):
    c, _ = running()
    r = runtime("exec", "--cap", "CAP_SYS_ADMIN", c, "grep", "^CapEff:", "/proc/self/status")
    assert r.returncode == 0, r
    assert int(r.stdout.split()[1], 16) & (1 << 21)


def test_exec_no_new_privs_flag(runtime, running):
    c, _ = running(set_process(noNewPrivileges=False))
    r = runtime("exec", c, "grep", "^NoNewPrivs:", "/proc/self/status")
    assert r.stdout.split() == ["NoNewPrivs:", "0"], r
    r = runtime("exec", "--no-new-privs", c, "grep", "^NoNewPrivs:", "/proc/self/status")
    assert r.stdout.split() == ["NoNewPrivs:", "1"], r


def test_exec_rlimits_of_the_container(runtime, running, tmp_path):
    c, init = running(set_process(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 111,
                                            "hard": 222}]))
    pid = exec_detached(runtime, c, tmp_path, *SLEEP)
    lim = [ln for ln in open(f"/proc/{pid}/limits") if ln.startswith("Max open files")]
    assert lim[0].split()[3:5] == ["111", "222"]


# ---------------------------------------------------------------- namespaces


ALL_NS = [add_ns("cgroup"), add_ns("user"), add_ns("time")]


@pytest.mark.parametrize("state", ["created", "running"])
def test_exec_joins_every_namespace_of_the_init(runtime, created, running, public_tmp,
                                                tmp_path, state):
    """Every /proc/PID/ns/* link of the exec'd process equals the init's (user, time and
    cgroup namespaces included), and its pid namespace makes it a non-1 pid there."""
    if under_runc():
        pytest.skip("runc 1.1.5 has no time namespaces")
    make = created if state == "created" else running
    c, init = make(ALL_NS, base=public_tmp)
    pid = exec_detached(runtime, c, tmp_path, *SLEEP)
    want = ns_links(init)
    got = ns_links(pid)
    own = ns_links("self")
    assert set(want) >= {"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"}
    assert got == want
    for name in ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"):
        assert want[name] != own[name], f"the container's {name} namespace is the host's"
    assert len(nspid(pid)) == 2 and nspid(pid)[1] > 1
    assert os.readlink(f"/proc/{pid}/root") == os.readlink(f"/proc/{init}/root")
    st = proc_status(pid)
    assert st["Uid"].split()[0] == "100000"  # root of the container's user namespace


def test_exec_joins_the_container_cgroup(runtime, running, tmp_path):
    """The exec'd process is in the init's cgroup (v2), so limits and `kill --all`
    reach it."""
    def cgroup(pid):
        return [ln for ln in open(f"/proc/{pid}/cgroup") if ln.startswith("0::")]

    c, init = running()
    pid = exec_detached(runtime, c, tmp_path, *SLEEP)
    assert cgroup(pid) == cgroup(init)
    assert cgroup(init) != cgroup("self"), "the container has no cgroup of its own"


def test_exec_sees_the_container_root_and_hostname(runtime, running):
    c, _ = running({"hostname": "exec-box"})
    r = runtime("exec", c, "sh", "-c", "hostname; ls /; cat /proc/1/cmdline | tr '\\0' ' '")
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0] == "exec-box"
    assert "bin" in lines and "work" not in lines
    assert lines[-1].strip() == "sleep 1000"


def test_exec_into_no_pivot_container_stays_in_its_root(runtime, bundle, cid):
    """--no-pivot (MS_MOVE + chroot): exec must not land in the host's root."""
    c = cid()
    b = bundle(SLEEP)
    runtime.ok("run", "-d", "--no-pivot", "--bundle", b, c)
    (b / "rootfs" / "marker-of-container-root").write_text("x")
    r = runtime("exec", c, "ls", "/")
    assert r.returncode == 0, r
    assert "marker-of-container-root" in r.stdout.split(), r


# ---------------------------------------------------------------- --detach, pid file, fds


def test_exec_detach_pid_file(runtime, running, tmp_path):
    c, init = running()
    pidfile = tmp_path / "exec.pid"
    r = runtime("exec", "--detach", "--pid-file", pidfile, c, "sleep", "999")
    assert r.returncode == 0, r
    raw = pidfile.read_bytes()
    assert re.fullmatch(rb"[1-9][0-9]*", raw), f"pid file must hold the bare pid: {raw!r}"
    pid = int(raw)
    assert alive(pid) and cmdline(pid) == ["sleep", "999"]
    assert nspid(pid)[0] == pid
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")
    # it re-parents to the caller (a subreaper), who can wait for it
    assert int(proc_status(pid)["PPid"]) == os.getpid()
    assert pid in container_pids(runtime, c)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert pid not in container_pids(runtime, c)


def test_exec_detach_returns_at_once(runtime, running):
    c, _ = running()
    r = runtime("exec", "-d", c, "sleep", "1000", timeout=TIMEOUT)
    assert r.returncode == 0, r
    assert any(cmdline(p) == ["sleep", "1000"] for p in container_pids(runtime, c)[1:])


def test_exec_no_runtime_fd_leaks(runtime, running, tmp_path):
    """Only 0-2 reach the exec'd process, even when the caller passes more."""
    c, _ = running()
    with open("/etc/hostname", "rb") as a, open("/etc/hostname", "rb") as b:
        pid = exec_detached(runtime, c, tmp_path, *SLEEP, pass_fds=(a.fileno(), b.fileno()))
    fds = fds_of(pid)
    assert sorted(fds) == [0, 1, 2], fds


def test_exec_no_fd_leaks_in_foreground(runtime, running, tmp_path):
    """A foreground exec (the runtime waits for it) leaks nothing either."""
    c, _ = running()
    before = set(container_pids(runtime, c))
    bg = Background(runtime.argv("exec", c, *SLEEP), tmp_path, "exec-fg")
    try:
        new = wait_for(lambda: [p for p in container_pids(runtime, c)
                                if p not in before and cmdline(p) == SLEEP],
                       "the exec'd sleep")
        fds = fds_of(new[0])
        assert sorted(fds) == [0, 1, 2], fds
        os.kill(new[0], signal.SIGTERM)
        assert bg.wait() == 128 + signal.SIGTERM, str(bg)
    finally:
        bg.kill()


def test_exec_preserve_fds(runtime, running, tmp_path):
    """--preserve-fds N: fds 3..3+N-1 of the caller reach the process; the next do not."""
    import fcntl
    import subprocess

    c, _ = running()
    high = []
    for i in range(3):
        p = tmp_path / f"f{i}"
        p.write_text(f"content {i}\n")
        with open(p, "rb") as f:
            high.append(fcntl.fcntl(f.fileno(), fcntl.F_DUPFD, 50 + i))
    try:
        # the runtime gets them as 3, 4 and 5 (and still 50-52)
        script = 'exec 3<&{} 4<&{} 5<&{}; exec "$@"'.format(*high)
        argv = ["bash", "-c", script, "bash", *runtime.argv(
            "exec", "--preserve-fds", "2", c, "sh", "-c",
            # The shell's own fds: no pipeline while listing (the shell would hold its
            # pipe), and not its last command (it would exec ls, listing ls's dir fd).
            "cat <&3; cat <&4; ls /proc/$$/fd; true")]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                           pass_fds=high, stdin=subprocess.DEVNULL)
    finally:
        for fd in high:
            os.close(fd)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[:2] == ["content 0", "content 1"], r
    assert sorted(lines[2:], key=int) == ["0", "1", "2", "3", "4"], r


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("how", ["exited", "killed"])
def test_exec_into_stopped_container_fails(runtime, running, tmp_path, how):
    args = ["true"] if how == "exited" else SLEEP
    c, init = running(args=args)
    if how == "killed":
        runtime.ok("kill", c, "KILL")
    runtime.wait_status(c, "stopped")
    r = runtime("exec", "--detach", "--pid-file", tmp_path / "p", c, "sleep", "777")
    line = one_line_error(r)
    if not under_runc():
        assert c in line and "stopped" in line
    assert not (tmp_path / "p").exists()
    assert not [p for p in os.listdir("/proc") if p.isdigit()
                and cmdline(p) == ["sleep", "777"]]
    assert runtime.state(c)["status"] == "stopped"


def test_exec_into_unknown_container_fails(runtime, tmp_path):
    r = runtime("exec", "no-such-container", "true")
    line = one_line_error(r)
    if not under_runc():
        assert "no-such-container" in line
    assert not runtime.root.exists() or os.listdir(runtime.root) == []


@pytest.mark.minirun_only
@pytest.mark.parametrize("content,words", [
    ('{"args": ["true"', "invalid JSON"),
    ("", "invalid JSON"),
    ('["true"]', "process"),
    ('{"args": "true"}', "args"),
    ('{"args": []}', "args"),
    ('{"args": ["true"], "env": "A=b"}', "env"),
    ('{"args": ["true"], "env": ["NOEQUALS"]}', "env"),
    ('{"args": ["true"], "cwd": 5}', "cwd"),
    ('{"args": ["true"], "cwd": "relative"}', "cwd"),
    ('{"args": ["true"], "user": {"uid": "0"}}', "uid"),
    ('{"args": ["true"], "capabilities": {"bounding": ["CAP_BOGUS"]}}', "CAP_BOGUS"),
    ('{"args": ["true"], "rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]}',
     "RLIMIT_BOGUS"),
    ('{"args": ["true"], "terminal": "yes"}', "terminal"),
])
def test_exec_malformed_process_file(runtime, running, tmp_path, content, words):
    c, _ = running()
    before = container_pids(runtime, c)
    f = tmp_path / "process.json"
    f.write_text(content)
    r = runtime("exec", "--process", f, c)
    line = one_line_error(r)
    assert words in line, line
    assert str(f) in line or "process.json" in line, line
    assert container_pids(runtime, c) == before
    assert runtime.state(c)["status"] == "running"


def test_exec_process_file_missing(runtime, running, tmp_path):
    c, _ = running()
    r = runtime("exec", "--process", tmp_path / "nope.json", c)
    line = one_line_error(r)
    if not under_runc():
        assert "nope.json" in line


@pytest.mark.minirun_only
def test_exec_missing_binary_fails_clearly(runtime, running):
    c, _ = running()
    before = container_pids(runtime, c)
    r = runtime("exec", c, "/no/such/binary")
    line = one_line_error(r)
    assert "/no/such/binary" in line
    assert container_pids(runtime, c) == before


@pytest.mark.minirun_only
def test_exec_bad_cwd_fails_clearly(runtime, running):
    c, _ = running()
    before = container_pids(runtime, c)
    r = runtime("exec", "--cwd", "/no/such/dir", c, "true")
    line = one_line_error(r)
    assert "/no/such/dir" in line
    assert container_pids(runtime, c) == before


@pytest.mark.minirun_only
def test_exec_without_command_fails(runtime, running):
    c, _ = running()
    one_line_error(runtime("exec", c))


# ---------------------------------------------------------------- ps


def test_ps_json_is_a_plain_array_of_host_pids(runtime, running, tmp_path):
    c, init = running()
    pid = exec_detached(runtime, c, tmp_path, "sleep", "998")
    r = runtime("ps", "--format", "json", c)
    assert r.returncode == 0, r
    pids = json.loads(r.stdout)
    assert isinstance(pids, list) and all(type(p) is int for p in pids), r.stdout
    assert sorted(pids) == sorted({init, pid}), (pids, init, pid)
    for p in pids:
        assert os.readlink(f"/proc/{p}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")


def test_ps_json_of_created_container(runtime, created):
    c, init = created()
    r = runtime("ps", "--format", "json", c)
    assert r.returncode == 0, r
    assert json.loads(r.stdout) == [init]


def test_ps_table(runtime, running, tmp_path):
    c, init = running()
    pid = exec_detached(runtime, c, tmp_path, "sleep", "997")
    r = runtime("ps", c)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    header = lines[0].split()
    assert "PID" in header and "CMD" in header, lines[0]
    col = header.index("PID")
    rows = {int(ln.split()[col]): ln for ln in lines[1:]}
    assert set(rows) == {init, pid}, r.stdout
    assert rows[init].rstrip().endswith("sleep 1000")
    assert rows[pid].rstrip().endswith("sleep 997")


def test_ps_of_unknown_container_fails(runtime):
    one_line_error(runtime("ps", "no-such-container"))
