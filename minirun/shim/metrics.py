"""runc's `events --stats` data -> containerd's cgroups v1 Metrics message (what
`ctr task metrics` decodes for io.containerd.cgroups.v1.Metrics)."""

from __future__ import annotations

from minirun.shim.proto import cgroups_v1_metrics_pb2 as m

MEMORY_RAW = ("rss", "rss_huge", "mapped_file", "dirty", "writeback", "pgpgin", "pgpgout",
              "pgfault", "pgmajfault", "inactive_anon", "active_anon", "inactive_file",
              "active_file", "unevictable", "hierarchical_memory_limit",
              "hierarchical_memsw_limit", "total_cache", "total_rss", "total_rss_huge",
              "total_mapped_file", "total_dirty", "total_writeback", "total_pgpgin",
              "total_pgpgout", "total_pgfault", "total_pgmajfault", "total_inactive_anon",
              "total_active_anon", "total_inactive_file", "total_active_file",
              "total_unevictable")
# memory.stat key -> MemoryStat field where the names differ
RENAMED = {"pgpgin": "pg_pg_in", "pgpgout": "pg_pg_out", "pgfault": "pg_fault",
           "pgmajfault": "pg_maj_fault", "hierarchical_memsw_limit": "hierarchical_swap_limit",
           "total_pgpgin": "total_pg_pg_in", "total_pgpgout": "total_pg_pg_out",
           "total_pgfault": "total_pg_fault", "total_pgmajfault": "total_pg_maj_fault"}


def _entry(d: dict | None) -> m.MemoryEntry:
    d = d or {}
    return m.MemoryEntry(limit=d.get("limit", 0), usage=d.get("usage", 0), max=d.get("max", 0),
                         failcnt=d.get("failcnt", 0))


def v1(data: dict) -> m.Metrics:
    out = m.Metrics()
    pids = data.get("pids") or {}
    out.pids.current, out.pids.limit = pids.get("current", 0), pids.get("limit", 0)
    cpu = data.get("cpu") or {}
    usage, thr = cpu.get("usage") or {}, cpu.get("throttling") or {}
    out.cpu.usage.total = usage.get("total", 0)
    out.cpu.usage.kernel = usage.get("kernel", 0)
    out.cpu.usage.user = usage.get("user", 0)
    out.cpu.usage.per_cpu.extend(usage.get("percpu") or [])
    out.cpu.throttling.periods = thr.get("periods", 0)
    out.cpu.throttling.throttled_periods = thr.get("throttledPeriods", 0)
    out.cpu.throttling.throttled_time = thr.get("throttledTime", 0)
    mem = data.get("memory") or {}
    raw = mem.get("raw") or {}
    out.memory.cache = mem.get("cache", 0)
    for key in MEMORY_RAW:
        if key in raw:
            setattr(out.memory, RENAMED.get(key, key), max(0, raw[key]))
    out.memory.usage.CopyFrom(_entry(mem.get("usage")))
    out.memory.swap.CopyFrom(_entry(mem.get("swap")))
    out.memory.kernel.CopyFrom(_entry(mem.get("kernel")))
    out.memory.kernel_tcp.CopyFrom(_entry(mem.get("kernelTCP")))
    for key, field in (("ioServiceBytesRecursive", "io_service_bytes_recursive"),
                       ("ioServicedRecursive", "io_serviced_recursive")):
        for e in (data.get("blkio") or {}).get(key) or []:
            getattr(out.blkio, field).add(op=e.get("op", ""), major=e.get("major", 0),
                                          minor=e.get("minor", 0), value=e.get("value", 0))
    for size, h in sorted((data.get("hugetlb") or {}).items()):
        out.hugetlb.add(pagesize=size, usage=h.get("usage", 0), max=h.get("max", 0),
                        failcnt=h.get("failcnt", 0))
    return out
