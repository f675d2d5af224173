"""Backtest reports: ``summary.json``, ``report.html`` (self-contained) and ``equity.png``.

The HTML page has the metrics table of the agent graph and every baseline, the equity
curves, the drawdowns, the per-agent consensus weights over time and the graph's trades.
Charts are drawn with matplotlib (Agg backend, no display needed).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from memory.db import open_db
from tools.baselines import BaselineResult
from tools.metrics import compute_metrics, drawdown_curve

STYLE = {  # name: (color, line width)
    "agents": ("#d62728", 2.4),
    "agents_frozen": ("#ff9896", 1.6),
    "buy_and_hold": ("#1f77b4", 1.4),
    "sma_crossover": ("#2ca02c", 1.4),
    "rsi_rule": ("#9467bd", 1.4),
}


def _graph_fills(ledger_path: Path, portfolio: str) -> list[dict]:
    if not ledger_path.exists():  # a Path, or a memory.db.DatabaseURL (VOLT_DATABASE_URL)
        return []
    with open_db(ledger_path) as conn:
        rows = conn.execute(
            "SELECT o.as_of, f.* FROM fills f JOIN orders o ON o.order_id = f.order_id"
            " WHERE f.portfolio=? ORDER BY f.fill_date, f.symbol", (portfolio,)).fetchall()
    return [{k: r[k] for k in r.keys() if k not in ("created_at", "portfolio")} for r in rows]  # noqa: SIM118 (sqlite3.Row)


def build_summary(*, cfg, out: Path, state_dir: str, dataset, plan, runs: list[str], baselines: dict[str, BaselineResult],
                  resumed: bool, timing: dict[str, float]) -> dict:
    from graph.backtest import DAYS_DB, RUN_LABELS, DayStore, run_settings
    from memory.response_cache import open_store

    store = DayStore(out / DAYS_DB)
    starting_cash = None
    strategies: dict[str, dict] = {}
    curves: dict[str, pd.Series] = {}
    weights: dict[str, dict[str, list]] = {}
    llm_total = {"llm_invocations": 0, "model_calls": 0, "cache_hits": 0, "input_tokens": 0, "output_tokens": 0,
                 "tokens_known": 0, "agent_results": 0, "degraded": 0}
    trades: list[dict] = []
    for run in runs:
        settings = run_settings(cfg, out, run, state_dir)
        starting_cash = settings.starting_cash
        days = store.days(run)
        index = pd.DatetimeIndex([d["as_of"] for d in days], name="as_of")
        equity = pd.Series([d["equity"] for d in days], index=index, dtype=float)
        exposure = pd.Series([d["exposure"] for d in days], index=index, dtype=float).dropna()
        fills = _graph_fills(settings.ledger_path, settings.portfolio)
        metrics = compute_metrics(equity, starting_cash=settings.starting_cash, fills=fills, exposure=exposure,
                                  risk_free=cfg.risk_free)
        llm = {k: sum(int(d.get(k) or 0) for d in days) for k in llm_total}
        llm["tokens"] = (llm["input_tokens"] + llm["output_tokens"]) if llm["tokens_known"] else None
        llm["degraded_rate"] = llm["degraded"] / llm["agent_results"] if llm["agent_results"] else None
        for k in llm_total:
            llm_total[k] += llm[k]
        strategies[run] = {"label": RUN_LABELS[run], "kind": "graph",
                           "learning": getattr(settings, "learning", None), **metrics, "llm": llm,
                           "replay_seconds": round(sum(float(d.get("seconds") or 0.0) for d in days), 3)}
        curves[run] = equity
        weights[run] = {"dates": [d["as_of"] for d in days],
                        **_weight_columns([d["weights"] for d in days])}
        if run == "agents":
            trades = fills
    starting_cash = starting_cash if starting_cash is not None else 1000.0
    for name, result in baselines.items():
        metrics = compute_metrics(result.equity, starting_cash=starting_cash, fills=result.fills,
                                  exposure=result.exposure, risk_free=cfg.risk_free)
        strategies[name] = {"label": result.label, "kind": "baseline", **metrics,
                            "llm": {"model_calls": 0, "cache_hits": 0}}
        curves[name] = result.equity

    base = run_settings(cfg, out, "agents", state_dir)
    cache_path = base.llm_cache if cfg.cache else None
    universe = list(cfg.symbols) or dataset.symbols
    n_days = len(plan.days)
    graph_s = timing.get("graph_s", 0.0)
    summary = {
        "command": "python -m graph.backtest",
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "data_source": dataset.source,
        "universe_size": len(universe),
        "period": {"first_decision": f"{plan.days[0]:%Y-%m-%d}", "last_decision": f"{plan.days[-1]:%Y-%m-%d}",
                   "days": n_days, "last_fill": _next_day(dataset, plan.days[-1])},
        "notes": list(plan.notes),
        # splits detected (and back-adjusted) and outlier bars rejected, one line each
        "data_adjustments": _data_adjustments(dataset, list(cfg.symbols) or None),
        "resumed": resumed,
        "starting_cash": starting_cash,
        "state_dir": str(out / state_dir),
        "costs": {"fee_rate": base.fee_rate, "max_slippage": base.max_slippage,
                  "fills": "next bar open, broker slippage model (tools/broker.py)"},
        "strategies": strategies,
        "llm": {**llm_total,
                "tokens": (llm_total["input_tokens"] + llm_total["output_tokens"]) if llm_total["tokens_known"] else None,
                "degraded_rate": (llm_total["degraded"] / llm_total["agent_results"]) if llm_total["agent_results"] else None},
        "cache": {"enabled": bool(cfg.cache), "path": str(cache_path) if cache_path else None,
                  "hits": llm_total["cache_hits"],
                  "entries": open_store(cache_path).count() if cache_path else None},
        "timing": {**{k: round(v, 3) for k, v in timing.items()},
                   "symbol_days": len(universe) * n_days,
                   "graph_cycles": n_days * len(runs),
                   "graph_symbol_days_per_s": round(len(universe) * n_days * len(runs) / graph_s, 1) if graph_s else None},
        "series": {"dates": [f"{d:%Y-%m-%d}" for d in plan.days],
                   "equity": {k: [_round(v) for v in s.reindex(pd.DatetimeIndex(plan.days)).tolist()]
                              for k, s in curves.items()},
                   "weights": weights},
        "trades": trades,
    }
    return summary


def _data_adjustments(dataset, symbols: list[str] | None) -> list[str]:
    notes = getattr(dataset, "adjustment_notes", None)
    return list(notes(symbols)) if notes is not None else []


def _weight_columns(rows: list[dict]) -> dict[str, list]:
    agents = sorted({a for r in rows for a in (r or {})})
    return {a: [(r or {}).get(a) for r in rows] for a in agents}


def _next_day(dataset, day: pd.Timestamp) -> str | None:
    later = dataset.calendar[dataset.calendar > day]
    return f"{later[0]:%Y-%m-%d}" if len(later) else None


def _round(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), 6)


# --------------------------------------------------------------------------- charts


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _curves(summary: dict) -> dict[str, pd.Series]:
    dates = pd.DatetimeIndex(summary["series"]["dates"])
    return {k: pd.Series([math.nan if v is None else v for v in vals], index=dates, dtype=float)
            for k, vals in summary["series"]["equity"].items()}


def charts(summary: dict) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    curves = _curves(summary)
    labels = {k: v["label"] for k, v in summary["strategies"].items()}
    start = summary["starting_cash"]
    out: dict[str, bytes] = {}

    def style_axis(ax):
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(mdates.MonthLocator())
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %Y"))
        for tick in ax.get_xticklabels():
            tick.set_rotation(30)
            tick.set_ha("right")

    fig, ax = plt.subplots(figsize=(10, 5.2))
    for name, s in curves.items():
        color, width = STYLE.get(name, (None, 1.2))
        m = summary["strategies"][name]
        ax.plot(s.index, s.values, color=color, lw=width, label=f"{labels[name]} ({m['total_return']:+.1%})",
                zorder=3 if name == "agents" else 2)
    ax.axhline(start, color="#888", lw=0.8, ls="--", zorder=1)
    ax.set_title(f"Equity, {summary['period']['first_decision']} to {summary['period']['last_decision']} "
                 f"({summary['universe_size']} symbols, fees and slippage included)")
    ax.set_ylabel("equity (USD)")
    style_axis(ax)
    ax.legend(loc="best", fontsize=9, framealpha=0.9)
    out["equity"] = _figure_png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3.6))
    for name, s in curves.items():
        color, width = STYLE.get(name, (None, 1.2))
        dd = drawdown_curve(s.dropna(), start)
        ax.plot(dd.index, dd.values * 100, color=color, lw=width, label=labels[name])
    ax.set_title("Drawdown from the running peak")
    ax.set_ylabel("%")
    style_axis(ax)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    out["drawdown"] = _figure_png(fig)
    plt.close(fig)

    weights = summary["series"]["weights"].get("agents") or {}
    agents = [a for a in weights if a != "dates"]
    if agents:
        fig, ax = plt.subplots(figsize=(10, 3.6))
        dates = pd.DatetimeIndex(weights["dates"])
        for a in agents:
            ax.plot(dates, [math.nan if v is None else v for v in weights[a]], lw=1.6, label=a)
        ax.set_title("Consensus vote weight per agent (agent graph with learning)")
        ax.set_ylabel("weight")
        style_axis(ax)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)  # off the lines
        out["weights"] = _figure_png(fig)
        plt.close(fig)
    return out


# --------------------------------------------------------------------------- files


def write_reports(out: Path, summary: dict) -> dict[str, Path]:
    out = Path(out)
    images = charts(summary)
    paths = {"summary": out / "summary.json", "html": out / "report.html", "png": out / "equity.png"}
    summary["outputs"] = {k: str(v) for k, v in paths.items()}
    paths["png"].write_bytes(images["equity"])
    paths["summary"].write_text(json.dumps(summary, indent=2, default=_json_default))
    paths["html"].write_text(render_html(summary, images))
    return paths


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


METRIC_COLUMNS = [  # key, header, format
    ("total_return", "Total", "pct"), ("annualized_return", "Annual", "pct"), ("volatility", "Vol", "pct"),
    ("sharpe", "Sharpe", "num"), ("sortino", "Sortino", "num"), ("max_drawdown", "Max DD", "pct"),
    ("calmar", "Calmar", "num"), ("win_rate", "Win", "pct0"), ("profit_factor", "PF", "num"),
    ("turnover", "Turnover", "x"), ("exposure", "Exposure", "pct0"), ("fees_paid", "Fees", "usd"),
    ("slippage_paid", "Slippage", "usd"), ("fills", "Fills", "int"),
]


def fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if value == "inf":
        return "inf"
    if kind == "pct":
        return f"{value:+.2%}"
    if kind == "pct0":
        return f"{value:.0%}"
    if kind == "num":
        return f"{value:.2f}"
    if kind == "x":
        return f"{value:.2f}x"
    if kind == "usd":
        return f"{value:,.2f}"
    return f"{value}"


def _llm_line(summary: dict) -> str:
    llm, cache = summary["llm"], summary["cache"]
    tokens = f"{llm['tokens']:,}" if llm.get("tokens") is not None else "unknown"
    degraded = f"{llm['degraded_rate']:.0%}" if llm.get("degraded_rate") is not None else "-"
    state = "on" if cache["enabled"] else "off (--no-cache)"
    return (f"LLM: {llm['model_calls']} model calls, {llm['cache_hits']} cache hits (cache {state}), "
            f"tokens {tokens}, agent answers degraded to the prior {degraded}")


def render_text(summary: dict) -> str:
    p = summary["period"]
    lines = [
        f"VOLT backtest {p['first_decision']}..{p['last_decision']} ({p['days']} trading days, "
        f"{summary['universe_size']} symbols; last fills {p['last_fill']})",
        f"data: {summary['data_source']}",
        *(f"note: {n}" for n in summary["notes"]),
        "",
    ]
    head = f"{'strategy':<28}" + "".join(f"{h:>10}" for _, h, _ in METRIC_COLUMNS)
    lines.append(head)
    for m in summary["strategies"].values():
        lines.append(f"{m['label'][:28]:<28}" + "".join(f"{fmt(m.get(k), kind):>10}" for k, _, kind in METRIC_COLUMNS))
    lines.append("")
    for m in summary["strategies"].values():
        if m["max_drawdown_trough"]:
            lines.append(f"max drawdown {m['label']}: {m['max_drawdown']:.2%} from {m['max_drawdown_peak']} to "
                         f"{m['max_drawdown_trough']}, " + (f"recovered {m['max_drawdown_recovery']}"
                                                             if m["max_drawdown_recovery"] else "not recovered"))
    adjustments = summary.get("data_adjustments") or []
    if adjustments:
        lines += ["", f"data adjustments ({len(adjustments)}):", *(f"  {n}" for n in adjustments)]
    lines += ["", _llm_line(summary)]
    t = summary["timing"]
    if t.get("graph_s"):
        lines.append(f"time: graph {t['graph_s']:.1f} s ({t['graph_cycles']} cycles, "
                     f"{t['graph_symbol_days_per_s']:,} symbol-days/s), baselines {t['baselines_s']:.1f} s")
    if summary.get("outputs"):
        lines.append("reports: " + ", ".join(summary["outputs"].values()))
    return "\n".join(lines)


def _metrics_table(summary: dict) -> str:
    """The metrics as rows and the strategies (arms) as columns, inside a box that scrolls
    sideways rather than widening the page: 17 metrics across overflowed a 1400 px page,
    while arms across stay narrow (one column per arm, ~5 in a run)."""
    e = html.escape
    arms = list(summary["strategies"].items())

    def cls(name: str) -> str:
        return ' class="main"' if name == "agents" else ""

    head = "".join(f"<th{cls(name)}>{e(m['label'])}</th>" for name, m in arms)
    rows = [f"<tr><th>{e(h)}</th>" + "".join(f"<td{cls(name)}>{e(fmt(m.get(k), kind))}</td>" for name, m in arms)
            + "</tr>" for k, h, kind in METRIC_COLUMNS]

    def dates(m: dict) -> str:
        if not m["max_drawdown_trough"]:
            return "-"
        recovered = f" (recovered {m['max_drawdown_recovery']})" if m["max_drawdown_recovery"] else ""
        return f"{e(str(m['max_drawdown_peak']))} &rarr; {e(str(m['max_drawdown_trough']))}{e(recovered)}"

    rows.append("<tr><th>Max DD dates</th>" + "".join(
        f'<td class="dates{" main" if name == "agents" else ""}">{dates(m)}</td>' for name, m in arms) + "</tr>")
    for key, label in (("model_calls", "Model calls"), ("cache_hits", "Cache hits")):
        rows.append(f"<tr><th>{label}</th>" + "".join(
            f"<td{cls(name)}>{int((m.get('llm') or {}).get(key, 0))}</td>" for name, m in arms) + "</tr>")
    return (f'<div class="scroll"><table class="metrics"><tr><th>metric</th>{head}</tr>'
            f"{''.join(rows)}</table></div>")


def render_html(summary: dict, images: dict[str, bytes]) -> str:
    e = html.escape
    p = summary["period"]

    def img(name: str, alt: str) -> str:
        if name not in images:
            return ""
        data = base64.b64encode(images[name]).decode()
        return f'<img alt="{e(alt)}" src="data:image/png;base64,{data}">'

    metrics_table = _metrics_table(summary)
    trade_rows = "".join(
        f"<tr><td>{e(t['as_of'])}</td><td>{e(t['fill_date'])}</td><td>{e(t['symbol'])}</td><td>{e(t['side'])}</td>"
        f"<td>{t['qty']:.4f}</td><td>{t['reference_price']:.4f}</td><td>{t['price']:.4f}</td>"
        f"<td>{t['slippage_pct']:.3%}</td><td>{t['fee']:.4f}</td><td>{t['realized_pnl']:+.4f}</td></tr>"
        for t in summary["trades"])
    notes = "".join(f"<li>{e(n)}</li>" for n in summary["notes"])
    adjustments = summary.get("data_adjustments") or []
    adjusted = ("".join(f"<li>{e(n)}</li>" for n in adjustments) if adjustments
                else "<li>none: no split detected, no bar rejected</li>")
    cfg = summary["config"]
    models = "priors only (no model)" if cfg.get("models") == [] else (", ".join(cfg["models"]) if cfg.get("models")
                                                                         else "VOLT_MODELS / default chain")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>VOLT backtest {e(p['first_decision'])}..{e(p['last_decision'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; margin: 8px 0 20px; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }}
th:first-child {{ text-align: left; }}
img {{ max-width: 100%; display: block; margin: 8px 0 20px; }}
.meta {{ color: #555; font-size: 14px; }}
.trades {{ max-height: 480px; overflow: auto; display: inline-block; max-width: 100%; }}
.scroll {{ max-width: 100%; overflow-x: auto; }}
table.metrics td.dates {{ white-space: normal; min-width: 8em; }}
table.metrics th.main, table.metrics td.main {{ background: #fdecec; font-weight: 600; }}
</style></head><body>
<h1>VOLT backtest</h1>
<p class="meta">{e(p['first_decision'])} to {e(p['last_decision'])}: {p['days']} trading days, {summary['universe_size']} symbols,
starting cash {summary['starting_cash']:,.2f} USD. Data: {e(summary['data_source'])}.<br>
Walk-forward: each day's cycle sees bars up to that day only; orders fill at the next open
(last fills {e(str(p['last_fill']))}) with a {summary['costs']['fee_rate']:.2%} fee and the broker's slippage
(cap {summary['costs']['max_slippage']:.2%}); baselines pay the same costs. Models: {e(models)}.<br>
{e(_llm_line(summary))}.</p>
{f'<ul class="meta">{notes}</ul>' if notes else ''}
<h2>Metrics</h2>
{metrics_table}
<p class="meta">Risk-free rate {summary['strategies'][next(iter(summary['strategies']))]['risk_free']:.2%} a year.
Sharpe, Sortino and volatility from daily returns, 252 days a year. Win rate and profit factor over closing fills
(realized P&amp;L net of fees). Turnover: traded notional / mean equity. Exposure: mean gross exposure / equity.</p>
<h2>Equity</h2>{img('equity', 'equity curves')}
<h2>Drawdown</h2>{img('drawdown', 'drawdown curves')}
<h2>Agent weights</h2>{img('weights', 'consensus weights over time') or '<p>no weights recorded</p>'}
<h2>Data adjustments ({len(adjustments)})</h2>
<p class="meta">Splits detected in the bars (prices before them back-adjusted; positions held through one
keep their value) and bars rejected as data issues (no fill, no mark, no peak).</p>
<ul class="meta">{adjusted}</ul>
<h2>Trades of the agent graph ({len(summary['trades'])})</h2>
<div class="trades"><table><tr><th>decided</th><th>filled</th><th>symbol</th><th>side</th><th>qty</th><th>open</th>
<th>price</th><th>slippage</th><th>fee</th><th>realized</th></tr>{trade_rows}</table></div>
</body></html>
"""
