#!/usr/bin/env python3
"""Two builds of our node side by side: the same scenarios as bench/run.py, alternating
between a baseline binary and a candidate in one run, so that the ratios are measured
under the same machine load. Writes a markdown table (default bench/COMPARE.md).

    python3 bench/compare.py --baseline /tmp/baseline/cluster-node --candidate .build/release/cluster-node

The load generator (`clusterctl bench`, the candidate's build) is pinned to core 1 and the
node to core 0 where the machine has two cores or more.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the scenarios and the node launcher of the main benchmark)


def pinned(core: int, raise_file_limit):
    """A preexec_fn that pins a child process to one core, keeping run.py's file limit."""
    def apply():
        raise_file_limit()
        if os.cpu_count() and os.cpu_count() > 1:
            os.sched_setaffinity(0, {core})
    return apply


def measure(binary: Path, scenario: list, figure: str, duration: float, work: Path) -> tuple:
    run.NODE = binary
    original = run.raise_file_limit
    run.raise_file_limit = pinned(0, original)
    try:
        ours = run.Ours(work, 1)
    finally:
        run.raise_file_limit = original
    try:
        args = [*scenario, "--duration", str(duration), "--pub-url", ours.ws[0]]
        result = subprocess.run(["taskset", "-c", "1", str(run.CTL), "bench", "--json", *args],
                                capture_output=True, text=True, timeout=300)
        if result.returncode not in (0, 1):
            raise RuntimeError(result.stderr.strip())
        report = json.loads(result.stdout)
        value = report["latencyMicroseconds"].get("p99", 0) if figure == "p99" else report[figure]
        return value, report["ok"]
    finally:
        ours.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, type=Path)
    parser.add_argument("--candidate", default=run.NODE, type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4)
    parser.add_argument("--only", help="measure only the scenarios whose name contains this")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "COMPARE.md"))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        for name, (scenario, figure) in run.SCENARIOS.items():
            if args.only and args.only not in name:
                continue
            values = {"baseline": [], "candidate": []}
            clean = True
            for attempt in range(args.runs):
                for label in ("baseline", "candidate"):
                    binary = args.baseline if label == "baseline" else args.candidate
                    value, ok = measure(binary, scenario, figure, args.duration, Path(tmp) / f"{label}-{len(rows)}-{attempt}")
                    values[label].append(value)
                    clean = clean and ok
                    print(f"{name} [{label}] run {attempt + 1}: {value:,.0f}{'' if ok else ' (not clean)'}", flush=True)
            base, cand = statistics.median(values["baseline"]), statistics.median(values["candidate"])
            rows.append((name, base, cand, cand / base if base else float("nan"), clean))

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Baseline against candidate, same run",
        "",
        f"{datetime.date.today()}, {platform.node()}, {os.cpu_count()} cores, commit {commit}; "
        f"medians of {args.runs} alternating runs of {args.duration:g} s; node pinned to core 0, "
        "`clusterctl bench` to core 1; one node, STOMP 1.2 over WebSocket, 100-byte bodies.",
        f"Baseline `{args.baseline}`, candidate `{args.candidate}`. Written by `bench/compare.py`.",
        "",
        "Throughput in messages or deliveries per second (higher is better), latency in µs (lower is better).",
        "",
        "| scenario | baseline | candidate | candidate / baseline | every message exactly once, in order |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, base, cand, ratio, clean in rows:
        lines.append(f"| {name} | {base:,.0f} | {cand:,.0f} | {ratio:.2f} | {'yes' if clean else 'NO'} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
