"""A cold start, one node first: the durable queues it makes alone have it as their only
replica. When the other nodes join, each ranks among the first replicas of those queues by
placement, and a persistent SEND through one of them, in the second or so before the queue's
leader takes the newcomer on, must reach the queue that exists rather than make a second
group of the same name. Counted by sequence number per queue: receipted-but-never-delivered
must be 0, and every node that holds a queue knows the same leader.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from cluster import Cluster
from durable import Consumer, Publisher
from nodes import wait_for

QUEUES = [f"/queue/cold-{i}" for i in range(8)]
PER_QUEUE = 20


@pytest.fixture
def cold(tmp_path):
    cluster = Cluster(tmp_path / "cold", size=3, extra_args=["--replication-send-timeout-ms=8000"])
    try:
        yield cluster
    finally:
        problems = cluster.stop()
    assert not problems, "\n".join(problems)


def views(node) -> dict:
    with urllib.request.urlopen(f"{node.admin_url}/v1/durable-queues?limit=1000", timeout=10) as response:
        return {item["name"]: item for item in json.loads(response.read())["items"]}


def publish_to_each(node, first: int) -> dict:
    """PER_QUEUE messages to every queue at once; queue -> the sequence numbers receipted."""
    publishers = {queue: Publisher(node, queue=queue, first=first) for queue in QUEUES}
    for publisher in publishers.values():
        publisher.send(PER_QUEUE)
    receipted = {}
    for queue, publisher in publishers.items():
        publisher.wait_all()
        receipted[queue] = publisher.receipted
        publisher.client.close()
    return receipted


def test_a_write_through_a_node_that_joined_reaches_the_queue_made_before_it(cold):
    cluster = cold
    cluster.start_node("n1")
    receipted = publish_to_each(cluster["n1"], 0)
    assert all(r == set(range(PER_QUEUE)) for r in receipted.values()), receipted

    cluster.start_node("n2")
    cluster.start_node("n3")
    cluster.wait_formed()
    # At once, through the newcomers: none of them holds these queues yet.
    for first, name in ((100, "n3"), (200, "n2")):
        for queue, more in publish_to_each(cluster[name], first).items():
            receipted[queue] |= more

    def one_group_each():
        seen = {name: views(cluster[name]) for name in cluster.names}
        for queue in QUEUES:
            name = queue.removeprefix("/queue/")
            leaders = {view.get("leader") for view in (seen[n].get(name) for n in cluster.names) if view}
            if len(leaders) != 1 or None in leaders:
                return None
        return seen
    wait_for(one_group_each, 30, message="one leader per queue, known by every node that holds it")

    consumers = {queue: Consumer(cluster["n2"], queue=queue) for queue in QUEUES}

    def delivered(queue):
        return {s for s, _ in consumers[queue].deliveries}
    try:
        wait_for(lambda: all(receipted[q] <= delivered(q) for q in QUEUES), 30)
    except AssertionError:
        pass
    time.sleep(0.3)  # anything beyond them would show up now
    lost = {queue: receipted[queue] - delivered(queue) for queue in QUEUES}
    if not any(lost.values()):
        # Every ACK reached the one group: its leader holds nothing, and counts nothing unacked.
        def settled():
            leaders = [view for name in cluster.names for view in views(cluster[name]).values()
                       if view.get("role") == "leader"]
            return len(leaders) == len(QUEUES) and all(v["messages"] == 0 and v["unacked"] == 0 for v in leaders)
        wait_for(settled, 15, message="every message settled on its queue's leader")
    for consumer in consumers.values():
        consumer.client.close()
    total = sum(len(r) for r in receipted.values())
    print(f"\n{len(QUEUES)} queues made on n1 alone, then written through n3 and n2 as they joined: "
          f"{total} receipted, receipted-but-never-delivered {sum(len(m) for m in lost.values())}")
    assert not any(lost.values()), {q: sorted(m)[:10] for q, m in lost.items() if m}
