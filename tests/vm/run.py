#!/usr/bin/env python3
"""Boot a pure cgroup v2 VM and run the VM lane in it; carry its real result out.

    run.py [--cache DIR] [--kernel VMLINUZ] [--vng VNG] [--results DIR]
           [--timeout S] [--cpus N] [--memory SIZE] [--layout v2|hybrid|v1]
           test [FILE...] [-- PYTEST_OPTION...]
    run.py [...] bench [MEMMIN_OPTION...]

The VM is Debian's generic 6.1 kernel (tests/vm/prepare.sh installs it and
virtme-ng) booted by `vng` under qemu's TCG (this machine's /dev/kvm only takes
paravirtualised guests), sharing the host's filesystem read-only, with RESULTS
as a writable 9p folder. Inside, tests/vm/guest.sh runs the lane and writes its
log, timings and exit status into RESULTS: vng itself exits 255 whatever
happened and its --exec output does not reliably reach the host, so the status
file is the only result that counts. While the VM runs, the guest's log is
copied to stdout as it grows.

Exit status: the guest lane's (0 = every check passed), or 2 when the guest
wrote no status (the VM did not boot, crashed, or the timeout killed it; then
the tail of vng's console log is printed).

Standard library only; runs with /usr/bin/python3 as root.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUEST_SH = REPO / "tests" / "vm" / "guest.sh"
DEFAULT_CACHE = Path(os.environ.get("VM_CACHE", "/var/cache/minirun-vm"))

# Paths the guest mounts over (tmpfs) or never sees from the host's root: a
# checkout there must be exported to the guest explicitly (--rodir).
HIDDEN_IN_GUEST = (
    "/var/tmp", "/var/cache", "/var/log", "/var/lib/private", "/var/lib/apt",
    "/run", "/dev", "/proc", "/sys", "/usr/lib/modules", "/lib/modules",
)
RESULT_FILES = ("guest.log", "status", "status.tmp", "timings", "junit.xml", "memmin.json",
                "console.log")


def under(path: Path, prefix: str) -> bool:
    return str(path) == prefix or str(path).startswith(prefix.rstrip("/") + "/")


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s"


class LogTail:
    """Copies a file that another machine appends to, to our stdout."""

    def __init__(self, path: Path):
        self.path = path
        self.pos = 0

    def pump(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        if data:
            self.pos += len(data)
            sys.stdout.write(data.decode(errors="replace"))
            sys.stdout.flush()


def junit_counts(path: Path) -> str | None:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors",
                                                          "skipped")}
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    return (f"{passed} passed, {n['failures']} failed, {n['errors']} errors, "
            f"{n['skipped']} skipped")


def read_timings(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    except OSError:
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Boot a pure cgroup v2 VM (qemu TCG, virtme-ng) and run the VM lane in it.")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help="what tests/vm/prepare.sh made (default %(default)s)")
    p.add_argument("--kernel", type=Path, help="kernel image (default CACHE/vmlinuz)")
    p.add_argument("--vng", help="vng executable (default CACHE/venv/bin/vng)")
    p.add_argument("--results", type=Path,
                   help="host folder shared writable with the guest (default "
                        "REPO/build/vm/results[-LAYOUT], or CACHE/results[-LAYOUT] when the "
                        "checkout is in a place the guest hides and must be exported on its "
                        "own)")
    p.add_argument("--timeout", type=float, default=2400,
                   help="seconds before the VM is killed (default %(default)s)")
    p.add_argument("--cpus", default="2")
    p.add_argument("--memory", default="2G")
    p.add_argument("--layout", choices=("v2", "hybrid", "v1"), default="v2",
                   help="the guest's cgroup layout (guest.sh's VM_LAYOUT; default %(default)s)")
    p.add_argument("mode", choices=("test", "bench"))
    p.add_argument("args", nargs=argparse.REMAINDER,
                   help="test: pytest files [-- pytest options]; bench: memmin.py options")
    ns = p.parse_args(argv)

    if os.geteuid() != 0:
        print("vm: run as root (qemu, cgroups and containers in the guest)", file=sys.stderr)
        return 2
    kernel = Path(os.path.realpath(ns.kernel or ns.cache / "vmlinuz"))
    vng = ns.vng or str(ns.cache / "venv" / "bin" / "vng")
    for what, path in (("kernel", kernel), ("vng", Path(vng))):
        if not path.exists():
            print(f"vm: no {what} at {path}: run tests/vm/prepare.sh (make vm-prepare)",
                  file=sys.stderr)
            return 2
    if not (REPO / ".venv" / "bin" / "minirun").exists():
        print(f"vm: no {REPO}/.venv/bin/minirun: run 'make install' first", file=sys.stderr)
        return 2

    # A checkout below a path the guest mounts over is exported on its own (read-only);
    # then the results folder must not be inside it (the two 9p mounts would stack).
    export_repo = any(under(REPO, h) for h in HIDDEN_IN_GUEST)
    results = ns.results
    if results is None:
        name = "results" if ns.layout == "v2" else f"results-{ns.layout}"
        results = ns.cache / name if export_repo else REPO / "build" / "vm" / name
    results = results.absolute()
    if export_repo and under(results, str(REPO)):
        print(f"vm: the checkout {REPO} is hidden in the guest and must be exported; "
              f"put --results outside it", file=sys.stderr)
        return 2
    results.mkdir(parents=True, exist_ok=True)
    for name in RESULT_FILES:
        (results / name).unlink(missing_ok=True)

    # --verbose: the kernel's console goes to console.log (shown when the guest wrote no
    # status: a panic, a soft lockup or the OOM killer then say what happened)
    vng_argv = [vng, "-r", str(kernel), "--disable-kvm", "--force-9p", "--verbose",
                "--cpus", str(ns.cpus), "-m", ns.memory, "--rwdir", str(results)]
    if export_repo:
        vng_argv.append(f"--rodir={REPO}")
    # the guest's own timeout for pytest or memmin leaves time to boot and report
    guest_timeout = max(60, int(ns.timeout) - 240)
    guest_cmd = shlex.join(["env", f"VM_PYTEST_TIMEOUT={guest_timeout}",
                            f"VM_LAYOUT={ns.layout}", "bash", str(GUEST_SH),
                            str(results), str(REPO), ns.mode, *ns.args])
    vng_argv += ["--cwd", str(results), "--exec", guest_cmd]

    env = dict(os.environ)
    env["PATH"] = f"{Path(vng).parent}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    console = results / "console.log"
    print(f"vm: booting {kernel} under qemu TCG ({ns.cpus} cpus, {ns.memory}); "
          f"results in {results}; timeout {ns.timeout:.0f} s", flush=True)
    print("vm: $ " + shlex.join(vng_argv), flush=True)

    start = time.monotonic()
    tail = LogTail(results / "guest.log")
    timed_out = False
    with open(console, "wb") as con:
        proc = subprocess.Popen(vng_argv, stdin=subprocess.DEVNULL, stdout=con,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            while True:
                try:
                    proc.wait(timeout=1)
                    break
                except subprocess.TimeoutExpired:
                    tail.pump()
                    if time.monotonic() - start > ns.timeout:
                        timed_out = True
                        break
        finally:
            if proc.poll() is None:
                # vng and its qemu: the process group this script started, and only it
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        break
                    try:
                        proc.wait(timeout=10)
                        break
                    except subprocess.TimeoutExpired:
                        pass
    wall = time.monotonic() - start
    tail.pump()

    status_file = results / "status"
    timings = read_timings(results / "timings")
    print("\n==== VM lane ====")
    if timed_out:
        print(f"vm: TIMEOUT: killed the VM after {fmt_s(wall)} (--timeout {ns.timeout:.0f})")
    lane = timings.get("lane")
    up = timings.get("kernel-up-before-lane")
    steps = ", ".join(f"{k} {fmt_s(v)}" for k, v in timings.items()
                      if k not in ("lane", "kernel-up-before-lane"))
    print(f"vm: boot + {ns.mode} took {fmt_s(wall)} wall on the host"
          + (f"; in the guest: kernel up {fmt_s(up)} before the lane" if up is not None else "")
          + (f", lane {fmt_s(lane)} ({steps})" if lane is not None else ""))
    counts = junit_counts(results / "junit.xml")
    if counts:
        print(f"vm: pytest in the guest: {counts}")
    try:
        rc = int(status_file.read_text().strip())
    except (OSError, ValueError):
        print(f"vm: FAIL: the guest wrote no exit status to {status_file} "
              f"(vng exited {proc.returncode}): the VM did not boot, crashed or was killed")
        try:
            lines = console.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        print(f"vm: last lines of {console}:")
        for line in lines[-40:]:
            print("    " + line)
        return 2
    print(f"vm: {'PASS' if rc == 0 else 'FAIL'}: the guest lane exited {rc} "
          f"(log: {results / 'guest.log'})")
    return rc


if __name__ == "__main__":
    sys.exit(main())
