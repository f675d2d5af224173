"""Vote weights per portfolio and agent. Equal (1.0) until learned or set by hand; learned
weights average 1.0 within their pool (voters, reviewers: nodes/learning_agent.py)."""

from __future__ import annotations

from pathlib import Path

from memory.db import open_db

DEFAULT_WEIGHT = 1.0


def read_weights(path: Path, portfolio: str, agents: list[str]) -> dict[str, float]:
    with open_db(Path(path)) as conn:
        stored = {r["agent"]: r["weight"] for r in conn.execute(
            "SELECT agent, weight FROM agent_weights WHERE portfolio=?", (portfolio,))}
    return {a: float(stored.get(a, DEFAULT_WEIGHT)) for a in agents}


def write_weight(path: Path, portfolio: str, agent: str, weight: float, conn=None) -> None:
    """Set one weight; each write bumps the agent's weight version."""
    if not weight >= 0:
        raise ValueError(f"weight must be >= 0, got {weight!r}")
    sql = ("INSERT INTO agent_weights(portfolio, agent, weight) VALUES (?, ?, ?) ON CONFLICT(portfolio, agent)"
           " DO UPDATE SET weight=excluded.weight, version=agent_weights.version+1,"
           " updated_at=strftime('%Y-%m-%dT%H:%M:%fZ','now')")
    if conn is not None:
        conn.execute(sql, (portfolio, agent, weight))
        return
    with open_db(Path(path)) as own:
        own.execute(sql, (portfolio, agent, weight))
