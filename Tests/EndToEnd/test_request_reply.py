"""Request/reply as RabbitMQ Web-STOMP applications do it: a SEND with
`reply-to:/temp-queue/NAME` gives the requester a private queue, the responder reads the
rewritten `reply-to` (`/reply-queue/amq.gen-...`) and sends there, and the reply arrives on
the requester's subscription `/temp-queue/NAME`: on one node, across nodes, over stomp.py
and raw frames. The queue goes with its connection, no one else may subscribe to it, and
each connection holds a bounded number of them (limits.temp-queues).
"""

from __future__ import annotations

import re
import urllib.request

import pytest

from cluster import running_cluster
from pyclient import PyClient
from stomp_raw import StompClient, unique

WAIT = 10.0
REPLY_QUEUE = re.compile(r"^/reply-queue/amq\.gen-[0-9a-f]{32}$")


def metric(node, line_prefix: str) -> float:
    with urllib.request.urlopen(node.admin_url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(line_prefix)]
    return sum(values)


def serve_one(responder: StompClient, prefix: str = "re: ") -> str:
    """The responder answers one request to the reply-to it carries; returns that reply-to."""
    request = responder.expect("MESSAGE", timeout=WAIT)
    reply_to = request.header("reply-to")
    assert reply_to and REPLY_QUEUE.match(reply_to), request
    responder.send(reply_to, prefix + request.text,
                   headers={"correlation-id": request.header("correlation-id") or ""}, receipt=True)
    return reply_to


@pytest.fixture
def cluster(tmp_path):
    yield from running_cluster(tmp_path / "cluster", seeds="all")


@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_stomp_py_request_and_reply_on_one_node(node, transport):
    """stomp.py as the requester, a raw client as the responder."""
    service = f"/queue/{unique('svc')}"
    with StompClient.open(node, "tcp") as responder:
        responder.connect("1.2")
        responder.subscribe(service, "requests")
        requester = PyClient.for_node(node, transport, "1.2")
        try:
            requester.send(service, "ping", headers={"reply-to": "/temp-queue/answers", "correlation-id": "c-1"},
                           receipt=True)
            serve_one(responder)
            requester.rec.wait(lambda: requester.rec.messages, WAIT, "the reply")
            reply = requester.rec.messages[0]
            assert reply.body == "re: ping"
            assert reply.headers["subscription"] == "/temp-queue/answers"
            assert reply.headers["correlation-id"] == "c-1"
            assert not requester.rec.errors
        finally:
            requester.close(timeout=2.0)


def test_replies_cross_nodes_and_reuse_the_queue(cluster):
    """Requester on node 1, responder on node 3: three requests under one name share one
    reply queue, a second name gets another, and every reply comes back in order."""
    service = f"/queue/{unique('svc')}"
    with StompClient.open(cluster[3], "ws") as responder, StompClient.open(cluster[1], "tcp") as requester:
        responder.connect("1.2")
        responder.subscribe(service, "requests", receipt=True)
        requester.connect("1.2")
        reply_tos = []
        for i, name in enumerate(["a", "a", "b", "a"]):
            requester.send(service, f"q{i}", headers={"reply-to": f"/temp-queue/{name}"})
            reply_tos.append(serve_one(responder))
        assert reply_tos[0] == reply_tos[1] == reply_tos[3] != reply_tos[2]
        replies = requester.messages(4)
        assert [(m.header("subscription"), m.text) for m in replies] == [
            ("/temp-queue/a", "re: q0"), ("/temp-queue/a", "re: q1"),
            ("/temp-queue/b", "re: q2"), ("/temp-queue/a", "re: q3")]


def test_the_queue_is_private_and_goes_with_its_connection(node):
    """Another client can't subscribe to a reply queue; once the requester is gone, a late
    reply is dropped and counted, and the responder goes on working."""
    service = f"/queue/{unique('svc')}"
    with StompClient.open(node, "tcp") as responder:
        responder.connect("1.2")
        responder.subscribe(service, "requests")
        requester = StompClient.open(node, "ws")
        requester.connect("1.2")
        requester.send(service, "ping", headers={"reply-to": "/temp-queue/r"}, receipt=True)
        request = responder.expect("MESSAGE", timeout=WAIT)
        reply_to = request.header("reply-to")

        with StompClient.open(node, "tcp") as thief:
            thief.connect("1.2")
            thief.send_frame("SUBSCRIBE", {"id": "s", "destination": reply_to})
            error = thief.expect("ERROR", timeout=WAIT)
            assert error.header("message") == "access denied"
            assert "temporary reply queue" in error.text

        requester.close()
        before = metric(node, "stomp_messages_unroutable_total")
        deadline_replies = 0
        # The close reaches the node asynchronously: reply until a reply is dropped.
        while metric(node, "stomp_messages_unroutable_total") == before:
            responder.send(reply_to, "too late", receipt=True)
            deadline_replies += 1
            assert deadline_replies < 50, "a reply to a closed requester's queue was never dropped"
        responder.send(service, "still serving", receipt=True)
        assert responder.expect("MESSAGE", timeout=WAIT).text == "still serving"


def test_temp_queues_per_connection_are_bounded(node_factory):
    n = node_factory("--max-temp-queues", "2")
    service = f"/queue/{unique('svc')}"
    with StompClient.open(n, "tcp") as requester:
        requester.connect("1.2")
        for name in ["a", "b", "a"]:
            requester.send(service, name, headers={"reply-to": f"/temp-queue/{name}"}, receipt=True)
        requester.send_frame("SEND", {"destination": service, "reply-to": "/temp-queue/c", "receipt": "r"}, "c")
        error = requester.expect("ERROR", timeout=WAIT)
        assert error.header("message") == "too many temporary queues"
        assert error.header("receipt-id") == "r"
        assert "limits.temp-queues" in error.text
    assert metric(n, 'stomp_frame_errors_total{kind="too_many_temp_queues"}') == 1
    assert metric(n, 'node_limit{name="limits.temp-queues"}') == 2


def test_temp_queue_is_no_destination(node):
    with StompClient.open(node, "tcp") as client:
        client.connect("1.2")
        client.send_frame("SUBSCRIBE", {"id": "s", "destination": "/temp-queue/r"})
        error = client.expect("ERROR", timeout=WAIT)
        assert error.header("message") == "invalid destination"
        assert "reply-to" in error.text
