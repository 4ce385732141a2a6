"""linux.seccomp: checked, compiled with libseccomp (csrc/seccomp.c), loaded last.

    validate(seccomp)           config time, no root: every field, errors name the field
    compile_filter(seccomp)     the runtime, before fork: a libseccomp filter in memory
                                (every name resolved, every rule added; nothing to import
                                or resolve is left for the init after pivot_root)
    load(filter)                the init, right before exec (without no_new_privs: before
                                the user switch drops CAP_SYS_ADMIN, runc's order); returns
                                the notify fd when the filter has SCMP_ACT_NOTIFY rules
    send_to_listener(...)       the runtime: the container process state and the notify fd
                                to linux.seccomp.listenerPath, as runc does

The semantics are runc's (libcontainer/specconv SetupSeccomp and
libcontainer/seccomp/seccomp_linux.go):
- an empty profile (no defaultAction and no syscalls) means no seccomp at all;
- SCMP_ACT_KILL is SCMP_ACT_KILL_THREAD; SCMP_ACT_ERRNO and SCMP_ACT_TRACE return EPERM
  unless errnoRet/defaultErrnoRet says otherwise (which no other action accepts);
- `flags` absent means SECCOMP_FILTER_FLAG_SPEC_ALLOW when libseccomp and the kernel
  support it; `flags: []` means none;
- libseccomp does not set no_new_privs on load (only process.noNewPrivileges does);
- a rule whose action is the default action is skipped; the arguments of one syscall
  are ANDed in one rule, unless two compare the same argument: then each is a rule of
  its own (ORed), as libseccomp cannot AND two conditions on one argument;
- a syscall that libseccomp knows on some architecture but not on the filter's is
  skipped by libseccomp (engines' profiles list `recv`, `timerfd`, ... unconditionally);
- SCMP_ACT_NOTIFY cannot be the default action, nor apply to `write` (nor, in minirun,
  to sendmsg/sendto: the init hands the notify fd over with them, NOTIFY_REFUSED).
Where runc silently skips names libseccomp cannot resolve, minirun only skips the real
syscalls newer than this libseccomp (NEWER_SYSCALLS, so that engines' profiles keep
working): any other unknown name is an error naming it.

Import this module only when a config has linux.seccomp (it is not needed otherwise),
and before pivot_root: load() imports nothing.
"""

import errno
import os

from minirun import OCI_VERSION
from minirun._native import ffi, lib
from minirun.config import U64, array, integer, obj, string, strings
from minirun.errors import ConfigError, MinirunError, SyscallError, errno_name
from minirun.lite import json, socket

ACTIONS = (
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
)
# Actions that carry a value (errnoRet): the errno returned, or the tracer's message.
ERRNO_ACTIONS = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
OPERATORS = {
    "SCMP_CMP_NE": lib.SCMP_CMP_NE,
    "SCMP_CMP_LT": lib.SCMP_CMP_LT,
    "SCMP_CMP_LE": lib.SCMP_CMP_LE,
    "SCMP_CMP_EQ": lib.SCMP_CMP_EQ,
    "SCMP_CMP_GE": lib.SCMP_CMP_GE,
    "SCMP_CMP_GT": lib.SCMP_CMP_GT,
    "SCMP_CMP_MASKED_EQ": lib.SCMP_CMP_MASKED_EQ,
}
# The runtime spec's names; libseccomp's own name is the lower-case suffix. The last
# four are newer than libseccomp 2.5: accepted only if the library knows them.
ARCHES = (
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
)
# Filter flag -> libseccomp filter attribute (-1: this libseccomp has none for it).
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": lib.SCMP_FLTATR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": lib.SCMP_FLTATR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": lib.SCMP_FLTATR_CTL_SSB,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": lib.MR_SCMP_FLTATR_CTL_WAITKILL,
}
# Real Linux syscalls that a libseccomp build may not know yet (2.5.4 knows none of
# those from statmount on; Debian's adds cachestat..futex_requeue). Like runc, a filter
# cannot name them: their rules are skipped (Filter.skipped) rather than refused.
NEWER_SYSCALLS = frozenset((
    "cachestat", "fchmodat2", "map_shadow_stack", "futex_wake", "futex_wait",
    "futex_requeue", "statmount", "listmount", "lsm_get_self_attr", "lsm_set_self_attr",
    "lsm_list_modules", "mseal", "setxattrat", "getxattrat", "listxattrat", "removexattrat",
    "open_tree_attr", "file_getattr", "file_setattr", "uretprobe", "uprobe",
))
# SCMP_ACT_NOTIFY on these would hang the container's set-up: runc refuses `write`
# (its init writes the fd number to its parent); minirun's init hands the notify fd to
# the runtime over its socket (sendmsg/sendto). Until the agent has the fd, nobody can
# answer a notification.
NOTIFY_REFUSED = ("write", "sendmsg", "sendto")
SECCOMP_FD_NAME = "seccompFd"
MAX_ERRNO = 4095  # the kernel caps SECCOMP_RET_ERRNO data at MAX_ERRNO
# Above this many syscall names, libseccomp's binary-tree layout (as runc does).
OPTIMIZE_ABOVE = 32

P = "linux.seccomp"


def library_version() -> str:
    v = lib.mr_seccomp_version()
    return f"{v >> 16}.{(v >> 8) & 0xFF}.{v & 0xFF}"


def enabled(seccomp: dict | None) -> bool:
    """False for an absent or empty profile (no defaultAction, no syscalls), as runc."""
    return bool(seccomp) and bool(seccomp.get("defaultAction") or seccomp.get("syscalls"))


# ---------------------------------------------------------------- validation

def validate(seccomp: dict) -> None:
    """Check every field of linux.seccomp; raise ConfigError(path, why) on the first bad one."""
    sc = obj(seccomp, P)
    if not enabled(sc):
        return
    default = _action(sc.get("defaultAction"), f"{P}.defaultAction")
    if default == "SCMP_ACT_NOTIFY":
        raise ConfigError(f"{P}.defaultAction", "SCMP_ACT_NOTIFY cannot be the default "
                          "action (the container's set-up itself would wait for the agent)")
    _errno_ret(sc, "defaultErrnoRet", default, f"{P}.defaultErrnoRet")
    arches = _opt_strings(sc, "architectures")
    if arches:
        _add_arches(ffi.gc(lib.mr_seccomp_init(lib.SCMP_ACT_ALLOW), lib.mr_seccomp_release),
                    arches)
    for i, flag in enumerate(_opt_strings(sc, "flags")):
        _check_flag(flag, f"{P}.flags[{i}]")
    listener = sc.get("listenerPath")
    if listener is not None and not string(listener, f"{P}.listenerPath"):
        raise ConfigError(f"{P}.listenerPath", "must not be empty")
    if sc.get("listenerMetadata") is not None:
        string(sc["listenerMetadata"], f"{P}.listenerMetadata")
        if not listener:
            raise ConfigError(f"{P}.listenerMetadata",
                              "must not be set without linux.seccomp.listenerPath")
    notify_at = None
    for i, call in enumerate(_opt_array(sc, "syscalls")):
        action = _syscall(call, f"{P}.syscalls[{i}]")
        if action == "SCMP_ACT_NOTIFY" and notify_at is None:
            notify_at = f"{P}.syscalls[{i}].action"
    if notify_at and not listener:
        raise ConfigError(notify_at, "SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath "
                          "(the socket of the agent that answers the notifications)")


def _opt_array(doc: dict, key: str) -> list:
    value = doc.get(key)
    return [] if value is None else array(value, f"{P}.{key}")


def _opt_strings(doc: dict, key: str) -> list[str]:
    value = doc.get(key)
    return [] if value is None else strings(value, f"{P}.{key}")


def _action(value: object, path: str) -> str:
    if value is None:
        raise ConfigError(path, "required (one of " + ", ".join(ACTIONS) + ")")
    name = string(value, path)
    if name not in ACTIONS:
        raise ConfigError(path, f"unknown seccomp action {name!r} (known: "
                          + ", ".join(ACTIONS) + ")")
    return name


def _errno_ret(doc: dict, key: str, action: str, path: str) -> None:
    value = doc.get(key)
    if value is None:
        return
    if action not in ERRNO_ACTIONS:
        raise ConfigError(path, f"{action} takes no errno (only SCMP_ACT_ERRNO and "
                          "SCMP_ACT_TRACE do)")
    integer(value, path, 0, MAX_ERRNO if action == "SCMP_ACT_ERRNO" else 0xFFFF)


def arch_token(name: str, path: str) -> int:
    """libseccomp's token for a spec architecture name (SCMP_ARCH_X86_64 -> x86_64)."""
    if name not in ARCHES:
        raise ConfigError(path, f"unknown seccomp architecture {name!r} (known: "
                          + ", ".join(ARCHES) + ")")
    token = lib.mr_seccomp_arch_resolve_name(name[len("SCMP_ARCH_"):].lower().encode())
    if token == 0:
        raise ConfigError(path, f"{name} is not supported by libseccomp {library_version()}")
    return token


def _add_arches(ctx, names: list[str]) -> None:
    for i, name in enumerate(names):
        path = f"{P}.architectures[{i}]"
        if lib.mr_seccomp_arch_add(ctx, arch_token(name, path)) == 0:
            continue
        err = ffi.errno
        if err == errno.EEXIST:  # listed twice, or the native one (always there)
            continue
        if err == errno.EDOM:
            raise ConfigError(path, f"{name} cannot share a filter with this machine's "
                              f"{os.uname().machine}: their byte orders differ")
        raise ConfigError(path, f"libseccomp refused {name}: {_strerror(err)}")


def _check_flag(flag: str, path: str) -> None:
    if flag not in FLAGS:
        raise ConfigError(path, f"unknown seccomp flag {flag!r} (known: "
                          + ", ".join(FLAGS) + ")")
    if FLAGS[flag] < 0:
        raise ConfigError(path, f"{flag} is not supported by libseccomp "
                          f"{library_version()} (it needs 2.6)")


def _syscall(call: object, cp: str) -> str:
    call = obj(call, cp)
    names = strings(call.get("names"), f"{cp}.names")
    if not names:
        raise ConfigError(f"{cp}.names", "must list at least one syscall")
    action = _action(call.get("action"), f"{cp}.action")
    _errno_ret(call, "errnoRet", action, f"{cp}.errnoRet")
    for j, name in enumerate(names):
        np = f"{cp}.names[{j}]"
        if resolve(name) == lib.__NR_SCMP_ERROR and name not in NEWER_SYSCALLS:
            raise ConfigError(np, f"unknown syscall {name!r}: no architecture known to "
                              f"libseccomp {library_version()} has a syscall of that name")
        if action == "SCMP_ACT_NOTIFY" and name in NOTIFY_REFUSED:
            if name == "write":  # runc's words
                raise ConfigError(np, "SCMP_ACT_NOTIFY cannot be used for the write syscall")
            raise ConfigError(np, f"SCMP_ACT_NOTIFY cannot be used for the {name} syscall: "
                              "the container's set-up hands the notify fd over with it")
    for k, arg in enumerate(_opt_args(call, cp)):
        ap = f"{cp}.args[{k}]"
        arg = obj(arg, ap)
        index = integer(arg.get("index"), f"{ap}.index", 0, U64)
        if index > 5:
            raise ConfigError(f"{ap}.index", f"{index}: a syscall has 6 arguments, "
                              "indexed 0 to 5")
        integer(arg.get("value"), f"{ap}.value", 0, U64)
        if arg.get("valueTwo") is not None:
            integer(arg["valueTwo"], f"{ap}.valueTwo", 0, U64)
        op = string(arg.get("op"), f"{ap}.op")
        if op not in OPERATORS:
            raise ConfigError(f"{ap}.op", f"unknown seccomp operator {op!r} (known: "
                              + ", ".join(OPERATORS) + ")")
    return action


def _opt_args(call: dict, cp: str) -> list:
    return [] if call.get("args") is None else array(call["args"], f"{cp}.args")


def resolve(name: str) -> int:
    """The syscall's number on the native architecture, libseccomp's pseudo number (< -1)
    for a syscall of other architectures only, or __NR_SCMP_ERROR (-1) if none has it."""
    return lib.mr_seccomp_syscall_resolve_name(name.encode())


# ---------------------------------------------------------------- compilation

class Filter:
    """A libseccomp filter built in this process's memory (inherited across fork)."""

    def __init__(self, ctx, seccomp: dict) -> None:
        self.ctx = ctx
        self.doc = seccomp  # to build it again in a sealed set-up process (linux/sealed.py)
        self.notify = False            # has SCMP_ACT_NOTIFY rules: load() returns an fd
        self.listener_path: str | None = seccomp.get("listenerPath")
        self.listener_metadata: str = seccomp.get("listenerMetadata") or ""
        self.skipped: list[str] = []   # syscall names this libseccomp cannot resolve
        self.rules = 0                 # rules added to libseccomp
        self.enosys = 0                # ENOSYS rules for syscalls newer than the profile

    def attribute(self, attr: int) -> int:
        """A libseccomp filter attribute (lib.SCMP_FLTATR_*), e.g. to check the flags."""
        value = ffi.new("uint32_t *")
        if lib.mr_seccomp_attr_get(self.ctx, attr, value) < 0:
            raise SyscallError("seccomp_attr_get", ffi.errno, f"({P})")
        return value[0]


def _act_value(action: str, errno_ret: int | None) -> int:
    if action == "SCMP_ACT_ERRNO":
        return lib.mr_scmp_act_errno(errno.EPERM if errno_ret is None else errno_ret)
    if action == "SCMP_ACT_TRACE":
        return lib.mr_scmp_act_trace(errno.EPERM if errno_ret is None else errno_ret)
    return {
        "SCMP_ACT_KILL": lib.SCMP_ACT_KILL_THREAD,
        "SCMP_ACT_KILL_THREAD": lib.SCMP_ACT_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS": lib.SCMP_ACT_KILL_PROCESS,
        "SCMP_ACT_TRAP": lib.SCMP_ACT_TRAP,
        "SCMP_ACT_ALLOW": lib.SCMP_ACT_ALLOW,
        "SCMP_ACT_LOG": lib.SCMP_ACT_LOG,
        "SCMP_ACT_NOTIFY": lib.SCMP_ACT_NOTIFY,
    }[action]


def _attr(ctx, attr: int, value: int) -> int:
    """Set a filter attribute: 0, or the errno libseccomp (or the kernel) refused it with."""
    return 0 if lib.mr_seccomp_attr_set(ctx, attr, value) == 0 else ffi.errno


def compile_filter(seccomp: dict) -> Filter | None:
    """Build the filter of a validated linux.seccomp; None if the profile is empty.

    Every syscall name is resolved and every rule added here: call it in the runtime,
    before fork, so that a refusal is reported before any process exists.
    """
    if not enabled(seccomp):
        return None
    default = _act_value(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"))
    raw = lib.mr_seccomp_init(default)
    if raw == ffi.NULL:
        raise SyscallError("seccomp_init", ffi.errno, f"({P}.defaultAction)")
    f = Filter(ffi.gc(raw, lib.mr_seccomp_release), seccomp)
    ctx = f.ctx
    _add_arches(ctx, seccomp.get("architectures") or [])
    flags = seccomp.get("flags")
    if flags is None:
        _attr(ctx, lib.SCMP_FLTATR_CTL_SSB, 1)  # runc's default, when supported
    for i, flag in enumerate(flags or []):
        _check_flag(flag, f"{P}.flags[{i}]")
        err = _attr(ctx, FLAGS[flag], 1)
        if err:
            raise ConfigError(f"{P}.flags[{i}]", f"{flag} is not supported by libseccomp "
                              f"{library_version()} on this kernel: {_strerror(err)}")
    # Only process.noNewPrivileges sets no_new_privs; errors from the kernel as they are.
    for attr, value in ((lib.SCMP_FLTATR_CTL_NNP, 0), (lib.SCMP_FLTATR_API_SYSRAWRC, 1)):
        err = _attr(ctx, attr, value)
        if err:
            raise SyscallError("seccomp_attr_set", err, f"({P})")
    calls = seccomp.get("syscalls") or []
    if sum(len(c["names"]) for c in calls) > OPTIMIZE_ABOVE:
        _attr(ctx, lib.SCMP_FLTATR_CTL_OPTIMIZE, 2)  # best effort, as runc
    for i, call in enumerate(calls):
        _add_rules(f, call, default, f"{P}.syscalls[{i}]")
    if seccomp["defaultAction"] not in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG"):
        _enosys_above(f, calls)
    if f.notify and lib.mr_seccomp_api_get() < 6:
        raise ConfigError(P, "SCMP_ACT_NOTIFY needs libseccomp >= 2.5 and Linux >= 5.7 "
                          f"(libseccomp {library_version()} reports API level "
                          f"{lib.mr_seccomp_api_get()})")
    return f


def _add_rules(f: Filter, call: dict, default: int, cp: str) -> None:
    action = _act_value(call["action"], call.get("errnoRet"))
    if action == default:
        return  # redundant, and libseccomp refuses it
    args = call.get("args") or []
    conds = [(a["index"], OPERATORS[a["op"]], a["value"], a.get("valueTwo") or 0)
             for a in args]
    indexes = [c[0] for c in conds]
    if len(set(indexes)) == len(indexes):
        groups = [conds]               # one rule: all conditions ANDed
    else:
        groups = [[c] for c in conds]  # same argument twice: one rule each (ORed)
    for j, name in enumerate(call["names"]):
        nr = resolve(name)
        if nr == lib.__NR_SCMP_ERROR:
            f.skipped.append(name)  # a syscall newer than libseccomp (validate refuses others)
            continue
        for group in groups:
            n = len(group)
            ret = lib.mr_seccomp_rule_add(
                f.ctx, action, nr, n,
                ffi.new("unsigned int[]", [c[0] for c in group] or [0]),
                ffi.new("int[]", [c[1] for c in group] or [0]),
                ffi.new("uint64_t[]", [c[2] for c in group] or [0]),
                ffi.new("uint64_t[]", [c[3] for c in group] or [0]))
            if ret < 0:
                raise ConfigError(f"{cp}.names[{j}]", f"libseccomp refused the "
                                  f"{call['action']} rule for {name}: {_strerror(ffi.errno)}")
            f.rules += 1
            f.notify = f.notify or call["action"] == "SCMP_ACT_NOTIFY"


ENOSYS_UP_TO = 512  # above every syscall number Linux has on any 64-bit arch today


def _enosys_above(f: Filter, calls: list[dict]) -> None:
    """runc 1.1's rule: a syscall newer than every one the profile names returns ENOSYS,
    not the default action's errno, so a libc falls back (clone3 -> clone) instead of
    failing. Numbers of the native architecture, from the highest named one up."""
    named = {resolve(n) for c in calls for n in c["names"]} - {lib.__NR_SCMP_ERROR}
    if not named:
        return
    enosys = lib.mr_scmp_act_errno(errno.ENOSYS)
    zeros = (ffi.new("unsigned int[]", [0]), ffi.new("int[]", [0]),
             ffi.new("uint64_t[]", [0]), ffi.new("uint64_t[]", [0]))
    if max(named) + 1 < ENOSYS_UP_TO:
        _attr(f.ctx, lib.SCMP_FLTATR_CTL_OPTIMIZE, 2)  # a binary tree, not a long list
    for nr in range(max(named) + 1, ENOSYS_UP_TO):
        if lib.mr_seccomp_rule_add(f.ctx, enosys, nr, 0, *zeros) == 0:
            f.enosys += 1


def _strerror(err: int) -> str:
    return f"{os.strerror(err)} ({errno_name(err)})"


# ---------------------------------------------------------------- loading

def load(f: Filter) -> int | None:
    """seccomp_load: the filter applies to this process from now on, and after exec.

    Call it last before exec: every later syscall goes through the filter. Without
    no_new_privs the kernel requires CAP_SYS_ADMIN. Returns the notify fd (close-on-exec)
    when the filter has SCMP_ACT_NOTIFY rules, else None.
    """
    if lib.mr_seccomp_load(f.ctx) < 0:
        err = ffi.errno
        if err == errno.EACCES:
            raise MinirunError(
                "seccomp: the kernel refuses to load the filter of linux.seccomp: without "
                "process.noNewPrivileges the process needs CAP_SYS_ADMIN at that point "
                "(EACCES)")
        raise SyscallError("seccomp_load", err, f"({P})")
    if not f.notify:
        return None
    fd = lib.mr_seccomp_notify_fd(f.ctx)
    if fd < 0:
        raise SyscallError("seccomp_notify_fd", ffi.errno, f"({P})")
    return fd


# ---------------------------------------------------------------- the agent

def process_state(state: dict, metadata: str = "", pid: int | None = None) -> dict:
    """The runtime spec's container process state (the fields in Go's order, as runc).
    `pid` is the filtered process's (default: the state's, the init's)."""
    msg: dict = {"ociVersion": OCI_VERSION, "fds": [SECCOMP_FD_NAME],
                 "pid": state["pid"] if pid is None else pid}
    if metadata:
        msg["metadata"] = metadata
    msg["state"] = state
    return msg


def send_to_listener(listener_path: str, notify_fd: int, state: dict,
                     metadata: str = "", pid: int | None = None) -> None:
    """Connect to the agent's socket and send the container process state JSON with the
    notify fd in SCM_RIGHTS, then close: one state per connection (runtime spec).

    `state` is the container's OCI state as runc sends it: ociVersion, id, status, pid
    (the init's, as the runtime sees it), bundle, annotations if any. For the init
    (create) the status is "creating"; for an exec'd process runc sends the container's
    state ("running", the init's pid) and the exec'd process's pid as `pid`.
    """
    where = f"seccomp agent {listener_path} ({P}.listenerPath)"
    data = json.dumps(process_state(state, metadata, pid)).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.connect(listener_path)
        except OSError as e:
            raise MinirunError(f"failed to connect with seccomp agent {listener_path} "
                               f"({P}.listenerPath): {e.strerror} "
                               f"({errno_name(e.errno)})") from None
        try:
            sent = socket.send_fds(s, [data], [notify_fd])
            if sent < len(data):
                s.sendall(data[sent:])  # fds went with the first sendmsg only
        except OSError as e:
            raise MinirunError(f"{where}: sending the notify fd: {e.strerror} "
                               f"({errno_name(e.errno)})") from None


# ---------------------------------------------------------------- features

def features() -> dict:
    """The `linux.seccomp` entry of `minirun features` (runtime spec features.md)."""
    probe = ffi.gc(lib.mr_seccomp_init(lib.SCMP_ACT_ALLOW), lib.mr_seccomp_release)
    supported = [flag for flag, attr in FLAGS.items()
                 if attr >= 0 and _attr(probe, attr, 1) == 0]
    archs = [a for a in ARCHES
             if lib.mr_seccomp_arch_resolve_name(a[len("SCMP_ARCH_"):].lower().encode())]
    return {
        "enabled": True,
        "actions": sorted(ACTIONS),
        "operators": sorted(OPERATORS),
        "archs": sorted(archs),
        "knownFlags": list(FLAGS),
        "supportedFlags": supported,
    }
