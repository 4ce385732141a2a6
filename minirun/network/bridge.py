"""Bridge networking for one container: the order of the steps and their undo.

    setup:    lock the leases; reclaim stale ones; the bridge (made if missing); a lease;
              unlock; the veth pair (eth0 configured inside); NAT and published ports;
              forwarding on.
    teardown: lock the leases; the host veth; the container's chain; the lease; then,
              for a bridge no lease uses any more, its masquerade (and the table once
              empty) and the bridge itself if minirun made it.

Everything made for a container carries a name derived from (root, id), recorded in
its lease too: teardown needs neither the container's namespace (gone after SIGKILL)
nor the record `setup` returned (never written when `create` crashed), and undoing a
failed setup is running teardown.

The bridge and the leases change only under the lease lock; the veth and the NAT
rules are the container's own and are made outside it, so concurrent creates overlap
there. A bridge is removed only when no lease uses it, and a lease is taken before
its container attaches: the last teardown cannot remove a bridge a create is about to
use.
"""

import hashlib
import os

from minirun.errors import MinirunError
from minirun.network import firewall, links
from minirun.network.leases import LeaseBook
from minirun.network.request import DEFAULT_SUBNET, NetworkRequest, check_address


def names(root: str, cid: str) -> dict:
    """The host veth (at most 15 bytes) and nft chain of a container: a hash of root
    and id, so that two roots' containers of one id do not collide."""
    digest = hashlib.sha256(f"{os.path.abspath(root)}\0{cid}".encode()).hexdigest()[:10]
    return {"host_veth": f"mr{digest}", "chain": f"c-{digest}"}


def setup(root: str, cid: str, pid: int, req: NetworkRequest) -> dict:
    root = os.path.abspath(root)
    own = names(root, cid)
    try:
        with links.host() as ipr:
            with LeaseBook(root, create=True) as book:
                # leftovers of this id are stale too: its directory was just claimed
                stale_bridges = _reclaim(ipr, book, book.stale() + book.of_container(cid))
                bridge = links.ensure_bridge(ipr, req.bridge, req.subnet, root,
                                             DEFAULT_SUBNET)
                if req.address is not None:
                    check_address(req.address, bridge.subnet,
                                  f"--ip (bridge {bridge.name})", bridge.gateway)
                lease = book.take(cid, bridge.name, bridge.subnet, bridge.gateway,
                                  req.address, own)
                _drop_unused_bridges(ipr, book, root, stale_bridges - {bridge.name})
            links.add_veth(ipr, own["host_veth"], cid, bridge, pid, lease["address"])
        _publish(root, cid, own, bridge, lease["address"], req)
        links.enable_forwarding()
    except BaseException as e:
        _undo(root, cid, req, e)
        raise
    return {
        "mode": "bridge",
        "bridge": bridge.name,
        "created_bridge": bridge.created,
        "subnet": bridge.subnet,
        "gateway": bridge.gateway,
        "address": lease["address"],
        "prefixlen": bridge.prefixlen,
        "mtu": bridge.mtu,
        "host_veth": own["host_veth"],
        "container_ifname": links.CONTAINER_IFNAME,
        "nft_table": f"{firewall.FAMILY} {firewall.TABLE}",
        "nft_chain": own["chain"],
        "publish": [{"host_port": h, "container_port": c, "proto": p}
                    for h, c, p in req.publish],
    }


def _publish(root: str, cid: str, own: dict, bridge: links.Bridge, address: str,
             req: NetworkRequest) -> None:
    try:
        firewall.add_container(own["chain"], cid, bridge.name, bridge.subnet, address,
                               req.publish)
    except MinirunError:
        taken = firewall.taken_ports(req.publish)
        if not taken:
            raise
        (proto, port), chain = next(iter(taken.items()))
        owner = next((f"container {lease['cid']!r}" for lease in LeaseBook(root).all()
                      if lease.get("chain") == chain), f"nft chain {chain}")
        raise MinirunError(f"--publish {port}/{proto}: host port {port}/{proto} is already "
                           f"published by {owner}") from None


def _undo(root: str, cid: str, req: NetworkRequest, err: BaseException) -> None:
    """Remove whatever the failed setup made; keep the setup's error as the one told."""
    try:
        teardown(root, cid, {"mode": "bridge", "bridge": req.bridge})
    except Exception as undo_err:  # noqa: BLE001 - the first error is the one to report
        err.add_note(f"undoing the network set-up failed too: {undo_err}")


def teardown(root: str, cid: str, record: dict) -> None:
    root = os.path.abspath(root)
    own = names(root, cid)
    with LeaseBook(root) as book:
        mine = book.of_container(cid)
        stale = [lease for lease in book.stale() if lease["cid"] != cid]
        bridges = {lease["bridge"] for lease in mine + stale}
        if record.get("bridge"):
            bridges.add(record["bridge"])
        with links.host() as ipr:
            links.delete_veth(ipr, own["host_veth"], cid)
            firewall.remove_container(own["chain"])
            _reclaim(ipr, book, mine + stale)
            _drop_unused_bridges(ipr, book, root, bridges)


def _reclaim(ipr, book: LeaseBook, leases: list[dict]) -> set[str]:
    """Remove all that the leases name, then the leases; returns their bridges."""
    for lease in leases:
        if lease.get("host_veth"):
            links.delete_veth(ipr, lease["host_veth"], lease["cid"])
        if lease.get("chain"):
            firewall.remove_container(lease["chain"])
        book.release(lease)
    return {lease["bridge"] for lease in leases}


def _drop_unused_bridges(ipr, book: LeaseBook, root: str, bridges: set[str]) -> None:
    """For each bridge no lease uses any more: its masquerade (and the table once
    empty), and the bridge itself if this root made it."""
    for name in sorted(bridges):
        if not book.of_bridge(name):
            links.delete_bridge(ipr, name, root)
            firewall.remove_bridge(name)
