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
never pay.

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
    import json
    import os
    import signal

    import prctl

    prctl.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:
        return  # the runtime is already gone
    from minirun import trace
    from minirun.errors import MinirunError

    with trace.Span("import pyroute2's rtnl messages (helper)"):
        from minirun.network import bridge
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(rfd, 4096)
        if not chunk:
            return  # the runtime went on without networking (its create failed)
        line += chunk
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
    data = json.dumps(answer).encode()
    while data:
        data = data[os.write(wfd, data):]


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
    try:
        try:
            os.write(wfd, json.dumps([os.path.abspath(root), cid, pid]).encode() + b"\n")
        except BrokenPipeError:
            pass  # it died: told below
        data = b""
        while chunk := os.read(rfd, 65536):
            data += chunk
    finally:
        os.close(wfd)
        os.close(rfd)
        _, status = os.waitpid(hpid, 0)
    if not data:
        why = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exit status {os.WEXITSTATUS(status)}")
        raise MinirunError(f"network set-up: its helper process (pid {hpid}) died: {why}")
    answer = json.loads(data)
    if trace.ACTIVE is not None:
        trace.ACTIVE.events.extend(answer["spans"])
    if "error" in answer:
        err = MinirunError(answer["error"])
        for note in answer["notes"]:
            err.add_note(note)
        raise err
    return answer["record"]


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


def _detach_stdio() -> None:
    import os
    import stat

    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    try:
        mode = os.fstat(2).st_mode
    except OSError:
        mode = stat.S_IFIFO
    if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
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
