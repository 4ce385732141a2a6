"""The container's cgroup, as the lifecycle uses it (the cgroup v2 work is in cgroups/).

Every container gets a cgroup in the host's cgroup2 hierarchy (on a hybrid host, the
`unified` one): limits where the controllers are there, and on any host the freezer,
cgroup.kill, the process list and the eBPF device filter.

    create:  prepare() in the runtime, while the set-up processes (forked first) work:
             validate, mkdir, limits, devices, and the fds on cgroup.procs the
             container's processes join through; they ask for them ("cgroup-info",
             View) when they need them: the set-up process to root a new cgroup
             namespace, the init to mount /sys/fs/cgroup and to join as its last
             set-up step (so Python's own memory, charged when its pages were
             touched, stays outside the container's memory limit)
    exec:    the process joins just before exec
    pause/resume/kill --all/ps/delete/events/update: by the path saved in state.json
"""

import os

from minirun.errors import MinirunError
from minirun.log import log


class Prepared:
    """A created cgroup and the fds the set-up processes need."""

    def __init__(self, cg, procs_fd: int, own_fd: int | None) -> None:
        self.cg = cg
        self.procs_fd = procs_fd  # the container's cgroup.procs
        self.own_fd = own_fd  # ours, to step back out after rooting a cgroup namespace
        self.shared = False  # it held other processes already: never kill or remove it
        self.v1 = None  # cgroups.v1.V1Cgroups: the v1 hierarchies of v1-bound limits
        self.v1_fds: list[int] = []  # their cgroup.procs, joined with procs_fd

    def record(self) -> dict:
        rec = {"mount": self.cg.mount, "path": self.cg.path,
               "made_parents": self.cg.made_parents}
        if not getattr(self.cg, "unified", True):
            rec["v1_only"] = True  # a host with cgroup v1 only: cgroups/v1home.py
        if self.shared:
            rec["shared"] = True
        if self.v1 is not None:
            rec["v1"] = self.v1.record()
            rec["v1_made"] = self.v1.made
        return rec

    def join_all(self, pid: int = 0) -> None:
        """The process (ourselves with pid 0) into cgroup2 and every v1 directory."""
        from minirun.cgroups.cgroup import join

        for fd in (self.procs_fd, *self.v1_fds):
            join(fd, pid)

    def close_fds(self) -> None:
        for fd in (self.procs_fd, self.own_fd, *self.v1_fds):
            if fd is not None:
                os.close(fd)

    def view_reply(self, with_fds: bool) -> dict:
        """The "cgroup-info" reply to the set-up processes (see View), fds duplicated:
        the reply's are closed once sent."""
        own = [self.own_fd] if self.own_fd is not None and with_fds else []
        v1 = self.v1_fds if with_fds else []
        fds = [self.procs_fd, *own, *v1] if with_fds else []
        return {"path": self.cg.path, "dir": self.cg.dir,
                "unified": getattr(self.cg, "unified", True),
                "v1_dirs": dict(self.v1.dirs) if self.v1 is not None else None,
                "own": bool(own), "v1_fds": len(v1), "_fds": [os.dup(fd) for fd in fds]}


class View:
    """The container's cgroup as its set-up processes see it. They are forked before
    the runtime makes it (its kernel locks may wait out an RCU grace period meanwhile,
    see warmup.py) and ask for it ("cgroup-info") only when they need it: to root a
    cgroup namespace, to mount /sys/fs/cgroup, to join it last."""

    def __init__(self, reply: dict, fds: list[int]) -> None:
        self.path: str = reply["path"]
        self.dir: str = reply["dir"]
        self.unified: bool = reply["unified"]
        self.v1_dirs: dict[str, str] | None = reply["v1_dirs"]
        fds = list(fds)
        self.procs_fd: int | None = fds.pop(0) if fds else None
        self.own_fd: int | None = fds.pop(0) if reply["own"] else None
        self.v1_fds: list[int] = fds[:reply["v1_fds"]]

    def join_all(self) -> None:
        from minirun.cgroups.cgroup import join  # loaded: linux/init.py imports it

        for fd in (self.procs_fd, *self.v1_fds):
            join(fd)

    def drop_fds(self) -> None:
        """A sealed set-up process keeps no fd on a host cgroup.procs (linux/sealed.py)."""
        for fd in (self.procs_fd, self.own_fd, *self.v1_fds):
            if fd is not None:
                os.close(fd)
        self.procs_fd, self.own_fd, self.v1_fds = None, None, []


def v2_mount() -> str:
    """The host's cgroup2 mount, read from mountinfo once per process."""
    global _MOUNT
    if _MOUNT is None:
        from minirun.cgroups.host import find_v2_mount

        _MOUNT = find_v2_mount()
    return _MOUNT


_MOUNT: str | None = None


def v1_only() -> bool:
    """No cgroup2 mounted, v1 hierarchies are: the container lives in v1 alone."""
    global _V1_ONLY
    if _V1_ONLY is None:
        try:
            v2_mount()
            _V1_ONLY = False
        except MinirunError:
            from minirun.cgroups import v1

            _V1_ONLY = bool(v1.mounts())
    return _V1_ONLY


_V1_ONLY: bool | None = None


def prepare(cid: str, linux: dict, intent=None) -> Prepared | None:
    """The container's cgroup; None for a user without root who owns no cgroup subtree
    and asks for no limit (as runc: such a container simply has no cgroup of its own)."""
    from minirun import cgroups

    if v1_only():
        return _prepare_v1_only(cid, linux, intent)
    mount = v2_mount()
    res = linux.get("resources") or {}
    if os.geteuid() != 0:
        path = _rootless_path(mount, cid, linux, res)
        if path is None:
            return None
    else:
        path = cgroups.resolve_path(linux.get("cgroupsPath"), cid)
    cgroups.validate_resources(res, mount)
    cg = cgroups.Cgroup(mount, path)
    if intent is not None:
        # Write-ahead: the path is in state.json before the mkdir, so a create killed
        # from here on leaves nothing `delete --force` does not find.
        intent({"mount": mount, "path": path, "made_parents": []})
    shared = False
    if cg.exists():
        if cg.freeze_requested() or cg.is_frozen():
            raise MinirunError(f"container's cgroup unexpectedly frozen ({cg.dir})")
        found = cg.pids()
        if found:
            # runc's word for it: a warning, and the container joins the cgroup anyway
            # (delete then leaves the other processes, and the cgroup, alone).
            log.warn(f"container's cgroup is not empty: {len(found)} process(es) found "
                     f"({cg.dir})")
            shared = True
    from minirun.cgroups import v1

    routed = v1.targets(res, mount)
    res_v2 = v1.without(res, routed)
    cg.create(cgroups.needed_controllers(res_v2))
    v1cg = None
    try:
        paths = [d["path"] for d in linux.get("devices") or []]
        cg.apply(res_v2, spec_device_paths=paths)
        if routed:
            # Limits of controllers bound to v1 here (a hybrid host), in their hierarchy.
            v1cg = v1.for_container(cid, linux.get("cgroupsPath"), routed)
            if intent is not None:
                intent({"mount": mount, "path": path, "made_parents": [],
                        "v1": v1cg.record()})
            v1cg.create(v1.plan(res, routed))
        procs_fd = cg.open_procs()
        own_fd = None
        if any(ns["type"] == "cgroup" and not ns.get("path")
               for ns in linux.get("namespaces") or []):
            own_fd = os.open(_own_procs(mount), os.O_WRONLY | os.O_CLOEXEC)
        v1_fds = v1cg.open_procs() if v1cg is not None else []
    except BaseException:
        cg.destroy()
        if v1cg is not None:
            v1cg.destroy()
        raise
    prepared = Prepared(cg, procs_fd, own_fd)
    prepared.shared = shared
    prepared.v1 = v1cg
    prepared.v1_fds = v1_fds
    return prepared


def _prepare_v1_only(cid: str, linux: dict, intent) -> Prepared | None:
    """A host with cgroup v1 only: every mounted hierarchy, limits and devices in v1."""
    from minirun import cgroups
    from minirun.cgroups import v1
    from minirun.cgroups.v1home import V1Home, tracker_of

    res = linux.get("resources") or {}
    if os.geteuid() != 0:
        if v1.sections(res) or res.get("devices"):
            raise MinirunError("cgroups: a user without root gets no cgroup on a host with "
                               "cgroup v1 only, so linux.resources cannot be applied")
        return None
    cgroups.validate_resources(res, None)
    v1cg, rels = v1.every_hierarchy(cid, linux.get("cgroupsPath"))
    home = V1Home(v1cg.dirs, rels[tracker_of(v1cg.dirs)])
    if intent is not None:
        intent({"mount": home.mount, "path": home.path, "made_parents": [], "v1_only": True,
                "v1": v1cg.record()})
    if home.exists() and home.pids():
        raise MinirunError(f"container's cgroup is not empty ({home.dir})")
    routed = v1.targets(res, None)
    v1cg.create(v1.plan(res, routed))
    try:
        home.v1_made = v1cg.made
        home.set_devices(res.get("devices"), [d["path"] for d in linux.get("devices") or []])
        procs_fd = home.open_procs()
        v1_fds = v1cg.open_procs()
    except BaseException:
        v1cg.destroy()
        raise
    prepared = Prepared(home, procs_fd, None)
    prepared.v1 = v1cg
    prepared.v1_fds = v1_fds
    return prepared


def _rootless_path(mount: str, cid: str, linux: dict, res: dict) -> str | None:
    """A user without root gets a cgroup only inside a cgroup2 subtree it owns (one
    delegated to it, as systemd does with Delegate=yes): next to its own cgroup. Without
    one, no cgroup, unless the config asks for limits: then one line says why not."""
    from minirun.cgroups.host import own_cgroup

    own = own_cgroup().rstrip("/")
    parent = os.path.dirname(own) or "/"
    if own and _owned(mount + parent):
        name = (linux.get("cgroupsPath") or "").strip("/").replace("/", "-") or cid
        return f"{parent.rstrip('/')}/minirun-{name}"
    if any(v for k, v in res.items() if k != "devices"):
        raise MinirunError(
            f"linux.resources: limits need a cgroup, and uid {os.geteuid()} owns no cgroup2 "
            f"subtree here ({os.path.normpath(mount + parent)} is not delegated to it: run as "
            "root, or in a systemd scope with Delegate=yes)")
    return None


def _owned(path: str) -> bool:
    try:
        return os.stat(path).st_uid == os.geteuid() and os.access(path, os.W_OK)
    except OSError:
        return False


def own_dir() -> str:
    """The cgroup2 directory of this process (what a container without a cgroup of its
    own shows at /sys/fs/cgroup)."""
    from minirun.cgroups.host import own_cgroup

    return v2_mount() + own_cgroup().rstrip("/")


def _own_procs(mount: str) -> str:
    from minirun.cgroups.host import own_cgroup

    return os.path.join(mount + own_cgroup().rstrip("/"), "cgroup.procs")


def freeze_requested(st: dict) -> bool:
    """cgroup.freeze of the container's cgroup says 1 (what `pause` wrote)."""
    rec = st.get("cgroup")
    if not rec:
        return False
    if rec.get("v1_only"):
        cg = of(st)
        return cg is not None and cg.freeze_requested()
    try:
        with open(f"{rec['mount']}{rec['path']}/cgroup.freeze") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def of(st: dict):
    """The Cgroup recorded in a container's state, or None (no cgroup)."""
    rec = st.get("cgroup")
    if not rec:
        return None
    from minirun import cgroups

    if rec.get("v1_only"):
        from minirun.cgroups.v1home import V1Home

        try:
            return V1Home(dict(rec.get("v1") or {}), rec["path"], rec.get("v1_made"))
        except MinirunError:
            return None
    try:
        cg = cgroups.Cgroup(rec["mount"], rec["path"])
    except MinirunError:
        return None
    cg.made_parents = rec.get("made_parents") or []
    return cg


# ---------------------------------------------------------------- commands

def pause(store, cid: str) -> None:
    _freeze(store, cid, True)


def resume(store, cid: str) -> None:
    _freeze(store, cid, False)


def _freeze(store, cid: str, frozen: bool) -> None:
    from minirun.container import status

    cdir = store.open(cid)
    try:
        st = cdir.read()
        current = status(st)
        want = ("created", "running") if frozen else ("paused",)
        if current not in want:
            verb = "pause" if frozen else "resume"
            raise MinirunError(f"cannot {verb} container {cid!r}: it is {current}")
        cg = _require(st, cid)
        if frozen:
            cg.freeze()
        else:
            cg.thaw()
    finally:
        cdir.close()


def _require(st: dict, cid: str):
    cg = of(st)
    if cg is None or not cg.exists():
        raise MinirunError(f"container {cid!r} has no cgroup")
    return cg


def stats_event(store, cid: str) -> dict:
    cdir = store.open(cid, exclusive=False)
    try:
        st = cdir.read()
    finally:
        cdir.close()
    return {"type": "stats", "id": cid, "data": _stats(st, _require(st, cid))}


def _stats(st: dict, cg) -> dict:
    """runc's stats: the cgroup2 directory's, each v1-bound controller's from v1."""
    data = cg.stats()
    v1cg = v1_of(st)
    if v1cg is not None:
        from minirun.cgroups import stats_v1

        stats_v1.overlay(data, v1cg.dirs)
    return data


def _oom_count(st: dict, cg) -> int:
    """OOM kills so far: memory.events in cgroup2, memory.oom_control in v1."""
    v1cg = v1_of(st)
    if v1cg is not None and "memory" in v1cg.dirs:
        from minirun.cgroups import stats_v1

        return stats_v1.oom_kills(v1cg.dirs["memory"])
    return cg.oom_count()


def events(store, cid: str, interval: float, once: bool, emit) -> None:
    """runc's `events`: stats every interval (or once with --stats), and an "oom" event
    whenever memory.events' oom_kill count grows; ends when the container is gone."""
    import time

    from minirun.container import status

    cdir = store.open(cid, exclusive=False)
    try:
        st = cdir.read()
    finally:
        cdir.close()
    cg = _require(st, cid)
    if once:
        emit({"type": "stats", "id": cid, "data": _stats(st, cg)})
        return
    ooms = _oom_count(st, cg)
    while cg.exists():
        stopped = status(st) == "stopped"
        # Read after deciding it stopped: an OOM kill of the init itself still counts.
        now = _oom_count(st, cg)
        if now > ooms:
            emit({"type": "oom", "id": cid})
            ooms = now
        if stopped:
            break
        emit({"type": "stats", "id": cid, "data": _stats(st, cg)})
        time.sleep(interval)


def update(store, cid: str, res: dict) -> None:
    """Apply new limits to a live container (the device rules only if given)."""
    from minirun import cgroups
    from minirun.container import status

    cdir = store.open(cid)
    try:
        st = cdir.read()
        if status(st) == "stopped":
            raise MinirunError(f"cannot update container {cid!r}: it is stopped")
        cg = _require(st, cid)
        mount = cg.mount if getattr(cg, "unified", True) else None
        cgroups.validate_resources(res, mount)
        from minirun.cgroups import v1

        routed = v1.targets(res, mount)
        cfg = cdir.load_config()
        cg.apply(v1.without(res, routed), devices="devices" in res)
        if routed:
            v1cg = _v1_for_update(cdir, st, cg, cid, cfg, routed)
            v1cg.update(v1.plan(res, routed))
        merged = cfg["linux"].setdefault("resources", {})
        for key, value in res.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key].update(value)
            else:
                merged[key] = value
        cdir.save_config(cfg)
    finally:
        cdir.close()


def _v1_for_update(cdir, st: dict, cg, cid: str, cfg: dict, routed: set[str]):
    """The container's v1 directories, with those of the controllers an update newly
    limits made now (runc joins every hierarchy at create; minirun only the ones its
    limits need): made with the create's placement, the container's processes moved in,
    the state recording them (write-ahead, as create does)."""
    from minirun.cgroups import v1

    have = v1_of(st) or v1.V1Cgroups({})
    missing = {c for c in routed if v1.HIERARCHIES[c][0] not in have.dirs}
    if not missing:
        return have
    new = v1.for_container(cid, (cfg.get("linux") or {}).get("cgroupsPath"), missing)
    rec = st["cgroup"]
    rec["v1"] = {**have.dirs, **new.dirs}
    cdir.write(st)
    new.create([])
    rec["v1_made"] = [*have.made, *new.made]
    cdir.write(st)
    fds = new.open_procs()
    try:
        for pid in cg.pids():
            for fd in fds:
                try:
                    os.write(fd, str(pid).encode())
                except ProcessLookupError:
                    pass  # exited meanwhile
    finally:
        for fd in fds:
            os.close(fd)
    both = v1.V1Cgroups(rec["v1"])
    both.made = rec["v1_made"]
    return both


UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str, flag: str) -> int:
    """`--memory 256m` as runc (powers of 1024); -1 means unlimited."""
    raw = text.strip().lower()
    if raw == "-1":
        return -1
    num, unit = raw.rstrip("bkmgt"), raw[len(raw.rstrip("bkmgt")):].rstrip("b")
    if not num.isdigit() or unit not in UNITS:
        raise MinirunError(f"{flag} {text!r}: expected a number of bytes like 512m or 2g")
    return int(num) * UNITS[unit]


def resources_from_flags(opts: dict) -> dict:
    for flag in ("l3_cache_schema", "mem_bw_schema"):
        if opts.get(flag) is not None:
            raise MinirunError(f"--{flag.replace('_', '-')}: Intel RDT (linux.intelRdt) is not "
                               "supported by minirun")
    res: dict = {}
    mem = {k: parse_bytes(opts[f], "--" + f.replace("_", "-")) for f, k in (
        ("memory", "limit"), ("memory_reservation", "reservation"), ("memory_swap", "swap"))
        if opts.get(f) is not None}
    if mem:
        res["memory"] = mem
    cpu: dict = {}
    for flag, key in (("cpu_quota", "quota"), ("cpu_period", "period"),
                      ("cpu_share", "shares"), ("cpu_rt_period", "realtimePeriod"),
                      ("cpu_rt_runtime", "realtimeRuntime")):
        if opts.get(flag) is not None:
            cpu[key] = _int(opts[flag], flag)
    for flag, key in (("cpuset_cpus", "cpus"), ("cpuset_mems", "mems")):
        if opts.get(flag) is not None:
            cpu[key] = opts[flag]
    if cpu:
        res["cpu"] = cpu
    if opts.get("pids_limit") is not None:
        res["pids"] = {"limit": _int(opts["pids_limit"], "pids_limit")}
    if opts.get("blkio_weight") is not None:
        res["blockIO"] = {"weight": _int(opts["blkio_weight"], "blkio_weight")}
    return res


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise MinirunError(f"--{flag.replace('_', '-')} {text!r}: expected an integer") from None


def v1_of(st: dict):
    """The v1 directories recorded in a container's state, or None."""
    rec = (st.get("cgroup") or {}).get("v1")
    if not rec:
        return None
    from minirun.cgroups import v1

    cgs = v1.V1Cgroups(dict(rec))
    cgs.made = list((st.get("cgroup") or {}).get("v1_made") or [])
    return cgs
