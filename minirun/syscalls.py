"""The syscall layer: every kernel call minirun makes that the standard library lacks.

Thin on purpose: each function makes one call through the cffi module compiled from
csrc/ and turns a failure into a SyscallError carrying the call, errno and path.
"""

from minirun._native import ffi, lib
from minirun.diagnose import mount_hint
from minirun.errors import SyscallError

NS_FLAGS = {
    "mount": lib.CLONE_NEWNS,
    "uts": lib.CLONE_NEWUTS,
    "ipc": lib.CLONE_NEWIPC,
    "user": lib.CLONE_NEWUSER,
    "pid": lib.CLONE_NEWPID,
    "network": lib.CLONE_NEWNET,
    "cgroup": lib.CLONE_NEWCGROUP,
    "time": lib.CLONE_NEWTIME,
}

MS_RDONLY = lib.MS_RDONLY
MS_NOSUID = lib.MS_NOSUID
MS_NODEV = lib.MS_NODEV
MS_NOEXEC = lib.MS_NOEXEC
MS_REMOUNT = lib.MS_REMOUNT
MS_BIND = lib.MS_BIND
MS_MOVE = lib.MS_MOVE
MS_REC = lib.MS_REC
MS_PRIVATE = lib.MS_PRIVATE
MS_SLAVE = lib.MS_SLAVE
MS_SHARED = lib.MS_SHARED
MS_UNBINDABLE = lib.MS_UNBINDABLE
MS_PROPAGATION = MS_PRIVATE | MS_SLAVE | MS_SHARED | MS_UNBINDABLE
MNT_DETACH = lib.MNT_DETACH
RESOLVE_IN_ROOT = lib.RESOLVE_IN_ROOT
RESOLVE_NO_MAGICLINKS = lib.RESOLVE_NO_MAGICLINKS
RESOLVE_NO_XDEV = lib.RESOLVE_NO_XDEV
CLOSE_RANGE_CLOEXEC = lib.CLOSE_RANGE_CLOEXEC
MOUNT_ATTR_RDONLY = lib.MOUNT_ATTR_RDONLY


def _check(ret: int, call: str, path: str | bytes | None = None) -> int:
    if ret < 0:
        raise SyscallError(call, ffi.errno, path)
    return ret


def _b(s: str | bytes | None):
    if s is None:
        return ffi.NULL
    return s.encode() if isinstance(s, str) else s


def unshare(flags: int) -> None:
    _check(lib.mr_unshare(flags), "unshare")


def setns(fd: int, nstype: int, path: str | None = None) -> None:
    _check(lib.mr_setns(fd, nstype), "setns", path)


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None, shown: str | None = None) -> None:
    """mount(2); `shown` is the path to print on error when target is a /proc fd link."""
    ret = lib.mr_mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    if ret < 0:
        err = ffi.errno
        raise SyscallError("mount", err, shown or target,
                           mount_hint(err, source, fstype, flags, data))


def umount2(target: str, flags: int) -> None:
    _check(lib.mr_umount2(_b(target), flags), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(lib.mr_pivot_root(_b(new_root), _b(put_old)), "pivot_root", new_root)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(lib.mr_sethostname(raw, len(raw)), "sethostname", name)


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(lib.mr_setdomainname(raw, len(raw)), "setdomainname", name)


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    return _check(lib.mr_openat2(dirfd, _b(path), flags, mode, resolve), "openat2", path)


def close_range(first: int, last: int, flags: int) -> None:
    _check(lib.mr_close_range(first, last, flags), "close_range")


def pidfd_open(pid: int) -> int:
    return _check(lib.mr_pidfd_open(pid, 0), "pidfd_open", f"pid {pid}")


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    _check(lib.mr_pidfd_send_signal(pidfd, sig), "pidfd_send_signal")


def set_pdeathsig(sig: int) -> None:
    _check(lib.mr_prctl(lib.PR_SET_PDEATHSIG, sig, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def set_dumpable(on: bool) -> None:
    _check(lib.mr_prctl(lib.PR_SET_DUMPABLE, int(on), 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def set_child_subreaper() -> None:
    _check(lib.mr_prctl(lib.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def ambient_clear() -> None:
    ret = lib.mr_prctl(lib.PR_CAP_AMBIENT, lib.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _check(ret, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")


def ambient_raise(cap: int, name: str) -> None:
    ret = lib.mr_prctl(lib.PR_CAP_AMBIENT, lib.PR_CAP_AMBIENT_RAISE, cap, 0, 0)
    _check(ret, "prctl(PR_CAP_AMBIENT_RAISE)", name)


def link_up(ifname: str) -> None:
    _check(lib.mr_link_up(_b(ifname)), "ioctl(SIOCSIFFLAGS)", ifname)


def mount_setattr(dirfd: int, path: str, recursive: bool, attr_set: int, attr_clr: int,
                  shown: str | None = None, propagation: int = 0) -> None:
    flags = lib.AT_EMPTY_PATH | (lib.AT_RECURSIVE if recursive else 0)
    ret = lib.mr_mount_setattr(dirfd, _b(path), flags, attr_set, attr_clr, propagation)
    _check(ret, "mount_setattr", shown or path)


def join_session_keyring(name: str) -> None:
    _check(lib.mr_join_session_keyring(_b(name)), "keyctl(KEYCTL_JOIN_SESSION_KEYRING)", name)
