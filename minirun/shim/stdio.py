"""A process's stdio between containerd's fifos and the container.

    non-tty: stdout/stderr fifos ── given to the process as its fds 1 and 2 (containerd
             opened the read ends before Create); stdin fifo ──> copy thread ──> pipe ──>
             fd 0 (a fifo read before its writer opens it gives EOF; the pipe does not,
             and CloseIO closes it)
    tty:     the process's pty master arrives on a console socket; threads copy the
             stdin fifo to it and it to the stdout fifo; ResizePty sets its size
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading

from minirun import terminal


def _open_fifo_write(path: str) -> int:
    """The write end of a fifo containerd reads (opened already, so this does not block
    for long; O_NONBLOCK only for the open itself)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno != 6:  # ENXIO: no reader yet: wait for one
            raise
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    os.set_blocking(fd, True)
    return fd


class Stdio:
    """The fds of one process; close_ours() once the process holds its copies."""

    def __init__(self, stdin: str, stdout: str, stderr: str, terminal_: bool) -> None:
        self.paths = (stdin, stdout, stderr)
        self.terminal = terminal_
        self.fds: dict[int, int] = {}  # the process's 0-2, for the runtime call
        self._ours: list[int] = []
        self._stdin_w: int | None = None
        self._master: int | None = None
        self._console: socket.socket | None = None
        self._console_dir: str | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ set-up

    def prepare(self) -> str | None:
        """Open what the runtime call needs; returns the console socket path (tty)."""
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self._ours.append(null)
        if self.terminal:
            self._console_dir = tempfile.mkdtemp(prefix="minirun-shim-pty")
            path = os.path.join(self._console_dir, "pty.sock")
            self._console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            self._console.bind(path)
            self._console.listen(1)
            self.fds = {0: null, 1: null, 2: null}
            return path
        stdin, stdout, stderr = self.paths
        fd0 = null
        if stdin:
            r, w = os.pipe2(os.O_CLOEXEC)
            self._ours.append(r)
            self._stdin_w = w
            fd0 = r
            threading.Thread(target=self._copy_stdin, args=(stdin, w), daemon=True).start()
        out = self._writer(stdout, null)
        err = out if stderr and stderr == stdout else self._writer(stderr, null)
        self.fds = {0: fd0, 1: out, 2: err}
        return None

    def _writer(self, path: str, null: int) -> int:
        if not path:
            return null
        fd = _open_fifo_write(path)
        self._ours.append(fd)
        return fd

    def _copy_stdin(self, path: str, w: int) -> None:
        def write(data: bytes) -> bool:
            with self._lock:
                if self._stdin_w is None:
                    return False  # CloseIO came
                _write_all(self._stdin_w, data)
                return True

        _copy_fifo(path, write)
        self.close_stdin()

    def started(self) -> None:
        """After the runtime call: the process holds its own copies now."""
        for fd in self._ours:
            try:
                os.close(fd)
            except OSError:
                pass
        self._ours = []

    def receive_console(self, timeout: float = 30.0) -> None:
        """The pty master, sent by the runtime during create/exec; start copying."""
        assert self._console is not None
        self._console.settimeout(timeout)
        conn, _ = self._console.accept()
        with conn:
            self._master = terminal.receive_master(conn)
        self._console.close()
        self._console = None
        stdin, stdout, _ = self.paths
        if stdout:
            out = _open_fifo_write(stdout)
            threading.Thread(target=self._copy_out, args=(self._master, out),
                             daemon=True).start()
        if stdin:
            threading.Thread(target=self._copy_in, args=(stdin, self._master),
                             daemon=True).start()

    def _copy_out(self, master: int, out: int) -> None:
        try:
            while True:
                data = os.read(master, 65536)
                if not data:
                    break
                _write_all(out, data)
        except OSError:
            pass  # EIO: every slave side closed (the process exited)
        finally:
            os.close(out)

    def _copy_in(self, path: str, master: int) -> None:
        _copy_fifo(path, lambda data: _write_all(master, data) or True)

    # ------------------------------------------------------------------ requests

    def close_stdin(self) -> None:
        with self._lock:
            if self._stdin_w is not None:
                os.close(self._stdin_w)
                self._stdin_w = None

    def resize(self, width: int, height: int) -> None:
        if self._master is not None:
            terminal.set_winsize(self._master, height, width)

    def close(self) -> None:
        """Everything of ours, when the process is deleted."""
        self.started()
        self.close_stdin()
        if self._console is not None:
            self._console.close()
            self._console = None
        if self._console_dir is not None:
            for name in os.listdir(self._console_dir):
                os.unlink(os.path.join(self._console_dir, name))
            os.rmdir(self._console_dir)
            self._console_dir = None
        if self._master is not None:
            try:
                os.close(self._master)
            except OSError:
                pass
            self._master = None


def _copy_fifo(path: str, write) -> None:
    """Read containerd's fifo (the open waits for its writer) until EOF, or until write
    returns False."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        while True:
            data = os.read(fd, 65536)
            if not data or not write(data):
                break
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
