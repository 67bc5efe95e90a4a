"""Drain behind a load balancer: three nodes behind HAProxy running docker/haproxy.cfg.

This is what docker/compose.yaml (and a Kubernetes Service) does, on loopback: the very
config file compose mounts is started here with its environment variables pointed at
127.0.0.1 and the nodes' ephemeral ports (HAProxy expands "${VAR}" itself). Clients
connect through HAProxy only, over WebSocket and STOMP/TCP, and reconnect through it when
their connection ends, as a real client library does. One node is drained with
POST /v1/drain and the test shows the protocol end to end:

- its /readyz turns 503 at once, and HAProxy marks it DOWN for that reason (a failed
  readiness check, not a refused connection),
- its clients get an ERROR saying it is shutting down, reconnect through HAProxy and land
  on the other nodes (their CONNECTED `session` header names the node, and the remaining
  nodes' /v1/connections list their new subscriptions),
- they receive every message published after they resubscribed, while the publisher keeps
  publishing through HAProxy (itself moved if it was on the drained node),
- the clients on the other nodes are not disturbed,
- the drained node exits 0.

HAProxy must be installed (Debian: `apt-get install haproxy`); without it the test fails.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cluster import Cluster, free_ports
from nodes import HOST, REPO, wait_for
from pyclient import PyClient
from stomp_raw import unique

import stomp

HAPROXY_CFG = REPO / "docker" / "haproxy.cfg"
LB_DELAY_MS = 1500
STEP_TIMEOUT = 30.0          # upper bound for each phase to happen (normally a second or two)
RECONNECT_DEADLINE = 30.0    # a client gives up reconnecting after this long
MESSAGES_AFTER = 20          # messages that must reach everyone after the reconnects


# ---------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------

def http(method: str, url: str, timeout: float = 5.0):
    """(status, body) for a request; status None when the connection is refused/reset."""
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (ConnectionError, urllib.error.URLError, OSError):
        return None, ""


# ---------------------------------------------------------------------------------------
# HAProxy
# ---------------------------------------------------------------------------------------

class HAProxy:
    """docker/haproxy.cfg run in the foreground (-db) against the cluster on loopback."""

    def __init__(self, workdir: Path, cluster: Cluster):
        self.binary = require_haproxy()
        self.workdir = workdir
        self.ws_port, self.stomp_port, self.stats_port = free_ports(3)
        env = dict(os.environ)
        env.update({
            "HAPROXY_WS_BIND": f"{HOST}:{self.ws_port}",
            "HAPROXY_STOMP_BIND": f"{HOST}:{self.stomp_port}",
            "HAPROXY_STATS_BIND": f"{HOST}:{self.stats_port}",
        })
        for i, name in enumerate(cluster.names, start=1):
            node = cluster[name]
            env[f"NODE{i}_HOST"] = HOST
            env[f"NODE{i}_WS_PORT"] = str(node.ws_port)
            env[f"NODE{i}_STOMP_PORT"] = str(node.stomp_port)
            env[f"NODE{i}_ADMIN_PORT"] = str(node.ports["admin"])
        self.env = env
        # The config names its servers n1..n3 like the cluster's nodes.
        self.server_names = list(cluster.names)
        self.log_path = workdir / "haproxy.log"
        self.proc: subprocess.Popen | None = None

    def check_config(self) -> None:
        res = subprocess.run([self.binary, "-c", "-f", str(HAPROXY_CFG)], env=self.env,
                             capture_output=True, timeout=30)
        out = (res.stdout + res.stderr).decode(errors="replace")
        assert res.returncode == 0, f"haproxy -c rejected {HAPROXY_CFG}:\n{out}"

    def start(self) -> "HAProxy":
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([self.binary, "-f", str(HAPROXY_CFG), "-db"], env=self.env,
                                     cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: self.proc.poll() is not None or self.stats(), timeout=STEP_TIMEOUT,
                     interval=0.05, message="haproxy stats page answering")
        except AssertionError:
            raise AssertionError(f"haproxy did not come up\n{self.log_tail()}") from None
        assert self.proc.poll() is None, f"haproxy exited with {self.proc.returncode}\n{self.log_tail()}"
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # soft stop: closes the listeners, lets sessions end
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
        self.log.close()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no haproxy log>"

    def log_lines(self) -> list:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def stats(self) -> dict:
        """(backend, server) -> status ("UP", "DOWN", "UP 1/2", ...); {} when unavailable."""
        status, body = http("GET", f"http://{HOST}:{self.stats_port}/stats;csv", timeout=2)
        if status != 200:
            return {}
        rows = csv.DictReader(io.StringIO(body.lstrip("# ")))
        return {(r["pxname"], r["svname"]): r["status"] for r in rows
                if r.get("svname") not in ("FRONTEND", "BACKEND")}

    def servers(self, server: str) -> dict:
        """backend -> status of one server in each of the two backends."""
        s = self.stats()
        return {b: s.get((b, server)) for b in ("nodes_ws", "nodes_stomp")}

    def all_up(self) -> bool:
        s = self.stats()
        return bool(s) and all(s.get((b, n)) == "UP" for b in ("nodes_ws", "nodes_stomp")
                               for n in self.server_names)


# ---------------------------------------------------------------------------------------
# Clients that reconnect through the load balancer
# ---------------------------------------------------------------------------------------

def node_of(client: PyClient) -> str:
    """The node a client landed on: the CONNECTED `session` header is `<node>-<n>`."""
    session = client.rec.connected_frame.headers.get("session", "")
    return session.rsplit("-", 1)[0]


class _Watch(stomp.ConnectionListener):
    """Tells the owner when its connection ends (ERROR or close)."""

    def __init__(self, owner, generation: int):
        self.owner, self.generation = owner, generation

    def on_error(self, frame):
        self.owner._lost(self.generation, frame)

    def on_disconnected(self):
        self.owner._lost(self.generation, None)


class ReconnectingClient:
    """A stomp.py client that always goes through HAProxy and comes back when dropped.

    Subclasses say what to do on each (re)connection (`on_connected`) and what to run while
    connected (`work`). Every connection is kept (its Recorder holds what it received).
    """

    def __init__(self, name: str, lb: HAProxy, transport: str, version: str):
        self.name, self.lb, self.transport, self.version = name, lb, transport, version
        self.cond = threading.Condition()
        self.generations: list = []      # [(PyClient, node, monotonic time connected, generation)]
        self.errors: list = []           # [(generation, ERROR frame, monotonic time)]
        self.lost_at: list = []          # [(generation, monotonic time)]
        self.failures: list = []         # connection attempts that failed (text)
        self._lost_gen = -1
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"client-{name}", daemon=True)

    # -- hooks ---------------------------------------------------------------------------
    def on_connected(self, client: PyClient, generation: int) -> None:
        pass

    def work(self, client: PyClient, generation: int) -> None:
        """Runs while connected; returns when the connection is lost or on stop."""
        with self.cond:
            self.cond.wait_for(lambda: self._lost_gen >= generation or self._stop.is_set())

    # -- machinery -----------------------------------------------------------------------
    def _lost(self, generation: int, frame) -> None:
        with self.cond:
            now = time.monotonic()
            if frame is not None:
                self.errors.append((generation, frame, now))
            if self._lost_gen < generation:
                self._lost_gen = generation
                self.lost_at.append((generation, now))
            self.cond.notify_all()

    def is_lost(self, generation: int) -> bool:
        with self.cond:
            return self._lost_gen >= generation

    def start(self) -> "ReconnectingClient":
        self.thread.start()
        return self

    def _connect_once(self, generation: int) -> PyClient:
        port = self.lb.ws_port if self.transport == "ws" else self.lb.stomp_port
        client = PyClient(HOST, port, self.transport, self.version, connect=False)
        client.conn.set_listener("watch", _Watch(self, generation))
        try:
            client.connect(timeout=5.0)
            self.on_connected(client, generation)
        except BaseException:
            client.drop()
            raise
        return client

    def _run(self) -> None:
        generation = 0
        while not self._stop.is_set():
            deadline = time.monotonic() + RECONNECT_DEADLINE
            client = None
            while client is None and not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    client = self._connect_once(generation)
                except Exception as e:  # refused, closed by HAProxy, ERROR...: try again
                    with self.cond:
                        self.failures.append(f"gen {generation}: {type(e).__name__}: {e}")
                        # A failed attempt's loss notice must not count for the next one.
                        self._lost_gen = max(self._lost_gen, generation)
                    generation += 1
                    self._stop.wait(0.1)
            if client is None:
                return
            with self.cond:
                self.generations.append((client, node_of(client), time.monotonic(), generation))
                self.cond.notify_all()
            self.work(client, generation)
            if self._stop.is_set():
                return
            client.drop()
            generation += 1

    def stop(self) -> None:
        self._stop.set()
        with self.cond:
            self.cond.notify_all()
        self.thread.join(timeout=15)
        for client, *_ in list(self.generations):
            client.drop()

    # -- views -----------------------------------------------------------------------------
    def current(self):
        """(client, node, connected_at, generation) of the live connection, or None."""
        with self.cond:
            if not self.generations:
                return None
            last = self.generations[-1]
            return None if self._lost_gen >= last[3] else last

    def nodes(self) -> list:
        with self.cond:
            return [g[1] for g in self.generations]


class Subscriber(ReconnectingClient):
    def __init__(self, name, lb, transport, version, topic):
        super().__init__(name, lb, transport, version)
        self.topic = topic
        self.subscribed_at: dict = {}   # generation -> monotonic time its SUBSCRIBE's RECEIPT came

    def sub_id(self, generation: int) -> str:
        return f"{self.name}-g{generation}"

    def on_connected(self, client, generation):
        client.subscribe(self.topic, self.sub_id(generation))  # waits for the RECEIPT
        with self.cond:
            self.subscribed_at[generation] = time.monotonic()

    def received(self) -> set:
        """Sequence numbers received over every connection so far."""
        with self.cond:
            clients = [g[0] for g in self.generations]
        return {int(b) for c in clients for b in c.rec.bodies(self.topic)}


class Publisher(ReconnectingClient):
    """Publishes sequence numbers, each with a receipt, every few ms, for as long as it runs."""

    def __init__(self, name, lb, transport, version, topic, interval: float = 0.02):
        super().__init__(name, lb, transport, version)
        self.topic, self.interval = topic, interval
        self.seq = 0
        self.confirmed: list = []   # [(seq, monotonic time the SEND was issued)]

    def work(self, client, generation):
        while not self._stop.is_set() and not self.is_lost(generation):
            seq, self.seq = self.seq, self.seq + 1
            issued = time.monotonic()
            try:
                client.send(self.topic, str(seq), receipt=True)  # bounded wait for the RECEIPT
            except Exception:
                return  # ERROR or closed: reconnect (this seq may or may not have gone out)
            with self.cond:
                self.confirmed.append((seq, issued))
            self._stop.wait(self.interval)

    def confirmed_after(self, t: float) -> list:
        with self.cond:
            return [s for s, issued in self.confirmed if issued > t]


# ---------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------

def connections_on(node) -> list:
    status, body = http("GET", node.admin_url + "/v1/connections")
    assert status == 200, f"{node.name}: GET /v1/connections -> {status} {body}"
    return json.loads(body)["connections"]


def require_haproxy() -> str:
    # Debian installs it in /usr/sbin, which a non-root user's PATH usually lacks.
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/local/sbin:/usr/sbin:/sbin")
    if binary is None:
        pytest.fail("haproxy is not installed (not on PATH, nor in /usr/sbin): this test runs docker/haproxy.cfg "
                    "in front of a real cluster. Install it with `apt-get install -y haproxy` "
                    "(scripts/install-deps.sh --test does so for `make test`).", pytrace=False)
    return binary


class Rig:
    """The cluster, HAProxy and the clients of one test; torn down by the fixture."""

    def __init__(self, root: Path):
        self.root = root
        self.cluster: Cluster | None = None
        self.lb: HAProxy | None = None
        self.clients: list = []

    def start(self) -> "Rig":
        self.cluster = Cluster(self.root / "cluster", 3, seeds="all", name="lb",
                               extra_args=[f"--drain-lb-delay-ms={LB_DELAY_MS}"])
        self.cluster.start()
        self.lb = HAProxy(self.root, self.cluster)
        self.lb.check_config()
        self.lb.start()
        return self

    def stop(self) -> list:
        for c in self.clients:
            c.stop()
        if self.lb is not None:
            self.lb.stop()
        return self.cluster.stop() if self.cluster is not None else []


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        problems = r.stop()
        assert not problems, "\n".join(problems)


@pytest.mark.timeout(240)
def test_drain_behind_haproxy_moves_clients_to_other_nodes(rig):
    require_haproxy()  # a failure, not a skip: the owner's install script provides it
    rig.start()
    cluster, lb, clients = rig.cluster, rig.lb, rig.clients
    topic = f"/topic/{unique('lb')}.prices"

    try:
        wait_for(lb.all_up, timeout=STEP_TIMEOUT, interval=0.1, message="HAProxy sees every node UP")
    except AssertionError:
        raise AssertionError(f"HAProxy did not see every node up: {lb.stats()}\n{lb.log_tail()}") from None

    # Subscribers, one at a time so that leastconn spreads them: one of each kind per node.
    subscribers = []
    for i, (transport, version) in enumerate([("ws", "1.2"), ("ws", "1.2"), ("ws", "1.1"),
                                              ("tcp", "1.2"), ("tcp", "1.2"), ("tcp", "1.1")]):
        s = Subscriber(f"s{i}-{transport}{version}", lb, transport, version, topic)
        clients.append(s.start())
        wait_for(lambda: s.current() is not None and s.current()[3] in s.subscribed_at, timeout=STEP_TIMEOUT,
                 message=f"{s.name} connected and subscribed through HAProxy; failures: {s.failures}")
        subscribers.append(s)
    publisher = Publisher("pub", lb, "tcp", "1.2", topic)
    clients.append(publisher.start())
    wait_for(lambda: len(publisher.confirmed) >= 10, timeout=STEP_TIMEOUT,
             message=f"publisher publishing through HAProxy; failures: {publisher.failures}")
    first = [seq for seq, _ in publisher.confirmed[:10]]
    for s in subscribers:
        wait_for(lambda: set(first) <= s.received(), timeout=STEP_TIMEOUT,
                 message=f"{s.name} receiving before the drain")

    placement = {s.name: s.current()[1] for s in subscribers}
    pub_node = publisher.current()[1]
    print(f"\nplacement: {placement}, publisher on {pub_node}")

    # Drain a node holding a WebSocket and a TCP subscriber; the publisher's if it qualifies.
    def qualifies(n):
        kinds = {s.transport for s in subscribers if placement[s.name] == n}
        return kinds == {"ws", "tcp"}
    candidates = [n for n in [pub_node, *cluster.names] if qualifies(n)]
    assert candidates, f"HAProxy (leastconn) did not spread the subscribers: {placement}"
    target_name = candidates[0]
    target = cluster[target_name]
    others = [cluster[n] for n in cluster.names if n != target_name]
    moved = [s for s in subscribers if placement[s.name] == target_name]
    stayed = [s for s in subscribers if placement[s.name] != target_name]
    print(f"draining {target_name}: clients to move {[s.name for s in moved]}"
          f"{' + publisher' if pub_node == target_name else ''}")

    # --- drain -----------------------------------------------------------------------------
    target.we_signalled = True  # it is expected to exit by itself
    t_drain = time.monotonic()
    status, body = http("POST", target.admin_url + "/v1/drain")
    assert status == 202, f"POST /v1/drain -> {status} {body}"
    status, body = http("GET", target.admin_url + "/readyz")
    assert status in (503, None), f"/readyz right after the drain: {status} {body!r}"
    print(f"/readyz after drain: {status} {body.strip()!r}")

    # HAProxy takes it out of both backends.
    try:
        wait_for(lambda: all(v and v.startswith("DOWN") for v in lb.servers(target_name).values()),
                 timeout=STEP_TIMEOUT, interval=0.02, message="HAProxy marks the drained node DOWN")
    except AssertionError:
        raise AssertionError(f"{lb.servers(target_name)}\n{lb.log_tail()}") from None
    t_down = time.monotonic()
    for n in (o.name for o in others):
        assert set(lb.servers(n).values()) == {"UP"}, f"{n} should stay UP: {lb.stats()}"

    # Every client of the drained node gets an ERROR saying so, then comes back elsewhere.
    movers = moved + ([publisher] if pub_node == target_name else [])
    for c in movers:
        try:
            wait_for(lambda: c.errors and c.current() and c.current()[1] != target_name
                     and (not isinstance(c, Subscriber) or c.current()[3] in c.subscribed_at),
                     timeout=STEP_TIMEOUT, interval=0.02,
                     message=f"{c.name}: ERROR then reconnect through HAProxy to another node")
        except AssertionError:
            raise AssertionError(f"{c.name}: errors={[(g, f.headers) for g, f, _ in c.errors]} "
                                 f"nodes={c.nodes()} failures={c.failures}\n"
                                 f"--- {target_name}\n{target.log_tail(30)}") from None
        msg = c.errors[0][1].headers.get("message", "")
        assert "shutting down" in msg.lower(), f"{c.name}: ERROR message {msg!r}"
        assert c.errors[0][0] == c.generations[0][3], \
            f"{c.name}: the first ERROR came on a later connection: {c.errors}"
    t_errors = min(t for c in movers for _, _, t in c.errors[:1])
    t_back = max(c.current()[2] for c in movers)

    # Nobody lands on the drained node, and clients of the other nodes never noticed.
    for s in subscribers:
        assert target_name not in s.nodes()[1:], f"{s.name} reconnected to the drained node: {s.nodes()}"
    for s in stayed:
        assert not s.errors and len(s.generations) == 1, \
            f"{s.name} (on {placement[s.name]}) was disturbed: errors={s.errors} nodes={s.nodes()}"

    # The drained node exits 0.
    rc = target.wait(STEP_TIMEOUT)
    assert rc is not None, f"{target_name} still running {STEP_TIMEOUT}s after the drain\n{target.log_tail()}"
    assert rc == 0, f"{target_name} exited with {rc}\n{target.log_tail()}"
    t_exit = time.monotonic()
    assert http("GET", target.admin_url + "/readyz")[0] is None, "admin API still answering after exit"

    # Messages published after everyone resubscribed reach every subscriber exactly as sent.
    t_all_subscribed = max(max(s.subscribed_at.values()) for s in subscribers)
    wait_for(lambda: len(publisher.confirmed_after(t_all_subscribed)) >= MESSAGES_AFTER,
             timeout=STEP_TIMEOUT, message=f"publisher keeps publishing; failures: {publisher.failures}")
    after = set(publisher.confirmed_after(t_all_subscribed)[:MESSAGES_AFTER])
    for s in subscribers:
        try:
            wait_for(lambda: after <= s.received(), timeout=STEP_TIMEOUT,
                     message=f"{s.name} receives what is published after the drain")
        except AssertionError:
            raise AssertionError(f"{s.name} on {s.nodes()} missed {sorted(after - s.received())}") from None

    # The remaining nodes' admin API shows each subscriber's live subscription where its
    # CONNECTED said it is, and nothing is left with the drained node.
    subs_by_node = {o.name: {sub["id"] for conn in connections_on(o) for sub in conn["subscriptions"]
                             if sub["destination"] == topic} for o in others}
    for s in subscribers:
        _, node, _, generation = s.current()
        assert s.sub_id(generation) in subs_by_node[node], \
            f"{s.name}: subscription {s.sub_id(generation)} not on {node}: {subs_by_node}"
    assert sum(len(v) for v in subs_by_node.values()) == len(subscribers), subs_by_node

    # HAProxy said why: a failed readiness check (503), not a refused connection.
    down_lines = []
    for backend in ("nodes_ws", "nodes_stomp"):
        lines = [line for line in lb.log_lines() if f"{backend}/{target_name} is DOWN" in line]
        assert lines, f"no '{backend}/{target_name} is DOWN' line in the HAProxy log\n{lb.log_tail()}"
        assert "code: 503" in lines[0], f"HAProxy took {target_name} out for another reason: {lines[0]}"
        down_lines.append(lines[0])

    print(f"timeline (s after POST /v1/drain): haproxy DOWN {t_down - t_drain:.2f}, first ERROR "
          f"{t_errors - t_drain:.2f}, all back {t_back - t_drain:.2f}, exit {t_exit - t_drain:.2f}")
    print("haproxy: " + " | ".join(down_lines[:2]))
    print(f"after the drain: {[(s.name, s.nodes()) for s in subscribers]}, publisher {publisher.nodes()}")
