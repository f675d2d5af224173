"""The RL controller's rows in the ledger file (``rl_actions``, migration 5), and what its
observation reads from the learning store (the previous cycle's predictions, the resolved
history that calibrates them).

One row per (portfolio, cycle day), written once: a cycle resumed after a crash keeps the
row its first run wrote (``ON CONFLICT DO NOTHING``), so the record says what was applied then.
"""

from __future__ import annotations

import json
from pathlib import Path

from memory.db import DatabaseURL, open_db


def record_action(path: Path | DatabaseURL, portfolio: str, as_of: str, *, policy: str, observation: dict,
                  action: float, applied: float) -> bool:
    """Store the cycle's observation (feature name -> value), the multiplier the policy chose
    (``action``) and the one applied after the clip; False when the cycle's row was already there."""
    with open_db(path) as conn:
        cur = conn.execute("INSERT INTO rl_actions(portfolio, as_of, policy, observation, action, applied)"
                           " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                           (portfolio, as_of, policy, json.dumps(observation), float(action), float(applied)))
        return cur.rowcount > 0


def actions(path: Path, portfolio: str) -> list[dict]:
    """The recorded rows, oldest first, with the observation decoded."""
    with open_db(path) as conn:
        rows = conn.execute("SELECT portfolio, as_of, policy, observation, action, applied FROM rl_actions"
                            " WHERE portfolio=? ORDER BY as_of", (portfolio,)).fetchall()
    return [{**dict(r), "observation": json.loads(r["observation"])} for r in rows]


def cycle_predictions(path: Path, portfolio: str, as_of: str | None = None) -> list[dict]:
    """Predictions (``as_of``, ``agent``, ``signal``) of one cycle day, or of every day when
    ``as_of`` is None, oldest first."""
    sql = "SELECT as_of, agent, signal FROM agent_predictions WHERE portfolio=?"
    args: list = [portfolio]
    if as_of is not None:
        sql += " AND as_of=?"
        args.append(as_of)
    with open_db(path) as conn:
        return [dict(r) for r in conn.execute(sql + " ORDER BY as_of, agent, symbol", args)]


def resolved_history(path: Path, portfolio: str, before: str | None = None) -> list[dict]:
    """Resolved predictions (``agent``, ``signal``, ``hit``, ``resolved_as_of``), resolved
    strictly before ``before`` (YYYY-MM-DD) when given: what calibrates the signals."""
    sql = ("SELECT agent, signal, hit, resolved_as_of FROM agent_predictions"
           " WHERE portfolio=? AND resolved=1 AND hit IS NOT NULL")
    args: list = [portfolio]
    if before is not None:
        sql += " AND resolved_as_of < ?"
        args.append(before)
    with open_db(path) as conn:
        return [dict(r) for r in conn.execute(sql, args)]
