"""The state under --root: ids validated by every command before the filesystem is
touched (issue 13, item 5), and state that other local users cannot read or use
whatever the umask (item 8)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import MINIRUN_BIN, TIMEOUT, delete_crashed_sessions_containers, runtime_argv

BAD_IDS = ["../victim-root/victim", "/tmp", "..", "a/b", "x" * 256, ""]
# every command that takes an id, with what it needs after it
COMMANDS = [["delete", "--force"], ["delete"], ["kill"], ["kill", "--all"], ["state"],
            ["start"], ["pause"], ["resume"], ["ps"], ["events", "--stats"],
            ["update", "--pids-limit", "10"], ["exec"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c))
def test_every_command_refuses_a_path_as_id(runtime, bundle, command, tmp_path):
    # a container in a sibling root that `../victim-root/victim` would reach
    vroot = runtime.root.parent / "victim-root"
    victim_rt = type(runtime)(runtime.binary, vroot, tmp_path / "io-victim", runtime.ctx,
                              name="victim")
    runtime.ctx.runtimes.append(victim_rt)
    runtime.ctx.ids.append("victim")
    victim_rt.ok("create", "--bundle", bundle(["sleep", "1000"]), "victim")
    runtime.root.mkdir(parents=True, exist_ok=True)
    args = [*command, "../victim-root/victim"]
    if command == ["exec"]:
        args.append("true")
    if command[0] == "kill" and "--all" not in command:
        args.append("KILL")
    r = runtime(*args)
    assert r.returncode != 0, r
    assert "invalid container id" in r.stderr and "Traceback" not in r.stderr, r
    assert victim_rt.state("victim")["status"] == "created"  # untouched


@pytest.mark.parametrize("bad", BAD_IDS, ids=range(len(BAD_IDS)))
def test_bad_ids_refused_by_delete_force(runtime, bad):
    r = runtime("delete", "--force", bad)
    assert r.returncode != 0 and "invalid container id" in r.stderr, r


def _run_with_umask(runtime, *args, umask: int = 0):
    with open(runtime.workdir / "umask.out", "wb") as out:
        return subprocess.run(runtime.argv(*args), stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT, umask=umask, timeout=TIMEOUT)


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_state_is_private_whatever_the_umask(runtime, bundle, cid):
    c = cid()
    b = bundle(["sleep", "1000"], {"process": {"env": ["PATH=/bin", "SECRET=hunter2"]}})
    r = _run_with_umask(runtime, "create", "--bundle", b, c, umask=0)
    assert r.returncode == 0, (runtime.workdir / "umask.out").read_text()
    cdir = runtime.root / c
    assert _mode(runtime.root) == 0o700
    assert _mode(cdir) == 0o700
    for name in ("state.json", "config.json"):
        assert _mode(cdir / name) == 0o600, name
    assert stat.S_ISSOCK(os.lstat(cdir / "exec.sock").st_mode)
    assert _mode(cdir / "exec.sock") == 0o600
    assert "hunter2" in (cdir / "config.json").read_text()  # the secret is there: guarded
    runtime.ok("delete", "--force", c)


def test_other_users_cannot_start_a_created_container(runtime, bundle, cid, public_tmp):
    # A --root every user can reach (pytest's own tmp dir is 0700 and would hide it).
    runtime.root = public_tmp / "root"
    c = cid()
    assert _run_with_umask(runtime, "create", "--bundle", bundle(["true"]), c).returncode == 0
    sock = runtime.root / c / "exec.sock"
    link = Path(tempfile.mkdtemp(prefix="mr-", dir="/tmp")) / "s"  # AF_UNIX paths are short
    link.parent.chmod(0o711)
    link.symlink_to(sock)
    try:
        probe = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "/usr/bin/python3", "-c",
             f"import socket; socket.socket(socket.AF_UNIX).connect({str(link)!r})"],
            capture_output=True, text=True, timeout=TIMEOUT)
    finally:
        link.unlink()
        link.parent.rmdir()
    assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe
    assert json.loads(runtime.ok("state", c).stdout)["status"] == "created"
    runtime.ok("delete", "--force", c)


# ---------------------------------------------------------------- /etc/passwd (item 7)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge"])
def test_hostile_passwd_neither_hangs_nor_grows(run_container, bundle, kind):
    b = bundle(["sh", "-c", "echo HOME=$HOME"])
    passwd = b / "rootfs" / "etc" / "passwd"
    passwd.unlink()
    if kind == "fifo":
        os.mkfifo(passwd)
    elif kind == "dev-zero":
        passwd.symlink_to("/dev/zero")
    else:  # 64 MiB without the uid: read only up to the bound, then HOME=/
        with open(passwd, "wb") as f:
            f.truncate(64 << 20)
    r = run_container([], bundle_dir=b, timeout=30)
    assert r.returncode == 0, r.result
    assert "HOME=/" in r.stdout


@pytest.mark.minirun_only
def test_containers_of_a_crashed_test_session_are_deleted_by_their_state(
        runtime, bundle, cid, tmp_path, ctx):
    # A session killed mid-test leaves created containers (cgroup, init) whose only
    # record is the state under its basetemp: the next session deletes them by it.
    sessions = tmp_path / "sessions"
    root = sessions / "pytest-7" / "test_x0" / "root-minirun"
    old, fresh = cid("old"), cid("fresh")
    for c in (old, fresh):
        argv = [*runtime_argv(MINIRUN_BIN), "--root", str(root)]
        subprocess.run([*argv, "create", "--bundle", str(bundle(["sleep", "600"])), c],
                       check=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL)
        ctx.cleanups.append(lambda c=c, argv=argv: subprocess.run(
            [*argv, "delete", "--force", c], capture_output=True, timeout=TIMEOUT))
    st = json.loads((root / old / "state.json").read_text())
    cgroup = Path(st["cgroup"]["mount"] + st["cgroup"]["path"])
    assert cgroup.is_dir() and os.path.exists(f"/proc/{st['pid']}")
    os.utime(root / old / "state.json", (1, 1))  # long ago: that session is dead
    done = delete_crashed_sessions_containers(sessions, sessions / "pytest-8")
    assert done == [f"{root}/{old}"]
    assert not (root / old).exists() and not cgroup.exists()
    assert (root / fresh / "state.json").exists()  # recent: maybe a session still running


def test_crashed_session_scan_skips_state_that_vanishes(tmp_path, monkeypatch):
    # Another live session (the VM guest sees the host's /tmp) may delete a container
    # between the scan's glob and its stat: skipped, not a FileNotFoundError.
    sessions = tmp_path / "sessions"
    gone = sessions / "pytest-3" / "test_y0" / "root-minirun" / "gone" / "state.json"
    monkeypatch.setattr(Path, "glob", lambda self, pattern: iter([gone]))  # found, then gone
    assert delete_crashed_sessions_containers(sessions, sessions / "pytest-4") == []
