"""A durable queue's replica set follows the members: on four real nodes with three replicas
per queue, a replica whose node stays dead longer than replication.replace-after-ms is
replaced by the fourth node (a learner until it caught up, then a voter, and only then is the
dead one removed), so the queue survives the loss of one more node. When the dead node comes
back it takes its place back (placement ranks it first), and the stand-in drops its copy on
the leader's word. Counted by sequence number: receipted-but-never-delivered must be 0.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from cluster import matching, running_cluster
from durable import Publisher, drain_all
from monitoring import sample_value, scrape
from nodes import wait_for

REPLACE_AFTER_MS = 2000


@pytest.fixture
def four(tmp_path):
    yield from running_cluster(tmp_path / "four", size=4,
                               extra_args=[f"--replication-replace-after-ms={REPLACE_AFTER_MS}",
                                           "--replication-send-timeout-ms=8000"])


def view(node) -> dict:
    with urllib.request.urlopen(f"{node.admin_url}/v1/durable-queues", timeout=10) as response:
        items = json.loads(response.read())["items"]
    return next((item for item in items if item["name"] == "durable"), {})


def leader_view(cluster) -> dict:
    """The queue as its leader (among the live nodes) sees it; {} while none leads."""
    for name in cluster.live():
        seen = view(cluster[name])
        if seen.get("role") == "leader":
            return {**seen, "node": name}
    return {}


def publish(cluster, node: str, first: int, n: int) -> set:
    publisher = Publisher(cluster[node], first=first)
    publisher.send(n)
    publisher.wait_all()
    publisher.client.close()
    return publisher.receipted


def replaced(cluster, dead: str, spare: str, timeout: float = 60) -> tuple[dict, float]:
    """Waits until the leader's replica set has `spare` in place of `dead`, all voters."""
    start = time.monotonic()

    def done():
        seen = leader_view(cluster)
        return seen if seen and dead not in seen["replicas"] and spare in seen["replicas"] \
            and not seen["learners"] else None
    return wait_for(done, timeout, message=f"{spare} in place of {dead}"), time.monotonic() - start


def start_with_three_replicas(cluster) -> tuple[dict, str, str, str]:
    """200 messages in /queue/durable; its leader's view, a follower and the node outside it."""
    receipted = publish(cluster, "n1", 0, 200)
    assert receipted == set(range(200))
    seen = wait_for(lambda: leader_view(cluster) or None, 15, message="a leader of /queue/durable")
    assert len(seen["replicas"]) == 3 and seen["learners"] == [], seen
    spare = next(n for n in cluster.names if n not in seen["replicas"])
    follower = next(n for n in seen["replicas"] if n != seen["node"])
    return seen, seen["node"], follower, spare


def test_a_replica_gone_for_good_is_replaced_and_the_queue_survives_one_more_loss(four):
    cluster = four
    first, lead, follower, spare = start_with_three_replicas(cluster)
    assert view(cluster[spare]) == {}, "the fourth node holds no copy"
    cluster.kill(follower)
    # Written while the follower is away: the replacement must catch up on these too.
    receipted = set(range(200)) | publish(cluster, lead, 200, 100)
    now, took = replaced(cluster, follower, spare)
    wait_for(lambda: view(cluster[spare]).get("messages") == 300, 15, message="the replacement holds every message")
    print(f"\nreplicas {','.join(first['replicas'])}; {follower} killed; "
          f"{spare} voted in its place after {took:.1f} s (replace-after {REPLACE_AFTER_MS} ms); "
          f"replicas now {','.join(now['replicas'])}")
    # Whichever node led at the time said so.
    changes = [line for lines in cluster.logs_matching("durable queue replica set changes").values() for line in lines]
    assert any(f"addLearner({spare})" in line for line in changes), changes
    assert any(f"remove({follower})" in line for line in changes), changes

    # Three voters again: losing the leader too leaves a majority, the replacement among it.
    cluster.kill(now["node"])
    survivor = next(n for n in now["replicas"] if n != now["node"])
    after = drain_all(cluster[survivor], receipted)
    lost = receipted - {s for s, _ in after.deliveries}
    print(f"leader {now['node']} killed as well: {len(receipted)} receipted, "
          f"receipted-but-never-delivered {len(lost)}")
    assert not lost
    after.client.close()


def test_a_replaced_node_that_returns_takes_its_place_back_and_the_stand_in_drops_its_copy(four):
    cluster = four
    first, lead, follower, spare = start_with_three_replicas(cluster)
    cluster.kill(follower)
    receipted = set(range(200)) | publish(cluster, lead, 200, 100)
    replaced(cluster, follower, spare)

    cluster.restart(follower)
    cluster.wait_formed()
    start = time.monotonic()
    back = wait_for(lambda: (lambda seen: seen if seen and seen["replicas"] == first["replicas"]
                                          and not seen["learners"] else None)(leader_view(cluster)),
                    60, message=f"{follower} back among the voters")
    wait_for(lambda: view(cluster[spare]) == {}, 30, message=f"{spare} dropped its copy")
    took = time.monotonic() - start
    dropped = matching(cluster[spare], "durable queue replica dropped")
    assert dropped, cluster[spare].log_tail(30)
    metric = sample_value(scrape(cluster[spare].admin_url, None), "stomp_durable_dropped_replicas_total")
    assert metric >= 1, metric
    print(f"\n{follower} restarted: voters {','.join(back['replicas'])} again after {took:.1f} s; "
          f"{spare} dropped its copy ({dropped[0].strip()[:120]})")

    # The node that came back serves every message, and a publisher on the stand-in still
    # reaches the queue (it now forwards to the replicas).
    receipted |= publish(cluster, spare, 300, 50)
    after = drain_all(cluster[follower], receipted)
    lost = receipted - {s for s, _ in after.deliveries}
    print(f"{len(receipted)} receipted, receipted-but-never-delivered {len(lost)}")
    assert not lost
    after.client.close()
