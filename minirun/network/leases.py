"""Address leases under --root, one small JSON file per leased address:

    ROOT/.network/BRIDGE/ADDRESS    {"cid", "bridge", "address", "host_veth", "chain"}

A lease names everything made for its container, so that whoever finds it stale can
remove it all. Leases change only under flock(2) on the --root directory itself
(state.py locks the container directories below it, never the root), so concurrent
`create`s get distinct addresses. A lease whose container directory is gone is stale:
its container went without `delete` (a killed `create`, a root cleaned by hand).
Emptied directories are removed: a root without containers holds nothing of ours.
"""

import fcntl
import os

from minirun.errors import MinirunError
from minirun.lite import json
from minirun.network import ipv4

LEASE_DIR = ".network"


class LeaseBook:
    """The leases of one --root, locked while the object is used as a context."""

    def __init__(self, root: str, create: bool = False, held: int = -1) -> None:
        """held: an fd of the root already locked (by `lock`), adopted and closed."""
        self.root = os.path.abspath(root)
        self.dir = os.path.join(self.root, LEASE_DIR)
        self.create = create
        self.fd = held

    def __enter__(self) -> "LeaseBook":
        if self.fd >= 0:
            return self
        if self.create:
            os.makedirs(self.root, mode=0o700, exist_ok=True)  # as state.py's root
        try:
            self.fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return self  # no root, no leases: nothing to lock
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # drops the flock
            self.fd = -1

    def lock(self) -> int:
        """Take the lock and hand its fd over (-1 without a root): for a teardown
        finished by another process, which holds the lock until it is done."""
        self.__enter__()
        fd, self.fd = self.fd, -1
        return fd

    # ------------------------------------------------------------ reading

    def all(self) -> list[dict]:
        out = []
        for bridge in _listdir(self.dir):
            for address in _listdir(os.path.join(self.dir, bridge)):
                lease = self._read(os.path.join(self.dir, bridge, address))
                if lease is not None:
                    out.append(lease)
        return out

    def of_bridge(self, bridge: str) -> list[dict]:
        return [lease for lease in self.all() if lease["bridge"] == bridge]

    def of_container(self, cid: str) -> list[dict]:
        return [lease for lease in self.all() if lease["cid"] == cid]

    def stale(self) -> list[dict]:
        return [lease for lease in self.all()
                if not lease["cid"] or not os.path.isdir(os.path.join(self.root, lease["cid"]))]

    def _read(self, path: str) -> dict | None:
        try:
            with open(path) as f:
                lease = json.load(f)
        except FileNotFoundError:
            return None
        except ValueError:
            # Only a `take` killed while writing leaves a garbled lease: its setup never
            # went further, so the lease is stale and names nothing else to remove.
            lease = {"cid": ""}
        lease["address"] = os.path.basename(path)  # the name is the truth
        lease["bridge"] = os.path.basename(os.path.dirname(path))
        return lease

    # ------------------------------------------------------------ changing

    def take(self, cid: str, bridge: str, subnet: str, gateway: str, wanted: str | None,
             names: dict) -> dict:
        """Lease `wanted` or the lowest free address of subnet on bridge."""
        used = {lease["address"]: lease["cid"] for lease in self.of_bridge(bridge)}
        if wanted is not None:
            if wanted in used:
                raise MinirunError(f"--ip {wanted}: address already leased to container "
                                   f"{used[wanted]!r} on bridge {bridge}")
            address = wanted
        else:
            address = next((a for a in ipv4.hosts(subnet) if a != gateway and a not in used),
                           None)
            if address is None:
                usable = (1 << (32 - ipv4.split(subnet)[1])) - 3  # not network, broadcast, gateway
                raise MinirunError(
                    f"no free address in {subnet} on bridge {bridge}: all {usable} are "
                    "leased (delete a container, or use another --bridge with a larger "
                    "--subnet)")
        lease = {"cid": cid, "bridge": bridge, "address": address, **names}
        self._write(lease)
        return lease

    def _write(self, lease: dict) -> None:
        bdir = os.path.join(self.dir, lease["bridge"])
        os.makedirs(bdir, mode=0o700, exist_ok=True)
        path = os.path.join(bdir, lease["address"])
        # O_EXCL: the lock makes a clash impossible; if it happened, fail loudly
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(lease))

    def release(self, lease: dict) -> None:
        bdir = os.path.join(self.dir, lease["bridge"])
        try:
            os.unlink(os.path.join(bdir, lease["address"]))
        except FileNotFoundError:
            pass
        for d in (bdir, self.dir):  # drop emptied directories, innermost first
            try:
                os.rmdir(d)
            except OSError:  # not empty, or already gone
                break


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
