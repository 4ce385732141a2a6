#!/usr/bin/env python3
"""Holds the engines' private mount namespace and supervises containerd.

Started once per test session by ``tests/engines/conftest.py``; standard library
only. It

1. detaches from its starter (forks; the starter clears its child-subreaper flag
   for that moment, so this process leaves pytest's process tree: containerd is
   a session-long daemon, and the suite's per-test leak check rightly fails any
   process left below pytest);
2. makes itself a child subreaper, so that the containerd shims, which daemonize,
   re-parent to it, and it can end them all;
3. enters a new mount namespace and makes every mount in it private. On a hybrid
   host the cgroup view there is the host's own (``--cgroup-view hybrid``, the
   default) but for the v1 memory hierarchy, which belongs to the machine: it is
   lazily unmounted in this namespace only, so no engine or runtime below can
   set a v1 memory limit or move a process out of its memory cgroup, while cpu,
   pids, blkio, ... work as on any hybrid host (stock engine settings need them).
   ``--cgroup-view v2`` replaces ``/sys/fs/cgroup`` by the host's cgroup2 mount
   alone instead: a pure cgroup v2 host. Podman runs in the same namespace
   (``nsenter -t PID -m``), so its overlay mounts persist between its commands;
4. starts ``COMMAND`` (containerd) if given, its output going to ``--log``;
5. writes one JSON line to ``--ready-fd``: ``{"pid": ..., "child": ...}`` or
   ``{"error": ...}``;
6. restarts containerd when the session writes "r" to ``--control-fd`` (the new pid
   in ``--scratch``/containerd.pid), and waits until that fd reaches EOF: closed by
   the session at its end, or
   by the kernel when pytest dies, however it dies. Then it sends SIGTERM to
   containerd, SIGKILL after 10 s, SIGKILL to any process still below it (they
   are all processes the engines started for the tests) and to any process whose
   command line mentions ``--scratch`` or whose root is under it (conmon, podman's containers,
   ctr: below pytest, or orphaned if pytest died), reaps them, runs ``--on-exit``
   (the session's by-id cleanup of what a crash leaves outside the scratch folder;
   a no-op after a clean session) and exits. The mount namespace, and every mount
   the engines made in it, goes with it.

Usage: supervisor.py --control-fd N --ready-fd N --log FILE [--scratch DIR]
                     [--on-exit SCRIPT] [--cgroup-view hybrid|v2] [-- COMMAND...]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import select
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
CGROUP2_SUPER_MAGIC = 0x63677270

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _cgroup_mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, super options) of every mount under /sys/fs/cgroup."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for ln in f:
            left, _, right = ln.partition(" - ")
            point = left.split()[4]
            if point.startswith("/sys/fs/cgroup"):
                fstype, _, opts = right.split()[:3]
                out.append((point, fstype, set(opts.split(","))))
    return out


def private_cgroup_view(view: str) -> None:
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    if view == "v2":
        private_cgroup2_view()
        return
    for point, fstype, opts in _cgroup_mounts():
        if fstype == "cgroup" and "memory" in opts:
            _check(_libc.umount2(point.encode(), MNT_DETACH), f"umount -l {point}")
    left = [p for p, t, o in _cgroup_mounts() if t == "cgroup" and "memory" in o]
    if left:
        raise OSError(0, f"the v1 memory hierarchy is still mounted here: {left}")


def private_cgroup2_view() -> None:
    # lazily: the v1 mounts below it go too, in this namespace only
    _check(_libc.umount2(b"/sys/fs/cgroup", MNT_DETACH), "umount -l /sys/fs/cgroup")
    _check(_libc.mount(b"cgroup2", b"/sys/fs/cgroup", b"cgroup2", 0, None),
           "mount -t cgroup2 cgroup2 /sys/fs/cgroup")
    under = [t for _, t, _ in _cgroup_mounts()]
    if under != ["cgroup2"]:
        raise OSError(0, f"/sys/fs/cgroup is not a lone cgroup2 mount here: {under}")


def children_table() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    return children


def descendants(pid: int) -> list[int]:
    table = children_table()
    out, todo = [], [pid]
    while todo:
        for c in table.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def reap() -> list[tuple[int, int]]:
    done = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done.append((pid, status))


def spawn(argv: list[str], log_path: str) -> int:
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.closerange(3, 65536)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.execvp(argv[0], argv)
        except BaseException as e:  # noqa: BLE001
            os.write(2, f"supervisor: exec {argv}: {e}\n".encode())
        finally:
            os._exit(127)
    os.close(log)
    return pid


def referencing(path: str) -> list[int]:
    """Processes (not us) whose command line mentions path or whose root is under it
    (not their cwd: a developer's shell looking at the scratch folder is left alone)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                hit = path.encode() in f.read()
            hit = hit or os.readlink(f"/proc/{d}/root").startswith(path)
        except OSError:
            continue
        if hit:
            out.append(int(d))
    return out


def terminate(child: int) -> bool:
    """SIGTERM our child, SIGKILL after 10 s; False if it took the SIGKILL."""
    try:
        os.kill(child, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(p == child for p, _ in reap()) or not os.path.exists(f"/proc/{child}"):
            return True
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    return False


def shutdown(child: int | None, log_path: str, scratch: str | None = None,
             on_exit: str | None = None) -> None:
    def note(msg: str) -> None:
        with open(log_path, "a") as f:
            f.write(f"supervisor: {msg}\n")

    if child is not None and not terminate(child):
        note(f"containerd {child} ignored SIGTERM for 10 s: SIGKILL")
    # Anything still below us, or working in the scratch folder, was started by
    # the engines for the tests.
    for _ in range(50):
        reap()
        left = set(descendants(os.getpid())) | set(referencing(scratch) if scratch else [])
        left = {p for p in left if os.path.exists(f"/proc/{p}") and not _zombie(p)}
        if not left:
            break
        for p in sorted(left):
            note(f"killing leftover process {p}: {_cmdline(p)}")
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    reap()
    if on_exit:
        with open(log_path, "ab") as log:
            pid = os.fork()
            if pid == 0:
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                os.execv("/bin/sh", ["sh", on_exit])
            _, status = os.waitpid(pid, 0)
            rc = os.waitstatus_to_exitcode(status)
        if rc != 0:
            note(f"{on_exit} exited {rc}")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2:].split()[0] in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--control-fd", type=int, required=True)
    ap.add_argument("--ready-fd", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--scratch")
    ap.add_argument("--on-exit")
    ap.add_argument("--cgroup-view", choices=("hybrid", "v2"), default="hybrid")
    ap.add_argument("command", nargs="*")
    a = ap.parse_args()

    if os.fork() != 0:
        os._exit(0)  # the starter waits for this; we re-parent away from it

    ready = os.fdopen(a.ready_fd, "w")
    child = None
    try:
        _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
        private_cgroup_view(a.cgroup_view)
        if a.command:
            child = spawn(a.command, a.log)
    except OSError as e:
        ready.write(json.dumps({"error": str(e)}) + "\n")
        ready.close()
        if child is not None:
            shutdown(child, a.log, a.scratch, a.on_exit)
        sys.exit(1)
    ready.write(json.dumps({"pid": os.getpid(), "child": child}) + "\n")
    ready.close()

    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    while True:
        r, _, _ = select.select([a.control_fd], [], [], 0.5)
        reap()
        if not r:
            continue
        data = os.read(a.control_fd, 4096)
        if not data:
            break
        if b"r" in data and child is not None:  # restart containerd (its shims live on)
            child = restart(child, a.command, a.log, a.scratch)
    shutdown(child, a.log, a.scratch, a.on_exit)


def restart(child: int, command: list[str], log_path: str, scratch: str | None) -> int:
    """SIGTERM containerd, wait for it, start it again; the new pid goes to
    SCRATCH/containerd.pid (written last, atomically)."""
    terminate(child)
    child = spawn(command, log_path)
    if scratch:
        tmp = os.path.join(scratch, "containerd.pid.tmp")
        with open(tmp, "w") as f:
            f.write(str(child))
        os.replace(tmp, os.path.join(scratch, "containerd.pid"))
    return child


if __name__ == "__main__":
    main()
