"""OCI hooks: programs the bundle asks the runtime to run at points of the lifecycle.

    create:  prestart, createRuntime   run by the runtime, in its namespaces, after the
                                       container's namespaces and mounts exist, before
                                       pivot_root
             createContainer           run by the container's init, in its namespaces,
                                       before pivot_root (path resolves on the host)
    start:   startContainer            run by the init after `start`, just before exec
             poststart                 run by the runtime once the process started
    delete:  poststop                  run by the runtime after the container is gone

Each hook gets the container's state JSON on stdin, its own `args` (args[0] is argv[0])
and `env` (or the runtime's environment when unset), and is killed after `timeout`
seconds. A failing hook fails the operation with its path, exit status and output;
poststart and poststop failures are warnings, as the spec says.
"""

import os
import subprocess

from minirun.errors import MinirunError
from minirun.lite import json

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop")
WARN_ONLY = ("poststart", "poststop")


class HookError(MinirunError):
    step_labelled = True  # the message already names the hook: hooks.KIND[i] PATH

POLL_MAX_S = 2_000_000  # seconds; poll(2) takes an int of milliseconds


def run(cfg: dict, kind: str, state: dict, cwd: str | None = None) -> None:
    """Run every hook of `kind` in order; raise HookError for the first that fails."""
    hooks = (cfg.get("hooks") or {}).get(kind) or []
    stdin = json.dumps(state).encode()
    for i, hook in enumerate(hooks):
        _run_one(hook, stdin, f"hooks.{kind}[{i}]", cwd)


def run_warn(cfg: dict, kind: str, state: dict) -> None:
    """Run every hook of `kind`; a failure is a warning and the next hooks still run."""
    from minirun.log import log

    stdin = json.dumps(state).encode()
    for i, hook in enumerate((cfg.get("hooks") or {}).get(kind) or []):
        try:
            _run_one(hook, stdin, f"hooks.{kind}[{i}]")
        except HookError as e:
            log.warn(str(e))


def _run_one(hook: dict, stdin: bytes, where: str, cwd: str | None = None) -> None:
    path = hook["path"]
    args = hook.get("args") or [path]
    env = None
    if hook.get("env") is not None:
        env = dict(e.partition("=")[::2] for e in hook["env"])
    timeout = hook.get("timeout")
    if timeout is not None and timeout > POLL_MAX_S:
        timeout = None  # beyond what poll(2) can wait (~24 days): no limit in practice
    try:
        # A session of its own: on timeout the hook and whatever it started are killed.
        proc = subprocess.Popen(args, executable=path, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                close_fds=True, start_new_session=True, cwd=cwd)
    except OSError as e:
        from minirun.diagnose import explain

        cause = explain(path, e.errno or 0)
        raise HookError(f"{where} {path}: cannot run: {e.strerror}"
                        + (f": {cause}" if cause else "")) from None
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise HookError(f"{where} {path}: timed out after {timeout}s") from None
    if proc.returncode != 0:
        why = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"exit status {proc.returncode}")
        # Its last 4 KiB: the end of a long output says why it failed.
        text = (err or out)[-4096:].decode(errors="replace").strip().replace("\n", " | ")
        raise HookError(f"{where} {path}: {why}" + (f": {text}" if text else ""))


def _kill_group(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def state_for(st: dict, status: str, pid: int | None = None) -> dict:
    """The OCI state a hook sees."""
    from minirun import OCI_VERSION

    out = {"ociVersion": OCI_VERSION, "id": st["id"], "status": status,
           "pid": pid if pid is not None else st.get("pid", 0), "bundle": st["bundle"]}
    if st.get("annotations"):
        out["annotations"] = st["annotations"]
    return out


def validate(hooks: object) -> None:
    from minirun.config import abspath, array, integer, obj, strings

    hooks = obj(hooks, "hooks")
    for kind, entries in hooks.items():
        if kind not in KINDS:
            continue  # unknown hook kinds are ignored, as the spec's extensions
        for i, hook in enumerate(array(entries, f"hooks.{kind}")):
            p = f"hooks.{kind}[{i}]"
            hook = obj(hook, p)
            path = abspath(hook.get("path"), f"{p}.path")
            if kind != "startContainer" and not os.path.isfile(path):
                # startContainer resolves in the container; the others on the host, now.
                raise MinirunError(f"{p}.path: {path}: no such file")
            if hook.get("args") is not None:
                strings(hook["args"], f"{p}.args")
            if hook.get("env") is not None:
                strings(hook["env"], f"{p}.env")
            if hook.get("timeout") is not None:
                integer(hook["timeout"], f"{p}.timeout", 1, 2**31 - 1)
