"""Linux capability names and numbers (linux/capability.h), and applying them.

The table drives validation (an unknown name is an error), `features`, and the
five sets applied to the container process just before exec.
"""

# python-prctl's C interface (its prctl.py wrapper builds classes at import: 1 ms a run);
# imported before pivot_root: the container has no Python library
import _prctl

from minirun import syscalls
from minirun.errors import SyscallError

CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
CAP_NUMBERS = {name: number for number, name in enumerate(CAPABILITIES)}
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


def last_cap() -> int:
    """The highest capability the running kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAPABILITIES) - 1


def bounding_drops(keep: list[int]) -> list[int]:
    """What apply_bounding will drop: every capability not in `keep` still in the set."""
    wanted = set(keep)
    return [cap for cap in range(last_cap() + 1)
            if cap not in wanted and _prctl.prctl(_prctl.PR_CAPBSET_READ, cap)]


def apply_bounding(drops: list[int]) -> None:
    """Drop those from the bounding set (needs CAP_SETPCAP)."""
    for cap in drops:
        _prctl.prctl(_prctl.PR_CAPBSET_DROP, cap)


def plan_sets(caps: dict[str, list[int]]) -> tuple[list[int], ...]:
    """_prctl.set_caps' six lists: effective, permitted, inheritable to raise, then the
    same three to clear (every capability is one or the other: the sets come out exact)."""
    everything = range(last_cap() + 1)
    wanted = [set(caps[name]) for name in ("effective", "permitted", "inheritable")]
    return (*([c for c in everything if c in w] for w in wanted),
            *([c for c in everything if c not in w] for w in wanted))


def ambient_raises(caps: dict[str, list[int]]) -> list[int]:
    """The kernel only lets a capability be ambient if it is permitted and inheritable;
    runc skips the others silently (runc spec lists ambient caps but no inheritable
    ones), so the same bundle gives the same process here."""
    possible = set(caps["permitted"]) & set(caps["inheritable"])
    return [cap for cap in caps["ambient"] if cap in possible]


def apply_sets(sets: tuple[list[int], ...], ambient: list[int]) -> None:
    """Set effective/permitted/inheritable exactly (plan_sets), then raise the ambient
    ones (ambient_raises). Only syscalls: it runs after the cgroup join."""
    try:
        _prctl.set_caps(*sets)
    except OSError as e:
        raise SyscallError("capset", e.errno or 1, "process.capabilities") from e
    syscalls.ambient_clear()
    for cap in ambient:
        syscalls.ambient_raise(cap, CAPABILITIES[cap])
