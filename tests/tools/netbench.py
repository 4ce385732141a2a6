#!/usr/bin/env python3
"""Measure what `--network bridge` adds to a container's life (a benchmark, not a test).

Everything runs in a throw-away network namespace made here and deleted at the end.
For each of --runs rounds a busybox container is created (`minirun create`, in the
namespace), then, each in a fresh interpreter started the way the `minirun` launcher
starts (`python3 -I -S`, site-packages put on sys.path by hand):

    setup     import minirun.network + setup()    what `create` would pay without
                                                   its helper (network.prepare)
    teardown  import minirun.network + teardown()  what `delete` pays (the kernel's
                                                   part goes on in the background)

timed inside the process (interpreter start-up excluded: `create` pays that anyway),
and the same two calls again in one warm process where pyroute2 is already imported.
Then --concurrent set-ups at once, timed from the first start to the last exit.

When the minirun under test has `--network` (the module wired into create/delete),
also the issue's own figures (issue 11): wall time of `minirun run` of /bin/true with
`--network bridge` against `--network none`, interleaved; `delete` of a stopped
container, bridge against none; and --concurrent `run -d --network bridge` at once,
from the first start until the last has returned (each container up). Those are
printed in one table with the issue's goal beside each.

Usage: netbench.py [--runs N] [--concurrent N] [--minirun PATH] [--venv DIR]
                   [--keep-bridge] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mkbundle import make_bundle  # noqa: E402

# Runs in the fresh interpreter: argv = [repo, site-packages, op, root, cid, pid, times]
_CHILD = """
import sys, time
t0 = time.perf_counter()
sys.path[:0] = [sys.argv[1], sys.argv[2]]
op, root, cid, pid, times = sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), \
    int(sys.argv[7])
import minirun.network as net
port = 8000 + int(cid[2:])  # nbN: one published port per container
req = net.request_from({"network": "bridge", "publish": [f"{port}:80"]}, {})
out = []
for i in range(times):
    t = time.perf_counter()
    if op in ("setup", "both"):
        net.setup(root, cid, pid, req)
    if op in ("teardown", "both"):
        net.teardown(root, cid, {"mode": "bridge", "bridge": "minirun0"})
    out.append((time.perf_counter() - (t0 if i == 0 else t)) * 1000)
print(" ".join(f"{x:.2f}" for x in out))
"""


def site_packages(python: str) -> str:
    out = subprocess.run([python, "-I", "-c", "import sysconfig; "
                          "print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip() or sysconfig.get_paths()["purelib"]


class Bench:
    def __init__(self, minirun: str, venv: Path, tmp: Path) -> None:
        self.minirun = minirun
        self.python = str(venv / "bin" / "python3")
        self.tmp = tmp
        self.root = str(tmp / "root")
        self.ns = f"t-netbench-{secrets.token_hex(3)}"
        self.nspath = f"/run/netns/{self.ns}"
        self.site = site_packages(self.python)
        self.bundle = tmp / "bundle"
        make_bundle(self.bundle, ["sleep", "600"])
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.n = 0

    def inns(self, *argv: str) -> subprocess.CompletedProcess:
        p = subprocess.run(["nsenter", f"--net={self.nspath}", "--", *argv],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"netbench: {argv[:3]}...: {p.stderr.strip()}")
        return p

    def create(self) -> tuple[str, int]:
        self.n += 1
        cid = f"nb{self.n}"
        pid_file = self.tmp / f"{cid}.pid"
        # output to files: the container keeps what it inherits open
        with open(os.devnull, "wb") as null, tempfile.TemporaryFile() as err:
            p = subprocess.run(["nsenter", f"--net={self.nspath}", "--", self.minirun,
                                "--root", self.root, "create", "--bundle", str(self.bundle),
                                "--pid-file", str(pid_file), cid], stdin=null, stdout=null,
                               stderr=err)
            if p.returncode != 0:
                err.seek(0)
                raise SystemExit(f"netbench: create {cid}: {err.read().decode().strip()}")
        return cid, int(pid_file.read_text())

    def delete(self, cid: str) -> None:
        self.inns(self.minirun, "--root", self.root, "delete", "--force", cid)

    def child(self, op: str, cid: str, pid: int, times: int = 1) -> list[float]:
        p = self.inns(self.python, "-I", "-S", "-c", _CHILD, str(REPO), self.site, op, self.root,
                      cid, str(pid), str(times))
        return [float(x) for x in p.stdout.split()]

    def close(self) -> None:
        """Whatever happened: every container made here deleted, the namespace too."""
        for i in range(1, self.n + 1):
            subprocess.run(["nsenter", f"--net={self.nspath}", "--", self.minirun, "--root",
                            self.root, "delete", "--force", f"nb{i}"], capture_output=True,
                           check=False)
        subprocess.run(["ip", "netns", "del", self.ns], check=False)


def run_cli(b: Bench, args: argparse.Namespace) -> dict:
    """`run /bin/true`, none against bridge, interleaved (the order alternates)."""
    true_bundle = b.tmp / "true"
    make_bundle(true_bundle, ["/bin/true"])

    def cli(*argv: str, cid: str) -> float:
        # files, not pipes: a container left behind would hold a pipe open forever
        with tempfile.TemporaryFile() as err:
            t = time.perf_counter()
            p = subprocess.Popen(["nsenter", f"--net={b.nspath}", "--", b.minirun, "--root",
                                  b.root, *argv], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=err)
            # No wait(timeout=): Popen polls it with sleeps growing to 50 ms, which
            # rounds every figure up to ~63.5, ~113.5 ms... A timer kills a hung one.
            watchdog = threading.Timer(120, p.kill)
            watchdog.start()
            p.wait()
            watchdog.cancel()
            took = (time.perf_counter() - t) * 1000
            if p.returncode != 0:
                err.seek(0)
                raise SystemExit(f"netbench: {argv[0]} {cid}: {err.read().decode().strip()}")
        return took

    def new_id() -> str:
        b.n += 1  # not thread-safe in general; each += under the GIL is enough here
        return f"nb{b.n}"

    def once(mode: str) -> float:
        cid = new_id()
        return cli("run", "--network", mode, "--bundle", str(true_bundle), cid, cid=cid)

    def delete_once(mode: str) -> float:
        cid = new_id()
        cli("run", "--keep", "--network", mode, "--bundle", str(true_bundle), cid, cid=cid)
        return cli("delete", cid, cid=cid)

    run_usage = subprocess.run([b.minirun, "run", "--help"], capture_output=True,
                               text=True).stdout
    keep = "--keep" in run_usage  # older versions: no delete figure
    times: dict[str, list[float]] = {"none": [], "bridge": []}
    deletes: dict[str, list[float]] = {"none": [], "bridge": []}
    # each figure in a loop of its own: one's background work does not land in another's
    for i in range(args.runs + 2):
        order = ("none", "bridge") if i % 2 else ("bridge", "none")
        for mode in order:
            took = once(mode)
            if i >= 2:  # two warm-up rounds
                times[mode].append(took)
    for i in range(args.runs + 2 if keep else 0):
        order = ("none", "bridge") if i % 2 else ("bridge", "none")
        for mode in order:
            took = delete_once(mode)
            if i >= 2:
                deletes[mode].append(took)
    extra = [br - no for br, no in zip(times["bridge"], times["none"], strict=True)]
    del_extra = [br - no for br, no in zip(deletes["bridge"], deletes["none"], strict=True)]
    ids = [new_id() for _ in range(args.concurrent)]
    t = time.perf_counter()
    with ThreadPoolExecutor(args.concurrent) as pool:
        list(pool.map(lambda cid: cli("run", "-d", "--network", "bridge", "--bundle",
                                      str(b.bundle), cid, cid=cid), ids))
    burst = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    with ThreadPoolExecutor(args.concurrent) as pool:
        list(pool.map(lambda cid: cli("delete", "--force", cid, cid=cid), ids))
    burst_delete = (time.perf_counter() - t) * 1000
    return {
        "run /bin/true --network none": summary(times["none"]),
        "run /bin/true --network bridge": summary(times["bridge"]),
        "extra of bridge over none": summary(extra),
        "delete, bridge over none": summary(del_extra) if keep else "(no run --keep)",
        f"{args.concurrent} concurrent run -d --network bridge": f"{burst:.0f} ms",
        f"{args.concurrent} concurrent delete --force": f"{burst_delete:.0f} ms",
    }


# The goals (issue 11), by figure: (goal, test on the measured milliseconds)
GOALS = {
    "extra of bridge over none": ("<= 30 ms", lambda ms: ms <= 30),
    "concurrent run -d --network bridge": ("<= 2000 ms", lambda ms: ms <= 2000),
}


def table(results: dict) -> str:
    """One table: each figure, its median (or wall time) and p90, the goal, met?"""
    rows = [("figure", "median", "p90", "goal", "met")]
    for name, value in results.items():
        if isinstance(value, dict):
            median, p90 = value["median_ms"], value["p90_ms"]
            cells = (f"{median:.1f} ms", f"{p90:.1f} ms")
        elif isinstance(value, str) and value.endswith(" ms"):
            median = float(value[:-3])
            cells = (value, "")
        else:
            rows.append((name, str(value), "", "", ""))
            continue
        goal = next((g for key, g in GOALS.items() if name.endswith(key)), None)
        rows.append((name, *cells, goal[0] if goal else "",
                     ("yes" if goal[1](median) else "NO") if goal else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def summary(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"median_ms": round(statistics.median(xs), 1),
            "p90_ms": round(xs[max(0, int(len(xs) * 0.9) - 1)], 1), "n": len(xs)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--minirun", default=shutil.which("minirun") or str(VENV / "bin" / "minirun"))
    ap.add_argument("--venv", type=Path, default=VENV,
                    help="the venv whose python (with pyroute2) runs the set-ups")
    ap.add_argument("--keep-bridge", action="store_true",
                    help="one more container lives throughout: no round creates or "
                    "deletes the bridge")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--json-out", type=Path, help="also write the results there (bench_table.py)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("netbench: run as root")
    with tempfile.TemporaryDirectory(prefix="netbench-") as tmp:
        b = Bench(args.minirun, args.venv, Path(tmp))
        try:
            results = run(b, args)
            usage = subprocess.run([args.minirun, "create", "--help"], capture_output=True,
                                   text=True).stdout
            if "--network" in usage:
                results.update(run_cli(b, args))
        finally:
            b.close()
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results) + "\n")
    if args.json:
        print(json.dumps(results))
    else:
        print(table(results))
    return 0


def run(b: Bench, args: argparse.Namespace) -> dict:
    if args.keep_bridge:  # another container keeps the bridge (and table) in place
        keeper = b.create()
        b.child("setup", *keeper)
    cold_setup, cold_teardown, warm = [], [], []
    for _ in range(args.runs):
        cid, pid = b.create()
        cold_setup += b.child("setup", cid, pid)
        cold_teardown += b.child("teardown", cid, pid)
        # warm: the first (cold) round trip is dropped, the next three kept
        warm += b.child("both", cid, pid, times=4)[1:]
        b.delete(cid)
    made = [b.create() for _ in range(args.concurrent)]
    t = time.perf_counter()
    with ThreadPoolExecutor(len(made)) as pool:
        list(pool.map(lambda cp: b.child("setup", *cp), made))
    concurrent_setup = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    with ThreadPoolExecutor(len(made)) as pool:
        list(pool.map(lambda cp: b.child("teardown", *cp), made))
    concurrent_teardown = (time.perf_counter() - t) * 1000
    for cid, _ in made:
        b.delete(cid)
    if args.keep_bridge:
        b.child("teardown", *keeper)
        b.delete(keeper[0])
    links = [line.split(": ")[1] for line in b.inns("ip", "-o", "link").stdout.splitlines()]
    left = b.inns("nft", "list", "ruleset").stdout + " ".join(n for n in links if n != "lo")
    return {
        "setup, cold (import + setup)": summary(cold_setup),
        "teardown, cold (returns; kernel work goes on)": summary(cold_teardown),
        "setup + teardown, warm (waits for the last)": summary(warm),
        f"{args.concurrent} concurrent setups, wall": f"{concurrent_setup:.0f} ms",
        f"{args.concurrent} concurrent teardowns, wall": f"{concurrent_teardown:.0f} ms",
        "left behind": left.strip() or "nothing",
    }


if __name__ == "__main__":
    sys.exit(main())
