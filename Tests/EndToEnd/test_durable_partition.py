"""A network partition that isolates a durable queue's leader (issue 13, item 5b).

Three nodes, each on a host of its own, and a client host, on a private bridge (network
namespaces, netcluster.py); each node keeps its durable log in a data dir of its own.

- The first persistent SEND makes /queue/durable; its leader L is read from the nodes' logs.
- A consumer on one follower acknowledges every message, each ACK with a receipt; a publisher
  on the other follower and a publisher on L send numbered persistent messages, each with a
  receipt, from distinct ranges. The publisher on L runs inside L's host, so that pulling L's
  cable leaves it connected: it is on L's side of the partition. The others are on the client
  host, on the majority's side. A client that gets an ERROR (or loses its connection) connects
  again and goes on, as an application would.
- L's cable is pulled at the switch. L must step down (check-quorum) and take nothing it could
  lose: no RECEIPT for a message sent after the cut (none can reach a majority), and none at
  all later than an election timeout and replication.send-timeout-ms after the cut; ERRORs
  instead. The other two declare L dead and elect a leader; the publisher on their side gets
  receipts again.
- The cable is mended: L follows the new leader, and a SEND on L gets its receipt again.
- The publishers and the consumer stop; a consumer on L drains the queue. Every node is still
  running and sees the other two alive again.

Counted by sequence number over every publisher: receipted but never delivered must be 0;
acknowledged (with a RECEIPT) and delivered after that RECEIPT must be 0. The counts are
printed (`-s` shows them).
"""

from __future__ import annotations

import re
import threading
import time

import pytest
import stomp

import netcluster
from netcluster import STOMP_PORT, admin_get
from nodes import wait_for
from pyclient import PyClient

QUEUE = "/queue/durable"
SEND_TIMEOUT = 3.0    # replication.send-timeout-ms: bounds how long a write in doubt waits
ELECTION = 2.0        # the largest Raft election timeout (RaftSettings): check-quorum acts within it
WINDOW = 32           # SENDs a publisher has out without their RECEIPT
LEADER = re.compile(r"leader=(\S+) queue=durable (?:role=\S+ )?term=(\d+)")


@pytest.fixture
def hosts(tmp_path):
    yield from netcluster.running_hosts(tmp_path, "part", data_dirs=True,
                                        extra_args=[f"--replication-send-timeout-ms={int(SEND_TIMEOUT * 1000)}"])


# ---------------------------------------------------------------------------------------
# Clients that outlive their connections
# ---------------------------------------------------------------------------------------

class Stamps(stomp.ConnectionListener):
    """Passes what one connection gets to its client, and marks the connection `ended` on an
    ERROR or a close."""

    def __init__(self, client: "Client", conn, ended: threading.Event):
        self.client, self.conn, self.ended = client, conn, ended

    def on_message(self, frame):
        self.client.message(frame, self.conn)

    def on_receipt(self, frame):
        receipt = frame.headers.get("receipt-id", "")
        number = receipt.partition("-")[2]  # seq-N or ack-N
        if number.isdigit():
            with self.client.lock:
                self.client.receipt_at.setdefault(int(number), time.monotonic())
                self.client.pending.discard(int(number))

    def on_error(self, frame):
        with self.client.lock:
            self.client.errors.append((time.monotonic(), frame.headers.get("message", "")))
        self.ended.set()

    def on_disconnected(self):
        self.ended.set()


class Client(threading.Thread):
    """One STOMP connection at a time, made by `connect()` (in the right namespace); when it
    ends, the next one is made, until `stop()`. `receipt_at` holds when each numbered
    RECEIPT first arrived (time.monotonic())."""

    def __init__(self, name: str, connect):
        super().__init__(name=name, daemon=True)
        self.connect = connect
        self.lock = threading.Lock()
        self.receipt_at: dict = {}
        self.pending: set = set()   # numbered receipts asked for on the current connection
        self.errors: list = []      # (time, the ERROR's message header)
        self.connections = 0
        self.stopping = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    client = self.connect()
                except Exception:  # refused, or an ERROR instead of CONNECTED: try again
                    time.sleep(0.2)
                    continue
                ended = threading.Event()
                with self.lock:
                    self.pending = set()
                client.conn.set_listener("stamps", Stamps(self, client.conn, ended))
                self.connections += 1
                try:
                    self.session(client, ended)
                except Exception:  # the connection went while it was used
                    pass
                finally:
                    client.drop()
        except BaseException as error:  # reported by stop()
            self.failure = error

    def session(self, client: PyClient, ended: threading.Event) -> None:
        raise NotImplementedError

    def message(self, frame, conn) -> None:
        pass

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=SEND_TIMEOUT + 30)
        assert not self.is_alive(), f"{self.name} did not stop"
        assert self.failure is None, f"{self.name} failed: {self.failure!r}"

    def receipted(self, after: float = 0.0) -> set:
        with self.lock:
            return {n for n, at in self.receipt_at.items() if at > after}

    def errors_after(self, moment: float) -> list:
        with self.lock:
            return [message for at, message in self.errors if at > moment]


class Publisher(Client):
    """Sends persistent messages numbered from `first`, each with a receipt, at most WINDOW
    without their RECEIPT; `sent_at` holds when each SEND was about to be written."""

    def __init__(self, name: str, connect, first: int):
        super().__init__(name, connect)
        self.next = first
        self.sent_at: dict = {}

    def session(self, client: PyClient, ended: threading.Event) -> None:
        while not ended.is_set() and not self.stopping.is_set():
            with self.lock:
                full = len(self.pending) >= WINDOW
            if full:
                ended.wait(0.01)
                continue
            number, self.next = self.next, self.next + 1
            with self.lock:
                self.sent_at[number] = time.monotonic()
                self.pending.add(number)
            client.conn.send(QUEUE, str(number), headers={"persistent": "true", "receipt": f"seq-{number}"})
            time.sleep(0.005)
        # Stopping: the receipts still due on this connection (or its ERROR), bounded.
        deadline = time.monotonic() + SEND_TIMEOUT + 10
        while not ended.is_set() and self.pending and time.monotonic() < deadline:
            ended.wait(0.05)


class Consumer(Client):
    """Acknowledges every message (client-individual), each ACK with a receipt `ack-N`:
    `deliveries` holds every (number, time, redelivered), `ack_sent` the numbers ACKed."""

    def __init__(self, name: str, connect):
        super().__init__(name, connect)
        self.deliveries: list = []
        self.ack_sent: set = set()

    def session(self, client: PyClient, ended: threading.Event) -> None:
        client.subscribe(QUEUE, "s", ack="client-individual")
        while not ended.is_set() and not self.stopping.is_set():
            ended.wait(0.05)

    def message(self, frame, conn) -> None:
        number = int(frame.body)
        with self.lock:
            self.deliveries.append((number, time.monotonic(), frame.headers.get("redelivered") == "true"))
            self.ack_sent.add(number)
        try:
            conn.ack(frame.headers["ack"], receipt=f"ack-{number}")
        except Exception:  # the connection went: the message is given back, and comes again
            pass

    def delivered(self) -> set:
        with self.lock:
            return {number for number, _, _ in self.deliveries}


def connector(host, address: str):
    """A `connect()` for a client in `host`'s namespace, to the node at `address`."""
    def connect() -> PyClient:
        with host.inside():
            return PyClient(address, STOMP_PORT, "tcp", "1.2")
    return connect


# ---------------------------------------------------------------------------------------
# What the nodes say
# ---------------------------------------------------------------------------------------

def log_size(tmp_path, name: str) -> int:
    return (tmp_path / f"{name}.log").stat().st_size


def log_text(tmp_path, name: str, since: int = 0) -> str:
    with open(tmp_path / f"{name}.log", "rb") as log:
        log.seek(since)
        return log.read().decode(errors="replace")


def leaders(tmp_path, name: str, since: int = 0) -> list:
    """Every (leader, term) the node logged for /queue/durable (from byte `since`)."""
    return [(m[1], int(m[2])) for m in LEADER.finditer(log_text(tmp_path, name, since))]


def latest_leader(tmp_path, names, marks=None, above: int = 0) -> tuple | None:
    """The (leader, term) of the highest term above `above` that any of `names` logged (since
    `marks`), if any."""
    found = [lt for name in names for lt in leaders(tmp_path, name, (marks or {}).get(name, 0))
             if lt[0] != "none" and lt[1] > above]
    return max(found, key=lambda lt: lt[1], default=None)


def queue_view(host) -> dict:
    """/queue/durable as the node on `host` sees it (GET /v1/durable-queues); {} when the
    node does not answer in time (a busy machine)."""
    try:
        items = admin_get(host, "/v1/durable-queues")["items"]
    except OSError:
        return {}
    return next((q for q in items if q["name"] == "durable"), {})


def all_alive(host) -> bool:
    """Whether the node on `host` sees three members alive, and reaches the other two."""
    try:
        members = admin_get(host, "/v1/members")["items"]
    except OSError:
        return False
    return len(members) == 3 and all(m["status"] == "alive" and m.get("reachable") is not False for m in members)


# ---------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------

def test_a_partition_that_isolates_the_leader_loses_no_receipted_message(hosts, tmp_path):
    network, node_hosts, client_host = hosts
    host = {f"n{i}": h for i, h in enumerate(node_hosts, 1)}
    # The queue's replicas are the members alive when it is made: all three.
    for h in node_hosts:
        wait_for(lambda h=h: all_alive(h), 30, message=f"{h.name} sees three members alive")

    with client_host.inside():
        first = PyClient(host["n1"].address, STOMP_PORT, "tcp", "1.2")
    first.conn.send(QUEUE, "0", headers={"persistent": "true", "receipt": "seq-0"})
    first.rec.wait(lambda: "seq-0" in first.rec.receipts or first.rec.errors, 30, "the first RECEIPT")
    assert not first.rec.errors, first.rec.errors
    first.close()

    old, old_term = wait_for(lambda: latest_leader(tmp_path, host), 15, message="a leader of /queue/durable")
    assert queue_view(host[old])["replicas"] == ["n1", "n2", "n3"], queue_view(host[old])
    consumer_node, publisher_node = [name for name in host if name != old]
    print(f"\nleader {old} (term {old_term}); consumer on {consumer_node}, publishers on "
          f"{publisher_node} and on {old}")

    consumer = Consumer("consumer", connector(client_host, host[consumer_node].address))
    majority = Publisher("majority", connector(client_host, host[publisher_node].address), first=1_000_000)
    # Inside the leader's own host: the pulled cable leaves this client with its node.
    isolated = Publisher("isolated", connector(host[old], "127.0.0.1"), first=2_000_000)
    clients = [consumer, majority, isolated]
    for c in clients:
        c.start()
    try:
        wait_for(lambda: len(majority.receipted()) >= 100 and len(isolated.receipted()) >= 100
                 and len(consumer.receipted()) >= 100, 60, message="receipts and acks before the cut")

        marks = {name: log_size(tmp_path, name) for name in host}
        netcluster.cut(network, host[old])
        cut_at = time.monotonic()

        # Check-quorum: the old leader steps down on its own.
        wait_for(lambda: queue_view(host[old]).get("role") not in (None, "leader"), 30, message=f"{old} steps down")
        stepped_down = time.monotonic() - cut_at

        majority_side = (consumer_node, publisher_node)
        new, new_term = wait_for(lambda: latest_leader(tmp_path, majority_side, marks, above=old_term), 30,
                                 message="a new leader on the majority's side")
        elected = time.monotonic()
        assert new != old, (new, new_term)
        wait_for(lambda: any(re.search(rf"cluster\.peer={old} .*member dead", log_text(tmp_path, name, marks[name]))
                             for name in majority_side),
                 30, message=f"the majority declares {old} dead")

        # The majority's side takes new messages; the isolated leader's side gets ERRORs.
        wait_for(lambda: len(majority.receipted(after=elected)) >= 100, 30,
                 message="receipts on the majority's side after the election")
        wait_for(lambda: isolated.errors_after(cut_at), SEND_TIMEOUT + 30,
                 message="an ERROR for the publisher on the isolated leader")
        # Nor does it make a queue it doesn't hold: that one may exist on the other side.
        wait_for(lambda: all(re.search(rf"cluster\.peer={peer} .*member dead", log_text(tmp_path, old, marks[old]))
                             for peer in majority_side),
                 30, message=f"{old} declares the others dead")
        with host[old].inside():
            lone = PyClient("127.0.0.1", STOMP_PORT, "tcp", "1.2")
        lone.conn.send("/queue/made-while-cut-off", "x", headers={"persistent": "true", "receipt": "new-0"})
        lone.rec.wait(lambda: lone.rec.errors or "new-0" in lone.rec.receipts, 15, "an answer for a new queue")
        assert "new-0" not in lone.rec.receipts
        refusal = lone.rec.errors[0]
        assert refusal.headers.get("message") == "no quorum for /queue/made-while-cut-off", refusal
        assert "1 of the 3 members it knows up" in refusal.body, refusal.body
        lone.close()
        print(f"a new queue on {old}, cut off: {refusal.headers.get('message')}: {refusal.body.strip()[:90]}")
        # Long enough that a node receipting without its majority would show.
        wait_for(lambda: time.monotonic() > cut_at + ELECTION + SEND_TIMEOUT + 2, 30)
        healed_at = time.monotonic()
        netcluster.mend(network, host[old])

        # The old leader follows the new one (or, after one more election, whoever leads now),
        # and takes SENDs again.
        def follows():
            view = queue_view(host[old])
            return view.get("role") == "follower" and view.get("leader") not in (None, old) \
                and view["term"] >= new_term and view["leader"]
        follows_whom = wait_for(follows, 30, message=f"{old} follows a leader")
        rejoined = time.monotonic() - healed_at
        wait_for(lambda: len(isolated.receipted(after=healed_at)) >= 20, 30,
                 message=f"receipts on {old} after the heal")
    finally:
        for c in clients:
            c.stop()

    def story(number):  # when a message was sent and receipted, from the cut
        publisher = majority if number < 2_000_000 else isolated
        sent, receipt = publisher.sent_at.get(number), publisher.receipt_at.get(number)
        return (f"{number}: sent {sent - cut_at:+.2f} s, receipted {receipt - cut_at:+.2f} s "
                f"(heal at {healed_at - cut_at:+.2f} s)") if sent and receipt else str(number)

    drain = Consumer("drain", connector(client_host, host[old].address))
    drain.start()
    try:
        receipted = {0} | majority.receipted() | isolated.receipted()
        expected = receipted - consumer.ack_sent
        try:
            wait_for(lambda: expected <= drain.delivered(), 60, message="the drain")
        except AssertionError:
            missing = sorted(expected - drain.delivered())
            raise AssertionError(f"{len(missing)} of {len(expected)} missing from the drain: "
                                 f"{[story(n) for n in missing[:10]]}; the queue as each node sees it: "
                                 f"{ {name: queue_view(h) for name, h in host.items()} }")
        time.sleep(0.5)  # anything beyond them would show up now
    finally:
        drain.stop()

    # Counted by sequence number.
    deliveries = consumer.deliveries + drain.deliveries
    delivered = {number for number, _, _ in deliveries}
    ack_sent = consumer.ack_sent | drain.ack_sent
    acked_at = {**drain.receipt_at, **consumer.receipt_at}
    lost = receipted - ack_sent - delivered
    again = {number for number, at, _ in deliveries if number in acked_at and at > acked_at[number]}
    cut_then_receipted = {n for n, at in isolated.receipt_at.items()
                          if isolated.sent_at[n] > cut_at and at < healed_at}
    late = [at - cut_at for at in isolated.receipt_at.values() if cut_at + ELECTION + SEND_TIMEOUT < at < healed_at]
    last_before_heal = max((at - cut_at for at in isolated.receipt_at.values() if cut_at < at < healed_at), default=None)
    sent_isolated = [n for n, at in isolated.sent_at.items() if cut_at < at < healed_at]

    def errors(client):  # each ERROR's message, with when it came (seconds from the cut)
        return [f"{message} at {at - cut_at:+.1f} s" for at, message in client.errors]

    print(f"{old} stepped down {stepped_down:.1f} s after the cut; {new} leads (term {new_term}) "
          f"{elected - cut_at:.1f} s after it; cable mended after {healed_at - cut_at:.1f} s; "
          f"{old} followed {follows_whom} {rejoined:.1f} s after the heal")
    print(f"majority publisher: {len(majority.sent_at)} sent, {len(majority.receipted())} receipted "
          f"({len(majority.receipted(after=elected))} after the election), connections {majority.connections}, "
          f"ERRORs {errors(majority)}")
    print(f"isolated publisher: {len(isolated.sent_at)} sent, {len(isolated.receipted())} receipted; "
          f"{len(sent_isolated)} sent while cut off, of them receipted before the heal {len(cut_then_receipted)}; "
          f"last receipt while cut off: {'none' if last_before_heal is None else f'{last_before_heal:+.2f} s'}; "
          f"connections {isolated.connections}, ERRORs {errors(isolated)}")
    print(f"consumer: {len(consumer.deliveries)} deliveries ({sum(r for _, _, r in consumer.deliveries)} redelivered), "
          f"connections {consumer.connections}, ERRORs {errors(consumer)}; drain on {old}: "
          f"{len(drain.deliveries)} deliveries")
    print(f"{len(receipted)} receipted, {len(ack_sent)} acked ({len(acked_at)} with their receipt); "
          f"receipted-but-never-delivered {len(lost)}, acked-and-delivered-again {len(again)}")

    assert not cut_then_receipted, f"{old} receipted, cut off, what it sent after the cut: {sorted(cut_then_receipted)[:20]}"
    assert not late, f"{old} still receipted {late} s after the cut, cut off"
    assert not lost, f"receipted, never acknowledged, never delivered: {sorted(lost)[:20]}"
    assert not again, f"acknowledged with a receipt, delivered again: {sorted(again)[:20]}"
    crashed = [p.log_tail() for p in network.processes if not p.running()]
    assert not crashed, "\n".join(crashed)
    # The cluster is whole again.
    for h in node_hosts:
        wait_for(lambda h=h: all_alive(h), 30, message=f"{h.name} sees three members alive again")
