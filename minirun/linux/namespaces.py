"""Namespaces: which to create, which to join by path, and the user/time set-up.

Runs in the intermediate set-up process (see linux/init.py). Joining comes first
(the user namespace before the others, so that the rest are joined with its
privileges); then a new user namespace (the runtime's process writes its id maps);
then one unshare(2) for every other new namespace. pid and time namespaces apply to
children only: the container's init is forked right after.
"""

import os

from minirun import syscalls
from minirun.errors import MinirunError
from minirun.steps import Tracer

# setns/unshare order: user first; mount last among joins (paths were opened before).
ORDER = ("user", "cgroup", "ipc", "uts", "network", "pid", "time", "mount")


class Plan:
    """What the config asks for: namespaces to join (type -> path) and to create."""

    def __init__(self, linux: dict) -> None:
        self.join: dict[str, str] = {}
        self.new: list[str] = []
        for ns in linux.get("namespaces") or []:
            if ns.get("path"):
                self.join[ns["type"]] = ns["path"]
            else:
                self.new.append(ns["type"])

    def has_new(self, kind: str) -> bool:
        return kind in self.new


def open_joins(plan: Plan, tracer: Tracer) -> list[tuple[str, int, str]]:
    """Open every namespace path up front: after joining a mount ns paths change."""
    out = []
    for kind in ORDER:
        path = plan.join.get(kind)
        if path is None:
            continue
        with tracer.step("open-ns", f"{kind} {path}"):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            out.append((kind, fd, path))
    return out


def join(opened: list[tuple[str, int, str]], tracer: Tracer) -> None:
    for kind, fd, path in opened:
        with tracer.step("setns", f"{kind} {path}"):
            syscalls.setns(fd, syscalls.NS_FLAGS[kind], path)
        os.close(fd)


def unshare_user(tracer: Tracer) -> None:
    with tracer.step("unshare", "user"):
        syscalls.unshare(syscalls.NS_FLAGS["user"])


def become_root_in_userns(linux: dict) -> None:
    """After the maps are written: act as the namespace's root, if root is mapped."""
    if _maps_zero(linux.get("uidMappings")) and _maps_zero(linux.get("gidMappings")):
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)


def _maps_zero(mappings: list | None) -> bool:
    return any(m["containerID"] == 0 for m in mappings or [])


def write_id_maps(pid: int, linux: dict, tracer: Tracer) -> None:
    """Runs in minirun's own process (outside): write the child's uid_map/gid_map.

    Root writes any mapping. A user without root may map only its own uid and gid, one
    id each (and must deny setgroups first); anything more goes through the setuid
    helpers newuidmap/newgidmap, which check /etc/subuid and /etc/subgid."""
    if os.geteuid() != 0 and not _maps_only_self(linux):
        _new_id_maps(pid, linux, tracer)
        return
    for key, name in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        text = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in linux[key])
        path = f"/proc/{pid}/{name}"
        with tracer.step("id-map", f"{name} (linux.{key})"):
            if name == "gid_map" and os.geteuid() != 0:
                _write(f"/proc/{pid}/setgroups", "deny")
            try:
                _write(path, text)
            except PermissionError:
                raise MinirunError(f"linux.{key}: the kernel refused the mapping "
                                   f"{text.strip()!r} for uid {os.geteuid()} (only root "
                                   "maps other ids)") from None


def _maps_only_self(linux: dict) -> bool:
    def own(key: str, wanted: int) -> bool:
        maps = linux.get(key) or []
        return len(maps) == 1 and maps[0]["hostID"] == wanted and maps[0]["size"] == 1

    return own("uidMappings", os.geteuid()) and own("gidMappings", os.getegid())


def _new_id_maps(pid: int, linux: dict, tracer: Tracer) -> None:
    import shutil
    import subprocess

    for key, tool in (("uidMappings", "newuidmap"), ("gidMappings", "newgidmap")):
        path = shutil.which(tool)
        if path is None:
            raise MinirunError(f"linux.{key}: mapping more than your own id needs {tool} "
                               "(Debian package uidmap) and a range in /etc/sub"
                               f"{'uid' if tool == 'newuidmap' else 'gid'}")
        args = [str(v) for m in linux[key] for v in (m["containerID"], m["hostID"], m["size"])]
        with tracer.step("id-map", f"{tool} (linux.{key})"):
            r = subprocess.run([path, str(pid), *args], capture_output=True, text=True)
            if r.returncode != 0:
                why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
                raise MinirunError(f"linux.{key}: {tool} refused the mapping: {why}")


def unshare_rest(plan: Plan, tracer: Tracer) -> None:
    kinds = [k for k in ORDER if k != "user" and plan.has_new(k)]
    if not kinds:
        return
    flags = 0
    for kind in kinds:
        flags |= syscalls.NS_FLAGS[kind]
    with tracer.step("unshare", " ".join(kinds)):
        syscalls.unshare(flags)


def write_time_offsets(pid: int, offsets: dict, tracer: Tracer) -> None:
    """Runs in minirun's own process: between the set-up process's
    unshare(CLONE_NEWTIME) and the first process in that namespace (the init)."""
    text = "".join(f"{clock} {o.get('secs', 0)} {o.get('nanosecs', 0)}\n"
                   for clock, o in offsets.items())
    with tracer.step("time-offsets", "linux.timeOffsets"):
        _write(f"/proc/{pid}/timens_offsets", text)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


PROC_NS_NAMES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
                 "user": "user", "cgroup": "cgroup", "time": "time"}


def open_of_process(pid: int, kinds: list[str], tracer: Tracer) -> list[tuple[str, int, str]]:
    """Open the namespaces of a running process that differ from ours (joining one's
    own user namespace is an error, and the others would be no-ops)."""
    out = []
    for kind in ORDER:
        if kind not in kinds:
            continue
        name = PROC_NS_NAMES[kind]
        # pid and time namespaces: join the one the container's processes live in.
        theirs = f"/proc/{pid}/ns/{name}"
        with tracer.step("open-ns", f"{kind} {theirs}"):
            if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            out.append((kind, os.open(theirs, os.O_RDONLY | os.O_CLOEXEC), theirs))
    return out
