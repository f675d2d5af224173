#!/usr/bin/env python
"""Benchmark the walk-forward backtest on the full embedded universe, offline.

Usage::

    .venv/bin/python benchmarks/backtest_benchmark.py              # the whole year, text + one JSON line
    .venv/bin/python benchmarks/backtest_benchmark.py --days 20    # a shorter window
    .venv/bin/python benchmarks/backtest_benchmark.py --jobs 1 --no-frozen --tracemalloc

It runs ``graph.backtest.run_backtest`` exactly as ``python -m graph.backtest --model none``
does (524 symbols, every tradable day, no model reachable: ``models=[]``, the agents answer
with their quantitative priors) in a temporary directory, with the learning graph and the
learning-off graph (side by side with ``--jobs 2``), the three rule baselines and the
reports, and measures:

- wall time and CPU time (this process plus its replay child), split into the graph
  replays, the baselines and the reports; symbol-days per second
  (symbols x decision days x graph replays / graph wall time);
- peak memory: the largest resident set of this process and of its children
  (``resource.getrusage``), and with ``--tracemalloc`` the Python heap peak of this process;
- the floor: the same SMA(20/50) and RSI(14) 30/70 rules as one vectorized pandas pass over
  the whole panel (signals, next-open positions, daily P&L and fee-based costs, no agent,
  no ledger, no checkpoint), timed as the median of 5 runs; the ratio says how many times
  slower the agent graph is per symbol-day than that floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `python benchmarks/backtest_benchmark.py`
    sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore", category=DeprecationWarning)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from graph.backtest import BacktestConfig, plan_days, run_backtest  # noqa: E402
from tools.market_data import load_dataset  # noqa: E402

TARGET_S = 60.0
TARGET_MEMORY_MB = 2048.0


def vectorized_floor(dataset, days: list[pd.Timestamp], fee_rate: float = 0.0025) -> dict:
    """SMA(20/50) and RSI(14) 30/70 on the whole panel at once: the cheapest honest version."""
    close = pd.DataFrame({s: b["close"] for s, b in dataset.bars.items()})
    opens = pd.DataFrame({s: b["open"] for s, b in dataset.bars.items()})
    sma20, sma50 = close.rolling(20).mean(), close.rolling(50).mean()
    delta = close.diff()
    up = delta.clip(lower=0).ewm(alpha=1 / 14, min_periods=14, adjust=False).mean()
    down = (-delta.clip(upper=0)).ewm(alpha=1 / 14, min_periods=14, adjust=False).mean()
    rsi = 100 - 100 / (1 + up / down)
    sma_pos = (sma20 > sma50).astype(float)
    rsi_pos = pd.DataFrame(np.where(rsi < 30, 1.0, np.where(rsi > 70, 0.0, np.nan)),
                           index=rsi.index, columns=rsi.columns).ffill().fillna(0.0)
    # decided at D's close, held from D+1's open: open-to-open returns, fees on changes
    open_ret = opens.shift(-2) / opens.shift(-1) - 1.0
    window = close.index.isin(days)
    out = {}
    for name, pos in (("sma_crossover", sma_pos), ("rsi_rule", rsi_pos)):
        pos = pos[window]
        weight = pos.div(pos.shape[1])
        pnl = (weight * open_ret[window]).sum(axis=1) - weight.diff().abs().sum(axis=1) * fee_rate
        out[name] = float((1 + pnl).prod() - 1)
    return out


def time_floor(dataset, days, repeats: int = 5) -> tuple[float, dict]:
    times, result = [], {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = vectorized_floor(dataset, days)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark the VOLT backtest on the full embedded universe (offline).")
    p.add_argument("--days", type=int, metavar="N", help="only the first N decision days (default: all)")
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="graph replay processes (default: 2)")
    p.add_argument("--no-frozen", action="store_true", help="skip the learning-off replay")
    p.add_argument("--tracemalloc", action="store_true", help="also trace the Python heap peak (slower)")
    p.add_argument("--keep", metavar="DIR", help="write the backtest here instead of a temporary directory")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for key in [k for k in os.environ if k.startswith("VOLT_")]:
        del os.environ[key]  # the defaults, whatever the shell has set
    t0 = time.perf_counter()
    dataset = load_dataset(None)
    load_s = time.perf_counter() - t0
    plan = plan_days(dataset, None, None, 50)
    days = plan.days[: args.days] if args.days else plan.days
    cfg = BacktestConfig(models=[], end=f"{days[-1]:%Y-%m-%d}", frozen_baseline=not args.no_frozen)
    if args.tracemalloc:
        tracemalloc.start()
    with tempfile.TemporaryDirectory(prefix="volt-backtest-bench-") as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "out"
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        summary = run_backtest(cfg, out, restart=True, jobs=args.jobs)
        wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
        disk_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    heap_peak = tracemalloc.get_traced_memory()[1] / 2**20 if args.tracemalloc else None
    if args.tracemalloc:
        tracemalloc.stop()
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    rss_mb, child_rss_mb = me.ru_maxrss / 1024, kids.ru_maxrss / 1024
    floor_s, floor_result = time_floor(dataset, days)
    symbols = summary["universe_size"]
    replays = len([s for s in summary["strategies"].values() if s["kind"] == "graph"])
    symbol_days = symbols * len(days)
    timing = summary["timing"]
    graph_s = timing["graph_s"]
    graph_rate = symbol_days * replays / graph_s
    floor_rate = symbol_days / floor_s
    report = {
        "benchmark": "volt_backtest",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(terse=True), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "days": len(days), "period": [summary["period"]["first_decision"], summary["period"]["last_decision"]],
        "symbols": symbols, "symbol_days": symbol_days, "graph_replays": replays, "jobs": args.jobs,
        "seconds": {"total_wall": round(wall, 2), "total_cpu": round(cpu, 2), "dataset_load": round(load_s, 2),
                    "graph_wall": round(graph_s, 2), "baselines": round(timing["baselines_s"], 2),
                    "reports_and_rest": round(wall - graph_s - timing["baselines_s"], 2),
                    "per_cycle_wall": round(graph_s / len(days) / (replays if args.jobs < 2 else 1), 4)},
        "symbol_days_per_s": {"graph": round(graph_rate, 1), "floor": round(floor_rate, 1)},
        "floor_s": round(floor_s, 4),
        "ratio_vs_floor": round(floor_rate / graph_rate, 1),
        "memory_mb": {"peak_rss": round(rss_mb, 1), "peak_rss_children": round(child_rss_mb, 1),
                      "python_heap_peak": round(heap_peak, 1) if heap_peak is not None else None,
                      "disk_written": round(disk_mb, 1)},
        "targets": {"total_wall_s": {"target": f"< {TARGET_S:g}", "pass": wall < TARGET_S},
                    "memory_mb": {"target": f"< {TARGET_MEMORY_MB:g}",
                                  "pass": max(rss_mb, child_rss_mb) < TARGET_MEMORY_MB}},
        "returns": {k: round(v["total_return"], 6) for k, v in summary["strategies"].items()},
        "floor_returns": {k: round(v, 6) for k, v in floor_result.items()},
    }
    if not args.json:
        s, m = report["seconds"], report["memory_mb"]
        print(f"VOLT backtest benchmark: {symbols} symbols x {len(days)} days "
              f"({report['period'][0]}..{report['period'][1]}), models=[] (priors only), "
              f"{replays} graph replay(s), jobs={args.jobs}")
        print(f"machine: {report['machine']['cpus']} CPUs, Python {report['machine']['python']}, "
              f"load average {report['machine']['load_avg_1m']} at the end")
        print(f"total wall {s['total_wall']:.1f} s (CPU {s['total_cpu']:.1f} s): graph replays {s['graph_wall']:.1f} s, "
              f"baselines {s['baselines']:.1f} s, reports and the rest {s['reports_and_rest']:.1f} s "
              f"[target < {TARGET_S:g} s: {'PASS' if report['targets']['total_wall_s']['pass'] else 'FAIL'}]")
        print(f"graph: {report['symbol_days_per_s']['graph']:,} symbol-days/s, {s['per_cycle_wall'] * 1000:.0f} ms "
              f"per cycle; floor (vectorized pandas SMA+RSI): {report['symbol_days_per_s']['floor']:,} symbol-days/s "
              f"({floor_s * 1000:.0f} ms); the graph is {report['ratio_vs_floor']:,}x the floor per symbol-day")
        print(f"memory: peak RSS {m['peak_rss']:.0f} MB (replay child {m['peak_rss_children']:.0f} MB)"
              + (f", Python heap peak {m['python_heap_peak']:.0f} MB" if m["python_heap_peak"] is not None else "")
              + f", {m['disk_written']:.0f} MB on disk [target < {TARGET_MEMORY_MB:g} MB: "
              f"{'PASS' if report['targets']['memory_mb']['pass'] else 'FAIL'}]")
        print("returns: " + ", ".join(f"{k} {v:+.2%}" for k, v in report["returns"].items()))
        print()
    print(json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
