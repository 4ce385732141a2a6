"""`minirun exec`: run one more process inside a created or running container.

The process comes from `--process FILE` (an OCI `process` object, as engines send it)
or from the command line on top of the container's own `process` (runc's way: its
env, user, capabilities, rlimits... with the flags' args, cwd, env and user). A
set-up process joins every namespace of the container's init, forks the new process
into them, and that process applies user, capabilities, rlimits and no_new_privs and
execs. No fd of the runtime reaches it beyond 0-2 and --preserve-fds.
"""

import os

from minirun import config, container_cgroup, syscalls, warmup
from minirun.cgroups.cgroup import join as cgroup_join
from minirun.container import (
    _pidfd_of,
    _steps_wanted,
    _write_pid_file,
    forward_notify_fd,
    hooks_state,
    status,
    wait_process,
)
from minirun.errors import ConfigError, MinirunError
from minirun.launch import SetupSession, log_step
from minirun.lite import json, socket
from minirun.state import Store


def exec_(store: Store, cid: str, opts: dict, args: list[str]) -> int:
    warmup.start(["exec"])  # started already when run as the `minirun` program
    try:
        return _exec(store, cid, opts, args)
    finally:
        warmup.reap()


def _exec(store: Store, cid: str, opts: dict, args: list[str]) -> int:
    cdir = store.open(cid, exclusive=False)
    try:
        st = cdir.read()
        current = status(st)
        if current == "paused" and not opts.get("ignore_paused"):
            raise MinirunError("cannot exec in a paused container (--ignore-paused lets it "
                               "through: the process starts frozen)")
        if current not in ("created", "running", "paused"):
            raise MinirunError(f"cannot exec in container {cid!r}: it is {current}")
        cfg = cdir.load_config()
    finally:
        cdir.close()
    proc = process_for_exec(cfg["process"], opts, args)
    return _spawn(cid, st, proc, cfg, opts)


def process_for_exec(base: dict, opts: dict, args: list[str]) -> dict:
    if opts.get("process"):
        if args:
            raise MinirunError("exec: give the command either in --process or as arguments, "
                               "not both")
        return _load_process_file(opts["process"])
    if not args:
        raise MinirunError("exec: no command given (arguments after the id, or --process)")
    proc = json.loads(json.dumps(base))  # a deep copy of JSON data, without `copy`
    proc["args"] = args
    proc["terminal"] = bool(opts.get("tty"))
    proc.pop("consoleSize", None)
    if opts.get("cwd"):
        proc["cwd"] = opts["cwd"]
    env = list(proc.get("env") or [])
    for entry in opts.get("env") or []:
        key = entry.partition("=")[0]
        env = [e for e in env if e.partition("=")[0] != key] + [entry]
    proc["env"] = env
    if opts.get("user"):
        proc["user"] = _parse_user(opts["user"], proc.get("user") or {})
    if opts.get("additional_gids"):
        gids = []
        for g in opts["additional_gids"]:
            if not g.isdigit() or int(g) > 2**32 - 1:
                raise MinirunError(f"--additional-gids {g!r}: not a group id (a number)")
            gids.append(int(g))
        proc.setdefault("user", {})["additionalGids"] = gids
    for cap in opts.get("cap") or []:
        name = cap.upper() if cap.upper().startswith("CAP_") else "CAP_" + cap.upper()
        caps = proc.setdefault("capabilities", {})
        for kind in ("bounding", "effective", "permitted"):
            if name not in caps.setdefault(kind, []):
                caps[kind].append(name)
    if opts.get("no_new_privs"):
        proc["noNewPrivileges"] = True
    for flag in ("process_label", "apparmor"):
        if opts.get(flag):
            raise MinirunError(f"--{flag.replace('_', '-')}: minirun applies no LSM label "
                               "(AppArmor, SELinux); it refuses one it cannot apply")
    _validate(proc, "exec")
    return proc


def _parse_user(text: str, base: dict) -> dict:
    uid, _, gid = text.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise MinirunError(f"exec --user {text!r}: expected UID[:GID] as numbers")
    user = dict(base)
    user["uid"] = int(uid)
    user["gid"] = int(gid) if gid else 0
    return user


def _load_process_file(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            proc = json.loads(f.read())
    except FileNotFoundError:
        raise MinirunError(f"--process {path}: no such file") from None
    except json.JSONDecodeError as e:
        raise MinirunError(f"--process {path}: invalid JSON at line {e.lineno} column "
                           f"{e.colno}: {e.msg}") from None
    except OSError as e:
        raise MinirunError(f"--process {path}: {e.strerror}") from None
    _validate(proc, f"--process {path}")
    return proc


def _validate(proc: object, where: str) -> None:
    try:
        config.validate_process(proc)
    except ConfigError as e:
        raise MinirunError(f"{where}: {e}") from None


def _spawn(cid: str, st: dict, proc: dict, cfg: dict, opts: dict) -> int:
    from minirun.linux import init, sealed

    linux = cfg["linux"]
    kinds = [ns["type"] for ns in linux.get("namespaces") or []]
    detach = bool(opts.get("detach"))
    console, relay_end = _console(proc, opts, detach)
    pidfd = _pidfd_of(st)
    if pidfd is None:
        raise MinirunError(f"cannot exec in container {cid!r}: it is stopped")
    if not detach:
        syscalls.set_child_subreaper()  # the process re-parents to us: we wait for it
    launch = init.ExecLaunch(cid, st["pid"], proc, kinds, opts, _steps_wanted())
    launch.console = console
    launch.seccomp = init.compile_seccomp(linux)
    cg = container_cgroup.of(st)
    cgroup_fd = None
    if cg is not None and cg.exists():
        cgroup_fd = _open_procs(cg, opts.get("cgroup"))
        launch.join_cgroup = True
    elif opts.get("cgroup"):
        raise MinirunError(f"--cgroup {opts['cgroup']}: the container has no cgroup")
    launch.sealed = sealed.exec_needs_seal(cfg, proc, cg.pids if cgroup_fd is not None else None,
                                           st["pid"])
    session = SetupSession()
    try:
        close = [pidfd] if cgroup_fd is None else [pidfd, cgroup_fd]
        session.fork(lambda sock, done: init.exec_setup_process(launch, init.Channel(sock, done)),
                     close=close)
        if console is not None:
            console.close()
            console = None
        # As runc: the container's state (running, the init's pid) and, at the top
        # level, the pid of the exec'd process.
        handlers = {
            "seccomp-notify": lambda m: forward_notify_fd(
                {"linux": linux}, hooks_state(st, "running", st["pid"]), m["fd"],
                session.target),
            "cgroup": lambda m: _join_all(cgroup_fd, st, session.target_pid),
        }
        session.listen(until=None, handlers=handlers)  # end of file: it exec'd (or died)
        warmup.reap()  # it has joined its cgroup: no need to keep warm while it runs
        pid = session.target_pid
        os.waitpid(session.child, 0)
        session.pids.remove(session.child)
        if opts.get("pid_file"):
            _write_pid_file(opts["pid_file"], pid)
    except BaseException:
        session.abort()
        raise
    finally:
        session.close()
        os.close(pidfd)
        if cgroup_fd is not None:
            os.close(cgroup_fd)
        if console is not None:
            console.close()
    log_step("exec", " ".join(proc["args"]), 0.0, None)
    if detach:
        return 0
    master = None
    if relay_end is not None:
        from minirun.terminal import copy_winsize, receive_master

        master = receive_master(relay_end)
        copy_winsize(0, master)
        relay_end.close()
    return wait_process(pid, master)


def _join_all(cgroup_fd: int, st: dict, pid: int) -> None:
    """The exec'd process into the container's cgroup2 and its v1 directories (limits of
    v1-bound controllers on a hybrid host), as runc joins every hierarchy."""
    cgroup_join(cgroup_fd, pid)
    v1cg = container_cgroup.v1_of(st)
    if v1cg is not None:
        for fd in v1cg.open_procs():
            try:
                cgroup_join(fd, pid)
            finally:
                os.close(fd)


def _open_procs(cg, sub: str | None) -> int:
    """The container's cgroup.procs, or that of its sub-cgroup `[controller:]path`
    (runc's exec --cgroup; the controller is ignored on cgroup v2, as runc does)."""
    if not sub:
        return cg.open_procs()
    path = sub.split(":", 1)[1] if ":" in sub else sub
    norm = os.path.normpath("/" + path).lstrip("/")
    if path.startswith("/") or not norm or norm.startswith("..") or norm != os.path.normpath(
            path):
        raise MinirunError(f"--cgroup {sub}: {path} is not a sub cgroup path")
    target = os.path.join(cg.dir, norm, "cgroup.procs")
    try:
        return os.open(target, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise MinirunError(f"--cgroup {sub}: {os.path.dirname(target)}: "
                           f"{os.strerror(e.errno or 0)} (an existing sub-cgroup)") from None


def _console(proc: dict, opts: dict, detach: bool):
    """(socket the process sends its pty to, our end when we relay it ourselves)."""
    path = opts.get("console_socket")
    if not proc.get("terminal"):
        if path:
            raise MinirunError("--console-socket was given but the process has no terminal")
        return None, None
    if path:
        from minirun.terminal import connect_console_socket

        return connect_console_socket(path), None
    if detach:
        raise MinirunError("exec --tty --detach needs --console-socket to hand the terminal to")
    from minirun.terminal import caller_winsize

    size = caller_winsize()
    if size and not proc.get("consoleSize"):
        # set by the process on its pty before it execs (as `run` does before `start`):
        # copied after, its first `stty size` could still see 0 0
        proc["consoleSize"] = size
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return theirs, ours
