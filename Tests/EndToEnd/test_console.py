"""The admin port's web console (issue 14, points 3 and 4): the page, the paginated and
token-guarded data endpoints it reads, the /v1/stats history behind its charts,
`clusterctl top`, and the console in a real headless Chromium (members rendered, the live
tail receives what a client on another node publishes, and keeps at most 100 lines)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from browser import Browser, chromium_binary
from cluster import running_cluster
from nodes import wait_for
from stomp_raw import StompClient, unique
from test_admin import clusterctl, http

TOKEN = "console-token"
FAST_STATS = ["--admin-stats-interval-ms", "200", "--admin-stats-samples", "20"]


def data(node, path: str, token: str | None = TOKEN) -> dict:
    status, body = http(node.admin_url + path, token=token)
    assert status == 200, f"GET {path} -> {status} {body}"
    return json.loads(body)


def publish(node, destination: str, count: int, body: str = "tick") -> None:
    with StompClient.tcp(node.host, node.stomp_port) as client:
        client.connect()
        for i in range(count):
            client.send(destination, f"{body} {i}", receipt=(i == count - 1))


# ---------------------------------------------------------------------------
# One node: the page, the token, pagination, the history
# ---------------------------------------------------------------------------

def test_page_loads_without_the_token_but_its_data_needs_it(node_factory):
    node = node_factory("--admin-token", TOKEN, name="console")
    status, page = http(node.admin_url + "/")
    assert status == 200 and "<title>stomp-cluster console</title>" in page
    assert "sessionStorage" in page and "Authorization" in page
    for path in ["/v1/stats", "/v1/connections?limit=1", "/v1/subscriptions", "/v1/members", "/v1/links"]:
        assert http(node.admin_url + path)[0] == 401, path
        assert http(node.admin_url + path, token="wrong")[0] == 401, path
        assert http(node.admin_url + path, token=TOKEN)[0] == 200, path


def test_connections_and_subscriptions_come_a_bounded_page_at_a_time(node_factory):
    node = node_factory("--admin-max-page-size", "5", name="pages")
    clients = [StompClient.tcp(node.host, node.stomp_port) for _ in range(7)]
    try:
        for i, client in enumerate(clients):
            client.connect()
            client.subscribe(f"/topic/{unique('page')}", sub_id=f"s{i}")
        first = data(node, "/v1/connections?limit=3", token=None)
        assert (first["offset"], first["limit"], first["total"], len(first["connections"])) == (0, 3, 7, 3)
        last = data(node, "/v1/connections?offset=6&limit=3", token=None)
        assert len(last["connections"]) == 1 and last["total"] == 7
        assert {c["id"] for c in first["connections"]}.isdisjoint(c["id"] for c in last["connections"])
        # Without a limit the node answers its maximum page, never everything.
        assert len(data(node, "/v1/connections", token=None)["connections"]) == 5
        subscriptions = data(node, "/v1/subscriptions?offset=5", token=None)
        assert subscriptions["total"] == 7 and len(subscriptions["items"]) == 2
        assert subscriptions["items"][0]["subscription"]["id"].startswith("s")

        status, body = http(node.admin_url + "/v1/subscriptions?limit=6")
        assert status == 400 and "admin.max-page-size" in body
        status, body = http(node.admin_url + "/v1/connections?offset=-2")
        assert status == 400 and "offset" in body
        _, metrics = http(node.admin_url + "/metrics")
        assert 'admin_requests_refused_total{reason="page_size"} 2' in metrics
    finally:
        for client in clients:
            client.close()


def walk(node, path: str, limit: int, items) -> tuple[list, int]:
    """Every item of a paged listing, asked `limit` at a time until the total is reached;
    each page must hold exactly `limit` items but the last, and agree on the total."""
    seen, offset, total = [], 0, None
    while total is None or offset < total:
        page = data(node, f"{path}{'&' if '?' in path else '?'}offset={offset}&limit={limit}", token=None)
        assert (page["offset"], page["limit"]) == (offset, limit)
        assert total in (None, page["total"]), "the total changed between pages"
        total = page["total"]
        got = items(page)
        assert len(got) == min(limit, total - offset), (offset, limit, total, got)
        seen += got
        offset += limit
    past = data(node, f"{path}{'&' if '?' in path else '?'}offset={total}&limit={limit}", token=None)
    assert items(past) == [] and past["total"] == total
    return seen, total


def test_paging_hundreds_of_connections_visits_each_exactly_once(node_factory):
    """Issue 14 point 3: the console pages every listing that grows with the load. 300 real
    connections (each with a queue subscription, every other one also a topic's), walked a
    page at a time through connections, subscriptions, queues and interest."""
    node = node_factory("--admin-max-page-size", "40", "--max-connections-per-ip", "0", name="many")
    prefix = unique("many")
    clients = []
    try:
        for i in range(300):
            client = StompClient.tcp(node.host, node.stomp_port)
            clients.append(client)
            client.connect()
            client.subscribe(f"/queue/{prefix}.q{i % 30:02d}", sub_id="work")
            if i % 2:
                client.subscribe(f"/topic/{prefix}.t{i:03d}", sub_id="news")
        ids, total = walk(node, "/v1/connections", 40, lambda page: [c["id"] for c in page["connections"]])
        assert total == 300 and len(set(ids)) == 300 and ids == sorted(ids)
        # Subscriptions: by connection, then id; each exactly once.
        rows, total = walk(node, "/v1/subscriptions", 40,
                           lambda page: [(r["connection"], r["subscription"]["id"]) for r in page["items"]])
        assert total == 450 and len(set(rows)) == 450 and rows == sorted(rows)
        assert {c for c, _ in rows} == set(ids)
        queues, total = walk(node, "/v1/queues", 7, lambda page: [q["name"] for q in page["items"]])
        assert queues == [f"{prefix}.q{k:02d}" for k in range(30)] and total == 30
        first = data(node, "/v1/queues?limit=1", token=None)["items"][0]
        assert (first["localConsumers"], first["remoteConsumers"]) == (10, 0)
        # /v1/connections keeps its first page of queues for older readers, and says how many.
        legacy = data(node, "/v1/connections?limit=3", token=None)
        assert len(legacy["queues"]) == 3 and legacy["queuesTotal"] == 30
        # Without a cluster, the interest is this node's destinations with their subscriptions.
        entries, total = walk(node, "/v1/interest", 9,
                              lambda page: [(e["name"], e["count"]) for e in page["local"]["entries"]])
        assert total == 180 and len(set(entries)) == 180
        assert entries == sorted(entries)  # /queue/ before /topic/, each by name
        assert entries[0] == (f"/queue/{prefix}.q00", 10) and entries[-1] == (f"/topic/{prefix}.t299", 1)
        for path in ["/v1/queues", "/v1/interest", "/v1/members"]:
            status, body = http(node.admin_url + path + "?limit=41")
            assert status == 400 and "admin.max-page-size" in body, path
    finally:
        for client in clients:
            client.close()


def test_stats_history_is_bounded_and_shows_rates_rising_under_load(node_factory):
    node = node_factory(*FAST_STATS, name="stats")
    # 20 samples at 200 ms: after 5 s the ring has wrapped and holds exactly its capacity.
    wait_for(lambda: len(data(node, "/v1/stats", token=None)["samples"]) == 20, timeout=15)
    time.sleep(1)
    stats = data(node, "/v1/stats", token=None)
    assert (stats["capacity"], len(stats["samples"]), stats["intervalSeconds"]) == (20, 20, 0.2)
    times = [s["uptimeSeconds"] for s in stats["samples"]]
    assert times == sorted(times)
    assert stats["samples"][-1]["messagesPublished"] == 0

    destination = f"/topic/{unique('load')}"
    with StompClient.tcp(node.host, node.stomp_port) as subscriber:
        subscriber.connect()
        subscriber.subscribe(destination)
        publish(node, destination, 300)
        subscriber.messages(300, timeout=20)

        def loaded():
            samples = data(node, "/v1/stats", token=None)["samples"]
            return samples if samples[-1]["messagesPublished"] >= 300 and samples[-1]["messagesDelivered"] >= 300 \
                else None

        samples = wait_for(loaded, timeout=10)
    rates = [(b["messagesPublished"] - a["messagesPublished"]) / (b["uptimeSeconds"] - a["uptimeSeconds"])
             for a, b in zip(samples, samples[1:])]
    assert max(rates) > 0 and rates[0] == 0, rates
    assert samples[-1]["connections"] >= 1
    _, metrics = http(node.admin_url + "/metrics")
    assert "admin_stats_samples 20" in metrics
    assert 'node_limit{name="admin.stats-samples"} 20' in metrics


# ---------------------------------------------------------------------------
# A 3-node cluster behind a token: clusterctl top and the console in Chromium
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def token_cluster(tmp_path_factory):
    yield from running_cluster(tmp_path_factory.mktemp("console") / "cluster", size=3, seeds="all",
                               extra_args=["--admin-token", TOKEN, "--admin-stats-interval-ms", "200",
                                           "--admin-stats-samples", "50"])


def test_top_once_shows_every_member_and_the_rates(token_cluster):
    n1, n2 = token_cluster["n1"], token_cluster["n2"]
    destination = f"/topic/{unique('top')}"
    with StompClient.tcp(n2.host, n2.stomp_port) as subscriber:
        subscriber.connect()
        subscriber.subscribe(destination)
        # n2's subscription must reach n1 before n1's messages go to it over the link.
        wait_for(lambda: any(e["name"] == destination for peer in data(n1, "/v1/interest")["peers"]
                             for e in peer["entries"]), timeout=10)
        publish(n1, destination, 200)
        subscriber.messages(200, timeout=20)
        # Until the next sample (every 200 ms) the history hasn't seen the traffic.
        wait_for(lambda: data(n1, "/v1/stats")["samples"][-1]["messagesPublished"] >= 200
                 and data(n2, "/v1/stats")["samples"][-1]["messagesDelivered"] >= 200, timeout=10)
        # Rates over the whole history (10 s): a loaded machine may take seconds to get here.
        result = clusterctl("top", "--once", "--window", "49", "--node", n1.admin_url, "--token", TOKEN)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "\x1b[" not in result.stdout  # --once, and stdout is a pipe: no redraw codes
    assert "3 members" in lines[0]
    assert "1 connections" in lines[0], result.stdout  # the subscriber on n2
    rows = {cells[0]: cells for cells in (line.replace(" *", "").split() for line in lines[3:] if line.strip())}
    assert set(rows) == {"n1", "n2", "n3"}, result.stdout
    assert all("alive" in row for row in rows.values()), result.stdout
    # MEMBER (this node marked "*"), STATUS, CONNS, PUB/s, DELIV/s ...
    n1_published = float(rows["n1"][3])
    n2_delivered = float(rows["n2"][4])
    assert n1_published > 0 and n2_delivered > 0, result.stdout

    refused = clusterctl("top", "--once", "--node", n1.admin_url)
    assert refused.returncode == 3 and "401" in refused.stderr


def test_members_and_interest_of_a_cluster_come_a_page_at_a_time(token_cluster):
    n1, n2 = token_cluster["n1"], token_cluster["n2"]
    members = [data(n1, f"/v1/members?offset={i}&limit=1")["items"] for i in range(4)]
    assert [len(m) for m in members] == [1, 1, 1, 0]
    assert [m[0]["node"] for m in members[:3]] == ["n1", "n2", "n3"]
    assert data(n1, "/v1/members?limit=1")["total"] == 3
    prefix = unique("pages")
    with StompClient.tcp(n2.host, n2.stomp_port) as subscriber:
        subscriber.connect()
        for i in range(5):
            subscriber.subscribe(f"/topic/{prefix}.{i}", sub_id=f"s{i}")
        # n2's five entries, as n1 holds them, a page of 2 at a time after n1's own.
        # (Earlier tests' subscriptions are gone by then: n1 holds n2's five entries only.)
        wait_for(lambda: data(n1, "/v1/interest?limit=1")["total"] == 5, timeout=10)
        total = 5
        names = []
        for offset in range(0, total, 2):
            page = data(n1, f"/v1/interest?offset={offset}&limit=2")
            shown = page["local"]["entries"] + [e for peer in page["peers"] for e in peer["entries"]]
            assert len(shown) == min(2, total - offset) and page["total"] == total
            assert all(peer["origin"] == "n2" and peer["total"] == total for peer in page["peers"])
            names += [e["name"] for e in shown]
        assert names == [f"/topic/{prefix}.{i}" for i in range(5)]
    # clusterctl pages through the members itself.
    result = clusterctl("members", "--json", "--node", n1.admin_url, "--token", TOKEN)
    assert result.returncode == 0, result.stderr
    assert sorted(m["node"] for m in json.loads(result.stdout)) == ["n1", "n2", "n3"]


@pytest.mark.skipif(chromium_binary() is None, reason="chromium is not installed (apt-get install chromium)")
def test_console_in_a_real_browser_shows_members_and_tails_a_destination(token_cluster, tmp_path):
    n1, n2 = token_cluster["n1"], token_cluster["n2"]
    browser = Browser(tmp_path / "chromium")
    try:
        browser.navigate(n1.admin_url + "/")
        # No token yet: the page asks for it.
        browser.wait_for("getComputedStyle(document.getElementById('login')).display === 'block'",
                         message="the token form")
        browser.evaluate(f"document.getElementById('token').value = {json.dumps(TOKEN)};"
                         "document.getElementById('token-form').requestSubmit(); true")
        browser.wait_for("document.querySelectorAll('#members tbody tr').length === 3", message="three members")
        members = browser.evaluate("[...document.querySelectorAll('#members tbody tr')]"
                                   ".map(r => r.cells[0].textContent + ' ' + r.cells[1].textContent)")
        assert sorted(members) == ["n1 (this node) alive", "n2 alive", "n3 alive"], members
        assert browser.evaluate("sessionStorage.getItem('adminToken')") == TOKEN

        destination = f"/topic/{unique('tail')}"
        browser.evaluate(f"document.getElementById('tail-destination').value = {json.dumps(destination)};"
                         "document.getElementById('tail-form').requestSubmit(); true")
        browser.wait_for("document.getElementById('tail-state').textContent.startsWith('tailing')",
                         message="the tail connected")
        # The tail's subscription must be known on n2 before n2's publishes route to n1.
        wait_for(lambda: any(r["subscription"]["id"] == "console-tail"
                             for r in data(n1, "/v1/subscriptions")["items"]), timeout=10)
        wait_for(lambda: any(e["name"] == destination for peer in data(n2, "/v1/interest")["peers"]
                             for e in peer["entries"]), timeout=10)
        publish(n2, destination, 1, body="hello from n2")
        browser.wait_for("document.getElementById('tail-log').textContent.includes('hello from n2 0')",
                         message="the tail received the message")

        # Its bound: the page keeps the last 100 lines however much arrives.
        publish(n2, destination, 150, body="burst")
        browser.wait_for("document.getElementById('tail-log').textContent.includes('burst 149')",
                         message="the burst's last message")
        assert browser.evaluate("document.getElementById('tail-log').childElementCount") == 100

        # The page follows the traffic (read from the DOM): the tail's connection, subscription
        # and interest are listed, and the delivered rate's chart rose with the burst.
        browser.wait_for("document.querySelectorAll('#connections tbody tr').length >= 1",
                         message="the tail's connection listed")
        browser.wait_for("[...document.querySelectorAll('#subscriptions tbody tr')]"
                         ".some(row => row.textContent.includes('console-tail'))",
                         message="the tail's subscription listed")
        browser.wait_for("[...document.querySelectorAll('#interest tbody tr')]"
                         f".some(row => row.textContent.includes({json.dumps(destination)}))",
                         message="the tail's interest listed")
        browser.wait_for("document.querySelector('#chart-delivered polyline').getAttribute('points').split(' ')"
                         ".some(point => parseFloat(point.split(',')[1]) < 46)",
                         message="the delivered rate rose")
        artifacts = Path(os.environ.get("CONSOLE_ARTIFACTS", tmp_path))
        artifacts.mkdir(parents=True, exist_ok=True)
        shot = browser.screenshot(artifacts / "console.png")
        assert shot.stat().st_size > 10_000
        print(f"console screenshot: {shot}")
        browser.evaluate("document.getElementById('tail-stop').click(); true")
        wait_for(lambda: not any(r["subscription"]["id"] == "console-tail"
                                 for r in data(n1, "/v1/subscriptions")["items"]), timeout=10,
                 message="the tail's subscription ends when the page stops it")
    finally:
        browser.close()
