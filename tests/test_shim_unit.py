"""Pieces of the containerd shim that need no containerd: its argument parsing, the
hand-encoded DeleteResponse of `shim delete`, where it reads a container's OOM kills,
and the runc stats -> containerd metrics conversion."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("google.protobuf")

from minirun.shim import main, metrics, task  # noqa: E402
from minirun.shim.proto import shim_pb2  # noqa: E402


def test_go_style_flags():
    a = main.parse(["-namespace", "k8s.io", "-address", "/run/c.sock", "-publish-binary",
                    "/usr/bin/containerd", "-id", "abc", "-debug", "start"])
    assert (a.namespace, a.address, a.id, a.debug, a.action) == \
        ("k8s.io", "/run/c.sock", "abc", True, "start")
    a = main.parse(["--namespace=ns", "-id=x", "-bundle", "/b", "delete"])
    assert (a.namespace, a.id, a.bundle, a.action) == ("ns", "x", "/b", "delete")


@pytest.mark.parametrize("ns", [0, 1, 1733290000123456789, 1733290000000000000])
def test_delete_response_matches_protobuf(ns):
    want = shim_pb2.DeleteResponse(exit_status=137)
    want.exited_at.FromNanoseconds(ns)
    assert main.delete_response(137, ns) == want.SerializeToString()


def test_socket_path_fits_and_groups_by_namespace():
    p = main.socket_path("/run/containerd/containerd.sock.ttrpc", "default")
    assert len(p) < 108
    assert p == main.socket_path("/run/containerd/containerd.sock.ttrpc", "default")
    assert p != main.socket_path("/run/containerd/containerd.sock.ttrpc", "k8s.io")


def test_oom_counter_v2_and_v1(tmp_path):
    root = tmp_path / "root"
    (root / "c2").mkdir(parents=True)
    (root / "c2" / "state.json").write_text(json.dumps(
        {"cgroup": {"mount": str(tmp_path / "cg"), "path": "/x"}}))
    (tmp_path / "cg" / "x").mkdir(parents=True)
    (tmp_path / "cg" / "x" / "memory.events").write_text("low 0\noom 2\noom_kill 3\n")
    path = task._oom_counter(str(root), "c2")
    assert task._oom_kills(path) == 3
    (root / "c1").mkdir()
    mem = tmp_path / "memory" / "c1"
    mem.mkdir(parents=True)
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    (root / "c1" / "state.json").write_text(json.dumps(
        {"cgroup": {"mount": "/sys/fs/cgroup/unified", "path": "/c1",
                    "v1": {"memory": str(mem)}}}))
    assert task._oom_kills(task._oom_counter(str(root), "c1")) == 1
    assert task._oom_counter(str(root), "missing") == ""


def test_metrics_from_runc_stats():
    data = {"cpu": {"usage": {"total": 5, "kernel": 2, "user": 3, "percpu": [4, 1]},
                    "throttling": {"periods": 7, "throttledPeriods": 1}},
            "pids": {"current": 3, "limit": 64},
            "memory": {"cache": 9, "usage": {"limit": 100, "usage": 50, "failcnt": 1},
                       "raw": {"rss": 11, "pgfault": 12}}}
    m = metrics.v1(data)
    assert (m.pids.current, m.pids.limit) == (3, 64)
    assert list(m.cpu.usage.per_cpu) == [4, 1] and m.cpu.throttling.throttled_periods == 1
    assert (m.memory.usage.usage, m.memory.rss, m.memory.pg_fault) == (50, 11, 12)


def test_socket_path_is_sha256_of_address_namespace():
    import hashlib

    want = hashlib.sha256(b"/run/containerd/containerd.sock.ttrpc/default/minirun").hexdigest()
    assert main.socket_path("/run/containerd/containerd.sock.ttrpc", "default") == \
        f"/run/containerd/s/{want}"
