"""What the host offers: where cgroup2 is mounted, which controllers it has, and which
ones the cgroup v1 hierarchies hold instead (a hybrid host).

Read from /proc/self/mountinfo, /proc/cgroups and <mount>/cgroup.controllers only.
"""

from __future__ import annotations

import os

from minirun.errors import MinirunError

UNIFIED = "/sys/fs/cgroup"

# v1 hierarchy names of the controllers cgroup v2 has under another name
V1_TO_V2 = {"blkio": "io", "cpuacct": "cpu"}


class CgroupError(MinirunError):
    """A cgroup operation failed: says what, on which cgroup, and why."""


def mountinfo(text: str | None = None) -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, super options) of every mount."""
    if text is None:
        with open("/proc/self/mountinfo") as f:
            text = f.read()
    out = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        out.append((_unescape(fields[4]), rest[0], rest[2]))
    return out


def _unescape(path: str) -> str:
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def find_v2_mount(mounts: list[tuple[str, str, str]] | None = None) -> str:
    """/sys/fs/cgroup on a pure v2 host, else where cgroup2 is mounted (hybrid host)."""
    v2 = [point for point, fstype, _ in (mounts or mountinfo()) if fstype == "cgroup2"]
    if UNIFIED in v2:
        return UNIFIED
    if not v2:
        raise CgroupError("cgroups: no cgroup2 filesystem is mounted on this host "
                          "(cgroup v1 only): minirun needs cgroup v2")
    preferred = [p for p in v2 if p.startswith(UNIFIED + "/")]
    return (preferred or v2)[0]


def v2_controllers(mount: str) -> set[str]:
    """Controllers the cgroup2 hierarchy has at its root."""
    try:
        with open(os.path.join(mount, "cgroup.controllers")) as f:
            return set(f.read().split())
    except FileNotFoundError:
        raise CgroupError(f"cgroups: {mount} is not a cgroup2 mount "
                          "(no cgroup.controllers)") from None


def v1_bound_controllers(mounts: list[tuple[str, str, str]] | None = None,
                         proc_cgroups: str | None = None) -> set[str]:
    """v2 names of the controllers bound to a cgroup v1 hierarchy (hybrid host)."""
    bound = set()
    for _, fstype, options in mounts if mounts is not None else mountinfo():
        if fstype == "cgroup":
            bound |= {V1_TO_V2.get(o, o) for o in options.split(",")}
    for name, hierarchy, _enabled in _proc_cgroups(proc_cgroups):
        if hierarchy != "0":
            bound.add(V1_TO_V2.get(name, name))
    return bound


def disabled_controllers(proc_cgroups: str | None = None) -> set[str]:
    """Controllers turned off on the kernel command line (cgroup_disable=)."""
    return {V1_TO_V2.get(name, name) for name, _, enabled in _proc_cgroups(proc_cgroups)
            if enabled == "0"}


def _proc_cgroups(text: str | None) -> list[tuple[str, str, str]]:
    if text is None:
        try:
            with open("/proc/cgroups") as f:
                text = f.read()
        except FileNotFoundError:
            return []
    rows = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 4 and not line.startswith("#"):
            rows.append((cols[0], cols[1], cols[3]))
    return rows


def controller_problem(name: str, mount: str) -> str | None:
    """None if the controller is available under mount, else why not, in words."""
    if name in v2_controllers(mount):
        return None
    if name in v1_bound_controllers():
        return f"the {name} controller is bound to cgroup v1 on this host (hybrid mode)"
    if name in disabled_controllers():
        return f"the {name} controller is disabled on this host (cgroup_disable= at boot)"
    return f"the {name} controller is not available in cgroup v2 at {mount} on this kernel"


def host_cpus() -> set[int]:
    return parse_list(_read_first("/sys/devices/system/cpu/online", "0"))


def host_mems() -> set[int]:
    return parse_list(_read_first("/sys/devices/system/node/online", "0"))


def _read_first(path: str, default: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def parse_list(text: str) -> set[int]:
    """A kernel cpu/node list ("0-3,8,10-11") → its numbers; ValueError if malformed."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, sep, last = part.partition("-")
        lo, hi = int(first), int(last) if sep else int(first)
        if lo < 0 or hi < lo:
            raise ValueError(part)
        out |= set(range(lo, hi + 1))
    return out


def own_cgroup(text: str | None = None) -> str:
    """This process's cgroup2 path ("0::" line of /proc/self/cgroup)."""
    if text is None:
        with open("/proc/self/cgroup") as f:
            text = f.read()
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or "/"
    raise CgroupError("cgroups: this process has no cgroup v2 membership "
                      "(/proc/self/cgroup has no 0:: line)")


def hugepage_sizes() -> list[str]:
    """The huge page sizes of this host in cgroup file naming ("2MB", "1GB")."""
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except FileNotFoundError:
        return []
    return sorted(size_name(int(n[len("hugepages-"):-2])) for n in names
                  if n.startswith("hugepages-") and n.endswith("kB"))


def size_name(kib: int) -> str:
    """2048 → "2MB", 1048576 → "1GB", 64 → "64KB" (the kernel's hugetlb file names)."""
    for unit, scale in (("GB", 1 << 20), ("MB", 1 << 10)):
        if kib >= scale and kib % scale == 0:
            return f"{kib // scale}{unit}"
    return f"{kib}KB"
