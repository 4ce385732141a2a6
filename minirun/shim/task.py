"""containerd's Task service (containerd.task.v2.Task) for every container of one
containerd namespace, on minirun.

Each container's init and exec processes are Procs; the reaper maps every exit to one
of them. minirun commands run in forks of the shim (process.run_minirun) with the state
root /run/containerd/minirun/<namespace>, the runtime's log in the bundle's log.json.

    Create ─> mount the rootfs, open the stdio, `create`      TaskCreate
    Start  ─> `start` (init) or `exec --detach` (an exec)      TaskStart / TaskExecStarted
    (exit) ─> the reaper                                        TaskExit
    Delete ─> `delete`, unmount the rootfs (init) or forget    TaskDelete
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

from google.protobuf import empty_pb2, timestamp_pb2
from google.protobuf.any_pb2 import Any as AnyPb

from minirun.shim import mounts, ttrpc
from minirun.shim.process import Reaper, run_minirun
from minirun.shim.proto import events_task_pb2 as ev
from minirun.shim.proto import shim_pb2 as pb
from minirun.shim.proto import types_task_pb2 as types
from minirun.shim.stdio import Stdio

SERVICE = "containerd.task.v2.Task"
STATE_ROOT = "/run/containerd/minirun"


def _ts(when: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    if when:
        t.FromNanoseconds(int(when * 1e9))
    return t


class Proc:
    def __init__(self, cid: str, exec_id: str, stdio: Stdio) -> None:
        self.cid = cid
        self.exec_id = exec_id
        self.stdio = stdio
        self.pid = 0
        self.status = "created"
        self.exit_status = 0
        self.exited_at = 0.0
        self.done = threading.Event()
        self.spec_file: str | None = None

    def exited(self, code: int, when: float) -> None:
        self.exit_status, self.exited_at, self.status = code, when, "stopped"
        self.done.set()


class Container:
    def __init__(self, cid: str, bundle: str, root: str, init: Proc, mounted: bool) -> None:
        self.id = cid
        self.bundle = bundle
        self.root = root
        self.init = init
        self.execs: dict[str, Proc] = {}
        self.mounted = mounted
        self.paused = False

    def proc(self, exec_id: str) -> Proc:
        if not exec_id:
            return self.init
        p = self.execs.get(exec_id)
        if p is None:
            raise ttrpc.Status(ttrpc.NOT_FOUND, f"exec {exec_id!r} of container {self.id!r} "
                                                "not found")
        return p

    def argv(self, *args: str) -> list[str]:
        return ["--root", self.root, "--log", os.path.join(self.bundle, "log.json"),
                "--log-format", "json", *args]


class TaskService:
    def __init__(self, namespace: str, publish: Callable[[str, object], None],
                 on_empty: Callable[[], None]) -> None:
        self.namespace = namespace
        self.root = os.path.join(STATE_ROOT, namespace)
        self.publish = publish
        self.on_empty = on_empty
        self.containers: dict[str, Container] = {}
        self.by_pid: dict[int, Proc] = {}
        self.lock = threading.RLock()
        self.reaper = Reaper()
        self.reaper.on_exit(self._exited)
        threading.Thread(target=self._watch_ooms, daemon=True, name="oom").start()

    # ------------------------------------------------------------------ plumbing

    def handlers(self) -> dict[str, ttrpc.Handler]:
        out = {}
        for method, req_type in (
                ("State", pb.StateRequest), ("Create", pb.CreateTaskRequest),
                ("Start", pb.StartRequest), ("Delete", pb.DeleteRequest),
                ("Pids", pb.PidsRequest), ("Pause", pb.PauseRequest),
                ("Resume", pb.ResumeRequest), ("Checkpoint", pb.CheckpointTaskRequest),
                ("Kill", pb.KillRequest), ("Exec", pb.ExecProcessRequest),
                ("ResizePty", pb.ResizePtyRequest), ("CloseIO", pb.CloseIORequest),
                ("Update", pb.UpdateTaskRequest), ("Wait", pb.WaitRequest),
                ("Stats", pb.StatsRequest), ("Connect", pb.ConnectRequest),
                ("Shutdown", pb.ShutdownRequest)):
            out[f"{SERVICE}/{method}"] = self._handler(getattr(self, method.lower()), req_type)
        return out

    @staticmethod
    def _handler(fn, req_type) -> ttrpc.Handler:
        def handle(payload: bytes) -> bytes:
            return fn(req_type.FromString(payload)).SerializeToString()
        return handle

    def _container(self, cid: str) -> Container:
        with self.lock:
            c = self.containers.get(cid)
        if c is None:
            raise ttrpc.Status(ttrpc.NOT_FOUND, f"container {cid!r} not found")
        return c

    def _run(self, c: Container, *args: str, fds: dict[int, int] | None = None):
        r = run_minirun(self.reaper, c.argv(*args), fds)
        if r.code != 0:
            r.stderr = _last_log_error(c.bundle) or r.stderr
        return r

    def _exited(self, pid: int, code: int, when: float) -> None:
        with self.lock:
            p = self.by_pid.pop(pid, None)
        if p is None:
            return
        self.reaper.forget(pid)
        p.exited(code, when)
        self.publish("/tasks/exit", ev.TaskExit(
            container_id=p.cid, id=p.exec_id or p.cid, pid=pid, exit_status=code,
            exited_at=_ts(when)))

    def _track(self, p: Proc, pid: int) -> None:
        """Map pid to p; an exit reaped before this is delivered now."""
        p.pid = pid
        with self.lock:
            self.by_pid[pid] = p
        got = self.reaper.exited(pid)
        if got is not None:
            self._exited(pid, *got)

    def _watch_ooms(self) -> None:
        """TaskOOM when a container's OOM-kill count grows (memory.events in cgroup2,
        memory.oom_control in v1), read from the files its state names, once a second."""
        seen: dict[str, tuple[str, int]] = {}  # container id -> (counter file, count)
        while True:
            time.sleep(1.0)
            with self.lock:
                live = [c for c in self.containers.values() if c.init.status != "stopped"]
            for c in live:
                if c.id not in seen:
                    path = _oom_counter(c.root, c.id)
                    seen[c.id] = (path, _oom_kills(path)) if path else ("", 0)
                path, before = seen[c.id]
                now = _oom_kills(path) if path else 0
                if now > before:
                    seen[c.id] = (path, now)
                    self.publish("/tasks/oom", ev.TaskOOM(container_id=c.id))
            for cid in set(seen) - {c.id for c in live}:
                del seen[cid]

    # ------------------------------------------------------------------ lifecycle

    def create(self, req: pb.CreateTaskRequest) -> pb.CreateTaskResponse:
        with self.lock:
            if req.id in self.containers:
                raise ttrpc.Status(ttrpc.ALREADY_EXISTS, f"container {req.id!r} already exists")
        if req.checkpoint:
            raise ttrpc.Status(ttrpc.UNIMPLEMENTED, "minirun cannot restore checkpoints")
        bundle = req.bundle
        if not os.path.isfile(os.path.join(bundle, "config.json")):
            raise ttrpc.Status(ttrpc.FAILED_PRECONDITION,
                               f"bundle {bundle}: no config.json")
        rootfs = os.path.join(bundle, "rootfs")
        mounted = mounts.mount_rootfs(req.rootfs, rootfs)
        stdio = Stdio(req.stdin, req.stdout, req.stderr, req.terminal)
        init = Proc(req.id, "", stdio)
        c = Container(req.id, bundle, self.root, init, mounted)
        try:
            console = stdio.prepare()
            args = ["create", "--bundle", bundle, "--pid-file",
                    os.path.join(bundle, "init.pid")]
            if console:
                args += ["--console-socket", console]
            r = self._run(c, *args, req.id, fds=stdio.fds)
            if r.code != 0:
                raise ttrpc.Status(ttrpc.UNKNOWN, f"minirun create: {r.error}")
            if console:
                stdio.receive_console()
            stdio.started()
            pid = _read_pid(os.path.join(bundle, "init.pid"))
        except BaseException:
            stdio.close()
            if mounted:
                mounts.unmount_rootfs(rootfs)
            raise
        with self.lock:
            self.containers[req.id] = c
        self._track(init, pid)
        self.publish("/tasks/create", ev.TaskCreate(
            container_id=req.id, bundle=bundle, rootfs=req.rootfs,
            io=ev.TaskIO(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr,
                         terminal=req.terminal), pid=pid))
        return pb.CreateTaskResponse(pid=pid)

    def start(self, req: pb.StartRequest) -> pb.StartResponse:
        c = self._container(req.id)
        p = c.proc(req.exec_id)
        if p.status != "created":
            raise ttrpc.Status(ttrpc.FAILED_PRECONDITION,
                               f"process {req.exec_id or req.id!r} is {p.status}, not created")
        if not req.exec_id:
            r = self._run(c, "start", req.id)
            if r.code != 0:
                raise ttrpc.Status(ttrpc.UNKNOWN, f"minirun start: {r.error}")
            if p.status == "created":
                p.status = "running"
            self.publish("/tasks/start", ev.TaskStart(container_id=req.id, pid=p.pid))
            return pb.StartResponse(pid=p.pid)
        console = p.stdio.prepare()
        pid_file = os.path.join(c.bundle, f"{req.exec_id}.pid")
        args = ["exec", "--detach", "--pid-file", pid_file, "--process", p.spec_file]
        if console:
            args += ["--console-socket", console]
        try:
            r = self._run(c, *args, req.id, fds=p.stdio.fds)
            if r.code != 0:
                raise ttrpc.Status(ttrpc.UNKNOWN, f"minirun exec: {r.error}")
            if console:
                p.stdio.receive_console()
        finally:
            p.stdio.started()
        pid = _read_pid(pid_file)
        p.status = "running"
        self._track(p, pid)
        self.publish("/tasks/exec-started", ev.TaskExecStarted(
            container_id=req.id, exec_id=req.exec_id, pid=pid))
        return pb.StartResponse(pid=pid)

    def exec(self, req: pb.ExecProcessRequest) -> empty_pb2.Empty:
        c = self._container(req.id)
        with self.lock:
            if req.exec_id in c.execs:
                raise ttrpc.Status(ttrpc.ALREADY_EXISTS, f"exec {req.exec_id!r} already exists")
            if c.init.status == "stopped":
                raise ttrpc.Status(ttrpc.FAILED_PRECONDITION,
                                   f"container {req.id!r} is stopped")
            p = Proc(req.id, req.exec_id, Stdio(req.stdin, req.stdout, req.stderr,
                                                req.terminal))
            p.spec_file = os.path.join(c.bundle, f".exec-{req.exec_id}.json")
            with open(p.spec_file, "wb") as f:
                f.write(req.spec.value)
            c.execs[req.exec_id] = p
        self.publish("/tasks/exec-added", ev.TaskExecAdded(container_id=req.id,
                                                           exec_id=req.exec_id))
        return empty_pb2.Empty()

    def wait(self, req: pb.WaitRequest) -> pb.WaitResponse:
        p = self._container(req.id).proc(req.exec_id)
        p.done.wait()
        return pb.WaitResponse(exit_status=p.exit_status, exited_at=_ts(p.exited_at))

    def state(self, req: pb.StateRequest) -> pb.StateResponse:
        c = self._container(req.id)
        p = c.proc(req.exec_id)
        status = {"created": types.CREATED, "running": types.RUNNING,
                  "stopped": types.STOPPED}[p.status]
        if status == types.RUNNING and not req.exec_id and c.paused:
            status = types.PAUSED
        stdin, stdout, stderr = p.stdio.paths
        return pb.StateResponse(
            id=req.exec_id or req.id, bundle=c.bundle, pid=p.pid, status=status,
            stdin=stdin, stdout=stdout, stderr=stderr, terminal=p.stdio.terminal,
            exit_status=p.exit_status, exited_at=_ts(p.exited_at), exec_id=req.exec_id)

    def kill(self, req: pb.KillRequest) -> empty_pb2.Empty:
        c = self._container(req.id)
        p = c.proc(req.exec_id)
        if req.exec_id:
            if p.status != "running":
                raise ttrpc.Status(ttrpc.NOT_FOUND, f"process {req.exec_id!r} already finished")
            try:
                os.kill(p.pid, req.signal)
            except ProcessLookupError:
                raise ttrpc.Status(ttrpc.NOT_FOUND, "process already finished") from None
            return empty_pb2.Empty()
        if p.status == "stopped" and not req.all:
            raise ttrpc.Status(ttrpc.NOT_FOUND, "process already finished")
        r = self._run(c, "kill", *(["--all"] if req.all else []), req.id, str(req.signal))
        if r.code != 0:
            if p.status == "stopped" or "not running" in r.error or "stopped" in r.error:
                raise ttrpc.Status(ttrpc.NOT_FOUND, f"process already finished: {r.error}")
            raise ttrpc.Status(ttrpc.UNKNOWN, f"minirun kill: {r.error}")
        return empty_pb2.Empty()

    def delete(self, req: pb.DeleteRequest) -> pb.DeleteResponse:
        c = self._container(req.id)
        if req.exec_id:
            p = c.proc(req.exec_id)
            if p.status == "running":
                raise ttrpc.Status(ttrpc.FAILED_PRECONDITION,
                                   f"exec {req.exec_id!r} is still running")
            with self.lock:
                c.execs.pop(req.exec_id, None)
            self._forget(p)
            return pb.DeleteResponse(pid=p.pid, exit_status=p.exit_status,
                                     exited_at=_ts(p.exited_at))
        p = c.init
        if p.status == "running":
            raise ttrpc.Status(ttrpc.FAILED_PRECONDITION,
                               f"container {req.id!r} is still running")
        r = self._run(c, "delete", "--force", req.id)
        if r.code != 0:
            raise ttrpc.Status(ttrpc.UNKNOWN, f"minirun delete: {r.error}")
        p.done.wait(10)  # a created init is killed by delete: its exit is the status
        if not p.done.is_set():
            p.exited(137, time.time())
        for e in list(c.execs.values()):
            self._forget(e)
        self._forget(p)
        if c.mounted:
            mounts.unmount_rootfs(os.path.join(c.bundle, "rootfs"))
        with self.lock:
            self.containers.pop(req.id, None)
        self.publish("/tasks/delete", ev.TaskDelete(
            container_id=req.id, pid=p.pid, exit_status=p.exit_status,
            exited_at=_ts(p.exited_at), id=req.id))
        return pb.DeleteResponse(pid=p.pid, exit_status=p.exit_status,
                                 exited_at=_ts(p.exited_at))

    def _forget(self, p: Proc) -> None:
        p.stdio.close()
        if p.spec_file:
            try:
                os.unlink(p.spec_file)
            except FileNotFoundError:
                pass
        with self.lock:
            self.by_pid.pop(p.pid, None)

    # ------------------------------------------------------------------ the rest

    def pids(self, req: pb.PidsRequest) -> pb.PidsResponse:
        c = self._container(req.id)
        r = self._run(c, "ps", "--format", "json", req.id)
        if r.code != 0:
            raise ttrpc.Status(ttrpc.UNKNOWN, f"minirun ps: {r.error}")
        execs = {e.pid: e.exec_id for e in c.execs.values() if e.pid}
        out = pb.PidsResponse()
        for pid in json.loads(r.stdout or "[]"):
            info = out.processes.add(pid=pid)
            if pid in execs:
                from minirun.shim.proto import runc_options_pb2

                details = runc_options_pb2.ProcessDetails(exec_id=execs[pid])
                info.info.type_url = "containerd.runc.v1.ProcessDetails"
                info.info.value = details.SerializeToString()
        return out

    def pause(self, req: pb.PauseRequest) -> empty_pb2.Empty:
        return self._freeze(req.id, True)

    def resume(self, req: pb.ResumeRequest) -> empty_pb2.Empty:
        return self._freeze(req.id, False)

    def _freeze(self, cid: str, paused: bool) -> empty_pb2.Empty:
        c = self._container(cid)
        r = self._run(c, "pause" if paused else "resume", cid)
        if r.code != 0:
            raise ttrpc.Status(ttrpc.FAILED_PRECONDITION if "not running" in r.error
                               else ttrpc.UNKNOWN, f"minirun {'pause' if paused else 'resume'}:"
                                                   f" {r.error}")
        c.paused = paused
        if paused:
            self.publish("/tasks/paused", ev.TaskPaused(container_id=cid))
        else:
            self.publish("/tasks/resumed", ev.TaskResumed(container_id=cid))
        return empty_pb2.Empty()

    def checkpoint(self, req: pb.CheckpointTaskRequest) -> empty_pb2.Empty:
        raise ttrpc.Status(ttrpc.UNIMPLEMENTED, "minirun does not checkpoint containers")

    def resizepty(self, req: pb.ResizePtyRequest) -> empty_pb2.Empty:
        self._container(req.id).proc(req.exec_id).stdio.resize(req.width, req.height)
        return empty_pb2.Empty()

    def closeio(self, req: pb.CloseIORequest) -> empty_pb2.Empty:
        p = self._container(req.id).proc(req.exec_id)
        if req.stdin:
            p.stdio.close_stdin()
        return empty_pb2.Empty()

    def update(self, req: pb.UpdateTaskRequest) -> empty_pb2.Empty:
        c = self._container(req.id)
        path = os.path.join(c.bundle, ".update.json")
        with open(path, "wb") as f:
            f.write(req.resources.value)
        try:
            r = self._run(c, "update", "--resources", path, req.id)
        finally:
            os.unlink(path)
        if r.code != 0:
            raise ttrpc.Status(ttrpc.UNKNOWN, f"minirun update: {r.error}")
        return empty_pb2.Empty()

    def stats(self, req: pb.StatsRequest) -> pb.StatsResponse:
        c = self._container(req.id)
        r = self._run(c, "events", "--stats", req.id)
        if r.code != 0:
            raise ttrpc.Status(ttrpc.UNKNOWN, f"minirun events --stats: {r.error}")
        from minirun.shim import metrics

        data = metrics.v1(json.loads(r.stdout)["data"]).SerializeToString()
        return pb.StatsResponse(stats=AnyPb(type_url="io.containerd.cgroups.v1.Metrics",
                                            value=data))

    def connect(self, req: pb.ConnectRequest) -> pb.ConnectResponse:
        from minirun import __version__

        with self.lock:
            c = self.containers.get(req.id)
        return pb.ConnectResponse(shim_pid=os.getpid(), task_pid=c.init.pid if c else 0,
                                  version=__version__)

    def shutdown(self, req: pb.ShutdownRequest) -> empty_pb2.Empty:
        with self.lock:
            empty = not self.containers
        if empty:
            self.on_empty()
        return empty_pb2.Empty()


def _read_pid(path: str) -> int:
    with open(path) as f:
        return int(f.read().strip())


def _last_log_error(bundle: str) -> str | None:
    """The runtime's last error in the bundle's log.json (its words for containerd)."""
    try:
        with open(os.path.join(bundle, "log.json"), "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8192))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("level") == "error":
            return rec.get("msg", "")
    return None


def _oom_counter(root: str, cid: str) -> str:
    """The file that counts the container's OOM kills ("" if it has no memory cgroup)."""
    try:
        with open(os.path.join(root, cid, "state.json")) as f:
            rec = json.load(f).get("cgroup") or {}
    except (OSError, ValueError):
        return ""
    v1_memory = (rec.get("v1") or {}).get("memory")
    if v1_memory:
        return os.path.join(v1_memory, "memory.oom_control")
    if rec.get("mount") and rec.get("path") and not rec.get("v1_only"):
        return f"{rec['mount']}{rec['path']}/memory.events"
    return ""


def _oom_kills(path: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0
