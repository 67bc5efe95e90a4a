"""Fast, minimal raw connections for the resource and timeout tests.

`stomp_raw.StompClient` is the client for checking what the node says; this module is for
opening and dropping thousands of connections quickly and for the abrupt endings a real
client library won't do: a reset in the middle of a frame, a socket that never finishes
its upgrade, a half-sent link frame. WebSocket is spoken by hand over a plain socket (the
upgrade request, then client frames masked with an all-zero key, which leaves the payload
as it is and is allowed by RFC 6455), so no background threads are involved.

Every blocking call has a bounded timeout.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time

DEFAULT_TIMEOUT = 10.0


class Closed(Exception):
    """The peer closed the connection (EOF or reset)."""


def ws_frame(payload: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
    """One client-to-server WebSocket frame, masked with the zero key (payload unchanged)."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + b"\x00\x00\x00\x00" + payload


def stomp_frame(command: str, headers: dict | None = None, body: bytes = b"") -> bytes:
    lines = [command] + [f"{k}:{v}" for k, v in (headers or {}).items()]
    if body and "content-length" not in (headers or {}):
        lines.append(f"content-length:{len(body)}")
    return ("\n".join(lines) + "\n\n").encode() + body + b"\x00"


CONNECT = stomp_frame("CONNECT", {"accept-version": "1.2", "host": "localhost", "heart-beat": "0,0"})


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0) instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def wait_peer_closed(sock: socket.socket, timeout: float) -> bytes | None:
    """Read (and return) what the peer sends until it closes; None if it is still open after
    `timeout` seconds. Bounded."""
    deadline = time.monotonic() + timeout
    got = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, socket.timeout):
            return None
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            return got
        except OSError:
            return got
        if not chunk:
            return got
        got += chunk


def is_closed_now(sock: socket.socket) -> bool:
    """Whether the peer has closed (EOF or reset) already; never blocks. Data is discarded."""
    sock.setblocking(False)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    finally:
        try:
            sock.setblocking(True)
        except OSError:
            pass


class RawConn:
    """A STOMP connection over plain TCP ("tcp") or a hand-spoken WebSocket ("ws")."""

    def __init__(self, host: str, port: int, kind: str = "tcp", *, path: str = "/ws",
                 timeout: float = DEFAULT_TIMEOUT, upgrade: bool = True):
        assert kind in ("tcp", "ws")
        self.kind = kind
        self.host, self.port, self.path = host, port, path
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.raw = b""        # bytes received and not yet parsed as WebSocket frames
        self.stream = b""     # STOMP bytes received (WebSocket payloads concatenated)
        self.ws_closed = False
        if kind == "ws" and upgrade:
            self.upgrade()

    @classmethod
    def open(cls, node, kind: str = "tcp", **kw) -> "RawConn":
        return cls(node.host, node.stomp_port if kind == "tcp" else node.ws_port, kind, **kw)

    # -- WebSocket -------------------------------------------------------------
    def upgrade(self) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n")
        self.sock.sendall(req.encode())
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.raw:
            self._recv_some(deadline)
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise AssertionError(f"WebSocket upgrade refused: {head[:300]!r}")

    def _parse_ws(self) -> None:
        while len(self.raw) >= 2:
            b0, b1 = self.raw[0], self.raw[1]
            n, off = b1 & 0x7F, 2
            if n == 126:
                if len(self.raw) < 4:
                    return
                n, off = struct.unpack(">H", self.raw[2:4])[0], 4
            elif n == 127:
                if len(self.raw) < 10:
                    return
                n, off = struct.unpack(">Q", self.raw[2:10])[0], 10
            if b1 & 0x80:
                off += 4  # a server never masks; tolerate it anyway
            if len(self.raw) < off + n:
                return
            payload, self.raw = self.raw[off:off + n], self.raw[off + n:]
            opcode = b0 & 0x0F
            if opcode in (0x0, 0x1, 0x2):
                self.stream += payload
            elif opcode == 0x8:
                self.ws_closed = True

    # -- I/O -------------------------------------------------------------------
    def send(self, stomp_bytes: bytes) -> None:
        """Send STOMP bytes: as they are over TCP, as one WebSocket message over WebSocket."""
        self.sock.sendall(stomp_bytes if self.kind == "tcp" else ws_frame(stomp_bytes))

    def _recv_some(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the node in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(262144)
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as e:
            raise Closed(str(e)) from e
        if not chunk:
            raise Closed("EOF")
        self.raw += chunk

    def read_frame(self, timeout: float | None = None) -> bytes:
        """The next complete STOMP frame (command, headers and body; heart-beat EOLs skipped)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if self.kind == "tcp":
                self.stream += self.raw
                self.raw = b""
            else:
                self._parse_ws()
            self.stream = self.stream.lstrip(b"\r\n")
            nul = self.stream.find(b"\x00")
            # Frames from the node in these tests have no NULs in their bodies.
            if nul >= 0:
                frame, self.stream = self.stream[:nul], self.stream[nul + 1:]
                return frame
            self._recv_some(deadline)

    def expect(self, command: str, timeout: float | None = None) -> bytes:
        frame = self.read_frame(timeout)
        if not frame.startswith(command.encode() + b"\n"):
            raise AssertionError(f"expected {command}, got {frame[:300]!r}")
        return frame

    def connect(self) -> bytes:
        self.send(CONNECT)
        return self.expect("CONNECTED")

    def disconnect(self) -> None:
        """DISCONNECT with a receipt, wait for the RECEIPT, then close."""
        self.send(stomp_frame("DISCONNECT", {"receipt": "bye"}))
        self.expect("RECEIPT")
        self.close()

    def outq(self) -> int:
        """Bytes in this socket's send queue not yet acknowledged by the peer (SIOCOUTQ)."""
        import fcntl
        import termios
        buf = fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, b"\x00" * 4)
        return struct.unpack("i", buf)[0]

    def reset(self) -> None:
        reset(self.sock)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def node_rx_queue(node_port: int, client_port: int) -> int | None:
    """Bytes the node has not yet read on its end of one loopback TCP connection (from
    /proc/net/tcp), or None when that socket isn't listed."""
    local = f":{node_port:04X}"
    remote = f":{client_port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[1].endswith(local) and parts[2].endswith(remote):
                    return int(parts[4].split(":")[1], 16)
    except OSError:
        return None
    return None


def wait_node_read_everything(conn: RawConn, node_port: int, timeout: float = 10.0) -> bool:
    """Wait (bounded) until everything sent on `conn` has been read by the node process (our
    send queue is empty and the node's receive queue is empty), so that a reset that follows
    discards nothing: the node then holds exactly what was sent. Returns whether it got there."""
    client_port = conn.sock.getsockname()[1]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.outq() == 0 and node_rx_queue(node_port, client_port) in (0, None):
            return True
        time.sleep(0.002)
    return False
