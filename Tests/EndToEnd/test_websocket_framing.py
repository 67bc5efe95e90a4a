"""STOMP over WebSocket at the framing level, with the `websockets` sync client."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed as WsConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

from nodes import module_node
from stomp_raw import (DEFAULT_TIMEOUT, FrameParser, StompClient, encode_frame,
                       parse_frames, round_trip, unique)

WS_LIMIT = 16384
node = module_node("--max-websocket-message-size", str(WS_LIMIT), "--max-frame-size", str(1024 * 1024),
                   "--max-body-size", str(1024 * 1024), name="ws-framing")


def open_ws(node, subprotocols=("v12.stomp", "v11.stomp", "v10.stomp"), **kw):
    protos = None if subprotocols is None else [Subprotocol(p) for p in subprotocols]
    return ws_connect(node.ws_url, subprotocols=protos, compression=None, proxy=None,
                      open_timeout=DEFAULT_TIMEOUT, close_timeout=DEFAULT_TIMEOUT,
                      ping_interval=None, **kw)


def recv_frames(ws, n: int, timeout: float = DEFAULT_TIMEOUT) -> list:
    """Receive WS messages until n STOMP frames (heart-beats skipped) have been parsed."""
    parser = FrameParser()
    frames: list = []
    while len(frames) < n:
        msg = ws.recv(timeout=timeout)
        frames.extend(parser.feed(msg.encode() if isinstance(msg, str) else msg))
    return frames


def connect_frame(version: str = "1.2") -> bytes:
    return encode_frame("CONNECT", {"accept-version": version, "host": "localhost"})


@pytest.mark.parametrize("offered,chosen", [
    (["v12.stomp", "v11.stomp", "v10.stomp"], "v12.stomp"),
    (["v10.stomp", "v11.stomp", "v12.stomp"], "v12.stomp"),
    (["v11.stomp", "v10.stomp"], "v11.stomp"),
    (["v10.stomp"], "v10.stomp"),
    (["mqtt", "v11.stomp"], "v11.stomp"),
])
def test_subprotocol_negotiation_picks_highest_offered(node, offered, chosen):
    with open_ws(node, offered) as ws:
        assert ws.subprotocol == chosen
        version = chosen[1] + "." + chosen[2]
        ws.send(connect_frame(version).decode())
        (f,) = recv_frames(ws, 1)
        assert f.command == "CONNECTED", f
        assert f.header("version", "1.0") == version


def test_no_subprotocol_is_still_served(node):
    with open_ws(node, None) as ws:
        assert ws.subprotocol is None
        ws.send(connect_frame("1.0,1.1,1.2").decode())
        (f,) = recv_frames(ws, 1)
        assert f.command == "CONNECTED"
        assert f.header("version") == "1.2"


def test_several_frames_in_one_message(node):
    dest = f"/topic/{unique('multi')}"
    with open_ws(node) as ws:
        batch = (connect_frame()
                 + encode_frame("SUBSCRIBE", {"destination": dest, "id": "s0", "receipt": "r-sub"})
                 + encode_frame("SEND", {"destination": dest}, "one")
                 + b"\n"  # a heart-beat EOL between frames is allowed too
                 + encode_frame("SEND", {"destination": dest, "receipt": "r-send"}, "two"))
        ws.send(batch.decode())
        frames = recv_frames(ws, 5)
        cmds = [f.command for f in frames]
        assert cmds[0] == "CONNECTED"
        assert [f.header("receipt-id") for f in frames if f.command == "RECEIPT"] == ["r-sub", "r-send"]
        assert [f.body for f in frames if f.command == "MESSAGE"] == [b"one", b"two"]


@pytest.mark.parametrize("pieces", [2, 3, 7])
def test_one_frame_split_across_messages(node, pieces):
    dest = f"/topic/{unique('split')}"
    with open_ws(node) as ws:
        ws.send(connect_frame().decode())
        assert recv_frames(ws, 1)[0].command == "CONNECTED"
        ws.send(encode_frame("SUBSCRIBE", {"destination": dest, "id": "s", "receipt": "r1"}).decode())
        assert recv_frames(ws, 1)[0].header("receipt-id") == "r1"
        frame = encode_frame("SEND", {"destination": dest, "receipt": "r2", "x-pad": "p" * 50},
                             "a body that is split " * 5)
        step = -(-len(frame) // pieces)
        chunks = [frame[i:i + step] for i in range(0, len(frame), step)]
        assert len(chunks) >= 2
        for chunk in chunks:
            ws.send(chunk.decode())
        frames = recv_frames(ws, 2)
        assert sorted(f.command for f in frames) == ["MESSAGE", "RECEIPT"]
        (m,) = [f for f in frames if f.command == "MESSAGE"]
        assert m.body == ("a body that is split " * 5).encode()
        assert m.header("x-pad") == "p" * 50


def test_frame_split_inside_content_length_body(node):
    dest = f"/queue/{unique('splitcl')}"
    body = b"\x00 binary \x00 with NULs \x00"
    with open_ws(node) as ws:
        ws.send(connect_frame().decode())
        recv_frames(ws, 1)
        ws.send(encode_frame("SUBSCRIBE", {"destination": dest, "id": "s", "receipt": "r1"}).decode())
        recv_frames(ws, 1)
        frame = encode_frame("SEND", {"destination": dest}, body)
        cut = frame.index(b"\n\n") + 5  # in the middle of the body, after a NUL
        ws.send(frame[:cut])
        ws.send(frame[cut:])
        (m,) = recv_frames(ws, 1)
        assert m.command == "MESSAGE" and m.body == body


def test_lf_heartbeats_from_client_are_accepted(node):
    dest = f"/topic/{unique('hb')}"
    with open_ws(node) as ws:
        ws.send(connect_frame().decode())
        recv_frames(ws, 1)
        ws.send("\n")
        ws.send(encode_frame("SUBSCRIBE", {"destination": dest, "id": "s", "receipt": "r1"}).decode())
        ws.send("\n")
        ws.send("\n")
        ws.send(encode_frame("SEND", {"destination": dest, "receipt": "r2"}, "after heartbeats").decode())
        ws.send("\n")
        frames = recv_frames(ws, 3)
        assert [f.command for f in frames].count("ERROR") == 0, frames
        assert any(f.command == "MESSAGE" and f.body == b"after heartbeats" for f in frames)


@pytest.mark.parametrize("binary", [False, True])
def test_text_and_binary_ws_messages_accepted(node, binary):
    dest = f"/topic/{unique('bin')}"
    with open_ws(node) as ws:
        send = (lambda b: ws.send(b)) if binary else (lambda b: ws.send(b.decode()))
        send(connect_frame())
        recv_frames(ws, 1)
        send(encode_frame("SUBSCRIBE", {"destination": dest, "id": "s", "receipt": "r1"}))
        send(encode_frame("SEND", {"destination": dest}, "payload"))
        frames = recv_frames(ws, 2)
        assert [f.command for f in frames] == ["RECEIPT", "MESSAGE"]
        assert frames[1].body == b"payload"


def test_non_utf8_body_is_delivered_as_binary_and_utf8_as_text(node):
    dest = f"/topic/{unique('utf')}"
    raw = b"\xff\xfe\x00\x80 not utf-8 \xc3"
    with open_ws(node) as sub, open_ws(node) as pub:
        for ws in (sub, pub):
            ws.send(connect_frame().decode())
            recv_frames(ws, 1)
        sub.send(encode_frame("SUBSCRIBE", {"destination": dest, "id": "s", "receipt": "r"}).decode())
        recv_frames(sub, 1)
        pub.send(encode_frame("SEND", {"destination": dest}, raw))  # binary WS message
        pub.send(encode_frame("SEND", {"destination": dest}, "héllo ✓").decode())
        first = sub.recv(timeout=DEFAULT_TIMEOUT)
        assert isinstance(first, bytes), "a non-UTF-8 body must be sent as a binary WebSocket message"
        (m,) = parse_frames(first)
        assert m.body == raw
        assert m.header("content-length") == str(len(raw))
        second = sub.recv(timeout=DEFAULT_TIMEOUT)
        assert isinstance(second, str), "a UTF-8 frame must be sent as a text WebSocket message"
        (m2,) = parse_frames(second.encode())
        assert m2.body.decode() == "héllo ✓"


def test_ping_is_answered_with_pong(node):
    with open_ws(node) as ws:
        ws.send(connect_frame().decode())
        recv_frames(ws, 1)
        # The sync client reads in a background thread, so the pong is seen without recv().
        for payload in (b"are you there", b""):
            pong = ws.ping(payload)
            assert pong.wait(DEFAULT_TIMEOUT), f"no pong for ping {payload!r} within the bound"
        # The connection still works afterwards.
        ws.send(encode_frame("DISCONNECT", {"receipt": "after-ping"}).decode())
        (r,) = recv_frames(ws, 1)
        assert r.header("receipt-id") == "after-ping"


def test_close_handshake_initiated_by_client(node):
    ws = open_ws(node)
    ws.send(connect_frame().decode())
    recv_frames(ws, 1)
    ws.send(encode_frame("DISCONNECT", {"receipt": "bye"}).decode())
    (r,) = recv_frames(ws, 1)
    assert r.command == "RECEIPT" and r.header("receipt-id") == "bye"
    ws.close(1000, "done")
    assert ws.protocol.close_rcvd is not None, "server did not answer the close frame"
    assert ws.protocol.close_rcvd.code == 1000


def test_close_handshake_without_disconnect(node):
    ws = open_ws(node)
    ws.send(connect_frame().decode())
    recv_frames(ws, 1)
    ws.close(1001, "going away")
    assert ws.protocol.close_rcvd is not None, "server did not answer the close frame"


def test_oversized_ws_message_closes_with_1009_and_others_keep_working(node):
    witness = StompClient.ws(node.ws_url)
    try:
        witness.connect()
        wdest = f"/topic/{unique('witness')}"
        witness.subscribe(wdest)
        with open_ws(node, max_size=None) as ws:
            ws.send(connect_frame().decode())
            recv_frames(ws, 1)
            big = encode_frame("SEND", {"destination": "/topic/big"}, "x" * (WS_LIMIT * 2))
            ws.send(big.decode())
            with pytest.raises(WsConnectionClosed) as info:
                while True:
                    ws.recv(timeout=DEFAULT_TIMEOUT)
            rcvd = info.value.rcvd
            assert rcvd is not None, "server dropped the TCP connection without a close frame"
            assert rcvd.code == 1009, f"close code {rcvd.code} ({rcvd.reason!r}), expected 1009"
        round_trip(witness, wdest)
    finally:
        witness.close()


def test_message_under_ws_limit_is_fine(node):
    dest = f"/queue/{unique('under')}"
    with StompClient.ws(node.ws_url) as c:
        c.connect()
        c.subscribe(dest)
        body = "y" * (WS_LIMIT - 1024)
        c.send(dest, body)
        (m,) = c.messages(1)
        assert m.body == body.encode()


def test_wrong_path_upgrade_is_rejected(node):
    url = f"ws://{node.host}:{node.ws_port}/not-ws"
    with pytest.raises(InvalidStatus) as info:
        ws_connect(url, proxy=None, open_timeout=DEFAULT_TIMEOUT, compression=None).close()
    assert 400 <= info.value.response.status_code < 500


def test_stomp_client_over_ws_round_trip_each_version(node):
    for version, proto in [("1.0", "v10.stomp"), ("1.1", "v11.stomp"), ("1.2", "v12.stomp")]:
        with StompClient.ws(node.ws_url, subprotocols=[proto]) as c:
            f = c.connect(version)
            assert f.header("version", "1.0") == version
            dest = f"/topic/{unique('v')}"
            c.subscribe(dest)
            round_trip(c, dest)
            c.disconnect()


# ---------------------------------------------------------------------------
# Origins
# ---------------------------------------------------------------------------

def test_allowed_origins_gate_browser_upgrades(node_factory):
    node = node_factory("--ws-allowed-origins", "https://app.example, http://localhost:8080", name="origins")

    def upgrade(origin):
        kw = {"origin": origin} if origin else {}
        with ws_connect(node.ws_url, subprotocols=["v12.stomp"], proxy=None, open_timeout=10, **kw) as ws:
            ws.send("CONNECT\naccept-version:1.2\nhost:/\n\n\x00")
            return ws.recv(timeout=10)

    assert upgrade("https://app.example").startswith("CONNECTED")
    assert upgrade("HTTPS://APP.EXAMPLE/").startswith("CONNECTED")  # case and a trailing slash don't matter
    assert upgrade("http://localhost:8080").startswith("CONNECTED")
    assert upgrade(None).startswith("CONNECTED")  # not a browser: no Origin, not refused
    with pytest.raises(InvalidStatus) as refused:
        upgrade("https://evil.example")
    assert refused.value.response.status_code == 403
    assert b"ws.allowed-origins" in refused.value.response.body


def test_any_origin_by_default(node):
    with ws_connect(node.ws_url, subprotocols=["v12.stomp"], proxy=None, origin="https://elsewhere.example") as ws:
        ws.send("CONNECT\naccept-version:1.2\nhost:/\n\n\x00")
        assert ws.recv(timeout=10).startswith("CONNECTED")


def test_an_upgrade_request_with_a_body_is_refused(node):
    """An opening handshake has no body (RFC 6455, 4.1); one that declares a body gets 400, and
    the connection holds nothing after it closes (it once kept ~6 KB: bench/upgrade_body_leak.py)."""
    import socket
    request = (b"GET /ws HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               b"Sec-WebSocket-Protocol: v12.stomp\r\n\r\nhello")
    with socket.create_connection((node.host, node.ws_port), timeout=10) as s:
        s.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
