#!/usr/bin/env python3
"""Two builds of our node side by side: the same scenarios as bench/run.py, alternating
between a baseline binary and a candidate in one run, so that the ratios are measured
under the same machine load. Writes a markdown table (default bench/COMPARE.md).

    python3 bench/compare.py --baseline /tmp/baseline/cluster-node --candidate .build/release/cluster-node
    python3 bench/compare.py --baseline /tmp/pre/cluster-node --baseline-label 'abc1234 (before)' \
        --candidate /tmp/cand/cluster-node --candidate-label def5678 --clusterctl /tmp/cand/clusterctl

The load generator (`clusterctl bench`, by default .build/release/clusterctl, else --clusterctl)
is pinned to core 1 and the node to core 0 where the machine has two cores or more (run.py's
`taskset` pinning), and each row also gives the node's CPU seconds per million deliveries, from
/proc. The labels name the builds in the header (a commit, say); the command is written there too.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the scenarios and the node launcher of the main benchmark)


def measure(binary: Path, scenario: list, figure: str, duration: float, work: Path) -> tuple:
    """One run against a node of `binary` started for it: (the figure, the node's CPU seconds per
    million deliveries or None, None when the run was correct and its generator not saturated,
    else what was wrong)."""
    run.NODE = binary
    ours = run.Ours(work, 1)
    try:
        before = run.cpu_seconds(ours.pids)
        report = run.bench([*scenario, "--duration", str(duration), "--pub-url", ours.ws[0]])
        outcome = run.Outcome(values=[report["latencyMicroseconds"].get("p99", 0) if figure == "p99" else report[figure]],
                              reports=[report], broker_cpu=[run.cpu_seconds(ours.pids) - before])
        wrong = [f"not correct: {outcome.problems()}"] if not outcome.ok else []
        if outcome.saturated:
            wrong.append(f"generator saturated ({outcome.generator_cpu():.0f}%)")
        return outcome.values[0], outcome.cpu_per_million()[0], "; ".join(wrong) or None
    finally:
        ours.stop()


def build(binary: Path, label: str | None) -> str:
    """A binary for the header, with its label (a commit, say) when it has one."""
    return f"{label} (`{binary}`)" if label else f"`{binary}`"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, type=Path)
    parser.add_argument("--candidate", default=run.NODE, type=Path)
    parser.add_argument("--baseline-label", help="what the baseline is, for the header (a commit, say)")
    parser.add_argument("--candidate-label", help="what the candidate is, for the header")
    parser.add_argument("--clusterctl", default=run.CTL, type=Path, help="the load generator (default .build/release/clusterctl)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4)
    parser.add_argument("--only", help="measure only the scenarios whose name contains this")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "COMPARE.md"))
    args = parser.parse_args()
    for binary in (args.baseline, args.candidate, args.clusterctl):
        if not binary.exists():
            sys.exit(f"{binary} is missing")
    run.CTL = args.clusterctl
    command = shlex.join(["python3", *sys.argv])

    revision = run.commit(exclude=Path(args.out))
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        for name, (scenario, figure) in run.SCENARIOS.items():
            if args.only and args.only not in name:
                continue
            values = {"baseline": [], "candidate": []}
            cpu = {"baseline": [], "candidate": []}
            clean = True
            for attempt in range(args.runs):
                for label in ("baseline", "candidate"):
                    binary = args.baseline if label == "baseline" else args.candidate
                    value, per_million, wrong = measure(binary, scenario, figure, args.duration,
                                                        Path(tmp) / f"{label}-{len(rows)}-{attempt}")
                    values[label].append(value)
                    if per_million is not None:
                        cpu[label].append(per_million)
                    clean = clean and wrong is None
                    print(f"{name} [{label}] run {attempt + 1}: {value:,.0f}{'' if wrong is None else f' ({wrong})'}", flush=True)
            base, cand = statistics.median(values["baseline"]), statistics.median(values["candidate"])
            cpu_text = {label: f"{statistics.median(v):.2f}" if v else "-" for label, v in cpu.items()}
            rows.append((name, base, cand, cand / base if base else float("nan"), cpu_text, clean, values))

    lines = [
        "# Baseline against candidate, same run",
        "",
        "<!-- generated by bench/compare.py, do not edit -->",
        f"Generated by `bench/compare.py`, do not edit. {datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.node()} "
        f"({run.machine()}), run from a tree at commit {revision}; "
        f"medians of {args.runs} alternating runs of {args.duration:g} s; node pinned to core 0, "
        "`clusterctl bench` to core 1; one node, STOMP 1.2 over WebSocket, 100-byte bodies. Load average (1, 5, 15 min) "
        f"{' '.join(f'{v:.2f}' for v in load_before)} at the start, {' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end.",
        f"Baseline {build(args.baseline, args.baseline_label)}, candidate {build(args.candidate, args.candidate_label)}; "
        f"load generator `{args.clusterctl}`.",
        "",
        f"Command: `{command}`",
        "",
        "Throughput in deliveries per second until the last delivery (higher is better), latency in µs (lower is "
        "better), the node's CPU seconds per million deliveries (lower is better).",
        "",
        "| scenario | baseline | candidate | candidate / baseline | CPU-s per million, baseline | CPU-s per million, candidate "
        "| every message exactly once, in order, generator not saturated |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, base, cand, ratio, cpu_text, clean, _ in rows:
        lines.append(f"| {name} | {base:,.0f} | {cand:,.0f} | {ratio:.2f} | {cpu_text['baseline']} | {cpu_text['candidate']} | "
                     f"{'yes' if clean else 'NO'} |")
    lines += ["", "Every run, in the order measured (baseline and candidate alternating):", ""]
    for name, *_, values in rows:
        lines.append(f"- {name}: baseline {', '.join(f'{v:,.0f}' for v in values['baseline'])}; "
                     f"candidate {', '.join(f'{v:,.0f}' for v in values['candidate'])}")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
