#!/usr/bin/env python3
"""Soak: many container lifecycles in a row; the runtime's RSS and fds must stay flat.

Each lifecycle is `minirun run` of a container that sleeps 0.3 s (so the runtime is
caught while it waits: its open fds are counted then), under one state root. After
every lifecycle nothing may be left: no state directory, no cgroup named after the
id, no mount below the bundle. At the end the first and the last tenth of the runs are
compared: median peak RSS (ru_maxrss from wait4) and median fd count of the runtime
must not grow by more than --slack (default 10 %, with a floor of 1 fd / 512 KiB).

Usage: soak.py [--runs 1000] [--minirun PATH]   (root; `make soak`)
Stdlib only. Exit 0 when flat and clean, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mkbundle import make_bundle  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def cgroups_named(cid: str) -> list[str]:
    out = []
    for top in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if not os.path.isdir(top):
            continue
        for dirpath, dirnames, _ in os.walk(top):
            out += [os.path.join(dirpath, d) for d in dirnames if cid in d]
    return out


def one(minirun: str, root: Path, bundle: Path, cid: str) -> tuple[int, int, int | None]:
    """One lifecycle: (exit status, peak RSS in KiB, the runtime's fd count mid-run)."""
    p = subprocess.Popen([minirun, "--root", str(root), "run", "--bundle", str(bundle), cid],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    time.sleep(0.15)  # the container sleeps 0.3 s: the runtime is waiting for it now
    fds = fd_count(p.pid)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if p.stderr:
        p.stderr.close()
    if p.returncode != 0:
        print(f"{cid}: exit {p.returncode}: {err.strip()}", file=sys.stderr)
    return p.returncode, usage.ru_maxrss, fds


def leftovers(root: Path, bundle: Path, cid: str) -> list[str]:
    left = [f"state {root / cid}"] if (root / cid).exists() else []
    left += [f"cgroup {d}" for d in cgroups_named(cid)]
    with open("/proc/self/mountinfo") as f:
        left += [f"mount {ln.split()[4]}" for ln in f if str(bundle) in ln]
    return left


def flat(name: str, first: list[float], last: list[float], slack: float, floor: float) -> bool:
    a, b = statistics.median(first), statistics.median(last)
    ok = b <= max(a * (1 + slack), a + floor)
    print(f"{name:>10}: first tenth median {a:.0f}, last tenth median {b:.0f} -> "
          f"{'flat' if ok else 'GROWING'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--minirun", default=str(REPO / ".venv" / "bin" / "minirun"))
    ap.add_argument("--slack", type=float, default=0.10)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="minirun-soak-"))
    root, bundle = work / "root", work / "bundle"
    make_bundle(bundle, ["sleep", "0.3"])
    rss: list[int] = []
    fds: list[int] = []
    failed = 0
    problems: list[str] = []
    t0 = time.monotonic()
    try:
        for n in range(args.runs):
            cid = f"soak-{os.getpid()}-{n}"
            rc, peak, nfd = one(args.minirun, root, bundle, cid)
            failed += rc != 0
            rss.append(peak)
            if nfd is not None:
                fds.append(nfd)
            left = leftovers(root, bundle, cid)
            if left:
                problems.append(f"{cid}: left {left}")
                subprocess.run([args.minirun, "--root", str(root), "delete", "--force", cid],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if (n + 1) % 100 == 0:
                print(f"{n + 1} lifecycles, {time.monotonic() - t0:.0f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tenth = max(1, args.runs // 10)
    ok = flat("peak RSS", rss[:tenth], rss[-tenth:], args.slack, 512)
    if len(fds) >= 2 * tenth:
        ok &= flat("fds", fds[:tenth], fds[-tenth:], args.slack, 1)
    print(f"{args.runs} lifecycles, {failed} failed, {len(problems)} left something behind; "
          f"peak RSS max {max(rss)} KiB")
    for p in problems[:20]:
        print("  " + p)
    return 0 if ok and not failed and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
