"""Input that used to reach set-up as a Python error (issue 13, "Validation gaps" and
"Large messages"): each is now either done right or refused in one line naming the
field."""

from __future__ import annotations

import json

import pytest

HOOK = {"path": "/bin/true"}


def _one_line(r) -> str:
    err = r.stderr.strip()
    assert r.returncode != 0, r
    assert len(err.splitlines()) == 1 and "internal error" not in err, err
    assert "Traceback" not in err and "Errno" not in err, err
    return err


def test_hook_timeout_at_its_maximum_works(run_container):
    r = run_container(["true"], {"hooks": {"prestart": [{**HOOK, "timeout": 2147483647}]}})
    assert r.returncode == 0, r.result


def test_rlimit_python_does_not_name(sh):
    out = sh("grep 'Max file locks' /proc/self/limits",
             {"process": {"rlimits": [{"type": "RLIMIT_LOCKS", "soft": 100, "hard": 200}]}})
    assert out.split()[3:5] == ["100", "200"], out


@pytest.mark.parametrize("field,value", [("major", 4294967294), ("minor", 1 << 21)])
def test_device_numbers_beyond_dev_t(run_container, field, value):
    dev = {"path": "/dev/x", "type": "c", "major": 1, "minor": 3, field: value}
    r = run_container(["true"], {"linux": {"devices": [dev]}})
    assert f"linux.devices[0].{field}" in _one_line(r)


@pytest.mark.parametrize("value", ["1\n", "1\n0", "1\x000"])
def test_sysctl_value_with_newline_or_nul(run_container, value):
    r = run_container(["true"], {"linux": {"sysctl": {"net.ipv4.ip_forward": value}}})
    assert "linux.sysctl.net.ipv4.ip_forward" in _one_line(r)


def test_exec_additional_gids_not_a_number(runtime, bundle, cid):
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "1000"]), c)
    r = runtime("exec", "--additional-gids", "x", c, "true")
    assert "--additional-gids 'x'" in _one_line(r)
    runtime.ok("delete", "--force", c)


@pytest.mark.parametrize("interval", ["-1s", "0s", "0", "5x", "s", "1.2.3s"])
def test_events_interval_must_be_a_positive_duration(runtime, bundle, cid, interval):
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "1000"]), c)
    r = runtime("events", "--interval", interval, c)
    assert "--interval" in _one_line(r)
    runtime.ok("delete", "--force", c)


def test_events_interval_go_forms_accepted(runtime, bundle, cid):
    c = cid()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "1000"]), c)
    for interval in ("1m30s", "500ms", "2"):
        r = runtime("events", "--stats", "--interval", interval, c)
        assert r.returncode == 0, r
    runtime.ok("delete", "--force", c)


def test_json_nested_too_deeply(runtime, bundle, cid):
    b = bundle(["true"])
    depth = 100000
    text = (b / "config.json").read_text().rstrip()
    (b / "config.json").write_text(text[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}")
    r = runtime("run", "--bundle", b, cid())
    assert "nested too deeply" in _one_line(r)


def test_megabyte_of_annotations_with_every_hook(run_container):
    hooks = {k: [HOOK] for k in ("prestart", "createRuntime", "createContainer",
                                 "startContainer", "poststart", "poststop")}
    hooks["startContainer"] = [{"path": "/bin/true"}]
    r = run_container(["true"], {"annotations": {"big": "x" * (1 << 20)}, "hooks": hooks})
    assert r.returncode == 0, r.result.stderr[-500:]


def test_hook_output_in_errors_is_cut(run_container, tmp_path):
    hook = tmp_path / "loud.sh"
    hook.write_text("#!/bin/sh\nhead -c 100000 /dev/zero | tr '\\0' a >&2\necho LAST >&2\n"
                    "exit 3\n")
    hook.chmod(0o755)
    r = run_container(["true"], {"hooks": {"prestart": [{"path": str(hook)}]}})
    assert r.returncode != 0
    assert "LAST" in r.stderr and "exit status 3" in r.stderr
    assert len(r.stderr) < 6000, len(r.stderr)


def test_spec_config_still_valid(runtime, tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    runtime.ok("spec", "--bundle", d, root=False)
    json.loads((d / "config.json").read_text())


@pytest.mark.minirun_only
@pytest.mark.parametrize("section,value", [("network", [1]), ("cpu", [1]), ("memory", "x"),
                                           ("blockIO", 3), ("pids", [])])
def test_resource_section_of_the_wrong_type_is_one_line(run_container, section, value):
    # the v1 routing reads the sections before their shapes are checked: never a traceback
    r = run_container(["true"], {"linux": {"resources": {section: value}}})
    assert r.returncode != 0, r.result
    assert f"linux.resources.{section}: must be an object" in r.stderr, r.result
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr, r.result
