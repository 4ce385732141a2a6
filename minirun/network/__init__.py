"""Built-in container networking: `--network bridge` gives a container a veth pair on
a bridge, an address, a default route, outbound NAT and published ports.

    request_from(flags, annotations) -> NetworkRequest | None   every `create`: cheap
    prepare(req)                              optional, early in `create`: a helper
                                              process imports what setup needs meanwhile
    setup(root, cid, pid, req) -> record      once the init waits in its namespace
    teardown(root, cid, record)               in `delete`; idempotent; returns at
                                              once, the kernel's part in the background
    address_of(record) -> str | None          for `state` and `list`

Importing this package costs next to nothing: pyroute2's rtnl messages (~20 ms) and
the rest are imported by setup and teardown only, so containers without networking
never pay. After prepare(), the helper does setup, and in a foreground `run` (whose
runtime is still there at the end) the teardown too, so the runtime never imports
them; otherwise teardown's work is done by a process forked for it.

Modules: request.py (flags and annotations), bridge.py (the steps and their undo),
links.py (netlink through rtnl.py, pyroute2's messages), firewall.py (nftables),
leases.py (addresses).
"""

from minirun.network.request import (
    ANNOTATION,
    DEFAULT_BRIDGE,
    DEFAULT_SUBNET,
    NetworkRequest,
    request_from,
)

__all__ = ["ANNOTATION", "DEFAULT_BRIDGE", "DEFAULT_SUBNET", "NetworkRequest",
           "address_of", "host_veth_name", "prepare", "request_from", "setup", "teardown"]

# id(req) -> (helper pid, fd to it, fd from it): helpers started by prepare()
_HELPERS: dict[int, tuple[int, int, int]] = {}


def prepare(req: NetworkRequest) -> None:
    """Start setup's slow part ahead, in parallel with the container's set-up: a forked
    helper imports pyroute2's messages (~20 ms, the most of setup's cost) while the
    runtime makes the container, then does setup() itself once told the init's pid.
    It dies with the runtime (PR_SET_PDEATHSIG) and quits if never told. Without
    prepare(), or if the fork fails, setup() does all the work in this process."""
    import os

    fds: list[int] = []
    try:
        fds = [*os.pipe(), *os.pipe()]  # runtime -> helper, helper -> runtime
        parent = os.getpid()
        pid = os.fork()
    except OSError:
        for fd in fds:
            os.close(fd)
        return
    if pid:
        os.close(fds[0])
        os.close(fds[3])
        _HELPERS[id(req)] = (pid, fds[1], fds[2])
        return
    status = 1
    try:
        os.close(fds[1])
        os.close(fds[2])
        _helper(req, parent, fds[0], fds[3])
        status = 0
    finally:
        os._exit(status)  # never the runtime's own exit path (trace file, cleanups)


def _helper(req: NetworkRequest, parent: int, rfd: int, wfd: int) -> None:
    """The helper's life: import; set up when told; then stay until the runtime
    exits (a `create`, a `run -d`), or tears the container down when told (a
    foreground `run`, whose runtime is still there at the end: its imports are done)."""
    import json
    import os
    import signal
    import sys

    import prctl

    prctl.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:
        return  # the runtime is already gone
    # The terminal's signals are the runtime's to handle; stdio is the container's.
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN,
                signal.SIGTTOU, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    _detach_stdio(keep_stderr=False)
    from minirun import trace
    from minirun.errors import MinirunError

    # Imports at a lower priority: the container's set-up processes come first on
    # the CPU; the set-up itself, on create's critical path, at the runtime's.
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    os.nice(10)
    with trace.Span("import pyroute2's rtnl messages (helper)"):
        from minirun.network import bridge, firewall

        firewall.load()  # libnftables too, while there is time
    line = _read_line(rfd)
    if not line:
        return  # the runtime went on without networking (its create failed)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        pass  # without CAP_SYS_NICE: on, niced
    root, cid, pid = json.loads(line)
    events = trace.ACTIVE.events if trace.ACTIVE is not None else []
    mark = len(events)
    try:
        answer: dict = {"record": bridge.setup(root, cid, pid, req)}
    except MinirunError as e:
        answer = {"error": str(e), "notes": getattr(e, "__notes__", [])}
    except Exception as e:  # noqa: BLE001 - told in one line, as the runtime would
        answer = {"error": f"network set-up: {type(e).__name__}: {e}", "notes": []}
    answer["spans"] = events[mark:]
    _write_all(wfd, json.dumps(answer).encode() + b"\n")
    if "error" in answer:
        return
    line = _read_line(rfd)
    if not line:
        return  # the runtime is done with networking (or gone)
    from minirun.network.leases import LeaseBook

    held = LeaseBook(root).lock()
    _write_all(wfd, b"L\n")  # the runtime may go: the lock is held until this is done
    prctl.set_pdeathsig(0)
    os.setsid()
    os.nice(10)
    os.close(rfd)
    os.close(wfd)
    _close_fds_but(held)
    firewall = sys.modules.get("minirun.network.firewall")
    if firewall is not None:
        firewall.forget_library()
    from minirun.steps import fault_point

    fault_point("network teardown by the set-up helper")  # MINIRUN_FAULT_AT, for tests
    bridge.teardown(root, cid, json.loads(line), held)


def _read_line(fd: int) -> bytes:
    """One line from fd, b"" if it closes first."""
    import os

    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            return b""
        line += chunk
    return line


def _write_all(fd: int, data: bytes) -> None:
    import os

    while data:
        data = data[os.write(fd, data):]


def setup(root: str, cid: str, pid: int, req: NetworkRequest) -> dict:
    """Give the container whose init is `pid` its network, in the caller's network
    namespace; returns the record to keep in state.json. On failure nothing is left
    and MinirunError says what, where and why."""
    helper = _HELPERS.pop(id(req), None)
    if helper is not None:
        return _setup_by(helper, root, cid, pid)
    from minirun import trace

    with trace.Span("import pyroute2's rtnl messages"):
        from minirun.network import bridge

    return bridge.setup(root, cid, pid, req)


def _setup_by(helper: tuple[int, int, int], root: str, cid: str, pid: int) -> dict:
    """Hand the set-up to the helper prepare() started; its answer, as if done here."""
    import json
    import os

    from minirun import trace
    from minirun.errors import MinirunError

    hpid, wfd, rfd = helper
    data, answer, status = b"", {}, 0
    try:
        try:
            _write_all(wfd, json.dumps([os.path.abspath(root), cid, pid]).encode() + b"\n")
            data = _read_line(rfd)
        except BrokenPipeError:
            pass  # it died: told below
        answer = json.loads(data) if data else {}
    finally:
        if "record" not in answer:
            os.close(wfd)
            os.close(rfd)
            _, status = os.waitpid(hpid, 0)
    if not data:
        why = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exit status {os.WEXITSTATUS(status)}")
        raise MinirunError(f"network set-up: its helper process (pid {hpid}) died: {why}")
    if trace.ACTIVE is not None:
        trace.ACTIVE.events.extend(answer["spans"])
    if "error" in answer:
        err = MinirunError(answer["error"])
        for note in answer["notes"]:
            err.add_note(note)
        raise err
    _RESIDENT.append((hpid, wfd, rfd, os.path.abspath(root), cid))
    return answer["record"]


# The helper that set a container up, still there for its teardown: at most one
# (a runtime makes one container): (pid, fd to it, fd from it, root, id)
_RESIDENT: list[tuple[int, int, int, str, str]] = []


def _teardown_by_resident(root: str, cid: str, record: dict, use: bool) -> bool:
    """Hand the teardown to the helper that did the set-up, if there is one for this
    container (and `use`): True once it holds the lease lock, False to do it here.
    Any other helper is let go."""
    import json
    import os

    if not _RESIDENT:
        return False
    hpid, wfd, rfd, hroot, hcid = _RESIDENT.pop()
    locked = False
    try:
        if use and (hroot, hcid) == (os.path.abspath(root), cid):
            _write_all(wfd, json.dumps(record).encode() + b"\n")
            locked = _read_line(rfd) == b"L\n"
    except OSError:
        locked = False  # it died: the caller does the work
    finally:
        os.close(wfd)  # a helper not told ends on this
        os.close(rfd)
        if not locked:
            try:
                os.waitpid(hpid, 0)
            except ChildProcessError:
                pass  # reaped already (run waits for any child while the container runs)
    return locked


def teardown(root: str, cid: str, record: dict, wait: bool = False) -> None:
    """Remove all that setup made for the container: works when its namespace is gone,
    after a crashed setup (record {} or req.to_dict()), and when called twice.

    Unless `wait`, the work is done by a detached process, and this returns once it
    holds the lease lock: deleting a veth, a bridge or the nftables table each waits
    for the kernel (RCU grace periods, 15-40 ms apiece), and nothing needs to wait
    for that. It is safe because everything that could clash with what is being
    removed (a set-up reusing the bridge, the address, the veth name of a re-created
    id, a host port) takes that lock first, and so waits for the removal; a lease
    outlives the rules and links it names, so if the background work fails, the next
    set-up or teardown of this root finds the stale lease and removes the rest."""
    if _teardown_by_resident(root, cid, record or {}, use=not wait):
        return
    from minirun.network.leases import LeaseBook

    held = -1 if wait else LeaseBook(root).lock()
    if held >= 0 and _in_background(held, root, cid, record or {}):
        return
    from minirun.network import bridge

    bridge.teardown(root, cid, record or {}, held)


def _in_background(held: int, root: str, cid: str, record: dict) -> bool:
    """Fork a detached process (its own session; stdio on /dev/null, but a stderr
    that is a file or terminal is kept for its warnings: a pipe's reader would wait
    for its end) that tears down holding the lock `held`. True once it runs (the
    lock is then its only); False if it could not be started."""
    import os
    import sys

    try:
        pid = os.fork()
    except OSError:
        return False
    if pid:
        os.waitpid(pid, 0)  # the intermediate child: gone once the worker is forked
        os.close(held)
        return True
    status = 1
    try:
        os.setsid()
        if os.fork():  # the worker is re-parented and never waited for by the caller
            os._exit(0)
        os.nice(10)  # cleaning up: the caller's next steps come first on the CPU
        _detach_stdio()
        _close_fds_but(held)
        firewall = sys.modules.get("minirun.network.firewall")
        if firewall is not None:
            firewall.forget_library()  # its context's netlink socket was just closed
        from minirun.steps import fault_point

        fault_point("network teardown in the background")  # MINIRUN_FAULT_AT, for tests
        from minirun.network import bridge

        bridge.teardown(root, cid, record, held)
        status = 0
    except BaseException as e:  # noqa: BLE001 - a lease is left: the next one retries
        try:
            from minirun.log import log

            log.warn(f"container {cid!r}: network teardown (in the background): {e}")
        except BaseException:  # noqa: BLE001, S110 - nowhere left to report
            pass
    finally:
        os._exit(status)


def _close_fds_but(held: int) -> None:
    """Hold nothing of the caller's (its container directory's lock, a terminal)
    but the lease lock and the --log file."""
    import os

    from minirun.log import log

    keep = {held, log._file.fileno() if log._file is not None else -1}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own fd


def _detach_stdio(keep_stderr: bool = True) -> None:
    import os
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


def address_of(record: dict | None) -> str | None:
    """The container's address once setup made it (not one merely requested)."""
    record = record or {}
    return record.get("address") if record.get("host_veth") else None


def host_veth_name(root: str, cid: str) -> str:
    """The name of the container's host-side veth (for tests and debugging)."""
    from minirun.network import bridge

    return bridge.names(root, cid)["host_veth"]
