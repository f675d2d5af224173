"""``python -m graph.backtest``: walk-forward evaluation of the agent graph against baselines.

The backtest drives the very graph ``python -m graph.run`` runs (``graph.run.run_cycle``),
one cycle per trading day, on its own VOLT home under ``--out`` (portfolio ``backtest``),
so the user's live portfolio is never touched:

- walk-forward: the cycle of day D sees bars up to D only (``prepare_cycle``); its orders
  fill at each symbol's next open with the broker's fee and slippage; the learning loop
  updates after every cycle exactly as it does live;
- the same days are replayed by the graph with learning switched off (frozen equal
  weights) and by three rule baselines on the same data and costs
  (:mod:`tools.baselines`); :mod:`tools.metrics` scores them all;
- every cycle is checkpointed (``SqliteSaver``): Ctrl-C or a crash leaves a run that
  ``--resume`` continues, finishing an interrupted cycle first;
- model answers are cached (:mod:`memory.response_cache`) so a re-run with the same inputs
  makes no model call and gives the same result (``--no-cache`` turns that off).

Outputs in ``--out``: ``summary.json``, ``report.html``, ``equity.png``
(:mod:`graph.backtest_report`). Exit codes: 0 done, 2 operational error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from graph.context import ChatModelFactory
from graph.errors import OperationalError
from graph.settings import VoltSettings
from memory.ledger import Ledger
from memory.response_cache import CacheStats, cache_target, open_store
from memory.run_lock import portfolio_lock
from tools.market import DataOptions
from tools.market_data import MarketDataset, load_dataset

PORTFOLIO = "backtest"
MANIFEST = "backtest.json"
DAYS_DB = "backtest.db"
CACHE_FILE = "llm_cache.sqlite"
STATE_PREFIX = "runs-"
# the agent graph as configured (learning on when this build has it), then with learning off
RUNS = {"agents": True, "agents_frozen": False}
RUN_LABELS = {"agents": "Agent graph (learning)", "agents_frozen": "Agent graph, learning off"}

DAYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS days (
    run TEXT NOT NULL,
    as_of TEXT NOT NULL,
    equity REAL NOT NULL,
    cash REAL NOT NULL,
    exposure REAL,
    candidates INTEGER,
    fills INTEGER,
    llm_invocations INTEGER,   -- model invocations the agents made (cache hits included)
    model_calls INTEGER,       -- invocations that reached a model (not answered by the cache)
    cache_hits INTEGER,
    input_tokens INTEGER,
    output_tokens INTEGER,
    tokens_known INTEGER,
    agent_results INTEGER,     -- agent answers this cycle (model or prior)
    degraded INTEGER,          -- of which the quantitative prior (no model answered)
    weights TEXT,              -- JSON: consensus vote weights used this cycle
    resumed INTEGER NOT NULL DEFAULT 0,
    seconds REAL,
    PRIMARY KEY (run, as_of)
)
"""


class BacktestError(OperationalError):
    """A backtest that cannot start or continue (one line for the user, exit code 2)."""


@dataclass
class BacktestConfig:
    """What defines a backtest (stored in ``--out/backtest.json`` for ``--resume``)."""

    start: str | None = None
    end: str | None = None
    symbols: list[str] = field(default_factory=list)
    data_csv: str | None = None
    models: list[str] | None = None  # None: VOLT_MODELS / the default chain; []: priors only
    top_k: int | None = None
    risk_free: float = 0.0
    cache: bool = True
    cache_path: str | None = None  # default: <out>/llm_cache.sqlite
    frozen_baseline: bool = True  # also replay the graph with learning off
    # VoltSettings fields applied last (graph.evaluate's arms, e.g. {"learning": False})
    settings_overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> BacktestConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class DayPlan:
    days: list[pd.Timestamp]
    notes: list[str]


def plan_days(dataset: MarketDataset, start: str | None, end: str | None, min_history: int) -> DayPlan:
    """Decision days in ``[start, end]``: each needs ``min_history`` bars and a next bar to fill on."""
    cal = dataset.calendar
    notes: list[str] = []
    if len(cal) < 2 or min_history > len(cal) - 1:
        raise BacktestError(f"{dataset.source}: not enough trading days ({len(cal)}) for {min_history} bars of history")
    first, last = cal[min_history - 1], cal[-2]
    try:
        lo = pd.Timestamp(start).normalize() if start else first
        hi = pd.Timestamp(end).normalize() if end else last
    except (ValueError, TypeError):
        raise BacktestError(f"--start/--end must be dates (YYYY-MM-DD), got {start!r}, {end!r}") from None
    if start and lo < first:
        notes.append(f"--start {lo:%Y-%m-%d} is before the first tradable day: the indicators need "
                     f"{min_history} bars of history, so the replay starts {first:%Y-%m-%d}")
    if end and hi > last:
        notes.append(f"--end {hi:%Y-%m-%d}: the last decision day is {last:%Y-%m-%d} "
                     f"(its orders fill at the {cal[-1]:%Y-%m-%d} open, the last bar of the data)")
    days = [d for d in cal if max(lo, first) <= d <= min(hi, last)]
    if not days:
        raise BacktestError(f"no tradable day between {lo:%Y-%m-%d} and {hi:%Y-%m-%d} "
                            f"(tradable: {first:%Y-%m-%d}..{last:%Y-%m-%d})")
    return DayPlan(days, notes)


# --------------------------------------------------------------------------- day records


class DayStore:
    """Per-day results of each graph run (``--out/backtest.db``), one short connection per call."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with self._connect() as conn:
            conn.execute(DAYS_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=30)
        conn.row_factory = sqlite3.Row
        return conn

    def record(self, row: dict) -> None:
        cols = list(row)
        with self._connect() as conn:
            conn.execute(f"INSERT OR REPLACE INTO days({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                         [json.dumps(v) if isinstance(v, dict) else v for v in row.values()])

    def days(self, run: str) -> list[dict]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM days WHERE run=? ORDER BY as_of", (run,)).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["weights"] = json.loads(d["weights"]) if d.get("weights") else {}
            out.append(d)
        return out

    def recorded(self, run: str) -> set[str]:
        with self._connect() as conn:
            return {r[0] for r in conn.execute("SELECT as_of FROM days WHERE run=?", (run,))}


def day_row(run: str, state: dict, *, resumed: bool, seconds: float | None, cache: CacheStats | None) -> dict:
    """What a finished cycle contributes to the report."""
    decisions = state.get("decisions") or []
    after = state.get("portfolio_after") or {}
    results = [v for d in decisions for v in d.values()
               if isinstance(v, dict) and v.get("source") in ("model", "prior")]
    invocations = sum(int(d.get("llm_calls") or 0) for d in decisions)
    invocations += int((state.get("learning") or {}).get("llm_calls") or 0)
    row = {
        "run": run, "as_of": state["as_of"], "equity": float(after.get("equity", 0.0)),
        "cash": float(after.get("cash", 0.0)), "exposure": after.get("exposure_pct"),
        "candidates": len(state.get("candidates") or []), "fills": len(state.get("fills") or []),
        "llm_invocations": invocations, "agent_results": len(results),
        "degraded": sum(1 for r in results if r.get("degraded")),
        "weights": dict(state.get("weights") or {}), "resumed": int(resumed), "seconds": seconds,
    }
    if cache is not None:
        row.update(model_calls=cache.misses, cache_hits=cache.hits, input_tokens=cache.input_tokens,
                   output_tokens=cache.output_tokens, tokens_known=cache.tokens_known)
    else:
        row.update(model_calls=invocations, cache_hits=0)
    return row


# --------------------------------------------------------------------------- one graph run


def run_settings(cfg: BacktestConfig, out: Path, run: str, state: str) -> VoltSettings:
    """Settings of one graph run: its own VOLT home ``out/<state>/<run>``, portfolio ``backtest``.

    ``state`` is a directory name unique to each backtest started in ``out`` (a restarted
    backtest never reuses the paths of the one it replaces)."""
    overrides: dict[str, Any] = {"home": out / state / run, "portfolio": PORTFOLIO, "data_csv": cfg.data_csv,
                                 "watchlist": list(cfg.symbols)}
    if cfg.models is not None:
        overrides["models"] = list(cfg.models)
    if cfg.top_k is not None:
        overrides["top_k"] = cfg.top_k
    if "learning" in VoltSettings.model_fields:
        overrides["learning"] = RUNS[run]
    if "source" in VoltSettings.model_fields:
        overrides["source"] = "replay"  # a backtest replays data: never VOLT_SOURCE's live feed
    if "llm_cache" in VoltSettings.model_fields:  # --no-cache wins over VOLT_LLM_CACHE
        overrides["llm_cache"] = (Path(cfg.cache_path) if cfg.cache_path else out / CACHE_FILE) if cfg.cache else None
    overrides.update(cfg.settings_overrides or {})
    settings = VoltSettings(**overrides)
    if settings.database_url and "portfolio" not in (cfg.settings_overrides or {}):
        # one database shared by every run (VOLT_DATABASE_URL): each run is its own portfolio there
        settings = settings.model_copy(update={"portfolio": f"{PORTFOLIO}-{state.removeprefix(STATE_PREFIX)}-{run}"})
    return settings


ProgressFn = Callable[[str, int, int, str, float], None]


def _checkpointed_state(settings: VoltSettings) -> dict | None:
    """The latest checkpointed cycle state of the backtest thread (for a day not recorded)."""
    from graph.run import cycle_graph, open_checkpointer, thread_config

    if not settings.checkpoint_path.exists():
        return None
    saver = open_checkpointer(settings)
    try:
        snap = cycle_graph.copy(update={"checkpointer": saver}).get_state(thread_config(settings.portfolio))
        return dict(snap.values) if snap and snap.values else None
    finally:
        saver.conn.close()


def _backfill(run: str, settings: VoltSettings, store: DayStore) -> None:
    """Record days the ledger completed but the day table missed (a kill between the two)."""
    from memory.db import open_db

    recorded = store.recorded(run)
    with open_db(settings.ledger_path) as conn:
        done = [dict(r) for r in conn.execute("SELECT as_of, equity, cash FROM cycles WHERE portfolio=? ORDER BY as_of",
                                              (settings.portfolio,))]
    missing = [c for c in done if c["as_of"] not in recorded]
    if not missing:
        return
    state = _checkpointed_state(settings)
    for c in missing:
        if state and state.get("as_of") == c["as_of"] and state.get("portfolio_after"):
            store.record(day_row(run, state, resumed=True, seconds=None, cache=None) | {"model_calls": None})
        else:
            store.record({"run": run, "as_of": c["as_of"], "equity": c["equity"], "cash": c["cash"], "resumed": 1})


def run_graph(cfg: BacktestConfig, out: Path, run: str, state_dir: str, days: list[pd.Timestamp], *,
              chat_model_factory: ChatModelFactory | None = None, on_day: ProgressFn | None = None) -> None:
    """Replay ``days`` through ``graph.run.run_cycle`` for one run, resuming where it stopped."""
    from graph.run import run_cycle

    settings = run_settings(cfg, out, run, state_dir)
    settings.home.mkdir(parents=True, exist_ok=True)
    store = DayStore(out / DAYS_DB)
    ledger = Ledger(settings.ledger_path)
    cache = open_store(cache_target(settings)) if getattr(settings, "llm_cache", None) else None
    wanted = [f"{d:%Y-%m-%d}" for d in days]
    with portfolio_lock(settings.home, settings.portfolio, settings.ledger_path):
        ledger.ensure_portfolio(settings.portfolio, settings.starting_cash)
        # Idle connections held for the whole replay: SQLite then keeps its WAL files instead
        # of checkpointing and deleting them each time a cycle closes its last connection.
        keep = [sqlite3.connect(str(p)) for p in (settings.ledger_path, settings.checkpoint_path) if isinstance(p, Path)]
        try:
            _backfill(run, settings, store)
            # at most one resumed cycle plus one cycle per day; more means no progress
            for _attempt in range(len(wanted) + 2):
                last = ledger.last_completed_cycle(settings.portfolio)
                later = [d for d in wanted if last is None or d > last["as_of"]]
                if not later:
                    break
                before = cache.snapshot() if cache else None
                t0 = time.perf_counter()
                # A cycle interrupted earlier is resumed (and finished) first, whatever as_of says.
                result = run_cycle(settings, as_of=later[0], chat_model_factory=chat_model_factory)
                seconds = time.perf_counter() - t0
                delta = cache.snapshot().minus(before) if cache else None
                state = result.state
                if state.get("portfolio_after"):
                    store.record(day_row(run, state, resumed=result.resumed, seconds=seconds, cache=delta))
                if on_day is not None:
                    done = sum(1 for d in wanted if d <= state["as_of"])
                    on_day(run, done, len(wanted), state["as_of"],
                           float((state.get("portfolio_after") or {}).get("equity", float("nan"))))
            else:
                raise BacktestError(f"{run}: the replay stopped advancing at {later[0]} (no cycle completed)")
        finally:
            for conn in keep:
                conn.close()


# --------------------------------------------------------------------------- parallel replays


def _replay_worker(cfg_data: dict, out: str, run: str, state_dir: str, days: list[str], queue,
                   parent: int | None = None) -> None:
    """Child process: one replay, reporting each day (and how it ended) on ``queue``. It exits
    within a fraction of a second when the parent dies (graph.daemon.die_with_parent)."""
    from graph.daemon import die_with_parent

    die_with_parent(parent)
    try:
        run_graph(BacktestConfig.from_dict(cfg_data), Path(out), run, state_dir, [pd.Timestamp(d) for d in days],
                  on_day=lambda *day: queue.put(("day", *day)))
        queue.put(("done", run, ""))
    except KeyboardInterrupt:
        queue.put(("interrupted", run, ""))
    except BaseException as exc:  # reported to the parent, which fails the backtest with it
        queue.put(("error", run, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))


def _run_in_parallel(cfg: BacktestConfig, out: Path, runs: list[str], state_dir: str,
                     days: list[pd.Timestamp], progress: ProgressFn) -> None:
    """``runs[0]`` here, the others in spawned processes (each its own VOLT home and lock)."""
    import multiprocessing
    import queue as queue_module
    import threading

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked threads or locks
    messages = ctx.Queue()
    day_strings = [f"{d:%Y-%m-%d}" for d in days]
    children = [ctx.Process(target=_replay_worker, name=f"volt-backtest-{run}",
                            args=(asdict(cfg), str(out), run, state_dir, day_strings, messages, os.getpid()))
                for run in runs[1:]]
    endings: dict[str, tuple[str, str]] = {}
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set() or not messages.empty():
            try:
                kind, *rest = messages.get(timeout=0.2)
            except queue_module.Empty:
                continue
            if kind == "day":
                progress(*rest)
            else:
                endings[rest[0]] = (kind, rest[1])

    listener = threading.Thread(target=listen, name="volt-backtest-progress", daemon=True)
    for child in children:
        child.start()
    listener.start()
    try:
        run_graph(cfg, out, runs[0], state_dir, days, on_day=progress)
        for child in children:
            child.join()
    except BaseException:
        for child in children:  # Ctrl-C reached them too; give them time to stop cleanly
            child.join(timeout=30)
            if child.is_alive():
                child.terminate()
                child.join()
        raise
    finally:
        stop.set()
        listener.join(timeout=5)
    for run, child in zip(runs[1:], children, strict=True):
        kind, detail = endings.get(run, ("error", f"exit code {child.exitcode}"))
        if kind == "interrupted":
            raise KeyboardInterrupt
        if kind != "done":
            raise BacktestError(f"the {RUN_LABELS[run].lower()} replay failed: {detail}")


# --------------------------------------------------------------------------- the whole backtest


def _manifest(out: Path) -> dict | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BacktestError(f"{path}: unreadable ({exc})") from None


def _write_manifest(out: Path, data: dict) -> None:
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(out / MANIFEST)


def _clear_run_state(out: Path) -> None:
    """Remove a previous backtest's state in ``out`` (never the response cache)."""
    for old in out.glob(STATE_PREFIX + "*"):
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    for name in (DAYS_DB, DAYS_DB + "-wal", DAYS_DB + "-shm", MANIFEST):
        (out / name).unlink(missing_ok=True)


def prepare_out(out: Path, cfg: BacktestConfig | None, *, resume: bool, restart: bool) -> tuple[BacktestConfig, str, bool]:
    """The config to run, its state directory name, and whether it continues a run in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(out)
    if resume:
        if manifest is None or not manifest.get("state"):
            raise BacktestError(f"nothing to resume in {out} (no {MANIFEST}); start a backtest without --resume")
        return BacktestConfig.from_dict(manifest["config"]), manifest["state"], True
    if manifest is not None and manifest.get("status") != "complete" and not restart:
        raise BacktestError(f"{out} holds an unfinished backtest (last day {manifest.get('last_day') or 'none'}); "
                            "continue it with --resume, or discard it with --restart")
    _clear_run_state(out)
    for name in (DAYS_DB, DAYS_DB + "-wal", DAYS_DB + "-shm", MANIFEST):
        (out / name).unlink(missing_ok=True)
    assert cfg is not None
    # A fresh directory name per backtest: in-process clients (Chroma's) cached by path
    # never see a replaced backtest's deleted files.
    return cfg, f"{STATE_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}", False


def run_backtest(cfg: BacktestConfig | None, out: Path, *, resume: bool = False, restart: bool = False,
                 chat_model_factory: ChatModelFactory | None = None, on_day: ProgressFn | None = None,
                 on_plan: Callable[[DayPlan, list[str]], None] | None = None, reports: bool = True,
                 jobs: int = 1) -> dict:
    """Run (or continue) a backtest into ``out`` and write its reports (unless ``reports``
    is False: the summary is still returned). Returns the summary.

    ``jobs`` > 1 replays the learning-off graph in a second process while this one replays
    the learning graph (the two are independent); models then come from the settings,
    so a ``chat_model_factory`` (tests) always runs the replays one after the other."""
    from graph.backtest_report import build_summary, write_reports
    from tools.baselines import CostModel, run_baselines

    out = Path(out)
    cfg, state_dir, resumed = prepare_out(out, cfg, resume=resume, restart=restart)
    started = time.perf_counter()
    base = run_settings(cfg, out, "agents", state_dir)
    dataset = load_dataset(cfg.data_csv, DataOptions.from_settings(base))  # the nodes' data set (same cache key)
    plan = plan_days(dataset, cfg.start, cfg.end, base.min_history)
    runs = [r for r in RUNS if r == "agents" or cfg.frozen_baseline]
    if "learning" not in VoltSettings.model_fields and "agents_frozen" in runs:
        plan.notes.append("this build has no learning setting: the graph runs with frozen equal weights, "
                          "so the learning-off replay is the same run and is not repeated")
        runs = ["agents"]
    manifest = {"config": asdict(cfg), "state": state_dir, "status": "running", "first_day": f"{plan.days[0]:%Y-%m-%d}",
                "last_day": None, "planned_last_day": f"{plan.days[-1]:%Y-%m-%d}", "runs": runs,
                "notes": plan.notes}
    _write_manifest(out, manifest)
    if on_plan is not None:
        on_plan(plan, runs)

    def progress(run: str, done: int, total: int, as_of: str, equity: float) -> None:
        if run == "agents":
            manifest["last_day"] = as_of
            _write_manifest(out, manifest)
        if on_day is not None:
            on_day(run, done, total, as_of, equity)

    if jobs > 1 and len(runs) > 1 and chat_model_factory is None:
        _run_in_parallel(cfg, out, runs, state_dir, plan.days, progress)
    else:
        for run in runs:
            run_graph(cfg, out, run, state_dir, plan.days, chat_model_factory=chat_model_factory, on_day=progress)
    graph_seconds = time.perf_counter() - started

    t0 = time.perf_counter()
    universe = list(cfg.symbols) or dataset.symbols
    baselines = run_baselines(dataset, plan.days, universe, CostModel.from_settings(base))
    baseline_seconds = time.perf_counter() - t0

    summary = build_summary(cfg=cfg, out=out, state_dir=state_dir, dataset=dataset, plan=plan, runs=runs, baselines=baselines,
                            resumed=resumed, timing={"graph_s": graph_seconds, "baselines_s": baseline_seconds})
    if reports:
        write_reports(out, summary)
    manifest["status"] = "complete"
    _write_manifest(out, manifest)
    return summary


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m graph.backtest",
        description="Walk-forward backtest of the VOLT agent graph against baselines (paper, offline data).")
    p.add_argument("--start", metavar="YYYY-MM-DD", help="first decision day (clamped to the first tradable day)")
    p.add_argument("--end", metavar="YYYY-MM-DD", help="last decision day (clamped to the last day with a next bar)")
    p.add_argument("--symbols", metavar="A,B", help="watchlist (default: every symbol of the data)")
    p.add_argument("--data-csv", metavar="PATH", help="own OHLCV CSV (Date,Symbol,Open,High,Low,Close,Volume)")
    p.add_argument("--model", "--models", dest="model", metavar="A,B",
                   help="model chain, in order (default: VOLT_MODELS); 'none' for quantitative priors only")
    p.add_argument("--top-k", type=int, metavar="K", help="candidates per cycle (default: VOLT_TOP_K or 5)")
    p.add_argument("--out", metavar="DIR", default="backtest-out",
                   help="output and state directory (default: ./backtest-out)")
    p.add_argument("--risk-free", type=float, default=0.0, metavar="RATE",
                   help="annual risk-free rate for Sharpe/Sortino, e.g. 0.02 (default: 0)")
    p.add_argument("--no-cache", action="store_true", help="do not cache model answers (every call goes to the model)")
    p.add_argument("--cache", metavar="PATH", help="response cache file (default: DIR/llm_cache.sqlite)")
    p.add_argument("--no-frozen", action="store_true", help="skip the learning-off replay of the graph")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), metavar="N",
                   help="processes for the two graph replays: 2 runs them side by side (default: 2 on 2+ cores)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted backtest in --out")
    p.add_argument("--restart", action="store_true", help="discard an unfinished backtest in --out and start over")
    p.add_argument("--json", action="store_true", help="print summary.json instead of the table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> BacktestConfig:
    models = None
    if args.model is not None:
        models = [] if args.model.strip().lower() in ("", "none", "prior", "priors") else [
            m.strip() for m in args.model.split(",") if m.strip()]
    return BacktestConfig(
        start=args.start, end=args.end,
        symbols=[s.strip().upper() for s in (args.symbols or "").split(",") if s.strip()],
        data_csv=str(Path(args.data_csv).expanduser().resolve()) if args.data_csv else None,
        models=models, top_k=args.top_k, risk_free=args.risk_free, cache=not args.no_cache,
        cache_path=str(Path(args.cache).expanduser().resolve()) if args.cache else None,
        frozen_baseline=not args.no_frozen,
    )


class _Progress:
    """A rich progress bar per graph run: day, equity and ETA."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.progress = None
        self.tasks: dict[str, Any] = {}

    def plan(self, plan: DayPlan, runs: list[str]) -> None:
        from rich.console import Console

        console = Console(stderr=True)
        for note in plan.notes:
            console.print(f"[yellow]note:[/yellow] {note}")
        if not self.enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("day {task.fields[day]}"), TextColumn("equity {task.fields[equity]:>10}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False)
        self.progress.start()
        for run in runs:
            self.tasks[run] = self.progress.add_task(RUN_LABELS[run], total=len(plan.days), day="-", equity="-")

    def day(self, run: str, done: int, total: int, as_of: str, equity: float) -> None:
        if self.progress is not None and run in self.tasks:
            self.progress.update(self.tasks[run], completed=done, day=as_of, equity=f"{equity:,.2f}")

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def run_cli_job(job: Callable[[], dict], stop: Callable[[], None], *, interrupted: str) -> tuple[dict | None, int]:
    """Run a long CLI job (a backtest, an evaluation) and map its failures to exit codes:
    ``(summary, 0)``, or ``(None, 130)`` on Ctrl-C with the ``interrupted`` line, or
    ``(None, 2)`` with one ``error:`` line. ``stop`` ends the progress bar either way."""
    try:
        summary = job()
    except KeyboardInterrupt:
        stop()
        print(f"\ninterrupted: {interrupted}", file=sys.stderr)
        return None, 130
    except OperationalError as exc:
        stop()
        print(f"error: {exc}", file=sys.stderr)
        return None, 2
    except ValueError as exc:  # invalid settings (pydantic) name the field
        stop()
        print(f"error: invalid configuration: {str(exc).splitlines()[0]}", file=sys.stderr)
        return None, 2
    stop()
    return summary, 0


def main(argv: list[str] | None = None, *, chat_model_factory: ChatModelFactory | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out).expanduser()
    bar = _Progress(enabled=not args.no_progress and not args.json)

    def job() -> dict:
        cfg = None if args.resume else config_from_args(args)
        if cfg is not None:
            load_dataset(cfg.data_csv)  # an unreadable CSV fails here, before anything runs
        return run_backtest(cfg, out, resume=args.resume, restart=args.restart,
                            chat_model_factory=chat_model_factory, on_day=bar.day, on_plan=bar.plan,
                            jobs=args.jobs)

    summary, code = run_cli_job(job, bar.stop, interrupted=f"the backtest in {out} is checkpointed; continue "
                                f"it with python -m graph.backtest --out {out} --resume")
    if summary is None:
        return code
    from graph.backtest_report import render_text

    print(json.dumps(summary, indent=2, default=str) if args.json else render_text(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
