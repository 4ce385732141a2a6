"""The container process: rlimits, oom score, user, capabilities, cwd, and exec.

Order follows runc: rlimits and oom_score_adj while still privileged; bounding set;
keep capabilities across the uid switch; groups, gid, uid; then the exact capability
sets; cwd as the user; no_new_privs; and, once `start` says go, close every fd the
runtime holds (keeping 0-2 and --preserve-fds) and execve.
"""

import os
import resource  # all imports happen before pivot_root: no Python library after it

import _prctl  # python-prctl's C interface (see capabilities.py)

from minirun import diagnose, syscalls
from minirun.errors import MinirunError
from minirun.linux import capabilities
from minirun.steps import Tracer

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Linux's numbers (asm-generic/resource.h): Python's resource module lacks some names
# (RLIMIT_LOCKS), and the kernel takes the number.
RLIMIT_NUMBERS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}


def apply_rlimits(rlimits: list[dict], tracer: Tracer) -> None:
    for i, rl in enumerate(rlimits):
        kind = rl["type"]
        with tracer.step("rlimit", f"{kind} (process.rlimits[{i}])"):
            limits = (_rlim(rl["soft"]), _rlim(rl["hard"]))
            try:
                resource.setrlimit(RLIMIT_NUMBERS[kind], limits)
            except (ValueError, OSError) as e:
                _, cur_hard = resource.getrlimit(RLIMIT_NUMBERS[kind])
                why = str(e)
                if isinstance(e, OSError) or _rlim(rl["hard"]) > cur_hard:
                    why = (f"cannot raise the hard limit to {rl['hard']} above the runtime's "
                           f"own ({cur_hard}) without CAP_SYS_RESOURCE")
                raise MinirunError(f"setrlimit {kind} soft={rl['soft']} hard={rl['hard']}: "
                                   f"{why}") from None


def _rlim(value: int) -> int:
    return resource.RLIM_INFINITY if value >= 2**63 else value


def apply_oom_score_adj(value: int | None, tracer: Tracer) -> None:
    if value is None:
        return
    with tracer.step("oom_score_adj", f"{value} (process.oomScoreAdj)"):
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(value))
        except PermissionError:
            with open("/proc/self/oom_score_adj") as f:
                current = f.read().strip()
            raise MinirunError(f"cannot set oom_score_adj to {value}: lowering it below the "
                               f"runtime's own ({current}) needs CAP_SYS_RESOURCE") from None


def cap_numbers(proc: dict) -> dict[str, list[int]]:
    caps = proc.get("capabilities") or {}
    limit = capabilities.last_cap()
    out: dict[str, list[int]] = {}
    for name in capabilities.CAP_SETS:
        # Capabilities newer than the running kernel are skipped, as runc does.
        nums = (capabilities.CAP_NUMBERS[c] for c in caps.get(name) or [])
        out[name] = [n for n in nums if n <= limit]
    return out


class UserSwitch:
    """process.user and the capabilities, worked out before the cgroup join: after it,
    every page Python writes (an allocation, a reference count on a page shared with the
    runtime) is charged to the container's memory.max, so switch_user only makes the
    syscalls."""

    __slots__ = ("uid", "gid", "groups", "umask", "drops", "sets", "ambient", "label")

    def __init__(self, proc: dict, in_userns: bool) -> None:
        user = proc.get("user") or {}
        self.uid, self.gid = user.get("uid", 0), user.get("gid", 0)
        allowed = not in_userns or _setgroups_allowed()
        self.groups = (user.get("additionalGids") or []) if allowed else None
        self.umask = user.get("umask")
        caps = cap_numbers(proc)
        self.drops = capabilities.bounding_drops(caps["bounding"])
        self.sets = capabilities.plan_sets(caps)
        self.ambient = capabilities.ambient_raises(caps)
        self.label = f"uid={self.uid} gid={self.gid} (process.user)"


def switch_user(plan: UserSwitch, tracer: Tracer) -> None:
    """Bounding set, groups, gid, uid and the capability sets (needs root until the end)."""
    with tracer.step("capabilities", "bounding (process.capabilities.bounding)"):
        capabilities.apply_bounding(plan.drops)
    with tracer.step("user", plan.label):
        _prctl.prctl(_prctl.PR_SET_KEEPCAPS, 1)
        if plan.groups is not None:
            os.setgroups(plan.groups)
        os.setresgid(plan.gid, plan.gid, plan.gid)
        os.setresuid(plan.uid, plan.uid, plan.uid)
        _prctl.prctl(_prctl.PR_SET_KEEPCAPS, 0)
        # A uid change makes the process dumpable again: stay non-dumpable until exec.
        syscalls.set_dumpable(False)
    with tracer.step("capabilities", "effective permitted inheritable ambient"):
        capabilities.apply_sets(plan.sets, plan.ambient)
    if plan.umask is not None:
        os.umask(plan.umask)


def _setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "allow"
    except OSError:
        return True


def enter_cwd(cwd: str, tracer: Tracer) -> None:
    with tracer.step("chdir", f"{cwd} (process.cwd)"):
        os.chdir(cwd)
        # A leaked directory fd could leave cwd outside the root (CVE-2024-21626).
        if not os.getcwd().startswith("/"):
            raise MinirunError(f"process.cwd {cwd!r} is outside the container's root")


def set_no_new_privs(tracer: Tracer) -> None:
    with tracer.step("no_new_privs", "(process.noNewPrivileges)"):
        _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)


def find_executable(proc: dict) -> str:
    """Resolve args[0] the way execvp would, inside the container's root (after pivot)."""
    name = proc["args"][0]
    if "/" in name:
        _check_executable(name, name)
        return name
    path = DEFAULT_PATH
    for entry in proc.get("env") or []:
        if entry.startswith("PATH="):
            path = entry[5:]
    for d in path.split(":"):
        candidate = os.path.join(d or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise MinirunError(f'exec "{name}": executable file not found in $PATH ({path}) '
                       "(in the container's root)")


def _check_executable(name: str, path: str) -> None:
    try:
        os.stat(path)
    except FileNotFoundError:
        raise MinirunError(f'exec "{name}": no such file or directory '
                           "(in the container's root)") from None
    except OSError as e:
        raise MinirunError(f'exec "{name}": {e.strerror} (in the container\'s root)') from None
    if os.path.isdir(path):
        raise MinirunError(f'exec "{name}": is a directory (in the container\'s root)')
    if not os.access(path, os.X_OK):
        raise exec_error(name, path, 13)


def exec_error(name: str, path: str, err: int) -> MinirunError:
    """execve's errno with its cause when one can be found (CRLF #! line, missing ELF
    interpreter, another architecture, noexec mount...)."""
    why = {2: "no such file or directory", 13: "permission denied",
           8: "exec format error"}.get(err) or os.strerror(err).lower()
    cause = diagnose.explain(path, err)
    text = f'exec "{name}": {why}'
    if cause:
        text += f": {cause}"
    return MinirunError(text + " (in the container's root)")


def close_fds_for_exec(preserve_fds: int) -> None:
    """Only 0-2 and the --preserve-fds ones survive exec (CVE-2024-21626 class)."""
    first = 3 + preserve_fds
    for fd in range(3, first):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    syscalls.close_range(first, 2**32 - 1, syscalls.CLOSE_RANGE_CLOEXEC)


def process_env(proc: dict) -> dict[str, str]:
    """process.env, plus HOME from the container's /etc/passwd when unset (as runc)."""
    env = {}
    for entry in proc.get("env") or []:
        key, _, value = entry.partition("=")
        env[key] = value
    if "HOME" not in env:
        env["HOME"] = _home_of((proc.get("user") or {}).get("uid", 0))
    return env


def _home_of(uid: int) -> str:
    """HOME from the image's /etc/passwd (after pivot_root: the container's own). Only a
    regular file, read without blocking and bounded: a FIFO there must not hang
    create, /dev/zero must not grow us (issue 13, item 7)."""
    entry = diagnose.passwd_entry(diagnose.same, uid)
    return (entry[5] if entry and len(entry) > 5 else "") or "/"


def exec_process(path: str, proc: dict, env: dict[str, str]) -> None:
    try:
        os.execve(path, proc["args"], env)
    except OSError as e:
        raise exec_error(proc["args"][0], path, e.errno or 0) from None
