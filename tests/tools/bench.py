#!/usr/bin/env python3
"""Benchmark `minirun run` against `runc run` (a benchmark, not a test).

Builds one busybox bundle whose process is /bin/true, then runs
`RUNTIME --root TMP run --bundle B ID` for each runtime, interleaved (the order
alternates every round), after a few warm-up runs. Each run gets its own state
root and a unique id. Reports median and p90 wall time, the ratio
minirun/runc, and the peak RSS (ru_maxrss from wait4, which covers the runtime
process and the children it reaped). Then `exec CID /bin/true` into one running
container per runtime (interleaved the same way), and --lifecycles sequential
create/start/state/delete of /bin/true per runtime: how many went through, what was
left behind (state, cgroups) and the runtime's own peak RSS over them.

On a host whose /sys/fs/cgroup is not cgroup2 (this project's hybrid machines)
the benchmark first moves itself into a private mount namespace with cgroup2
mounted at /sys/fs/cgroup, so that runc (which would otherwise create cgroups in
the host's v1 hierarchies) and minirun both see a pure cgroup v2 layout. The
mount namespace dies with the benchmark; --host-cgroups skips this.

Usage: bench.py [--runs N] [--warmup N] [--lifecycles N] [--minirun PATH] [--runc PATH]
                [--json] [--json-out FILE]   (FILE: read by bench_table.py)
Stdlib only; run as root. Cleans up everything it creates.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mkbundle import make_bundle  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 60.0  # seconds; a run taking longer is killed and counted as failed

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2


def cgroupfs_type() -> str | None:
    """Filesystem type of the topmost mount on /sys/fs/cgroup, from mountinfo."""
    fstype = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if left.split()[4] == "/sys/fs/cgroup":
                fstype = right.split()[0]
    return fstype


def private_cgroup2() -> None:
    """Enter a private mount namespace whose /sys/fs/cgroup is cgroup2 only."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
    ]

    def check(rc: int, what: str) -> None:
        if rc != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"{what}: {os.strerror(e)}")

    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    check(libc.umount2(b"/sys/fs/cgroup", MNT_DETACH), "umount -l /sys/fs/cgroup")
    check(libc.mount(b"cgroup2", b"/sys/fs/cgroup", b"cgroup2", 0, None), "mount cgroup2")


class Runtime:
    def __init__(self, name: str, path: str):
        self.name = name
        self.path = path
        self.times: list[float] = []
        self.maxrss_kib = 0
        self.failures = 0


def timed(argv: list[str], errpath: Path) -> tuple[float, int, int, str]:
    """Run argv (stdout to /dev/null); returns (seconds, wait status, ru_maxrss KiB,
    stderr text). ru_maxrss covers the process and the children it reaped."""
    fa = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, str(errpath), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
    ]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=fa, setpgroup=0)

    def on_alarm(signum, frame):  # a hung run: kill its process group; wait4 then returns
        os.killpg(pid, signal.SIGKILL)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, RUN_TIMEOUT)
    try:
        _, status, ru = os.wait4(pid, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    elapsed = time.perf_counter() - t0
    err = errpath.read_text(errors="replace")
    errpath.unlink()
    return elapsed, status, ru.ru_maxrss, err


def quiet(argv: list[str]) -> int:
    fa = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    return os.waitpid(os.posix_spawn(argv[0], argv, os.environ, file_actions=fa), 0)[1]


def run_once(rt: Runtime, bundle: Path, workdir: Path, cid: str) -> tuple[float, int, int, str]:
    """One `run`; returns (seconds, wait status, ru_maxrss KiB, stderr text)."""
    root = Path(tempfile.mkdtemp(prefix=f"root-{rt.name}-", dir=workdir))
    argv = [rt.path, "--root", str(root), "run", "--bundle", str(bundle), cid]
    elapsed, status, maxrss, err = timed(argv, workdir / f"{cid}.stderr")
    if status != 0 or any(root.iterdir()):
        # Failed or left state behind: force-delete by id (best effort), quietly.
        quiet([rt.path, "--root", str(root), "delete", "--force", cid])
    shutil.rmtree(root, ignore_errors=True)
    return elapsed, status, maxrss, err


def bench_exec(runtimes: list[Runtime], bundle: Path, workdir: Path, tag: str,
               runs: int, warmup: int) -> dict[str, list[float]]:
    """`exec CID /bin/true` into a running container (one per runtime), interleaved."""
    times: dict[str, list[float]] = {rt.name: [] for rt in runtimes}
    roots = {rt.name: Path(tempfile.mkdtemp(prefix=f"exec-{rt.name}-", dir=workdir))
             for rt in runtimes}
    cids = {rt.name: f"{tag}-exec-{rt.name}" for rt in runtimes}
    try:
        for rt in runtimes:
            root, cid = str(roots[rt.name]), cids[rt.name]
            if quiet([rt.path, "--root", root, "run", "-d", "--bundle", str(bundle), cid]):
                print(f"{rt.name}: run -d of the exec target failed", file=sys.stderr)
                return {}
        for i in range(warmup + runs):
            for rt in runtimes if i % 2 == 0 else runtimes[::-1]:
                argv = [rt.path, "--root", str(roots[rt.name]), "exec", cids[rt.name],
                        "/bin/true"]
                elapsed, status, _, err = timed(argv, workdir / "exec.stderr")
                if status != 0:
                    print(f"{rt.name} exec {i} failed: {err.strip()[-500:]}", file=sys.stderr)
                    rt.failures += 1
                elif i >= warmup:
                    times[rt.name].append(elapsed)
    finally:
        for rt in runtimes:
            quiet([rt.path, "--root", str(roots[rt.name]), "delete", "--force", cids[rt.name]])
            shutil.rmtree(roots[rt.name], ignore_errors=True)
    return times


def cgroup_dirs(mark: str) -> set[str]:
    """cgroup directories whose path has `mark` (the ids of this benchmark's containers:
    other users of the host's hierarchy come and go meanwhile)."""
    return {d for d, _, _ in os.walk("/sys/fs/cgroup") if mark in d}


def lifecycles(rt: Runtime, bundle: Path, workdir: Path, tag: str, n: int) -> dict:
    """n sequential create, start, state (until stopped), delete of /bin/true: how many
    went through, what was left (state, cgroups), the runtime's own peak RSS."""
    root = Path(tempfile.mkdtemp(prefix=f"life-{rt.name}-", dir=workdir))
    mark = f"{tag}-life-{rt.name}-"
    before = cgroup_dirs(mark)
    ok, peak, errors = 0, 0, []
    t0 = time.perf_counter()
    for i in range(n):
        cid = f"{mark}{i}"
        base = [rt.path, "--root", str(root)]
        steps = [[*base, "create", "--bundle", str(bundle), cid], [*base, "start", cid]]
        good = True
        for argv in steps:
            _, status, maxrss, err = timed(argv, workdir / "life.stderr")
            peak = max(peak, maxrss)
            good = good and status == 0
            if status:
                errors.append(err.strip()[-300:])
        for _ in range(200):  # until /bin/true has exited (start returns before)
            out = subprocess.run([*base, "state", cid], capture_output=True, text=True)
            if out.returncode or json.loads(out.stdout)["status"] == "stopped":
                break
            time.sleep(0.01)
        _, status, maxrss, err = timed([*base, "delete", cid], workdir / "life.stderr")
        peak = max(peak, maxrss)
        if status:
            errors.append(err.strip()[-300:])
            quiet([*base, "delete", "--force", cid])
        ok += good and status == 0
    wall = time.perf_counter() - t0
    left = [p.name for p in root.iterdir()] + sorted(cgroup_dirs(mark) - before)
    shutil.rmtree(root, ignore_errors=True)
    return {"n": n, "ok": ok, "left": left, "peak_rss_kib": peak, "wall_s": wall,
            "errors": errors[:3]}


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def default_minirun() -> str | None:
    venv = REPO / ".venv" / "bin" / "minirun"
    if venv.exists():
        return str(venv)
    return shutil.which("minirun")


TRACE_RUNS = 7


def trace_phases(rt: Runtime, bundle: Path, workdir: Path, tag: str) -> dict[str, float]:
    """Where the time of one `minirun run` goes: medians over a few runs with --trace.
    "interpreter start and imports" is the wall time before the trace began."""
    samples: dict[str, list[float]] = {}
    for i in range(TRACE_RUNS):
        out = workdir / f"trace-{i}.json"
        t0 = time.perf_counter()
        rc = subprocess.run([rt.path, "--root", str(workdir / "trace-root"), "run", "--trace",
                             str(out), "--bundle", str(bundle), f"{tag}-trace-{i}"],
                            stdin=subprocess.DEVNULL, capture_output=True).returncode
        wall = (time.perf_counter() - t0) * 1e3
        if rc != 0 or not out.exists():
            continue
        events = json.loads(out.read_text())["traceEvents"]
        top = next(e for e in events if e["name"] == "minirun run")
        phase = {"interpreter start and imports": wall - top["dur"] / 1e3}
        for e in events:
            if e is top:
                continue
            if e["ph"] == "X" and e["pid"] == 1:
                phase[e["name"]] = phase.get(e["name"], 0.0) + e["dur"] / 1e3
            elif e["ph"] == "X":
                key = "  in set-up: " + e["name"].split(" ")[0]
                phase[key] = phase.get(key, 0.0) + e["dur"] / 1e3
        phase["total (wall)"] = wall
        for k, v in phase.items():
            samples.setdefault(k, []).append(v)
    return {k: round(statistics.median(v), 2) for k, v in samples.items()}


def print_phases(phases: dict[str, float]) -> None:
    if not phases:
        print("where the time of one run goes: no trace (minirun without --trace?)")
        return
    print(f"where the time of one `minirun run` goes (median of {TRACE_RUNS}, --trace):")
    runtime = {k: v for k, v in phases.items() if not k.startswith("  ")}
    setup = sorted(((k, v) for k, v in phases.items() if k.startswith("  ")),
                   key=lambda kv: -kv[1])
    for k, v in runtime.items():
        print(f"  {k:<52} {v:8.2f} ms")
    for k, v in setup[:8]:
        print(f"  {k:<52} {v:8.2f} ms")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Benchmark `minirun run` against `runc run` of /bin/true."
    )
    p.add_argument(
        "--runs", type=int, default=30, help="measured runs per runtime (default 30, minimum 1)"
    )
    p.add_argument(
        "--warmup", type=int, default=3, help="unmeasured warm-up runs per runtime (default 3)"
    )
    p.add_argument(
        "--minirun", default=None, help="minirun command (default: .venv/bin/minirun or PATH)"
    )
    p.add_argument(
        "--runc", default=shutil.which("runc"), help="runc command (default: runc on PATH)"
    )
    p.add_argument("--cache", type=Path, default=None, help="mkbundle rootfs cache directory")
    p.add_argument(
        "--host-cgroups",
        action="store_true",
        help="do not switch to a private cgroup2-only /sys/fs/cgroup",
    )
    p.add_argument("--lifecycles", type=int, default=100,
                   help="sequential create/start/delete per runtime (default 100; 0: none)")
    p.add_argument("--json", action="store_true", help="also print the results as one JSON object")
    p.add_argument("--json-out", type=Path, help="also write the results there (bench_table.py)")
    ns = p.parse_args(argv)

    minirun = ns.minirun or default_minirun()
    if not minirun:
        p.error("no minirun found: run `make install`, or pass --minirun PATH")
    if not ns.runc:
        p.error("no runc found: run `make deps`, or pass --runc PATH")
    if ns.runs < 1 or ns.warmup < 0:
        p.error("--runs must be >= 1 and --warmup >= 0")
    if os.geteuid() != 0:
        p.error("run as root")
    runtimes = []
    for name, cmd in (("minirun", minirun), ("runc", ns.runc)):
        path = cmd if "/" in cmd else shutil.which(cmd)
        if not path or not os.access(path, os.X_OK):
            p.error(f"{name}: {cmd} is not an executable")
        runtimes.append(Runtime(name, os.path.abspath(path)))

    cgmode = "host"
    if not ns.host_cgroups and cgroupfs_type() != "cgroup2":
        private_cgroup2()
        cgmode = "private cgroup2 mount"

    workdir = Path(tempfile.mkdtemp(prefix="minirun-bench-"))
    tag = f"bench{os.getpid()}"
    try:
        bundle = make_bundle(workdir / "bundle", ["/bin/true"], cache=ns.cache)
        total = ns.warmup + ns.runs
        for i in range(total):
            order = runtimes if i % 2 == 0 else runtimes[::-1]
            for rt in order:
                cid = f"{tag}-{rt.name}-{i}"
                elapsed, status, maxrss, err = run_once(rt, bundle, workdir, cid)
                if status != 0:
                    rt.failures += 1
                    code = os.waitstatus_to_exitcode(status)
                    print(
                        f"{rt.name} run {i} failed (exit {code}): {err.strip()[-2000:]}",
                        file=sys.stderr,
                    )
                    continue
                if i >= ns.warmup:
                    rt.times.append(elapsed)
                    rt.maxrss_kib = max(rt.maxrss_kib, maxrss)
        sleeper = make_bundle(workdir / "sleeper", ["sleep", "3600"], cache=ns.cache)
        exec_times = bench_exec(runtimes, sleeper, workdir, tag, ns.runs, ns.warmup)
        lives = {rt.name: lifecycles(rt, bundle, workdir, tag, ns.lifecycles)
                 for rt in runtimes if ns.lifecycles > 0}
        phases = trace_phases(runtimes[0], bundle, workdir, tag)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"{ns.runs} measured runs each after {ns.warmup} warm-up, interleaved; "
        f"process /bin/true; cgroups: {cgmode}"
    )
    heads = ("median", "p90", "min", "max")
    print(f"{'runtime':<8} " + " ".join(f"{h:>9}" for h in heads) + "   peak RSS failed  command")
    result: dict = {"runs": ns.runs, "warmup": ns.warmup, "cgroups": cgmode}
    for rt in runtimes:
        r = {
            "path": rt.path,
            "failures": rt.failures,
            "peak_rss_kib": rt.maxrss_kib,
            "times_s": rt.times,
        }
        if rt.times:
            r.update(median_s=statistics.median(rt.times), p90_s=p90(rt.times))
            print(
                f"{rt.name:<8} {r['median_s'] * 1e3:>6.1f} ms {r['p90_s'] * 1e3:>6.1f} ms "
                f"{min(rt.times) * 1e3:>6.1f} ms {max(rt.times) * 1e3:>6.1f} ms "
                f"{rt.maxrss_kib / 1024:>6.1f} MiB {rt.failures:>6}  {rt.path}"
            )
        else:
            dashes = " ".join(f"{'-':>9}" for _ in heads)
            print(f"{rt.name:<8} {dashes} {'-':>10} {rt.failures:>6}  {rt.path}")
        result[rt.name] = r
    mr, rc = runtimes
    if mr.times and rc.times:
        ratio_med = statistics.median(mr.times) / statistics.median(rc.times)
        ratio_p90 = p90(mr.times) / p90(rc.times)
        result["ratio_median"], result["ratio_p90"] = ratio_med, ratio_p90
        print(f"ratio minirun/runc: median {ratio_med:.2f}x, p90 {ratio_p90:.2f}x")
    if exec_times.get("minirun") and exec_times.get("runc"):
        em, er = (statistics.median(exec_times[n]) for n in ("minirun", "runc"))
        print(f"exec /bin/true into a running container, median of {ns.runs}: minirun "
              f"{em * 1e3:.1f} ms, runc {er * 1e3:.1f} ms, ratio {em / er:.2f}x")
    result["exec"] = {name: {"median_s": statistics.median(ts), "p90_s": p90(ts), "times_s": ts}
                      for name, ts in exec_times.items() if ts}
    for name, life in lives.items():
        print(f"{life['n']} sequential lifecycles (create, start, delete) with {name}: "
              f"{life['ok']} went through in {life['wall_s']:.1f} s, left behind: "
              f"{', '.join(life['left']) or 'nothing'}; peak RSS {life['peak_rss_kib'] / 1024:.1f} "
              f"MiB" + (f"; first errors: {life['errors']}" if life["errors"] else ""))
    result["lifecycles"] = lives
    print_phases(phases)
    result["phases_ms"] = phases
    if ns.json:
        print(json.dumps(result))
    if ns.json_out:
        ns.json_out.parent.mkdir(parents=True, exist_ok=True)
        ns.json_out.write_text(json.dumps(result) + "\n")
    lives_ok = all(v["ok"] == v["n"] and not v["left"] for v in lives.values())
    return 0 if mr.times and rc.times and not (mr.failures or rc.failures) and lives_ok else 1


if __name__ == "__main__":
    sys.exit(main())
