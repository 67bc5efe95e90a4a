"""Bounds in bytes, count and matching cost, against the real node over TCP and WebSocket.

Each bound reached gets the client an ERROR whose message names it (and whose body names
the setting), then a close, while a client already connected keeps being served. The
adversarial topic pattern that once stalled a node for seconds per publish is matched in
polynomial time, on one node and through a peer's interest table.
"""

from __future__ import annotations

import re
import urllib.request

import pytest

from cluster import Cluster
from nodes import module_node, wait_for
from rawconn import RawConn, stomp_frame, ws_frame
from stomp_raw import StompClient, encode_frame, round_trip, unique

node = module_node(
    "--max-queue-bytes", str(64 * 1024),
    "--max-queues", "20",
    "--max-transaction-bytes", str(32 * 1024),
    "--max-unacked-bytes", str(16 * 1024),
    "--max-destination-length", "200",
    "--max-destination-words", "30",
    "--max-node-inbound-bytes", str(256 * 1024),
    name="bounds",
)

TRANSPORTS = ("tcp", "ws")
KIB = b"k" * 1024


class Witness:
    """A client connected before any bound is reached, subscribed to a topic of its own; it
    must keep being served whatever the others do."""

    def __init__(self, node):
        self.client = StompClient.open(node, "tcp")
        self.client.connect()
        self.topic = f"/topic/{unique('witness')}"
        self.client.subscribe(self.topic)

    def still_served(self) -> None:
        round_trip(self.client, self.topic)


@pytest.fixture(scope="module")
def witness(node):
    w = Witness(node)
    yield w
    w.client.close()


def send_until_closed(client: StompClient, command: str, headers: dict, body: bytes = b"") -> None:
    """Sends a frame that may find the connection already closed by an earlier ERROR."""
    client.send_raw(encode_frame(command, headers, body, version=client.version), ignore_closed=True)


def frames_until_quiet(client: StompClient, quiet: float = 0.7) -> list:
    """Every frame that arrives until none has for `quiet` seconds (bounded: at most 200)."""
    frames = []
    while len(frames) < 200:
        try:
            frames.append(client.recv_frame(quiet))
        except TimeoutError:
            break
    return frames


def expect_error(client: StompClient, pattern: str, setting: str) -> None:
    frames = client.wait_closed()
    errors = [f for f in frames if f.command == "ERROR"]
    assert errors, f"expected an ERROR, got {frames!r}"
    assert re.search(pattern, errors[0].header("message", "")), errors[0]
    assert setting in errors[0].text, f"the ERROR body names {setting}: {errors[0].text!r}"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_queue_bytes_budget(node, witness, transport):
    queue = f"/queue/{unique('bytes')}"
    client = StompClient.open(node, transport)
    client.connect()
    # 50 messages of about 1.1 KiB each fit in the 64 KiB budget; 16 more KiB don't.
    for _ in range(50):
        client.send(queue, KIB)
    client.send(queue, KIB * 16)
    expect_error(client, "queue bytes budget", "limits.queue-bytes")
    # The messages held are still there for a consumer, and the budget frees up as they go.
    consumer = StompClient.open(node, transport)
    consumer.connect()
    consumer.subscribe(queue)
    assert len(consumer.messages(50)) == 50
    consumer.send(queue, KIB * 16, receipt=True)
    consumer.close()
    witness.still_served()


def test_queue_count_limit(node, witness):
    client = StompClient.open(node, "tcp")
    client.connect()
    names = [f"/queue/{unique('many')}" for _ in range(25)]
    for name in names:
        send_until_closed(client, "SEND", {"destination": name}, b"x")
    expect_error(client, "too many queues", "limits.queues")
    # Drain what was made, so the module's other tests have queues to use.
    drainer = StompClient.open(node, "tcp")
    drainer.connect()
    for name in names[:20]:
        drainer.subscribe(name)
    drainer.close()
    witness.still_served()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_transaction_bytes_budget(node, witness, transport):
    client = StompClient.open(node, transport)
    client.connect()
    client.send_frame("BEGIN", {"transaction": "t1"})
    for _ in range(20):
        send_until_closed(client, "SEND", {"destination": f"/queue/{unique('tx')}", "transaction": "t1"}, KIB * 2)
    expect_error(client, "transaction bytes budget", "limits.transaction-bytes")
    witness.still_served()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unacked_bytes_budget_stops_a_queue_consumer_until_it_acks(node, transport):
    queue = f"/queue/{unique('unacked')}"
    producer = StompClient.open(node, "tcp")
    producer.connect()
    for index in range(30):
        producer.send(queue, (b"%03d" % index) + KIB)
    producer.close()
    consumer = StompClient.open(node, transport)
    consumer.connect()
    consumer.subscribe(queue, ack="client-individual")
    # 16 KiB of unacknowledged deliveries is the budget: about 15 of the 30, then none until
    # an ACK frees room.
    first = frames_until_quiet(consumer)
    assert all(f.command == "MESSAGE" for f in first), first
    assert 10 <= len(first) < 30, f"{len(first)} unacknowledged deliveries"
    for frame in first:
        consumer.send_frame("ACK", {"id": frame.header("ack")})
    rest = consumer.messages(30 - len(first))
    for frame in rest:
        consumer.send_frame("ACK", {"id": frame.header("ack")})
    assert [f.body[:3] for f in first + rest] == [b"%03d" % i for i in range(30)]
    consumer.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_destination_length_and_words(node, witness, transport):
    client = StompClient.open(node, transport)
    client.connect()
    client.send_frame("SEND", {"destination": "/topic/" + "a" * 300}, b"x")
    expect_error(client, "destination too long", "limits.destination-length")
    client = StompClient.open(node, transport)
    client.connect()
    client.send_frame("SUBSCRIBE", {"destination": "/topic/" + ".".join(["#"] * 31), "id": "1"})
    expect_error(client, "too many words", "limits.destination-words")
    witness.still_served()


ADVERSARIAL = "/topic/" + ".".join(["#"] * 8)
LONG_TOPIC = "/topic/" + ".".join(["w"] * 25)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_adversarial_pattern_does_not_stall_the_node(node, witness, transport):
    subscriber = StompClient.open(node, transport)
    subscriber.connect()
    subscriber.subscribe(ADVERSARIAL)
    publisher = StompClient.open(node, "tcp")
    publisher.connect()
    # Each publish took seconds with an exponential matcher; twenty, each with a receipt,
    # now finish well inside the default wait.
    for index in range(20):
        publisher.send(LONG_TOPIC + f".{index}", f"m{index}", receipt=True)
    assert [f.text for f in subscriber.messages(20)] == [f"m{i}" for i in range(20)]
    witness.still_served()
    subscriber.close()
    publisher.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_node_inbound_budget(node, witness, transport):
    """Frames still arriving, over all connections (limits.node-inbound-bytes, 256 KiB
    here): each of two clients holds an unfinished frame well under its own frame bound;
    the one whose frame grows past the node's budget is let go, the other finishes its
    frame and goes on."""
    topic = f"/topic/{unique('inbound')}"
    holder = StompClient.open(node, "tcp")
    holder.connect()
    holder.send_raw(b"SEND\ndestination:" + topic.encode() + b"\n\n" + b"h" * (150 * 1024))
    # The node has read all of it before the other frame arrives, or the holder might be the
    # one whose frame grows past the budget.
    wait_for(lambda: gauge(node, "stomp_inbound_bytes") >= 150 * 1024, 10, message="the unfinished frame counted")
    grower = StompClient.open(node, transport)
    grower.connect()
    grower.send_raw(b"SEND\ndestination:" + topic.encode() + b"\n\n" + b"g" * (150 * 1024), ignore_closed=True)
    expect_error(grower, "node inbound budget", "limits.node-inbound-bytes")
    holder.send_raw(b"\0")
    holder.send(topic, "after", receipt=True)
    holder.close()
    witness.still_served()


def test_node_inbound_budget_counts_websocket_messages_still_arriving(node, witness):
    """Over WebSocket, the same budget counts what NIO's layers hold before STOMP sees it:
    the fragments of a message without its final fragment, and a frame still arriving.
    Each client stays under limits.websocket-message-size; together they don't."""
    topic = f"/topic/{unique('wsinbound')}"
    before = gauge(node, "stomp_inbound_bytes")
    holder = RawConn.open(node, "ws")
    holder.connect()
    holder.sock.sendall(ws_frame(b"SEND\ndestination:" + topic.encode() + b"\n\n" + b"h" * (150 * 1024), fin=False))
    wait_for(lambda: gauge(node, "stomp_inbound_bytes") >= before + 150 * 1024, 10,
             message="the fragments counted")
    grower = RawConn.open(node, "ws")
    grower.connect()
    frame = ws_frame(b"SEND\ndestination:" + topic.encode() + b"\n\n" + b"g" * (200 * 1024) + b"\0")
    grower.sock.sendall(frame[:150 * 1024])  # one frame, not all of it yet
    error = grower.expect("ERROR")
    assert b"message:node inbound budget exceeded" in error and b"limits.node-inbound-bytes" in error
    grower.close()
    holder.sock.sendall(ws_frame(b"\0", opcode=0x0))  # the final fragment
    holder.send(stomp_frame("SEND", {"destination": topic, "receipt": "r"}, b"after"))
    holder.expect("RECEIPT")
    holder.close()
    wait_for(lambda: gauge(node, "stomp_inbound_bytes") <= before, 10, message="every byte given back")
    witness.still_served()


def gauge(node, name: str) -> float:
    with urllib.request.urlopen(f"{node.admin_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(r"^%s(\{[^}]*\})? (\S+)" % re.escape(name), text, re.M)
    return float(found.group(2)) if found else 0.0


def test_metrics_show_use_and_limits(node):
    with urllib.request.urlopen(f"{node.admin_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    for name in ("limits.queue-bytes", "limits.queues", "limits.transaction-bytes", "limits.unacked-bytes",
                 "limits.node-outbound-bytes", "limits.node-inbound-bytes", "limits.pending-connections",
                 "timeouts.connect-ms"):
        assert re.search(r'node_limit\{name="%s"\} \d+' % re.escape(name), text), f"no limit {name} in /metrics"
    for gauge in ("stomp_queued_bytes", "stomp_queues", "stomp_outbound_bytes", "stomp_inbound_bytes",
                  "stomp_pending_connections"):
        assert re.search(r"^%s(\{[^}]*\})? \d+" % gauge, text, re.M), f"no gauge {gauge} in /metrics"
    assert 'stomp_frame_errors_total{kind="queue_bytes_limit"}' in text


def test_adversarial_pattern_through_a_peers_interest(tmp_path):
    cluster = Cluster(tmp_path / "adversarial", size=2).start()
    try:
        subscriber = StompClient.open(cluster["n2"], "tcp")
        subscriber.connect()
        subscriber.subscribe(ADVERSARIAL)  # its receipt waits until n1 holds the pattern
        publisher = StompClient.open(cluster["n1"], "ws")
        publisher.connect()
        for index in range(20):
            publisher.send(LONG_TOPIC + f".{index}", f"m{index}", receipt=True)
        assert [f.text for f in subscriber.messages(20)] == [f"m{i}" for i in range(20)]
        subscriber.close()
        publisher.close()
    finally:
        problems = cluster.stop()
        assert not problems, "\n".join(problems)
