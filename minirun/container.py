"""The container state machine: create, start, run, state, kill, delete, list.

    creating --create--> created --start--> running --(process exits)--> stopped
                                                           delete: gone

`state.json` records what minirun did (created, started); whether the init is still
alive is read from /proc every time, with its start time guarding against pid reuse.
"""

import errno
import os
from _collections_abc import Callable  # collections.abc without collections (1.5 ms)

from minirun import OCI_VERSION, config, container_cgroup, syscalls, trace, warmup
from minirun.errors import ConfigError, MinirunError, SyscallError
from minirun.launch import SetupSession, log_step, wait_gone
from minirun.lite import signal, socket
from minirun.log import log
from minirun.state import (
    EXEC_SOCK,
    ContainerDir,
    Leftover,
    NotFound,
    Store,
    Unreadable,
    process_start_time,
)
from minirun.state import rfc3339_now as now
from minirun.steps import Tracer

STOP_TIMEOUT = 10.0  # seconds to wait for a SIGKILLed init to go


# ---------------------------------------------------------------- status

def status(st: dict) -> str:
    """The container's status now: what was recorded, unless its init is gone."""
    pid = st.get("pid") or 0
    if pid <= 0:
        return "stopped" if st.get("status") != "creating" else "creating"
    if process_start_time(pid) != st.get("pid_start"):
        return "stopped"
    if st["status"] in ("created", "running") and container_cgroup.freeze_requested(st):
        return "paused"
    return st["status"]


def oci_state(st: dict) -> dict:
    """The state JSON of the OCI runtime spec (plus runc's rootfs/created/owner)."""
    current = status(st)
    out = {
        "ociVersion": OCI_VERSION,
        "id": st["id"],
        "pid": st["pid"] if current != "stopped" else 0,
        "status": current,
        "bundle": st["bundle"],
        "rootfs": st["rootfs"],
        "created": st["created"],
        "owner": st.get("owner", ""),
    }
    if st.get("annotations"):
        out["annotations"] = st["annotations"]
    address = (st.get("network") or {}).get("address")
    if address and (st.get("network") or {}).get("host_veth"):
        out.setdefault("annotations", {})
        out["annotations"] = {**out["annotations"], "org.minirun.network.address": address}
    return out


# ---------------------------------------------------------------- create

def create(store: Store, cid: str, bundle: str, opts: dict) -> int:
    """Set the container up and leave its init waiting for `start`; returns its pid."""
    config.check_id(cid)
    warmup.start(["create"])  # started already when run as the `minirun` program
    try:
        return _create(store, cid, bundle, opts)
    finally:
        warmup.reap()


def _create(store: Store, cid: str, bundle: str, opts: dict) -> int:
    bundle = os.path.abspath(bundle)
    with trace.Span("load and validate config.json"):
        cfg = config.load(bundle)
    rootfs = _rootfs_path(cfg, bundle)
    net = _network_request(cfg, opts)
    if int(opts.get("preserve_fds") or 0) < 0:
        raise MinirunError("--preserve-fds must not be negative")
    console = _console_for(cfg["process"], opts)
    try:
        cdir = store.claim(cid)
    except BaseException:
        if console is not None:
            console.close()
        raise
    session = SetupSession()
    cgroup = None
    try:
        st = {"id": cid, "status": "creating", "pid": 0, "bundle": bundle, "rootfs": rootfs,
              "created": now(), "owner": "", "annotations": cfg.get("annotations") or {}}
        cdir.write(st)
        cdir.save_config(cfg)
        def intent(rec: dict) -> None:
            st["cgroup"] = rec
            cdir.write(st)

        def make_cgroup() -> container_cgroup.Prepared | None:
            """While the set-up processes work (they ask for it when they need it)."""
            nonlocal cgroup
            with trace.Span("cgroup: create and apply limits"):
                cgroup = container_cgroup.prepare(cid, cfg["linux"], intent)
            if cgroup is not None:
                st["cgroup"] = cgroup.record()
            cdir.write(st)
            return cgroup

        bridge = _BridgeSetUp(store.root, cdir, st, net) if net is not None else None
        with trace.Span("set-up processes (until the init is ready)"):
            pid = _launch(cdir, cid, cfg, bundle, rootfs, opts, session, console, make_cgroup,
                          bridge)
        st.update(status="created", pid=pid, pid_start=process_start_time(pid))
        cdir.write(st)
        if opts.get("pid_file"):
            _write_pid_file(opts["pid_file"], pid)
        return pid
    except BaseException as e:
        session.abort()
        if cgroup is not None and not cgroup.shared:
            cgroup.cg.destroy()
            if cgroup.v1 is not None:
                cgroup.v1.destroy()
        if net is not None:
            from minirun import network

            network.abandon()  # its helper, at work or not yet told
        _teardown_network(store, st)
        cdir.remove()
        if type(e).__name__ == "HookError":
            # A failed prestart/createRuntime/createContainer hook: the container is
            # stopped, and the lifecycle goes on with poststop (runtime spec).
            _poststop(cfg, st)
        raise
    finally:
        session.close()
        cdir.close()
        if console is not None:
            console.close()
        if cgroup is not None:
            cgroup.close_fds()


class _BridgeSetUp:
    """--network bridge in `create`: the network helper (network/helper.py) is handed
    the init's pid as soon as the set-up process tells it, and works while the init
    builds its root filesystem; the init asks for the result ("network") before its
    hooks and sysctls, as in an engine's network namespace, made before the runtime
    runs. The record goes to state.json with the rest."""

    def __init__(self, root: str, cdir: ContainerDir, st: dict, req) -> None:
        self.root, self.cdir, self.st, self.req = root, cdir, st, req

    def begin(self, pid: int) -> None:
        from minirun import network

        self.st["network"] = self.req.to_dict()  # what to tear down if create dies now
        self.cdir.write(self.st)
        network.begin(self.root, self.st["id"], pid, self.req)

    def finish(self, pid: int) -> None:
        from minirun import network

        with trace.Span("network"):
            self.st["network"] = network.setup(self.root, self.st["id"], pid, self.req)


def _network_request(cfg: dict, opts: dict):
    """--network MODE (or the org.minirun.network annotation): `none` (runc's
    behaviour), `bridge`, or the path of a network namespace to join."""
    mode = opts.get("network") or ""
    if mode.startswith("/"):
        if not os.path.exists(mode):
            raise MinirunError(f"--network {mode}: no such network namespace")
        spaces = [ns for ns in cfg["linux"].setdefault("namespaces", [])
                  if ns["type"] != "network"]
        cfg["linux"]["namespaces"] = [*spaces, {"type": "network", "path": mode}]
        return None
    flags = {k: opts.get(k) for k in ("network", "publish", "subnet", "bridge", "ip")}
    annotations = cfg.get("annotations") or {}
    if not any(flags.values()) and not any(k.startswith("org.minirun.network")
                                           for k in annotations):
        return None  # the default: not even the network package is imported
    if os.geteuid() != 0 and mode != "none":
        raise MinirunError(f"--network {mode or 'bridge'}: needs root (a veth pair on the "
                           "host's bridge, NAT rules); a container of a user without root "
                           "uses the config's namespaces: the host's network, or its own "
                           "with only lo")
    from minirun import network

    req = network.request_from(flags, annotations)
    if req is not None and not any(ns["type"] == "network" and not ns.get("path")
                                   for ns in cfg["linux"].get("namespaces") or []):
        raise MinirunError("--network bridge needs a new network namespace "
                           "(linux.namespaces has none, or joins one by path)")
    if req is not None:
        network.prepare(req)  # its imports overlap the container's set-up (issue 11)
    return req


def _teardown_network(store: Store, st: dict) -> None:
    if "network" not in st:
        return
    from minirun import network

    try:
        network.teardown(store.root, st["id"], st["network"])
    except MinirunError as e:
        log.warn(f"container {st['id']!r}: network teardown: {e}")


def _console_for(proc: dict, opts: dict) -> socket.socket | None:
    """Where the container's terminal goes: the --console-socket, or the runtime's own
    end of a socket pair when it relays the terminal itself (foreground run/exec)."""
    internal = opts.get("console_peer")
    path = opts.get("console_socket")
    if not proc.get("terminal"):
        if path:
            raise MinirunError("--console-socket was given but process.terminal is false")
        return None
    if internal is not None:
        return internal
    if not path:
        raise ConfigError("process.terminal", "true, but there is no --console-socket to "
                          "hand the terminal to (needed unless `run` stays in the foreground)")
    from minirun.terminal import connect_console_socket

    return connect_console_socket(path)


def _rootfs_path(cfg: dict, bundle: str) -> str:
    path = os.path.join(bundle, cfg["root"]["path"])
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        what = "does not exist" if not os.path.exists(real) else "is not a directory"
        raise ConfigError("root.path", f"{path} {what}")
    return real


def _launch(cdir: ContainerDir, cid: str, cfg: dict, bundle: str, rootfs: str,
            opts: dict, session: SetupSession, console: socket.socket | None,
            make_cgroup: Callable[[], container_cgroup.Prepared | None],
            bridge: "_BridgeSetUp | None") -> int:
    """Fork the set-up process, make the container's cgroup meanwhile, and serve the
    set-up processes until the init is ready for `start`; with a bridge, set up the
    network while the init builds its root filesystem."""
    from minirun.linux import init, namespaces
    from minirun.linux.rootfs import open_bind_sources_in

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # exec.sock 0600 whatever the caller's umask (as runc)
    try:
        listener.bind(_sock_path(cdir))
    finally:
        os.umask(old_umask)
    listener.listen(1)
    launch = init.Launch(cid, cfg, bundle, rootfs, listener, opts, _steps_wanted())
    launch.console = console
    launch.await_network = bridge is not None
    # The state lock must not outlive `create` in the container's processes.
    child = session.fork(lambda sock, done: init.setup_process(launch, init.Channel(sock, done)),
                         close=[cdir.fd])
    listener.close()
    cgroup = make_cgroup()
    tracer = Tracer(log_step)
    linux = cfg["linux"]
    short_state = {"id": cid, "bundle": bundle, "annotations": cfg.get("annotations")}
    handlers = {
        "userns": lambda _: namespaces.write_id_maps(child, linux, tracer),
        "bind-sources": lambda _: open_bind_sources_in(child, cfg, bundle),
        "timens": lambda _: namespaces.write_time_offsets(child, linux["timeOffsets"], tracer),
        "hooks": lambda _: _create_hooks(cfg, short_state, session.target, tracer),
        "seccomp-notify": lambda m: forward_notify_fd(
            cfg, hooks_state(short_state, "creating", session.target), m["fd"]),
        "cgroup-info": lambda m: (cgroup.view_reply(bool(m.get("fds"))) if cgroup is not None
                                  else {"none": True, "own_dir": container_cgroup.own_dir()}),
        # A sealed init (linux/sealed.py) holds no cgroup fd: we move it.
        "cgroup": lambda _: cgroup.join_all(session.target_pid),
    }
    if bridge is not None:
        handlers["pid"] = lambda m: bridge.begin(m["pid"])
        handlers["network"] = lambda _: bridge.finish(session.target_pid)
    with trace.Span("set-up processes, once the cgroup is made"):
        if not session.listen("ready", handlers):
            raise MinirunError("the container's set-up processes exited without a word")
    session.release_setup_process()
    return session.target_pid


def _steps_wanted() -> bool:
    """The set-up processes report their steps for --debug and for --trace."""
    from minirun import trace

    return log.debug_enabled or trace.ACTIVE is not None


def _create_hooks(cfg: dict, st: dict, pid: int, tracer: Tracer) -> dict:
    """prestart and createRuntime hooks, in the runtime's namespaces; the init then
    runs createContainer (and later startContainer) with the state we send back."""
    from minirun import hooks

    state = hooks.state_for(st, "creating", pid)
    for kind in ("prestart", "createRuntime"):
        with tracer.step("hooks", kind):
            hooks.run(cfg, kind, state)
    return {"state": state}


def hooks_state(st: dict, status_: str, pid: int | None = None) -> dict:
    from minirun.hooks import state_for

    return state_for(st, status_, pid)


def forward_notify_fd(cfg: dict, state: dict, fd: int, process_pid: int | None = None) -> None:
    """Pass the seccomp notify fd to linux.seccomp.listenerPath with the container's
    state (and, for `exec`, the pid of the process the filter belongs to)."""
    from minirun.linux import seccomp

    sc = cfg["linux"]["seccomp"]
    try:
        seccomp.send_to_listener(sc["listenerPath"], fd, state, sc.get("listenerMetadata", ""),
                                 pid=process_pid)
    finally:
        os.close(fd)


def _sock_path(cdir: ContainerDir) -> str:
    """Address exec.sock through the directory's fd: unix socket paths are limited to
    108 bytes, and --root paths need not be."""
    return f"/proc/self/fd/{cdir.fd}/{EXEC_SOCK}"


def _write_pid_file(path: str, pid: int) -> None:
    """The bare pid, no newline (engines parse it with strconv.Atoi), atomically."""
    path = os.path.abspath(path)
    check_pid_file(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.rename(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise MinirunError(f"--pid-file {path}: {os.strerror(e.errno or 0)}") from None


def check_pid_file(path: str) -> None:
    """Before anything is created: the pid file's directory must exist, and the path
    must not be a directory (`--pid-file /`)."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise MinirunError(f"--pid-file {path}: is a directory")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise MinirunError(f"--pid-file {path}: directory {parent} does not exist")


# ---------------------------------------------------------------- start

def start(store: Store, cid: str) -> None:
    cdir = store.open(cid)
    try:
        st = cdir.read()
        current = status(st)
        if current != "created":
            raise MinirunError(f"cannot start container {cid!r}: it is {current}, "
                               "not created")
        # Write-ahead: "running" is on disk before the process runs, so a --root that
        # cannot be written (full, read-only) stops `start` before anything happens.
        st["status"] = "running"
        cdir.write(st)
        try:
            _release_init(cdir, st)
        except MinirunError:
            # startContainer hooks or exec failed: the init is gone; go on with poststop
            # (once: `delete` will not run them again).
            _poststop(cdir.load_config(), st)
            st["poststop_done"] = True
            cdir.write(st)
            raise
        cfg = cdir.load_config()
        if (cfg.get("hooks") or {}).get("poststart"):
            from minirun import hooks

            hooks.run_warn(cfg, "poststart", hooks.state_for(st, "running"))
    finally:
        cdir.close()


def _release_init(cdir: ContainerDir, st: dict) -> None:
    """Connect to the waiting init: it execs, and its end of the socket closes on exec.
    Anything it sends instead is the reason exec failed (or, first, the seccomp notify
    fd to pass on to the agent)."""
    from minirun.linux.init import NOTIFY_MARK

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(_sock_path(cdir))
        except OSError as e:
            raise MinirunError(f"cannot reach the container's init on {cdir.path}/"
                               f"{EXEC_SOCK}: {e.strerror}") from None
        chunks = []
        while True:
            data, fds, _, _ = socket.recv_fds(s, 4096, 1)
            if fds:
                forward_notify_fd(cdir.load_config(), hooks_state(st, "creating"), fds[0])
                data = data.replace(NOTIFY_MARK, b"")
            if not data and not fds:
                break
            chunks.append(data)
    try:
        os.unlink(os.path.join(cdir.path, EXEC_SOCK))
    except FileNotFoundError:
        pass
    if any(chunks):
        raise MinirunError(b"".join(chunks).decode(errors="replace"))


# ---------------------------------------------------------------- run

def run(store: Store, cid: str, bundle: str, opts: dict) -> int:
    """create + start; unless detached, wait and return the exit status (128+signal).
    With process.terminal and no --console-socket, relay the terminal ourselves."""
    detach = opts.get("detach")
    relay_end = None
    if not detach:
        # The init re-parents to us when the set-up process exits: we can wait for it.
        syscalls.set_child_subreaper()
        if not opts.get("console_socket"):
            relay_end, opts["console_peer"] = socket.socketpair(socket.AF_UNIX,
                                                                socket.SOCK_STREAM)
    try:
        pid = create(store, cid, bundle, opts)
        master = _terminal_master(relay_end)
        try:
            with trace.Span("start"):
                start(store, cid)
        except BaseException:
            _force_delete(store, cid)
            raise
    finally:
        for sock in (relay_end, opts.pop("console_peer", None)):
            if sock is not None:
                sock.close()
    if detach:
        return 0
    with trace.Span("the container's process runs"):
        code = wait_process(pid, master)
    if not opts.get("keep"):  # run --keep: the stopped container stays for `state`
        with trace.Span("delete"):
            _force_delete(store, cid)
    return code


def _terminal_master(relay_end: socket.socket | None) -> int | None:
    """The pty master the init sent us, if it had a terminal to send."""
    if relay_end is None:
        return None
    relay_end.setblocking(False)
    try:
        relay_end.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return None  # no terminal: terminal.py (termios) not even imported
    from minirun.terminal import copy_winsize, receive_master

    try:
        master = receive_master(relay_end)
    except (BlockingIOError, MinirunError):
        return None
    copy_winsize(0, master)  # before `start`: the process may ask for its size at once
    return master


def wait_process(pid: int, master: int | None) -> int:
    """Forward signals (or relay the terminal) until `pid` exits; its exit status."""
    import gc

    gc.enable()  # the program turned it off for its start (entry.py); this may take days
    forward = _forward_signals(pid)
    try:
        if master is not None:
            from minirun.terminal import Relay

            with Relay(master) as relay:
                relay.pump()
        return _wait_for(pid)
    finally:
        for sig, old in forward.items():
            signal.signal(sig, old)


FORWARDED = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH",
             "SIGCONT", "SIGALRM", "SIGPIPE")


def _forward_signals(pid: int) -> dict:
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    old = {}
    for name in FORWARDED:
        sig = getattr(signal, name)
        old[sig] = signal.signal(sig, forward)
    return old


def _wait_for(pid: int) -> int:
    while True:
        try:
            got, status_ = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if got == pid:
            if os.WIFSIGNALED(status_):
                return 128 + os.WTERMSIG(status_)
            return os.WEXITSTATUS(status_)


def _force_delete(store: Store, cid: str) -> None:
    try:
        delete(store, cid, force=True)
    except MinirunError as e:
        log.warn(f"cleaning up container {cid!r}: {e}")


# ---------------------------------------------------------------- state, list

def state(store: Store, cid: str) -> dict:
    cdir = store.open(cid, exclusive=False)
    try:
        return oci_state(cdir.read())
    finally:
        cdir.close()


def list_all(store: Store) -> list[dict]:
    """Every container's state; a leftover of a killed create or a corrupted state.json
    is listed too (status "unknown"), with a warning, not hidden."""
    out = []
    for cid in store.ids():
        try:
            out.append(state(store, cid))
        except (Leftover, Unreadable) as e:
            log.warn(str(e))
            out.append({"ociVersion": OCI_VERSION, "id": cid, "pid": 0, "status": "unknown",
                        "bundle": "", "rootfs": "", "created": "", "owner": ""})
        except NotFound:
            continue  # deleted while we listed
    return out


# ---------------------------------------------------------------- kill

def kill(store: Store, cid: str, sig: int, all_processes: bool) -> None:
    cdir = store.open(cid, exclusive=False)
    try:
        st = cdir.read()
        alive = status(st) in ("created", "running", "paused")
        cg = container_cgroup.of(st)
        if all_processes and cg is not None and cg.exists():
            # The init is in the cgroup too: one kill for all (frozen while signalled,
            # so no process sees another die first). Nothing left is not an error.
            cg.kill_all(sig)
            return
        pidfd = _pidfd_of(st) if alive else None
        if pidfd is None:
            if all_processes:
                return  # as runc: nothing left to signal is not an error for --all
            raise MinirunError(f"cannot kill container {cid!r}: it is stopped")
        try:
            syscalls.pidfd_send_signal(pidfd, sig)
        except SyscallError as e:
            if e.errno != errno.ESRCH:
                raise
            raise MinirunError(f"cannot kill container {cid!r}: it is stopped") from None
        finally:
            os.close(pidfd)
    finally:
        cdir.close()


def _pidfd_of(st: dict) -> int | None:
    """A pidfd on the init, or None if that process (pid + start time) is gone."""
    try:
        pidfd = syscalls.pidfd_open(st["pid"])
    except MinirunError:
        return None
    if process_start_time(st["pid"]) != st.get("pid_start"):
        os.close(pidfd)
        return None
    return pidfd


def members(st: dict) -> list[int]:
    """The container's processes: its cgroup's (every container has one), paused and
    stopped containers included (leftovers outlive an init without a pid namespace)."""
    cg = container_cgroup.of(st)
    pids = set(cg.pids()) if cg is not None and cg.exists() else set()
    if status(st) != "stopped":
        pids.add(st["pid"])
    return sorted(pids)


def process_info(pid: int) -> dict | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").strip().decode(errors="replace")
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    name = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode(errors="replace")
    return {"ppid": int(fields[1]), "state": fields[0].decode(), "uid": uid,
            "cmd": cmd or f"[{name}]"}


def processes(store: Store, cid: str) -> list[int]:
    cdir = store.open(cid, exclusive=False)
    try:
        st = cdir.read()
    finally:
        cdir.close()
    return members(st)


# ---------------------------------------------------------------- delete

def delete(store: Store, cid: str, force: bool) -> None:
    try:
        cdir = store.open(cid)
    except Leftover:
        if not force:
            raise
        store.remove_leftover(cid)
        return
    except NotFound:
        if force:
            return
        raise
    try:
        try:
            st = cdir.read()
        except Unreadable:
            if not force:
                raise
            _delete_unreadable(cdir, cid)
            return
        current = status(st)
        if current in ("running", "paused") and not force:
            raise MinirunError(f"cannot delete container {cid!r}: it is {current} "
                               "(stop it first, or use --force)")
        if current != "stopped":
            _kill_and_wait(st)
        _remove_cgroup(st)
        _teardown_network(store, st)
        cfg = _config_or_none(cdir)
        cdir.remove()
    finally:
        cdir.close()
    if cfg and not st.get("poststop_done"):
        _poststop(cfg, st)


def _delete_unreadable(cdir: ContainerDir, cid: str) -> None:
    """delete --force of a container whose state.json is corrupted: its processes and
    cgroup are found from the id and the saved config (the layout create uses)."""
    from minirun import cgroups

    cfg = _config_or_none(cdir) or {}
    linux = cfg.get("linux") or {}
    try:
        path = cgroups.resolve_path(linux.get("cgroupsPath"), cid)
        cg = cgroups.Cgroup(container_cgroup.v2_mount(), path)
    except MinirunError:
        cg = None
    if cg is not None and cg.exists():
        cg.kill_all(signal.SIGKILL)
        cg.destroy()
    cdir.remove()
    log.warn(f"container {cid!r}: its state was corrupted; removed by the id's layout")


def _poststop(cfg: dict, st: dict) -> None:
    if (cfg.get("hooks") or {}).get("poststop"):
        from minirun import hooks

        hooks.run_warn(cfg, "poststop", hooks.state_for(st, "stopped", 0))


def _remove_cgroup(st: dict) -> None:
    """Whatever is left in the cgroup (a stopped container without a pid namespace can
    leave processes) is killed, then the cgroup goes."""
    cg = container_cgroup.of(st)
    if (st.get("cgroup") or {}).get("shared"):
        return  # it held other processes before the container: theirs, left alone
    if cg is not None and cg.exists():
        if cg.pids():
            cg.kill_all(signal.SIGKILL)
        cg.destroy()
    v1cg = container_cgroup.v1_of(st)
    if v1cg is not None:
        v1cg.destroy()  # its processes are gone with the cgroup2 ones


def _config_or_none(cdir: ContainerDir) -> dict | None:
    try:
        return cdir.load_config()
    except (OSError, ValueError):
        return None  # a create that died before saving it


def _kill_and_wait(st: dict) -> None:
    pidfd = _pidfd_of(st)
    if pidfd is None:
        return
    try:
        cg = container_cgroup.of(st)
        if cg is not None and cg.exists() and not (st.get("cgroup") or {}).get("shared"):
            cg.kill_all(signal.SIGKILL)  # a frozen cgroup's processes die too
        syscalls.pidfd_send_signal(pidfd, signal.SIGKILL)
        wait_gone(st["pid"], pidfd, STOP_TIMEOUT)
    finally:
        os.close(pidfd)
