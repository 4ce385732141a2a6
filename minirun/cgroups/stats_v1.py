"""The statistics of a container's cgroup v1 directories in runc's `events --stats` shape
(runc 1.1's v1 readings, same JSON fields as cgroups/stats.py gives for cgroup2).

On a hybrid host the container has v1 directories only for the controllers its limits
need (cgroups/v1.py): each one's section replaces what the cgroup2 directory gave for
it (nothing, since that controller is bound to v1 there).

    cpuacct  cpuacct.usage, cpuacct.usage_percpu, cpuacct.stat (ticks -> ns)
    cpu      cpu.stat: nr_periods, nr_throttled, throttled_time
    cpuset   cpuset.cpus, cpuset.mems and the flag files
    memory   memory.{,memsw.,kmem.,kmem.tcp.}{usage,max_usage,limit}_in_bytes/failcnt,
             memory.stat (its "cache" too)
    pids     pids.current, pids.max
    blkio    blkio.bfq.* (or CFQ's) *_recursive, else blkio.throttle.*_recursive
"""

from __future__ import annotations

import os

from minirun.cgroups import host
from minirun.cgroups.stats import CPUSET_FIELDS, U64_MAX, _nonzero

# The kernel's USER_HZ: cpuacct.stat counts in these ticks (100 on every Linux ABI).
CLK_TCK = 100
NS = 1_000_000_000


def _text(d: str, name: str) -> str | None:
    try:
        with open(os.path.join(d, name)) as f:
            return f.read()
    except OSError:
        return None


def _number(d: str, name: str) -> int | None:
    text = _text(d, name)
    if text is None or not text.strip():
        return None
    text = text.strip()
    return U64_MAX if text == "max" else int(text)


def _keyed(d: str, name: str) -> dict[str, int]:
    out = {}
    for line in (_text(d, name) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def overlay(data: dict, dirs: dict[str, str]) -> dict:
    """data (from the cgroup2 directory) with each v1 controller's section read from
    its directory in dirs (v1 controller name -> directory)."""
    if "cpuacct" in dirs or "cpu" in dirs:
        data["cpu"] = _cpu(dirs.get("cpuacct"), dirs.get("cpu"))
    if "cpuset" in dirs:
        data["cpuset"] = _cpuset(dirs["cpuset"])
    if "memory" in dirs:
        data["memory"] = _memory(dirs["memory"])
    if "pids" in dirs:
        current, limit = _number(dirs["pids"], "pids.current"), _number(dirs["pids"], "pids.max")
        data["pids"] = _nonzero(current=current, limit=0 if limit == U64_MAX else limit)
    if "blkio" in dirs:
        data["blkio"] = _blkio(dirs["blkio"])
    return data


def _cpu(acct: str | None, cpu: str | None) -> dict:
    usage: dict = {}
    if acct is not None:
        percpu = [int(v) for v in (_text(acct, "cpuacct.usage_percpu") or "").split()]
        stat = _keyed(acct, "cpuacct.stat")
        usage = _nonzero(total=_number(acct, "cpuacct.usage"))
        if percpu:
            usage["percpu"] = percpu
        usage["kernel"] = stat.get("system", 0) * NS // CLK_TCK
        usage["user"] = stat.get("user", 0) * NS // CLK_TCK
    stat = _keyed(cpu, "cpu.stat") if cpu is not None else {}
    throttling = _nonzero(periods=stat.get("nr_periods"),
                          throttledPeriods=stat.get("nr_throttled"),
                          throttledTime=stat.get("throttled_time"))
    return {"usage": usage, "throttling": throttling}


def _cpuset(d: str) -> dict:
    out: dict = {}
    for key in ("cpus", "mems"):
        text = (_text(d, f"cpuset.{key}") or "").strip()
        if text:
            out[key] = sorted(host.parse_list(text))
    for name in CPUSET_FIELDS:
        out[name] = _number(d, f"cpuset.{name}") or 0
    return out


def _memory(d: str) -> dict:
    def entry(prefix: str) -> dict:
        limit = _number(d, f"{prefix}limit_in_bytes")
        return {"limit": limit or 0,
                **_nonzero(usage=_number(d, f"{prefix}usage_in_bytes"),
                           max=_number(d, f"{prefix}max_usage_in_bytes")),
                "failcnt": _number(d, f"{prefix}failcnt") or 0}

    raw = _keyed(d, "memory.stat")
    out = {**_nonzero(cache=raw.get("cache")), "usage": entry("memory."),
           "swap": entry("memory.memsw."), "kernel": entry("memory.kmem."),
           "kernelTCP": entry("memory.kmem.tcp.")}
    if raw:
        out["raw"] = raw
    return out


def _blkio(d: str) -> dict:
    # runc 1.1's order: the BFQ (or CFQ) scheduler's recursive counters when they
    # hold anything, else the throttling layer's
    names = {"ioServiceBytesRecursive": "io_service_bytes_recursive",
             "ioServicedRecursive": "io_serviced_recursive"}
    for prefix in ("blkio.bfq.", "blkio.", "blkio.throttle."):
        tables = {key: _blkio_table(d, prefix + file) for key, file in names.items()}
        if any(tables.values()) or prefix == "blkio.throttle.":
            return {k: v for k, v in tables.items() if v}
    return {}


def _blkio_table(d: str, name: str) -> list[dict]:
    out = []
    for line in (_text(d, name) or "").splitlines():
        cols = line.split()
        if len(cols) != 3 or ":" not in cols[0]:
            continue  # the "Total N" line
        major, _, minor = cols[0].partition(":")
        out.append(_nonzero(major=int(major), minor=int(minor)) | {"op": cols[1]}
                   | _nonzero(value=int(cols[2])))
    return out


def oom_kills(memory_dir: str) -> int:
    """How many processes the OOM killer killed in a v1 memory cgroup (memory.oom_control's
    oom_kill line, kernel 4.13 and later)."""
    for line in (_text(memory_dir, "memory.oom_control") or "").splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0
