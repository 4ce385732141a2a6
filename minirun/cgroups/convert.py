"""linux.resources → the cgroup v2 files to write, with runc's conversions of the spec's
v1-style numbers (libcontainer/cgroups/fs2 and cgroups/utils.go). Pure functions: no I/O.

plan() expects resources that validate_resources() accepted.
"""

from __future__ import annotations

from minirun.lite.record import record

R = "linux.resources"
THROTTLES = (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
             ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops"))
DEFAULT_CPU_PERIOD = 100000  # µs, the kernel's default


class Write(record("Write", "file value field kind alt", defaults=("", ""))):
    """One value to write to one file of the container's cgroup.

    kind tells apply() about the few writes that need more than a write:
    "bfq" / "bfq-device": io.bfq.weight when the BFQ scheduler takes it (per device:
    when it takes per-device weights), else io.weight with `alt`;
    "swap": skipped when the kernel has no swap accounting and the value lifts the limit;
    "burst": retried after cpu.max if the kernel refuses it before;
    "rsvd": skipped on kernels without hugetlb reservation files;
    "unified": a raw key: the file must already exist.
    """

    __slots__ = ()  # a plain tuple: dataclasses would cost ~5 ms of imports per create

    @property
    def controller(self) -> str:
        return self.file.split(".", 1)[0]


# --------------------------------------------------------------------------
# runc's conversions
# --------------------------------------------------------------------------


def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] → cpu.weight [1, 10000] (runc's linear map); 0 stays unset."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] → io.weight [1, 10000] (runc's linear map)."""
    if weight == 0:
        return 0
    return 1 + ((weight - 10) * 9999) // 990


def swap_to_v2(swap: int, limit: int) -> int:
    """memory.swap (memory+swap, as in v1) → memory.swap.max (swap alone); -1 is max,
    0 unset. ValueError with runc's reasons for the impossible combinations."""
    if limit == -1 and swap == 0:
        return -1  # unlimited memory and no word on swap: unlimited swap too
    if swap in (-1, 0):
        return swap
    if limit == -1:
        return swap
    if limit == 0:
        raise ValueError("a swap limit needs a memory limit (swap counts memory+swap)")
    if limit < 0:
        raise ValueError(f"invalid memory limit {limit}")
    if swap < limit:
        raise ValueError(f"must be at least the memory limit ({limit}): "
                         "it counts memory+swap, as in cgroup v1")
    return swap - limit


def num_to_str(value: int) -> str:
    """runc's numToStr for .max/.low files: 0 → "" (leave alone), -1 → "max"."""
    if value == 0:
        return ""
    return "max" if value == -1 else str(value)


def cpu_max(quota: int, period: int) -> str:
    """cpu.cfs_quota_us/period_us → cpu.max "$QUOTA $PERIOD" (quota ≤ 0: "max")."""
    return f"{quota if quota > 0 else 'max'} {period or DEFAULT_CPU_PERIOD}"


# --------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------


def plan(res: dict) -> list[Write]:
    """Every write the resources ask for, in the order runc makes them."""
    return (_memory(res.get("memory") or {}) + _cpu(res.get("cpu") or {})
            + _pids(res.get("pids") or {}) + _io(res.get("blockIO") or {})
            + _hugetlb(res.get("hugepageLimits") or []) + _rdma(res.get("rdma") or {})
            + _unified(res.get("unified") or {}))


def needed_controllers(res: dict) -> set[str]:
    """The cgroup v2 controllers the resources' files belong to."""
    return {w.controller for w in plan(res)} - {"cgroup"}


def _memory(mem: dict) -> list[Write]:
    f = f"{R}.memory"
    limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
    out = []
    swap_max = swap_to_v2(swap, limit)
    text = num_to_str(swap_max)
    if not text and swap > 0:
        text = "0"  # swap == limit: no swap at all
    if text:
        out.append(Write("memory.swap.max", text, f"{f}.swap", "swap"))
    if text := num_to_str(limit):
        out.append(Write("memory.max", text, f"{f}.limit"))
    if text := num_to_str(mem.get("reservation") or 0):
        out.append(Write("memory.low", text, f"{f}.reservation"))
    return out


def _cpu(cpu: dict) -> list[Write]:
    f = f"{R}.cpu"
    out = []
    if cpu.get("idle") is not None:
        out.append(Write("cpu.idle", str(cpu["idle"]), f"{f}.idle"))
    if weight := shares_to_weight(cpu.get("shares") or 0):
        out.append(Write("cpu.weight", str(weight), f"{f}.shares"))
    if cpu.get("burst") is not None:
        out.append(Write("cpu.max.burst", str(cpu["burst"]), f"{f}.burst", "burst"))
    quota, period = cpu.get("quota") or 0, cpu.get("period") or 0
    if quota or period:
        out.append(Write("cpu.max", cpu_max(quota, period), f"{f}.quota"))
    if cpu.get("cpus"):
        out.append(Write("cpuset.cpus", cpu["cpus"], f"{f}.cpus"))
    if cpu.get("mems"):
        out.append(Write("cpuset.mems", cpu["mems"], f"{f}.mems"))
    return out


def _pids(pids: dict) -> list[Write]:
    text = num_to_str(pids.get("limit") or 0)
    return [Write("pids.max", text, f"{R}.pids.limit")] if text else []


def _io(blkio: dict) -> list[Write]:
    f = f"{R}.blockIO"
    out = []
    if weight := blkio.get("weight") or 0:
        out.append(Write("io.bfq.weight", str(weight), f"{f}.weight", "bfq",
                         str(blkio_to_io_weight(weight))))
    for i, dev in enumerate(blkio.get("weightDevice") or []):
        if weight := dev.get("weight") or 0:
            node = f"{dev['major']}:{dev['minor']}"
            out.append(Write("io.bfq.weight", f"{node} {weight}", f"{f}.weightDevice[{i}]",
                             "bfq-device", f"{node} {blkio_to_io_weight(weight)}"))
    for key, name in THROTTLES:
        for i, dev in enumerate(blkio.get(key) or []):
            out.append(Write("io.max", f"{dev['major']}:{dev['minor']} {name}={dev['rate']}",
                             f"{f}.{key}[{i}]"))
    return out


def _hugetlb(limits: list) -> list[Write]:
    out = []
    for i, limit in enumerate(limits):
        where, value = f"{R}.hugepageLimits[{i}]", str(limit["limit"])
        out.append(Write(f"hugetlb.{limit['pageSize']}.max", value, where))
        out.append(Write(f"hugetlb.{limit['pageSize']}.rsvd.max", value, where, "rsvd"))
    return out


def _rdma(rdma: dict) -> list[Write]:
    out = []
    for device, limit in rdma.items():
        parts = [device]
        if limit.get("hcaHandles") is not None:
            parts.append(f"hca_handle={limit['hcaHandles']}")
        if limit.get("hcaObjects") is not None:
            parts.append(f"hca_object={limit['hcaObjects']}")
        if len(parts) > 1:
            out.append(Write("rdma.max", " ".join(parts), f"{R}.rdma.{device}"))
    return out


def _unified(unified: dict) -> list[Write]:
    return [Write(key, value, f"{R}.unified.{key}", "unified")
            for key, value in unified.items()]
