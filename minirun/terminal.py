"""Terminals: a pty for `process.terminal`, handed to a console socket or relayed.

In the container (init or exec'd process, inside the container's mount namespace so
the pty comes from its own devpts): open a pty, make the slave the controlling
terminal and fds 0-2, and send the master over the console socket with SCM_RIGHTS,
the way runc does (engines' `recvtty`-style receivers work unchanged).

In the runtime, when the user asked for a terminal without a console socket (`run` in
the foreground, `exec -t`): receive the master over an internal socket pair, put the
user's own tty in raw mode, relay bytes both ways and window-size changes, and restore
the tty on exit.
"""

import fcntl
import os
import struct
import termios

from minirun.errors import MinirunError
from minirun.lite import signal, socket


def connect_console_socket(path: str) -> socket.socket:
    import stat

    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise MinirunError(f"--console-socket {path}: not a unix socket")
    except FileNotFoundError:
        raise MinirunError(f"--console-socket {path}: no such file") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise MinirunError(f"--console-socket {path}: cannot connect: {e.strerror}") from None
    return sock


# ---------------------------------------------------------------- container side

TTY_GID = 5  # the tty group, as devpts' gid=5 and runc


def setup_console(console: socket.socket, size: dict | None, dev_console: bool,
                  owner: int | None = None) -> None:
    """Open a pty, send its master to `console`, make the slave our stdio and ctty.
    The caller must be a session leader. With dev_console (the container's init), the
    pty is bind-mounted on /dev/console, as config-linux.md's default devices say. The
    slave goes to `owner` (process.user.uid), group tty, before the user switch (runc)."""
    master, slave = os.openpty()
    if owner is not None:
        try:
            os.fchown(slave, owner, TTY_GID)
        except OSError:
            os.fchown(slave, owner, -1)  # no tty group mapped (a user namespace)
    if size:
        set_winsize(master, size.get("height", 0), size.get("width", 0))
    name = os.ttyname(slave)
    if dev_console:
        _bind_dev_console(name)
    socket.send_fds(console, [name.encode()], [master])
    os.close(master)
    console.close()
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _bind_dev_console(pty: str) -> None:
    from minirun import syscalls

    try:
        fd = os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        os.close(fd)
    except OSError as e:
        raise MinirunError(f"/dev/console: {e.strerror}") from None
    syscalls.mount(pty, "/dev/console", None, syscalls.MS_BIND)


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


# ---------------------------------------------------------------- runtime side

def receive_master(sock: socket.socket) -> int:
    _, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    if not fds:
        raise MinirunError("the container did not send its terminal")
    return fds[0]


class Relay:
    """Copy the user's terminal to the container's pty and back until it closes."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.saved = None
        self.tty = os.isatty(0)

    def __enter__(self) -> "Relay":
        if self.tty:
            import tty

            self.saved = termios.tcgetattr(0)
            tty.setraw(0)
            self._copy_winsize()
            signal.signal(signal.SIGWINCH, lambda *_: self._copy_winsize())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self.saved)
            signal.signal(signal.SIGWINCH, signal.SIG_DFL)
        os.close(self.master)

    def _copy_winsize(self) -> None:
        copy_winsize(0, self.master)

    def pump(self) -> None:
        """Relay until the container side hangs up (all slave fds closed: EIO)."""
        import select

        inputs = [self.master, 0]
        while True:
            try:
                ready, _, _ = select.select(inputs, [], [])
            except InterruptedError:
                continue
            if self.master in ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                if not data:
                    return
                _write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    inputs.remove(0)  # stdin closed: keep relaying output
                    continue
                _write_all(self.master, data)


def caller_winsize(fd: int = 0) -> dict | None:
    """The window size of our terminal as a process.consoleSize (None if fd is none)."""
    try:
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None
    rows, cols = struct.unpack("HHHH", packed)[:2]
    return {"height": rows, "width": cols} if rows and cols else None


def copy_winsize(src: int, dst: int) -> None:
    """The user's window size onto the container's pty (nothing if src is no tty)."""
    try:
        packed = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, packed)
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]
