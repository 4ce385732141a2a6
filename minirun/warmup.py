"""Take the kernel's cgroup-migration wait off `create`'s and `exec`'s critical path.

A cgroup migration (a write to cgroup.procs) takes cgroup_threadgroup_rwsem for
writing; after a quiet while that waits for an RCU grace period (~10 ms here, more on a
busy machine), holding cgroup_mutex (so a cgroup mkdir meanwhile waits too). A
migration within about one grace period of the previous one does not wait. The
container's process joins its cgroup as its last set-up step (see container_cgroup.py).
So a throw-away process, forked before the imports, migrates into its own cgroup at
once and again every few ms: its first wait passes while Python imports minirun, and
the kernel is in its "writer was recent" state when the container's process joins.
`create` makes the cgroup while the set-up processes work (container.py), so the mkdir
that may wait behind the first write is off the critical path too:

    minirun (create/run/exec) ──fork──> warmer: write "0" to its own cgroup.procs (waits
          │ imports, config, set-up ...       the grace period), then again every 4 ms,
          └── reap(): SIGKILL, wait ──────>   for at most 2 s or until minirun is gone

No fd is opened in minirun (a pipe would take fds 3-4, which --preserve-fds hands to
the container) and nothing is read there: this runs before any import.

asks_for_bridge(argv) tells the program, as cheaply, to fork the network helper at
start too (network/helper.py): its 20-40 ms of imports then overlap minirun's own.
"""

import os

COMMANDS = ("create", "run", "exec")
# Global flags that take a value (commands.GLOBAL; not imported: it would cost the time
# this module saves): the word after one of them is not the command.
VALUE_FLAGS = ("--root", "--log", "--log-format", "--criu", "--rootless")
PID = 0  # the warmer, until reap()
INTERVAL = 0.004  # s, well within a grace period
LIMIT = 2.0  # s: a create waiting on a slow hook stops warming


def start(argv: list[str]) -> None:
    """Fork the warmer if the command will move a process into a cgroup (as root)."""
    global PID
    if PID or os.geteuid() != 0 or command_of(argv) not in COMMANDS:
        return
    parent = os.getpid()
    try:
        PID = os.fork()
    except OSError:
        return  # no warmer: only slower
    if PID == 0:
        try:
            _keep_warm(parent)
        finally:
            os._exit(0)


def command_of(argv: list[str]) -> str:
    """The command word of a minirun command line, as far as it can be told cheaply."""
    value_next = False
    for arg in argv:
        if value_next:
            value_next = False
        elif arg.startswith("-"):
            value_next = arg in VALUE_FLAGS
        else:
            return arg
    return ""


def asks_for_bridge(argv: list[str]) -> bool:
    """Whether a create or run command line asks for bridge networking (--network
    bridge, or an option that only a bridge takes). A miss costs nothing but speed:
    create then forks the helper once config.json is read."""
    if os.geteuid() != 0 or command_of(argv) not in ("create", "run"):
        return False
    for i, arg in enumerate(argv):
        if arg == "--network":
            if argv[i + 1:i + 2] == ["bridge"]:
                return True
        elif arg == "--network=bridge" or arg.startswith(_BRIDGE_ONLY):
            return True
    return False


# Options that only a bridge takes (the first also as -pH:C and -p=H:C)
_BRIDGE_ONLY = ("-p", "--publish", "--subnet", "--bridge", "--ip")


def reap() -> None:
    """Stop the warmer and wait for it (the container's process has joined its cgroup)."""
    global PID
    if PID:
        try:
            os.kill(PID, 9)  # SIGKILL (the signal module costs what this one saves)
            os.waitpid(PID, 0)
        except (ProcessLookupError, ChildProcessError):
            pass  # reaped already (run's wait for any child)
        PID = 0


def _keep_warm(parent: int) -> None:
    import time

    procs = _own_procs()
    if procs is None:
        return
    fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
    end = time.monotonic() + LIMIT
    while time.monotonic() < end and os.getppid() == parent:
        os.write(fd, b"0")
        time.sleep(INTERVAL)


def _own_procs() -> str | None:
    """This process's cgroup.procs in the cgroup2 hierarchy (never a v1 one): writing
    our pid there is a migration that moves nothing."""
    with open("/proc/self/cgroup") as f:
        own = next((line[3:].strip() for line in f if line.startswith("0::")), "")
    if not own:
        return None
    found = []  # (mount point, our path below it) of each cgroup2 mount
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            root, point = fields[3], fields[4]
            if fields[sep + 1] == "cgroup2" and (
                    root == "/" or own == root or own.startswith(root + "/")):
                found.append((point, own[len(root):] if root != "/" else own))
    # the mount minirun uses (cgroups/host.find_v2_mount's choice)
    found.sort(key=lambda m: (m[0] != "/sys/fs/cgroup", not m[0].startswith("/sys/fs/cgroup/")))
    return f"{found[0][0]}{found[0][1].rstrip('/')}/cgroup.procs" if found else None
