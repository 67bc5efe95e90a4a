"""Slow consumers: a subscriber that never reads is disconnected once its outbound buffer
passes --max-outbound-bytes; the publisher and the other subscribers are not held back."""

from __future__ import annotations

import threading
import time

from nodes import module_node, wait_for
from stomp_raw import (DEFAULT_TIMEOUT, ConnectionClosed, FrameParser, StompClient, round_trip,
                       unique)

MAX_OUTBOUND = 256 * 1024
node = module_node("--max-outbound-bytes", str(MAX_OUTBOUND), name="slow-consumer")

MESSAGE_SIZE = 4096
# 8 MB: enough to fill the kernel's socket buffers of the slow connection and the
# server's outbound limit many times over.
MESSAGES = 2000
BATCH = 16  # 64 KB in flight at most towards the fast subscribers


class Reader(threading.Thread):
    """Reads a subscriber's socket as fast as it can, counting MESSAGE frames."""

    def __init__(self, client: StompClient, expected: int):
        super().__init__(daemon=True)
        self.client, self.expected = client, expected
        self.bodies: list = []
        self.other: list = []
        self.error = None
        self.done = threading.Event()

    def run(self):
        try:
            deadline = time.monotonic() + 110
            while len(self.bodies) < self.expected and time.monotonic() < deadline:
                try:
                    f = self.client.recv_frame(DEFAULT_TIMEOUT)
                except TimeoutError:
                    continue
                if f.command == "MESSAGE":
                    self.bodies.append(f.body[:16])
                else:
                    self.other.append(f)
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            self.done.set()


def test_slow_consumer_is_disconnected_and_others_keep_working(node):
    dest = f"/topic/{unique('flood')}"
    # The slow subscriber: a tiny receive buffer, and it never reads until the end.
    slow = StompClient.tcp(node.host, node.stomp_port, rcvbuf=4096)
    fast = StompClient.tcp(node.host, node.stomp_port)
    fast_ws = StompClient.ws(node.ws_url)
    pub = StompClient.tcp(node.host, node.stomp_port)
    clients = [slow, fast, fast_ws, pub]
    try:
        for c in clients:
            c.connect()
        for c in (slow, fast, fast_ws):
            c.subscribe(dest)
        readers = [Reader(fast, MESSAGES), Reader(fast_ws, MESSAGES)]
        for r in readers:
            r.start()

        body_tail = b"." * (MESSAGE_SIZE - 16)
        sent = 0
        while sent < MESSAGES:
            # sendall has a 10 s timeout: a publisher held back by the slow consumer fails here.
            for _ in range(BATCH):
                pub.send(dest, f"{sent:015d}|".encode() + body_tail)
                sent += 1
            # Pace the flood so the fast subscribers (Python readers) never lag by more than
            # a batch, far below --max-outbound-bytes: only the one that never reads is slow.
            for r in readers:
                target = sent
                wait_for(lambda: len(r.bodies) >= target or r.done.is_set(), DEFAULT_TIMEOUT,
                         message=f"fast subscriber to catch up with {target} messages")
        rid = unique("flood-done")
        pub.send_frame("SEND", {"destination": f"/topic/{unique('elsewhere')}", "receipt": rid}, "done")
        pub.await_receipt(rid)

        for r in readers:
            assert r.done.wait(DEFAULT_TIMEOUT), "fast reader did not finish"
            assert r.error is None, f"fast subscriber failed: {r.error!r}"
            assert not [f for f in r.other if f.command == "ERROR"], r.other
            assert len(r.bodies) == MESSAGES, f"fast subscriber got {len(r.bodies)} of {MESSAGES}"
            assert r.bodies == [f"{i:015d}|".encode() for i in range(MESSAGES)], "order broken"

        # Now drain the slow subscriber: it must have been cut off (EOF/reset) well before
        # receiving everything.
        parser = FrameParser()
        received = 0
        frames = []
        deadline = time.monotonic() + 30
        closed = False
        while time.monotonic() < deadline:
            try:
                chunk = slow.t.recv_chunk(DEFAULT_TIMEOUT)
            except ConnectionClosed:
                closed = True
                break
            except TimeoutError:
                break
            received += len(chunk)
            frames.extend(parser.feed(chunk))
        total = MESSAGES * MESSAGE_SIZE
        assert closed, (f"slow consumer was not disconnected: read {received} bytes of ~{total} "
                        f"and the connection is still open")
        n_msgs = sum(1 for f in frames if f.command == "MESSAGE")
        assert n_msgs < MESSAGES, "slow consumer got every message: it was not cut off"
        errors = [f for f in frames if f.command == "ERROR"]
        if errors:  # ERROR is best effort when the buffer is full; if sent it must say why
            assert errors[0].header("message"), errors[0]

        # The publisher and a brand-new client still work.
        with StompClient.tcp(node.host, node.stomp_port) as fresh:
            fresh.connect()
            d = f"/queue/{unique('after-flood')}"
            fresh.subscribe(d)
            round_trip(fresh, d)
        d2 = f"/topic/{unique('pub-after')}"
        pub.subscribe(d2)
        round_trip(pub, d2)
    finally:
        for c in clients:
            c.close()
