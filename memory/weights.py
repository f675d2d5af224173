"""Consensus vote weights per agent. Equal (1.0) until the learning loop writes some."""

from __future__ import annotations

from pathlib import Path

from memory.db import open_db

DEFAULT_WEIGHT = 1.0


def read_weights(path: Path, agents: list[str]) -> dict[str, float]:
    with open_db(Path(path)) as conn:
        stored = {r["agent"]: r["weight"] for r in conn.execute("SELECT agent, weight FROM agent_weights")}
    return {a: float(stored.get(a, DEFAULT_WEIGHT)) for a in agents}


def write_weight(path: Path, agent: str, weight: float) -> None:
    if not weight >= 0:
        raise ValueError(f"weight must be >= 0, got {weight!r}")
    with open_db(Path(path)) as conn:
        conn.execute(
            "INSERT INTO agent_weights(agent, weight) VALUES (?, ?) ON CONFLICT(agent) DO UPDATE"
            " SET weight=excluded.weight, version=agent_weights.version+1,"
            " updated_at=strftime('%Y-%m-%dT%H:%M:%fZ','now')",
            (agent, weight),
        )
