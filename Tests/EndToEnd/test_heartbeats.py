"""Heart-beating (STOMP 1.1+, "Heart-beating"): the server beats at max(sx, cy) with lone
EOLs, and drops a client that promised beats (cx > 0) and then went silent.

The node runs with short intervals through --heartbeat-send-ms/--heartbeat-receive-ms
(flags of cluster-node beyond the list the tests were specified against) so that the
waits stay short.
"""

from __future__ import annotations

import time

import pytest

from nodes import module_node
from stomp_raw import DEFAULT_TIMEOUT, StompClient, round_trip, unique

SEND_MS = 200
RECEIVE_MS = 300
node = module_node("--heartbeat-send-ms", str(SEND_MS), "--heartbeat-receive-ms", str(RECEIVE_MS),
                   name="heartbeats")

TRANSPORTS = pytest.mark.parametrize("transport", ["tcp", "ws"])


def parse_hb(value: str) -> tuple:
    sx, sy = (int(x) for x in value.split(","))
    return sx, sy


@TRANSPORTS
def test_connected_announces_heartbeats(node, transport):
    with StompClient.open(node, transport) as c:
        f = c.connect("1.2", headers={"heart-beat": "100,100"})
        assert parse_hb(f.header("heart-beat")) == (SEND_MS, RECEIVE_MS)


@TRANSPORTS
def test_no_heartbeats_when_client_wants_none(node, transport):
    """heart-beat 0,0 (or none) means no beats either way; the connection stays usable."""
    with StompClient.open(node, transport) as c:
        c.connect("1.2", headers={"heart-beat": "0,0"})
        dest = f"/topic/{unique('nohb')}"
        c.subscribe(dest)
        round_trip(c, dest)


@TRANSPORTS
@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_server_sends_eol_heartbeats(node, transport, version):
    with StompClient.open(node, transport) as c:
        c.connect(version, headers={"heart-beat": "0,100"})
        # Expect beats every max(SEND_MS, 100) ms; wait for three, bounded.
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        while c.parser.heartbeats < 3:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {c.parser.heartbeats} heart-beats within {DEFAULT_TIMEOUT}s"
            try:
                c.pending.extend(c.parser.feed(c.t.recv_chunk(remaining)))
            except TimeoutError:
                pass
        assert not c.pending, f"only heart-beats were expected: {c.pending!r}"
        if transport == "ws":
            assert set(c.t.message_kinds) == {"text"}


@TRANSPORTS
def test_silent_client_that_promised_heartbeats_is_dropped(node, transport):
    with StompClient.open(node, transport) as c:
        c.connect("1.2", headers={"heart-beat": "100,0"})
        # We promised a beat every max(100, RECEIVE_MS) ms and send nothing: the server closes.
        frames = c.wait_closed(DEFAULT_TIMEOUT)
        for f in frames:
            if f.command == "ERROR":
                assert f.header("message"), f


@TRANSPORTS
def test_client_that_beats_is_kept(node, transport):
    with StompClient.open(node, transport) as c:
        c.connect("1.2", headers={"heart-beat": "100,0"})
        dest = f"/topic/{unique('beat')}"
        c.subscribe(dest)
        # Beat for several receive intervals (a fixed count, not a timing assertion).
        for _ in range(15):
            c.send_raw(b"\n")
            time.sleep(0.1)
        round_trip(c, dest)
        c.disconnect()
