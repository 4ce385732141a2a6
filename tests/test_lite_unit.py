"""minirun.lite (the stdlib stand-ins of the run/exec path) behaves as the stdlib does,
and the hand-written checks that replaced regular expressions accept what they did."""

import collections
import json
import os
import re
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirun import commands, warmup
from minirun.cli import _bundle_run_id
from minirun.config import is_semver
from minirun.lite import json as lite_json
from minirun.lite import signal as lite_signal
from minirun.lite import socket as lite_socket
from minirun.lite.record import record

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(JSON, st.sampled_from([None, (",", ":"), (", ", ": ")]))
def test_json_round_trips_as_the_stdlib(value, separators):
    text = json.dumps(value, separators=separators)
    assert lite_json.dumps(value, separators=separators) == text
    assert lite_json.loads(text) == json.loads(text)
    assert lite_json.loads(f" \n{text}\t ".encode()) == value


@pytest.mark.parametrize("text", ['{"a": }', '{"a": 1} x', "", "   ", "[1,", '"\\x"', "nul",
                                  b"\xff\xfe{", "\ufeff{}", "[NaN, Infinity]"])
def test_json_errors_and_edges_as_the_stdlib(text):
    try:
        want = ("ok", json.loads(text))
    except ValueError as e:  # JSONDecodeError, or UnicodeDecodeError for bad bytes
        want = ("error", type(e), str(e))
    try:
        got = ("ok", lite_json.loads(text))
    except lite_json.JSONDecodeError as e:  # the stdlib's own class
        got = ("error", type(e), str(e))
    except ValueError as e:
        got = ("error", type(e), str(e))
    assert repr(got) == repr(want)


def test_json_options_and_bad_objects_go_to_the_stdlib():
    value = {"b": [1, 2], "a": {"c": None}}
    assert lite_json.dumps(value, indent=2, sort_keys=True) == json.dumps(value, indent=2,
                                                                          sort_keys=True)
    with pytest.raises(TypeError, match="not JSON serializable"):
        lite_json.dumps({"x": object()})


def test_socket_pair_passes_fds_and_accepts():
    a, b = lite_socket.socketpair(lite_socket.AF_UNIX, lite_socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    try:
        lite_socket.send_fds(a, [b"x"], [r, w])
        data, fds, _, _ = socket.recv_fds(b, 10, 4)  # the stdlib reads what lite sent
        assert data == b"x" and len(fds) == 2
        for fd in fds:
            os.close(fd)
        socket.send_fds(b, [b"y"], [w])
        data, fds, _, _ = lite_socket.recv_fds(a, 10, 4)
        assert data == b"y" and len(fds) == 1
        os.write(fds[0], b"!")
        assert os.read(r, 1) == b"!"
        os.close(fds[0])
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        b.close()


def test_socket_listener_accepts_with_context(tmp_path):
    path = str(tmp_path / "s")
    with lite_socket.socket(lite_socket.AF_UNIX, lite_socket.SOCK_STREAM) as srv:
        srv.bind(path)
        srv.listen(1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as cli:
            cli.connect(path)
            conn, _ = srv.accept()
            with conn:
                cli.sendall(b"hi")
                assert conn.recv(2) == b"hi"
                assert conn.gettimeout() is None
    assert srv.fileno() == -1


def test_signal_names_and_fallback():
    import signal

    assert lite_signal.SIGKILL == signal.SIGKILL
    assert lite_signal.Signals is signal.Signals  # not in _signal: the real module's


def test_record_is_a_namedtuple():
    real = collections.namedtuple("R", "a b c", defaults=(3,))
    lite = record("R", "a b c", defaults=(3,))
    for args, kwargs in (((1, 2), {}), ((1,), {"b": 2}), ((), {"a": 1, "b": 2, "c": 4})):
        x, y = real(*args, **kwargs), lite(*args, **kwargs)
        assert tuple(x) == tuple(y) and repr(x) == repr(y) and hash(x) == hash(y)
        assert (x.a, x.b, x.c) == (y.a, y.b, y.c)
        assert tuple(x._replace(b=9)) == tuple(y._replace(b=9))
    for args, kwargs in (((), {}), ((1, 2, 3, 4), {}), ((1,), {"a": 2}), ((1, 2), {"z": 1})):
        with pytest.raises(TypeError):
            real(*args, **kwargs)
        with pytest.raises(TypeError):
            lite(*args, **kwargs)


SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?")


@pytest.mark.parametrize("version", ["1.0.2-dev", "1.0.0", "0.0.0", "10.20.30+build.1",
                                     "1.0.0-rc.1+x-y", "1.0.0-a-b", "01.0.0", "1.0", "1.0.0-",
                                     "1.0.0+", "1.0.0-a..b", "1.0.0-é", "v1.0.0", "1.0.0.0",
                                     "1.٣.0", "", "1.0.0-+x", "1.0.0 "])
def test_semver_check_matches_the_old_expression(version):
    assert is_semver(version) == bool(SEMVER.fullmatch(version))


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789.-+abZ_é", max_size=14))
def test_semver_check_matches_the_old_expression_anywhere(version):
    assert is_semver(version) == bool(SEMVER.fullmatch(version))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab1_.+-/ é!~", min_size=1, max_size=20))
def test_bundle_run_id_names_as_before(name):
    path = f"/tmp/{name}"
    base = os.path.basename(os.path.abspath(path))
    want = re.sub(r"[^A-Za-z0-9_.+-]+", "-", base).strip(".-")[:48] or "bundle"
    cid = _bundle_run_id({"bundle": path, "detach": False})
    assert cid.rsplit("-", 1)[0] == want
    assert re.fullmatch(r"[0-9a-f]{6}", cid.rsplit("-", 1)[1])


def test_warmup_knows_the_value_taking_global_flags():
    value_flags = {n for f in commands.GLOBAL if f.kind == commands.VALUE for n in f.names}
    assert set(warmup.VALUE_FLAGS) == value_flags


@pytest.mark.parametrize(("argv", "command"), [
    (["run", "x"], "run"), (["--root", "run", "delete", "run"], "delete"),
    (["--debug", "exec", "c", "sh"], "exec"), (["--log=f", "create", "c"], "create"),
    (["--log-format", "json", "state", "run"], "state"), ([], "")])
def test_warmup_reads_the_command_word(argv, command):
    assert warmup.command_of(argv) == command


@pytest.mark.parametrize(("argv", "bridge"), [
    (["run", "--network", "bridge", "c"], True), (["create", "--network=bridge", "c"], True),
    (["--root", "/r", "run", "-p", "80:80", "c"], True), (["run", "-p80:80", "c"], True),
    (["run", "--publish=1:2", "c"], True), (["create", "--subnet", "10.9.0.0/24", "c"], True),
    (["run", "--network", "none", "c"], False), (["run", "--network", "/run/netns/x"], False),
    (["run", "c"], False), (["exec", "--network", "bridge", "c"], False),
    (["--root", "-p", "state", "c"], False), (["run", "--network"], False),
    (["run", "--pid-file", "p", "c"], False)])
def test_warmup_tells_a_bridge_command_line(argv, bridge, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert warmup.asks_for_bridge(argv) is bridge
