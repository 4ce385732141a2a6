"""Set-up steps: the one place that sees each step of container set-up go by.

Every Linux step (join a namespace, mount, pivot_root, set a capability set...) runs
inside `tracer.step(name, target)`. The tracer times it and hands (name, target,
seconds, error) to its sink: in the runtime's own process the sink is the --debug log;
in the container's set-up processes it is the sync socket back to that process, so the
parent prints every step wherever it ran. A teaching trace can be another sink.

A failure inside a step is labelled with the step, so the one-line error says where:
`mount /proc (mounts[0]): mount /proc/self/fd/7: Operation not permitted (EPERM)`.
"""

import os
import time
from _collections_abc import Callable  # collections.abc without collections (1.5 ms)

from minirun.errors import MinirunError

# Fault injection for the test suite (tests/security/test_faults.py): the process that
# reaches the step (or runtime phase) of this name SIGKILLs itself there. Read once.
FAULT_AT = os.environ.get("MINIRUN_FAULT_AT")


def fault_point(name: str) -> None:
    if FAULT_AT is not None and FAULT_AT == name:
        if os.getpid() == 1:  # the init of a pid namespace ignores its own SIGKILL
            os._exit(137)
        os.kill(os.getpid(), 9)

Sink = Callable[[str, str, float, str | None], None]


class Tracer:
    def __init__(self, sink: Sink | None = None) -> None:
        self.sink = sink

    def step(self, name: str, target: str = "") -> "Step":
        return Step(self, name, target)


class Step:
    __slots__ = ("tracer", "name", "target", "t0")

    def __init__(self, tracer: Tracer, name: str, target: str) -> None:
        self.tracer = tracer
        self.name = name
        self.target = target
        self.t0 = 0.0

    def __enter__(self) -> "Step":
        if FAULT_AT is not None:
            fault_point(self.name)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, kind, exc, tb) -> None:
        took = time.perf_counter() - self.t0
        if exc is None:
            self._emit(took, None)
            return
        new = exc
        label = f"{self.name} {self.target}".strip()
        if isinstance(exc, OSError) and not isinstance(exc, MinirunError):
            new = _from_oserror(exc, label)
        elif isinstance(new, MinirunError) and not getattr(new, "step_labelled", False):
            new.args = (f"{label}: {new}",)
            new.step_labelled = True  # type: ignore[attr-defined]
        self._emit(took, str(new))
        if new is not exc:
            raise new from exc

    def _emit(self, took: float, err: str | None) -> None:
        if self.tracer.sink is not None:
            self.tracer.sink(self.name, self.target, took, err)


def _from_oserror(e: OSError, label: str) -> MinirunError:
    """Python's own os calls raise OSError: give them the same one-line shape."""
    import os

    from minirun.errors import errno_name

    err = e.errno or 0
    path = os.fsdecode(e.filename) if e.filename is not None else ""
    where = f" ({path})" if path and path not in label else ""
    new = MinirunError(f"{label}: {os.strerror(err)} ({errno_name(err)}){where}")
    new.step_labelled = True  # type: ignore[attr-defined]
    return new


def format_step(name: str, target: str, took: float, err: str | None) -> str:
    status = "ok" if err is None else f"FAILED: {err}"
    return f"step {name:<14} {target:<32} {took * 1000:8.2f} ms  {status}"
