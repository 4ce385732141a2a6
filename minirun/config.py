"""Reading and validating a bundle's config.json.

`load(bundle)` returns the config as the plain dict the OCI spec describes, checked
field by field: every problem is a ConfigError naming the field path
(`process.args[0]`, `linux.namespaces[2].type`) and why. Later stages can then trust
types and ranges and read the dict directly. Unknown fields are ignored, as the spec
asks; fields minirun cannot honour yet are refused, never silently dropped.
"""

import os

from minirun.errors import ConfigError
from minirun.linux.capabilities import CAP_NUMBERS, CAP_SETS
from minirun.lite import json

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
RLIMITS = (
    "RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
    "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
    "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
)
PROPAGATIONS = ("shared", "slave", "private", "unbindable",
                "rshared", "rslave", "rprivate", "runbindable")
DEVICE_TYPES = ("c", "b", "u", "p")
U32 = 2**32 - 1
U64 = 2**64 - 1

# Features whose own issue has not landed yet: refused with this reason.
NOT_YET = "not supported by this minirun version yet"


def load(bundle: str) -> dict:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError("", f"{path}: no such file (is {bundle} an OCI bundle?)") from None
    except OSError as e:
        raise ConfigError("", f"{path}: {e.strerror}") from None
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise ConfigError("", f"{path}: nested too deeply to be a config") from None
    except json.JSONDecodeError as e:
        raise ConfigError("", f"{path}: invalid JSON at line {e.lineno} column {e.colno}: "
                              f"{e.msg}") from None
    except UnicodeDecodeError as e:
        raise ConfigError("", f"{path}: not UTF-8 text: {e.reason}") from None
    try:
        from minirun.fieldnames import canonical

        canonical(doc)
        validate(doc)
    except RecursionError:
        raise ConfigError("", f"{path}: nested too deeply to be a config") from None
    return doc


# ---------------------------------------------------------------- type checkers

def _type_name(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _expect(value: object, kind: type, path: str, what: str) -> None:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise ConfigError(path, f"expected {what}, got {_type_name(value)}")


def obj(value: object, path: str) -> dict:
    _expect(value, dict, path, "an object")
    return value  # type: ignore[return-value]


def string(value: object, path: str) -> str:
    _expect(value, str, path, "a string")
    return value  # type: ignore[return-value]


def boolean(value: object, path: str) -> bool:
    _expect(value, bool, path, "a boolean")
    return value  # type: ignore[return-value]


def integer(value: object, path: str, lo: int, hi: int) -> int:
    _expect(value, int, path, "an integer")
    if not lo <= value <= hi:  # type: ignore[operator]
        raise ConfigError(path, f"{value} is out of range [{lo}, {hi}]")
    return value  # type: ignore[return-value]


def array(value: object, path: str) -> list:
    _expect(value, list, path, "an array")
    return value  # type: ignore[return-value]


def strings(value: object, path: str) -> list[str]:
    for i, item in enumerate(array(value, path)):
        string(item, f"{path}[{i}]")
    return value  # type: ignore[return-value]


def abspath(value: object, path: str) -> str:
    s = string(value, path)
    if not s.startswith("/"):
        raise ConfigError(path, f"{s!r} must be an absolute path")
    return s


def _opt(doc: dict, key: str, path: str, check, *args):
    """Check doc[key] with `check` if present (and not null); return it or None."""
    value = doc.get(key)
    if value is None:
        return None
    return check(value, f"{path}.{key}" if path else key, *args)


# ---------------------------------------------------------------- the sections

def validate(doc: object) -> None:
    doc = obj(doc, "(config.json)")
    version = string(doc.get("ociVersion"), "ociVersion")
    if not is_semver(version):
        raise ConfigError("ociVersion", f"{version!r} is not a SemVer 2.0.0 version")
    _root(obj(doc.get("root"), "root"))
    if "process" not in doc:
        raise ConfigError("process", "missing: the container needs a process to run")
    _process(obj(doc["process"], "process"))
    _opt(doc, "hostname", "", string)
    _opt(doc, "domainname", "", string)
    for i, m in enumerate(_opt(doc, "mounts", "", array) or []):
        _mount(obj(m, f"mounts[{i}]"), f"mounts[{i}]")
    annotations = _opt(doc, "annotations", "", obj) or {}
    for key, value in annotations.items():
        if not key:
            raise ConfigError("annotations", "keys must not be empty")
        string(value, f"annotations.{key}")
    if doc.get("hooks"):
        from minirun import hooks

        hooks.validate(doc["hooks"])
    linux = obj(doc.get("linux", {}), "linux")
    _linux(linux)
    _cross_checks(doc, linux)


def validate_process(proc: object) -> None:
    """A process object on its own (`exec --process FILE`)."""
    _process(obj(proc, "process"))


def _root(root: dict) -> None:
    string(root.get("path"), "root.path")
    if not root["path"]:
        raise ConfigError("root.path", "must not be empty")
    _opt(root, "readonly", "root", boolean)


def _process(proc: dict) -> None:
    p = "process"
    args = proc.get("args")
    if args is None:
        raise ConfigError(f"{p}.args", "missing: nothing to execute")
    strings(args, f"{p}.args")
    if not args:
        raise ConfigError(f"{p}.args", "must not be empty: nothing to execute")
    if not args[0]:
        raise ConfigError(f"{p}.args[0]", "must not be empty")
    if proc.get("commandLine"):
        raise ConfigError(f"{p}.commandLine", "is for Windows containers")
    cwd = proc.get("cwd", "/")
    abspath(cwd, f"{p}.cwd")
    for i, e in enumerate(_opt(proc, "env", p, strings) or []):
        if "=" not in e:
            raise ConfigError(f"{p}.env[{i}]", f"{e!r} is not of the form KEY=value")
    _opt(proc, "terminal", p, boolean)
    size = _opt(proc, "consoleSize", p, obj) or {}
    _opt(size, "height", f"{p}.consoleSize", integer, 0, 65535)
    _opt(size, "width", f"{p}.consoleSize", integer, 0, 65535)
    _opt(proc, "noNewPrivileges", p, boolean)
    _opt(proc, "oomScoreAdj", p, integer, -1000, 1000)
    _user(obj(proc.get("user", {}), f"{p}.user"))
    caps = _opt(proc, "capabilities", p, obj) or {}
    for name in CAP_SETS:
        for i, cap in enumerate(_opt(caps, name, f"{p}.capabilities", strings) or []):
            if cap not in CAP_NUMBERS:
                raise ConfigError(f"{p}.capabilities.{name}[{i}]",
                                  f"unknown capability {cap!r}")
    seen = set()
    for i, rl in enumerate(_opt(proc, "rlimits", p, array) or []):
        _rlimit(obj(rl, f"{p}.rlimits[{i}]"), f"{p}.rlimits[{i}]", seen)
    for key in ("apparmorProfile", "selinuxLabel"):
        if proc.get(key):
            raise ConfigError(f"{p}.{key}", _lsm_refusal(key))


def _user(user: dict) -> None:
    p = "process.user"
    _opt(user, "uid", p, integer, 0, U32)
    _opt(user, "gid", p, integer, 0, U32)
    _opt(user, "umask", p, integer, 0, 0o777)
    for i, g in enumerate(_opt(user, "additionalGids", p, array) or []):
        integer(g, f"{p}.additionalGids[{i}]", 0, U32)
    if user.get("username"):
        raise ConfigError(f"{p}.username", "is for Windows containers")


def _rlimit(rl: dict, p: str, seen: set) -> None:
    kind = string(rl.get("type"), f"{p}.type")
    if kind not in RLIMITS:
        raise ConfigError(f"{p}.type", f"unknown rlimit {kind!r}")
    if kind in seen:
        raise ConfigError(f"{p}.type", f"{kind} is set twice")
    seen.add(kind)
    soft = integer(rl.get("soft"), f"{p}.soft", 0, U64)
    hard = integer(rl.get("hard"), f"{p}.hard", 0, U64)
    if soft > hard:
        raise ConfigError(p, f"{kind}: soft limit {soft} is above hard limit {hard}")


def _mount(m: dict, p: str) -> None:
    dest = string(m.get("destination"), f"{p}.destination")
    if not dest:
        raise ConfigError(f"{p}.destination", "must not be empty")
    _opt(m, "type", p, string)
    _opt(m, "source", p, string)
    _opt(m, "options", p, strings)
    if m.get("uidMappings") or m.get("gidMappings"):
        raise ConfigError(f"{p}.uidMappings", f"id-mapped mounts are {NOT_YET}")
    opts = m.get("options") or []
    is_bind = m.get("type") == "bind" or "bind" in opts or "rbind" in opts
    if is_bind and not m.get("source"):
        raise ConfigError(f"{p}.source", "a bind mount needs a source")


def _id_mappings(value: object, p: str) -> None:
    for i, mapping in enumerate(array(value, p)):
        mp = f"{p}[{i}]"
        mapping = obj(mapping, mp)
        integer(mapping.get("containerID"), f"{mp}.containerID", 0, U32)
        integer(mapping.get("hostID"), f"{mp}.hostID", 0, U32)
        integer(mapping.get("size"), f"{mp}.size", 1, U32)


def _linux(linux: dict) -> None:
    seen: dict[str, int] = {}
    for i, ns in enumerate(_opt(linux, "namespaces", "linux", array) or []):
        np = f"linux.namespaces[{i}]"
        ns = obj(ns, np)
        kind = string(ns.get("type"), f"{np}.type")
        if kind not in NAMESPACE_TYPES:
            raise ConfigError(f"{np}.type", f"unknown namespace type {kind!r} "
                                            f"(known: {', '.join(NAMESPACE_TYPES)})")
        if kind in seen:
            raise ConfigError(f"{np}.type", f"namespace {kind!r} listed twice "
                                            f"(also linux.namespaces[{seen[kind]}])")
        seen[kind] = i
        if ns.get("path") is not None:
            abspath(ns["path"], f"{np}.path")
    for key in ("uidMappings", "gidMappings"):
        if linux.get(key) is not None:
            _id_mappings(linux[key], f"linux.{key}")
    offsets = _opt(linux, "timeOffsets", "linux", obj) or {}
    for clock, off in offsets.items():
        tp = f"linux.timeOffsets.{clock}"
        if clock not in ("monotonic", "boottime"):
            raise ConfigError(tp, "only monotonic and boottime clocks can be offset")
        off = obj(off, tp)
        _opt(off, "secs", tp, integer, -(2**63), 2**63 - 1)
        _opt(off, "nanosecs", tp, integer, 0, 999_999_999)
    for i, dev in enumerate(_opt(linux, "devices", "linux", array) or []):
        _device(obj(dev, f"linux.devices[{i}]"), f"linux.devices[{i}]")
    for key, value in (_opt(linux, "sysctl", "linux", obj) or {}).items():
        string(value, f"linux.sysctl.{key}")
        if "\n" in value or "\0" in value:
            raise ConfigError(f"linux.sysctl.{key}", "the value holds a newline or a NUL: "
                                                     "the kernel would take a part of it")
    for key in ("maskedPaths", "readonlyPaths"):
        for i, path in enumerate(_opt(linux, key, "linux", strings) or []):
            abspath(path, f"linux.{key}[{i}]")
    prop = _opt(linux, "rootfsPropagation", "linux", string)
    if prop and prop not in PROPAGATIONS:
        raise ConfigError("linux.rootfsPropagation", f"unknown propagation {prop!r}")
    _opt(linux, "cgroupsPath", "linux", string)
    _resources(_opt(linux, "resources", "linux", obj) or {})
    if linux.get("seccomp") is not None:
        from minirun.linux import seccomp  # only configs with a profile pay for libseccomp

        seccomp.validate(linux["seccomp"])
    for key in ("intelRdt", "personality"):
        if linux.get(key):
            raise ConfigError(f"linux.{key}", NOT_YET)
    if linux.get("mountLabel"):
        raise ConfigError("linux.mountLabel", _lsm_refusal("selinuxLabel"))


def _lsm_refusal(key: str) -> str:
    """Why a security label cannot be honoured: never dropped silently."""
    if key == "apparmorProfile":
        name, probe = "AppArmor", "/sys/module/apparmor/parameters/enabled"
        try:
            with open(probe) as f:
                enabled = f.read().strip() == "Y"
        except OSError:
            enabled = False
    else:
        name, probe = "SELinux", "/sys/fs/selinux/enforce"
        enabled = os.path.exists(probe)
    if not enabled:
        return f"{name} is not enabled on this host ({probe}), so the label cannot be applied"
    return f"{name} labels are {NOT_YET}"


def _device(dev: dict, p: str) -> None:
    abspath(dev.get("path"), f"{p}.path")
    kind = string(dev.get("type"), f"{p}.type")
    if kind not in DEVICE_TYPES:
        raise ConfigError(f"{p}.type", f"unknown device type {kind!r} (c, b, u or p)")
    if kind != "p":
        # Linux's dev_t: a 12-bit major and a 20-bit minor.
        integer(dev.get("major"), f"{p}.major", 0, 4095)
        integer(dev.get("minor"), f"{p}.minor", 0, 1048575)
    _opt(dev, "fileMode", p, integer, 0, 0o7777)
    _opt(dev, "uid", p, integer, 0, U32)
    _opt(dev, "gid", p, integer, 0, U32)


def _resources(res: dict) -> None:
    """Only the shape of the device rules here: what the host's cgroups can enforce is
    checked at create time by cgroups.validate_resources."""
    for i, rule in enumerate(_opt(res, "devices", "linux.resources", array) or []):
        rp = f"linux.resources.devices[{i}]"
        rule = obj(rule, rp)
        boolean(rule.get("allow"), f"{rp}.allow")
        access = _opt(rule, "access", rp, string) or ""
        if set(access) - set("rwm"):
            raise ConfigError(f"{rp}.access", f"{access!r}: only r, w and m allowed")
        kind = _opt(rule, "type", rp, string)
        if kind not in (None, "a", "c", "b"):
            raise ConfigError(f"{rp}.type", f"unknown device type {kind!r}")


def is_semver(version: str) -> bool:
    """MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] (SemVer 2.0.0's shape, leading zeros
    refused in the numbers), checked by hand: `re` costs a run 5 ms of imports."""
    rest, plus, build = version.partition("+")
    core, dash, pre = rest.partition("-")
    numbers = core.split(".")
    return (len(numbers) == 3
            and all(n == "0" or (n[:1] in _NONZERO and n.isdecimal()) for n in numbers)
            and (not dash or _dotted_ids(pre)) and (not plus or _dotted_ids(build)))


_NONZERO = frozenset("123456789")  # what `[1-9]\d*` starts with (then any decimal digit)
_ID_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-")


def _dotted_ids(text: str) -> bool:
    return all(part and _ID_CHARS.issuperset(part) for part in text.split("."))


def _cross_checks(doc: dict, linux: dict) -> None:
    kinds = {ns["type"]: ns for ns in linux.get("namespaces") or []}
    if "mount" not in kinds:
        raise ConfigError("linux.namespaces", "a mount namespace is required "
                                              "(minirun pivots into root.path)")
    if kinds["mount"].get("path"):
        i = next(i for i, ns in enumerate(linux["namespaces"]) if ns["type"] == "mount")
        raise ConfigError(f"linux.namespaces[{i}].path",
                          "joining a mount namespace is refused: minirun would mount, pivot "
                          "and unmount inside it, and it may be the host's (give the "
                          "container a new one)")
    if (doc.get("hostname") or doc.get("domainname")) and "uts" not in kinds:
        which = "hostname" if doc.get("hostname") else "domainname"
        raise ConfigError(which, "cannot be set without a new uts namespace")
    user = kinds.get("user")
    if user and not user.get("path"):
        if not linux.get("uidMappings") or not linux.get("gidMappings"):
            raise ConfigError("linux.uidMappings", "a new user namespace needs uidMappings "
                                                   "and gidMappings")
        _check_mapped(doc.get("process") or {}, linux)
    elif linux.get("uidMappings") or linux.get("gidMappings"):
        raise ConfigError("linux.uidMappings", "id mappings need a new user namespace")
    if linux.get("timeOffsets"):
        time_ns = kinds.get("time")
        if not time_ns or time_ns.get("path"):
            raise ConfigError("linux.timeOffsets", "time offsets need a new time namespace")
    for key in linux.get("sysctl") or {}:
        _check_sysctl(key, kinds)


def _check_mapped(proc: dict, linux: dict) -> None:
    """The process's ids must exist in the new user namespace (runc: "cannot set uid to
    unmapped user in user namespace")."""
    user = proc.get("user") or {}

    def mapped(value: int, key: str) -> bool:
        return any(m["containerID"] <= value < m["containerID"] + m["size"]
                   for m in linux.get(key) or [])

    checks = [("process.user.uid", user.get("uid", 0), "uidMappings"),
              ("process.user.gid", user.get("gid", 0), "gidMappings")]
    checks += [(f"process.user.additionalGids[{i}]", g, "gidMappings")
               for i, g in enumerate(user.get("additionalGids") or [])]
    for field, value, key in checks:
        if not mapped(value, key):
            raise ConfigError(field, f"{value} is not mapped in the container's user "
                                     f"namespace (linux.{key} maps no such id)")


def _check_sysctl(key: str, kinds: dict) -> None:
    """Only namespaced sysctls may be set, and only with their namespace (as runc)."""
    p = f"linux.sysctl.{key}"
    if "/" in key or ".." in key or key.startswith(".") or not key:
        raise ConfigError(p, "invalid sysctl name")
    ipc = key.startswith("fs.mqueue.") or key in (
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
        "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")
    if ipc:
        need = "ipc"
    elif key.startswith("net."):
        need = "network"
    elif key in ("kernel.hostname", "kernel.domainname"):
        need = "uts"
    else:
        raise ConfigError(p, "not a namespaced sysctl: setting it would change the host")
    if need not in kinds or kinds[need].get("path"):
        raise ConfigError(p, f"needs a new {need} namespace")


def check_id(container_id: str) -> None:
    from minirun.ids import check_id as check

    check(container_id)
