"""Protocol violations: each gets an ERROR frame (with a meaningful `message` header and
a readable body) and then the connection is closed, while clients already connected to
the same node keep working (checked by a round trip through them after every case).

Every case runs over plain TCP and over WebSocket (one WS message per send).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from nodes import module_node
from stomp_raw import StompClient, encode_frame, http_request, round_trip, unique

MAX_BODY = 4096
MAX_FRAME = 8192
MAX_HEADERS = 20
MAX_HEADER_LINE = 1024

node = module_node(
    "--max-body-size", str(MAX_BODY),
    "--max-frame-size", str(MAX_FRAME),
    "--max-header-count", str(MAX_HEADERS),
    "--max-header-line-length", str(MAX_HEADER_LINE),
    "--max-websocket-message-size", str(1024 * 1024),
    name="bad-input",
)


@pytest.fixture(scope="module")
def witnesses(node):
    """Clients connected before any bad input, one per transport, each subscribed to a topic."""
    out = []
    for transport in ("tcp", "ws"):
        c = StompClient.open(node, transport)
        c.connect()
        dest = f"/topic/{unique('witness-' + transport)}"
        c.subscribe(dest)
        out.append((c, dest))
    yield out
    for c, _ in out:
        c.close()


def check_witnesses(witnesses):
    for c, dest in witnesses:
        round_trip(c, dest)


def frame(cmd, headers=None, body=b"", **kw) -> bytes:
    return encode_frame(cmd, headers, body, **kw)


def raw_frame(head: str, body: bytes = b"") -> bytes:
    """A frame written by hand: `head` is the command and header lines (no escaping)."""
    return head.encode() + b"\n\n" + body + b"\x00"


@dataclass
class Case:
    name: str
    payload: bytes
    words: str  # regex: the ERROR's message/body must mention one of these
    connect: str | None = "1.2"  # version to CONNECT with first; None = send payload first


def _pad_headers(n: int, size: int) -> str:
    return "\n".join(f"x-pad-{i}:{'v' * size}" for i in range(n))


CASES = [
    Case("garbage-before-connect", b"\xde\xad\xbe\xef garbage \x01\x02\n\n\x00",
         r"command|frame|invalid|malformed|unknown|connect|protocol|parse", connect=None),
    Case("garbage-after-connect", b"\xff\xfe\xfd garbage \x01\n\n\x00",
         r"command|frame|invalid|malformed|unknown|protocol|parse"),
    Case("frame-before-connect", frame("SEND", {"destination": "/queue/early"}, "hi"),
         r"connect", connect=None),
    Case("subscribe-before-connect", frame("SUBSCRIBE", {"destination": "/queue/early", "id": "1"}),
         r"connect", connect=None),
    Case("unknown-command", raw_frame("FROBNICATE\nfoo:bar"), r"command|unknown|frobnicate"),
    Case("lowercase-command", raw_frame("send\ndestination:/queue/x", b"lower"), r"command|unknown|send"),
    Case("send-without-destination", raw_frame("SEND\nx-foo:bar", b"nowhere"), r"destination"),
    Case("subscribe-without-destination", raw_frame("SUBSCRIBE\nid:1"), r"destination"),
    Case("subscribe-without-id-1.2", raw_frame("SUBSCRIBE\ndestination:/topic/noid"),
         r"\bid\b|subscription"),
    Case("subscribe-without-id-1.1", raw_frame("SUBSCRIBE\ndestination:/topic/noid"),
         r"\bid\b|subscription", connect="1.1"),
    Case("unsubscribe-without-id", raw_frame("UNSUBSCRIBE"), r"\bid\b|subscription"),
    Case("duplicate-subscription-id",
         frame("SUBSCRIBE", {"destination": "/topic/dup-a", "id": "same"})
         + frame("SUBSCRIBE", {"destination": "/topic/dup-b", "id": "same"}),
         r"duplicate|already|exist|in use|same|subscription"),
    Case("send-in-unknown-transaction", frame("SEND", {"destination": "/queue/tx", "transaction": "nope"}, "x"),
         r"transaction"),
    Case("commit-unknown-transaction", frame("COMMIT", {"transaction": "nope"}), r"transaction"),
    Case("abort-unknown-transaction", frame("ABORT", {"transaction": "nope"}), r"transaction"),
    Case("begin-without-transaction", raw_frame("BEGIN"), r"transaction"),
    Case("ack-unknown-id", frame("ACK", {"id": "no-such-message"}), r"ack|message|unknown|\bid\b"),
    Case("nack-unknown-id", frame("NACK", {"id": "no-such-message"}), r"nack|ack|message|unknown|\bid\b"),
    Case("body-over-max-with-content-length",
         frame("SEND", {"destination": "/queue/big"}, b"b" * (MAX_BODY + 500)),
         r"size|large|limit|exceed|long|body|big"),
    Case("body-over-max-without-content-length",
         frame("SEND", {"destination": "/queue/big"}, b"b" * (MAX_BODY + 500), content_length=False),
         r"size|large|limit|exceed|long|body|big"),
    Case("frame-over-max-frame-size",
         raw_frame("SEND\ndestination:/queue/bigframe\n" + _pad_headers(10, 600), b"f" * (MAX_BODY - 100)),
         r"size|large|limit|exceed|long|frame|big"),
    Case("header-line-too-long",
         raw_frame("SEND\ndestination:/queue/x\nx-long:" + "l" * (MAX_HEADER_LINE + 100), b"x"),
         r"header|line|long|limit|exceed|size"),
    Case("too-many-headers",
         raw_frame("SEND\ndestination:/queue/x\n" + _pad_headers(MAX_HEADERS + 10, 5), b"x"),
         r"header|limit|exceed|many"),
    Case("content-length-not-numeric",
         raw_frame("SEND\ndestination:/queue/x\ncontent-length:abc", b"abc"),
         r"content-length|length|invalid"),
    Case("content-length-negative",
         raw_frame("SEND\ndestination:/queue/x\ncontent-length:-1", b"abc"),
         r"content-length|length|invalid"),
    Case("content-length-body-not-followed-by-nul",
         raw_frame("SEND\ndestination:/queue/x\ncontent-length:3", b"hello world"),
         r"content-length|length|nul|null|terminat|frame|body"),
    Case("unsupported-accept-version",
         raw_frame("CONNECT\naccept-version:2.0,3.1\nhost:localhost"),
         r"version", connect=None),
    Case("bad-escape-in-1.2-header",
         raw_frame("SEND\ndestination:/queue/x\nx-bad:tab\\there", b"x"),
         r"escape|header|invalid"),
    Case("bad-escape-in-1.1-header",
         raw_frame("SEND\ndestination:/queue/x\nx-bad:back\\slash", b"x"),
         r"escape|header|invalid", connect="1.1"),
    Case("header-without-colon",
         raw_frame("SEND\ndestination:/queue/x\nthis line has no colon", b"x"),
         r"header|colon|malformed|invalid"),
]


@pytest.mark.parametrize("transport", ["tcp", "ws"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_error_then_close(node, witnesses, case, transport):
    with StompClient.open(node, transport) as c:
        if case.connect:
            c.connect(case.connect)
        c.send_raw(case.payload, ignore_closed=True)
        frames = c.wait_closed()
        errors = [f for f in frames if f.command == "ERROR"]
        assert errors, f"no ERROR frame before the server closed the connection; got {frames!r}"
        assert frames[-1].command == "ERROR", f"frames after the ERROR: {frames!r}"
        err = errors[0]
        message = err.header("message")
        assert message and message.strip(), f"ERROR without a message header: {err!r}"
        assert err.body, f"ERROR without a body: {err!r}"
        body = err.body.decode("utf-8")  # readable: valid UTF-8 text
        assert re.search(case.words, f"{message}\n{body}", re.I), \
            f"ERROR does not say what went wrong ({case.words!r}): message={message!r} body={body!r}"
    check_witnesses(witnesses)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_frames_within_limits_are_accepted(node, witnesses, transport):
    """Control for the limit cases: just under each limit goes through."""
    with StompClient.open(node, transport) as c:
        c.connect()
        dest = f"/queue/{unique('limits')}"
        c.subscribe(dest)
        c.send(dest, b"z" * MAX_BODY, receipt=True)
        c.send(dest, "long header", headers={"x-long": "l" * (MAX_HEADER_LINE // 2)}, receipt=True)
        c.send(dest, "many headers", headers={f"x-h{i}": "v" for i in range(MAX_HEADERS // 2)}, receipt=True)
        ms = c.messages(3)
        assert ms[0].body == b"z" * MAX_BODY
        assert ms[1].header("x-long") == "l" * (MAX_HEADER_LINE // 2)
        assert ms[2].header("x-h0") == "v"
        c.disconnect()
    check_witnesses(witnesses)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_valid_escapes_in_12_headers_round_trip(node, transport):
    with StompClient.open(node, transport) as c:
        c.connect("1.2")
        dest = f"/queue/{unique('esc')}"
        c.subscribe(dest)
        value = "a:b\\c\nd\re"
        c.send(dest, "esc", headers={"x-esc": value}, receipt=True)
        (m,) = c.messages(1)
        assert m.header("x-esc") == value


def test_plain_http_get_on_ws_path_gets_426(node, witnesses):
    status, raw, closed = http_request(node.host, node.ws_port,
                                       b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status == 426, raw[:300]
    assert closed, f"server kept the connection open after its response: {raw[:300]!r}"
    check_witnesses(witnesses)


def test_plain_http_get_on_other_path_gets_404(node, witnesses):
    status, raw, closed = http_request(node.host, node.ws_port,
                                       b"GET /elsewhere HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status == 404, raw[:300]
    assert closed, f"server kept the connection open after its response: {raw[:300]!r}"
    check_witnesses(witnesses)


def test_garbage_instead_of_http_on_ws_port_gets_4xx_and_close(node, witnesses):
    """Not HTTP at all: the server answers 4xx and closes the connection (no hang)."""
    status, raw, closed = http_request(node.host, node.ws_port, b"\x16\x03\x01 this is not http\r\n\r\n")
    assert 400 <= status < 500, raw[:300]
    assert closed, f"server answered but kept the connection open for 10s: {raw[:300]!r}"
    check_witnesses(witnesses)
