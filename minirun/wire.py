"""Messages of any size on the set-up socket (SOCK_SEQPACKET, between the runtime and the
set-up processes): a message is one or more records of at most 64 KiB, each
`kind (b"M" more / b"E" end) + sender pid (4 bytes) + part`, so a 1 MiB annotation in a
hook's state fits (one record is limited by the socket's buffer, ~200 KiB). Records of
two senders (the set-up process and the init share their end) are put together per pid.
"""

import os

from minirun.lite import socket

CHUNK = 64 * 1024
HEADER = 5
MAX_FDS = 64  # fds sent with one message (bind-mount sources, a notify fd)


def send(sock: socket.socket, data: bytes, fds: list[int] | tuple = ()) -> None:
    pid = os.getpid().to_bytes(4, "little")
    for start in range(0, max(len(data), 1), CHUNK):
        last = start + CHUNK >= len(data)
        record = (b"E" if last else b"M") + pid + data[start:start + CHUNK]
        if start == 0 and fds:
            socket.send_fds(sock, [record], list(fds))
        else:
            sock.send(record)


class Reader:
    """Reassembles the records of one socket into messages."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.partial: dict[bytes, tuple[list[bytes], list[int]]] = {}

    def recv(self) -> tuple[bytes, list[int]] | None:
        """The next whole message and the fds sent with it; None at end of file."""
        while True:
            record, fds, _, _ = socket.recv_fds(self.sock, CHUNK + HEADER, MAX_FDS)
            if not record:
                return None
            kind, pid, part = record[:1], record[1:HEADER], record[HEADER:]
            parts, got = self.partial.setdefault(pid, ([], []))
            parts.append(part)
            got.extend(fds)
            if kind == b"E":
                del self.partial[pid]
                return b"".join(parts), got
