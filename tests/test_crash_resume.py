"""A cycle killed at any point resumes on the next run, losing and duplicating nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import scripted

from graph.run import run_cycle
from memory.db import open_db
from memory.ledger import Ledger

HELPER = Path(__file__).with_name("crash_helper.py")


def crash(mode: str, home: Path, csv: Path, database_url: str | None = None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLT_")}
    if database_url:
        env["VOLT_DATABASE_URL"] = database_url
    proc = subprocess.run([sys.executable, str(HELPER), mode, str(home), str(csv)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr[-2000:]


def table_count(settings, table: str) -> int:
    with open_db(settings.ledger_path) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


@pytest.mark.parametrize("mode", ["after_first_fill", "mid_review"])
def test_killed_cycle_resumes_without_double_fills(mode, market_csv, settings_for, tmp_path, backend):
    settings = settings_for(market_csv, top_k=3, database_url=backend.url)  # checkpoints there too
    crash(mode, settings.home, market_csv, backend.url)
    if mode == "after_first_fill":
        assert table_count(settings, "fills") == 1  # committed before the kill
    assert table_count(settings, "cycles") == 0

    resumed = run_cycle(settings, chat_model_factory=lambda spec: scripted())
    assert resumed.resumed is True
    state = resumed.state
    assert table_count(settings, "fills") == len(state["fills"]) == 3
    assert table_count(settings, "cycles") == 1

    # Same result as a run that was never interrupted (on SQLite: the same figures on both engines).
    clean = settings_for(market_csv, top_k=3, home=tmp_path / "clean")
    reference = run_cycle(clean, chat_model_factory=lambda spec: scripted()).state
    assert state["as_of"] == reference["as_of"]
    assert state["portfolio_after"]["cash"] == pytest.approx(reference["portfolio_after"]["cash"])
    assert state["portfolio_after"]["equity"] == pytest.approx(reference["portfolio_after"]["equity"])
    account = Ledger(settings.ledger_path).account(settings.portfolio)
    assert account.cash == pytest.approx(reference["portfolio_after"]["cash"])

    # The next run is a new cycle on the next day, not a replay of the resumed one.
    following = run_cycle(settings, chat_model_factory=lambda spec: scripted())
    assert following.resumed is False and following.state["as_of"] > state["as_of"]


def test_runs_checkpoint_cycle_steps_and_finished_candidates_not_candidate_steps(market_csv, settings_for):
    """A run saves the cycle's steps and each finished candidate's result (what resuming
    needs) but not the steps inside a candidate; Studio's export still shows those."""
    import sqlite3

    from graph.builder import graph as studio_graph

    settings = settings_for(market_csv, top_k=3)
    state = run_cycle(settings, chat_model_factory=lambda spec: scripted()).state
    conn = sqlite3.connect(settings.checkpoint_path)
    try:
        namespaces = {ns for (ns,) in conn.execute("SELECT DISTINCT checkpoint_ns FROM checkpoints")}
        finished = conn.execute("SELECT COUNT(DISTINCT task_id) FROM writes "
                                "WHERE task_path LIKE '~__pregel_push%' AND channel='decisions'").fetchone()[0]
    finally:
        conn.close()
    assert namespaces == {""}
    assert finished == len(state["candidates"]) == 3
    assert "analyze_candidate:auditor_agent" in studio_graph.get_graph(xray=True).nodes
