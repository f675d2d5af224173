"""Read-only data access for the dashboard: every query on a short-lived ``mode=ro`` connection.

The dashboard must never slow down or block a running cycle, so nothing here writes:
SQLite files are opened through ``file:<path>?mode=ro`` URIs with ``PRAGMA query_only`` and a
busy timeout (a reader in WAL mode never blocks the writer and is not blocked by it); the
portfolio lock is never taken. A WAL database whose ``-wal`` file is absent (no writer has it
open) is opened ``immutable`` as well, because a plain read-only open would create the
``-wal``/``-shm`` files in the user's home.

Results are cached per portfolio keyed on the ledger's *stamp* (cycle count and the last
cycle's completion time): a refresh that finds no new cycle answers from memory, and a new
cycle invalidates everything for that portfolio at once. Money is in the portfolio's
currency, returns and rates are fractions (0.05 = 5 %), days are ``YYYY-MM-DD`` strings.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

DUST = 1e-6  # a position smaller than this many shares is closed (float residue of a sale)
NOT_RECORDED = "not recorded in this home yet"


def ro_connect(path: Path, timeout_s: float = 2.0) -> sqlite3.Connection:
    """A read-only connection that creates no file: ``mode=ro`` (``immutable`` when no writer
    has the WAL open), ``query_only``, ``busy_timeout`` of ``timeout_s`` seconds."""
    path = Path(path)
    immutable = "" if Path(f"{path}-wal").exists() else "&immutable=1"
    conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro{immutable}", uri=True,
                           timeout=timeout_s, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA query_only = 1")
    conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
    return conn


class HomeData:
    """The ledger of one VOLT home (``home/volt.db``), read-only and cached per cycle stamp."""

    def __init__(self, home: Path | str, runs_dir: Path | str | None = None, database_url: str | None = None):
        self.home = Path(home)
        self.ledger = self.home / "volt.db"
        # VOLT_DATABASE_URL: the ledger is in PostgreSQL (memory/pg.py); ops.db and logs stay in the home
        self.database = None
        self._schema_seen = False  # once VOLT's tables are there they stay: checked until then
        if database_url:
            from memory.db import DatabaseURL

            self.database = DatabaseURL(database_url)
        self.runs_dir = Path(runs_dir) if runs_dir else None
        self._cache: dict[tuple, tuple[tuple, Any]] = {}
        self._lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------------------
    def _pg_query(self, sql: str, params: tuple) -> list[dict]:
        """On PostgreSQL: in a READ ONLY transaction (MVCC: a reader never blocks a writer),
        rolled back; [] while the database has no VOLT schema (nothing is created here; the
        schema check is one round trip, made only until the schema is there)."""
        from memory.db import open_db

        if not self._schema_seen:
            if not self.database.exists():
                return []
            self._schema_seen = True
        with open_db(self.database) as conn:
            conn.execute("BEGIN READ ONLY")
            try:
                return [dict(r) for r in conn.execute(sql, params).fetchall()]
            finally:
                conn.execute("ROLLBACK")

    def query(self, sql: str, params: tuple = ()) -> list[dict]:
        """Rows as dicts; [] when there is no ledger yet, or while a running cycle is still
        creating its tables (a first cycle writes the schema table by table). One connection
        per call."""
        if self.database is not None:
            return self._pg_query(sql, params)
        if not self.ledger.exists():
            return []
        conn = ro_connect(self.ledger)
        try:
            return [dict(r) for r in conn.execute(sql, params).fetchall()]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            conn.close()

    def tables(self) -> set[str]:
        if self.database is not None:
            return {r["name"] for r in self.query("SELECT table_name AS name FROM information_schema.tables"
                                                  " WHERE table_schema = current_schema()")}
        return {r["name"] for r in self.query("SELECT name FROM sqlite_master WHERE type='table'")}

    def has_table(self, name: str) -> bool:
        return name in self.tables()

    def stamp(self, portfolio: str) -> tuple:
        """(cycles, last as_of, last completed_at): changes exactly when a cycle lands."""
        if not self.has_table("cycles"):
            return (0, None, None)
        row = self.query("SELECT COUNT(*) AS n, MAX(as_of) AS last, MAX(completed_at) AS done"
                         " FROM cycles WHERE portfolio=?", (portfolio,))[0]
        return (row["n"], row["last"], row["done"])

    def cached(self, portfolio: str, key: str, fn: Callable[[], Any], *args: Any) -> Any:
        """``fn()`` once per (portfolio, key, args) and ledger stamp."""
        stamp = self.stamp(portfolio)
        full = (portfolio, key, *args)
        with self._lock:
            hit = self._cache.get(full)
            if hit is not None and hit[0] == stamp:
                return hit[1]
        value = fn()
        with self._lock:
            self._cache[full] = (stamp, value)
        return value

    # -- portfolios and the ledger -------------------------------------------------------
    def portfolios(self) -> list[str]:
        if not self.has_table("portfolios"):
            return []
        return [r["id"] for r in self.query("SELECT id FROM portfolios ORDER BY id")]

    def portfolio(self, portfolio: str) -> dict | None:
        rows = self.query("SELECT * FROM portfolios WHERE id=?", (portfolio,))
        return rows[0] if rows else None

    def cycles(self, portfolio: str) -> pd.DataFrame:
        """One row per completed cycle: as_of, equity, cash, reward, completed_at, exposure
        (1 - cash / equity)."""
        def load() -> pd.DataFrame:
            frame = pd.DataFrame(self.query(
                "SELECT as_of, equity, cash, reward, completed_at FROM cycles WHERE portfolio=?"
                " ORDER BY as_of", (portfolio,)), columns=["as_of", "equity", "cash", "reward", "completed_at"])
            frame["exposure"] = (1 - frame["cash"] / frame["equity"]).where(frame["equity"] > 0, 0.0)
            return frame
        return self.cached(portfolio, "cycles", load)

    def fills(self, portfolio: str) -> pd.DataFrame:
        """Every fill, newest first, with the slippage cost in money (|price - reference| x qty)."""
        def load() -> pd.DataFrame:
            rows = self.query("SELECT f.*, o.as_of FROM fills f JOIN orders o USING(order_id)"
                              " WHERE f.portfolio=? ORDER BY f.fill_date DESC, f.symbol", (portfolio,))
            frame = pd.DataFrame(rows, columns=["order_id", "as_of", "symbol", "side", "qty", "reference_price",
                                                "price", "slippage_pct", "fee", "realized_pnl", "fill_date"])
            frame["slippage_cost"] = (frame["price"] - frame["reference_price"]).abs() * frame["qty"]
            return frame
        return self.cached(portfolio, "fills", load)

    def positions(self, portfolio: str) -> pd.DataFrame:
        """Open positions (dust below :data:`DUST` shares left out)."""
        return pd.DataFrame(self.query(
            "SELECT symbol, qty, avg_cost FROM positions WHERE portfolio=? AND ABS(qty) >= ? ORDER BY symbol",
            (portfolio, DUST)), columns=["symbol", "qty", "avg_cost"])

    def opened_on(self, portfolio: str) -> dict[str, str]:
        """Symbol -> fill day of the BUY that opened its current position (time in trade)."""
        opened: dict[str, str] = {}
        qty: dict[str, float] = {}
        for r in self.query("SELECT symbol, side, qty, fill_date FROM fills WHERE portfolio=?"
                            " ORDER BY fill_date, created_at", (portfolio,)):
            before = qty.get(r["symbol"], 0.0)
            after = before + (r["qty"] if r["side"] == "BUY" else -r["qty"])
            if abs(before) < DUST and abs(after) >= DUST:
                opened[r["symbol"]] = r["fill_date"]
            qty[r["symbol"]] = after
        return opened

    def plans(self, portfolio: str) -> pd.DataFrame | None:
        """Position plans (stop, target, horizon) when this home records them, else None."""
        if not self.has_table("position_plans"):
            return None
        rows = self.query("SELECT * FROM position_plans WHERE portfolio=?", (portfolio,))
        for row in rows:  # the plan itself may be one JSON column (stop, target, horizon_days...)
            plan = _json(row.pop("plan", None))
            if isinstance(plan, dict):
                for key in ("stop", "target", "horizon_days", "trailing_pct", "entry"):
                    row.setdefault(key, plan.get(key))
        return pd.DataFrame(rows)

    # -- decisions -----------------------------------------------------------------------
    def cycle_days(self, portfolio: str) -> list[str]:
        return list(self.cycles(portfolio)["as_of"])

    def consensus(self, portfolio: str, as_of: str) -> list[dict]:
        """Consensus records of one cycle (proposal, votes, weights parsed), by symbol and round."""
        rows = self.query("SELECT * FROM consensus_records WHERE portfolio=? AND as_of=? ORDER BY symbol, record_id",
                          (portfolio, as_of))
        for r in rows:
            for key in ("proposal", "votes", "weights"):
                r[key] = _json(r[key])
            r["revision"] = int(str(r["record_id"]).rsplit(":", 1)[-1]) if ":" in r["record_id"] else 0
        return rows

    def predictions(self, portfolio: str, as_of: str, symbol: str | None = None) -> list[dict]:
        sql = ("SELECT agent, source, model, profile_version, prompt_version, symbol, action, confidence, signal,"
               " resolved, realized_return, hit FROM agent_predictions WHERE portfolio=? AND as_of=?")
        params: tuple = (portfolio, as_of)
        if symbol:
            sql, params = sql + " AND symbol=?", (*params, symbol)
        return self.query(sql + " ORDER BY symbol, agent", params)

    def cycle_messages(self, portfolio: str, as_of: str, symbol: str | None = None) -> list[dict]:
        """Messages of one cycle in time order; with ``symbol``, those whose payload names it."""
        rows = self.query("SELECT timestamp, from_agent, to_agent, message_type, priority, payload FROM agent_messages"
                          " WHERE cycle_id=? ORDER BY timestamp, message_id", (f"{portfolio}:{as_of}",))
        if symbol:
            rows = [r for r in rows if _json(r["payload"]).get("symbol") == symbol]
        return rows

    def orders(self, portfolio: str, as_of: str) -> list[dict]:
        return self.query("SELECT o.symbol, o.side, o.qty_requested, o.status, o.reason, f.qty, f.price, f.fee,"
                          " f.fill_date FROM orders o LEFT JOIN fills f USING(order_id)"
                          " WHERE o.portfolio=? AND o.as_of=? ORDER BY o.symbol", (portfolio, as_of))

    # -- learning ------------------------------------------------------------------------
    def weight_history(self, portfolio: str) -> pd.DataFrame:
        return self.cached(portfolio, "weights", lambda: pd.DataFrame(self.query(
            "SELECT agent, as_of, weight FROM weight_history WHERE portfolio=? ORDER BY as_of, agent",
            (portfolio,)), columns=["agent", "as_of", "weight"]))

    def agent_scores(self, portfolio: str) -> pd.DataFrame:
        """Per agent over resolved predictions: n, accuracy (hit rate), IC (Pearson correlation
        of signal with realized return; NaN with fewer than 3 or constant values)."""
        def load() -> pd.DataFrame:
            frame = pd.DataFrame(self.query(
                "SELECT agent, signal, confidence, hit, realized_return FROM agent_predictions"
                " WHERE portfolio=? AND resolved=1 AND hit IS NOT NULL", (portfolio,)),
                columns=["agent", "signal", "confidence", "hit", "realized_return"])
            out = []
            for agent, g in frame.groupby("agent"):
                ic = g["signal"].corr(g["realized_return"]) if len(g) >= 3 else float("nan")
                out.append({"agent": agent, "n": len(g), "accuracy": g["hit"].mean(), "ic": ic})
            return pd.DataFrame(out, columns=["agent", "n", "accuracy", "ic"])
        return self.cached(portfolio, "scores", load)

    def calibration(self, portfolio: str, bins: int = 5) -> pd.DataFrame:
        """Hit rate per confidence bin (equal width over 0..1) and agent: agent, bin (mid), hit_rate, n."""
        def load() -> pd.DataFrame:
            frame = pd.DataFrame(self.query(
                "SELECT agent, confidence, hit FROM agent_predictions WHERE portfolio=? AND resolved=1"
                " AND hit IS NOT NULL", (portfolio,)), columns=["agent", "confidence", "hit"])
            frame["bin"] = ((frame["confidence"].clip(0, 0.9999) * bins).astype(int) + 0.5) / bins
            grouped = frame.groupby(["agent", "bin"])["hit"].agg(["mean", "count"]).reset_index()
            return grouped.rename(columns={"mean": "hit_rate", "count": "n"})
        return self.cached(portfolio, "calibration", load, bins)

    def rl_actions(self, portfolio: str) -> pd.DataFrame | None:
        """The RL controller's rows (ledger table ``rl_actions``, migration 5), oldest first:
        as_of, policy (its id, or 'none'), observation (dict: feature name -> value; {} when
        unreadable), action (the size multiplier the policy chose) and applied (the multiplier
        after the hard limits clipped it). None when the ledger predates the table; an empty
        frame when the controller is off (it records nothing then)."""
        if not self.has_table("rl_actions"):
            return None

        def load() -> pd.DataFrame:
            rows = self.query("SELECT as_of, policy, observation, action, applied FROM rl_actions"
                              " WHERE portfolio=? ORDER BY as_of", (portfolio,))
            for row in rows:
                observed = _json(row["observation"])
                row["observation"] = observed if isinstance(observed, dict) else {}
            return pd.DataFrame(rows, columns=["as_of", "policy", "observation", "action", "applied"])
        return self.cached(portfolio, "rl_actions", load)

    # -- messages, evolution, errors -------------------------------------------------------
    def message_counts(self, portfolio: str) -> pd.DataFrame:
        """Messages per cycle day, type, priority, sender and receiver (column n)."""
        return self.cached(portfolio, "message_counts", lambda: pd.DataFrame(self.query(
            "SELECT substr(cycle_id, length(?) + 2) AS as_of, message_type, priority, from_agent, to_agent,"
            " COUNT(*) AS n FROM agent_messages WHERE cycle_id LIKE ? ESCAPE '\\' GROUP BY 1, 2, 3, 4, 5",
            (portfolio, _like_prefix(portfolio))),
            columns=["as_of", "message_type", "priority", "from_agent", "to_agent", "n"]))

    def parameter_changes(self, portfolio: str) -> pd.DataFrame:
        return self.cached(portfolio, "changes", lambda: pd.DataFrame(self.query(
            "SELECT change_id, agent, target, old_value, new_value, reason, as_of, accuracy_before, rolled_back"
            " FROM parameter_changes WHERE portfolio=? ORDER BY change_id", (portfolio,)),
            columns=["change_id", "agent", "target", "old_value", "new_value", "reason", "as_of",
                     "accuracy_before", "rolled_back"]))

    def profiles(self, portfolio: str) -> pd.DataFrame:
        return self.cached(portfolio, "profiles", lambda: pd.DataFrame(self.query(
            "SELECT agent, version, model_chain, confidence_threshold, timeout_s, prompt_version, reason, created_at"
            " FROM agent_profiles WHERE portfolio=? ORDER BY agent, version", (portfolio,)),
            columns=["agent", "version", "model_chain", "confidence_threshold", "timeout_s", "prompt_version",
                     "reason", "created_at"]))

    def prompt_versions(self, portfolio: str) -> pd.DataFrame:
        """Prediction counts per agent, source, model and prompt version."""
        return self.cached(portfolio, "prompts", lambda: pd.DataFrame(self.query(
            "SELECT agent, source, COALESCE(model, '') AS model, COALESCE(prompt_version, '') AS prompt_version,"
            " COUNT(*) AS n, MIN(as_of) AS first, MAX(as_of) AS last FROM agent_predictions WHERE portfolio=?"
            " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4", (portfolio,)),
            columns=["agent", "source", "model", "prompt_version", "n", "first", "last"]))

    def error_counts(self, portfolio: str) -> pd.DataFrame:
        return self.cached(portfolio, "errors", lambda: pd.DataFrame(self.query(
            "SELECT category, agent, COUNT(*) AS n, MAX(timestamp) AS last FROM agent_errors WHERE portfolio=?"
            " GROUP BY 1, 2 ORDER BY n DESC", (portfolio,)), columns=["category", "agent", "n", "last"]))

    # -- backtest and evaluation runs --------------------------------------------------------
    def runs(self) -> list[dict]:
        """Every ``summary.json`` under the runs folder (two levels deep at most), newest first;
        an unreadable file is listed with its error instead of its figures."""
        if self.runs_dir is None or not self.runs_dir.is_dir():
            return []
        found = []
        for path in sorted({*self.runs_dir.glob("summary.json"), *self.runs_dir.glob("*/summary.json"),
                            *self.runs_dir.glob("*/*/summary.json")}):
            try:
                summary = json.loads(path.read_text())
                if not isinstance(summary, dict):
                    raise ValueError("not a JSON object")
                found.append({"path": str(path), "summary": summary, "mtime": path.stat().st_mtime})
            except (OSError, ValueError) as exc:
                found.append({"path": str(path), "error": str(exc).splitlines()[0][:160], "mtime": 0.0})
        return sorted(found, key=lambda r: -r["mtime"])


def _json(text: str | None) -> Any:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict | list) else {}


def _like_prefix(portfolio: str) -> str:
    escaped = portfolio.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}:%"
