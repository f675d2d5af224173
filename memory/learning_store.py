"""The learning store: what every agent predicted, what happened, and what changed.

Same database as the ledger (``volt.db`` or ``VOLT_DATABASE_URL``, schema migration 2). Every
write is keyed so that a resumed cycle rewrites nothing twice (``ON CONFLICT DO NOTHING`` on
stable ids).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from memory.db import DatabaseURL, as_target, begin_write, open_db
from tools.error_handler import stored_message

# every LLM agent has a versioned profile (model chain, threshold, timeout)
IMPROVABLE_AGENTS = ("market_agent", "sentiment_agent", "forex_agent", "strategy_agent", "risk_agent",
                     "auditor_agent", "macro_agent")
# agents whose per-symbol calls are scored against outcomes
ALL_PREDICTORS = ("market_agent", "sentiment_agent", "forex_agent", "strategy_agent", "risk_agent",
                  "auditor_agent", "history_reviewer", "consensus")


@dataclass
class AgentProfile:
    """Versioned per-agent configuration; version 0 is the default from settings."""

    agent: str
    version: int
    model_chain: list[str]
    confidence_threshold: float
    timeout_s: float
    prompt_version: str | None = None
    reason: str = "default"

    def as_dict(self) -> dict:
        return {"agent": self.agent, "version": self.version, "model_chain": self.model_chain,
                "confidence_threshold": self.confidence_threshold, "timeout_s": self.timeout_s,
                "prompt_version": self.prompt_version, "reason": self.reason}


class LearningStore:
    def __init__(self, path: Path | DatabaseURL):
        self.path = as_target(path)

    # predictions and outcomes ------------------------------------------------------------
    def record_predictions(self, rows: list[dict]) -> int:
        cols = ("prediction_id", "portfolio", "cycle_id", "agent", "source", "model", "profile_version",
                "prompt_version", "symbol", "as_of", "action", "confidence", "signal", "features", "horizon",
                "filled_qty", "fill_price")
        with open_db(self.path) as conn:
            return conn.executemany(
                f"INSERT INTO agent_predictions({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
                " ON CONFLICT DO NOTHING",
                [tuple(json.dumps(r[c]) if c == "features" else r.get(c) for c in cols) for r in rows],
            ).rowcount

    def pending(self, portfolio: str, before: str, *,
                made_before: Callable[[int], str | None] | None = None) -> list[dict]:
        """Unresolved predictions made before ``before``, oldest first.

        ``made_before(h)``: a date such that only a prediction of horizon ``h`` made before
        it can have its ``h`` bars by now (None: none can). The others are not read, so a
        cycle skips the four days of predictions that are still waiting for their bars."""
        sql = "SELECT * FROM agent_predictions WHERE portfolio=? AND resolved=0 AND as_of < ?"
        args: list = [portfolio, before]
        with open_db(self.path) as conn:
            if made_before is not None:
                clauses = []
                for (horizon,) in conn.execute(
                        "SELECT DISTINCT horizon FROM agent_predictions WHERE portfolio=? AND resolved=0", (portfolio,)):
                    if (cutoff := made_before(horizon)) is not None:
                        clauses.append("(horizon=? AND as_of < ?)")
                        args += [horizon, cutoff]
                if not clauses:
                    return []
                sql += " AND (" + " OR ".join(clauses) + ")"
            rows = conn.execute(sql + " ORDER BY as_of, agent, symbol", args).fetchall()
        return [_row(r) for r in rows]

    def resolve(self, updates: list[dict], conn) -> None:
        """Mark predictions resolved, inside the caller's transaction."""
        conn.executemany(
            "UPDATE agent_predictions SET resolved=1, resolved_as_of=:resolved_as_of, entry_price=:entry_price,"
            " exit_price=:exit_price, realized_return=:realized_return, hit=:hit, loss=:loss,"
            " trade_pnl=:trade_pnl, lesson=:lesson WHERE prediction_id=:prediction_id AND resolved=0",
            updates,
        )

    def resolved(self, portfolio: str, agent: str, *, limit: int | None = 20, since: str | None = None,
                 until: str | None = None) -> list[dict]:
        """Newest first: resolved predictions of ``agent`` made in [since, until)."""
        sql = "SELECT * FROM agent_predictions WHERE portfolio=? AND agent=? AND resolved=1"
        args: list = [portfolio, agent]
        if since:
            sql += " AND as_of >= ?"
            args.append(since)
        if until:
            sql += " AND as_of < ?"
            args.append(until)
        sql += " ORDER BY as_of DESC, symbol"
        if limit is not None and limit >= 0:  # None or negative: all (PostgreSQL refuses LIMIT -1)
            sql += " LIMIT ?"
            args.append(limit)
        with open_db(self.path) as conn:
            return [_row(r) for r in conn.execute(sql, args)]

    def resolved_count(self, portfolio: str, agent: str) -> int:
        """How many of ``agent``'s predictions are resolved (what the situation memory should hold)."""
        with open_db(self.path) as conn:
            return conn.execute("SELECT COUNT(*) FROM agent_predictions WHERE portfolio=? AND agent=? AND resolved=1",
                                (portfolio, agent)).fetchone()[0]

    def outcomes(self, portfolio: str, agents: list[str] | None = None, *, since: str | None = None,
                 limit: int | None = None) -> list[dict]:
        """Resolved predictions, light rows (no features), newest first by as_of: what the
        calibration, the gate, the comparators and the prompt evaluation read."""
        sql = ("SELECT agent, symbol, as_of, horizon, signal, hit, loss, realized_return, resolved_as_of,"
               " prompt_version FROM agent_predictions WHERE portfolio=? AND resolved=1")
        args: list = [portfolio]
        if agents:
            sql += f" AND agent IN ({', '.join('?' * len(agents))})"
            args += list(agents)
        if since:
            sql += " AND as_of >= ?"
            args.append(since)
        sql += " ORDER BY as_of DESC, agent, symbol"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        with open_db(self.path) as conn:
            return [dict(r) for r in conn.execute(sql, args)]

    def accuracy_table(self, portfolio: str) -> list[dict]:
        with open_db(self.path) as conn:
            return [dict(r) for r in conn.execute(
                "SELECT agent, COUNT(*) AS resolved, AVG(hit) AS accuracy, AVG(loss) AS mean_loss"
                " FROM agent_predictions WHERE portfolio=? AND resolved=1 GROUP BY agent ORDER BY agent",
                (portfolio,))]

    def counts(self, portfolio: str) -> dict[str, int]:
        with open_db(self.path) as conn:
            row = conn.execute("SELECT COUNT(*) AS n, SUM(resolved) AS r FROM agent_predictions WHERE portfolio=?",
                               (portfolio,)).fetchone()
        return {"predictions": row["n"] or 0, "resolved": row["r"] or 0}

    # errors, consensus, trades -----------------------------------------------------------
    def record_errors(self, portfolio: str, cycle_id: str, errors: list[dict]) -> None:
        """One row per error record; a record's ``count`` > 1 shows as ``" (×N)"`` in its message."""
        with open_db(self.path) as conn:
            conn.executemany(
                "INSERT INTO agent_errors(error_id, portfolio, cycle_id, agent, symbol, model, category,"
                " message, recovery_action, resolved) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                [(f"{cycle_id}:{i}", portfolio, cycle_id, e.get("agent", "data"), e.get("symbol"), e.get("model"),
                  e["category"], stored_message(e), e.get("recovery", "symbol skipped this cycle"), 1)
                 for i, e in enumerate(errors)],
            )

    def error_patterns(self, portfolio: str, agent: str | None = None) -> list[dict]:
        sql = "SELECT agent, category, COUNT(*) AS count FROM agent_errors WHERE portfolio=?"
        args: list = [portfolio]
        if agent:
            sql += " AND agent=?"
            args.append(agent)
        sql += " GROUP BY agent, category ORDER BY count DESC, agent"
        with open_db(self.path) as conn:
            return [dict(r) for r in conn.execute(sql, args)]

    def timeouts(self, portfolio: str, agent: str, since: str) -> dict[str, int]:
        """Per model: timeouts of ``agent`` in cycles on or after ``since``."""
        with open_db(self.path) as conn:
            rows = conn.execute(
                "SELECT model, COUNT(*) AS n FROM agent_errors WHERE portfolio=? AND agent=? AND category='network'"
                " AND message LIKE '%imeout%' AND substr(cycle_id, length(portfolio) + 2) >= ? GROUP BY model",
                (portfolio, agent, since)).fetchall()
        return {r["model"]: r["n"] for r in rows if r["model"]}

    def record_consensus(self, rows: list[dict]) -> None:
        with open_db(self.path) as conn:
            conn.executemany(
                "INSERT INTO consensus_records VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                [(r["record_id"], r["portfolio"], r["as_of"], r["symbol"], json.dumps(r["proposal"]),
                  json.dumps(r["votes"]), json.dumps(r["weights"]), r["result"]) for r in rows],
            )

    def record_trades(self, rows: list[dict]) -> None:
        with open_db(self.path) as conn:
            conn.executemany(
                "INSERT INTO trade_outcomes VALUES (:trade_id, :portfolio, :symbol, :action, :entry_price,"
                " :exit_price, :qty, :pnl, :duration_days, :opened, :closed, :market_condition, :errors)"
                " ON CONFLICT DO NOTHING",
                [{**r, "errors": json.dumps(r["errors"])} for r in rows],
            )

    def trades(self, portfolio: str) -> list[dict]:
        with open_db(self.path) as conn:
            rows = conn.execute("SELECT * FROM trade_outcomes WHERE portfolio=? ORDER BY closed, trade_id",
                                (portfolio,)).fetchall()
        return [{**dict(r), "errors": json.loads(r["errors"])} for r in rows]

    # weights -------------------------------------------------------------------------------
    def record_weight_history(self, portfolio: str, as_of: str, weights: dict[str, float],
                              counts: dict[str, int], conn=None) -> None:
        rows = [(portfolio, a, as_of, w, counts.get(a, 0)) for a, w in weights.items()]
        sql = ("INSERT INTO weight_history VALUES (?,?,?,?,?) ON CONFLICT(portfolio, agent, as_of)"
               " DO UPDATE SET weight=excluded.weight, resolved_count=excluded.resolved_count")
        if conn is not None:
            conn.executemany(sql, rows)
            return
        with open_db(self.path) as own:
            own.executemany(sql, rows)

    def weight_history(self, portfolio: str) -> list[dict]:
        with open_db(self.path) as conn:
            return [dict(r) for r in conn.execute(
                "SELECT agent, as_of, weight, resolved_count FROM weight_history WHERE portfolio=? ORDER BY as_of, agent",
                (portfolio,))]

    # profiles and parameter changes ---------------------------------------------------------
    def profiles(self, portfolio: str, defaults: dict[str, AgentProfile]) -> dict[str, AgentProfile]:
        with open_db(self.path) as conn:
            rows = conn.execute(
                "SELECT p.* FROM agent_profiles p JOIN (SELECT agent, MAX(version) AS v FROM agent_profiles"
                " WHERE portfolio=? GROUP BY agent) m ON p.agent=m.agent AND p.version=m.v WHERE p.portfolio=?",
                (portfolio, portfolio)).fetchall()
        out = dict(defaults)
        for r in rows:
            out[r["agent"]] = AgentProfile(r["agent"], r["version"], json.loads(r["model_chain"]),
                                           r["confidence_threshold"], r["timeout_s"], r["prompt_version"], r["reason"])
        return out

    def change_parameter(self, portfolio: str, profile: AgentProfile, *, target: str, old, new, reason: str,
                         as_of: str, accuracy_before: float | None) -> AgentProfile:
        """Write a new profile version and its parameter-change row, atomically."""
        updated = AgentProfile(profile.agent, profile.version + 1, list(profile.model_chain),
                               profile.confidence_threshold, profile.timeout_s, profile.prompt_version, reason)
        setattr(updated, target, new)
        with open_db(self.path) as conn:
            begin_write(conn, portfolio)
            conn.execute(
                "INSERT INTO agent_profiles(portfolio, agent, version, model_chain, confidence_threshold, timeout_s,"
                " prompt_version, reason) VALUES (?,?,?,?,?,?,?,?)",
                (portfolio, updated.agent, updated.version, json.dumps(updated.model_chain),
                 updated.confidence_threshold, updated.timeout_s, updated.prompt_version, reason))
            conn.execute(
                "INSERT INTO parameter_changes(portfolio, agent, target, old_value, new_value, reason, as_of,"
                " accuracy_before, evaluated) VALUES (?,?,?,?,?,?,?,?,?)",
                (portfolio, profile.agent, target, json.dumps(old), json.dumps(new), reason, as_of, accuracy_before,
                 0 if accuracy_before is not None else 1))
            conn.execute("COMMIT")
        return updated

    def parameter_changes(self, portfolio: str, *, open_only: bool = False) -> list[dict]:
        sql = "SELECT * FROM parameter_changes WHERE portfolio=?"
        if open_only:
            sql += " AND evaluated=0"
        with open_db(self.path) as conn:
            rows = conn.execute(sql + " ORDER BY change_id", (portfolio,)).fetchall()
        return [{**dict(r), "old_value": json.loads(r["old_value"]), "new_value": json.loads(r["new_value"])} for r in rows]

    def close_change(self, change_id: int, *, rolled_back: bool) -> None:
        with open_db(self.path) as conn:
            conn.execute("UPDATE parameter_changes SET evaluated=1, rolled_back=? WHERE change_id=?",
                         (int(rolled_back), change_id))


def _row(r) -> dict:
    d = dict(r)
    d["features"] = json.loads(d["features"])
    return d
