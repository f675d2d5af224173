#!/usr/bin/env python
"""Benchmark ``python -m graph.evaluate`` against the one-year backtest, same machine, same run.

Usage::

    .venv/bin/python benchmarks/evaluate_benchmark.py                  # 12 windows x 3 universes, jobs 2
    .venv/bin/python benchmarks/evaluate_benchmark.py --backtest-s 41  # reuse a known one-year figure

It first runs ``benchmarks/backtest_benchmark.py`` (the whole embedded year, 524 symbols, the
learning and learning-off replays side by side, priors only) in a subprocess and reads its
total wall time, then runs the evaluation with the CLI defaults (12 windows x 3 universes,
priors only) on the embedded year in a temporary directory and prints both, their ratio and
the target (evaluation <= 4 x the one-year backtest), then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `python benchmarks/evaluate_benchmark.py`
    sys.path.insert(0, str(ROOT))

TARGET_RATIO = 4.0


def backtest_seconds(jobs: int) -> float:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "backtest_benchmark.py"), "--json",
                           "--jobs", str(jobs)], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]["total_wall"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Benchmark graph.evaluate against the one-year backtest (offline).")
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="processes for both (default 2)")
    p.add_argument("--backtest-s", type=float, metavar="S", help="one-year backtest wall time (skip running it)")
    p.add_argument("--keep", metavar="DIR", help="write the evaluation here instead of a temporary directory")
    p.add_argument("eval_args", nargs="*", help="extra graph.evaluate arguments (after --)")
    args = p.parse_args(argv)
    for key in [k for k in os.environ if k.startswith("VOLT_")]:
        del os.environ[key]  # the defaults, whatever the shell has set
    year_s = args.backtest_s if args.backtest_s is not None else backtest_seconds(args.jobs)
    from graph.evaluate.__main__ import config_from_args, parse_args
    from graph.evaluate.runner import run_evaluation

    with tempfile.TemporaryDirectory(prefix="volt-evaluate-bench-") as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "out"
        eargs = parse_args(["--out", str(out), "--jobs", str(args.jobs), *args.eval_args])
        t0 = time.perf_counter()
        summary = run_evaluation(config_from_args(eargs), out, jobs=args.jobs)
        eval_s = time.perf_counter() - t0
    ratio = eval_s / year_s
    e = summary["on_minus_off"]
    report = {"benchmark": "volt_evaluate", "cpus": os.cpu_count(), "jobs": args.jobs,
              "load_avg_1m": round(os.getloadavg()[0], 2),
              "cells": summary["cells"], "window_days": summary["config"]["window_days"],
              "universe_size": summary["config"]["universe_size"],
              "graph_replays": summary["cells"] * sum(a["kind"] == "graph" for a in summary["arms"].values()),
              "seconds": {"evaluate_wall": round(eval_s, 2), "one_year_backtest_wall": round(year_s, 2)},
              "ratio": round(ratio, 2), "target": {"ratio": f"<= {TARGET_RATIO:g}", "pass": ratio <= TARGET_RATIO},
              "on_minus_off": {k: e[k] for k in ("mean_daily", "ci_low", "ci_high")} if e else None}
    print(f"graph.evaluate: {summary['cells']} cells ({summary['windows']} windows x {summary['universes']} "
          f"universes, {report['window_days']} days, {report['universe_size']} symbols), "
          f"{report['graph_replays']} graph replays, jobs={args.jobs}: {eval_s:.1f} s wall")
    print(f"one-year backtest (524 symbols, both replays): {year_s:.1f} s wall; ratio {ratio:.2f}x "
          f"[target <= {TARGET_RATIO:g}x: {'PASS' if report['target']['pass'] else 'FAIL'}]")
    print(json.dumps(report, separators=(",", ":"), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
