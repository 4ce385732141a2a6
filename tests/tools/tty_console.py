"""A `recvtty`-style console socket for tests: receive a container's pty master.

runc (and minirun) hand the master side of a container's pseudo-terminal to the
caller over the unix socket named by ``--console-socket``: one ``sendmsg`` with the
pty's name as data and the master fd as ``SCM_RIGHTS``. This is the receiving end,
as containerd's shim or conmon implement it::

    with ConsoleSocket(tmp_path / "console.sock") as cs:
        runtime.create(cid, bundle, "--console-socket", cs.path)
        con = cs.accept()                  # Console: .master, .name
        runtime.ok("start", cid)
        con.read_until(b"$ ")
        con.write(b"exit 3\\n")

The runtime connects (and may send) before the test accepts: a unix stream
connection waits in the listen backlog, so ``accept`` after ``create`` returned is
fine. Standard library only.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
import termios
import time
from pathlib import Path


class ConsoleSocket:
    """A listening unix stream socket at ``path`` (removed on close)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if len(self.path.encode()) >= 108:
            raise ValueError(f"unix socket path too long: {self.path}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.consoles: list[Console] = []

    def accept(self, timeout: float = 30.0) -> Console:
        """The next connection's pty master (fails if none arrives within timeout)."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            raise AssertionError(f"nothing connected to the console socket {self.path} "
                                 f"within {timeout}s")
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(timeout)
            msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise AssertionError(f"expected exactly one fd over the console socket, got "
                                 f"{len(fds)} (data {msg!r})")
        con = Console(fds[0], msg.decode(errors="replace"))
        self.consoles.append(con)
        return con

    def pending(self, timeout: float = 0.0) -> bool:
        """True if a connection is waiting to be accepted."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        return bool(ready)

    def close(self) -> None:
        for con in self.consoles:
            con.close()
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> ConsoleSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Console:
    """The master side of a container's pty, with a read buffer."""

    def __init__(self, master: int, name: str) -> None:
        self.master = master
        self.name = name  # what the runtime sent as data (runc: the pty's path)
        self.buf = b""
        self.hung_up = False

    def _read_some(self, timeout: float) -> bool:
        """Read what is available within timeout; False on timeout, or after hang-up."""
        if self.hung_up:
            return False
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every slave fd is closed
            self.hung_up = True
            return False
        if not data:
            self.hung_up = True
            return False
        self.buf += data
        return True

    def read_until(self, needle: bytes, timeout: float = 30.0) -> bytes:
        """Everything read so far up to and including needle (consumed from the buffer)."""
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or (not self._read_some(min(left, 0.5)) and self.hung_up):
                raise AssertionError(f"{needle!r} never appeared on the console "
                                     f"(read so far: {self.buf!r}, hung up: {self.hung_up})")
        i = self.buf.index(needle) + len(needle)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_to_hangup(self, timeout: float = 30.0) -> bytes:
        """Everything until the container side closes the pty (all slave fds closed)."""
        deadline = time.monotonic() + timeout
        while not self.hung_up:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the console never hung up (read so far: {self.buf!r})")
            self._read_some(min(left, 0.5))
        out, self.buf = self.buf, b""
        return out

    def write(self, data: bytes) -> None:
        while data:
            n = os.write(self.master, data)
            data = data[n:]

    def set_winsize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def winsize(self) -> tuple[int, int]:
        packed = fcntl.ioctl(self.master, termios.TIOCGWINSZ, b"\0" * 8)
        rows, cols, _, _ = struct.unpack("HHHH", packed)
        return rows, cols

    def close(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


def winsize_of(fd: int) -> tuple[int, int]:
    packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    rows, cols, _, _ = struct.unpack("HHHH", packed)
    return rows, cols


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
