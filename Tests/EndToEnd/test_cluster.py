"""End-to-end tests of the cluster: several real `cluster-node` processes on 127.0.0.1.

See DESIGN.md ("The path of one message", "Cluster") and cluster.py (how nodes are started
and how the tests read cluster state from the nodes' logs).

- TestThreeNodes: 3-node clusters in which every node lists all three as seeds; topic
  fan-out, the subscribe/publish race the SUBSCRIBE receipt closes, queues across nodes,
  unsubscribe, a node with the wrong secret, CPU starvation, latency measurements.
  Every test gets a fresh cluster (forming takes well under a second).
- TestFailureAndRestart: 3-node clusters joined through node 1 only (the others learn of
  each other by gossip); SIGKILL of a node, restart with the same id and ports.
- Seeds that come up after the node that names them, and the secret in debug logs.

Absence of a delivery is only ever checked after a later "marker" delivery that must come
after it (same publisher, same link, same connection where possible), never by sleeping.
Durations printed with `-s` are for the owner's report; only generous bounds are asserted.
"""

from __future__ import annotations

import json
import math
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pytest

from cluster import Cluster, link_is_up, matching, peer_re, running_cluster, supports_flag, wait_log
from nodes import wait_for
from pyclient import PyClient
from stomp_raw import StompClient, unique

WAIT = 10.0            # upper bound for a delivery we expect
DETECTION_BOUND = 10.0  # upper bound for waiting for `member dead` (the design says "a few seconds")
QUIET = 0.5            # quiet period used only to catch late duplicates of queue messages


def local_consumers(node, queue: str) -> int:
    """Consumers of `queue` connected to `node`, from its admin API."""
    with urllib.request.urlopen(node.admin_url + "/v1/connections", timeout=10) as response:
        doc = json.loads(response.read())
    return sum(q["localConsumers"] for q in doc["queues"] if q["name"] == queue)


def uniq(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

def _cluster_fixture(tmp_path, seeds: str, extra_args=()):
    yield from running_cluster(tmp_path / f"cluster-{seeds}", seeds=seeds, extra_args=list(extra_args))


# A fresh cluster per test (it forms in well under a second): a node that crashes in one
# test cannot take the following tests down with it.
@pytest.fixture
def cluster(tmp_path):
    """Three nodes, each given all three cluster addresses as seeds."""
    yield from _cluster_fixture(tmp_path, "all")


@pytest.fixture
def cluster_first(tmp_path):
    """Three nodes joined through node 1 only. A dead member's interest goes 1 s after it
    became unreachable (`cluster.outage-grace-ms`; 30 s by default, test_seam.py tests that),
    so that the tests of killed nodes see it dropped."""
    yield from _cluster_fixture(tmp_path, "first", ["--outage-grace-ms=1000"])


@pytest.fixture
def clients():
    """clients(node) -> a connected stomp.py 1.2 client over WebSocket; all closed afterwards."""
    opened: list = []

    def make(node, transport: str = "ws", version: str = "1.2") -> PyClient:
        c = PyClient.for_node(node, transport, version)
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close(timeout=2.0)


@pytest.fixture
def raw():
    """raw(node, transport) -> a connected raw STOMP 1.2 client; all closed afterwards."""
    opened: list = []

    def make(node, transport: str = "ws") -> StompClient:
        c = StompClient.open(node, transport)
        opened.append(c)
        c.connect("1.2")
        return c

    yield make
    for c in opened:
        c.close()


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def bodies_of(c: PyClient, sub_id: str) -> list:
    with c.rec.cond:
        return [m.body for m in c.rec.messages if m.headers.get("subscription") == sub_id]


def wait_body(c: PyClient, sub_id: str, body: str, timeout: float = WAIT) -> None:
    c.rec.wait(lambda: body in bodies_of(c, sub_id), timeout, f"{body!r} on subscription {sub_id}")


def numbers(bodies) -> list:
    return [int(b) for b in bodies if b.isdigit()]


def check_sequence(got: list, n: int, label: str, ordered: bool = True) -> None:
    """got must be exactly 0..n-1 (in order unless `ordered` is False)."""
    if got == list(range(n)) or (not ordered and sorted(got) == list(range(n))):
        return
    seen, dups = set(), []
    for x in got:
        if x in seen:
            dups.append(x)
        seen.add(x)
    missing = sorted(set(range(n)) - seen)
    disorder = next((i for i in range(1, len(got)) if got[i] < got[i - 1]), None)
    raise AssertionError(
        f"{label}: got {len(got)} of {n}; missing {len(missing)} {missing[:10]}; "
        f"duplicates {len(dups)} {dups[:10]}; first out-of-order index {disorder}"
        + (f" ({got[disorder - 1]} then {got[disorder]})" if disorder else ""))


def percentile(values: list, p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))]


class Publisher(threading.Thread):
    """Sends 0, 1, 2, ... to a destination at a steady pace until stopped, then `end` with a
    receipt. Uses its own raw client; nothing else touches that client meanwhile."""

    def __init__(self, client: StompClient, destination: str, interval: float = 0.004):
        super().__init__(daemon=True)
        self.client, self.destination, self.interval = client, destination, interval
        self.stop_event = threading.Event()
        self.sent = 0
        self.error = None

    def run(self):
        try:
            while not self.stop_event.is_set():
                self.client.send(self.destination, str(self.sent))
                self.sent += 1
                if self.interval:
                    time.sleep(self.interval)
            self.client.send(self.destination, "end", receipt=True)
        except Exception as e:  # reported by the test
            self.error = e

    def finish(self, timeout: float = WAIT) -> int:
        self.stop_event.set()
        self.join(timeout)
        assert not self.is_alive(), f"publisher to {self.destination} did not finish"
        assert self.error is None, f"publisher to {self.destination} failed: {self.error!r}"
        return self.sent


def wait_dead(cluster: Cluster, observers, peer: str, t_kill: float, marks: dict) -> dict:
    """Wait (bounded) for `member dead` and `dropped interest` about peer on each observer.

    Returns observer -> (detection seconds, interest entries dropped)."""
    out = {}
    for name in observers:
        node = cluster[name]
        _, t_dead = wait_log(node, r"member dead", peer_re(peer), since=marks[name],
                             timeout=max(0.1, t_kill + DETECTION_BOUND - time.monotonic()))
        # At death, or once cluster.outage-grace-ms ran out if that came later.
        line, _ = wait_log(node, r"dropped interest of (departed member|member unreachable past the grace)",
                           peer_re(peer), since=marks[name], timeout=WAIT)
        m = re.search(r"cluster\.interest\.entries=(\d+)", line)
        assert m, f"no entry count in {line!r}"
        out[name] = (t_dead - t_kill, int(m.group(1)))
    return out


# ---------------------------------------------------------------------------
# A formed 3-node cluster, all nodes as seeds
# ---------------------------------------------------------------------------

class TestThreeNodes:

    def test_cluster_forms_with_every_node_as_seed(self, cluster, raw):
        for a in cluster.names:
            for b in cluster.names:
                if a != b:
                    assert matching(cluster[a], r"member alive", peer_re(b)), \
                        f"{a} never logged `member alive` for {b}\n{cluster[a].log_tail()}"
        assert_all_directions(cluster, raw)

    def test_topic_fan_out_exactly_once_in_order(self, cluster, clients):
        n = 200
        base = uniq("fan")
        dest = f"/topic/{base}.x"
        subs = []  # (client, subscription id)

        s1 = clients(cluster[1])                    # local to the publisher's node
        s1.subscribe(dest, "n1-exact")
        subs.append((s1, "n1-exact"))
        s2 = clients(cluster[2])
        s2.subscribe(dest, "n2-exact")
        subs.append((s2, "n2-exact"))
        s2b = clients(cluster[2])                   # overlapping pattern, other connection
        s2b.subscribe(f"/topic/{base}.#", "n2-hash")
        subs.append((s2b, "n2-hash"))
        s3 = clients(cluster[3])                    # two overlapping patterns, one connection
        s3.subscribe(f"/topic/{base}.*", "n3-star")
        s3.subscribe(f"/topic/{base}.#", "n3-hash")
        subs += [(s3, "n3-star"), (s3, "n3-hash")]
        s3b = clients(cluster[3])                   # the same pattern again, other connection
        s3b.subscribe(f"/topic/{base}.*", "n3b-star")
        subs.append((s3b, "n3b-star"))

        pub = clients(cluster[1])
        for i in range(n):
            pub.send(dest, str(i))
        pub.send(dest, "end", receipt=True)

        for c, sid in subs:
            wait_body(c, sid, "end")
        for c, sid in subs:
            got = bodies_of(c, sid)
            assert got[-1] == "end" and got.count("end") == 1, f"{sid}: {got[-5:]}"
            check_sequence(numbers(got), n, sid)
            frames = [m for m in c.rec.messages if m.headers.get("subscription") == sid]
            assert all(m.headers.get("destination") == dest for m in frames)
        # One MESSAGE per subscription: the connection with two matching subscriptions got two.
        assert len(s3.rec.messages) == 2 * (n + 1)

    def test_subscribe_receipt_then_publish_elsewhere_is_delivered(self, cluster, raw):
        """The receipt of a SUBSCRIBE on node 3 means every peer knows: a publish on node 1
        right after it (no sleep) must reach the subscriber. 20 rounds, fresh destinations."""
        sub = raw(cluster[3])
        pub = raw(cluster[1])
        base = uniq("race")
        missed = []
        for i in range(20):
            dest = f"/topic/{base}.r{i}"
            pattern = dest if i % 2 == 0 else f"/topic/{base}.#"  # exact and wildcard
            sid = sub.subscribe(pattern, f"s{i}")   # waits for the RECEIPT
            pub.send(dest, f"round-{i}")            # immediately, on another node
            try:
                frames = sub.collect(lambda fs: any(f.command == "MESSAGE" for f in fs), timeout=5.0)
            except (AssertionError, TimeoutError):
                missed.append(i)
                frames = []
            msgs = [f for f in frames if f.command == "MESSAGE"]
            if msgs:
                assert msgs[0].text == f"round-{i}", msgs
                assert msgs[0].header("subscription") == sid
            rid = unique("u")
            sub.send_frame("UNSUBSCRIBE", {"id": sid, "receipt": rid})
            sub.await_receipt(rid)
            sub.pending = [f for f in sub.pending if f.command != "MESSAGE"]
        assert not missed, f"rounds whose message was not delivered after the receipt: {missed}"

    def test_receipts_come_in_the_order_of_their_frames(self, cluster, raw):
        """A SUBSCRIBE's RECEIPT waits until the peers know of the subscription; the RECEIPTs
        of the frames after it, which need no wait, must not overtake it. Frames go in one
        write, over both transports, 10 rounds each."""
        from stomp_raw import encode_frame
        for transport in ("tcp", "ws"):
            client = raw(cluster[2], transport)
            base = uniq("order")
            for i in range(10):
                ids = [f"{base}-{i}-{n}" for n in range(4)]
                burst = b"".join([
                    encode_frame("SUBSCRIBE", {"id": ids[0], "destination": f"/topic/{base}.{i}",
                                               "receipt": ids[0]}),
                    encode_frame("SEND", {"destination": f"/topic/{base}.other", "receipt": ids[1]}, "x"),
                    encode_frame("SUBSCRIBE", {"id": ids[2], "destination": f"/queue/{base}{i}",
                                               "receipt": ids[2]}),
                    encode_frame("UNSUBSCRIBE", {"id": ids[0], "receipt": ids[3]}),
                ])
                client.send_raw(burst)
                got = [client.expect("RECEIPT", timeout=WAIT).header("receipt-id") for _ in ids]
                assert got == ids, f"{transport} round {i}: receipts out of frame order"
                client.send_frame("UNSUBSCRIBE", {"id": ids[2]})

    def test_a_held_subscribe_receipt_comes_before_the_messages_it_releases(self, cluster, raw):
        """Queue messages wait on node 2 with no consumer anywhere; a SUBSCRIBE there with a
        receipt gets the RECEIPT (held until the peers know) before those messages."""
        pub = raw(cluster[2], "tcp")
        q = f"/queue/{uniq('first')}"
        for i in range(5):
            pub.send(q, f"m{i}")
        pub.send(q, "m5", receipt=True)
        sub = raw(cluster[2], "ws")
        sub.send_frame("SUBSCRIBE", {"id": "s", "destination": q, "receipt": "sub"})
        first = sub.recv_frame(timeout=WAIT)
        assert (first.command, first.header("receipt-id")) == ("RECEIPT", "sub"), first
        assert [sub.expect("MESSAGE", timeout=WAIT).text for _ in range(6)] == [f"m{i}" for i in range(6)]

    def test_queue_competing_consumers_on_other_nodes(self, cluster, clients):
        n = 300
        dest = f"/queue/{uniq('work')}"
        c2 = clients(cluster[2])
        c2.subscribe(dest, "c2")
        c3 = clients(cluster[3])
        c3.subscribe(dest, "c3")
        pub = clients(cluster[1])  # no consumer on node 1
        for i in range(n - 1):
            pub.send(dest, str(i))
        pub.send(dest, str(n - 1), receipt=True)

        def union():
            return set(numbers(bodies_of(c2, "c2"))) | set(numbers(bodies_of(c3, "c3")))

        c2.rec.wait(lambda: len(union()) >= n, 20.0, f"{n} distinct queue messages")
        time.sleep(QUIET)  # late duplicates, if any, would show up now
        got2, got3 = numbers(bodies_of(c2, "c2")), numbers(bodies_of(c3, "c3"))
        print(f"\nQUEUE split over consumers on n2/n3: {len(got2)}/{len(got3)}")
        assert union() == set(range(n))
        assert len(got2) + len(got3) == n, \
            f"duplicates: {sorted(set(got2) & set(got3))[:10]} (n2 {len(got2)}, n3 {len(got3)})"
        assert got2 and got3, f"one consumer got everything: n2 {len(got2)}, n3 {len(got3)}"
        assert got2 == sorted(got2), "n2 consumer received out of order"
        assert got3 == sorted(got3), "n3 consumer received out of order"

    def test_queue_messages_held_until_a_consumer_subscribes_anywhere(self, cluster, clients):
        n = 50
        dest = f"/queue/{uniq('held')}"
        pub = clients(cluster[1])
        for i in range(n - 1):
            pub.send(dest, str(i))
        pub.send(dest, str(n - 1), receipt=True)  # no consumer anywhere in the cluster
        c3 = clients(cluster[3])
        c3.subscribe(dest, "late")
        c3.rec.wait(lambda: len(bodies_of(c3, "late")) >= n, 20.0, f"{n} held messages")
        time.sleep(QUIET)
        check_sequence(numbers(bodies_of(c3, "late")), n, "held queue messages on n3")

    def test_unsubscribe_and_disconnect_stop_delivery(self, cluster, clients, raw):
        base = uniq("unsub")
        dest = f"/topic/{base}.x"
        marker = f"/topic/{base}-marker"
        a = clients(cluster[2])
        a.subscribe(f"/topic/{base}.*", "star")
        a.subscribe(f"/topic/{base}.#", "hash")
        a.subscribe(marker, "a-marker")       # same connection: strict ordering after dest
        b = clients(cluster[2])
        b.subscribe(marker, "b-marker")       # another client on node 2 for another destination
        gone = raw(cluster[3])
        gone.subscribe(dest, "gone")          # the only subscriber of dest on node 3
        d = clients(cluster[3])
        d.subscribe(marker, "d-marker")
        pub = clients(cluster[1])

        def barrier(tag):
            pub.send(marker, tag, receipt=True)
            wait_body(b, "b-marker", tag)
            wait_body(d, "d-marker", tag)
            wait_body(a, "a-marker", tag)

        pub.send(dest, "m1")
        barrier("b1")
        assert bodies_of(a, "star") == ["m1"] and bodies_of(a, "hash") == ["m1"]
        gone.messages(1)

        a.unsubscribe("star")                 # `hash` still matches on the same connection
        pub.send(dest, "m2")
        barrier("b2")
        assert bodies_of(a, "star") == ["m1"], "delivered on a subscription after UNSUBSCRIBE"
        assert bodies_of(a, "hash") == ["m1", "m2"]

        gone.disconnect()                     # DISCONNECT with receipt: node 3 has no subscriber
        a.unsubscribe("hash")                 # node 2 has none either
        pub.send(dest, "m3")
        barrier("b3")
        assert bodies_of(a, "star") == ["m1"] and bodies_of(a, "hash") == ["m1", "m2"]
        assert [m.headers.get("subscription") for m in a.rec.messages].count("a-marker") == 3

        # Resubscribing afterwards works again (the interest comes back on every peer).
        a.subscribe(dest, "again")
        pub.send(dest, "m4", receipt=True)
        wait_body(a, "again", "m4")

    def test_dropped_queue_consumer_gets_no_more_messages(self, cluster, clients):
        """A queue consumer on node 2 vanishes (no DISCONNECT); messages published on node 1
        afterwards all reach a consumer that subscribes later on node 3, once each."""
        n = 30
        dest = f"/queue/{uniq('drop')}"
        c2 = clients(cluster[2])
        c2.subscribe(dest, "c2")
        pub = clients(cluster[1])
        pub.send(dest, "before", receipt=True)
        wait_body(c2, "c2", "before")
        c2.drop()
        # An auto-ack delivery to a consumer whose node hasn't yet seen it go is lost with the
        # connection (at-most-once is what auto-ack means); publish once node 2 has seen it.
        # Node 1 may still hand messages to node 2 until the interest change reaches it.
        queue = dest.removeprefix("/queue/")
        wait_for(lambda: local_consumers(cluster[2], queue) == 0, message=f"node 2 to see its consumer of {queue} go")
        for i in range(n - 1):
            pub.send(dest, str(i))
        pub.send(dest, str(n - 1), receipt=True)
        c3 = clients(cluster[3])
        c3.subscribe(dest, "c3")
        c3.rec.wait(lambda: len(bodies_of(c3, "c3")) >= n, 20.0, f"{n} messages on n3")
        time.sleep(QUIET)
        assert bodies_of(c2, "c2") == ["before"]
        # Exactly once, but not necessarily in order: until n2 noticed its consumer was gone,
        # n1 kept handing messages to n2, which now owns them; the rest stayed with n1. Both
        # owners hand their share to n3 when it subscribes, so the two shares may interleave.
        check_sequence(numbers(bodies_of(c3, "c3")), n, "queue after the consumer on n2 dropped", ordered=False)

    def test_wrong_secret_is_refused(self, cluster, clients):
        marks = cluster.marks()
        n4 = cluster.add_foreign_node("n4", secret="a-different-secret-0123456789")
        try:
            wait_log(n4, r"link refused", r"authentication", timeout=WAIT)
            wait_log(cluster[1], r"link refused", r"authentication", since=marks["n1"], timeout=WAIT)

            base = uniq("sec")
            dest = f"/topic/{base}"
            s4 = clients(n4)
            s4.subscribe(dest, "n4")          # no live peer: the receipt comes at once
            s2 = clients(cluster[2])
            s2.subscribe(dest, "n2")
            s3 = clients(cluster[3])
            s3.subscribe(dest, "n3")
            pub = clients(cluster[1])
            for i in range(20):
                pub.send(dest, str(i))
            pub.send(dest, "end", receipt=True)
            wait_body(s2, "n2", "end")
            wait_body(s3, "n3", "end")
            check_sequence(numbers(bodies_of(s2, "n2")), 20, "n2")
            check_sequence(numbers(bodies_of(s3, "n3")), 20, "n3")
            # The node with the wrong secret hears nothing and is no member anywhere.
            assert bodies_of(s4, "n4") == []
            assert not matching(n4, r"\[Gossip\] link up"), n4.log_tail()
            assert not matching(n4, r"member alive"), n4.log_tail()
            for name in cluster.names:
                assert not matching(cluster[name], peer_re("n4"), r"link up|member alive",
                                    since=marks[name]), cluster[name].log_tail()
            assert cluster.formed(), "the three nodes lost their links"
        finally:
            problems = n4.stop()
        assert not problems, "\n".join(problems)

    def test_busy_cpus_cause_no_false_failure_detection(self, cluster, clients):
        marks = cluster.marks()
        dest = f"/topic/{uniq('busy')}"
        s2 = clients(cluster[2])
        s2.subscribe(dest, "n2")
        s3 = clients(cluster[3])
        s3.subscribe(dest, "n3")
        pub_client = StompClient.ws(cluster[1].ws_url)
        pub_client.connect("1.2")
        burn = "import time\nend = time.monotonic() + 10\nwhile time.monotonic() < end:\n    pass\n"
        burners = []
        pub = Publisher(pub_client, dest, interval=0.02)
        try:
            for _ in range(4):
                burners.append(subprocess.Popen([sys.executable, "-c", burn],
                                                stdin=subprocess.DEVNULL))
            pub.start()
            for p in burners:  # they end by themselves after 10 s
                p.wait(timeout=30)
            sent = pub.finish()
        finally:
            for p in burners:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait(timeout=5)
            pub.stop_event.set()
            pub_client.close()
        wait_body(s2, "n2", "end")
        wait_body(s3, "n3", "end")
        check_sequence(numbers(bodies_of(s2, "n2")), sent, "n2 during CPU load")
        check_sequence(numbers(bodies_of(s3, "n3")), sent, "n3 during CPU load")
        for kind in ("suspect", "dead"):
            lines = cluster.logs_matching(rf"member {kind}", marks=marks)
            print(f"\nBUSY: `member {kind}` lines per node: { {n: len(v) for n, v in lines.items()} }")
        dead = cluster.logs_matching(r"member dead", marks=marks)
        assert not any(dead.values()), f"false failure detection under load: {dead}"
        assert cluster.formed()
        # And a subscribe/publish across nodes still works right away.
        late = clients(cluster[3])
        late.subscribe(dest, "late")
        clients(cluster[1]).send(dest, "after", receipt=True)
        wait_body(late, "late", "after")

    def test_measure_subscribe_receipt_and_first_delivery(self, cluster, raw):
        base = uniq("lat")
        # SUBSCRIBE -> RECEIPT on node 3 (every peer must acknowledge the interest first).
        sub = raw(cluster[3])
        receipt_ms = []
        for i in range(30):
            rid = unique("r")
            t0 = time.perf_counter()
            sub.send_frame("SUBSCRIBE", {"destination": f"/topic/{base}.r{i}", "id": f"s{i}",
                                         "receipt": rid})
            sub.await_receipt(rid)
            receipt_ms.append((time.perf_counter() - t0) * 1000)
            rid = unique("u")
            sub.send_frame("UNSUBSCRIBE", {"id": f"s{i}", "receipt": rid})
            sub.await_receipt(rid)

        # SUBSCRIBE -> first MESSAGE from a publisher on node 1 sending in a (1 ms paced) loop.
        pub = raw(cluster[1], "tcp")
        first_ms, first_after_receipt_ms = [], []
        for i in range(15):
            dest = f"/topic/{base}.d{i}"
            c = raw(cluster[3])
            stop = threading.Event()
            sent = [0]

            def loop():
                while not stop.is_set():
                    pub.send_frame("SEND", {"destination": dest}, b"x")
                    sent[0] += 1
                    time.sleep(0.001)

            t = threading.Thread(target=loop, daemon=True)
            t.start()
            try:
                wait_for(lambda: sent[0] >= 5, timeout=WAIT, message="publisher loop running")
                rid = unique("r")
                t0 = time.perf_counter()
                c.send_frame("SUBSCRIBE", {"destination": dest, "id": "s", "receipt": rid})
                t_receipt = t_msg = None
                deadline = time.monotonic() + WAIT
                while t_msg is None or t_receipt is None:
                    f = c.recv_frame(max(0.01, deadline - time.monotonic()))
                    if f.command == "RECEIPT" and t_receipt is None:
                        t_receipt = time.perf_counter()
                    elif f.command == "MESSAGE" and t_msg is None:
                        t_msg = time.perf_counter()
                    elif f.command == "ERROR":
                        raise AssertionError(f"ERROR: {f!r}")
                first_ms.append((t_msg - t0) * 1000)
                first_after_receipt_ms.append((t_msg - t_receipt) * 1000)
            finally:
                stop.set()
                t.join(WAIT)
            # Read up to the UNSUBSCRIBE's receipt before closing: a WebSocket client with
            # unread messages queued cannot complete the close handshake quickly.
            rid = unique("u")
            c.send_frame("UNSUBSCRIBE", {"id": "s", "receipt": rid})
            c.await_receipt(rid)
            c.pending.clear()
            c.close()

        def summary(v):
            return (f"median {statistics.median(v):.1f} ms, p90 {percentile(v, 90):.1f} ms, "
                    f"max {max(v):.1f} ms (n={len(v)})")

        print(f"\nSUBSCRIBE->RECEIPT {summary(receipt_ms)}")
        print(f"SUBSCRIBE->first delivery {summary(first_ms)}")
        print(f"RECEIPT->first delivery {summary(first_after_receipt_ms)}")
        # Generous: well below the 2 s interest-ack timeout, which would mean missing acks.
        assert statistics.median(receipt_ms) < 1000
        assert statistics.median(first_ms) < 1000


def assert_all_directions(cluster: Cluster, raw) -> None:
    """A subscriber on every node receives a message published on every other node."""
    base = uniq("dir")
    subs = {}
    for name in cluster.names:
        subs[name] = raw(cluster[name])
        subs[name].subscribe(f"/topic/{base}.{name}")
    for src in cluster.names:
        pub = raw(cluster[src])
        for dst in cluster.names:
            if dst != src:
                pub.send(f"/topic/{base}.{dst}", f"{src}->{dst}")
    for dst, c in subs.items():
        want = sorted(f"{src}->{dst}" for src in cluster.names if src != dst)
        got = sorted(f.text for f in c.messages(len(want), timeout=WAIT))
        assert got == want, f"{dst}: {got}"


# ---------------------------------------------------------------------------
# Node failure and restart, cluster joined through node 1 only
# ---------------------------------------------------------------------------

class TestFailureAndRestart:

    def test_cluster_forms_through_one_seed(self, cluster_first, raw):
        c = cluster_first
        # n2 and n3 only know n1's address; they must have found each other by gossip.
        assert link_is_up(c["n2"], "n3") and link_is_up(c["n3"], "n2")
        assert_all_directions(c, raw)

    def test_sigkill_node_loses_nothing_between_the_others(self, cluster_first, clients, raw):
        c = cluster_first
        base = uniq("kill")
        a_dest, b_dest = f"/topic/{base}.a", f"/topic/{base}.b"
        s2 = clients(c["n2"])
        s2.subscribe(a_dest, "a")       # n1 -> n2
        s1 = clients(c["n1"])
        s1.subscribe(b_dest, "b")       # n2 -> n1
        s3 = clients(c["n3"])           # n3 wants both: n1 and n2 forward to it until it dies
        s3.subscribe(f"/topic/{base}.*", "both")
        pub1 = Publisher(raw(c["n1"]), a_dest)
        pub2 = Publisher(raw(c["n2"]), b_dest)
        pub1.start()
        pub2.start()
        try:
            s2.rec.wait(lambda: len(bodies_of(s2, "a")) >= 100, WAIT, "traffic before the kill")
            assert bodies_of(s3, "both"), "n3 received nothing before the kill"
            marks = c.marks()
            t_kill = c.kill("n3")
            found = wait_dead(c, ["n1", "n2"], "n3", t_kill, marks)
            # Keep the traffic going for a while after the detection too.
            mark_a = len(bodies_of(s2, "a"))
            s2.rec.wait(lambda: len(bodies_of(s2, "a")) >= mark_a + 100, WAIT, "traffic after the kill")
        finally:
            sent1 = pub1.finish()
            sent2 = pub2.finish()
        for name, (secs, entries) in found.items():
            print(f"\nDETECTION n3 declared dead after {secs:.2f} s (seen by {name}; "
                  f"dropped {entries} interest entries)")
            assert entries >= 1, f"{name} dropped no interest of n3, which had a subscription"
        wait_body(s2, "a", "end")
        wait_body(s1, "b", "end")
        check_sequence(numbers(bodies_of(s2, "a")), sent1, "n1 -> n2 across the kill of n3")
        check_sequence(numbers(bodies_of(s1, "b")), sent2, "n2 -> n1 across the kill of n3")
        assert link_is_up(c["n1"], "n2") and link_is_up(c["n2"], "n1")

    def test_restarted_node_rejoins_and_receives(self, cluster_first, clients):
        """SIGKILL n3, wait until n1 and n2 declared it dead, start it again with the same
        node id and cluster port: it rejoins and serves subscribers and publishers."""
        c = cluster_first
        marks = c.marks()
        wait_dead(c, ["n1", "n2"], "n3", c.kill("n3"), marks)
        marks = c.marks()
        c.restart("n3")
        c.wait_formed()
        for name in ("n1", "n2"):
            wait_log(c[name], r"member alive", peer_re("n3"), since=marks[name], timeout=WAIT)
        check_rejoined_node_works(c, clients)

    def test_node_restarted_before_detection_rejoins(self, cluster_first, clients):
        """SIGKILL and restart at once (same id and ports, new boot epoch): the peers must
        take the new incarnation, not wait for the old one to be declared dead."""
        c = cluster_first
        c.wait_formed()
        marks = c.marks()
        c.kill("n3")
        t0 = time.monotonic()
        c.restart("n3")
        c.wait_formed()
        for name in ("n1", "n2"):
            wait_log(c[name], r"link up", peer_re("n3"), since=marks[name], timeout=WAIT)
        print(f"\nREJOIN after immediate restart took {time.monotonic() - t0:.2f} s")
        check_rejoined_node_works(c, clients)


def check_rejoined_node_works(c: Cluster, clients) -> None:
    dest = f"/topic/{uniq('back')}"
    s3 = clients(c["n3"])
    s3.subscribe(dest, "n3")           # receipt: n1 and n2 acknowledged the new interest
    s2 = clients(c["n2"])
    s2.subscribe(dest, "n2")
    pub1 = clients(c["n1"])
    for i in range(50):
        pub1.send(dest, str(i))
    pub1.send(dest, "end", receipt=True)
    wait_body(s3, "n3", "end")
    check_sequence(numbers(bodies_of(s3, "n3")), 50, "n1 -> restarted n3")
    # And the restarted node's own publishers reach the others.
    back = f"/topic/{uniq('from3')}"
    s1 = clients(c["n1"])
    s1.subscribe(back, "n1")
    s2.subscribe(back, "n2b")
    clients(c["n3"]).send(back, "hello from n3", receipt=True)
    wait_body(s1, "n1", "hello from n3")
    wait_body(s2, "n2b", "hello from n3")


# ---------------------------------------------------------------------------
# Seeds and secrets
# ---------------------------------------------------------------------------

def test_node_joins_when_its_seed_comes_up_later(tmp_path):
    """n2 starts first and cannot reach its seed n1; once n1 is up, n2 must join (the seed
    is retried while a node has no peer, as a StatefulSet's pods come up in any order).
    The refused dial must leave nothing behind: no link that is later "closed" again and
    again for being silent."""
    link_timeout_ms = 1500
    fast = [f"--link-timeout-ms={link_timeout_ms}"] if supports_flag("--link-timeout-ms") else []
    c = Cluster(tmp_path / "late-seed", size=2, seeds="first",
                extra_args=["--log-level", "debug", *fast])  # debug: to see the failed dial
    try:
        n2 = c.start_node("n2")
        _, t_refused = wait_log(n2, r"dial failed", timeout=WAIT)
        c.start_node("n1")
        c.wait_formed(timeout=15.0)
        if fast:
            # An absence: give a stale link from the refused dial twice the link timeout.
            time.sleep(max(0.0, t_refused + 2 * link_timeout_ms / 1000 - time.monotonic()))
            stale = matching(n2, r"closing silent link")
            assert not stale, f"{len(stale)} x {stale[0]!r}"
    finally:
        problems = c.stop()
    assert not problems, "\n".join(problems)


def test_cluster_secret_never_logged(tmp_path):
    """Not even at debug level: neither as text nor as the list of its bytes."""
    secret = "do-not-log-me-0123456789abcdef"
    c = Cluster(tmp_path / "secret", size=2, seeds="first", secret=secret,
                extra_args=["--log-level", "trace"])
    try:
        c.start()
    finally:
        problems = c.stop()
    assert not problems, "\n".join(problems)
    as_bytes = ", ".join(str(b) for b in secret.encode())
    for node in c.all_nodes:
        text = node.log_path.read_text(errors="replace")
        assert secret not in text, f"{node.name} logged the cluster secret"
        assert as_bytes not in text, f"{node.name} logged the cluster secret's bytes"
        assert secret.encode().hex() not in text, f"{node.name} logged the secret in hex"
