"""Timeouts and limits for connections that never become clients (issue 9's follow-up).

- `--upgrade-timeout-ms` (timeouts.upgrade-ms): a socket to the WebSocket port that never
  completes its upgrade request is closed.
- `--tls-handshake-timeout-ms` (timeouts.tls-handshake-ms): a socket to a TLS port that never
  completes the handshake is closed.
- `--connect-timeout-ms` (timeouts.connect-ms): a STOMP connection (TCP, or an upgraded
  WebSocket) that sends no CONNECT gets an ERROR naming the connect timeout and is closed.
- `--max-pending-connections` (limits.pending-connections): connections that have not
  completed CONNECT are counted on their own; beyond the limit new sockets are closed at
  once, and they never take the slots of `--max-connections`, which counts CONNECTed
  clients only.
- `--max-connections-per-ip` (limits.connections-per-ip): one address can't hold more.
- `--link-handshake-timeout-ms` (cluster.handshake-timeout-ms) and cluster.handshake-frame-size:
  a raw socket to the cluster port that doesn't complete the link handshake is closed, and
  a frame announced larger than the handshake allows closes it at once.
- /metrics shows the pending connections and the limits.

Timeouts in the tests are upper bounds on waiting only: nothing here asserts that the node
was fast. Each node runs with short timeouts (500 ms) so the tests take little time.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import struct
import time
import urllib.request

import pytest

from cluster import Cluster
from nodes import wait_for
from rawconn import is_closed_now, wait_peer_closed
from stomp_raw import ConnectionClosed, StompClient, parse_frames, round_trip, unique

SHORT_MS = 500
# Upper bound on waiting for the node to act on a 500 ms timeout (a loaded 2-core machine).
CLOSE_WITHIN = 15.0
# Settings long enough not to interfere with a test of something else.
LONG_MS = 120_000
SECRET = "timeouts-test-secret-0123456789"


def silent_socket(host: str, port: int) -> socket.socket:
    return socket.create_connection((host, port), timeout=10)


def assert_closed_by_node(sock: socket.socket, what: str, within: float = CLOSE_WITHIN) -> bytes:
    got = wait_peer_closed(sock, within)
    assert got is not None, f"{what}: the node did not close the connection within {within}s"
    return got


def error_frames(data: bytes) -> list:
    """Complete STOMP frames in what a TCP connection received (heart-beats skipped)."""
    try:
        return parse_frames(data)
    except Exception:
        # A trailing partial frame (cut by the close) is not this test's concern.
        return []


def still_serves(node, transport: str = "tcp") -> None:
    with StompClient.open(node, transport) as c:
        c.connect()
        dest = f"/topic/{unique('ok')}"
        c.subscribe(dest)
        round_trip(c, dest)
        c.disconnect()


# ---------------------------------------------------------------------------
# WebSocket upgrade timeout
# ---------------------------------------------------------------------------

def test_upgrade_timeout_closes_silent_and_half_requests(node_factory):
    node = node_factory("--upgrade-timeout-ms", str(SHORT_MS), name="upgrade-timeout")
    # A WebSocket client that completes its upgrade (and CONNECT) in time is not affected,
    # however long it then stays.
    good = StompClient.ws(node.ws_url)
    good.connect()
    silent = silent_socket(node.host, node.ws_port)
    half = silent_socket(node.host, node.ws_port)
    half.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
    # The same, one header byte every 200 ms (a slowloris): still closed.
    slow = silent_socket(node.host, node.ws_port)
    slow.sendall(b"GET /ws HTTP/1.1\r\n")
    deadline = time.monotonic() + CLOSE_WITHIN
    slow_closed = False
    while time.monotonic() < deadline and not slow_closed:
        try:
            slow.sendall(b"X")
        except OSError:
            slow_closed = True
            break
        slow_closed = is_closed_now(slow)
        time.sleep(0.2)
    assert slow_closed, "a slowly trickled upgrade request was not closed"
    assert_closed_by_node(silent, "silent socket on the WebSocket port")
    assert_closed_by_node(half, "half an HTTP request on the WebSocket port")
    for s in (silent, half, slow):
        s.close()
    time.sleep(3 * SHORT_MS / 1000)
    dest = f"/topic/{unique('upg')}"
    good.subscribe(dest)
    round_trip(good, dest)
    good.disconnect()
    still_serves(node, "ws")


# ---------------------------------------------------------------------------
# TLS handshake timeout
# ---------------------------------------------------------------------------

def test_tls_handshake_timeout(node_factory, tls_cert):
    cert, key = tls_cert
    node = node_factory("--tls-cert", str(cert), "--tls-key", str(key), "--wss-port", "0",
                        "--stomps-port", "0", "--tls-handshake-timeout-ms", str(SHORT_MS),
                        # the connect timeout must not be what closes these
                        "--connect-timeout-ms", str(LONG_MS), "--upgrade-timeout-ms", str(LONG_MS),
                        name="tls-timeout")
    socks = []
    for port in (node.wss_port, node.stomps_port):
        socks.append((f"silent socket on TLS port {port}", silent_socket(node.host, port)))
        partial = silent_socket(node.host, port)
        # The first bytes of a ClientHello record (handshake, TLS 1.0 record, 165 bytes), then nothing.
        partial.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")
        socks.append((f"partial ClientHello on TLS port {port}", partial))
    for what, s in socks:
        assert_closed_by_node(s, what)
        s.close()
    # A real TLS client is not affected.
    ctx = ssl.create_default_context(cafile=str(cert))
    with StompClient.tcp(node.host, node.stomps_port, tls_context=ctx) as c:
        c.connect()
        time.sleep(3 * SHORT_MS / 1000)
        dest = f"/queue/{unique('tls')}"
        c.subscribe(dest)
        round_trip(c, dest)
        c.disconnect()


# ---------------------------------------------------------------------------
# CONNECT timeout
# ---------------------------------------------------------------------------

CONNECT_TIMEOUT_WORDS = re.compile(r"connect", re.I)
TIMEOUT_WORDS = re.compile(r"time", re.I)


def assert_connect_timeout_error(frames: list, what: str) -> None:
    errors = [f for f in frames if f.command == "ERROR"]
    assert errors, f"{what}: closed without an ERROR frame (frames: {frames!r})"
    message = errors[0].header("message", "") + " " + errors[0].text
    assert CONNECT_TIMEOUT_WORDS.search(message) and TIMEOUT_WORDS.search(message), \
        f"{what}: the ERROR does not mention the connect timeout: {errors[0]!r}"


def test_connect_timeout_tcp(node_factory):
    node = node_factory("--connect-timeout-ms", str(SHORT_MS), name="connect-timeout-tcp")
    good = StompClient.tcp(node.host, node.stomp_port)
    good.connect()
    silent = silent_socket(node.host, node.stomp_port)
    partial = silent_socket(node.host, node.stomp_port)
    partial.sendall(b"CONNECT\naccept-version:1.2\n")  # never finished
    data = assert_closed_by_node(silent, "TCP socket that sends no CONNECT")
    assert_connect_timeout_error(error_frames(data), "TCP socket that sends no CONNECT")
    assert_closed_by_node(partial, "TCP socket that never finishes its CONNECT")
    silent.close()
    partial.close()
    # The timeout ends with CONNECT: a client connected in time stays.
    time.sleep(3 * SHORT_MS / 1000)
    dest = f"/topic/{unique('ct')}"
    good.subscribe(dest)
    round_trip(good, dest)
    good.disconnect()


def test_connect_timeout_websocket(node_factory):
    node = node_factory("--connect-timeout-ms", str(SHORT_MS), "--upgrade-timeout-ms", str(LONG_MS),
                        name="connect-timeout-ws")
    c = StompClient.ws(node.ws_url)  # upgraded, then silent
    try:
        frames = c.wait_closed(timeout=CLOSE_WITHIN)
        assert_connect_timeout_error(frames, "upgraded WebSocket that sends no CONNECT")
    finally:
        c.close()
    still_serves(node, "ws")


def test_timeouts_from_the_config_file(node_factory, tmp_path):
    """The keys: timeouts.connect-ms and timeouts.upgrade-ms in a --config file."""
    config = tmp_path / "timeouts.json"
    config.write_text(json.dumps({"timeouts": {"connect-ms": SHORT_MS, "upgrade-ms": SHORT_MS}}))
    node = node_factory("--config", str(config), name="timeouts-config")
    tcp = silent_socket(node.host, node.stomp_port)
    ws = silent_socket(node.host, node.ws_port)
    data = assert_closed_by_node(tcp, "TCP socket without CONNECT (timeouts.connect-ms)")
    assert_connect_timeout_error(error_frames(data), "TCP socket without CONNECT (timeouts.connect-ms)")
    assert_closed_by_node(ws, "silent WebSocket socket (timeouts.upgrade-ms)")
    tcp.close()
    ws.close()


# ---------------------------------------------------------------------------
# Pending connections
# ---------------------------------------------------------------------------

def count_closed(socks) -> int:
    return sum(1 for s in socks if is_closed_now(s))


def test_silent_sockets_do_not_keep_clients_out(node_factory):
    """With --max-connections 100 --max-pending-connections 50, 100 silent sockets do not
    keep a real client out: the pending table holds 50 (the oldest are closed to make room
    for newer ones), and the main limit counts only CONNECTed clients."""
    node = node_factory("--max-connections", "100", "--max-pending-connections", "50",
                        "--connect-timeout-ms", str(LONG_MS), "--upgrade-timeout-ms", str(LONG_MS),
                        name="pending")
    silent = []
    try:
        for i in range(100):
            port = node.stomp_port if i % 2 == 0 else node.ws_port
            silent.append(silent_socket(node.host, port))
        # Beyond the 50 pending allowed, the node closes the oldest to make room.
        closed = wait_for(lambda: (n := count_closed(silent)) >= 50 and n,
                          timeout=CLOSE_WITHIN, message="50 of the silent sockets closed")
        assert closed <= 100
        # A real client, over each transport, still gets in.
        for transport in ("tcp", "ws"):
            try:
                c = StompClient.open(node, transport)
                c.connect()
            except Exception as e:  # refused: closed, reset, an ERROR, a failed upgrade
                raise AssertionError(
                    f"a real client over {transport} was kept out while {100 - closed} silent sockets "
                    f"held the pending limit (50): {type(e).__name__}: {e}") from None
            with c:
                dest = f"/topic/{unique('pending')}"
                c.subscribe(dest)
                round_trip(c, dest)
                c.disconnect()
    finally:
        for s in silent:
            s.close()


def test_main_limit_counts_connected_clients_only(node_factory):
    """Silent sockets (within the pending limit) take none of --max-connections' slots."""
    node = node_factory("--max-connections", "10", "--max-pending-connections", "50",
                        "--connect-timeout-ms", str(LONG_MS), "--upgrade-timeout-ms", str(LONG_MS),
                        name="main-limit")
    silent = [silent_socket(node.host, node.stomp_port if i % 2 == 0 else node.ws_port) for i in range(40)]
    clients = []
    try:
        time.sleep(0.5)
        assert count_closed(silent) == 0, "silent sockets within the pending limit were closed"
        for i in range(10):
            c = StompClient.open(node, "tcp" if i % 2 == 0 else "ws")
            clients.append(c)
            c.connect()
        assert refused(node, "tcp"), "an 11th client was accepted with --max-connections 10"
        dest = f"/topic/{unique('main')}"
        clients[0].subscribe(dest)
        round_trip(clients[0], dest)
    finally:
        for c in clients:
            c.close()
        for s in silent:
            s.close()


def test_pending_limit_makes_room_by_closing_the_oldest(node_factory):
    """A full pending table closes its oldest entries for newcomers: silent sockets age out
    first, and a real client, which completes its CONNECT in milliseconds, gets in."""
    node = node_factory("--max-pending-connections", "10", "--connect-timeout-ms", str(LONG_MS),
                        "--upgrade-timeout-ms", str(LONG_MS), name="pending-small")
    first = [silent_socket(node.host, node.stomp_port) for _ in range(10)]
    time.sleep(0.5)
    assert count_closed(first) == 0, "sockets within the pending limit were closed"
    # Five more, well after the first ten: the five that make room come from the first ten.
    # (Which five depends on the order the event loops admitted a burst in.)
    extra = [silent_socket(node.host, node.stomp_port) for _ in range(5)]
    wait_for(lambda: count_closed(first) == 5, timeout=CLOSE_WITHIN,
             message="five of the older pending sockets closed")
    assert count_closed(extra) == 0, "the newcomers stay: only older connections made room"
    assert _connects(node), "a real client got in while the pending table was full"
    for s in first + extra:
        s.close()


def _connects(node) -> bool:
    try:
        with StompClient.tcp(node.host, node.stomp_port, timeout=5) as c:
            c.connect(timeout=5)
            c.disconnect(timeout=5)
        return True
    except (AssertionError, ConnectionClosed, OSError, TimeoutError):
        return False


# ---------------------------------------------------------------------------
# Connections per address
# ---------------------------------------------------------------------------

def refused(node, transport: str) -> bool:
    """Whether a new client over `transport` is refused (closed, or an ERROR instead of
    CONNECTED, or a refused upgrade)."""
    try:
        c = StompClient.open(node, transport, timeout=5)
    except Exception:
        return True  # connection or upgrade refused
    try:
        try:
            c.send_frame("CONNECT", {"accept-version": "1.2", "host": "localhost"})
            f = c.recv_frame(5)
        except (ConnectionClosed, OSError):
            return True
        except TimeoutError:
            return False
        return f.command == "ERROR"
    finally:
        c.close()


def test_connections_per_ip(node_factory):
    node = node_factory("--max-connections-per-ip", "3", name="per-ip")
    held = []
    try:
        for transport in ("tcp", "ws", "tcp"):
            c = StompClient.open(node, transport)
            c.connect()
            held.append(c)
        for transport in ("tcp", "ws"):
            assert refused(node, transport), f"a 4th connection from 127.0.0.1 over {transport} was accepted"
        held.pop().disconnect()
        # The node learns of the close a moment later: retry (bounded) until it admits one.
        c = wait_for(lambda: _connected(node), timeout=CLOSE_WITHIN, interval=0.2,
                     message="a new connection accepted after one of 3 closed")
        held.append(c)
        assert refused(node, "tcp"), "a 4th connection was accepted after the slot was re-used"
        dest = f"/topic/{unique('ip')}"
        held[0].subscribe(dest)
        round_trip(held[0], dest)
    finally:
        for c in held:
            c.close()


def _connected(node):
    try:
        c = StompClient.tcp(node.host, node.stomp_port, timeout=5)
    except OSError:
        return None
    try:
        c.connect(timeout=5)
        return c
    except (AssertionError, ConnectionClosed, OSError, TimeoutError):
        c.close()
        return None


# ---------------------------------------------------------------------------
# The cluster port before the link handshake
# ---------------------------------------------------------------------------

def cluster_node(node_factory, *extra, name: str):
    # A long link timeout (silent links are closed after it, 10 s by default): what closes
    # the connections in these tests must be the handshake's own bounds.
    node = node_factory("--cluster-secret", SECRET, "--cluster-port", "0", "--cluster-host", "127.0.0.1",
                        "--link-timeout-ms", str(LONG_MS), *extra, name=name)
    assert "cluster" in node.ports, node.ports
    return node, int(node.ports["cluster"])


def test_link_handshake_timeout(node_factory):
    node, port = cluster_node(node_factory, "--link-handshake-timeout-ms", str(SHORT_MS), name="link-timeout")
    silent = silent_socket(node.host, port)
    assert_closed_by_node(silent, "silent socket on the cluster port")
    silent.close()
    # A valid frame header whose (small) body never comes: the handshake is not done.
    partial = silent_socket(node.host, port)
    partial.sendall(struct.pack(">IB", 100, 0) + b"\x01" * 10)
    assert_closed_by_node(partial, "a partial handshake frame on the cluster port")
    partial.close()


@pytest.mark.parametrize("announced", [16 * 1024 + 1, 32 * 1024 * 1024, 0xFFFFFFFF])
def test_large_frame_before_handshake_closes_at_once(node_factory, announced):
    # A long handshake timeout: what closes the connection here must be the size.
    node, port = cluster_node(node_factory, "--link-handshake-timeout-ms", str(LONG_MS),
                              name="link-frame-size")
    s = silent_socket(node.host, port)
    s.sendall(struct.pack(">IB", announced, 0))  # the header only: no body ever arrives
    assert_closed_by_node(s, f"a link frame announcing {announced} bytes before the handshake")
    s.close()


def test_handshake_frame_size_from_the_config_file(node_factory, tmp_path):
    config = tmp_path / "cluster.json"
    config.write_text(json.dumps({"cluster": {"handshake-frame-size": 1024, "handshake-timeout-ms": LONG_MS,
                                              "link-timeout-ms": LONG_MS}}))
    node, port = cluster_node(node_factory, "--config", str(config), name="link-frame-size-config")
    s = silent_socket(node.host, port)
    s.sendall(struct.pack(">IB", 4096, 0))
    assert_closed_by_node(s, "a 4 KiB link frame before the handshake with handshake-frame-size 1024")
    s.close()


def test_cluster_forms_with_a_short_handshake_timeout(tmp_path):
    """Real links complete their handshake well within a short timeout and frame limit."""
    c = Cluster(tmp_path / "short-handshake", size=2, extra_args=["--link-handshake-timeout-ms", str(SHORT_MS)])
    try:
        c.start()
        # A message crosses the link.
        dest = f"/topic/{unique('x')}"
        with StompClient.open(c[2], "tcp") as sub, StompClient.open(c[1], "tcp") as pub:
            sub.connect()
            sub.subscribe(dest)
            pub.connect()
            pub.send(dest, "across", receipt=True)
            assert [m.body for m in sub.messages(1)] == [b"across"]
    finally:
        problems = c.stop()
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------
# METRIC ASSERTIONS: the metric names are not fixed by the spec. These tests look for any
# sample whose name contains one of the fragments below; adjust the fragments here if the
# names chosen differ.
PENDING_METRIC = "pending_connections"           # current use (and maybe the limit)
LIMIT_METRIC_WORDS = ("limit", "max")           # a limit's metric name has one of these
SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", re.M)


def metric_samples(node) -> list:
    with urllib.request.urlopen(node.admin_url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return [(m.group(1) + (m.group(2) or ""), float(m.group(3))) for m in SAMPLE_RE.finditer(text)
            if not m.group(0).startswith("#")]


def test_metrics_show_pending_connections_and_limits(node_factory):
    node = node_factory("--max-pending-connections", "37", "--max-connections", "123",
                        "--max-connections-per-ip", "45",
                        "--connect-timeout-ms", str(LONG_MS), "--upgrade-timeout-ms", str(LONG_MS),
                        name="pending-metrics")
    silent = [silent_socket(node.host, node.stomp_port) for _ in range(3)]
    try:
        def pending_is(n):
            return [s for s in metric_samples(node) if PENDING_METRIC in s[0] and s[1] == n]

        # METRIC ASSERTION: a pending-connections gauge shows the 3 silent sockets.
        wait_for(lambda: pending_is(3), timeout=CLOSE_WITHIN,
                 message=f"a metric containing {PENDING_METRIC!r} at 3: "
                         f"{[s for s in metric_samples(node) if 'pending' in s[0]]}")
        samples = metric_samples(node)

        def limit_shown(value):
            return [s for s in samples if s[1] == value and "connection" in s[0]
                    and any(w in s[0] for w in LIMIT_METRIC_WORDS)]

        # METRIC ASSERTION: the limits are exposed (any sample about connections whose name
        # says limit/max, with the configured value).
        for value, flag in ((37, "--max-pending-connections"), (123, "--max-connections"),
                            (45, "--max-connections-per-ip")):
            assert limit_shown(value), (f"no connection limit metric with the value of {flag} ({value}); "
                                        f"samples about connections: {[s for s in samples if 'connection' in s[0]]}")
    finally:
        for s in silent:
            s.close()
    # METRIC ASSERTION: back to 0 pending once they are gone.
    wait_for(lambda: [s for s in metric_samples(node) if PENDING_METRIC in s[0] and s[1] == 0],
             timeout=CLOSE_WITHIN, message="pending connections back to 0")
