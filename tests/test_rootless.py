"""Rootless containers: minirun run by a user without root.

A user is created for each test (useradd, removed at teardown, its /etc/subuid and
/etc/subgid ranges with it) and every runtime call runs as that user through runuser.
The bundle lives in a directory every user can traverse and belongs to the user, rootfs
included (as an image a user unpacks). Checked: `spec --rootless` writes what runc's writes, the
whole lifecycle works, a bind mount's files belong to the user on the host, and what
needs root is refused in one line with nothing left behind.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import MINIRUN_BIN, RUNC_BIN, TIMEOUT

pytestmark = pytest.mark.minirun_only


class User:
    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        pw = pwd.getpwnam(name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.root = root  # the --root of this user's runtime calls

    def run(self, *args: object, cwd: Path | None = None, binary: str = MINIRUN_BIN,
            root: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        argv = ["runuser", "-u", self.name, "--", "env", "-u", "XDG_RUNTIME_DIR",
                *(f"{k}={v}" for k, v in (env or {}).items()), binary]
        if root:
            argv += ["--root", str(self.root)]
        # Files, not pipes: a created container keeps the runtime's stdio open.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            rc = subprocess.run([*argv, *map(str, args)], cwd=cwd, stdout=out, stderr=err,
                                timeout=TIMEOUT, stdin=subprocess.DEVNULL).returncode
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(argv, rc, out.read().decode(errors="replace"),
                                               err.read().decode(errors="replace"))

    def ok(self, *args: object, **kw: object) -> subprocess.CompletedProcess:
        r = self.run(*args, **kw)
        assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r


@pytest.fixture
def user(public_tmp: Path, ctx):
    name = f"mr{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True)
    root = public_tmp / "state"
    u = User(name, root)
    root.mkdir()
    os.chown(root, u.uid, u.gid)

    def cleanup() -> None:
        if root.is_dir():
            for c in os.listdir(root):
                subprocess.run([MINIRUN_BIN, "--root", str(root), "delete", "--force", c],
                               capture_output=True)
        subprocess.run(["userdel", name], capture_output=True)

    ctx.cleanups.append(cleanup)
    return u


def _bundle(user: User, public_tmp: Path, bundle, edits=None) -> Path:
    """A bundle from `spec --rootless` (as the user), with the test's edits."""
    b = bundle(["true"], base=public_tmp)
    spec_dir = public_tmp / f"spec-{secrets.token_hex(2)}"
    spec_dir.mkdir()
    os.chown(spec_dir, user.uid, user.gid)
    user.ok("spec", "--rootless", "--bundle", spec_dir, root=False)
    cfg = json.loads((spec_dir / "config.json").read_text())
    cfg["process"]["terminal"] = False
    if edits:
        edits(cfg)
    (b / "config.json").write_text(json.dumps(cfg))
    # A user's own image: the rootfs is theirs (the container's root is them).
    subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", str(b)], check=True)
    shutil.rmtree(spec_dir)
    return b


def _args(*argv: str):
    def edit(cfg: dict) -> None:
        cfg["process"]["args"] = list(argv)
    return edit


def test_spec_rootless_is_runcs(user, public_tmp):
    dirs = []
    for rt in (MINIRUN_BIN, RUNC_BIN):
        d = public_tmp / f"spec-{len(dirs)}"
        d.mkdir()
        os.chown(d, user.uid, user.gid)
        user.ok("spec", "--rootless", "--bundle", d, binary=rt, root=False)
        dirs.append(json.loads((d / "config.json").read_text()))
    mine, runcs = dirs
    assert mine == runcs
    assert mine["linux"]["uidMappings"] == [{"containerID": 0, "hostID": user.uid, "size": 1}]


def test_lifecycle_as_user(user, public_tmp, bundle):
    b = _bundle(user, public_tmp, bundle, _args("sleep", "1000"))
    user.ok("create", "--bundle", b, "c1")
    st = json.loads(user.ok("state", "c1").stdout)
    assert st["status"] == "created"
    user.ok("start", "c1")
    assert "c1" in user.ok("list", "-q").stdout
    pids = json.loads(user.ok("ps", "--format", "json", "c1").stdout)
    assert st["pid"] in pids
    out = user.ok("exec", "c1", "sh", "-c", "id -u; cat /proc/self/uid_map").stdout.split()
    assert out == ["0", "0", str(user.uid), "1"]
    user.ok("kill", "c1", "KILL")
    deadline = 50
    while json.loads(user.ok("state", "c1").stdout)["status"] != "stopped" and deadline:
        subprocess.run(["sleep", "0.1"])
        deadline -= 1
    user.ok("delete", "c1")
    assert os.listdir(user.root) == []


def test_bind_mount_files_belong_to_the_user(user, public_tmp, bundle):
    shared = public_tmp / "shared"
    shared.mkdir()
    os.chown(shared, user.uid, user.gid)

    def edits(cfg: dict) -> None:
        cfg["mounts"].append({"destination": "/share", "type": "bind", "source": str(shared),
                              "options": ["rbind"]})
        cfg["process"]["args"] = ["sh", "-c", "echo hi > /share/made; id -u"]

    b = _bundle(user, public_tmp, bundle, edits)
    r = user.ok("run", "--bundle", b, "w1")
    assert r.stdout.strip() == "0"  # root inside
    st = (shared / "made").stat()
    assert (st.st_uid, st.st_gid) == (user.uid, user.gid)  # the user outside


def test_default_root_is_the_users(user, public_tmp, bundle):
    xdg = public_tmp / "xdg"
    xdg.mkdir(mode=0o700)
    os.chown(xdg, user.uid, user.gid)
    b = _bundle(user, public_tmp, bundle)
    r = user.run("run", "--bundle", b, "d1", root=False, env={"XDG_RUNTIME_DIR": xdg})
    assert r.returncode == 0, r.stderr
    assert (xdg / "minirun").is_dir()  # the state went there, not to /run/minirun
    assert os.listdir(xdg / "minirun") == []


@pytest.mark.parametrize("case,edit,want", [
    ("unmapped-uid", lambda c: c["process"]["user"].update(uid=5),
     "process.user.uid: 5 is not mapped"),
    ("limits", lambda c: c["linux"].update(resources={"pids": {"limit": 10}}),
     "linux.resources: limits need a cgroup"),
    ("ext4", lambda c: c["mounts"].append({"destination": "/mnt", "type": "ext4",
                                           "source": "/dev/null"}),
     "in a user namespace the kernel mounts only"),
    ("other-ids", lambda c: c["linux"].update(
        uidMappings=[{"containerID": 0, "hostID": 1, "size": 1}]),
     "linux.uidMappings:"),
])
def test_what_needs_root_is_refused(user, public_tmp, bundle, case, edit, want):
    b = _bundle(user, public_tmp, bundle, edit)
    r = user.run("run", "--bundle", b, f"r-{case}")
    assert r.returncode != 0
    err = r.stderr.strip()
    assert want in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert os.listdir(user.root) == []


def test_root_the_user_cannot_write(user, public_tmp, bundle):
    b = _bundle(user, public_tmp, bundle)
    r = subprocess.run(
        ["runuser", "-u", user.name, "--", MINIRUN_BIN, "--root", "/run/minirun-denied/x",
         "run", "--bundle", str(b), "x1"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode != 0
    assert "--root /run/minirun-denied/x: cannot create it: Permission denied" in r.stderr


def test_network_bridge_is_refused(user, public_tmp, bundle):
    b = _bundle(user, public_tmp, bundle)
    r = user.run("run", "--network", "bridge", "--bundle", b, "n1")
    assert r.returncode != 0 and "needs root" in r.stderr, r.stderr


def test_subordinate_ids_through_newuidmap(user, public_tmp, bundle):
    if not shutil.which("newuidmap"):
        pytest.skip("newuidmap (Debian package uidmap) is not installed: `make deps` does")
    sub = next((ln.split(":") for ln in Path("/etc/subuid").read_text().splitlines()
                if ln.startswith(user.name + ":")), None)
    if sub is None:
        pytest.skip("useradd gave the test user no /etc/subuid range")
    start = int(sub[1])

    def edits(cfg: dict) -> None:
        for key in ("uidMappings", "gidMappings"):
            cfg["linux"][key] = [{"containerID": 0, "hostID": user.uid, "size": 1},
                                 {"containerID": 1, "hostID": start, "size": 1000}]
        cfg["process"]["args"] = ["cat", "/proc/self/uid_map"]

    b = _bundle(user, public_tmp, bundle, edits)
    out = user.ok("run", "--bundle", b, "s1").stdout.split()
    assert out == ["0", str(user.uid), "1", "1", str(start), "1000"]
