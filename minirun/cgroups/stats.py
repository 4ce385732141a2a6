"""A cgroup v2 directory's statistics in the shape of runc's `events --stats` data
(runc 1.1's types.Stats, JSON field names and omitted zero fields included), from the
files the hierarchy has: a controller that is not enabled leaves its section empty."""

from __future__ import annotations

import os
from _collections_abc import Callable  # collections.abc without collections (1.5 ms)

from minirun.cgroups import host

U64_MAX = 2**64 - 1
CPUSET_FIELDS = ("cpu_exclusive", "mem_hardwall", "mem_exclusive", "memory_migrate",
                 "memory_spread_page", "memory_spread_slab", "memory_pressure",
                 "sched_load_balance", "sched_relax_domain_level")


def collect(cgroup_dir: str, all_pids: Callable[[], list[int]]) -> dict:
    """Everything runc prints under "data" for `events --stats`."""
    files = _Files(cgroup_dir)
    return {
        "cpu": _cpu(files),
        "cpuset": _cpuset(files),
        "memory": _memory(files),
        "pids": _pids(files, all_pids),
        "blkio": _blkio(files),
        "hugetlb": _hugetlb(files),
        "intel_rdt": {},
        "network_interfaces": None,
    }


class _Files:
    def __init__(self, cgroup_dir: str) -> None:
        self.dir = cgroup_dir

    def text(self, name: str) -> str | None:
        try:
            with open(os.path.join(self.dir, name)) as f:
                return f.read()
        except (FileNotFoundError, OSError):
            return None

    def number(self, name: str) -> int | None:
        """A single-value file; "max" is 2^64-1 as in runc."""
        text = self.text(name)
        if text is None:
            return None
        text = text.strip()
        return U64_MAX if text == "max" else int(text)

    def keyed(self, name: str) -> dict[str, int]:
        """A flat-keyed file ("key value" lines)."""
        out = {}
        for line in (self.text(name) or "").splitlines():
            key, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                out[key] = int(value)
        return out


def _nonzero(**values: int | None) -> dict:
    return {k: v for k, v in values.items() if v}


def _cpu(files: _Files) -> dict:
    stat = files.keyed("cpu.stat")
    usage = _nonzero(total=stat.get("usage_usec", 0) * 1000)
    usage["kernel"] = stat.get("system_usec", 0) * 1000
    usage["user"] = stat.get("user_usec", 0) * 1000
    throttling = _nonzero(periods=stat.get("nr_periods"),
                          throttledPeriods=stat.get("nr_throttled"),
                          throttledTime=stat.get("throttled_usec", 0) * 1000)
    return {"usage": usage, "throttling": throttling}


def _cpuset(files: _Files) -> dict:
    out: dict = {}
    for key, name in (("cpus", "cpuset.cpus.effective"), ("mems", "cpuset.mems.effective")):
        text = (files.text(name) or "").strip()
        if text:
            out[key] = sorted(host.parse_list(text))
    out.update(dict.fromkeys(CPUSET_FIELDS, 0))
    return out


def _memory(files: _Files) -> dict:
    usage, limit = files.number("memory.current"), files.number("memory.max")
    entry = {"limit": limit or 0, **_nonzero(usage=usage, max=files.number("memory.peak")),
             "failcnt": 0}
    swap_usage, swap_limit = files.number("memory.swap.current"), files.number("memory.swap.max")
    if swap_limit is not None and swap_limit != U64_MAX:
        swap_limit += limit or 0  # v1 style: memory+swap
    swap_total = None if swap_usage is None else swap_usage + (usage or 0)
    swap = {"limit": swap_limit or 0, **_nonzero(usage=swap_total), "failcnt": 0}
    raw = files.keyed("memory.stat")
    out = {**_nonzero(cache=raw.get("file")), "usage": entry, "swap": swap,
           "kernel": {"limit": 0, "failcnt": 0}, "kernelTCP": {"limit": 0, "failcnt": 0}}
    if raw:
        out["raw"] = raw
    return out


def _pids(files: _Files, all_pids: Callable[[], list[int]]) -> dict:
    current = files.number("pids.current")
    if current is None:  # no pids controller: count them, as runc does
        current = len(all_pids())
    limit = files.number("pids.max")
    return _nonzero(current=current, limit=0 if limit == U64_MAX else limit)


def _blkio(files: _Files) -> dict:
    tables: dict[str, list] = {"ioServiceBytesRecursive": [], "ioServicedRecursive": []}
    names = {"rbytes": ("ioServiceBytesRecursive", "Read"),
             "wbytes": ("ioServiceBytesRecursive", "Write"),
             "rios": ("ioServicedRecursive", "Read"), "wios": ("ioServicedRecursive", "Write")}
    for line in sorted((files.text("io.stat") or "").splitlines()):
        device, *items = line.split()
        major, _, minor = device.partition(":")
        for item in items:
            key, _, value = item.partition("=")
            if key in names:
                table, op = names[key]
                tables[table].append(_nonzero(major=int(major), minor=int(minor))
                                     | {"op": op} | _nonzero(value=int(value)))
    return {k: v for k, v in tables.items() if v}


def _hugetlb(files: _Files) -> dict:
    out = {}
    for size in host.hugepage_sizes():
        usage = files.number(f"hugetlb.{size}.rsvd.current")
        if usage is None:
            usage = files.number(f"hugetlb.{size}.current")
        if usage is None:
            continue
        failcnt = files.keyed(f"hugetlb.{size}.events").get("max", 0)
        out[size] = {**_nonzero(usage=usage), "failcnt": failcnt}
    return out
