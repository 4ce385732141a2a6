"""linux.resources.devices as a cgroup v2 device filter: a BPF_PROG_TYPE_CGROUP_DEVICE
program that minirun assembles itself and attaches with bpf(2) (csrc/bpf.c).

The semantics are runc's (libcontainer/cgroups/devices' emulator feeding
ebpf/devicefilter), which reproduce the cgroup v1 devices controller:

- the rules are applied in order, starting from "deny everything"; a rule of type "a"
  resets the whole state to allow-all or deny-all, so the last one that matches wins;
- runc's default allow-list (mknod of any device, /dev/null, zero, full, random,
  urandom, tty, ptmx, pts/*, net/tun) is appended after the container's own rules, so a
  container cannot deny those devices; a default device whose path is also in
  linux.devices is left out (as runc's createDevices does);
- removing part of a wildcard rule ("allow c *:* rwm" then "deny c 1:5 rwm") is refused,
  as in runc: the v1 controller ignores it silently.

One deliberate difference: in deny-list mode (after an "allow a" rule) a deny exception
denies any access that overlaps it, as the v1 controller does, where runc's program only
denies an access entirely inside the exception (a "w" deny would let an "rw" open pass).

compile_program() and everything above it are pure (no syscalls, no root). install()
loads the program and attaches it with BPF_F_ALLOW_MULTI, replacing the program it
attached before (BPF_F_REPLACE), so an update never leaves the cgroup unfiltered.
"""

from __future__ import annotations

import os
import struct
from _collections_abc import Iterable  # collections.abc without collections (1.5 ms)

from minirun.errors import ConfigError, MinirunError, SyscallError, errno_name
from minirun.lite.record import record

FIELD = "linux.resources.devices"
WILDCARD = -1
U32_MAX = 2**32 - 1

# include/uapi/linux/bpf.h: enum bpf_devcg_dev_type, bpf_devcg_acc_type
DEV_TYPE = {"b": 1, "c": 2}
ACCESS_BIT = {"m": 1, "r": 2, "w": 4}
ALL_ACCESS = "rwm"
LICENSE = b"Apache"


class Rule(record("Rule", "allow type major minor access origin",
                  defaults=("a", WILDCARD, WILDCARD, ALL_ACCESS, ""))):
    """One device rule: allow or deny `access` (subset of "rwm") to type "a", "b" or "c",
    major:minor (-1 is the wildcard *); origin says where it came from, for errors.
    A plain tuple: dataclasses would cost ~5 ms of imports on every create
    (and namedtuple 1.5 ms: lite.record)."""

    __slots__ = ()

    def __str__(self) -> str:
        num = "*" if self.major == WILDCARD else str(self.major)
        mnr = "*" if self.minor == WILDCARD else str(self.minor)
        return f"{'allow' if self.allow else 'deny'} {self.type} {num}:{mnr} {self.access}"


def _default(path: str | None, kind: str, major: int, minor: int, access: str) -> tuple:
    origin = f"runc's default allow-list ({path or f'{kind} {major}:{minor}'})"
    return path, Rule(True, kind, major, minor, access, origin)


# runc 1.1's specconv.AllowedDevices, in its order.
DEFAULT_ALLOWED: tuple[tuple[str | None, Rule], ...] = (
    _default(None, "c", WILDCARD, WILDCARD, "m"),
    _default(None, "b", WILDCARD, WILDCARD, "m"),
    _default("/dev/null", "c", 1, 3, ALL_ACCESS),
    _default("/dev/random", "c", 1, 8, ALL_ACCESS),
    _default("/dev/full", "c", 1, 7, ALL_ACCESS),
    _default("/dev/tty", "c", 5, 0, ALL_ACCESS),
    _default("/dev/zero", "c", 1, 5, ALL_ACCESS),
    _default("/dev/urandom", "c", 1, 9, ALL_ACCESS),
    _default("/dev/pts/*", "c", 136, WILDCARD, ALL_ACCESS),
    _default("/dev/ptmx", "c", 5, 2, ALL_ACCESS),
    _default("/dev/net/tun", "c", 10, 200, ALL_ACCESS),
)


# --------------------------------------------------------------------------
# Parsing the OCI rules
# --------------------------------------------------------------------------


def parse_rules(items: object, field: str = FIELD) -> list[Rule]:
    """linux.resources.devices (a list of OCI rule objects) → Rules, or a ConfigError
    naming the offending field."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise ConfigError(field, "must be an array of device rules")
    return [_parse_rule(item, f"{field}[{i}]") for i, item in enumerate(items)]


def _parse_rule(item: object, where: str) -> Rule:
    if not isinstance(item, dict):
        raise ConfigError(where, "must be an object {allow, type, major, minor, access}")
    allow = item.get("allow")
    if not isinstance(allow, bool):
        raise ConfigError(f"{where}.allow", "required, true or false")
    kind = item.get("type") or "a"
    if kind not in ("a", "b", "c"):
        raise ConfigError(f"{where}.type", f"{kind!r}: must be a (all), b (block) or c (char)")
    access = item.get("access")
    if not isinstance(access, str) or not access:
        raise ConfigError(f"{where}.access", "required: one or more of r, w and m")
    if set(access) - set(ALL_ACCESS):
        raise ConfigError(f"{where}.access", f"{access!r}: only r, w and m are allowed")
    access = "".join(c for c in ALL_ACCESS if c in access)
    major = _number(item.get("major"), f"{where}.major")
    minor = _number(item.get("minor"), f"{where}.minor")
    return Rule(allow, kind, major, minor, access, where)


def _number(value: object, where: str) -> int:
    if value is None:
        return WILDCARD
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(where, f"{value!r}: must be an integer (or absent for any)")
    if value != WILDCARD and not 0 <= value <= U32_MAX:
        raise ConfigError(where, f"{value}: out of range (0 to {U32_MAX}, or -1 for any)")
    return value


def with_defaults(rules: list[Rule], spec_device_paths: Iterable[str] = ()) -> list[Rule]:
    """The container's rules followed by runc's default allow-list, less the defaults
    whose path linux.devices redefines (runc's createDevices)."""
    redefined = set(spec_device_paths)
    return rules + [rule for path, rule in DEFAULT_ALLOWED if path not in redefined]


# --------------------------------------------------------------------------
# Reducing the ordered rules to a default and exceptions (runc's emulator)
# --------------------------------------------------------------------------

Key = tuple[str, int, int]  # (type, major, minor)


class Policy:
    """What the ordered rules amount to: a default action and the devices that get the
    other one, with the accesses concerned."""

    __slots__ = ("default_allow", "exceptions")

    def __init__(self, default_allow: bool = False,
                 exceptions: dict[Key, str] | None = None) -> None:
        self.default_allow = default_allow
        self.exceptions: dict[Key, str] = exceptions if exceptions is not None else {}

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Policy) and self.default_allow == other.default_allow
                and self.exceptions == other.exceptions)

    def __repr__(self) -> str:
        return f"Policy(default_allow={self.default_allow}, exceptions={self.exceptions})"


def reduce_rules(rules: Iterable[Rule]) -> Policy:
    """Apply the rules in order, as the cgroup v1 devices controller would."""
    policy = Policy()
    for rule in rules:
        if rule.type == "a":
            policy = Policy(default_allow=rule.allow)
        elif rule.allow != policy.default_allow:
            _add_exception(policy, rule)
        else:
            _remove_exception(policy, rule)
    return policy


def _add_exception(policy: Policy, rule: Rule) -> None:
    key = (rule.type, rule.major, rule.minor)
    merged = set(policy.exceptions.get(key, "")) | set(rule.access)
    policy.exceptions[key] = "".join(c for c in ALL_ACCESS if c in merged)


def _remove_exception(policy: Policy, rule: Rule) -> None:
    key = (rule.type, rule.major, rule.minor)
    for wider in ((rule.type, WILDCARD, rule.minor), (rule.type, rule.major, WILDCARD),
                  (rule.type, WILDCARD, WILDCARD)):
        overlap = set(policy.exceptions.get(wider, "")) & set(rule.access)
        if wider != key and overlap:
            shown = Rule(not rule.allow, *wider, policy.exceptions[wider])
            raise ConfigError(rule.origin or FIELD,
                              f"{rule} would punch a hole in the earlier wildcard rule "
                              f"'{shown}': not supported (as in runc); list the devices "
                              "one by one instead")
    left = "".join(c for c in policy.exceptions.get(key, "") if c not in rule.access)
    if left:
        policy.exceptions[key] = left
    else:
        policy.exceptions.pop(key, None)


def allows(policy: Policy, kind: str, major: int, minor: int, access: str) -> bool:
    """The decision the program makes (a reference for tests): kind "b" or "c", access a
    non-empty subset of "rwm"."""
    for (ekind, emajor, eminor), eaccess in policy.exceptions.items():
        if ekind != kind or emajor not in (WILDCARD, major) or eminor not in (WILDCARD, minor):
            continue
        if _access_matches(policy.default_allow, set(access), set(eaccess)):
            return not policy.default_allow
    return policy.default_allow


def _access_matches(default_allow: bool, requested: set, listed: set) -> bool:
    # allow-list mode: an exception grants only an access it covers entirely;
    # deny-list mode: an exception denies any access it touches (v1 semantics).
    return bool(requested & listed) if default_allow else requested <= listed


# --------------------------------------------------------------------------
# Assembling the BPF program
# --------------------------------------------------------------------------

# opcodes (include/uapi/linux/bpf_common.h, bpf.h)
LDX_MEM_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
ALU32_AND_K = 0x54
ALU32_RSH_K = 0x74
ALU32_MOV_K = 0xB4
ALU32_MOV_X = 0xBC
JMP32_JNE_K = 0x56
JMP32_JNE_X = 0x5E
JMP32_JEQ_K = 0x16
EXIT = 0x95
R0, R1, R2, R3, R4, R5 = range(6)


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    if imm > 0x7FFFFFFF:  # a u32 immediate, seen as s32 by the 32-bit jumps
        imm -= 2**32
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _prologue() -> list[bytes]:
    """struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32 minor;}:
    r2 = device type, r3 = access, r4 = major, r5 = minor."""
    return [
        _insn(LDX_MEM_W, R2, R1, 0), _insn(ALU32_AND_K, R2, imm=0xFFFF),
        _insn(LDX_MEM_W, R3, R1, 0), _insn(ALU32_RSH_K, R3, imm=16),
        _insn(LDX_MEM_W, R4, R1, 4),
        _insn(LDX_MEM_W, R5, R1, 8),
    ]


def _verdict(allow: bool) -> list[bytes]:
    return [_insn(ALU32_MOV_K, R0, imm=int(allow)), _insn(EXIT)]


def _block(key: Key, access: str, default_allow: bool) -> list[bytes]:
    """Instructions that return the exception's verdict when the device matches, and
    otherwise fall through to the next block."""
    kind, major, minor = key
    tests: list[tuple] = [(JMP32_JNE_K, R2, 0, DEV_TYPE[kind])]
    bits = sum(ACCESS_BIT[c] for c in access)
    if access != ALL_ACCESS:
        tests.append((ALU32_MOV_X, R1, R3, None))
        tests.append((ALU32_AND_K, R1, 0, bits))
        if default_allow:
            tests.append((JMP32_JEQ_K, R1, 0, 0))  # no access in common: next
        else:
            tests.append((JMP32_JNE_X, R1, R3, None))  # not all covered: next
    if major != WILDCARD:
        tests.append((JMP32_JNE_K, R4, 0, major))
    if minor != WILDCARD:
        tests.append((JMP32_JNE_K, R5, 0, minor))
    length = len(tests) + 2
    out = []
    for pc, (code, dst, src, imm) in enumerate(tests):
        is_jump = code in (JMP32_JNE_K, JMP32_JNE_X, JMP32_JEQ_K)
        off = length - pc - 1 if is_jump else 0  # jump past this block
        out.append(_insn(code, dst, src, off, imm or 0))
    return out + _verdict(not default_allow)


def assemble(policy: Policy) -> bytes:
    """The program for a policy: one block per exception, then the default verdict."""
    insns = _prologue()
    for key in sorted(policy.exceptions, key=lambda k: (k[1], k[2], k[0])):
        insns += _block(key, policy.exceptions[key], policy.default_allow)
    insns += _verdict(policy.default_allow)
    return b"".join(insns)


def compile_program(devices: object, spec_device_paths: Iterable[str] = ()) -> bytes:
    """linux.resources.devices (OCI rule objects) + runc's defaults → program bytes."""
    rules = with_defaults(parse_rules(devices), spec_device_paths)
    return assemble(reduce_rules(rules))


# --------------------------------------------------------------------------
# Loading and attaching (bpf(2) through csrc/bpf.c)
# --------------------------------------------------------------------------


def install(cgroup_dir: str, program: bytes) -> None:
    """Load the program and attach it to the cgroup, in place of the device programs
    attached there before (atomically when there was exactly one)."""
    prog_fd = _load(program)
    cg_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = _attached_fds(cg_fd, cgroup_dir)
        try:
            if len(old) == 1:
                _attach(cg_fd, prog_fd, old[0], cgroup_dir)
            else:
                _attach(cg_fd, prog_fd, -1, cgroup_dir)
                for fd in old:
                    _detach(cg_fd, fd, cgroup_dir)
        finally:
            for fd in old:
                os.close(fd)
    finally:
        os.close(cg_fd)
        os.close(prog_fd)


def attached_ids(cgroup_dir: str) -> list[int]:
    """Ids of the device programs attached to this cgroup (inherited ones excluded)."""
    from minirun._native import ffi, lib

    cg_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        ids = ffi.new("uint32_t[]", 64)
        count = ffi.new("uint32_t *", 64)
        if lib.mr_bpf_query_device_progs(cg_fd, ids, count) < 0:
            raise SyscallError("bpf(BPF_PROG_QUERY)", ffi.errno, cgroup_dir)
        return [ids[i] for i in range(count[0])]
    finally:
        os.close(cg_fd)


def detach_all(cgroup_dir: str) -> None:
    """Remove every device program attached to this cgroup."""
    cg_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for fd in _attached_fds(cg_fd, cgroup_dir):
            try:
                _detach(cg_fd, fd, cgroup_dir)
            finally:
                os.close(fd)
    finally:
        os.close(cg_fd)


def _load(program: bytes) -> int:
    from minirun._native import ffi, lib

    insns = ffi.from_buffer(program)
    count = len(program) // 8
    fd = lib.mr_bpf_load_device_prog(insns, count, LICENSE, ffi.NULL, 0)
    if fd >= 0:
        return fd
    err = ffi.errno
    log = ffi.new("char[]", 65536)  # ask the verifier why
    lib.mr_bpf_load_device_prog(insns, count, LICENSE, log, 65536)
    why = ffi.string(log).decode(errors="replace").strip().splitlines()[-3:]
    raise MinirunError(f"{FIELD}: bpf(BPF_PROG_LOAD) of the device filter ({count} "
                       f"instructions): {os.strerror(err)} ({errno_name(err)})"
                       + (f": {' / '.join(why)}" if why else ""))


def _attached_fds(cg_fd: int, cgroup_dir: str) -> list[int]:
    from minirun._native import ffi, lib

    ids = ffi.new("uint32_t[]", 64)
    count = ffi.new("uint32_t *", 64)
    if lib.mr_bpf_query_device_progs(cg_fd, ids, count) < 0:
        raise SyscallError("bpf(BPF_PROG_QUERY)", ffi.errno, cgroup_dir)
    fds = []
    for i in range(count[0]):
        fd = lib.mr_bpf_prog_fd_by_id(ids[i])
        if fd < 0:
            err = ffi.errno
            for f in fds:
                os.close(f)
            raise SyscallError(f"bpf(BPF_PROG_GET_FD_BY_ID {ids[i]})", err, cgroup_dir)
        fds.append(fd)
    return fds


def _attach(cg_fd: int, prog_fd: int, replace_fd: int, cgroup_dir: str) -> None:
    from minirun._native import ffi, lib

    if lib.mr_bpf_attach_device_prog(cg_fd, prog_fd, replace_fd) < 0:
        raise SyscallError("bpf(BPF_PROG_ATTACH) of the device filter", ffi.errno, cgroup_dir)


def _detach(cg_fd: int, prog_fd: int, cgroup_dir: str) -> None:
    from minirun._native import ffi, lib

    if lib.mr_bpf_detach_device_prog(cg_fd, prog_fd) < 0:
        raise SyscallError("bpf(BPF_PROG_DETACH) of the old device filter", ffi.errno,
                           cgroup_dir)
