"""The rootfs mounts containerd hands to Create (a snapshot: overlay, or a bind of a
directory), mounted at the bundle's rootfs as runc's shim does, and unmounted at Delete."""

from __future__ import annotations

import errno
import os

from minirun import syscalls
from minirun.errors import SyscallError

# mount(8)-style options that are flags; anything else goes to the filesystem as data
FLAGS = {"ro": (0x1, True), "rw": (0x1, False), "nosuid": (0x2, True), "suid": (0x2, False),
         "nodev": (0x4, True), "dev": (0x4, False), "noexec": (0x8, True),
         "exec": (0x8, False), "sync": (0x10, True), "async": (0x10, False),
         "remount": (0x20, True), "mand": (0x40, True), "nomand": (0x40, False),
         "dirsync": (0x80, True), "noatime": (0x400, True), "atime": (0x400, False),
         "nodiratime": (0x800, True), "diratime": (0x800, False),
         "bind": (0x1000, True), "rbind": (0x1000 | 0x4000, True),
         "relatime": (0x200000, True), "norelatime": (0x200000, False),
         "strictatime": (0x1000000, True)}


def _flags_and_data(options) -> tuple[int, str]:
    flags, data = 0, []
    for opt in options:
        if opt in FLAGS:
            bit, on = FLAGS[opt]
            flags = flags | bit if on else flags & ~bit
        else:
            data.append(opt)
    return flags, ",".join(data)


def mount_rootfs(mounts, rootfs: str) -> bool:
    """Mount containerd's rootfs mounts at rootfs; False if there were none (the bundle
    brought its own rootfs)."""
    if not mounts:
        return False
    os.makedirs(rootfs, exist_ok=True)
    done = 0
    try:
        for mnt in mounts:
            flags, data = _flags_and_data(mnt.options)
            fstype = None if flags & 0x1000 else mnt.type
            syscalls.mount(mnt.source, rootfs, fstype, flags, data or None)
            done += 1
    except Exception as e:
        from minirun.shim import ttrpc

        for _ in range(done):
            unmount_rootfs(rootfs)
        raise ttrpc.Status(ttrpc.UNKNOWN, f"mount the rootfs at {rootfs}: {e}") from None
    return True


def unmount_rootfs(rootfs: str) -> None:
    """Unmount everything stacked on rootfs (as runc's shim: until EINVAL)."""
    for _ in range(16):
        try:
            syscalls.umount2(rootfs, 0)
        except SyscallError as e:
            if e.errno != errno.EBUSY:
                return  # EINVAL: nothing (more) mounted there
            try:
                syscalls.umount2(rootfs, 2)  # MNT_DETACH: whatever still holds it
            except SyscallError:
                return
