"""RabbitMQ's `/exchange/NAME/KEY` for topic exchanges other than amq.topic: each name is an
exchange of its own, whose topics neither `/topic/` subscribers nor other exchanges see; a
MESSAGE names `/exchange/NAME/KEY`; interest crosses the cluster; permissions name the
exchange; the forms no topic exchange serves are refused with a reason. Over TCP and
WebSocket, with the raw client and stomp.py.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request

import pytest

from cluster import running_cluster
from nodes import NODE_BIN, node_environment
from pyclient import PyClient
from stomp_raw import StompClient, unique

TRANSPORTS = pytest.mark.parametrize("transport", ["tcp", "ws"])


def admin(node, path: str) -> dict:
    with urllib.request.urlopen(node.admin_url + path, timeout=10) as answer:
        return json.loads(answer.read())


def deliveries(client: StompClient, last_subscription: str) -> list:
    """(subscription, destination, body) of each MESSAGE up to the first for `last_subscription`."""
    frames = client.collect(lambda fs: any(f.header("subscription") == last_subscription for f in fs))
    return [(f.header("subscription"), f.header("destination"), f.text) for f in frames if f.command == "MESSAGE"]


@TRANSPORTS
def test_each_exchange_is_a_topic_space_of_its_own(node, transport):
    logs, audit, key = unique("logs"), unique("audit"), unique("app")
    with StompClient.open(node, transport) as sub, StompClient.open(node, "tcp") as pub:
        sub.connect("1.2")
        pub.connect("1.2")
        sub.subscribe(f"/exchange/{logs}/{key}.*", "one-word")
        sub.subscribe(f"/exchange/{logs}/#", "all-logs")
        sub.subscribe(f"/exchange/{logs}/{key}.>", "activemq-wildcard")
        sub.subscribe("/topic/#", "all-topics")
        sub.subscribe(f"/exchange/{audit}/#", "audit")
        pub.send(f"/exchange/{logs}/{key}.error", "to logs", headers={"x-trace": "t1"}, receipt=True)
        pub.send(f"/topic/{key}.error", "to amq.topic", receipt=True)
        pub.send(f"/exchange/{logs}.v2/{key}.error", "to another exchange", receipt=True)
        pub.send(f"/exchange/{audit}/end", "end", receipt=True)
        got = deliveries(sub, "audit")
    assert sorted(got) == sorted([
        ("one-word", f"/exchange/{logs}/{key}.error", "to logs"),
        ("all-logs", f"/exchange/{logs}/{key}.error", "to logs"),
        ("activemq-wildcard", f"/exchange/{logs}/{key}.error", "to logs"),
        ("all-topics", f"/topic/{key}.error", "to amq.topic"),
        ("audit", f"/exchange/{audit}/end", "end"),
    ])


@TRANSPORTS
def test_stomp_py_sends_and_receives_through_an_exchange(node, transport):
    exchange = unique("ex")
    client = PyClient.for_node(node, transport, "1.2")
    try:
        client.subscribe(f"/exchange/{exchange}/orders.*", "orders")
        client.send(f"/exchange/{exchange}/orders.eu", "o-1", headers={"content-type": "text/plain"}, receipt=True)
        client.rec.wait(lambda: client.rec.messages, 10.0, "the message")
        message = client.rec.messages[0]
        assert message.body == "o-1"
        assert message.headers["destination"] == f"/exchange/{exchange}/orders.eu"
        assert message.headers["content-type"] == "text/plain"
        assert not client.rec.errors
    finally:
        client.close(timeout=2.0)


@TRANSPORTS
@pytest.mark.parametrize("destination,reason", [
    ("/exchange/amq.direct/k", "built-in exchanges"),
    ("/exchange/amq.fanout/k", "built-in exchanges"),
    ("/exchange/logs", "needs a routing key"),
    ("/exchange/lo%gs/k", "letters, digits"),
])
def test_what_no_topic_exchange_serves_is_refused_with_a_reason(node, transport, destination, reason):
    with StompClient.open(node, transport) as c:
        c.connect("1.2")
        c.send_frame("SUBSCRIBE", {"id": "s", "destination": destination, "receipt": "r"})
        error = c.expect("ERROR")
        assert error.header("message") == "invalid destination"
        assert destination in error.text and reason in error.text
    with StompClient.open(node, transport) as other:  # the node goes on serving
        other.connect("1.2")
        other.disconnect()


@pytest.fixture
def cluster(tmp_path):
    yield from running_cluster(tmp_path / "cluster", seeds="all")


def test_exchange_interest_crosses_the_cluster_and_stays_apart_from_topics(cluster):
    exchange, key = unique("ex"), unique("k")
    with StompClient.open(cluster[1], "ws") as sub, StompClient.open(cluster[3], "tcp") as pub:
        sub.connect("1.2")
        sub.subscribe(f"/exchange/{exchange}/{key}.#", "exchange")
        sub.subscribe("/topic/#", "topics")
        pub.connect("1.2")
        pub.send(f"/exchange/{exchange}/{key}.a", "across", receipt=True)
        pub.send(f"/topic/{key}.a", "topic", receipt=True)
        got = deliveries(sub, "topics")
        assert got == [("exchange", f"/exchange/{exchange}/{key}.a", "across"), ("topics", f"/topic/{key}.a", "topic")]

        route = admin(cluster[3], "/v1/interest?destination=" + urllib.parse.quote(f"/exchange/{exchange}/{key}.a"))
        assert [peer["node"] for peer in route["peers"]] == [cluster[1].name]
        assert f"/exchange/{exchange}/{key}.#" in route["peers"][0]["reason"]
        assert f"/exchange/{exchange}/{key}.#" in json.dumps(admin(cluster[3], "/v1/interest"))
        # amq.topic's subscribers on node 1 don't draw another exchange's messages there.
        other = admin(cluster[3], "/v1/interest?destination=" + urllib.parse.quote(f"/exchange/{unique('x')}/k"))
        assert other["peers"] == []


def hashed(password: str) -> str:
    result = subprocess.run([str(NODE_BIN), "hash-password"], input=password + "\n", capture_output=True, text=True,
                            timeout=60, env=node_environment(), check=True)
    return result.stdout.strip()


@TRANSPORTS
def test_permissions_name_the_exchange(node_factory, tmp_path, transport):
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"users": [
        {"login": "carol", "password": hashed("carol-pw"),
         "read": ["/exchange/logs/#", "/topic/#"], "write": ["/exchange/*/app.#"]},
    ]}))
    node = node_factory("--auth-users-file", str(users), "--auth-anonymous", "off", name="exchange-auth")

    def carol() -> StompClient:
        c = StompClient.open(node, transport)
        c.connect("1.2", headers={"login": "carol", "passcode": "carol-pw"})
        return c

    with carol() as c:
        c.subscribe("/exchange/logs/app.*", "logs")
        c.send("/exchange/logs/app.start", "allowed", receipt=True)
        c.send("/exchange/audit/app.start", "any exchange", receipt=True)
        assert [m.text for m in c.messages(1)] == ["allowed"]
    for frame, destination, action in [
        ("SUBSCRIBE", "/exchange/audit/#", "read from"),      # another exchange
        ("SEND", "/topic/app.start", "write to"),             # /exchange/*/ leaves out amq.topic
        ("SEND", "/exchange/logs/other", "write to"),         # a key outside app.#
    ]:
        with carol() as c:
            c.send_frame(frame, {"id": "s", "destination": destination})
            error = c.expect("ERROR")
            assert error.header("message") == "access denied"
            assert f"may not {action} {destination}" in error.text
