"""`--trace FILE`: every set-up step as Chrome trace-event JSON (Perfetto, chrome://tracing).

The steps come from the one tracer every Linux step already runs in (steps.py): the
runtime's own, and those the set-up process and the container's init send back over
the set-up socket with their start time (CLOCK_MONOTONIC, the same clock in every
process). Each process is a track of its own:

    track 1  minirun (the runtime)   phases, fork, messages, hooks, network, start, wait
    track 2  set-up process          namespaces it joins or makes, id maps, fork of init
    track 3  container init          mounts, pivot_root, user, capabilities, cgroup join
    track 4  network helper          its imports, the bridge, veth and nftables steps
                                     (--network bridge only: network/helper.py)

The file is written when the command ends, whether it succeeded or not:
`{"traceEvents": [{"name", "ph", "ts", "dur", "pid", "tid", "args"}, ...]}`, times in
microseconds from the runtime's start.
"""

from __future__ import annotations

import os
import time

TRACKS = {1: "minirun (runtime)", 2: "set-up process", 3: "container init",
          4: "network helper"}
HELPER_TRACK = 4


class Recorder:
    def __init__(self, path: str, command: str) -> None:
        self.path = path
        self.command = command
        self.t0 = time.perf_counter()
        self.events: list[dict] = []
        self.setup_pid = 0  # the set-up process's host pid: its steps go on track 2
        self.default_track = 1  # this process's own steps (the network helper's: 4)

    def _us(self, t: float) -> float:
        return round((t - self.t0) * 1e6, 1)

    def span(self, name: str, start: float, took: float, track: int = 1,
             args: dict | None = None) -> None:
        self.events.append({"name": name, "ph": "X", "ts": self._us(start),
                            "dur": round(took * 1e6, 1), "pid": track, "tid": track,
                            "args": args or {}})

    def instant(self, name: str, track: int = 1, args: dict | None = None) -> None:
        self.events.append({"name": name, "ph": "i", "s": "t",
                            "ts": self._us(time.perf_counter()), "pid": track, "tid": track,
                            "args": args or {}})

    def track_of(self, pid: int | None) -> int:
        if pid is None or pid == os.getpid():
            return self.default_track
        return 2 if pid == self.setup_pid else 3

    def write(self, status: str) -> None:
        import json

        used = {1, 2, 3} | {e["pid"] for e in self.events}
        meta = [{"name": "process_name", "ph": "M", "pid": t, "tid": t, "args": {"name": n}}
                for t, n in TRACKS.items() if t in used]
        self.span(f"minirun {self.command}", self.t0, time.perf_counter() - self.t0,
                  args={"status": status})
        doc = {"traceEvents": meta + self.events, "displayTimeUnit": "ms"}
        with open(self.path, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.write("\n")


ACTIVE: Recorder | None = None


def start(path: str, command: str) -> None:
    global ACTIVE
    ACTIVE = Recorder(path, command)


def step(name: str, target: str, took: float, err: str | None, start: float | None = None,
         pid: int | None = None) -> None:
    """One finished set-up step (from any of the three processes)."""
    if ACTIVE is None:
        return
    begin = start if start is not None else time.perf_counter() - took
    args: dict = {"step": name}
    if err is not None:
        args["error"] = err
    if pid is not None and pid != os.getpid():
        args["pid"] = pid
    ACTIVE.span(f"{name} {target}".strip(), begin, took, ACTIVE.track_of(pid), args)


class Span:
    """`with trace.Span("network"):` times a phase of the runtime itself."""

    __slots__ = ("name", "t0")

    def __init__(self, name: str) -> None:
        self.name = name
        self.t0 = 0.0

    def __enter__(self) -> Span:
        from minirun.steps import FAULT_AT, fault_point

        if FAULT_AT is not None:
            fault_point(self.name)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if ACTIVE is not None:
            args = {"error": str(exc)} if exc is not None else None
            ACTIVE.span(self.name, self.t0, time.perf_counter() - self.t0,
                        ACTIVE.default_track, args)
