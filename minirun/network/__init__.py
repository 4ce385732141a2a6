"""Built-in container networking: `--network bridge` gives a container a veth pair on
a bridge, an address, a default route, outbound NAT and published ports.

    request_from(flags, annotations) -> NetworkRequest | None   every `create`: cheap
    prepare(req)                              optional, early in `create`: a helper
                                              process imports what setup needs meanwhile
    begin(root, cid, pid, req)                optional, once the init's pid is known:
                                              the helper starts setup meanwhile
    setup(root, cid, pid, req) -> record      the init in its namespace; after begin(),
                                              the helper's result
    teardown(root, cid, record)               in `delete`; idempotent; returns at
                                              once, the kernel's part in the background
    address_of(record) -> str | None          for `state` and `list`

Importing this package costs next to nothing: pyroute2's rtnl messages (20-40 ms) and
the rest are imported by setup and teardown only, so containers without networking
never pay. After prepare(), the helper does setup, and in a foreground `run` (whose
runtime is still there at the end) the teardown too, so the runtime never imports
them; otherwise teardown's work is done by a process forked for it.

Modules: request.py (flags and annotations), helper.py (the helper process and its
protocol), bridge.py (the steps and their undo), links.py (netlink through rtnl.py,
pyroute2's messages), firewall.py (nftables), leases.py (addresses).
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

TYPE_CHECKING = False  # typing itself costs ~3 ms to import
if TYPE_CHECKING:
    from minirun.network.helper import Helper

# id(req) -> the helper prepare() started or adopted for it
_HELPERS: dict[int, "Helper"] = {}


def prepare(req: NetworkRequest) -> None:
    """Start setup's slow part ahead, in parallel with the container's set-up: a
    helper process (network/helper.py) imports pyroute2's messages and libnftables
    (20-40 ms, the most of setup's cost) while the runtime makes the container, then
    does setup() itself once told the init's pid. The one forked at program start is
    taken if there is one (the command line asked for a bridge); otherwise one is
    forked now. Without prepare(), or if the fork fails, setup() does all the work."""
    from minirun.network import helper

    h = helper.adopt_early() or helper.fork()
    if h is not None:
        _HELPERS[id(req)] = h


def begin(root: str, cid: str, pid: int, req: NetworkRequest) -> None:
    """Let prepare()'s helper start setup() now, while the caller goes on (the init
    builds its root filesystem meanwhile); setup() then only collects the result.
    Without a helper, nothing: setup() does all the work."""
    import os

    h = _HELPERS.get(id(req))
    if h is not None and not h.begun:
        h.begin(os.path.abspath(root), cid, pid, req.to_dict())


def setup(root: str, cid: str, pid: int, req: NetworkRequest) -> dict:
    """Give the container whose init is `pid` its network, in the caller's network
    namespace; returns the record to keep in state.json. On failure nothing is left
    and MinirunError says what, where and why."""
    import os

    begin(root, cid, pid, req)  # if not done yet
    h = _HELPERS.pop(id(req), None)
    if h is not None:
        record = h.finish()
        _RESIDENT.append((h, os.path.abspath(root), cid))
        return record
    from minirun import trace

    with trace.Span("import pyroute2's rtnl messages"):
        from minirun.network import bridge

    return bridge.setup(root, cid, pid, req)


def abandon() -> None:
    """A create failed: its helper, if setup() never collected it, finishes what it
    was told and ends (helper.Helper.abandon); teardown(), called after it, removes
    what it made."""
    while _HELPERS:
        _HELPERS.popitem()[1].abandon()


# The helper that set a container up, still there for its teardown: at most one
# (a runtime makes one container): (helper, root, id)
_RESIDENT: list[tuple["Helper", str, str]] = []


def _teardown_by_resident(root: str, cid: str, record: dict, use: bool) -> bool:
    """Hand the teardown to the helper that did the set-up, if there is one for this
    container (and `use`): True once it holds the lease lock, False to do it here.
    Any other helper is let go."""
    import os

    if not _RESIDENT:
        return False
    h, hroot, hcid = _RESIDENT.pop()
    locked = use and (hroot, hcid) == (os.path.abspath(root), cid) and h.teardown(record)
    # A helper not told ends on the close, and is reaped; one that took the work goes
    # on (the kernel's part takes a while) and is reaped by whoever inherits it.
    h.close(kill=False, wait=not locked)
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

    from minirun.network import helper

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
        helper.detach_stdio()
        helper.close_fds_but(held)
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


def address_of(record: dict | None) -> str | None:
    """The container's address once setup made it (not one merely requested)."""
    record = record or {}
    return record.get("address") if record.get("host_veth") else None


def host_veth_name(root: str, cid: str) -> str:
    """The name of the container's host-side veth (for tests and debugging)."""
    from minirun.network import bridge

    return bridge.names(root, cid)["host_veth"]
