"""Terminals: `process.terminal` with a console socket, and `run`/`exec -t` relaying the
caller's own tty.

With ``--console-socket S`` the runtime sends the master side of the container's pty
over S with SCM_RIGHTS, as runc does; the tests receive it like containerd's shim or
conmon (``tty_console.ConsoleSocket``), then talk to the container through it.
Without a console socket, a foreground ``run`` (or ``exec -t``) relays the caller's
own terminal: the tests drive the runtime under a pty of their own and check the
output, the input, the window size, the exit status and that the caller's terminal
mode is restored.

Wording checks carry the minirun_only mark; the rest passes against runc 1.1.5.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import termios
import time

import pytest
from conf_util import Background, alive, cmdline, set_process, wait_for
from conftest import TIMEOUT, reap_zombie_children, under_runc
from tty_console import Console, ConsoleSocket, set_winsize, winsize_of

PTS = re.compile(rb"/dev/pts/\d+")


def terminal(rows: int | None = None, cols: int | None = None, **more):
    def edit(cfg):
        cfg["process"]["terminal"] = True
        if rows is not None:
            cfg["process"]["consoleSize"] = {"height": rows, "width": cols}
        cfg["process"].update(more)
    return edit


@pytest.fixture
def console_socket(tmp_path):
    """A fresh listening console socket (a short path: sun_path is 108 bytes)."""
    import tempfile

    d = tempfile.mkdtemp(prefix="mr-con-", dir="/tmp")
    sockets = []

    def make(name: str = "console.sock") -> ConsoleSocket:
        cs = ConsoleSocket(os.path.join(d, name))
        sockets.append(cs)
        return cs

    yield make
    for cs in sockets:
        cs.close()
    os.rmdir(d)


def one_line_error(r) -> str:
    assert r.returncode != 0, r
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one error line:\n{r}"
    return lines[0]


def nothing_left(runtime) -> None:
    assert not runtime.root.exists() or os.listdir(runtime.root) == [], \
        os.listdir(runtime.root)


# ---------------------------------------------------------------- create --console-socket


def test_console_socket_create_start(runtime, bundle, cid, console_socket):
    script = ("tty; stty size; echo TERM=$TERM; for f in 0 1 2; do readlink /proc/$$/fd/$f; "
              "done; echo ready; read x; echo got:$x; exit 3")
    b = bundle(["sh", "-c", script], terminal(33, 101))
    c = cid()
    cs = console_socket()
    r = runtime.create(c, b, "--console-socket", cs.path)
    assert r.returncode == 0, r
    con = cs.accept()
    assert os.isatty(con.master)
    if not under_runc():
        assert PTS.fullmatch(con.name.encode()), con.name
    assert runtime.state(c)["status"] == "created"
    assert not con._read_some(0.3), f"output before start: {con.buf!r}"

    runtime.ok("start", c)
    out = con.read_until(b"ready\r\n")
    lines = out.decode().splitlines()
    assert PTS.fullmatch(lines[0].encode()), out
    assert lines[1] == "33 101", out
    assert lines[2] == "TERM=xterm"
    assert lines[3:6] == [lines[0]] * 3, out  # stdin, stdout, stderr: the pty
    con.write(b"hello\n")
    rest = con.read_to_hangup()
    assert b"got:hello" in rest, rest
    runtime.wait_status(c, "stopped")


def test_console_is_the_controlling_terminal(runtime, bundle, cid, console_socket):
    """^C on the console sends SIGINT to the foreground process group: the pty is the
    session's controlling terminal. (sh traps it: pid 1 has no default actions.)"""
    b = bundle(["sh", "-c", "trap 'echo trapped' INT; echo ready; cat; echo cat-exited:$?; "
                            "sleep 1000"], terminal())
    c = cid()
    cs = console_socket()
    runtime.ok("create", "--bundle", b, "--console-socket", cs.path, c)
    con = cs.accept()
    runtime.ok("start", c)
    con.read_until(b"ready\r\n")
    time.sleep(0.2)  # let cat start reading
    con.write(b"\x03")
    out = con.read_until(b"cat-exited:130")
    assert b"trapped" in out, out


def test_console_size_changes_reach_the_container(runtime, bundle, cid, console_socket):
    b = bundle(["sh", "-c", "stty size; read x; stty size; sleep 1000"], terminal(10, 20))
    c = cid()
    cs = console_socket()
    runtime.ok("create", "--bundle", b, "--console-socket", cs.path, c)
    con = cs.accept()
    runtime.ok("start", c)
    assert b"10 20" in con.read_until(b"10 20\r\n")
    con.set_winsize(50, 132)  # what containerd's ResizePty does
    con.write(b"\n")
    assert b"50 132" in con.read_until(b"50 132\r\n")


def test_console_socket_dev_console(runtime, bundle, cid, console_socket):
    """/dev/console is the container's pty (a bind mount of it), as runc does
    (config-linux.md, default devices)."""
    b = bundle(["sh", "-c", "stat -c '%t:%T' /dev/console $(tty) 2>&1; "
                            "echo hi > /dev/console"], terminal())
    c = cid()
    cs = console_socket()
    runtime.ok("create", "--bundle", b, "--console-socket", cs.path, c)
    con = cs.accept()
    runtime.ok("start", c)
    out = con.read_to_hangup().decode().replace("\r", "")
    lines = out.splitlines()
    assert "/dev/console" not in out, f"no /dev/console in the container: {out!r}"
    assert lines[0] == lines[1], f"/dev/console {lines[0]} is not the pty {lines[1]}"
    assert lines[2] == "hi"


def test_exit_status_with_console(runtime, bundle, cid, console_socket):
    b = bundle(["sh", "-c", "exit 0"], terminal())
    c = cid()
    cs = console_socket()
    r = runtime("run", "-d", "--bundle", b, "--console-socket", cs.path, c)
    assert r.returncode == 0, r
    con = cs.accept()
    con.read_to_hangup()
    st = runtime.wait_status(c, "stopped")
    assert st["status"] == "stopped"


# ---------------------------------------------------------------- exec --tty --console-socket


def test_exec_tty_console_socket_detached(runtime, bundle, cid, console_socket, tmp_path):
    """As podman and containerd exec with -t: --tty --console-socket --detach --pid-file."""
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "1000"]), c)
    cs = console_socket()
    pidfile = tmp_path / "exec.pid"
    r = runtime("exec", "--tty", "--console-socket", cs.path, "--detach",
                "--pid-file", pidfile, c, "sh", "-c",
                "tty; stty size; echo ready; read x; echo got:$x; exit 4")
    assert r.returncode == 0, r
    pid = int(pidfile.read_bytes())
    con = cs.accept()
    con.set_winsize(24, 90)
    out = con.read_until(b"ready\r\n").decode().splitlines()
    assert PTS.fullmatch(out[0].encode()), out
    con.write(b"there\n")
    assert b"got:there" in con.read_to_hangup()
    wait_for(lambda: not alive(pid), "the exec'd process to exit")
    assert runtime.state(c)["status"] == "running"
    reap_zombie_children()  # it re-parented to us: a zombie until reaped


@pytest.mark.minirun_only  # runc 1.1.5 ignores the console socket of a foreground exec
def test_exec_tty_console_socket_foreground(runtime, bundle, cid, console_socket, tmp_path):
    """Without --detach the runtime waits and returns the process's exit status."""
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "1000"]), c)
    cs = console_socket()
    bg = Background(runtime.argv("exec", "-t", "--console-socket", cs.path, c, "sh", "-c",
                                 "echo ready; read x; echo got:$x; exit 6"),
                    tmp_path, "exec-tty")
    try:
        con = cs.accept()
        con.read_until(b"ready\r\n")
        con.write(b"yo\n")
        assert b"got:yo" in con.read_to_hangup()
        assert bg.wait() == 6, str(bg)
    finally:
        bg.kill()


# ---------------------------------------------------------------- bad console sockets


@pytest.mark.parametrize("kind", ["regular-file", "directory", "missing", "no-listener"])
def test_console_socket_not_a_socket(runtime, bundle, cid, tmp_path, kind):
    import socket

    path = tmp_path / "console"
    if kind == "regular-file":
        path.write_text("")
    elif kind == "directory":
        path.mkdir()
    elif kind == "no-listener":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        s.close()  # a socket file nobody listens on
    b = bundle(["sh", "-c", "echo RAN > /dev/null; sleep 1000"], terminal())
    c = cid()
    r = runtime.create(c, b, "--console-socket", path)
    line = one_line_error(r)
    if not under_runc():
        assert str(path) in line, line
    nothing_left(runtime)
    assert runtime("state", c).returncode != 0
    assert not [p for p in os.listdir("/proc") if p.isdigit() and c in " ".join(cmdline(p))]


@pytest.mark.parametrize("kind", ["regular-file", "missing"])
def test_exec_console_socket_not_a_socket(runtime, bundle, cid, tmp_path, kind):
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "1000"]), c)
    before = runtime("ps", "--format", "json", c).stdout
    path = tmp_path / "console"
    if kind == "regular-file":
        path.write_text("")
    r = runtime("exec", "--tty", "--console-socket", path, "--detach", c, "sleep", "555")
    line = one_line_error(r)
    if not under_runc():
        assert str(path) in line, line
    assert runtime("ps", "--format", "json", c).stdout == before


def test_terminal_without_console_socket_create_fails(runtime, bundle, cid):
    """create (or run -d) has nobody to hand the terminal to: an error, nothing left."""
    b = bundle(["true"], terminal())
    c = cid()
    one_line_error(runtime.create(c, b))
    nothing_left(runtime)
    one_line_error(runtime("run", "-d", "--bundle", b, c))
    nothing_left(runtime)


def test_console_socket_without_terminal_fails(runtime, bundle, cid, console_socket):
    b = bundle(["true"])
    c = cid()
    cs = console_socket()
    r = runtime.create(c, b, "--console-socket", cs.path)
    one_line_error(r)
    nothing_left(runtime)


def test_console_size_ignored_without_terminal(runtime, bundle, cid):
    """consoleSize without terminal: no pty, the caller's stdio as usual."""
    b = bundle(["sh", "-c", "tty; echo done"], set_process(consoleSize={"height": 5,
                                                                        "width": 6}))
    c = cid()
    r = runtime("run", "--bundle", b, c)
    assert r.returncode == 0, r
    assert r.stdout.splitlines() == ["not a tty", "done"]


# ---------------------------------------------------------------- the caller's own tty


class PtyCaller:
    """The runtime started on a pty of ours, as a user's shell would start it: the
    slave is its stdin/stdout/stderr and controlling terminal, in a new session."""

    def __init__(self, argv: list[str], rows: int = 24, cols: int = 80) -> None:
        self.master, self.slave = os.openpty()
        set_winsize(self.slave, rows, cols)
        attrs = termios.tcgetattr(self.slave)
        attrs[3] |= termios.ICANON | termios.ECHO | termios.ISIG  # a cooked terminal
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        self.attrs_before = termios.tcgetattr(self.slave)

        def ctty() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(argv, stdin=self.slave, stdout=self.slave,
                                     stderr=self.slave, start_new_session=True,
                                     preexec_fn=ctty, close_fds=True)
        self.con = Console(self.master, "")

    def attrs(self) -> list:
        return termios.tcgetattr(self.slave)

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child, by pid
            self.proc.wait()
            raise AssertionError(f"the runtime did not exit; console: {self.con.buf!r}") \
                from None

    def drain(self) -> bytes:
        """What is left to read (the slave stays open here, so no hang-up comes)."""
        while self.con._read_some(0.2):
            pass
        out, self.con.buf = self.con.buf, b""
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.con.close()
        os.close(self.slave)


@pytest.fixture
def pty_caller():
    callers = []

    def start(argv, **kw) -> PtyCaller:
        pc = PtyCaller(argv, **kw)
        callers.append(pc)
        return pc

    yield start
    for pc in callers:
        pc.close()


def check_relayed_session(pc: PtyCaller, want_status: int) -> None:
    """Drive the script of RELAY_SCRIPT through the caller's pty."""
    out = pc.con.read_until(b"ready\r\n").decode()
    lines = out.replace("\r", "").splitlines()
    assert PTS.fullmatch(lines[-3].encode()), out  # the container has a pty of its own
    assert lines[-2] == "30 100", out  # the caller's window size was passed on
    # meanwhile the caller's terminal is raw: no line discipline, no echo, no signals
    lflag = pc.attrs()[3]
    assert not lflag & (termios.ICANON | termios.ECHO | termios.ISIG), oct(lflag)

    set_winsize(pc.slave, 45, 140)  # the user resizes: SIGWINCH to the runtime
    time.sleep(0.3)
    pc.con.write(b"\n")
    assert b"45 140" in pc.con.read_until(b"45 140\r\n")
    pc.con.write(b"typed\n")
    assert b"got:typed" in pc.con.read_until(b"got:typed")
    assert pc.wait() == want_status, pc.drain()
    assert pc.attrs() == pc.attrs_before, "the caller's terminal mode was not restored"


RELAY_SCRIPT = "tty; stty size; echo ready; read x; stty size; read y; echo got:$y; exit 7"


@pytest.mark.minirun_only  # runc 1.1.5 sets the window size after the process started
def test_run_terminal_relays_callers_tty(runtime, bundle, cid, pty_caller):
    b = bundle(["sh", "-c", RELAY_SCRIPT], terminal())
    c = cid()
    pc = pty_caller(runtime.argv("run", "--bundle", b, c), rows=30, cols=100)
    check_relayed_session(pc, 7)
    assert runtime("state", c).returncode != 0  # run deleted it


def test_exec_tty_relays_callers_tty(runtime, bundle, cid, pty_caller):
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "1000"]), c)
    pc = pty_caller(runtime.argv("exec", "-t", c, "sh", "-c", RELAY_SCRIPT), rows=30,
                    cols=100)
    check_relayed_session(pc, 7)
    assert runtime.state(c)["status"] == "running"


def test_run_terminal_ctrl_c_reaches_the_container(runtime, bundle, cid, pty_caller):
    """In raw mode ^C is a byte for the container's pty, whose line discipline turns it
    into SIGINT for the container's foreground processes (not for the runtime)."""
    b = bundle(["sh", "-c", "trap 'echo trapped' INT; echo ready; cat; echo cat-exited:$?; "
                            "exit 9"], terminal())
    c = cid()
    pc = pty_caller(runtime.argv("run", "--bundle", b, c))
    pc.con.read_until(b"ready\r\n")
    time.sleep(0.2)
    pc.con.write(b"\x03")
    out = pc.con.read_until(b"cat-exited:130")
    assert b"trapped" in out, out
    assert pc.wait() == 9
    assert pc.attrs() == pc.attrs_before


@pytest.mark.minirun_only  # runc 1.1.5 refuses: it opens /dev/tty
def test_run_terminal_without_a_tty_on_stdin(runtime, bundle, cid):
    """The caller's stdin is not a terminal (a file): output is still relayed and the
    exit status returned."""
    b = bundle(["sh", "-c", "tty; read x; echo got:$x; exit 5"], terminal())
    c = cid()
    r = runtime("run", "--bundle", b, c, input="piped\n")
    assert r.returncode == 5, r
    out = r.stdout.replace("\r", "").splitlines()
    # the container's pty echoes the input, which may arrive before `tty` runs
    assert any(PTS.fullmatch(ln.encode()) for ln in out), r
    assert "got:piped" in out, r


def test_run_terminal_exit_by_signal(runtime, bundle, cid, pty_caller):
    b = bundle(["sh", "-c", "echo ready; exec sleep 1000"], terminal())
    c = cid()
    pc = pty_caller(runtime.argv("run", "--bundle", b, c))
    pc.con.read_until(b"ready\r\n")
    wait_for(lambda: runtime.status(c) == "running" and
             cmdline(runtime.state(c)["pid"]) == ["sleep", "1000"], "sleep to run")
    runtime.ok("kill", c, "KILL")
    assert pc.wait() == 137, pc.drain()
    assert pc.attrs() == pc.attrs_before
    assert winsize_of(pc.slave) == (24, 80)


@pytest.mark.parametrize("how", ["run", "exec"])
def test_pty_slave_belongs_to_the_user(runtime, bundle, cid, console_socket, how):
    """The pty's slave is chowned to process.user.uid, group tty, before the user switch
    (runc's order): a process that is not root owns its terminal."""
    script = "stat -c '%u:%g' $(tty); echo ready; read x"
    c = cid()
    cs = console_socket()
    if how == "run":
        b = bundle(["sh", "-c", script], [terminal(24, 80),
                                          {"process": {"user": {"uid": 1000, "gid": 1000}}}])
        assert runtime.create(c, b, "--console-socket", cs.path).returncode == 0
        con = cs.accept()
        runtime.ok("start", c)
    else:
        runtime.ok("run", "-d", "--bundle", bundle(["sleep", "1000"]), c)
        r = runtime("exec", "-t", "-d", "--user", "1000:1000", "--console-socket", cs.path, c,
                    "sh", "-c", script)
        assert r.returncode == 0, r
        con = cs.accept()
    out = con.read_until(b"ready\r\n").decode()
    assert out.splitlines()[0].strip() == "1000:5", out
    con.write(b"x\n")
    runtime.ok("delete", "--force", c)
