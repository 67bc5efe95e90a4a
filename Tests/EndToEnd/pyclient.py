"""stomp.py (https://github.com/jasonrbriggs/stomp.py) clients over TCP and WebSocket.

stomp.py 8.2.0 ships `stomp.WSStompConnection` (STOMP 1.2 over `websocket-client`,
no WebSocket subprotocol offered). For 1.0 and 1.1 over WebSocket we pair the same
`stomp.adapter.ws.WSTransport` with stomp.py's Protocol10/Protocol11 classes.

stomp.py's own blocking waits (connect(wait=True), disconnect with a receipt)
have no timeout, so this wrapper uses listeners and bounded waits instead.
Socket timeouts are left at None: stomp.py treats a read timeout as a closed
connection.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid

import stomp
from stomp.adapter.ws import WSTransport
from stomp.connect import BaseConnection, StompConnection10, StompConnection11, StompConnection12
from stomp.protocol import Protocol10, Protocol11

DEFAULT_TIMEOUT = 10.0
VERSIONS = ["1.0", "1.1", "1.2"]
TRANSPORTS = ["tcp", "ws"]


class WSConnection10(StompConnection10):
    def __init__(self, host_and_ports, ws_path="/ws"):
        transport = WSTransport(host_and_ports, reconnect_attempts_max=1, ws_path=ws_path)
        BaseConnection.__init__(self, transport)
        Protocol10.__init__(self, transport, True)


class WSConnection11(StompConnection11):
    def __init__(self, host_and_ports, ws_path="/ws", heartbeats=(0, 0)):
        transport = WSTransport(host_and_ports, reconnect_attempts_max=1, ws_path=ws_path)
        BaseConnection.__init__(self, transport)
        Protocol11.__init__(self, transport, heartbeats, True)


def WSConnection12(host_and_ports, ws_path="/ws", heartbeats=(0, 0)):
    # The class stomp.py itself provides for WebSocket.
    return stomp.WSStompConnection(host_and_ports, ws_path=ws_path, heartbeats=heartbeats,
                                   reconnect_attempts_max=1)


class Recorder(stomp.ConnectionListener):
    """Records everything the connection receives; waits are bounded."""

    def __init__(self):
        self.cond = threading.Condition()
        self.connected_frame = None
        self.messages: list = []
        self.receipts: set = set()
        self.errors: list = []
        self.disconnected = False

    def _note(self, fn):
        with self.cond:
            fn()
            self.cond.notify_all()

    def on_connected(self, frame):
        self._note(lambda: setattr(self, "connected_frame", frame))

    def on_message(self, frame):
        self._note(lambda: self.messages.append(frame))

    def on_receipt(self, frame):
        self._note(lambda: self.receipts.add(frame.headers.get("receipt-id")))

    def on_error(self, frame):
        self._note(lambda: self.errors.append(frame))

    def on_disconnected(self):
        self._note(lambda: setattr(self, "disconnected", True))

    def wait(self, predicate, timeout: float = DEFAULT_TIMEOUT, what: str = ""):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {what or predicate}; "
                        f"messages={[m.body for m in self.messages]!r} errors={self.errors!r}")
                # Short waits: a predicate may depend on other clients' recorders too.
                self.cond.wait(min(remaining, 0.05))

    def bodies(self, destination: str | None = None) -> list:
        with self.cond:
            return [m.body for m in self.messages
                    if destination is None or m.headers.get("destination") == destination]


class PyClient:
    """A connected stomp.py client with bounded helpers."""

    def __init__(self, host: str, port: int, transport: str, version: str, *,
                 ssl_ca: str | None = None, ws_path: str = "/ws", connect: bool = True,
                 login: str | None = None, passcode: str | None = None, auto_decode: bool = True):
        self.transport, self.version = transport, version
        self.login, self.passcode = login, passcode
        hp = [(host, port)]
        if transport == "tcp":
            cls = {"1.0": StompConnection10, "1.1": StompConnection11, "1.2": StompConnection12}[version]
            # auto_decode=False: bodies arrive as bytes (binary bodies included).
            self.conn = cls(hp, reconnect_attempts_max=1, auto_decode=auto_decode)
        else:
            cls = {"1.0": WSConnection10, "1.1": WSConnection11, "1.2": WSConnection12}[version]
            self.conn = cls(hp, ws_path=ws_path)
        if ssl_ca:
            self.conn.set_ssl(for_hosts=hp, ca_certs=str(ssl_ca))
        self.rec = Recorder()
        self.conn.set_listener("recorder", self.rec)
        if connect:
            self.connect()

    @classmethod
    def for_node(cls, node, transport: str, version: str, **kw) -> "PyClient":
        port = node.stomp_port if transport == "tcp" else node.ws_port
        return cls(node.host, port, transport, version, **kw)

    def connect(self, timeout: float = DEFAULT_TIMEOUT):
        self.try_connect(timeout)
        assert not self.rec.errors, f"ERROR on connect: {self.rec.errors!r}"
        frame = self.rec.connected_frame
        if self.version != "1.0":
            assert frame.headers.get("version") == self.version, frame.headers
        return frame

    def try_connect(self, timeout: float = DEFAULT_TIMEOUT) -> list:
        """CONNECT (with the client's login, if any); returns the ERROR frames it got instead
        of CONNECTED, if any."""
        self.conn.connect(username=self.login, passcode=self.passcode, wait=False)
        self.rec.wait(lambda: self.rec.connected_frame is not None or self.rec.errors, timeout, "CONNECTED")
        return list(self.rec.errors)

    def refusal(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """CONNECT, expecting an ERROR: its message and body, as "message / body"."""
        try:
            errors = self.try_connect(timeout)
            assert errors, "CONNECT was accepted"
            return errors[0].headers.get("message", "") + " / " + errors[0].body
        finally:
            if self.conn.is_connected():
                self.conn.disconnect()

    def _receipt(self) -> str:
        return f"r-{uuid.uuid4().hex[:12]}"

    def wait_receipt(self, rid: str, timeout: float = DEFAULT_TIMEOUT):
        self.rec.wait(lambda: rid in self.rec.receipts or self.rec.errors, timeout, f"RECEIPT {rid}")
        assert not self.rec.errors, f"ERROR instead of RECEIPT {rid}: {self.rec.errors!r}"

    def subscribe(self, destination: str, sub_id: str, ack: str = "auto", headers=None, receipt=True):
        h = dict(headers or {})
        rid = self._receipt()
        if receipt:
            h["receipt"] = rid
        self.conn.subscribe(destination, id=sub_id, ack=ack, headers=h)
        if receipt:
            self.wait_receipt(rid)

    def unsubscribe(self, sub_id: str, receipt=True):
        rid = self._receipt()
        h = {"receipt": rid} if receipt else {}
        self.conn.unsubscribe(id=sub_id, headers=h)
        if receipt:
            self.wait_receipt(rid)

    def send(self, destination: str, body: str, headers=None, receipt=False, transaction=None):
        h = dict(headers or {})
        rid = self._receipt()
        if receipt:
            h["receipt"] = rid
        if transaction:
            h["transaction"] = transaction
        self.conn.send(destination, body, headers=h)
        if receipt:
            self.wait_receipt(rid)

    def ack(self, frame, receipt=True):
        rid = self._receipt() if receipt else None
        if self.version == "1.0":
            self.conn.ack(frame.headers["message-id"], receipt=rid)
        elif self.version == "1.1":
            self.conn.ack(frame.headers["message-id"], frame.headers["subscription"], receipt=rid)
        else:
            self.conn.ack(frame.headers["ack"], receipt=rid)
        if receipt:
            self.wait_receipt(rid)

    def nack(self, frame, receipt=True):
        rid = self._receipt() if receipt else None
        if self.version == "1.1":
            self.conn.nack(frame.headers["message-id"], frame.headers["subscription"], receipt=rid)
        elif self.version == "1.2":
            self.conn.nack(frame.headers["ack"], receipt=rid)
        else:
            raise AssertionError("STOMP 1.0 has no NACK")
        if receipt:
            self.wait_receipt(rid)

    def begin(self, receipt=True) -> str:
        tx = f"tx-{uuid.uuid4().hex[:12]}"
        rid = self._receipt()
        self.conn.begin(tx, headers={"receipt": rid} if receipt else None)
        if receipt:
            self.wait_receipt(rid)
        return tx

    def commit(self, tx: str, receipt=True):
        rid = self._receipt()
        self.conn.commit(tx, headers={"receipt": rid} if receipt else None)
        if receipt:
            self.wait_receipt(rid)

    def abort(self, tx: str, receipt=True):
        rid = self._receipt()
        self.conn.abort(tx, headers={"receipt": rid} if receipt else None)
        if receipt:
            self.wait_receipt(rid)

    def wait_messages(self, n: int, destination: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> list:
        def enough():
            with self.rec.cond:
                ms = [m for m in self.rec.messages
                      if destination is None or m.headers.get("destination") == destination]
            return ms if len(ms) >= n else None
        return self.rec.wait(enough, timeout, f"{n} messages" + (f" on {destination}" if destination else ""))

    def close(self, timeout: float = DEFAULT_TIMEOUT):
        """DISCONNECT (receipted) and close; bounded, never raises."""
        try:
            if self.conn.is_connected():
                self.conn.disconnect()  # sends DISCONNECT with a receipt; socket closes on the receipt
                try:
                    self.rec.wait(lambda: self.rec.disconnected, timeout, "disconnect")
                except AssertionError:
                    pass
        except Exception:
            pass
        self.drop()

    def drop(self):
        """Close the socket abruptly (no DISCONNECT)."""
        # shutdown() first: it wakes the receiver thread and sends the FIN at once. (stomp.py's
        # WebSocket transport only close()s, which leaves the connection open while the
        # receiver thread is blocked in recv().)
        t = self.conn.transport
        raw = getattr(t, "socket", None)
        raw = getattr(raw, "sock", raw)  # websocket-client keeps the socket in .sock
        if raw is not None:
            try:
                raw.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self.conn.transport.running = False
            self.conn.transport.disconnect_socket()
        except Exception:
            pass
        # Let the receiver thread notice (bounded).
        thread = getattr(self.conn.transport, "receiver_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=DEFAULT_TIMEOUT)
