"""Why a file will not execute: the cause behind execve's errno, in words.

execve's errors name a symptom, not a cause: ENOENT for a script that is there (its
`#!/bin/sh\\r` line names an interpreter with a carriage return in its name), for a
dynamically linked binary whose ELF interpreter the image lacks; ENOEXEC for a binary of
another architecture. This module reads the file's first bytes and its ELF program
headers and says which it is.

Two callers: the container's process, after a failed execve (it is already inside the
container's root, so paths are looked up as they are), and `minirun doctor`, from the
host, with paths resolved inside a bundle's rootfs by `RootfsPaths`. Only `os` is used:
the container's process imports this module before pivot_root and can load nothing after.
"""

import os
import stat as _stat
from _collections_abc import Callable  # collections.abc without collections (1.5 ms)

# A path in the container -> the host path to open (identity inside the container).
Resolve = Callable[[str], str | None]

ELF_MAGIC = b"\x7fELF"
PT_INTERP = 3
HEAD = 512  # enough for a #! line (the kernel reads at most 256 bytes of it)
ELF_MACHINES = {
    3: "i386", 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390x", 40: "arm", 62: "x86_64",
    183: "aarch64", 243: "riscv64", 258: "loongarch64",
}
UNAME_MACHINES = {"x86_64": {62, 3}, "aarch64": {183, 40}, "armv7l": {40}, "i686": {3},
                  "ppc64le": {21}, "s390x": {22}, "riscv64": {243}, "loongarch64": {258}}


def same(path: str) -> str | None:
    return path


def explain(path: str, err: int, resolve: Resolve = same, depth: int = 0) -> str | None:
    """The cause of execve(path) failing with err, or None when nothing more is known."""
    host = resolve(path)
    if host is None:
        return None
    try:
        st = os.stat(host)
    except OSError:
        return None
    if _stat.S_ISDIR(st.st_mode):
        return "it is a directory"
    if not _stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    head = _read(host, HEAD)
    if err == 13:  # EACCES
        return _explain_eacces(host, st.st_mode)
    if head is None:
        return None
    if head.startswith(b"#!"):
        return _explain_script(path, head, resolve, depth)
    if head.startswith(ELF_MAGIC):
        return _explain_elf(host, head, err, resolve)
    if err == 8:  # ENOEXEC
        return ("it is neither an ELF binary nor a script with a #! line "
                "(run it through a shell, e.g. `sh " + path + "`, or add a #! line)")
    return None


def _explain_eacces(host: str, mode: int) -> str | None:
    if not mode & 0o111:
        return f"it has no execute permission (mode {mode & 0o7777:04o}; chmod +x it)"
    try:
        if os.statvfs(host).f_flag & os.ST_NOEXEC:
            return "it is on a filesystem mounted noexec"
    except OSError:
        pass
    return None


def _explain_script(path: str, head: bytes, resolve: Resolve, depth: int) -> str | None:
    line = head[2:].split(b"\n", 1)[0]
    shown = line.decode(errors="replace").replace("\r", "\\r")
    interp = line.strip(b" \t").split(None, 1)[0].decode(errors="replace") if line.strip() else ""
    if line.endswith(b"\r"):
        return (f'its first line "#!{shown}" ends in a carriage return (Windows line '
                "endings); convert the file with dos2unix or sed -i 's/\\r$//'")
    if not interp:
        return f'its first line "#!{shown}" names no interpreter'
    if resolve(interp) is None or not os.path.exists(resolve(interp) or ""):
        return f'its interpreter {interp} (from the line "#!{shown}") does not exist'
    if depth < 2:
        inner = explain(interp, 2, resolve, depth + 1) or explain(interp, 8, resolve, depth + 1)
        if inner:
            return f"its interpreter {interp} cannot run: {inner}"
    return None


def _explain_elf(host: str, head: bytes, err: int, resolve: Resolve) -> str | None:
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    mine = UNAME_MACHINES.get(os.uname().machine, set())
    if mine and machine not in mine:
        name = ELF_MACHINES.get(machine, f"machine {machine}")
        return (f"it is an ELF binary for {name}, and this machine is {os.uname().machine} "
                "(use an image built for this architecture)")
    interp = elf_interpreter(host)
    if interp:
        target = resolve(interp)
        if target is None or not os.path.exists(target):
            return (f"its ELF interpreter {interp} is missing from the container's root "
                    "(a dynamically linked binary in an image without its C library; "
                    "use a static binary or add the library)")
    if err == 2 and interp is not None:
        return ("a shared library it needs is missing from the container's root "
                f"(its interpreter {interp} is there)")
    return None


def elf_interpreter(host: str) -> str | None:
    """The PT_INTERP of an ELF file (None for a static binary or a file we cannot read)."""
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        ident = os.pread(fd, 64, 0)
        if len(ident) < 52 or not ident.startswith(ELF_MAGIC):
            return None
        wide, order = ident[4] == 2, "little" if ident[5] == 1 else "big"

        def num(buf: bytes, at: int, size: int) -> int:
            return int.from_bytes(buf[at:at + size], order)

        phoff = num(ident, 32, 8) if wide else num(ident, 28, 4)
        phentsize = num(ident, 54, 2) if wide else num(ident, 42, 2)
        phnum = min(num(ident, 56, 2) if wide else num(ident, 44, 2), 256)
        table = os.pread(fd, phentsize * phnum, phoff)
        for i in range(phnum):
            ph = table[i * phentsize:(i + 1) * phentsize]
            if len(ph) < phentsize or num(ph, 0, 4) != PT_INTERP:
                continue
            off = num(ph, 8, 8) if wide else num(ph, 4, 4)
            size = min(num(ph, 32, 8) if wide else num(ph, 16, 4), 4096)
            return os.pread(fd, size, off).split(b"\0", 1)[0].decode(errors="replace")
        return None
    except OSError:
        return None
    finally:
        os.close(fd)


def _read(host: str, size: int) -> bytes | None:
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


class RootfsPaths:
    """Resolve container paths inside a rootfs from the host, symlinks kept inside it
    (an absolute link target starts again at the rootfs, `..` stops at it)."""

    MAX_LINKS = 40

    def __init__(self, rootfs: str) -> None:
        self.rootfs = os.path.abspath(rootfs)

    def __call__(self, path: str) -> str | None:
        parts = [p for p in path.split("/") if p]
        done: list[str] = []
        links = 0
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            host = os.path.join(self.rootfs, *done, part)
            try:
                target = os.readlink(host)
            except OSError:
                done.append(part)
                continue
            links += 1
            if links > self.MAX_LINKS:
                return None
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p] + parts
        return os.path.join(self.rootfs, *done)


PASSWD_MAX = 4 << 20  # bytes: an /etc/passwd larger than this is not read


def passwd_entry(resolve: Resolve, uid: int) -> list[str] | None:
    """The fields of uid's line in the image's /etc/passwd: a regular file only, read
    without blocking and bounded (a FIFO or /dev/zero there must not hang or grow us)."""
    host = resolve("/etc/passwd")
    try:
        fd = os.open(host or "", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not _stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = os.read(fd, PASSWD_MAX).decode(errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[2] == str(uid):
            return fields
    return None


MS_BIND, MS_REMOUNT = 4096, 32
USERNS_FILESYSTEMS = "proc, tmpfs, devpts, mqueue, binds (sysfs only with a network " \
    "namespace of its own)"


def in_user_namespace() -> bool:
    """True when this process's uids are mapped (it runs in a user namespace)."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def mount_hint(err: int, source: str | None, fstype: str | None, flags: int,
               data: str | None) -> str | None:
    """Why mount(2) failed, when its errno alone does not say (which flag, which
    namespace, which option)."""
    if err == 19:  # ENODEV
        return f"this kernel has no {fstype!r} filesystem (/proc/filesystems lists them)"
    if err == 2:  # ENOENT
        return f"the source {source!r} does not exist" if source else None
    if err == 1:  # EPERM
        if in_user_namespace():
            if flags & MS_REMOUNT:
                return ("in a user namespace a remount cannot clear ro, nosuid, nodev or "
                        "noexec where the host's mount has them")
            return f"in a user namespace the kernel mounts only {USERNS_FILESYSTEMS}"
        return "refused by the kernel (a mount locked by a user namespace, or an LSM)"
    if err == 22:  # EINVAL
        if flags & MS_REMOUNT or not (fstype or flags & MS_BIND):
            return "the target is not a mount point, or a flag cannot be changed on it"
        if data:
            return f"the {fstype or 'bind'} filesystem refused an option in {data!r}"
        return None
    if err == 16:  # EBUSY
        return "already mounted there, or in use"
    if err == 13:  # EACCES
        return ("the source cannot be reached by the mounting user (a directory on the "
                "way without search permission for the container's root?)")
    return None
