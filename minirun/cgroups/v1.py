"""Limits in cgroup v1 hierarchies, for hosts where the controller is bound to v1 (hybrid
hosts: many Ubuntu 20.04, Debian 10, RHEL 8 and WSL machines; this project's own).

cgroup2 stays the container's home (tracking, freezer, kill --all, ps, the device
filter); a limit whose controller cgroup2 lacks here goes to that controller's v1
hierarchy with runc's v1 semantics:

    cpu      cpu.shares, cpu.cfs_quota_us / cpu.cfs_period_us, cpu.rt_runtime_us /
             cpu.rt_period_us
    cpuset   cpuset.cpus, cpuset.mems (a new cpuset cgroup gets its parent's values
             first, as v1 requires before any task may join)
    pids     pids.max
    blkio    blkio.weight, blkio.weight_device, blkio.throttle.*
    memory   memory.limit_in_bytes, memory.soft_limit_in_bytes,
             memory.memsw.limit_in_bytes, memory.swappiness, memory.oom_control
    net_cls  net_cls.classid; net_prio: net_prio.ifpriomap (v1 only: no cgroup2 equivalent)
    hugetlb  hugetlb.<size>.limit_in_bytes

Placement as runc's: under the caller's own cgroup in each hierarchy (no cgroupsPath:
`<own>/<id>`; an absolute cgroupsPath as is; a relative one below `<own>`). The container
joins only the hierarchies whose controllers its config limits.
"""

from __future__ import annotations

import os

from minirun.errors import ConfigError, MinirunError

R = "linux.resources"


def mounts() -> dict[str, str]:
    """v1 controller name -> its hierarchy's mount point."""
    out: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            tail = right.split()
            if len(tail) >= 3 and tail[0] == "cgroup":
                point = left.split()[4]
                for opt in tail[2].split(","):
                    if opt in KNOWN:
                        out.setdefault(opt, point)
    return out


KNOWN = {"cpu", "cpuacct", "cpuset", "pids", "blkio", "memory", "hugetlb", "net_cls",
         "net_prio", "devices", "freezer"}


def own_paths() -> dict[str, str]:
    """v1 controller -> this process's cgroup path in that hierarchy."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(","):
                if name in KNOWN:
                    out[name] = path or "/"
    return out


def _bytes(v: int) -> str:
    return "-1" if v < 0 else str(v)


def plan(res: dict, controllers: set[str]) -> list[tuple[str, str, str, str]]:
    """(v1 controller, file, value, config field) for the sections bound to v1."""
    out: list[tuple[str, str, str, str]] = []
    cpu = res.get("cpu") or {}
    if "cpu" in controllers:
        f = f"{R}.cpu"
        if cpu.get("shares"):
            out.append(("cpu", "cpu.shares", str(cpu["shares"]), f"{f}.shares"))
        if cpu.get("period"):
            out.append(("cpu", "cpu.cfs_period_us", str(cpu["period"]), f"{f}.period"))
        if cpu.get("quota"):
            out.append(("cpu", "cpu.cfs_quota_us", str(cpu["quota"]), f"{f}.quota"))
        if cpu.get("realtimePeriod"):
            out.append(("cpu", "cpu.rt_period_us", str(cpu["realtimePeriod"]),
                        f"{f}.realtimePeriod"))
        if cpu.get("realtimeRuntime"):
            out.append(("cpu", "cpu.rt_runtime_us", str(cpu["realtimeRuntime"]),
                        f"{f}.realtimeRuntime"))
    if "cpuset" in controllers:
        if cpu.get("cpus"):
            out.append(("cpuset", "cpuset.cpus", cpu["cpus"], f"{R}.cpu.cpus"))
        if cpu.get("mems"):
            out.append(("cpuset", "cpuset.mems", cpu["mems"], f"{R}.cpu.mems"))
    pids = res.get("pids") or {}
    if "pids" in controllers and pids.get("limit") is not None:
        limit = pids["limit"]
        out.append(("pids", "pids.max", "max" if limit <= 0 else str(limit),
                    f"{R}.pids.limit"))
    blkio = res.get("blockIO") or {}
    if "io" in controllers:
        if blkio.get("weight"):
            out.append(("blkio", "blkio.weight", str(blkio["weight"]), f"{R}.blockIO.weight"))
        for d in blkio.get("weightDevice") or []:
            if d.get("weight"):
                out.append(("blkio", "blkio.weight_device",
                            f"{d['major']}:{d['minor']} {d['weight']}",
                            f"{R}.blockIO.weightDevice"))
        for key, file in (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
                          ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
                          ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
                          ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device")):
            for d in blkio.get(key) or []:
                out.append(("blkio", file, f"{d['major']}:{d['minor']} {d['rate']}",
                            f"{R}.blockIO.{key}"))
    mem = res.get("memory") or {}
    if "memory" in controllers:
        f = f"{R}.memory"
        if mem.get("limit") is not None:
            out.append(("memory", "memory.limit_in_bytes", _bytes(mem["limit"]), f"{f}.limit"))
        if mem.get("reservation") is not None:
            out.append(("memory", "memory.soft_limit_in_bytes", _bytes(mem["reservation"]),
                        f"{f}.reservation"))
        if mem.get("swap") is not None:
            out.append(("memory", "memory.memsw.limit_in_bytes", _bytes(mem["swap"]),
                        f"{f}.swap"))
        if mem.get("swappiness") is not None:
            out.append(("memory", "memory.swappiness", str(mem["swappiness"]),
                        f"{f}.swappiness"))
        if mem.get("disableOOMKiller"):
            out.append(("memory", "memory.oom_control", "1", f"{f}.disableOOMKiller"))
    if "hugetlb" in controllers:
        for i, lim in enumerate(res.get("hugepageLimits") or []):
            out.append(("hugetlb", f"hugetlb.{lim['pageSize']}.limit_in_bytes",
                        str(lim["limit"]), f"{R}.hugepageLimits[{i}]"))
    net = res.get("network") or {}
    if "net_cls" in controllers and net.get("classID") is not None:
        out.append(("net_cls", "net_cls.classid", str(net["classID"]), f"{R}.network.classID"))
    if "net_prio" in controllers:
        for i, p in enumerate(net.get("priorities") or []):
            out.append(("net_prio", "net_prio.ifpriomap", f"{p['name']} {p['priority']}",
                        f"{R}.network.priorities[{i}]"))
    return out


class V1Cgroups:
    """The container's directories in the v1 hierarchies it needs."""

    def __init__(self, dirs: dict[str, str]) -> None:
        self.dirs = dirs  # v1 controller -> directory
        self.made: list[str] = []

    def record(self) -> dict[str, str]:
        return dict(self.dirs)

    def create(self, writes: list[tuple[str, str, str, str]]) -> None:
        try:
            for ctrl, d in self.dirs.items():
                self._mkdir(d)
                if ctrl == "cpuset":
                    _inherit_cpuset(d)
            for ctrl, file, value, field in writes:
                self._write(self.dirs[ctrl], file, value, field)
        except BaseException:
            self.destroy()
            raise

    def _mkdir(self, d: str) -> None:
        missing = []
        p = d
        while not os.path.isdir(p):
            missing.append(p)
            p = os.path.dirname(p)
        for p in reversed(missing):
            try:
                os.mkdir(p)
                self.made.append(p)
            except FileExistsError:
                pass
            except OSError as e:
                raise MinirunError(f"cgroups (v1): mkdir {p}: {os.strerror(e.errno or 0)}") \
                    from None

    @staticmethod
    def _write(d: str, file: str, value: str, field: str) -> None:
        try:
            fd = os.open(os.path.join(d, file), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise ConfigError(field, f"cgroup v1: writing {value!r} to {d}/{file}: "
                                     f"{os.strerror(e.errno or 0)}") from None

    def open_procs(self) -> list[int]:
        return [os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
                for d in dict.fromkeys(self.dirs.values())]

    def update(self, writes: list[tuple[str, str, str, str]]) -> None:
        for ctrl, file, value, field in writes:
            if ctrl not in self.dirs:
                raise ConfigError(field, "the container has no cgroup in the v1 "
                                         f"{ctrl} hierarchy (no such limit at create)")
            self._write(self.dirs[ctrl], file, value, field)

    def destroy(self) -> None:
        """rmdir the leaf directories (once their processes are gone) and the parents
        create made."""
        import time

        for d in [*dict.fromkeys(self.dirs.values()), *reversed(self.made)]:
            for _ in range(100):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != 16:  # EBUSY: tasks still leaving
                        break
                    time.sleep(0.02)


def _inherit_cpuset(d: str) -> None:
    """v1 refuses tasks in a cpuset whose cpus or mems are empty: copy the parent's."""
    parent = os.path.dirname(d)
    for name in ("cpuset.cpus", "cpuset.mems"):
        with open(os.path.join(d, name)) as f:
            if f.read().strip():
                continue
        with open(os.path.join(parent, name)) as f:
            value = f.read().strip()
        with open(os.path.join(d, name), "w") as f:
            f.write(value)


# v2 controller name -> the v1 hierarchies its limits use. cpuacct goes with cpu (where
# it is a hierarchy of its own): `events --stats` reads the cpu usage there, as runc's.
HIERARCHIES = {"cpu": ["cpu", "cpuacct"], "cpuset": ["cpuset"], "pids": ["pids"],
               "io": ["blkio"], "memory": ["memory"], "net_cls": ["net_cls"],
               "net_prio": ["net_prio"], "hugetlb": ["hugetlb"]}


def for_container(cid: str, cgroups_path: str | None, controllers: set[str]) -> V1Cgroups:
    """The v1 directories of a container for the given v2-named controllers."""
    where = mounts()
    own = own_paths()
    dirs = {}
    for ctrl in sorted(controllers):
        for v1 in HIERARCHIES.get(ctrl, []):
            if v1 == "cpuacct" and (v1 not in where or where[v1] == where.get("cpu")):
                if v1 in where:
                    dirs[v1] = dirs["cpu"]  # co-mounted (cpu,cpuacct): the same directory
                continue
            if v1 not in where:
                raise ConfigError(f"{R}", f"the {ctrl} controller is bound to cgroup v1 on "
                                  f"this host, and no v1 {v1} hierarchy is mounted here")
            dirs[v1] = os.path.normpath(where[v1] + "/" + relative(own, v1, cid, cgroups_path))
    return V1Cgroups(dirs)


def relative(own: dict[str, str], v1: str, cid: str, cgroups_path: str | None) -> str:
    """The container's path in hierarchy v1 (runc's placement, see the module doc)."""
    base = own.get(v1, "/").rstrip("/")
    if not cgroups_path:
        rel = f"{base}/{cid}"
    elif cgroups_path.startswith("/"):
        rel = cgroups_path
    else:
        rel = f"{base}/{cgroups_path}"
    return os.path.normpath("/" + rel.lstrip("/"))


def every_hierarchy(cid: str, cgroups_path: str | None) -> tuple[V1Cgroups, dict[str, str]]:
    """A host with cgroup v1 only: the container's directories in every mounted v1
    hierarchy, as runc's v1 manager joins them all; and its path in each."""
    where, own = mounts(), own_paths()
    rels = {v1: relative(own, v1, cid, cgroups_path) for v1 in where}
    dirs = {v1: os.path.normpath(where[v1] + rels[v1]) for v1 in where}
    return V1Cgroups(dirs), rels


# v2 names minirun applies in v1 (net_cls and net_prio exist in v1 only)
V1_ROUTABLE = {"cpu", "cpuset", "pids", "io", "memory", "net_cls", "net_prio", "hugetlb"}
CPU_KEYS = ("shares", "quota", "period", "burst", "idle", "realtimeRuntime",
            "realtimePeriod")


def sections(res: dict) -> set[str]:
    """The v2 controllers the limits of linux.resources need."""
    out = set()
    cpu = _obj(res, "cpu")
    if any(cpu.get(k) for k in CPU_KEYS):
        out.add("cpu")
    if cpu.get("cpus") or cpu.get("mems"):
        out.add("cpuset")
    if _obj(res, "pids").get("limit") is not None:
        out.add("pids")
    if any(v for v in _obj(res, "blockIO").values()):
        out.add("io")
    mem = _obj(res, "memory")
    if any(v is not None for k, v in mem.items() if k not in ("checkBeforeUpdate",)):
        out.add("memory")
    if res.get("hugepageLimits"):
        out.add("hugetlb")
    net = _obj(res, "network")
    if net.get("classID") is not None:
        out.add("net_cls")
    if net.get("priorities"):
        out.add("net_prio")
    return out


def _obj(res: dict, key: str) -> dict:
    """A section of linux.resources; {} if it is not an object (validate refuses it then,
    naming the field)."""
    value = res.get(key)
    return value if isinstance(value, dict) else {}


def targets(res: dict, mount: str) -> set[str]:
    """Controllers whose limits go to v1: needed, not in cgroup2 here, bound to v1. The
    host is read only when the config limits something (not for runc's default spec)."""
    needed = sections(res) & V1_ROUTABLE
    if not needed:
        return set()
    from minirun.cgroups import host

    v2 = host.v2_controllers(mount) if mount else set()  # None: a host with v1 only
    if needed <= v2:
        return set()
    bound = host.v1_bound_controllers()
    return {c for c in needed if c not in v2 and c in bound}


def without(res: dict, routed: set[str]) -> dict:
    """linux.resources minus what goes to v1 (for the cgroup2 side)."""
    out = dict(res)
    if "cpu" in routed or "cpuset" in routed:
        cpu = dict(res.get("cpu") or {})
        for k in CPU_KEYS if "cpu" in routed else ():
            cpu.pop(k, None)
        for k in ("cpus", "mems") if "cpuset" in routed else ():
            cpu.pop(k, None)
        out["cpu"] = cpu
    for ctrl, key in (("pids", "pids"), ("io", "blockIO"), ("memory", "memory")):
        if ctrl in routed:
            out.pop(key, None)
    if routed & {"net_cls", "net_prio"}:
        out.pop("network", None)
    if "hugetlb" in routed:
        out.pop("hugepageLimits", None)
    return out
