"""A lean rtnetlink client: pyroute2's message classes over a plain netlink socket.

pyroute2 stays the netlink library (it encodes and decodes every message), but only
its rtnl message modules are imported, not the package: `import pyroute2` (and any
`pyroute2.x`, which runs the package's `__init__` first) pulls in ndb, ipdb,
conntrack, asyncio and multiprocessing, ~110 ms, and even `pyroute2.iproute` costs
~85 ms (it is built on asyncio). The message classes cost ~20 ms. The package's
`__init__` is skipped by importing the submodules under a bare stand-in package
object, removed again afterwards so that a later `import pyroute2` elsewhere gets
the real package (it then reuses the submodules already loaded).

The socket side is a dozen lines: send one request, read until its ACK (or the end
of a dump), one blocking round trip at a time on a socket of our own.
"""

import importlib.machinery
import os
import socket
import struct
import sys
import types

NETLINK_ROUTE = 0
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE = 24
IFF_UP = 0x1
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid


def _messages() -> types.SimpleNamespace:
    """pyroute2's ifinfmsg, ifaddrmsg and rtmsg, imported without the package's
    `__init__` (see the module docstring)."""
    stub = None
    if "pyroute2" not in sys.modules:
        spec = importlib.machinery.PathFinder.find_spec("pyroute2")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("No module named 'pyroute2'")
        stub = types.ModuleType("pyroute2")
        stub.__path__ = list(spec.submodule_search_locations)
        sys.modules["pyroute2"] = stub
    try:
        from pyroute2.netlink.exceptions import NetlinkError
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
        from pyroute2.netlink.rtnl.rtmsg import rtmsg
    finally:
        if stub is not None and sys.modules.get("pyroute2") is stub:
            del sys.modules["pyroute2"]
    return types.SimpleNamespace(ifinfmsg=ifinfmsg, ifaddrmsg=ifaddrmsg, rtmsg=rtmsg,
                                 NetlinkError=NetlinkError)


M = _messages()
NetlinkError = M.NetlinkError
_REPLY_CLASS = {RTM_NEWLINK: M.ifinfmsg, RTM_NEWADDR: M.ifaddrmsg}


class Rtnl:
    """An rtnetlink socket in the namespace it was created in (or the one `sock`
    was made in); one request at a time."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                          NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Rtnl":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ the round trip

    def request(self, msg, kind: int, flags: int = NLM_F_ACK) -> list:
        """Send `msg` (a pyroute2 message with its fields and attrs set) as `kind`;
        return the decoded replies. A negative errno raises NetlinkError."""
        self.seq += 1
        msg["header"]["type"] = kind
        msg["header"]["flags"] = NLM_F_REQUEST | flags
        msg["header"]["sequence_number"] = self.seq
        msg.encode()
        self.sock.send(msg.data)
        return self._replies(self.seq)

    def _replies(self, seq: int) -> list:
        out = []
        while True:
            data = self.sock.recv(1 << 18)
            offset = 0
            while offset + _HDR.size <= len(data):
                length, kind, flags, mseq, _ = _HDR.unpack_from(data, offset)
                if length < _HDR.size:
                    raise NetlinkError(71, "malformed netlink reply")  # EPROTO
                if mseq == seq:
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, offset + _HDR.size)[0]
                        if code:
                            raise NetlinkError(code, os.strerror(code))
                        return out  # the ACK ends every request that is not a dump
                    if kind == NLMSG_DONE:
                        return out
                    cls = _REPLY_CLASS.get(kind)
                    if cls is not None:
                        reply = cls(data[offset:offset + length])
                        reply.decode()
                        out.append(reply)
                    if not flags & NLM_F_MULTI:
                        return out
                offset += (length + 3) & ~3

    # ------------------------------------------------------------ links

    def link(self, *, name: str | None = None, index: int = 0):
        """One link by name or index, or None if there is none."""
        msg = M.ifinfmsg()
        msg["index"] = index
        if name is not None:
            msg["attrs"] = [("IFLA_IFNAME", name)]
        try:
            found = self.request(msg, RTM_GETLINK, 0)
        except NetlinkError as e:
            if e.code in (19, 22):  # ENODEV; EINVAL for a name too long to exist
                return None
            raise
        return found[0] if found else None

    def links(self) -> list:
        msg = M.ifinfmsg()
        return self.request(msg, RTM_GETLINK, NLM_F_DUMP)

    def new_link(self, attrs: list, *, up: bool = False, flags: int = 0) -> None:
        """RTM_NEWLINK with `attrs` (create: flags NLM_F_CREATE | NLM_F_EXCL)."""
        msg = M.ifinfmsg()
        if up:
            msg["flags"] = msg["change"] = IFF_UP
        msg["attrs"] = attrs
        self.request(msg, RTM_NEWLINK, NLM_F_ACK | flags)

    def set_link(self, index: int, attrs: list, *, up: bool = False) -> None:
        msg = M.ifinfmsg()
        msg["index"] = index
        if up:
            msg["flags"] = msg["change"] = IFF_UP
        msg["attrs"] = attrs
        self.request(msg, RTM_NEWLINK if any(a[0] == "IFLA_LINKINFO" for a in attrs)
                     else RTM_SETLINK)

    def del_link(self, index: int) -> None:
        msg = M.ifinfmsg()
        msg["index"] = index
        self.request(msg, RTM_DELLINK)

    # ------------------------------------------------------------ addresses, routes

    def ipv4_addresses(self, index: int = 0) -> list:
        msg = M.ifaddrmsg()
        msg["family"] = socket.AF_INET
        found = self.request(msg, RTM_GETADDR, NLM_F_DUMP)
        return [m for m in found if not index or m["index"] == index]

    def add_ipv4_address(self, index: int, address: str, prefixlen: int) -> None:
        msg = M.ifaddrmsg()
        msg["family"] = socket.AF_INET
        msg["index"] = index
        msg["prefixlen"] = prefixlen
        msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        self.request(msg, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)

    def add_default_route(self, index: int, gateway: str) -> None:
        msg = M.rtmsg()
        msg["family"] = socket.AF_INET
        msg["table"] = 254  # main
        msg["proto"] = 3  # boot, as `ip route add`
        msg["scope"] = 0  # universe
        msg["type"] = 1  # unicast
        msg["attrs"] = [("RTA_GATEWAY", gateway), ("RTA_OIF", index)]
        self.request(msg, RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
