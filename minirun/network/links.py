"""Bridge, veth pair, addresses and routes, through pyroute2's netlink messages
(rtnl.py: its message classes only, ~20 ms to import instead of the package's ~110).

Imported only when a container asks for a bridge or one is torn down.

Ownership is marked on the interfaces themselves, in their alias (IFLA_IFALIAS): a
bridge minirun made says which --root made it, a host veth which container it serves.
Teardown deletes only what carries its mark, so an interface that merely has the name
minirun would have used (someone else's, or a user's bridge) is never removed.
"""

import contextlib
import ctypes  # imported by pyroute2's messages anyway
import os
import socket
from collections.abc import Iterator

from minirun.errors import MinirunError, errno_name
from minirun.network import ipv4
from minirun.network.rtnl import NLM_F_CREATE, NLM_F_EXCL, NetlinkError, Rtnl

CLONE_NEWNET = 0x40000000
CONTAINER_IFNAME = "eth0"
IFALIAS_MAX = 255


class Bridge:
    """A bridge in use: where containers attach and what they route through."""

    def __init__(self, name: str, index: int, address: str, prefixlen: int, mtu: int,
                 created: bool) -> None:
        self.name = name
        self.index = index
        self.gateway = address  # the bridge's own address is the containers' gateway
        self.subnet = ipv4.network(address, prefixlen)
        self.prefixlen = prefixlen
        self.mtu = mtu
        self.created = created


def owner_alias(root: str) -> str:
    return f"minirun --root {root}"[:IFALIAS_MAX]


def veth_alias(cid: str) -> str:
    return f"minirun container {cid}"[:IFALIAS_MAX]


@contextlib.contextmanager
def netlink(what: str) -> Iterator[None]:
    """Turn a netlink error into one line: what failed and the errno."""
    try:
        yield
    except NetlinkError as e:
        raise MinirunError(f"{what}: {os.strerror(e.code)} ({errno_name(e.code)})") from None


def host() -> Rtnl:
    """Netlink in the runtime's own network namespace."""
    return Rtnl()


# ---------------------------------------------------------------- the bridge

def ensure_bridge(ipr: Rtnl, name: str, subnet: str | None, root: str,
                  default_subnet: str) -> Bridge:
    """The bridge `name`, created (up, with the gateway address) when missing."""
    link = _link(ipr, name)
    if link is not None:
        return _existing_bridge(ipr, link, name, subnet, root)
    return _create_bridge(ipr, name, subnet or default_subnet, root)


def _existing_bridge(ipr: Rtnl, link, name: str, subnet: str | None,
                     root: str) -> Bridge:
    kind = _kind(link)
    if kind != "bridge":
        raise MinirunError(f"--bridge {name}: an interface {name} exists and is "
                           f"{'a ' + kind if kind else 'a device'}, not a bridge")
    alias = link.get_attr("IFLA_IFALIAS") or ""
    if alias.startswith("minirun --root ") and alias != owner_alias(root):
        raise MinirunError(f"--bridge {name}: the bridge belongs to minirun with another "
                           f"root ({alias[len('minirun --root '):]}), whose leases this "
                           "root cannot see; use another --bridge")
    addresses = _ipv4_of(ipr, link["index"])
    if not addresses:
        raise MinirunError(f"--bridge {name}: the bridge has no IPv4 address to be the "
                           "containers' gateway; give it one, or use another --bridge")
    if subnet is not None:
        addresses = [(a, p) for a, p in addresses if ipv4.network(a, p) == subnet]
        if not addresses:
            raise MinirunError(f"--subnet {subnet}: bridge {name} exists with another "
                               f"subnet ({_subnets(ipr, link['index'])}); drop --subnet "
                               "or use another --bridge")
    address, prefixlen = addresses[0]
    return Bridge(name, link["index"], address, prefixlen, link.get_attr("IFLA_MTU"),
                  created=False)


def _create_bridge(ipr: Rtnl, name: str, subnet: str, root: str) -> Bridge:
    _refuse_overlap(ipr, subnet)
    gateway, prefixlen = ipv4.first_host(subnet), ipv4.split(subnet)[1]
    with netlink(f"create bridge {name}"):
        # A MAC of its own: otherwise the bridge takes its ports' lowest, which changes
        # as containers come and go, and the containers' ARP entries for the gateway
        # go stale (their packets then reach the bridge as "other host" and are dropped).
        ipr.new_link([("IFLA_IFNAME", name), ("IFLA_ADDRESS", _random_mac()),
                      ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]})],
                     flags=NLM_F_CREATE | NLM_F_EXCL)
    index = 0
    try:
        link = _link(ipr, name)
        if link is None:
            raise MinirunError(f"create bridge {name}: it vanished once made")
        index = link["index"]
        # the mark first: a bridge with it is removed by teardown, whatever fails next
        with netlink(f"mark bridge {name} as minirun's"):
            ipr.set_link(index, [("IFLA_IFALIAS", owner_alias(root))])
        with netlink(f"add address {gateway}/{prefixlen} to bridge {name}"):
            ipr.add_ipv4_address(index, gateway, prefixlen)
        with netlink(f"bring bridge {name} up"):
            ipr.set_link(index, [], up=True)
        mtu = link.get_attr("IFLA_MTU")
    except BaseException:
        if index:
            with contextlib.suppress(NetlinkError):
                ipr.del_link(index)
        raise
    return Bridge(name, index, gateway, prefixlen, mtu, created=True)


def _random_mac() -> str:
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFC) | 0x02  # unicast, locally administered
    return ":".join(f"{b:02x}" for b in octets)


def _refuse_overlap(ipr: Rtnl, subnet: str) -> None:
    """A new bridge's subnet must not overlap an address already here: the routes
    would fight, and containers could not reach that network."""
    for msg in ipr.ipv4_addresses():
        address, prefixlen = msg.get_attr("IFA_ADDRESS"), msg["prefixlen"]
        iface = f"{address}/{prefixlen}"
        if ipv4.overlaps(ipv4.network(address, prefixlen), subnet):
            dev = msg.get_attr("IFA_LABEL") or f"interface {msg['index']}"
            raise MinirunError(f"--subnet {subnet} overlaps {iface} on {dev}; "
                               "choose another --subnet")


def delete_bridge(ipr: Rtnl, name: str, root: str) -> bool:
    """Delete the bridge if this root made it and nothing is attached any more."""
    link = _link(ipr, name)
    if link is None or _kind(link) != "bridge":
        return False
    if (link.get_attr("IFLA_IFALIAS") or "") != owner_alias(root):
        return False
    if any(port.get_attr("IFLA_MASTER") == link["index"] for port in ipr.links()):
        return False  # an interface someone attached by hand: leave the bridge to them
    with netlink(f"delete bridge {name}"):
        ipr.del_link(link["index"])
    return True


# ---------------------------------------------------------------- the veth pair

def add_veth(ipr: Rtnl, name: str, cid: str, bridge: Bridge, pid: int,
             address: str) -> None:
    """A veth pair: `name` on the bridge here, eth0 in the container's network
    namespace with the address, the bridge's MTU and a default route via the bridge.
    Both ends are made in one netlink request, so there is never a half pair; if what
    follows fails, the caller deletes `name`, which takes eth0 with it."""
    nsfd = _open_netns(pid)
    try:
        with in_netns(nsfd) as ctr:
            _refuse_existing(ipr, name, "")
            _refuse_existing(ctr, CONTAINER_IFNAME, " in the container's network namespace")
            with netlink(f"create veth pair {name} / {CONTAINER_IFNAME} (container "
                         f"{cid!r}, pid {pid})"):
                peer = {"attrs": [("IFLA_IFNAME", CONTAINER_IFNAME), ("IFLA_MTU", bridge.mtu),
                                  ("IFLA_NET_NS_FD", nsfd)]}
                ipr.new_link([("IFLA_IFNAME", name), ("IFLA_MTU", bridge.mtu),
                              ("IFLA_MASTER", bridge.index),
                              ("IFLA_LINKINFO", {"attrs": [
                                  ("IFLA_INFO_KIND", "veth"),
                                  ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]})],
                             flags=NLM_F_CREATE | NLM_F_EXCL)
            link = _link(ipr, name)
            if link is None:
                raise MinirunError(f"create veth pair {name}: it vanished once made")
            index = link["index"]
            with netlink(f"mark veth {name} as container {cid!r}'s"):
                ipr.set_link(index, [("IFLA_IFALIAS", veth_alias(cid))])
            # hairpin: with br_netfilter loaded, a container reaching its own published
            # port is bridged back out the port its packet came in by; and up
            with netlink(f"set hairpin mode on bridge port {name} and bring it up"):
                ipr.set_link(index, [("IFLA_LINKINFO", {"attrs": [
                    ("IFLA_INFO_SLAVE_KIND", "bridge"),
                    ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_MODE", 1)]})]})],
                    up=True)
            _configure_container_end(ctr, address, bridge)
    finally:
        os.close(nsfd)


def _configure_container_end(ctr: Rtnl, address: str, bridge: Bridge) -> None:
    where = f"{CONTAINER_IFNAME} in the container"
    link = _link(ctr, CONTAINER_IFNAME)
    if link is None:
        raise MinirunError(f"{where}: it vanished once made")
    index = link["index"]
    with netlink(f"add address {address}/{bridge.prefixlen} to {where}"):
        ctr.add_ipv4_address(index, address, bridge.prefixlen)
    # (not made up with the pair: a veth cannot open before its peer is linked)
    with netlink(f"bring {where} up"):
        ctr.set_link(index, [], up=True)
    with netlink(f"add default route via {bridge.gateway} to {where}"):
        ctr.add_default_route(index, bridge.gateway)


def delete_veth(ipr: Rtnl, name: str, cid: str) -> None:
    """Delete the host end (the kernel deletes its peer); nothing if already gone,
    as when the container's namespace died and took the pair with it."""
    link = _link(ipr, name)
    # Unmarked: not ours, or made by a setup killed before it could mark it; such a
    # pair goes with the container's namespace when `delete` kills the init.
    if link is None or _kind(link) != "veth" or link.get_attr("IFLA_IFALIAS") != veth_alias(cid):
        return
    with netlink(f"delete veth {name}"):
        try:
            ipr.del_link(link["index"])
        except NetlinkError as e:
            if e.code != 19:  # ENODEV: gone meanwhile, with its namespace
                raise


def _refuse_existing(ipr: Rtnl, name: str, where: str) -> None:
    if _link(ipr, name) is not None:
        raise MinirunError(f"cannot create interface {name}{where}: an interface of "
                           "that name already exists")


# ---------------------------------------------------------------- namespaces

def _open_netns(pid: int) -> int:
    path = f"/proc/{pid}/ns/net"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise MinirunError(f"open {path}: {e.strerror}: the container's init "
                           f"(pid {pid}) is gone") from None
    mine, theirs = os.stat("/proc/thread-self/ns/net"), os.fstat(fd)
    if (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino):
        os.close(fd)
        raise MinirunError("--network bridge: the container shares the runtime's network "
                           "namespace; it needs one of its own (linux.namespaces: network)")
    return fd


@contextlib.contextmanager
def in_netns(nsfd: int) -> Iterator[Rtnl]:
    """Netlink in another network namespace. A netlink socket belongs to the namespace
    it was created in: this thread enters the namespace just to create it, then comes
    back (pyroute2's own netns= support forks a helper process for that, ~10 ms)."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(nsfd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise MinirunError(f"setns into the container's network namespace: "
                               f"{os.strerror(err)} ({errno_name(err)})")
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                 0)  # NETLINK_ROUTE
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                # Never carry on (nor undo anything) in the container's namespace.
                os.write(2, b"minirun: fatal: cannot return to the runtime's network "
                            b"namespace\n")
                os._exit(125)
    finally:
        os.close(home)
    ipr = Rtnl(sock)
    try:
        yield ipr
    finally:
        ipr.close()


# ---------------------------------------------------------------- forwarding

FORWARDING = "/proc/sys/net/ipv4/ip_forward"


def enable_forwarding() -> None:
    """Routing between the bridge and the other interfaces, in this namespace. Left
    on afterwards, as every engine does: other users may rely on it by then."""
    try:
        with open(FORWARDING, "r+") as f:
            if f.read().strip() != "1":
                f.seek(0)
                f.write("1\n")
    except OSError as e:
        raise MinirunError(f"enable forwarding: {FORWARDING}: {e.strerror}") from None


# ---------------------------------------------------------------- look-ups

def _link(ipr: Rtnl, name: str):
    return ipr.link(name=name)


def _kind(link) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def _ipv4_of(ipr: Rtnl, index: int) -> list[tuple[str, int]]:
    return [(m.get_attr("IFA_ADDRESS"), m["prefixlen"])
            for m in ipr.ipv4_addresses(index)]


def _subnets(ipr: Rtnl, index: int) -> str:
    return ", ".join(ipv4.network(a, p) for a, p in _ipv4_of(ipr, index))
