"""The container's cgroup, as the lifecycle uses it (the cgroup v2 work is in cgroups/).

Every container gets a cgroup in the host's cgroup2 hierarchy (on a hybrid host, the
`unified` one): limits where the controllers are there, and on any host the freezer,
cgroup.kill, the process list and the eBPF device filter.

    create:  prepare() in the runtime, before fork: validate, mkdir, limits, devices,
             and an fd on cgroup.procs the container's processes join through;
             the set-up process roots a new cgroup namespace there; the init joins it
             as its last set-up step (so Python's own memory, charged when its pages
             were touched, stays outside the container's memory limit)
    exec:    the process joins just before exec
    pause/resume/kill --all/ps/delete/events/update: by the path saved in state.json
"""

import os

from minirun.errors import MinirunError


class Prepared:
    """A created cgroup and the fds the set-up processes need."""

    def __init__(self, cg, procs_fd: int, own_fd: int | None) -> None:
        self.cg = cg
        self.procs_fd = procs_fd  # the container's cgroup.procs
        self.own_fd = own_fd  # ours, to step back out after rooting a cgroup namespace

    def record(self) -> dict:
        return {"mount": self.cg.mount, "path": self.cg.path}

    def close_fds(self) -> None:
        for fd in (self.procs_fd, self.own_fd):
            if fd is not None:
                os.close(fd)


def prepare(cid: str, linux: dict) -> Prepared:
    from minirun import cgroups

    mount = cgroups.find_v2_mount()
    res = linux.get("resources") or {}
    cgroups.validate_resources(res, mount)
    cg = cgroups.Cgroup(mount, cgroups.resolve_path(linux.get("cgroupsPath"), cid))
    if cg.exists() and cg.pids():
        raise MinirunError(f"linux.cgroupsPath: cgroup {cg.dir} already has processes "
                           "(another container's?)")
    cg.create(cgroups.needed_controllers(res))
    try:
        paths = [d["path"] for d in linux.get("devices") or []]
        cg.apply(res, spec_device_paths=paths)
        procs_fd = cg.open_procs()
        own_fd = None
        if any(ns["type"] == "cgroup" and not ns.get("path")
               for ns in linux.get("namespaces") or []):
            own_fd = os.open(_own_procs(mount), os.O_WRONLY | os.O_CLOEXEC)
    except BaseException:
        cg.destroy()
        raise
    return Prepared(cg, procs_fd, own_fd)


def _own_procs(mount: str) -> str:
    from minirun.cgroups.host import own_cgroup

    return os.path.join(mount + own_cgroup().rstrip("/"), "cgroup.procs")


def of(st: dict):
    """The Cgroup recorded in a container's state, or None (no cgroup)."""
    rec = st.get("cgroup")
    if not rec:
        return None
    from minirun import cgroups

    try:
        return cgroups.Cgroup(rec["mount"], rec["path"])
    except MinirunError:
        return None
