"""Config parsing and validation, without root and without containers."""

import copy
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "tools"))

from mkbundle import default_config  # noqa: E402

from minirun import cli, config  # noqa: E402
from minirun.errors import ConfigError, MinirunError  # noqa: E402
from minirun.spec import default_spec  # noqa: E402


def base() -> dict:
    cfg = default_spec()
    cfg["process"]["terminal"] = False
    return cfg


def error_of(cfg: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.validate(cfg)
    return info.value


def test_default_spec_is_valid_and_matches_runc():
    spec = default_spec()
    expected = default_config(["sh"])
    expected["process"]["terminal"] = True
    assert spec == expected
    config.validate(base())


def test_load_missing_config(tmp_path):
    with pytest.raises(ConfigError, match="config.json: no such file"):
        config.load(str(tmp_path))


def test_load_invalid_json_reports_line_and_column(tmp_path):
    (tmp_path / "config.json").write_text('{\n  "ociVersion": "1.0.2",\n  oops\n}')
    with pytest.raises(ConfigError, match=r"line 3 column 3"):
        config.load(str(tmp_path))


def test_load_valid(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(base()))
    assert config.load(str(tmp_path))["process"]["args"] == ["sh"]


@pytest.mark.parametrize("edit, path, why", [
    (lambda c: c["process"].update(args="sh"), "process.args", "expected an array"),
    (lambda c: c["process"].update(args=[]), "process.args", "must not be empty"),
    (lambda c: c["process"].update(args=[""]), "process.args[0]", "must not be empty"),
    (lambda c: c["process"].update(args=["sh", 3]), "process.args[1]", "expected a string"),
    (lambda c: c["process"].update(cwd="relative"), "process.cwd", "absolute"),
    (lambda c: c["process"].update(env=["NOEQUALS"]), "process.env[0]", "KEY=value"),
    (lambda c: c["process"]["user"].update(uid=-1), "process.user.uid", "out of range"),
    (lambda c: c["process"]["user"].update(uid="0"), "process.user.uid", "expected an integer"),
    (lambda c: c["process"]["user"].update(uid=True), "process.user.uid", "got boolean"),
    (lambda c: c["process"]["capabilities"]["bounding"].append("CAP_FLY"),
     "process.capabilities.bounding[3]", "unknown capability 'CAP_FLY'"),
    (lambda c: c["process"]["rlimits"].append({"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}),
     "process.rlimits[1].type", "unknown rlimit"),
    (lambda c: c["process"]["rlimits"][0].update(soft=2048),
     "process.rlimits[0]", "soft limit 2048 is above hard limit 1024"),
    (lambda c: c["process"].update(oomScoreAdj=5000), "process.oomScoreAdj", "out of range"),
    (lambda c: c["process"].update(consoleSize={"height": -1}), "process.consoleSize.height",
     "out of range"),
    (lambda c: c.pop("process"), "process", "missing"),
    (lambda c: c["root"].update(path=5), "root.path", "expected a string"),
    (lambda c: c.pop("root"), "root", "expected an object, got null"),
    (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}),
     "linux.namespaces[5].type", "unknown namespace type 'bogus'"),
    (lambda c: c["linux"]["namespaces"].append({"type": "pid"}),
     "linux.namespaces[5].type", "listed twice"),
    (lambda c: c["linux"]["namespaces"].append({"type": "user", "path": "rel"}),
     "linux.namespaces[5].path", "absolute"),
    (lambda c: c["linux"].update(namespaces=[{"type": "pid"}]),
     "linux.namespaces", "mount namespace is required"),
    (lambda c: c["linux"]["namespaces"].append({"type": "user"}),
     "linux.uidMappings", "needs uidMappings"),
    (lambda c: c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1, "size": 1}],
                                 gidMappings=[]),
     "linux.uidMappings", "need a new user namespace"),
    (lambda c: c["linux"].update(timeOffsets={"monotonic": {"secs": 1}}),
     "linux.timeOffsets", "need a new time namespace"),
    (lambda c: c["linux"].update(timeOffsets={"realtime": {"secs": 1}}),
     "linux.timeOffsets.realtime", "only monotonic and boottime"),
    (lambda c: c["linux"]["resources"]["devices"][0].update(access="rwx"),
     "linux.resources.devices[0].access", "only r, w and m"),
    (lambda c: c["linux"].update(sysctl={"kernel.panic": "1"}),
     "linux.sysctl.kernel.panic", "not a namespaced sysctl"),
    (lambda c: c["linux"].update(sysctl={"net.ipv4.ip_forward": 1}),
     "linux.sysctl.net.ipv4.ip_forward", "expected a string"),
    (lambda c: c["linux"].update(devices=[{"path": "/dev/x", "type": "q"}]),
     "linux.devices[0].type", "unknown device type"),
    (lambda c: c["linux"].update(rootfsPropagation="sideways"),
     "linux.rootfsPropagation", "unknown propagation"),
    (lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_BOGUS"}),
     "linux.seccomp.defaultAction", "SCMP_ACT_BOGUS"),
    (lambda c: c["linux"]["resources"].update(devices="all"),
     "linux.resources.devices", "expected an array"),
    (lambda c: c["mounts"].append({"destination": "/x", "type": "bind"}),
     "mounts[7].source", "needs a source"),
    (lambda c: c["mounts"][0].update(options="ro"), "mounts[0].options", "expected an array"),
    (lambda c: c.update(hooks={"prestart": [{"path": "relative"}]}), "hooks.prestart[0].path",
     "absolute"),
    (lambda c: c.update(hooks={"poststop": [{"path": "/bin/true", "timeout": 0}]}),
     "hooks.poststop[0].timeout", "out of range"),
    (lambda c: c["linux"].update(namespaces=[{"type": "mount"}]),
     "hostname", "uts namespace"),
])
def test_validation_errors_name_the_field(edit, path, why):
    cfg = base()
    edit(cfg)
    err = error_of(cfg)
    assert err.path == path, str(err)
    assert why in str(err)
    assert "\n" not in str(err)


def test_accepted_optional_features():
    cfg = base()
    cfg["linux"]["namespaces"] += [{"type": "user"}, {"type": "time"}, {"type": "cgroup"}]
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["timeOffsets"] = {"monotonic": {"secs": 3600, "nanosecs": 0}}
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "100000"}
    cfg["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    cfg["mounts"].append({"destination": "/data", "type": "bind", "source": "/tmp",
                          "options": ["rbind", "ro", "rprivate", "rnosuid"]})
    cfg["annotations"] = {"org.example": "yes"}
    config.validate(copy.deepcopy(cfg))


@pytest.mark.parametrize("cid", ["../x", "a/b", ".", "..", "", "sp ace", "x\n"])
def test_invalid_ids(cid):
    with pytest.raises(MinirunError, match="invalid container id"):
        config.check_id(cid)


@pytest.mark.parametrize("cid", ["a", "abc-123_x.y+z", "0" * 64])
def test_valid_ids(cid):
    config.check_id(cid)


def test_cli_flags_any_order_and_forms():
    cmd, opts, args = cli.parse(["create", "--bundle=/b", "x", "--root", "/r", "--debug"])
    assert (cmd, args) == ("create", ["x"])
    assert opts == {"bundle": "/b", "root": "/r", "debug": True}
    cmd, opts, args = cli.parse(["--root=/r", "kill", "--all", "x", "9"])
    assert (cmd, opts, args) == ("kill", {"root": "/r", "all": True}, ["x", "9"])


@pytest.mark.parametrize("argv, why", [
    (["bogus"], "unknown command"),
    (["create", "--frobnicate", "x"], "unknown flag --frobnicate"),
    (["create", "x", "--bundle"], "needs a value"),
])
def test_cli_usage_errors(argv, why):
    with pytest.raises(cli.UsageError, match=why):
        cli.parse(argv)


@pytest.mark.parametrize("text, num", [("TERM", 15), ("SIGTERM", 15), ("15", 15),
                                       ("kill", 9), ("SIGUSR1", 10)])
def test_parse_signal(text, num):
    assert cli.parse_signal(text) == num


@pytest.mark.parametrize("text", ["SIGFOO", "99", "NSIG"])
def test_parse_signal_rejects(text):
    with pytest.raises(cli.UsageError):
        cli.parse_signal(text)


def test_features_come_from_the_code():
    from minirun.features import features

    f = features()
    assert "rbind" in f["mountOptions"] and "rro" in f["mountOptions"]
    assert set(f["linux"]["namespaces"]) == set(config.NAMESPACE_TYPES)
    assert "CAP_CHECKPOINT_RESTORE" in f["linux"]["capabilities"]
