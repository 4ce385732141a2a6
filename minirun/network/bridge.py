"""Bridge networking for one container: the order of the steps and their undo.

    setup:    lock the leases; reclaim stale ones; the bridge (made if missing); a lease;
              unlock; the veth pair (eth0 configured inside); NAT and published ports;
              forwarding on.
    teardown: lock the leases; the host veth; in one nft transaction the container's
              chain and, for a bridge no lease will use any more, its masquerade (or
              the whole table once empty); the lease; the bridge if minirun made it.

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

import os

from minirun import trace
from minirun.errors import MinirunError
from minirun.network import firewall, links
from minirun.network.leases import LeaseBook
from minirun.network.request import DEFAULT_SUBNET, NetworkRequest, check_address


def names(root: str, cid: str) -> dict:
    """The host veth (at most 15 bytes) and nft chain of a container: a hash of root
    and id, so that two roots' containers of one id do not collide."""
    digest = _sha256(f"{os.path.abspath(root)}\0{cid}".encode()).hexdigest()[:10]
    return {"host_veth": f"mr{digest}", "chain": f"c-{digest}"}


def _sha256(data: bytes):
    """hashlib's sha256 without hashlib's import (OpenSSL's bindings, ~2 ms)."""
    try:
        from _sha256 import sha256  # CPython 3.11
    except ImportError:
        from hashlib import sha256
    return sha256(data)


def setup(root: str, cid: str, pid: int, req: NetworkRequest) -> dict:
    root = os.path.abspath(root)
    own = names(root, cid)
    try:
        with links.host() as ipr:
            with trace.Span("bridge and address lease"), LeaseBook(root, create=True) as book:
                # leftovers of this id are stale too: its directory was just claimed
                stale = book.stale() + book.of_container(cid)
                if stale:
                    _reclaim(ipr, book, root, stale, {lease["bridge"] for lease in stale},
                             keep=req.bridge)
                bridge = links.ensure_bridge(ipr, req.bridge, req.subnet, root,
                                             DEFAULT_SUBNET)
                if req.address is not None:
                    check_address(req.address, bridge.subnet,
                                  f"--ip (bridge {bridge.name})", bridge.gateway)
                lease = book.take(cid, bridge.name, bridge.subnet, bridge.gateway,
                                  req.address, own)
            with trace.Span("veth pair, eth0 address and route"):
                links.add_veth(ipr, own["host_veth"], cid, bridge, pid, lease["address"])
        with trace.Span("nftables: NAT and published ports"):
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


def teardown(root: str, cid: str, record: dict, held: int = -1) -> None:
    """held: the lease lock, already taken (LeaseBook.lock) by the caller."""
    root = os.path.abspath(root)
    own = {"cid": cid, **names(root, cid)}
    with LeaseBook(root, held=held) as book:
        mine = book.of_container(cid)
        stale = [lease for lease in book.stale() if lease["cid"] != cid]
        bridges = {lease["bridge"] for lease in mine + stale}
        if record.get("bridge"):
            bridges.add(record["bridge"])
        with links.host() as ipr:
            # own names too: a setup may have died before its lease was written
            _reclaim(ipr, book, root, [own, *mine, *stale], bridges)


def _reclaim(ipr, book: LeaseBook, root: str, leases: list[dict], bridges: set[str],
             keep: str | None = None) -> None:
    """Remove all that the leases name, release them; then, for each of `bridges` but
    `keep` that no lease uses any more, its masquerade (the table once empty) and the
    bridge itself if this root made it. Rules go before leases: a lease must outlive
    what it names, or a crash in between would orphan a chain and its ports."""
    for lease in leases:
        if lease.get("host_veth"):
            links.delete_veth(ipr, lease["host_veth"], lease["cid"])
    going = {(lease.get("bridge"), lease.get("address")) for lease in leases}
    remaining = {lease["bridge"] for lease in book.all()
                 if (lease["bridge"], lease["address"]) not in going}
    unused = sorted(b for b in bridges if b != keep and b not in remaining)
    chains = sorted({lease["chain"] for lease in leases if lease.get("chain")})
    if chains or unused:
        firewall.remove(chains, unused)
    for lease in leases:
        if lease.get("address"):
            book.release(lease)
    for name in unused:
        links.delete_bridge(ipr, name, root)
