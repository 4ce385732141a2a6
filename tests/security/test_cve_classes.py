"""Escape classes runc has fixed, replayed against minirun.

One test (or group) per CVE class; where another file holds the test it is named here:
- CVE-2019-5736 (overwrite the runtime's binary through /proc/PID/exe): test_cve_2019_5736.py.
- CVE-2019-19921, CVE-2023-27561, CVE-2023-28642 (procfs/sysfs mounted over a symlink):
  the rootfs safety tests ("must be mounted on ordinary directory").
- CVE-2021-30465 (mount destinations resolved through symlinks out of the rootfs):
  tests/test_isolation.py::test_symlinked_mount_destinations_stay_in_rootfs, and the
  racing variant below.
- CVE-2024-21626 (a leaked fd of the runtime as process.cwd, "/proc/self/fd/N"): below.
runc 1.1.5 predates the CVE-2024-21626 fix, hence the minirun_only marks.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

import pytest
from conftest import parse_mountinfo

# Any fd a runtime might hold open while it sets up the process: the low ones are where
# runc 1.1.5 leaked a host cgroup directory.
LEAK_CANDIDATES = range(3, 12)


def _escaped(output: str) -> bool:
    # The kernel prints "(unreachable)" for a cwd outside the process's root.
    return "(unreachable)" in output or "ESCAPED" in output


@pytest.mark.minirun_only
@pytest.mark.parametrize("fd", LEAK_CANDIDATES)
def test_cve_2024_21626_cwd_through_leaked_fd(run_container, fd):
    r = run_container(
        ["sh", "-c", "readlink /proc/self/cwd; test -e ../../../../etc/shadow-escape-marker"
                     " && echo ESCAPED; true"],
        {"process": {"cwd": f"/proc/self/fd/{fd}"}},
    )
    # Either the runtime refuses the cwd, or the process starts inside its own root.
    if r.returncode == 0:
        assert not _escaped(r.stdout), r.result
    else:
        assert "Traceback" not in r.stderr, r.result


@pytest.mark.minirun_only
def test_cve_2024_21626_cwd_symlink_in_image(run_container, bundle):
    # The image names the fd through a symlink: the same check must see through it.
    def edits(cfg):
        cfg["process"]["cwd"] = "/work"
        cfg["process"]["args"] = ["sh", "-c", "readlink /proc/self/cwd"]

    b = bundle(None, edits)
    os.symlink("/proc/self/fd/7", b / "rootfs" / "work")
    r = run_container([], bundle_dir=b)
    if r.returncode == 0:
        assert not _escaped(r.stdout), r.result


@pytest.mark.minirun_only
@pytest.mark.parametrize("fd", [3, 4, 5, 6, 7, 8])
def test_cve_2024_21626_exec_cwd_through_leaked_fd(runtime, bundle, cid, fd):
    b = bundle(["sleep", "1000"])
    c = cid()
    runtime.ok("run", "-d", "--bundle", b, c)
    r = runtime("exec", "--cwd", f"/proc/self/fd/{fd}", c, "readlink", "/proc/self/cwd")
    if r.returncode == 0:
        assert not _escaped(r.stdout), r
    else:
        assert "Traceback" not in r.stderr, r
    runtime.ok("delete", "--force", c)


def _exchange(a: Path, b: Path) -> None:
    """renameat2(RENAME_EXCHANGE): swap two names atomically, as the CVE's attacker does."""
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    if libc.renameat2(AT_FDCWD, bytes(a), AT_FDCWD, bytes(b), RENAME_EXCHANGE) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")


def test_cve_2021_30465_destination_swapped_while_mounting(runtime, bundle, cid, tmp_path):
    """A party on the host swaps the mount destination (a directory) with a symlink to a
    directory outside the rootfs while containers are created. Each run either fails
    with one clean line or finds the bind mount inside its own root (where the
    destination resolved at mount time, the symlink taken as rooted in the rootfs);
    the outside directory never gets a mount or the container's files."""
    victim = tmp_path / "victim"
    victim.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    (src / "planted").write_text("x")

    def edits(cfg):
        cfg["mounts"].append({"destination": "/swap/dst", "type": "bind", "source": str(src),
                              "options": ["rbind", "ro"]})
        cfg["process"]["args"] = ["cat", "/proc/self/mountinfo"]

    b = bundle(None, edits)
    swap = b / "rootfs" / "swap"
    swap.mkdir()
    (swap / "dst").mkdir()
    os.symlink(str(victim), swap / "dst.x")
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            try:
                _exchange(swap / "dst", swap / "dst.x")
            except OSError:
                pass

    t = threading.Thread(target=swapper, daemon=True)
    t.start()
    outcomes = []
    try:
        for n in range(30):
            c = cid(f"s{n}")
            r = runtime("run", "--bundle", b, c)
            outcomes.append(r.returncode)
            if r.returncode == 0:
                # The bind mount of src is in the container's mount table (its mount
                # root is src): it was made inside the root, not lost outside it.
                mine = [m for m in parse_mountinfo(r.stdout) if m.root == str(src)]
                assert mine, r
                assert all(m.mountpoint.startswith("/swap/") for m in mine) or all(
                    m.mountpoint == str(victim) for m in mine), mine
            else:
                assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) <= 1, r
            runtime("delete", "--force", c)
            assert not victim.is_mount() and not (victim / "planted").exists()
    finally:
        stop.set()
        t.join()
    assert list(victim.iterdir()) == []
    assert 0 in outcomes, "no run succeeded: the race was never lost by the swapper"
