"""Durable topic subscriptions: RabbitMQ's `durable:true` + `auto-delete:false` (named by
`x-queue-name` or the subscription id) and ActiveMQ's `activemq.subscriptionName` (with the
CONNECT's `client-id`) keep taking the topic's messages while their client is away, in a
durable queue: across a kill -9 of the node and across nodes. A deleting UNSUBSCRIBE ends the
subscription and drops what it kept. stomp.py over TCP and WebSocket; each test counts by
sequence number.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from cluster import running_cluster
from nodes import wait_for
from pyclient import PyClient
from test_durable_queues import durable_node, kill9  # noqa: F401 (a fixture)

RABBITMQ = {"durable": "true", "auto-delete": "false"}


@pytest.fixture
def cluster(tmp_path):
    yield from running_cluster(tmp_path / "cluster", size=3)


def connect(node, transport: str = "tcp", client_id: str | None = None) -> PyClient:
    client = PyClient.for_node(node, transport, "1.2", connect=False)
    client.conn.connect(wait=False, headers={"client-id": client_id} if client_id else {})
    client.rec.wait(lambda: client.rec.connected_frame is not None or client.rec.errors, 15, "CONNECTED")
    assert not client.rec.errors, client.rec.errors
    return client


def publish(node, topic: str, count: int, first: int = 0, transport: str = "tcp") -> None:
    """`count` numbered messages to `topic`, the last with a receipt (so all have arrived)."""
    client = PyClient.for_node(node, transport, "1.2")
    for i in range(first, first + count):
        client.send(topic, str(i), receipt=i == first + count - 1)
    client.close()


def durable_messages(node, queue: str) -> int:
    with urllib.request.urlopen(f"{node.admin_url}/v1/durable-queues?limit=1000", timeout=10) as response:
        items = json.loads(response.read())["items"]
    return next((item["messages"] for item in items if item["name"] == queue and item["role"] == "leader"), -1)


def take_all(client: PyClient, expected: set, timeout: float = 30) -> list:
    """Waits until every sequence number in `expected` arrived; acknowledges each message not
    acknowledged yet."""
    wait_for(lambda: expected <= {int(m.body) for m in client.rec.messages}, timeout,
             message=f"{len(expected)} messages, got {len(client.rec.messages)}: errors {client.rec.errors}")
    frames = list(client.rec.messages)
    acked = getattr(client, "acked", 0)
    for frame in frames[acked:]:
        client.ack(frame, receipt=False)
    client.acked = len(frames)
    return frames


def test_a_rabbitmq_durable_subscription_keeps_what_is_published_while_its_client_is_away(durable_node):
    node = durable_node()
    subscriber = connect(node, "ws")
    subscriber.subscribe("/topic/news.#", "feed", ack="client-individual", headers=RABBITMQ)
    publish(node, "/topic/news.sport", 1)
    assert {int(m.body) for m in take_all(subscriber, {0})} == {0}
    subscriber.close()

    # Away: what matches is kept, what doesn't is not.
    publish(node, "/topic/news.sport", 100, first=1)
    publish(node, "/topic/weather", 5, first=1000)
    wait_for(lambda: durable_messages(node, "stomp-subscription-feed") == 100, 15,
             message="100 messages kept for the subscription")

    back = connect(node, "ws")
    back.subscribe("/topic/news.#", "feed", ack="client-individual", headers=RABBITMQ)
    frames = take_all(back, set(range(1, 101)))
    numbers = [int(m.body) for m in frames]
    print(f"\nkept while away: 100 published, {len(numbers)} delivered, in order: {numbers == sorted(numbers)}")
    assert numbers == list(range(1, 101)), "each once, in order, none of the other topic"
    assert {m.headers["destination"] for m in frames} == {"/topic/news.sport"}
    assert {m.headers["subscription"] for m in frames} == {"feed"}
    back.close()


def test_an_activemq_durable_subscription_survives_kill_9_of_its_node(durable_node):
    node = durable_node()
    subscriber = connect(node, client_id="app")
    subscriber.subscribe("/topic/orders.>", "1", ack="client",
                         headers={"activemq.subscriptionName": "audit"})
    subscriber.close()
    publish(node, "/topic/orders.eu", 50)
    wait_for(lambda: durable_messages(node, "app.audit") == 50, 15, message="50 messages kept")
    kill9(node)
    node = durable_node()

    back = connect(node, client_id="app")
    back.subscribe("/topic/orders.>", "1", ack="client-individual",
                   headers={"activemq.subscriptionName": "audit"})
    frames = take_all(back, set(range(50)))
    assert sorted(int(m.body) for m in frames) == list(range(50))
    # Still bound after the restart: new messages keep coming.
    publish(node, "/topic/orders.us", 3, first=50)
    take_all(back, set(range(53)))
    back.close()


def test_a_deleting_unsubscribe_ends_the_subscription_and_drops_what_it_kept(durable_node):
    node = durable_node()
    subscriber = connect(node)
    subscriber.subscribe("/topic/alerts", "a", ack="client-individual", headers={**RABBITMQ, "x-queue-name": "al"})
    subscriber.unsubscribe("a")  # only away: the subscription stays
    publish(node, "/topic/alerts", 5)
    wait_for(lambda: durable_messages(node, "al") == 5, 15, message="5 kept")
    subscriber.subscribe("/topic/alerts", "a", ack="client-individual", headers={**RABBITMQ, "x-queue-name": "al"})
    take_all(subscriber, set(range(5)))
    rid = "deleted"
    subscriber.conn.unsubscribe(id="a", headers={"durable": "true", "receipt": rid})
    subscriber.wait_receipt(rid)
    publish(node, "/topic/alerts", 5, first=5)
    time.sleep(0.5)
    assert durable_messages(node, "al") == 0, "nothing is kept for a deleted subscription"
    subscriber.close()


def test_a_durable_subscription_takes_what_any_node_publishes_and_serves_it_on_any_node(cluster):
    subscriber = connect(cluster[1])
    # Its RECEIPT says every node knows of the binding: what they publish from now on is kept.
    subscriber.subscribe("/topic/prices.*", "p", ack="client-individual",
                         headers={**RABBITMQ, "x-queue-name": "prices"})
    subscriber.close()
    publish(cluster[2], "/topic/prices.eur", 100)
    publish(cluster[3], "/topic/prices.usd", 100, first=100)
    back = connect(cluster[3])
    back.subscribe("/topic/prices.*", "p", ack="client-individual", headers={**RABBITMQ, "x-queue-name": "prices"})
    frames = take_all(back, set(range(200)))
    numbers = [int(m.body) for m in frames]
    print(f"\nacross nodes: 200 published on n2 and n3 while away, {len(set(numbers))} delivered on n3")
    assert sorted(numbers) == list(range(200))
    back.close()
