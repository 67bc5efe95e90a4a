"""The persistent-queue scenario of bench/run.py: what it measures besides `clusterctl bench`'s own
report (fsyncs and bytes written, from the brokers' processes and our nodes' metrics), and the
results file it writes (bench/PERSISTENT.md). run.py starts and stops the brokers and calls
`run_persistent` for each target. See bench/README.md, "Persistent queues".
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# The same load for both brokers: 10 queues, one publisher each on node 1, two competing consumers
# each on node 2; every SEND persistent with a receipt, at most IN_FLIGHT receipts awaited per
# publisher; consumers acknowledge each message (client-individual) with at most PREFETCH
# unacknowledged. 100-byte bodies (clusterctl's default), STOMP over TCP.
QUEUES, PUBLISHERS, CONSUMERS_PER_QUEUE, IN_FLIGHT, PREFETCH = 10, 10, 2, 50, 100
ARGS = ["--scenario", "persistent", "--queues", str(QUEUES), "--publishers", str(PUBLISHERS),
        "--consumers-per-queue", str(CONSUMERS_PER_QUEUE), "--in-flight", str(IN_FLIGHT), "--prefetch", str(PREFETCH)]
# RabbitMQ makes a /queue/ a quorum queue only if the SEND or SUBSCRIBE that declares it asks for
# one, and refuses any later declaration with other arguments: so every SEND and SUBSCRIBE says so.
# A quorum queue must be durable and not auto-delete (RabbitMQ's defaults for /queue/, said anyway).
RABBIT_QUORUM = ["x-queue-type:quorum", "durable:true", "auto-delete:false"]
RABBIT_ARGS = [*(arg for h in RABBIT_QUORUM for arg in ("--send-header", h)),
               *(arg for h in RABBIT_QUORUM for arg in ("--subscribe-header", h))]

TARGETS = {
    "ours": "ours, 3 nodes, durable queues (pub n1, consumers n2)",
    "rabbit": "RabbitMQ, 3 nodes, quorum queues (pub n1, consumers n2)",
}

SYNC_METRIC = "stomp_durable_log_syncs_total"
WRITTEN_METRIC = "stomp_durable_log_written_bytes_total"


# ---------------------------------------------------------------------------
# Counters read around each run
# ---------------------------------------------------------------------------

def write_bytes(pids) -> int:
    """Bytes the processes caused to be sent to storage so far (`write_bytes` of /proc/PID/io,
    all threads). A process that is gone counts 0."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("write_bytes:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


def metric_sum(admin_urls, name: str) -> float | None:
    """The sum over the nodes of a Prometheus counter (every series of it) from `/metrics`, or
    None when a node could not be read."""
    total = 0.0
    for url in admin_urls:
        try:
            with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


class SyncCounter:
    """fsync and fdatasync system calls made by some processes (all their threads) while it runs,
    counted by `perf stat` on the kernel's syscall tracepoints. The count is kept in the kernel,
    so the processes are not slowed down (unlike strace, which stops every thread of the process
    at every system call it makes, fsync or not, and would change the figure it measures)."""

    EVENTS = ("syscalls:sys_enter_fsync", "syscalls:sys_enter_fdatasync")

    @staticmethod
    def unavailable() -> str | None:
        """Why fsyncs can't be counted on this machine, or None when they can."""
        if shutil.which("perf") is None:
            return "perf is not installed"
        try:
            probe = subprocess.run(["perf", "stat", "-x,", "-e", ",".join(SyncCounter.EVENTS), "-p", str(os.getpid()),
                                    "--", "sleep", "0.1"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"perf stat failed: {error}"
        if probe.returncode != 0 or "<not supported>" in probe.stderr or "not found" in probe.stderr.lower():
            return f"perf stat cannot count the syscall tracepoints here: {probe.stderr.strip()[:300]}"
        return None

    def __init__(self, pids):
        self.out = Path(tempfile.mkstemp(prefix="bench-perf-", suffix=".csv")[1])
        self.proc = subprocess.Popen(["perf", "stat", "-x,", "-o", str(self.out), "-e", ",".join(self.EVENTS),
                                      "-p", ",".join(str(p) for p in pids)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        # perf attaches to every thread before it counts anything: give it that time.
        time.sleep(0.5)

    def stop(self) -> int | None:
        """Stops counting; the number of calls, or None if perf failed."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)
            calls = 0
            for line in self.out.read_text().splitlines():
                fields = line.split(",")
                if len(fields) > 2 and fields[2].strip() in self.EVENTS:
                    if not fields[0].strip().isdigit():
                        return None
                    calls += int(fields[0])
            return calls
        except (OSError, subprocess.TimeoutExpired):
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            return None
        finally:
            self.out.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------

@dataclass
class Run:
    report: dict
    seconds: float            # from the start of publishing to the last delivery (the report's)
    broker_cpu: float         # CPU seconds of every broker process over the generator's run
    written: int              # /proc/PID/io write_bytes over the generator's run, all broker processes
    syncs: int | None         # fsync + fdatasync calls of the broker processes (perf), None if not counted
    metric_syncs: float | None = None    # ours: the nodes' stomp_durable_log_syncs_total
    metric_written: float | None = None  # ours: the nodes' stomp_durable_log_written_bytes_total

    @property
    def messages(self) -> int:
        return self.report["published"]

    def per_second(self, value):
        return None if value is None or self.seconds <= 0 else value / self.seconds

    def per_message(self, value):
        return None if value is None or not self.messages else value / self.messages


@dataclass
class Outcome:
    runs: list = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.runs) and all(r.report["ok"] for r in self.runs)

    def median(self, figure):
        values = [v for v in (figure(r) for r in self.runs) if v is not None]
        return statistics.median(values) if values else None

    def problems(self) -> str:
        if self.error is not None:
            return "run failed"
        counts = [(key, sum(r.report[key] for r in self.runs)) for key in
                  ("lost", "duplicated", "reordered", "misrouted", "connectionsClosedUnexpectedly")]
        counts.append(("never receipted", sum(r.report["persistent"]["unanswered"] for r in self.runs)))
        return ", ".join(f"{n:,} {key.replace('connectionsClosedUnexpectedly', 'connections closed')}" for key, n in counts if n)


def run_persistent(bench, cpu_seconds, target, pub: str, sub: str, extra: list, runs: int, duration: float,
                   admin_urls=(), count_syncs: bool = True) -> Outcome:
    """`runs` runs of the persistent scenario against `target` (whose `pids` are its broker
    processes), publishers on `pub`, consumers on `sub`, each run charged the brokers' CPU,
    writes and fsyncs, and for ours (`admin_urls`) the nodes' own counters."""
    outcome = Outcome()
    for _ in range(runs):
        pids = target.pids
        cpu, written = cpu_seconds(pids), write_bytes(pids)
        metric_syncs, metric_written = metric_sum(admin_urls, SYNC_METRIC), metric_sum(admin_urls, WRITTEN_METRIC)
        counter = SyncCounter(pids) if count_syncs else None
        try:
            report = bench(["--pub-url", pub, "--sub-url", sub, "--duration", f"{duration:g}", *ARGS, *extra])
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as error:
            if counter is not None:
                counter.stop()
            outcome.error = str(error)
            print(f"  persistent: FAILED: {error}", flush=True)
            break
        syncs = counter.stop() if counter is not None else None
        run = Run(report=report, seconds=report["deliverySeconds"], broker_cpu=cpu_seconds(pids) - cpu,
                  written=write_bytes(pids) - written, syncs=syncs)
        if admin_urls:
            after_syncs, after_written = metric_sum(admin_urls, SYNC_METRIC), metric_sum(admin_urls, WRITTEN_METRIC)
            run.metric_syncs = None if None in (after_syncs, metric_syncs) else after_syncs - metric_syncs
            run.metric_written = None if None in (after_written, metric_written) else after_written - metric_written
        outcome.runs.append(run)
        receipt = report["persistent"]["receiptLatencyMicroseconds"]
        print(f"  persistent: {report['deliveredPerSecond']:,.0f} msgs/s, publish-to-receipt p50 {receipt.get('p50', 0):,.0f} µs "
              f"p99 {receipt.get('p99', 0):,.0f} µs, {fmt(run.per_second(run.syncs), 0)} fsyncs/s, "
              f"{fmt(run.per_message(run.written), 0)} bytes written per message, correct: "
              f"{'yes' if report['ok'] else 'NO'}", flush=True)
    return outcome


# ---------------------------------------------------------------------------
# The results file
# ---------------------------------------------------------------------------

def fmt(value, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def receipt(percentile):
    return lambda r: r.report["persistent"]["receiptLatencyMicroseconds"].get(percentile)


def delivery(percentile):
    return lambda r: r.report["latencyMicroseconds"].get(percentile)


# (row, figure of a run, digits, how a ratio ours : RabbitMQ reads: "higher" is better, "lower"
# is better, or None for no ratio)
ROWS = [
    ("msgs/s (delivered, until the last delivery)", lambda r: r.report["deliveredPerSecond"], 0, "higher"),
    ("publish-to-receipt p50, µs", receipt("p50"), 0, "lower"),
    ("publish-to-receipt p99, µs", receipt("p99"), 0, "lower"),
    ("publish-to-delivery p99, µs", delivery("p99"), 0, "lower"),
    ("fsyncs/s (fsync + fdatasync calls, perf)", lambda r: r.per_second(r.syncs), 0, None),
    ("fsyncs per message (perf)", lambda r: r.per_message(r.syncs), 3, None),
    ("log syncs/s (nodes' stomp_durable_log_syncs_total)", lambda r: r.per_second(r.metric_syncs), 0, None),
    ("bytes written per message (/proc/PID/io write_bytes)", lambda r: r.per_message(r.written), 0, None),
    ("bytes appended to the log per message (nodes' stomp_durable_log_written_bytes_total)",
     lambda r: r.per_message(r.metric_written), 0, None),
    ("broker CPU seconds per million messages", lambda r: r.per_message(r.broker_cpu * 1e6), 1, "lower"),
    ("load generator CPU, % of its core (highest run)", None, 0, None),
]


def ratio(ours, theirs, better) -> str:
    if better is None or ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return "-"
    if better == "higher":
        return f"{ours / theirs:.2f}x"
    r = theirs / ours
    return f"{r:.1f}x lower" if r >= 1 else f"{1 / r:.1f}x higher"


def generator_cpu(outcome: Outcome):
    return max((100 * r.report["generatorCPUSeconds"] / max(r.report["deliverySeconds"], 0.001) for r in outcome.runs), default=None)


def render(outcomes: dict, notes: list, header: list, sync_note: str | None) -> str:
    """The whole of bench/PERSISTENT.md: `header` (what, where, when, the command), the table of
    medians with ratios, the target's verdict, every run, and the notes."""
    ours, rabbit = outcomes.get("ours"), outcomes.get("rabbit")

    def cell(outcome, figure, digits):
        if outcome is None or not outcome.runs:
            return "-"
        value = outcome.median(figure)
        return fmt(value, digits) + ("" if outcome.ok or value is None else " (not correct)")

    lines = [*header, "", f"| figure | {TARGETS['ours']} | {TARGETS['rabbit']} | ours : RabbitMQ |", "| --- | --- | --- | --- |"]
    for name, figure, digits, better in ROWS:
        if figure is None:
            texts = [fmt(generator_cpu(o), 0) if o is not None else "-" for o in (ours, rabbit)]
            lines.append(f"| {name} | {texts[0]} | {texts[1]} | - |")
            continue
        valid = [o.median(figure) if o is not None and o.ok else None for o in (ours, rabbit)]
        lines.append(f"| {name} | {cell(ours, figure, digits)} | {cell(rabbit, figure, digits)} | {ratio(*valid, better)} |")
    correct = []
    for key, outcome in outcomes.items():
        if outcome is not None:
            correct.append(f"{TARGETS[key]}: {'yes' if outcome.ok else 'NO: ' + outcome.problems()}")
    lines.append(f"| correct (no loss, no duplicates, every SEND receipted) | " +
                 " | ".join("-" if outcomes.get(k) is None else ("yes" if outcomes[k].ok else "no") for k in TARGETS) + " | - |")
    lines.append("")
    lines.append(verdict(ours, rabbit))
    lines.append("")
    lines += ["How the figures are made: msgs/s are deliveries from the start of publishing until the last delivery; "
              "latencies are medians over the runs of each run's percentile, on the generator's clock (publish-to-receipt: "
              "from writing the SEND until its RECEIPT arrived, which for both brokers means the message is on disk on a "
              "majority of its queue's replicas). fsyncs, bytes written and CPU are counted over each whole generator run "
              "(connections and queue set-up included) for every broker process of the target (ours: the 3 nodes; RabbitMQ: "
              "the 3 `beam.smp`), divided by the run's published messages, or by the seconds from the start of publishing to "
              "the last delivery. `write_bytes` counts what reached the block layer, the logs' own files and anything else the "
              "processes wrote. The metrics rows exist for ours only. \"(not correct)\": a run behind the figure lost, "
              "duplicated or left a SEND without its receipt; no ratio is given for it.", ""]
    if sync_note:
        lines += [sync_note, ""]
    runs = []
    for key, outcome in outcomes.items():
        if outcome is None:
            continue
        for i, r in enumerate(outcome.runs, 1):
            rec = r.report["persistent"]["receiptLatencyMicroseconds"]
            runs.append(f"- {TARGETS[key]}, run {i}: {r.report['deliveredPerSecond']:,.0f} msgs/s ({r.report['published']:,} published, "
                        f"{r.report['delivered']:,} delivered in {r.seconds:.2f} s); publish-to-receipt p50 {fmt(rec.get('p50'))} µs, "
                        f"p99 {fmt(rec.get('p99'))} µs, max {fmt(rec.get('max'))} µs; {fmt(r.syncs)} fsyncs "
                        f"({fmt(r.per_second(r.syncs))}/s); {fmt(r.written)} bytes written ({fmt(r.per_message(r.written))} per message)"
                        + (f"; node metrics: {fmt(r.metric_syncs)} log syncs, {fmt(r.metric_written)} bytes appended"
                           if r.metric_syncs is not None else "")
                        + f"; broker CPU {r.broker_cpu:.2f} s; generator CPU {100 * r.report['generatorCPUSeconds'] / max(r.seconds, 0.001):.0f}%"
                        + ("" if r.report["ok"] else f"; NOT correct: {r.report['lost']} lost, {r.report['duplicated']} duplicated, "
                           f"{r.report['persistent']['unanswered']} never receipted, {r.report['connectionsClosedUnexpectedly']} connections closed")
                        + ".")
    if runs:
        lines += ["Individual runs:", "", *runs, ""]
    for text in notes:
        lines += [text, ""]
    return "\n".join(lines)


def verdict(ours: Outcome | None, rabbit: Outcome | None) -> str:
    """Issue 13's target: at least 3x RabbitMQ's msgs/s at a p99 publish-to-receipt latency no
    higher than RabbitMQ's, from the medians of this invocation."""
    goal = "Target: at least 3x RabbitMQ's msgs/s at a p99 publish-to-receipt latency no higher than RabbitMQ's."
    if ours is None or rabbit is None or not ours.ok or not rabbit.ok:
        return f"{goal} Not judged: both targets need correct runs in the same invocation."
    rate = ours.median(ROWS[0][1]) / rabbit.median(ROWS[0][1])
    p99_ours, p99_rabbit = ours.median(receipt("p99")), rabbit.median(receipt("p99"))
    met = rate >= 3 and p99_ours <= p99_rabbit
    return (f"{goal} **{'Met' if met else 'Not met'}**: {rate:.2f}x the msgs/s, p99 publish-to-receipt "
            f"{p99_ours:,.0f} µs against {p99_rabbit:,.0f} µs.")
