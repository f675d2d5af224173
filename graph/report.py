"""The cycle's result for people (text) and machines (``--json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from graph.report_ops import operations_fields, operations_lines
from graph.report_positions import positions_fields, positions_lines

MAX_DATA_ERRORS_SHOWN = 8


class CycleReport(BaseModel):
    portfolio_id: str
    data_notes: list[str] = []
    as_of: str
    cycle_id: str
    resumed: bool
    data_source: str
    models: dict[str, Any]
    candidates: list[str]
    scores: dict[str, float | None]
    signals: list[dict[str, Any]]
    consensus: dict[str, Any]
    reviews: dict[str, Any]
    decisions: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    fills: list[dict[str, Any]]
    portfolio_before: dict[str, Any]
    portfolio: dict[str, Any]
    reward: float
    llm_calls: int
    weights: dict[str, float]
    market_context: dict[str, Any]
    learning: dict[str, Any]
    profiles: dict[str, Any]
    improvements: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    data_errors: list[dict[str, Any]]
    # operations (graph/report_ops.py): symbols with too little history yet (notes, not errors),
    # errors per category, open breakers, alerts raised during this cycle, the short model line
    short_history: list[str] = []
    error_counts: dict[str, int] = {}
    breakers: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    model_line: str = ""
    # plans, exits by kind, protections (graph/report_positions.py)
    positions: dict[str, Any] = {}


def _signal(agent_result: dict | None) -> dict | None:
    if not agent_result:
        return None
    if agent_result.get("abstained"):
        return {"agent": agent_result["agent"], "symbol": agent_result["symbol"], "source": "abstain",
                "model": None, "degraded": False, "reason": agent_result.get("reason")}
    return {"agent": agent_result["agent"], "symbol": agent_result["symbol"], "source": agent_result["source"],
            "model": agent_result.get("model"), "degraded": agent_result.get("degraded", False),
            **agent_result["output"]}


def build_report(state: dict, *, resumed: bool = False, notes: list[str] | None = None,
                 home: Path | None = None, verbose: bool = False, alerts_since: float | None = None) -> CycleReport:
    """The cycle's report. With ``home``: the breakers open now and the alerts raised since
    ``alerts_since`` (unix s) from its ``ops.db`` (read only if it exists). ``verbose``: the
    model chain's full status instead of one short line."""
    decisions = sorted(state.get("decisions", []), key=lambda d: state["candidates"].index(d["symbol"]))
    signals = [s for d in decisions
               for s in (_signal(d.get(k)) for k in ("market", "sentiment", "forex", "strategy", "risk", "audit")) if s]
    if state.get("macro"):
        signals.insert(0, _signal(state["macro"]))
    return CycleReport(
        portfolio_id=state["portfolio_id"],
        data_notes=list(notes or []),
        as_of=state["as_of"],
        cycle_id=state["cycle_id"],
        resumed=resumed,
        data_source=state["data_source"],
        models=state["model_status"],
        candidates=state["candidates"],
        scores=state.get("scores", {}),
        signals=signals,
        consensus={d["symbol"]: d["consensus"] for d in decisions if d.get("consensus")},
        reviews={d["symbol"]: {"outcome": d["outcome"], "reason": d["reason"], "review": d.get("review"),
                               "history": d.get("history"), "revision": d["revision"]} for d in decisions},
        decisions=[{k: d[k] for k in ("symbol", "outcome", "reason", "order", "revision", "llm_calls")} for d in decisions],
        orders=state.get("orders", []),
        fills=state.get("fills", []),
        portfolio_before=state.get("portfolio_before", {}),
        portfolio=state.get("portfolio_after", {}),
        reward=state.get("reward", 0.0),
        llm_calls=(sum(d.get("llm_calls", 0) for d in decisions) + (state.get("learning") or {}).get("llm_calls", 0)
                   + state.get("llm_calls", 0)),
        market_context=state.get("market_context", {}),
        weights=state.get("weights", {}),
        learning=state.get("learning", {}),
        profiles=state.get("profiles", {}),
        improvements=state.get("improvements", []),
        errors=state.get("errors", []),
        data_errors=state.get("data_errors", []),
        **operations_fields(state, home=home, verbose=verbose, alerts_since=alerts_since),
        **positions_fields(state),
    )


def render_json(report: CycleReport) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=2)


def _src(result: dict | None) -> str:
    if not result:
        return "-"
    return {"model": f"model {result.get('model')}", "prior": "prior, degraded"}.get(result["source"], result["source"])


def render_text(report: CycleReport) -> str:
    lines: list[str] = []
    add = lines.append
    head = f"VOLT cycle {report.as_of} | portfolio {report.portfolio_id}"
    add(head + (" | resumed after an interruption" if report.resumed else ""))
    add(f"data: {report.data_source}")
    for note in report.data_notes:
        add(f"note: {note}")
    for note in report.market_context.get("data_notes") or []:  # splits/rejected bars of candidates
        add(f"note: {note}")
    add(report.model_line or report.models.get("note") or "models: " + ", ".join(report.models.get("usable", [])))
    lines.extend(operations_lines(report))
    shown = ", ".join(f"{s} ({report.scores.get(s):+.2f})" if report.scores.get(s) is not None else s
                      for s in report.candidates)
    add(f"candidates (volume surge + momentum, plus held): {shown or 'none'}")
    macro = next((s for s in report.signals if s["agent"] == "macro_agent"), None)
    if macro:
        ctx = report.market_context
        add(f"market regime: {macro['regime']} (risk appetite {macro['risk_appetite']:+.2f}) [{_src(macro)}]"
            + (f"; realized vol {ctx['realized_vol_pct']:.1f}%, index {ctx['index_vs_sma50']:+.1%} vs SMA50"
               if ctx.get("available") else ""))
    if report.weights:
        shown_w = ", ".join(f"{a.replace('_agent', '')} {w:.2f}" for a, w in report.weights.items()
                            if a in ("market_agent", "strategy_agent"))
        lrn = report.learning
        if lrn.get("enabled", True):
            add(f"learning: {lrn.get('resolved', 0)} predictions resolved, {lrn.get('lessons', 0)} lessons, "
                f"memory {lrn.get('memory_size', 0)} situations; vote weights {shown_w}")
        else:
            add(f"learning: off (frozen equal weights); {lrn.get('resolved', 0)} predictions resolved")
    if report.data_errors:
        add(f"data errors: {len(report.data_errors)} symbol(s) skipped this cycle")
        for e in report.data_errors[:MAX_DATA_ERRORS_SHOWN]:
            add(f"  {e['message']}")
        if len(report.data_errors) > MAX_DATA_ERRORS_SHOWN:
            add(f"  ... and {len(report.data_errors) - MAX_DATA_ERRORS_SHOWN} more (--json lists all)")
    add("")
    for d in report.decisions:
        sym = d["symbol"]
        m = next((s for s in report.signals if s["symbol"] == sym and s["agent"] == "market_agent"), None)
        st = next((s for s in report.signals if s["symbol"] == sym and s["agent"] == "strategy_agent"), None)
        c = report.consensus.get(sym)
        add(f"{sym}")
        if m:
            add(f"  market    {m['direction']:<8} strength {m['strength']:.2f}  support {m['support']:.2f}"
                f"  resistance {m['resistance']:.2f}  volume {m['volume_pattern']:<7} [{_src(m)}]")
        for spec in (s for s in report.signals if s["symbol"] == sym and s["agent"] in ("sentiment_agent", "forex_agent")):
            name = spec["agent"].split("_")[0]
            if spec["source"] == "abstain":
                continue  # abstentions are listed once, below the decisions
            label = spec.get("sentiment") or spec.get("direction")
            add(f"  {name:<9} {label:<8} confidence {spec.get('confidence', spec.get('strength', 0)):.2f} [{_src(spec)}]")
        if st:
            add(f"  strategy  {st['action']:<8} confidence {st['confidence']:.2f}  entry {st['entry']:.2f}"
                f"  exit {st['exit']:.2f}  stop {st['stop_loss']:.2f}  size {st['size_pct']:.0%} [{_src(st)}]")
        if c:
            votes = ", ".join(f"{a.split('_')[0]} {v['vote']:+.2f}x{v['weight']:.2f}" for a, v in c["votes"].items())
            add(f"  consensus {c['action']:<8} score {c['score']:+.2f} ({votes})")
        rv = report.reviews[sym]
        review = rv.get("review")
        if review:
            marks = " ".join(f"{k.split('_')[0]} {'yes' if v else 'no'}" for k, v in review["votes"].items())
            add(f"  review    {review['verdict']:<8} ({marks})" + (" after a correction" if rv["revision"] else ""))
        order = d["order"]
        if order:
            add(f"  decision  {d['outcome']}: {order['side']} {order['qty']:.4f} sh (~{order['notional']:.2f} USD at {order['price']:.2f})")
        else:
            add(f"  decision  {d['outcome']}: {d['reason']}")
    abstained = sorted({f"{s['agent'].split('_')[0]} ({s['reason']})" for s in report.signals if s["source"] == "abstain"})
    if abstained:
        add("")
        add("abstained (left out of the vote): " + "; ".join(abstained))
    if report.errors:
        add("")
        add(f"errors this cycle: {len(report.errors)} (each with its recovery)")
        for e in report.errors[:MAX_DATA_ERRORS_SHOWN]:  # market/exchange ones have no model
            who = " ".join(str(x) for x in (e["agent"], e.get("symbol"), e.get("model")) if x)
            add(f"  {who} [{e['category']}]: {e['message']} -> {e['recovery']}")
    add("")
    if report.orders:
        add("orders and fills (at the next bar's open, after slippage and a fee):")
        fills = {f["symbol"]: f for f in report.fills}
        for o in report.orders:
            f = fills.get(o["symbol"])
            if f:
                add(f"  {f['side']:<4} {f['symbol']:<6} {f['qty']:.4f} @ {f['price']:.4f} on {f['fill_date']}"
                    f"  (open {f['reference_price']:.4f}, slippage {f['slippage_pct']:.3%}, fee {f['fee']:.4f} USD)")
            else:
                add(f"  {o['side']:<4} {o['symbol']:<6} not filled: {o['reason']}")
    else:
        add("orders: none")
    lines.extend(positions_lines(report))
    p = report.portfolio
    add(f"portfolio after: cash {p.get('cash', 0):.2f} USD | equity {p.get('equity', 0):.2f} USD | "
        f"exposure {p.get('exposure_pct', 0):.0%} | unrealized {p.get('unrealized_pnl', 0):+.2f} | "
        f"realized {p.get('realized_pnl', 0):+.2f} | reward {report.reward:+.2f}")
    for sym, pos in (p.get("positions") or {}).items():
        add(f"  {sym:<6} {pos['qty']:.4f} sh  avg {pos['avg_cost']:.4f}  mark {pos['price']:.4f}"
            f"  value {pos['market_value']:.2f}  unrealized {pos['unrealized_pnl']:+.2f}")
    for change in report.improvements:
        add(f"agent improver: {change['agent']} {change['target']} {change['old']} -> {change['new']} "
            f"(profile v{change['profile_version']}): {change['reason']}")
    add(f"LLM calls: {report.llm_calls}")
    return "\n".join(lines)
