"""The learner's minirun: `run BUNDLE`, errors that name the cause, `doctor`.

minirun-specific behaviour (runc has none of it), hence the minirun_only marks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.minirun_only


def _file(b: Path, name: str, data: bytes, mode: int = 0o755) -> None:
    p = b / "rootfs" / name.lstrip("/")
    p.write_bytes(data)
    os.chmod(p, mode)


def _elf(machine: int) -> bytes:
    h = bytearray(64)
    h[0:4] = b"\x7fELF"
    h[4], h[5], h[6] = 2, 1, 1
    h[16:18] = (2).to_bytes(2, "little")  # ET_EXEC
    h[18:20] = machine.to_bytes(2, "little")
    return bytes(h)


def _dynamic_host_binary() -> Path:
    for cand in ("/usr/bin/ls", "/bin/ls", "/usr/bin/true"):
        p = Path(cand)
        if p.is_file() and b"ld-linux" in p.read_bytes()[:4096]:
            return p
    pytest.skip("no dynamically linked host binary to copy")


CASES = {
    "crlf": ("/hello.sh", b"#!/bin/sh\r\necho hi\r\n", 0o755,
             ['"#!/bin/sh\\r"', "carriage return"]),
    "missing-interp": ("/py", b"#!/usr/bin/python3\nprint(1)\n", 0o755,
                       ["/usr/bin/python3", "does not exist"]),
    "no-exec-bit": ("/script", b"#!/bin/sh\necho hi\n", 0o644,
                    ["permission denied", "no execute permission", "chmod +x"]),
    "other-arch": ("/arm", _elf(183), 0o755, ["aarch64", "architecture"]),
    "not-executable": ("/plain", b"echo hi\n", 0o755,
                       ["neither an ELF binary nor a script", "#! line"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_exec_failure_names_its_cause(run_container, bundle, case):
    name, data, mode, wants = CASES[case]
    b = bundle([name])
    _file(b, name, data, mode)
    r = run_container([name], bundle_dir=b)
    assert r.returncode != 0, r.result
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "Errno" not in err and "Traceback" not in err, err
    for want in wants:
        assert want in err, err


def test_missing_elf_interpreter_is_named(run_container, bundle):
    host = _dynamic_host_binary()
    b = bundle(["/dyn"])
    shutil.copy(host, b / "rootfs" / "dyn")
    r = run_container(["/dyn"], bundle_dir=b)
    assert r.returncode != 0, r.result
    assert "ELF interpreter /lib64/ld-linux-x86-64.so.2 is missing" in r.stderr or (
        "ELF interpreter" in r.stderr and "is missing" in r.stderr), r.stderr


def test_exec_command_failure_names_its_cause(runtime, bundle, cid):
    b = bundle(["sleep", "1000"])
    _file(b, "/hello.sh", b"#!/bin/sh\r\necho hi\r\n")
    c = cid()
    runtime.ok("run", "-d", "--bundle", b, c)
    r = runtime("exec", c, "/hello.sh")
    assert r.returncode != 0
    assert "carriage return" in r.stderr and "Errno" not in r.stderr, r
    runtime.ok("delete", "--force", c)


def test_noexec_mount_is_named(run_container, bundle, tmp_path):
    src = tmp_path / "noexec-src"
    src.mkdir()
    (src / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(src / "tool", 0o755)
    edits = {"mounts": [*json.loads(json.dumps(_default_mounts())),
                        {"destination": "/mnt", "type": "bind", "source": str(src),
                         "options": ["bind", "noexec"]}]}
    r = run_container(["/mnt/tool"], edits)
    assert r.returncode != 0, r.result
    assert "mounted noexec" in r.stderr and "Errno" not in r.stderr, r.stderr


def _default_mounts() -> list[dict]:
    from conftest import default_config

    return default_config(["sh"])["mounts"]


# ---------------------------------------------------------------- run BUNDLE


def test_run_bundle_path(runtime, bundle):
    b = bundle(["sh", "-c", "echo hello from $(hostname); exit 3"], name="mybundle")
    r = runtime("run", f"{b.name}/", cwd=b.parent)
    assert r.returncode == 3, r
    assert "hello from" in r.stdout
    assert os.listdir(runtime.root) == []  # run removed its container, as with an id


def test_run_in_bundle_directory_without_id(runtime, bundle):
    b = bundle(["sh", "-c", "echo inside"], name="here")
    r = runtime("run", cwd=b)
    assert r.returncode == 0, r
    assert "inside" in r.stdout


def test_run_bundle_detached_prints_readable_id(runtime, bundle):
    b = bundle(["sleep", "1000"], name="web.app")
    r = runtime("run", "-d", str(b) + "/")
    assert r.returncode == 0, r
    cid = r.stderr.strip().rsplit(" ", 1)[-1]
    assert cid.startswith("web.app-") and len(cid) == len("web.app-") + 6, r.stderr
    runtime.ctx.ids.append(cid)  # the leak guard deletes it
    assert runtime.state(cid)["status"] == "running"
    runtime.ok("delete", "--force", cid)


def test_run_bundle_and_bundle_flag_conflict(runtime, bundle):
    b = bundle(["true"])
    r = runtime("run", "--bundle", b, str(b) + "/")
    assert r.returncode != 0
    assert "either with --bundle or as the argument" in r.stderr, r


def test_run_without_id_outside_a_bundle_is_refused(runtime, tmp_path):
    r = runtime("run", cwd=tmp_path)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and r.stderr.strip(), r


# ---------------------------------------------------------------- doctor


def _doctor(runtime, *args):
    r = runtime("doctor", *args)
    assert "Traceback" not in r.stderr, r
    return r


def test_doctor_host_checks(runtime):
    r = _doctor(runtime)
    assert r.returncode == 0, r
    for what in ("kernel", "cgroups:", "user namespaces", "seccomp", "LSMs", "nftables",
                 "syscalls: pidfd_open clone3 openat2 mount_setattr", "--root"):
        assert what in r.stdout, r.stdout
    assert "nothing in the way" in r.stdout


def test_doctor_good_bundle(runtime, bundle):
    b = bundle(["sh", "-c", "true"])
    r = _doctor(runtime, b)
    assert r.returncode == 0, r
    assert 'ok    process.args[0] "sh": /' in r.stdout, r.stdout
    # what doctor says works does work
    assert runtime("run", "--bundle", b, runtime.ctx.new_id()).returncode == 0


def _fails_with(runtime, b, *wants):
    r = _doctor(runtime, b)
    assert r.returncode == 1, r
    fails = [ln for ln in r.stdout.splitlines() if ln.lstrip().startswith("FAIL")]
    assert fails, r.stdout
    for want in wants:
        assert any(want in ln for ln in fails), r.stdout
    return r


def test_doctor_crlf_script(runtime, bundle):
    b = bundle(["/hello.sh"])
    _file(b, "/hello.sh", b"#!/bin/sh\r\necho hi\r\n")
    _fails_with(runtime, b, 'process.args[0] "/hello.sh"', "carriage return")


def test_doctor_missing_executable(runtime, bundle):
    _fails_with(runtime, bundle(["no-such-tool"]), "not found in the rootfs", "PATH=")


def test_doctor_not_executable(runtime, bundle):
    b = bundle(["/tool"])
    _file(b, "/tool", b"#!/bin/sh\n", 0o644)
    _fails_with(runtime, b, "no execute permission")


def test_doctor_missing_elf_interpreter(runtime, bundle):
    b = bundle(["/dyn"])
    shutil.copy(_dynamic_host_binary(), b / "rootfs" / "dyn")
    _fails_with(runtime, b, "ELF interpreter", "is missing")


def test_doctor_other_architecture(runtime, bundle):
    b = bundle(["/arm"])
    _file(b, "/arm", _elf(183))
    _fails_with(runtime, b, "aarch64")


def test_doctor_missing_mount_source(runtime, bundle, tmp_path):
    edits = {"mounts": [*_default_mounts(), {"destination": "/data", "type": "bind",
                                             "source": str(tmp_path / "nope"),
                                             "options": ["rbind"]}]}
    _fails_with(runtime, bundle(["true"], edits), "mounts[", "does not exist")


def test_doctor_invalid_config(runtime, bundle):
    _fails_with(runtime, bundle(["true"], {"process": {"args": []}}), "process.args")


def test_doctor_user_without_passwd_entry_warns(runtime, bundle):
    b = bundle(["true"], {"process": {"user": {"uid": 4242, "gid": 4242}}})
    r = _doctor(runtime, b)
    assert r.returncode == 0, r
    assert "uid 4242" in r.stdout and "HOME will be /" in r.stdout, r.stdout


def test_doctor_symlinked_executable_stays_in_rootfs(runtime, bundle):
    # A link in the image points at an absolute path: doctor resolves it inside the
    # rootfs (as the container will), never on the host.
    b = bundle(["/app"])
    os.symlink("/usr/bin/python3", b / "rootfs" / "app")
    _fails_with(runtime, b, 'process.args[0] "/app"')


# ---------------------------------------------------------------- explain

PROBE = ("echo pid=$$; hostname; id; pwd; grep -E '^(Cap|NoNewPrivs)' /proc/self/status; "
         "cat /proc/self/limits; env | sort; awk '{print $5, $6}' /proc/self/mountinfo | sort; "
         "touch /probe-ro 2>/dev/null && echo root rw || echo root ro; umask; "
         "ls -la /dev | awk '{print $1, $3, $4, $NF}' | sort")


def _sees(text: str) -> list[str]:
    """What the process saw, with each mount's options cut to ro/rw (a masked file is a
    bind of some /dev/null: its other flags are those of wherever that node lives)."""
    out = []
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) == 2 and parts[0].startswith("/") and "," in parts[1]:
            line = f"{parts[0]} {parts[1].split(',')[0]}"
        out.append(line)
    return out


def _explain_and_run(runtime, b: Path, tmp_path: Path) -> tuple[str, str]:
    r = runtime("explain", b)
    assert r.returncode == 0, r
    script = tmp_path / f"{b.name}-explain.sh"
    script.write_text(r.stdout)
    by_hand = subprocess.run(["sh", str(script)], capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
    assert by_hand.returncode == 0, by_hand.stderr + r.stdout
    ran = runtime("run", "--bundle", b, runtime.ctx.new_id())
    assert ran.returncode == 0, ran
    return by_hand.stdout, ran.stdout


def test_explain_default_bundle_sees_the_same(runtime, bundle, tmp_path):
    b = bundle(["sh", "-c", PROBE], {"root": {"readonly": True}}, name="plain")
    by_hand, ran = _explain_and_run(runtime, b, tmp_path)
    assert "pid=1" in by_hand and "root ro" in by_hand
    assert _sees(by_hand) == _sees(ran)


def test_explain_custom_bundle_sees_the_same(runtime, bundle, tmp_path):
    src = tmp_path / "shared"
    src.mkdir()
    caps = ["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"]

    def edits(cfg):
        cfg["hostname"] = "lab-host"
        p = cfg["process"]
        p["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 0o27}
        p["cwd"] = "/work/here"
        p["env"] = [*p["env"], "GREETING=hello world", "EMPTY="]
        p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
                        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
        p["noNewPrivileges"] = False
        p["capabilities"] = {"bounding": caps, "permitted": caps, "effective": caps,
                             "inheritable": caps[:2], "ambient": caps[:1]}
        cfg["mounts"].append({"destination": "/data", "type": "bind", "source": str(src),
                              "options": ["rbind", "ro"]})
        cfg["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                              "options": ["size=1m", "mode=1777"]})
        cfg["root"]["readonly"] = False
        cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}

    b = bundle(["sh", "-c", PROBE + "; cat /proc/sys/net/ipv4/ip_forward"], edits,
               name="custom")
    by_hand, ran = _explain_and_run(runtime, b, tmp_path)
    assert "uid=1000" in by_hand and "/work/here" in by_hand and "lab-host" in by_hand
    assert re.search(r"groups=10\b.*20", by_hand), by_hand
    assert by_hand.rstrip().endswith("1")  # the sysctl, in the new network namespace
    assert len(_sees(by_hand)) > 40
    assert _sees(by_hand) == _sees(ran)


def test_explain_names_config_fields_and_what_it_cannot_do(runtime, bundle):
    def edits(cfg):
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
        cfg["linux"]["resources"]["pids"] = {"limit": 10}

    r = runtime("explain", bundle(["true"], edits))
    assert r.returncode == 0, r
    for field in ("# mounts[0]: /proc (proc)", "linux.namespaces: [0] pid new",
                  "linux.maskedPaths[0]", "linux.readonlyPaths[0]", "process.rlimits",
                  "process.capabilities", "linux.seccomp: minirun compiles the profile",
                  "linux.resources.pids", "linux.resources.devices"):
        assert field in r.stdout, field


def test_explain_refuses_a_bundle_without_mount_namespace(runtime, bundle):
    def edits(cfg):
        cfg["linux"]["namespaces"] = [ns for ns in cfg["linux"]["namespaces"]
                                      if ns["type"] != "mount"]

    r = runtime("explain", bundle(["true"], edits))
    assert r.returncode != 0 and "mount namespace" in r.stderr, r


# ---------------------------------------------------------------- --trace


def _load_trace(path: Path) -> list[dict]:
    doc = json.loads(path.read_text())
    events = doc["traceEvents"]
    for e in events:
        assert {"name", "ph", "pid", "tid"} <= e.keys(), e
        if e["ph"] == "X":
            assert isinstance(e["ts"], (int, float)) and e["dur"] >= 0, e
    return events


def _names_on(events: list[dict], track: int) -> list[str]:
    return [e["name"] for e in events if e["pid"] == track and e["ph"] in ("X", "i")]


def test_trace_run_has_three_tracks_and_every_step(runtime, bundle, cid, tmp_path):
    out = tmp_path / "run.trace.json"
    r = runtime("run", "--trace", out, "--bundle", bundle(["true"]), cid())
    assert r.returncode == 0, r
    events = _load_trace(out)
    tracks = {e["args"]["name"] for e in events if e["ph"] == "M"}
    assert tracks == {"minirun (runtime)", "set-up process", "container init"}
    runtime_names = _names_on(events, 1)
    for want in ("load and validate config.json", "fork", "message: ready", "start",
                 "the container's process runs", "delete", "minirun run"):
        assert want in runtime_names, runtime_names
    assert any(n.startswith("unshare") for n in _names_on(events, 2))
    init = _names_on(events, 3)
    for prefix in ("mount /proc (mounts[0])", "pivot_root", "capabilities", "cgroup join"):
        assert any(n.startswith(prefix) for n in init), init
    # the init's steps happen inside the runtime's set-up phase, on one clock
    setup = next(e for e in events if e["name"].startswith("set-up processes"))
    pivot = next(e for e in events if e["name"].startswith("pivot_root"))
    assert setup["ts"] <= pivot["ts"] <= setup["ts"] + setup["dur"]


def test_trace_exec(runtime, bundle, cid, tmp_path):
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "1000"]), c)
    out = tmp_path / "exec.trace.json"
    r = runtime("exec", "--trace", out, c, "true")
    assert r.returncode == 0, r
    events = _load_trace(out)
    assert any(n.startswith("setns") or n.startswith("join") for n in _names_on(events, 2)), \
        _names_on(events, 2)
    assert "minirun exec" in _names_on(events, 1)
    runtime.ok("delete", "--force", c)


def test_trace_written_when_create_fails(runtime, bundle, cid, tmp_path):
    out = tmp_path / "fail.trace.json"
    r = runtime("create", "--trace", out, "--bundle", bundle(["/no/such/binary"]), cid())
    assert r.returncode != 0
    events = _load_trace(out)
    top = next(e for e in events if e["name"] == "minirun create")
    assert top["args"]["status"] == "error"
    assert any("error" in e.get("args", {}) for e in events if e["pid"] == 3), events


def test_trace_only_for_create_run_exec(runtime, tmp_path):
    r = runtime("state", "--trace", tmp_path / "x.json", "nope")
    assert r.returncode != 0
    assert "unknown flag --trace" in r.stderr or "--trace is for" in r.stderr, r


# ---------------------------------------------------------------- help and completion


@pytest.mark.parametrize("cmd", ["create", "run", "exec", "kill", "update", "doctor"])
def test_command_help(runtime, cmd):
    a = runtime(cmd, "--help", root=False)
    b = runtime("help", cmd, root=False)
    assert a.returncode == 0 and b.returncode == 0, (a, b)
    assert a.stdout == b.stdout
    assert a.stdout.startswith(f"usage: minirun {cmd}")
    assert "example:" in a.stdout


def test_every_flag_has_a_sentence(runtime):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "minirun_commands_table", Path(__file__).resolve().parents[1] / "minirun" / "commands.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    for c in table.COMMAND_LIST:
        text = runtime("help", c.name, root=False).stdout
        for f in c.flags:
            assert f.help and f.names[0] in text, (c.name, f.names)


def test_readme_command_table_is_generated(runtime):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = runtime("help", "--markdown", root=False).stdout.strip()
    assert table in readme, ("README's command table differs from `minirun help --markdown`: "
                             "run tests/tools/readme_table.py")


def test_overview_stays_the_overview(runtime):
    r = runtime("--help", root=False)
    assert r.returncode == 0 and "commands:" in r.stdout and "global flags:" in r.stdout


def test_bash_completion(runtime, tmp_path):
    r = runtime("completion", "bash", root=False)
    assert r.returncode == 0
    script = tmp_path / "complete.sh"
    script.write_text(r.stdout + '\nCOMP_WORDS=(minirun exec --pr); COMP_CWORD=2; _minirun; '
                      'echo "${COMPREPLY[@]}"\nCOMP_WORDS=(minirun ru); COMP_CWORD=1; '
                      '_minirun; echo "${COMPREPLY[@]}"\n')
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first.split() == ["--process", "--preserve-fds", "--process-label"]
    assert second.split() == ["run"]


def test_help_of_unknown_command(runtime):
    r = runtime("help", "bogus", root=False)
    assert r.returncode != 0 and "no command 'bogus'" in r.stderr


# ---------------------------------------------------------------- mount and hook errors


def test_mount_error_names_the_cause(run_container):
    r = run_container(["true"], {"mounts": [*_default_mounts(), {
        "destination": "/x", "type": "nosuchfs", "source": "none"}]})
    assert r.returncode != 0
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Errno" not in err, err
    assert "mounts[7]" in err and "no 'nosuchfs' filesystem" in err, err


def test_mount_option_error_names_the_option(run_container):
    r = run_container(["true"], {"mounts": [*_default_mounts(), {
        "destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["bogus=1"]}]})
    assert r.returncode != 0
    assert "refused an option in 'bogus=1'" in r.stderr, r.stderr


def test_hook_that_cannot_run_says_why(run_container, tmp_path):
    hook = tmp_path / "hook.sh"
    hook.write_bytes(b"#!/bin/sh\r\nexit 0\r\n")
    hook.chmod(0o755)
    r = run_container(["true"], {"hooks": {"prestart": [{"path": str(hook)}]}})
    assert r.returncode != 0
    assert "carriage return" in r.stderr and "Errno" not in r.stderr, r.stderr


def test_explain_read_only_dev_sees_the_same(runtime, bundle, tmp_path):
    """`ro` on /dev with /dev/pts below it: the script applies it after every mount, as
    minirun does (and the default devices are still made)."""
    def edits(cfg):
        for m in cfg["mounts"]:
            if m["destination"] == "/dev":
                m["options"] = [*m["options"], "ro"]
        cfg["process"]["args"] = ["sh", "-c", PROBE]

    b = bundle(None, edits, name="rodev")
    by_hand, ran = _explain_and_run(runtime, b, tmp_path)
    assert "/dev ro" in by_hand
    assert _sees(by_hand) == _sees(ran)
