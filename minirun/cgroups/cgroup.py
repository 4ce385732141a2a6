"""One container's cgroup in the cgroup v2 hierarchy: create, limit, join, freeze, kill,
observe, remove. Only ever touches the cgroup2 mount it was given (never v1)."""

from __future__ import annotations

import errno
import os
import select
import time
from _collections_abc import Iterable  # collections.abc without collections (1.5 ms)

from minirun.cgroups import convert, stats
from minirun.cgroups.host import CgroupError
from minirun.errors import errno_name
from minirun.lite import signal

DEFAULT_PARENT = "minirun"
FREEZE_TIMEOUT = 5.0  # s; freezing waits for tasks to reach a freezable point
DESTROY_TIMEOUT = 5.0  # s; rmdir waits for the processes to leave


def _reason(err: OSError) -> str:
    return f"{os.strerror(err.errno)} ({errno_name(err.errno)})" if err.errno else str(err)


def write_file(path: str, value: str) -> None:
    """One write(2) of value, as cgroup files expect (never creates the file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read_file(path: str) -> str:
    with open(path) as f:
        return f.read()


def join(procs_fd: int, pid: int = 0) -> None:
    """Move the calling process (or `pid`) into the cgroup whose cgroup.procs procs_fd
    is open on (see Cgroup.open_procs): the kernel checks the credentials of the opener,
    so this works after the caller dropped its privileges or entered its namespaces."""
    for attempt in range(5):
        try:
            os.write(procs_fd, str(pid).encode())
            return
        except OSError as e:
            if e.errno != errno.EINVAL or attempt == 4:
                raise CgroupError(f"cgroups: join the container's cgroup: {_reason(e)}") from None
            time.sleep(0.01)


class Cgroup:
    """The cgroup at `path` (as in /proc/PID/cgroup, e.g. /minirun/ID) under `mount`."""

    def __init__(self, mount: str, path: str) -> None:
        parts = path.strip("/").split("/")
        if not path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise CgroupError(f"cgroups: {path!r}: not an absolute cgroup path below the root")
        self.mount = os.path.normpath(mount)
        if not os.path.exists(os.path.join(self.mount, "cgroup.controllers")):
            raise CgroupError(f"cgroups: {mount} is not a cgroup2 mount: refusing to touch it")
        self.path = "/" + "/".join(parts)
        self.dir = self.mount + self.path
        self.made_parents: list[str] = []

    def __repr__(self) -> str:
        return f"Cgroup({self.dir!r})"

    def _file(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    # ----------------------------------------------------------------- creation

    def create(self, needed_controllers: Iterable[str] = ()) -> None:
        """mkdir -p the path, enabling the controllers in every ancestor's
        cgroup.subtree_control so that the cgroup has their files. Undoes its own
        mkdirs if it fails."""
        needed = set(needed_controllers)
        for attempt in range(5):
            created: list[str] = []
            try:
                self._create_path(needed, created)
                # The ancestors this create made (not the leaf): delete removes them
                # again when they are empty, so nothing `create` made outlives it.
                self.made_parents = [d for d in created if d != self.dir]
                return
            except OSError as e:
                # A parent removed under us (another container's destroy() takes the
                # shared parent when it looks empty): ENOENT, or ENODEV from the files
                # of a cgroup being removed. Make the path again.
                self._undo(created)
                if e.errno not in (errno.ENOENT, errno.ENODEV):
                    raise CgroupError(f"cgroups: create {self.dir}: {_reason(e)}") from None
                if attempt == 4:
                    raise CgroupError(f"cgroups: create {self.dir}: its parent keeps "
                                      "disappearing") from None
            except BaseException:
                self._undo(created)
                raise

    def _create_path(self, needed: set[str], created: list[str]) -> None:
        parent = self.mount
        for name in self.path.strip("/").split("/"):
            self._enable_in(parent, needed)
            child = os.path.join(parent, name)
            try:
                os.mkdir(child, 0o755)
                created.append(child)
            except FileExistsError:
                pass
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.ENODEV):
                    raise  # the parent went away: create() starts over
                raise CgroupError(f"cgroups: mkdir {child}: {_reason(e)}") from None
            parent = child

    @staticmethod
    def _undo(created: list[str]) -> None:
        for path in reversed(created):
            try:
                os.rmdir(path)
            except OSError:
                pass

    def enable(self, controllers: Iterable[str]) -> None:
        """Make sure every ancestor delegates these controllers (idempotent)."""
        needed = set(controllers)
        if not needed:
            return
        parent = self.mount
        for name in self.path.strip("/").split("/"):
            self._enable_in(parent, needed)
            parent = os.path.join(parent, name)

    @staticmethod
    def _enable_in(directory: str, controllers: set[str]) -> None:
        control = os.path.join(directory, "cgroup.subtree_control")
        missing = controllers - set(read_file(control).split())
        for name in sorted(missing):
            try:
                write_file(control, f"+{name}")
            except OSError as e:
                if e.errno == errno.ENODEV:
                    raise  # the cgroup is being removed: create() starts over
                # (ENOENT here is the kernel's word for a controller it cannot enable)
                raise CgroupError(_enable_error(directory, name, e)) from None

    # ----------------------------------------------------------------- limits

    def apply(self, res: dict, *, devices: bool = True,
              spec_device_paths: Iterable[str] = ()) -> None:
        """Write every limit of linux.resources (validated by validate_resources), with
        runc's conversions; then (devices=True) install the device filter made of
        res["devices"] and runc's default allow-list, replacing the previous one."""
        self.enable(convert.needed_controllers(res))
        memory = res.get("memory") or {}
        if memory.get("checkBeforeUpdate"):
            self._check_memory_usage(memory.get("limit") or 0)
        retry: list[convert.Write] = []
        for write in convert.plan(res):
            self._write(write, retry)
        for write in retry:
            self._write(write, None)
        if devices:
            self.set_devices(res.get("devices"), spec_device_paths)

    def set_devices(self, rules: object, spec_device_paths: Iterable[str] = ()) -> None:
        from minirun.cgroups import devices

        devices.install(self.dir, devices.compile_program(rules, spec_device_paths))

    def _write(self, write: convert.Write, retry: list | None) -> None:
        name, value = self._target(write)
        path = self._file(name)
        if write.kind in ("swap", "rsvd", "unified") and not os.path.exists(path):
            if write.kind == "rsvd" or (write.kind == "swap" and value in ("max", "0")):
                return  # nothing to lift: the kernel has no such accounting
            if write.kind == "swap":
                raise CgroupError(f"{write.field}: this kernel does not account swap "
                                  f"(no memory.swap.max in {self.dir})")
            raise CgroupError(f"{write.field}: no such file in the cgroup ({path}): unknown "
                              "key, or a controller the cgroup does not have")
        try:
            write_file(path, value)
        except OSError as e:
            if write.kind == "burst" and e.errno == errno.EINVAL and retry is not None:
                retry.append(write)  # burst above the old quota: after cpu.max
                return
            raise CgroupError(f"{write.field}: write {value!r} to {path}: {_reason(e)}") from None

    def _target(self, write: convert.Write) -> tuple[str, str]:
        """Which file a blockIO weight goes to: BFQ's when it takes it, else io.weight."""
        if write.kind not in ("bfq", "bfq-device"):
            return write.file, write.value
        bfq = self._file("io.bfq.weight")
        if os.path.exists(bfq):
            # a kernel with per-device BFQ weights shows "default N" lines, not a number
            if write.kind == "bfq" or not read_file(bfq).strip().isdigit():
                return "io.bfq.weight", write.value
        return "io.weight", write.alt

    def _check_memory_usage(self, limit: int) -> None:
        if limit <= 0 or not os.path.exists(self._file("memory.current")):
            return
        usage = int(read_file(self._file("memory.current")))
        if usage >= limit:
            raise CgroupError(f"linux.resources.memory.limit: {limit} is below the "
                              f"container's current memory usage ({usage}) "
                              "(checkBeforeUpdate)")

    # ----------------------------------------------------------------- processes

    def add_pid(self, pid: int) -> None:
        """Move a process (all its threads) into the cgroup."""
        for attempt in range(5):
            try:
                write_file(self._file("cgroup.procs"), str(pid))
                return
            except OSError as e:
                # EINVAL: a task still being forked (TASK_NEW), as runc retries
                if e.errno == errno.EINVAL and attempt < 4:
                    time.sleep(0.03)
                    continue
                raise CgroupError(f"cgroups: move process {pid} into {self.dir}: "
                                  f"{_reason(e)}") from None

    def open_procs(self) -> int:
        """An O_CLOEXEC fd on cgroup.procs, for join() from a process that can no longer
        reach or write the cgroup by path (after pivot_root, setuid, capability drop)."""
        try:
            return os.open(self._file("cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        except OSError as e:
            raise CgroupError(f"cgroups: open {self._file('cgroup.procs')}: "
                              f"{_reason(e)}") from None

    def pids(self) -> list[int]:
        """Every process in the cgroup and its descendants."""
        out: list[int] = []
        for dirpath, _, _ in os.walk(self.dir):
            try:
                out += [int(p) for p in read_file(os.path.join(dirpath, "cgroup.procs")).split()]
            except FileNotFoundError:
                pass  # a sub-cgroup removed meanwhile
        return out

    def events(self) -> dict[str, str]:
        """cgroup.events: populated and frozen, "0" or "1"."""
        text = read_file(self._file("cgroup.events"))
        return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)

    # ----------------------------------------------------------------- freezer

    def freeze(self, timeout: float = FREEZE_TIMEOUT) -> None:
        self._set_frozen(True, timeout)

    def thaw(self, timeout: float = FREEZE_TIMEOUT) -> None:
        self._set_frozen(False, timeout)

    def is_frozen(self) -> bool:
        """Frozen now (cgroup.events); a paused cgroup whose tasks are dying of a fatal
        signal is momentarily not."""
        return self.events().get("frozen") == "1"

    def freeze_requested(self) -> bool:
        """Paused by us (cgroup.freeze), whatever the tasks are doing right now."""
        try:
            return read_file(self._file("cgroup.freeze")).strip() == "1"
        except FileNotFoundError:
            return False

    def _set_frozen(self, frozen: bool, timeout: float) -> None:
        path = self._file("cgroup.freeze")
        if not os.path.exists(path):
            raise CgroupError(f"cgroups: {self.dir} has no cgroup.freeze (the cgroup v2 "
                              "freezer needs Linux 5.2)")
        try:
            write_file(path, "1" if frozen else "0")
        except OSError as e:
            raise CgroupError(f"cgroups: write cgroup.freeze in {self.dir}: {_reason(e)}") from None
        self._wait_event("frozen", "1" if frozen else "0", timeout)

    def _wait_event(self, key: str, want: str, timeout: float) -> None:
        """Wait until cgroup.events says key=want (the kernel signals changes with
        POLLPRI on the file; the poll is capped in case a notification is missed)."""
        deadline = time.monotonic() + timeout
        fd = os.open(self._file("cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            poller = select.poll()
            poller.register(fd, select.POLLPRI)
            while True:
                text = os.pread(fd, 4096, 0).decode()
                if f"{key} {want}" in text.splitlines():
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    state = "frozen" if want == "1" else "thawed"
                    raise CgroupError(f"cgroups: {self.dir} not {state} after {timeout:g} s "
                                      f"(cgroup.events: {' '.join(text.split())})")
                poller.poll(min(left, 0.05) * 1000)
        finally:
            os.close(fd)

    # ----------------------------------------------------------------- signals

    def kill_all(self, sig: int) -> None:
        """Signal every process of the cgroup and its descendants: cgroup.kill for
        SIGKILL when the kernel has it (5.14), else freeze, signal each, thaw (a cgroup
        that was already frozen stays frozen: its processes handle the signal when
        resumed, though a fatal one kills them at once, as cgroup v2 does)."""
        if sig == signal.SIGKILL and os.path.exists(self._file("cgroup.kill")):
            try:
                write_file(self._file("cgroup.kill"), "1")
                return
            except OSError as e:
                raise CgroupError(f"cgroups: write cgroup.kill in {self.dir}: "
                                  f"{_reason(e)}") from None
        # frozen, no process can fork a new one between the listing and the signals
        pause = os.path.exists(self._file("cgroup.freeze")) and not self.freeze_requested()
        if pause:
            self.freeze()
        try:
            for pid in self.pids():
                self._signal(pid, sig)
        finally:
            if pause:
                self.thaw()

    def _signal(self, pid: int, sig: int) -> None:
        """Signal through a pidfd, after checking the pid is still one of ours (a pid
        that exited and was reused by another process is left alone)."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        try:
            if self._contains(pid):
                signal.pidfd_send_signal(pidfd, sig)
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)

    def _contains(self, pid: int) -> bool:
        try:
            text = read_file(f"/proc/{pid}/cgroup")
        except FileNotFoundError:
            return False
        path = next((line[3:] for line in text.splitlines() if line.startswith("0::")), "")
        return path == self.path or path.startswith(self.path + "/")

    # ----------------------------------------------------------------- observation

    def stats(self) -> dict:
        """runc's `events --stats` "data" object, from what the hierarchy has."""
        return stats.collect(self.dir, self.pids)

    def oom_count(self) -> int:
        """How many processes the OOM killer killed in the cgroup (memory.events)."""
        try:
            text = read_file(self._file("memory.events"))
        except FileNotFoundError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    # ----------------------------------------------------------------- removal

    def destroy(self, timeout: float = DESTROY_TIMEOUT) -> None:
        """Remove the cgroup (sub-cgroups first), waiting up to timeout for exiting
        processes to leave; then, if empty, the ancestors create() made and the default
        parent (mount/minirun)."""
        if not self.exists():
            return
        deadline = time.monotonic() + timeout
        for dirpath, _, _ in list(os.walk(self.dir, topdown=False)):
            self._rmdir(dirpath, deadline)
        parents = sorted(set(self.made_parents) | {os.path.join(self.mount, DEFAULT_PARENT)},
                         key=len, reverse=True)
        for parent in parents:
            if parent.startswith(self.mount + "/") and self.dir.startswith(parent + "/"):
                try:
                    os.rmdir(parent)
                except OSError:
                    pass  # other containers still there, or already gone

    def _rmdir(self, path: str, deadline: float) -> None:
        delay = 0.005
        while True:
            try:
                os.rmdir(path)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                busy = e.errno == errno.EBUSY
                if not busy or time.monotonic() > deadline:
                    left = f": processes still in it: {self.pids()}" if busy else ""
                    raise CgroupError(f"cgroups: remove {path}: {_reason(e)}{left}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)


def _enable_error(directory: str, name: str, err: OSError) -> str:
    why = {
        errno.EBUSY: f"{directory} has processes of its own, and cgroup v2 only delegates "
                     "controllers from cgroups without processes (no internal processes)",
        errno.ENOENT: f"{directory} does not have it to delegate (not in its cgroup.controllers)",
        errno.EINVAL: f"{directory} does not have it to delegate (not in its cgroup.controllers)",
        errno.EOPNOTSUPP: f"{directory} is a threaded cgroup, and {name} is not threaded",
    }.get(err.errno, _reason(err))
    return f"cgroups: cannot enable the {name} controller for the container: {why}"
