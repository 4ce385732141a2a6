"""Built-in container networking: `--network bridge` gives a container a veth pair on
a bridge, an address, a default route, outbound NAT and published ports.

    request_from(flags, annotations) -> NetworkRequest | None   every `create`: cheap
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
           "address_of", "host_veth_name", "request_from", "setup", "teardown"]


def setup(root: str, cid: str, pid: int, req: NetworkRequest) -> dict:
    """Give the container whose init is `pid` its network, in the caller's network
    namespace; returns the record to keep in state.json. On failure nothing is left
    and MinirunError says what, where and why."""
    from minirun import trace

    with trace.Span("import pyroute2's rtnl messages"):
        from minirun.network import bridge

    return bridge.setup(root, cid, pid, req)


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
