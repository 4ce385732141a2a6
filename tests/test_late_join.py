"""What the container's init writes after it joins its cgroup (issue 11's memory goal:
`run /bin/true` under memory.max 256 KiB, measured by `make bench-vm`).

The init joins its cgroup as its last set-up step; from then on every page it writes (a
fresh allocation, or a reference count on a page it still shares copy-on-write with the
runtime) is charged to the container. The user switch follows the join (runc's order:
the seccomp filter, then the user switch), so it only makes syscalls: its Python work
(the capability lists, /proc reads) is done before the join (process.UserSwitch). Counted
here as the minor page faults a forked child takes in it, on a heap it shares with its
parent as the init does: 153 on this machine when the lists were built after the join,
55 now. In a real init, join to exec: 56-60 pages before, 17-20 now; the floor in the VM
(tests/vm/memmin.py): 224 KiB before (416 KiB at 5b23c6f), 128 KiB now."""

from __future__ import annotations

import os
import resource
from collections.abc import Callable

from mkbundle import default_config

from minirun.linux import process
from minirun.steps import Tracer

# Pages the user switch may write after the join: the syscalls' own Python calls.
MAX_FAULTS = 96


def _faults_in_child(prepare: Callable[[], Callable[[], None]]) -> int:
    """Minor page faults of the callable `prepare` returns, run in a forked child
    (what prepare itself does is not counted: it runs before the join)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            run = prepare()
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            run()
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
            os.write(w, str(faults).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    try:
        got = os.read(r, 64)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    assert status == 0 and got, f"the child failed (wait status {status})"
    return int(got)


def test_user_switch_after_the_join_only_makes_syscalls():
    proc = default_config(["/bin/true"])["process"]  # runc spec's: uid 0, five capabilities

    def prepare() -> Callable[[], None]:
        plan = process.UserSwitch(proc, in_userns=False)
        tracer = Tracer(None)
        return lambda: process.switch_user(plan, tracer)

    faults = [_faults_in_child(prepare) for _ in range(3)]
    assert min(faults) <= MAX_FAULTS, (
        f"the user switch wrote {faults} pages after the cgroup join (at most {MAX_FAULTS}): "
        "each is charged to the container's memory.max; move its Python work into "
        "process.UserSwitch")


def test_a_cycle_collection_would_write_far_more():
    """Why the set-up processes never collect cycles: a collection writes to every
    object it visits, each page a copy charged to the container once the init joined."""
    import gc

    faults = _faults_in_child(lambda: gc.collect)
    assert faults > MAX_FAULTS * 4, faults


def test_set_up_processes_run_without_cycle_collection():
    """A collection can start on any allocation (the init's Python after the join
    included): the set-up processes turn it off as they are forked."""
    from minirun.launch import SetupSession

    session = SetupSession()

    def child(sock, _done: int) -> None:
        import gc

        sock.send(b"on" if gc.isenabled() else b"off")

    pid = session.fork(child, close=[])
    try:
        assert session.ours.recv(16) == b"off"
    finally:
        os.waitpid(pid, 0)
        session.close()
