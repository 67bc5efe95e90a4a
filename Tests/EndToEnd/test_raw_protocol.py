"""STOMP semantics checked frame by frame with the raw client, over TCP and WebSocket."""

from __future__ import annotations

import pytest

from stomp_raw import ConnectionClosed, StompClient, unique

TRANSPORTS = pytest.mark.parametrize("transport", ["tcp", "ws"])


@pytest.fixture
def open_client(node):
    opened: list = []

    def make(transport: str, version: str = "1.2", **connect_kw) -> StompClient:
        c = StompClient.open(node, transport)
        opened.append(c)
        c.connect(version, **connect_kw)
        return c

    yield make
    for c in opened:
        c.close()


@TRANSPORTS
@pytest.mark.parametrize("command", ["CONNECT", "STOMP"])
def test_connected_frame(node, transport, command):
    with StompClient.open(node, transport) as c:
        f = c.connect("1.0,1.1,1.2", command=command)
        assert f.header("version") == "1.2"
        hb = f.header("heart-beat", "0,0")
        assert [int(x) >= 0 for x in hb.split(",")] == [True, True], hb
        c.disconnect()


@TRANSPORTS
@pytest.mark.parametrize("accept,expected", [("1.1", "1.1"), ("1.0,1.1", "1.1"), ("1.2,1.0", "1.2")])
def test_version_negotiation(node, transport, accept, expected):
    with StompClient.open(node, transport) as c:
        assert c.connect(accept).header("version") == expected


@TRANSPORTS
def test_connect_without_accept_version_is_1_0(node, transport):
    with StompClient.open(node, transport) as c:
        c.send_frame("CONNECT", {"host": "localhost"})
        f = c.expect("CONNECTED")
        assert f.header("version", "1.0") == "1.0"


@TRANSPORTS
def test_a_client_offering_only_1_0_is_told_the_version(node, transport):
    """The negotiation answers with the version chosen, 1.0 included."""
    with StompClient.open(node, transport) as c:
        f = c.connect("1.0")
        assert f.header("version") == "1.0"
        assert f.header("session")


@TRANSPORTS
@pytest.mark.parametrize("command", ["SUBSCRIBE", "UNSUBSCRIBE", "BEGIN", "DISCONNECT"])
def test_a_body_on_a_frame_other_than_send_is_an_error(open_client, node, transport, command):
    c = open_client(transport)
    headers = {"destination": f"/queue/{unique('b')}", "id": "s1", "transaction": "t1", "receipt": "r1"}
    c.send_frame(command, headers, "unexpected")
    error = c.expect("ERROR")
    assert error.header("message") == "body not allowed"
    assert error.header("receipt-id") == "r1"
    assert command in error.text
    # The node goes on serving everyone else.
    other = open_client(transport)
    q = f"/queue/{unique('alive')}"
    other.subscribe(q)
    other.send(q, "still here")
    assert [m.body for m in other.messages(1)] == [b"still here"]


@TRANSPORTS
def test_frames_as_large_as_rabbitmq_accepts_by_default(open_client, transport):
    """1,000 headers and a 4 MiB body pass the defaults and arrive whole, several in a row."""
    sub = open_client(transport)
    q = f"/queue/{unique('big')}"
    sub.subscribe(q)
    pub = open_client(transport)
    headers = {f"x-h{i}": f"v{i}" for i in range(997)}  # + destination, receipt, content-length
    body = bytes(range(256)) * (4 * 1024 * 4)
    assert len(body) == 4 * 1024 * 1024
    for _ in range(3):  # a burst of them is no slow consumer's backlog
        pub.send(q, body, headers=headers)
    pub.send(q, "last", receipt=True)
    *big, last = sub.messages(4, timeout=60)
    assert last.body == b"last"
    for m in big:
        assert m.body == body
        assert all(m.header(f"x-h{i}") == f"v{i}" for i in range(997))


@TRANSPORTS
def test_receipt_for_every_client_frame(open_client, transport):
    c = open_client(transport)
    q = f"/queue/{unique('rcpt')}"
    receipts = []

    def send(cmd, headers, body=b""):
        rid = unique(cmd.lower())
        receipts.append(rid)
        c.send_frame(cmd, {**headers, "receipt": rid}, body)
        return rid

    send("SUBSCRIBE", {"destination": q, "id": "s", "ack": "client-individual"})
    send("SEND", {"destination": q}, "one")
    send("SEND", {"destination": q}, "two")
    frames = c.collect(lambda fs: sum(f.command == "MESSAGE" for f in fs) >= 2
                       and sum(f.command == "RECEIPT" for f in fs) >= 3)
    m1, m2 = [f for f in frames if f.command == "MESSAGE"]
    send("ACK", {"id": m1.header("ack")})
    send("NACK", {"id": m2.header("ack")})
    send("BEGIN", {"transaction": "t1"})
    send("SEND", {"destination": f"/topic/{unique('x')}", "transaction": "t1"}, "in tx")
    send("COMMIT", {"transaction": "t1"})
    send("BEGIN", {"transaction": "t2"})
    send("ABORT", {"transaction": "t2"})
    send("UNSUBSCRIBE", {"id": "s"})
    send("DISCONNECT", {})
    frames += c.wait_closed()
    got = [f.header("receipt-id") for f in frames if f.command == "RECEIPT"]
    assert got == receipts, "a RECEIPT per frame, in order"
    assert not [f for f in frames if f.command == "ERROR"], frames


@TRANSPORTS
@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_message_frame_headers(open_client, transport, version):
    c = open_client(transport, version)
    q = f"/queue/{unique('mh')}"
    c.subscribe(q, sub_id="the-sub", ack="client")
    c.send(q, "body", headers={"content-type": "text/plain", "x-app": "yes"})
    (m,) = c.messages(1)
    h = m.headers
    assert h["subscription"] == "the-sub"
    assert h["destination"] == q
    assert h.get("message-id")
    assert h.get("x-app") == "yes"
    assert h.get("content-type") == "text/plain"
    if version == "1.2":
        assert h.get("ack"), h
    c.send_frame("ACK", {"id": h["ack"]} if version == "1.2"
                 else {"message-id": h["message-id"], "subscription": "the-sub"}, b"")
    c.disconnect()


@TRANSPORTS
def test_subscribe_without_id_is_allowed_in_1_0(open_client, transport):
    c = open_client(transport, "1.0")
    dest = f"/topic/{unique('noid')}"
    c.send_frame("SUBSCRIBE", {"destination": dest, "receipt": "r1"})
    c.await_receipt("r1")
    c.send(dest, "ten")
    (m,) = c.messages(1)
    assert m.body == b"ten"


@TRANSPORTS
def test_binary_body_with_nul_bytes(open_client, transport):
    c = open_client(transport)
    q = f"/queue/{unique('bin')}"
    body = bytes(range(256)) * 4
    c.subscribe(q)
    c.send(q, body, headers={"content-type": "application/octet-stream"})
    (m,) = c.messages(1)
    assert m.body == body
    assert m.header("content-length") == str(len(body))


@TRANSPORTS
def test_empty_body_and_utf8_headers(open_client, transport):
    c = open_client(transport)
    q = f"/queue/{unique('empty')}"
    c.subscribe(q)
    c.send(q, b"", headers={"x-unicode": "grüße ✓"})
    (m,) = c.messages(1)
    assert m.body == b""
    assert m.header("x-unicode") == "grüße ✓"


@TRANSPORTS
def test_repeated_header_first_wins(open_client, transport):
    c = open_client(transport)
    q = f"/queue/{unique('rep')}"
    c.subscribe(q)
    c.send_frame("SEND", [("destination", q), ("x-dup", "first"), ("x-dup", "second")], "r")
    (m,) = c.messages(1)
    assert m.header("x-dup") == "first"


@TRANSPORTS
def test_crlf_line_endings_are_accepted(open_client, transport):
    c = open_client(transport)
    q = f"/queue/{unique('crlf')}"
    c.subscribe(q)
    c.send_raw(f"SEND\r\ndestination:{q}\r\nreceipt:crlf\r\n\r\nwindows\x00".encode())
    c.await_receipt("crlf")
    (m,) = c.messages(1)
    assert m.body == b"windows"


def test_client_heartbeats_over_tcp_are_accepted(node):
    with StompClient.tcp(node.host, node.stomp_port) as c:
        # We promise no heart-beats (0) so the server won't expect them; we send a few anyway.
        c.connect("1.2", headers={"heart-beat": "0,0"})
        dest = f"/topic/{unique('hb')}"
        c.send_raw(b"\n")
        c.subscribe(dest)
        c.send_raw(b"\r\n\n")
        c.send(dest, "still alive", receipt=True)
        c.send_raw(b"\n")
        assert [m.body for m in c.messages(1)] == [b"still alive"]


def test_queue_message_held_until_consumer_subscribes(open_client):
    pub = open_client("tcp")
    q = f"/queue/{unique('held')}"
    for i in range(3):
        pub.send(q, f"h{i}")
    pub.send(q, "h3", receipt=True)
    sub = open_client("ws")
    sub.subscribe(q)
    assert [m.body for m in sub.messages(4)] == [b"h0", b"h1", b"h2", b"h3"]


@TRANSPORTS
def test_subscribe_receipt_comes_before_the_messages_it_releases(open_client, transport):
    """As RabbitMQ and ActiveMQ do: a client that waits for the RECEIPT before reading
    messages must find the RECEIPT first."""
    pub = open_client("tcp")
    q = f"/queue/{unique('first')}"
    for i in range(3):
        pub.send(q, f"m{i}")
    pub.send(q, "m3", receipt=True)
    sub = open_client(transport)
    sub.send_frame("SUBSCRIBE", {"id": "s", "destination": q, "receipt": "sub"})
    first = sub.recv_frame()
    assert (first.command, first.header("receipt-id")) == ("RECEIPT", "sub"), first
    assert [sub.expect("MESSAGE").body for _ in range(4)] == [b"m0", b"m1", b"m2", b"m3"]


def test_topic_message_without_subscriber_is_not_held(open_client):
    pub = open_client("tcp")
    t = f"/topic/{unique('gone')}"
    pub.send(t, "nobody listens", receipt=True)
    sub = open_client("tcp")
    sub.subscribe(t)
    pub.send(t, "marker", receipt=True)
    (m,) = sub.messages(1)
    assert m.body == b"marker"


def test_ack_in_aborted_transaction_does_not_ack(open_client):
    a = open_client("tcp")
    q = f"/queue/{unique('acktx')}"
    a.subscribe(q, ack="client-individual")
    a.send(q, "one")
    (m,) = a.messages(1)
    a.send_frame("BEGIN", {"transaction": "tx"})
    a.send_frame("ACK", {"id": m.header("ack"), "transaction": "tx"})
    a.send_frame("ABORT", {"transaction": "tx", "receipt": "aborted"})
    a.await_receipt("aborted")
    # The ACK was aborted: the message is still unacked; another consumer gets it when a leaves.
    b = open_client("tcp")
    b.subscribe(q)
    a.close()
    (r,) = b.messages(1)
    assert r.body == b"one" and r.header("redelivered") == "true"


def test_max_subscriptions_limit(node_factory):
    node = node_factory("--max-subscriptions", "3", name="maxsubs")
    with StompClient.tcp(node.host, node.stomp_port) as c:
        c.connect()
        for i in range(3):
            c.subscribe(f"/topic/s{i}", sub_id=f"s{i}")
        c.send_frame("SUBSCRIBE", {"destination": "/topic/s3", "id": "s3"})
        frames = c.wait_closed()
        assert frames and frames[-1].command == "ERROR", frames
        assert frames[-1].header("message"), frames[-1]


def test_max_unacked_default_prefetch(node_factory):
    node = node_factory("--max-unacked", "2", name="maxunacked")
    with StompClient.tcp(node.host, node.stomp_port) as a, StompClient.tcp(node.host, node.stomp_port) as b:
        a.connect()
        b.connect()
        q = f"/queue/{unique('mu')}"
        a.subscribe(q, ack="client-individual")
        for i in range(5):
            b.send(q, f"m{i}")
        b.send(q, "m5", receipt=True)
        first = a.messages(2)
        b.subscribe(q, ack="auto")
        rest = b.messages(4)
        # a holds exactly its 2 unacked messages; b got the other 4 (each message once).
        assert sorted(x.body for x in first + rest) == [f"m{i}".encode() for i in range(6)]


def test_max_queue_depth_bounds_held_messages(node_factory):
    """Messages held for a queue without consumers are bounded by --max-queue-depth.
    (What the publisher is told on overflow is the server's choice: an ERROR, or nothing.)"""
    node = node_factory("--max-queue-depth", "5", name="maxdepth")
    q = f"/queue/{unique('depth')}"
    with StompClient.tcp(node.host, node.stomp_port) as pub:
        pub.connect()
        for i in range(20):
            # The ERROR for the 6th may close the connection before the 20th is written.
            pub.send_frame("SEND", {"destination": q, "receipt": f"d{i}"}, f"m{i}", ignore_closed=True)
        try:
            pub.collect(lambda fs: sum(f.command == "RECEIPT" for f in fs) >= 20
                        or any(f.command == "ERROR" for f in fs))
        except ConnectionClosed:
            pass
    with StompClient.tcp(node.host, node.stomp_port) as sub:
        sub.connect()
        sub.subscribe(q)
        # Held messages are delivered before a message sent after the SUBSCRIBE.
        sub.send(q, "marker")
        frames = sub.collect(lambda fs: any(f.body == b"marker" for f in fs))
        held = [f.body for f in frames if f.command == "MESSAGE" and f.body != b"marker"]
        assert 1 <= len(held) <= 5, held


@TRANSPORTS
def test_rabbitmq_destination_names(open_client, transport):
    """What RabbitMQ Web-STOMP applications name: /exchange/amq.topic/KEY is /topic/KEY,
    /amq/queue/NAME and a bare NAME are /queue/NAME, ActiveMQ's trailing '>' is '#'; each
    MESSAGE names the canonical form, and x- headers and content-type pass unchanged."""
    key = unique("k")
    sub = open_client(transport)
    sub.subscribe(f"/topic/{key}.>", "wild")
    sub.subscribe(f"/exchange/amq.topic/{key}.exact", "exact")
    queue = unique("q")
    worker = open_client(transport)
    worker.subscribe(queue, "bare")
    pub = open_client("tcp")
    pub.send(f"/exchange/amq.topic/{key}.exact", "via exchange",
             headers={"x-trace": "t-1", "content-type": "application/json"})
    pub.send(f"/topic/{key}.exact", "via topic")
    pub.send(f"/amq/queue/{queue}", "via amq queue")
    pub.send(f"/queue/{queue}", "via queue", receipt=True)
    got = sub.messages(4)
    bodies = sorted((m.header("subscription"), m.body) for m in got)
    assert bodies == [("exact", b"via exchange"), ("exact", b"via topic"),
                      ("wild", b"via exchange"), ("wild", b"via topic")]
    assert {m.header("destination") for m in got} == {f"/topic/{key}.exact"}
    first = next(m for m in got if m.body == b"via exchange")
    assert (first.header("x-trace"), first.header("content-type")) == ("t-1", "application/json")
    work = worker.messages(2)
    assert [m.body for m in work] == [b"via amq queue", b"via queue"]
    assert {m.header("destination") for m in work} == {f"/queue/{queue}"}
