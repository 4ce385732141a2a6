#!/usr/bin/env python3
"""The smallest memory.max under which `RUNTIME run` of /bin/true succeeds.

    memmin.py [--runtime PATH]... [--low 256K] [--high 16M] [--step 64K]
              [--repeat 3] [--confirm 5] [--json FILE] [--strict]

For each runtime (default: Debian's runc), a busybox bundle running /bin/true is
run with ``linux.resources.memory.limit`` set, and ``linux.cgroupsPath`` set to a
fresh cgroup under ``/sys/fs/cgroup/minirun-memmin/``: the runtime creates that
cgroup with memory.max = limit and runs the container in it, so whatever the
runtime's own set-up process leaves charged to the container before exec counts
(crun's README reports runc failing at 4 MiB and crun running at 512 KiB).

A run succeeds when the runtime exits 0; near the minimum, runs fail or not
from one run to the next (the memory charged at start-up varies), so a probed
limit counts as working only when --repeat runs in a row succeed. The limit is
bisected between --low and --high to --step; the smallest working limit is then
run --confirm more times, moving up a step while any fails. Reported: that
limit, the largest one seen to fail, and the lowest at which a single run ever
succeeded (the noisy band lies between the two). Finally a container that
needs more memory than that limit must be OOM-killed under it: a runtime that
does not enforce the limit gets no figure (exit status 1). A runtime that cannot run the bundle
with no limit at all is an error; one that fails even at --high is reported as
such (an error only with --strict, e.g. minirun before it enforces cgroups).

Only for a pure cgroup v2 machine such as the VM lane's guest (`make bench-vm`):
it refuses to run where a cgroup v1 hierarchy is mounted. Standard library only;
runs as root.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "tools"))

from mkbundle import default_config, make_bundle  # noqa: E402

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "minirun-memmin"
UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2,
         "MIB": 1024**2, "G": 1024**3, "GB": 1024**3, "GIB": 1024**3}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in UNITS:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 512K, 16M)")
    return int(m.group(1)) * UNITS[m.group(2).upper()]


def human(n: int | None) -> str:
    if n is None:
        return "-"
    if n % (1024**2) == 0:
        return f"{n // 1024**2} MiB"
    return f"{n / 1024:.0f} KiB"


def cgroup2_only() -> bool:
    v2 = False
    for line in Path("/proc/self/mounts").read_text().splitlines():
        f = line.split()
        if len(f) >= 3 and f[2] == "cgroup":
            return False
        if len(f) >= 3 and f[2] == "cgroup2" and f[1] == str(CGROUP_ROOT):
            v2 = True
    return v2


def remove_cgroup(path: Path) -> None:
    """Kill what is left in a cgroup this script named, then remove it."""
    if not path.is_dir():
        return
    for _ in range(50):
        try:
            path.rmdir()
            return
        except OSError:
            pass
        kill = path / "cgroup.kill"
        if kill.exists() and (path / "cgroup.procs").read_text().strip():
            try:
                kill.write_text("1")
            except OSError:
                pass
        time.sleep(0.1)
    print(f"memmin: could not remove {path}", file=sys.stderr)


class Prober:
    def __init__(self, runtime: str, bundle: Path, base: dict, root: Path, timeout: float):
        self.runtime = runtime
        self.bundle = bundle
        self.root = root
        self.timeout = timeout
        self.tag = re.sub(r"[^A-Za-z0-9]+", "-", Path(runtime).name).strip("-") or "rt"
        self.n = 0
        self.probes: list[tuple[int | None, int, float, str]] = []
        self.base = base

    def version(self) -> str:
        try:
            out = subprocess.run([self.runtime, "--version"], capture_output=True, text=True,
                                 timeout=self.timeout).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"? ({e})"
        return out.splitlines()[0] if out else "?"

    def run(self, limit: int | None, args: list[str] | None = None,
            label: str = "") -> tuple[bool, str, str]:
        """Run /bin/true (or args) under memory.max = limit (None: no limit, no cgroupsPath).

        Returns (exited 0, the last line of stderr, stdout)."""
        self.n += 1
        cid = f"memmin-{self.tag}-{os.getpid()}-{self.n}"
        cfg = copy.deepcopy(self.base)
        if args:
            cfg["process"]["args"] = args
        cg = None
        if limit is not None:
            cg = CGROUP_ROOT / PARENT / cid
            cfg.setdefault("linux", {})["cgroupsPath"] = f"/{PARENT}/{cid}"
            cfg["linux"].setdefault("resources", {})["memory"] = {"limit": limit}
        (self.bundle / "config.json").write_text(json.dumps(cfg, indent=2))
        argv = [self.runtime, "--root", str(self.root), "run", "--bundle", str(self.bundle), cid]
        what = "no limit" if limit is None else human(limit)
        print(f"  {what:>9}: {label}", end="", flush=True)
        t0 = time.monotonic()
        try:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=self.timeout)
            rc, err, out = p.returncode, (p.stderr.strip().splitlines() or [""])[-1], p.stdout
        except subprocess.TimeoutExpired:
            rc, err, out = -1, f"timed out after {self.timeout:.0f} s", ""
        except OSError as e:
            rc, err, out = -1, f"cannot run {self.runtime}: {e}", ""
        dt = time.monotonic() - t0
        print(f"exit {rc} in {dt:.1f} s" + (f"  ({err})" if rc and err else ""), flush=True)
        try:
            subprocess.run([self.runtime, "--root", str(self.root), "delete", "--force", cid],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"  (delete --force {cid}: {e})", flush=True)
        if cg is not None:
            remove_cgroup(cg)
        if not args:
            self.probes.append((limit, rc, dt, err))
        return rc == 0, err, out


def hog_args(size: int) -> list[str]:
    """A container process that holds a string of size bytes (about twice that in memory)."""
    return ["/bin/sh", "-c", f"x=$(head -c {size} /dev/zero | tr '\\000' a); echo ${{#x}}"]


def measure(pr: Prober, low: int, high: int, step: int, repeat: int, confirm: int) -> dict:
    res: dict = {"runtime": pr.runtime, "version": pr.version(), "min_ok": None,
                 "max_fail": None, "lowest_single_ok": None, "enforced": None, "error": None}
    print(f"{pr.runtime} ({res['version']}):", flush=True)

    def holds(limit: int, times: int) -> bool:
        """limit works `times` runs in a row (stops at the first failure)."""
        return all(pr.run(limit)[0] for _ in range(times))

    ok, err, _ = pr.run(None)
    if not ok:
        res["error"] = f"fails with no memory limit: {err}"
        return res
    if not holds(high, repeat):
        res["max_fail"] = high
        fails = [e for lim, rc, _, e in pr.probes if lim == high and rc != 0]
        res["error"] = f"fails even at {human(high)}: {fails[-1] if fails else '?'}"
        return res
    ok_at: int | None = high
    fail_at: int | None = None
    if holds(low, repeat):
        ok_at = low
    else:
        fail_at = low
        while ok_at - fail_at > step:
            mid = max((fail_at + ok_at) // 2 // step * step, fail_at + step)
            if mid >= ok_at:
                break
            if holds(mid, repeat):
                ok_at = mid
            else:
                fail_at = mid
    # the smallest limit found must hold up `confirm` more times; a step up while not
    while not holds(ok_at, confirm):
        fail_at = ok_at
        ok_at += step
        if ok_at > high:
            res["error"] = (f"no limit up to {human(high)} succeeds "
                            f"{repeat + confirm} times in a row")
            ok_at = None
            break
    res["min_ok"], res["max_fail"] = ok_at, fail_at
    if ok_at is not None:
        # the limit must be the kernel's: a process needing more than it is OOM-killed
        size = 2 * ok_at + 4 * 1024**2
        # (the OOM killer may kill a process of the pipeline and leave the shell running:
        # the string's length shows whether everything ran)
        ok, _, out = pr.run(ok_at, hog_args(size), f"a {human(size)} string must not fit: ")
        killed = not (ok and out.split()[-1:] == [str(size)])
        res["enforced"] = killed
        got = out.split()[-1] if out.split() else "nothing"
        print(f"  limit enforced: {'yes' if killed else 'NO'} (the container's string: {got} "
              f"of {size} bytes)", flush=True)
        if not killed:
            res["error"] = (f"memory.max is not enforced: a container holding {human(size)} "
                            f"ran to completion under a {human(ok_at)} limit")
    singles = [lim for lim, rc, _, _ in pr.probes if lim is not None and rc == 0]
    res["lowest_single_ok"] = min(singles) if singles else None
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runtime", action="append", default=[],
                   help="runtime executable, repeatable (default /usr/sbin/runc)")
    p.add_argument("--low", type=parse_size, default=parse_size("256K"))
    p.add_argument("--high", type=parse_size, default=parse_size("16M"))
    p.add_argument("--step", type=parse_size, default=parse_size("64K"))
    p.add_argument("--repeat", type=int, default=3,
                   help="runs per probed limit, all must succeed (default %(default)s)")
    p.add_argument("--confirm", type=int, default=5,
                   help="extra runs at the smallest limit found (default %(default)s)")
    p.add_argument("--timeout", type=float, default=300, help="seconds per run")
    p.add_argument("--json", type=Path, help="also write the results there")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 also when a runtime fails at every limit up to --high")
    ns = p.parse_args(argv)
    runtimes = ns.runtime or ["/usr/sbin/runc"]
    if not (0 < ns.low < ns.high) or ns.step <= 0 or ns.step % 4096:
        p.error("need 0 < --low < --high and a --step that is a multiple of 4K")

    if os.geteuid() != 0:
        print("memmin: run as root", file=sys.stderr)
        return 2
    if not cgroup2_only():
        print("memmin: not a pure cgroup v2 machine (a cgroup v1 hierarchy is mounted, or "
              "/sys/fs/cgroup is not cgroup2): run it in the VM lane, `make bench-vm`",
              file=sys.stderr)
        return 2
    controllers = (CGROUP_ROOT / "cgroup.controllers").read_text().split()
    if "memory" not in controllers:
        print(f"memmin: no memory controller in {CGROUP_ROOT} ({controllers})", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="minirun-memmin-", dir="/run"))
    bundle = work / "bundle"
    base = default_config(["/bin/true"])
    make_bundle(bundle, [], config=base)
    print(f"memmin: smallest memory.max for `run /bin/true` (busybox bundle), "
          f"kernel {platform.release()}, range {human(ns.low)}..{human(ns.high)}, "
          f"step {human(ns.step)}", flush=True)
    results = []
    try:
        for rt in runtimes:
            pr = Prober(rt, bundle, base, work / "root", ns.timeout)
            t0 = time.monotonic()
            r = measure(pr, ns.low, ns.high, ns.step, ns.repeat, ns.confirm)
            r["seconds"] = round(time.monotonic() - t0, 1)
            r["probes"] = [{"limit": lim, "exit": rc, "seconds": round(dt, 2), "error": e}
                           for lim, rc, dt, e in pr.probes]
            results.append(r)
    finally:
        remove_cgroup(CGROUP_ROOT / PARENT)
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)])

    print("\nmemmin: smallest memory.max under which `run /bin/true` succeeds:")
    rc = 0
    for r in results:
        name = f"{r['runtime']} ({r['version']})"
        if r["min_ok"] is not None and r["error"]:
            print(f"  {name}: INVALID: {r['error']}")
            rc = 1
        elif r["min_ok"] is not None:
            line = f"  {name}: {human(r['min_ok'])}"
            if r["max_fail"] is None:
                line += " or less (the bottom of the range)"
            else:
                line += f" (a run failed at {human(r['max_fail'])}"
                if r["lowest_single_ok"] is not None and r["lowest_single_ok"] < r["min_ok"]:
                    line += f"; single runs succeeded down to {human(r['lowest_single_ok'])}"
                line += ")"
            print(line)
        else:
            print(f"  {name}: none: {r['error']}")
            if r["error"].startswith("fails with no memory limit") or ns.strict:
                rc = 1
    if ns.json:
        ns.json.write_text(json.dumps({"kernel": platform.release(), "low": ns.low,
                                       "high": ns.high, "step": ns.step,
                                       "results": results}, indent=2) + "\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
