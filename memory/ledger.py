"""The paper ledger: portfolios, positions, orders, fills and completed cycles (SQLite or PostgreSQL).

Fills are idempotent per order id (``portfolio:as_of:symbol``): :meth:`Ledger.record_fill`
checks and writes inside one ``BEGIN IMMEDIATE`` transaction (on PostgreSQL: a transaction
holding the portfolio's write lock, memory/pg.py), so a cycle resumed after a crash, or a
second worker racing on the same order, finds the earlier fill instead of filling twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from memory.db import DatabaseURL, as_target, begin_write, open_db
from memory.plans_store import PlanStore
from tools.market.corporate_actions import due_splits, split_applies, split_position
from tools.portfolio import Account, Position, apply_fill


def order_id(portfolio: str, as_of: str, symbol: str) -> str:
    return f"{portfolio}:{as_of}:{symbol}"


@dataclass(frozen=True)
class FillRecord:
    order_id: str
    symbol: str
    side: str
    qty: float
    reference_price: float
    price: float
    slippage_pct: float
    fee: float
    realized_pnl: float
    fill_date: str
    latency_ms: float

    def as_dict(self) -> dict:
        return {k: (round(v, 8) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


class Ledger(PlanStore):
    def __init__(self, path: Path | DatabaseURL):
        self.path = as_target(path)  # opened (and migrated) on first use

    def ensure_portfolio(self, portfolio: str, starting_cash: float) -> None:
        with open_db(self.path) as conn:
            conn.execute(
                "INSERT INTO portfolios(id, starting_cash, cash, peak_equity) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                (portfolio, starting_cash, starting_cash, starting_cash),
            )

    def account(self, portfolio: str) -> Account:
        with open_db(self.path) as conn:
            return self._account(conn, portfolio)

    @staticmethod
    def _account(conn, portfolio: str) -> Account:
        row = conn.execute("SELECT * FROM portfolios WHERE id=?", (portfolio,)).fetchone()
        if row is None:
            raise KeyError(f"unknown portfolio {portfolio!r}")
        positions = {
            r["symbol"]: Position(r["qty"], r["avg_cost"])
            for r in conn.execute("SELECT * FROM positions WHERE portfolio=?", (portfolio,))
        }
        return Account(portfolio, row["cash"], row["starting_cash"], row["peak_equity"], positions)

    def get_fill(self, oid: str) -> FillRecord | None:
        with open_db(self.path) as conn:
            row = conn.execute("SELECT * FROM fills WHERE order_id=?", (oid,)).fetchone()
        return _fill_from_row(row) if row else None

    def record_fill(
        self,
        *,
        portfolio: str,
        as_of: str,
        symbol: str,
        side: str,
        qty_requested: float,
        make_fill: Callable[[Account], FillRecord | str],
        suffix: str | None = None,
    ) -> FillRecord | str:
        """Fill one order exactly once.

        ``make_fill`` sees the current account (inside the transaction) and returns the
        fill to book, or a reason string when the order cannot fill. Returns the booked
        (or previously booked) fill, or the reason. ``suffix`` makes the broker's own
        orders (plan exits, dust close-outs: ``portfolio:as_of:symbol:exit``) distinct
        from the agents' order for the same symbol and cycle.
        """
        oid = order_id(portfolio, as_of, symbol) + (f":{suffix}" if suffix else "")
        # open_db rolls back a transaction left open by an exception
        with open_db(self.path) as conn:
            begin_write(conn, portfolio)
            existing = conn.execute("SELECT * FROM fills WHERE order_id=?", (oid,)).fetchone()
            if existing is not None:
                conn.execute("ROLLBACK")
                return _fill_from_row(existing)
            prior = conn.execute("SELECT status, reason FROM orders WHERE order_id=?", (oid,)).fetchone()
            if prior is not None and prior["status"] == "UNFILLED":
                conn.execute("ROLLBACK")
                return prior["reason"]
            account = self._account(conn, portfolio)
            result = make_fill(account)
            if isinstance(result, str):
                conn.execute(
                    "INSERT INTO orders(order_id, portfolio, as_of, symbol, side, qty_requested, status, reason)"
                    " VALUES (?,?,?,?,?,?, 'UNFILLED', ?)",
                    (oid, portfolio, as_of, symbol, side, qty_requested, result),
                )
                conn.execute("COMMIT")
                return result
            realized = apply_fill(account, symbol, side, result.qty, result.price, result.fee)
            fill = FillRecord(**{**result.__dict__, "order_id": oid, "realized_pnl": realized})
            conn.execute(
                "INSERT INTO orders(order_id, portfolio, as_of, symbol, side, qty_requested, status)"
                " VALUES (?,?,?,?,?,?, 'FILLED')",
                (oid, portfolio, as_of, symbol, side, qty_requested),
            )
            conn.execute(
                "INSERT INTO fills(order_id, portfolio, symbol, side, qty, reference_price, price,"
                " slippage_pct, fee, realized_pnl, fill_date, latency_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (oid, portfolio, symbol, side, fill.qty, fill.reference_price, fill.price,
                 fill.slippage_pct, fill.fee, fill.realized_pnl, fill.fill_date, fill.latency_ms),
            )
            conn.execute("UPDATE portfolios SET cash=? WHERE id=?", (account.cash, portfolio))
            pos = account.positions.get(symbol)
            if pos is None:
                conn.execute("DELETE FROM positions WHERE portfolio=? AND symbol=?", (portfolio, symbol))
            else:
                conn.execute(
                    "INSERT INTO positions(portfolio, symbol, qty, avg_cost) VALUES (?,?,?,?)"
                    " ON CONFLICT(portfolio, symbol) DO UPDATE SET qty=excluded.qty, avg_cost=excluded.avg_cost",
                    (portfolio, symbol, pos.qty, pos.avg_cost),
                )
            conn.execute("COMMIT")
            return fill

    def apply_splits(self, portfolio: str, splits: Mapping[str, Iterable], upto: object) -> list[dict]:
        """Convert held positions across splits effective on or before ``upto``; exactly once.

        ``splits`` maps a symbol to its splits (objects with ``ex_date`` and ``ratio``, as
        :class:`tools.market_data.Split`); ``upto`` is a day (``YYYY-MM-DD`` or a Timestamp).
        A split applies to a held position when its ex-date is after the position's last fill
        (a fill on or after the ex-date was booked in post-split shares, because this runs
        before every fill) and it is not in ``corporate_actions`` yet. It multiplies ``qty``
        by the ratio and divides ``avg_cost`` by it, so the position's cost and market value
        are unchanged (no fake P&L). One transaction; returns the actions applied now.
        """
        with open_db(self.path) as conn:
            held = {r["symbol"] for r in conn.execute("SELECT symbol FROM positions WHERE portfolio=?", (portfolio,))}
            due = due_splits(held, splits, upto)
            if not due:  # the usual case: no I/O beyond one read
                return []
            applied: list[dict] = []
            begin_write(conn, portfolio)
            for symbol, ex_date, ratio in due:
                done = conn.execute("SELECT 1 FROM corporate_actions WHERE portfolio=? AND symbol=? AND ex_date=?",
                                    (portfolio, symbol, ex_date)).fetchone()
                if done is not None:
                    continue
                last_fill = conn.execute("SELECT MAX(fill_date) FROM fills WHERE portfolio=? AND symbol=?",
                                         (portfolio, symbol)).fetchone()[0]
                if not split_applies(ratio, ex_date, last_fill):
                    continue
                pos = conn.execute("SELECT qty, avg_cost FROM positions WHERE portfolio=? AND symbol=?",
                                   (portfolio, symbol)).fetchone()
                if pos is None:
                    continue
                qty_after, avg_cost_after = split_position(pos["qty"], pos["avg_cost"], ratio)
                conn.execute("UPDATE positions SET qty=?, avg_cost=? WHERE portfolio=? AND symbol=?",
                             (qty_after, avg_cost_after, portfolio, symbol))
                conn.execute("INSERT INTO corporate_actions(portfolio, symbol, ex_date, ratio, qty_before, qty_after)"
                             " VALUES (?,?,?,?,?,?)", (portfolio, symbol, ex_date, ratio, pos["qty"], qty_after))
                applied.append({"symbol": symbol, "ex_date": ex_date, "ratio": ratio,
                                "qty_before": pos["qty"], "qty_after": qty_after})
            conn.execute("COMMIT")
            return applied

    def corporate_actions(self, portfolio: str) -> list[dict]:
        """Splits applied to this portfolio's positions, by ex-date."""
        with open_db(self.path) as conn:
            return [dict(r) for r in conn.execute(
                "SELECT symbol, ex_date, ratio, qty_before, qty_after FROM corporate_actions WHERE portfolio=?"
                " ORDER BY ex_date, symbol", (portfolio,))]

    def recent_fills(self, portfolio: str, limit: int = 10, symbol: str | None = None) -> list[dict]:
        sql = "SELECT * FROM fills WHERE portfolio=?"
        args: list = [portfolio]
        if symbol:
            sql += " AND symbol=?"
            args.append(symbol)
        sql += " ORDER BY fill_date DESC, created_at DESC LIMIT ?"
        args.append(int(limit))
        with open_db(self.path) as conn:
            return [_fill_from_row(r).as_dict() for r in conn.execute(sql, args)]

    def realized_pnl(self, portfolio: str) -> float:
        """Total realized P&L of all fills (net of the closing fees)."""
        with open_db(self.path) as conn:
            return float(conn.execute("SELECT COALESCE(SUM(realized_pnl), 0) FROM fills WHERE portfolio=?",
                                      (portfolio,)).fetchone()[0])

    def last_completed_cycle(self, portfolio: str, before: str | None = None) -> dict | None:
        """The latest completed cycle (strictly before ``before``, a YYYY-MM-DD day, if given)."""
        with open_db(self.path) as conn:
            row = conn.execute(
                "SELECT * FROM cycles WHERE portfolio=? AND as_of < ? ORDER BY as_of DESC LIMIT 1",
                (portfolio, before or "9999-12-31"),
            ).fetchone()
        return dict(row) if row else None

    def cycles(self, portfolio: str) -> list[dict]:
        """Completed cycles, oldest first: as_of, equity, cash, reward."""
        with open_db(self.path) as conn:
            return [dict(r) for r in conn.execute(
                "SELECT as_of, equity, cash, reward FROM cycles WHERE portfolio=? ORDER BY as_of", (portfolio,))]

    def complete_cycle(self, portfolio: str, as_of: str, equity: float, cash: float, reward: float) -> None:
        """Mark a cycle done (idempotent) and raise the high-water mark for the drawdown halt.

        A non-finite or non-positive equity is refused (``ValueError``): it can only come
        from a bad price, and once recorded it would poison ``peak_equity`` for good."""
        if not (math.isfinite(equity) and equity > 0 and math.isfinite(cash) and math.isfinite(reward)):
            raise ValueError(f"refusing to record equity {equity!r} (cash {cash!r}) for {portfolio} {as_of}")
        with open_db(self.path) as conn:
            conn.execute(
                "INSERT INTO cycles(portfolio, as_of, equity, cash, reward) VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                (portfolio, as_of, equity, cash, reward),
            )
            conn.execute(
                "UPDATE portfolios SET peak_equity=? WHERE id=? AND peak_equity < ?", (equity, portfolio, equity)
            )


def _fill_from_row(row) -> FillRecord:
    return FillRecord(
        order_id=row["order_id"],
        symbol=row["symbol"],
        side=row["side"],
        qty=row["qty"],
        reference_price=row["reference_price"],
        price=row["price"],
        slippage_pct=row["slippage_pct"],
        fee=row["fee"],
        realized_pnl=row["realized_pnl"],
        fill_date=row["fill_date"],
        latency_ms=row["latency_ms"],
    )
