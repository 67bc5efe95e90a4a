"""A tiny raw STOMP client used by the end-to-end tests.

It encodes and parses STOMP frames by hand (so tests can send malformed input
and inspect exactly what the server wrote) and talks over a plain TCP socket,
a TLS socket or a WebSocket (the `websockets` library's sync client).

Every blocking call takes a bounded timeout; nothing here waits forever.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

DEFAULT_TIMEOUT = 10.0
ALL_SUBPROTOCOLS = ["v12.stomp", "v11.stomp", "v10.stomp"]

# ---------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------

_ESCAPES_12 = {"\\": "\\\\", "\n": "\\n", ":": "\\c", "\r": "\\r"}
_ESCAPES_11 = {"\\": "\\\\", "\n": "\\n", ":": "\\c"}
_UNESCAPE_RE = re.compile(r"\\(.)", re.S)
_UNESCAPES = {"\\": "\\", "n": "\n", "c": ":", "r": "\r"}


def escape_header(value: str, version: str = "1.2") -> str:
    if version == "1.0":
        return value
    table = _ESCAPES_12 if version == "1.2" else _ESCAPES_11
    return "".join(table.get(ch, ch) for ch in value)


def unescape_header(value: str) -> str:
    # Lenient: an unknown escape is kept verbatim (the server is not under test here).
    return _UNESCAPE_RE.sub(lambda m: _UNESCAPES.get(m.group(1), m.group(0)), value)


@dataclass
class Frame:
    command: str
    header_list: list = field(default_factory=list)  # [(name, value)] in wire order
    body: bytes = b""

    @property
    def headers(self) -> dict:
        """Header map; the first occurrence of a repeated header wins (STOMP 1.2)."""
        out: dict = {}
        for k, v in self.header_list:
            out.setdefault(k, v)
        return out

    def header(self, name: str, default=None):
        return self.headers.get(name, default)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        body = self.body if len(self.body) <= 200 else self.body[:200] + b"..."
        return f"Frame({self.command!r}, {self.headers!r}, {body!r})"


def encode_frame(command: str, headers=None, body: bytes | str = b"", *,
                 version: str = "1.2", content_length: bool = True) -> bytes:
    """Encode one frame. Header values are escaped for 1.1/1.2 (not in CONNECT/STOMP)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    if content_length and body and not any(k == "content-length" for k, _ in items):
        items.append(("content-length", str(len(body))))
    escape = command not in ("CONNECT", "STOMP", "CONNECTED")
    lines = [command]
    for k, v in items:
        v = str(v)
        lines.append(f"{escape_header(k, version) if escape else k}:"
                     f"{escape_header(v, version) if escape else v}")
    return ("\n".join(lines) + "\n\n").encode("utf-8") + body + b"\x00"


class ProtocolViolation(Exception):
    """The server sent bytes that are not a well-formed STOMP frame."""


class FrameParser:
    """Incremental parser for server-to-client frames. EOLs between frames are heart-beats."""

    def __init__(self, unescape: bool = True):
        self.buf = b""
        self.unescape = unescape
        self.heartbeats = 0

    def feed(self, data: bytes) -> list:
        self.buf += data
        frames = []
        while True:
            # Skip heart-beats (EOLs between frames).
            i = 0
            while i < len(self.buf):
                if self.buf[i:i + 1] == b"\n":
                    self.heartbeats += 1
                    i += 1
                elif self.buf[i:i + 2] == b"\r\n":
                    self.heartbeats += 1
                    i += 2
                elif self.buf[i:i + 1] == b"\r" and i + 1 == len(self.buf):
                    break  # maybe half of a CRLF
                else:
                    break
            self.buf = self.buf[i:]
            frame = self._try_parse_one()
            if frame is None:
                return frames
            frames.append(frame)

    def _try_parse_one(self):
        if not self.buf:
            return None
        m = re.search(rb"\r?\n\r?\n", self.buf)
        if m is None:
            return None
        head = self.buf[:m.start()].decode("utf-8", errors="replace")
        lines = re.split(r"\r?\n", head)
        command = lines[0]
        header_list = []
        for line in lines[1:]:
            if ":" not in line:
                raise ProtocolViolation(f"header line without colon: {line!r} in {self.buf[:300]!r}")
            k, v = line.split(":", 1)
            if self.unescape and command != "CONNECTED":
                k, v = unescape_header(k), unescape_header(v)
            header_list.append((k, v))
        start = m.end()
        length = None
        for k, v in header_list:
            if k == "content-length":
                length = int(v)
                break
        if length is not None:
            if len(self.buf) < start + length + 1:
                return None
            body = self.buf[start:start + length]
            if self.buf[start + length:start + length + 1] != b"\x00":
                raise ProtocolViolation(f"content-length body not followed by NUL: {self.buf[:300]!r}")
            self.buf = self.buf[start + length + 1:]
        else:
            nul = self.buf.find(b"\x00", start)
            if nul < 0:
                return None
            body = self.buf[start:nul]
            self.buf = self.buf[nul + 1:]
        return Frame(command, header_list, body)


def parse_frames(data: bytes) -> list:
    """Parse complete frames from one buffer (e.g. one WebSocket message)."""
    p = FrameParser()
    frames = p.feed(data)
    if p.buf:
        raise ProtocolViolation(f"trailing partial frame: {p.buf[:200]!r}")
    return frames


# ---------------------------------------------------------------------------
# Transports
# ---------------------------------------------------------------------------

class ConnectionClosed(Exception):
    """The peer closed the connection (EOF, reset, or WebSocket close)."""


class TcpTransport:
    kind = "tcp"

    def __init__(self, host: str, port: int, *, tls_context: ssl.SSLContext | None = None,
                 server_hostname: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 rcvbuf: int | None = None):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        try:
            raw.connect((host, port))
            if tls_context is not None:
                raw = tls_context.wrap_socket(raw, server_hostname=server_hostname or host)
        except BaseException:
            raw.close()
            raise
        self.sock = raw
        self.closed = False

    def send(self, data: bytes | str, *, binary: bool = False) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.settimeout(DEFAULT_TIMEOUT)
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise ConnectionClosed(str(e)) from e

    def recv_chunk(self, timeout: float) -> bytes:
        """Return some bytes; raise ConnectionClosed on EOF/reset, TimeoutError on timeout."""
        if self.closed:
            raise ConnectionClosed("already closed")
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError) as e:
            raise TimeoutError("no data from server") from e
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as e:
            self.closed = True
            raise ConnectionClosed(str(e)) from e
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
                self.closed = True
                raise ConnectionClosed(str(e)) from e
            raise
        if not data:
            self.closed = True
            raise ConnectionClosed("EOF")
        return data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class WsTransport:
    kind = "ws"

    def __init__(self, url: str, *, subprotocols=ALL_SUBPROTOCOLS, tls_context=None,
                 timeout: float = DEFAULT_TIMEOUT, max_size: int | None = 16 * 1024 * 1024):
        protos = None if subprotocols is None else [Subprotocol(p) for p in subprotocols]
        self.ws = ws_connect(url, subprotocols=protos, ssl=tls_context, compression=None,
                             proxy=None, open_timeout=timeout, close_timeout=timeout,
                             ping_interval=None, max_size=max_size)
        self.closed = False
        self.close_code = None
        self.message_kinds: list = []  # "text" / "binary" for every message received

    @property
    def subprotocol(self):
        return self.ws.subprotocol

    def send(self, data: bytes | str, *, binary: bool = False) -> None:
        """Send one WebSocket message: text unless `binary` or the bytes are not UTF-8."""
        if binary:
            payload = data.encode("utf-8") if isinstance(data, str) else data
        elif isinstance(data, str):
            payload = data
        else:
            try:
                payload = data.decode("utf-8")
            except UnicodeDecodeError:
                payload = data  # not valid UTF-8: it can only travel as a binary message
        try:
            self.ws.send(payload)
        except WsConnectionClosed as e:
            # Messages that arrived before the close (the server's ERROR) are still queued:
            # recv_chunk must go on returning them, so the connection isn't marked closed here.
            if e.rcvd is not None:
                self.close_code = e.rcvd.code
            raise ConnectionClosed(str(e)) from e

    def _note_close(self, e: WsConnectionClosed) -> None:
        self.closed = True
        if e.rcvd is not None:
            self.close_code = e.rcvd.code

    def recv_chunk(self, timeout: float) -> bytes:
        if self.closed:
            raise ConnectionClosed("already closed")
        try:
            msg = self.ws.recv(timeout=max(timeout, 0.001))
        except TimeoutError:
            raise
        except WsConnectionClosed as e:
            self._note_close(e)
            raise ConnectionClosed(str(e)) from e
        except OSError as e:
            self.closed = True
            raise ConnectionClosed(str(e)) from e
        if isinstance(msg, str):
            self.message_kinds.append("text")
            return msg.encode("utf-8")
        self.message_kinds.append("binary")
        return bytes(msg)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


# ---------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------

def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class StompClient:
    def __init__(self, transport):
        self.t = transport
        self.parser = FrameParser()
        self.pending: list = []
        self.version = "1.2"

    # -- construction ------------------------------------------------------
    @classmethod
    def tcp(cls, host: str, port: int, **kw) -> "StompClient":
        return cls(TcpTransport(host, port, **kw))

    @classmethod
    def ws(cls, url: str, **kw) -> "StompClient":
        return cls(WsTransport(url, **kw))

    @classmethod
    def open(cls, node, transport: str = "tcp", **kw) -> "StompClient":
        if transport == "tcp":
            return cls.tcp(node.host, node.stomp_port, **kw)
        if transport == "ws":
            return cls.ws(node.ws_url, **kw)
        raise ValueError(transport)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.t.close()

    # -- I/O -----------------------------------------------------------------
    def send_raw(self, data: bytes | str, *, binary: bool = False, ignore_closed: bool = False) -> None:
        try:
            self.t.send(data, binary=binary)
        except ConnectionClosed:
            if not ignore_closed:
                raise

    def send_frame(self, command: str, headers=None, body: bytes | str = b"", *,
                   binary: bool = False, content_length: bool = True, ignore_closed: bool = False) -> None:
        self.send_raw(encode_frame(command, headers, body, version=self.version,
                                   content_length=content_length), binary=binary, ignore_closed=ignore_closed)

    def recv_frame(self, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """Next frame (heart-beats skipped). Raises TimeoutError or ConnectionClosed."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no frame within {timeout}s")
            self.pending.extend(self.parser.feed(self.t.recv_chunk(remaining)))
        return self.pending.pop(0)

    def expect(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        f = self.recv_frame(timeout)
        assert f.command == command, f"expected {command}, got {f!r}"
        return f

    def collect(self, predicate, timeout: float = DEFAULT_TIMEOUT) -> list:
        """Read frames until predicate(frames_so_far) is true; return them all."""
        deadline = time.monotonic() + timeout
        got: list = []
        while not predicate(got):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"condition not met within {timeout}s; frames: {got!r}")
            got.append(self.recv_frame(remaining))
        return got

    def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> list:
        """Wait until the server closes the connection; return frames received meanwhile."""
        deadline = time.monotonic() + timeout
        frames = list(self.pending)
        self.pending.clear()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"server did not close the connection within {timeout}s "
                                     f"(frames received meanwhile: {frames!r})")
            try:
                frames.extend(self.parser.feed(self.t.recv_chunk(remaining)))
            except ConnectionClosed:
                return frames
            except TimeoutError:
                continue
            except ProtocolViolation:
                raise

    # -- STOMP verbs -----------------------------------------------------------
    def connect(self, version: str = "1.2", headers=None, command: str = "CONNECT",
                timeout: float = DEFAULT_TIMEOUT) -> Frame:
        h = {"accept-version": version, "host": "localhost"}
        h.update(headers or {})
        self.send_frame(command, h)
        f = self.recv_frame(timeout)
        assert f.command == "CONNECTED", f"expected CONNECTED, got {f!r}"
        self.version = f.header("version", "1.0")
        return f

    def subscribe(self, destination: str, sub_id: str | None = None, ack: str = "auto",
                  headers=None, receipt: bool = True) -> str:
        sub_id = sub_id or unique("sub")
        h = {"destination": destination, "id": sub_id, "ack": ack}
        h.update(headers or {})
        rid = None
        if receipt:
            rid = unique("r")
            h["receipt"] = rid
        self.send_frame("SUBSCRIBE", h)
        if receipt:
            self.await_receipt(rid)
        return sub_id

    def send(self, destination: str, body: bytes | str = b"", headers=None,
             receipt: bool = False, **kw) -> None:
        h = {"destination": destination}
        h.update(headers or {})
        rid = None
        if receipt:
            rid = unique("r")
            h["receipt"] = rid
        self.send_frame("SEND", h, body, **kw)
        if receipt:
            self.await_receipt(rid)

    def await_receipt(self, receipt_id: str, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """Wait for RECEIPT receipt_id; other frames read meanwhile are kept for later."""
        deadline = time.monotonic() + timeout
        stash = []
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no RECEIPT {receipt_id} within {timeout}s; other frames: {stash!r}")
                f = self.recv_frame(remaining)
                if f.command == "RECEIPT" and f.header("receipt-id") == receipt_id:
                    return f
                if f.command == "ERROR":
                    raise AssertionError(f"ERROR while waiting for RECEIPT {receipt_id}: {f!r}")
                stash.append(f)
        finally:
            self.pending[0:0] = stash

    def disconnect(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        rid = unique("bye")
        self.send_frame("DISCONNECT", {"receipt": rid})
        self.await_receipt(rid, timeout)
        self.close()

    def messages(self, n: int, timeout: float = DEFAULT_TIMEOUT) -> list:
        """Read exactly n MESSAGE frames (any other frame is a failure)."""
        got = self.collect(lambda fs: len(fs) >= n, timeout)
        bad = [f for f in got if f.command != "MESSAGE"]
        assert not bad, f"unexpected frames: {bad!r}"
        return got


def round_trip(client: StompClient, destination: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """SEND to a destination the client is subscribed to; expect the MESSAGE and the RECEIPT."""
    body = unique("ping")
    rid = unique("rt")
    client.send_frame("SEND", {"destination": destination, "receipt": rid}, body)
    got = client.collect(
        lambda fs: any(f.command == "RECEIPT" and f.header("receipt-id") == rid for f in fs)
        and any(f.command == "MESSAGE" and f.body == body.encode() for f in fs),
        timeout)
    errors = [f for f in got if f.command == "ERROR"]
    assert not errors, f"ERROR during round trip: {errors!r}"


def http_request(host: str, port: int, request: bytes, timeout: float = DEFAULT_TIMEOUT) -> tuple:
    """Send a raw HTTP request and read the response until the server closes the connection.

    Returns (status_code, raw_response, closed): `closed` is False when the server kept the
    connection open for `timeout` seconds after its response. Bounded.
    """
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        closed = False
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            s.settimeout(remaining)
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    m = re.match(r"HTTP/1\.[01] (\d{3})", line)
    assert m, f"not an HTTP response (closed={closed}): {data[:300]!r}"
    return int(m.group(1)), data, closed
