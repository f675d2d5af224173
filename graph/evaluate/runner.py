"""Run the arms of ``graph.evaluate`` over every (window, universe) cell.

Each graph arm of a cell is one replay by the backtest engine (``graph.backtest.run_graph``,
the very code ``python -m graph.backtest`` runs) on its own VOLT home under
``out/cells/<cell>/<arm>``, priors only (``models=[]``, no model call, no response cache),
with the arm's settings overrides applied last. Rule baselines (:mod:`tools.baselines`) run in
this process on the same days, symbols and costs. Arms run in a process pool (``jobs``
processes, spawned: fresh interpreters), each worker reused for many arms, or as Ray tasks
(``ray``; :mod:`graph.evaluate.executors`).

Resumable: an arm that finished wrote ``arm.json``; a cell whose arms all finished wrote
``summary.json`` and is skipped. A half-finished arm starts over (its replay is
deterministic, so redoing it gives the same numbers).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from graph.evaluate.executors import run_tasks
from graph.evaluate.windows import EvaluateError, Universe, Window, draw_universes, rolling_windows
from memory.db import DatabaseURL, open_db

MANIFEST = "evaluate.json"


@dataclass(frozen=True)
class Arm:
    """A variant evaluated: a graph replay with VoltSettings overrides, or a rule baseline.
    A per-component ablation is one more line, e.g. ``Arm("no_gate", "...", "graph",
    {"learn_gate": False})``."""

    name: str
    label: str
    kind: str  # "graph" or "baseline"
    overrides: dict[str, Any] = field(default_factory=dict)


ARMS: list[Arm] = [
    Arm("on", "Agent graph, learning ON", "graph", {}),
    Arm("off", "Agent graph, learning OFF", "graph", {"learning": False}),
    Arm("buy_and_hold", "Buy and hold (equal weight)", "baseline"),
    Arm("sma_crossover", "SMA 20/50 crossover", "baseline"),
    Arm("rsi_rule", "RSI(14) 30/70", "baseline"),
]
# per-component ablations (graph.settings' learn_* switches): on request with --arms, not by default
ABLATIONS: list[Arm] = [
    Arm(f"no_{part}", f"Learning ON without {part}", "graph", {f"learn_{part}": False})
    for part in ("weights", "memory", "improver", "gate")
]
# learning ON plus the RL controller, its policy trained on earlier windows only (graph/evaluate/rl_arm.py);
# opt-in (--arms on,rl): it needs the on arm's replays
RL_ARM = Arm("rl", "Learning ON + RL controller", "graph", {"rl_controller": True})


@dataclass
class EvalConfig:
    """What defines an evaluation (stored in ``out/evaluate.json``; ``--resume`` needs it equal)."""

    windows: int = 12
    window_days: int = 30
    stride: int | None = None
    universes: int = 3
    universe_size: int = 50
    seed: int = 0
    data_csv: str | None = None
    top_k: int | None = None
    arms: list[str] = field(default_factory=lambda: [a.name for a in ARMS])

    def arm_list(self) -> list[Arm]:
        known = {a.name: a for a in (*ARMS, *ABLATIONS, RL_ARM)}
        if RL_ARM.name in self.arms and "on" not in self.arms:
            raise EvaluateError("arm rl trains on the on arm's replays of earlier windows: add on (--arms on,rl)")
        unknown = [a for a in self.arms if a not in known]
        if unknown:
            raise EvaluateError(f"unknown arm(s) {', '.join(unknown)} (known: {', '.join(known)})")
        from graph.settings import VoltSettings

        for name in self.arms:  # settings ignore unknown fields: a misspelt switch would silently be ON
            bad = [k for k in known[name].overrides if k not in VoltSettings.model_fields]
            if bad:
                raise EvaluateError(f"arm {name}: this build has no setting {', '.join(bad)}")
        if len(set(self.arms)) != len(self.arms) or not self.arms:
            raise EvaluateError(f"--arms needs distinct names (got {', '.join(self.arms) or 'none'})")
        return [known[a] for a in self.arms]


@dataclass(frozen=True)
class Cell:
    window: Window
    universe: Universe

    @property
    def id(self) -> str:
        return f"w{self.window.index:02d}-u{self.universe.index}"


def _backtest_config(cfg: EvalConfig, symbols, overrides: dict):
    from graph.backtest import BacktestConfig

    return BacktestConfig(symbols=list(symbols), data_csv=cfg.data_csv, models=[], top_k=cfg.top_k, cache=False,
                          frozen_baseline=False, settings_overrides=dict(overrides))


def base_settings(cfg: EvalConfig, out: Path):
    from graph.backtest import run_settings

    return run_settings(_backtest_config(cfg, [], {}), out, "agents", "base")


def plan_cells(cfg: EvalConfig, out: Path) -> tuple[Any, list[Cell]]:
    """The data set (as the nodes load it) and every (window, universe) cell."""
    from graph.backtest import plan_days
    from tools.market import DataOptions
    from tools.market_data import load_dataset

    base = base_settings(cfg, out)
    dataset = load_dataset(cfg.data_csv, DataOptions.from_settings(base))
    days = [f"{d:%Y-%m-%d}" for d in plan_days(dataset, None, None, base.min_history).days]
    windows = rolling_windows(days, cfg.windows, cfg.window_days, cfg.stride)
    universes = draw_universes(dataset.symbols, cfg.universes, cfg.universe_size, cfg.seed)
    return dataset, [Cell(w, u) for w in windows for u in universes]


def _predictions(ledger: Path | DatabaseURL, portfolio: str) -> dict[str, dict[str, list]]:
    """Resolved predictions per agent: signal, confidence, realized return, hit, decision day."""
    out: dict[str, dict[str, list]] = {}
    if not ledger.exists():
        return out
    query = ("SELECT agent, signal, confidence, realized_return, hit, as_of FROM agent_predictions"
             " WHERE portfolio=? AND resolved=1 AND realized_return IS NOT NULL AND hit IS NOT NULL"
             " ORDER BY as_of, prediction_id")
    if isinstance(ledger, DatabaseURL):  # VOLT_DATABASE_URL: the arm's rows in the shared database
        with open_db(ledger) as db:
            rows = [tuple(r) for r in db.execute(query, (portfolio,)).fetchall()]
    else:
        conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
        try:
            rows = conn.execute(query, (portfolio,)).fetchall()
        except sqlite3.OperationalError:  # no learning store in this build
            rows = []
        finally:
            conn.close()
    for agent, sig, conf, ret, hit, as_of in rows:
        cols = out.setdefault(agent, {"signal": [], "confidence": [], "realized": [], "hit": [], "as_of": []})
        for key, v in zip(("signal", "confidence", "realized", "hit"), (sig, conf, ret, hit), strict=True):
            cols[key].append(float(v))
        cols["as_of"].append(as_of)  # for the out-of-sample calibration (graph/evaluate/analysis.py)
    return out


def run_arm(cfg_data: dict, cell_id: str, days: list[str], symbols: list[str], arm_data: dict, out: str) -> dict:
    """One graph arm of one cell (in a worker process or inline); returns what ``arm.json`` holds."""
    from graph.backtest import DAYS_DB, DayStore, run_graph, run_settings

    cfg, arm = EvalConfig(**cfg_data), Arm(**arm_data)
    arm_dir = Path(out) / "cells" / cell_id / arm.name
    done = arm_dir / "arm.json"
    if done.exists():
        return json.loads(done.read_text())
    shutil.rmtree(arm_dir, ignore_errors=True)  # a half-finished arm starts over
    arm_dir.mkdir(parents=True)
    rl_overrides, rl_info = _rl_policy(cfg, Path(out), cell_id, days) if arm.name == RL_ARM.name else ({}, None)
    bcfg = _backtest_config(cfg, symbols, {**arm.overrides, **rl_overrides})
    t0 = time.perf_counter()
    run_graph(bcfg, arm_dir, "agents", "state", [pd.Timestamp(d) for d in days])
    settings = run_settings(bcfg, arm_dir, "agents", "state")
    if arm.name == "on" and RL_ARM.name in cfg.arms:  # what the rl arm of later windows trains on
        from graph.evaluate.rl_arm import save_replay

        save_replay(settings, arm_dir, days, symbols)
    if rl_info is not None:  # the multipliers the policy applied, before the ledger goes
        from graph.evaluate.rl_arm import with_actions

        rl_info = with_actions(rl_info, settings)
    rows = DayStore(arm_dir / DAYS_DB).days("agents")
    result = {"cell": cell_id, "arm": arm.name, "dates": [r["as_of"] for r in rows],
              "equity": [float(r["equity"]) for r in rows], "starting_cash": float(settings.starting_cash),
              "predictions": _predictions(settings.ledger_path, settings.portfolio),
              "seconds": round(time.perf_counter() - t0, 3), **({"rl": rl_info} if rl_info else {})}
    shutil.rmtree(arm_dir / "state", ignore_errors=True)  # checkpoints and ledger: arm.json keeps what counts
    _write_json(done, result)
    return result


def _rl_policy(cfg: EvalConfig, out: Path, cell_id: str, days: list[str]) -> tuple[dict, dict]:
    """The rl arm's policy for this cell, trained on the on arm of earlier windows (rl_arm.py)."""
    from graph.backtest import run_settings
    from graph.evaluate.rl_arm import policy_for

    def on_settings(symbols: list[str]):  # the on arm's costs, limits and data for a past universe
        return run_settings(_backtest_config(cfg, symbols, {}), out, "agents", "base")

    return policy_for(cfg, out, cell_id, days, on_settings)


def _phases(todo: list[tuple[Cell, Arm]]) -> list[list[tuple[Cell, Arm]]]:
    """The replays in the order they may run: every other arm, then the rl arms (they train on
    the on arms' replays of earlier windows); an empty phase is left out."""
    phases = [[t for t in todo if t[1].name != RL_ARM.name], [t for t in todo if t[1].name == RL_ARM.name]]
    return [p for p in phases if p]


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str))
    tmp.replace(path)


def _returns(equity: list[float], starting_cash: float) -> list[float]:
    values = [starting_cash, *equity]
    return [values[i + 1] / values[i] - 1.0 for i in range(len(equity))]


def _cell_summary(cfg: EvalConfig, out: Path, dataset, cell: Cell, graph_results: dict[str, dict]) -> dict:
    from tools.baselines import CostModel, run_baselines

    base = base_settings(cfg, out)
    arms = cfg.arm_list()
    names = [a.name for a in arms if a.kind == "baseline"]
    days = [pd.Timestamp(d) for d in cell.window.days]
    results: dict[str, dict] = {}
    for name, r in graph_results.items():
        results[name] = {"dates": r["dates"], "returns": _returns(r["equity"], r["starting_cash"]),
                         "seconds": r["seconds"], **({"rl": r["rl"]} if "rl" in r else {})}
    if names:
        for name, b in run_baselines(dataset, days, list(cell.universe.symbols), CostModel.from_settings(base),
                                     names).items():
            eq = b.equity.reindex(pd.DatetimeIndex(days))
            results[name] = {"dates": list(cell.window.days),
                             "returns": _returns([float(v) for v in eq.tolist()], base.starting_cash)}
    return {"cell": cell.id, "window": cell.window.index, "universe": cell.universe.index,
            "days": list(cell.window.days), "symbols": len(cell.universe.symbols), "arms": results,
            "predictions": {n: r["predictions"] for n, r in graph_results.items()}}


def _init_worker(parent: int) -> None:
    import warnings

    from graph.daemon import die_with_parent

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    die_with_parent(parent)


def _check_manifest(out: Path, cfg: EvalConfig, resume: bool) -> None:
    path = out / MANIFEST
    wanted = asdict(cfg)
    if resume:
        try:
            stored = json.loads(path.read_text())["config"]
        except FileNotFoundError:
            raise EvaluateError(f"nothing to resume in {out} (no {MANIFEST}); start without --resume") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EvaluateError(f"{path}: unreadable ({exc})") from None
        if stored != wanted:
            diff = sorted(k for k in wanted if stored.get(k) != wanted[k])
            raise EvaluateError(f"{out} holds an evaluation with other settings ({', '.join(diff)}); "
                                "resume it with the same arguments, or start over without --resume")
        return
    if (out / "cells").exists() and not path.exists():  # never delete what an evaluation did not write
        raise EvaluateError(f"{out}/cells exists but is not an evaluation's ({MANIFEST} missing): choose another --out")
    shutil.rmtree(out / "cells", ignore_errors=True)  # a fresh start: the previous evaluation's cells go
    out.mkdir(parents=True, exist_ok=True)
    _write_json(path, {"config": wanted, "status": "running"})


TaskFn = Callable[[str, str, int, int], None]


def run_cells(cfg: EvalConfig, out: Path, *, resume: bool = False, jobs: int = 1,
              on_plan: Callable[[int, int], None] | None = None, on_task: TaskFn | None = None,
              ray: str | None = None) -> list[dict]:
    """Run (or continue) every cell; returns the cells' summaries in cell order. ``ray``: run the
    replays as Ray tasks (``"local"`` or a cluster address; :mod:`graph.evaluate.executors`)."""
    out = Path(out)
    arms = cfg.arm_list()
    _check_manifest(out, cfg, resume)
    dataset, cells = plan_cells(cfg, out)
    graph_arms = [a for a in arms if a.kind == "graph"]
    todo = [(c, a) for c in cells if not (out / "cells" / c.id / "summary.json").exists() for a in graph_arms]
    total = len(cells) * len(graph_arms)
    if on_plan is not None:
        on_plan(total, total - len(todo))
    results: dict[tuple[str, str], dict] = {}
    cfg_data = asdict(cfg)

    def args(c: Cell, a: Arm) -> tuple:
        return (cfg_data, c.id, list(c.window.days), list(c.universe.symbols), asdict(a), str(out))

    def finished(c: Cell, a: Arm, r: dict) -> None:
        results[(c.id, a.name)] = r
        if on_task is not None:
            on_task(c.id, a.name, len(results) + total - len(todo), total)

    # inline, a process pool or Ray (graph/evaluate/executors.py): the same results either way
    for phase in _phases(todo):
        run_tasks(run_arm, [((c, a), args(c, a)) for c, a in phase], lambda key, r: finished(*key, r), jobs=jobs,
                  ray=ray, label=lambda key: f"cell {key[0].id}, arm {key[1].name}", init_worker=_init_worker,
                  init_args=(os.getpid(),))

    summaries = []
    for c in cells:
        path = out / "cells" / c.id / "summary.json"
        if path.exists():
            summaries.append(json.loads(path.read_text()))
            continue
        graph_results = {a.name: results[(c.id, a.name)] for a in graph_arms}
        summary = _cell_summary(cfg, out, dataset, c, graph_results)
        _write_json(path, summary)
        summaries.append(summary)
    return summaries


def run_evaluation(cfg: EvalConfig, out: Path, *, resume: bool = False, jobs: int = 1,
                   on_plan: Callable[[int, int], None] | None = None, on_task: TaskFn | None = None,
                   reports: bool = True, ray: str | None = None) -> dict:
    """Run (or continue) the evaluation into ``out``; write ``summary.json`` and ``report.html``."""
    from graph.evaluate.report import build_summary, write_reports

    out = Path(out)
    t0 = time.perf_counter()
    counts: dict[str, int] = {}

    def planned(total: int, done: int) -> None:
        counts.update(replays=total, reused=done)
        if on_plan is not None:
            on_plan(total, done)

    cells = run_cells(cfg, out, resume=resume, jobs=jobs, on_plan=planned, on_task=on_task, ray=ray)
    run_s = time.perf_counter() - t0
    summary = build_summary(cfg, cfg.arm_list(), cells, {"cells_s": run_s, "wall_s": run_s, "jobs": jobs},
                            horizon_days=getattr(base_settings(cfg, out), "horizon_days", None))
    # replays reused from an earlier run (--resume): the wall time covers only this run's work
    summary["replays"] = {"total": counts.get("replays", 0), "reused": counts.get("reused", 0)}
    summary["timing"]["wall_s"] = round(time.perf_counter() - t0, 3)
    if reports:
        write_reports(out, summary)
    _write_json(out / MANIFEST, {"config": asdict(cfg), "status": "complete"})
    return summary
