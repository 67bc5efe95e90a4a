#!/usr/bin/env python3
"""Runs the same STOMP scenarios against one node of ours, one RabbitMQ Web-STOMP node, and a
3-node cluster of ours, on loopback, with `clusterctl bench` as the load generator; writes
a markdown table of medians with ratios to RabbitMQ measured in the same run.

Usage: bench/run.py [--runs 3] [--duration 5] [--out bench/RESULTS.md] [--skip-rabbitmq]
Needs: a release build (`swift build -c release`), and rabbitmq-server (installed with
apt-get by bench/run.sh when missing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / ".build" / "release"
NODE = RELEASE / "cluster-node"
CTL = RELEASE / "clusterctl"


def raise_file_limit() -> None:
    """Brokers under test get as many descriptors as the machine allows them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"port {port} did not open")


class Ours:
    """A cluster of our nodes (size 1 for the single-node runs)."""

    def __init__(self, work: Path, size: int):
        self.procs, self.ws, self.stomp = [], [], []
        secret = work / "secret"
        secret.write_text("bench-secret-0123456789abcdef")
        cluster_ports = [free_port() for _ in range(size)]
        seeds = ",".join(f"127.0.0.1:{p}" for p in cluster_ports)
        for i in range(size):
            ws, stomp = free_port(), free_port()
            args = [str(NODE), "--node-id", f"b{i + 1}", "--host", "127.0.0.1", "--ws-port", str(ws), "--stomp-port", str(stomp),
                    "--admin-port", str(free_port()), "--log-level", "warning"]
            if size > 1:
                args += ["--cluster-host", "127.0.0.1", "--cluster-port", str(cluster_ports[i]), "--seeds", seeds,
                         "--cluster-secret-file", str(secret)]
            log = open(work / f"node{i + 1}.log", "wb")
            self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                               preexec_fn=raise_file_limit))
            self.ws.append(f"ws://127.0.0.1:{ws}/ws")
            self.stomp.append(f"tcp://127.0.0.1:{stomp}")
        for url in self.ws:
            wait_port(int(url.split(":")[2].split("/")[0]))
        time.sleep(1.5 if size > 1 else 0.2)

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


class Rabbit:
    """One RabbitMQ node with the STOMP and Web-STOMP plugins, on loopback ports of its own."""

    def __init__(self, work: Path):
        base = work / "rabbit"
        for folder in (base, base / "mnesia", base / "log"):
            folder.mkdir()
        self.web, self.stomp_port, amqp, dist = free_port(), free_port(), free_port(), free_port()
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {amqp}\n"
            f"web_stomp.tcp.port = {self.web}\n"
            f"stomp.listeners.tcp.1 = 127.0.0.1:{self.stomp_port}\n"
            "loopback_users = none\n"
            "log.console = false\n"
        )
        (base / "enabled_plugins").write_text("[rabbitmq_stomp,rabbitmq_web_stomp].\n")
        env = dict(os.environ,
                   RABBITMQ_NODENAME=f"bench{os.getpid()}@localhost",
                   RABBITMQ_CONFIG_FILE=str(base / "rabbitmq"),
                   RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
                   RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
                   RABBITMQ_LOG_BASE=str(base / "log"),
                   RABBITMQ_FEATURE_FLAGS_FILE=str(base / "feature_flags"),
                   RABBITMQ_DIST_PORT=str(dist),
                   HOME=str(base))
        self.env = env
        # Debian's wrapper runs the broker as the rabbitmq user: its folders must be writable.
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(work), str(base)], check=False)
            os.chmod(work, 0o755)
        # Debian's /usr/sbin wrapper switches user with `su`, which resets the descriptor limit to
        # 1024: RabbitMQ would then cap itself at ~830 sockets. Run the broker script itself, with
        # a limit fit for the idle-connections scenario.
        server = "/usr/lib/rabbitmq/bin/rabbitmq-server"
        if not os.path.exists(server):
            server = shutil.which("rabbitmq-server") or "/usr/sbin/rabbitmq-server"

        self.proc = subprocess.Popen([server], env=env, stdout=open(base / "out.log", "wb"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=raise_file_limit)
        wait_port(self.web, 120)
        wait_port(self.stomp_port, 120)
        self.ws = [f"ws://127.0.0.1:{self.web}/ws"]
        self.stomp = [f"tcp://127.0.0.1:{self.stomp_port}"]

    @property
    def pids(self):
        # The broker runs in a session of its own: its Erlang VM is the beam process there.
        out = subprocess.run(["pgrep", "-s", str(self.proc.pid), "beam"], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self):
        ctl = "/usr/lib/rabbitmq/bin/rabbitmqctl" if os.path.exists("/usr/lib/rabbitmq/bin/rabbitmqctl") else (shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl")
        subprocess.run([ctl, "stop"], env=self.env, capture_output=True, timeout=60)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def bench(args: list, timeout: float = 300) -> dict:
    result = subprocess.run([str(CTL), "bench", "--json", *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"bench failed: {result.stderr}")
    return json.loads(result.stdout)


SCENARIOS = {
    # name: (clusterctl bench arguments, the figure compared)
    "one-to-one throughput": (["--scenario", "one-to-one"], "deliveredPerSecond"),
    "fan-out 1->50, deliveries/s": (["--scenario", "fan-out", "--subscribers", "50"], "deliveredPerSecond"),
    "queues (10 queues, 10 publishers, 2 consumers each)": (["--scenario", "queue", "--queues", "10", "--publishers", "10", "--consumers-per-queue", "2"], "deliveredPerSecond"),
    "p99 latency at 5,000 msgs/s (µs)": (["--scenario", "one-to-one", "--rate", "5000"], "p99"),
}


def run_scenarios(target, runs: int, duration: float, pub=None, sub=None) -> dict:
    results = {}
    for name, (args, figure) in SCENARIOS.items():
        values, ok = [], True
        for _ in range(runs):
            report = bench(["--pub-url", *(pub or target.ws[:1]), *sum((["--sub-url", u] for u in (sub or target.ws)), []), "--duration", str(duration), *args])
            ok = ok and report["ok"]
            values.append(report["latencyMicroseconds"].get("p99", 0) if figure == "p99" else report[figure])
        results[name] = (statistics.median(values), ok, values)
        print(f"  {name}: median {statistics.median(values):,.0f} of {[round(v) for v in values]} (correct: {ok})", flush=True)
    return results


def idle_memory(target, connections: int) -> float:
    report = bench(["--scenario", "idle", "--connections", str(connections), "--sub-url", target.ws[0],
                    *sum((["--server-pid", str(p)] for p in target.pids), [])], timeout=600)
    return report["kibPerConnection"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--idle-connections", type=int, default=10_000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    parser.add_argument("--skip-rabbitmq", action="store_true")
    parser.add_argument("--idle-only", action="store_true", help="measure memory per idle connection only, for both brokers")
    options = parser.parse_args()
    for binary in (NODE, CTL):
        if not binary.exists():
            sys.exit(f"{binary} is missing: run `swift build -c release` first (bench/run.sh does)")

    rows = {}
    if options.idle_only:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "single").mkdir()
            single = Ours(work / "single", 1)
            try:
                print(f"ours: {idle_memory(single, options.idle_connections):.1f} KiB per idle connection")
            finally:
                single.stop()
            rabbit = Rabbit(work)
            try:
                print(f"RabbitMQ: {idle_memory(rabbit, options.idle_connections):.1f} KiB per idle connection")
            finally:
                rabbit.stop()
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "single").mkdir()
        single = Ours(work / "single", 1)
        try:
            print("ours, 1 node:", flush=True)
            rows["ours"] = run_scenarios(single, options.runs, options.duration)
            rows["ours-idle"] = idle_memory(single, options.idle_connections)
            print(f"  idle: {rows['ours-idle']:.1f} KiB per connection", flush=True)
        finally:
            single.stop()
        if not options.skip_rabbitmq:
            rabbit = Rabbit(work)
            try:
                print("RabbitMQ, 1 node:", flush=True)
                rows["rabbit"] = run_scenarios(rabbit, options.runs, options.duration)
                rows["rabbit-idle"] = idle_memory(rabbit, options.idle_connections)
                print(f"  idle: {rows['rabbit-idle']:.1f} KiB per connection", flush=True)
            finally:
                rabbit.stop()
        (work / "cluster").mkdir()
        cluster = Ours(work / "cluster", 3)
        try:
            # Publishers on node 1, subscribers spread over all three.
            print("ours, 3 nodes (publishers on n1, subscribers on all):", flush=True)
            rows["cluster"] = run_scenarios(cluster, options.runs, options.duration, pub=cluster.ws[:1], sub=cluster.ws)
            print("ours, across nodes (publishers on n1, subscribers on n2):", flush=True)
            rows["across"] = run_scenarios(cluster, options.runs, options.duration, pub=cluster.ws[:1], sub=cluster.ws[1:2])
        finally:
            cluster.stop()

    lines = [
        "# Benchmark results",
        "",
        f"Measured {datetime.date.today().isoformat()} on {platform.node()} ({os.cpu_count()} cores, {platform.machine()}), "
        f"load generator on the same machine, loopback, {options.runs} runs of {options.duration:g} s each (medians), 100-byte bodies, "
        "STOMP 1.2 over WebSocket. Command: `bench/run.sh` (which runs `bench/run.py`).",
        "",
        "| scenario | ours, 1 node | RabbitMQ Web-STOMP, 1 node | ratio | ours, 3 nodes (pub on n1, subs on all) | ours, across nodes (pub n1, sub n2) | correct (no loss/dup/reorder) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in SCENARIOS:
        ours, ours_ok, _ = rows["ours"][name]
        cluster, cluster_ok, _ = rows["cluster"][name]
        across, across_ok, _ = rows["across"][name]
        if "rabbit" in rows:
            rabbit, rabbit_ok, _ = rows["rabbit"][name]
            ratio = (rabbit / ours) if "latency" in name else (ours / rabbit)
            rabbit_text, ratio_text = f"{rabbit:,.0f}", f"{ratio:.2f}x"
        else:
            rabbit_text, ratio_text, rabbit_ok = "-", "-", True
        correct = "yes" if (ours_ok and cluster_ok and across_ok and rabbit_ok) else "NO"
        lines.append(f"| {name} | {ours:,.0f} | {rabbit_text} | {ratio_text} | {cluster:,.0f} | {across:,.0f} | {correct} |")
    ours_idle, rabbit_idle = rows["ours-idle"], rows.get("rabbit-idle")
    idle_rabbit_text = "-" if rabbit_idle is None else f"{rabbit_idle:.1f}"
    idle_ratio_text = "-" if rabbit_idle is None else f"{rabbit_idle / max(ours_idle, 0.001):.2f}x"
    lines.append(f"| memory per idle subscribed WebSocket connection (KiB, {options.idle_connections:,} connections) | "
                 f"{ours_idle:.1f} | {idle_rabbit_text} | {idle_ratio_text} | - | - | - |")
    lines += ["", "Ratios are ours/RabbitMQ for throughput, RabbitMQ/ours for latency and memory (higher is better for us).", ""]
    Path(options.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
