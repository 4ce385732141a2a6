"""The root filesystem's escapes (issue 13, items 3, 4 and 6) and runc 1.1's rootfs safety
checks (issue 12): procfs/sysfs only on ordinary directories, --no-pivot hiding the
host's procfs and sysfs.

Nothing here touches a real host file: the "victims" are files the test makes, and the
one host path an image points at is read, never written.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import MINIRUN_BIN, RUNC_BIN, TIMEOUT


def _no_dev_mounts(cfg: dict) -> None:
    cfg["mounts"] = [m for m in cfg["mounts"] if not m["destination"].startswith("/dev")]


# ---------------------------------------------------------------- item 4: masked paths


@pytest.mark.minirun_only
def test_masking_never_uses_the_images_dev_null(run_container, bundle):
    """The image's /dev/null is a symlink to a host kernel file and the config has no
    /dev mount: masking /proc/keys must not bind that file there (it would be writable
    host state, like core_pattern; ostype is read-only and harmless)."""
    def edits(cfg):
        _no_dev_mounts(cfg)
        cfg["process"]["args"] = ["sh", "-c", "cat /proc/keys; echo end"]

    b = bundle(None, edits)
    null = b / "rootfs" / "dev" / "null"
    if null.exists() or null.is_symlink():
        null.unlink()
    null.symlink_to("/proc/sys/kernel/ostype")
    r = run_container([], bundle_dir=b)
    assert "Linux" not in r.stdout, r.result  # the masked file shows the kernel's ostype
    if r.returncode == 0:
        assert r.stdout.strip() == "end"
    else:
        assert "/dev/null" in r.stderr and "Traceback" not in r.stderr, r.result


def test_default_devices_without_a_dev_mount(sh):
    out = sh("ls -l /dev/null /dev/zero /dev/urandom | cut -c1", _no_dev_mounts)
    assert out.split() == ["c", "c", "c"]


# ---------------------------------------------------------------- item 3: device nodes


@pytest.mark.minirun_only
def test_device_node_swapped_for_a_symlink_is_never_chmodded(runtime, bundle, cid, tmp_path):
    """Another party swaps the new device node for a symlink to a host file while
    containers are created: the file's mode and owner never change."""
    victim = tmp_path / "victim"
    victim.write_text("host file")
    victim.chmod(0o600)

    def edits(cfg):
        _no_dev_mounts(cfg)
        cfg["linux"]["devices"] = [{"path": "/dev/race/node", "type": "c", "major": 1,
                                    "minor": 3, "fileMode": 0o666, "uid": 4242, "gid": 4242}]
        cfg["process"]["args"] = ["true"]

    b = bundle(None, edits)
    race = b / "rootfs" / "dev" / "race"
    race.mkdir(parents=True)
    stop = threading.Event()

    def swapper() -> None:
        node, link = race / "node", race / "link"
        while not stop.is_set():
            try:
                os.symlink(victim, link)
                os.rename(link, node)  # replaces the node minirun just made
            except OSError:
                pass

    t = threading.Thread(target=swapper, daemon=True)
    t.start()
    try:
        for n in range(40):
            r = runtime("run", "--bundle", b, cid(f"d{n}"))
            assert "Traceback" not in r.stderr, r
    finally:
        stop.set()
        t.join()
    st = victim.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0, "a host file was changed"


# ---------------------------------------------------------------- item 6: joined mount ns


def test_joining_a_mount_namespace_is_refused(runtime, bundle, cid, ctx):
    # A throw-away mount namespace (never the host's: a runtime that pivots inside the
    # namespace it joins would take it down).
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                               "sleep", "1000"])
    ctx.cleanups.append(lambda: (holder.kill(), holder.wait()))
    path = f"/proc/{holder.pid}/ns/mnt"

    def edits(cfg):
        cfg["linux"]["namespaces"] = [ns for ns in cfg["linux"]["namespaces"]
                                      if ns["type"] != "mount"]
        cfg["linux"]["namespaces"].append({"type": "mount", "path": path})

    r = runtime("run", "--bundle", bundle(["true"], edits), cid())
    assert r.returncode != 0
    assert "linux.namespaces[4].path: joining a mount namespace is refused" in r.stderr, r


# ---------------------------------------------------------------- issue 12: runc's checks


@pytest.mark.parametrize("binary", [MINIRUN_BIN, RUNC_BIN], ids=["minirun", "runc"])
@pytest.mark.parametrize("where,fs", [("proc", "proc"), ("sys", "sysfs")])
def test_proc_and_sys_must_be_ordinary_directories(make_runtime, bundle, cid, where, fs,
                                                   tmp_path, binary):
    """Side by side with runc 1.1.5: the same refusal, in the same words."""
    if not os.path.exists(binary):
        pytest.skip(f"{binary} is not installed")
    runtime = make_runtime(binary, "rt")
    b = bundle(["true"])
    d = b / "rootfs" / where
    os.rmdir(d)
    target = tmp_path / "elsewhere"
    target.mkdir(exist_ok=True)
    d.symlink_to(target)
    r = runtime("run", "--bundle", b, cid())
    assert r.returncode != 0
    said = r.stderr.replace('\\"', '"')  # runc's logrus line escapes its quotes
    assert f'filesystem "{fs}" must be mounted on ordinary directory' in said, r
    assert list(target.iterdir()) == []


NO_PIVOT_PROBE = """
import sys
from minirun.linux.rootfs import _hide_outside_proc_sys
info = open("/proc/self/mountinfo")  # kept open: /proc itself is about to go
_hide_outside_proc_sys(sys.argv[1])
info.seek(0)
for line in info:
    print(line.partition(" - ")[2].split()[0], line.split()[4])
"""


@pytest.mark.minirun_only
def test_no_pivot_hides_every_proc_and_sys_outside_the_root(tmp_path):
    """--no-pivot keeps the old root under the container's: every procfs and sysfs
    outside the root is detached (or covered), so none stays fully visible to a user
    namespace inside. Run in a throw-away mount namespace of its own."""
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    python = Path(MINIRUN_BIN).parent / "python3"  # the venv's: the installed minirun
    script = (f"mount --make-rprivate / && mount -t proc proc {root}/proc && "
              f"exec {python} -I -c '{NO_PIVOT_PROBE}' {root}")
    r = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True,
                       text=True, timeout=TIMEOUT, cwd="/")
    assert r.returncode == 0, r.stderr
    mounts = [ln.split() for ln in r.stdout.splitlines()]
    outside = [m for m in mounts if m[0] in ("proc", "sysfs") and not m[1].startswith(str(root))]
    inside = [m for m in mounts if m[0] == "proc" and m[1] == f"{root}/proc"]
    assert outside == [] and inside, r.stdout


@pytest.mark.minirun_only
def test_own_node_refuses_a_node_swapped_for_a_symlink(tmp_path):
    """The race of item 3, made deterministic: between mknodat and the chmod/chown, the
    node is replaced by a symlink to a host file. minirun's chmod/chown go through an fd
    on the inode (O_PATH|O_NOFOLLOW), so the swap is noticed and the file untouched."""
    import importlib

    rootfs = importlib.import_module("minirun.linux.rootfs")
    victim = tmp_path / "victim"
    victim.write_text("host file")
    victim.chmod(0o600)
    d = tmp_path / "dev"
    d.mkdir()
    os.mknod(d / "node", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    (d / "node").unlink()
    (d / "node").symlink_to(victim)  # the swap
    dfd = os.open(d, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(Exception, match="replaced|Too many levels|symbolic"):
            rootfs._own_node(dfd, "node", stat.S_IFCHR, os.makedev(1, 3), 0o666, 4242, 4242)
    finally:
        os.close(dfd)
    st = victim.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
