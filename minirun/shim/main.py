"""containerd-shim-minirun-v1: the command containerd runs for `--runtime
io.containerd.minirun.v1` (containerd's shim v2 protocol, served by minirun).

    containerd ── exec ──> shim -namespace NS -address A -publish-binary B -id ID start
                              │  (cwd: the bundle; prints the server's address, exits 0)
                              └─ the first start of a namespace forks the server:
    shim server (one per containerd namespace, detached, child subreaper)
      listens on /run/containerd/s/<sha256(A/NS/minirun)>: ttrpc, containerd.task.v2.Task
      events ──ttrpc──> containerd at $TTRPC_ADDRESS (Events/Forward), in order
      exits on Shutdown once its last container is deleted
    containerd ── exec ──> shim ... -id ID -bundle B delete   (after a shim was lost:
                              force-delete the container, unmount B/rootfs, print a
                              DeleteResponse)

Every later start in the namespace finds the server listening and returns its address:
the containers of a namespace share one process, each one costing a few objects.
"""

from __future__ import annotations

import os
import sys

from minirun.lite import socket  # containerd runs start and delete for every container

SOCKET_DIR = "/run/containerd/s"
STATE_ROOT = "/run/containerd/minirun"


class Args:
    def __init__(self) -> None:
        self.namespace = "default"
        self.address = ""
        self.id = ""
        self.bundle = ""
        self.publish_binary = ""
        self.debug = False
        self.action = ""


def parse(argv: list[str]) -> Args:
    """Go flag-package style: -name value, -name=value, --name value; -debug alone."""
    a = Args()
    it = iter(argv)
    for arg in it:
        if not arg.startswith("-"):
            a.action = arg
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if name == "debug":
            a.debug = value.lower() not in ("false", "0") if eq else True
            continue
        if name == "v" or name == "version":
            a.action = "version"
            continue
        if not eq:
            value = next(it, "")
        attr = name.replace("-", "_")
        if hasattr(a, attr):
            setattr(a, attr, value)
    return a


def socket_path(address: str, namespace: str) -> str:
    digest = _sha256(f"{address}/{namespace}/minirun".encode()).hexdigest()
    return os.path.join(SOCKET_DIR, digest)


def _sha256(data: bytes):
    """hashlib's sha256 without hashlib (OpenSSL's binding costs 2.5 ms a start)."""
    try:
        from _sha256 import sha256  # Python 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # 3.12 and later
        except ImportError:
            from hashlib import sha256
    return sha256(data)


def _listening(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _remove_if_dead(path: str) -> bool:
    """True if a server listens at path; else its socket file (if any) is removed: a
    server killed with SIGKILL leaves it. Call with server_lock held."""
    if _listening(path):
        return True
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return False


def start(a: Args) -> int:
    """Return the namespace's server address, forking the server if there is none."""
    path = socket_path(a.address, a.namespace)
    os.makedirs(SOCKET_DIR, mode=0o711, exist_ok=True)
    with server_lock(path) as lock:
        if not _remove_if_dead(path):
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            listener.bind(path)
            os.chmod(path, 0o600)
            listener.listen(128)
            if os.fork() == 0:
                lock.release()  # the server must not hold start's lock
                _detach()
                import socket as stdlib_socket

                from minirun.shim import server

                listener = stdlib_socket.socket(fileno=listener.detach())
                server.run(listener, a.namespace, path)
                os._exit(0)
            listener.close()
    address = f"unix://{path}"
    with open("address", "w") as f:
        f.write(address)
    sys.stdout.write(address)
    sys.stdout.flush()
    return 0


class server_lock:
    """Serialises starting and retiring a namespace's server: an abstract unix socket
    bound for the moment (nothing on disk to leave behind; gone with its holder)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = b"\0minirun-shim-" + os.path.basename(path).encode()[:64]
        self.sock: socket.socket | None = None

    def __enter__(self) -> server_lock:
        import time

        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                s.bind(self.name)
                self.sock = s
                return self
            except OSError:
                s.close()
                time.sleep(0.005)

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _detach() -> None:
    """The server holds none of start's stdio (containerd reads them to EOF)."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    os.chdir("/")


def delete(a: Args) -> int:
    """Clean up after a server: force-delete the container if its state is still there,
    unmount its rootfs, print a DeleteResponse. containerd runs this after every
    disconnect, so the common case (the server deleted everything) stays cheap: no
    runtime import, no protobuf."""
    import time

    from minirun.shim import mounts

    bundle = a.bundle or os.getcwd()
    root = os.path.join(STATE_ROOT, a.namespace)
    if os.path.lexists(os.path.join(root, a.id)):
        from minirun.cli import main as minirun

        saved = os.dup(1)
        os.dup2(2, 1)  # whatever minirun prints is not the DeleteResponse
        try:
            minirun(["--root", root, "--log", os.path.join(bundle, "log.json"),
                     "--log-format", "json", "delete", "--force", a.id])
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
    mounts.unmount_rootfs(os.path.join(bundle, "rootfs"))
    try:
        os.rmdir(root)  # the namespace's last container: leave no empty state root
    except OSError:
        pass
    with server_lock(socket_path(a.address, a.namespace)) as lock:
        _remove_if_dead(lock.path)  # a lost (killed) server's socket
    sys.stdout.buffer.write(delete_response(128 + 9, time.time_ns()))
    sys.stdout.flush()
    return 0


def delete_response(exit_status: int, exited_at_ns: int) -> bytes:
    """containerd.task.v2.DeleteResponse{exit_status, exited_at} in protobuf's wire
    format, written by hand (this path runs for every container: no protobuf import)."""
    seconds, nanos = divmod(exited_at_ns, 1_000_000_000)
    stamp = (b"\x08" + _varint(seconds) if seconds else b"") + \
        (b"\x10" + _varint(nanos) if nanos else b"")  # proto3 leaves zeros out
    return b"\x10" + _varint(exit_status) + b"\x1a" + _varint(len(stamp)) + stamp


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def entry() -> None:
    """The program (launcher and console script): main(), then exit without the
    interpreter's teardown, as minirun.entry does."""
    from minirun.entry import exit_now

    exit_now(main())


def main(argv: list[str] | None = None) -> int:
    a = parse(sys.argv[1:] if argv is None else argv)
    if a.action == "version":
        from minirun import __version__

        print(f"containerd-shim-minirun-v1 (minirun {__version__})")
        return 0
    if a.action == "start":
        return start(a)
    if a.action == "delete":
        return delete(a)
    print(f"containerd-shim-minirun-v1: unknown action {a.action!r} (start or delete)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
