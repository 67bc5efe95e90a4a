"""No silent loss at the seam between nodes (issue 15): real nodes on 127.0.0.1, a publisher on
node 1 sending numbered topic messages at a steady rate, a subscriber on node 2, and a fault
on the way between them. Every scenario counts by sequence number: sent, delivered, lost,
duplicated, reordered.

- A stall shorter than `cluster.outage-grace-ms` (node 2 SIGSTOPped long enough for node 1 to
  declare it dead and drop its link): nothing lost, nothing twice, in order.
- A stall longer than the grace: the subscriber gets ERROR `messages lost` and is closed, and
  node 1 counts the drop (`cluster_forward_dropped_total{reason="grace"}`).
- Links reset under load (`ss -K` on node 2's link sockets, both nodes alive): nothing lost.

Each test prints its counts (`-s` shows them) for the issue's note.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest

from cluster import matching, peer_re, running_cluster, wait_log
from pyclient import PyClient
from stomp_raw import StompClient

RATE = 2_000          # messages per second, as in the issue
WARM_UP = 1.5         # seconds of traffic before the fault
AFTER = 3.0           # seconds of traffic after the fault ends
DRAIN_TIMEOUT = 60.0  # upper bound for the subscriber to catch up once the publisher stopped


class Publisher(threading.Thread):
    """Sends "0", "1", ... to `destination` on `node` over STOMP/TCP at about `rate` per second
    until stopped; then a SEND with a receipt, so `sent` counts only what the node took."""

    def __init__(self, node, destination: str, rate: int = RATE):
        super().__init__(daemon=True)
        self.client = StompClient.open(node, "tcp")
        self.client.connect("1.2")
        self.destination, self.rate = destination, rate
        self.stopping = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            start = time.monotonic()
            while not self.stopping.is_set():
                self.client.send(self.destination, str(self.sent))
                self.sent += 1
                # Paced in small bursts: a node that pauses its publishers (flow control) makes
                # the socket block here, and the rate catches up afterwards.
                if self.sent % 20 == 0:
                    ahead = start + self.sent / self.rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
            self.client.send(self.destination, "end", receipt=True)
        except BaseException as error:  # reported by stop()
            self.error = error

    def stop(self) -> int:
        self.stopping.set()
        self.join(timeout=60)
        assert not self.is_alive(), "the publisher did not finish"
        assert self.error is None, f"publisher failed: {self.error!r}"
        self.client.close()
        return self.sent


def counts(received: list, sent: int) -> dict:
    """Sent, delivered, lost, duplicated and reordered, from the numbers a subscriber got."""
    distinct = set(received)
    reordered = sum(1 for a, b in zip(received, received[1:]) if b < a)
    return {
        "sent": sent,
        "delivered": len(received),
        "lost": len(set(range(sent)) - distinct),
        "duplicated": len(received) - len(distinct),
        "reordered": reordered,
    }


def numbers(client: PyClient, sub_id: str) -> list:
    with client.rec.cond:
        return [int(m.body) for m in client.rec.messages
                if m.headers.get("subscription") == sub_id and m.body.isdigit()]


def got_end(client: PyClient, sub_id: str) -> bool:
    with client.rec.cond:
        return any(m.body == "end" for m in client.rec.messages if m.headers.get("subscription") == sub_id)


def metric(node, name: str, labels: str = "") -> float:
    """A counter or gauge from the node's /metrics (0 when absent)."""
    with urllib.request.urlopen(node.admin_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$", re.M)
    total = 0.0
    for match in pattern.finditer(text):
        if all(label in (match.group(1) or "") for label in labels.split(",") if label):
            total += float(match.group(2))
    return total


def stall(node, seconds: float) -> None:
    node.signal(signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        node.signal(signal.SIGCONT)


@pytest.fixture
def cluster(tmp_path, request):
    args = getattr(request, "param", ())
    yield from running_cluster(tmp_path / "seam", extra_args=list(args))


def subscribe(node, transport: str) -> tuple:
    client = PyClient.for_node(node, transport, "1.2")
    topic = f"/topic/seam.{uuid.uuid4().hex[:8]}"
    client.subscribe(topic, "s")
    return client, topic


@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_a_stall_shorter_than_the_grace_loses_nothing(cluster, transport):
    n1, n2 = cluster["n1"], cluster["n2"]
    subscriber, topic = subscribe(n2, transport)
    mark = len(open(n1.log_path, "rb").read())
    publisher = Publisher(n1, topic)
    publisher.start()
    try:
        time.sleep(WARM_UP)
        # Long enough for node 1 to suspect node 2, declare it dead and close its link.
        stall(n2, 6.0)
        time.sleep(AFTER)
    finally:
        sent = publisher.stop()
    subscriber.rec.wait(lambda: got_end(subscriber, "s") or subscriber.rec.errors, DRAIN_TIMEOUT,
                        "the subscriber to catch up")
    result = counts(numbers(subscriber, "s"), sent)
    print(f"\nSEAM stall 6 s ({transport}): {result}")
    assert matching(n1, r"member dead", peer_re("n2"), since=mark), \
        "node 1 never declared node 2 dead: the stall did not test the seam"
    assert not subscriber.rec.errors, subscriber.rec.errors
    assert result["lost"] == 0 and result["duplicated"] == 0 and result["reordered"] == 0, result
    subscriber.close()


@pytest.mark.parametrize("cluster", [("--outage-grace-ms=2000",)], indirect=True)
@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_a_stall_longer_than_the_grace_tells_the_subscriber(cluster, transport):
    n1, n2 = cluster["n1"], cluster["n2"]
    subscriber, topic = subscribe(n2, transport)
    dropped_before = metric(n1, "cluster_forward_dropped_total", 'reason="grace"')
    publisher = Publisher(n1, topic)
    publisher.start()
    try:
        time.sleep(WARM_UP)
        stall(n2, 8.0)
        subscriber.rec.wait(lambda: subscriber.rec.errors, 20.0, "the subscriber's ERROR")
    finally:
        sent = publisher.stop()
    error = subscriber.rec.errors[0]
    result = counts(numbers(subscriber, "s"), sent)
    dropped = metric(n1, "cluster_forward_dropped_total", 'reason="grace"') - dropped_before
    print(f"\nSEAM stall 8 s, grace 2 s ({transport}): {result}; ERROR {error.headers.get('message')!r}: "
          f"{error.body!r}; node 1 dropped {dropped:.0f} for the grace")
    assert error.headers.get("message") == "messages lost", error
    assert "cluster.outage-grace-ms" in error.body and "n1" in error.body, error.body
    assert dropped > 0
    assert result["duplicated"] == 0 and result["reordered"] == 0, result
    subscriber.rec.wait(lambda: subscriber.rec.disconnected, 10.0, "the connection to close")


def reset_links(*ports: int) -> None:
    """Kills every TCP socket to or from the cluster `ports` on loopback: both ends of each of
    those nodes' links see a reset, whichever side dialled."""
    for port in ports:
        for selector in (["dport", "=", f":{port}"], ["sport", "=", f":{port}"]):
            subprocess.run(["ss", "-K", "dst", "127.0.0.1", *selector], capture_output=True, timeout=10)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_links_reset_under_load_lose_nothing(cluster, transport):
    n1, n2 = cluster["n1"], cluster["n2"]
    subscriber, topic = subscribe(n2, transport)
    mark = len(open(n2.log_path, "rb").read())
    publisher = Publisher(n1, topic)
    publisher.start()
    try:
        time.sleep(WARM_UP)
        for _ in range(3):
            reset_links(cluster.cluster_ports["n1"], cluster.cluster_ports["n2"])
            time.sleep(1.0)
        time.sleep(AFTER)
    finally:
        sent = publisher.stop()
    subscriber.rec.wait(lambda: got_end(subscriber, "s") or subscriber.rec.errors, DRAIN_TIMEOUT,
                        "the subscriber to catch up")
    result = counts(numbers(subscriber, "s"), sent)
    print(f"\nSEAM 3 link resets ({transport}): {result}")
    assert len(matching(n2, r"link down", peer_re("n1"), since=mark)) >= 1, "no link went down"
    assert not subscriber.rec.errors, subscriber.rec.errors
    assert result["lost"] == 0 and result["duplicated"] == 0 and result["reordered"] == 0, result
    subscriber.close()
