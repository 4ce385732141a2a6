"""minirun.cgroups without root and without the kernel: runc's conversions, the write
plan, validation against a fake pure-v2 mount, path resolution, host parsing, stats
parsing, and the device filter program run by a small BPF interpreter."""

from __future__ import annotations

import itertools
import struct

import pytest

from minirun.cgroups import convert, devices, host, resolve_path, stats
from minirun.cgroups.validate import validate_resources
from minirun.errors import ConfigError

ALL_V2 = "cpuset cpu io memory hugetlb pids rdma misc"


@pytest.fixture
def pure_v2(tmp_path):
    """A directory that looks like the root of a pure cgroup v2 hierarchy."""
    (tmp_path / "cgroup.controllers").write_text(ALL_V2 + "\n")
    return str(tmp_path)


# --------------------------------------------------------------------------
# runc's conversions
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shares,weight", [
    (0, 0), (2, 1), (1024, 39), (512, 20), (262144, 10000), (100, 4),
])
def test_shares_to_weight_is_runcs_formula(shares, weight):
    assert convert.shares_to_weight(shares) == weight


@pytest.mark.parametrize("blkio,io", [(0, 0), (10, 1), (500, 4950), (1000, 10000), (100, 910)])
def test_blkio_weight_to_io_weight(blkio, io):
    assert convert.blkio_to_io_weight(blkio) == io


@pytest.mark.parametrize("swap,limit,expected", [
    (0, 0, 0), (0, -1, -1), (-1, 100, -1), (0, 100, 0), (300, 100, 200), (100, 100, 0),
    (500, -1, 500),
])
def test_swap_is_memory_plus_swap_minus_memory(swap, limit, expected):
    assert convert.swap_to_v2(swap, limit) == expected


@pytest.mark.parametrize("swap,limit,why", [
    (100, 0, "needs a memory limit"), (50, 100, "at least the memory limit"),
])
def test_swap_impossible_combinations(swap, limit, why):
    with pytest.raises(ValueError, match=why):
        convert.swap_to_v2(swap, limit)


def test_num_to_str_and_cpu_max():
    assert [convert.num_to_str(n) for n in (0, -1, 7)] == ["", "max", "7"]
    assert convert.cpu_max(50000, 0) == "50000 100000"
    assert convert.cpu_max(-1, 20000) == "max 20000"
    assert convert.cpu_max(0, 20000) == "max 20000"


# --------------------------------------------------------------------------
# The plan of writes
# --------------------------------------------------------------------------


def writes(res: dict) -> list[tuple[str, str]]:
    return [(w.file, w.value) for w in convert.plan(res)]


def test_plan_memory_in_runcs_order():
    res = {"memory": {"limit": 100 << 20, "reservation": 50 << 20, "swap": 300 << 20}}
    assert writes(res) == [("memory.swap.max", str(200 << 20)),
                           ("memory.max", str(100 << 20)), ("memory.low", str(50 << 20))]


def test_plan_memory_swap_equal_to_limit_disables_swap_and_minus_one_is_max():
    assert writes({"memory": {"limit": 1000, "swap": 1000}})[0] == ("memory.swap.max", "0")
    assert writes({"memory": {"limit": -1}}) == [("memory.swap.max", "max"),
                                                 ("memory.max", "max")]


def test_plan_cpu():
    res = {"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 10000,
                   "idle": 0, "cpus": "0-1", "mems": "0"}}
    assert writes(res) == [("cpu.idle", "0"), ("cpu.weight", "39"),
                           ("cpu.max.burst", "10000"), ("cpu.max", "50000 100000"),
                           ("cpuset.cpus", "0-1"), ("cpuset.mems", "0")]
    assert writes({"cpu": {"period": 50000}}) == [("cpu.max", "max 50000")]


def test_plan_pids_zero_is_unset_minus_one_is_max():
    assert writes({"pids": {"limit": 0}}) == []
    assert writes({"pids": {"limit": -1}}) == [("pids.max", "max")]
    assert writes({"pids": {"limit": 42}}) == [("pids.max", "42")]


def test_plan_block_io():
    res = {"blockIO": {
        "weight": 500,
        "weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
        "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}],
    }}
    plan = convert.plan(res)
    assert [(w.file, w.value, w.alt) for w in plan] == [
        ("io.bfq.weight", "500", "4950"),
        ("io.bfq.weight", "8:0 100", "8:0 910"),
        ("io.max", "8:0 rbps=1048576", ""),
        ("io.max", "8:16 wiops=100", ""),
    ]
    assert plan[1].field == "linux.resources.blockIO.weightDevice[0]"


def test_plan_hugetlb_rdma_unified():
    res = {"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
           "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}, "mlx4_0": {"hcaHandles": 1}},
           "unified": {"memory.high": "50000000"}}
    assert writes(res) == [("hugetlb.2MB.max", "4194304"), ("hugetlb.2MB.rsvd.max", "4194304"),
                           ("rdma.max", "mlx5_1 hca_handle=3 hca_object=10000"),
                           ("rdma.max", "mlx4_0 hca_handle=1"),
                           ("memory.high", "50000000")]


def test_needed_controllers():
    res = {"memory": {"limit": 1 << 20}, "cpu": {"cpus": "0", "shares": 2},
           "unified": {"cgroup.max.depth": "3", "misc.max": "x 1"}, "devices": []}
    assert convert.needed_controllers(res) == {"memory", "cpuset", "cpu", "misc"}
    assert convert.needed_controllers({"devices": [{"allow": False, "access": "rwm"}]}) == set()


# --------------------------------------------------------------------------
# Validation (a fake pure v2 mount; the host's CPUs and huge page sizes)
# --------------------------------------------------------------------------


def refused(res: dict, mount: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        validate_resources(res, mount)
    return info.value


def test_validate_accepts_a_full_set(pure_v2):
    validate_resources({
        "memory": {"limit": 1 << 30, "reservation": 1 << 29, "swap": 2 << 30,
                   "useHierarchy": True, "checkBeforeUpdate": True, "disableOOMKiller": False},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "cpus": "0",
                "mems": "0", "idle": 0},
        "pids": {"limit": 100},
        "blockIO": {"weight": 300, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "rdma": {"mlx5_1": {"hcaHandles": 1}},
        "unified": {"memory.high": "max"},
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
    }, pure_v2)


@pytest.mark.parametrize("res,field,why", [
    ({"memory": {"limit": -2}}, "linux.resources.memory.limit", "out of range"),
    ({"memory": {"limit": "1G"}}, "linux.resources.memory.limit", "must be an integer"),
    ({"memory": {"limit": True}}, "linux.resources.memory.limit", "must be an integer"),
    ({"memory": {"limit": 2**64}}, "linux.resources.memory.limit", "out of range"),
    ({"memory": {"swap": 100}}, "linux.resources.memory.swap", "needs a memory limit"),
    ({"memory": {"limit": 100, "swap": 50}}, "linux.resources.memory.swap", "at least"),
    ({"memory": {"disableOOMKiller": True}}, "linux.resources.memory.disableOOMKiller",
     "cannot be disabled on cgroup v2"),
    ({"memory": {"kernel": 1 << 20}}, "linux.resources.memory.kernel", "do not exist"),
    ({"memory": {"swappiness": 10}}, "linux.resources.memory.swappiness", "no per-cgroup"),
    ({"memory": {"bogus": 1}}, "linux.resources.memory.bogus", "unknown field"),
    ({"cpu": {"shares": 1}}, "linux.resources.cpu.shares", "out of range"),
    ({"cpu": {"shares": 300000}}, "linux.resources.cpu.shares", "out of range"),
    ({"cpu": {"quota": 10}}, "linux.resources.cpu.quota", "at least 1000"),
    ({"cpu": {"period": 10}}, "linux.resources.cpu.period", "out of range"),
    ({"cpu": {"period": 2000000}}, "linux.resources.cpu.period", "out of range"),
    ({"cpu": {"quota": 10000, "burst": 20000}}, "linux.resources.cpu.burst", "must not exceed"),
    ({"cpu": {"idle": 2}}, "linux.resources.cpu.idle", "out of range"),
    ({"cpu": {"idle": 1, "shares": 100}}, "linux.resources.cpu.idle", "no weight"),
    ({"cpu": {"realtimeRuntime": 100}}, "linux.resources.cpu.realtimeRuntime", "real-time"),
    ({"cpu": {"cpus": "0-a"}}, "linux.resources.cpu.cpus", "not a list"),
    ({"cpu": {"cpus": "0,4096"}}, "linux.resources.cpu.cpus", "this host has no CPUs 4096"),
    ({"cpu": {"mems": "63"}}, "linux.resources.cpu.mems", "no memory nodes 63"),
    ({"pids": {"limit": -5}}, "linux.resources.pids.limit", "out of range"),
    ({"blockIO": {"weight": 5}}, "linux.resources.blockIO.weight", "10 to 1000"),
    ({"blockIO": {"leafWeight": 500}}, "linux.resources.blockIO.leafWeight", "no leaf weight"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}},
     "linux.resources.blockIO.throttleReadBpsDevice[0].minor", "required"),
    ({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]},
     "linux.resources.hugepageLimits[0].pageSize", "not a huge page size of this host"),
    ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]},
     "linux.resources.hugepageLimits[0].pageSize", "such as"),
    ({"unified": {"../memory.max": "1"}}, "linux.resources.unified.../memory.max", "no '/'"),
    ({"unified": {"memory": "1"}}, "linux.resources.unified.memory", "controller.parameter"),
    ({"unified": {"cgroup.procs": "1"}}, "linux.resources.unified.cgroup.procs", "managed"),
    ({"unified": {"memory.high": 5}}, "linux.resources.unified.memory.high", "string"),
    ({"network": {"classID": 1}}, "linux.resources.network.classID", "cgroup v1 controller"),
    ({"bogus": {}}, "linux.resources.bogus", "unknown resource"),
    ({"devices": [{"allow": True, "access": "rwx"}]}, "linux.resources.devices[0].access",
     "only r, w and m"),
    ({"devices": [{"allow": True, "type": "c", "major": 1, "minor": 3}]},
     "linux.resources.devices[0].access", "required"),
    ({"devices": [{"access": "r"}]}, "linux.resources.devices[0].allow", "required"),
    ({"devices": [{"allow": True, "type": "x", "access": "r"}]},
     "linux.resources.devices[0].type", "must be a"),
    ({"devices": [{"allow": True, "type": "c", "major": 2**32, "access": "r"}]},
     "linux.resources.devices[0].major", "out of range"),
    ({"devices": [{"allow": False, "access": "rwm"},
                  {"allow": True, "type": "c", "access": "rwm"},
                  {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]},
     "linux.resources.devices[2]", "punch a hole"),
])
def test_validate_refuses_with_the_field(pure_v2, res, field, why):
    err = refused(res, pure_v2)
    assert err.path == field, err
    assert why in err.why, err


def test_validate_names_a_controller_the_mount_lacks(tmp_path, monkeypatch):
    # a pure v2 host: nothing bound to v1 (on a hybrid one, pids would go to v1)
    monkeypatch.setattr(host, "v1_bound_controllers", lambda *a, **k: set())
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    err = refused({"pids": {"limit": 10}}, str(tmp_path))
    assert err.path == "linux.resources.pids"
    assert "pids controller" in err.why
    err = refused({"unified": {"io.max": "8:0 rbps=1"}}, str(tmp_path))
    assert err.path == "linux.resources.unified.io.max" and "io controller" in err.why
    validate_resources({"memory": {"limit": 1 << 20}, "unified": {"cgroup.max.depth": "2"}},
                       str(tmp_path))


# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------


def test_resolve_path():
    assert resolve_path(None, "abc") == "/minirun/abc"
    assert resolve_path("", "abc") == "/minirun/abc"
    assert resolve_path("/a/b", "x") == "/a/b"
    assert resolve_path("//a//b/", "x") == "/a/b"
    # relative: below the parent of the caller's cgroup, as runc
    assert resolve_path("a/b", "x", own="/user.slice/session-1.scope") == "/user.slice/a/b"
    assert resolve_path("a", "x", own="/") == "/a"


@pytest.mark.parametrize("path", ["/a/../b", "../x", "a/./b", "/a\nb"])
def test_resolve_path_refuses(path):
    with pytest.raises(ConfigError) as info:
        resolve_path(path, "x", own="/")
    assert info.value.path == "linux.cgroupsPath"


def test_resolve_path_refuses_the_root_and_odd_ids():
    with pytest.raises(ConfigError, match="root cgroup"):
        resolve_path("/", "x")
    with pytest.raises(ConfigError, match="cannot name a cgroup"):
        resolve_path("", "..")


# --------------------------------------------------------------------------
# The host
# --------------------------------------------------------------------------

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
PURE = "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
PROC_CGROUPS = """\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
memory\t4\t23\t1
hugetlb\t0\t1\t1
pids\t0\t1\t0
"""


def test_find_v2_mount():
    assert host.find_v2_mount(host.mountinfo(HYBRID)) == "/sys/fs/cgroup/unified"
    assert host.find_v2_mount(host.mountinfo(PURE)) == "/sys/fs/cgroup"
    with pytest.raises(host.CgroupError, match="no cgroup2"):
        host.find_v2_mount(host.mountinfo(HYBRID.replace("cgroup2 cgroup2", "tmpfs tmpfs")))


def test_v1_bound_and_disabled_controllers():
    bound = host.v1_bound_controllers(host.mountinfo(HYBRID), PROC_CGROUPS)
    assert {"cpu", "memory", "io", "cpuset"} <= bound
    assert "hugetlb" not in bound and "pids" not in bound
    assert host.disabled_controllers(PROC_CGROUPS) == {"pids"}


def test_parse_list_and_size_names():
    assert host.parse_list("0-3,8,10-11") == {0, 1, 2, 3, 8, 10, 11}
    with pytest.raises(ValueError):
        host.parse_list("3-1")
    assert [host.size_name(k) for k in (64, 2048, 1048576)] == ["64KB", "2MB", "1GB"]
    assert host.own_cgroup("1:cpu:/x\n0::/a/b\n") == "/a/b"


# --------------------------------------------------------------------------
# Stats, from fake files
# --------------------------------------------------------------------------


def test_stats_shape_from_files(tmp_path, monkeypatch):
    monkeypatch.setattr(host, "hugepage_sizes", lambda: ["2MB"])
    files = {
        "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\n"
                    "nr_throttled 2\nthrottled_usec 30\n",
        "memory.current": "4096\n", "memory.max": "max\n", "memory.peak": "8192\n",
        "memory.swap.current": "0\n", "memory.swap.max": "0\n",
        "memory.stat": "anon 100\nfile 200\n",
        "pids.current": "3\n", "pids.max": "max\n",
        "io.stat": "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
        "hugetlb.2MB.current": "0\n", "hugetlb.2MB.events": "max 5\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    data = stats.collect(str(tmp_path), lambda: [1, 2])
    assert data["cpu"] == {"usage": {"total": 1500000, "kernel": 500000, "user": 1000000},
                           "throttling": {"periods": 4, "throttledPeriods": 2,
                                          "throttledTime": 30000}}
    assert data["memory"]["usage"] == {"limit": 2**64 - 1, "usage": 4096, "max": 8192,
                                       "failcnt": 0}
    assert data["memory"]["cache"] == 200 and data["memory"]["raw"]["anon"] == 100
    assert data["memory"]["swap"] == {"limit": 2**64 - 1, "usage": 4096, "failcnt": 0}
    assert data["pids"] == {"current": 3}
    assert data["blkio"]["ioServiceBytesRecursive"] == [
        {"major": 8, "op": "Read", "value": 10}, {"major": 8, "op": "Write", "value": 20}]
    assert data["hugetlb"] == {"2MB": {"failcnt": 5}}
    assert set(data) == {"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt",
                         "network_interfaces"}


def test_stats_count_processes_without_the_pids_controller(tmp_path):
    (tmp_path / "cpu.stat").write_text("usage_usec 0\nuser_usec 0\nsystem_usec 0\n")
    data = stats.collect(str(tmp_path), lambda: [10, 11, 12])
    assert data["pids"] == {"current": 3}
    assert data["memory"]["usage"] == {"limit": 0, "failcnt": 0}
    assert data["cpu"] == {"usage": {"kernel": 0, "user": 0}, "throttling": {}}


# --------------------------------------------------------------------------
# The device filter: rules → policy → program, run by a tiny BPF interpreter
# --------------------------------------------------------------------------


def run_program(program: bytes, kind: str, major: int, minor: int, access: str) -> bool:
    """Interpret the instructions devices.assemble emits, on one access."""
    acc = sum(devices.ACCESS_BIT[c] for c in access)
    ctx = struct.pack("<III", devices.DEV_TYPE[kind] | (acc << 16), major, minor)
    insns = [struct.unpack("<BBhi", program[i:i + 8]) for i in range(0, len(program), 8)]
    reg = [0] * 11
    pc = 0
    for _ in range(10000):
        code, regs, off, imm = insns[pc]
        dst, src = regs & 0xF, regs >> 4
        imm &= 0xFFFFFFFF
        pc += 1
        if code == devices.LDX_MEM_W:
            assert src == 1 and off in (0, 4, 8)
            reg[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == devices.ALU32_AND_K:
            reg[dst] &= imm
        elif code == devices.ALU32_RSH_K:
            reg[dst] >>= imm
        elif code == devices.ALU32_MOV_K:
            reg[dst] = imm
        elif code == devices.ALU32_MOV_X:
            reg[dst] = reg[src]
        elif code == devices.JMP32_JNE_K:
            pc += off if reg[dst] != imm else 0
        elif code == devices.JMP32_JNE_X:
            pc += off if reg[dst] != reg[src] else 0
        elif code == devices.JMP32_JEQ_K:
            pc += off if reg[dst] == imm else 0
        elif code == devices.EXIT:
            return reg[0] == 1
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("no exit")


def rules_of(*items: dict) -> list[devices.Rule]:
    return devices.parse_rules(list(items))


ACCESSES = ["r", "w", "m", "rw", "rm", "wm", "rwm"]
DEVICES = [("c", 1, 3), ("c", 1, 5), ("c", 1, 11), ("c", 5, 1), ("c", 136, 4), ("c", 10, 200),
           ("b", 8, 0), ("b", 7, 1), ("c", 4000, 70000)]


def agree(policy: devices.Policy) -> None:
    program = devices.assemble(policy)
    for (kind, major, minor), access in itertools.product(DEVICES, ACCESSES):
        assert run_program(program, kind, major, minor, access) == \
            devices.allows(policy, kind, major, minor, access), (kind, major, minor, access)


def test_default_deny_with_runcs_allow_list():
    rules = devices.with_defaults(rules_of({"allow": False, "access": "rwm"}))
    policy = devices.reduce_rules(rules)
    agree(policy)
    program = devices.assemble(policy)
    assert run_program(program, "c", 1, 3, "rw")       # /dev/null
    assert run_program(program, "c", 136, 4, "rw")     # /dev/pts/4
    assert run_program(program, "c", 1, 11, "m")       # mknod of anything
    assert run_program(program, "b", 8, 0, "m")
    assert not run_program(program, "c", 1, 11, "r")   # /dev/kmsg
    assert not run_program(program, "b", 8, 0, "r")   # a disk
    assert not run_program(program, "c", 5, 1, "rw")   # /dev/console: not in runc's list


def test_last_rule_wins():
    policy = devices.reduce_rules(rules_of(
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rw"},
        {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "w"},
    ))
    agree(policy)
    program = devices.assemble(policy)
    assert run_program(program, "c", 1, 11, "r")
    assert not run_program(program, "c", 1, 11, "w")
    assert not run_program(program, "c", 1, 11, "rw")


def test_allow_all_then_deny_is_a_deny_list():
    policy = devices.reduce_rules(rules_of(
        {"allow": True, "access": "rwm"},
        {"allow": False, "type": "b", "major": 8, "access": "rw"},
        {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "w"},
    ))
    assert policy.default_allow
    agree(policy)
    program = devices.assemble(policy)
    assert run_program(program, "b", 8, 0, "m")
    assert not run_program(program, "b", 8, 0, "r")
    assert run_program(program, "c", 1, 11, "r")
    assert not run_program(program, "c", 1, 11, "rw")  # overlaps the deny: denied (as v1)
    assert run_program(program, "c", 1, 3, "rwm")


def test_a_later_type_a_rule_resets_everything():
    policy = devices.reduce_rules(rules_of(
        {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rwm"},
        {"allow": False, "access": "rwm"},
    ))
    assert policy == devices.Policy(default_allow=False, exceptions={})
    assert not run_program(devices.assemble(policy), "c", 1, 11, "r")


def test_spec_devices_replace_the_defaults_of_the_same_path():
    rules = devices.with_defaults([], ["/dev/null"])
    assert ("c", 1, 3) not in {(r.type, r.major, r.minor) for r in rules}
    assert ("c", 1, 5) in {(r.type, r.major, r.minor) for r in rules}


def test_big_device_numbers_compare_as_unsigned():
    policy = devices.reduce_rules(rules_of(
        {"allow": True, "type": "c", "major": 2**32 - 1, "minor": 3, "access": "r"}))
    program = devices.assemble(policy)
    assert run_program(program, "c", 2**32 - 1, 3, "r")
    assert not run_program(program, "c", 2**31 - 1, 3, "r")


def test_program_size_is_bounded():
    items = [{"allow": True, "type": "c", "major": 1, "minor": i, "access": "rw"}
             for i in range(200)]
    program = devices.compile_program(items)
    assert len(program) % 8 == 0 and len(program) // 8 < 4096
