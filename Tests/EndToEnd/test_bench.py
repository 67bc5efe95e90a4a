"""`clusterctl bench`, the load generator, against real nodes.

The benchmark's figures (throughput, latency, memory per connection) are only worth
anything if the generator is right about what it saw: every message it published arrived,
exactly once, in order, and nothing it did not publish turned up. Those correctness checks
are what make a report trustworthy, so they are tested here against a real broker, not a
mock: each scenario (one-to-one, fan-out, many-to-many, queue, and one-to-one at a fixed
rate) over WebSocket, one-to-one over plain TCP, the persistent scenario on three clustered
nodes with data dirs (publishers on one node, consumers on another), and a run that must be reported as lossy
(publishers on one node, subscribers on another, unclustered node, so nothing can arrive):
a generator that said "ok" there would be worthless. The idle scenario's memory figure is
checked for being measured at all (positive, for the connections asked for).

Every run is short (`--duration 1`, a handful of connections) because the nodes are debug
builds; the figures themselves are not asserted, only the report's shape, its arithmetic
and its verdict. `clusterctl bench --json` exits 0 when the run was correct, 1 when it was
not; any other exit code is a failure of the tool.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from cluster import running_cluster

ROOT = Path(__file__).resolve().parents[2]
CLUSTERCTL = Path(os.environ.get("CLUSTERCTL_BIN", ROOT / ".build" / "release" / "clusterctl"))

# Upper bounds only (a hung generator or broker must not hang the suite). A correct run
# takes about 1 s of publishing plus set-up; a lossy one also waits up to 10 s for the
# deliveries that never come.
RUN_TIMEOUT = 60.0
LOSSY_TIMEOUT = 90.0
LATENCY_KEYS = ("p50", "p99", "p99.9", "max")
COUNTERS = ("lost", "duplicated", "reordered", "unrecognized", "misrouted", "connectionsClosedUnexpectedly")


def bench(*args: str, timeout: float = RUN_TIMEOUT) -> tuple[int, dict, subprocess.CompletedProcess]:
    """Run `clusterctl bench --json ARGS`; return (exit code, the parsed report, the process)."""
    if not CLUSTERCTL.exists():
        pytest.fail(f"clusterctl not found at {CLUSTERCTL}: run `swift build` or set CLUSTERCTL_BIN", pytrace=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERCTL_")}
    cmd = [str(CLUSTERCTL), "bench", "--json", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    where = f"cmd: {' '.join(cmd)}\nexit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode in (0, 1), f"clusterctl bench failed as a tool (neither ok nor not-ok)\n{where}"
    try:
        report = json.loads(result.stdout)
    except ValueError as error:
        pytest.fail(f"clusterctl bench --json printed no single JSON document ({error})\n{where}", pytrace=False)
    return result.returncode, report, result


def describe(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def assert_correct(code: int, report: dict, result: subprocess.CompletedProcess) -> None:
    """The verdict of a run that must be correct, and the arithmetic behind it."""
    why = describe(result)
    assert code == 0, f"a correct run must exit 0\n{why}"
    assert report["ok"] is True, why
    for counter in COUNTERS:
        assert report[counter] == 0, f"{counter} = {report[counter]}\n{why}"
    assert report["published"] > 0, why
    assert report["expectedDeliveries"] > 0, why
    assert report["delivered"] == report["expectedDeliveries"], why
    assert report["publishedPerSecond"] > 0 and report["deliveredPerSecond"] > 0, why
    # Throughput counts until the last delivery arrived, which is after publishing began
    # draining: never a shorter window than the publishing time.
    assert report["deliverySeconds"] >= report["seconds"] > 0, why
    assert report["deliveredPerSecond"] == pytest.approx(report["delivered"] / report["deliverySeconds"]), why
    latency = report["latencyMicroseconds"]
    assert set(LATENCY_KEYS) <= set(latency), f"latency percentiles missing\n{why}"
    values = [latency[key] for key in LATENCY_KEYS]
    assert values == sorted(values), f"latency percentiles out of order: {latency}\n{why}"
    assert values[0] >= 0, why
    assert report["generatorCPUSeconds"] > 0, why


# ---------------------------------------------------------------------------
# Every scenario is correct against one node over WebSocket
# ---------------------------------------------------------------------------

# (id, extra args, publishers, subscribers, copies per published message or None for queues)
SCENARIOS = [
    ("one-to-one", ["--scenario", "one-to-one"], 1, 1, 1),
    ("fan-out", ["--scenario", "fan-out", "--subscribers", "5"], 1, 5, 5),
    ("many-to-many", ["--scenario", "many-to-many", "--publishers", "3"], 3, 3, 1),
    ("queue", ["--scenario", "queue", "--queues", "2", "--publishers", "2", "--consumers-per-queue", "2"], 2, 4, None),
    ("one-to-one-rate-200", ["--scenario", "one-to-one", "--rate", "200"], 1, 1, 1),
]


@pytest.mark.parametrize("extra,publishers,subscribers,copies",
                         [pytest.param(*s[1:], id=s[0]) for s in SCENARIOS])
def test_scenario_is_correct_over_websocket(node, extra, publishers, subscribers, copies):
    code, report, result = bench("--pub-url", node.ws_url, "--duration", "1", *extra)
    assert_correct(code, report, result)
    why = describe(result)
    scenario = extra[extra.index("--scenario") + 1]
    assert report["scenario"] == scenario, why
    assert report["publishers"] == publishers and report["subscribers"] == subscribers, why
    if copies is None:
        # A queue message goes to exactly one of the queue's competing consumers.
        assert report["expectedDeliveries"] == report["published"], why
    else:
        # A topic message goes to every subscriber of its topic.
        assert report["expectedDeliveries"] == report["published"] * copies, why
    if "--rate" in extra:
        rate = int(extra[extra.index("--rate") + 1])
        assert report["rate"] == rate, why
        # Paced, not flat out: about rate × seconds messages (generously bounded above;
        # unpaced, even a debug node takes thousands a second).
        assert report["published"] <= 2 * rate * report["seconds"] + 10, why


def test_one_to_one_is_correct_over_tcp(node):
    code, report, result = bench("--pub-url", f"tcp://{node.host}:{node.stomp_port}",
                                 "--scenario", "one-to-one", "--duration", "1")
    assert_correct(code, report, result)
    assert report["expectedDeliveries"] == report["published"], describe(result)


# ---------------------------------------------------------------------------
# Persistent messages: durable queues on three nodes, receipts, acknowledgements
# ---------------------------------------------------------------------------

@pytest.fixture
def durable_cluster(tmp_path):
    # Three nodes, each with a data dir (Cluster gives every node one): a durable queue's log is
    # replicated to all three, so a RECEIPT means the message is on disk on two of them.
    yield from running_cluster(tmp_path / "bench-durable", size=3)


def metric(node, name: str) -> float:
    """A counter of the node's /metrics, summed over its series."""
    with urllib.request.urlopen(node.admin_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"))


def test_persistent_scenario_across_nodes_is_correct(durable_cluster):
    publishing, consuming = durable_cluster[1], durable_cluster[2]
    syncs_before = sum(metric(n, "stomp_durable_log_syncs_total") for n in durable_cluster.nodes.values())
    code, report, result = bench("--pub-url", f"tcp://{publishing.host}:{publishing.stomp_port}",
                                 "--sub-url", f"tcp://{consuming.host}:{consuming.stomp_port}",
                                 "--scenario", "persistent", "--queues", "2", "--publishers", "2",
                                 "--consumers-per-queue", "2", "--in-flight", "20", "--prefetch", "50",
                                 "--duration", "1")
    assert_correct(code, report, result)
    why = describe(result)
    assert report["scenario"] == "persistent", why
    assert report["publishers"] == 2 and report["subscribers"] == 4, why
    # A queue message goes to exactly one of the queue's competing consumers.
    assert report["expectedDeliveries"] == report["published"], why
    persistent = report["persistent"]
    assert persistent["receiptsInFlight"] == 20 and persistent["prefetch"] == 50, why
    # Every SEND asked for a receipt, and every one came: the broker confirmed each message.
    assert persistent["receipted"] == report["published"] > 0, why
    assert persistent["unanswered"] == 0, why
    latency = persistent["receiptLatencyMicroseconds"]
    assert set(LATENCY_KEYS) <= set(latency), f"receipt latency percentiles missing\n{why}"
    values = [latency[key] for key in LATENCY_KEYS]
    assert values == sorted(values) and values[0] > 0, f"receipt latency: {latency}\n{why}"
    # The messages really were durable: the nodes' logs synced while the run went on.
    syncs_after = sum(metric(n, "stomp_durable_log_syncs_total") for n in durable_cluster.nodes.values())
    assert syncs_after > syncs_before, f"no log sync during a persistent run ({syncs_before} -> {syncs_after})\n{why}"


def test_other_scenarios_report_no_persistent_section(node):
    code, report, result = bench("--pub-url", node.ws_url, "--scenario", "queue", "--queues", "1",
                                 "--publishers", "1", "--consumers-per-queue", "1", "--duration", "1")
    assert_correct(code, report, result)
    assert "persistent" not in report, describe(result)


def test_a_header_without_a_colon_is_refused():
    result = subprocess.run([str(CLUSTERCTL), "bench", "--send-header", "x-queue-type"], capture_output=True,
                            text=True, timeout=RUN_TIMEOUT)
    assert result.returncode not in (0, 1), describe(result)
    assert "NAME:VALUE" in result.stderr, describe(result)


# ---------------------------------------------------------------------------
# Loss is reported as loss
# ---------------------------------------------------------------------------

def node_document(node) -> dict:
    with urllib.request.urlopen(node.admin_url + "/v1/node", timeout=10) as response:
        return json.loads(response.read().decode())


def test_lost_messages_are_reported(node_factory):
    # No cluster secret: two independent brokers. What is published on A cannot reach a
    # subscriber on B, so every expected delivery is lost.
    a = node_factory(name="bench-lonely-a")
    b = node_factory(name="bench-lonely-b")
    for n in (a, b):
        assert node_document(n).get("cluster") is None, f"{n.name} is clustered; the test needs it alone"

    code, report, result = bench("--pub-url", a.ws_url, "--sub-url", b.ws_url,
                                 "--scenario", "one-to-one", "--duration", "1", timeout=LOSSY_TIMEOUT)
    why = describe(result)
    assert code == 1, f"a lossy run must exit 1\n{why}"
    assert report["ok"] is False, why
    assert report["published"] > 0, why
    assert report["expectedDeliveries"] == report["published"] > 0, why
    assert report["delivered"] == 0, why
    assert report["lost"] == report["expectedDeliveries"], why
    # Nothing else went wrong: the loss is the only reason for the verdict.
    for counter in ("duplicated", "reordered", "unrecognized", "misrouted", "connectionsClosedUnexpectedly"):
        assert report[counter] == 0, f"{counter} = {report[counter]}\n{why}"


# ---------------------------------------------------------------------------
# Memory per idle connection
# ---------------------------------------------------------------------------

def test_idle_reports_memory_per_connection(node_factory):
    # A node of its own, fresh: the figure is the growth of the node's resident memory, and
    # a node that has already served other runs can hold freed memory that idle connections
    # reuse, so that its RSS doesn't grow at all.
    n = node_factory(name="bench-idle")
    code, report, result = bench("--pub-url", n.ws_url, "--scenario", "idle",
                                 "--connections", "50", "--server-pid", str(n.proc.pid))
    why = describe(result)
    assert code == 0, why
    assert report["connections"] == 50, why
    assert report["serverRSSKiBBefore"] > 0, f"the node's RSS was not read\n{why}"
    assert report["kibPerConnection"] > 0, why
    grown = report["serverRSSKiBAfter"] - report["serverRSSKiBBefore"]
    assert report["kibPerConnection"] == pytest.approx(grown / 50), why
