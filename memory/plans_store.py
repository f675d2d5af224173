"""Position plans, their timeline and the protections' per-cycle state, in the ledger file.

A mixin of :class:`memory.ledger.Ledger` (same SQLite file, migration 4). Every write is
idempotent, keyed by the cycle's day, so a cycle resumed after a crash records nothing
twice: a plan is opened once per position (``portfolio:symbol:opened``), an event once per
(plan, day, kind), an exit closes an open plan only.
"""

from __future__ import annotations

import json
from pathlib import Path

from memory.db import begin_write, open_db
from tools.trading.plans import merge_add


class PlanStore:
    path: Path

    def open_plans(self, portfolio: str) -> dict[str, dict]:
        """Open plans by symbol: ``{"plan_id", "opened", "plan": {...}}``."""
        with open_db(self.path) as conn:
            rows = conn.execute("SELECT plan_id, symbol, opened, plan FROM position_plans"
                                " WHERE portfolio=? AND status='open'", (portfolio,)).fetchall()
        return {r["symbol"]: {"plan_id": r["plan_id"], "opened": r["opened"], "plan": json.loads(r["plan"])}
                for r in rows}

    def open_plan(self, portfolio: str, symbol: str, as_of: str, plan: dict, fill: dict) -> str:
        """Record the plan of a fill that opened a position, or merge an add into the open
        plan (the stop only tightens; the opening day and horizon stay, so adding never
        extends a trade's life). Returns the plan id."""
        with open_db(self.path) as conn:
            begin_write(conn, portfolio)
            row = conn.execute("SELECT plan_id, plan FROM position_plans WHERE portfolio=? AND symbol=?"
                               " AND status='open'", (portfolio, symbol)).fetchone()
            if row is None:
                plan_id = f"{portfolio}:{symbol}:{plan['opened']}"
                conn.execute("INSERT INTO position_plans(plan_id, portfolio, symbol, opened, plan)"
                             " VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING", (plan_id, portfolio, symbol, plan["opened"], json.dumps(plan)))
                self._event(conn, plan_id, portfolio, symbol, as_of, "entry", {"plan": plan, "fill": fill})
            else:
                plan_id, current = row["plan_id"], json.loads(row["plan"])
                done = conn.execute("SELECT 1 FROM position_events WHERE plan_id=? AND as_of=? AND kind='add'",
                                    (plan_id, as_of)).fetchone()
                if done is None:
                    merged = merge_add(current, plan)
                    conn.execute("UPDATE position_plans SET plan=? WHERE plan_id=?", (json.dumps(merged), plan_id))
                    self._event(conn, plan_id, portfolio, symbol, as_of, "add",
                                {"fill": fill, "stop": merged.get("stop")})
            conn.execute("COMMIT")
            return plan_id

    def update_plan(self, plan_id: str, plan: dict, *, as_of: str | None = None, kind: str | None = None,
                    detail: dict | None = None) -> None:
        """Store a plan's new state (a moved trailing anchor, a tightened stop), with an
        event when ``kind`` is given."""
        with open_db(self.path) as conn:
            begin_write(conn, plan_id.split(":", 1)[0])  # plan ids are portfolio:symbol:opened
            row = conn.execute("SELECT portfolio, symbol FROM position_plans WHERE plan_id=? AND status='open'",
                               (plan_id,)).fetchone()
            if row is not None:
                conn.execute("UPDATE position_plans SET plan=? WHERE plan_id=?", (json.dumps(plan), plan_id))
                if kind:
                    self._event(conn, plan_id, row["portfolio"], row["symbol"], as_of or plan.get("opened", ""),
                                kind, detail or {})
            conn.execute("COMMIT")

    def add_event(self, portfolio: str, symbol: str, as_of: str, kind: str, detail: dict) -> bool:
        """An event on the symbol's open plan (a review verdict); False when none is open."""
        with open_db(self.path) as conn:
            row = conn.execute("SELECT plan_id FROM position_plans WHERE portfolio=? AND symbol=? AND status='open'",
                               (portfolio, symbol)).fetchone()
            if row is None:
                return False
            self._event(conn, row["plan_id"], portfolio, symbol, as_of, kind, detail)
            return True

    def close_plan(self, portfolio: str, symbol: str, as_of: str, *, closed: str, kind: str,
                   price: float | None, detail: dict | None = None) -> str | None:
        """Close the symbol's open plan (exit ``kind``: stop, target, time, exit_review, ...);
        a no-op when none is open. Returns the plan id closed."""
        with open_db(self.path) as conn:
            begin_write(conn, portfolio)
            row = conn.execute("SELECT plan_id FROM position_plans WHERE portfolio=? AND symbol=? AND status='open'",
                               (portfolio, symbol)).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                return None
            conn.execute("UPDATE position_plans SET status='closed', closed=?, exit_kind=?, exit_price=?"
                         " WHERE plan_id=?", (closed, kind, price, row["plan_id"]))
            self._event(conn, row["plan_id"], portfolio, symbol, as_of, "exit",
                        {"kind": kind, "price": price, "closed": closed, **(detail or {})})
            conn.execute("COMMIT")
            return row["plan_id"]

    def timeline(self, portfolio: str, symbol: str | None = None) -> list[dict]:
        """Every plan (open and closed), oldest first, with its events in order."""
        sql, args = "SELECT * FROM position_plans WHERE portfolio=?", [portfolio]
        if symbol:
            sql += " AND symbol=?"
            args.append(symbol)
        with open_db(self.path) as conn:
            plans = [dict(r) for r in conn.execute(sql + " ORDER BY opened, symbol", args)]
            for p in plans:
                p["plan"] = json.loads(p["plan"])
                p["events"] = [{**dict(e), "detail": json.loads(e["detail"])} for e in conn.execute(
                    "SELECT as_of, kind, detail FROM position_events WHERE plan_id=? ORDER BY as_of, created_at",
                    (p["plan_id"],))]
        return plans

    @staticmethod
    def _event(conn, plan_id: str, portfolio: str, symbol: str, as_of: str, kind: str, detail: dict) -> None:
        conn.execute("INSERT INTO position_events(plan_id, portfolio, symbol, as_of, kind, detail)"
                     " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING", (plan_id, portfolio, symbol, as_of, kind, json.dumps(detail, default=str)))

    # ------------------------------------------------------------------ protections

    def record_protections(self, portfolio: str, as_of: str, state: dict) -> bool:
        """The protections' state decided for a cycle; True when newly recorded (a resumed
        cycle keeps the first record, so an alert on a new halt is raised once)."""
        with open_db(self.path) as conn:
            cur = conn.execute("INSERT INTO cycle_protections(portfolio, as_of, state) VALUES (?,?,?) ON CONFLICT DO NOTHING",
                               (portfolio, as_of, json.dumps(state, default=str)))
            return cur.rowcount > 0

    def record_order_outcomes(self, portfolio: str, as_of: str, orders: int, failed: int) -> None:
        with open_db(self.path) as conn:
            conn.execute("INSERT INTO cycle_protections(portfolio, as_of, state, orders, failed) VALUES (?,?,'{}',?,?)"
                         " ON CONFLICT(portfolio, as_of) DO UPDATE SET orders=excluded.orders, failed=excluded.failed",
                         (portfolio, as_of, int(orders), int(failed)))

    def protection_history(self, portfolio: str, before: str) -> list[dict]:
        """Per cycle before ``before`` (oldest first): as_of, orders, failed, state."""
        with open_db(self.path) as conn:
            rows = conn.execute("SELECT as_of, orders, failed, state FROM cycle_protections WHERE portfolio=?"
                                " AND as_of < ? ORDER BY as_of", (portfolio, before)).fetchall()
        return [{"as_of": r["as_of"], "orders": r["orders"] or 0, "failed": r["failed"] or 0,
                 "state": json.loads(r["state"])} for r in rows]
