"""Helpers for the conformance, exec and terminal tests (standard library only).

Config edits (callables for the ``bundle`` fixture's ``config_edits``), host-side
views of a container process (its namespaces, mounts, root, status) that work
between ``create`` and ``start``, and a runtime call running in the background.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

NS_PROC_NAMES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
                 "user": "user", "cgroup": "cgroup", "time": "time"}

MAPPING = [{"containerID": 0, "hostID": 100000, "size": 65536}]


# ---------------------------------------------------------------- config edits

def add_ns(kind: str, path: str | None = None) -> Callable[[dict], None]:
    """Add (or replace) a namespace entry."""
    def edit(cfg: dict) -> None:
        nss = [n for n in cfg["linux"].setdefault("namespaces", []) if n["type"] != kind]
        entry = {"type": kind}
        if path is not None:
            entry["path"] = str(path)
        nss.append(entry)
        cfg["linux"]["namespaces"] = nss
        if kind == "user" and path is None:
            cfg["linux"]["uidMappings"] = list(MAPPING)
            cfg["linux"]["gidMappings"] = list(MAPPING)
    return edit


def drop_ns(kind: str) -> Callable[[dict], None]:
    def edit(cfg: dict) -> None:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"].get("namespaces") or []
                                      if n["type"] != kind]
        if kind == "uts":
            cfg.pop("hostname", None)
            cfg.pop("domainname", None)
    return edit


def set_process(**fields: object) -> Callable[[dict], None]:
    def edit(cfg: dict) -> None:
        cfg["process"].update(fields)
    return edit


def set_linux(**fields: object) -> Callable[[dict], None]:
    def edit(cfg: dict) -> None:
        cfg["linux"].update(fields)
    return edit


def add_mount(**mount: object) -> Callable[[dict], None]:
    def edit(cfg: dict) -> None:
        cfg.setdefault("mounts", []).append(dict(mount))
    return edit


def add_caps(*names: str) -> Callable[[dict], None]:
    """Add capabilities to the bounding, effective and permitted sets."""
    def edit(cfg: dict) -> None:
        caps = cfg["process"].setdefault("capabilities", {})
        for kind in ("bounding", "effective", "permitted"):
            for n in names:
                if n not in caps.setdefault(kind, []):
                    caps[kind].append(n)
    return edit


# ---------------------------------------------------------------- host-side views

def ns_link(pid: int | str, name: str) -> str:
    """readlink /proc/PID/ns/NAME, e.g. 'net:[4026531840]'."""
    return os.readlink(f"/proc/{pid}/ns/{name}")


def ns_links(pid: int | str) -> dict[str, str]:
    out = {}
    for name in sorted(os.listdir(f"/proc/{pid}/ns")):
        try:
            out[name] = os.readlink(f"/proc/{pid}/ns/{name}")
        except OSError:
            continue
    return out


def ns_file_link(path: str | Path, name: str) -> str:
    """The 'name:[inode]' of a namespace bind-mounted on path (as readlink shows it)."""
    return f"{name}:[{os.stat(path).st_ino}]"


def proc_status(pid: int | str) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def nspid(pid: int | str) -> list[int]:
    """The pid in each nested pid namespace, outermost first (NSpid)."""
    return [int(x) for x in proc_status(pid)["NSpid"].split()]


def cmdline(pid: int | str) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def fds_of(pid: int | str) -> dict[int, str]:
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            out[int(name)] = "?"
    return out


def alive(pid: int) -> bool:
    """pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X")


def nsenter(pid: int, *args: str, ns: str = "-a", timeout: float = 30.0) -> str:
    """Run a host program in some namespaces of pid (``ns``: nsenter's flags, e.g. '-u')
    and return its stdout; the program comes from the host, so it works before
    ``start``."""
    flags = ns.split() if ns else []
    r = subprocess.run(["nsenter", "-t", str(pid), *flags, "--", *args],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"nsenter -t {pid} {ns} {' '.join(args)}: exit {r.returncode}: "
                             f"{r.stderr.strip()}")
    return r.stdout


def wait_for(pred: Callable[[], object], what: str, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Background:
    """A runtime call running in the background (stdout/stderr to files)."""

    def __init__(self, argv: list[str], workdir: Path, name: str, **popen: object) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.out_path = workdir / f"{name}.out"
        self.err_path = workdir / f"{name}.err"
        self.argv = argv
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            popen.setdefault("stdin", subprocess.DEVNULL)
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, **popen)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child, by pid
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def __str__(self) -> str:
        return (f"$ {' '.join(map(str, self.argv))}\n-> exit {self.proc.returncode}\n"
                f"stdout: {self.stdout!r}\nstderr: {self.stderr!r}")


def stop_and_reap(runtime, cid: str, reap: Callable[[], None], timeout: float = 30.0) -> None:
    """SIGKILL every process of the container and reap those that re-parented to us.

    The test process is a child subreaper, as an engine's shim is: processes exec'd
    into a container re-parent to it, and the container's dying init (pid 1 of its pid
    namespace) waits until they are reaped, as a shim would reap them at once. Run
    before the leak guard's `delete --force`, so that it does not wait for them."""
    if runtime.status(cid) in (None, "stopped"):
        reap()
        return
    runtime("kill", "--all", cid, "KILL")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap()
        if runtime.status(cid) in (None, "stopped"):
            return
        time.sleep(0.05)
