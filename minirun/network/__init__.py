"""Built-in container networking: `--network bridge` gives a container a veth pair on
a bridge, an address, a default route, outbound NAT and published ports.

    request_from(flags, annotations) -> NetworkRequest | None   every `create`: cheap
    setup(root, cid, pid, req) -> record      once the init waits in its namespace
    teardown(root, cid, record)               in `delete`; idempotent
    address_of(record) -> str | None          for `state` and `list`
    preload()                                 optional: import pyroute2 in the background

Importing this package costs next to nothing: pyroute2 (~80 ms) and the rest are
imported by setup and teardown only, so containers without networking never pay.

Modules: request.py (flags and annotations), bridge.py (the steps and their undo),
links.py (netlink, via pyroute2), firewall.py (nftables), leases.py (addresses).
"""

from minirun.network.request import (
    ANNOTATION,
    DEFAULT_BRIDGE,
    DEFAULT_SUBNET,
    NetworkRequest,
    request_from,
)

__all__ = ["ANNOTATION", "DEFAULT_BRIDGE", "DEFAULT_SUBNET", "NetworkRequest",
           "address_of", "host_veth_name", "preload", "request_from", "setup", "teardown"]


def setup(root: str, cid: str, pid: int, req: NetworkRequest) -> dict:
    """Give the container whose init is `pid` its network, in the caller's network
    namespace; returns the record to keep in state.json. On failure nothing is left
    and MinirunError says what, where and why."""
    from minirun.network import bridge

    return bridge.setup(root, cid, pid, req)


def teardown(root: str, cid: str, record: dict) -> None:
    """Remove all that setup made for the container: works when its namespace is gone,
    after a crashed setup (record {} or req.to_dict()), and when called twice."""
    from minirun.network import bridge

    bridge.teardown(root, cid, record or {})


def preload() -> None:
    """Start importing pyroute2 (~80 ms) in a background thread, so that the import
    overlaps the container's set-up instead of adding to it; setup() then waits for
    it to finish, if need be, through Python's import lock. Call it only after the
    calling process's last os.fork(): a child forked while the thread holds an import
    lock cannot import that module."""
    import threading

    threading.Thread(target=_import_links, name="minirun-network-preload",
                     daemon=True).start()


def _import_links() -> None:
    try:
        import minirun.network.links  # noqa: F401
    except Exception:  # noqa: BLE001, S110 - setup imports it again and reports why
        pass


def address_of(record: dict | None) -> str | None:
    """The container's address once setup made it (not one merely requested)."""
    record = record or {}
    return record.get("address") if record.get("host_veth") else None


def host_veth_name(root: str, cid: str) -> str:
    """The name of the container's host-side veth (for tests and debugging)."""
    from minirun.network import bridge

    return bridge.names(root, cid)["host_veth"]
