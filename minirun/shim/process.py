"""The shim's children: minirun commands run in forked copies of the shim, and the
reaper that collects every exit below the shim (it is a child subreaper).

    shim (subreaper, threads)
     ├─ fork: minirun's cli.main(["create", ...]) ── exits once the container is created
     │        └─ container init  ── re-parents to the shim: its exit is the task's
     └─ fork: cli.main(["exec", "--detach", ...]) ── exits at once
              └─ exec'd process  ── re-parents to the shim: its exit is the exec's

A command runs in a fork of the already-imported shim (no interpreter start: minirun's
library code, not the `minirun` program). The reaper is the only caller of wait(2) in
the shim: whoever waits for a pid registers it, and an exit nobody claimed yet (an
init that died before its pid file was read) is kept until someone does.
"""

from __future__ import annotations

import os
import threading
import time


class Reaper:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._exited: dict[int, tuple[int, float]] = {}  # pid -> (exit status, time)
        self._listeners: list = []  # callables (pid, status, when), for the task table
        threading.Thread(target=self._loop, daemon=True, name="reaper").start()

    def on_exit(self, fn) -> None:
        self._listeners.append(fn)

    def _loop(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(0.02)  # no child right now; orphans may re-parent to us later
                continue
            except InterruptedError:
                continue
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code  # killed by a signal: 128+N
            when = time.time()
            with self._cond:
                self._exited[pid] = (code, when)
                if len(self._exited) > 4096:  # exits nobody claims (a container's orphans)
                    for old in list(self._exited)[:1024]:
                        del self._exited[old]
                self._cond.notify_all()
            for fn in list(self._listeners):
                fn(pid, code, when)

    def wait(self, pid: int, timeout: float | None = None) -> tuple[int, float] | None:
        """(exit status, time) of pid, waiting for it; None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while pid not in self._exited:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            return self._exited.pop(pid)

    def exited(self, pid: int) -> tuple[int, float] | None:
        """pid's exit if it was reaped already (kept until asked)."""
        with self._cond:
            return self._exited.get(pid)

    def forget(self, pid: int) -> None:
        with self._cond:
            self._exited.pop(pid, None)


class Result:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code = code
        self.stdout = stdout
        self.stderr = stderr

    @property
    def error(self) -> str:
        """The runtime's own words: its last line on stderr (the shim puts the error of
        its log.json there)."""
        lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit status {self.code}"


def run_minirun(reaper: Reaper, argv: list[str], fds: dict[int, int] | None = None,
                timeout: float = 120.0) -> Result:
    """cli.main(argv) in a fork of this process: fds maps the child's 0-2 (and more) to
    fds of ours; stdout and stderr are captured unless given."""
    import tempfile

    out_f = tempfile.TemporaryFile()
    err_f = tempfile.TemporaryFile()
    fds = dict(fds or {})
    fds.setdefault(1, out_f.fileno())
    fds.setdefault(2, err_f.fileno())
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    fds.setdefault(0, null)
    pid = os.fork()
    if pid == 0:
        code = 127
        try:
            _child_fds(fds)
            from minirun.cli import main

            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - nothing may escape a forked child
            code = 125
        finally:
            import sys

            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001
                    pass
            os._exit(code if isinstance(code, int) else 1)
    os.close(null)
    got = reaper.wait(pid, timeout)
    if got is None:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        got = reaper.wait(pid, 10) or (137, time.time())
    out = _read_all(out_f)
    err = _read_all(err_f)
    return Result(got[0], out, err)


def _child_fds(fds: dict[int, int]) -> None:
    """Put fds at their numbers (through copies above them, so that no mapping
    overwrites the source of another) and make them inheritable."""
    import signal

    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    top = max([*fds, *fds.values()]) + 1
    staged = {target: os.dup2(src, top + i) for i, (target, src) in enumerate(fds.items())}
    for target, tmp in staged.items():
        os.dup2(tmp, target, inheritable=True)
        os.close(tmp)


def _read_all(f) -> str:
    f.seek(0)
    data = f.read()
    f.close()
    return data.decode(errors="replace")
