"""Hooks: config.md's POSIX-platform hooks and runtime.md's lifecycle steps 3-13.

Every hook here is a small shell script that records what it saw (its argv, env, stdin,
namespaces, the container process's mounts and root) into a directory of the test;
the tests then check when, where and in which order each kind ran. The scripts of the
runtime-namespace hooks live only on the host, the startContainer one only in the
container's root, so where each path resolves is checked too.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conf_util import add_mount, alive, cmdline, ns_links, wait_for
from conftest import under_runc

from .conftest import STATUSES

KINDS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop"]
CREATE_KINDS = ["prestart", "createRuntime", "createContainer"]

# Runs on the host's /bin/sh (dash) or, for startContainer, the container's busybox sh.
# argv: OUT NAME [EXIT [SLEEP [exec]]]
RECORDER = r"""#!/bin/sh
out=$1; name=$2
cat > "$out/$name.state"
echo "$name" >> "$out/order"
for n in mnt net uts ipc pid; do echo "$n $(readlink /proc/self/ns/$n)"; done > "$out/$name.ns"
echo "$0|$*" > "$out/$name.argv"
env > "$out/$name.env"
pid=$(sed -n 's/.*"pid": *\([0-9][0-9]*\).*/\1/p' "$out/$name.state")
bundle=$(sed -n 's/.*"bundle": *"\([^"]*\)".*/\1/p' "$out/$name.state")
if [ -n "$pid" ] && [ "$pid" != 0 ] && [ -d /proc/$pid ]; then
  cat /proc/$pid/mountinfo > "$out/$name.pidmounts" 2>/dev/null
  tr '\0' ' ' < /proc/$pid/cmdline > "$out/$name.cmdline" 2>/dev/null
  if [ -e "/proc/$pid/root$bundle/config.json" ]; then echo yes; else echo no; fi \
    > "$out/$name.pid-root-is-host"
fi
if [ -e "$bundle/config.json" ]; then echo yes; else echo no; fi > "$out/$name.sees-host"
cat /proc/self/mountinfo > "$out/$name.mounts"
if [ -n "$4" ] && [ "$5" = exec ]; then exec sleep "$4"; fi
if [ -n "$4" ]; then sleep "$4"; fi
if [ "${3:-0}" != 0 ]; then echo "hook $name failing on purpose" >&2; fi
exit "${3:-0}"
"""

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Hooked:
    """A bundle whose hooks record into ``out``; ``hooks`` maps kind -> list of
    (name, exit status[, sleep]) for the recorder, in order."""

    def __init__(self, runtime, bundle, cid, tmp_path, hooks: dict, args=None, edits=()):
        self.runtime = runtime
        self.out = tmp_path / "hook-out"
        self.out.mkdir(parents=True, exist_ok=True)
        os.chmod(self.out, 0o777)
        self.script = tmp_path / "hook-recorder.sh"  # only on the host
        self.script.write_text(RECORDER)
        self.script.chmod(0o755)
        self.id = cid()

        def edit(cfg):
            cfg["hooks"] = {}
            for kind, entries in hooks.items():
                path = "/hook-recorder.sh" if kind == "startContainer" else str(self.script)
                out = "/hookout" if kind == "startContainer" else str(self.out)
                cfg["hooks"][kind] = [
                    {"path": path, "args": ["recorder", out, *map(str, e)],
                     "env": [PATH_ENV, f"HOOK_KIND={kind}"]} for e in entries]
            cfg["root"]["readonly"] = False

        self.bundle = bundle(args or ["sh", "-c", "ls /hookout > /hookout/program-saw; "
                                                  "exec sleep 1000"],
                             [edit, add_mount(destination="/hookout", type="bind",
                                              source=str(self.out), options=["rbind"]),
                              add_mount(destination="/mnt/hooked", type="tmpfs",
                                        source="tmpfs"), *edits])
        # startContainer resolves in the container: the script exists only in its root
        inside = self.bundle / "rootfs" / "hook-recorder.sh"
        inside.write_text(RECORDER)
        inside.chmod(0o755)
        assert not Path("/hook-recorder.sh").exists()

    def order(self) -> list[str]:
        f = self.out / "order"
        return f.read_text().split() if f.exists() else []

    def ran(self, name: str) -> bool:
        return (self.out / f"{name}.state").exists()

    def state(self, name: str) -> dict:
        return json.loads((self.out / f"{name}.state").read_text())

    def ns(self, name: str) -> dict[str, str]:
        return dict(ln.split(" ", 1) for ln in
                    (self.out / f"{name}.ns").read_text().splitlines())

    def read(self, name: str, what: str) -> str:
        p = self.out / f"{name}.{what}"
        return p.read_text().strip() if p.exists() else ""

    def create(self, *extra):
        return self.runtime.create(self.id, self.bundle, *extra)


@pytest.fixture
def hooked(runtime, bundle, cid, tmp_path):
    made = []

    def make(hooks: dict, **kw) -> Hooked:
        h = Hooked(runtime, bundle, cid, tmp_path / f"h{len(made)}", hooks, **kw)
        made.append(h)
        return h

    return make


def own_ns() -> dict[str, str]:
    return {k: v for k, v in ns_links("self").items() if k in ("mnt", "net", "uts", "ipc",
                                                               "pid")}


def all_hooks_twice() -> dict:
    return {kind: [(f"{kind}-1",), (f"{kind}-2",)] for kind in KINDS}


# ================================================================ order and state


def test_hooks_called_in_listed_order(runtime, hooked):
    """POSIX-platform Hooks: "Hooks MUST be called in the listed order." """
    h = hooked({"createRuntime": [("first",), ("second",), ("third",)],
                "poststart": [("p-one",), ("p-two",)]})
    assert h.create().returncode == 0
    assert h.order() == ["first", "second", "third"]
    runtime.ok("start", h.id)
    assert h.order() == ["first", "second", "third", "p-one", "p-two"]


def test_hooks_lifecycle_order(runtime, hooked):
    """Lifecycle: steps 3 prestart, 4 createRuntime, 5 createContainer (during create),
    7 startContainer, 8 the program, 9 poststart (during start), 12-13 poststop (during
    delete). "The prestart hooks MUST be called before the createRuntime hooks." "The
    createContainer hooks MUST be called after the createRuntime hooks." """
    h = hooked(all_hooks_twice())
    r = h.create()
    assert r.returncode == 0, r
    assert h.order() == ["prestart-1", "prestart-2", "createRuntime-1", "createRuntime-2",
                         "createContainer-1", "createContainer-2"]
    runtime.ok("start", h.id)
    assert h.order()[6:] == ["startContainer-1", "startContainer-2", "poststart-1",
                             "poststart-2"]
    runtime.ok("kill", h.id, "KILL")
    runtime.wait_status(h.id, "stopped")
    assert h.order()[10:] == []
    runtime.ok("delete", h.id)
    assert h.order()[10:] == ["poststop-1", "poststop-2"]


def test_hooks_get_the_state_on_stdin(runtime, hooked):
    """POSIX-platform Hooks: "The state of the container MUST be passed to hooks over
    stdin so that they may do work appropriate to the current state of the container." """
    h = hooked({k: [(k,)] for k in KINDS})
    assert h.create().returncode == 0
    pid = runtime.state(h.id)["pid"]
    runtime.ok("start", h.id)
    runtime.ok("delete", "--force", h.id)
    want_status = {"prestart": "creating", "createRuntime": "creating",
                   "createContainer": "creating", "startContainer": "created",
                   "poststart": "running", "poststop": "stopped"}
    for kind in KINDS:
        st = h.state(kind)
        assert st["id"] == h.id, (kind, st)
        assert os.path.samefile(st["bundle"], h.bundle), (kind, st)
        assert isinstance(st["ociVersion"], str) and st["ociVersion"], (kind, st)
        assert st["status"] in STATUSES, (kind, st)
        assert st["status"] == want_status[kind], (kind, st)
        if kind in ("prestart", "createRuntime", "poststart"):
            assert st["pid"] == pid, (kind, st)  # runtime namespace: the host's pid
        elif kind in ("createContainer", "startContainer"):
            # v1.1+: "For hooks executed in the container namespace, it is the pid as
            # seen by the container" (v1.0.2: as seen by the host): either
            assert st["pid"] in (pid, 1), (kind, st)


def test_hook_args_and_env(runtime, hooked):
    """POSIX-platform Hooks: "args (array of strings, OPTIONAL) with the same semantics as
    IEEE Std 1003.1-2008 execv's argv." "env (array of strings, OPTIONAL) with the same
    semantics as IEEE Std 1003.1-2008's environ." (argv[0] is args[0], seen by a Python
    hook in sys.orig_argv; env is all the hook gets)"""
    h = hooked({"createRuntime": [("cr",)]})
    probe = h.out / "py-argv"
    cfg = json.loads((h.bundle / "config.json").read_text())
    cfg["hooks"]["createRuntime"].append({
        "path": "/usr/bin/python3",
        "args": ["argv-zero", "-I", "-S", "-c",
                 "import sys, os; open(sys.argv[1], 'w').write(repr(sys.orig_argv))",
                 str(probe)],
        "env": ["ONLY=this"]})
    (h.bundle / "config.json").write_text(json.dumps(cfg))
    assert h.create().returncode == 0
    assert h.read("cr", "argv").split("|")[1] == f"{h.out} cr"
    env = dict(ln.split("=", 1) for ln in h.read("cr", "env").splitlines() if "=" in ln)
    assert env.get("HOOK_KIND") == "createRuntime"
    assert env.get("PATH") == PATH_ENV.split("=", 1)[1]
    leaked = set(env) - {"HOOK_KIND", "PATH", "PWD", "OLDPWD", "SHLVL", "_"}
    assert not leaked, f"the hook got more than its env: {sorted(leaked)}"
    argv = eval(probe.read_text())  # noqa: S307 - our own probe's repr of a list of str
    assert argv[0] == "argv-zero", argv
    assert argv[-1] == str(probe), argv


@pytest.mark.parametrize("kind", KINDS)
def test_hook_path_must_be_absolute(create_fails, kind):
    """POSIX-platform Hooks: "path (string, REQUIRED) with similar semantics to IEEE Std
    1003.1-2008 execv's path. This specification extends the IEEE standard in that path
    MUST be absolute." """
    create_fails({"hooks": {kind: [{"path": "bin/true"}]}})


@pytest.mark.parametrize("timeout", [0, -1])
def test_hook_timeout_must_be_greater_than_zero(create_fails, timeout):
    """POSIX-platform Hooks: "timeout (int, OPTIONAL) is the number of seconds before
    aborting the hook. If set, timeout MUST be greater than zero." """
    if under_runc():
        pytest.xfail("runc 1.1.5 does not check the timeout")
    create_fails({"hooks": {"createRuntime": [{"path": "/bin/true", "timeout": timeout}]}})


@pytest.mark.parametrize("how", ["exec", "child"])
def test_hook_timeout_aborts_the_hook(runtime, hooked, how):
    """POSIX-platform Hooks: "timeout (int, OPTIONAL) is the number of seconds before
    aborting the hook." (a createRuntime hook that outlives its 1 s fails the create
    within seconds; "child": the hook's own child still holds its stdout and stderr)"""
    h = hooked({"createRuntime": [("slow", 0, 60, "exec" if how == "exec" else "")]})
    cfg = json.loads((h.bundle / "config.json").read_text())
    cfg["hooks"]["createRuntime"][0]["timeout"] = 1
    (h.bundle / "config.json").write_text(json.dumps(cfg))
    t0 = time.monotonic()
    try:
        r = runtime.create(h.id, h.bundle, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("create still running 30 s after the hook's 1 s timeout")
    took = time.monotonic() - t0
    assert r.returncode != 0, r
    assert took < 20, f"create took {took:.1f}s: the hook was not aborted after 1s"
    assert runtime("state", h.id).returncode != 0


# ================================================================ where and when


@pytest.mark.parametrize("kind", ["prestart", "createRuntime"])
def test_runtime_namespace_create_hooks(runtime, hooked, kind):
    """prestart / createRuntime: "MUST be called as part of the create operation after
    the runtime environment has been created (according to the configuration in
    config.json) but before the pivot_root or any equivalent operation has been
    executed." "The ... hooks' path MUST resolve in the runtime namespace." "The ...
    hooks MUST be executed in the runtime namespace." """
    h = hooked({kind: [(kind,)]})
    r = h.create()
    assert r.returncode == 0, r
    assert h.ran(kind), "not run during create"
    assert h.ns(kind) == own_ns(), "not run in the runtime's namespaces"
    pid = runtime.state(h.id)["pid"]
    theirs = ns_links(pid)
    # the container's namespaces existed, and its mounts were made ...
    assert h.read(kind, "pidmounts"), "the container process did not exist yet"
    assert any(ln.split()[4].endswith("/rootfs/mnt/hooked")
               for ln in h.read(kind, "pidmounts").splitlines()), \
        "the container's mounts were not made yet"
    assert theirs["net"] != own_ns()["net"]
    # ... but its root was still the host's: before pivot_root
    assert h.read(kind, "pid-root-is-host") == "yes", "called after pivot_root"
    assert "sleep" not in cmdline(pid)


def test_create_container_hooks(runtime, hooked):
    """createContainer: "MUST be called as part of the create operation after the
    runtime environment has been created ... but before the pivot_root or any equivalent
    operation has been executed." "The createContainer hooks' path MUST resolve in the
    runtime namespace." "The createContainer hooks MUST be executed in the container
    namespace." """
    h = hooked({"createContainer": [("cc",)]})
    r = h.create()
    assert r.returncode == 0, r
    pid = runtime.state(h.id)["pid"]
    theirs = ns_links(pid)
    ns = h.ns("cc")
    for n in ("mnt", "net", "uts", "ipc", "pid"):
        assert ns[n] == theirs[n], f"{n}: not the container's namespace"
        assert ns[n] != own_ns()[n], f"{n}: the runtime's namespace"
    assert h.read("cc", "sees-host") == "yes", "called after pivot_root"
    assert any(ln.split()[4].endswith("/rootfs/mnt/hooked")
               for ln in h.read("cc", "mounts").splitlines()), "mounts not made yet"


def test_start_container_hooks(runtime, hooked):
    """startContainer: "MUST be called before the user-specified process is executed as
    part of the start operation." "The startContainer hooks' path MUST resolve in the
    container namespace." "The startContainer hooks MUST be executed in the container
    namespace." (the script exists only in the container's root)"""
    h = hooked({"startContainer": [("sc",)]})
    assert h.create().returncode == 0
    assert not h.ran("sc"), "run during create"
    pid = runtime.state(h.id)["pid"]
    runtime.ok("start", h.id)
    wait_for(lambda: (h.out / "program-saw").exists(), "the program to run")
    assert "sc.state" in (h.out / "program-saw").read_text().split(), \
        "the program ran before the startContainer hook"
    theirs = ns_links(pid)
    ns = h.ns("sc")
    for n in ("mnt", "net", "uts", "ipc", "pid"):
        assert ns[n] == theirs[n], f"{n}: not the container's namespace"
    assert h.read("sc", "sees-host") == "no", "the hook saw the host's filesystem"


def test_poststart_hooks(runtime, hooked):
    """poststart: "MUST be called after the user-specified process is executed but before
    the start operation returns." "The poststart hooks' path MUST resolve in the runtime
    namespace." "The poststart hooks MUST be executed in the runtime namespace." """
    h = hooked({"poststart": [("ps",)]})
    assert h.create().returncode == 0
    assert not h.ran("ps")
    runtime.ok("start", h.id)
    assert h.ran("ps"), "start returned before the poststart hook ran"
    assert h.read("ps", "cmdline") == "sleep 1000", "called before the program was executed"
    assert h.ns("ps") == own_ns()


def test_poststop_hooks(runtime, hooked):
    """poststop: "MUST be called after the container is deleted but before the delete
    operation returns." "The poststop hooks' path MUST resolve in the runtime namespace."
    "The poststop hooks MUST be executed in the runtime namespace." """
    h = hooked({"poststop": [("pst",)]})
    assert h.create().returncode == 0
    pid = runtime.state(h.id)["pid"]
    runtime.ok("start", h.id)
    runtime.ok("kill", h.id, "KILL")
    runtime.wait_status(h.id, "stopped")
    assert not h.ran("pst")
    runtime.ok("delete", h.id)
    assert h.ran("pst"), "delete returned before the poststop hook ran"
    assert h.ns("pst") == own_ns()
    assert not alive(pid)
    assert h.read("pst", "cmdline") in ("", "sleep 1000"), "container process still there"


# ================================================================ failures


@pytest.mark.parametrize("kind", CREATE_KINDS)
def test_failing_create_hook_is_an_error_and_stops_the_container(runtime, hooked, kind):
    """Lifecycle steps 3-5: "If any prestart / createRuntime / createContainer hook fails,
    the runtime MUST generate an error, stop the container, and continue the lifecycle
    at step 12." (step 12: "The container MUST be destroyed"; later hooks of the kind do
    not run)"""
    h = hooked({kind: [("bad", 3), ("after",)]})
    r = h.create()
    assert r.returncode != 0, r
    if not under_runc():
        assert "hook-recorder.sh" in r.stderr and "3" in r.stderr, r
        assert "failing on purpose" in r.stderr, r
    assert h.ran("bad") and not h.ran("after")
    assert runtime("state", h.id).returncode != 0
    assert not runtime.root.is_dir() or h.id not in os.listdir(runtime.root)


@pytest.mark.parametrize("kind", CREATE_KINDS)
def test_failing_create_hook_continues_with_poststop(runtime, hooked, kind):
    """Lifecycle: a failing prestart / createRuntime / createContainer hook: "continue the
    lifecycle at step 12"; step 13: "The poststop hooks MUST be invoked by the
    runtime." """
    h = hooked({kind: [("bad", 3)], "poststop": [("pst",)]})
    r = h.create()
    assert r.returncode != 0, r
    assert h.ran("pst"), "poststop hooks were not run after the failed create"


def test_failing_start_container_hook(runtime, hooked):
    """Lifecycle step 7: "If any startContainer hook fails, the runtime MUST generate an
    error, stop the container, and continue the lifecycle at step 12." (the program never
    runs)"""
    h = hooked({"startContainer": [("bad", 4), ("after",)]})
    assert h.create().returncode == 0
    pid = runtime.state(h.id)["pid"]
    r = runtime("start", h.id)
    assert r.returncode != 0, r
    if not under_runc():
        assert "hook-recorder.sh" in r.stderr, r
    assert h.ran("bad") and not h.ran("after")
    assert not (h.out / "program-saw").exists(), "the program ran"
    wait_for(lambda: not alive(pid), "the container to stop")
    assert runtime.status(h.id) in (None, "stopped")


def test_failing_start_container_hook_continues_with_poststop(runtime, hooked):
    """Lifecycle step 7: "... continue the lifecycle at step 12"; step 13: "The poststop
    hooks MUST be invoked by the runtime." """
    h = hooked({"startContainer": [("bad", 4)], "poststop": [("pst",)]})
    assert h.create().returncode == 0
    r = runtime("start", h.id)
    assert r.returncode != 0, r
    assert h.ran("pst"), "poststop hooks were not run after the failed start"


def test_failing_poststart_hook_is_a_warning(runtime, hooked, tmp_path):
    """Lifecycle step 9: "If any poststart hook fails, the runtime MUST log a warning, but
    the remaining hooks and lifecycle continue as if the hook had succeeded." """
    h = hooked({"poststart": [("bad", 5), ("after",)]})
    assert h.create().returncode == 0
    log = tmp_path / "runtime.log"
    r = runtime("start", h.id, global_args=["--log", str(log)])
    assert r.returncode == 0, r
    assert h.ran("bad") and h.ran("after")
    assert runtime.state(h.id)["status"] == "running"
    text = log.read_text() if log.exists() else ""
    assert "hook-recorder.sh" in text + r.stderr, f"no warning logged: {r}\nlog: {text!r}"


def test_failing_poststop_hook_is_a_warning(runtime, hooked, tmp_path):
    """Lifecycle step 13: "If any poststop hook fails, the runtime MUST log a warning, but
    the remaining hooks and lifecycle continue as if the hook had succeeded." """
    h = hooked({"poststop": [("bad", 6), ("after",)]})
    assert h.create().returncode == 0
    log = tmp_path / "runtime.log"
    r = runtime("delete", "--force", h.id, global_args=["--log", str(log)])
    assert r.returncode == 0, r
    assert h.ran("bad") and h.ran("after")
    assert runtime("state", h.id).returncode != 0
    text = log.read_text() if log.exists() else ""
    assert "hook-recorder.sh" in text + r.stderr, f"no warning logged: {r}\nlog: {text!r}"


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_missing_hook_is_an_error(runtime, create_fails, tmp_path, kind):
    """A hook that does not exist fails like a failing hook (issue 3: one clear line,
    nothing left behind)."""
    r = create_fails({"hooks": {kind: [{"path": str(tmp_path / "no-such-hook")}]}})
    if not under_runc():
        assert "no-such-hook" in r.stderr, r
        assert len(r.stderr.strip().splitlines()) == 1, r
