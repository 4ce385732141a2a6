"""The shim's ttrpc (minirun/shim/ttrpc.py) on a socketpair / a real unix socket: framing
across partial reads, oversized and malformed frames refused without killing the
server, concurrent requests answered in any order, gRPC status codes."""

from __future__ import annotations

import socket
import threading
import time

import pytest

pytest.importorskip("google.protobuf")

from minirun.shim import ttrpc  # noqa: E402
from minirun.shim.proto import ttrpc_pb2  # noqa: E402


def _server(tmp_path, handlers):
    path = str(tmp_path / "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    errors: list[str] = []
    srv = ttrpc.Server(handlers, on_error=errors.append)
    threading.Thread(target=srv.serve, args=(listener,), daemon=True).start()
    return srv, path, errors


def _request(stream: int, method: str, payload: bytes = b"") -> bytes:
    req = ttrpc_pb2.Request(service="t.S", method=method, payload=payload)
    return ttrpc.frame(stream, ttrpc.REQUEST, req.SerializeToString())


def _response(sock) -> tuple[int, ttrpc_pb2.Response]:
    stream, mtype, data = ttrpc.read_frame(sock)
    assert mtype == ttrpc.RESPONSE
    return stream, ttrpc_pb2.Response.FromString(data)


def test_frame_read_across_partial_reads():
    a, b = socket.socketpair()
    data = ttrpc.frame(7, ttrpc.REQUEST, b"x" * 1000)

    def dribble():
        for i in range(0, len(data), 3):
            a.sendall(data[i:i + 3])
            time.sleep(0.0005)

    t = threading.Thread(target=dribble)
    t.start()
    assert ttrpc.read_frame(b) == (7, ttrpc.REQUEST, b"x" * 1000)
    t.join()
    a.close()
    assert ttrpc.read_frame(b) is None  # a clean EOF between frames


def test_eof_inside_a_frame_is_an_error():
    a, b = socket.socketpair()
    a.sendall(ttrpc.frame(1, ttrpc.REQUEST, b"abcdef")[:12])
    a.close()
    with pytest.raises(ttrpc.FrameError):
        ttrpc.read_frame(b)


def test_concurrent_requests_answered_in_any_order(tmp_path):
    release = threading.Event()

    def slow(payload: bytes) -> bytes:
        release.wait(10)
        return b"slow"

    def fast(payload: bytes) -> bytes:
        return b"fast:" + payload

    srv, path, _ = _server(tmp_path, {"t.S/Slow": slow, "t.S/Fast": fast})
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(_request(1, "Slow") + _request(3, "Fast", b"x"))
        stream, resp = _response(s)  # the fast one first: Slow is still blocked
        assert (stream, resp.payload) == (3, b"fast:x")
        release.set()
        stream, resp = _response(s)
        assert (stream, resp.payload) == (1, b"slow")
    srv.close()


def test_oversized_frame_refused_and_the_connection_survives(tmp_path):
    srv, path, errors = _server(tmp_path, {"t.S/Echo": lambda p: p})
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        big = ttrpc.MAX_MESSAGE + 1
        s.sendall(ttrpc.HEADER.pack(big, 5, ttrpc.REQUEST, 0))
        s.sendall(b"\0" * big)
        stream, resp = _response(s)
        assert stream == 5 and resp.status.code == ttrpc.INVALID_ARGUMENT
        s.sendall(_request(7, "Echo", b"still here"))
        stream, resp = _response(s)
        assert (stream, resp.status.code, resp.payload) == (7, 0, b"still here")
    assert any("over the" in e for e in errors)
    srv.close()


def test_malformed_and_unknown_requests_get_status_codes(tmp_path):
    def boom(payload: bytes) -> bytes:
        raise ttrpc.Status(ttrpc.NOT_FOUND, "no such container")

    def bug(payload: bytes) -> bytes:
        raise RuntimeError("a handler's bug")

    srv, path, _ = _server(tmp_path, {"t.S/Boom": boom, "t.S/Bug": bug})
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(ttrpc.frame(1, ttrpc.REQUEST, b"\xff\xff\xff"))  # not a Request
        assert _response(s)[1].status.code == ttrpc.INVALID_ARGUMENT
        s.sendall(_request(3, "Nope"))
        assert _response(s)[1].status.code == ttrpc.UNIMPLEMENTED
        s.sendall(_request(5, "Boom"))
        resp = _response(s)[1]
        assert (resp.status.code, resp.status.message) == (ttrpc.NOT_FOUND, "no such container")
        s.sendall(_request(7, "Bug"))
        assert _response(s)[1].status.code == ttrpc.INTERNAL
    srv.close()


def test_client_round_trip_and_errors(tmp_path):
    def fail(payload: bytes) -> bytes:
        raise ttrpc.Status(ttrpc.FAILED_PRECONDITION, "paused")

    srv, path, _ = _server(tmp_path, {"t.S/Echo": lambda p: p[::-1], "t.S/Fail": fail})
    c = ttrpc.Client(f"unix://{path}")
    assert c.call("t.S", "Echo", b"abc") == b"cba"
    assert c.call("t.S", "Echo", b"xyz") == b"zyx"  # the next stream id, same connection
    with pytest.raises(ttrpc.Status) as e:
        c.call("t.S", "Fail", b"")
    assert e.value.code == ttrpc.FAILED_PRECONDITION
    c.close()
    srv.close()
