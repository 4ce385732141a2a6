"""ttrpc, containerd's lean RPC over a unix socket (containerd/ttrpc 1.1), server and client.

Framing: every message is a 10-byte header then a protobuf payload:

    uint32 length (big endian, at most 4 MiB) | uint32 stream id | uint8 type | uint8 flags
    type 1 = request (ttrpc.Request), 2 = response (ttrpc.Response)

A client sends requests on odd stream ids; each response carries the id of its request.
Requests on one connection are concurrent (containerd's Wait blocks for a container's
whole life): the server serves each in a thread of its own and serialises the writes.

    Server(handlers).serve(listening socket)
      accept thread ──> one reader thread per connection
                          └─> one thread per request: handler(payload bytes) -> bytes
                                or raises Status(code, message) -> gRPC status
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

from minirun.shim.proto import ttrpc_pb2

HEADER = struct.Struct(">IIBB")
MAX_MESSAGE = 4 << 20
REQUEST, RESPONSE = 1, 2

# gRPC status codes containerd maps to its errdefs
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED = 0, 1, 2, 3, 4
NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, UNIMPLEMENTED, INTERNAL = 5, 6, 9, 12, 13
UNAVAILABLE = 14


class Status(Exception):
    """An RPC failure: a gRPC status code and a message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FrameError(Exception):
    """The peer sent something that is not a ttrpc frame we accept."""


Handler = Callable[[bytes], bytes]


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    """n bytes, across as many reads as it takes; None at a clean EOF before the first."""
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            if got == 0:
                return None
            raise FrameError(f"connection closed inside a frame ({got} of {n} bytes)")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> tuple[int, int, bytes] | None:
    """(stream id, type, payload) of the next frame; None at EOF. An oversized frame's
    payload is read and thrown away, then FrameError (the stream stays usable)."""
    head = _read_exact(sock, HEADER.size)
    if head is None:
        return None
    length, stream, mtype, _flags = HEADER.unpack(head)
    if length > MAX_MESSAGE:
        left = length
        while left:
            chunk = sock.recv(min(left, 1 << 16))
            if not chunk:
                raise FrameError("connection closed inside an oversized frame")
            left -= len(chunk)
        raise FrameError(f"message of {length} bytes on stream {stream} is over the "
                         f"{MAX_MESSAGE}-byte limit", stream)
    payload = _read_exact(sock, length) if length else b""
    if payload is None:
        raise FrameError("connection closed inside a frame")
    return stream, mtype, payload


def frame(stream: int, mtype: int, payload: bytes) -> bytes:
    if len(payload) > MAX_MESSAGE:
        raise FrameError(f"message of {len(payload)} bytes is over the {MAX_MESSAGE}-byte limit")
    return HEADER.pack(len(payload), stream, mtype, 0) + payload


# --------------------------------------------------------------------------- server


class Server:
    """Serves `handlers` ("service/method" -> handler) on every accepted connection."""

    def __init__(self, handlers: dict[str, Handler],
                 on_error: Callable[[str], None] = lambda msg: None) -> None:
        self.handlers = handlers
        self.on_error = on_error
        self._closing = False

    def serve(self, listener: socket.socket) -> None:
        """Accepts until close(); each connection in a thread of its own."""
        self._listener = listener
        while not self._closing:
            try:
                conn, _ = listener.accept()
            except OSError:
                if self._closing:
                    return
                time.sleep(0.05)
                continue
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self._closing = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()

    def _connection(self, conn: socket.socket) -> None:
        lock = threading.Lock()

        def send(stream: int, response: ttrpc_pb2.Response) -> None:
            data = response.SerializeToString()
            if len(data) > MAX_MESSAGE:
                response = _error(INTERNAL, f"response of {len(data)} bytes is too large")
                data = response.SerializeToString()
            with lock:
                try:
                    conn.sendall(frame(stream, RESPONSE, data))
                except OSError:
                    pass  # the client went away: nothing to answer

        try:
            while True:
                try:
                    got = read_frame(conn)
                except FrameError as e:
                    self.on_error(f"ttrpc: {e.args[0]}")
                    if len(e.args) > 1:  # oversized: answer it, keep the connection
                        send(e.args[1], _error(INVALID_ARGUMENT, e.args[0]))
                        continue
                    return
                if got is None:
                    return
                stream, mtype, payload = got
                if mtype != REQUEST:
                    self.on_error(f"ttrpc: frame of type {mtype} on stream {stream} ignored")
                    continue
                threading.Thread(target=self._request, args=(stream, payload, send),
                                 daemon=True).start()
        except OSError as e:
            self.on_error(f"ttrpc: connection: {e}")
        finally:
            conn.close()

    def _request(self, stream: int, payload: bytes, send) -> None:
        try:
            req = ttrpc_pb2.Request.FromString(payload)
        except Exception:  # noqa: BLE001 - any decode failure is the client's
            send(stream, _error(INVALID_ARGUMENT, "malformed ttrpc request"))
            return
        name = f"{req.service}/{req.method}"
        handler = self.handlers.get(name)
        if handler is None:
            send(stream, _error(UNIMPLEMENTED, f"{name} is not implemented"))
            return
        deadline = time.monotonic() + req.timeout_nano / 1e9 if req.timeout_nano > 0 else None
        try:
            out = handler(req.payload)
            response = ttrpc_pb2.Response(payload=out)
        except Status as s:
            response = _error(s.code, s.message)
        except Exception as e:  # noqa: BLE001 - the server outlives a handler's bug
            self.on_error(f"ttrpc: {name}: {type(e).__name__}: {e}")
            response = _error(INTERNAL if not _is_decode_error(e) else INVALID_ARGUMENT,
                              f"{name}: {e}")
        if deadline is not None and time.monotonic() > deadline:
            response = _error(DEADLINE_EXCEEDED, f"{name}: deadline exceeded")
        send(stream, response)


def _is_decode_error(e: Exception) -> bool:
    return type(e).__name__ == "DecodeError"


def _error(code: int, message: str) -> ttrpc_pb2.Response:
    return ttrpc_pb2.Response(status=ttrpc_pb2.Status(code=code, message=message))


# --------------------------------------------------------------------------- client


class Client:
    """Calls on one connection, one at a time (the shim's events go out in order)."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.address = address.removeprefix("unix://")
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._stream = 1
        self._lock = threading.Lock()

    def call(self, service: str, method: str, payload: bytes) -> bytes:
        """The response's payload; Status if the server answered an error; OSError if
        the connection failed (the next call reconnects)."""
        with self._lock:
            try:
                return self._call(service, method, payload)
            except (OSError, FrameError):
                self.close()
                raise

    def _call(self, service: str, method: str, payload: bytes) -> bytes:
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            s.settimeout(self.timeout)
            s.connect(self.address)
            self._sock = s
        stream, self._stream = self._stream, self._stream + 2
        req = ttrpc_pb2.Request(service=service, method=method, payload=payload,
                                timeout_nano=int(self.timeout * 1e9))
        self._sock.sendall(frame(stream, REQUEST, req.SerializeToString()))
        while True:
            got = read_frame(self._sock)
            if got is None:
                raise OSError("ttrpc: the server closed the connection")
            rstream, mtype, data = got
            if rstream == stream and mtype == RESPONSE:
                break
        resp = ttrpc_pb2.Response.FromString(data)
        if resp.status.code != OK:
            raise Status(resp.status.code, resp.status.message)
        return resp.payload

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
