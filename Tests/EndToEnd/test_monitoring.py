"""The Grafana dashboard and the Prometheus rules in docker/ against a real 2-node cluster.

- The files parse; the dashboard is importable (a datasource variable every panel uses);
  every alert has a severity, a summary and a description, and a `for:` unless it fires on
  an event counted over a window.
- Every metric name the dashboard's and the rules' expressions read, and every label value
  they select, is in what the nodes' /metrics answers (scraped with the admin token).
- promtool (Debian's prometheus package) checks the config and the rules.
- Debian's Prometheus scrapes both nodes with prometheus.yml's job and evaluates alerts.yml:
  every dashboard query is valid and returns series, every rule evaluates cleanly and none
  is active in a healthy cluster, and killing a node makes StompNodeDown pending and
  StompClusterMemberDead fire.

The tests of this module run in order on one cluster; the last one kills a node.
"""

from __future__ import annotations

import re
import socket
import subprocess

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

import monitoring as mon
from cluster import free_ports, running_cluster
from nodes import wait_for
from stomp_raw import StompClient, unique

ADMIN_TOKEN = "monitoring-test-admin-token-0123456789"
# Expressions that filter (`> 0`) may rightly return nothing in a quiet cluster.
FILTERING = re.compile(r"[<>]=?\s*[\d.]+\s*$")


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("admin-token") / "admin.token"
    path.write_text(ADMIN_TOKEN)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, token_file):
    root = tmp_path_factory.mktemp("monitoring-cluster")
    # An origin list and a short upgrade timeout, so that `traffic` can make the node count a
    # refused upgrade and a handshake timeout: those counters appear only once counted.
    yield from running_cluster(root, size=2, extra_args=[
        "--admin-token-file", str(token_file), "--ws-allowed-origins", "http://allowed.example",
        "--upgrade-timeout-ms", "300"])


@pytest.fixture(scope="module")
def traffic(cluster):
    """A subscriber on n1 (SUBSCRIBE receipt: one interest propagation) and messages
    published on n2 that cross the link, so that rates and link bytes move."""
    topic = f"/topic/{unique('mon')}"
    with StompClient.open(cluster[1]) as sub, StompClient.open(cluster[2]) as pub:
        sub.connect()
        pub.connect()
        sub.subscribe(topic)
        for i in range(20):
            pub.send(topic, f"message {i} " + "x" * 200)
        assert len(sub.messages(20)) == 20
    for node in (cluster[1], cluster[2]):
        # A browser page from another origin (403), and a socket that never sends its upgrade.
        with pytest.raises(InvalidStatus):
            ws_connect(node.ws_url, subprotocols=["v12.stomp"], origin="http://elsewhere.example",
                       proxy=None, open_timeout=10).close()
        with socket.create_connection((node.host, node.ws_port), timeout=10) as silent:
            assert silent.recv(1) == b"", "the node should close a connection that sends no upgrade"
    return topic


@pytest.fixture(scope="module")
def scraped(cluster, traffic):
    """[(node name, series, types)] of each node's /metrics."""
    out = []
    for name in cluster.names:
        text = mon.scrape(cluster[name].admin_url, ADMIN_TOKEN)
        series, types = mon.parse_exposition(text)
        out.append((name, series, types))
    return out


@pytest.fixture(scope="module")
def prometheus(cluster, traffic, token_file, tmp_path_factory):
    targets = [cluster[name].admin_url.removeprefix("http://") for name in cluster.names]
    prom = mon.Prometheus(tmp_path_factory.mktemp("prometheus"), targets, token_file, free_ports(1)[0])
    try:
        def all_up():
            up = [t for t in prom.targets() if t["health"] == "up"]
            return len(up) == len(targets)
        try:
            wait_for(all_up, timeout=60, interval=0.2, message="Prometheus scraping every node")
        except AssertionError:
            raise AssertionError(f"targets: {prom.targets()}\n{prom.log_tail()}") from None
        yield prom
    finally:
        prom.stop()


def all_expressions() -> list:
    return mon.dashboard_expressions() + mon.rule_expressions()


# ---------------------------------------------------------------------------------------
# The files themselves
# ---------------------------------------------------------------------------------------

def test_dashboard_is_importable_with_a_datasource_variable():
    doc = mon.dashboard()
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables.get("datasource", {}).get("type") == "datasource", variables.keys()
    assert variables["datasource"]["query"] == "prometheus"
    assert doc.get("uid") and doc.get("title") and doc.get("schemaVersion")
    panels = mon.dashboard_panels(doc)
    assert len(panels) >= 15, f"only {len(panels)} panels"
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            assert t.get("datasource", p["datasource"]) == p["datasource"], p["title"]
            assert 'job="$job"' in t["expr"], f"{p['title']}: {t['expr']} doesn't select the job"


def test_provisioning_and_compose_profile_point_at_the_files():
    datasources = mon.yaml.safe_load((mon.GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
    providers = mon.yaml.safe_load((mon.GRAFANA_PROVISIONING / "dashboards" / "stomp-cluster.yml").read_text())
    dashboards_dir = providers["providers"][0]["options"]["path"]
    compose = mon.yaml.safe_load((mon.DOCKER / "compose.yaml").read_text())
    grafana, prom = compose["services"]["grafana"], compose["services"]["prometheus"]
    assert grafana["profiles"] == ["monitoring"] and prom["profiles"] == ["monitoring"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] + prom["volumes"]}
    assert (mon.DOCKER / mounts[dashboards_dir]).resolve() == mon.DASHBOARD.parent.resolve()
    assert (mon.DOCKER / mounts["/etc/grafana/provisioning"]).resolve() == mon.GRAFANA_PROVISIONING.resolve()
    config = mon.prometheus_config()
    assert (mon.DOCKER / mounts["/etc/prometheus/prometheus.yml"]).resolve() == mon.PROMETHEUS_CONFIG.resolve()
    for rule_file in config["rule_files"]:
        assert (mon.DOCKER / mounts[rule_file]).resolve() == mon.ALERTS.resolve()
    credentials = config["scrape_configs"][0]["authorization"]["credentials_file"]
    secret = next(s for s in prom["secrets"] if f"/run/secrets/{s['target']}" == credentials)
    assert compose["secrets"][secret["source"]] == {"environment": "ADMIN_TOKEN"}
    assert mon.job_name() == "stomp-cluster"


def test_every_alert_has_severity_annotations_and_a_for_where_it_makes_sense():
    rules = mon.alert_rules()
    assert {r["alert"] for r in rules} >= {"StompNodeDown", "StompClusterLinkDown", "StompPeerUnreachable",
                                           "StompClusterMemberSuspect", "StompClusterMemberDead",
                                           "StompSlowConsumerDisconnects", "StompConnectionsNearLimit",
                                           "StompOutboundBytesNearLimit"}
    for r in rules:
        name = r["alert"]
        assert r["labels"]["severity"] in ("warning", "critical"), name
        assert r["annotations"].get("summary") and r["annotations"].get("description"), name
        # An event counted over a window (increase, max_over_time) fires as it happens;
        # a state must hold for a while first.
        windowed = re.search(r"\b(increase|max_over_time)\(", r["expr"])
        assert windowed or r.get("for"), f"{name}: a state alert needs `for:`"
        assert f'job="{mon.job_name()}"' in r["expr"], f"{name} doesn't select the scrape job"


def test_docker_readme_documents_every_metric_and_alert():
    text = (mon.DOCKER / "README.md").read_text()
    documented = set(re.findall(r"`([a-z_:][a-z0-9_:]*)(?:\{[^`]*\})?`", text))
    for where, expr in all_expressions():
        for name in mon.metric_names(expr):
            base = re.sub(r"_(sum|count|bucket)$", "", name)
            assert name in documented or base in documented, f"{where}: {name} is not in docker/README.md"
    for rule in mon.alert_rules():
        assert re.search(rf"^\| {rule['alert']} ", text, re.M), f"{rule['alert']} has no row in docker/README.md"


def test_promtool_checks_the_config_and_the_rules(tmp_path):
    promtool = mon.require_binary("promtool")
    res = subprocess.run([promtool, "check", "rules", str(mon.ALERTS)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    # The config names files of the container (rules, token): point them here.
    config = mon.prometheus_config()
    config["rule_files"] = [str(mon.ALERTS)]
    token = tmp_path / "token"
    token.write_text("x")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(token)
    path = tmp_path / "prometheus.yml"
    path.write_text(mon.yaml.safe_dump(config))
    res = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_metric_parser_reads_names_not_functions_or_labels():
    expr = ('sum by (instance, reason) (rate(a_total{job="j", x="y"}[5m])) / ignoring(name) '
            '(b{name="limits.x"} > 0) and on(instance) histogram_quantile(0.9, c_bucket[1m] offset 5m) > 1e3')
    assert mon.metric_names(expr) == {"a_total", "b", "c_bucket"}
    assert mon.selectors(expr)[1] == ("b", [("name", "=", "limits.x")])


# ---------------------------------------------------------------------------------------
# Against the nodes' /metrics
# ---------------------------------------------------------------------------------------

def test_every_metric_the_dashboard_and_alerts_read_is_exposed_by_each_node(scraped):
    referenced = {}
    for where, expr in all_expressions():
        for name in mon.metric_names(expr):
            referenced.setdefault(name, []).append(where)
    assert len(referenced) >= 25, sorted(referenced)
    for node, series, types in scraped:
        exposed = mon.exposed_names(series, types)
        missing = {n: w for n, w in referenced.items() if n not in exposed and n not in mon.SYNTHESIZED}
        assert not missing, f"{node}'s /metrics lacks {missing}"
    print(f"{len(referenced)} metric names checked on {len(scraped)} nodes: {sorted(referenced)}")


def test_every_label_value_they_select_is_exposed(scraped):
    for node, series, _ in scraped:
        problems = [f"{where}: {p}" for where, expr in all_expressions()
                    for p in mon.unmatched_label_values(expr, series)]
        assert not problems, f"{node}:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------------------
# Prometheus itself
# ---------------------------------------------------------------------------------------

def test_every_dashboard_query_runs_and_returns_series(prometheus):
    # rate() needs two samples in its window: wait for a few scrapes after start.
    wait_for(lambda: prometheus.query('count_over_time(up[10s]) >= 3')["data"]["result"], timeout=30,
             message="three scrapes of each node")
    empty = []
    for where, expr in mon.dashboard_expressions():
        query = mon.with_grafana_variables(expr, rate_interval="10s")
        answer = prometheus.query(query)
        assert answer["status"] == "success", f"{where}: {query}\n{answer}"
        if not answer["data"]["result"] and not FILTERING.search(expr):
            empty.append(f"{where}: {query}")
    assert not empty, "queries without a series:\n" + "\n".join(empty)


def test_rules_evaluate_cleanly_and_none_is_active_in_a_healthy_cluster(prometheus):
    def evaluated():
        groups = prometheus.api("rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        never = "0001-01-01"  # Go's zero time: not evaluated yet
        return rules if rules and all(not r.get("lastEvaluation", never).startswith(never) for r in rules) else None
    rules = wait_for(evaluated, timeout=30, message="every rule evaluated once")
    assert len(rules) == len(mon.alert_rules())
    unhealthy = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not unhealthy, unhealthy
    active = prometheus.api("alerts")["data"]["alerts"]
    assert not active, f"alerts active in a healthy cluster: {active}"


def test_killing_a_node_raises_node_down_and_member_dead(cluster, prometheus):
    victim = cluster[2]
    victim_instance = victim.admin_url.removeprefix("http://")
    cluster.kill("n2")

    def alerts():
        active = prometheus.api("alerts")["data"]["alerts"]
        return {(a["labels"]["alertname"], a["labels"]["instance"], a["state"]) for a in active}

    def raised():
        now = alerts()
        down = ("StompNodeDown", victim_instance, "pending") in now
        dead = any(name == "StompClusterMemberDead" and state == "firing" for name, _, state in now)
        return now if down and dead else None

    try:
        now = wait_for(raised, timeout=45, interval=0.5, message="StompNodeDown pending, StompClusterMemberDead firing")
    except AssertionError:
        raise AssertionError(f"alerts: {alerts()}\n{cluster[1].log_tail(15)}") from None
    print(f"after killing n2: {sorted(now)}")
