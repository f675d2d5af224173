"""Vote weights per portfolio and agent. Equal (1.0) until learned or set by hand; learned
weights average 1.0 within their pool (voters, reviewers: nodes/learning_agent.py)."""

from __future__ import annotations

from pathlib import Path

from memory.db import DatabaseURL, as_target, open_db, utc_stamp

DEFAULT_WEIGHT = 1.0


def read_weights(path: Path | DatabaseURL, portfolio: str, agents: list[str]) -> dict[str, float]:
    with open_db(as_target(path)) as conn:
        stored = {r["agent"]: r["weight"] for r in conn.execute(
            "SELECT agent, weight FROM agent_weights WHERE portfolio=?", (portfolio,))}
    return {a: float(stored.get(a, DEFAULT_WEIGHT)) for a in agents}


def write_weight(path: Path | DatabaseURL, portfolio: str, agent: str, weight: float, conn=None) -> None:
    """Set one weight; each write bumps the agent's weight version."""
    if not weight >= 0:
        raise ValueError(f"weight must be >= 0, got {weight!r}")
    sql = ("INSERT INTO agent_weights(portfolio, agent, weight, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(portfolio, agent)"
           " DO UPDATE SET weight=excluded.weight, version=agent_weights.version+1,"
           " updated_at=excluded.updated_at")
    args = (portfolio, agent, weight, utc_stamp())
    if conn is not None:
        conn.execute(sql, args)
        return
    with open_db(as_target(path)) as own:
        own.execute(sql, args)
