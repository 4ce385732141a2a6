"""The network helper: a process that imports the netlink and nftables code while the
container is made, then sets its network up, and in a foreground `run` tears it down.

pyroute2's rtnl messages and libnftables take 20-40 ms to load, more than all of a
`run --network none`. So they are loaded in a process of their own, in parallel:

    minirun create/run ──fork──> helper   (at program start when the command line asks
          │                       │        for a bridge: start_early(); otherwise once
          │                       │        config.json is read: network.prepare)
          │ imports, config,      │ imports (niced: the set-up processes come first)
          │ set-up processes      │
          ├── {"root", "cid", "pid", "request", "trace"} ──>  bridge.setup(...)
          │ <── {"record"} or {"error", "notes"}, with "spans" ──┘
          │ start; a foreground run waits for the container
          ├── the record ──────────────────────────────────>  takes the lease lock
          │ <── "L" ─────────────────────────────────────────  detaches (setsid) and
          exits                                                bridge.teardown(...)

One JSON line each way, over two pipes. Until it detaches the helper dies with the
runtime (PR_SET_PDEATHSIG); a pipe that closes where a line was due ends it quietly:
the runtime went on without it (create failed; `create` or `run -d` is done).
Its steps reach the runtime's --trace on a track of their own (trace.HELPER_TRACK).
"""

import os

IMPORT_SPAN = "import pyroute2's rtnl messages (helper)"
_FD_FLOOR = 100  # its pipes sit above the fds --preserve-fds hands to the container


class Helper:
    """The runtime's side of one helper: its pid and the two pipe ends."""

    __slots__ = ("pid", "to", "frm", "begun")

    def __init__(self, pid: int, to: int, frm: int) -> None:
        self.pid, self.to, self.frm = pid, to, frm
        self.begun = False  # told to set up: it may be changing the host's network

    def begin(self, root: str, cid: str, pid: int, request: dict) -> None:
        """Tell it to set up the container whose init is `pid` (finish() gets the
        result); a helper that died is found out by finish()."""
        from minirun import trace
        from minirun.lite import json
        from minirun.log import log

        t0 = trace.ACTIVE.t0 if trace.ACTIVE is not None else None
        msg = {"root": root, "cid": cid, "pid": pid, "request": request, "trace": t0,
               "log": [log.path, log.format, log.debug_enabled]}  # forked before --log
        self.begun = True
        try:
            write_all(self.to, json.dumps(msg).encode() + b"\n")
        except BrokenPipeError:
            pass  # it died: finish() tells

    def finish(self) -> dict:
        """Its bridge.setup's record, or its MinirunError raised here."""
        from minirun import trace
        from minirun.errors import MinirunError
        from minirun.lite import json

        data, answer, status = b"", {}, 0
        try:
            data = read_line(self.frm)
            answer = json.loads(data) if data else {}
        finally:
            if "record" not in answer:
                status = self.close(kill=False)
        if not data:
            why = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                   else f"exit status {os.WEXITSTATUS(status)}")
            raise MinirunError(f"network set-up: its helper process (pid {self.pid}) died: "
                               f"{why}")
        if trace.ACTIVE is not None:
            trace.ACTIVE.events.extend(answer["spans"])
        if "error" in answer:
            err = MinirunError(answer["error"])
            for note in answer["notes"]:
                err.add_note(note)
            raise err
        return answer["record"]

    def teardown(self, record: dict) -> bool:
        """Hand it the teardown: True once it holds the lease lock (it goes on alone),
        False if it could not take the work (the caller does it)."""
        from minirun.lite import json

        try:
            write_all(self.to, json.dumps(record).encode() + b"\n")
            return read_line(self.frm) == b"L\n"
        except OSError:
            return False  # it died

    def abandon(self) -> None:
        """The create failed: a helper told to set up finishes that first (killed
        half-way it could leave a bridge not yet marked as minirun's, that no teardown
        would remove), then ends on the closed pipe; one not told is killed. Either
        way it is gone on return, and the caller's teardown removes what it made."""
        if self.frm < 0:
            return  # closed already
        if not self.begun:
            self.close(kill=True)
            return
        os.close(self.to)
        self.to = -1
        while read_line(self.frm):
            pass  # its answer, unread
        self.close(kill=False)

    def close(self, kill: bool, wait: bool = True) -> int:
        """Close the pipes (a helper still waiting for a line ends on that) and reap
        it, first killing it if `kill` (one never used: its imports may still run).
        Its wait status; 0 if not waited for or reaped by something else (run waits
        for any child)."""
        for fd in (self.to, self.frm):
            if fd >= 0:
                os.close(fd)
        self.to = self.frm = -1
        try:
            if kill:
                os.kill(self.pid, 9)  # SIGKILL
            return os.waitpid(self.pid, 0)[1] if wait else 0
        except (ProcessLookupError, ChildProcessError):
            return 0


# The helper start_early() forked, until network.prepare adopts it or the program ends.
EARLY: Helper | None = None


def start_early() -> None:
    """At program start, when the command line asks for a bridge (as root: see
    warmup.asks_for_bridge): fork the helper before the runtime's own imports, so that
    its imports overlap them too."""
    global EARLY
    if EARLY is None:
        EARLY = fork()


def adopt_early() -> Helper | None:
    global EARLY
    helper, EARLY = EARLY, None
    return helper


def dismiss_early() -> None:
    """The program ends without having used the early helper (a create that failed
    first, or one whose config asked for no bridge after all)."""
    helper = adopt_early()
    if helper is not None:
        helper.close(kill=True)


def fork() -> Helper | None:
    """Fork a helper; None if that fails (network.setup then does the work itself)."""
    fds: list[int] = []  # runtime -> helper, helper -> runtime
    try:
        fds.extend(_pipe())
        fds.extend(_pipe())
        parent = os.getpid()
        pid = os.fork()
    except OSError:
        for fd in fds:
            os.close(fd)
        return None
    if pid:
        os.close(fds[0])
        os.close(fds[3])
        return Helper(pid, fds[1], fds[2])
    status = 1
    try:
        os.close(fds[1])
        os.close(fds[2])
        _serve(parent, fds[0], fds[3])
        status = 0
    finally:
        os._exit(status)  # never the runtime's own exit path (trace file, cleanups)


def _pipe() -> tuple[int, int]:
    """A pipe (close-on-exec) whose ends sit at fd 100 or above, never in the range
    3..3+N-1 that --preserve-fds N passes to the container, even where the caller left
    those fds closed: a container must not be able to talk to the helper."""
    import fcntl

    ends = []
    for fd in os.pipe():
        try:
            ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _FD_FLOOR))
            os.close(fd)
        except OSError:  # an RLIMIT_NOFILE of 100 or less: where it is
            ends.append(fd)
    return ends[0], ends[1]


def _serve(parent: int, rfd: int, wfd: int) -> None:
    """The helper's life: import; set up when told; then stay until the runtime exits
    (`create`, `run -d`), or tear the container down when told (a foreground `run`)."""
    import signal
    import time

    from minirun import syscalls
    from minirun.lite import json

    syscalls.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:
        return  # the runtime is already gone
    # The terminal's signals are the runtime's to handle; stdio is the container's.
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN,
                signal.SIGTTOU, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    detach_stdio(keep_stderr=False)
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    os.nice(10)
    from minirun.steps import fault_point

    fault_point(IMPORT_SPAN)  # MINIRUN_FAULT_AT, for tests
    began = time.perf_counter()
    from minirun.network import bridge, firewall

    firewall.load()  # libnftables too, while there is time
    imported = (began, time.perf_counter() - began)
    line = read_line(rfd)
    if not line:
        return  # the runtime went on without networking
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)  # now on create's critical path
    except OSError:
        pass  # without CAP_SYS_NICE: on, niced
    msg = json.loads(line)
    from minirun.log import log

    log.configure(*msg["log"])
    events = _trace_as_runtime(msg["trace"], imported)
    answer = _setup(bridge, msg)
    answer["spans"] = events
    write_all(wfd, json.dumps(answer).encode() + b"\n")
    if "error" in answer:
        return
    line = read_line(rfd)
    if line:
        _teardown(bridge, msg["root"], msg["cid"], json.loads(line), rfd, wfd)


def _trace_as_runtime(t0: float | None, imported: tuple[float, float]) -> list[dict]:
    """Record this helper's steps on the runtime's clock (perf_counter is
    CLOCK_MONOTONIC in every process), from its start `t0`; [] if it does not trace."""
    from minirun import trace

    trace.ACTIVE = None
    if t0 is None:
        return []
    trace.start("", "")
    trace.ACTIVE.t0 = t0
    trace.ACTIVE.default_track = trace.HELPER_TRACK
    trace.ACTIVE.span(IMPORT_SPAN, *imported, trace.HELPER_TRACK)
    return trace.ACTIVE.events


def _setup(bridge, msg: dict) -> dict:
    from minirun.errors import MinirunError
    from minirun.network.request import NetworkRequest

    try:
        req = NetworkRequest.from_dict(msg["request"])
        return {"record": bridge.setup(msg["root"], msg["cid"], msg["pid"], req)}
    except MinirunError as e:
        return {"error": str(e), "notes": getattr(e, "__notes__", [])}
    except Exception as e:  # noqa: BLE001 - told in one line, as the runtime would
        return {"error": f"network set-up: {type(e).__name__}: {e}", "notes": []}


def _teardown(bridge, root: str, cid: str, record: dict, rfd: int, wfd: int) -> None:
    """Take the lease lock, let the runtime go, and undo the set-up detached from it."""
    import sys

    from minirun import syscalls
    from minirun.network.leases import LeaseBook
    from minirun.steps import fault_point

    held = LeaseBook(root).lock()
    write_all(wfd, b"L\n")  # the runtime may go: the lock is held until this is done
    syscalls.set_pdeathsig(0)
    os.setsid()
    os.nice(10)
    os.close(rfd)
    os.close(wfd)
    close_fds_but(held)
    firewall = sys.modules.get("minirun.network.firewall")
    if firewall is not None:
        firewall.forget_library()
    fault_point("network teardown by the set-up helper")  # MINIRUN_FAULT_AT, for tests
    try:
        bridge.teardown(root, cid, record, held)
    except Exception as e:  # noqa: BLE001 - a lease is left: the next set-up retries
        from minirun.log import log

        log.warn(f"container {cid!r}: network teardown (by the set-up helper): {e}")


# ------------------------------------------------------------ shared with teardown's worker

def read_line(fd: int) -> bytes:
    """One line from fd, b"" if it closes first."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            return b""
        line += chunk
    return line


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def close_fds_but(held: int) -> None:
    """Hold nothing of the caller's (its container directory's lock, a terminal)
    but the lease lock and the --log file."""
    from minirun.log import log

    keep = {held, log._file.fileno() if log._file is not None else -1}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own fd


def detach_stdio(keep_stderr: bool = True) -> None:
    """stdin and stdout on /dev/null; stderr too unless `keep_stderr` and it is a file
    or a terminal (a pipe's reader would wait for this process's end)."""
    import stat

    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    try:
        mode = os.fstat(2).st_mode
    except OSError:
        mode = stat.S_IFIFO
    if not keep_stderr or not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
        os.dup2(null, 2)
    os.close(null)
