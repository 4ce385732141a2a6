"""The mount options of the OCI spec (config.md "mounts") and what each does.

One table drives parsing, validation and `features`: a flag option sets or clears a
mount(2) flag, a propagation option becomes its own mount(2) call, a recursive option
(`rro`, `rnosuid`, ...) is applied to the whole tree with mount_setattr(2), and any other
option is filesystem data (`mode=755`, `size=64m`, `newinstance`).
"""

from minirun._native import lib

# name -> (clear?, flag)
FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "defaults": (False, 0),
    "ro": (False, lib.MS_RDONLY), "rw": (True, lib.MS_RDONLY),
    "nosuid": (False, lib.MS_NOSUID), "suid": (True, lib.MS_NOSUID),
    "nodev": (False, lib.MS_NODEV), "dev": (True, lib.MS_NODEV),
    "noexec": (False, lib.MS_NOEXEC), "exec": (True, lib.MS_NOEXEC),
    "sync": (False, lib.MS_SYNCHRONOUS), "async": (True, lib.MS_SYNCHRONOUS),
    "dirsync": (False, lib.MS_DIRSYNC),
    "remount": (False, lib.MS_REMOUNT),
    "mand": (False, lib.MS_MANDLOCK), "nomand": (True, lib.MS_MANDLOCK),
    "noatime": (False, lib.MS_NOATIME), "atime": (True, lib.MS_NOATIME),
    "nodiratime": (False, lib.MS_NODIRATIME), "diratime": (True, lib.MS_NODIRATIME),
    "relatime": (False, lib.MS_RELATIME), "norelatime": (True, lib.MS_RELATIME),
    "strictatime": (False, lib.MS_STRICTATIME), "nostrictatime": (True, lib.MS_STRICTATIME),
    "lazytime": (False, lib.MS_LAZYTIME), "nolazytime": (True, lib.MS_LAZYTIME),
    "iversion": (False, lib.MS_I_VERSION), "noiversion": (True, lib.MS_I_VERSION),
    "silent": (False, lib.MS_SILENT), "loud": (True, lib.MS_SILENT),
    "nosymfollow": (False, lib.MS_NOSYMFOLLOW), "symfollow": (True, lib.MS_NOSYMFOLLOW),
    "acl": (False, lib.MS_POSIXACL), "noacl": (True, lib.MS_POSIXACL),
    "bind": (False, lib.MS_BIND), "rbind": (False, lib.MS_BIND | lib.MS_REC),
}

PROPAGATION_OPTIONS: dict[str, int] = {
    "private": lib.MS_PRIVATE, "rprivate": lib.MS_PRIVATE | lib.MS_REC,
    "shared": lib.MS_SHARED, "rshared": lib.MS_SHARED | lib.MS_REC,
    "slave": lib.MS_SLAVE, "rslave": lib.MS_SLAVE | lib.MS_REC,
    "unbindable": lib.MS_UNBINDABLE, "runbindable": lib.MS_UNBINDABLE | lib.MS_REC,
}

# name -> (clear?, MOUNT_ATTR_*), applied recursively with mount_setattr(2)
RECURSIVE_OPTIONS: dict[str, tuple[bool, int]] = {
    "rro": (False, lib.MOUNT_ATTR_RDONLY), "rrw": (True, lib.MOUNT_ATTR_RDONLY),
    "rnosuid": (False, lib.MOUNT_ATTR_NOSUID), "rsuid": (True, lib.MOUNT_ATTR_NOSUID),
    "rnodev": (False, lib.MOUNT_ATTR_NODEV), "rdev": (True, lib.MOUNT_ATTR_NODEV),
    "rnoexec": (False, lib.MOUNT_ATTR_NOEXEC), "rexec": (True, lib.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, lib.MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, lib.MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (False, lib.MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, lib.MOUNT_ATTR_NOSYMFOLLOW),
    # The atime family is one field: setting one value replaces the others.
    "rrelatime": (False, lib.MOUNT_ATTR_RELATIME), "rnorelatime": (True, lib.MOUNT_ATTR_RELATIME),
    "rnoatime": (False, lib.MOUNT_ATTR_NOATIME), "ratime": (True, lib.MOUNT_ATTR_NOATIME),
    "rstrictatime": (False, lib.MOUNT_ATTR_STRICTATIME),
    "rnostrictatime": (True, lib.MOUNT_ATTR_STRICTATIME),
}

# Options minirun itself interprets (not passed to the kernel).
EXTENSION_OPTIONS = ("tmpcopyup",)


class ParsedOptions:
    """A mount's options split into what each kernel call needs."""

    __slots__ = ("flags", "cleared", "propagation", "attr_set", "attr_clr", "data", "extensions")

    def __init__(self) -> None:
        self.flags = 0
        self.cleared = 0
        self.propagation: list[int] = []
        self.attr_set = 0
        self.attr_clr = 0
        self.data: list[str] = []
        self.extensions: list[str] = []


def parse(options: list[str]) -> ParsedOptions:
    out = ParsedOptions()
    for opt in options:
        if opt in FLAG_OPTIONS:
            clear, flag = FLAG_OPTIONS[opt]
            if clear:
                out.flags &= ~flag
                out.cleared |= flag
            else:
                out.flags |= flag
                out.cleared &= ~flag
        elif opt in PROPAGATION_OPTIONS:
            out.propagation.append(PROPAGATION_OPTIONS[opt])
        elif opt in RECURSIVE_OPTIONS:
            clear, attr = RECURSIVE_OPTIONS[opt]
            if clear:
                out.attr_clr |= attr
            else:
                out.attr_set |= attr
        elif opt in EXTENSION_OPTIONS:
            out.extensions.append(opt)
        else:
            out.data.append(opt)
    return out


def known_options() -> list[str]:
    return sorted([*FLAG_OPTIONS, *PROPAGATION_OPTIONS, *RECURSIVE_OPTIONS, *EXTENSION_OPTIONS])
