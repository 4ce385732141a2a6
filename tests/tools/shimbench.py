#!/usr/bin/env python3
"""Benchmark minirun's containerd shim against containerd's runc shim + runc (a benchmark,
not a test): the wall time of `ctr run --rm IMAGE ID /bin/true` through each route,
interleaved, and the shims' memory per running container at 1 and at 10 containers.

A private containerd (own config, sockets, state in a scratch folder) runs in a private
mount namespace of this process in which the machine's v1 memory hierarchy is hidden
(the engines keep their stock settings: cpu shares land in the v1 cpu hierarchy), with a
busybox image built locally (tests/engines/image.py). Everything is removed at the end,
by id.

Usage: shimbench.py [--runs N] [--shim PATH] [--runc PATH] [--json]
Stdlib only; run as root.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "engines"))
from cgtree import rmdir_tree  # noqa: E402
from image import DEFAULT_NAME as IMAGE  # noqa: E402
from image import build_oci_archive  # noqa: E402

CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE, MNT_DETACH = 0x4000, 1 << 18, 2
NS = f"mrbench-{os.getpid()}"


def private_view() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0 or \
            libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "private mount namespace")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, opts = right.split()[:3]
            if fstype == "cgroup" and "memory" in opts.split(","):
                libc.umount2(left.split()[4].encode(), MNT_DETACH)


def cgroup_mounts() -> list[Path]:
    """Every cgroup and cgroup2 mount this process sees."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] in ("cgroup", "cgroup2"):
                out.append(Path(left.split()[4]))
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2:].split()[1])


class Bench:
    def __init__(self, scratch: Path, shim: str, runc: str) -> None:
        self.scratch = scratch
        self.sock = scratch / "containerd.sock"
        self.routes = {"runc shim + runc": ["--runtime", "io.containerd.runc.v2",
                                            "--runc-binary", runc],
                       "minirun shim": ["--runtime", shim]}
        self.n = 0
        self.containerd: subprocess.Popen | None = None

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(["ctr", "--address", str(self.sock), "--namespace", NS, *args],
                           capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {r.stderr.strip()}")
        return r

    def start(self) -> None:
        conf = self.scratch / "config.toml"
        conf.write_text(f"""version = 2
root = "{self.scratch}/root"
state = "{self.scratch}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.scratch}/opt"
""")
        log = open(self.scratch / "containerd.log", "wb")  # noqa: SIM115
        self.containerd = subprocess.Popen(["containerd", "--config", str(conf)], stdout=log,
                                           stderr=log, start_new_session=True)
        for _ in range(300):
            if self.ctr("version", check=False).returncode == 0:
                break
            time.sleep(0.1)
        archive = build_oci_archive(self.scratch / "busybox.tar", IMAGE)
        self.ctr("images", "import", str(archive))

    def cid(self) -> str:
        self.n += 1
        return f"b{os.getpid()}-{self.n}"

    def run_rm(self, route: str) -> float:
        c = self.cid()
        t = time.perf_counter()
        self.ctr("run", "--rm", *self.routes[route], IMAGE, c, "/bin/true")
        return time.perf_counter() - t

    def rss_per_container(self, route: str, count: int) -> float:
        """The shims' VmRSS (KiB) per running container, with count containers."""
        ids = []
        try:
            for _ in range(count):
                c = self.cid()
                self.ctr("run", "-d", *self.routes[route], IMAGE, c, "sleep", "1000")
                ids.append(c)
            pids = []
            for line in self.ctr("task", "ls").stdout.splitlines()[1:]:
                f = line.split()
                if f and f[0] in ids:
                    pids.append(int(f[1]))
            shims = {ppid(p) for p in pids}
            return sum(rss_kib(s) for s in shims) / count
        finally:
            for c in ids:
                self.ctr("task", "delete", "-f", c, check=False)
                self.ctr("containers", "rm", c, check=False)

    def stop(self) -> None:
        for c in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("task", "delete", "-f", c, check=False)
            self.ctr("containers", "rm", c, check=False)
        time.sleep(3)  # minirun's shim server ends a moment after its last container
        if self.containerd is not None:
            self.containerd.send_signal(signal.SIGTERM)
            try:
                self.containerd.wait(15)
            except subprocess.TimeoutExpired:
                self.containerd.kill()
                self.containerd.wait()
        for d in (Path("/run/containerd/runc") / NS, Path("/run/containerd/minirun") / NS):
            shutil.rmtree(d, ignore_errors=True)
        # containerd's cgroup parent /NS (each container's /NS/ID is removed by its
        # runtime): in every hierarchy, runc's route having joined them all
        left = [d for m in cgroup_mounts() for d in rmdir_tree(m / NS)]
        if left:
            print(f"shimbench: cgroups left: {left}", file=sys.stderr)
        for d in ("/run/containerd/runc", "/run/containerd/minirun", "/run/containerd/s",
                  "/run/containerd/fifo", "/run/containerd"):
            try:
                os.rmdir(d)
            except OSError:
                pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--shim", default=str(REPO / ".venv" / "bin" / "containerd-shim-minirun-v1"))
    ap.add_argument("--runc", default="/usr/sbin/runc")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--json-out", type=Path, help="also write the results there (bench_table.py)")
    a = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("containerd"):
        print("shimbench: needs root and containerd", file=sys.stderr)
        return 2
    private_view()
    scratch = Path(tempfile.mkdtemp(prefix="minirun-shimbench-"))
    b = Bench(scratch, a.shim, a.runc)
    out: dict = {}
    try:
        b.start()
        times: dict[str, list[float]] = {r: [] for r in b.routes}
        for r in b.routes:  # warm-up: image unpacked, shims' pages cached
            b.run_rm(r)
        for i in range(a.runs):
            order = list(b.routes) if i % 2 == 0 else list(reversed(b.routes))
            for r in order:
                times[r].append(b.run_rm(r))
        for r, ts in times.items():
            out[r] = {"run_rm_ms": round(statistics.median(ts) * 1000, 1),
                      "rss_kib_per_container_1": round(b.rss_per_container(r, 1)),
                      "rss_kib_per_container_10": round(b.rss_per_container(r, 10))}
    finally:
        b.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    if a.json_out:
        a.json_out.parent.mkdir(parents=True, exist_ok=True)
        a.json_out.write_text(json.dumps(out) + "\n")
    if a.json:
        print(json.dumps(out))
        return 0
    ref, ours = out["runc shim + runc"], out["minirun shim"]
    print(f"ctr run --rm /bin/true, median of {a.runs}, and shim RSS per running container")
    print(f"{'':24}{'runc shim + runc':>18}{'minirun shim':>14}{'ratio':>8}  goal")
    print(f"{'ctr run --rm (ms)':24}{ref['run_rm_ms']:>18}{ours['run_rm_ms']:>14}"
          f"{ours['run_rm_ms'] / ref['run_rm_ms']:>8.2f}  <= 1.0x")
    for n in (1, 10):
        k = f"rss_kib_per_container_{n}"
        print(f"{f'RSS/container at {n} (MiB)':24}{ref[k] / 1024:>18.1f}{ours[k] / 1024:>14.1f}"
              f"{ours[k] / max(ref[k], 1):>8.2f}  {'<= 4 MiB' if n == 10 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
