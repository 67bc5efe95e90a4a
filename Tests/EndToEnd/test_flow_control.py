"""Cross-node flow control end to end: a 2-node cluster of real `cluster-node` processes.

One publisher on node 1 floods a topic as fast as TCP lets it (raw STOMP 1.2 over TCP,
pre-encoded SEND frames written in big chunks, no receipts) while many subscribers on
node 2 read it. Node 2 has many deliveries to make for every message node 1 forwards.
Without flow control it would read its link as fast as node 1 writes and fall seconds
behind, the backlog growing without bound in its task queues. With flow control

- node 2 stops reading its link while it has more than 20,000 items queued for its other
  event loops (`flow_control_pauses_total{input="link"}` on node 2), so TCP pushes back;
- node 1's link to node 2 then holds more than 2 MiB unsent and node 1 stops reading from
  its publisher until the link drains (`flow_control_pauses_total{input="client"}` on
  node 1);
- nothing is dropped (`cluster_forward_dropped_total` on node 1, both reasons, stays 0).

The test checks that every subscriber gets every message exactly once and in order and is
never cut off as a slow consumer (an ERROR frame fails the test), that nothing was dropped,
that node 2's links did pause, and that both nodes still serve afterwards and did not crash
(the cluster's stop checks that).

Only deliveries to connections on another event loop than the router's count as node 2's
backlog: the router hands deliveries to connections on its own loop over at once. Subscribers
spread evenly over the loops leave the router's loop the busiest one, so the backlog never
reaches the high-water mark and only node 1's client pauses engage. So node 2 runs with two
event loops and its subscriber connections are opened one after the other: accepted
connections alternate between the loops, so every other connection shares a loop. Each of
the two groups subscribes to its own topic and gets its own flood, one after the other; the
group off the router's loop makes node 2 fall behind. The load (20,000 messages of 1,000
bytes to 16 subscribers per flood) pauses node 2's link in a debug build.

Failure detection probes travel on the same links, so a flood keeps them waiting behind
megabytes of messages for seconds. A member heard from over its link counts as answering
the probe, so no node may suspect its peer during a flood (before that rule, each flood
here made both nodes suspect each other, and a heavier one got a node declared dead and
the messages on its link lost). If it happens anyway, the failure message lists the
membership and link changes of both nodes and node 1's route for the topic.

The readers keep their parsing cheap (split on NUL, find the `seq` header) so that Python
keeps up with the node. "No duplicate after the last message" is checked with a marker
message published after the flood on the same connection and link, never by sleeping.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
import urllib.parse
import urllib.request

import pytest

from cluster import Cluster, running_cluster
from stomp_raw import DEFAULT_TIMEOUT, StompClient, encode_frame, round_trip, unique

MESSAGES = 20_000        # SEND frames per flood (plus one marker)
BODY_SIZE = 1000         # bytes per body; random text, so that link compression can't shrink it
SUBSCRIBERS = 16         # per group on node 2: one raw TCP connection and one reader thread each
EVENT_LOOPS = 2          # on both nodes; the two subscriber groups rely on it
CHUNK = 1 << 20          # bytes per sendall() of the pre-encoded flood
RECV_SIZE = 1 << 20      # bytes per recv() of a subscriber
COMPLETION = 120.0       # upper bound for one flood, from the first SEND to the last delivery
SEND_TIMEOUT = 60.0      # upper bound for one sendall() while node 1 holds the publisher back
MEMBERSHIP = r"member (suspect|dead|alive|left)|dropped interest|link (up|down|failed)|slow consumer"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def metrics(node) -> dict:
    """The node's /metrics as {series: value}, e.g. 'flow_control_pauses_total{input="link"}'."""
    with urllib.request.urlopen(node.admin_url + "/metrics", timeout=10) as response:
        assert response.status == 200, f"{node.name}: /metrics answered {response.status}"
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def route(node, destination: str) -> str:
    """The node's route for a destination (/v1/interest), for failure messages."""
    url = f"{node.admin_url}/v1/interest?destination={urllib.parse.quote(destination, safe='')}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()
    except OSError as e:
        return f"<{e}>"


def series(values: dict, name: str) -> float:
    """One series' value; a series the node does not export fails the test."""
    assert name in values, f"{name} missing from /metrics: {sorted(values)}"
    return values[name]


LINK_PAUSES = 'flow_control_pauses_total{input="link"}'
CLIENT_PAUSES = 'flow_control_pauses_total{input="client"}'
DROPPED = {reason: f'cluster_forward_dropped_total{{reason="{reason}"}}'
           for reason in ("link_backpressure", "no_link")}
FORWARDED = "cluster_messages_forwarded_total"


def flood_chunks(destination: str, n: int) -> list:
    """Frames 0..n-1 pre-encoded (header `seq`, a distinct random text body each), in chunks
    of about CHUNK bytes."""
    text = base64.b64encode(os.urandom(n * BODY_SIZE * 3 // 4 + 3))
    chunks, current, size = [], [], 0
    for i in range(n):
        frame = encode_frame("SEND", [("destination", destination), ("seq", str(i))],
                             text[i * BODY_SIZE:(i + 1) * BODY_SIZE])
        current.append(frame)
        size += len(frame)
        if size >= CHUNK:
            chunks.append(b"".join(current))
            current, size = [], 0
    if current:
        chunks.append(b"".join(current))
    return chunks


def membership_lines(cluster: Cluster, marks: dict) -> str:
    """Membership, link and slow-consumer log lines of both nodes since `marks`."""
    out = []
    for name, lines in cluster.logs_matching(MEMBERSHIP, marks=marks).items():
        out += [f"{name}: {line}" for line in lines]
    return "\n".join(out) or "(none)"


class Reader(threading.Thread):
    """Reads one subscriber's socket with large recv()s until the MESSAGE with seq `last`.

    Checks, as cheaply as it can, that MESSAGE frames carry seq 0, 1, 2, ... `last` with no
    gap or duplicate and bodies of the expected sizes; stops at the first problem (an ERROR
    frame, a wrong seq, EOF) and records it in `problem`."""

    def __init__(self, client: StompClient, last: int, last_body: int, deadline: float):
        super().__init__(daemon=True)
        assert not client.pending and not client.parser.buf, "frames before the flood"
        self.client, self.last, self.last_body, self.deadline = client, last, last_body, deadline
        self.next = 0           # the seq expected next
        self.problem = None
        self.done = threading.Event()

    def run(self):
        sock = self.client.t.sock
        sock.settimeout(DEFAULT_TIMEOUT)
        buf = b""
        try:
            while self.next <= self.last and self.problem is None:
                if time.monotonic() > self.deadline:
                    self.problem = f"timed out waiting for seq {self.next}"
                    break
                try:
                    data = sock.recv(RECV_SIZE)
                except socket.timeout:
                    continue
                if not data:
                    self.problem = f"connection closed before seq {self.next}"
                    break
                parts = (buf + data).split(b"\x00")
                buf = parts.pop()
                for part in parts:
                    self.check(part.lstrip(b"\r\n"))  # EOLs between frames are heart-beats
                    if self.problem is not None or self.next > self.last:
                        break
        except Exception as e:  # reported by the test
            self.problem = f"{type(e).__name__}: {e} before seq {self.next}"
        finally:
            self.done.set()

    def check(self, frame: bytes) -> None:
        head_end = frame.find(b"\n\n")
        if not frame.startswith(b"MESSAGE\n"):
            self.problem = f"{frame[:head_end if head_end > 0 else 300]!r} before seq {self.next}"
            return
        i = frame.find(b"\nseq:", 0, head_end) + 5
        seq = int(frame[i:frame.find(b"\n", i)]) if i > 4 else None
        if seq != self.next:
            self.problem = f"seq {seq} where {self.next} was expected"
            return
        body = len(frame) - head_end - 2
        if body != (self.last_body if seq == self.last else BODY_SIZE):
            self.problem = f"seq {seq}: body of {body} bytes"
            return
        self.next += 1


class Publisher(threading.Thread):
    """Writes pre-encoded chunks to a raw TCP socket as fast as the node reads them."""

    def __init__(self, sock: socket.socket, chunks: list):
        super().__init__(daemon=True)
        self.sock, self.chunks = sock, chunks
        self.sent = 0           # chunks written
        self.error = None
        self.elapsed = None

    def run(self):
        start = time.monotonic()
        try:
            self.sock.settimeout(SEND_TIMEOUT)
            for chunk in self.chunks:
                self.sock.sendall(chunk)
                self.sent += 1
        except Exception as e:  # reported by the test
            self.error = e
        self.elapsed = time.monotonic() - start


def flood(cluster: Cluster, pub: StompClient, dest: str, subscribers: list, label: str) -> dict:
    """Flood `dest` from `pub` (on node 1) and check that every subscriber (on node 2) got
    every message exactly once and in order; return what node 1 and node 2 counted meanwhile."""
    n1, n2 = cluster[1], cluster[2]
    chunks = flood_chunks(dest, MESSAGES)
    marker_rid = unique("flood-end")
    marker = encode_frame("SEND", [("destination", dest), ("seq", str(MESSAGES)),
                                   ("receipt", marker_rid)], "end")
    marks = cluster.marks()
    before1, before2 = metrics(n1), metrics(n2)
    start = time.monotonic()
    deadline = start + COMPLETION
    readers = [Reader(c, MESSAGES, len(b"end"), deadline) for c in subscribers]
    for r in readers:
        r.start()
    publisher = Publisher(pub.t.sock, chunks)
    publisher.start()

    def progress() -> str:
        got = [r.next for r in readers]
        return (f"{label}: publisher wrote {publisher.sent} of {len(chunks)} chunks; subscribers at "
                f"seq {min(got)}..{max(got)} of {MESSAGES}\nnode 1's route for {dest}: "
                f"{route(n1, dest)}\nmembership and links:\n{membership_lines(cluster, marks)}")

    publisher.join(max(0.0, deadline - time.monotonic()))
    assert not publisher.is_alive(), f"publisher still sending after {COMPLETION}s\n{progress()}"
    assert publisher.error is None, f"publisher failed: {publisher.error!r}\n{progress()}"
    # The marker follows the whole flood on the same connection and link: once a subscriber
    # has it, no duplicate of an earlier message can still be on its way.
    pub.send_raw(marker)
    try:
        pub.await_receipt(marker_rid, timeout=max(0.1, deadline - time.monotonic()))
    except AssertionError as e:
        raise AssertionError(f"{e}\n{progress()}") from None
    for r in readers:
        r.done.wait(max(0.0, deadline - time.monotonic()))
    elapsed = time.monotonic() - start

    after1, after2 = metrics(n1), metrics(n2)
    suspicions = sum(len(lines) for lines in cluster.logs_matching(r"member suspect", marks=marks).values())
    result = {
        "elapsed": elapsed,
        "publisher": publisher.elapsed,
        "link_pauses": series(after2, LINK_PAUSES) - series(before2, LINK_PAUSES),
        "client_pauses": series(after1, CLIENT_PAUSES) - series(before1, CLIENT_PAUSES),
        "dropped": {r: series(after1, s) - series(before1, s) for r, s in DROPPED.items()},
        "forwarded": series(after1, FORWARDED) - series(before1, FORWARDED),
    }
    print(f"\nFLOW {label}: {MESSAGES} msgs x {len(subscribers)} subs in {elapsed:.1f} s "
          f"(publisher done after {publisher.elapsed:.1f} s), node2 link pauses {result['link_pauses']:.0f}, "
          f"node1 client pauses {result['client_pauses']:.0f}, "
          f"dropped {sum(result['dropped'].values()):.0f}, node1 forwarded {result['forwarded']:.0f}, "
          f"members suspected {suspicions}")

    problems: dict = {}  # problem -> subscribers (usually all share one)
    for i, r in enumerate(readers):
        problem = r.problem or (None if r.done.is_set() else f"still waiting for seq {r.next}")
        if problem:
            problems.setdefault(problem, []).append(i)
    assert not problems, (
        f"{label}: a subscriber did not get every message exactly once and in order (an ERROR "
        f"'slow consumer' means the Python readers fell behind):\n"
        + "\n".join(f"subscribers {who}: {problem}" for problem, who in problems.items())
        + f"\nnode 1 dropped {result['dropped']}, forwarded {result['forwarded']:.0f}\n{progress()}")
    assert suspicions == 0, (f"{label}: a node suspected its peer while the link was busy; traffic "
                             f"on a link counts as an answer to a probe\n{progress()}")
    assert result["dropped"] == {"link_backpressure": 0, "no_link": 0}, \
        f"{label}: node 1 dropped forwards: {result['dropped']}"
    assert result["forwarded"] >= MESSAGES + 1, \
        f"{label}: node 1 forwarded {result['forwarded']:.0f} of {MESSAGES + 1}"
    return result


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

@pytest.fixture
def cluster(tmp_path):
    """Two nodes with EVENT_LOOPS event loops each, both cluster addresses as seeds."""
    # A release node delivers a flood faster than Python readers take it in; this test is about
    # pacing the link, not about cutting slow consumers (test_slow_consumer.py is), so each
    # subscriber may hold a whole flood (20,000 x ~1.1 KB) unread.
    yield from running_cluster(tmp_path / "flow", size=2, seeds="all",
                               extra_args=[f"--event-loops={EVENT_LOOPS}", f"--max-outbound-bytes={64 * 1024 * 1024}"])


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

@pytest.mark.timeout(2 * COMPLETION + 120)
def test_flood_across_nodes_is_paced_not_dropped(cluster):
    n1, n2 = cluster[1], cluster[2]
    topics = [f"/topic/{unique(f'flood{g}')}" for g in range(EVENT_LOOPS)]
    clients: list = []
    try:
        # Opened one after the other with nothing else connecting to node 2 meanwhile: each
        # group shares one event loop.
        groups: list = [[] for _ in topics]
        for i in range(SUBSCRIBERS * len(topics)):
            c = StompClient.tcp(n2.host, n2.stomp_port)
            clients.append(c)
            c.connect("1.2")
            groups[i % len(topics)].append(c)
        for topic, group in zip(topics, groups):
            for c in group:
                # The receipt comes once node 1 holds the interest: publishing after it is safe.
                c.subscribe(topic, receipt=True)
        pub = StompClient.tcp(n1.host, n1.stomp_port)
        clients.append(pub)
        pub.connect("1.2")

        results = [flood(cluster, pub, topic, group, f"group {g}")
                   for g, (topic, group) in enumerate(zip(topics, groups))]

        def per_flood(key: str) -> str:
            return ", ".join(f"{r[key]:.0f}" for r in results)

        link_pauses = sum(r["link_pauses"] for r in results)
        client_pauses = sum(r["client_pauses"] for r in results)
        print(f"FLOW: {MESSAGES} msgs x {SUBSCRIBERS} subs x {len(results)} floods in "
              f"{sum(r['elapsed'] for r in results):.1f} s, node2 link pauses {link_pauses:.0f} "
              f"({per_flood('link_pauses')}), node1 client pauses "
              f"{client_pauses:.0f} ({per_flood('client_pauses')}), dropped 0")
        assert link_pauses > 0, ("node 2's links never paused: neither flood pushed node 2 past its "
                                 "high-water mark (raise the load, or check that each subscriber "
                                 "group still shares one event loop)")

        # Both nodes still serve: a fresh subscriber on node 2, a publish on node 1.
        after = f"/topic/{unique('after-flood')}"
        fresh = StompClient.tcp(n2.host, n2.stomp_port)
        clients.append(fresh)
        fresh.connect("1.2")
        fresh.subscribe(after, receipt=True)
        body = unique("after")
        pub.send(after, body, receipt=True)
        got = fresh.messages(1)
        assert got[0].body == body.encode(), got
        # And each node on its own.
        round_trip(fresh, after)
        pub.subscribe(after, receipt=True)
        round_trip(pub, after)
        for group in groups:
            for c in group:
                c.disconnect()
    finally:
        for c in clients:
            c.close()
