"""linux.seccomp (minirun/linux/seccomp.py): validation, compilation, load, notify.

Validation and compilation need no root. The behaviour tests fork: the child loads
the compiled filter (the filter then binds only the child) and reports what its
syscalls returned through a pipe; the parent checks the report or how the child died.
"""

from __future__ import annotations

import copy
import ctypes
import errno
import fcntl
import json
import os
import resource
import select
import signal
import socket
import struct
import threading
from pathlib import Path

import pytest

from minirun.errors import ConfigError, MinirunError
from minirun.linux import seccomp

libc = ctypes.CDLL(None, use_errno=True)
lib = seccomp.lib
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (fork + seccomp)")
TIMEOUT = float(os.environ.get("MINIRUN_TEST_TIMEOUT", "60"))
PR_SET_NO_NEW_PRIVS = 38
X32_SYSCALL_BIT = 0x40000000
NR_MKDIR = seccomp.resolve("mkdir")  # x86_64: 83, the same number in the x32 ABI


def profile(*syscalls: dict, default: str = "SCMP_ACT_ALLOW", **extra) -> dict:
    return {"defaultAction": default, "syscalls": list(syscalls), **extra}


def rule(names, action: str, **extra) -> dict:
    return {"names": [names] if isinstance(names, str) else list(names), "action": action,
            **extra}


# ---------------------------------------------------------------- validate (no root)

def error_of(sc: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        seccomp.validate(sc)
    return info.value


BAD = [
    # (profile, field path, words of the reason)
    ({"syscalls": [rule("mkdir", "SCMP_ACT_ERRNO")]},
     "linux.seccomp.defaultAction", "required"),
    (profile(default="SCMP_ACT_BOGUS"), "linux.seccomp.defaultAction",
     "unknown seccomp action 'SCMP_ACT_BOGUS'"),
    (profile(default="SCMP_ACT_NOTIFY", listenerPath="/x"), "linux.seccomp.defaultAction",
     "cannot be the default"),
    (profile(default="SCMP_ACT_KILL", defaultErrnoRet=1), "linux.seccomp.defaultErrnoRet",
     "SCMP_ACT_KILL takes no errno"),
    (profile(default="SCMP_ACT_ERRNO", defaultErrnoRet=-1), "linux.seccomp.defaultErrnoRet",
     "out of range"),
    (profile(default="SCMP_ACT_ERRNO", defaultErrnoRet=5000), "linux.seccomp.defaultErrnoRet",
     "out of range"),
    (profile(default="SCMP_ACT_ERRNO", defaultErrnoRet="1"), "linux.seccomp.defaultErrnoRet",
     "expected an integer"),
    (profile(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]),
     "linux.seccomp.architectures[1]", "unknown seccomp architecture 'SCMP_ARCH_Z80'"),
    (profile(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_S390X"]),
     "linux.seccomp.architectures[2]", "byte orders differ"),
    (profile(architectures="SCMP_ARCH_X86_64"), "linux.seccomp.architectures",
     "expected an array"),
    (profile(flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_NOPE"]),
     "linux.seccomp.flags[1]", "unknown seccomp flag 'SECCOMP_FILTER_FLAG_NOPE'"),
    (profile(listenerPath=""), "linux.seccomp.listenerPath", "must not be empty"),
    (profile(listenerPath=7), "linux.seccomp.listenerPath", "expected a string"),
    (profile(listenerMetadata="m"), "linux.seccomp.listenerMetadata",
     "must not be set without linux.seccomp.listenerPath"),
    (profile(rule("mkdir", "SCMP_ACT_NOTIFY")), "linux.seccomp.syscalls[0].action",
     "SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath"),
    (profile(rule("write", "SCMP_ACT_NOTIFY"), listenerPath="/x"),
     "linux.seccomp.syscalls[0].names[0]", "cannot be used for the write syscall"),
    (profile(rule(["getpid", "sendmsg"], "SCMP_ACT_NOTIFY"), listenerPath="/x"),
     "linux.seccomp.syscalls[0].names[1]", "cannot be used for the sendmsg syscall"),
    (profile(rule("mkdir", "SCMP_ACT_ALLOW"), rule(["getpid", "mkdri"], "SCMP_ACT_ERRNO")),
     "linux.seccomp.syscalls[1].names[1]", "unknown syscall 'mkdri'"),
    (profile(rule("", "SCMP_ACT_ERRNO")), "linux.seccomp.syscalls[0].names[0]",
     "unknown syscall ''"),
    (profile(rule([], "SCMP_ACT_ERRNO")), "linux.seccomp.syscalls[0].names",
     "at least one syscall"),
    (profile({"action": "SCMP_ACT_ERRNO"}), "linux.seccomp.syscalls[0].names",
     "expected an array"),
    (profile(rule("mkdir", "SCMP_ACT_DENY")), "linux.seccomp.syscalls[0].action",
     "unknown seccomp action 'SCMP_ACT_DENY'"),
    (profile({"names": ["mkdir"]}), "linux.seccomp.syscalls[0].action", "required"),
    (profile(rule("mkdir", "SCMP_ACT_ALLOW", errnoRet=1)), "linux.seccomp.syscalls[0].errnoRet",
     "SCMP_ACT_ALLOW takes no errno"),
    (profile(rule("mkdir", "SCMP_ACT_ERRNO", args=[{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}])),
     "linux.seccomp.syscalls[0].args[0].index", "indexed 0 to 5"),
    (profile(rule("mkdir", "SCMP_ACT_ERRNO", args=[{"value": 0, "op": "SCMP_CMP_EQ"}])),
     "linux.seccomp.syscalls[0].args[0].index", "expected an integer"),
    (profile(rule("mkdir", "SCMP_ACT_ERRNO",
                  args=[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                        {"index": 1, "value": 1, "op": "SCMP_CMP_LIKE"}])),
     "linux.seccomp.syscalls[0].args[1].op", "unknown seccomp operator 'SCMP_CMP_LIKE'"),
    (profile(rule("mkdir", "SCMP_ACT_ERRNO",
                  args=[{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}])),
     "linux.seccomp.syscalls[0].args[0].value", "out of range"),
    (profile(rule("mkdir", "SCMP_ACT_ERRNO",
                  args=[{"index": 0, "value": 1, "valueTwo": 2**64, "op": "SCMP_CMP_EQ"}])),
     "linux.seccomp.syscalls[0].args[0].valueTwo", "out of range"),
    (profile(rule("mkdir", "SCMP_ACT_ERRNO", args={"index": 0})),
     "linux.seccomp.syscalls[0].args", "expected an array"),
    (profile("mkdir"), "linux.seccomp.syscalls[0]", "expected an object"),
    ("SCMP_ACT_ALLOW", "linux.seccomp", "expected an object"),
]


@pytest.mark.parametrize("sc,path,why", BAD, ids=[f"{p}:{w}" for _, p, w in BAD])
def test_validate_refuses(sc, path, why):
    err = error_of(sc)
    assert err.path == path, str(err)
    assert why in err.why, str(err)
    assert "\n" not in str(err)


def test_unknown_syscall_error_names_it_and_the_library():
    err = error_of(profile(rule(["mkdir", "definitely_not_a_syscall"], "SCMP_ACT_ERRNO")))
    assert "'definitely_not_a_syscall'" in err.why
    assert f"libseccomp {seccomp.library_version()}" in err.why


def test_wait_killable_recv_needs_libseccomp_2_6():
    sc = profile(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])
    if lib.MR_SCMP_FLTATR_CTL_WAITKILL >= 0:
        seccomp.validate(sc)
    else:
        err = error_of(sc)
        assert err.path == "linux.seccomp.flags[0]" and "needs 2.6" in err.why


LITTLE_ENDIAN = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
                 "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64",
                 "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_RISCV64"]
GOOD = [
    {},  # empty: seccomp disabled, as runc
    {"architectures": ["SCMP_ARCH_X86"]},  # no defaultAction nor syscalls: disabled too
    profile(),
    profile(default="SCMP_ACT_ERRNO", defaultErrnoRet=0),
    profile(default="SCMP_ACT_TRACE", defaultErrnoRet=0xFFFF),
    profile(default="SCMP_ACT_KILL_PROCESS"),
    profile(rule(["socketcall", "recv", "timerfd"], "SCMP_ACT_ALLOW"), default="SCMP_ACT_ERRNO"),
    profile(rule(sorted(seccomp.NEWER_SYSCALLS), "SCMP_ACT_ERRNO")),
    profile(rule("mkdir", "SCMP_ACT_NOTIFY"), listenerPath="/run/agent.sock",
            listenerMetadata="anything"),
    profile(architectures=LITTLE_ENDIAN,
            flags=["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                   "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]),
    profile(rule("personality", "SCMP_ACT_ERRNO", errnoRet=1,
                 args=[{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                       {"index": 0, "value": 0xFF00, "valueTwo": 0x0800,
                        "op": "SCMP_CMP_MASKED_EQ"},
                       {"index": 5, "value": 2**64 - 1, "op": "SCMP_CMP_NE"}])),
    profile(rule("mkdir", "SCMP_ACT_ERRNO", unknownField=1), unknownField=2),
]


@pytest.mark.parametrize("sc", GOOD)
def test_validate_accepts_and_compiles(sc):
    seccomp.validate(sc)
    f = seccomp.compile_filter(sc)
    assert (f is None) == (not sc.get("defaultAction") and not sc.get("syscalls"))


def test_every_spec_action_and_operator_is_known():
    # config-linux.md's lists as of runtime-spec 1.2
    assert set(seccomp.ACTIONS) == {
        "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY"}
    assert set(seccomp.OPERATORS) == {
        "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
        "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"}
    for action in seccomp.ACTIONS:
        sc = profile(rule("mkdir", action), default="SCMP_ACT_LOG", listenerPath="/x")
        if action in seccomp.NOTIFY_REFUSED:
            continue
        seccomp.validate(sc)
        assert seccomp.compile_filter(sc).rules == (0 if action == "SCMP_ACT_LOG" else 1)


def test_features_lists_what_this_libseccomp_supports():
    feats = seccomp.features()
    assert feats["enabled"] is True
    assert "SCMP_ARCH_X86_64" in feats["archs"] and "SCMP_ARCH_Z80" not in feats["archs"]
    assert "SECCOMP_FILTER_FLAG_SPEC_ALLOW" in feats["supportedFlags"]
    assert set(feats["supportedFlags"]) <= set(feats["knownFlags"])
    assert ("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" in feats["supportedFlags"]) == (
        lib.MR_SCMP_FLTATR_CTL_WAITKILL >= 0)


# ---------------------------------------------------------------- compile (no root)

def test_flags_absent_means_spec_allow_as_runc_and_empty_means_none():
    absent = seccomp.compile_filter(profile())
    empty = seccomp.compile_filter(profile(flags=[]))
    both = seccomp.compile_filter(profile(flags=["SECCOMP_FILTER_FLAG_TSYNC",
                                                 "SECCOMP_FILTER_FLAG_LOG"]))
    assert absent.attribute(lib.SCMP_FLTATR_CTL_SSB) == 1
    assert empty.attribute(lib.SCMP_FLTATR_CTL_SSB) == 0
    assert both.attribute(lib.SCMP_FLTATR_CTL_SSB) == 0
    assert both.attribute(lib.SCMP_FLTATR_CTL_TSYNC) == 1
    assert both.attribute(lib.SCMP_FLTATR_CTL_LOG) == 1
    assert empty.attribute(lib.SCMP_FLTATR_CTL_TSYNC) == 0
    # libseccomp would set no_new_privs on load by default: runc and minirun do not
    assert absent.attribute(lib.SCMP_FLTATR_CTL_NNP) == 0


def test_rules_as_runc_adds_them():
    same_as_default = seccomp.compile_filter(profile(
        rule("mkdir", "SCMP_ACT_ERRNO"), default="SCMP_ACT_ERRNO", defaultErrnoRet=1))
    assert same_as_default.rules == 0  # ERRNO(EPERM) == default ERRNO(1): skipped
    other_errno = seccomp.compile_filter(profile(
        rule("mkdir", "SCMP_ACT_ERRNO", errnoRet=2), default="SCMP_ACT_ERRNO"))
    assert other_errno.rules == 1
    two_args = [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]
    same_arg = [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 3, "op": "SCMP_CMP_EQ"}]
    assert seccomp.compile_filter(profile(
        rule(["getpriority", "setpriority"], "SCMP_ACT_ERRNO", args=two_args))).rules == 2
    assert seccomp.compile_filter(profile(
        rule("getpriority", "SCMP_ACT_ERRNO", args=same_arg))).rules == 3


def test_names_newer_than_libseccomp_are_skipped_not_refused():
    unknown = sorted(n for n in seccomp.NEWER_SYSCALLS if seccomp.resolve(n) == -1)
    if not unknown:
        pytest.skip(f"libseccomp {seccomp.library_version()} knows every newer syscall")
    f = seccomp.compile_filter(profile(rule(["mkdir", *unknown], "SCMP_ACT_ERRNO")))
    assert f.skipped == unknown and f.rules == 1


def test_notify_filter_is_marked():
    f = seccomp.compile_filter(profile(rule("mkdir", "SCMP_ACT_NOTIFY"),
                                       listenerPath="/x", listenerMetadata="m"))
    assert f.notify and f.listener_path == "/x" and f.listener_metadata == "m"
    assert not seccomp.compile_filter(profile(rule("mkdir", "SCMP_ACT_ERRNO"))).notify


PODMAN_PROFILE = Path("/usr/share/containers/seccomp.json")


def engine_profile(path: Path) -> dict:
    """podman's default profile as podman hands it to the runtime on x86_64: the
    archMap entry of the native arch, rules filtered by their includes/excludes."""
    doc = json.loads(path.read_text())
    caps = {"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
    out = {"defaultAction": doc["defaultAction"], "syscalls": []}
    if "defaultErrnoRet" in doc:
        out["defaultErrnoRet"] = doc["defaultErrnoRet"]
    for entry in doc.get("archMap") or []:
        if entry["architecture"] == "SCMP_ARCH_X86_64":
            out["architectures"] = [entry["architecture"], *entry["subArchitectures"]]
    for call in doc["syscalls"]:
        inc, exc = call.get("includes") or {}, call.get("excludes") or {}
        if inc.get("arches") and "amd64" not in inc["arches"]:
            continue
        if inc.get("caps") and not set(inc["caps"]) <= caps:
            continue
        if exc.get("caps") and set(exc["caps"]) & caps:
            continue
        if inc.get("minKernel") or exc.get("arches") and "amd64" in exc["arches"]:
            continue
        out["syscalls"].append({k: v for k, v in call.items()
                                if k in ("names", "action", "errnoRet", "args")})
    return out


@pytest.mark.skipif(not PODMAN_PROFILE.exists(), reason=f"{PODMAN_PROFILE} not installed")
def test_engine_default_profile_is_accepted():
    sc = engine_profile(PODMAN_PROFILE)
    seccomp.validate(sc)
    f = seccomp.compile_filter(sc)
    assert f.rules > 300 and not f.notify


# ---------------------------------------------------------------- behaviour (root, fork)

class Child:
    """A forked child that loads a filter, runs `body` and reports its result as JSON."""

    def __init__(self, f, body, *, nnp: bool = True, before_load=None) -> None:
        self.read_end, write_end = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into pytest
            code = 0
            try:
                os.close(self.read_end)
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGSYS dumps core
                if nnp and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
                if before_load:
                    before_load()
                result = body(seccomp.load(f))
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                result, code = {"exception": type(e).__name__, "msg": str(e)}, 3
            try:
                os.write(write_end, json.dumps(result).encode())
            finally:
                os._exit(code)
        os.close(write_end)
        self.status: int | None = None

    def wait(self) -> tuple[int, object]:
        chunks = []
        while True:
            ready, _, _ = select.select([self.read_end], [], [], TIMEOUT)
            if not ready:
                self.kill()
                pytest.fail("the child did not finish")
            chunk = os.read(self.read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(self.read_end)
        _, self.status = os.waitpid(self.pid, 0)
        data = b"".join(chunks)
        return self.status, (json.loads(data) if data else None)

    def kill(self) -> None:
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            _, self.status = os.waitpid(self.pid, 0)


def run_child(sc: dict, body, **kw) -> tuple[int, object]:
    seccomp.validate(sc)
    child = Child(seccomp.compile_filter(sc), body, **kw)
    try:
        return child.wait()
    finally:
        child.kill()


def call(fn, *args) -> int:
    """Call a libc function: 0 or its result on success, -errno on failure."""
    ctypes.set_errno(0)
    ret = fn(*args)
    return -ctypes.get_errno() if ret == -1 and ctypes.get_errno() else ret


def exited(status: int, code: int = 0) -> bool:
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == code


@root_only
def test_errno_with_errno_ret_and_eperm_by_default(tmp_path):
    sc = profile(rule(["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", errnoRet=errno.ENOSPC),
                 rule(["rmdir"], "SCMP_ACT_ERRNO"))
    (tmp_path / "d").mkdir()
    new, old = str(tmp_path / "new").encode(), str(tmp_path / "d").encode()

    def body(_fd):
        return [call(libc.mkdir, new, 0o755), call(libc.rmdir, old),
                call(libc.access, new, 0)]

    status, result = run_child(sc, body)
    assert exited(status), result
    assert result == [-errno.ENOSPC, -errno.EPERM, -errno.ENOENT]
    assert (tmp_path / "d").is_dir() and not (tmp_path / "new").exists()


@root_only
def test_argument_rules_and_or_and_masked():
    who_a, who_b = 0x12345, 0x54321  # getpriority(PRIO_PROCESS, who): no such pids
    sc = profile(
        # one rule, both conditions ANDed: only (PRIO_PROCESS, who_a)
        rule("getpriority", "SCMP_ACT_ERRNO", errnoRet=errno.EXDEV,
             args=[{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                   {"index": 1, "value": who_a, "op": "SCMP_CMP_EQ"}]),
        # the same argument twice: two rules, ORed (runc's semantics)
        rule("personality", "SCMP_ACT_ERRNO", errnoRet=errno.EDOM,
             args=[{"index": 0, "value": 0x0008, "op": "SCMP_CMP_EQ"},
                   {"index": 0, "value": 0x0040, "op": "SCMP_CMP_EQ"}]),
        # masked: (arg1 & 0xF000) == 0x5000
        rule("setpriority", "SCMP_ACT_ERRNO", errnoRet=errno.ERANGE,
             args=[{"index": 1, "value": 0xF000, "valueTwo": 0x5000,
                    "op": "SCMP_CMP_MASKED_EQ"}]),
    )
    query = 0xFFFFFFFF  # personality(0xffffffff) only reads the persona

    def body(_fd):
        return {
            "and_both": call(libc.getpriority, 0, who_a),
            "and_one": call(libc.getpriority, 0, who_b),
            "and_other": call(libc.getpriority, 1, who_a),
            "or_first": call(libc.personality, 0x0008),
            "or_second": call(libc.personality, 0x0040),
            "or_neither": call(libc.personality, query) >= 0,
            "masked": call(libc.setpriority, 0, 0x5123, 0),
            "unmasked": call(libc.setpriority, 0, 0x6123, 0),
        }

    status, r = run_child(sc, body)
    assert exited(status), r
    assert r["and_both"] == -errno.EXDEV
    assert r["and_one"] == -errno.ESRCH and r["and_other"] == -errno.ESRCH
    assert r["or_first"] == -errno.EDOM and r["or_second"] == -errno.EDOM
    assert r["or_neither"] is True
    assert r["masked"] == -errno.ERANGE and r["unmasked"] == -errno.ESRCH


@root_only
@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL",
                                    "SCMP_ACT_KILL_THREAD"])
def test_kill_actions_kill_with_sigsys(action):
    status, result = run_child(profile(rule("acct", action)),
                               lambda _fd: call(libc.acct, None))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, (status, result)


@root_only
def test_trap_raises_sigsys_that_the_process_can_handle():
    def install():
        signal.signal(signal.SIGSYS, lambda *_: trapped.append(True))

    trapped: list = []

    def body(_fd):
        ret = call(libc.acct, None)
        return {"trapped": bool(trapped), "ret": ret}

    status, result = run_child(profile(rule("acct", "SCMP_ACT_TRAP")), body,
                               before_load=install)
    assert exited(status), result
    assert result["trapped"] is True


# What the child's Python needs after load() when everything else is refused.
RUNTIME_MINIMUM = ["write", "exit_group", "exit", "brk", "mmap", "munmap", "mremap",
                   "madvise", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "futex",
                   "getpid", "close", "sigaltstack", "gettid"]


@root_only
def test_default_action_applies_to_unlisted_syscalls(tmp_path):
    sc = profile(rule(RUNTIME_MINIMUM, "SCMP_ACT_ALLOW"),
                 default="SCMP_ACT_ERRNO", defaultErrnoRet=errno.ENOSPC)
    target = str(tmp_path / "new").encode()
    me = os.getpid()

    def body(_fd):
        return [call(libc.mkdir, target, 0o755), call(libc.getpid) != me]

    status, result = run_child(sc, body)
    assert exited(status), result
    assert result[0] == -errno.ENOSPC and result[1] is True
    assert not (tmp_path / "new").exists()


@root_only
def test_default_kill_process():
    sc = profile(rule(RUNTIME_MINIMUM, "SCMP_ACT_ALLOW"), default="SCMP_ACT_KILL_PROCESS")
    status, result = run_child(sc, lambda _fd: call(libc.acct, None))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, result


@root_only
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 and its x32 ABI")
def test_architectures_decide_which_abis_the_filter_covers(tmp_path):
    # An x32 syscall (number | 0x40000000) from an x86_64 process: with SCMP_ARCH_X32 in
    # the filter its rules apply (before the kernel checks whether x32 is enabled);
    # without it the filter treats it as a foreign architecture and kills.
    def body(_fd):
        return call(libc.syscall, X32_SYSCALL_BIT | NR_MKDIR,
                    str(tmp_path / "x").encode(), 0o755)

    mkdir_rule = rule("mkdir", "SCMP_ACT_ERRNO", errnoRet=errno.ENOSPC)
    status, result = run_child(profile(mkdir_rule, architectures=[
        "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]), body)
    assert exited(status) and result == -errno.ENOSPC, (status, result)
    status, result = run_child(profile(mkdir_rule, architectures=["SCMP_ARCH_X86"]), body)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, (status, result)
    assert not (tmp_path / "x").exists()


def status_of(field: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return ""


@root_only
def test_load_does_not_set_no_new_privs():
    status, result = run_child(profile(rule("acct", "SCMP_ACT_ERRNO")),
                               lambda _fd: [status_of("NoNewPrivs"), status_of("Seccomp")],
                               nnp=False)
    assert exited(status) and result == ["0", "2"], result


@root_only
@pytest.mark.skipif("seccomp" not in Path(
    "/sys/devices/system/cpu/vulnerabilities/spec_store_bypass").read_text(),
    reason="the kernel does not mitigate speculative store bypass through seccomp")
def test_spec_allow_by_default_leaves_ssb_mitigation_alone():
    def ssb(_fd):
        return status_of("Speculation_Store_Bypass")

    _, absent = run_child(profile(rule("acct", "SCMP_ACT_ERRNO")), ssb)
    _, empty = run_child(profile(rule("acct", "SCMP_ACT_ERRNO"), flags=[]), ssb)
    assert "force" not in absent and "force" in empty, (absent, empty)


@root_only
def test_load_without_no_new_privs_or_cap_sys_admin_is_a_clear_error():
    def drop_sys_admin():
        import prctl

        prctl.cap_effective.sys_admin = False

    status, result = run_child(profile(rule("acct", "SCMP_ACT_ERRNO")), lambda _fd: "loaded",
                               nnp=False, before_load=drop_sys_admin)
    assert exited(status, 3), result
    assert result["exception"] == "MinirunError"
    assert "CAP_SYS_ADMIN" in result["msg"] and "noNewPrivileges" in result["msg"]


# ---------------------------------------------------------------- notify

SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif), 80 bytes
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp), 24 bytes
NOTIF = struct.Struct("=QII iIQ6Q")     # id, pid, flags, data{nr, arch, ip, args[6]}
NOTIF_RESP = struct.Struct("=QqiI")     # id, val, error, flags


def agent_answer(notify_fd: int, error: int) -> tuple[int, int]:
    """Receive one notification and answer it with -error; return (pid, syscall nr)."""
    ready, _, _ = select.select([notify_fd], [], [], TIMEOUT)
    assert ready, "no notification arrived"
    buf = bytearray(NOTIF.size)
    fcntl.ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_RECV, buf, True)
    nid, pid, _flags, nr = NOTIF.unpack(buf)[:4]
    fcntl.ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_SEND,
                bytearray(NOTIF_RESP.pack(nid, 0, -error, 0)), True)
    return pid, nr


@root_only
def test_notify_fd_reaches_the_listener_with_the_state(tmp_path):
    agent_path = str(tmp_path / "agent.sock")
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    agent.bind(agent_path)
    agent.listen(1)
    agent.settimeout(TIMEOUT)
    sc = profile(rule(["mkdir", "mkdirat"], "SCMP_ACT_NOTIFY"),
                 listenerPath=agent_path, listenerMetadata="MKDIR=yes")
    # The init's end and the runtime's end of minirun's set-up socket.
    runtime_end, init_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    runtime_end.settimeout(TIMEOUT)
    target = str(tmp_path / "new").encode()

    def body(fd):
        socket.send_fds(init_end, [b"seccomp"], [fd])
        os.close(fd)
        return call(libc.mkdir, target, 0o755)

    seccomp.validate(sc)
    f = seccomp.compile_filter(sc)
    child = Child(f, body)
    agent_conn = notify_fd = None
    try:
        init_end.close()
        msg, fds, _, _ = socket.recv_fds(runtime_end, 1024, 1)
        assert msg == b"seccomp" and len(fds) == 1
        state = {"ociVersion": "1.0.2", "id": "c1", "status": "creating", "pid": child.pid,
                 "bundle": str(tmp_path), "annotations": {"k": "v"}}
        seccomp.send_to_listener(f.listener_path, fds[0], state, f.listener_metadata)
        os.close(fds[0])

        agent_conn, _ = agent.accept()
        agent_conn.settimeout(TIMEOUT)
        data, afds, _, _ = socket.recv_fds(agent_conn, 65536, 4)
        while chunk := agent_conn.recv(65536):  # one state per connection, then EOF
            data += chunk
        assert len(afds) == 1
        notify_fd = afds[0]
        doc = json.loads(data)
        assert list(doc) == ["ociVersion", "fds", "pid", "metadata", "state"]
        assert doc["fds"] == ["seccompFd"] and doc["pid"] == child.pid
        assert doc["metadata"] == "MKDIR=yes" and doc["state"] == state

        pid, nr = agent_answer(notify_fd, errno.EXDEV)  # the agent decides
        assert pid == child.pid and nr in (NR_MKDIR, seccomp.resolve("mkdirat"))
        status, result = child.wait()
        assert exited(status) and result == -errno.EXDEV, (status, result)
        assert not (tmp_path / "new").exists()
    finally:
        child.kill()
        for s in (agent_conn, agent, runtime_end):
            if s is not None:
                s.close()
        if notify_fd is not None:
            os.close(notify_fd)


def test_process_state_omits_empty_metadata():
    state = {"ociVersion": "1.0.2", "id": "c", "status": "creating", "pid": 42}
    assert seccomp.process_state(state) == {
        "ociVersion": seccomp.OCI_VERSION, "fds": ["seccompFd"], "pid": 42, "state": state}
    assert seccomp.process_state(state, "m")["metadata"] == "m"
    assert seccomp.process_state(state, pid=7)["pid"] == 7  # exec: the exec'd process


def test_listener_that_is_not_there_is_a_clear_error(tmp_path):
    r, w = os.pipe()
    try:
        with pytest.raises(MinirunError) as info:
            seccomp.send_to_listener(str(tmp_path / "none.sock"), r, {"pid": 1}, "")
    finally:
        os.close(r)
        os.close(w)
    msg = str(info.value)
    assert "failed to connect with seccomp agent" in msg and "ENOENT" in msg


def test_profiles_are_not_modified():
    sc = profile(rule("mkdir", "SCMP_ACT_ERRNO", args=[
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]))
    before = copy.deepcopy(sc)
    seccomp.validate(sc)
    seccomp.compile_filter(sc)
    assert sc == before


# ---------------------------------------------------------------- end to end (minirun run)
#
# These run containers; they pass against runc 1.1.5 too (MINIRUN_BIN=/usr/sbin/runc)
# except the minirun_only ones. Against minirun they wait for linux.seccomp to be wired
# into the lifecycle (config.validate stops refusing it).

def _runtime_takes_seccomp() -> bool:
    from conftest import under_runc

    if under_runc():
        return True
    from mkbundle import default_config

    from minirun import config

    cfg = default_config(["true"])
    cfg["linux"]["seccomp"] = profile()
    try:
        config.validate(cfg)
    except ConfigError:
        return False
    return True


e2e = pytest.mark.skipif(not _runtime_takes_seccomp(),
                         reason="linux.seccomp is not wired into minirun's lifecycle yet")


def with_seccomp(sc: dict, **process):
    def edit(cfg):
        cfg["linux"]["seccomp"] = sc
        cfg["process"].update(process)

    return edit


@e2e
def test_run_errno_rule(sh):
    sc = profile(rule(["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", errnoRet=errno.ENOSPC))
    out = sh("mkdir /tmp/x 2>&1; echo rc=$?; grep -E '^(Seccomp|NoNewPrivs):' "
             "/proc/self/status", with_seccomp(sc))
    assert "No space left on device" in out and "rc=1" in out, out
    assert "Seccomp:\t2" in out and "NoNewPrivs:\t1" in out, out


@e2e
def test_run_kill_process_exit_status(run_container):
    sc = profile(rule(["mkdir", "mkdirat"], "SCMP_ACT_KILL_PROCESS"))
    r = run_container(["/bin/mkdir", "/tmp/x"], with_seccomp(sc))
    assert r.returncode == 128 + signal.SIGSYS, r.result


@e2e
def test_run_argument_rule(sh):
    # busybox linux32 = personality(PER_LINUX32): refused; linux64 = personality(0): not
    sc = profile(rule("personality", "SCMP_ACT_ERRNO", errnoRet=errno.EXDEV,
                      args=[{"index": 0, "value": 0x0008, "op": "SCMP_CMP_EQ"}]))
    out = sh("linux32 uname -m 2>&1; echo rc=$?; linux64 uname -m", with_seccomp(sc))
    assert "cross-device" in out and "rc=1" in out, out
    assert out.strip().endswith("x86_64"), out


@e2e
@pytest.mark.skipif(not PODMAN_PROFILE.exists(), reason=f"{PODMAN_PROFILE} not installed")
def test_run_engine_profile(sh):
    # podman's profile (434 rules, 3 architectures), less mkdir and mkdirat: those get
    # the default action (SCMP_ACT_ERRNO, ENOSYS); chroot is refused by the profile's
    # own rule (EPERM) when the profile was made for a process without CAP_SYS_CHROOT.
    sc = engine_profile(PODMAN_PROFILE)
    for call in sc["syscalls"]:
        call["names"] = [n for n in call["names"] if n not in ("mkdir", "mkdirat")]
    sc["syscalls"] = [c for c in sc["syscalls"] if c["names"]]

    def chroot_cap(cfg):
        for caps in cfg["process"]["capabilities"].values():
            caps.append("CAP_SYS_CHROOT")

    out = sh("mkdir /tmp/x 2>&1; chroot / true 2>&1; echo alive", [chroot_cap,
                                                                    with_seccomp(sc)])
    assert "can't create directory '/tmp/x': Function not implemented" in out, out
    assert "chroot: can't change root directory to '/': Operation not permitted" in out, out
    assert "alive" in out, out
    assert "chroot-ok" in sh("chroot / true && echo chroot-ok", chroot_cap)


@e2e
def test_run_without_no_new_privileges_as_non_root_user(sh):
    # No no_new_privs and a user without CAP_SYS_ADMIN: the filter must be loaded while
    # the init still has the capability (runc loads it before the user switch).
    sc = profile(rule(["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", errnoRet=errno.ENOSPC))
    out = sh("mkdir /tmp/x 2>&1; id -u; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status",
             with_seccomp(sc, noNewPrivileges=False, user={"uid": 1000, "gid": 1000}))
    assert "No space left on device" in out and "1000" in out, out
    assert "Seccomp:\t2" in out and "NoNewPrivs:\t0" in out, out


def complete_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


class Agent(threading.Thread):
    """A seccomp agent on listenerPath: takes `expected` connections, keeps the states
    and notify fds they bring, and answers every notification with -error until all
    the filters' processes are gone."""

    def __init__(self, path: Path, error: int, expected: int = 1) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.error = error
        self.expected = expected
        self.states: list[dict] = []
        self.nfds: list[int] = []
        self.calls: list[int] = []
        self.failure: BaseException | None = None

    @property
    def state(self) -> dict | None:
        return self.states[0] if self.states else None

    def _take(self) -> int:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            data, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            # Not until EOF: runc 1.1.5 keeps the connection open until it exits.
            while not complete_json(data):
                chunk = conn.recv(65536)
                assert chunk, f"connection closed before a whole state: {data!r}"
                data += chunk
        self.states.append(json.loads(data))
        self.nfds.append(len(fds))
        for extra in fds[1:]:
            os.close(extra)
        return fds[0]

    def _answer(self, notify_fd: int) -> None:
        buf = bytearray(NOTIF.size)
        try:
            fcntl.ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_RECV, buf, True)
            nid, _pid, _flags, nr = NOTIF.unpack(buf)[:4]
            self.calls.append(nr)
            fcntl.ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_SEND,
                        bytearray(NOTIF_RESP.pack(nid, 0, -self.error, 0)), True)
        except OSError as e:
            if e.errno != errno.ENOENT:  # the caller died meanwhile
                raise

    def run(self) -> None:
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        live: set[int] = set()
        try:
            while len(self.states) < self.expected or live:
                events = poller.poll(TIMEOUT * 1000)
                if not events:
                    raise TimeoutError(f"agent: nothing happened for {TIMEOUT}s")
                for fd, ev in events:
                    if fd == self.sock.fileno():
                        nfd = self._take()
                        live.add(nfd)
                        poller.register(nfd, select.POLLIN)
                        if len(self.states) == self.expected:
                            poller.unregister(self.sock.fileno())
                    elif ev & select.POLLIN:
                        self._answer(fd)
                    elif ev & (select.POLLHUP | select.POLLERR):
                        poller.unregister(fd)  # every process of that filter is gone
                        live.discard(fd)
                        os.close(fd)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.failure = e
        finally:
            for fd in live:
                os.close(fd)
            self.sock.close()


@e2e
@pytest.mark.parametrize("nnp", [True, False])
def test_run_notify_agent_answers(run_container, tmp_path, nnp):
    agent = Agent(tmp_path / "agent.sock", errno.EXDEV)
    agent.start()
    sc = profile(rule(["mkdir", "mkdirat"], "SCMP_ACT_NOTIFY"),
                 listenerPath=str(tmp_path / "agent.sock"), listenerMetadata="meta data")
    r = run_container(["sh", "-c", "mkdir /tmp/x 2>&1; echo rc=$?"],
                      with_seccomp(sc, noNewPrivileges=nnp))
    agent.join(TIMEOUT)
    assert not agent.is_alive() and agent.failure is None, agent.failure
    assert r.returncode == 0 and "cross-device" in r.stdout, r.result
    assert agent.calls and set(agent.calls) <= {NR_MKDIR, seccomp.resolve("mkdirat")}
    doc = agent.state
    assert agent.nfds == [1] and doc["fds"] == ["seccompFd"], doc
    assert doc["metadata"] == "meta data"
    st = doc["state"]
    assert st["id"] == r.id and st["status"] == "creating", st
    assert st["pid"] > 0 and doc["pid"] == st["pid"]
    assert os.path.realpath(st["bundle"]) == os.path.realpath(r.bundle)


@e2e
def test_run_notify_listener_missing_fails_cleanly(run_container, tmp_path):
    sc = profile(rule(["mkdir", "mkdirat"], "SCMP_ACT_NOTIFY"),
                 listenerPath=str(tmp_path / "nobody.sock"))
    r = run_container(["true"], with_seccomp(sc))
    assert r.returncode != 0, r.result
    assert "nobody.sock" in r.stderr, r.result


@e2e
@pytest.mark.minirun_only
@pytest.mark.parametrize("sc,needles", [
    (profile(rule(["getpid", "mkdri"], "SCMP_ACT_ERRNO")),
     ["linux.seccomp.syscalls[0].names[1]", "unknown syscall 'mkdri'"]),
    (profile(rule("mkdir", "SCMP_ACT_DENY")),
     ["linux.seccomp.syscalls[0].action", "unknown seccomp action 'SCMP_ACT_DENY'"]),
    (profile(default="SCMP_ACT_NOPE"),
     ["linux.seccomp.defaultAction", "unknown seccomp action 'SCMP_ACT_NOPE'"]),
])
def test_run_bad_profile_is_one_clear_line(runtime, bundle, cid, sc, needles):
    b = bundle(["true"], with_seccomp(sc))
    c = cid()
    r = runtime("run", "--bundle", b, c)
    assert r.returncode != 0, r
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, r.stderr
    for n in needles:
        assert n in err, err
    assert not (runtime.root / c).exists()


@e2e
def test_exec_gets_the_containers_filter(runtime, bundle, cid):
    sc = profile(rule(["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", errnoRet=errno.ENOSPC))
    c = cid()
    r = runtime("run", "-d", "--bundle", bundle(["sleep", "1000"], with_seccomp(sc)), c)
    assert r.returncode == 0, r
    r = runtime("exec", c, "sh", "-c", "mkdir /tmp/y 2>&1; grep '^Seccomp:' /proc/self/status")
    assert "No space left on device" in r.stdout and "Seccomp:\t2" in r.stdout, r
    runtime.ok("delete", "--force", c)


@e2e
def test_exec_notify_fd_reaches_the_agent(runtime, bundle, cid, tmp_path):
    agent = Agent(tmp_path / "agent.sock", errno.EXDEV, expected=2)
    agent.start()
    sc = profile(rule(["mkdir", "mkdirat"], "SCMP_ACT_NOTIFY"),
                 listenerPath=str(tmp_path / "agent.sock"))
    c = cid()
    r = runtime("run", "-d", "--bundle", bundle(["sleep", "1000"], with_seccomp(sc)), c)
    assert r.returncode == 0, r
    init_pid = runtime.state(c)["pid"]
    r = runtime("exec", c, "sh", "-c", "mkdir /tmp/y 2>&1")
    runtime.ok("delete", "--force", c)
    agent.join(TIMEOUT)
    assert not agent.is_alive() and agent.failure is None, agent.failure
    assert "cross-device" in r.stdout, r
    assert agent.nfds == [1, 1] and len(agent.calls) >= 1
    create, exec_ = agent.states
    assert create["state"]["status"] == "creating" and create["pid"] == init_pid, create
    # runc: the exec'd process's pid at the top, the container's state (running) below
    assert exec_["state"]["status"] == "running", exec_
    assert exec_["state"]["pid"] == init_pid and exec_["pid"] != init_pid, exec_
