#!/usr/bin/env python3
"""Runs the same STOMP scenarios against one node of ours and one RabbitMQ Web-STOMP node, then
against a 3-node cluster of ours and a 3-node RabbitMQ cluster (publishers on node 1,
subscribers spread over all three), and against our cluster across nodes (publishers on node 1,
subscribers on node 2); all on loopback, with `clusterctl bench` as the load generator pinned
to core 1 and the brokers to core 0. Writes a markdown table of medians, with ratios to RabbitMQ
measured in the same invocation, and each broker's CPU time per million deliveries.

Also, with `--scenarios persistent` (in the default), the persistent-queue scenario: durable
messages with a receipt for each, on 3 nodes of ours (each with its own data dir) and on a 3-node
RabbitMQ cluster's quorum queues, publishers on node 1 and consumers on node 2, with the fsyncs and
bytes written it takes; written to bench/PERSISTENT.md.

Usage: bench/run.py [--runs 3] [--duration 5] [--idle-connections 10000] [--out bench/RESULTS.md]
                    [--skip-rabbitmq] [--skip-rabbitmq-cluster] [--only ours,rabbit,...] [--idle-only]
                    [--scenarios transient,persistent] [--persistent-out bench/PERSISTENT.md]
Needs: a release build (`swift build -c release`), and rabbitmq-server (installed with
apt-get by bench/run.sh when missing). See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import pwd
import resource
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import persistent

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / ".build" / "release"
NODE = RELEASE / "cluster-node"
CTL = RELEASE / "clusterctl"
# Debian's own scripts; /usr/sbin only holds a wrapper that switches to the rabbitmq user.
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")

# What can be measured, in the table's order: (key, label in the table and the log).
TARGETS = {
    "ours": "ours, 1 node",
    "rabbit": "RabbitMQ Web-STOMP, 1 node",
    "cluster": "ours, 3 nodes (pub on n1, subs on all)",
    "rabbit-cluster": "RabbitMQ, 3 nodes (pub on n1, subs on all)",
    "across": "ours, across nodes (pub n1, subs n2)",
}
SHORT = {"ours": "ours 1 node", "rabbit": "RabbitMQ 1 node", "cluster": "ours 3 nodes",
         "rabbit-cluster": "RabbitMQ 3 nodes", "across": "ours across nodes"}

# The brokers share core 0 and the load generator has core 1 to itself: it can't take the
# brokers' time, and when it uses (nearly) all of its core, it, not the broker, set the pace.
BROKER_CORE, GENERATOR_CORE = 0, 1
# At or above this share of its core, a run's generator counts as saturated.
SATURATED_PERCENT = 90


def pinned(core: int) -> list:
    """`taskset -c CORE`, to put in front of a command; nothing on a machine with a single core
    (or without taskset), where there is no other core to keep the two apart."""
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(core)]


def cpu_seconds(pids) -> float:
    """User plus system CPU time the processes have used so far, all their threads included:
    /proc/PID/stat fields 14 and 15 (utime, stime) in clock ticks. A process that is gone
    counts 0."""
    ticks = 0
    for pid in pids:
        try:
            # The command name (field 2) may hold spaces; the fields after its ")" don't.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def commit(exclude: Path | list = ()) -> str:
    """`git rev-parse --short HEAD`, with "+dirty" when a tracked file differs from it (other
    than those in `exclude`, the results files a previous run wrote)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30).stdout.strip()

    paths = [exclude] if isinstance(exclude, Path) else list(exclude)
    inside = [path.resolve().relative_to(ROOT) for path in paths if path.resolve().is_relative_to(ROOT)]
    spec = ["--", ".", *(f":(exclude){path}" for path in inside)] if inside else []
    try:
        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "--untracked-files=no", *spec)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def raise_file_limit() -> None:
    """Brokers under test get as many descriptors as the machine allows them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Waits until something accepts connections on `port`; fails early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.pid} exited with status {process.returncode} before port {port} opened"
                               + (f"; last lines of {log}:\n{tail(log)}" if log else ""))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"port {port} did not open within {timeout:g} s" + (f"; last lines of {log}:\n{tail(log)}" if log else ""))


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"({error})"


class Ours:
    """A cluster of our nodes (size 1 for the single-node runs); with `data`, each node keeps its
    durable queues' log in a data dir of its own under `work`."""

    def __init__(self, work: Path, size: int, data: bool = False):
        work.mkdir()
        self.procs, self.ws, self.stomp, self.admin = [], [], [], []
        secret = work / "secret"
        secret.write_text("bench-secret-0123456789abcdef")
        cluster_ports = [free_port() for _ in range(size)]
        seeds = ",".join(f"127.0.0.1:{p}" for p in cluster_ports)
        ws_ports = []
        try:
            for i in range(size):
                ws, stomp, admin = free_port(), free_port(), free_port()
                args = [*pinned(BROKER_CORE), str(NODE), "--node-id", f"b{i + 1}", "--host", "127.0.0.1", "--ws-port", str(ws), "--stomp-port", str(stomp),
                        "--admin-port", str(admin), "--log-level", "warning"]
                if data:
                    args += ["--data-dir", str(work / f"node{i + 1}-data")]
                if size > 1:
                    args += ["--cluster-host", "127.0.0.1", "--cluster-port", str(cluster_ports[i]), "--seeds", seeds,
                             "--cluster-secret-file", str(secret)]
                with open(work / f"node{i + 1}.log", "wb") as log:
                    self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                       preexec_fn=raise_file_limit))
                ws_ports.append(ws)
                self.admin.append(f"http://127.0.0.1:{admin}")
                self.ws.append(f"ws://127.0.0.1:{ws}/ws")
                self.stomp.append(f"tcp://127.0.0.1:{stomp}")
            for i, (port, proc) in enumerate(zip(ws_ports, self.procs)):
                wait_port(port, 60, proc, work / f"node{i + 1}.log")
        except BaseException:
            self.stop()
            raise
        time.sleep(1.5 if size > 1 else 0.2)

    @property
    def pids(self):
        # taskset execs the node: the process it started is the node.
        return [p.pid for p in self.procs]

    def wait_members(self, timeout: float = 30) -> None:
        """Waits until every node counts every node as an alive member: a durable queue's replica
        set is chosen among the members alive when the queue is made."""
        deadline = time.monotonic() + timeout
        while True:
            counts = []
            for url in self.admin:
                try:
                    with urllib.request.urlopen(f"{url}/v1/members?limit=100", timeout=5) as response:
                        items = json.loads(response.read().decode()).get("items", [])
                    counts.append(sum(1 for m in items if m.get("status") == "alive"))
                except (OSError, ValueError):
                    counts.append(0)
            if all(count == len(self.procs) for count in counts):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not form within {timeout:g} s: alive members seen by each node {counts}")
            time.sleep(0.2)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def rabbit_script(name: str) -> str:
    """Debian's script itself, not the /usr/sbin wrapper: the wrapper switches user with `su`,
    which resets the descriptor limit to 1024, and RabbitMQ would then cap itself at ~830
    sockets, too few for the idle-connections scenario."""
    if (RABBIT_BIN / name).exists():
        return str(RABBIT_BIN / name)
    return shutil.which(name) or f"/usr/sbin/{name}"


def rabbit_version() -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        out = subprocess.run([rabbit_script("rabbitmqctl"), "version"], capture_output=True, text=True, timeout=60)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


class Epmd:
    """Erlang's port mapper, which RabbitMQ nodes and rabbitmqctl use to find each other: one of
    our own on a private loopback port, so that the benchmark neither shares the machine's nor
    leaves one behind."""

    def __init__(self, work: Path):
        binary = shutil.which("epmd") or next((str(p) for p in sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))), None)
        if binary is None:
            raise RuntimeError("epmd (Erlang's port mapper) not found")
        self.port = free_port()
        with open(work / "epmd.log", "wb") as log:
            self.proc = subprocess.Popen([binary, "-port", str(self.port), "-address", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.port, 10, self.proc, work / "epmd.log")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RabbitNode:
    """One RabbitMQ node with the STOMP and Web-STOMP plugins and default settings otherwise, on
    loopback ports and in folders of its own (mnesia, logs, feature flags, HOME with the Erlang
    cookie). Starting returns at once; `wait_ready` waits for its listeners."""

    def __init__(self, base: Path, name: str, cookie: str, epmd_port: int):
        self.base, self.name = base, name
        for folder in (base, base / "mnesia", base / "log", base / "home"):
            folder.mkdir(parents=True)
        self.web, self.stomp_port, amqp, dist = free_port(), free_port(), free_port(), free_port()
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{amqp}\n"
            f"web_stomp.tcp.port = {self.web}\n"
            f"stomp.listeners.tcp.1 = 127.0.0.1:{self.stomp_port}\n"
            "loopback_users = none\n"
            "log.console = false\n"
        )
        (base / "enabled_plugins").write_text("[rabbitmq_stomp,rabbitmq_web_stomp].\n")
        server = rabbit_script("rabbitmq-server")
        # As root, only Debian's /usr/sbin wrapper (used when its scripts are elsewhere) runs the
        # broker as the rabbitmq user; otherwise the broker runs as whoever runs this script.
        user = "rabbitmq" if os.geteuid() == 0 and server.startswith("/usr/sbin/") else pwd.getpwuid(os.geteuid()).pw_name
        # The nodes of a cluster share one cookie; Erlang reads it from $HOME/.erlang.cookie and
        # insists that only its owner may read it. rabbitmqctl runs with the same HOME.
        cookie_file = base / "home" / ".erlang.cookie"
        cookie_file.write_text(cookie)
        cookie_file.chmod(0o400)
        if user != pwd.getpwuid(os.geteuid()).pw_name:
            subprocess.run(["chown", "-R", f"{user}:{user}", str(base)], check=False)
            for parent in reversed(base.parents):
                if str(parent).startswith(tempfile.gettempdir() + "/"):
                    os.chmod(parent, 0o755)
        self.env = dict(os.environ,
                        RABBITMQ_NODENAME=name,
                        RABBITMQ_CONFIG_FILE=str(base / "rabbitmq"),
                        RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
                        RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
                        RABBITMQ_LOG_BASE=str(base / "log"),
                        RABBITMQ_FEATURE_FLAGS_FILE=str(base / "feature_flags"),
                        RABBITMQ_DIST_PORT=str(dist),
                        ERL_EPMD_PORT=str(epmd_port),
                        HOME=str(base / "home"))
        self.env.pop("RABBITMQ_ERLANG_COOKIE", None)
        self.log = base / "out.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([*pinned(BROKER_CORE), server], env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=raise_file_limit)
        self.ws = f"ws://127.0.0.1:{self.web}/ws"
        self.stomp = f"tcp://127.0.0.1:{self.stomp_port}"

    def wait_ready(self, timeout: float = 180):
        wait_port(self.web, timeout, self.proc, self.log)
        wait_port(self.stomp_port, timeout, self.proc, self.log)

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """rabbitmqctl against this node, with its environment (so its cookie and epmd)."""
        return subprocess.run([rabbit_script("rabbitmqctl"), "-n", self.name, *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def must(self, *args: str, timeout: float = 120) -> str:
        try:
            result = self.ctl(*args, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"`rabbitmqctl -n {self.name} {' '.join(args)}` did not finish within {timeout:g} s") from None
        if result.returncode != 0:
            raise RuntimeError(f"`rabbitmqctl -n {self.name} {' '.join(args)}` failed ({result.returncode}): "
                               f"{(result.stderr or result.stdout).strip()}")
        return result.stdout

    def join(self, first: RabbitNode):
        self.must("stop_app")
        self.must("join_cluster", first.name)
        self.must("start_app")
        self.wait_ready()

    @property
    def pids(self):
        # The node runs in a session of its own: its Erlang VM is the beam process there.
        out = subprocess.run(["pgrep", "-s", str(self.proc.pid), "beam"], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.ctl("stop", timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} did not stop within 30 s of `rabbitmqctl stop`: killing it", flush=True)
        # Whatever is left of its session (the VM, erl_child_setup, inet_gethost) goes too.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


class RabbitMQ:
    """RabbitMQ nodes on this machine (size 1 for the single-node runs) with an epmd of their own;
    with more than one, nodes 2.. join node 1's cluster. Stops what it started if it fails."""

    def __init__(self, work: Path, size: int):
        started = time.monotonic()
        self.nodes: list[RabbitNode] = []
        work.mkdir()
        self.epmd = Epmd(work)
        try:
            cookie = secrets.token_hex(20).upper()
            stem = f"bench{os.getpid()}"
            for i in range(size):
                name = f"{stem}@localhost" if size == 1 else f"{stem}-{i + 1}@localhost"
                self.nodes.append(RabbitNode(work / f"n{i + 1}", name, cookie, self.epmd.port))
            for node in self.nodes:
                node.wait_ready()
            self.seconds_to_boot = time.monotonic() - started
            first = self.nodes[0]
            for node in self.nodes[1:]:
                node.join(first)
            if size > 1:
                self.check_cluster()
        except BaseException:
            self.stop()
            raise
        self.seconds_to_start = time.monotonic() - started
        self.seconds_to_join = self.seconds_to_start - self.seconds_to_boot
        self.ws = [node.ws for node in self.nodes]
        self.stomp = [node.stomp for node in self.nodes]

    def check_cluster(self):
        """Every node must be running in node 1's cluster."""
        want = {node.name for node in self.nodes}
        for node in self.nodes:
            out = node.must("cluster_status", "--formatter", "json")
            try:
                running = set(json.loads(out).get("running_nodes", []))
            except ValueError:
                running = {name for name in want if name in out}
            if running != want:
                raise RuntimeError(f"cluster_status on {node.name} lists running nodes {sorted(running)}, not {sorted(want)}")
        print(f"  RabbitMQ cluster formed: cluster_status on every node lists {', '.join(sorted(want))} as running", flush=True)

    @property
    def pids(self):
        return [pid for node in self.nodes for pid in node.pids]

    def stop(self):
        for node in reversed(self.nodes):
            node.stop()
        self.epmd.stop()


def bench(args: list, timeout: float = 300) -> dict:
    result = subprocess.run([*pinned(GENERATOR_CORE), str(CTL), "bench", "--json", *args], capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"clusterctl bench {' '.join(args)} exited with {result.returncode}: {result.stderr.strip()}")
    return json.loads(result.stdout)


SCENARIOS = {
    # name: (clusterctl bench arguments, the figure compared)
    "one-to-one, msgs/s": (["--scenario", "one-to-one"], "deliveredPerSecond"),
    "fan-out 1 -> 50, deliveries/s": (["--scenario", "fan-out", "--subscribers", "50"], "deliveredPerSecond"),
    "queues (10 queues, 10 publishers, 2 consumers each), msgs/s": (["--scenario", "queue", "--queues", "10", "--publishers", "10", "--consumers-per-queue", "2"], "deliveredPerSecond"),
    "p99 latency at 5,000 msgs/s, µs": (["--scenario", "one-to-one", "--rate", "5000"], "p99"),
}


@dataclass
class Outcome:
    """One scenario against one target: every run's figure and report, or why it failed."""
    values: list = field(default_factory=list)
    reports: list = field(default_factory=list)
    # The brokers' CPU seconds (all of the target's processes) over each run of the generator.
    broker_cpu: list = field(default_factory=list)
    error: str | None = None

    @property
    def median(self):
        return statistics.median(self.values) if self.values else None

    @property
    def ok(self) -> bool:
        return self.error is None and all(report["ok"] for report in self.reports)

    def problems(self) -> str:
        if self.error is not None:
            return "run failed"
        counts = [(key, sum(report[key] for report in self.reports)) for key in
                  ("lost", "duplicated", "reordered", "misrouted", "connectionsClosedUnexpectedly")]
        return ", ".join(f"{n:,} {key.replace('connectionsClosedUnexpectedly', 'connections closed')}" for key, n in counts if n)

    def generator_cpu(self) -> float:
        """The most of its one core the load generator used in any run, in %, over the time from
        the start of publishing to the last delivery."""
        return max((100 * r["generatorCPUSeconds"] / max(r["deliverySeconds"], 0.001) for r in self.reports), default=0)

    @property
    def saturated(self) -> bool:
        return self.generator_cpu() >= SATURATED_PERCENT

    def cpu_per_million(self) -> list:
        """Each run's broker CPU seconds per million deliveries (None for a run that delivered nothing)."""
        return [cpu * 1e6 / r["delivered"] if r["delivered"] else None for cpu, r in zip(self.broker_cpu, self.reports)]

    @property
    def median_cpu_per_million(self):
        values = [v for v in self.cpu_per_million() if v is not None]
        return statistics.median(values) if values else None


def run_scenarios(target, pub: list, sub: list, runs: int, duration: float) -> dict:
    """Every scenario `runs` times against `target` (whose `pids` are the broker processes whose
    CPU time each run is charged), publishers on `pub[0]`, subscribers spread over `sub`."""
    results = {}
    for name, (args, figure) in SCENARIOS.items():
        outcome = Outcome()
        for _ in range(runs):
            pids = target.pids
            before = cpu_seconds(pids)
            try:
                report = bench(["--pub-url", *pub[:1], *sum((["--sub-url", u] for u in sub), []), "--duration", f"{duration:g}", *args])
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as error:
                outcome.error = str(error)
                print(f"  {name}: FAILED: {error}", flush=True)
                break
            outcome.broker_cpu.append(cpu_seconds(pids) - before)
            outcome.reports.append(report)
            outcome.values.append(report["latencyMicroseconds"].get("p99", 0) if figure == "p99" else report[figure])
        results[name] = outcome
        if outcome.values:
            cpu = outcome.median_cpu_per_million
            print(f"  {name}: median {outcome.median:,.0f} of {[round(v) for v in outcome.values]} "
                  f"(correct: {'yes' if outcome.ok else 'NO: ' + outcome.problems()}; generator up to {outcome.generator_cpu():.0f}% of a core"
                  f"{', saturated' if outcome.saturated else ''}; broker {'-' if cpu is None else f'{cpu:.2f}'} CPU-s per million deliveries)",
                  flush=True)
    return results


def idle_memory(target, connections: int) -> float:
    """Resident memory growth per idle subscribed connection of `target`."""
    report = bench(["--scenario", "idle", "--connections", str(connections), "--sub-url", target.ws[0],
                    *sum((["--server-pid", str(p)] for p in target.pids), [])], timeout=900)
    return report["kibPerConnection"]


def machine() -> str:
    memory, system = "", platform.system()
    try:
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:"))
        memory = f", {kib / 1024 ** 2:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    try:
        system = next(line.split("=", 1)[1].strip().strip('"') for line in Path("/etc/os-release").read_text().splitlines()
                      if line.startswith("PRETTY_NAME="))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores, {platform.machine()}{memory}, {system}"


def note(summary: str, detail: str) -> str:
    """A line of the notes below the table, with a (trimmed) error message in a code block."""
    lines = [line.rstrip() for line in str(detail).strip().splitlines() if line.strip()]
    if len(lines) > 30:
        lines = lines[:30] + [f"... ({len(lines) - 30} more lines)"]
    return "\n".join([summary, "", "```text", *lines, "```"])


def fmt(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def ratio(name: str, ours, theirs) -> str:
    """Higher is better for us: ours/theirs for throughput, theirs/ours for latency."""
    if ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return "-"
    if "latency" in name:
        r = theirs / ours
        return f"{r:.1f}x lower" if r >= 1 else f"{1 / r:.1f}x higher"
    return f"{ours / theirs:.2f}x"


def render(rows: dict, notes: list, options, selected: list, started: datetime.datetime, revision: str) -> str:
    def median(key, name):
        outcome = rows.get(key, {}).get(name)
        return None if outcome is None else outcome.median

    def valid(key, name):
        """The median, if every run behind it was correct: only those are compared."""
        outcome = rows.get(key, {}).get(name)
        return outcome.median if outcome is not None and outcome.ok else None

    def cell(key, name, text):
        # A figure from runs that lost, duplicated or reordered messages is not a valid one; one
        # from a run whose generator used up its core measured the generator, not the broker.
        outcome = rows.get(key, {}).get(name)
        if outcome is None or not outcome.values:
            return text
        return text + (" (not correct)" if not outcome.ok else "") + (" (generator saturated)" if outcome.saturated else "")

    argv0 = Path(sys.argv[0]).resolve()
    shown = argv0.relative_to(ROOT) if argv0.is_relative_to(ROOT) else argv0
    command = shlex.join(["python3", str(shown), *sys.argv[1:]])
    placement = (f"the brokers pinned to core {BROKER_CORE} (`taskset -c {BROKER_CORE}`) and the load generator to core "
                 f"{GENERATOR_CORE} (`taskset -c {GENERATOR_CORE}`)" if pinned(BROKER_CORE) else
                 "brokers and load generator not pinned (this machine has one core, or no taskset)")
    lines = [
        "# Benchmark results",
        "",
        "<!-- generated by bench/run.py, do not edit -->",
        f"Generated by `bench/run.py`, do not edit (run it again instead). Machine: {platform.node()} ({machine()}). "
        f"Date: {started.strftime('%Y-%m-%d %H:%M')}. Commit: {revision}.",
        "",
        "The load generator (`clusterctl bench`, one thread) runs on the same machine, over loopback, with "
        f"{placement}; STOMP 1.2 over WebSocket, 100-byte bodies, "
        f"{options.runs} run{'s' if options.runs != 1 else ''} of {options.duration:g} s each: the figures are medians, and every "
        f"ratio compares runs made in the same invocation. RabbitMQ is Debian's rabbitmq-server {rabbit_version()} with the "
        "Web-STOMP plugin, default settings.",
        "",
        f"Command: `{command}` (`bench/run.sh` takes the same arguments, builds release and runs `bench/run.py`). "
        f"Measured: {', '.join(SHORT[key] for key in selected) or 'nothing'}.",
        "",
        "| scenario | " + " | ".join([TARGETS["ours"], TARGETS["rabbit"], "ratio", TARGETS["cluster"], TARGETS["rabbit-cluster"],
                                      "ratio (3 nodes)", TARGETS["across"], "correct"]) + " |",
        "| --- " * 9 + "|",
    ]
    for name in SCENARIOS:
        ours, rabbit, cluster, rabbit_cluster, across = (median(key, name) for key in TARGETS)
        across_text = fmt(across)
        if name.startswith("one-to-one") and valid("across", name) and valid("ours", name):
            across_text += f" ({across / ours:.0%} of 1 node)"
        texts = {key: cell(key, name, fmt(value)) for key, value in
                 (("ours", ours), ("rabbit", rabbit), ("cluster", cluster), ("rabbit-cluster", rabbit_cluster))}
        across_text = cell("across", name, across_text)
        measured = {key: rows[key][name] for key in TARGETS if name in rows.get(key, {})}
        if not measured:
            correct = "-"
        elif all(outcome.ok for outcome in measured.values()):
            correct = "yes"
        else:
            correct = "no: " + "; ".join(f"{SHORT[key]}: {outcome.problems()}" for key, outcome in measured.items() if not outcome.ok)
        lines.append(f"| {name} | {texts['ours']} | {texts['rabbit']} | {ratio(name, valid('ours', name), valid('rabbit', name))} | "
                     f"{texts['cluster']} | {texts['rabbit-cluster']} | {ratio(name, valid('cluster', name), valid('rabbit-cluster', name))} | "
                     f"{across_text} | {correct} |")
    ours_idle, rabbit_idle = rows.get("ours-idle"), rows.get("rabbit-idle")
    idle_ratio = "-"
    if ours_idle is not None and rabbit_idle is not None and ours_idle > 0 and rabbit_idle > 0:
        r = rabbit_idle / max(ours_idle, 0.001)
        idle_ratio = f"{r:.1f}x less" if r >= 1 else f"{1 / r:.1f}x more"
    lines.append(f"| memory per idle subscribed WebSocket connection ({options.idle_connections:,}), KiB, on a node started for it | "
                 f"{'-' if ours_idle is None else f'{ours_idle:.1f}'} | {'-' if rabbit_idle is None else f'{rabbit_idle:.1f}'} | "
                 f"{idle_ratio} | - | - | - | - | - |")
    lines += ["", "Throughput is deliveries per second from the start of publishing until the last delivery arrived. "
              "Ratios: ours/RabbitMQ for throughput; for latency and memory, how much lower ours is. "
              "\"correct\": every message of every run arrived exactly once, in order and at the destination subscribed to (no loss, "
              "no duplicates, no reordering, nothing misrouted, counted from per-publisher sequence numbers) on every target "
              "measured; \"-\": not measured; \"(not correct)\": at least one run behind that figure was not, so the figure "
              "should not be compared (no ratio is given for it); \"(generator saturated)\": in at least one run the load "
              f"generator used {SATURATED_PERCENT}% or more of its core, so the figure is the generator's limit, not the broker's.", ""]
    lines += ["Broker CPU seconds per million deliveries (medians; lower is better): the user and system time of every broker "
              "process of the target (`/proc/PID/stat`), over each whole run of the generator, divided by that run's "
              "deliveries. On a shared, noisy machine this is steadier than a rate.", "",
              "| scenario | " + " | ".join(TARGETS[key] for key in TARGETS) + " |",
              "| --- " * (len(TARGETS) + 1) + "|"]
    for name in SCENARIOS:
        medians = [rows.get(key, {}).get(name) for key in TARGETS]
        texts = ["-" if outcome is None or outcome.median_cpu_per_million is None else
                 cell(key, name, f"{outcome.median_cpu_per_million:.2f}") for key, outcome in zip(TARGETS, medians)]
        lines.append(f"| {name} | " + " | ".join(texts) + " |")
    lines.append("")
    runs = []
    for name in SCENARIOS:
        parts = []
        for key in TARGETS:
            outcome = rows.get(key, {}).get(name)
            if outcome is None:
                continue
            text = " / ".join(f"{v:,.0f}" for v in outcome.values) or "none"
            if outcome.reports:
                cpu = " / ".join("-" if v is None else f"{v:.2f}" for v in outcome.cpu_per_million())
                text += f" (generator up to {outcome.generator_cpu():.0f}%; broker CPU-s per million deliveries {cpu})"
            if outcome.error is not None:
                text += " (a run failed, see below)"
            parts.append(f"{SHORT[key]} {text}")
        if parts:
            runs.append(f"- {name}: " + "; ".join(parts) + ".")
    if runs:
        lines += ["Individual runs (msgs/s, or µs for latency), with the most CPU the load generator used in any run (its CPU "
                  "time in % of the time from the start of publishing to the last delivery, on its one thread; near 100% means "
                  "it, not the broker, set the pace) and each run's broker CPU seconds per million deliveries:",
                  "", *runs, ""]
    if notes:
        for text in notes:
            lines += [text, ""]
    return "\n".join(lines)



def measure_idle_memory(work: Path, selected: list, connections: int, rows: dict, notes: list) -> None:
    """The memory row, for one node of ours and one RabbitMQ node, each started for it:
    a node that has served load re-uses memory it already holds, and shows less growth."""
    starts = {"ours": lambda: Ours(work / "ours-idle", 1), "rabbit": lambda: start_rabbit(work / "rabbit-idle", 1, notes)}
    for key, start in starts.items():
        if key not in selected:
            continue
        target = start()
        if target is None:
            continue
        try:
            rows[f"{key}-idle"] = idle_memory(target, connections)
            print(f"{SHORT[key]}: {rows[f'{key}-idle']:.1f} KiB per idle connection", flush=True)
        finally:
            target.stop()


def start_rabbit(work: Path, size: int, notes: list):
    """RabbitMQ with `size` nodes, or None (and a note saying why) when it can't be had."""
    what = "RabbitMQ, 1 node" if size == 1 else f"RabbitMQ, {size} nodes"
    try:
        return RabbitMQ(work, size)
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        print(f"{what}: could not start: {error}", flush=True)
        notes.append(note(f"{what}: not measured, it could not be started{'' if size == 1 else ' and clustered'}:", str(error)))
        return None

# What `--scenarios` chooses from: the transient-message scenarios of the main table, and the
# persistent-queue scenario with its own results file.
SCENARIO_GROUPS = ("transient", "persistent")


def measure_persistent(work: Path, options, started: datetime.datetime, revision: str) -> None:
    """The persistent scenario against 3 nodes of ours (each with a data dir) and a 3-node RabbitMQ
    cluster (quorum queues), publishers on node 1 and consumers on node 2 of each, over STOMP on
    TCP; writes `options.persistent_out`."""
    outcomes, notes = {}, []
    load_before = os.getloadavg()
    cannot_count = persistent.SyncCounter.unavailable()
    sync_note = None if cannot_count is None else \
        f"fsyncs: n/a, {cannot_count}. (strace is not used instead: attached to a broker it stops every thread at every " \
        "system call, fsync or not, which would slow the broker down and change the figure it measures.)"
    ours = Ours(work / "persistent-ours", 3, data=True)
    try:
        ours.wait_members()
        print(f"{persistent.TARGETS['ours']}:", flush=True)
        outcomes["ours"] = persistent.run_persistent(bench, cpu_seconds, ours, ours.stomp[0], ours.stomp[1], [], options.runs,
                                                     options.duration, admin_urls=ours.admin, count_syncs=cannot_count is None)
    finally:
        ours.stop()
    if not options.skip_rabbitmq and not options.skip_rabbitmq_cluster:
        rabbit = start_rabbit(work / "persistent-rabbit", 3, notes)
        if rabbit is not None:
            try:
                print(f"{persistent.TARGETS['rabbit']} (started and clustered in {rabbit.seconds_to_start:.1f} s):", flush=True)
                outcomes["rabbit"] = persistent.run_persistent(bench, cpu_seconds, rabbit, rabbit.stomp[0], rabbit.stomp[1],
                                                               persistent.RABBIT_ARGS, options.runs, options.duration,
                                                               count_syncs=cannot_count is None)
            finally:
                rabbit.stop()
    for key, outcome in outcomes.items():
        if outcome.error is not None:
            notes.append(note(f"{persistent.TARGETS[key]}: a run failed:", outcome.error))
    argv0 = Path(sys.argv[0]).resolve()
    shown = argv0.relative_to(ROOT) if argv0.is_relative_to(ROOT) else argv0
    placement = (f"the brokers pinned to core {BROKER_CORE} (`taskset -c {BROKER_CORE}`) and the load generator to core "
                 f"{GENERATOR_CORE} (`taskset -c {GENERATOR_CORE}`)" if pinned(BROKER_CORE) else
                 "brokers and load generator not pinned (this machine has one core, or no taskset)")
    header = [
        "# Persistent queues: benchmark results",
        "",
        "<!-- generated by bench/run.py, do not edit -->",
        f"Generated by `bench/run.py`, do not edit (run it again instead). Machine: {platform.node()} ({machine()}). "
        f"Date: {started.strftime('%Y-%m-%d %H:%M')}. Commit: {revision}.",
        "",
        f"`clusterctl bench {shlex.join(persistent.ARGS)}`: {persistent.PUBLISHERS} publishers on node 1, each sending to one of "
        f"{persistent.QUEUES} queues, {persistent.CONSUMERS_PER_QUEUE} consumers per queue on node 2; every SEND has "
        f"`persistent:true` and a receipt, at most {persistent.IN_FLIGHT} receipts awaited per publisher; consumers acknowledge "
        f"each message (`ack:client-individual`, `prefetch-count:{persistent.PREFETCH}`); 100-byte bodies; STOMP 1.2 over TCP. "
        f"RabbitMQ gets the same load, with `{' '.join(persistent.RABBIT_ARGS)}`. The load generator (one thread) runs on the "
        f"same machine, over loopback, with {placement}. Ours: 3 `cluster-node` processes, each with its own `--data-dir` "
        f"(replication factor 3, default settings). RabbitMQ: Debian's rabbitmq-server {rabbit_version()}, 3 nodes in one "
        f"cluster, default settings. Data on the machine's disk ({filesystem(work)}). {options.runs} run"
        f"{'s' if options.runs != 1 else ''} of {options.duration:g} s of publishing per target; figures are medians, ratios "
        "compare runs made in the same invocation.",
        "",
        f"Command: `{shlex.join(['python3', str(shown), *sys.argv[1:]])}` (`bench/run.sh` takes the same arguments). "
        f"The machine is shared: load average (1, 5, 15 min) {' '.join(f'{v:.2f}' for v in load_before)} at the start, "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end.",
    ]
    text = persistent.render(outcomes, notes, header, sync_note)
    Path(options.persistent_out).write_text(text)
    print(text, flush=True)


def filesystem(path: Path) -> str:
    """The file system type and device that hold `path`, from /proc/mounts (longest mount point)."""
    best = ("", "unknown", "unknown")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, point, kind = line.split()[:3]
            if str(path.resolve()).startswith(point.rstrip("/") + "/") and len(point) >= len(best[0]):
                best = (point, kind, device)
    except OSError:
        pass
    return f"{best[1]} on {best[2]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs of each scenario against each target (default 3)")
    parser.add_argument("--duration", type=float, default=5, help="seconds of publishing per run (default 5)")
    parser.add_argument("--idle-connections", type=int, default=10_000, help="connections for the memory row (default 10000)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"), help="where to write the table (default bench/RESULTS.md)")
    parser.add_argument("--skip-rabbitmq", action="store_true", help="measure no RabbitMQ at all")
    parser.add_argument("--skip-rabbitmq-cluster", action="store_true", help="measure no 3-node RabbitMQ cluster")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(TARGETS)} to measure (default: all)")
    parser.add_argument("--idle-only", action="store_true", help="measure memory per idle connection only, for both brokers; writes no table")
    parser.add_argument("--scenarios",
                        help="comma-separated: transient (the table of --out, with the memory row), persistent (durable "
                             "queues against RabbitMQ quorum queues, to --persistent-out); default: both, or transient "
                             "alone with --only (which chooses among the transient targets)")
    parser.add_argument("--persistent-out", default=str(ROOT / "bench" / "PERSISTENT.md"),
                        help="where to write the persistent scenario's results (default bench/PERSISTENT.md)")
    options = parser.parse_args()
    # --only narrows the transient targets: a run asked for that alone must not rewrite the
    # persistent results too.
    scenarios = options.scenarios or ("transient" if options.only else ",".join(SCENARIO_GROUPS))
    groups = [group.strip() for group in scenarios.split(",") if group.strip()]
    unknown = [group for group in groups if group not in SCENARIO_GROUPS]
    if unknown or not groups:
        parser.error(f"--scenarios: unknown {', '.join(unknown) or '(none given)'} (choose from {', '.join(SCENARIO_GROUPS)})")
    selected = list(TARGETS)
    if options.only:
        wanted = [key.strip() for key in options.only.split(",") if key.strip()]
        unknown = [key for key in wanted if key not in TARGETS]
        if unknown:
            parser.error(f"--only: unknown {', '.join(unknown)} (choose from {', '.join(TARGETS)})")
        selected = [key for key in TARGETS if key in wanted]
    if options.skip_rabbitmq:
        selected = [key for key in selected if key not in ("rabbit", "rabbit-cluster")]
    if options.skip_rabbitmq_cluster:
        selected = [key for key in selected if key != "rabbit-cluster"]
    for binary in (NODE, CTL):
        if not binary.exists():
            sys.exit(f"{binary} is missing: run `swift build -c release` first (bench/run.sh does)")

    started = datetime.datetime.now()
    # Taken before measuring: the binaries are built from this tree.
    revision = commit(exclude=[Path(options.out), Path(options.persistent_out)])
    rows, notes = {}, []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        if options.idle_only:
            measure_idle_memory(work, selected, options.idle_connections, rows, notes)
            return 0
        if "persistent" in groups:
            measure_persistent(work, options, started, revision)
        if "transient" not in groups:
            return 0

        if "ours" in selected:
            single = Ours(work / "ours", 1)
            try:
                print(f"{TARGETS['ours']}:", flush=True)
                rows["ours"] = run_scenarios(single, single.ws, single.ws, options.runs, options.duration)
            finally:
                single.stop()

        if "rabbit" in selected:
            rabbit = start_rabbit(work / "rabbit", 1, notes)
            if rabbit is not None:
                try:
                    print(f"{TARGETS['rabbit']} (started in {rabbit.seconds_to_start:.1f} s):", flush=True)
                    rows["rabbit"] = run_scenarios(rabbit, rabbit.ws, rabbit.ws, options.runs, options.duration)
                finally:
                    rabbit.stop()

        measure_idle_memory(work, selected, options.idle_connections, rows, notes)

        if "cluster" in selected or "across" in selected:
            cluster = Ours(work / "cluster", 3)
            try:
                if "cluster" in selected:
                    # Publishers on node 1, subscribers spread over all three.
                    print(f"{TARGETS['cluster']}:", flush=True)
                    rows["cluster"] = run_scenarios(cluster, cluster.ws[:1], cluster.ws, options.runs, options.duration)
                if "across" in selected:
                    print(f"{TARGETS['across']}:", flush=True)
                    rows["across"] = run_scenarios(cluster, cluster.ws[:1], cluster.ws[1:2], options.runs, options.duration)
            finally:
                cluster.stop()

        if "rabbit-cluster" in selected:
            # "Where it can": a cluster that cannot be formed is reported, and the run goes on.
            rabbit_cluster = start_rabbit(work / "rabbit-cluster", 3, notes)
            if rabbit_cluster is not None:
                try:
                    print(f"{TARGETS['rabbit-cluster']} (3 nodes started and clustered in {rabbit_cluster.seconds_to_start:.1f} s):", flush=True)
                    notes.append(f"The 3-node RabbitMQ cluster took {rabbit_cluster.seconds_to_start:.0f} s to start and form: "
                                 f"{rabbit_cluster.seconds_to_boot:.0f} s for its three nodes, started at once, to open their "
                                 f"listeners, then {rabbit_cluster.seconds_to_join:.0f} s for nodes 2 and 3 to join node 1 "
                                 "(`stop_app`, `join_cluster`, `start_app`) and for `cluster_status` to confirm it.")
                    rows["rabbit-cluster"] = run_scenarios(rabbit_cluster, rabbit_cluster.ws[:1], rabbit_cluster.ws, options.runs,
                                                           options.duration)
                finally:
                    rabbit_cluster.stop()

    for key in TARGETS:
        for name, outcome in rows.get(key, {}).items():
            if outcome.error is not None:
                notes.append(note(f"{SHORT[key]}, {name}: a run failed:", outcome.error))
    text = render(rows, notes, options, selected, started, revision)
    Path(options.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
