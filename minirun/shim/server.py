"""The shim server's process: the Task service on ttrpc, events to containerd, and its
own end once the last container of its namespace is gone (see main.py for the tree)."""

from __future__ import annotations

import os
import queue
import socket
import threading
import time

from minirun.shim import ttrpc

EVENTS = "containerd.services.events.ttrpc.v1.Events"
IDLE_GRACE = 2.0  # s: a start may have handed out our address just before Shutdown


class Publisher:
    """Events to containerd's Events/Forward, in the order they happened."""

    def __init__(self, address: str, namespace: str, log) -> None:
        self.namespace = namespace
        self.log = log
        self.client = ttrpc.Client(address) if address else None
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, daemon=True, name="events").start()

    def publish(self, topic: str, event) -> None:
        self.queue.put((topic, event, time.time_ns()))

    def _loop(self) -> None:
        from google.protobuf.any_pb2 import Any as AnyPb

        from minirun.shim.proto import events_ttrpc_pb2 as evt

        while True:
            topic, event, when = self.queue.get()
            if self.client is None:
                continue
            env = evt.Envelope(namespace=self.namespace, topic=topic,
                               event=AnyPb(type_url=event.DESCRIPTOR.full_name,
                                           value=event.SerializeToString()))
            env.timestamp.FromNanoseconds(when)
            payload = evt.ForwardRequest(envelope=env).SerializeToString()
            for attempt in range(5):
                try:
                    self.client.call(EVENTS, "Forward", payload)
                    break
                except (OSError, ttrpc.FrameError, ttrpc.Status) as e:
                    if attempt == 4:
                        self.log(f"event {topic} not delivered: {e}")
                    time.sleep(0.2 * (attempt + 1))


# What a create, start, exec, kill or delete imports: loaded once here, so that the fork
# each one runs in starts with them (a fork's own imports die with it).
PRELOAD = ("minirun.cli", "minirun.commands", "minirun.container", "minirun.container_exec",
           "minirun.container_cgroup", "minirun.launch", "minirun.linux.init",
           "minirun.linux.rootfs", "minirun.linux.process", "minirun.linux.namespaces",
           "minirun.linux.capabilities", "minirun.linux.sealed", "minirun.cgroups.cgroup",
           "minirun.cgroups.validate", "minirun.cgroups.v1", "minirun.cgroups.devices",
           "minirun.diagnose", "minirun.state", "minirun.config", "minirun.terminal",
           "minirun.fieldnames")


def run(listener: socket.socket, namespace: str, path: str) -> None:
    import importlib

    from minirun import syscalls
    from minirun.shim.task import STATE_ROOT, TaskService

    for name in PRELOAD:
        importlib.import_module(name)
    syscalls.set_child_subreaper()
    state = os.path.join(STATE_ROOT, namespace)
    os.makedirs(state, mode=0o700, exist_ok=True)
    # MINIRUN_SHIM_LOG: a file that gets every request too (debugging the shim)
    trace_path = os.environ.get("MINIRUN_SHIM_LOG")
    log_path = trace_path or os.path.join(state, ".shim.log")

    def log(msg: str) -> None:
        try:
            with open(log_path, "a") as f:
                now = time.time()
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                f.write(f"{stamp}.{int(now % 1 * 1000):03d}Z {msg}\n")
        except OSError:
            pass

    publisher = Publisher(os.environ.get("TTRPC_ADDRESS", ""), namespace, log)
    server: ttrpc.Server
    last_request = [time.monotonic()]

    def on_empty() -> None:
        threading.Thread(target=_exit_when_idle, daemon=True).start()

    def _exit_when_idle() -> None:
        mark = last_request[0]
        time.sleep(IDLE_GRACE)
        with service.lock:
            if service.containers or last_request[0] != mark:
                return
            from minirun.shim.main import server_lock

            with server_lock(path):  # no start hands out our address from here on
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                server.close()
            _remove_state(state)
            os._exit(0)

    service = TaskService(namespace, publisher.publish, on_empty)
    handlers = {}
    for name, handler in service.handlers().items():
        handlers[name] = _stamped(handler, last_request, name.endswith("/Shutdown"),
                                  log if trace_path else None, name)
    server = ttrpc.Server(handlers, on_error=log)
    server.serve(listener)


def _stamped(handler, last_request: list, is_shutdown: bool, trace, name: str):
    def handle(payload: bytes) -> bytes:
        if not is_shutdown:
            last_request[0] = time.monotonic()
        if trace is None:
            return handler(payload)
        trace(f"-> {name}")
        try:
            out = handler(payload)
        except Exception as e:
            trace(f"<- {name}: {type(e).__name__}: {e}")
            raise
        trace(f"<- {name}: ok")
        return out
    return handle


def _remove_state(state: str) -> None:
    """The namespace's state root, when no container is left in it (our log goes too)."""
    try:
        names = os.listdir(state)
    except FileNotFoundError:
        return
    if any(not n.startswith(".") for n in names):
        return
    for n in names:
        try:
            os.unlink(os.path.join(state, n))
        except OSError:
            pass
    try:
        os.rmdir(state)
    except OSError:
        pass
