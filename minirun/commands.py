"""Every command and flag of minirun in one table.

Parsing (cli.parse), help (`minirun help CMD`, `minirun CMD --help`), bash completion
(`minirun completion bash`) and the README's command table (`minirun help --markdown`,
checked by a test) are all derived from it, so they cannot drift apart. Plain tuples
and classes: this module is imported on every command, `run` and `exec` included.
"""

from __future__ import annotations

BOOL, VALUE, LIST = False, True, "list"


class Flag:
    __slots__ = ("names", "dest", "kind", "help", "metavar")

    def __init__(self, names: str, dest: str, kind: object, help: str,
                 metavar: str = "") -> None:
        self.names = tuple(names.split())  # long name first, then short aliases
        self.dest = dest
        self.kind = kind
        self.help = help
        self.metavar = metavar or ("" if kind is BOOL else dest.upper().replace("_", "-"))

    def usage(self) -> str:
        value = f" {self.metavar}" if self.metavar else ""
        more = "..." if self.kind == LIST else ""
        return "|".join(self.names) + value + more


class Command:
    __slots__ = ("name", "args", "summary", "flags", "example", "detail")

    def __init__(self, name: str, args: str, summary: str, flags: tuple[Flag, ...] = (),
                 example: str = "", detail: str = "") -> None:
        self.name, self.args, self.summary = name, args, summary
        self.flags, self.example, self.detail = flags, example, detail

    def flag_table(self) -> dict[str, tuple[str, object]]:
        return {n: (f.dest, f.kind) for f in self.flags for n in f.names}


GLOBAL = (
    Flag("--root", "root", VALUE, "directory of the containers' state "
         "(default /run/minirun)", "DIR"),
    Flag("--log", "log", VALUE, "also write errors (and --debug lines) to FILE", "FILE"),
    Flag("--log-format", "log_format", VALUE, "text or json (runc's {\"level\",\"msg\","
         "\"time\"} lines; default text)", "FORMAT"),
    Flag("--debug", "debug", BOOL, "print every set-up step and, on failure, the traceback"),
    Flag("--systemd-cgroup", "systemd_cgroup", BOOL, "refused: minirun manages cgroupfs "
         "only"),
    Flag("--criu", "criu", VALUE, "accepted for runc's command lines; checkpoint and restore "
         "are not supported", "PATH"),
    Flag("--rootless", "rootless_mode", VALUE, "accepted for runc's command lines "
         "(true|false|auto); minirun finds out itself", "MODE"),
    Flag("--help -h", "help", BOOL, "print help (of the command, when one is given)"),
    Flag("--version -v", "version", BOOL, "print minirun's version and the OCI spec's"),
)

BUNDLE = Flag("--bundle -b", "bundle", VALUE, "the bundle directory (config.json and the "
              "rootfs; default: the current directory)", "DIR")
PID_FILE = Flag("--pid-file", "pid_file", VALUE, "write the process's host pid there "
                "(bare decimal, as engines read it)", "FILE")
CONSOLE = Flag("--console-socket", "console_socket", VALUE, "send the pty master of a "
               "terminal process over this unix socket (how engines take the terminal)",
               "SOCKET")
PRESERVE = Flag("--preserve-fds", "preserve_fds", VALUE, "pass fds 3..3+N-1 to the "
                "process as well (default 0)", "N")
TRACE = Flag("--trace", "trace", VALUE, "write every set-up step as Chrome trace-event "
             "JSON (open in Perfetto)", "FILE")
CREATE_FLAGS = (
    BUNDLE, PID_FILE,
    Flag("--no-pivot", "no_pivot", BOOL, "enter the root with MS_MOVE + chroot instead of "
         "pivot_root (for ramdisk roots)"),
    PRESERVE,
    Flag("--no-new-keyring", "no_new_keyring", BOOL, "keep the caller's session keyring "
         "instead of a new one"),
    CONSOLE,
    Flag("--network", "network", VALUE, "none (default: the config's namespaces as they "
         "are), bridge (a veth on minirun's bridge with NAT), or a netns PATH to join",
         "MODE"),
    Flag("--publish -p", "publish", LIST, "with --network bridge: forward host port H to "
         "the container's port C", "H:C[/tcp|udp]"),
    Flag("--subnet", "subnet", VALUE, "with --network bridge: the bridge's subnet "
         "(default 10.213.0.0/24)", "CIDR"),
    Flag("--bridge", "bridge", VALUE, "with --network bridge: the bridge's name "
         "(default minirun0)", "NAME"),
    Flag("--ip", "ip", VALUE, "with --network bridge: the container's address (default: "
         "the next free one)", "ADDR"),
    TRACE,
)
DETACH = Flag("--detach -d", "detach", BOOL, "return at once; the process runs on")

COMMAND_LIST = (
    Command("create", "ID", "set a container up; its process waits for `start`",
            CREATE_FLAGS, "minirun create --bundle /tmp/bundle web"),
    Command("start", "ID", "run the process of a created container", (),
            "minirun start web"),
    Command("run", "ID|BUNDLE/", "create and start, wait, return the process's exit status",
            (*CREATE_FLAGS, DETACH,
             Flag("--keep", "keep", BOOL, "keep the stopped container's state after it exits "
                  "(delete it later)"),
             Flag("--no-subreaper", "no_subreaper", BOOL, "accepted for runc's command lines "
                  "(minirun waits for the process as its subreaper either way)")),
            "minirun run bundle/",
            "Waits, forwards signals (or relays the terminal), returns the exit status "
            "(128+signal when killed), then deletes the container. An argument holding a `/` "
            "(ids cannot), or no id at all inside a bundle directory, runs that bundle under "
            "a new readable id (its directory's name and a short suffix)."),
    Command("state", "ID", "print the OCI state of a container as JSON", (),
            "minirun state web"),
    Command("kill", "ID [SIGNAL]", "send a signal (default SIGTERM) to the container's init",
            (Flag("--all -a", "all", BOOL, "signal every process of the container (through "
                  "its cgroup)"),), "minirun kill web KILL",
            "SIGNAL by name or number, with or without SIG (SIGKILL, KILL, 9)."),
    Command("delete", "ID", "remove a stopped container (--force: kill it first)",
            (Flag("--force -f", "force", BOOL, "kill a running container first; an unknown "
                  "id is not an error"),), "minirun delete --force web"),
    Command("list", "", "list containers (table or json)",
            (Flag("--format -f", "format", VALUE, "table (default) or json", "FORMAT"),
             Flag("--quiet -q", "quiet", BOOL, "print the ids only")),
            "minirun list --format json"),
    Command("exec", "ID [COMMAND ARGS...]", "run another process in a container",
            (Flag("--process -p", "process", VALUE, "read the process (an OCI `process` "
                  "object, JSON) from FILE instead of the arguments", "FILE"),
             Flag("--cwd", "cwd", VALUE, "working directory (default: the config's)", "DIR"),
             Flag("--env -e", "env", LIST, "add or replace an environment variable",
                  "K=V"),
             Flag("--user -u", "user", VALUE, "run as UID[:GID]", "UID[:GID]"),
             Flag("--tty -t", "tty", BOOL, "give the process a terminal"),
             DETACH, PID_FILE, CONSOLE, PRESERVE,
             Flag("--cap -c", "cap", LIST, "add a capability (CAP_NET_ADMIN or NET_ADMIN)",
                  "CAP"),
             Flag("--no-new-privs", "no_new_privs", BOOL, "set no_new_privs"),
             Flag("--additional-gids -g", "additional_gids", LIST, "add a supplementary "
                  "group", "GID"),
             Flag("--cgroup", "cgroup", VALUE, "run the process in an existing sub-cgroup of "
                  "the container's", "[CONTROLLER:]PATH"),
             Flag("--ignore-paused", "ignore_paused", BOOL, "allow exec in a paused container "
                  "(the process starts frozen)"),
             Flag("--process-label", "process_label", VALUE, "refused: no SELinux labels",
                  "LABEL"),
             Flag("--apparmor", "apparmor", VALUE, "refused: no AppArmor profiles", "PROFILE"),
             TRACE),
            "minirun exec web ps", "Everything after the id is the command, flags "
            "included; the process joins every namespace and the cgroup of the container."),
    Command("ps", "ID", "list the container's processes (json: an array of host pids)",
            (Flag("--format -f", "format", VALUE, "table (default) or json", "FORMAT"),),
            "minirun ps --format json web"),
    Command("pause", "ID", "freeze every process of the container (cgroup freezer)", (),
            "minirun pause web"),
    Command("resume", "ID", "thaw a paused container", (), "minirun resume web"),
    Command("events", "ID", "print resource usage and OOM events as JSON lines "
            "(--stats: once)",
            (Flag("--stats", "stats", BOOL, "print the statistics once and exit"),
             Flag("--interval", "interval", VALUE, "time between statistics (default 5s)",
                  "DURATION")),
            "minirun events --stats web"),
    Command("update", "ID", "change the resource limits of a live container",
            (Flag("--resources -r", "resources", VALUE, "a linux.resources JSON object from "
                  "FILE (- for stdin)", "FILE"),
             *(Flag("--" + n.replace("_", "-"), n, VALUE, h, "N") for n, h in (
                 ("memory", "memory limit in bytes (k, m, g suffixes)"),
                 ("memory_reservation", "memory soft limit in bytes"),
                 ("memory_swap", "memory plus swap limit in bytes (-1: unlimited)"),
                 ("cpu_quota", "CPU time in µs per period"),
                 ("cpu_period", "CPU period in µs"),
                 ("cpu_share", "CPU shares (relative weight)"),
                 ("cpuset_cpus", "CPUs allowed (0-3,5)"),
                 ("cpuset_mems", "memory nodes allowed"),
                 ("pids_limit", "maximum number of processes"),
                 ("blkio_weight", "block IO weight (10-1000)"),
                 ("cpu_rt_period", "realtime period in µs (cgroup v1 only)"),
                 ("cpu_rt_runtime", "realtime runtime in µs (cgroup v1 only)"))),
             Flag("--l3-cache-schema", "l3_cache_schema", VALUE, "refused: no Intel RDT",
                  "SCHEMA"),
             Flag("--mem-bw-schema", "mem_bw_schema", VALUE, "refused: no Intel RDT",
                  "SCHEMA")),
            "minirun update --pids-limit 100 web"),
    Command("spec", "", "write a default config.json",
            (BUNDLE, Flag("--rootless", "rootless", BOOL, "a config for a user without root")),
            "minirun spec --bundle /tmp/bundle"),
    Command("features", "", "print what this minirun supports, as OCI features JSON", (),
            "minirun features"),
    Command("explain", "[BUNDLE]", "print a shell script that does this bundle's set-up by "
            "hand with standard tools, one commented step per config field", (),
            "minirun explain bundle/ > setup.sh && sudo sh setup.sh"),
    Command("doctor", "[BUNDLE]", "check this host (and a bundle) for what would stop a "
            "container, one line per finding with what to do", (), "minirun doctor bundle/"),
    Command("help", "[COMMAND]", "print the help of a command (or the overview)",
            (Flag("--markdown", "markdown", BOOL, "the command table as Markdown (the "
                  "README's)"),), "minirun help exec"),
    Command("completion", "bash", "print a bash completion script", (),
            "minirun completion bash > /etc/bash_completion.d/minirun"),
)
BY_NAME = {c.name: c for c in COMMAND_LIST}
GLOBAL_TABLE = {n: (f.dest, f.kind) for f in GLOBAL for n in f.names}


# ---------------------------------------------------------------- derived texts


def overview() -> str:
    lines = ["usage: minirun [GLOBAL FLAGS] COMMAND [FLAGS] ARGS", "",
             "A low-level OCI container runtime, runc-compatible. Flags may come in any "
             "order,", "as --flag=value or --flag value.", "", "commands:"]
    lines += [f"  {c.name:<11} {c.summary}" for c in COMMAND_LIST]
    lines += ["", "global flags:"]
    lines += [f"  {f.usage():<24} {f.help}" for f in GLOBAL]
    lines += ["", "`minirun help COMMAND` (or `minirun COMMAND --help`) for a command's "
              "flags and an example."]
    return "\n".join(lines)


def command_help(name: str) -> str:
    c = BY_NAME[name]
    lines = [f"usage: minirun {c.name}" + (" [FLAGS]" if c.flags else "") +
             (f" {c.args}" if c.args else ""), "", c.summary[0].upper() + c.summary[1:] + "."]
    if c.detail:
        lines += ["", c.detail]
    if c.flags:
        lines += ["", "flags:"]
        lines += [f"  {f.usage():<28} {f.help}" for f in c.flags]
    if c.example:
        lines += ["", "example:", f"  {c.example}"]
    lines += ["", "global flags (--root, --log, --log-format, --debug): see `minirun --help`."]
    return "\n".join(lines)


def markdown_table() -> str:
    rows = ["| command | what it does |", "|---|---|"]
    for c in COMMAND_LIST:
        flags = " ".join(f"[{f.usage()}]" for f in c.flags)
        usage = " ".join(x for x in (c.name, flags, c.args) if x).replace("|", "\\|")
        rows.append(f"| `{usage}` | {c.summary} |")
    return "\n".join(rows)


def bash_completion() -> str:
    names = " ".join(c.name for c in COMMAND_LIST)
    globals_ = " ".join(n for f in GLOBAL for n in f.names)
    cases = "\n".join(
        f"        {c.name}) opts=\"{' '.join(n for f in c.flags for n in f.names)}\" ;;"
        for c in COMMAND_LIST)
    return f"""# bash completion for minirun (generated by `minirun completion bash`)
_minirun() {{
    local cur cmd opts i
    cur=${{COMP_WORDS[COMP_CWORD]}}
    cmd=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in -*) ;; *) cmd=${{COMP_WORDS[i]}}; break ;; esac
    done
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "{names} {globals_}" -- "$cur"))
        return
    fi
    case $cmd in
{cases}
        *) opts="" ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts {globals_}" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -F _minirun minirun
"""
