"""cgroup v2 for minirun: where the container's cgroup goes, what its limits may be on
this host, and the Cgroup that creates, limits, freezes, kills, observes and removes it.

    mount = find_v2_mount()                      # /sys/fs/cgroup, or .../unified (hybrid)
    validate_resources(resources, mount)         # ConfigError naming the field
    cg = Cgroup(mount, resolve_path(cgroups_path, container_id))
    cg.create(needed_controllers(resources))
    cg.apply(resources)                          # limits + device filter (eBPF)
    ...
    cg.destroy()

Cheap to import (stdlib only); the bpf(2) binding is loaded when a device filter is
installed. Nothing here ever touches a cgroup v1 hierarchy.
"""

from __future__ import annotations

from minirun.cgroups.host import CgroupError, find_v2_mount, own_cgroup
from minirun.errors import ConfigError

__all__ = ["Cgroup", "CgroupError", "find_v2_mount", "join", "needed_controllers",
           "resolve_path", "validate_resources"]

FIELD = "linux.cgroupsPath"
DEFAULT_PARENT = "minirun"


def resolve_path(cgroups_path: str | None, cid: str, own: str | None = None) -> str:
    """linux.cgroupsPath → the cgroup's path in the hierarchy ("/a/b").

    Absolute: as is. Relative: below the parent of the caller's own cgroup, as runc
    does (the caller's cgroup has processes, so it cannot delegate controllers to a
    child). Empty: /minirun/<id>. `own` overrides /proc/self/cgroup (for tests).
    """
    if not cgroups_path:
        if cid in ("", ".", "..") or "/" in cid:
            raise ConfigError(FIELD, f"container id {cid!r} cannot name a cgroup")
        return f"/{DEFAULT_PARENT}/{cid}"
    _check(cgroups_path)
    parts = [p for p in cgroups_path.split("/") if p]
    if not parts:
        raise ConfigError(FIELD, f"{cgroups_path!r}: names the root cgroup; the container "
                          "needs a cgroup of its own")
    if cgroups_path.startswith("/"):
        return "/" + "/".join(parts)
    base = (own if own is not None else own_cgroup()).rstrip("/")
    base = base.rsplit("/", 1)[0] if base else ""
    return f"{base}/{'/'.join(parts)}"


def _check(path: str) -> None:
    if any(p in (".", "..") for p in path.split("/")):
        raise ConfigError(FIELD, f"{path!r}: must not contain '.' or '..' components")
    if any(c in path for c in "\0\n"):
        raise ConfigError(FIELD, f"{path!r}: must not contain NUL or newline characters")


def __getattr__(name: str):  # the rest on first use: `import minirun.cgroups` stays cheap
    if name in ("Cgroup", "join"):
        from minirun.cgroups import cgroup

        return getattr(cgroup, name)
    if name == "validate_resources":
        from minirun.cgroups.validate import validate_resources

        return validate_resources
    if name == "needed_controllers":
        from minirun.cgroups.convert import needed_controllers

        return needed_controllers
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
