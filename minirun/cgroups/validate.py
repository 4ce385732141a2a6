"""validate_resources: linux.resources checked against the spec, runc's rules and what
this host's cgroup v2 hierarchy offers, before anything is created. Every error is a
ConfigError naming the field (linux.resources.memory.limit, ...)."""

from __future__ import annotations

from minirun.cgroups import convert, devices, host
from minirun.errors import ConfigError

R = "linux.resources"
I64_MAX = 2**63 - 1
U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1
MAX_SHARES = 262144
MIN_SHARES = 2
MIN_QUOTA = 1000  # µs: the kernel refuses less
PERIOD_RANGE = (1000, 1000000)  # µs
KNOWN = {
    "memory": {"limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness",
               "disableOOMKiller", "useHierarchy", "checkBeforeUpdate"},
    "cpu": {"shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod",
            "cpus", "mems", "idle"},
    "pids": {"limit"},
    "blockIO": {"weight", "leafWeight", "weightDevice", "throttleReadBpsDevice",
                "throttleWriteBpsDevice", "throttleReadIOPSDevice", "throttleWriteIOPSDevice"},
}
# files of the cgroup that the runtime manages itself
RESERVED = {"cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "cgroup.kill",
            "cgroup.freeze", "cgroup.type", "cgroup.events", "cgroup.controllers"}
UNIFIED_KEY = r"[a-z_]+\.[A-Za-z0-9_.]+"
LIST_RE = r"\d+(-\d+)?(,\d+(-\d+)?)*"
RDMA_DEVICE = r"[^\s/]+"


def _fullmatch(pattern: str, text: str) -> bool:
    """`re` imported only when a config has a field to check with it (it costs every
    run 5 ms of imports otherwise)."""
    import re

    return re.fullmatch(pattern, text) is not None


def validate_resources(res: dict, mount: str | None) -> None:
    """Refuse what cannot be enforced exactly, with the field and the reason (mount None:
    a host with cgroup v1 only, where every limit goes to its v1 hierarchy)."""
    if not isinstance(res, dict):
        raise ConfigError(R, "must be an object")
    _check_unknown_sections(res)
    from minirun.cgroups import v1

    routed = v1.targets(res, mount)
    _memory(_section(res, "memory"), "memory" in routed)
    _cpu(_section(res, "cpu"), "cpu" in routed)
    _pids(_section(res, "pids"))
    _block_io(_section(res, "blockIO"))
    _hugepages(res.get("hugepageLimits"))
    _rdma(res.get("rdma"))
    _unified(res.get("unified"))
    _network(res.get("network"), routed)
    _availability(v1.without(res, routed), mount)
    _host_fit(res)
    devices.reduce_rules(devices.with_defaults(devices.parse_rules(res.get("devices"))))


# --------------------------------------------------------------------------
# Shapes and values
# --------------------------------------------------------------------------


def _check_unknown_sections(res: dict) -> None:
    known = set(KNOWN) | {"devices", "hugepageLimits", "rdma", "unified", "network"}
    for key in res:
        if key not in known:
            raise ConfigError(f"{R}.{key}", f"unknown resource (known: {', '.join(sorted(known))})")


def _section(res: dict, name: str) -> dict:
    value = res.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{R}.{name}", "must be an object")
    for key in value:
        if key not in KNOWN[name]:
            raise ConfigError(f"{R}.{name}.{key}",
                              f"unknown field (known: {', '.join(sorted(KNOWN[name]))})")
    return value


def _int(value: object, where: str, lo: int, hi: int, what: str = "") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(where, f"{value!r}: must be an integer")
    if not lo <= value <= hi:
        raise ConfigError(where, f"{value}: out of range ({what or f'{lo} to {hi}'})")
    return value


def _limit(value: object, where: str) -> None:
    """A byte count in runc's style: -1 for unlimited, 0 for unset, else positive."""
    _int(value, where, -1, I64_MAX, "-1 for unlimited, or a number of bytes")


def _memory(mem: dict, in_v1: bool = False) -> None:
    f = f"{R}.memory"
    if in_v1:  # cgroup v1 (hybrid host): swappiness and oom_control have a meaning there
        for key in ("limit", "reservation", "swap"):
            _limit(mem.get(key), f"{f}.{key}")
        _int(mem.get("swappiness"), f"{f}.swappiness", 0, 100)
        for key in ("kernel", "kernelTCP"):
            if mem.get(key):
                raise ConfigError(f"{f}.{key}", "kernel memory limits are deprecated and "
                                  "ignored by the kernel: remove it")
        return
    for key in ("limit", "reservation", "swap"):
        _limit(mem.get(key), f"{f}.{key}")
    for key in ("kernel", "kernelTCP"):
        if mem.get(key):
            raise ConfigError(f"{f}.{key}", "kernel memory limits do not exist on cgroup v2 "
                              "(kernel memory is counted in memory.max): remove it")
    if mem.get("swappiness") is not None:
        raise ConfigError(f"{f}.swappiness", "cgroup v2 has no per-cgroup swappiness: "
                          "remove it")
    if mem.get("disableOOMKiller"):
        raise ConfigError(f"{f}.disableOOMKiller", "the OOM killer cannot be disabled on "
                          "cgroup v2 (there is no memory.oom_control)")
    if mem.get("useHierarchy") is False:
        raise ConfigError(f"{f}.useHierarchy", "cgroup v2 is always hierarchical")
    try:
        convert.swap_to_v2(mem.get("swap") or 0, mem.get("limit") or 0)
    except ValueError as e:
        raise ConfigError(f"{f}.swap", str(e)) from None


def _cpu(cpu: dict, in_v1: bool = False) -> None:
    f = f"{R}.cpu"
    if in_v1:
        for key in ("burst", "idle"):
            if cpu.get(key):
                raise ConfigError(f"{f}.{key}", "has no meaning in cgroup v1, where this "
                                  "host's cpu controller is bound")
    shares = _int(cpu.get("shares"), f"{f}.shares", 0, MAX_SHARES)
    if shares and shares < MIN_SHARES:
        raise ConfigError(f"{f}.shares", f"{shares}: out of range ({MIN_SHARES} to {MAX_SHARES})")
    quota = _int(cpu.get("quota"), f"{f}.quota", -1, I64_MAX) or 0
    if 0 < quota < MIN_QUOTA:
        raise ConfigError(f"{f}.quota", f"{quota}: at least {MIN_QUOTA} µs per period "
                          "(or -1 for unlimited)")
    period = _int(cpu.get("period"), f"{f}.period", 0, PERIOD_RANGE[1])
    if period and period < PERIOD_RANGE[0]:
        raise ConfigError(f"{f}.period", f"{period}: out of range "
                          f"({PERIOD_RANGE[0]} to {PERIOD_RANGE[1]} µs)")
    burst = _int(cpu.get("burst"), f"{f}.burst", 0, I64_MAX)
    if burst and (quota <= 0 or burst > quota):
        raise ConfigError(f"{f}.burst", f"{burst}: must not exceed the quota "
                          f"({quota if quota > 0 else 'unlimited'})")
    idle = _int(cpu.get("idle"), f"{f}.idle", 0, 1)
    if idle and shares:
        raise ConfigError(f"{f}.idle", "an idle cgroup has no weight: drop cpu.shares or idle")
    for key in ("realtimeRuntime", "realtimePeriod"):
        if cpu.get(key) and not in_v1:
            raise ConfigError(f"{f}.{key}", "real-time CPU scheduling limits do not exist "
                              "on cgroup v2")
    for key in ("cpus", "mems"):
        value = cpu.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{f}.{key}", "must be a string such as \"0-3,6\"")
        if value and not _fullmatch(LIST_RE, value.replace(" ", "")):
            raise ConfigError(f"{f}.{key}", f"{value!r}: not a list such as \"0-3,6\"")


def _pids(pids: dict) -> None:
    _int(pids.get("limit"), f"{R}.pids.limit", -1, I64_MAX, "-1 for unlimited, or a count")


def _block_io(blkio: dict) -> None:
    f = f"{R}.blockIO"
    weight = _int(blkio.get("weight"), f"{f}.weight", 0, 1000)
    if weight and weight < 10:
        raise ConfigError(f"{f}.weight", f"{weight}: out of range (10 to 1000)")
    if blkio.get("leafWeight"):
        raise ConfigError(f"{f}.leafWeight", "cgroup v2 has no leaf weight")
    for i, dev in enumerate(_list(blkio.get("weightDevice"), f"{f}.weightDevice")):
        where = f"{f}.weightDevice[{i}]"
        _device(dev, where)
        if dev.get("leafWeight"):
            raise ConfigError(f"{where}.leafWeight", "cgroup v2 has no leaf weight")
        weight = _int(dev.get("weight"), f"{where}.weight", 0, 1000)
        if weight is not None and weight < 10:
            raise ConfigError(f"{where}.weight", f"{weight}: out of range (10 to 1000)")
    for key, _ in convert.THROTTLES:
        for i, dev in enumerate(_list(blkio.get(key), f"{f}.{key}")):
            _device(dev, f"{f}.{key}[{i}]")
            if dev.get("rate") is None:
                raise ConfigError(f"{f}.{key}[{i}].rate", "required (per second)")
            _int(dev.get("rate"), f"{f}.{key}[{i}].rate", 0, U64_MAX)


def _list(value: object, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(where, "must be an array")
    return value


def _device(dev: object, where: str) -> None:
    if not isinstance(dev, dict):
        raise ConfigError(where, "must be an object with major and minor")
    for key in ("major", "minor"):
        if dev.get(key) is None:
            raise ConfigError(f"{where}.{key}", "required")
        _int(dev.get(key), f"{where}.{key}", 0, U32_MAX)


def _hugepages(limits: object) -> None:
    for i, limit in enumerate(_list(limits, f"{R}.hugepageLimits")):
        where = f"{R}.hugepageLimits[{i}]"
        if not isinstance(limit, dict):
            raise ConfigError(where, "must be an object {pageSize, limit}")
        size = limit.get("pageSize")
        if not isinstance(size, str) or not _fullmatch(r"\d+[KMG]B", size):
            raise ConfigError(f"{where}.pageSize", f"{size!r}: must be a size such as \"2MB\"")
        if limit.get("limit") is None:
            raise ConfigError(f"{where}.limit", "required (bytes)")
        _int(limit.get("limit"), f"{where}.limit", 0, U64_MAX)


def _rdma(rdma: object) -> None:
    if rdma is None:
        return
    if not isinstance(rdma, dict):
        raise ConfigError(f"{R}.rdma", "must be an object keyed by device name")
    for device, limit in rdma.items():
        where = f"{R}.rdma.{device}"
        if not _fullmatch(RDMA_DEVICE, device):
            raise ConfigError(where, "not a device name")
        if not isinstance(limit, dict):
            raise ConfigError(where, "must be an object {hcaHandles, hcaObjects}")
        for key in ("hcaHandles", "hcaObjects"):
            _int(limit.get(key), f"{where}.{key}", 0, U32_MAX)


def _unified(unified: object) -> None:
    if unified is None:
        return
    if not isinstance(unified, dict):
        raise ConfigError(f"{R}.unified", "must be an object of file name → value")
    for key, value in unified.items():
        where = f"{R}.unified.{key}"
        if "/" in key or ".." in key or not _fullmatch(UNIFIED_KEY, key):
            raise ConfigError(where, "not a cgroup file name (controller.parameter, no "
                              "'/' or '..')")
        if key in RESERVED:
            raise ConfigError(where, "managed by the runtime, cannot be set")
        if not isinstance(value, str):
            raise ConfigError(where, "the value must be a string")


def _network(network: object, routed: set[str]) -> None:
    """net_cls and net_prio exist in cgroup v1 only: applied where their v1 hierarchy is
    mounted, refused elsewhere."""
    if not network:
        return
    if not isinstance(network, dict):
        raise ConfigError(f"{R}.network", "must be an object")
    class_id = network.get("classID")
    if class_id is not None:
        if not isinstance(class_id, int) or isinstance(class_id, bool) \
                or not 0 <= class_id < 2**32:
            raise ConfigError(f"{R}.network.classID", "must be an integer from 0 to 2^32-1")
        if "net_cls" not in routed:
            raise ConfigError(f"{R}.network.classID", _v1_only("net_cls"))
    prios = network.get("priorities")
    if prios:
        for i, p in enumerate(_list(prios, f"{R}.network.priorities")):
            where = f"{R}.network.priorities[{i}]"
            name, prio = (p.get("name"), p.get("priority")) if isinstance(p, dict) else (0, 0)
            if not isinstance(name, str) or not name or any(c.isspace() for c in name):
                raise ConfigError(f"{where}.name", "must be an interface name")
            if not isinstance(prio, int) or isinstance(prio, bool) or not 0 <= prio < 2**32:
                raise ConfigError(f"{where}.priority", "must be an integer from 0 to 2^32-1")
        if "net_prio" not in routed:
            raise ConfigError(f"{R}.network.priorities", _v1_only("net_prio"))


def _v1_only(name: str) -> str:
    return (f"{name} is a cgroup v1 controller (cgroup v2 has no equivalent), and no v1 "
            f"{name} hierarchy is mounted on this host")


# --------------------------------------------------------------------------
# What this host offers
# --------------------------------------------------------------------------


def _availability(res: dict, mount: str | None) -> None:
    for write in convert.plan(res):
        if write.controller == "cgroup":
            continue
        if mount is None:
            raise ConfigError(_section_of(write.field), "needs cgroup v2, and this host has "
                              "cgroup v1 only (no cgroup2 filesystem mounted)")
        problem = host.controller_problem(write.controller, mount)
        if problem:
            raise ConfigError(_section_of(write.field), problem)


def _section_of(field: str) -> str:
    parts = field.split(".")
    if parts[2] == "unified":
        return field
    return ".".join(parts[:3]).split("[")[0]


def _host_fit(res: dict) -> None:
    cpu = res.get("cpu") or {}
    for key, have in (("cpus", host.host_cpus), ("mems", host.host_mems)):
        if cpu.get(key):
            wanted, present = host.parse_list(cpu[key].replace(" ", "")), have()
            missing = sorted(wanted - present)
            if missing:
                what = "CPUs" if key == "cpus" else "memory nodes"
                raise ConfigError(f"{R}.cpu.{key}", f"this host has no {what} "
                                  f"{_ranges(missing)} (it has {_ranges(sorted(present))})")
    sizes = host.hugepage_sizes()
    for i, limit in enumerate(res.get("hugepageLimits") or []):
        if limit["pageSize"] not in sizes:
            raise ConfigError(f"{R}.hugepageLimits[{i}].pageSize",
                              f"{limit['pageSize']}: not a huge page size of this host "
                              f"(it has {', '.join(sizes) or 'none'})")


def _ranges(numbers: list[int]) -> str:
    out, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            out.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ",".join(out)
