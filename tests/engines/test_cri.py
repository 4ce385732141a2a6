"""The Kubernetes path: containerd's CRI plugin with the runtime handler "minirun"
(minirun's shim, as a RuntimeClass would name it), driven through the CRI gRPC API the
way the kubelet drives it: one pod with the host's network and one container in it.

The CRI messages are cri/cri.proto (written from k8s.io/cri-api's definition); grpcio
makes the calls (a test dependency only). The pod sandbox image is built locally.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from .conftest import (
    CRI_NAMESPACE,
    IMAGE,
    IS_MINIRUN,
    SHIM,
    SHIM_STATE,
    engine_cgroup_dirs,
    rmdir_tree,
    skip_unless_usable,
    wait_for,
)

skip_unless_usable("containerd", "ctr")
grpc = pytest.importorskip("grpc")
from .cri import cri_pb2 as cri  # noqa: E402

SERVICE = "/runtime.v1.RuntimeService/"


class CRI:
    def __init__(self, socket: str) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket}")

    def __call__(self, method: str, request, response_type, timeout: float = 60):
        call = self.channel.unary_unary(SERVICE + method,
                                        request_serializer=type(request).SerializeToString,
                                        response_deserializer=response_type.FromString)
        return call(request, timeout=timeout)

    def close(self) -> None:
        self.channel.close()


def _ppid_cmdline(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    ppid = int(stat[stat.rfind(")") + 2:].split()[1])
    return Path(f"/proc/{ppid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.fixture
def cri_api(ctr_session, ctx):
    if not (IS_MINIRUN and os.access(SHIM, os.X_OK)):
        pytest.skip(f"the CRI path runs minirun's shim: {SHIM}")
    host = ctr_session.host
    for archive in ("busybox.oci.tar", "pause.oci.tar"):
        r = host.run(["ctr", "--address", ctr_session.address, "--namespace", CRI_NAMESPACE,
                      "images", "import", str(host.scratch / archive)])
        assert r.returncode == 0, r
    api = CRI(ctr_session.address)
    wait_for(lambda: _answers(api), "the CRI plugin to answer", 30)
    yield api
    api.close()


def _answers(api: CRI) -> bool:
    try:
        api("Version", cri.VersionRequest(), cri.VersionResponse, timeout=5)
        return True
    except grpc.RpcError:
        return False


def test_a_pod_through_the_cri_plugin(cri_api, ctr_session, tmp_path):
    uid = f"mrt-{os.getpid()}-{time.monotonic_ns()}"
    parent = f"/mrt-cri-{os.getpid()}"
    sandbox_config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="pod1", uid=uid, namespace="mrt"),
        log_directory=str(tmp_path / "logs"),
        linux=cri.LinuxPodSandboxConfig(
            cgroup_parent=parent,
            security_context=cri.LinuxSandboxSecurityContext(
                namespace_options=cri.NamespaceOption(network=cri.NODE))))
    (tmp_path / "logs").mkdir()
    pod = ""
    try:
        pod = cri_api("RunPodSandbox", cri.RunPodSandboxRequest(
            config=sandbox_config, runtime_handler="minirun"),
            cri.RunPodSandboxResponse).pod_sandbox_id
        c = cri_api("CreateContainer", cri.CreateContainerRequest(
            pod_sandbox_id=pod, sandbox_config=sandbox_config,
            config=cri.ContainerConfig(
                metadata=cri.ContainerMetadata(name="c1"),
                image=cri.ImageSpec(image=IMAGE),
                command=["sh", "-c", "echo hello-from-cri; exec sleep 1000"],
                log_path="c1.log")),
            cri.CreateContainerResponse).container_id
        cri_api("StartContainer", cri.StartContainerRequest(container_id=c),
                cri.StartContainerResponse)
        status = cri_api("ContainerStatus", cri.ContainerStatusRequest(container_id=c),
                         cri.ContainerStatusResponse).status
        assert status.state == cri.CONTAINER_RUNNING, status

        out = cri_api("ExecSync", cri.ExecSyncRequest(
            container_id=c, cmd=["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=30),
            cri.ExecSyncResponse)
        assert (out.stdout, out.stderr, out.exit_code) == (b"out\n", b"err\n", 3), out

        # the pod's processes are minirun's: the shim is their parent
        r = ctr_session.host.run(["ctr", "--address", ctr_session.address, "--namespace",
                                  CRI_NAMESPACE, "task", "ls"])
        pids = {line.split()[0]: int(line.split()[1]) for line in r.stdout.splitlines()[1:]}
        assert set(pids) == {pod, c}, r
        for pid in pids.values():
            assert "containerd-shim-minirun-v1" in _ppid_cmdline(pid)
        wait_for(lambda: "hello-from-cri" in _read(tmp_path / "logs" / "c1.log"),
                 "the container's log line", 10)

        cri_api("StopPodSandbox", cri.StopPodSandboxRequest(pod_sandbox_id=pod),
                cri.StopPodSandboxResponse)
        status = cri_api("ContainerStatus", cri.ContainerStatusRequest(container_id=c),
                         cri.ContainerStatusResponse).status
        assert status.state == cri.CONTAINER_EXITED and status.exit_code == 137, status
    finally:
        if pod:
            cri_api("StopPodSandbox", cri.StopPodSandboxRequest(pod_sandbox_id=pod),
                    cri.StopPodSandboxResponse)
            cri_api("RemovePodSandbox", cri.RemovePodSandboxRequest(pod_sandbox_id=pod),
                    cri.RemovePodSandboxResponse)
        # the namespace's shim server ends a moment after its last container is gone
        from minirun.shim.main import socket_path

        sock = Path(socket_path(ctr_session.address, CRI_NAMESPACE))
        wait_for(lambda: not sock.exists() and not (SHIM_STATE / CRI_NAMESPACE).exists(),
                 "the shim server to end", 20)
        for cg in engine_cgroup_dirs(parent):
            assert not rmdir_tree(cg)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
