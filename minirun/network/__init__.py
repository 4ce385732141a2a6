"""Built-in container networking: `--network bridge` gives a container a veth pair on
a bridge, an address, a default route, outbound NAT and published ports.

    request_from(flags, annotations) -> NetworkRequest | None   every `create`: cheap
    setup(root, cid, pid, req) -> record      once the init waits in its namespace
    teardown(root, cid, record)               in `delete`; idempotent
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
    from minirun.network import bridge

    return bridge.setup(root, cid, pid, req)


def teardown(root: str, cid: str, record: dict) -> None:
    """Remove all that setup made for the container: works when its namespace is gone,
    after a crashed setup (record {} or req.to_dict()), and when called twice."""
    from minirun.network import bridge

    bridge.teardown(root, cid, record or {})


def address_of(record: dict | None) -> str | None:
    """The container's address once setup made it (not one merely requested)."""
    record = record or {}
    return record.get("address") if record.get("host_veth") else None


def host_veth_name(root: str, cid: str) -> str:
    """The name of the container's host-side veth (for tests and debugging)."""
    from minirun.network import bridge

    return bridge.names(root, cid)["host_veth"]
