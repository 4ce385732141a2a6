"""The runtime's end of container set-up: fork the set-up process, then listen.

`create` and `exec` both fork a set-up process that talks back over one
SOCK_SEQPACKET socket in JSON messages (see linux/init.py). The runtime prints the
steps it is told of, runs the requests it must do from outside (write id maps, time
offsets, run createRuntime hooks), records the pids, and turns an "error" message into
a MinirunError, killing what was started so that nothing is left behind.
"""

import gc
import os
import time
from _collections_abc import Callable  # collections.abc without collections (1.5 ms)

from minirun import trace, wire
from minirun.errors import MinirunError
from minirun.lite import json, signal, socket
from minirun.log import log
from minirun.steps import fault_point, format_step

Handler = Callable[[dict], dict | None]  # its result goes back in the "ok" reply


def log_step(name: str, target: str, took: float, err: str | None,
             start: float | None = None, pid: int | None = None) -> None:
    log.debug(format_step(name, target, took, err))
    if trace.ACTIVE is not None:
        trace.step(name, target, took, err, start, pid)


def _error_of(msg: dict) -> MinirunError:
    if msg.get("kind") == "HookError":
        from minirun.hooks import HookError

        return HookError(msg["msg"])
    return MinirunError(msg["msg"])


class SetupSession:
    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.reader = wire.Reader(self.ours)
        self.child = 0  # the set-up process
        self.target = 0  # the container's process (init, or the exec'd one)
        self.pids: list[int] = []  # what to kill if set-up fails
        # "done" for the set-up process goes on a pipe of its own: the init reads the
        # socket too, and must not take that message (nor the set-up process the init's).
        self.done_r, self.done_w = os.pipe()

    def fork(self, child_main: Callable[[socket.socket, int], None], close: list[int]) -> int:
        """Fork; the child runs child_main(sock, done_fd) and never returns."""
        fault_point("fork")
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            # No cycle collection in the set-up processes: a collection writes to every
            # object it visits, and each page written after the init joins its cgroup is
            # charged to the container (the memory floor of issue 11).
            gc.disable()
            self.ours.close()
            os.close(self.done_w)
            for fd in close:
                os.close(fd)
            try:
                child_main(self.theirs, self.done_r)
            finally:
                os._exit(1)
        self.child = pid
        self.pids.append(pid)
        if trace.ACTIVE is not None:
            trace.ACTIVE.setup_pid = pid
            trace.ACTIVE.span("fork", t0, time.perf_counter() - t0, args={"pid": pid})
        self.theirs.close()
        os.close(self.done_r)
        return pid

    def listen(self, until: str | None, handlers: dict[str, Handler] | None = None) -> bool:
        """Serve messages until one of type `until` (True) or end of file (False).
        A "pid" handler, if given, is told the container's pid once known (no reply:
        the set-up process sends it and goes on)."""
        handlers = handlers or {}
        while True:
            got = self.reader.recv()
            if got is None:
                return False
            data, fds = got
            msg = json.loads(data)
            if fds:
                msg["fd"] = fds[0]
            kind = msg["type"]
            if kind == "step":
                log_step(msg["name"], msg["target"], msg["took"], msg["err"], msg.get("ts"),
                         msg.get("pid"))
                continue
            if trace.ACTIVE is not None:
                trace.ACTIVE.instant(f"message: {kind}")
            if kind == until:
                return True
            if kind == "pid":
                if self.target:
                    # One process is forked per session: a second "pid" can only be forged
                    # (never kill or report a pid the container names).
                    raise MinirunError("set-up process sent a second pid: refused")
                self.target = msg["pid"]
                self.pids.append(self.target)
                if "pid" in handlers:
                    handlers["pid"](msg)
            elif kind == "error":
                err = _error_of(msg)
                err.child_trace = msg.get("trace")  # type: ignore[attr-defined]
                raise err
            elif kind in handlers:
                reply = handlers[kind](msg) or {}
                fds = reply.pop("_fds", [])
                try:
                    wire.send(self.ours, json.dumps({"type": "ok", **reply}).encode(), fds)
                finally:
                    for fd in fds:
                        os.close(fd)
            else:
                raise MinirunError(f"set-up process sent an unknown message {kind!r}")

    def send(self, msg: dict) -> None:
        wire.send(self.ours, json.dumps(msg).encode())

    @property
    def target_pid(self) -> int:
        if not self.target:
            raise MinirunError("the set-up process exited before forking the container's "
                               "process")
        return self.target

    def release_setup_process(self) -> None:
        """Tell the set-up process it may exit, and reap it."""
        os.write(self.done_w, b"d")
        os.waitpid(self.child, 0)
        self.pids.remove(self.child)

    def close(self) -> None:
        self.ours.close()
        os.close(self.done_w)

    def abort(self) -> None:
        """Kill what was started and wait until it is gone."""
        for pid in reversed(self.pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                wait_gone(pid, None)
        self.pids.clear()


def wait_gone(pid: int, pidfd: int | None, timeout: float = 10.0) -> None:
    """Wait until a process we cannot waitpid (not our child) has exited."""
    import select

    from minirun import syscalls

    own = pidfd is None
    if own:
        try:
            pidfd = syscalls.pidfd_open(pid)
        except MinirunError:
            return
    try:
        select.select([pidfd], [], [], timeout)
    finally:
        if own:
            os.close(pidfd)
