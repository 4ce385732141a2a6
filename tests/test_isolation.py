"""What the container sees from inside: namespaces, mounts, /dev, credentials,
capabilities, rlimits and the other process settings of config.json.

Each test runs `sh -c SCRIPT` in a container and reads its stdout. All pass
against runc 1.1.5 except the ones marked minirun_only.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    TIMEOUT,
    caps_mask,
    host_mounts,
    ns_inode,
    parse_mountinfo,
    status_fields,
)

DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def add_ns(*types: str):
    def edit(cfg):
        have = {n["type"] for n in cfg["linux"]["namespaces"]}
        for t in types:
            if t not in have:
                cfg["linux"]["namespaces"].append({"type": t})

    return edit


def drop_ns(*types: str):
    def edit(cfg):
        nss = cfg["linux"]["namespaces"]
        cfg["linux"]["namespaces"] = [n for n in nss if n["type"] not in types]

    return edit


def add_mounts(*mounts: dict):
    def edit(cfg):
        cfg["mounts"].extend(mounts)

    return edit


def set_process(**kw):
    def edit(cfg):
        cfg["process"].update(kw)

    return edit


def mountinfo_inside(out: str) -> dict[str, object]:
    """mount point -> last MountEntry from a `cat /proc/self/mountinfo` dump."""
    return {m.mountpoint: m for m in parse_mountinfo(out)}


# ---------------------------------------------------------------- namespaces


def test_pid_1_in_new_pid_namespace(sh):
    out = sh("echo $$; readlink /proc/self/ns/pid; ls /proc | grep -c '^[0-9]*$'")
    pid, ns, nprocs = out.split()
    assert pid == "1"
    assert ns != ns_inode("self", "pid")
    assert int(nprocs) <= 3  # sh, ls, grep at most


def test_hostname(sh):
    out = sh("hostname; cat /proc/sys/kernel/hostname", {"hostname": "box-one"})
    assert out.split() == ["box-one", "box-one"]
    assert Path("/proc/sys/kernel/hostname").read_text().strip() != "box-one"


@pytest.mark.minirun_only
def test_domainname(sh):
    """runc 1.1.5 ignores "domainname" (minirun_only); linux.sysctl
    kernel.domainname is the way that works with runc (see test_sysctl_namespaced)."""
    out = sh("hostname; cat /proc/sys/kernel/domainname",
             {"hostname": "box-one", "domainname": "example.org"})
    assert out.split() == ["box-one", "example.org"]
    assert Path("/proc/sys/kernel/domainname").read_text().strip() != "example.org"


def test_hostname_needs_uts_namespace(run_container):
    """runc refuses a hostname without a private UTS namespace."""
    r = run_container(["true"], [drop_ns("uts"), {"hostname": "nope"}])
    assert r.returncode != 0
    assert r.stderr.strip()


@pytest.mark.parametrize("nstype,procname", [
    ("uts", "uts"), ("ipc", "ipc"), ("network", "net"), ("mount", "mnt"), ("cgroup", "cgroup"),
    ("pid", "pid"),
])
def test_namespace_is_new(sh, nstype, procname):
    out = sh(f"readlink /proc/self/ns/{procname}", add_ns(nstype))
    assert out.strip() != ns_inode("self", procname)
    assert out.strip().startswith(f"{procname}:[")


@pytest.mark.parametrize("nstype,procname", [
    ("uts", "uts"), ("ipc", "ipc"), ("network", "net"),
])
def test_namespace_not_requested_is_shared(sh, nstype, procname):
    def edit(cfg):
        drop_ns(nstype)(cfg)
        if nstype == "uts":
            cfg.pop("hostname", None)  # refused without a UTS namespace

    out = sh(f"readlink /proc/self/ns/{procname}; readlink /proc/self/ns/user", edit)
    ns, user = out.split()
    assert ns == ns_inode("self", procname)
    assert user == ns_inode("self", "user")


def test_network_namespace_has_only_lo_up(sh):
    out = sh("ls /sys/class/net; cat /sys/class/net/lo/flags")
    names = out.split()[:-1]
    flags = int(out.split()[-1], 16)
    assert names == ["lo"]
    assert flags & 0x1, "lo must be UP (IFF_UP)"


def test_join_netns_by_path(sh, ctx, tmp_path):
    nsfile = tmp_path / "netns"
    nsfile.touch()
    subprocess.run(["unshare", f"--net={nsfile}", "true"], check=True, timeout=TIMEOUT)
    ctx.cleanups.append(lambda: subprocess.run(["umount", str(nsfile)], check=True))
    want = f"net:[{os.stat(nsfile).st_ino}]"

    def join(cfg):
        for n in cfg["linux"]["namespaces"]:
            if n["type"] == "network":
                n["path"] = str(nsfile)

    out = sh("readlink /proc/self/ns/net; ls /sys/class/net", join)
    lines = out.split()
    assert lines[0] == want


def test_join_other_container_namespaces(runtime, bundle, cid, sh):
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "1000"], {"hostname": "first"}), c)
    pid = runtime.state(c)["pid"]

    def join(cfg):
        for n in cfg["linux"]["namespaces"]:
            if n["type"] in ("network", "uts", "ipc"):
                n["path"] = f"/proc/{pid}/ns/{ {'network': 'net'}.get(n['type'], n['type']) }"
        cfg.pop("hostname", None)  # the joined UTS namespace keeps its own

    out = sh("for n in net uts ipc; do readlink /proc/self/ns/$n; done; hostname", join)
    net, uts, ipc, host = out.split()
    assert net == ns_inode(pid, "net")
    assert uts == ns_inode(pid, "uts")
    assert ipc == ns_inode(pid, "ipc")
    assert host == "first"


def userns(cfg):
    add_ns("user")(cfg)
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def test_user_namespace_mappings(runtime, sh, public_tmp, bundle, cid):
    out = sh("cat /proc/self/uid_map /proc/self/gid_map; id -u; readlink /proc/self/ns/user; "
             "stat -c %u /bin/busybox", userns, base=public_tmp)
    lines = out.splitlines()
    assert lines[0].split() == ["0", "100000", "65536"]
    assert lines[1].split() == ["0", "100000", "65536"]
    assert lines[2] == "0"
    assert lines[3] != ns_inode("self", "user")
    assert lines[4] == "65534"  # host root is unmapped: the overflow uid

    # seen from the host, the container's root is uid 100000
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "1000"], userns, base=public_tmp), c)
    pid = runtime.state(c)["pid"]
    st = status_fields(Path(f"/proc/{pid}/status").read_text())
    assert st["Uid"].split() == ["100000"] * 4
    assert st["Gid"].split() == ["100000"] * 4


@pytest.mark.minirun_only
def test_time_namespace_offsets(sh):
    """runc 1.1.5 has no time namespace support (minirun_only)."""
    day10 = 10 * 86400

    def tns(cfg):
        add_ns("time")(cfg)
        cfg["linux"]["timeOffsets"] = {"monotonic": {"secs": day10, "nanosecs": 0},
                                       "boottime": {"secs": day10, "nanosecs": 0}}

    host_before = float(Path("/proc/uptime").read_text().split()[0])
    out = sh("cat /proc/uptime; readlink /proc/self/ns/time", tns)
    host_after = float(Path("/proc/uptime").read_text().split()[0])
    up = float(out.split()[0])
    assert host_before + day10 - 1 <= up <= host_after + day10 + 1
    assert out.split()[2] != ns_inode("self", "time")


# ---------------------------------------------------------------- root filesystem


def test_root_readonly(sh):
    out = sh("touch /probe 2>/dev/null && echo wrote || echo refused; cat /proc/self/mountinfo")
    assert out.splitlines()[0] == "refused"
    root = mountinfo_inside("\n".join(out.splitlines()[1:]))["/"]
    assert "ro" in root.options.split(",")


def test_root_writable(sh, bundle):
    out = sh("touch /probe && echo wrote", {"root": {"path": "rootfs", "readonly": False}})
    assert out.strip() == "wrote"


def test_no_pivot(runtime, bundle, cid):
    b = bundle(["sh", "-c", "cat /etc/hostname; ls /; test -e /bin/busybox && echo has-busybox"])
    r = runtime("run", "--no-pivot", "--bundle", b, cid())
    assert r.returncode == 0, r
    lines = r.stdout.split()
    assert lines[0] == "busybox"  # the rootfs's /etc/hostname, not the host's
    assert "has-busybox" in lines
    assert "work" not in lines  # the host's / is not visible


def test_root_is_pivoted(sh):
    out = sh("cat /etc/hostname; ls /")
    assert out.split()[0] == "busybox"
    assert "work" not in out.split()


# ---------------------------------------------------------------- mounts


@pytest.fixture
def srcdir(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    (d / "marker").write_text("from-host\n")
    return d


def test_bind_mount(sh, srcdir):
    out = sh("cat /mnt/b/marker; echo new > /mnt/b/written",
             add_mounts({"destination": "/mnt/b", "type": "bind", "source": str(srcdir),
                         "options": ["bind"]}))
    assert out.strip() == "from-host"
    assert (srcdir / "written").read_text() == "new\n"


def test_bind_mount_relative_source(sh, bundle, srcdir, runtime, cid):
    b = bundle(["cat", "/mnt/b/marker"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["mounts"].append({"destination": "/mnt/b", "type": "bind",
                          "source": os.path.relpath(srcdir, b), "options": ["bind"]})
    (b / "config.json").write_text(json.dumps(cfg))
    r = runtime("run", "--bundle", b, cid())
    assert r.returncode == 0, r
    assert r.stdout.strip() == "from-host"


def test_bind_ro(sh, srcdir):
    out = sh("cat /mnt/b/marker; touch /mnt/b/x 2>/dev/null && echo wrote || echo refused; "
             "cat /proc/self/mountinfo",
             add_mounts({"destination": "/mnt/b", "type": "bind", "source": str(srcdir),
                         "options": ["bind", "ro"]}))
    lines = out.splitlines()
    assert lines[:2] == ["from-host", "refused"]
    m = mountinfo_inside("\n".join(lines[2:]))["/mnt/b"]
    assert "ro" in m.options.split(",")
    assert not (srcdir / "x").exists()


def test_rbind_and_bind_submounts(sh, srcdir, ctx):
    sub = srcdir / "sub"
    sub.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(sub)], check=True)
    ctx.cleanups.append(lambda: subprocess.run(["umount", str(sub)], check=True))
    (sub / "inner").write_text("in-submount\n")
    out = sh("cat /mnt/r/sub/inner; ls -A /mnt/b/sub; echo end",
             add_mounts({"destination": "/mnt/r", "type": "bind", "source": str(srcdir),
                         "options": ["rbind"]},
                        {"destination": "/mnt/b", "type": "bind", "source": str(srcdir),
                         "options": ["bind"]}))
    assert out.split() == ["in-submount", "end"]  # bind alone does not carry the submount


def test_mount_flags_nosuid_nodev_noexec(sh):
    out = sh("cp /bin/busybox /mnt/t/bb; /mnt/t/bb true 2>/dev/null && echo ran || echo noexec; "
             "cat /proc/self/mountinfo",
             add_mounts({"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
                         "options": ["nosuid", "nodev", "noexec", "size=8m"]}))
    lines = out.splitlines()
    assert lines[0] == "noexec"
    m = mountinfo_inside("\n".join(lines[1:]))["/mnt/t"]
    opts = m.options.split(",")
    assert {"nosuid", "nodev", "noexec", "rw"} <= set(opts), m


def test_tmpfs_size_and_mode(sh):
    out = sh("stat -c %a /mnt/t; cat /proc/self/mountinfo",
             add_mounts({"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
                         "options": ["size=1m", "mode=710"]}))
    lines = out.splitlines()
    assert lines[0] == "710"
    m = mountinfo_inside("\n".join(lines[1:]))["/mnt/t"]
    assert m.fstype == "tmpfs"
    sopts = m.super_options.split(",")
    assert "size=1024k" in sopts and "mode=710" in sopts, m


@pytest.fixture
def shared_src(tmp_path, ctx):
    """A host directory that is a shared mount (its own peer group)."""
    d = tmp_path / "shared"
    d.mkdir()
    subprocess.run(["mount", "--bind", str(d), str(d)], check=True)
    ctx.cleanups.append(lambda: subprocess.run(["umount", str(d)], check=True))
    subprocess.run(["mount", "--make-shared", str(d)], check=True)
    (d / "marker").write_text("shared\n")
    return d


def _optional(m) -> set[str]:
    return {o.split(":")[0] for o in m.optional.split()}


@pytest.mark.parametrize("prop,want,unwanted", [
    ("rprivate", set(), {"shared", "master"}), ("private", set(), {"shared", "master"}),
    ("rslave", {"master"}, {"shared"}), ("slave", {"master"}, {"shared"}),
    # a slave of the host's peer group made shared: "shared:N master:M"
    ("rshared", {"shared"}, set()), ("shared", {"shared"}, set()),
])
def test_mount_propagation(sh, shared_src, prop, want, unwanted):
    out = sh("cat /proc/self/mountinfo",
             add_mounts({"destination": "/mnt/p", "type": "bind", "source": str(shared_src),
                         "options": ["rbind", prop]}))
    m = mountinfo_inside(out)["/mnt/p"]
    assert want <= _optional(m), m
    assert not (unwanted & _optional(m)), m


def test_mount_propagation_slave_receives_host_mounts(runtime, bundle, cid, shared_src, ctx):
    """An rslave bind mount sees mounts the host makes later below its source."""
    c = cid()
    b = bundle(["sleep", "1000"],
               add_mounts({"destination": "/mnt/p", "type": "bind", "source": str(shared_src),
                           "options": ["rbind", "rslave"]}))
    runtime.ok("run", "-d", "--bundle", b, c)
    pid = runtime.state(c)["pid"]
    late = shared_src / "late"
    late.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(late)], check=True)
    ctx.cleanups.append(lambda: subprocess.run(["umount", str(late)], check=True))
    (late / "f").write_text("late\n")
    # look through the container's root from the host
    assert Path(f"/proc/{pid}/root/mnt/p/late/f").read_text() == "late\n"
    runtime.ok("delete", "--force", c)


def test_symlinked_mount_destinations_stay_in_rootfs(runtime, bundle, cid, srcdir):
    """CVE-2021-30465 class: a mount destination that runs through a symlink in
    the rootfs pointing at / or ../../.. or an absolute host path must land
    inside the rootfs, and create nothing outside it."""
    tag = f"minirun-cve-{secrets.token_hex(4)}"
    outside = [Path("/") / f"{tag}-a", Path("/") / f"{tag}-b", Path("/tmp") / f"{tag}-c"]
    mounts_before = {(m.mountpoint, m.fstype) for m in host_mounts()}
    b = bundle(["sh", "-c", f"cat /{tag}-a/marker /{tag}-b/marker /tmp/{tag}-c/marker; "
                            "cat /proc/self/mountinfo"],
               add_mounts(
                   {"destination": f"/link-root/{tag}-a", "type": "bind", "source": str(srcdir),
                    "options": ["bind"]},
                   {"destination": f"/link-up/{tag}-b", "type": "bind", "source": str(srcdir),
                    "options": ["bind"]},
                   {"destination": "/link-out", "type": "bind", "source": str(srcdir),
                    "options": ["bind"]}))
    os.symlink("/", b / "rootfs" / "link-root")
    os.symlink("../../../../../../../..", b / "rootfs" / "link-up")
    os.symlink(f"/tmp/{tag}-c", b / "rootfs" / "link-out")
    try:
        r = runtime("run", "--bundle", b, cid())
        leaked = [p for p in outside if os.path.lexists(p)]
    finally:
        for p in outside:  # only our uniquely named, empty directories
            if p.is_dir() and not p.is_symlink():
                try:
                    p.rmdir()
                except OSError:
                    pass
    assert not leaked, f"the runtime created {leaked} on the host"
    assert {(m.mountpoint, m.fstype) for m in host_mounts()} <= mounts_before | {
        (m.mountpoint, m.fstype) for m in host_mounts() if str(b) in m.mountpoint}
    if r.returncode == 0:
        assert r.stdout.splitlines()[:3] == ["from-host"] * 3
        inside = mountinfo_inside("\n".join(r.stdout.splitlines()[3:]))
        assert f"/{tag}-a" in inside and f"/{tag}-b" in inside and f"/tmp/{tag}-c" in inside
    else:  # refusing is acceptable too, as long as it said why
        assert r.stderr.strip()
    for p in ("link-root", "link-up", "link-out"):
        assert (b / "rootfs" / p).is_symlink()  # not replaced by the runtime


def test_masked_paths(sh):
    out = sh("wc -c < /proc/timer_list; stat -c '%t:%T' /proc/timer_list; "
             "ls -A /proc/acpi | wc -l; ls -A /sys/firmware | wc -l; "
             "ls -A /etc | wc -l; cat /etc/passwd 2>/dev/null | wc -c",
             lambda c: c["linux"]["maskedPaths"].append("/etc"))
    size, dev, acpi, fw, etc, passwd = out.split()
    assert size == "0"
    assert dev == "1:3"  # /dev/null bound over it
    assert acpi == "0" and fw == "0" and etc == "0" and passwd == "0"


def test_readonly_paths(sh):
    out = sh("echo x > /proc/sys/kernel/domainname 2>/dev/null && echo wrote-proc || echo ro-proc; "
             "touch /tmp/probe 2>/dev/null && echo wrote-tmp || echo ro-tmp; "
             "touch /probe && echo wrote-root",
             [{"root": {"path": "rootfs", "readonly": False}},
              lambda c: c["linux"]["readonlyPaths"].append("/tmp")])
    assert out.split() == ["ro-proc", "ro-tmp", "wrote-root"]


# ---------------------------------------------------------------- /dev


def test_dev_contents(sh):
    out = sh("for d in null zero full random urandom tty; do "
             "stat -c '%n %F %t:%T %a' /dev/$d; done; "
             "for l in fd stdin stdout stderr; do echo /dev/$l $(readlink /dev/$l); done; "
             "test -c /dev/ptmx -o -L /dev/ptmx && echo ptmx-ok; "
             "test -c /dev/pts/ptmx && echo pts-ptmx-ok; "
             "echo x > /dev/null && head -c 3 /dev/zero | od -An -tx1; "
             "head -c 4 /dev/urandom | wc -c; "
             "echo mountinfo:; cat /proc/self/mountinfo")
    lines = out.splitlines()
    devs = {ln.split()[0]: ln.split()[1:] for ln in lines[:6]}
    want = {"null": "1:3", "zero": "1:5", "full": "1:7", "random": "1:8", "urandom": "1:9",
            "tty": "5:0"}
    for name, mm in want.items():
        f = devs[f"/dev/{name}"]
        assert " ".join(f[:-2]) == "character special file" and f[-2] == mm, (name, f)
        assert f[-1] == "666", (name, f)
    links = dict(ln.split() for ln in lines[6:10])
    assert links == {"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
                     "/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"}
    assert "ptmx-ok" in lines and "pts-ptmx-ok" in lines
    i = lines.index("mountinfo:")
    assert lines[i - 2].split() == ["00", "00", "00"]
    assert lines[i - 1].strip() == "4"
    fs = {k: m.fstype for k, m in mountinfo_inside("\n".join(lines[i + 1:])).items()}
    assert fs.get("/dev") == "tmpfs" and fs.get("/dev/pts") == "devpts"
    assert fs.get("/dev/shm") == "tmpfs" and fs.get("/dev/mqueue") == "mqueue"


def test_dev_has_no_host_devices(sh):
    out = sh("ls /dev")
    names = set(out.split())
    for bad in ("vda", "sda", "kvm", "mem", "kmsg", "port", "loop0", "nvme0"):
        assert bad not in names, names


def test_linux_devices(sh):
    def dev(cfg):
        cfg["linux"]["devices"] = [
            {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
             "fileMode": 0o640, "uid": 1000, "gid": 1001},
            # root without CAP_DAC_OVERRIDE (default caps) needs the mode bits
            {"path": "/dev/sub/myzero", "type": "c", "major": 1, "minor": 5,
             "fileMode": 0o666, "uid": 0, "gid": 0},
        ]
        cfg["linux"]["resources"]["devices"].append(
            {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"})

    out = sh("stat -c '%F|%t:%T|%a|%u|%g' /dev/mynull /dev/sub/myzero; "
             "head -c 2 /dev/sub/myzero | od -An -tx1", dev)
    assert out.splitlines() == ["character special file|1:3|640|1000|1001",
                                "character special file|1:5|666|0|0", " 00 00"]


def test_device_cgroup_denies_unlisted_device(sh):
    """With the default deny-all rule, a node made with mknod is not usable."""
    def edit(cfg):
        cfg["process"]["capabilities"]["bounding"].append("CAP_MKNOD")
        cfg["process"]["capabilities"]["effective"].append("CAP_MKNOD")
        cfg["process"]["capabilities"]["permitted"].append("CAP_MKNOD")

    out = sh("mknod /dev/mem2 c 1 1 && echo made; head -c 1 /dev/mem2 >/dev/null 2>&1 "
             "&& echo READ || echo denied", edit)
    assert out.split() == ["made", "denied"]


# ---------------------------------------------------------------- process


def test_user_and_groups(sh):
    out = sh("grep -E '^(Uid|Gid|Groups):' /proc/self/status",
             set_process(user={"uid": 1000, "gid": 1001, "additionalGids": [1002, 1003]}))
    st = status_fields(out)
    assert st["Uid"].split() == ["1000"] * 4
    assert st["Gid"].split() == ["1001"] * 4
    assert sorted(st["Groups"].split()) == ["1002", "1003"]


def test_root_user_has_no_supplementary_groups(sh):
    out = sh("grep -E '^(Uid|Gid|Groups):' /proc/self/status")
    st = status_fields(out)
    assert st["Uid"].split() == ["0"] * 4
    assert st["Gid"].split() == ["0"] * 4
    assert st["Groups"].split() == []


@pytest.mark.parametrize("umask,want", [(0o027, "0027"), (0o077, "0077")])
def test_umask(sh, umask, want):
    out = sh("umask", set_process(user={"uid": 0, "gid": 0, "umask": umask}))
    assert out.strip() == want


def test_default_umask(sh):
    assert sh("umask").strip() == "0022"


def test_cwd(sh):
    assert sh("pwd", set_process(cwd="/tmp")).strip() == "/tmp"


def test_cwd_created_when_missing(sh):
    assert sh("pwd", set_process(cwd="/new/work/dir")).strip() == "/new/work/dir"


def test_env(sh):
    env = ["PATH=/bin", "FOO=bar baz", "EMPTY=", "HOME=/somewhere"]
    # "; true" keeps sh from exec'ing tr: then /proc/1 is sh, exec'd by the runtime
    out = sh("tr '\\0' '\\n' < /proc/1/environ; true", set_process(env=env))
    assert out.splitlines() == env


def test_env_home_added(sh):
    """runc sets HOME from the rootfs's /etc/passwd when the config lacks it."""
    out = sh("tr '\\0' '\\n' < /proc/1/environ; true", set_process(env=["PATH=/bin", "A=1"]))
    assert sorted(out.splitlines()) == ["A=1", "HOME=/root", "PATH=/bin"]


def test_args_exec_with_path_lookup(run_container):
    r = run_container(["echo", "arg with space", "*"])
    assert r.returncode == 0, r.result
    assert r.stdout == "arg with space *\n"


def _caps(out: str) -> dict[str, int]:
    st = status_fields(out)
    return {k: int(st[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}


def test_default_capabilities(sh):
    caps = _caps(sh("cat /proc/self/status"))
    m = caps_mask(DEFAULT_CAPS)
    assert m == (1 << 29) | (1 << 5) | (1 << 10)
    # The default spec asks for ambient caps but no inheritable ones: the
    # kernel only keeps ambient caps that are also inheritable, so none.
    assert caps == {"CapInh": 0, "CapPrm": m, "CapEff": m, "CapBnd": m, "CapAmb": 0}


def test_capability_sets(sh):
    sets = {
        "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_NET_RAW"],
        "permitted": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"],
        "effective": ["CAP_KILL", "CAP_CHOWN"],
        "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
        "ambient": ["CAP_KILL"],
    }
    # uid 1000: for a non-root user the exec'd process keeps only what
    # ambient carries (plus what the file grants: nothing here).
    out = sh("cat /proc/self/status",
             set_process(capabilities=sets, user={"uid": 1000, "gid": 1000}))
    caps = _caps(out)
    assert caps["CapBnd"] == caps_mask(sets["bounding"])
    assert caps["CapInh"] == caps_mask(sets["inheritable"])
    assert caps["CapAmb"] == caps_mask(["CAP_KILL"])
    assert caps["CapPrm"] == caps_mask(["CAP_KILL"])
    assert caps["CapEff"] == caps_mask(["CAP_KILL"])


@pytest.mark.parametrize("nnp", [True, False])
def test_capability_sets_root(sh, nnp):
    sets = {
        "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_NET_RAW"],
        "permitted": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"],
        "effective": ["CAP_KILL", "CAP_CHOWN"],
        "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
        "ambient": ["CAP_KILL"],
    }
    caps = _caps(sh("cat /proc/self/status", set_process(capabilities=sets, noNewPrivileges=nnp)))
    assert caps["CapBnd"] == caps_mask(sets["bounding"])
    assert caps["CapInh"] == caps_mask(sets["inheritable"])
    assert caps["CapAmb"] == caps_mask(["CAP_KILL"])
    # exec as uid 0: the file counts as having every capability, so
    # P'(permitted) = P(inheritable) | P(bounding), but no_new_privs forbids
    # gaining any, which caps it at the permitted set the runtime gave it;
    # P'(effective) = P'(permitted) for root.
    want_prm = caps_mask(sets["inheritable"]) | caps_mask(sets["bounding"])
    if nnp:
        want_prm &= caps_mask(sets["permitted"])
    assert caps["CapPrm"] == want_prm
    assert caps["CapEff"] == want_prm


def test_no_capabilities(sh):
    caps = _caps(sh("cat /proc/self/status", set_process(capabilities={})))
    assert caps == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0}


def test_rlimits(sh):
    rl = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 4096},
          {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
          {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    out = sh("ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu; ulimit -c",
             set_process(rlimits=rl))
    assert out.split() == ["512", "4096", "300", "400", "0"]


def test_default_rlimits(sh):
    assert sh("ulimit -n; ulimit -Hn").split() == ["1024", "1024"]


def _hard_nofile() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("this host has no finite RLIMIT_NOFILE hard limit")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                                                    hard + 1))
    except (ValueError, OSError):
        return hard
    # we could raise it: CAP_SYS_RESOURCE is held; undo and skip
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    pytest.skip("raising a hard rlimit works here (CAP_SYS_RESOURCE held)")


def test_rlimit_above_hard_limit_fails(run_container, runtime):
    hard = _hard_nofile()
    r = run_container(["true"], set_process(
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard + 1000}]))
    assert r.returncode != 0, r.result
    assert r.stderr.strip()
    assert runtime("state", r.id).returncode != 0


@pytest.mark.minirun_only
def test_rlimit_above_hard_limit_names_rlimit(run_container):
    hard = _hard_nofile()
    r = run_container(["true"], set_process(
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard + 1000}]))
    assert r.returncode != 0
    assert "RLIMIT_NOFILE" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("nnp,want", [(True, "1"), (False, "0")])
def test_no_new_privileges(sh, nnp, want):
    out = sh("grep NoNewPrivs /proc/self/status", set_process(noNewPrivileges=nnp))
    assert status_fields(out)["NoNewPrivs"] == want


def _caller_oom() -> int:
    return int(Path("/proc/self/oom_score_adj").read_text())


def test_oom_score_adj(sh):
    want = min(_caller_oom() + 100, 1000)
    out = sh("cat /proc/self/oom_score_adj", set_process(oomScoreAdj=want))
    assert out.strip() == str(want)


def test_oom_score_adj_default_inherited(sh):
    assert sh("cat /proc/self/oom_score_adj").strip() == str(_caller_oom())


def _can_lower_oom() -> bool:
    cur = _caller_oom()
    if cur <= -1000:
        return True
    try:
        Path("/proc/self/oom_score_adj").write_text(str(cur - 1))
    except PermissionError:
        return False
    Path("/proc/self/oom_score_adj").write_text(str(cur))
    return True


def test_oom_score_adj_lower_fails(run_container, runtime):
    if _can_lower_oom():
        pytest.skip("this host allows lowering oom_score_adj (CAP_SYS_RESOURCE held)")
    r = run_container(["true"], set_process(oomScoreAdj=_caller_oom() - 100))
    assert r.returncode != 0, r.result
    assert r.stderr.strip()
    assert runtime("state", r.id).returncode != 0


@pytest.mark.minirun_only
def test_oom_score_adj_lower_names_field(run_container):
    if _can_lower_oom():
        pytest.skip("this host allows lowering oom_score_adj (CAP_SYS_RESOURCE held)")
    r = run_container(["true"], set_process(oomScoreAdj=_caller_oom() - 100))
    assert r.returncode != 0
    assert "oom_score_adj" in r.stderr.lower() or "oomscoreadj" in r.stderr.lower(), r.stderr
    assert "Traceback" not in r.stderr


def test_sysctl_namespaced(sh):
    host = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    out = sh("cat /proc/sys/net/ipv4/ip_forward; cat /proc/sys/kernel/domainname",
             {"linux": {"sysctl": {"net.ipv4.ip_forward": "1",
                                   "kernel.domainname": "sysctl.test"}}})
    assert out.split() == ["1", "sysctl.test"]
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host


def test_process_dumpable_after_exec(runtime, bundle, cid):
    """After exec the container process is an ordinary (dumpable) process: its
    /proc entries belong to its own uid, not root."""
    c = cid()
    runtime.ok("run", "-d", "--bundle",
               bundle(["sleep", "1000"], set_process(user={"uid": 1000, "gid": 1000})), c)
    pid = runtime.state(c)["pid"]
    deadline = time.monotonic() + TIMEOUT
    while Path(f"/proc/{pid}/cmdline").read_bytes() != b"sleep\x001000\x00":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    st = os.stat(f"/proc/{pid}/environ")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")} == {0, 1, 2}
