"""The admin API and clusterctl against real nodes: health, readiness, metrics, the /v1
documents, the bearer token, clusterctl's commands and exit codes, and drain in a cluster
(clients told, queue messages handed to a peer, the node leaves and exits 0)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cluster import running_cluster, wait_log
from nodes import node_environment, wait_for
from stomp_raw import StompClient, unique

ROOT = Path(__file__).resolve().parents[2]
# The release build: it is what `make run` and users get, and it is the build in which a
# toolchain defect once broke `status` (see test_release_status_is_stable_against_a_healthy_node).
CLUSTERCTL = Path(os.environ.get("CLUSTERCTL_BIN", ROOT / ".build" / "release" / "clusterctl"))
TIMEOUT = 15.0


def http(url: str, method: str = "GET", token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def clusterctl(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    if not CLUSTERCTL.exists():
        pytest.fail(f"clusterctl not found at {CLUSTERCTL}: run `swift build -c release --product clusterctl` "
                    f"or set CLUSTERCTL_BIN", pytrace=False)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERCTL_")}
    full_env.update(env or {})
    return subprocess.run([str(CLUSTERCTL), *args], capture_output=True, text=True, timeout=timeout, env=full_env)


@pytest.fixture
def cluster(tmp_path):
    yield from running_cluster(tmp_path / "admin-cluster", seeds="all")


# ---------------------------------------------------------------------------
# A single node
# ---------------------------------------------------------------------------

def test_health_readiness_and_metrics(node_factory):
    node = node_factory(name="admin")
    assert http(node.admin_url + "/healthz") == (200, "ok\n")
    assert http(node.admin_url + "/readyz") == (200, "ready\n")

    with StompClient.tcp(node.host, node.stomp_port) as client:
        client.connect()
        dest = f"/topic/{unique('m')}"
        client.subscribe(dest)
        client.send(dest, "hello", receipt=True)
        client.messages(1)
        client.send_frame("NOPE")  # a protocol error, counted by kind
        client.wait_closed()

    status, metrics = http(node.admin_url + "/metrics")
    assert status == 200
    for name in ["stomp_connections", "stomp_connections_opened_total", "stomp_messages_published_total",
                 "stomp_messages_delivered_total", "stomp_slow_consumer_disconnects_total", "stomp_subscriptions"]:
        assert f"\n{name}" in "\n" + metrics, f"{name} missing from /metrics"
    assert 'stomp_frame_errors_total{kind="unknown_command"} 1' in metrics
    published = next(line for line in metrics.splitlines() if line.startswith("stomp_messages_published_total"))
    assert published.split()[-1] == "1"


def test_v1_documents(node_factory):
    node = node_factory(name="docs")
    with StompClient.ws(node.ws_url) as client:
        client.connect()
        client.subscribe("/queue/jobs", sub_id="worker", ack="client-individual")
        client.subscribe("/topic/prices.*", sub_id="prices")

        status, body = http(node.admin_url + "/v1/node")
        assert status == 200
        doc = json.loads(body)
        assert doc["id"] == "docs" and doc["phase"] == "running"
        assert doc["connections"] == 1 and doc["subscriptions"] == 2
        assert doc["ports"]["ws"] == node.ws_port

        doc = json.loads(http(node.admin_url + "/v1/connections")[1])
        subscriptions = {s["id"]: s for s in doc["connections"][0]["subscriptions"]}
        assert subscriptions["worker"]["destination"] == "/queue/jobs"
        assert subscriptions["worker"]["ack"] == "client-individual"
        assert [q["name"] for q in doc["queues"]] == ["jobs"]

        doc = json.loads(http(node.admin_url + "/v1/interest?destination=/topic/prices.eur")[1])
        assert doc["localSubscribers"] is True and doc["peers"] == []

    assert http(node.admin_url + "/v1/nothing")[0] == 404
    assert http(node.admin_url + "/v1/drain")[0] == 405
    assert http(node.admin_url + "/v1/interest?destination=/exchange/x")[0] == 400


def test_bearer_token_guards_everything_but_the_probes(node_factory):
    node = node_factory("--admin-token", "s3cret-token", name="token")
    assert http(node.admin_url + "/healthz")[0] == 200
    assert http(node.admin_url + "/readyz")[0] == 200
    assert http(node.admin_url + "/metrics")[0] == 401
    assert http(node.admin_url + "/v1/node")[0] == 401
    assert http(node.admin_url + "/v1/node", token="wrong")[0] == 401
    assert http(node.admin_url + "/v1/node", token="s3cret-token")[0] == 200
    result = clusterctl("members", "--node", node.admin_url)
    assert result.returncode == 3 and "401" in result.stderr
    result = clusterctl("members", "--node", node.admin_url, env={"CLUSTERCTL_TOKEN": "s3cret-token"})
    assert result.returncode == 0, result.stderr


def test_admin_beyond_loopback_requires_a_token(tmp_path):
    binary = os.environ.get("STOMP_NODE_BIN", str(ROOT / ".build" / "release" / "cluster-node"))
    result = subprocess.run([binary, "--admin-host", "0.0.0.0", "--admin-port", "0", "--ws-port=-1", "--stomp-port=-1"],
                            capture_output=True, text=True, timeout=30, env=node_environment())
    assert result.returncode != 0
    assert "admin.token" in result.stderr


def test_clusterctl_sub_gives_up_on_a_server_that_never_answers_connect():
    """A port that accepts and stays silent (a wrong port, a stuck proxy) ends the command with
    an error after the CONNECTED wait, instead of holding it for ever."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        result = subprocess.run([str(CLUSTERCTL), "sub", "/topic/x", "--url", f"tcp://127.0.0.1:{port}"],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "sent no CONNECTED within 10 s" in result.stderr, result.stderr


def test_clusterctl_errors_when_the_node_is_unreachable():
    result = clusterctl("status", "--node", "http://127.0.0.1:9")
    assert result.returncode == 1  # status reports the node as unhealthy
    assert "unreachable" in result.stdout
    result = clusterctl("members", "--node", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "cannot reach" in result.stderr


STATUS_RUNS = 30


def _failed_run(run: int, result: subprocess.CompletedProcess) -> str:
    return (f"run {run + 1}/{STATUS_RUNS}: exit {result.returncode}\n--- stdout\n{result.stdout}"
            f"\n--- stderr (tail)\n{result.stderr[-3000:]}")


def test_release_status_json_is_stable_against_a_healthy_node(node_factory):
    """`status --json` from the release build, 30 times against one healthy node.

    Regression guard: the release clusterctl used to segfault in `status`'s task group about one
    run in three and otherwise often report the node "no answer"/unreachable. The children of
    that group returned a `(String, Result<Node, any Error>)` tuple, which a Swift 6.3.1
    optimized build hands back to the parent as garbage; debug builds were fine, so this test
    needs the release binary (CLUSTERCTL_BIN, default .build/release/clusterctl)."""
    node = node_factory(name="steady")
    for run in range(STATUS_RUNS):
        result = clusterctl("status", "--json", "--node", node.admin_url)
        assert result.returncode == 0, _failed_run(run, result)
        try:
            doc = json.loads(result.stdout)
        except ValueError:
            pytest.fail("not JSON: " + _failed_run(run, result), pytrace=False)
        assert len(doc["nodes"]) == 1, _failed_run(run, result)
        row = doc["nodes"][0]
        assert "error" not in row, _failed_run(run, result)
        assert row["url"] == node.admin_url, _failed_run(run, result)
        assert row["node"]["id"] == "steady" and row["node"]["phase"] == "running", _failed_run(run, result)


def test_release_status_is_stable_against_a_healthy_node(node_factory):
    """Plain `status` from the release build, 30 times: the node is never reported unreachable."""
    node = node_factory(name="steady")
    for run in range(STATUS_RUNS):
        result = clusterctl("status", "--node", node.admin_url)
        assert result.returncode == 0, _failed_run(run, result)
        assert "unreachable" not in result.stdout, _failed_run(run, result)
        lines = result.stdout.splitlines()
        assert lines[1].split()[:2] == ["steady", "running"], _failed_run(run, result)
        assert lines[-1] == "healthy", _failed_run(run, result)


# ---------------------------------------------------------------------------
# A cluster
# ---------------------------------------------------------------------------

def test_clusterctl_against_a_cluster(cluster):
    urls = [cluster[name].admin_url for name in ("n1", "n2", "n3")]
    env = {"CLUSTERCTL_NODE": ",".join(urls)}

    result = clusterctl("status", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "healthy" in result.stdout
    for name in ("n1", "n2", "n3"):
        assert name in result.stdout

    result = clusterctl("members", "--json", env={"CLUSTERCTL_NODE": urls[0]})
    members = {m["node"]: m for m in json.loads(result.stdout)}
    assert {m["status"] for m in members.values()} == {"alive"}
    assert members["n1"]["isSelf"] is True

    dest = f"/topic/{unique('ctl')}"
    with StompClient.ws(cluster["n3"].ws_url) as subscriber:
        subscriber.connect()
        subscriber.subscribe(dest + ".*")
        result = clusterctl("interest", "--destination", dest + ".x", "--json", env={"CLUSTERCTL_NODE": urls[0]})
        route = json.loads(result.stdout)
        assert [p["node"] for p in route["peers"]] == ["n3"]
        assert dest + ".*" in route["peers"][0]["reason"]

        # pub through n1 reaches the subscriber on n3.
        result = clusterctl("pub", dest + ".x", "--count", "5", "--body", "n{n}", env={"CLUSTERCTL_NODE": urls[0]})
        assert result.returncode == 0, result.stderr
        bodies = [f.text for f in subscriber.messages(5)]
        assert bodies == [f"n{i}" for i in range(1, 6)]

    # sub on n2 receives what a raw client publishes on n1.
    proc = subprocess.Popen([str(CLUSTERCTL), "sub", "/queue/ctl", "--count", "2", "--node", urls[1], "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "/queue/ctl" in http(urls[0] + "/v1/interest?destination=/queue/ctl")[1]
                 and json.loads(http(urls[0] + "/v1/interest?destination=/queue/ctl")[1])["peers"],
                 TIMEOUT, message="sub's consumer known on n1")
        with StompClient.tcp(cluster["n1"].host, cluster["n1"].stomp_port) as publisher:
            publisher.connect()
            publisher.send("/queue/ctl", "one")
            publisher.send("/queue/ctl", "two", receipt=True)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    documents = [json.loads(chunk + "}") for chunk in out.split("}\n") if chunk.strip()]
    assert [d["body"] for d in documents] == ["one", "two"]


def test_drain_hands_queue_messages_to_a_peer_and_exits(cluster):
    n1, n2 = cluster["n1"], cluster["n2"]
    queue = f"/queue/{unique('drain')}"
    with StompClient.tcp(n2.host, n2.stomp_port) as consumer, StompClient.tcp(n1.host, n1.stomp_port) as later:
        consumer.connect()
        # n2's consumer takes three messages and acknowledges none of them.
        consumer.subscribe(queue, ack="client-individual")
        with StompClient.tcp(n2.host, n2.stomp_port) as publisher:
            publisher.connect()
            for i in range(3):
                publisher.send(queue, str(i))
            publisher.send(queue, "3", receipt=True)
            received = consumer.messages(4)
        assert [f.text for f in received] == ["0", "1", "2", "3"]

        # A consumer on n1 exists, so the drained node hands the messages over.
        later.connect()
        later.subscribe(queue, ack="auto")

        n2.we_signalled = True  # the node is expected to exit by itself
        result = clusterctl("drain", n2.admin_url)
        assert result.returncode == 0, result.stderr
        closing = consumer.wait_closed(TIMEOUT)
        errors = [f for f in closing if f.command == "ERROR"]
        assert errors and "shutting down" in errors[0].header("message", "")

        handed = later.messages(4, timeout=TIMEOUT)
        assert sorted(f.text for f in handed) == ["0", "1", "2", "3"]
        # They had been delivered once already, on n2.
        assert all(f.header("redelivered") == "true" for f in handed)

    assert n2.wait(TIMEOUT) == 0
    wait_log(cluster["n1"], r"member left", r"cluster.peer=n2", timeout=TIMEOUT)


# ---------------------------------------------------------------------------
# Members by name: readiness that means joined, status and drain through any node
# ---------------------------------------------------------------------------

def test_status_through_one_node_lists_every_member_with_its_admin_address(cluster):
    result = clusterctl("status", "--node", cluster["n1"].admin_url)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split()[0] for line in result.stdout.splitlines()[1:4]]
    assert sorted(rows) == ["n1", "n2", "n3"], result.stdout

    members = json.loads(clusterctl("members", "--json", "--node", cluster["n2"].admin_url).stdout)
    admin = {m["node"]: m.get("admin") for m in members}
    expected = {name: f"127.0.0.1:{cluster[name].ports['admin']}" for name in ("n1", "n2", "n3")}
    assert admin == expected


TOKEN_ENV = {"CLUSTERCTL_TOKEN": "cluster-admin-token"}


@pytest.fixture
def token_cluster(tmp_path):
    yield from running_cluster(tmp_path / "token-cluster", seeds="all", extra_args=["--admin-token", "cluster-admin-token"])


def test_a_node_without_a_token_acts_on_itself_only(cluster):
    """Without a token, any local process may call the API: it may stop this node, but
    never reach through it to the others."""
    result = clusterctl("drain", "n3", "--node", cluster["n1"].admin_url)
    assert result.returncode == 3 and "has no admin token, so it acts on itself only" in result.stderr
    assert cluster["n3"].proc.poll() is None


def test_drain_by_member_name_through_another_node(token_cluster):
    cluster = token_cluster
    n3 = cluster["n3"]
    with StompClient.tcp(n3.host, n3.stomp_port) as client:
        client.connect()
        n3.we_signalled = True  # it exits by itself once drained
        result = clusterctl("drain", "n3", "--node", cluster["n1"].admin_url, env=TOKEN_ENV)
        assert result.returncode == 0, result.stderr
        assert "n3: draining" in result.stdout
        errors = [f for f in client.wait_closed(TIMEOUT) if f.command == "ERROR"]
        assert errors and "shutting down" in errors[0].header("message", "")
    assert n3.wait(TIMEOUT) == 0
    wait_log(cluster["n1"], r"member left", r"cluster.peer=n3", timeout=TIMEOUT)

    result = clusterctl("drain", "nobody", "--node", cluster["n1"].admin_url, env=TOKEN_ENV)
    assert result.returncode == 3 and "404" in result.stderr and "no member named nobody" in result.stderr
    # n3 left: a name that only a departed member had can't be reached any more.
    result = clusterctl("leave", "n3", "--node", cluster["n2"].admin_url, env=TOKEN_ENV)
    assert result.returncode == 3 and "409" in result.stderr and "n3 is left and not linked to n2" in result.stderr


def test_a_seeded_node_is_ready_only_once_it_joined(tmp_path):
    from cluster import Cluster
    pair = Cluster(tmp_path / "pair", size=2, seeds="all")
    try:
        n1 = pair.start_node("n1")
        # Its seed n2 isn't up: alone, it must not take clients from a load balancer.
        wait_for(lambda: "waiting for members" in http(n1.admin_url + "/readyz")[1], TIMEOUT,
                 message="/readyz explains what n1 waits for")
        assert http(n1.admin_url + "/readyz")[0] == 503
        result = clusterctl("status", "--node", n1.admin_url)
        assert result.returncode == 1 and "n1 has not joined: waiting for members" in result.stdout, result.stdout

        pair.start_node("n2")
        pair.wait_formed()
        for node in (pair["n1"], pair["n2"]):
            wait_for(lambda: http(node.admin_url + "/readyz") == (200, "ready\n"), TIMEOUT, message=f"{node.name} ready")
    finally:
        problems = pair.stop()
    assert not problems, problems


def test_the_first_node_of_a_new_cluster_may_start_alone(tmp_path):
    from cluster import Cluster
    alone = Cluster(tmp_path / "alone", size=2, seeds="all", extra_args=["--cluster-min-members", "1"])
    try:
        n1 = alone.start_node("n1")
        wait_for(lambda: http(n1.admin_url + "/readyz") == (200, "ready\n"), TIMEOUT, message="n1 ready alone")
    finally:
        problems = alone.stop()
    assert not problems, problems


# ---------------------------------------------------------------------------
# Browsers can't drive the admin API
# ---------------------------------------------------------------------------

def raw_http(url: str, method: str, headers: dict, body: bytes = b"") -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, data=body or None, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_cross_site_simple_post_cannot_drain_the_node(node_factory):
    node = node_factory(name="csrf")
    # What a page on another site can send without a preflight: no token on loopback, once.
    status, body = raw_http(node.admin_url + "/v1/drain", "POST",
                            {"Origin": "https://evil.example", "Content-Type": "text/plain"}, b"x")
    assert status == 403 and "admin.allowed-origins" in body
    assert http(node.admin_url + "/readyz") == (200, "ready\n")

    # DNS rebinding: the page's own name resolved to 127.0.0.1, and no Origin on a GET.
    port = node.admin_url.rsplit(":", 1)[1]
    status, body = raw_http(node.admin_url + "/v1/node", "GET", {"Host": f"evil.example:{port}"})
    assert status == 403 and "Host must name this machine" in body
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert raw_http(node.admin_url + "/v1/node", "GET", {"Host": host})[0] == 200, host


def test_an_allowed_origin_may_call_the_admin_api(node_factory):
    node = node_factory("--admin-allowed-origins", "https://ops.example", name="origins")
    assert raw_http(node.admin_url + "/v1/node", "GET", {"Origin": "https://ops.example"})[0] == 200
    assert raw_http(node.admin_url + "/v1/node", "GET", {"Origin": "https://other.example"})[0] == 403


def test_the_admin_token_is_never_empty(tmp_path):
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    binary = os.environ.get("STOMP_NODE_BIN", str(ROOT / ".build" / "release" / "cluster-node"))
    for args in (["--admin-token", ""], ["--admin-token-file", str(empty)]):
        result = subprocess.run([binary, "--admin-port", "0", "--ws-port=-1", "--stomp-port=-1", *args],
                                capture_output=True, text=True, timeout=30, env=node_environment())
        assert result.returncode != 0, args
        assert "admin.token" in result.stderr, result.stderr


def test_a_token_file_written_by_echo_works(node_factory, tmp_path):
    """A file that ends in a newline, as `echo TOKEN > file` writes it, holds the token alone."""
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    node = node_factory("--admin-token-file", str(token_file), name="token-file")
    assert http(node.admin_url + "/v1/node", token="s3cret-token")[0] == 200
    assert http(node.admin_url + "/v1/node", token="s3cret-token\n".strip() + "x")[0] == 401
