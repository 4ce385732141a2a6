"""The container's side of `create`: two forked processes that build the container.

    minirun create (runtime)                  stays in the host's namespaces
      └─ set-up process (fork)                joins/unshares namespaces, forks init
           └─ container init (fork)           pid 1 of a new pid namespace: mounts,
                                              pivot_root, hostname, user, caps...,
                                              then waits on exec.sock for `start`

Both report to the runtime over one SOCK_SEQPACKET socket (JSON messages): each set-up
step, "userns"/"timens" (please write my id maps / time offsets), "network" (with
--network bridge: is it set up? answered once it is), "hooks" (run prestart and
createRuntime), "seccomp-notify" (an fd for the agent), "cgroup-info"
(the container's cgroup and its cgroup.procs fds, which the runtime makes while we
work), "pid" (the init's pid), "ready", or "error". The set-up process gets the
runtime's "done" on a pipe of its own, and the init starts only once the runtime knows
its pid (fork_gated), so no message is read by the wrong process. Nothing here
returns: each process ends in execve or os._exit. `exec` uses the same machinery
(exec_setup_process, at the end).
"""

import os
import select
import time

from minirun import syscalls, wire
from minirun.cgroups.cgroup import join as cgroup_join
from minirun.container_cgroup import View  # here, not lazily: used after pivot_root
from minirun.linux import namespaces, process, rootfs, sealed
from minirun.lite import json, signal, socket
from minirun.steps import Tracer


class Channel:
    """The set-up side of the sync socket."""

    def __init__(self, sock: socket.socket, done_fd: int = -1) -> None:
        self.sock = sock
        self.done_fd = done_fd  # the runtime's "done" for the set-up process alone
        self.reader = wire.Reader(sock)

    def send(self, msg: dict) -> None:
        wire.send(self.sock, json.dumps(msg).encode())

    def send_fd(self, msg: dict, fd: int) -> None:
        wire.send(self.sock, json.dumps(msg).encode(), [fd])

    def recv(self) -> dict:
        return self.recv_fds()[0]

    def recv_fds(self) -> tuple[dict, list[int]]:
        got = self.reader.recv()
        if got is None:
            os._exit(1)  # the runtime is gone: nothing to report to
        return json.loads(got[0]), got[1]

    def step(self, name: str, target: str, took: float, err: str | None) -> None:
        self.send({"type": "step", "name": name, "target": target, "took": took,
                   "err": err, "pid": os.getpid(), "ts": time.perf_counter() - took})

    def fail(self, exc: BaseException, debug: bool) -> None:
        msg = {"type": "error", "msg": str(exc) or type(exc).__name__,
               "kind": type(exc).__name__}
        if debug:
            import traceback  # loaded before pivot_root (setup_process): none after it

            msg["trace"] = "".join(traceback.format_exception(exc))
        try:
            self.send(msg)
        except OSError:
            pass


class Launch:
    """Everything the set-up processes need, prepared by the runtime before fork."""

    def __init__(self, cid: str, cfg: dict, bundle: str, rootfs_path: str,
                 listener: socket.socket, opts: dict, debug: bool) -> None:
        self.id = cid
        self.cfg = cfg
        self.bundle = bundle
        self.rootfs = rootfs_path
        self.listener = listener
        self.no_pivot = bool(opts.get("no_pivot"))
        self.preserve_fds = int(opts.get("preserve_fds") or 0)
        self.no_new_keyring = bool(opts.get("no_new_keyring"))
        self.debug = debug
        self.await_network = False  # a bridge: the runtime's helper sets it up meanwhile
        self.console: socket.socket | None = None
        self.cgroup = None  # container_cgroup.View, once asked for (cgroup_view)
        self.cgroup_known = False
        # mounts[i] -> an O_PATH fd on its bind source, opened by the runtime (see above)
        self.bind_fds: dict[int, int] = {}
        self.bind_sources = any(m.get("type") == "bind" or {"bind", "rbind"} & set(
            m.get("options") or []) for m in cfg.get("mounts") or [])
        self.host_euid = os.geteuid()  # the runtime's (before any user namespace)
        self.own_cgroup = ""  # the runtime's cgroup dir, when the container has none
        self.linux = cfg.get("linux") or {}
        self.plan = namespaces.Plan(self.linux)
        self.seccomp = compile_seccomp(self.linux)
        self.sealed = sealed.create_needs_seal(self.linux)
        self.hooks = {k for k, v in (cfg.get("hooks") or {}).items() if v}
        if self.hooks:
            from minirun import hooks  # noqa: F401 - loaded now: no Python library later
        if cfg["process"].get("terminal"):
            from minirun import terminal  # noqa: F401 - as hooks (termios costs 0.6 ms)

    def cgroup_view(self, chan: Channel, fds: bool = True):
        """The container's cgroup (None: it has none), asked of the runtime once; it
        answers when the cgroup is made. `fds`: its cgroup.procs fds too (never to a
        sealed init: linux/sealed.py)."""
        if not self.cgroup_known:
            chan.send({"type": "cgroup-info", "fds": fds})
            reply, got = chan.recv_fds()
            self.cgroup = None if reply.get("none") else View(reply, got)
            self.own_cgroup = reply.get("own_dir", "")
            self.cgroup_known = True
        return self.cgroup


def setup_process(launch: Launch, chan: Channel) -> None:
    """The intermediate process: namespaces, then fork the init into them; sealed
    first when asked (linux/sealed.py)."""
    try:
        if launch.debug:
            import traceback  # noqa: F401 - needed after pivot_root, where it cannot load
        syscalls.set_pdeathsig(signal.SIGKILL)
        # Non-dumpable before entering any of the container's namespaces (CVE-2019-5736).
        syscalls.set_dumpable(False)
        if launch.sealed:
            _reexec_sealed(launch, chan)
    except BaseException as e:  # noqa: BLE001 - everything must reach the runtime
        chan.fail(e, launch.debug)
        os._exit(1)
    _setup_namespaces(launch, chan)


def _reexec_sealed(launch: Launch, chan: Channel) -> None:
    import time

    host_mnt = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    # (no cgroup fd yet: the set-up processes ask for them later, see cgroup_view)
    keep = [chan.done_fd, host_mnt, *range(3, 3 + launch.preserve_fds)]
    sealed.reexec(_setup_sealed, (launch, chan, host_mnt, time.monotonic()), keep)


def _setup_sealed(launch: Launch, chan: Channel, host_mnt: int, sealed_at: float) -> None:
    """setup_process, re-executed from read-only mounts."""
    try:
        if launch.debug:
            import time
            import traceback  # noqa: F401 - needed after pivot_root, where it cannot load

            chan.step("seal", "re-exec on read-only mounts", time.monotonic() - sealed_at, None)
        # Back to the runtime's mount namespace, which the container's is copied from;
        # what the kernel mapped stays mapped from the read-only view.
        syscalls.setns(host_mnt, syscalls.NS_FLAGS["mount"], "/proc/self/ns/mnt")
        os.close(host_mnt)
        if launch.hooks:
            from minirun import hooks  # noqa: F401 - loaded now: no Python library later
    except BaseException as e:  # noqa: BLE001 - everything must reach the runtime
        chan.fail(e, launch.debug)
        os._exit(1)
    _setup_namespaces(launch, chan)


def _setup_namespaces(launch: Launch, chan: Channel) -> None:
    tracer = Tracer(chan.step if launch.debug else None)
    try:
        plan = launch.plan
        namespaces.join(namespaces.open_joins(plan, tracer), tracer)
        if plan.has_new("user"):
            namespaces.unshare_user(tracer)
            # A runtime without root can open our /proc/PID/uid_map only while we are
            # dumpable (as runc's nsexec): only for that moment, and before we have
            # joined anything of the container's but the new, empty user namespace.
            rootless = launch.host_euid != 0
            if rootless:
                syscalls.set_dumpable(True)
            chan.send({"type": "userns"})
            chan.recv()
            if rootless:
                syscalls.set_dumpable(False)
            namespaces.become_root_in_userns(launch.linux)
        _unshare_rest(launch, chan, tracer)
        if launch.sealed:
            _drop_cgroup_fds(launch)
        if (launch.bind_sources and launch.host_euid == 0 and plan.has_new("user")
                and plan.has_new("mount")):
            # Our mapped root may not reach them: the runtime opens them from outside,
            # in our new mount namespace (runc's order), and hands us the fds.
            chan.send({"type": "bind-sources"})
            reply, fds = chan.recv_fds()
            launch.bind_fds = dict(zip(reply["indexes"], fds, strict=True))
        if plan.has_new("time") and launch.linux.get("timeOffsets"):
            # Written by the runtime: we are non-dumpable, so our /proc files are root's
            # (the host's root) and a user namespace's root cannot write them.
            chan.send({"type": "timens"})
            chan.recv()
        pid = fork_gated(lambda: init_process(launch, chan, os.getppid()), chan)
        _wait_done_or_init_death(chan, pid)
    except BaseException as e:  # noqa: BLE001 - everything must reach the runtime
        chan.fail(e, launch.debug)
        os._exit(1)
    os._exit(0)


def _unshare_rest(launch: Launch, chan: Channel, tracer: Tracer) -> None:
    """unshare(2) the new namespaces; a new cgroup namespace is rooted at the cgroup of
    its creator, so step into the container's cgroup for that moment only (our memory
    is not to be charged to it)."""
    new_ns = launch.plan.has_new("cgroup")
    cg = launch.cgroup_view(chan) if new_ns else None
    rooted = cg is not None and cg.own_fd is not None
    if cg is not None and not cg.unified:
        # cgroup v1 only: into every hierarchy now, for good (runc's v1 order), so that
        # the namespace is rooted at the container's cgroups
        with tracer.step("cgroup", f"join {cg.path} (root of the cgroup namespace)"):
            cg.join_all()
    if rooted:
        with tracer.step("cgroup", f"{cg.path} (root of the cgroup namespace)"):
            cgroup_join(cg.procs_fd)
    namespaces.unshare_rest(launch.plan, tracer)
    if rooted:
        with tracer.step("cgroup", "back to the runtime's cgroup"):
            cgroup_join(cg.own_fd)


def fork_gated(child, chan: Channel) -> int:
    """Fork `child`, tell the runtime its pid, then let it run: the runtime must know
    the pid before the child's first message (both write to one socket)."""
    gate_r, gate_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(gate_w)
        os.read(gate_r, 1)
        os.close(gate_r)
        child()
        os._exit(1)
    os.close(gate_r)
    chan.send({"type": "pid", "pid": pid})
    os.write(gate_w, b"g")
    os.close(gate_w)
    return pid


def _wait_done_or_init_death(chan: Channel, pid: int) -> None:
    """Stay alive (the init's parent-death signal is tied to us) until the runtime says
    done on our own pipe; report if the init dies without a word."""
    pidfd = syscalls.pidfd_open(pid)
    poller = select.poll()
    poller.register(chan.done_fd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    ready = {fd for fd, _ in poller.poll()}
    if chan.done_fd in ready:
        return
    _, status = os.waitpid(pid, 0)
    chan.send({"type": "error", "msg": "container init exited during set-up "
               f"({_describe_status(status)})"})
    os._exit(1)


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def init_process(launch: Launch, chan: Channel, parent: int) -> None:
    """The container's init: build its world, wait for `start`, exec the process."""
    tracer = Tracer(chan.step if launch.debug else None)
    cfg, proc, linux, plan = launch.cfg, launch.cfg["process"], launch.linux, launch.plan
    conn = None
    try:
        syscalls.set_pdeathsig(signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)
        os.setsid()
        if plan.has_new("network"):
            with tracer.step("link-up", "lo"):
                syscalls.link_up("lo")
        in_userns = "user" in plan.new or "user" in plan.join
        root = rootfs.Rootfs(launch.rootfs, tracer, in_userns, plan.has_new("cgroup"), "")
        root.bind_fds = launch.bind_fds
        root.resolve_cgroup = lambda r: _show_cgroup(r, launch, chan)
        root.prepare(cfg, launch.bundle)
        root.make_cwd(proc.get("cwd") or "/")
        if launch.await_network:
            # Set up meanwhile (network/helper.py); ready before the hooks run and the
            # sysctls are written, as an engine's network namespace is.
            chan.send({"type": "network"})
            chan.recv()
        state = _create_hooks(launch, chan, tracer)
        root.pivot(launch.no_pivot)
        root.set_propagation(linux.get("rootfsPropagation"))
        rootfs.write_sysctls(linux.get("sysctl") or {}, tracer)
        rootfs.readonly_paths(linux.get("readonlyPaths") or [], tracer)
        if cfg["root"].get("readonly"):
            rootfs.readonly_root(tracer)
        if proc.get("terminal") and launch.console is not None:
            from minirun import terminal  # loaded by Launch

            with tracer.step("console", "pty (process.terminal)"):
                terminal.setup_console(launch.console, proc.get("consoleSize"), True,
                                       (proc.get("user") or {}).get("uid", 0))
        _set_names(cfg, tracer)
        if not launch.no_new_keyring:
            _new_keyring(launch.id, tracer)
        process.apply_rlimits(proc.get("rlimits") or [], tracer)
        process.apply_oom_score_adj(proc.get("oomScoreAdj"), tracer)
        # runc's order: cwd while still privileged (a user without search permission on
        # it still starts there), every check made and every fd marked close-on-exec
        # before the seccomp filter, which only the user switch and execve follow.
        process.enter_cwd(proc.get("cwd") or "/", tracer)
        env = process.process_env(proc)
        with tracer.step("find-executable", f"{proc['args'][0]} (process.args[0])"):
            path = process.find_executable(proc)
        user = process.UserSwitch(proc, in_userns)  # its Python work, before the join
        cg = launch.cgroup_view(chan, fds=not launch.sealed)
        if cg is not None:
            # Last: what Python allocated before stays charged outside the container
            # (after it only syscalls: each page written is the container's).
            with tracer.step("cgroup", f"join {cg.path}"):
                if launch.sealed:
                    chan.send({"type": "cgroup"})
                    chan.recv()
                else:
                    cg.join_all()
        process.close_fds_for_exec(launch.preserve_fds)
        if launch.seccomp is not None and not proc.get("noNewPrivileges"):
            # Without no_new_privs the kernel wants CAP_SYS_ADMIN: load before dropping it
            # (runc's order); only the user switch follows (and `start`'s handshake).
            _load_seccomp(launch.seccomp, tracer, lambda fd: _notify_via(chan, fd))
        process.switch_user(user, tracer)
        if proc.get("noNewPrivileges"):
            process.set_no_new_privs(tracer)
        syscalls.set_pdeathsig(0)  # the set-up process exits once we are ready
        chan.send({"type": "ready"})
        chan.sock.close()
        tracer.sink = None  # nobody to tell about the steps below
        conn, _ = launch.listener.accept()  # blocks until `minirun start`
        launch.listener.close()
        if launch.seccomp is not None and proc.get("noNewPrivileges"):
            # `start` forwards the notify fd to the agent: create has exited by now.
            _load_seccomp(launch.seccomp, tracer,
                          lambda fd: socket.send_fds(conn, [NOTIFY_MARK], [fd]))
        if "startContainer" in launch.hooks:
            from minirun import hooks

            # after the filter (filtered as the process will be), cwd the container's root
            hooks.run(cfg, "startContainer", {**state, "status": "created"}, cwd="/")
        process.exec_process(path, proc, env)
    except BaseException as e:  # noqa: BLE001
        if conn is None:
            chan.fail(e, launch.debug)
        else:
            try:
                conn.send(f"{e}".encode())
            except OSError:
                pass
    os._exit(1)


def _drop_cgroup_fds(launch: Launch) -> None:
    """A sealed init is seen by the processes of the pid namespace it joins: it gets no
    fd on a host cgroup.procs to reach through /proc/PID/fd (the runtime moves it)."""
    if launch.cgroup is not None:
        launch.cgroup.drop_fds()


def _show_cgroup(root: rootfs.Rootfs, launch: Launch, chan: Channel) -> None:
    """What the container's /sys/fs/cgroup shows (Rootfs asks when it mounts it)."""
    cg = launch.cgroup_view(chan, fds=not launch.sealed)
    if cg is None:
        root.cgroup_dir = launch.own_cgroup
        return
    root.cgroup_dir = cg.dir
    if cg.v1_dirs is not None:
        root.cgroup_v1 = dict(cg.v1_dirs)
        root.cgroup_v2 = cg.unified


NOTIFY_MARK = b"\0seccomp-notify"  # on the exec.sock connection: an fd, not an error


def compile_seccomp(linux: dict):
    """The filter, built in the runtime before fork (None without a profile)."""
    if not linux.get("seccomp"):
        return None
    from minirun.linux import seccomp

    return seccomp.compile_filter(linux["seccomp"])


def _load_seccomp(flt, tracer: Tracer, deliver) -> None:
    from minirun.linux import seccomp

    with tracer.step("seccomp", "load (linux.seccomp)"):
        fd = seccomp.load(flt)
    if fd is not None:
        deliver(fd)
        os.close(fd)


def _notify_via(chan: Channel, fd: int) -> None:
    """Hand the seccomp notify fd to the runtime, which passes it to the agent."""
    chan.send_fd({"type": "seccomp-notify"}, fd)
    chan.recv()


def _create_hooks(launch: Launch, chan: Channel, tracer: Tracer) -> dict:
    """Ask the runtime to run prestart/createRuntime hooks (it answers with the state),
    then run createContainer here, in the container's namespaces, before pivot_root."""
    if not launch.hooks & {"prestart", "createRuntime", "createContainer", "startContainer"}:
        return {}
    chan.send({"type": "hooks"})
    state = chan.recv()["state"]
    if "createContainer" in launch.hooks:
        from minirun import hooks

        with tracer.step("hooks", "createContainer"):
            # in the container's namespaces, cwd at its root (not yet pivoted into)
            hooks.run(launch.cfg, "createContainer", state, cwd=launch.rootfs)
    return state


def _set_names(cfg: dict, tracer: Tracer) -> None:
    if cfg.get("hostname"):
        with tracer.step("sethostname", f"{cfg['hostname']} (hostname)"):
            syscalls.sethostname(cfg["hostname"])
    if cfg.get("domainname"):
        with tracer.step("setdomainname", f"{cfg['domainname']} (domainname)"):
            syscalls.setdomainname(cfg["domainname"])


def _new_keyring(cid: str, tracer: Tracer) -> None:
    with tracer.step("keyring", f"_ses.{cid}"):
        try:
            syscalls.join_session_keyring(f"_ses.{cid}")
        except OSError as e:
            if e.errno != 38:  # ENOSYS: no keyrings in this kernel: fine, as runc
                raise


# ---------------------------------------------------------------- exec

class ExecLaunch:
    """What `minirun exec` needs in its set-up processes."""

    def __init__(self, cid: str, init_pid: int, process_cfg: dict, kinds: list[str],
                 opts: dict, debug: bool) -> None:
        self.id = cid
        self.init_pid = init_pid
        self.proc = process_cfg
        self.kinds = kinds  # the container's namespace types, to join
        self.preserve_fds = int(opts.get("preserve_fds") or 0)
        self.debug = debug
        self.console: socket.socket | None = None
        self.seccomp = None  # the container's filter applies to exec'd processes too
        self.join_cgroup = False  # ask the runtime to move the process into the cgroup
        self.sealed = False  # re-exec from read-only mounts first (linux/sealed.py)
        if process_cfg.get("terminal"):
            from minirun import terminal  # noqa: F401 - loaded now: no Python library later


def exec_setup_process(launch: ExecLaunch, chan: Channel) -> None:
    """Join every namespace of the container's init, then fork the process into them
    (a pid namespace applies to children only); sealed first when asked."""
    try:
        if launch.debug:
            import traceback  # noqa: F401 - cannot be loaded inside the container
        # Non-dumpable before entering any of the container's namespaces (CVE-2019-5736).
        syscalls.set_dumpable(False)
        if launch.sealed:
            import time

            # The --preserve-fds range goes through exec as it is.
            keep = [chan.done_fd, *range(3, 3 + launch.preserve_fds)]
            sealed.reexec(_exec_join_and_fork, (launch, chan, time.monotonic()), keep)
        _exec_join_and_fork(launch, chan, None)
    except BaseException as e:  # noqa: BLE001 - everything must reach the runtime
        chan.fail(e, launch.debug)
        os._exit(1)


def _exec_join_and_fork(launch: ExecLaunch, chan: Channel, sealed_at: float | None) -> None:
    tracer = Tracer(chan.step if launch.debug else None)
    try:
        kinds = launch.kinds
        if sealed_at is not None:
            import time

            if launch.debug:
                import traceback  # noqa: F401 - cannot be loaded inside the container

                chan.step("seal", "re-exec on read-only mounts", time.monotonic() - sealed_at,
                          None)
            # Out of our private read-only view, into the init's (the host's if the
            # container has no mount namespace of its own).
            kinds = [*kinds, "mount"]
        opened = namespaces.open_of_process(launch.init_pid, kinds, tracer)
        namespaces.join(opened, tracer)
        fork_gated(lambda: exec_process_main(launch, chan), chan)
    except BaseException as e:  # noqa: BLE001 - everything must reach the runtime
        chan.fail(e, launch.debug)
        os._exit(1)
    os._exit(0)


def exec_process_main(launch: ExecLaunch, chan: Channel) -> None:
    """The exec'd process: user, capabilities, rlimits, cwd, then execve. Success is
    the sync socket closing on exec; failure is an "error" message."""
    tracer = Tracer(chan.step if launch.debug else None)
    proc = launch.proc
    try:
        if proc.get("terminal") and launch.console is not None:
            from minirun import terminal  # loaded by ExecLaunch

            os.setsid()
            with tracer.step("console", "pty (process.terminal)"):
                terminal.setup_console(launch.console, proc.get("consoleSize"), False,
                                       (proc.get("user") or {}).get("uid", 0))
        process.apply_rlimits(proc.get("rlimits") or [], tracer)
        nnp = proc.get("noNewPrivileges")
        # As the init: cwd while privileged, checks and close-on-exec before the filter.
        process.enter_cwd(proc.get("cwd") or "/", tracer)
        env = process.process_env(proc)
        with tracer.step("find-executable", f"{proc['args'][0]} (process.args[0])"):
            path = process.find_executable(proc)
        user = process.UserSwitch(proc, "user" in launch.kinds)  # before the join, as init
        process.close_fds_for_exec(launch.preserve_fds)
        _exec_join_cgroup(launch, chan)  # before the filter can refuse our messages
        if launch.seccomp is not None and not nnp:
            _load_seccomp(launch.seccomp, tracer, lambda fd: _notify_via(chan, fd))
        process.switch_user(user, tracer)
        if nnp:
            process.set_no_new_privs(tracer)
        if launch.seccomp is not None and nnp:
            _load_seccomp(launch.seccomp, tracer, lambda fd: _notify_via(chan, fd))
        process.exec_process(path, proc, env)
    except BaseException as e:  # noqa: BLE001
        chan.fail(e, launch.debug)
    os._exit(127)


def _exec_join_cgroup(launch: ExecLaunch, chan: Channel) -> None:
    """Into the container's cgroup: late (our memory stays charged outside), and by
    the runtime: an fd on a host cgroup.procs here would be reachable through
    /proc/PID/fd."""
    if launch.join_cgroup:
        chan.send({"type": "cgroup"})
        chan.recv()
        launch.join_cgroup = False
