"""``python -m graph.learning``: what VOLT has learned for a portfolio.

Weights, per-agent accuracy, the weights' comparators (cumulative Brier loss of the
learned mix, equal weights, staying in cash, the best agent in hindsight), accuracy, IC
and calibration per agent and prompt version, agent profiles (thresholds, model chains,
timeouts), parameter changes, top error patterns per agent, the situation memory and the
performance report over closed trades.
"""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from graph.errors import OperationalError
from graph.settings import VoltSettings, existing_home_settings
from memory.learning_store import ALL_PREDICTORS, LearningStore
from memory.ledger import Ledger
from memory.run_lock import portfolio_lock
from memory.weights import read_weights
from nodes.learning_agent import REVIEWER_POOL, VOTER_POOL, default_profiles
from tools.data_source import market_dataset
from tools.learning.prompt_eval import evaluate
from tools.learning.weights import comparators
from tools.market_data import MarketDataset
from tools.outcomes import resolve
from tools.performance import analyze_trades


def weight_comparators(store: LearningStore, portfolio: str) -> dict[str, dict]:
    """Per pool (voters, reviewers): cumulative loss of the learned weights against the
    comparators, one round per resolving cycle, each with the weights in force before it."""
    rows = store.outcomes(portfolio)
    history = store.weight_history(portfolio)
    out = {}
    for name, pool in (("voters", VOTER_POOL), ("reviewers", REVIEWER_POOL)):
        by_round: dict[str, dict[str, list[float]]] = {}
        for r in rows:
            if r["agent"] in pool and r["loss"] is not None and r["resolved_as_of"]:
                by_round.setdefault(r["resolved_as_of"], {}).setdefault(r["agent"], []).append(r["loss"])
        rounds = []
        for day in sorted(by_round):
            before = [h for h in history if h["as_of"] < day and h["agent"] in pool]
            last = max((h["as_of"] for h in before), default=None)
            weights = {h["agent"]: h["weight"] for h in before if h["as_of"] == last}
            rounds.append((weights, {a: sum(v) / len(v) for a, v in by_round[day].items()}))
        out[name] = comparators(rounds)
    return out


def prompt_evaluation(store: LearningStore, portfolio: str, dataset: MarketDataset | None = None) -> list[dict]:
    """Accuracy, IC and calibration per (agent, prompt_version). With a data set, each
    resolved call's excess return is recomputed as it was resolved (for the IC)."""
    rows = store.outcomes(portfolio)
    if dataset is not None:
        for r in rows:
            res = (resolve(dataset, r["symbol"], r["as_of"], r["horizon"], pd.Timestamp(r["resolved_as_of"]))
                   if r["resolved_as_of"] else None)
            r["excess_return"] = res.excess_return if res else None
    return evaluate(rows)


def learning_report(settings: VoltSettings) -> dict:
    portfolio = settings.portfolio
    store, ledger = LearningStore(settings.ledger_path), Ledger(settings.ledger_path)
    cycles = ledger.cycles(portfolio)
    equity = pd.Series({pd.Timestamp(c["as_of"]): c["equity"] for c in cycles}, dtype=float)
    market = dataset = None
    if len(cycles) > 2:
        dataset = market_dataset(settings)
        market = dataset.close_panel.pct_change(fill_method=None).mean(axis=1).reindex(equity.index)
    memory_size: int | None = 0
    if settings.chroma_url or (settings.home / "chroma").exists():
        from memory.situation_memory import SituationMemory

        try:
            memory_size = SituationMemory(settings.home, portfolio, settings.chroma_url).count()
        except Exception:  # damaged: the report still shows the rest, and says how to rebuild
            memory_size = None
    return {
        "portfolio": portfolio,
        "cycles": len(cycles),
        "last_cycle": cycles[-1]["as_of"] if cycles else None,
        "weights": read_weights(settings.ledger_path, portfolio, list(ALL_PREDICTORS)),
        "accuracy": store.accuracy_table(portfolio),
        "comparators": weight_comparators(store, portfolio),
        "prompt_versions": prompt_evaluation(store, portfolio, dataset),
        "predictions": store.counts(portfolio),
        "profiles": {a: p.as_dict() for a, p in store.profiles(portfolio, default_profiles(settings)).items()},
        "parameter_changes": store.parameter_changes(portfolio),
        "error_patterns": store.error_patterns(portfolio),
        "memory_size": memory_size,
        "performance": analyze_trades(store.trades(portfolio), equity, market),
    }


def render(report: dict) -> str:
    lines = [f"VOLT learning report | portfolio {report['portfolio']} | {report['cycles']} cycles"
             + (f", last {report['last_cycle']}" if report["last_cycle"] else "")]
    p = report["predictions"]
    memory = (f"{report['memory_size']} situations" if report["memory_size"] is not None
              else "unreadable (run `python -m graph.learning --rebuild-memory`)")
    lines.append(f"predictions: {p['predictions']} recorded, {p['resolved']} resolved; situation memory: {memory}")
    lines.append("\nagent               weight  resolved  accuracy  Brier")
    acc = {a["agent"]: a for a in report["accuracy"]}
    for agent, w in report["weights"].items():
        a = acc.get(agent, {})
        accuracy = f"{a['accuracy']:.0%}" if a.get("accuracy") is not None else "-"
        brier = f"{a['mean_loss']:.3f}" if a.get("mean_loss") is not None else "-"
        lines.append(f"  {agent:<17} {w:>6.2f}  {a.get('resolved', 0):>8}  {accuracy:>8}  {brier:>5}")
    lines.append("\ncumulative Brier loss (lower is better): learned weights | equal weight | stay in cash"
                 " | best agent in hindsight")
    for pool, c in report["comparators"].items():
        best = f"{c['best_agent']} {c['best_agent_loss']:.3f}" if c["best_agent"] else "-"
        lines.append(f"  {pool:<10} {c['rounds']:>4} rounds: {c['learned_weights']:.3f} | {c['equal_weight']:.3f}"
                     f" | {c['stay_in_cash']:.3f} | {best}")
    lines.append("\naccuracy, IC (Spearman, signal vs excess return) and calibration per prompt version")
    lines.append(f"  {'agent / prompt version':<38} {'n':>5}  {'accuracy':>8}  {'IC':>6}  {'Brier':>5}  "
                 f"{'overconfidence':>14}")
    for e in report["prompt_versions"]:
        def f(v, fmt):
            return format(v, fmt) if v is not None else "-"
        lines.append(f"  {e['agent'] + ' / ' + e['prompt_version']:<38} {e['n']:>5}  {f(e['accuracy'], '.0%'):>8}"
                     f"  {f(e['ic'], '+.2f'):>6}  {f(e['brier'], '.3f'):>5}  {f(e['overconfidence'], '+.2f'):>14}")
    lines.append("\nprofiles (version: threshold, timeout, model chain)")
    for agent, pr in report["profiles"].items():
        lines.append(f"  {agent:<17} v{pr['version']}: {pr['confidence_threshold']:.3f}, {pr['timeout_s']:.0f}s, "
                     f"{' > '.join(pr['model_chain']) or '(priors only)'}")
    lines.append("\nparameter changes" + ("" if report["parameter_changes"] else ": none yet"))
    for c in report["parameter_changes"][-20:]:
        state = " (rolled back)" if c["rolled_back"] else ""
        lines.append(f"  #{c['change_id']} {c['as_of']} {c['agent']} {c['target']}: {c['old_value']} -> "
                     f"{c['new_value']}{state} - {c['reason']}")
    lines.append("\ntop error patterns" + ("" if report["error_patterns"] else ": none"))
    for e in report["error_patterns"][:10]:
        lines.append(f"  {e['agent']:<17} {e['category']:<8} {e['count']}")
    perf = report["performance"]
    lines.append(f"\nperformance: {perf['total_trades']} closed trades")
    if perf["total_trades"]:
        lines.append(f"  win rate {perf['win_rate']:.0%}, total P&L {perf['total_pnl']:+.2f} USD, "
                     f"avg win {perf['avg_win'] or 0:+.2f}, avg loss {perf['avg_loss'] or 0:+.2f}, "
                     f"largest win {perf['largest_win']:+.2f}, largest loss {perf['largest_loss']:+.2f}")
        lines.append(f"  avg duration {perf['avg_duration_days']:.1f} trading days, best weekday {perf['best_weekday']}")
        for symbol, s in list(perf["per_symbol"].items())[:10]:
            lines.append(f"  {symbol:<6} {s['trades']} trades, P&L {s['pnl']:+.2f}, win rate {s['win_rate']:.0%}")
        for pat in perf["patterns"]:
            lines.append(f"  {pat['type']}: {pat['frequency']}x, avg length {pat['avg_length']:.1f} - {pat['recommendation']}")
    if perf["market_correlation"] is not None:
        lines.append(f"  correlation of daily results with the market: {perf['market_correlation']:+.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graph.learning", description="Show what VOLT has learned.")
    parser.add_argument("--portfolio", metavar="NAME")
    parser.add_argument("--home", metavar="DIR")
    parser.add_argument("--data-csv", metavar="PATH")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rebuild-memory", action="store_true",
                        help="rebuild the situation memory ($VOLT_HOME/chroma) from the learning store")
    args = parser.parse_args(argv)
    try:
        settings = existing_home_settings(portfolio=args.portfolio, home=args.home, data_csv=args.data_csv)
        if args.rebuild_memory:
            return rebuild_memory_command(settings)
        report = learning_report(settings)
    except OperationalError as exc:  # StorageError: one line naming the file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, default=str) if args.json else render(report))
    return 0


def rebuild_memory_command(settings: VoltSettings) -> int:
    """``--rebuild-memory``: the portfolio's situation memory, from scratch, from the
    resolved predictions in the learning store (under the portfolio lock: no cycle may add
    to it meanwhile)."""
    from memory.situation_memory import memory_dir, rebuild_memory

    with portfolio_lock(settings.home, settings.portfolio, settings.ledger_path):
        n, note = rebuild_memory(settings.home, settings.portfolio, LearningStore(settings.ledger_path),
                                 settings.chroma_url)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    print(f"situation memory rebuilt: {n} situations from the learning store "
          f"(portfolio {settings.portfolio}, {settings.chroma_url or memory_dir(settings.home, settings.portfolio)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
