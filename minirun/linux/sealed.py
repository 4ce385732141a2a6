"""Sealed set-up processes: no writable host file inside a container (CVE-2019-5736).

A set-up process that enters a running container's namespaces runs the host's Python
interpreter with its libraries and C modules mapped, until the container's process
execs. A process of the container that may ptrace it (CAP_SYS_PTRACE in the initial
user namespace: a container without a user namespace of its own; the set-up processes
are non-dumpable) can open those files through /proc/PID/exe and /proc/PID/map_files,
and its fds through /proc/PID/fd, and overwrite them on the host.

When that is possible, the set-up process re-executes itself before joining anything:
in a private mount namespace whose every mount is made read-only (a per-mount flag:
the host's mounts are untouched), it execs the interpreter again. The kernel then maps
the interpreter, libpython, libc and every C module through read-only mounts, and an
open for writing through /proc/PID/exe or map_files fails with EROFS; the mounts stay
read-only for as long as anything refers to them. The new interpreter gets only the
fds it is handed (0-2, the --preserve-fds range, the set-up socket...), and its work
(a pickled function call) through a memfd. runc seals a memfd copy of its binary
instead; that would leave the interpreter's libraries writable here.

It costs a second interpreter start-up, so it is done only when needed (see
exec_needs_seal, create_needs_seal).
"""

import os
import sys
from _collections_abc import Callable, Iterable  # collections.abc without collections (1.5 ms)

from minirun import syscalls
from minirun.lite import socket

PTRACE = "CAP_SYS_PTRACE"
CAP_SYS_PTRACE_BIT = 19

# Run by the new interpreter: argv = [-c, PAYLOAD_FD, CLOEXEC_FDS, *sys.path].
_BOOT = ("import sys; sys.path[:] = sys.argv[3:]; "
         "from minirun.linux.sealed import resume; resume(sys.argv[1], sys.argv[2])")


# ------------------------------------------------------------- when to seal

def _may_ptrace(proc: dict | None) -> bool:
    """Can this process (or any it execs) hold CAP_SYS_PTRACE? Its bounding set says."""
    caps = (proc or {}).get("capabilities") or {}
    return PTRACE in (caps.get("bounding") or [])


def _own_user_ns(linux: dict, init_pid: int | None = None) -> bool:
    """Does the container have a user namespace other than ours? One joined by path
    may be ours (the initial one), where CAP_SYS_PTRACE is the host's."""
    for ns in linux.get("namespaces") or []:
        if ns.get("type") == "user":
            if init_pid is not None:
                return _other_than_ours(f"/proc/{init_pid}/ns/user")
            return not ns.get("path") or _other_than_ours(ns["path"])
    return False


def _other_than_ours(path: str) -> bool:
    try:
        theirs, ours = os.stat(path), os.stat("/proc/self/ns/user")
    except OSError:
        return False  # not ours to judge: seal
    return (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino)


def _joined(linux: dict, kind: str) -> bool:
    return any(ns.get("type") == kind and ns.get("path")
               for ns in linux.get("namespaces") or [])


def exec_needs_seal(cfg: dict, proc: dict, pids: Callable[[], list[int]] | None,
                    init_pid: int | None = None) -> bool:
    """Seal `exec` unless no process that can see its set-up child could ptrace it:
    a container with a user namespace of its own never can (CAP_SYS_PTRACE there does
    not reach the initial one); otherwise the new process, the container's init or a
    process already running in its cgroup (an earlier `exec --cap`) may hold it, and a
    pid namespace joined by path is shared with processes we cannot enumerate.
    `pids` lists the container's processes (None when it has no cgroup: seal)."""
    linux = cfg.get("linux") or {}
    if _own_user_ns(linux, init_pid):
        return False
    if _may_ptrace(proc) or _may_ptrace(cfg.get("process")) or _joined(linux, "pid"):
        return True
    if pids is None:
        return True
    try:
        return any(_bounding_has_ptrace(pid) for pid in pids())
    except OSError:
        return True


def create_needs_seal(linux: dict) -> bool:
    """Seal `create` when its init (Python until it execs, after `start`) appears in a
    pid namespace other processes already live in: one joined by path, without a user
    namespace of the container's own."""
    return _joined(linux, "pid") and not _own_user_ns(linux)


def _bounding_has_ptrace(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapBnd:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_PTRACE_BIT & 1)
    except (FileNotFoundError, ProcessLookupError):
        pass  # gone meanwhile
    return False


# ------------------------------------------------------------- the re-exec

def _dumps(obj: object) -> tuple[bytes, set[int]]:
    """Pickle obj; sockets go as their fds (kept open across exec), returned too."""
    import io
    import pickle

    from minirun.linux import seccomp

    fds: set[int] = set()

    class Pickler(pickle.Pickler):
        def reducer_override(self, o):
            if isinstance(o, socket.socket):
                fds.add(o.fileno())
                return _socket_of_fd, (o.fileno(), o.family, o.type)
            if isinstance(o, seccomp.Filter):
                # A libseccomp context lives in C memory: built again from its document.
                return seccomp.compile_filter, (o.doc,)
            return NotImplemented

    buf = io.BytesIO()
    Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue(), fds


def _socket_of_fd(fd: int, family: int, kind: int) -> socket.socket:
    return socket.socket(family, kind, 0, fd)


def reexec(fn: Callable, args: tuple, keep: Iterable[int] = ()) -> None:
    """Re-execute this process sealed; fn(*args) then runs in the new interpreter (it
    must never return: os._exit). Only 0-2, `keep` and the sockets in args stay open.
    Returns only by raising (before exec, nothing has been joined yet)."""
    # Every module this process has loaded, loaded again: code after pivot_root
    # relies on modules the runtime imported before fork.
    modules = [m for m in sys.modules if m != "__main__"]
    data, fds = _dumps((modules, fn, args))
    keep = {0, 1, 2, *keep, *fds}
    _private_readonly_mounts()
    payload = os.memfd_create("minirun-sealed", 0)  # inheritable: read after exec
    os.write(payload, data)
    os.lseek(payload, 0, os.SEEK_SET)
    cloexec = _only_fds(keep | {payload})
    # The interpreter and minirun's modules, found again through the read-only mounts.
    argv = [sys.executable, "-I", "-S", "-B", "-c", _BOOT, str(payload),
            ",".join(map(str, cloexec)), *sys.path]
    os.execve(sys.executable, argv, os.environ)


def _private_readonly_mounts() -> None:
    """A mount namespace of our own, every mount private and read-only. Failing
    closed: without it the container could reach the host's files."""
    from minirun.errors import MinirunError

    try:
        syscalls.unshare(syscalls.NS_FLAGS["mount"])
        syscalls.mount_setattr(AT_FDCWD, "/", True, syscalls.MOUNT_ATTR_RDONLY, 0,
                               propagation=syscalls.MS_PRIVATE)
    except MinirunError as e:
        raise MinirunError(f"seal the set-up process (the container may hold "
                           f"CAP_SYS_PTRACE without a user namespace): {e}") from None


AT_FDCWD = -100


def _only_fds(keep: set[int]) -> list[int]:
    """Close every fd but `keep` and let those through exec; returns the ones that
    were close-on-exec, for resume to make so again."""
    cloexec = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in keep:
            if fd > 2 and not os.get_inheritable(fd):
                os.set_inheritable(fd, True)
                cloexec.append(fd)
        else:
            try:
                os.close(fd)
            except OSError:
                pass  # the directory listing's own fd
    return cloexec


def resume(payload: str, cloexec: str) -> None:
    """Entry point of the re-executed interpreter (see _BOOT)."""
    import gc

    gc.disable()  # as in any set-up process (launch.SetupSession.fork)
    syscalls.set_dumpable(False)  # exec made us dumpable again
    try:
        import pickle

        fd = int(payload)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        os.close(fd)
        modules, fn, args = pickle.loads(b"".join(chunks))
        _import_all(modules)
        for other in filter(None, cloexec.split(",")):
            os.set_inheritable(int(other), False)
    except BaseException:  # noqa: BLE001 - nobody to tell: the runtime sees EOF
        os._exit(1)
    fn(*args)
    os._exit(1)


def _import_all(names: list[str]) -> None:
    import importlib

    for name in names:
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001, S112 - e.g. a module only the runtime can load
                continue
