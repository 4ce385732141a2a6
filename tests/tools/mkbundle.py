#!/usr/bin/env python3
"""Build OCI bundles with a busybox root filesystem, for runc and minirun alike.

Standard library only (it never imports minirun), usable as a module::

    from mkbundle import make_bundle, default_config
    make_bundle(tmp_path / "b", ["/bin/echo", "hi"])

and as a command::

    python3 tests/tools/mkbundle.py BUNDLE_DIR [--cache DIR] [--config FILE] \\
        [--hostname NAME] -- ARGS...

A bundle is ``BUNDLE_DIR/config.json`` plus ``BUNDLE_DIR/rootfs``. The root
filesystem is built once from Debian's busybox-static (``/bin/busybox``) into a
cache directory and then copied with ``cp -a`` into every new bundle, so making
a bundle costs a few milliseconds. The cache entry is keyed on the busybox
binary (size and mtime), so an upgraded busybox gets a fresh entry.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
DEFAULT_CACHE = Path(os.environ.get("MINIRUN_ROOTFS_CACHE", "/var/tmp/minirun-rootfs-cache"))

# Exactly what `runc spec` of runc 1.1.5 writes, except process.terminal (false
# here: tests and engines hand the container pipes, not a terminal).
_RUNC_SPEC = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "TERM=xterm",
        ],
        "cwd": "/",
        "capabilities": {
            "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "runc",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [
            {"type": "pid"},
            {"type": "network"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "mount"},
        ],
        "maskedPaths": [
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi",
        ],
        "readonlyPaths": [
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ],
    },
}

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"
_HOSTNAME = "busybox\n"


def default_config(args: list[str]) -> dict:
    """runc 1.1.5's `runc spec` default, with terminal false and the given args.

    Returns a fresh deep copy: callers may modify it freely.
    """
    config = copy.deepcopy(_RUNC_SPEC)
    config["process"]["args"] = list(args)
    return config


def build_rootfs(dest: Path) -> None:
    """Build a minimal busybox root filesystem at dest (which must not exist)."""
    dest = Path(dest)
    if not BUSYBOX.exists():
        raise FileNotFoundError(f"{BUSYBOX} not found: install Debian's busybox-static (make deps)")
    dest.mkdir(parents=True)
    os.chmod(dest, 0o755)  # explicit modes: independent of the caller's umask
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "root", "var", "run", "usr"):
        (dest / d).mkdir()
        os.chmod(dest / d, 0o755)
    os.chmod(dest / "tmp", 0o1777)
    os.chmod(dest / "root", 0o700)
    # Everything lives in bin/; the other usual places point at it.
    os.symlink("bin", dest / "sbin")
    os.symlink("../bin", dest / "usr" / "bin")
    os.symlink("../bin", dest / "usr" / "sbin")
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            os.symlink("busybox", dest / "bin" / applet)
    for name, text in (("passwd", _PASSWD), ("group", _GROUP), ("hostname", _HOSTNAME)):
        (dest / "etc" / name).write_text(text)
        os.chmod(dest / "etc" / name, 0o644)


def cached_rootfs(cache: Path | None = None) -> Path:
    """Return a pristine rootfs in the cache directory, building it on first use.

    Safe against concurrent callers: each builds into a private temporary
    directory and renames it into place; a loser of the race discards its copy.
    """
    cache = Path(cache) if cache is not None else DEFAULT_CACHE
    st = BUSYBOX.stat()
    entry = cache / f"rootfs-{st.st_size}-{st.st_mtime_ns}"
    if (entry / "bin" / "busybox").exists():
        return entry
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        build_rootfs(tmp / "rootfs")
        try:
            os.rename(tmp / "rootfs", entry)
        except OSError:
            if not (entry / "bin" / "busybox").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry


def make_bundle(
    dir: Path,
    args: list[str],
    config: dict | None = None,
    cache: Path | None = None,
) -> Path:
    """Create dir/rootfs (a copy of the cached busybox rootfs) and dir/config.json.

    config defaults to default_config(args). When a config is given it is
    written as given, except that a non-empty args replaces process.args.
    dir may exist; dir/rootfs must not. Returns dir.
    """
    dir = Path(dir)
    if config is None:
        config = default_config(args)
    elif args:
        config = copy.deepcopy(config)
        config.setdefault("process", {})["args"] = list(args)
    rootfs = dir / "rootfs"
    if os.path.lexists(rootfs):
        raise FileExistsError(f"{rootfs} already exists")
    dir.mkdir(parents=True, exist_ok=True)
    src = cached_rootfs(cache)
    subprocess.run(["cp", "-a", "--", str(src), str(rootfs)], check=True)
    with open(dir / "config.json", "w") as f:
        json.dump(config, f, indent="\t")
        f.write("\n")
    return dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Make an OCI bundle (busybox rootfs + runc-spec config.json).",
        usage="%(prog)s BUNDLE_DIR [--cache DIR] [--config FILE] [--hostname NAME] -- ARGS...",
    )
    p.add_argument("bundle", type=Path, help="bundle directory to create")
    p.add_argument(
        "--cache", type=Path, default=None, help=f"rootfs cache (default {DEFAULT_CACHE})"
    )
    p.add_argument(
        "--config", type=Path, default=None, help="use this config.json instead of the default"
    )
    p.add_argument("--hostname", default=None, help="set the config's hostname")
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" is the container's command line, verbatim.
    args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, args = argv[:i], argv[i + 1 :]
    ns = p.parse_args(argv)
    config = json.loads(ns.config.read_text()) if ns.config else None
    if not args and config is None:
        args = ["sh"]
    if ns.hostname is not None:
        config = config if config is not None else default_config(args)
        config["hostname"] = ns.hostname
    try:
        make_bundle(ns.bundle, args, config=config, cache=ns.cache)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"mkbundle: {e}", file=sys.stderr)
        return 1
    print(ns.bundle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
