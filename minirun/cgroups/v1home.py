"""A container's home on a host with cgroup v1 only (no cgroup2 mounted: RHEL 7, Ubuntu
18.04, Debian 10 booted without the unified hierarchy).

As runc's v1 manager does, the container joins every mounted v1 hierarchy at the same
relative path; one of them is its tracking hierarchy (the freezer's, else pids'), which
gives what the cgroup2 directory gives elsewhere:

    processes (ps, kill --all)   cgroup.procs of the tracking directory and below
    pause / resume               freezer.state FROZEN / THAWED
    devices                      devices.deny "a", then devices.allow per allowed rule
    limits, update, stats        cgroups/v1.py and cgroups/stats_v1.py, as on hybrid hosts
"""

from __future__ import annotations

import os
import time

from minirun.cgroups.cgroup import FREEZE_TIMEOUT, Cgroup, read_file, write_file
from minirun.cgroups.host import CgroupError

TRACKERS = ("freezer", "pids", "devices", "cpu", "memory")


def tracker_of(dirs: dict[str, str]) -> str:
    """The hierarchy that tracks the container's processes."""
    for c in TRACKERS:
        if c in dirs:
            return c
    raise CgroupError("cgroups (v1): none of the freezer, pids, devices, cpu or memory "
                      "hierarchies is mounted: nothing to track the container's processes with")


class V1Home(Cgroup):
    """The Cgroup interface over a container's v1 directories (dirs: controller -> dir)."""

    unified = False

    def __init__(self, dirs: dict[str, str], path: str, made: list[str] | None = None) -> None:
        track = tracker_of(dirs)
        self.tracker = track
        self.dirs = dirs
        self.dir = dirs[track]
        self.path = path
        # the tracking hierarchy's mount point: dir is that mount point + path
        self.mount = self.dir.removesuffix(path.rstrip("/")) or "/"
        self.made_parents: list[str] = []
        self.v1_made = list(made or [])

    def __repr__(self) -> str:
        return f"V1Home({self.dir!r})"

    # ------------------------------------------------------------------ devices

    def set_devices(self, rules: object, spec_device_paths=()) -> None:
        """The reduced rules in v1's own terms: the default for everything ("a"), then
        each exception (runc's v1 order: deny all, then allow the allowed)."""
        d = self.dirs.get("devices")
        if d is None:
            return
        from minirun.cgroups import devices

        policy = devices.reduce_rules(devices.with_defaults(devices.parse_rules(rules),
                                                            spec_device_paths))
        default, other = ("devices.allow", "devices.deny") if policy.default_allow else \
            ("devices.deny", "devices.allow")
        write_file(os.path.join(d, default), "a")
        for (kind, major, minor), access in policy.exceptions.items():
            write_file(os.path.join(d, other), f"{kind} {_num(major)}:{_num(minor)} {access}")

    def apply(self, res: dict, *, devices: bool = True, spec_device_paths=()) -> None:
        """What update leaves to the home (the limits go through cgroups/v1.py)."""
        if devices:
            self.set_devices(res.get("devices"), spec_device_paths)

    # ------------------------------------------------------------------ freezer

    def _state_file(self) -> str:
        d = self.dirs.get("freezer")
        if d is None:
            raise CgroupError("cgroups (v1): no freezer hierarchy is mounted on this host: "
                              "the container cannot be paused")
        return os.path.join(d, "freezer.state")

    def _set_frozen(self, frozen: bool, timeout: float) -> None:
        path = self._state_file()
        want = "FROZEN" if frozen else "THAWED"
        deadline = time.monotonic() + timeout
        while True:
            write_file(path, want)
            state = read_file(path).strip()
            if state == want:
                return
            if time.monotonic() > deadline:
                raise CgroupError(f"cgroups (v1): {os.path.dirname(path)} not {want.lower()} "
                                  f"after {timeout:g} s (freezer.state: {state})")
            time.sleep(0.01)

    def is_frozen(self) -> bool:
        try:
            return read_file(self._state_file()).strip() == "FROZEN"
        except (FileNotFoundError, CgroupError):
            return False

    def freeze_requested(self) -> bool:
        try:
            return read_file(self._state_file()).strip() in ("FREEZING", "FROZEN")
        except (FileNotFoundError, CgroupError):
            return False

    def events(self) -> dict[str, str]:
        return {"populated": "1" if self.pids() else "0",
                "frozen": "1" if self.is_frozen() else "0"}

    # ------------------------------------------------------------------ signals

    def kill_all(self, sig: int) -> None:
        """Freeze, signal every process, thaw (v1 has no cgroup.kill)."""
        pause = "freezer" in self.dirs and not self.freeze_requested()
        if pause:
            self.freeze(FREEZE_TIMEOUT)
        try:
            for pid in self.pids():
                self._signal(pid, sig)
        finally:
            if pause:
                self.thaw(FREEZE_TIMEOUT)

    def _contains(self, pid: int) -> bool:
        try:
            text = read_file(f"/proc/{pid}/cgroup")
        except FileNotFoundError:
            return False
        for line in text.splitlines():
            _, names, path = line.split(":", 2)
            if self.tracker in names.split(","):
                return path == self.path or path.startswith(self.path.rstrip("/") + "/")
        return False

    def oom_count(self) -> int:
        return 0  # container_cgroup reads memory.oom_control through the v1 record

    # ------------------------------------------------------------------ removal

    def destroy(self, timeout: float = 5.0) -> None:
        from minirun.cgroups import v1

        cgs = v1.V1Cgroups(dict(self.dirs))
        cgs.made = list(self.v1_made)
        cgs.destroy()
        left = [d for d in dict.fromkeys(self.dirs.values()) if os.path.isdir(d)]
        if left:
            raise CgroupError(f"cgroups (v1): remove {left[0]}: processes still in it: "
                              f"{self.pids()}")


def _num(n: int) -> str:
    return "*" if n < 0 else str(n)
