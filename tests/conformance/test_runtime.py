"""runtime.md: the state, the lifecycle, the operations and their errors.

Each test is named after a MUST of runtime.md and quotes it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from conf_util import add_mount, add_ns, alive, cmdline, ns_file_link, ns_links, nspid, wait_for
from conftest import TIMEOUT, host_mounts, reap_zombie_children, under_runc

from .conftest import SLEEP, STATUSES, assert_not_created, check_state_schema, write_json


def wait_output(res, text: str, timeout: float = TIMEOUT) -> str:
    """Wait for text in the container's output (the stdout it inherited from create)."""
    wait_for(lambda: text in res.read_stdout(), f"{text!r} in the container's output", timeout)
    return res.read_stdout()


def safe_ns_links(pid) -> dict[str, str]:
    try:
        return ns_links(pid)
    except OSError:  # gone meanwhile
        return {}


def start_time(pid) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[19]


def ns_holders(links: set[str]) -> dict[int, str | None]:
    """pid -> start time of every process in one of these namespaces. (Namespace inode
    numbers are reused as soon as they are freed, and other containers come and go on
    this host: a process is identified by its pid and start time.)"""
    out = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit() and set(safe_ns_links(pid).values()) & links:
            out[int(pid)] = start_time(pid)
    return out


# ================================================================ State


@pytest.mark.parametrize("phase", ["created", "running", "stopped"])
def test_state_properties_and_format(runtime, created, phase):
    """State: "ociVersion (string, REQUIRED) ... id (string, REQUIRED) is the container's
    ID ... status (string, REQUIRED) ... pid (int, REQUIRED when status is created or
    running on Linux) is the ID of the container process, as seen by the host ... bundle
    (string, REQUIRED) is the absolute path to the container's bundle directory."
    "When serialized in JSON, the format MUST adhere to the JSON Schema
    schema/state-schema.json." """
    ann = {"org.example.key": "value", "com.example.other": ""}
    args = SLEEP if phase != "stopped" else ["true"]
    ct = created({"annotations": ann}, args=args)
    if phase != "created":
        runtime.ok("start", ct.id)
    if phase == "stopped":
        runtime.wait_status(ct.id, "stopped")
    r = runtime("state", ct.id)
    assert r.returncode == 0, r
    st = json.loads(r.stdout)
    check_state_schema(st, ct.id)
    assert st["status"] == phase
    assert os.path.samefile(st["bundle"], ct.bundle)
    if phase != "stopped":
        assert st["pid"] == ct.pid
    assert st.get("annotations") == ann, st


def test_state_pid_is_the_container_process_as_seen_by_the_host(runtime, created):
    """State: "pid (int, REQUIRED when status is created or running on Linux) is the ID
    of the container process, as seen by the host." """
    ct = created()
    assert nspid(ct.pid) == [ct.pid, 1], "not the host pid of the container's pid 1"
    assert os.readlink(f"/proc/{ct.pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    runtime.ok("start", ct.id)
    wait_for(lambda: cmdline(ct.pid) == SLEEP, "the container process to exec")
    assert runtime.state(ct.id)["pid"] == ct.pid


def test_state_bundle_is_an_absolute_path(runtime, bundle, cid):
    """State: "bundle (string, REQUIRED) is the absolute path to the container's bundle
    directory." (create is given a relative path)"""
    b = bundle(SLEEP)
    c = cid()
    r = runtime("create", "--bundle", b.name, c, cwd=b.parent)
    assert r.returncode == 0, r
    st = runtime.state(c)
    assert os.path.isabs(st["bundle"]) and os.path.samefile(st["bundle"], b), st


def test_state_status_values(runtime, created):
    """State: status "MAY be one of: creating, created, running, stopped. Additional
    values MAY be defined by the runtime, however, they MUST be used to represent new
    runtime states not defined above." (each defined state is reported by its name)"""
    ct = created()
    seen = [runtime.state(ct.id)["status"]]
    runtime.ok("start", ct.id)
    seen.append(runtime.state(ct.id)["status"])
    runtime.ok("kill", ct.id, "KILL")
    seen.append(runtime.wait_status(ct.id, "stopped")["status"])
    assert seen == ["created", "running", "stopped"]
    assert set(seen) <= set(STATUSES)


@pytest.mark.parametrize("how", ["exits", "kill operation", "killed from the host"])
def test_state_stopped_when_the_container_process_exits(runtime, created, how):
    """State: "stopped: the container process has exited". (v1.0: "When the process in
    the container is stopped, irrespective of it being as a result of a kill operation
    or any other reason, the status property of this container MUST be stopped.")"""
    ct = created(args=["sh", "-c", "exit 3"] if how == "exits" else SLEEP)
    runtime.ok("start", ct.id)
    if how == "kill operation":
        runtime.ok("kill", ct.id, "KILL")
    elif how == "killed from the host":
        os.kill(ct.pid, signal.SIGKILL)
    st = runtime.wait_status(ct.id, "stopped")
    assert st["status"] == "stopped"


# ================================================================ Lifecycle


def test_lifecycle_create_does_not_run_the_user_program(runtime, created, tmp_path):
    """Lifecycle step 2: "While the resources requested in the config.json MUST be
    created, the user-specified program (from process) MUST NOT be run at this time."
    Create: "process.args MUST NOT be applied until triggered by the start operation." """
    out = tmp_path / "out"
    out.mkdir()
    ct = created(add_mount(destination="/out", type="bind", source=str(out),
                           options=["bind"]),
                 args=["sh", "-c", "echo ran > /out/marker; exec sleep 1000"])
    time.sleep(0.5)
    assert not (out / "marker").exists(), "the user program ran at create"
    assert cmdline(ct.pid) != ["sleep", "1000"]
    assert ct.result.read_stdout() == ""
    runtime.ok("start", ct.id)
    wait_for(lambda: (out / "marker").exists(), "the user program to run after start")


def test_lifecycle_config_changes_after_create_do_not_affect_the_container(runtime, created):
    """Lifecycle step 2: "Any updates to config.json after this step MUST NOT affect
    the container." """
    ct = created({"hostname": "before", "process": {"env": ["PATH=/bin", "WHEN=before"]}},
                 args=["sh", "-c", "echo $(hostname) $WHEN $0", "before"])
    cfg = json.loads((ct.bundle / "config.json").read_text())
    cfg["process"]["args"] = ["sh", "-c", "echo CHANGED"]
    cfg["process"]["env"] = ["PATH=/bin", "WHEN=after"]
    cfg["hostname"] = "after"
    write_json(ct.bundle / "config.json", cfg)
    runtime.ok("start", ct.id)
    runtime.wait_status(ct.id, "stopped")
    assert ct.result.read_stdout() == "before before before\n"


def test_lifecycle_environment_that_cannot_be_created_is_an_error(runtime, create_fails,
                                                                  tmp_path):
    """Lifecycle step 2: "If the runtime is unable to create the environment specified
    in the config.json, it MUST generate an error." (a bind mount whose source does not
    exist)"""
    create_fails(add_mount(destination="/mnt", type="bind", source=str(tmp_path / "absent"),
                           options=["bind"]))


def test_lifecycle_start_runs_the_user_program(runtime, created):
    """Lifecycle step 8: "The runtime MUST run the user-specified program, as specified by
    process." Start: "This operation MUST run the user-specified program as specified by
    process." """
    ct = created({"process": {"env": ["PATH=/bin:/usr/bin", "WHO=program"], "cwd": "/tmp",
                              "user": {"uid": 1000, "gid": 1001}}},
                 args=["sh", "-c", 'echo "$0 $1 $WHO $(pwd) $(id -u):$(id -g)"', "a0", "a1"])
    runtime.ok("start", ct.id)
    runtime.wait_status(ct.id, "stopped")
    assert ct.result.read_stdout() == "a0 a1 program /tmp 1000:1001\n"


def test_lifecycle_delete_destroys_the_container(runtime, created, tmp_path):
    """Lifecycle step 12: "The container MUST be destroyed by undoing the steps performed
    during create phase (step 2)." Delete: "Deleting a container MUST delete the
    resources that were created during the create step." (its processes, namespaces,
    mounts and state)"""
    ct = created(add_ns("cgroup"))
    own = ns_links("self")
    made = {v for k, v in ns_links(ct.pid).items() if own.get(k) != v}
    assert {v.split(":")[0] for v in made} >= {"net", "ipc", "uts", "mnt", "pid", "cgroup"}
    runtime.ok("exec", "--detach", ct.id, "sleep", "999")  # one more process in them
    members = ns_holders(made)
    assert ct.pid in members and len(members) >= 2, members
    runtime.ok("kill", ct.id, "KILL")
    # The exec'd process re-parented to us (a subreaper, as an engine's shim is): the
    # dying init waits until it is reaped, as the shim would do at once.
    wait_for(lambda: reap_zombie_children() or runtime.status(ct.id) == "stopped",
             "the container to stop")
    runtime.ok("delete", ct.id)
    assert runtime("state", ct.id).returncode != 0
    assert not runtime.root.is_dir() or ct.id not in os.listdir(runtime.root)
    reap_zombie_children()
    left = {p: t for p, t in members.items() if t is not None and start_time(p) == t}
    assert not left, f"processes of the container left after delete: {left}"
    ns_mounts = [m for m in host_mounts() if m.fstype == "nsfs" and m.root in made]
    assert not ns_mounts, ns_mounts
    assert not [m for m in host_mounts() if str(ct.bundle) in m.mountpoint
                or str(ct.bundle) in m.root]


# ================================================================ Errors


def test_errors_leave_the_environment_as_if_never_attempted(runtime, bundle, cid):
    """Errors: "Unless otherwise stated, generating an error MUST leave the state of the
    environment as if the operation were never attempted." (create fails late: the
    namespaces and mounts exist when the missing program is looked for; afterwards no
    process, state or mount is left, and the id is free)"""
    b = bundle(["/no/such/program"],
               add_mount(destination="/mnt/t", type="tmpfs", source="tmpfs"))
    c = cid()
    r = runtime.create(c, b)
    assert r.returncode != 0, r
    assert "/no/such/program" in r.stderr or under_runc(), r
    assert_not_created(runtime, c, b)
    reap_zombie_children()
    assert not [m for m in host_mounts() if str(b) in m.mountpoint or str(b) in m.root]
    runtime.ok("create", "--bundle", bundle(SLEEP), c)


# ================================================================ Query State


def test_state_without_id_is_an_error(runtime):
    """Query State: "This operation MUST generate an error if it is not provided the ID
    of a container." """
    r = runtime("state")
    assert r.returncode != 0, r


def test_state_of_unknown_container_is_an_error(runtime):
    """Query State: "Attempting to query a container that does not exist MUST generate an
    error." """
    r = runtime("state", "no-such-container")
    assert r.returncode != 0, r
    assert r.stdout.strip() == "", r


# ================================================================ Create


def test_create_without_id_is_an_error(runtime, bundle):
    """Create: "This operation MUST generate an error if it is not provided a path to the
    bundle and the container ID to associate with the container." (no ID)"""
    b = bundle(SLEEP)
    r = runtime("create", "--bundle", b)
    assert r.returncode != 0, r
    assert not runtime.root.is_dir() or os.listdir(runtime.root) == []


def test_create_without_bundle_is_an_error(runtime, cid, tmp_path, create_fails):
    """Create: "This operation MUST generate an error if it is not provided a path to the
    bundle and the container ID to associate with the container." (no --bundle, and the
    working directory, the default, is not a bundle)"""
    c = cid()
    r = runtime("create", c, cwd=tmp_path)
    assert r.returncode != 0, r
    assert_not_created(runtime, c)


def test_create_with_id_in_use_is_an_error(runtime, created, bundle):
    """Create: "If the ID provided is not unique across all containers within the scope
    of the runtime ... the implementation MUST generate an error and a new container MUST
    NOT be created." (the first container is left as it was)"""
    first = created()
    r = runtime.create(first.id, bundle(["sh", "-c", "echo second"]))
    assert r.returncode != 0, r
    st = runtime.state(first.id)
    assert st["status"] == "created" and st["pid"] == first.pid
    assert os.path.samefile(st["bundle"], first.bundle)
    assert alive(first.pid)
    runtime.ok("start", first.id)
    wait_for(lambda: cmdline(first.pid) == SLEEP, "the first container to start")


@pytest.mark.parametrize("bad", ["", "a/b", "..", "../escape", "x\ny", "with space",
                                 "/abs"])
def test_create_with_invalid_id_is_an_error(runtime, bundle, bad):
    """Create: "If the ID provided is ... not valid in any other way, the implementation
    MUST generate an error and a new container MUST NOT be created." """
    b = bundle(SLEEP)
    r = runtime("create", "--bundle", b, bad)
    assert r.returncode != 0, r
    assert not runtime.root.is_dir() or os.listdir(runtime.root) == []
    assert not (runtime.root.parent / "escape").exists()


def test_create_applies_every_property_but_process(runtime, created, tmp_path):
    """Create: "All of the properties configured in config.json except for process MUST
    be applied." (observed from the host before start: namespaces, hostname, domainname,
    mounts, read-only root, devices, sysctl, masked and read-only paths)"""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("host file\n")
    ct = created([
        {"hostname": "made-at-create", "domainname": "example.test",
         "linux": {"sysctl": {"kernel.shmmax": "12345678"},
                   "devices": [{"path": "/dev/fuse", "type": "c", "major": 10,
                                "minor": 229, "fileMode": 0o600, "uid": 0, "gid": 0}]}},
        add_mount(destination="/mnt/tmp", type="tmpfs", source="tmpfs",
                  options=["size=1m", "mode=750"]),
        add_mount(destination="/mnt/src", type="bind", source=str(src), options=["bind"]),
    ])
    own = ns_links("self")
    theirs = ns_links(ct.pid)
    for ns in ("net", "ipc", "uts", "mnt", "pid"):
        assert theirs[ns] != own[ns], ns
    from conf_util import nsenter

    assert nsenter(ct.pid, "hostname", ns="-u").strip() == "made-at-create"
    assert nsenter(ct.pid, "cat", "/proc/sys/kernel/domainname",
                   ns="-u").strip() == "example.test"
    assert nsenter(ct.pid, "cat", "/proc/sys/kernel/shmmax", ns="-i").strip() == "12345678"
    root = ct.root()
    assert (root / "mnt/src/f").read_text() == "host file\n"
    m = ct.mount_at("/mnt/tmp")
    assert m.fstype == "tmpfs" and "mode=750" in m.super_options.split(","), m
    assert "ro" in ct.mount_at("/").options.split(","), "root.readonly not applied"
    st = os.stat(root / "dev/fuse")
    assert os.major(st.st_rdev) == 10 and os.minor(st.st_rdev) == 229
    assert "ro" in ct.mount_at("/proc/sys").options.split(",")  # readonlyPaths
    masked = os.stat(root / "proc/timer_list")  # maskedPaths: /dev/null over files
    assert stat.S_ISCHR(masked.st_mode) and masked.st_rdev == os.makedev(1, 3), masked


@pytest.mark.parametrize("what", ["unknown filesystem type", "missing bind source",
                                  "unknown sysctl", "oomScoreAdj below the runtime's"])
def test_create_property_that_cannot_be_applied_is_an_error(runtime, create_fails, tmp_path,
                                                            what):
    """Create: "If the runtime cannot apply a property as specified in the configuration,
    it MUST generate an error and a new container MUST NOT be created." """
    edits = {
        "unknown filesystem type": add_mount(destination="/mnt", type="nosuchfs",
                                             source="none"),
        "missing bind source": add_mount(destination="/mnt", type="bind",
                                         source=str(tmp_path / "nope"), options=["rbind"]),
        "unknown sysctl": {"linux": {"sysctl": {"net.ipv4.no_such_sysctl": "1"}}},
        "oomScoreAdj below the runtime's": {"process": {"oomScoreAdj": -1000}},
    }[what]
    if what.startswith("oomScoreAdj"):
        if Path("/proc/self/oom_score_adj").read_text().strip() == "-1000":
            pytest.skip("the runtime already runs at oom_score_adj -1000")
        if "CAP_SYS_RESOURCE" in _own_caps():
            pytest.skip("with CAP_SYS_RESOURCE, oomScoreAdj -1000 can be applied")
    create_fails(edits)


def _own_caps() -> set[str]:
    from conftest import CAP_NUMBERS

    eff = int([ln for ln in open("/proc/self/status") if ln.startswith("CapEff")][0]
              .split()[1], 16)
    return {n for n, b in CAP_NUMBERS.items() if eff & (1 << b)}


def test_create_status_is_created(runtime, bundle, cid):
    """Create: "Upon successful completion of this operation the status property of this
    container MUST be created." """
    c = cid()
    runtime.ok("create", "--bundle", bundle(SLEEP), c)
    assert runtime.state(c)["status"] == "created"


# ================================================================ Start


def test_start_without_id_is_an_error(runtime):
    """Start: "This operation MUST generate an error if it is not provided the container
    ID." """
    assert runtime("start").returncode != 0


def test_start_of_unknown_container_is_an_error(runtime):
    """Start: "Attempting to start a container that does not exist MUST generate an
    error." (v1.0)"""
    assert runtime("start", "no-such-container").returncode != 0


@pytest.mark.parametrize("phase", ["running", "stopped"])
def test_start_of_a_container_that_is_not_created_has_no_effect_and_errors(runtime, created,
                                                                         phase):
    """Start: "Attempting to start a container that is not created MUST have no effect
    on the container and MUST generate an error." """
    ct = created(args=["sh", "-c", "echo started; " +
                       ("exec sleep 1000" if phase == "running" else "exit 0")])
    runtime.ok("start", ct.id)
    wait_output(ct.result, "started")
    if phase == "stopped":
        runtime.wait_status(ct.id, "stopped")
    before = runtime.state(ct.id)
    r = runtime("start", ct.id)
    assert r.returncode != 0, r
    time.sleep(0.3)
    assert runtime.state(ct.id) == before
    assert ct.result.read_stdout() == "started\n", "the program ran again"
    if phase == "running":
        assert alive(ct.pid) and cmdline(ct.pid) == SLEEP


def test_start_without_process_is_an_error(runtime, bundle, cid):
    """Start: "This operation MUST generate an error if process was not set."
    (config.md: process is "REQUIRED when start is called"; a runtime may refuse the
    bundle at create already: either way an error, and nothing runs)"""
    b = bundle(SLEEP, lambda cfg: cfg.pop("process"))
    c = cid()
    r = runtime.create(c, b)
    if r.returncode == 0:
        r = runtime("start", c)
        assert r.returncode != 0, f"start of a container without process succeeded:\n{r}"
    else:
        assert_not_created(runtime, c, b)


def test_start_status_is_running(runtime, created):
    """Start: "Upon successful completion of this operation the status property of this
    container MUST be running." """
    ct = created()
    runtime.ok("start", ct.id)
    assert runtime.state(ct.id)["status"] == "running"


# ================================================================ Kill


def test_kill_without_id_is_an_error(runtime):
    """Kill: "This operation MUST generate an error if it is not provided the container
    ID." """
    assert runtime("kill").returncode != 0


def test_kill_of_unknown_container_is_an_error(runtime):
    """Kill: "Attempting to send a signal to a container that is neither created nor
    running MUST ... generate an error." (a container that does not exist)"""
    assert runtime("kill", "no-such-container", "KILL").returncode != 0


def test_kill_of_stopped_container_has_no_effect_and_errors(runtime, created):
    """Kill: "Attempting to send a signal to a container that is neither created nor
    running MUST have no effect on the container and MUST generate an error." """
    ct = created(args=["true"])
    runtime.ok("start", ct.id)
    before = runtime.wait_status(ct.id, "stopped")
    r = runtime("kill", ct.id, "KILL")
    assert r.returncode != 0, r
    assert runtime.state(ct.id) == before
    runtime.ok("delete", ct.id)


@pytest.mark.parametrize("phase", ["created", "running"])
def test_kill_sends_the_signal_to_the_container_process(runtime, created, phase):
    """Kill: "This operation MUST send the specified signal to the container process." """
    if phase == "running":
        ct = created(args=["sh", "-c", "trap 'echo got-USR1; exit 0' USR1; echo ready; "
                                       "sleep 1000 & wait"])
        runtime.ok("start", ct.id)
        wait_output(ct.result, "ready")
        runtime.ok("kill", ct.id, "USR1")
        wait_output(ct.result, "got-USR1")
        runtime.wait_status(ct.id, "stopped")
    else:
        ct = created()
        runtime.ok("kill", ct.id, "KILL")
        runtime.wait_status(ct.id, "stopped")
        assert not alive(ct.pid)
        assert ct.result.read_stdout() == ""


# ================================================================ Delete


def test_delete_without_id_is_an_error(runtime):
    """Delete: "This operation MUST generate an error if it is not provided the container
    ID." """
    assert runtime("delete").returncode != 0


def test_delete_of_unknown_container_is_an_error(runtime):
    """Delete: "Attempting to delete a container that does not exist MUST generate an
    error." (v1.0)"""
    assert runtime("delete", "no-such-container").returncode != 0


def test_delete_of_running_container_has_no_effect_and_errors(runtime, created):
    """Delete: "Attempting to delete a container that is not stopped MUST have no effect
    on the container and MUST generate an error." (running)"""
    ct = created()
    runtime.ok("start", ct.id)
    before = runtime.state(ct.id)
    r = runtime("delete", ct.id)
    assert r.returncode != 0, r
    assert runtime.state(ct.id) == before
    assert alive(ct.pid)


@pytest.mark.xfail(strict=True, reason=(
    "deliberate deviation (README, Conformance): like runc and crun, delete without "
    "--force removes a created container, because containerd's runc shim deletes a "
    "never-started task with a plain delete"))
def test_delete_of_created_container_has_no_effect_and_errors(runtime, created):
    """Delete: "Attempting to delete a container that is not stopped MUST have no effect
    on the container and MUST generate an error." (created: neither runc nor crun honour
    this)"""
    ct = created()
    before = runtime.state(ct.id)
    r = runtime("delete", ct.id)
    assert r.returncode != 0, r
    assert runtime.state(ct.id) == before
    assert alive(ct.pid)
    runtime.ok("start", ct.id)  # still a working created container
    wait_for(lambda: cmdline(ct.pid) == SLEEP, "the container to start")


def test_delete_keeps_resources_not_created_by_the_container(runtime, created, tmp_path,
                                                            ctx):
    """Delete: "Note that resources associated with the container, but not created by
    this container, MUST NOT be deleted." (a joined network namespace, a bind-mounted host
    directory, the bundle)"""
    nsfile = tmp_path / "netns"
    nsfile.touch()
    subprocess.run(["unshare", f"--net={nsfile}", "true"], check=True, timeout=TIMEOUT)
    ctx.cleanups.append(lambda: subprocess.run(["umount", str(nsfile)], check=True))
    want_ns = ns_file_link(nsfile, "net")
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep").write_text("keep me\n")
    ct = created([add_ns("network", str(nsfile)),
                  add_mount(destination="/mnt/src", type="bind", source=str(src),
                            options=["rbind"])],
                 args=["sh", "-c", "echo from-container > /mnt/src/written"])
    assert ns_links(ct.pid)["net"] == want_ns
    config_before = (ct.bundle / "config.json").read_bytes()
    runtime.ok("start", ct.id)
    runtime.wait_status(ct.id, "stopped")
    runtime.ok("delete", ct.id)
    assert ns_file_link(nsfile, "net") == want_ns
    assert any(m.mountpoint == str(nsfile) for m in host_mounts()), "netns bind mount gone"
    assert (src / "keep").read_text() == "keep me\n"
    assert (src / "written").read_text() == "from-container\n"
    assert (ct.bundle / "config.json").read_bytes() == config_before
    assert (ct.rootfs / "bin" / "busybox").exists()


# ================================================================ Scope


def test_the_creator_can_use_every_operation(runtime, bundle, cid):
    """Scope of a Container: "the entity using a runtime to create a container MUST be
    able to use the operations defined in this specification against that same
    container." """
    c = cid()
    runtime.ok("create", "--bundle", bundle(SLEEP), c)
    runtime.ok("state", c)
    runtime.ok("start", c)
    runtime.ok("kill", c, "KILL")
    runtime.wait_status(c, "stopped")
    runtime.ok("delete", c)
    if not under_runc():
        assert runtime("state", c).returncode != 0
