"""The order of the set-up steps, runc's (issue 12): the seccomp filter goes on as late as
it can, with nothing but the user switch (and, with no_new_privs, nothing at all) after
it, so custom allow-list profiles that lack what only the runtime needs (close_range,
getcwd, fcntl) still start; cwd is entered while privileged; startContainer hooks run
under the filter with cwd at the container's root."""

from __future__ import annotations

import os

import pytest
from conftest import MINIRUN_BIN, RUNC_BIN

# What busybox's sh/true/echo and the kernel's execve need, and the user switch: an
# allow-list as custom profiles are written, which never heard of the runtime's needs.
ALLOWED = """read write writev readv openat open close exit exit_group execve execveat brk mmap
munmap mprotect mremap madvise arch_prctl set_tid_address set_robust_list rseq prlimit64
getrandom newfstatat fstat stat lstat statx ioctl getuid geteuid getgid getegid getpid
getppid gettid getpgrp setuid setgid setgroups setresuid setresgid capget capset prctl
rt_sigaction rt_sigprocmask rt_sigreturn sigaltstack uname access faccessat faccessat2
readlink readlinkat getdents64 lseek dup dup2 dup3 pipe pipe2 wait4 clone clone3 vfork
fork futex nanosleep clock_nanosleep clock_gettime gettimeofday kill tgkill tkill chdir
fchdir sendto sendmsg recvfrom recvmsg accept accept4 socket connect poll ppoll
pselect6 select getsockopt setsockopt getsockname getpeername umask sched_yield
sched_getaffinity getcwd fcntl close_range membarrier""".split()


def _profile(without: set[str]) -> dict:
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": sorted(set(ALLOWED) - without),
                          "action": "SCMP_ACT_ALLOW"}]}


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
@pytest.mark.parametrize("missing", [{"close_range"}, {"getcwd"}, {"fcntl"},
                                     {"close_range", "getcwd", "fcntl"}],
                         ids=["close_range", "getcwd", "fcntl", "all-three"])
def test_allow_list_without_runtime_syscalls_starts(run_container, nnp, missing):
    r = run_container(["echo", "started"], {"process": {"noNewPrivileges": nnp},
                                            "linux": {"seccomp": _profile(missing)}})
    assert r.returncode == 0 and "started" in r.stdout, r.result


@pytest.mark.parametrize("binary", [MINIRUN_BIN, RUNC_BIN], ids=["minirun", "runc"])
def test_cwd_entered_while_privileged(make_runtime, bundle, cid, binary, public_tmp):
    """A user without search permission on its cwd still starts there, as runc allows."""
    if not os.path.exists(binary):
        pytest.skip("runc is not installed")
    rt = make_runtime(binary, "rt")

    def edits(cfg):
        cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
        cfg["process"]["cwd"] = "/locked/in"
        cfg["process"]["args"] = ["sh", "-c", "echo cwd=$(pwd)"]

    b = bundle(None, edits, base=public_tmp)
    locked = b / "rootfs" / "locked"
    (locked / "in").mkdir(parents=True)
    locked.chmod(0o700)  # root's: uid 1000 cannot search it
    r = rt("run", "--bundle", b, cid())
    assert r.returncode == 0 and "cwd=/locked/in" in r.stdout, r


@pytest.mark.minirun_only
def test_start_container_hook_runs_under_the_filter_at_the_root(run_container, bundle):
    """startContainer hooks run in the container, after the filter: mkdir denied by the
    profile fails in the hook too; its cwd is the container's root."""
    def edits(cfg):
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
        cfg["root"]["readonly"] = False
        cfg["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": [
            "sh", "-c", "pwd > /hook-cwd; mkdir /hook-dir 2>/dev/null; echo $? > /hook-rc"]}]}
        cfg["process"]["args"] = ["sh", "-c", "cat /hook-cwd /hook-rc"]

    r = run_container([], bundle_dir=bundle(None, edits))
    assert r.returncode == 0, r.result
    assert r.stdout.split() == ["/", "1"], r.stdout


PROBE_C = r"""
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    long r = syscall(SYS_clone3, 0, 0);   /* newer than every name the profile lists */
    printf("clone3 errno=%d\n", r < 0 ? errno : 0);
    r = syscall(500);                      /* a number no kernel has (yet) */
    printf("500 errno=%d\n", r < 0 ? errno : 0);
    return 0;
}
"""


def test_syscall_newer_than_the_profile_gets_enosys(run_container, bundle, tmp_path):
    """A profile written before clone3 (default errno, an allow-list without it): clone3
    and unknown numbers return ENOSYS (as runc 1.1), so libcs fall back to clone; a
    syscall the profile's numbers cover still gets the default errno."""
    import shutil
    import subprocess

    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the probe (make deps installs it)")
    src = tmp_path / "probe.c"
    src.write_text(PROBE_C)
    probe = tmp_path / "probe"
    r = subprocess.run(["gcc", "-static", "-O2", "-o", str(probe), str(src)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build a static probe: {r.stderr.strip()[-200:]}")
    names = sorted(set(ALLOWED) - {"clone3", "close_range", "faccessat2", "rseq",
                                   "membarrier"})
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
               "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}
    b = bundle(["/probe"], {"linux": {"seccomp": profile}})
    shutil.copy(probe, b / "rootfs" / "probe")
    r = run_container([], bundle_dir=b)
    assert r.returncode == 0, r.result
    assert "clone3 errno=38" in r.stdout and "500 errno=38" in r.stdout, r.stdout


@pytest.mark.parametrize("binary", [MINIRUN_BIN, RUNC_BIN], ids=["minirun", "runc"])
def test_mounts_under_a_read_only_mount(make_runtime, bundle, cid, binary):
    """/dev mounted `ro` with /dev/pts under it: made first, read-only after (runc)."""
    rt = make_runtime(binary, "rt")

    def edits(cfg):
        for m in cfg["mounts"]:
            if m["destination"] == "/dev":
                m["options"] = [*m["options"], "ro"]
        cfg["process"]["args"] = ["sh", "-c", "ls -d /dev/pts/ptmx /dev/null; "
                                  "touch /dev/x 2>/dev/null && echo dev-rw || echo dev-ro"]

    r = rt("run", "--bundle", bundle(None, edits), cid())
    assert r.returncode == 0, r
    assert sorted(r.stdout.split()) == ["/dev/null", "/dev/pts/ptmx", "dev-ro"], r.stdout


def test_bind_source_the_mapped_root_cannot_reach(run_container, public_tmp, tmp_path):
    """The source sits in a directory only the host's root can search; the container's
    root is uid 100000: the runtime opens the source from outside, in the container's
    new mount namespace (runc's order), and the init mounts it by fd."""
    hidden = tmp_path / "hidden"  # under pytest's tmp_path: 0700, root's
    (hidden / "data").mkdir(parents=True)
    (hidden / "data" / "file").write_text("reached")

    def edits(cfg):
        cfg["linux"]["namespaces"] = [{"type": t} for t in
                                      ("pid", "network", "ipc", "uts", "mount", "user")]
        for key in ("uidMappings", "gidMappings"):
            cfg["linux"][key] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] not in ("sysfs", "cgroup")]
        cfg["mounts"].append({"destination": "/tmp", "type": "bind",  # exists in the image
                              "source": str(hidden / "data"), "options": ["rbind", "ro"]})
        cfg["process"]["args"] = ["cat", "/tmp/file"]

    r = run_container([], edits, base=public_tmp)
    assert r.returncode == 0 and r.stdout.strip() == "reached", r.result
