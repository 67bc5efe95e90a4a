"""Durable queues replicated over three real nodes: a persistent SEND's RECEIPT means the
message is on disk on a majority of its queue's replicas, so it survives kill -9 of the
queue's leader, of a follower, and a restart of every node. Each test counts by sequence
number: receipted but never delivered must be 0; acknowledged (with a RECEIPT) and delivered
again must be 0.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from cluster import Cluster, matching, running_cluster
from durable import Consumer, Publisher, drain_all
from monitoring import parse_exposition, sample_value, scrape
from nodes import wait_for

CLUSTERCTL = Path(os.environ.get("CLUSTERCTL_BIN", Path(__file__).resolve().parents[2] / ".build" / "release" / "clusterctl"))
LEADER = re.compile(r"leader=(\S+) queue=durable (?:role=\S+ )?term=(\d+)")


@pytest.fixture
def cluster(tmp_path):
    yield from running_cluster(tmp_path / "cluster", size=3,
                               extra_args=["--replication-send-timeout-ms", "8000"])


def leader(cluster) -> str | None:
    """The node that last said it leads /queue/durable (the highest term's), if it is up."""
    best = (0, None)
    for name in cluster.live():
        for line in matching(cluster.nodes[name], "durable queue leader"):
            found = LEADER.search(line)
            if found and found[1] != "none" and int(found[2]) > best[0]:
                best = (int(found[2]), found[1])
    return best[1] if best[1] in cluster.live() else None


def first_message_and_leader(cluster) -> str:
    publisher = Publisher(cluster[1])
    publisher.send(1)
    publisher.wait_all()
    publisher.client.close()
    return wait_for(lambda: leader(cluster), 15, message="a leader of /queue/durable")


def check(receipted: set, ack_sent: set, acked: set, before: list, after: list) -> None:
    delivered = {s for s, _ in before} | {s for s, _ in after}
    lost = receipted - ack_sent - delivered
    again = acked & {s for s, _ in after}
    print(f"{len(receipted)} receipted, {len(ack_sent)} acked ({len(acked)} with their receipt); "
          f"receipted-but-never-delivered {len(lost)}, acked-and-delivered-again {len(again)}")
    assert not lost, f"receipted, never acknowledged, never delivered: {sorted(lost)[:20]}"
    assert not again, f"acknowledged with a receipt, delivered again: {sorted(again)[:20]}"


def test_receipted_messages_survive_kill_9_of_the_leader(cluster):
    lead = first_message_and_leader(cluster)
    others = [n for n in cluster.names if n != lead]
    # The consumer on the leader dies with it; the publisher is on a follower.
    consumer = Consumer(cluster[lead])
    publisher = Publisher(cluster[others[0]], first=1)
    sender = threading.Thread(target=publisher.send, args=(1500, 25), daemon=True)
    sender.start()
    wait_for(lambda: len(publisher.receipted) >= 300 and len(consumer.acked) >= 100, 60,
             message="receipts and acks before the kill")
    cluster.kill(lead)
    sender.join(timeout=30)
    receipted, ack_sent, acked = publisher.receipted | {0}, set(consumer.ack_sent), consumer.acked
    print(f"killed leader {lead}: {len(receipted)} receipted, {len(consumer.deliveries)} delivered")
    publisher.client.drop()
    consumer.client.drop()

    # The two left elect a leader; a publisher on either goes on.
    again = Publisher(cluster[others[1]], first=publisher.sent)
    again.send(200)
    again.wait_all(30)
    new_leader = wait_for(lambda: leader(cluster), 15, message="a new leader")
    assert new_leader in others
    after = drain_all(cluster[others[0]], receipted - ack_sent | again.receipted)
    check(receipted | again.receipted, ack_sent, acked, consumer.deliveries, after.deliveries)
    after.client.close()
    again.client.close()


def test_a_followers_kill_goes_unnoticed(cluster):
    lead = first_message_and_leader(cluster)
    follower = next(n for n in cluster.names if n != lead)
    publisher = Publisher(cluster[lead], first=1)
    consumer = Consumer(cluster[lead])
    sender = threading.Thread(target=publisher.send, args=(1000, 25), daemon=True)
    sender.start()
    wait_for(lambda: len(publisher.receipted) >= 200, 60, message="receipts before the kill")
    cluster.kill(follower)
    sender.join(timeout=60)
    publisher.wait_all(30)  # no ERROR: two of three still hold every message
    assert publisher.sent == 1001
    wait_for(lambda: len({s for s, _ in consumer.deliveries}) >= 1000, 30, message="every message")
    assert set(range(1, 1001)) <= {s for s, _ in consumer.deliveries}
    publisher.client.close()
    consumer.client.close()


def test_every_node_killed_and_restarted_delivers_what_was_not_acknowledged(cluster):
    lead = first_message_and_leader(cluster)
    publisher = Publisher(cluster[2], first=1)
    publisher.send(400)
    publisher.wait_all()
    consumer = Consumer(cluster[lead], ack_limit=150)
    wait_for(lambda: len(consumer.acked) >= 150 and len(consumer.deliveries) >= 300, 30,
             message="some acknowledged, more delivered")
    receipted = publisher.receipted | {0}
    publisher.client.drop()
    consumer.client.drop()
    ack_sent, acked = set(consumer.ack_sent), consumer.acked
    for name in cluster.names:
        cluster.kill(name)
    for name in cluster.names:
        cluster.restart(name)
    cluster.wait_formed()
    after = drain_all(cluster[1], receipted - ack_sent)
    check(receipted, ack_sent, acked, consumer.deliveries, after.deliveries)
    after.client.close()


def test_receipted_messages_survive_kill_9_of_the_consumers_node(cluster):
    lead = first_message_and_leader(cluster)
    consumer_node, publisher_node = [n for n in cluster.names if n != lead]
    # It acknowledges the first 100 and holds the rest unacknowledged when its node dies.
    consumer = Consumer(cluster[consumer_node], ack_limit=100)
    publisher = Publisher(cluster[publisher_node], first=1)
    publisher.send(600)
    publisher.wait_all()
    wait_for(lambda: len(consumer.acked) >= 100 and len(consumer.deliveries) >= 300, 30,
             message="deliveries on the consumer's node")
    receipted, ack_sent, acked = publisher.receipted | {0}, set(consumer.ack_sent), consumer.acked
    before = list(consumer.deliveries)
    cluster.kill(consumer_node)
    publisher.client.close()
    consumer.client.drop()
    # The leader takes back what it had sent there once the node is declared dead.
    after = drain_all(cluster[publisher_node], receipted - ack_sent)
    check(receipted, ack_sent, acked, before, after.deliveries)
    after.client.close()


def test_clusterctl_queues_shows_each_queue_as_its_leader_sees_it(cluster):
    lead = first_message_and_leader(cluster)
    publisher = Publisher(cluster[lead], first=1)
    publisher.send(9)
    publisher.wait_all()
    publisher.client.close()
    # One node given: the others are found through its members.
    result = subprocess.run([str(CLUSTERCTL), "queues", "--node", cluster[1].admin_url, "--json"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == ["durable"], rows
    queue = rows[0]
    assert queue["role"] == "leader" and queue["leader"] == lead, queue
    assert queue["replicas"] == sorted(cluster.names) and queue["learners"] == [], queue
    assert sorted(queue["lag"]) == sorted(n for n in cluster.names if n != lead), queue
    assert queue["messages"] == 10 and queue["ready"] == 10 and queue["unacked"] == 0, queue
    table = subprocess.run([str(CLUSTERCTL), "queues", "--node", cluster[2].admin_url],
                           capture_output=True, text=True, timeout=30)
    assert table.returncode == 0 and "durable" in table.stdout and lead in table.stdout, table.stdout
    print(table.stdout)

    # The same figures per queue in /metrics, from its leader only (set once a second).
    def metrics(name):
        return scrape(cluster.nodes[name].admin_url, None)
    wait_for(lambda: sample_value(metrics(lead), "stomp_durable_queue_messages", queue="durable") == 10, 10,
             message="the per-queue gauges")
    text = metrics(lead)
    assert sample_value(text, "stomp_durable_queue_ready", queue="durable") == 10
    assert sample_value(text, "stomp_durable_queue_term", queue="durable") >= 1
    series, _ = parse_exposition(text)
    lags = {labels.get("replica") for name, labels in series
            if name == "stomp_durable_queue_replica_lag" and labels.get("queue") == "durable"}
    assert lags == {n for n in cluster.names if n != lead}, lags
    follower = next(n for n in cluster.names if n != lead)
    assert "stomp_durable_queue_messages{" not in metrics(follower), "a follower reports no queue"


def test_a_draining_leader_hands_its_queue_over_first(cluster):
    lead = first_message_and_leader(cluster)
    others = [n for n in cluster.names if n != lead]
    publisher = Publisher(cluster[others[0]], first=1)
    sender = threading.Thread(target=publisher.send, args=(800, 10), daemon=True)
    sender.start()
    wait_for(lambda: len(publisher.receipted) >= 100, 30, message="receipts before the drain")
    node = cluster.nodes[lead]
    node.signal(signal.SIGTERM)  # drains, as `clusterctl drain` does
    assert node.wait(30) == 0, node.log_tail()
    sender.join(timeout=60)
    handed = matching(node, "durable queue leadership handed over")
    assert handed, node.log_tail(40)
    new_leader = wait_for(lambda: leader(cluster), 15, message="the new leader")
    assert new_leader in others
    receipted = publisher.receipted | {0}
    print(f"drained {lead}: leadership to {new_leader}; {len(receipted)} of {publisher.sent} receipted, "
          f"errors {[e.headers.get('message') for e in publisher.client.rec.errors]}")
    publisher.client.drop()
    after = drain_all(cluster[others[1]], receipted)
    check(receipted, set(), set(), [], after.deliveries)
    after.client.close()


@pytest.fixture(params=[1, 2], ids=["one-first", "two-first"])
def growing(tmp_path, request):
    """A cluster of three of which only the first `request.param` nodes are started; the test
    starts the others later."""
    c = Cluster(tmp_path / "growing", size=3)
    try:
        first = c.names[:request.param]
        for name in first:
            c.start_node(name)
        c.wait_formed(first)
        yield c, first
    finally:
        problems = c.stop()
    assert not problems, "\n".join(problems)


def durable_queue_view(node) -> dict:
    with urllib.request.urlopen(f"{node.admin_url}/v1/durable-queues", timeout=10) as response:
        items = json.loads(response.read())["items"]
    return next((item for item in items if item["name"] == "durable"), {})


def test_a_queue_made_on_fewer_nodes_takes_on_those_that_join(growing):
    cluster, first = growing
    publisher = Publisher(cluster[1], first=0)
    publisher.send(200)
    publisher.wait_all()
    publisher.client.close()
    lead = wait_for(lambda: leader(cluster), 15, message="a leader of /queue/durable")
    assert durable_queue_view(cluster[lead])["replicas"] == first

    for name in cluster.names[len(first):]:
        cluster.start_node(name)
    cluster.wait_formed()
    # Each a learner until it caught up, then a voter.
    wait_for(lambda: durable_queue_view(cluster[lead]).get("replicas") == ["n1", "n2", "n3"], 30,
             message="every node among the voters")
    wait_for(lambda: all(durable_queue_view(cluster[n]).get("messages") == 200 for n in cluster.names), 15,
             message="every node holds every message")
    # The leadership holds still once the set grew, and takes writes.
    term = durable_queue_view(cluster[lead])["term"]
    more = Publisher(cluster[2], first=200)
    more.send(100)
    more.wait_all()
    more.client.close()
    view = durable_queue_view(cluster[lead])
    assert view["role"] == "leader" and view["term"] == term, view
    # Three voters now: the leader's death leaves a majority, the newcomers among it.
    cluster.kill(lead)
    survivor = next(n for n in cluster.names if n != lead)
    after = drain_all(cluster[survivor], set(range(300)))
    print(f"\na queue made on {','.join(first)} took on the others; leader {lead} killed; "
          f"{len({s for s, _ in after.deliveries})} of 300 delivered after")
    after.client.close()
