"""Container state on disk: one directory per container under --root.

Layout of ROOT/ID/: `state.json` (written atomically: temp file + rename) and
`exec.sock` (the created container's init waits on it until `start`). A container
directory is claimed with mkdir(2), which is atomic: of two concurrent `create`s of one
id exactly one wins. Commands that change a container hold flock(2) on its directory,
so they serialize.
"""

import fcntl
import os
import time

from minirun.errors import MinirunError
from minirun.ids import check_id
from minirun.lite import json

STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
EXEC_SOCK = "exec.sock"


class NotFound(MinirunError):
    pass


class Leftover(NotFound):
    """A container directory without state: a create killed before its first write."""


class Unreadable(MinirunError):
    """state.json is there but cannot be parsed (truncated, garbage, not an object)."""


class Store:
    """The --root directory."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        # The root, or the first of its ancestors that exists, must be a directory.
        where = self.root
        while not os.path.exists(where) and where != "/":
            where = os.path.dirname(where)
        if not os.path.isdir(where):
            which = "" if where == self.root else f" ({where} is not a directory)"
            raise MinirunError(f"--root {root}: not a directory{which}")

    def path(self, cid: str) -> str:
        """ROOT/ID, for a valid id only: every command goes through here, so an id like
        `../other-root/x` or `/abs` never reaches the filesystem."""
        check_id(cid)
        return os.path.join(self.root, cid)

    def claim(self, cid: str) -> "ContainerDir":
        """Create the directory of a new container, locked; fails if the id is in use."""
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
        except OSError as e:
            raise MinirunError(f"--root {self.root}: cannot create it: "
                               f"{os.strerror(e.errno or 0)}") from None
        path = self.path(cid)
        try:
            os.mkdir(path, 0o700)  # config.json holds process.env: secrets stay root's
        except FileExistsError:
            raise MinirunError(f"container {cid!r} already exists "
                               f"(in {self.root}; `delete` it first)") from None
        except OSError as e:
            raise MinirunError(f"--root {self.root}: cannot create {cid}: "
                               f"{os.strerror(e.errno or 0)}") from None
        return ContainerDir(cid, path, fcntl.LOCK_EX)

    def open(self, cid: str, exclusive: bool = True) -> "ContainerDir":
        path = self.path(cid)
        try:
            d = ContainerDir(cid, path, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except FileNotFoundError:
            raise NotFound(f"container {cid!r} does not exist (in {self.root})") from None
        if not os.path.exists(os.path.join(path, STATE_FILE)):
            # Removed while we waited for the lock, or a create killed before it wrote
            # anything (we hold the lock: nobody is creating it now).
            left = os.path.isdir(path)
            d.close()
            if left:
                raise Leftover(f"container {cid!r}: left by a create that did not finish "
                               f"(in {self.root}; `delete --force {cid}` removes it)")
            raise NotFound(f"container {cid!r} does not exist (in {self.root})")
        return d

    def remove_leftover(self, cid: str) -> None:
        """Remove the directory a killed create left before recording anything."""
        d = ContainerDir(cid, self.path(cid), fcntl.LOCK_EX)
        try:
            if not os.path.exists(os.path.join(d.path, STATE_FILE)):
                d.remove()
        finally:
            d.close()

    def ids(self) -> list[str]:
        """Every container directory (leftovers of a killed create included)."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        # (".network" and other dot directories are minirun's own, not containers)
        return sorted(n for n in names
                      if not n.startswith(".") and os.path.isdir(os.path.join(self.root, n)))


class ContainerDir:
    """One container's state directory, held under flock while this object lives."""

    def __init__(self, cid: str, path: str, lock: int) -> None:
        self.id = cid
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self.fd, lock)

    def read(self) -> dict:
        try:
            with open(os.path.join(self.path, STATE_FILE)) as f:
                st = json.load(f)
        except OSError as e:
            raise Unreadable(f"container {self.id!r}: unreadable state in {self.path}: "
                             f"{os.strerror(e.errno or 0)}") from None
        except ValueError as e:
            raise Unreadable(f"container {self.id!r}: corrupted state in {self.path} "
                             f"({e.__class__.__name__}); `delete --force {self.id}` still "
                             "removes it") from None
        if not isinstance(st, dict) or not {"id", "status", "pid"} <= st.keys():
            raise Unreadable(f"container {self.id!r}: corrupted state in {self.path} (not a "
                             f"state object); `delete --force {self.id}` still removes it")
        return st

    def write(self, state: dict) -> None:
        tmp = os.path.join(self.path, f".{STATE_FILE}.tmp")
        try:
            _write_private(tmp, json.dumps(state))
            os.rename(tmp, os.path.join(self.path, STATE_FILE))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def save_config(self, cfg: dict) -> None:
        """The validated config, for `exec` defaults and hooks run after `create`."""
        _write_private(os.path.join(self.path, CONFIG_FILE), json.dumps(cfg))

    def load_config(self) -> dict:
        with open(os.path.join(self.path, CONFIG_FILE)) as f:
            return json.load(f)

    def remove(self) -> None:
        for name in os.listdir(self.path):
            try:
                os.unlink(os.path.join(self.path, name))
            except FileNotFoundError:
                pass
        os.rmdir(self.path)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _write_private(path: str, text: str) -> None:
    """A file only its owner reads (0600 whatever the umask), as runc's state files."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except OSError as e:  # a full disk, a read-only --root
        raise MinirunError(f"cannot write the container's state ({path}): "
                           f"{os.strerror(e.errno or 0)}") from None


def rfc3339_now() -> str:
    """UTC time as RFC 3339 with nanoseconds, as runc writes `created`."""
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: tells a live pid from a recycled one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None  # a zombie has exited: the container is stopped
    return int(fields[19])
