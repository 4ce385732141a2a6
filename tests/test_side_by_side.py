"""The same bundles under runc (RUNC_BIN) and under minirun (MINIRUN_BIN), each
with its own state root: exit codes, state fields and status sequence, and
what the container sees must match.

With MINIRUN_BIN pointing at runc this compares runc with itself (a check of
the tests).
"""

from __future__ import annotations

import json
import os
import re

import pytest
from conftest import MINIRUN_BIN, RUNC_BIN, TIMEOUT, parse_mountinfo

if not os.path.exists(RUNC_BIN):
    pytest.skip(f"reference runc {RUNC_BIN} is not installed", allow_module_level=True)

NS_NAMES = ["cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time",
            "time_for_children", "user", "uts"]

PROBE = r"""
echo "pid=$$"
echo "ppid=$PPID"
echo "hostname=$(hostname)"
echo "domainname=$(cat /proc/sys/kernel/domainname)"
echo "id=$(id -u) $(id -g) groups=$(id -G)"
grep -E '^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status \
  | tr -s '\t' ' '
echo "umask=$(umask)"
echo "cwd=$(pwd)"
echo "nofile=$(ulimit -n) $(ulimit -Hn)"
echo "nproc=$(ulimit -u) $(ulimit -Hu)"
echo "core=$(ulimit -c)"
echo "oom=$(cat /proc/self/oom_score_adj)"
echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
echo "net=$(ls /sys/class/net | tr '\n' ' ')"
echo "lo=$(cat /sys/class/net/lo/flags)"
for n in NS_NAMES; do echo "ns $n $(readlink /proc/self/ns/$n)"; done
echo "env:"; tr '\0' '\n' < /proc/1/environ
echo "fds:"; ls /proc/$$/fd
echo "dev:"; for f in /dev/* /dev/pts/* /dev/shm /dev/mqueue; do
  if [ -L "$f" ]; then echo "$f -> $(readlink $f)"
  else stat -c '%n %F %t:%T %a %u:%g' "$f"; fi
done
echo "root-touch=$(touch /.probe 2>/dev/null && echo ok || echo refused)"
echo "mountinfo:"; cat /proc/self/mountinfo
echo "end"
""".replace("NS_NAMES", " ".join(NS_NAMES))

# Options that may legitimately differ between two correct runtimes. Every
# entry is a conscious decision: keep this short.
IGNORED_SUPER_OPTS = {
    "proc": None,  # kernel-chosen
    "sysfs": None,
    "mqueue": None,
    "cgroup2": None,
    "cgroup": None,
}


@pytest.fixture
def pair(make_runtime):
    return make_runtime(RUNC_BIN, "runc"), make_runtime(MINIRUN_BIN, "minirun")


def host_ns() -> dict[str, str]:
    out = {}
    for n in NS_NAMES:
        try:
            out[n] = os.readlink(f"/proc/self/ns/{n}")
        except OSError:
            out[n] = "?"
    return out


def normalise_probe(out: str, bundle_dir) -> dict:
    """Turn the probe's output into a comparable structure."""
    assert out.rstrip().endswith("end"), f"probe did not finish:\n{out}"
    lines = out.splitlines()
    res: dict = {}
    section = None
    hns = host_ns()
    for ln in lines:
        if ln in ("env:", "fds:", "dev:", "mountinfo:"):
            section = ln[:-1]
            res[section] = []
        elif ln == "end":
            break
        elif ln.startswith("root-touch="):
            res["root-touch"] = ln.split("=", 1)[1]
            section = None
        elif section is not None:
            res[section].append(ln)
        elif ln.startswith("ns "):
            _, name, val = (ln.split(" ", 2) + [""])[:3]
            res[f"ns:{name}"] = "host" if val == hns.get(name) else "absent" if not val else "new"
        elif re.match(r"^\w+:", ln):  # /proc/self/status lines
            k, _, v = ln.partition(":")
            res[k] = v.strip()
        else:
            k, _, v = ln.partition("=")
            res[k] = v.strip()
    res["env"] = sorted(res.get("env", []))
    # fd numbers only
    res["fds"] = sorted(res.get("fds", []))
    mounts = []
    for m in parse_mountinfo("\n".join(res.get("mountinfo", []))):
        if m.root == "/null":
            # a masked file: /dev/null bound over it. Whether the runtime binds
            # the container's /dev/null (tmpfs, as runc does) or the host's
            # (devtmpfs) is an implementation detail.
            mounts.append((m.mountpoint, "<dev/null bind>", "", "", ""))
            continue
        opts = ",".join(sorted(m.options.split(",")))
        sopts = m.super_options
        if m.fstype in IGNORED_SUPER_OPTS:
            sopts = "*"
        else:
            sopts = ",".join(sorted(o for o in sopts.split(",") if o))
        optional = " ".join(sorted(o.split(":")[0] for o in m.optional.split()))
        mounts.append((m.mountpoint, m.fstype, opts, sopts, optional))
    # runc mounts the container's devices (bind mounts in a user namespace) in
    # Go map order, which varies from run to run: compare mounts as a set.
    res["mountinfo"] = sorted(mounts)
    # In a user namespace runc mounts /dev/mqueue before it switches to the
    # container's gid, so the mqueue root shows the overflow gid (65534); an
    # artefact of runc's set-up order, not something a container relies on.
    res["dev"] = [re.sub(r"^(/dev/mqueue directory \S+ \S+ \d+):\d+$", r"\1:*", d)
                  for d in res.get("dev", [])]
    return res


def run_both(pair, bundle, args, edits=None, *, base=None, tag=""):
    results = {}
    for rt in pair:
        b = bundle(args, edits, name=f"{rt.name}-bundle{tag}", base=base)
        c = rt.ctx.new_id(f"{rt.name}{tag}")
        results[rt.name] = (rt("run", "--bundle", b, c, timeout=TIMEOUT), b)
    return results


def compare_probe(pair, bundle, edits=None, *, base=None, tag=""):
    res = run_both(pair, bundle, ["sh", "-c", PROBE], edits, base=base, tag=tag)
    (rr, rb), (mr, mb) = res["runc"], res["minirun"]
    assert rr.returncode == 0, f"runc failed:\n{rr}"
    assert mr.returncode == 0, f"minirun failed:\n{mr}"
    want = normalise_probe(rr.stdout, rb)
    got = normalise_probe(mr.stdout, mb)
    diffs = []
    for k in sorted(set(want) | set(got)):
        if want.get(k) != got.get(k):
            if isinstance(want.get(k), list) and isinstance(got.get(k), list):
                w, g = want[k], got[k]
                diffs.append(f"{k}:\n    only runc:    {[x for x in w if x not in g]}\n"
                             f"    only minirun: {[x for x in g if x not in w]}")
            else:
                diffs.append(f"{k}: runc={want.get(k)!r} minirun={got.get(k)!r}")
    assert not diffs, "runc and minirun differ:\n  " + "\n  ".join(diffs)
    return want


def rich_config(srcdir):
    def edit(cfg):
        cfg["hostname"] = "side-by-side"
        cfg["linux"]["namespaces"].append({"type": "cgroup"})
        cfg["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [1002, 5]}
        cfg["process"]["cwd"] = "/tmp"
        cfg["process"]["env"] = ["PATH=/bin", "X=y z", "HOME=/home/x"]
        cfg["process"]["capabilities"] = {
            "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW", "CAP_SETUID"],
            "permitted": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"],
            "effective": ["CAP_KILL", "CAP_CHOWN"],
            "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
            "ambient": ["CAP_KILL"],
        }
        cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 256, "hard": 512},
                                     {"type": "RLIMIT_NPROC", "soft": 100, "hard": 200},
                                     {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
        cfg["process"]["oomScoreAdj"] = min(int(open("/proc/self/oom_score_adj").read()) + 10, 1000)
        cfg["process"]["noNewPrivileges"] = False
        cfg["process"]["user"]["umask"] = 0o027
        cfg["root"]["readonly"] = False
        cfg["mounts"] += [
            {"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "noexec", "size=2m", "mode=750"]},
            {"destination": "/mnt/b", "type": "bind", "source": str(srcdir),
             "options": ["rbind", "ro", "rprivate"]},
            {"destination": "/mnt/b2", "type": "bind", "source": str(srcdir),
             "options": ["bind", "nosuid", "noexec"]},
        ]
        cfg["linux"]["maskedPaths"].append("/etc/group")
        cfg["linux"]["readonlyPaths"].append("/var")
        cfg["linux"]["devices"] = [{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
                                    "fileMode": 0o640, "uid": 1000, "gid": 1001}]
        cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
        cfg["annotations"] = {"k": "v"}

    return edit


def test_probe_default_config(pair, bundle):
    r = compare_probe(pair, bundle)
    assert r["pid"] == "1" and r["hostname"] == "runc"


def test_probe_rich_config(pair, bundle, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x\n")
    r = compare_probe(pair, bundle, rich_config(src))
    assert r["hostname"] == "side-by-side"


def test_probe_user_namespace(pair, bundle, public_tmp):
    def edit(cfg):
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]

    r = compare_probe(pair, bundle, edit, base=public_tmp)
    assert r["ns:user"] == "new"


def test_probe_host_namespaces(pair, bundle):
    """Only mount and pid namespaces: the rest is shared with the host."""
    def edit(cfg):
        cfg["linux"]["namespaces"] = [{"type": "mount"}, {"type": "pid"}]
        cfg.pop("hostname", None)

    r = compare_probe(pair, bundle, edit)
    assert r["ns:net"] == "host" and r["ns:uts"] == "host"


@pytest.mark.parametrize("script,nopidns", [
    ("exit 0", False), ("exit 3", False), ("exit 255", False), ("kill -9 $$", True),
    ("kill -15 $$", True), ("kill -9 $$", False),
])
def test_exit_codes(pair, bundle, script, nopidns):
    def edit(cfg):
        if nopidns:
            nss = cfg["linux"]["namespaces"]
            cfg["linux"]["namespaces"] = [n for n in nss if n["type"] != "pid"]

    res = run_both(pair, bundle, ["sh", "-c", script], edit)
    r, m = res["runc"][0], res["minirun"][0]
    assert r.returncode == m.returncode, (r, m)


def test_missing_binary_exit_code(pair, bundle):
    res = run_both(pair, bundle, ["/bin/foo"])
    assert res["runc"][0].returncode != 0
    assert res["minirun"][0].returncode != 0


def lifecycle(rt, bundle, cid_tag):
    b = bundle(["sh", "-c", "read x; exit 5"], name=f"{rt.name}-lc")
    c = rt.ctx.new_id(cid_tag)
    fifo = rt.ctx.tmp / f"{rt.name}.stdin"
    os.mkfifo(fifo)
    # stdin is a fifo we hold open for writing: the container blocks in `read`
    # until we write a line.
    wfd = os.open(fifo, os.O_RDWR)
    try:
        with open(fifo, "rb") as rf:
            r = rt.create(c, b, stdin=rf)
        assert r.returncode == 0, r
        states = [rt.state(c)]
        rt.ok("start", c)
        states.append(rt.state(c))
        os.write(wfd, b"go\n")
    finally:
        os.close(wfd)
    states.append(rt.wait_status(c, "stopped"))
    lst = json.loads(rt.ok("list", "--format", "json").stdout)
    rt.ok("delete", c)
    gone = rt("state", c).returncode
    return states, lst, gone, c, b


def test_state_sequence(pair, bundle):
    out = {}
    for rt in pair:
        out[rt.name] = lifecycle(rt, bundle, f"lc-{rt.name}")
    (rs, rl, rg, _, rb), (ms, ml, mg, _, mb) = out["runc"], out["minirun"]
    statuses = ["created", "running", "stopped"]
    assert [s["status"] for s in ms] == [s["status"] for s in rs] == statuses
    for a, b in zip(rs, ms, strict=True):
        assert set(a) == set(b), (sorted(a), sorted(b))
        for k in a:
            assert type(a[k]) is type(b[k]), (k, a[k], b[k])
    assert ms[0]["pid"] > 0 and ms[0]["pid"] == ms[1]["pid"]
    assert ms[2]["pid"] == rs[2]["pid"] == 0
    assert ms[0]["bundle"] == str(mb) and rs[0]["bundle"] == str(rb)
    assert ms[0]["owner"] == rs[0]["owner"]
    assert ms[0]["ociVersion"] == rs[0]["ociVersion"]
    assert [set(x) for x in ml] == [set(x) for x in rl]
    assert rg != 0 and mg != 0


def test_features_shape(pair):
    f = {rt.name: json.loads(rt.ok("features").stdout) for rt in pair}
    r, m = f["runc"], f["minirun"]
    for k in ("ociVersionMin", "ociVersionMax", "mountOptions", "linux"):
        assert k in m, k
    for k in ("namespaces", "capabilities"):
        assert k in m["linux"]
    # minirun knows every namespace runc knows (and may know more, e.g. time)
    assert set(r["linux"]["namespaces"]) <= set(m["linux"]["namespaces"])
    # and every mount option runc accepts
    missing = set(r["mountOptions"]) - set(m["mountOptions"])
    assert not missing, sorted(missing)


def test_spec_same(pair, tmp_path):
    out = {}
    for rt in pair:
        d = tmp_path / f"spec-{rt.name}"
        d.mkdir()
        rt.ok("spec", "--bundle", d)
        out[rt.name] = json.loads((d / "config.json").read_text())
    r, m = out["runc"], out["minirun"]
    # runc adds the cgroup namespace on cgroup2-only hosts; accept either
    for x in (r, m):
        x["linux"]["namespaces"] = [n for n in x["linux"]["namespaces"] if n["type"] != "cgroup"]
    assert r == m
