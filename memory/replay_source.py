"""Reads what a decision replay needs from a run's ledger (``volt.db``), read-only.

:func:`read_history` returns a :class:`tools.learning.sim_history.ReplayHistory` of plain
JSON-serializable data: the completed cycles with their equity and cash, the agents'
orders as decided (side, quantity in the decision day's shares, kind, decision price and
plan, consensus confidence, status and reason), the broker's own orders, every fill, each
candidate's final consensus with its votes, weights and the agents' raw calls, the exit
reviews' stop proposals, the candidates analysed, the splits applied and the plans.

Sources: the ledger tables (orders, fills, cycles, corporate_actions, position_plans,
position_events, consensus_records, agent_predictions) and the cycle's message log (the
consensus, peer-review and exit-review messages carry the order as decided, which the
orders table keeps only as a quantity). A cycle without messages (an older ledger) still
replays its orders, with the kind inferred from the side.
"""

from __future__ import annotations

import json
from pathlib import Path

from memory.db import DatabaseURL, as_target, open_db
from tools.learning.sim_history import DayRecord, ReplayHistory

_EXEC_KIND = {"BUY": "entry", "SELL": "exit_review"}


def _suffix(order_id: str, portfolio: str, as_of: str, symbol: str) -> str | None:
    base = f"{portfolio}:{as_of}:{symbol}"
    return order_id[len(base) + 1:] if order_id.startswith(base + ":") else None


def _messages(conn, cycle_id: str, order: str) -> list[dict]:
    return [{"from": r["from_agent"], "to": r["to_agent"], "type": r["message_type"], "payload": json.loads(r["payload"])}
            for r in conn.execute("SELECT from_agent, to_agent, message_type, payload FROM agent_messages"
                                  f" WHERE cycle_id=? ORDER BY {order}", (cycle_id,))]


def _decided_orders(messages: list[dict]) -> tuple[dict, dict, list | None]:
    """Per symbol: the order as decided (last peer review or exit review) and the final
    consensus message; and the candidates of the cycle (prepare_cycle's status)."""
    orders, consensus, candidates = {}, {}, None
    for m in messages:
        p = m["payload"]
        if m["from"] == "consensus" and m["type"] == "consensus_result":
            consensus[p.get("symbol")] = p
        elif m["from"] == "peer_review" and m["type"] == "peer_review":
            orders[p.get("symbol")] = {**(p.get("order") or {}), "verdict": p.get("verdict")}
        elif m["from"] == "exit_review" and p.get("order"):
            orders[p.get("symbol")] = {**p["order"], "verdict": p.get("verdict")}
        elif m["from"] == "prepare_cycle" and m["type"] == "status_update" and "candidates" in p:
            candidates = list(p["candidates"])
    return orders, consensus, candidates


def read_history(ledger_path: Path | str | DatabaseURL, portfolio: str) -> ReplayHistory:
    """The recorded run of ``portfolio`` in the ledger at ``ledger_path`` (a SQLite file or a
    PostgreSQL URL; KeyError if the portfolio is unknown)."""
    path = as_target(ledger_path)
    # messages in the order written (a revised proposal's last message wins): a tie of
    # timestamps is broken by rowid (SQLite's own; an identity column on PostgreSQL)
    message_order = "timestamp, rowid"
    with open_db(path) as conn:
        row = conn.execute("SELECT starting_cash FROM portfolios WHERE id=?", (portfolio,)).fetchone()
        if row is None:
            raise KeyError(f"unknown portfolio {portfolio!r} in {path}")
        cycles = conn.execute("SELECT as_of, equity, cash FROM cycles WHERE portfolio=? ORDER BY as_of",
                              (portfolio,)).fetchall()
        order_rows = conn.execute("SELECT order_id, as_of, symbol, side, qty_requested, status, reason FROM orders"
                                  " WHERE portfolio=? ORDER BY as_of, order_id", (portfolio,)).fetchall()
        fills = {r["order_id"]: dict(r) for r in conn.execute(
            "SELECT order_id, symbol, side, qty, reference_price, price, slippage_pct, fee, realized_pnl, fill_date"
            " FROM fills WHERE portfolio=?", (portfolio,))}
        records = conn.execute("SELECT record_id, as_of, symbol, proposal, votes, weights, result FROM consensus_records"
                               " WHERE portfolio=? ORDER BY as_of, record_id", (portfolio,)).fetchall()
        calls: dict[tuple[str, str], dict] = {}
        for r in conn.execute("SELECT as_of, symbol, agent, action, confidence, signal FROM agent_predictions"
                              " WHERE portfolio=?", (portfolio,)):
            calls.setdefault((r["as_of"], r["symbol"]), {})[r["agent"]] = {
                "action": r["action"], "confidence": r["confidence"], "signal": r["signal"]}
        tightens: dict[str, list] = {}
        for r in conn.execute("SELECT as_of, symbol, detail FROM position_events WHERE portfolio=? AND kind IN"
                              " ('tighten', 'tighten_refused') ORDER BY as_of, created_at", (portfolio,)):
            proposal = json.loads(r["detail"]).get("proposal")
            if proposal:
                tightens.setdefault(r["as_of"], []).append({"symbol": r["symbol"], "proposal": proposal})
        splits = [dict(r) for r in conn.execute(
            "SELECT symbol, ex_date, ratio, qty_before, qty_after FROM corporate_actions WHERE portfolio=?"
            " ORDER BY ex_date, symbol", (portfolio,))]
        plans = [{**dict(r), "plan": json.loads(r["plan"])} for r in conn.execute(
            "SELECT plan_id, symbol, opened, plan, status, closed, exit_kind, exit_price FROM position_plans"
            " WHERE portfolio=? ORDER BY opened, symbol", (portfolio,))]
        messages = {c["as_of"]: _messages(conn, f"{portfolio}:{c['as_of']}", message_order) for c in cycles}

    exit_kinds = {(p["symbol"], p["closed"]): p["exit_kind"] for p in plans if p["status"] == "closed"}
    by_day: dict[str, list] = {}
    for r in records:  # the last revision of a symbol's consensus wins
        by_day.setdefault(r["as_of"], []).append(r)
    days = []
    for c in cycles:
        day = c["as_of"]
        decided, consensus, candidates = _decided_orders(messages.get(day, []))
        kinds = {m["payload"].get("order_id"): m["payload"].get("kind") for m in messages.get(day, [])
                 if m["type"] == "execution_complete" and m["payload"].get("status") == "FILLED"}
        rec = DayRecord(as_of=day, equity=c["equity"], cash=c["cash"], candidates=candidates)
        for o in (r for r in order_rows if r["as_of"] == day):
            suffix = _suffix(o["order_id"], portfolio, day, o["symbol"])
            fill = fills.get(o["order_id"])
            if suffix is None:
                d = decided.get(o["symbol"]) or {}
                c_msg = consensus.get(o["symbol"]) or {}
                kind = d.get("kind") or _EXEC_KIND[o["side"]]
                rec.orders.append({
                    "symbol": o["symbol"], "side": o["side"], "qty": o["qty_requested"], "kind": kind,
                    "price": d.get("price"), "plan": d.get("plan"), "verdict": d.get("verdict"),
                    "confidence": c_msg.get("confidence", 0.0), "status": o["status"], "reason": o["reason"]})
            else:
                kind = kinds.get(o["order_id"]) or suffix
                rec.broker_orders.append({"symbol": o["symbol"], "side": o["side"], "suffix": suffix,
                                          "status": o["status"], "reason": o["reason"]})
            if fill is not None:
                kind = kinds.get(o["order_id"]) or (rec.orders[-1]["kind"] if suffix is None else
                                                    exit_kinds.get((o["symbol"], fill["fill_date"]), suffix))
                rec.fills.append({**fill, "kind": kind})
        latest: dict[str, dict] = {}
        for r in by_day.get(day, []):
            latest[r["symbol"]] = r  # record ids sort by revision within a symbol
        for symbol, r in latest.items():
            proposal, c_msg = json.loads(r["proposal"]), consensus.get(symbol) or {}
            rec.proposals.append({
                "symbol": symbol, **proposal, "votes": json.loads(r["votes"]), "weights": json.loads(r["weights"]),
                "result": r["result"], "score": c_msg.get("score"), "confidence": c_msg.get("confidence"),
                "model": c_msg.get("model"), "threshold": c_msg.get("threshold"),
                "held": symbol in decided and (decided[symbol].get("kind") or "").endswith("_review"),
                "calls": calls.get((day, symbol), {})})
        rec.tightens = tightens.get(day, [])
        days.append(rec)
    return ReplayHistory(portfolio=portfolio, starting_cash=float(row["starting_cash"]), days=days,
                         splits_applied=splits, plans=plans)
