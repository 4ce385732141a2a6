"""CVE-2019-5736 class: a container process overwrites the runtime through /proc.

A process of a container without a user namespace of its own and with CAP_SYS_PTRACE
(CAP_SYS_ADMIN too, for /proc/PID/map_files) watches its pid namespace for a process
of minirun's: the set-up child of `exec` before it execs, or the init of a container
created into that pid namespace. For each such process it probes /proc/PID/exe (the
host's Python interpreter), every /proc/PID/map_files entry (libpython, libc, C
modules) and every fd above 2, and reports any it could open for writing (or, for a
file busy as a running executable, that sits on a writable mount: the write would work
once the file is no longer run). Nothing is ever written: opens are O_WRONLY without
O_TRUNC (or read-only) and closed at once.

Against the unsealed runtime (the baseline of this fix) every probe of the interpreter,
its libraries and the cgroup.procs fd reports WRITABLE. The tests also demand that the
scanner saw minirun's process at all (a `SEEN` line), so they cannot pass vacuously.

runc 1.1.5 runs `runc init` from a sealed memfd copy but maps the host's libc and
libseccomp writable: hence minirun_only.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import reap_zombie_children

pytestmark = pytest.mark.minirun_only

SCANNER_C = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static char *seen[8192];
static int nseen;

static void report(const char *line) {
    for (int i = 0; i < nseen; i++)
        if (strcmp(seen[i], line) == 0) return;
    if (nseen < 8192) seen[nseen++] = strdup(line);
    if (write(1, line, strlen(line)) < 0 || write(1, "\n", 1) < 0) _exit(3);
}

static void probe(const char *kind, int pid, const char *path, const char *name) {
    char target[4096], line[8192];
    ssize_t n = readlink(path, target, sizeof target - 1);
    struct stat st;
    if (n < 0 || stat(path, &st) != 0) return;
    target[n] = 0;
    if (S_ISDIR(st.st_mode)) {  /* a host directory: a way out of the root */
        snprintf(line, sizeof line, "DIR %s pid=%d %s %s", kind, pid, name, target);
        report(line);
        return;
    }
    if (!S_ISREG(st.st_mode)) return;
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_NOCTTY);
    if (fd >= 0) {
        close(fd);
        snprintf(line, sizeof line, "WRITABLE %s pid=%d %s %s", kind, pid, name, target);
        report(line);
        return;
    }
    int werr = errno;
    fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return;
    struct statvfs sv;
    int rw = fstatvfs(fd, &sv) == 0 && !(sv.f_flag & ST_RDONLY);
    close(fd);
    snprintf(line, sizeof line, "%s %s pid=%d %s %s errno=%d",
             rw ? "WRITABLE-MOUNT" : "READONLY", kind, pid, name, target, werr);
    report(line);
}

static void probe_dir(const char *kind, int pid, int min) {
    char dpath[64], path[512];
    snprintf(dpath, sizeof dpath, "/proc/%d/%s", pid, kind);
    DIR *d = opendir(dpath);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || (min && atoi(e->d_name) < min)) continue;
        snprintf(path, sizeof path, "%s/%s", dpath, e->d_name);
        probe(kind, pid, path, e->d_name);
    }
    closedir(d);
}

int main(void) {
    int self = getpid();
    report("SCANNING");
    for (;;) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while ((e = readdir(d))) {
            int pid = atoi(e->d_name);
            char path[64], exe[4096], line[8192];
            if (pid <= 0 || pid == self) continue;
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            ssize_t n = readlink(path, exe, sizeof exe - 1);
            if (n < 0) continue;
            exe[n] = 0;
            if (!strcmp(exe, "/bin/busybox") || !strcmp(exe, "/scan")) continue;
            snprintf(line, sizeof line, "SEEN pid=%d exe=%s", pid, exe);
            report(line);
            probe("exe", pid, path, "exe");
            probe_dir("map_files", pid, 0);
            probe_dir("fd", pid, 3);  /* 0-2 are the process's stdio, given on purpose */
        }
        closedir(d);
    }
}
"""

ATTACKER_CAPS = ["CAP_SYS_PTRACE", "CAP_SYS_ADMIN"]
EXPOSED = re.compile(r"^(WRITABLE|WRITABLE-MOUNT|DIR) ", re.M)


@pytest.fixture(scope="module")
def scanner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the static scanner")
    d = tmp_path_factory.mktemp("scanner")
    (d / "scan.c").write_text(SCANNER_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(d / "scan"), str(d / "scan.c")],
                   check=True, capture_output=True)
    return d / "scan"


def _with_caps(caps: list[str]):
    def edit(cfg: dict) -> None:
        for kind in ("bounding", "effective", "permitted"):
            cfg["process"]["capabilities"][kind] += caps
    return edit


def _scanner_bundle(bundle, scanner: Path, caps: list[str]) -> Path:
    b = bundle(["/scan"], _with_caps(caps))
    shutil.copy2(scanner, b / "rootfs" / "scan")
    return b


def _wait_scanning(result) -> None:
    deadline = time.monotonic() + 20
    while "SCANNING" not in result.read_stdout():
        assert time.monotonic() < deadline, "the scanner never started"
        time.sleep(0.05)


def _python_seen(report: str) -> list[str]:
    return re.findall(r"^SEEN pid=\d+ exe=\S*python\S*$", report, re.M)


def _assert_sealed(report: str) -> None:
    assert _python_seen(report), "the scanner never saw minirun's process:\n" + report
    lines = [ln for ln in report.splitlines() if EXPOSED.match(ln)]
    assert not lines, f"{len(lines)} host files writable from the container:\n" + \
        "\n".join(lines[:40])


def _exec_many(runtime, c: str, n: int = 6) -> None:
    for _ in range(n):
        r = runtime("exec", c, "sh", "-c", "echo ok")
        assert r.returncode == 0 and r.stdout == "ok\n", r


def test_exec_child_exposes_no_writable_host_file(runtime, bundle, cid, scanner):
    """The container itself holds CAP_SYS_PTRACE: every `exec` is sealed."""
    b = _scanner_bundle(bundle, scanner, ATTACKER_CAPS)
    c = cid()
    r = runtime.ok("run", "-d", "--bundle", b, c)
    _wait_scanning(r)
    _exec_many(runtime, c)
    time.sleep(0.2)
    runtime.ok("delete", "--force", c)
    _assert_sealed(r.read_stdout())


def test_exec_sealed_after_an_earlier_exec_with_ptrace(runtime, bundle, cid, scanner):
    """The container's config has no CAP_SYS_PTRACE, but a process started by
    `exec --cap CAP_SYS_PTRACE` runs in it: later plain execs are sealed too."""
    b = bundle(["sleep", "1000"])
    shutil.copy2(scanner, b / "rootfs" / "scan")
    c = cid()
    runtime.ok("run", "-d", "--bundle", b, c)
    caps = [a for cap in ATTACKER_CAPS for a in ("--cap", cap)]
    r = runtime.ok("exec", "--detach", *caps, c, "/scan")
    _wait_scanning(r)
    _exec_many(runtime, c)
    time.sleep(0.2)
    runtime.ok("delete", "--force", c)
    _assert_sealed(r.read_stdout())


def test_exec_result_and_cgroup_unchanged_when_sealed(runtime, bundle, cid):
    """A sealed exec behaves as an unsealed one: the process lands in the container's
    cgroup and mount namespace (not the set-up's read-only view), its exit status
    comes through."""
    b = bundle(["sleep", "1000"], _with_caps(["CAP_SYS_PTRACE"]))
    c = cid()
    runtime.ok("run", "-d", "--bundle", b, c)
    init = runtime.state(c)["pid"]
    r = runtime("--debug", "exec", c, "sh", "-c",
                "cat /proc/self/cgroup; readlink /proc/self/ns/mnt; "
                "touch /dev/shm/sealed && echo rw; exit 7")
    assert r.returncode == 7, r
    assert "step seal" in r.stderr, r  # the sealed path was taken
    with open(f"/proc/{init}/cgroup") as f:
        init_v2 = [ln for ln in f.read().splitlines() if ln.startswith("0::")]
    assert init_v2 and init_v2[0] in r.stdout.splitlines(), r
    assert Path(f"/proc/{init}/ns/mnt").readlink().name in r.stdout, r
    assert "rw" in r.stdout.splitlines(), r
    runtime.ok("delete", "--force", c)


def _joining_pid_ns_of(pid: int):
    def edit(cfg: dict) -> None:
        for ns in cfg["linux"]["namespaces"]:
            if ns["type"] == "pid":
                ns["path"] = f"/proc/{pid}/ns/pid"
    return edit


def _create_into_scanned_pid_ns(runtime, bundle, cid, scanner) -> str:
    """A scanner container, then a container created into its pid namespace, whose
    init (Python until `start`) the scanner watches; returns the scanner's report."""
    a = cid("scanner")
    r = runtime.ok("run", "-d", "--bundle", _scanner_bundle(bundle, scanner, ATTACKER_CAPS), a)
    _wait_scanning(r)
    b = cid("joiner")
    runtime.ok("create", "--bundle",
               bundle(["sh", "-c", "grep 0:: /proc/self/cgroup"],
                      _joining_pid_ns_of(runtime.state(a)["pid"])), b)
    deadline = time.monotonic() + 10
    while not _python_seen(r.read_stdout()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # time to probe every map and fd of the waiting init
    runtime.ok("start", b)
    runtime.ok("delete", "--force", b)
    # The joiner's init re-parents to us (subreaper): reaped, the pid namespace can end.
    reap_zombie_children()
    runtime.ok("delete", "--force", a)
    return r.read_stdout()


def test_create_into_joined_pid_ns_exposes_no_writable_host_file(runtime, bundle, cid,
                                                                   scanner):
    """The init of a container that joins a pid namespace by path is seen there from
    its fork: it runs from read-only mounts and holds no cgroup.procs fd. (Not
    asserted, a known gap: before pivot_root it holds host directories - its root,
    cwd and the rootfs fd - that such a process can walk out of; see README.)"""
    report = _create_into_scanned_pid_ns(runtime, bundle, cid, scanner)
    assert _python_seen(report), report
    lines = [ln for ln in report.splitlines() if ln.startswith("WRITABLE")]
    assert not lines, f"{len(lines)} host files writable from the container:\n" + \
        "\n".join(lines[:40])


def _cfg(bounding: list[str], namespaces: list[dict]) -> dict:
    return {"process": {"capabilities": {"bounding": bounding}},
            "linux": {"namespaces": namespaces}}


OWN = [{"type": "pid"}, {"type": "mount"}]


@pytest.mark.parametrize("cfg,proc_caps,pids,want", [
    (_cfg([], OWN), [], [], False),  # nobody can ptrace: the fast path
    (_cfg([], OWN), ["CAP_SYS_PTRACE"], [], True),  # exec --cap CAP_SYS_PTRACE
    (_cfg(["CAP_SYS_PTRACE"], OWN), [], [], True),  # the container's own processes
    (_cfg([], [{"type": "pid", "path": "/proc/1/ns/pid"}, {"type": "mount"}]), [], [],
     True),  # a shared pid namespace: processes we cannot enumerate
    (_cfg([], OWN), [], None, True),  # no cgroup to enumerate the processes with
    (_cfg([], OWN), [], ["self"], True),  # a running process holds it (pytest does)
    (_cfg(["CAP_SYS_PTRACE"], [*OWN, {"type": "user"}]), ["CAP_SYS_PTRACE"], ["self"],
     False),  # a user namespace of its own: CAP_SYS_PTRACE there is not the host's
    (_cfg([], [*OWN, {"type": "user", "path": "/proc/self/ns/user"}]), ["CAP_SYS_PTRACE"],
     [], True),  # "its own" user namespace is the host's, joined by path
])
def test_when_exec_is_sealed(cfg, proc_caps, pids, want):
    import os

    from minirun.linux import sealed

    lister = None if pids is None else (lambda: [os.getpid() for _ in pids])
    proc = {"capabilities": {"bounding": proc_caps}}
    assert sealed.exec_needs_seal(cfg, proc, lister) is want


def test_when_create_is_sealed():
    from minirun.linux import sealed

    joined = [{"type": "pid", "path": "/proc/1/ns/pid"}, {"type": "mount"}]
    assert sealed.create_needs_seal({"namespaces": joined})
    assert not sealed.create_needs_seal({"namespaces": OWN})
    assert not sealed.create_needs_seal({"namespaces": [*joined, {"type": "user"}]})
    host_user = {"type": "user", "path": "/proc/self/ns/user"}
    assert sealed.create_needs_seal({"namespaces": [*joined, host_user]})


def test_sealing_failure_is_one_clear_line(monkeypatch):
    """When the read-only view cannot be made, the set-up fails closed, saying why."""
    from minirun import syscalls
    from minirun.errors import MinirunError, SyscallError
    from minirun.linux import sealed

    def refuse(flags: int) -> None:
        raise SyscallError("unshare", 1)

    monkeypatch.setattr(syscalls, "unshare", refuse)
    with pytest.raises(MinirunError) as e:
        sealed._private_readonly_mounts()
    assert str(e.value) == ("seal the set-up process (the container may hold CAP_SYS_PTRACE "
                            "without a user namespace): unshare: Operation not permitted (EPERM)")


def test_sealed_create_without_a_cgroup_mount_joins_its_cgroup(runtime, bundle, cid):
    """The runtime makes the cgroup while the set-up processes work; a sealed init
    whose config mounts no /sys/fs/cgroup first asks for it after pivot_root, gets no
    fd (the runtime moves it), and still ends up in it."""
    a = cid("ns")
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "1000"]), a)
    try:
        def edit(cfg: dict) -> None:
            _joining_pid_ns_of(runtime.state(a)["pid"])(cfg)
            cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/sys/fs/cgroup"]

        b = cid("sealed")
        r = runtime("--debug", "create", "--bundle", bundle(["sleep", "1000"], edit), b)
        assert r.returncode == 0, r
        assert "step seal" in r.stderr, r  # the sealed path was taken
        pid = runtime.state(b)["pid"]
        with open(f"/proc/{pid}/cgroup") as f:
            assert any(ln.startswith("0::") and ln.endswith(f"/{b}")
                       for ln in f.read().splitlines())
        runtime.ok("delete", "--force", b)
        reap_zombie_children()
    finally:
        runtime("delete", "--force", a)
