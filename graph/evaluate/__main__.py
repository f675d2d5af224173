"""``python -m graph.evaluate``: learning ON vs OFF vs rule baselines over many windows and
universes of any CSV, with intervals, placebos and a deflated Sharpe (see ``runner``).

Exit codes: 0 done, 2 bad arguments or an operational error (one line), 130 interrupted
(continue with ``--resume``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from graph.backtest import run_cli_job
from graph.evaluate.runner import EvalConfig, run_evaluation


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints the usage too)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="python -m graph.evaluate",
                description="Walk-forward evaluation over many windows and universes: learning ON vs OFF vs "
                            "rule baselines, with block-bootstrap intervals, start-offset placebos and a "
                            "deflated Sharpe (paper, offline data, priors only).")
    p.add_argument("--windows", type=int, default=12, metavar="N", help="rolling windows (default 12)")
    p.add_argument("--window-days", type=int, default=30, metavar="D",
                   help="decision days per window (default 30; must exceed VOLT_HORIZON_DAYS for learning to act)")
    p.add_argument("--stride", type=int, metavar="D",
                   help="days between window starts (default: spread, at most half a window)")
    p.add_argument("--universes", type=int, default=3, metavar="N", help="universes (default 3)")
    p.add_argument("--universe-size", type=int, default=50, metavar="N",
                   help="symbols per universe, seeded random draw (0: all symbols; default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of the universe draws and the bootstrap (default 0)")
    p.add_argument("--top-k", type=int, metavar="K", help="candidates per cycle (default: VOLT_TOP_K or 5)")
    p.add_argument("--data-csv", metavar="PATH", help="own OHLCV CSV (default: the embedded year)")
    p.add_argument("--arms", metavar="A,B", help="arms to run (default: on,off and the three rule baselines; "
                   "ablations: no_weights, no_memory, no_improver, no_gate)")
    p.add_argument("--out", metavar="DIR", default="evaluate-out", help="output directory (default ./evaluate-out)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="worker processes (default: the number of cores)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run the replays as Ray tasks (extra `ray`): alone, a local Ray with --jobs CPUs; with an "
                   "ADDRESS (ray://head:10001, head:6379, auto), that cluster; the same results as the pool")
    p.add_argument("--resume", action="store_true", help="continue the evaluation in --out (same arguments)")
    p.add_argument("--json", action="store_true", help="print summary.json instead of the text")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name, low in (("windows", 1), ("window_days", 2), ("universes", 1), ("universe_size", 0), ("jobs", 1),
                      ("stride", 1), ("top_k", 1)):
        value = getattr(args, name)
        if value is not None and value < low:
            p.error(f"--{name.replace('_', '-')} must be at least {low} (got {value})")
    return args


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    extra = {"arms": [a.strip() for a in args.arms.split(",") if a.strip()]} if args.arms is not None else {}
    return EvalConfig(windows=args.windows, window_days=args.window_days, stride=args.stride,
                      universes=args.universes, universe_size=args.universe_size, seed=args.seed,
                      data_csv=str(Path(args.data_csv).expanduser().resolve()) if args.data_csv else None,
                      top_k=args.top_k, **extra)


class _Progress:
    """One rich bar over every (cell, arm) replay."""

    def __init__(self, enabled: bool):
        self.enabled, self.progress, self.task = enabled, None, None

    def plan(self, total: int, done: int) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[last]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=Console(stderr=True))
        self.progress.start()
        self.task = self.progress.add_task("replays", total=total, completed=done, last="")

    def step(self, cell: str, arm: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, last=f"{cell} {arm}")

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    out = Path(args.out).expanduser()
    bar = _Progress(enabled=not args.no_progress and not args.json)

    def job() -> dict:
        cfg = config_from_args(args)
        cfg.arm_list()  # unknown arms: one line before anything runs
        return run_evaluation(cfg, out, resume=args.resume, jobs=args.jobs, on_plan=bar.plan, on_task=bar.step,
                              ray=args.ray)

    summary, code = run_cli_job(job, bar.stop, interrupted="finished cells are kept; continue with the same "
                                f"arguments and --resume (--out {out})")
    if summary is None:
        return code
    from graph.evaluate.report import render_text

    print(json.dumps(summary, indent=2, default=str) if args.json else render_text(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
