"""minirun's command line, runc-compatible.

Global flags (--root, --log, --log-format, --debug) and command flags may come in any
order, before or after the command, as `--flag=value` or `--flag value`. Every failure
prints one line and exits non-zero; --debug adds the traceback and each set-up step.
"""

import os
import sys

from minirun import __version__
from minirun.commands import COMMAND_LIST, GLOBAL_TABLE
from minirun.errors import MinirunError
from minirun.log import log

DEFAULT_ROOT = "/run/minirun"


def default_root() -> str:
    """/run/minirun for root; for a user without root (as runc), $XDG_RUNTIME_DIR/minirun,
    else /tmp/minirun-UID: never a directory that user cannot write."""
    uid = os.geteuid()
    if uid == 0:
        return DEFAULT_ROOT
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and os.access(xdg, os.W_OK):
        return os.path.join(xdg, "minirun")
    return f"/tmp/minirun-{uid}"

# flag -> (destination, takes a value: True, False, or "list" for a repeatable flag),
# derived from the one table of commands and flags (minirun/commands.py).
GLOBAL_FLAGS = GLOBAL_TABLE
COMMANDS: dict[str, tuple[dict, str, str]] = {
    c.name: (c.flag_table(), c.args, c.summary) for c in COMMAND_LIST}


class UsageError(MinirunError):
    pass


def parse(argv: list[str]) -> tuple[str, dict, list[str]]:
    """Split argv into (command, options, positional arguments)."""
    command = ""
    opts: dict = {}
    args: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            args.extend(argv[i:])
            break
        if arg.startswith("-") and len(arg) > 1 and not _is_negative_number(arg):
            name, eq, value = arg.partition("=")
            table = {**GLOBAL_FLAGS, **(COMMANDS[command][0] if command else {})}
            if name not in table:
                where = f" for {command}" if command else ""
                raise UsageError(f"unknown flag {name}{where} (see minirun --help)")
            dest, takes_value = table[name]
            if takes_value == "list":
                if not eq:
                    if i >= len(argv):
                        raise UsageError(f"flag {name} needs a value")
                    value = argv[i]
                    i += 1
                opts.setdefault(dest, []).append(value)
                continue
            if takes_value and not eq:
                if i >= len(argv):
                    raise UsageError(f"flag {name} needs a value")
                value = argv[i]
                i += 1
            elif not takes_value:
                if eq and value not in ("true", "false"):
                    raise UsageError(f"flag {name} takes no value")
                value = value != "false" if eq else True
            opts[dest] = value
        elif not command:
            if arg not in COMMANDS:
                raise UsageError(f"unknown command {arg!r} (see minirun --help)")
            command = arg
        else:
            args.append(arg)
            if command in ("exec", "ps"):
                # Everything after the id is the command to run (exec) or ps(1)'s
                # arguments (ps), flags included.
                args.extend(argv[i:])
                break
    return command, opts, args


def _is_negative_number(arg: str) -> bool:
    return arg[1:].isdigit()


def usage(command: str = "") -> str:
    from minirun import commands

    return commands.command_help(command) if command else commands.overview()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    command = ""
    try:
        command, opts, args = parse(argv)
        # Before minirun opens any fd of its own (the --log file included): every fd of
        # the --preserve-fds range must be the caller's, or one of ours would take its
        # number and reach the container (issue 13, item 2).
        missing = _missing_preserved_fd(opts)
        fmt = opts.get("log_format", "text")
        if fmt not in ("text", "json"):
            raise UsageError(f"--log-format must be text or json, not {fmt!r}")
        log.configure(opts.get("log"), fmt, bool(opts.get("debug")))
        if missing:
            raise UsageError(missing)
        if opts.get("version"):
            from minirun import OCI_VERSION

            print(f"minirun version {__version__}\nspec: {OCI_VERSION}")
            return 0
        if opts.get("help") or not command:
            print(usage(command))
            return 0 if opts.get("help") else 1
        if opts.get("trace"):
            return _traced(command, opts, args)
        return dispatch(command, opts, args)
    except MinirunError as e:
        # An expected failure, said in one line: no traceback, even with --debug (that
        # is for minirun's own bugs, below).
        log.error(str(e))
        # runc: every failure of exec itself exits 255 (the process's own status passes)
        return 255 if command == "exec" else e.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except BrokenPipeError:  # `minirun help | head`: the reader left, nothing to say
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit
        return 141
    except Exception as e:  # noqa: BLE001 - a bug: still one line unless --debug
        if debug:
            _print_trace(e)
        log.error(f"internal error: {type(e).__name__}: {e} (run with --debug for details)")
        return 1


def _traced(command: str, opts: dict, args: list[str]) -> int:
    """--trace FILE: the command's set-up steps as Chrome trace-event JSON."""
    from minirun import trace

    if command not in ("create", "run", "exec"):
        raise UsageError("--trace is for create, run and exec")
    path = os.path.abspath(opts["trace"])
    trace.start(path, command)
    status = "error"
    try:
        code = dispatch(command, opts, args)
        status = f"exit {code}"
        return code
    finally:
        try:
            trace.ACTIVE.write(status)
        except OSError as e:
            log.error(f"--trace {path}: cannot write the trace: {e.strerror}")


def _print_trace(e: BaseException) -> None:
    import traceback

    traceback.print_exception(e, file=sys.stderr)
    trace = getattr(e, "child_trace", None)
    if trace:
        sys.stderr.write("in the container's set-up process:\n" + trace)


def _one_id(command: str, args: list[str]) -> str:
    if len(args) != 1:
        raise UsageError(f"{command} takes exactly one container id "
                         f"({len(args)} given)")
    return args[0]


def dispatch(command: str, opts: dict, args: list[str]) -> int:
    if opts.get("systemd_cgroup"):
        raise UsageError("--systemd-cgroup is not supported: minirun manages cgroupfs only")
    if command == "spec":
        from minirun.spec import write_default_spec

        write_default_spec(opts.get("bundle") or ".", bool(opts.get("rootless")))
        return 0
    if command == "features":
        from minirun.features import features_json

        print(features_json())
        return 0

    if command in ("help", "completion"):
        return _help(command, opts, args)
    if command == "explain":
        from minirun.explain import ExplainError, explain

        if len(args) > 1:
            raise UsageError("explain takes at most one bundle directory")
        try:
            sys.stdout.write(explain(args[0] if args else "."))
        except ExplainError as e:
            raise MinirunError(f"explain: {e}") from None
        return 0
    if command == "doctor":
        from minirun.doctor import doctor

        if len(args) > 1:
            raise UsageError("doctor takes at most one bundle directory")
        return doctor(opts.get("root") or default_root(), args[0] if args else None)

    from minirun import container
    from minirun.state import Store

    store = Store(opts.get("root") or default_root())
    if command == "list":
        return _list(store, opts, args)
    if command == "kill":
        if not 1 <= len(args) <= 2:
            raise UsageError("kill takes a container id and an optional signal")
        sig = parse_signal(args[1] if len(args) > 1 else "SIGTERM")
        container.kill(store, args[0], sig, bool(opts.get("all")))
        return 0
    if command == "exec":
        from minirun.container_exec import exec_

        if not args:
            raise UsageError("exec takes a container id, then the command")
        _check_create_flags(opts)
        return exec_(store, args[0], opts, args[1:])
    if command == "run" and _names_a_bundle(args, opts):
        args = [_bundle_run_id(opts)]
    if command == "ps":
        if not args:
            raise UsageError("ps takes a container id (and ps(1) arguments after it)")
        return _ps(store, args[0], opts, args[1:])
    cid = _one_id(command, args)
    if command in ("pause", "resume", "events", "update"):
        return _cgroup_command(command, store, cid, opts)
    if command in ("create", "run"):
        _check_create_flags(opts)
        bundle = opts.get("bundle") or os.getcwd()
        if command == "create":
            container.create(store, cid, bundle, opts)
            return 0
        return container.run(store, cid, bundle, opts)
    if command == "start":
        container.start(store, cid)
    elif command == "state":
        import json

        # runc's layout: two-space indent, no newline at the end
        sys.stdout.write(json.dumps(container.state(store, cid), indent=2))
    elif command == "delete":
        container.delete(store, cid, bool(opts.get("force")))
    return 0


def _help(command: str, opts: dict, args: list[str]) -> int:
    from minirun import commands

    if command == "completion":
        if args != ["bash"]:
            raise UsageError("completion: only `minirun completion bash` is supported")
        sys.stdout.write(commands.bash_completion())
    elif opts.get("markdown"):
        print(commands.markdown_table())
    elif not args:
        print(commands.overview())
    elif len(args) == 1 and args[0] in commands.BY_NAME:
        print(commands.command_help(args[0]))
    else:
        raise UsageError(f"help: no command {' '.join(args)!r} (see minirun --help)")
    return 0


def _names_a_bundle(args: list[str], opts: dict) -> bool:
    """`run BUNDLE/` (ids cannot hold a `/`) or a bare `run` in a bundle directory: the
    learner's form. Sets opts["bundle"]; every runc form is left as it is."""
    if len(args) == 1 and "/" in args[0]:
        if opts.get("bundle"):
            raise UsageError(f"run: {args[0]!r} is a path, not a container id; give the bundle "
                             "either with --bundle or as the argument")
        opts["bundle"] = args[0]
        return True
    if not args and not opts.get("bundle") and os.path.isfile("config.json"):
        opts["bundle"] = "."
        return True
    return False


def _bundle_run_id(opts: dict) -> str:
    """A readable id for a bundle run by path: its directory's name plus a short suffix."""
    name = os.path.basename(os.path.abspath(opts["bundle"]))
    # every run of characters outside [A-Za-z0-9_.+-] becomes one "-" (no `re`: 5 ms)
    name = "".join(c if c.isascii() and (c.isalnum() or c in "_.+-") else "\0" for c in name)
    name = "-".join(part for part in name.split("\0") if part)
    name = name.strip(".-")[:48] or "bundle"
    cid = f"{name}-{os.urandom(3).hex()}"
    if opts.get("detach") or sys.stderr.isatty():
        print(f"minirun: container id {cid}", file=sys.stderr)
    return cid


def _missing_preserved_fd(opts: dict) -> str | None:
    """runc's check and words: each of fds 3..3+N-1 must be open in the caller."""
    text = opts.get("preserve_fds")
    if text is None or not str(text).isdigit():
        return None  # a bad number is reported by _check_create_flags
    count = int(text)
    for i in range(count):
        try:
            os.fstat(3 + i)
        except OSError as e:
            return (f"unable to stat preserved-fd {i} (of {count}): fd {3 + i}: "
                    f"{os.strerror(e.errno or 0)}")
    return None


def _check_create_flags(opts: dict) -> None:
    if opts.get("console_socket"):
        opts["console_socket"] = os.path.abspath(opts["console_socket"])
    fds = opts.get("preserve_fds")
    if fds is not None:
        if not str(fds).isdigit():
            raise UsageError(f"--preserve-fds must be a number, not {fds!r}")
        opts["preserve_fds"] = int(fds)
    if opts.get("pid_file"):
        opts["pid_file"] = os.path.abspath(opts["pid_file"])
        from minirun.container import check_pid_file

        check_pid_file(opts["pid_file"])


def _list(store, opts: dict, args: list[str]) -> int:

    from minirun import container

    if args:
        raise UsageError("list takes no arguments")
    fmt = opts.get("format", "table")
    if fmt not in ("table", "json"):
        raise UsageError(f"--format must be table or json, not {fmt!r}")
    states = container.list_all(store)
    for st in states:
        # As runc: `state` says owner "", `list` names the owner of the state directory.
        st["owner"] = _owner_name(store.path(st["id"]))
    if opts.get("quiet"):
        for st in states:
            print(st["id"])
    elif fmt == "json":
        print(_compact([_list_entry(st) for st in states] or None))
    else:
        addresses = [_address(st) for st in states]
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
                 for s in states]
        if any(addresses):  # a column of its own only when minirun networking is in use
            rows = [(*r, a) for r, a in zip(rows, ["ADDRESS", *[a or "-" for a in addresses]],
                                            strict=True)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _cgroup_command(command: str, store, cid: str, opts: dict) -> int:

    from minirun import container_cgroup as cgc

    if command == "pause":
        cgc.pause(store, cid)
    elif command == "resume":
        cgc.resume(store, cid)
    elif command == "events":
        interval = _duration(opts.get("interval", "5s"))

        def emit(event: dict) -> None:
            print(_compact(event), flush=True)

        cgc.events(store, cid, interval, bool(opts.get("stats")), emit)
    else:
        res = cgc.resources_from_flags(opts)
        if opts.get("resources"):
            res.update(_read_resources(opts["resources"]))
        if not res:
            raise UsageError("update: nothing to change (see minirun --help)")
        cgc.update(store, cid, res)
    return 0


def _read_resources(path: str) -> dict:
    import json

    try:
        text = sys.stdin.read() if path == "-" else open(path).read()  # noqa: SIM115
        res = json.loads(text)
    except OSError as e:
        raise UsageError(f"--resources {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"--resources {path}: invalid JSON at line {e.lineno} column "
                         f"{e.colno}: {e.msg}") from None
    if not isinstance(res, dict):
        raise UsageError(f"--resources {path}: expected a linux.resources object")
    return res


GO_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
            "h": 3600.0}


def _duration(text: str) -> float:
    """A Go duration as runc takes it (5s, 500ms, 1m30s; a plain number is seconds), and
    positive: a negative or zero interval would spin."""
    total, rest = 0.0, text.strip()
    if rest.replace(".", "", 1).isdigit():
        total = float(rest)
        rest = ""
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        unit = next((u for u in sorted(GO_UNITS, key=len, reverse=True)
                     if rest[i:].startswith(u)), None)
        if i == 0 or unit is None or rest[:i].count(".") > 1:
            raise UsageError(f"--interval {text!r}: expected a positive duration like 5s, "
                             "500ms or 1m30s")
        total += float(rest[:i]) * GO_UNITS[unit]
        rest = rest[i + len(unit):]
    if total <= 0:
        raise UsageError(f"--interval {text!r}: must be positive")
    return total


def _ps(store, cid: str, opts: dict, ps_args: list[str]) -> int:
    """json: the container's host pids. table: ps(1) with ps_args (default -ef), its lines
    filtered to the container's processes, header kept (as runc)."""
    from minirun import container

    fmt = opts.get("format", "table")
    if fmt not in ("table", "json"):
        raise UsageError(f"--format must be table or json, not {fmt!r}")
    pids = container.processes(store, cid)
    if fmt == "json":
        print(_compact(pids))
        return 0
    import subprocess

    try:
        out = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True)
    except OSError as e:
        raise MinirunError(f"ps: cannot run ps(1): {e.strerror}") from None
    if out.returncode != 0:
        raise MinirunError(f"ps {' '.join(ps_args)}: {out.stderr.strip() or 'failed'}")
    lines = out.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise MinirunError(f"ps {' '.join(ps_args)}: no PID column in its output")
    col = header.index("PID")
    wanted = {str(p) for p in pids}
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col] in wanted:
            print(line)
    return 0


def _compact(value: object) -> str:
    """JSON as Go's encoder writes it (no spaces), for runc's outputs."""
    import json

    return json.dumps(value, separators=(",", ":"))


def _address(st: dict) -> str:
    return (st.get("annotations") or {}).get("org.minirun.network.address", "")


def _list_entry(st: dict) -> dict:
    out = {k: v for k, v in st.items() if k != "annotations"}
    if _address(st):
        out["address"] = _address(st)
    return out


def _owner_name(path: str) -> str:
    import pwd

    try:
        uid = os.stat(path).st_uid
    except OSError:
        return ""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def parse_signal(text: str) -> int:
    import signal

    if text.isdigit():
        num = int(text)  # 0: a liveness probe (nothing is sent, the init must exist)
        if not 0 <= num < signal.NSIG:
            raise UsageError(f"invalid signal number {num}")
        return num
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    sig = getattr(signal, name, None)
    if not isinstance(sig, signal.Signals):
        raise UsageError(f"unknown signal {text!r}")
    return int(sig)
