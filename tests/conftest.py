"""Shared fixtures for minirun's integration tests.

The tests run as root against real containers on the real kernel. The binary
under test comes from ``MINIRUN_BIN`` (default: ``<repo>/.venv/bin/minirun``);
pointing it at runc (``MINIRUN_BIN=/usr/sbin/runc``) runs the same tests against
the reference runtime. ``RUNC_BIN`` (default ``/usr/sbin/runc``) is the
reference used by the side-by-side tests.

runc on this hybrid-cgroup host would create cgroups in the cgroup v1
hierarchies, which belong to the machine's supervisor and must not be touched.
Every runc invocation is therefore wrapped: it runs in a private mount namespace
in which ``/sys/fs/cgroup`` is the cgroup2 hierarchy, so runc takes its cgroup
v2 path (as minirun does) and only ever creates cgroups under the host's
``/sys/fs/cgroup/unified``.

Every test gets its own state root, its own container ids and a leak check:
after the test, ``delete --force`` is run for every id it used, then the test
fails (as an error at teardown) if it left mounts, state directories,
processes, network interfaces, namespace bind mounts or cgroups behind.

The pytest process makes itself a child subreaper (as containerd's shim and
conmon do), so container processes re-parent to it: any process still alive
below pytest at teardown is a leak, and container inits that exit become
zombies until the teardown reaps them (a runtime must report a zombie init as
``stopped``).

Tests that check minirun's own behaviour (error wording, ``--debug`` output,
features runc 1.1.5 lacks) carry the ``minirun_only`` mark; run the reference
subset against runc with ``-m "not minirun_only"``.
"""

from __future__ import annotations

import copy
import ctypes
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tests" / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

from mkbundle import default_config, make_bundle  # noqa: E402

MINIRUN_BIN = os.environ.get("MINIRUN_BIN") or str(REPO / ".venv" / "bin" / "minirun")
RUNC_BIN = os.environ.get("RUNC_BIN") or "/usr/sbin/runc"
# Generous: the machine is shared and noisy. Nothing asserts on timing.
TIMEOUT = float(os.environ.get("MINIRUN_TEST_TIMEOUT", "60"))
CGROUP2_ROOT = Path("/sys/fs/cgroup/unified")
if not CGROUP2_ROOT.is_dir():  # a pure cgroup v2 host
    CGROUP2_ROOT = Path("/sys/fs/cgroup")

PR_SET_CHILD_SUBREAPER = 36

_CGROUP2_WRAPPER = (
    # everything below /sys private in this namespace first, so that neither
    # the unmount nor the new mount can propagate to the host
    "mount --make-rprivate /sys || exit 125; "
    "umount -l /sys/fs/cgroup 2>/dev/null; "
    "mount -t cgroup2 cgroup2 /sys/fs/cgroup || exit 125; "
    'exec "$0" "$@"'
)


def is_runc(binary: str) -> bool:
    """True if binary is runc (the reference), which needs the cgroup2 wrapper."""
    forced = os.environ.get("MINIRUN_WRAP_RUNC")
    if forced is not None:
        return forced == "1"
    return os.path.basename(os.path.realpath(binary)).startswith("runc")


def under_runc() -> bool:
    return is_runc(MINIRUN_BIN)


def runtime_argv(binary: str) -> list[str]:
    """The argv prefix that invokes binary (runc wrapped, see module docstring)."""
    if is_runc(binary):
        # --propagation unchanged: the container must see the host's mount
        # propagation as it is (shared mounts stay shared), as minirun does.
        return ["unshare", "-m", "--propagation", "unchanged", "sh", "-c", _CGROUP2_WRAPPER, binary]
    return [binary]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "minirun_only: checks minirun-specific behaviour (wording, --debug, features "
        "runc 1.1.5 lacks); deselect with -m 'not minirun_only' when MINIRUN_BIN is runc",
    )
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"minirun under test: {MINIRUN_BIN} (runc: {under_runc()}); reference runc: {RUNC_BIN}"]


# --------------------------------------------------------------------------
# Running the runtime
# --------------------------------------------------------------------------


class Result(subprocess.CompletedProcess):
    """CompletedProcess with text output; output went to files, not pipes.

    Files, because a container started by ``create`` inherits the runtime's
    stdio and keeps it open: a pipe would make the caller wait for the
    container. ``stdout_path`` keeps receiving the container's output after
    ``create`` returned; ``read_stdout()`` reads it again.
    """

    stdout_path: Path
    stderr_path: Path

    def read_stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def read_stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def __str__(self) -> str:  # for assertion messages
        return (
            f"$ {' '.join(map(str, self.args))}\n-> exit {self.returncode}\n"
            f"stdout: {self.stdout!r}\nstderr: {self.stderr!r}"
        )


class Runtime:
    """Runs ``[binary, "--root", root, *args]`` with a timeout."""

    def __init__(self, binary: str, root: Path, workdir: Path, ctx: CaseCtx, name: str = "rt"):
        self.binary = binary
        self.root = Path(root)
        self.workdir = Path(workdir)
        self.ctx = ctx
        self.name = name
        self.is_runc = is_runc(binary)
        self._n = 0
        self.workdir.mkdir(parents=True, exist_ok=True)

    def argv(self, *args: Any, global_args: Iterable[str] | None = None,
             root: bool = True) -> list[str]:
        gl = list(global_args) if global_args is not None else []
        if root:
            gl = ["--root", str(self.root), *gl]
        return [*runtime_argv(self.binary), *gl, *map(str, args)]

    def _outfiles(self) -> tuple[Path, Path]:
        self._n += 1
        base = self.workdir / f"{self.name}-{self._n:03d}"
        return base.with_suffix(".out"), base.with_suffix(".err")

    def __call__(
        self,
        *args: Any,
        timeout: float = TIMEOUT,
        input: str | None = None,
        stdin: Any = None,
        cwd: str | Path | None = None,
        env: dict | None = None,
        global_args: Iterable[str] | None = None,
        root: bool = True,
        pass_fds: Iterable[int] = (),
        check: bool = False,
    ) -> Result:
        argv = self.argv(*args, global_args=global_args, root=root)
        out_p, err_p = self._outfiles()
        if input is not None:
            in_p = out_p.with_suffix(".in")
            in_p.write_text(input)
            stdin_f = open(in_p, "rb")
        elif stdin is None:
            stdin_f = open(os.devnull, "rb")
        else:
            stdin_f = stdin
        try:
            with open(out_p, "wb") as out_f, open(err_p, "wb") as err_f:
                p = subprocess.Popen(
                    argv,
                    stdin=stdin_f,
                    stdout=out_f,
                    stderr=err_f,
                    cwd=cwd,
                    env=env,
                    pass_fds=tuple(pass_fds),
                    start_new_session=False,
                )
                try:
                    rc = p.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    p.kill()  # our own child, by pid
                    p.wait()
                    raise
        finally:
            if stdin_f is not stdin:
                stdin_f.close()
        res = Result(argv, rc, out_p.read_text(errors="replace"), err_p.read_text(errors="replace"))
        res.stdout_path, res.stderr_path = out_p, err_p
        if check and rc != 0:
            raise AssertionError(f"runtime call failed:\n{res}")
        return res

    # ---- conveniences ----

    def ok(self, *args: Any, **kw: Any) -> Result:
        """Run and assert exit status 0."""
        kw["check"] = True
        return self(*args, **kw)

    def state(self, cid: str) -> dict:
        r = self.ok("state", cid)
        return json.loads(r.stdout)

    def status(self, cid: str) -> str | None:
        r = self("state", cid)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)["status"]

    def wait_status(self, cid: str, want: str, timeout: float = TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        st: dict = {}
        while time.monotonic() < deadline:
            st = self.state(cid)
            if st["status"] == want:
                return st
            time.sleep(0.05)
        raise AssertionError(f"container {cid} never reached {want!r}; last state {st}")

    def create(self, cid: str, bundle: Path, *extra: Any, **kw: Any) -> Result:
        return self("create", "--bundle", bundle, *extra, cid, **kw)


# --------------------------------------------------------------------------
# Per-test context and fixtures
# --------------------------------------------------------------------------


def _sanitize(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")
    s = re.sub(r"^test_?", "", s)
    return s[:28] or "x"


@dataclass
class CaseCtx:
    tmp: Path
    testname: str
    ids: list[str] = field(default_factory=list)
    runtimes: list[Runtime] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    # directories outside tmp that the test made (see public_tmp); leak-checked
    # like tmp and removed after the test
    extra_dirs: list[Path] = field(default_factory=list)
    bundles: list[Path] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return [str(self.tmp), *map(str, self.extra_dirs)]

    def new_id(self, tag: str = "") -> str:
        base = f"t-{_sanitize(self.testname)}"
        if tag:
            base += f"-{_sanitize(tag)}"
        cid = f"{base}-{secrets.token_hex(3)}"
        self.ids.append(cid)
        return cid

    def add_runtime(self, binary: str, name: str) -> Runtime:
        rt = Runtime(binary, self.tmp / f"root-{name}", self.tmp / f"io-{name}", self, name=name)
        self.runtimes.append(rt)
        return rt


# A session with containers left this long ago is not running any more (a test's
# containers live seconds): it was killed mid-test.
CRASHED_AFTER = 1800.0


def delete_crashed_sessions_containers(sessions: Path, current: Path,
                                       older_than: float = CRASHED_AFTER) -> list[str]:
    """A session killed mid-test (the machine restarted, pytest was SIGKILLed) leaves
    its containers' state in its basetemp (SESSIONS/pytest-N/<test>/root-<runtime>/<id>),
    and pytest deletes old basetemps later: with them the only record of those
    containers' cgroups. Delete each such container by that recorded state, with the
    runtime that made it; returns what it deleted."""
    done = []
    now = time.time()
    for state in sorted(sessions.glob("pytest-*/*/root-*/*/state.json")):
        try:
            age = now - state.stat().st_mtime
        except FileNotFoundError:
            continue  # deleted meanwhile: that session is alive (or cleaned up)
        if current in state.parents or age < older_than:
            continue
        root, cid = state.parent.parent, state.parent.name
        binary = RUNC_BIN if root.name == "root-runc" else MINIRUN_BIN
        subprocess.run([*runtime_argv(binary), "--root", str(root), "delete", "--force", cid],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        done.append(f"{root}/{cid}")
    return done


@pytest.fixture(scope="session", autouse=True)
def _crashed_sessions_cleaned(tmp_path_factory: pytest.TempPathFactory) -> None:
    if os.geteuid() != 0:
        return
    base = tmp_path_factory.getbasetemp()
    done = delete_crashed_sessions_containers(base.parent, base)
    if done:
        print(f"\nconftest: deleted {len(done)} container(s) of crashed earlier sessions: "
              f"{', '.join(done)}", file=sys.stderr)


@pytest.fixture(scope="session")
def rootfs_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rootfs-cache")


@pytest.fixture
def ctx(request: pytest.FixtureRequest, tmp_path: Path) -> CaseCtx:
    return CaseCtx(tmp=tmp_path, testname=request.node.name)


@pytest.fixture
def cid(ctx: CaseCtx) -> Callable[..., str]:
    """Factory of unique container ids: ``cid()`` -> ``t-<test>-<random>``."""
    return ctx.new_id


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("containers need root (these tests run as root)")


@pytest.fixture
def runtime(ctx: CaseCtx, _leak_guard: None) -> Runtime:
    """The runtime under test (MINIRUN_BIN) with this test's own --root."""
    _need_root()
    return ctx.add_runtime(MINIRUN_BIN, "minirun")


@pytest.fixture
def make_runtime(ctx: CaseCtx, _leak_guard: None) -> Callable[[str, str], Runtime]:
    """Factory: ``make_runtime(binary, name)`` -> Runtime with its own root."""
    _need_root()
    return ctx.add_runtime


def apply_edits(config: dict, edits: Any) -> dict:
    """Apply config edits: a callable(config) (may return a new config) or a dict deep-merged."""
    if edits is None:
        return config
    if callable(edits):
        r = edits(config)
        return config if r is None else r
    if isinstance(edits, dict):
        return _deep_merge(config, edits)
    if isinstance(edits, (list, tuple)):
        for e in edits:
            config = apply_edits(config, e)
        return config
    raise TypeError(f"bad config edits: {edits!r}")


def _deep_merge(base: dict, over: dict) -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


@pytest.fixture
def public_tmp(ctx: CaseCtx) -> Path:
    """A fresh directory under /tmp that every user can traverse (mode 0711),
    for bundles used with user namespaces: pytest's own tmp_path sits below a
    0700 directory that a mapped (non-root) uid cannot enter. Removed after the
    test's leak check."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="minirun-test-", dir="/tmp"))
    os.chmod(d, 0o711)
    ctx.extra_dirs.append(d)
    return d


@pytest.fixture
def bundle(ctx: CaseCtx, rootfs_cache: Path) -> Callable[..., Path]:
    """Factory: ``bundle(args, config_edits=None, *, name, config, base)`` -> bundle dir.

    The config is runc's default spec (terminal false) with the given args,
    then config_edits applied (a callable or a dict to deep-merge). The bundle
    is made under the test's tmp_path, or under base (e.g. public_tmp).
    """
    counter = [0]

    def make(args: list[str] | None = None, config_edits: Any = None, *, name: str | None = None,
             config: dict | None = None, base: Path | None = None) -> Path:
        counter[0] += 1
        d = (base or ctx.tmp) / (name or f"bundle{counter[0]}")
        cfg = copy.deepcopy(config) if config is not None else default_config(list(args or ["sh"]))
        if config is not None and args:
            cfg.setdefault("process", {})["args"] = list(args)
        cfg = apply_edits(cfg, config_edits)
        make_bundle(d, [], config=cfg, cache=rootfs_cache)
        ctx.bundles.append(d)
        return d

    return make


@dataclass
class ContainerRun:
    id: str
    bundle: Path
    result: Result

    @property
    def returncode(self) -> int:
        return self.result.returncode

    @property
    def stdout(self) -> str:
        return self.result.stdout

    @property
    def stderr(self) -> str:
        return self.result.stderr


@pytest.fixture
def run_container(runtime: Runtime, bundle: Callable[..., Path], cid: Callable[..., str]):
    """``run_container(args, config_edits=None, rt=None, check=False)``: ``run`` a
    container in the foreground and return its result (container stdout/stderr
    mixed with the runtime's)."""

    def run(args: list[str], config_edits: Any = None, *, rt: Runtime | None = None,
            check: bool = False, extra: Iterable[str] = (), timeout: float = TIMEOUT,
            bundle_dir: Path | None = None, base: Path | None = None) -> ContainerRun:
        rt = rt or runtime
        b = bundle_dir or bundle(args, config_edits, base=base)
        c = cid()
        r = rt("run", "--bundle", b, *extra, c, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"container run failed:\n{r}")
        return ContainerRun(c, b, r)

    return run


@pytest.fixture
def sh(run_container):
    """``sh(script, config_edits=None)`` -> stdout of ``sh -c script`` in a container;
    asserts the run exited 0."""

    def go(script: str, config_edits: Any = None, **kw: Any) -> str:
        r = run_container(["sh", "-c", script], config_edits, **kw)
        assert r.returncode == 0, f"container failed:\n{r.result}"
        return r.stdout

    return go


# --------------------------------------------------------------------------
# Host inspection helpers (also used by tests)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class MountEntry:
    mount_id: int
    parent: int
    root: str
    mountpoint: str
    options: str
    fstype: str
    source: str
    super_options: str
    optional: str

    @property
    def key(self) -> tuple:
        return (self.mount_id, self.mountpoint, self.root, self.fstype, self.source)


def _unescape(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def parse_mountinfo(text: str) -> list[MountEntry]:
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        pre, _, post = line.partition(" - ")
        f = pre.split()
        g = post.split()
        out.append(MountEntry(
            int(f[0]), int(f[1]), _unescape(f[3]), _unescape(f[4]), f[5],
            g[0] if g else "", _unescape(g[1]) if len(g) > 1 else "", g[2] if len(g) > 2 else "",
            " ".join(f[6:]),
        ))
    return out


def host_mounts() -> list[MountEntry]:
    return parse_mountinfo(Path("/proc/self/mountinfo").read_text())


def net_ifaces() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) for every process."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        table[int(d)] = (int(rest[1]), rest[0])
    return table


def descendants(pid: int, table: dict[int, tuple[int, str]] | None = None) -> dict[int, str]:
    """pid -> state of every descendant of pid."""
    table = table if table is not None else proc_table()
    children: dict[int, list[int]] = {}
    for p, (pp, _) in table.items():
        children.setdefault(pp, []).append(p)
    out, todo = {}, [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out[c] = table[c][1]
            todo.append(c)
    return out


def reap_zombie_children() -> None:
    """Reap zombies re-parented to us (we are a subreaper). Only waits for
    specific pids that are already zombies, so live Popen children are untouched."""
    me = os.getpid()
    for p, (pp, st) in proc_table().items():
        if pp == me and st in ("Z", "X"):
            try:
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def pids_referencing(path: str) -> dict[int, str]:
    """Processes whose cwd, root or cmdline mention path."""
    out = {}
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        pid = int(d)
        hit = False
        for link in ("cwd", "root"):
            try:
                if path in os.readlink(f"/proc/{pid}/{link}"):
                    hit = True
            except OSError:
                pass
        cl = cmdline(pid)
        if path in cl:
            hit = True
        if hit:
            out[pid] = cl
    return out


# The v1 hierarchies containers may use on a hybrid host (never the machine's memory one).
V1_ROOTS = [p for p in Path("/sys/fs/cgroup").iterdir()
            if p.is_dir() and not p.is_symlink() and p != CGROUP2_ROOT
            and "memory" not in p.name and "systemd" not in p.name
            and p.name.split(",")[0] in ("cpu", "cpuacct", "cpuset", "pids", "blkio")] \
    if CGROUP2_ROOT != Path("/sys/fs/cgroup") else []


def cgroup_dirs() -> set[str]:
    out = set()
    for root in (CGROUP2_ROOT, *V1_ROOTS):
        for dirpath, dirnames, _ in os.walk(root):
            for d in dirnames:
                out.add(os.path.join(dirpath, d))
    return out


def ns_inode(pid: int | str, ns: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{ns}")


# --------------------------------------------------------------------------
# Leak guard
# --------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    rep = yield
    if rep.when == "call":
        item.stash[_CALL_FAILED] = rep.failed
    return rep


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def _leak_guard(ctx: CaseCtx, request: pytest.FixtureRequest):
    mounts_before = {m.key for m in host_mounts()}
    net_before = net_ifaces()
    cg_before = cgroup_dirs()
    yield
    problems: list[str] = []

    # 1. the test's own cleanups (namespace mounts etc.), then delete --force
    for fn in reversed(ctx.cleanups):
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            problems.append(f"cleanup {fn!r} failed: {e}")
    for rt in ctx.runtimes:
        ids = list(dict.fromkeys(ctx.ids))
        if rt.root.is_dir():
            ids += [d for d in os.listdir(rt.root) if d not in ids]
        for c in ids:
            try:
                rt("delete", "--force", c, timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append(f"{rt.name}: delete --force {c} timed out")

    # 2. processes: descendants of pytest must be gone (give them a moment)
    me = os.getpid()
    deadline = time.monotonic() + 10
    live: dict[int, str] = {}
    while True:
        reap_zombie_children()
        live = {p: s for p, s in descendants(me).items() if s not in ("Z", "X")}
        if not live or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if live:
        desc = {p: cmdline(p) for p in live}
        problems.append(f"processes left running below pytest: {desc}")
        for p in live:  # started by this test (descendants of pytest): kill by pid
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
        reap_zombie_children()
    for path in ctx.paths:
        refs = {p: c for p, c in pids_referencing(path).items() if p not in live}
        refs = {p: c for p, c in refs.items() if Path(f"/proc/{p}").exists()}
        if refs:
            problems.append(f"processes referencing {path}: {refs}")

    # 3. mounts (namespace bind mounts included) mentioning the test's paths
    new_mounts = [m for m in host_mounts() if m.key not in mounts_before]
    # Only mounts that mention this test's paths (bundles, state root, its
    # namespace bind mounts): other sessions share this host and mount and
    # unmount things of their own at the same time.
    leaked = [m for m in new_mounts
              if any(t in m.mountpoint or t in m.root or t in m.source for t in ctx.paths)]
    if leaked:
        problems.append("mounts left behind: " + "; ".join(
            f"{m.mountpoint} ({m.fstype} {m.source} root={m.root})" for m in leaked))
        # Never leave a mount under tmp: pytest later rm -rf's old tmp dirs.
        for m in sorted(leaked, key=lambda m: -len(m.mountpoint)):
            subprocess.run(["umount", "-l", m.mountpoint], stderr=subprocess.DEVNULL)

    # 4. state directories
    for rt in ctx.runtimes:
        if rt.root.is_dir():
            left = sorted(os.listdir(rt.root))
            if left:
                problems.append(f"{rt.name}: state left under {rt.root}: {left}")

    # 5. network interfaces
    new_net = net_ifaces() - net_before
    if new_net:
        problems.append(f"network interfaces left behind: {sorted(new_net)}")

    # 6. cgroups named after the test's containers
    new_cg = [d for d in cgroup_dirs() - cg_before if any(c in d for c in ctx.ids)]
    if new_cg:
        problems.append(f"cgroups left behind: {sorted(new_cg)}")
        for d in sorted(new_cg, key=len, reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass

    # The rootfs copies are ~2 MB each and pytest keeps the last three runs'
    # tmp dirs: drop them unless the test failed (then they may tell why).
    if not request.node.stash.get(_CALL_FAILED, False):
        mounted = [m.mountpoint for m in host_mounts()]
        for b in ctx.bundles:
            rootfs = b / "rootfs"
            if rootfs.is_dir() and not any(mp.startswith(str(rootfs)) for mp in mounted):
                subprocess.run(["rm", "-rf", "--one-file-system", "--", str(rootfs)])

    for d in ctx.extra_dirs:
        if any(str(d) in m.mountpoint for m in host_mounts()):
            problems.append(f"not removing {d}: something is still mounted below it")
        else:
            subprocess.run(["rm", "-rf", "--one-file-system", "--", str(d)])

    if problems:
        pytest.fail("leak check failed:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def _autoguard(request: pytest.FixtureRequest):
    # Every test gets the leak guard, whether or not it asks for a runtime.
    request.getfixturevalue("_leak_guard")
    yield


# --------------------------------------------------------------------------
# Misc helpers for tests
# --------------------------------------------------------------------------


def caps_mask(names: Iterable[str]) -> int:
    """Bitmask of capability names (CAP_X) using the kernel numbering."""
    m = 0
    for n in names:
        m |= 1 << CAP_NUMBERS[n]
    return m


CAP_NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}


def status_fields(text: str) -> dict[str, str]:
    """Parse /proc/PID/status-like 'Key:\\tvalue' lines."""
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out
