"""Interoperability with stomp.py 8.2.0 over plain TCP and WebSocket, STOMP 1.0/1.1/1.2.

Destinations are unique per test so tests sharing the module's node don't interfere.
Absence of a delivery is only ever checked after a later "marker" delivery that the
same subscriber must receive after it (per-publisher ordering), never by sleeping.
"""

from __future__ import annotations

import contextlib
import uuid

import pytest

from stomp.protocol import Protocol10, Protocol11, Protocol12

from pyclient import TRANSPORTS, VERSIONS, PyClient

PROTOCOLS = {"1.0": Protocol10, "1.1": Protocol11, "1.2": Protocol12}

# The module-scoped default node comes from conftest.py.


def uniq(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def clients(node):
    """Factory for connected stomp.py clients; all are closed after the test."""
    opened: list = []

    def make(transport: str, version: str) -> PyClient:
        c = PyClient.for_node(node, transport, version)
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()


ALL = pytest.mark.parametrize("version", VERSIONS)
V11_UP = pytest.mark.parametrize("version", ["1.1", "1.2"])
BOTH = pytest.mark.parametrize("transport", TRANSPORTS)


@BOTH
@ALL
def test_connect_subscribe_send_receive_with_receipts(clients, transport, version):
    c = clients(transport, version)
    dest = f"/topic/{uniq('basic')}"
    c.subscribe(dest, "s1")  # waits for the RECEIPT
    c.send(dest, "hello world", headers={"x-custom": "v1"}, receipt=True)
    (m,) = c.wait_messages(1)
    assert m.body == "hello world"
    assert m.headers["destination"] == dest
    assert m.headers["subscription"] == "s1"
    assert m.headers.get("message-id")
    assert m.headers.get("x-custom") == "v1"


@BOTH
@ALL
def test_message_between_two_clients_and_transports(clients, transport, version):
    other = "ws" if transport == "tcp" else "tcp"
    sub = clients(transport, version)
    pub = clients(other, version)
    dest = f"/topic/{uniq('cross')}"
    sub.subscribe(dest, "s")
    pub.send(dest, "from the other transport", receipt=True)
    (m,) = sub.wait_messages(1)
    assert m.body == "from the other transport"


@BOTH
@V11_UP
def test_message_headers_for_client_ack(clients, transport, version):
    c = clients(transport, version)
    dest = f"/queue/{uniq('hdrs')}"
    c.subscribe(dest, "sub-x", ack="client-individual")
    c.send(dest, "m")
    (m,) = c.wait_messages(1)
    assert m.headers["subscription"] == "sub-x"
    assert m.headers["destination"] == dest
    assert m.headers.get("message-id")
    if version == "1.2":
        assert m.headers.get("ack"), f"1.2 MESSAGE in client ack mode needs an ack header: {m.headers}"
    c.ack(m)


@BOTH
@V11_UP
def test_client_individual_ack_and_nack_redelivers_to_another_consumer(clients, transport, version):
    a = clients(transport, version)
    b = clients(transport, version)
    q = f"/queue/{uniq('nack')}"
    a.subscribe(q, "a", ack="client-individual")
    a.send(q, "m1")
    a.send(q, "m2", receipt=True)
    m1, m2 = a.wait_messages(2)
    assert [m1.body, m2.body] == ["m1", "m2"]
    assert m1.headers.get("redelivered", "false") != "true"
    b.subscribe(q, "b", ack="client-individual")
    a.ack(m1)
    a.nack(m2)
    try:
        (r,) = b.wait_messages(1)
    except AssertionError as e:
        raise AssertionError(f"the NACKed message did not go to the other consumer; "
                             f"the NACKing consumer has {a.rec.bodies()} "
                             f"(redelivered flags {[m.headers.get('redelivered') for m in a.rec.messages]})") from e
    assert r.body == "m2"
    assert r.headers.get("redelivered") == "true", r.headers
    b.ack(r)
    # m1 was acked: it must never come back. Marker: the next message goes to one of them.
    a.send(q, "m3", receipt=True)
    a.send(q, "m4", receipt=True)
    a.rec.wait(lambda: len(a.rec.messages) + len(b.rec.messages) >= 5, what="m3 and m4")
    everything = a.rec.bodies() + b.rec.bodies()
    assert sorted(everything) == ["m1", "m2", "m2", "m3", "m4"], everything


@BOTH
@V11_UP
def test_unacked_messages_of_a_disconnected_consumer_are_redelivered(clients, transport, version):
    a = clients(transport, version)
    q = f"/queue/{uniq('unacked')}"
    a.subscribe(q, "a", ack="client-individual")
    for i in range(3):
        a.send(q, f"u{i}")
    a.wait_messages(3)
    b = clients(transport, version)
    b.subscribe(q, "b", ack="client-individual")
    a.drop()  # vanish without ACK or DISCONNECT
    got = b.wait_messages(3)
    assert sorted(m.body for m in got) == ["u0", "u1", "u2"]
    assert all(m.headers.get("redelivered") == "true" for m in got), [m.headers for m in got]


@BOTH
@V11_UP
def test_client_ack_is_cumulative(clients, transport, version):
    a = clients(transport, version)
    q = f"/queue/{uniq('cumul')}"
    a.subscribe(q, "a", ack="client")
    for i in range(4):
        a.send(q, f"c{i}")
    msgs = a.wait_messages(4)
    assert [m.body for m in msgs] == ["c0", "c1", "c2", "c3"]
    a.ack(msgs[1])  # acknowledges c0 and c1
    a.drop()  # c2 and c3 stay unacked -> redelivered
    b = clients(transport, version)
    b.subscribe(q, "b", ack="auto")
    b.send(q, "marker", receipt=True)
    got = b.wait_messages(3)
    bodies = [m.body for m in got]
    assert sorted(bodies) == ["c2", "c3", "marker"], bodies
    for m in got:
        if m.body != "marker":
            assert m.headers.get("redelivered") == "true", m.headers


@BOTH
@ALL
def test_transaction_commit_delivers_on_commit_only(clients, transport, version):
    pub = clients(transport, version)
    sub = clients(transport, version)
    dest = f"/topic/{uniq('tx')}"
    sub.subscribe(dest, "s")
    tx = pub.begin()
    pub.send(dest, "tx-1", transaction=tx)
    pub.send(dest, "tx-2", transaction=tx)
    pub.send(dest, "outside", receipt=True)
    sub.wait_messages(1)
    # Everything pub sent before "outside" would have arrived before it if delivered.
    assert sub.rec.bodies() == ["outside"]
    pub.commit(tx)
    sub.wait_messages(3)
    assert sub.rec.bodies() == ["outside", "tx-1", "tx-2"]


@BOTH
@ALL
def test_transaction_abort_discards(clients, transport, version):
    pub = clients(transport, version)
    sub = clients(transport, version)
    dest = f"/topic/{uniq('abort')}"
    sub.subscribe(dest, "s")
    tx = pub.begin()
    pub.send(dest, "doomed-1", transaction=tx)
    pub.send(dest, "doomed-2", transaction=tx)
    pub.abort(tx)
    pub.send(dest, "after-abort", receipt=True)
    sub.wait_messages(1)
    assert sub.rec.bodies() == ["after-abort"]


@BOTH
@ALL
def test_queue_competing_consumers_each_message_once_with_held_messages(clients, transport, version):
    pub = clients(transport, version)
    q = f"/queue/{uniq('work')}"
    held = [f"held-{i}" for i in range(6)]
    for body in held:
        pub.send(q, body)
    pub.send(q, "held-last", receipt=True)  # the queue holds these: nobody is subscribed yet
    a = clients(transport, version)
    b = clients(transport, version)
    a.subscribe(q, "a")
    b.subscribe(q, "b")
    live = [f"live-{i}" for i in range(10)]
    for body in live:
        pub.send(q, body)
    expected = held + ["held-last"] + live
    a.rec.wait(lambda: len(a.rec.messages) + len(b.rec.messages) >= len(expected),
               what=f"{len(expected)} messages across both consumers")
    got_a, got_b = a.rec.bodies(), b.rec.bodies()
    assert sorted(got_a + got_b) == sorted(expected), (got_a, got_b)
    assert not set(got_a) & set(got_b), "a message was delivered to both consumers"
    assert any(x.startswith("live") for x in got_a) and any(x.startswith("live") for x in got_b), \
        f"round robin: both consumers should get live messages: a={got_a} b={got_b}"
    # A consumer sees the messages it gets in publish order.
    for got in (got_a, got_b):
        assert got == [x for x in expected if x in got]


@BOTH
@ALL
def test_wildcard_topic_subscriptions(clients, transport, version):
    c = clients(transport, version)
    base = uniq("wild")
    c.subscribe(f"/topic/{base}.*", "star")
    c.subscribe(f"/topic/{base}.#", "hash")
    c.subscribe(f"/topic/{base}.*.leaf", "star-leaf")
    for suffix in ["", ".one", ".one.two", ".x.leaf", ".end"]:
        c.send(f"/topic/{base}{suffix}", f"to{suffix or '-base'}")
    # ".end" matches "star" and "hash"; when both copies are here, everything before them is too.
    def delivered():
        return sum(1 for m in c.rec.messages if m.body == "to.end") >= 2
    c.rec.wait(delivered, what="markers on both subscriptions")
    by_sub: dict = {}
    for m in c.rec.messages:
        by_sub.setdefault(m.headers["subscription"], []).append(m.body)
        assert m.headers["destination"].startswith(f"/topic/{base}")
        assert "*" not in m.headers["destination"] and "#" not in m.headers["destination"]
    assert by_sub.get("star") == ["to.one", "to.end"], by_sub
    assert by_sub.get("hash") == ["to-base", "to.one", "to.one.two", "to.x.leaf", "to.end"], by_sub
    assert by_sub.get("star-leaf") == ["to.x.leaf"], by_sub


@BOTH
@ALL
def test_unsubscribe_stops_delivery(clients, transport, version):
    c = clients(transport, version)
    dest = f"/topic/{uniq('unsub')}"
    c.subscribe(dest, "gone")
    c.subscribe(dest, "stays")
    c.send(dest, "first", receipt=True)
    c.wait_messages(2)
    c.unsubscribe("gone")
    c.send(dest, "second", receipt=True)
    c.rec.wait(lambda: any(m.body == "second" for m in c.rec.messages), what="second on 'stays'")
    per_sub = [(m.headers["subscription"], m.body) for m in c.rec.messages]
    assert sorted(per_sub) == sorted([("gone", "first"), ("stays", "first"), ("stays", "second")])


@BOTH
@ALL
@pytest.mark.parametrize("kind", ["topic", "queue"])
def test_order_preserved_from_one_publisher(clients, transport, version, kind):
    sub = clients(transport, version)
    pub = clients(transport, version)
    dest = f"/{kind}/{uniq('order')}"
    sub.subscribe(dest, "s")
    n = 200
    for i in range(n):
        pub.send(dest, f"n{i}")
    sub.wait_messages(n)
    assert sub.rec.bodies() == [f"n{i}" for i in range(n)]


@BOTH
@V11_UP
def test_prefetch_count_caps_unacked_messages(clients, transport, version):
    a = clients(transport, version)
    q = f"/queue/{uniq('prefetch')}"
    a.subscribe(q, "a", ack="client-individual", headers={"prefetch-count": "2"})
    for i in range(5):
        a.send(q, f"p{i}")
    a.send(q, "p5", receipt=True)
    a.wait_messages(2)
    # a is at its cap; the other four wait for a consumer with room.
    b = clients(transport, version)
    b.subscribe(q, "b", ack="auto")
    b.wait_messages(4)
    assert len(a.rec.messages) == 2, a.rec.bodies()
    assert sorted(a.rec.bodies() + b.rec.bodies()) == [f"p{i}" for i in range(6)]
    # Acking frees room: a new message can go to a again.
    for m in list(a.rec.messages):
        a.ack(m)
    b.unsubscribe("b")
    a.send(q, "after-ack", receipt=True)
    a.wait_messages(3)
    assert a.rec.bodies()[-1] == "after-ack"


@BOTH
@ALL
def test_receipt_for_disconnect(node, transport, version):
    c = PyClient.for_node(node, transport, version)
    with contextlib.ExitStack() as stack:
        stack.callback(c.drop)
        rid = uniq("bye-")
        # The protocol-level call: it sends DISCONNECT without stomp.py's unbounded wait.
        PROTOCOLS[version].disconnect(c.conn, receipt=rid)
        c.rec.wait(lambda: rid in c.rec.receipts, what="DISCONNECT receipt")
        # After the receipt, the server closes the connection (client closes it too).
        c.rec.wait(lambda: c.rec.disconnected, what="connection closed after DISCONNECT")
