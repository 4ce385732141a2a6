"""`minirun doctor [BUNDLE]`: what on this host, and in this bundle, would stop a container.

Host checks first (kernel, cgroup layout and controllers, user namespaces, seccomp,
LSMs, nftables, the newer syscalls minirun uses, the --root directory), then, given a
bundle, every problem `create` would hit, found before it is hit: the config as
`create` validates it, the rootfs, process.args[0] (missing, not executable, a CRLF
`#!` line, a missing ELF interpreter, another architecture), bind-mount sources, HOME
for a user without a passwd entry, resources whose controller this host lacks.

One line per finding: `ok`, `warn` (works, but not as one might think) or `FAIL`
(create would fail), with what to do. Exit status 0 when create would work.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
from dataclasses import dataclass, field

from minirun import diagnose
from minirun.errors import MinirunError

# Syscalls numbered alike on every architecture (424 and up): probed with arguments
# the kernel refuses before doing anything, so ENOSYS alone means "missing".
PROBES = {"pidfd_open": 434, "clone3": 435, "openat2": 437, "mount_setattr": 442}


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failed: bool = False

    def ok(self, text: str) -> None:
        self.lines.append(f"  ok    {text}")

    def warn(self, text: str) -> None:
        self.lines.append(f"  warn  {text}")

    def fail(self, text: str) -> None:
        self.lines.append(f"  FAIL  {text}")
        self.failed = True


def doctor(root: str, bundle: str | None) -> int:
    rep = Report()
    rep.lines.append("host:")
    for check in (_kernel, _cgroups, _userns, _seccomp, _lsm, _nftables, _syscalls):
        check(rep)
    _root_dir(rep, root)
    if bundle is not None:
        rep.lines.append(f"bundle {os.path.abspath(bundle)}:")
        _bundle(rep, bundle)
    print("\n".join(rep.lines))
    verdict = "create would fail: see FAIL above" if rep.failed else "nothing in the way"
    print(f"minirun doctor: {verdict}")
    return 1 if rep.failed else 0


# ---------------------------------------------------------------- host


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _kernel(rep: Report) -> None:
    u = os.uname()
    major, _, rest = u.release.partition(".")
    minor = rest.split(".", 1)[0]
    version = (int(major), int(minor)) if major.isdigit() and minor.isdigit() else (0, 0)
    text = f"kernel {u.release} ({u.machine})"
    if version < (5, 6):
        rep.fail(f"{text}: minirun needs 5.6 or later (openat2, pidfd_open, close_range)")
    else:
        rep.ok(text)


def _cgroup_mounts() -> list[tuple[str, str, str]]:
    """(mount point, fstype, super options) of every cgroup/cgroup2 mount."""
    out = []
    for line in _read("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) > 4 and tail and tail[0] in ("cgroup", "cgroup2"):
            out.append((fields[4], tail[0], tail[2] if len(tail) > 2 else ""))
    return out


def _cgroups(rep: Report) -> None:
    mounts = _cgroup_mounts()
    v2 = [m for m, t, _ in mounts if t == "cgroup2"]
    v1 = {m: opts for m, t, opts in mounts if t == "cgroup"}
    if not v2 and not v1:
        rep.fail("cgroups: no cgroup filesystem mounted (mount cgroup2 on /sys/fs/cgroup)")
        return
    v2_text = ""
    if v2:
        ctrl = _read(os.path.join(v2[0], "cgroup.controllers")) or "no controllers"
        v2_text = f"cgroup2 at {v2[0]} ({ctrl})"
    if v2 and not v1:
        rep.ok(f"cgroups: unified v2, {v2_text}")
        return
    names = sorted(os.path.basename(m) for m in v1)
    if v2:
        rep.ok(f"cgroups: hybrid, {v2_text}; v1 hierarchies: {' '.join(names)}; "
               f"{_v1_limits(v2[0])}")
    else:
        rep.warn(f"cgroups: legacy v1 only ({' '.join(names)}); no cgroup2 mount: "
                 "minirun tracks, freezes and limits containers through cgroup2")


def _v1_limits(mount: str) -> str:
    """Whether this minirun applies a limit whose controller is bound to v1 (asked of the
    same validation create runs, so the answer cannot drift from the code)."""
    from minirun import cgroups

    try:
        cgroups.validate_resources({"pids": {"limit": 100}}, mount)
    except MinirunError:
        return "limits of controllers bound to v1 are refused (minirun limits through cgroup2)"
    return "limits of controllers bound to v1 are applied in their v1 hierarchy"


def _userns(rep: Report) -> None:
    limit = _read("/proc/sys/user/max_user_namespaces")
    if not limit:
        rep.warn("user namespaces: not available in this kernel (configs with a user "
                 "namespace will fail)")
    elif limit == "0":
        rep.warn("user namespaces: disabled (user.max_user_namespaces = 0)")
    else:
        extra = ""
        if _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
            extra = "; AppArmor restricts unprivileged ones"
        rep.ok(f"user namespaces: up to {limit}{extra}")


def _seccomp(rep: Report) -> None:
    actions = _read("/proc/sys/kernel/seccomp/actions_avail")
    if not actions:
        rep.warn("seccomp: not available in this kernel (configs with linux.seccomp fail)")
        return
    try:
        from minirun.linux import seccomp

        lib = f"libseccomp {seccomp.library_version()}"
    except Exception as e:  # noqa: BLE001 - a missing library is a finding, not a crash
        rep.fail(f"seccomp: libseccomp cannot be loaded ({e}); install libseccomp2")
        return
    notify = "" if "user_notif" in actions else "; no user_notif (SCMP_ACT_NOTIFY fails)"
    rep.ok(f"seccomp: {lib}, kernel actions {actions}{notify}")


def _lsm(rep: Report) -> None:
    lsms = _read("/sys/kernel/security/lsm")
    rep.ok(f"LSMs: {lsms or 'none reported'} (minirun applies no AppArmor/SELinux label)")


def _nftables(rep: Report) -> None:
    nft = shutil.which("nft")
    if nft:
        rep.ok(f"nftables: {nft} (--network bridge can publish ports)")
    else:
        rep.warn("nftables: nft not found: --network bridge cannot NAT or publish ports "
                 "(apt-get install nftables)")


def _syscalls(rep: Report) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    missing = []
    for name, nr in PROBES.items():
        args = (os.getpid(), 0) if name == "pidfd_open" else (-1, 0, 0, 0)
        ret = libc.syscall(nr, *args)
        err = ctypes.get_errno()
        if ret >= 0 and name == "pidfd_open":
            os.close(ret)
        elif ret < 0 and err == errno.ENOSYS:
            missing.append(name)
    if missing:
        rep.fail(f"syscalls: {' '.join(missing)} missing (a seccomp filter around minirun, "
                 "or an old kernel); minirun needs them")
    else:
        rep.ok(f"syscalls: {' '.join(PROBES)}")


def _root_dir(rep: Report, root: str) -> None:
    where = root
    while not os.path.exists(where):
        parent = os.path.dirname(where)
        if parent == where:
            break
        where = parent
    if not os.path.isdir(where):
        rep.fail(f"--root {root}: {where} is not a directory")
    elif not os.access(where, os.W_OK | os.X_OK):
        rep.fail(f"--root {root}: {where} is not writable by uid {os.geteuid()} "
                 "(run as root, or pick a --root you own)")
    elif where == root:
        rep.ok(f"--root {root}: writable")
    else:
        rep.ok(f"--root {root}: does not exist yet; create makes it under {where}")


# ---------------------------------------------------------------- bundle


def _bundle(rep: Report, bundle: str) -> None:
    from minirun import config

    try:
        cfg = config.load(bundle)
    except MinirunError as e:
        rep.fail(f"config: {e}")
        return
    rep.ok("config.json: valid")
    root = os.path.join(bundle, cfg["root"]["path"])
    if not os.path.isdir(root):
        rep.fail(f"root.path {cfg['root']['path']!r}: {root} is not a directory "
                 "(unpack the image's root filesystem there)")
        return
    paths = diagnose.RootfsPaths(root)
    proc = cfg.get("process") or {}
    if proc.get("args"):
        _executable(rep, proc, paths)
    _mount_sources(rep, cfg, bundle)
    _home(rep, proc, paths)
    _resources(rep, cfg)


def _executable(rep: Report, proc: dict, paths: diagnose.RootfsPaths) -> None:
    name = proc["args"][0]
    where = f'process.args[0] "{name}"'
    path = _lookup(name, proc, paths)
    if path is None:
        rep.fail(f"{where}: not found in the rootfs (searched PATH={_path_var(proc)})")
        return
    host = paths(path) or ""
    try:
        st = os.stat(host)
    except OSError:
        rep.fail(f"{where}: {path} is a dangling link in the rootfs")
        return
    if stat.S_ISDIR(st.st_mode):
        rep.fail(f"{where}: {path} is a directory")
        return
    if not st.st_mode & 0o111:
        rep.fail(f"{where}: {path} has no execute permission (chmod +x it)")
        return
    cause = diagnose.explain(path, 8, paths)
    if cause:
        rep.fail(f"{where}: {path}: {cause}")
    else:
        rep.ok(f"{where}: {path}")


def _path_var(proc: dict) -> str:
    from minirun.linux.process import DEFAULT_PATH

    for entry in proc.get("env") or []:
        if entry.startswith("PATH="):
            return entry[5:]
    return DEFAULT_PATH


def _lookup(name: str, proc: dict, paths: diagnose.RootfsPaths) -> str | None:
    if "/" in name:
        full = name if name.startswith("/") else os.path.join(proc.get("cwd") or "/", name)
        host = paths(full)
        return full if host and os.path.lexists(host) else None
    for d in _path_var(proc).split(":"):
        full = os.path.join(d or "/", name)
        host = paths(full)
        if host and os.path.isfile(host):
            return full
    return None


def _mount_sources(rep: Report, cfg: dict, bundle: str) -> None:
    for i, m in enumerate(cfg.get("mounts") or []):
        opts = m.get("options") or []
        if m.get("type") != "bind" and "bind" not in opts and "rbind" not in opts:
            continue
        src = os.path.join(bundle, m.get("source") or "")
        if not os.path.exists(src):
            rep.fail(f"mounts[{i}].source {m.get('source')!r}: does not exist on the host "
                     f"(create it, or fix the path; relative paths start at the bundle)")


def _home(rep: Report, proc: dict, paths: diagnose.RootfsPaths) -> None:
    if any(e.startswith("HOME=") for e in proc.get("env") or []):
        return
    uid = (proc.get("user") or {}).get("uid", 0)
    if diagnose.passwd_entry(paths, uid) is not None:
        return
    rep.warn(f"process.user.uid {uid}: no entry in the rootfs's /etc/passwd, so HOME will be "
             "/ (add HOME=... to process.env, or a passwd entry)")


def _resources(rep: Report, cfg: dict) -> None:
    res = (cfg.get("linux") or {}).get("resources")
    if not res:
        return
    from minirun import cgroups, container_cgroup

    try:
        cgroups.validate_resources(res, container_cgroup.v2_mount())
    except MinirunError as e:
        rep.fail(f"{e}")
        return
    rep.ok("linux.resources: every limit can be applied on this host")

