#!/usr/bin/env python3
"""`make bench`'s one table: each figure of issue 11, minirun's and runc's value, the
ratio, the goal and whether it is met, from the JSON the benchmarks wrote:

    bench.json      tests/tools/bench.py --json-out      run, exec, lifecycles, phases
    netbench.json   tests/tools/netbench.py --json-out   --network bridge
    shimbench.json  tests/tools/shimbench.py --json-out  containerd's shim
    memmin.json     tests/vm/memmin.py --json            smallest memory.max (VM lane)

A missing file leaves its rows out (say which). Usage: bench_table.py DIR [MEMMIN_JSON]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def figure(name: str, ours: float | None, theirs: float | None, unit: str, goal: str,
           met: bool | None) -> tuple[str, ...]:
    def cell(v: float | None) -> str:
        return "-" if v is None else f"{v:g} {unit}".rstrip()

    ratio = f"{ours / theirs:.2f}x" if unit and ours is not None and theirs else "-"
    return (name, cell(ours), cell(theirs), ratio, goal,
            "-" if met is None else ("yes" if met else "NO"))


def bench_rows(b: dict) -> list[tuple[str, ...]]:
    rows = []
    mr, rc = b.get("minirun", {}), b.get("runc", {})
    if "median_s" in mr and "median_s" in rc:
        rows.append(figure("run /bin/true (median)", ms(mr["median_s"]), ms(rc["median_s"]),
                           "ms", "<= 1.0x runc", mr["median_s"] <= rc["median_s"]))
    ex = b.get("exec", {})
    if "minirun" in ex and "runc" in ex:
        m, r = ex["minirun"]["median_s"], ex["runc"]["median_s"]
        rows.append(figure("exec /bin/true (median)", ms(m), ms(r), "ms", "<= 1.0x runc",
                           m <= r))
    lives = b.get("lifecycles", {})
    if "minirun" in lives:
        m, r = lives["minirun"], lives.get("runc")
        rows.append(figure(f"{m['n']} lifecycles: went through", m["ok"],
                           r["ok"] if r else None, "", f"all {m['n']}, nothing left",
                           m["ok"] == m["n"] and not m["left"]))
        rows.append(figure("  left behind (state, cgroups)", len(m["left"]),
                           len(r["left"]) if r else None, "", "0", not m["left"]))
        rows.append(figure("  runtime's peak RSS", round(m["peak_rss_kib"] / 1024, 1),
                           round(r["peak_rss_kib"] / 1024, 1) if r else None, "MiB",
                           "reported", None))
    return rows


def net_rows(n: dict) -> list[tuple[str, ...]]:
    rows = []
    extra = n.get("extra of bridge over none")
    if isinstance(extra, dict):
        rows.append(figure("--network bridge over none (median)", extra["median_ms"], None,
                           "ms", "<= 30 ms", extra["median_ms"] <= 30))
    for key, value in n.items():
        if key.endswith("concurrent run -d --network bridge"):
            wall = float(value.split()[0])
            rows.append(figure(key.replace(" run -d --network bridge", " bridge run -d"),
                               wall, None, "ms", "<= 2000 ms", wall <= 2000))
    delete = n.get("delete, bridge over none")
    if isinstance(delete, dict):
        rows.append(figure("delete, bridge over none (median)", delete["median_ms"], None,
                           "ms", "no wait for the kernel", None))
    return rows


def shim_rows(s: dict) -> list[tuple[str, ...]]:
    ours, ref = s.get("minirun shim"), s.get("runc shim + runc")
    if not ours or not ref:
        return []
    per10 = "rss_kib_per_container_10"
    return [figure("ctr run --rm /bin/true, own shim (median)", ours["run_rm_ms"],
                   ref["run_rm_ms"], "ms", "<= 1.0x runc's route",
                   ours["run_rm_ms"] <= ref["run_rm_ms"]),
            figure("shim RSS per container at 10", round(ours[per10] / 1024, 1),
                   round(ref[per10] / 1024, 1), "MiB", "<= 4 MiB", ours[per10] <= 4096)]


def memmin_rows(m: dict) -> list[tuple[str, ...]]:
    found = {}
    for r in m.get("results", []):
        name = "runc" if "runc" in Path(r.get("runtime", "")).name else "minirun"
        found[name] = r.get("min_ok")
    if found.get("minirun") is None:
        return []
    ours, theirs = found["minirun"] // 1024, found.get("runc")
    return [figure("smallest memory.max for run /bin/true", ours,
                   theirs // 1024 if theirs else None, "KiB", "<= 256 KiB", ours <= 256)]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    folder = Path(argv[0])
    sources = [("bench.json", bench_rows), ("netbench.json", net_rows),
               ("shimbench.json", shim_rows)]
    memmin = Path(argv[1]) if len(argv) > 1 else folder / "memmin.json"
    rows: list[tuple[str, ...]] = [("figure", "minirun", "runc", "ratio", "goal", "met")]
    missing = []
    for path, to_rows in [*((folder / n, f) for n, f in sources), (memmin, memmin_rows)]:
        data = load(path)
        if data is None:
            missing.append(str(path))
        else:
            rows += to_rows(data)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print("issue 11's figures (make bench):")
    for r in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if missing:
        print(f"  (no results in {', '.join(missing)})")
    phases = (load(folder / "bench.json") or {}).get("phases_ms") or {}
    if phases:
        print("where one `minirun run` goes (ms, median of bench.py's --trace runs):")
        steps = sorted(((k, v) for k, v in phases.items() if k.startswith("  ")),
                       key=lambda kv: -kv[1])
        for k, v in [*((k, v) for k, v in phases.items() if not k.startswith("  ")),
                     *steps[:6]]:
            print(f"  {k:<52} {v:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
