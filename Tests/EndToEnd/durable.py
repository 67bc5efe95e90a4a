"""Clients for the durable queues' tests: a publisher of numbered persistent messages and a
consumer that acknowledges each, both counting by sequence number what got its RECEIPT."""

from __future__ import annotations

import time

from nodes import Node, wait_for
from pyclient import PyClient

PERSISTENT = {"persistent": "true"}


def seq(frame) -> int:
    return int(frame.body)


class Publisher:
    """Sends persistent messages 0..n-1, each with a receipt, without waiting for each one:
    `receipted` holds the sequence numbers whose RECEIPT arrived."""

    def __init__(self, node: Node, transport: str = "tcp", queue: str = "/queue/durable", first: int = 0):
        self.client = PyClient.for_node(node, transport, "1.2")
        self.queue = queue
        self.sent = first
        self.first = first

    def send(self, n: int, pause_every: int = 0) -> None:
        """Sends the next `n`; stops early, without raising, when the connection goes (its
        node killed, or an ERROR)."""
        for i in range(self.sent, self.sent + n):
            try:
                self.client.conn.send(self.queue, str(i), headers={**PERSISTENT, "receipt": f"seq-{i}"})
            except Exception:
                return
            self.sent = i + 1
            if pause_every and i % pause_every == 0:
                time.sleep(0.001)

    @property
    def receipted(self) -> set:
        with self.client.rec.cond:
            return {int(r[4:]) for r in self.client.rec.receipts if r and r.startswith("seq-")}

    def wait_all(self, timeout: float = 30.0) -> None:
        self.client.rec.wait(lambda: len(self.receipted) == self.sent - self.first or self.client.rec.errors, timeout,
                             f"{self.sent} receipts")
        assert not self.client.rec.errors, [(e.headers.get("message"), e.body) for e in self.client.rec.errors]


class Consumer:
    """Acknowledges every message (client-individual), each ACK with a receipt: `acked` holds
    the sequence numbers whose ACK got its RECEIPT, `deliveries` every (seq, redelivered)."""

    def __init__(self, node: Node, transport: str = "tcp", queue: str = "/queue/durable", ack: bool = True,
                 ack_limit: int | None = None):
        self.client = PyClient.for_node(node, transport, "1.2")
        self.deliveries: list = []
        # ACKs sent: whether one without its RECEIPT yet took effect can't be told.
        self.ack_sent: set = set()
        self.ack = ack
        listener = self

        class OnMessage:
            def on_message(self, frame):
                listener.deliveries.append((seq(frame), frame.headers.get("redelivered") == "true"))
                if listener.ack and (ack_limit is None or len(listener.ack_sent) < ack_limit):
                    listener.ack_sent.add(seq(frame))
                    listener.client.conn.ack(frame.headers["ack"], receipt=f"ack-{seq(frame)}")

        self.client.conn.set_listener("consumer", OnMessage())
        self.client.subscribe(queue, "s1", ack="client-individual")

    @property
    def acked(self) -> set:
        with self.client.rec.cond:
            return {int(r[4:]) for r in self.client.rec.receipts if r and r.startswith("ack-")}

    def wait_count(self, n: int, timeout: float = 30.0) -> None:
        wait_for(lambda: len(self.deliveries) >= n, timeout, message=f"{n} deliveries, got {len(self.deliveries)}")


def drain_all(node: Node, expected: set, transport: str = "tcp") -> Consumer:
    """A consumer that takes (and acknowledges) everything until `expected` all arrived."""
    consumer = Consumer(node, transport)
    try:
        wait_for(lambda: expected <= {s for s, _ in consumer.deliveries}, 30)
    except AssertionError:
        missing = sorted(expected - {s for s, _ in consumer.deliveries})
        raise AssertionError(f"{len(missing)} of {len(expected)} messages missing after the restart: {missing[:30]}; "
                             f"delivered {len(consumer.deliveries)}, errors {consumer.client.rec.errors}")
    time.sleep(0.3)  # anything beyond them would show up now
    return consumer


