"""`socket` without its enums and `selectors`: `_socket`'s class, plus the helpers
minirun uses (socketpair, send_fds, recv_fds) written as the stdlib writes them.

Sockets made here are `_socket.socket` objects with accept() and `with`; `family` and
`type` are plain ints. Anything else comes from the real module, imported on first use.
"""

import _socket
import struct  # not array: it imports collections.abc (1.5 ms)
from _socket import *  # noqa: F403 - the C module's constants, as `socket` re-exports them
from _socket import CMSG_LEN, SCM_RIGHTS, SOL_SOCKET


class socket(_socket.socket):  # noqa: N801 - the stdlib's name
    __slots__ = ()

    def __enter__(self) -> "socket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def accept(self) -> tuple["socket", object]:
        fd, addr = self._accept()
        conn = socket(self.family, self.type, self.proto, fileno=fd)
        if self.gettimeout() is None:
            conn.setblocking(True)
        return conn, addr


def socketpair(family: int = AF_UNIX, type: int = SOCK_STREAM,  # noqa: A002, F405
               proto: int = 0) -> tuple[socket, socket]:
    a, b = _socket.socketpair(family, type, proto)
    return (socket(family, type, proto, a.detach()), socket(family, type, proto, b.detach()))


def send_fds(sock: _socket.socket, buffers: list[bytes], fds: list[int],
             flags: int = 0, address: object = None) -> int:
    ancillary = [(SOL_SOCKET, SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
    if address is None:
        return sock.sendmsg(buffers, ancillary, flags)
    return sock.sendmsg(buffers, ancillary, flags, address)


def recv_fds(sock: _socket.socket, bufsize: int, maxfds: int,
             flags: int = 0) -> tuple[bytes, list[int], int, object]:
    size = struct.calcsize("i")
    msg, ancdata, msg_flags, addr = sock.recvmsg(bufsize, CMSG_LEN(maxfds * size), flags)
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == SOL_SOCKET and kind == SCM_RIGHTS:
            whole = len(data) - len(data) % size
            fds.extend(struct.unpack(f"{whole // size}i", data[:whole]))
    return msg, fds, msg_flags, addr


def __getattr__(name: str) -> object:
    import socket as real

    return getattr(real, name)
