"""Harness for the engine tests: containerd (through ``ctr``) and podman (through
conmon) driving the runtime under test, offline, as in ``shared/notes/engines.md``.

The runtime is ``ENGINE_RUNTIME`` (default ``<repo>/.venv/bin/minirun``); point it
at ``/usr/sbin/runc`` to run the same scenarios against the reference. The engines
call it through an argv-logging wrapper, ``<scratch>/bin/<basename>`` (same
basename, so that podman and conmon treat it as they treat the runtime itself).
Every call lands in ``<scratch>/runtime-calls.log``; a failing test shows the calls
made during it. ``ENGINE_RUNTIME_LOGS=1`` makes the wrapper wait for the runtime
instead of exec'ing it, and append its exit status and the lines it wrote to its
``--log`` file (the exact runtime error), and keep a copy of every config.json and
``exec --process`` file the engines hand over in ``<scratch>/kept``, at the cost of
one extra process between the engine and the runtime.

Safety on this hybrid-cgroup host: the v1 memory hierarchy belongs to the machine.
containerd, podman, their shims and conmon, and so the runtime, run only inside a
private mount namespace in which ``/sys/fs/cgroup`` is the host's hybrid layout but
for the memory hierarchy, unmounted there (``ENGINE_CGROUP_VIEW=hybrid``, the
default: the engines run with their stock settings, their cpu shares and pids limit
land in the v1 cpu and pids hierarchies), or a lone cgroup2 mount, the host's
``/sys/fs/cgroup/unified`` (``ENGINE_CGROUP_VIEW=v2``: a pure cgroup v2 host).
``supervisor.py`` holds that namespace for the session, runs containerd in it and
ends everything it started when the session ends or pytest dies; podman enters it
with ``nsenter``. Every cgroup a test's containers used is checked gone in every
hierarchy, and the session fails if a directory it made is left in a v1 hierarchy.
containerd and its shims live outside pytest's process tree (the suite's leak
check fails any process left below pytest): the per-test check here fails any
process left below the supervisor but containerd.

Engines keep some things outside the scratch folder; they are cleaned by id:
``/run/containerd/runc/<ns>/<id>``, the shim socket ``/run/containerd/s/<sha256>``,
``/run/containerd/fifo/*`` (files named ``<id>-stdout`` ...), podman's runtime root
(``/run/runc``, ``/run/minirun``: no ``--root`` is passed), the cgroups
``/<ns>/<id>`` (containerd) and ``/<podman cgroup parent>/...`` in the cgroup2
hierarchy, the engines' temporary files in /tmp (``runc-process*``, ``pty*``,
``conmon-term.*``), and c/image's ``/var/lib/containers/cache`` (``podman load``
writes its blob-info cache there whatever the storage config says). Directories
the session created (``/run/containerd``, the runtime root) are removed when empty.

Constraint of this host the scenarios follow: podman's default ulimits need
CAP_SYS_RESOURCE, which root lacks here, so containers.conf sets lower ones.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import select
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .cgtree import rmdir_tree  # noqa: F401 - test_cri imports it from here
from .image import DEFAULT_NAME as IMAGE
from .image import build_oci_archive

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RUNTIME = os.environ.get("ENGINE_RUNTIME") or str(REPO / ".venv" / "bin" / "minirun")
RUNTIME_NAME = os.path.basename(RUNTIME)
# minirun's own containerd shim (ctr --runtime PATH): the `ctr` scenarios run through
# containerd's runc shim driving the runtime, and through this shim
SHIM = os.environ.get("ENGINE_SHIM") or str(REPO / ".venv" / "bin" / "containerd-shim-minirun-v1")
SHIM_STATE = Path("/run/containerd/minirun")  # the shim's runtime root, per namespace
# the CRI plugin's pod sandbox image: busybox whose command waits forever
PAUSE_IMAGE = "localhost/minirun-pause:latest"
PAUSE_CMD = ["sleep", "2147483647"]
CRI_NAMESPACE = "k8s.io"  # the containerd namespace of everything the CRI plugin runs
IS_MINIRUN = "minirun" in RUNTIME_NAME
TIMEOUT = float(os.environ.get("ENGINE_TEST_TIMEOUT", "60"))
KEEP_LOGS = os.environ.get("ENGINE_RUNTIME_LOGS") == "1"
# podman passes no --root: the runtime uses its own default state root
_DEFAULT_ROOTS = {"runc": "/run/runc", "crun": "/run/crun", "minirun": "/run/minirun"}
RUNTIME_ROOT = Path(os.environ.get("ENGINE_RUNTIME_ROOT")
                    or _DEFAULT_ROOTS.get(RUNTIME_NAME, f"/run/{RUNTIME_NAME}"))
CONTAINERD_RUN = Path("/run/containerd")  # shim sockets, fifos, runc roots (fixed in 1.6)
BLOBINFO_CACHE = Path("/var/lib/containers")
_BLOBINFO_FILE = BLOBINFO_CACHE / "cache" / "blob-info-cache-v1.boltdb"
CGROUP_FS = Path("/sys/fs/cgroup")
# What /sys/fs/cgroup is in the engines' namespace, seen from the host.
CGROUP2_HOST = CGROUP_FS / "unified" if (CGROUP_FS / "unified").is_dir() else CGROUP_FS
CGROUP_VIEW = os.environ.get("ENGINE_CGROUP_VIEW", "hybrid")
if CGROUP_VIEW not in ("hybrid", "v2"):
    raise SystemExit(f"ENGINE_CGROUP_VIEW={CGROUP_VIEW!r}: hybrid or v2")
SUPERVISOR = HERE / "supervisor.py"

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def missing(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def skip_unless_usable(*tools: str) -> None:
    """Module-level skip with a reason when the engine is not installed or we are not root."""
    if os.geteuid() != 0:
        pytest.skip("engine tests need root", allow_module_level=True)
    gone = missing(*tools)
    if gone:
        pytest.skip(f"not installed: {', '.join(gone)} (make test installs them with apt)",
                    allow_module_level=True)


# --------------------------------------------------------------------------
# Running commands
# --------------------------------------------------------------------------


@dataclass(repr=False)
class Res:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (f"$ {shlex.join(self.argv)}\n-> exit {self.returncode}\n"
                f"stdout: {self.stdout!r}\nstderr: {self.stderr!r}")

    __repr__ = __str__  # what pytest shows for ``assert ..., res``


class Runner:
    """Runs commands with output in files (a container may inherit the stdio of
    the engine command that started it: a pipe would make us wait for it)."""

    def __init__(self, io_dir: Path):
        self.io_dir = io_dir
        self.io_dir.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def __call__(self, argv: list[str], *, env: dict | None = None, tty: bool = False,
                 input: str | None = None, timeout: float = TIMEOUT) -> Res:
        shown = list(argv)
        if tty:
            # a pty for -t (ctr and podman refuse -t without one); script's exit
            # status is the command's (-e), its output is the terminal's
            argv = ["script", "-qec", shlex.join(argv), "/dev/null"]
        self.n += 1
        base = self.io_dir / f"{self.n:04d}"
        out_p, err_p, in_p = (base.with_suffix(s) for s in (".out", ".err", ".in"))
        if input is not None:
            in_p.write_text(input)
        with open(out_p, "wb") as out_f, open(err_p, "wb") as err_f, \
                open(in_p if input is not None else os.devnull, "rb") as in_f:
            p = subprocess.Popen(argv, stdin=in_f, stdout=out_f, stderr=err_f, env=env)
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()  # our own child, by pid
                p.wait()
                raise AssertionError(
                    f"timed out after {timeout}s: {shlex.join(shown)}\n"
                    f"stdout: {out_p.read_text(errors='replace')!r}\n"
                    f"stderr: {err_p.read_text(errors='replace')!r}") from None
        out = out_p.read_text(errors="replace")
        if tty:
            out = out.replace("\r\n", "\n").replace("\0", "")
        return Res(shown, rc, out, err_p.read_text(errors="replace"))


def wait_for(pred, what: str, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X")


def children_table() -> dict[int, list[int]]:
    table: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            table.setdefault(int(stat[stat.rfind(")") + 2:].split()[1]), []).append(int(d))
    return table


def descendants(pid: int) -> list[int]:
    table = children_table()
    out, todo = [], [pid]
    while todo:
        for c in table.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def engine_v1_hierarchies() -> list[Path]:
    """The v1 hierarchies the engines see (every one but memory's, in the hybrid view)."""
    if CGROUP_VIEW == "v2" or CGROUP2_HOST == CGROUP_FS:
        return []
    out: list[Path] = []
    with open("/proc/self/mountinfo") as f:
        for ln in f:
            left, _, right = ln.partition(" - ")
            fstype, _, opts = right.split()[:3]
            point = Path(left.split()[4])
            if fstype == "cgroup" and "memory" not in opts.split(",") and point not in out:
                out.append(point)
    return out


def engine_v1_mount(controller: str) -> Path | None:
    """Where the engines see the v1 hierarchy of ``controller`` (None: not in v1 there)."""
    for h in engine_v1_hierarchies():
        with open("/proc/self/mountinfo") as f:
            for ln in f:
                left, _, right = ln.partition(" - ")
                if Path(left.split()[4]) == h and controller in right.split()[2].split(","):
                    return h
    return None


def cgroups_of(pid: int | str) -> dict[str, str]:
    """v1 controller (or "" for cgroup2) -> the process's cgroup path, from /proc/PID/cgroup."""
    out = {}
    for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = ln.split(":", 2)
        for n in names.split(",") if names else [""]:
            out[n] = path
    return out


def hybrid_view() -> bool:
    """The engines see this host's hybrid layout (stock settings land in v1)."""
    return bool(engine_v1_hierarchies())


def engine_cgroup_dirs(rel: str) -> list[Path]:
    """Host paths of the engines' cgroup ``rel`` in every hierarchy they see."""
    rel = rel.strip("/")
    return [CGROUP2_HOST / rel] + [h / rel for h in engine_v1_hierarchies()]


def v1_cgroup_dirs() -> set[str]:
    """Every directory of the host's cgroup v1 hierarchies, but the machine
    supervisor's own (process_api makes one per job it runs)."""
    out: set[str] = set()
    if CGROUP2_HOST == CGROUP_FS:
        return out  # a pure cgroup v2 host: no v1 hierarchy to protect
    for h in os.listdir(CGROUP_FS):
        top = CGROUP_FS / h
        if h == "unified" or not top.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(top):
            dirnames[:] = [d for d in dirnames if d != "process_api"]
            out.update(os.path.join(dirpath, d) for d in dirnames)
    return out


# --------------------------------------------------------------------------
# The session: scratch folder, wrapper, image, private namespace, containerd
# --------------------------------------------------------------------------


_WRAPPER_EXEC = """#!/bin/sh
# written by tests/engines/conftest.py: log the argv, then become the runtime
printf '%s\\n' "$*" >> {log}
exec {runtime} "$@"
"""

_WRAPPER_KEEP_LOGS = """#!/bin/sh
# written by tests/engines/conftest.py (ENGINE_RUNTIME_LOGS=1): log the argv, keep a
# copy of the config.json / process.json the engine hands over, run the runtime,
# log its exit status and what it appended to its --log file
printf '%s\\n' "$*" >> {log}
rlog=; prev=; bundle=; process=
for a; do
    case $prev in --log) rlog=$a;; --bundle|-b) bundle=$a;; --process|-p) process=$a;; esac
    case $a in
        --log=*) rlog=${{a#--log=}};; --bundle=*) bundle=${{a#--bundle=}};;
        --process=*) process=${{a#--process=}};;
    esac
    prev=$a
done
n=$(date +%s%N)
for f in ${{bundle:+"$bundle/config.json"}} ${{process:+"$process"}}; do
    if [ -f "$f" ]; then
        mkdir -p {keep}
        cp "$f" {keep}/"$n-${{f##*/}}"
        printf '  kept %s as %s\\n' "$f" {keep}/"$n-${{f##*/}}" >> {log}
    fi
done
size=0
[ -n "$rlog" ] && [ -f "$rlog" ] && size=$(stat -c %s "$rlog")
{runtime} "$@"
rc=$?
{{
    printf '  -> exit %s\\n' "$rc"
    [ -n "$rlog" ] && [ -f "$rlog" ] && tail -c +$((size + 1)) "$rlog" | sed 's/^/  log: /'
}} >> {log}
exit $rc
"""


@dataclass
class EngineHost:
    scratch: Path
    ns_pid: int
    containerd_pid: int | None
    wrapper: Path
    calls_log: Path
    archive: Path
    run: Runner
    supervisor_log: Path
    containerd_ns: str  # the ctr namespace, and containerd's cgroup /<ns>/<id>
    podman_cgroup: str  # podman --cgroup-parent
    _ctl: int = -1

    def in_ns(self, argv: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.ns_pid), "-m", "--", *argv]

    def calls_offset(self) -> int:
        return self.calls_log.stat().st_size if self.calls_log.exists() else 0

    def calls_since(self, offset: int) -> str:
        if not self.calls_log.exists():
            return ""
        with open(self.calls_log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def ns_mounts(self) -> set[str]:
        """Mounts of the engines' namespace under the scratch folder, but the one
        podman's overlay driver keeps on its home (a private bind of it onto itself,
        made and dropped with the driver, whatever the containers do)."""
        out = set()
        overlay_home = str(self.scratch / "podman" / "graph" / "overlay")
        for line in Path(f"/proc/{self.ns_pid}/mountinfo").read_text().splitlines():
            f = line.split()
            if f[4] == overlay_home:
                continue
            if str(self.scratch) in f[4] or str(self.scratch) in f[3]:
                out.add(f"{f[4]} ({line.split(' - ')[1].split()[0]})")
        return out

    def stray_processes(self) -> dict[int, str]:
        """Processes below the supervisor other than containerd."""
        return {p: cmdline(p) for p in descendants(self.ns_pid)
                if p != self.containerd_pid and pid_alive(p)}

    def containerd_alive(self) -> bool:
        return self.containerd_pid is not None and pid_alive(self.containerd_pid)

    def restart_containerd(self) -> None:
        """Stop containerd and start it again (the supervisor does it; shims live on)."""
        pid_file = self.scratch / "containerd.pid"
        pid_file.unlink(missing_ok=True)
        os.write(self._ctl, b"r")
        wait_for(pid_file.exists, "containerd to restart", 30)
        self.containerd_pid = int(pid_file.read_text())


def _start_supervisor(scratch: Path, command: list[str],
                      on_exit: Path) -> tuple[int, int | None, int]:
    """Start supervisor.py outside pytest's process tree; returns (its pid,
    containerd's pid or None, the control pipe's write end)."""
    libc = ctypes.CDLL(None, use_errno=True)
    was = ctypes.c_int(0)
    libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(was), 0, 0, 0)
    ctl_r, ctl_w = os.pipe()
    rdy_r, rdy_w = os.pipe()
    log = scratch / "supervisor.log"
    # With pytest not a subreaper for this moment, the supervisor re-parents
    # away from it when its starter (its parent) exits.
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    try:
        with open(log, "ab") as lf:
            starter = subprocess.Popen(
                [sys.executable, "-I", str(SUPERVISOR), "--control-fd", str(ctl_r),
                 "--ready-fd", str(rdy_w), "--log", str(log), "--scratch", str(scratch),
                 "--on-exit", str(on_exit), "--cgroup-view", CGROUP_VIEW, "--", *command],
                pass_fds=(ctl_r, rdy_w), stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                start_new_session=True)
            starter.wait(timeout=30)
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, was.value, 0, 0, 0)
        os.close(ctl_r)
        os.close(rdy_w)
    with os.fdopen(rdy_r) as rdy:
        r, _, _ = select.select([rdy], [], [], 30)
        line = rdy.readline() if r else ""
    if not line:
        os.close(ctl_w)
        raise RuntimeError(f"supervisor did not start; its log:\n{log.read_text()}")
    msg = json.loads(line)
    if "error" in msg:
        os.close(ctl_w)
        raise RuntimeError(f"supervisor: {msg['error']}")
    return msg["pid"], msg["child"], ctl_w


def _stop_supervisor(host: EngineHost) -> list[str]:
    problems = []
    try:
        pidfd = os.pidfd_open(host.ns_pid)
    except ProcessLookupError:
        pidfd = None
    os.close(host._ctl)  # EOF: the supervisor stops containerd and exits
    if pidfd is not None:
        r, _, _ = select.select([pidfd], [], [], 30)
        os.close(pidfd)
        if not r:
            problems.append(f"supervisor {host.ns_pid} still running 30 s after the session")
    log = host.supervisor_log.read_text(errors="replace") if host.supervisor_log.exists() else ""
    cleaned = [ln for ln in log.splitlines()
               if ln.startswith(("supervisor: killing", "on-exit:"))
               or "ignored SIGTERM" in ln or "exited" in ln and "on-exit" in ln]
    if cleaned:
        problems.append("left for the session's end to clean: " + "; ".join(cleaned))
    return problems


# Run by the supervisor in the engines' namespace (paths seen from the host, which
# are the same there but for what the view hides) when it exits, after it killed
# every process of the session: removes by id what a crashed session leaves outside
# the scratch folder. After a clean session the fixtures have removed all of it:
# every line this prints is reported as a leak.
_ON_EXIT = """#!/bin/sh
R={wrapper}
NS={ns}
ADDR={address}
S={scratch}
RROOT={runtime_root}
CGS="{cgroups}"
for cg in $CGS; do
    [ -d "$cg" ] || continue
    echo "on-exit: cgroup $cg: killing what is left in it"
    if [ -e "$cg/cgroup.kill" ]; then echo 1 > "$cg/cgroup.kill"
    else find "$cg" -name cgroup.procs -exec cat {{}} + | xargs -r kill -9
    fi
done
sleep 0.2
d=/run/containerd/runc/$NS
if [ -d "$d" ]; then
    for id in $(ls "$d"); do
        echo "on-exit: runtime state /run/containerd/runc/$NS/$id: delete --force"
        "$R" --root "$d" delete --force "$id"
    done
    rm -rf "$d"
fi
for b in "$S"/containerd/state/io.containerd.runtime.v2.task/"$NS"/*/; do
    [ -d "$b" ] || continue
    id=$(basename "$b")
    sock=/run/containerd/s/$(printf '%s' "$ADDR/$NS/$id" | sha256sum | cut -d' ' -f1)
    if [ -e "$sock" ]; then echo "on-exit: removing $sock (shim of $id)"; rm -f "$sock"; fi
    for f in /run/containerd/fifo/*/"$id"-*; do
        if [ -e "$f" ]; then echo "on-exit: removing ${{f%/*}}"; rm -rf "${{f%/*}}"; fi
    done
done
for c in "$S"/podman/graph/overlay-containers/*/; do
    [ -d "$c" ] || continue
    id=$(basename "$c")
    [ -e "$RROOT/$id" ] || continue
    echo "on-exit: runtime state $RROOT/$id: delete --force"
    "$R" delete --force "$id"
    rm -rf "$RROOT/$id"
done
for cg in $CGS; do
    [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {{}} \\;
done
# what the session created outside the scratch folder, if empty now
rm -f {blobinfo}
for d in {rmdirs}; do rmdir "$d" 2>/dev/null; done
exit 0
"""


# Directories engines create outside the scratch folder, children before parents.
_CREATED_DIRS = [CONTAINERD_RUN / "runc", SHIM_STATE, CONTAINERD_RUN / "s",
                 CONTAINERD_RUN / "fifo",
                 CONTAINERD_RUN, RUNTIME_ROOT, BLOBINFO_CACHE / "cache", BLOBINFO_CACHE]


def _snapshot_paths(paths: Iterable[Path]) -> dict[Path, bool]:
    return {p: p.exists() for p in paths}


@pytest.fixture(scope="session")
def engine_host(tmp_path_factory: pytest.TempPathFactory):
    """The session's scratch folder, runtime wrapper, image archive and the private
    mount namespace (with containerd running in it when containerd is installed)."""
    if os.geteuid() != 0:
        pytest.skip("engine tests need root")
    if not os.access(RUNTIME, os.X_OK):
        pytest.fail(f"ENGINE_RUNTIME {RUNTIME} is not an executable (run make install?)")
    scratch = tmp_path_factory.mktemp("engines")
    bindir = scratch / "bin"
    bindir.mkdir()
    calls = scratch / "runtime-calls.log"
    wrapper = bindir / RUNTIME_NAME
    tpl = _WRAPPER_KEEP_LOGS if KEEP_LOGS else _WRAPPER_EXEC
    wrapper.write_text(tpl.format(log=shlex.quote(str(calls)),
                                  keep=shlex.quote(str(scratch / "kept")),
                                  runtime=shlex.quote(os.path.abspath(RUNTIME))))
    wrapper.chmod(0o755)
    archive = build_oci_archive(scratch / "busybox.oci.tar", IMAGE)
    build_oci_archive(scratch / "pause.oci.tar", PAUSE_IMAGE, cmd=PAUSE_CMD)

    v1_before = v1_cgroup_dirs()
    existed = _snapshot_paths(_CREATED_DIRS)

    command: list[str] = []
    if not missing("containerd", "ctr"):
        cd = scratch / "containerd"
        cd.mkdir()
        (cd / "config.toml").write_text(f"""version = 2
root = "{cd}/root"
state = "{cd}/state"

[grpc]
  address = "{cd}/containerd.sock"

[ttrpc]
  address = "{cd}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{cd}/opt"

# The CRI plugin (Kubernetes' API; tests/engines/test_cri.py) with a runtime handler
# "minirun" naming minirun's shim, a locally built pause image, CNI files in the
# scratch folder (the test's pod uses the host's network: no CNI plugin runs), and
# oom_score_adj kept at or above containerd's own (root here lacks CAP_SYS_RESOURCE).
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.minirun]
    runtime_type = "{SHIM}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cd}/cni/bin"
    conf_dir = "{cd}/cni/conf"
""")
        command = ["containerd", "--config", str(cd / "config.toml")]
    containerd_ns = f"mrt-engines-{os.getpid()}"
    podman_cgroup = f"/mrt-engines-{os.getpid()}-podman"
    on_exit = scratch / "on-exit.sh"
    created = [p for p in _CREATED_DIRS if not existed[p]]  # children first
    on_exit.write_text(_ON_EXIT.format(
        wrapper=shlex.quote(str(wrapper)), ns=containerd_ns, scratch=shlex.quote(str(scratch)),
        address=shlex.quote(str(scratch / "containerd" / "containerd.sock")),
        runtime_root=shlex.quote(str(RUNTIME_ROOT)),
        cgroups=" ".join(shlex.quote(str(p)) for p in
                         engine_cgroup_dirs(containerd_ns) + engine_cgroup_dirs(podman_cgroup)),
        blobinfo=(shlex.quote(str(_BLOBINFO_FILE)) if not existed[BLOBINFO_CACHE] else ""),
        rmdirs=" ".join(shlex.quote(str(p)) for p in created)))
    ns_pid, cd_pid, ctl = _start_supervisor(scratch, command, on_exit)
    host = EngineHost(scratch, ns_pid, cd_pid, wrapper, calls, archive,
                      Runner(scratch / "io"), scratch / "supervisor.log", containerd_ns,
                      podman_cgroup, ctl)
    try:
        yield host
    finally:
        problems = _stop_supervisor(host)
        # The on-exit script removed the directories the session created outside the
        # scratch folder, if empty (what is still in them belongs to someone else:
        # the tests checked their own ids).
        new_v1 = v1_cgroup_dirs() - v1_before
        if new_v1:
            problems.append(f"cgroup v1 directories left behind: {sorted(new_v1)}")
        if problems:
            pytest.fail("engine session cleanup:\n  " + "\n  ".join(problems), pytrace=False)


# --------------------------------------------------------------------------
# Per-test bookkeeping shared by ctr and podman
# --------------------------------------------------------------------------


_TMP_PATTERNS = ("runc-process", "pty", "conmon-term.")


def _engine_tmp_files() -> set[str]:
    return {n for n in os.listdir("/tmp") if n.startswith(_TMP_PATTERNS)}


@dataclass
class CaseBase:
    host: EngineHost
    new_id: object  # the suite's CaseCtx.new_id: ids the suite's leak check knows
    ids: list[str] = field(default_factory=list)
    _calls_at: int = 0
    _mounts_at: set[str] = field(default_factory=set)
    _tmp_at: set[str] = field(default_factory=set)
    call_failed: bool = False  # set by pytest_runtest_makereport

    def begin(self) -> None:
        self._calls_at = self.host.calls_offset()
        self._mounts_at = self.host.ns_mounts()
        self._tmp_at = _engine_tmp_files()

    def cid(self, tag: str = "") -> str:
        c = self.new_id(tag)
        self.ids.append(c)
        return c

    def runtime_calls(self) -> str:
        return self.host.calls_since(self._calls_at)

    def common_checks(self) -> list[str]:
        problems = []
        try:
            wait_for(lambda: not self.host.stray_processes(), "engine processes to exit", 10)
        except AssertionError:
            problems.append(f"processes left below the engines: {self.host.stray_processes()}")
        new_m = self.host.ns_mounts() - self._mounts_at
        if new_m:
            problems.append(f"mounts left in the engines' namespace: {sorted(new_m)}")
        new_tmp = _engine_tmp_files() - self._tmp_at
        if new_tmp:
            # conmon leaves its console socket when the runtime failed: a leak
            # only if the test passed
            if not self.call_failed:
                problems.append(f"engine temporary files left in /tmp: {sorted(new_tmp)}")
            for n in new_tmp:
                p = Path("/tmp") / n
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        return problems

    def runtime_root_checks(self, ids: Iterable[str]) -> list[str]:
        """State the runtime kept under its default root (podman passes no --root)."""
        problems = []
        for i in ids:
            d = RUNTIME_ROOT / i
            if d.exists():
                problems.append(f"runtime state left: {d}")
                self.host.run(self.host.in_ns([str(self.host.wrapper), "delete", "--force", i]))
                if d.exists():
                    shutil.rmtree(d, ignore_errors=True)
        return problems


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    rep = yield
    if rep.when == "call" and (rep.failed or hasattr(rep, "wasxfail")):
        for name in ("ctr", "podman"):
            case = getattr(item, "funcargs", {}).get(name)
            if isinstance(case, CaseBase):
                case.call_failed = True
                rep.sections.append((f"runtime calls during the test ({name})",
                                     case.runtime_calls() or "(none)"))
    return rep


# --------------------------------------------------------------------------
# containerd / ctr
# --------------------------------------------------------------------------


@dataclass
class CtrSession:
    host: EngineHost
    address: str
    namespace: str

    def argv(self, *args: str) -> list[str]:
        return ["ctr", "--address", self.address, "--namespace", self.namespace, *args]

    def __call__(self, *args: str, **kw) -> Res:
        return self.host.run(self.argv(*map(str, args)), **kw)

    def shim_socket(self, cid: str) -> Path:
        # containerd 1.6 runtime/v2/shim.SocketAddress
        h = hashlib.sha256(os.path.join(self.address, self.namespace, cid).encode()).hexdigest()
        return CONTAINERD_RUN / "s" / h


@dataclass
class Ctr(CaseBase):
    """``ctr`` for one test: ``ctr("task", "ls")``, ``ctr.run(...)``; cleans up by id.
    ``route``: "runc-shim" (containerd's runc shim driving the runtime under test) or
    "minirun-shim" (minirun's own shim)."""

    session: CtrSession | None = None
    route: str = "runc-shim"

    def __call__(self, *args: str, **kw) -> Res:
        return self.session(*args, **kw)

    @property
    def runtime_flags(self) -> list[str]:
        if self.route == "minirun-shim":
            return ["--runtime", SHIM]
        return ["--runtime", "io.containerd.runc.v2", "--runc-binary", str(self.host.wrapper)]

    @property
    def state_root(self) -> Path:
        """Where the runtime keeps this namespace's containers."""
        top = SHIM_STATE if self.route == "minirun-shim" else CONTAINERD_RUN / "runc"
        return top / self.session.namespace

    def run(self, cid: str, *cmd: str, rm: bool = False, detach: bool = False,
            tty: bool = False, **kw) -> Res:
        flags = (["--rm"] if rm else []) + (["-d"] if detach else []) + (["-t"] if tty else [])
        return self("run", *flags, *self.runtime_flags, IMAGE, cid, *cmd, tty=tty, **kw)

    def tasks(self) -> dict[str, tuple[int, str]]:
        """id -> (pid, status) from ``ctr task ls``."""
        r = self("task", "ls")
        assert r.returncode == 0, r
        out = {}
        for line in r.stdout.splitlines()[1:]:
            f = line.split()
            if len(f) >= 3:
                out[f[0]] = (int(f[1]), f[2])
        return out

    def status(self, cid: str) -> str | None:
        t = self.tasks().get(cid)
        return t[1] if t else None

    def pid(self, cid: str) -> int:
        return self.tasks()[cid][0]

    def wait_status(self, cid: str, want: str, timeout: float = 10) -> None:
        try:
            wait_for(lambda: self.status(cid) == want, f"task {cid} to be {want}", timeout)
        except AssertionError:
            raise AssertionError(f"task {cid} never became {want}: "
                                 f"{self.status(cid)}") from None

    def containers(self) -> set[str]:
        r = self("containers", "ls", "-q")
        return set(r.stdout.split())

    def cleanup(self) -> list[str]:
        problems = []
        tasks = self.tasks()
        conts = self.containers()
        # A test that stopped half-way leaves its containers: removing them is
        # cleanup, not a leak. What the runtime leaves after that is.
        for c in self.ids:
            if c in tasks:
                r = self("task", "delete", "-f", c)
                if r.returncode != 0:
                    problems.append(f"cleanup: ctr task delete -f {c}: {r.stderr.strip()}")
            if c in conts:
                r = self("containers", "rm", c)
                if r.returncode != 0:
                    problems.append(f"cleanup: ctr containers rm {c}: {r.stderr.strip()}")
        problems += self.common_checks()
        for c in self.ids:
            state = self.state_root / c
            if state.exists():
                problems.append(f"runtime state left: {state}")
                self.host.run(self.host.in_ns([
                    str(self.host.wrapper), "--root", str(state.parent), "delete", "--force", c]))
                shutil.rmtree(state, ignore_errors=True)
            sock = self.session.shim_socket(c)
            if self.route == "runc-shim" and sock.exists():
                problems.append(f"shim socket left: {sock}")
                sock.unlink()
            for cg in engine_cgroup_dirs(f"{self.session.namespace}/{c}"):
                if cg.exists():
                    problems.append(f"cgroup left: {cg}")
                    problems += rmdir_tree(cg)
        fifo = CONTAINERD_RUN / "fifo"
        if fifo.is_dir():
            for d in os.listdir(fifo):
                names = os.listdir(fifo / d) if (fifo / d).is_dir() else []
                if any(n.startswith(tuple(self.ids)) for n in names):
                    problems.append(f"fifos left: {fifo / d}: {names}")
                    shutil.rmtree(fifo / d, ignore_errors=True)
        return problems


@pytest.fixture(scope="session")
def ctr_session(engine_host: EngineHost):
    if missing("containerd", "ctr", "containerd-shim-runc-v2"):
        pytest.skip("containerd is not installed")
    cd = engine_host.scratch / "containerd"
    sess = CtrSession(engine_host, str(cd / "containerd.sock"), engine_host.containerd_ns)

    def up() -> bool:
        if not engine_host.containerd_alive():
            raise AssertionError("containerd exited:\n" + engine_host.supervisor_log.read_text())
        return sess("version", timeout=10).returncode == 0

    wait_for(up, "containerd to answer", timeout=30, interval=0.1)
    r = sess("images", "import", str(engine_host.archive))
    assert r.returncode == 0, f"ctr images import failed:\n{r}"
    yield sess
    problems = []
    left = sess("containers", "ls", "-q").stdout.split()
    if left:
        problems.append(f"containers left in namespace {sess.namespace}: {left}")
        for c in left:
            sess("task", "delete", "-f", c)
            sess("containers", "rm", c)
    try:  # minirun's shim server ends a few seconds after its last container
        wait_for(lambda: not (SHIM_STATE / sess.namespace).exists(),
                 "minirun's shim to end", 10)
    except AssertionError:
        pass
    for nsroot in (CONTAINERD_RUN / "runc" / sess.namespace, SHIM_STATE / sess.namespace):
        if nsroot.is_dir():
            if os.listdir(nsroot):
                problems.append(f"runtime state left in {nsroot}: {os.listdir(nsroot)}")
            shutil.rmtree(nsroot, ignore_errors=True)
    for cg in engine_cgroup_dirs(sess.namespace):
        problems += rmdir_tree(cg)
    if problems:
        pytest.fail("containerd session cleanup:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture(params=["runc-shim", "minirun-shim"])
def ctr(request, ctr_session: CtrSession, ctx) -> Ctr:
    """``ctr`` for this test, through each route (``ctx`` is the suite's per-test
    context: its leak check runs after this fixture's cleanup)."""
    if request.param == "minirun-shim" and not (IS_MINIRUN and os.access(SHIM, os.X_OK)):
        pytest.skip(f"minirun's shim route needs minirun and {SHIM}")
    if not ctr_session.host.containerd_alive():
        pytest.fail("containerd is not running:\n"
                    + ctr_session.host.supervisor_log.read_text()[-3000:])
    c = Ctr(ctr_session.host, ctx.new_id, session=ctr_session, route=request.param)
    c.begin()
    yield c
    problems = c.cleanup()
    if problems:
        pytest.fail("engine leak check (containerd) failed:\n  " + "\n  ".join(problems),
                    pytrace=False)


# --------------------------------------------------------------------------
# podman
# --------------------------------------------------------------------------


@dataclass
class PodmanSession:
    host: EngineHost
    env: dict
    cgroup_parent: str

    def argv(self, *args: str) -> list[str]:
        return self.host.in_ns(["podman", "--runtime", str(self.host.wrapper), *args])

    def __call__(self, *args: str, **kw) -> Res:
        return self.host.run(self.argv(*map(str, args)), env=self.env, **kw)


@dataclass
class Podman(CaseBase):
    """``podman`` for one test: ``podman("ps", "-a")``, ``podman.run(...)``; cleans up by
    name, and the runtime state podman leaves under the runtime's default root by id."""

    session: PodmanSession | None = None
    full_ids: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, **kw) -> Res:
        return self.session(*args, **kw)

    def run(self, name: str, *cmd: str, rm: bool = False, detach: bool = False,
            tty: bool = False, interactive: bool = False, **kw) -> Res:
        flags = ((["--rm"] if rm else []) + (["-d"] if detach else [])
                 + (["-t"] if tty else []) + (["-i"] if interactive else []))
        r = self("run", *flags, "--name", name, "--cgroup-parent", self.session.cgroup_parent,
                 IMAGE, *cmd, tty=tty, **kw)
        if detach and r.returncode == 0:
            self.full_ids[name] = r.stdout.strip().splitlines()[-1]
        return r

    def inspect(self, name: str, fmt: str) -> str:
        r = self("inspect", "--format", fmt, name)
        assert r.returncode == 0, r
        return r.stdout.strip()

    def names(self) -> dict[str, str]:
        """name -> full id of every container podman knows."""
        r = self("ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.ID}}")
        assert r.returncode == 0, r
        return dict(line.split() for line in r.stdout.splitlines() if line.strip())

    def cleanup(self) -> list[str]:
        problems = []
        known = self.names()
        for n in self.ids:  # removing what a failed test left is cleanup, not a leak
            if n in known:
                self.full_ids.setdefault(n, known[n])
                r = self("rm", "-f", "-t", "0", n)
                if r.returncode != 0:
                    problems.append(f"cleanup: podman rm -f {n}: {r.stderr.strip()}")
        problems += self.common_checks()
        problems += self.runtime_root_checks(self.full_ids.values())
        for fid in self.full_ids.values():
            for cg in engine_cgroup_dirs(f"{self.session.cgroup_parent}/libpod-{fid}"):
                if cg.exists():
                    problems.append(f"cgroup left: {cg}")
                    problems += rmdir_tree(cg)
        return problems


@pytest.fixture(scope="session")
def podman_session(engine_host: EngineHost):
    if missing("podman", "conmon", "nsenter"):
        pytest.skip("podman is not installed")
    s = engine_host.scratch / "podman"
    for d in ("graph", "run", "tmp", "volumes", "net"):
        (s / d).mkdir(parents=True)
    # No static_dir: podman's cleanup step would look for its database elsewhere.
    (s / "containers.conf").write_text(f"""[containers]
netns = "none"
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{s}/events.log"
tmp_dir = "{s}/tmp"
volume_path = "{s}/volumes"
image_copy_tmp_dir = "{s}/tmp"
lock_type = "file"

[network]
network_config_dir = "{s}/net"
""")
    (s / "storage.conf").write_text(f"""[storage]
driver = "overlay"
graphroot = "{s}/graph"
runroot = "{s}/run"
""")
    (s / "registries.conf").write_text("unqualified-search-registries = []\n")
    env = dict(os.environ, CONTAINERS_CONF=str(s / "containers.conf"),
               CONTAINERS_STORAGE_CONF=str(s / "storage.conf"),
               CONTAINERS_REGISTRIES_CONF=str(s / "registries.conf"), TMPDIR=str(s / "tmp"))
    sess = PodmanSession(engine_host, env, engine_host.podman_cgroup)
    r = sess("load", "-i", str(engine_host.archive))
    assert r.returncode == 0, f"podman load failed:\n{r}"
    yield sess
    problems = []
    left = sess("ps", "-aq").stdout.split()
    if left:
        problems.append(f"podman containers left: {left}")
        sess("rm", "-af", "-t", "0")
    for cg in engine_cgroup_dirs(sess.cgroup_parent):
        problems += rmdir_tree(cg)
    if problems:
        pytest.fail("podman session cleanup:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def podman(podman_session: PodmanSession, ctx) -> Podman:
    p = Podman(podman_session.host, ctx.new_id, session=podman_session)
    p.begin()
    yield p
    problems = p.cleanup()
    if problems:
        pytest.fail("engine leak check (podman) failed:\n  " + "\n  ".join(problems),
                    pytrace=False)
