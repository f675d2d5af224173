"""Whole cycles with ``VOLT_DATABASE_URL`` set: the same ledger figures as on SQLite, the
CLI keeping nothing of the ledger or checkpoints in the home directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import scripted

from graph.run import run_cycle
from memory.db import DatabaseURL, open_db
from memory.learning_store import LearningStore
from memory.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]


def figures(settings) -> dict:
    """What a run leaves in the ledger, engine-independent."""
    ledger, store = Ledger(settings.ledger_path), LearningStore(settings.ledger_path)
    with open_db(settings.ledger_path) as conn:
        orders = [dict(r) for r in conn.execute(
            "SELECT order_id, side, qty_requested, status, reason FROM orders ORDER BY order_id")]
    fills = sorted(({k: v for k, v in f.items() if k != "latency_ms"}  # wall time, not a figure
                    for f in ledger.recent_fills(settings.portfolio, limit=1000)), key=lambda f: f["order_id"])
    return {"cycles": ledger.cycles(settings.portfolio), "orders": orders, "fills": fills,
            "account": ledger.account(settings.portfolio), "counts": store.counts(settings.portfolio),
            # AVG of doubles: the engines may differ in the last bit
            "accuracy": [{k: round(v, 12) if isinstance(v, float) else v for k, v in r.items()}
                         for r in store.accuracy_table(settings.portfolio)],
            "weights": store.weight_history(settings.portfolio),
            "plans": [(p["plan_id"], p["status"], [e["kind"] for e in p["events"]])
                      for p in ledger.timeline(settings.portfolio)]}


@pytest.mark.parametrize("models", [[], ["m1"]], ids=["priors", "scripted-model"])
def test_cycles_on_postgres_book_the_same_figures_as_on_sqlite(models, market_csv, settings_for, tmp_path, pg_url):
    runs = {}
    for name, url in (("sqlite", None), ("postgres", pg_url)):
        settings = settings_for(market_csv, top_k=3, models=models, home=tmp_path / name, horizon_days=1,
                                database_url=url)
        for _ in range(4):
            run_cycle(settings, chat_model_factory=lambda spec: scripted())
        runs[name] = figures(settings)
    assert isinstance(Ledger(settings.ledger_path).path, DatabaseURL)
    assert runs["postgres"]["fills"] and runs["postgres"]["counts"]["resolved"] > 0
    for key in runs["sqlite"]:
        assert runs["postgres"][key] == runs["sqlite"][key], key
    assert not (tmp_path / "postgres" / "volt.db").exists()
    assert not (tmp_path / "postgres" / "checkpoints.db").exists()


def test_the_cli_runs_cycles_on_the_database_url(market_csv, tmp_path, pg_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLT_")}
    env["VOLT_DATABASE_URL"] = pg_url
    home = tmp_path / "home"
    proc = subprocess.run([sys.executable, "-m", "graph.run", "--home", str(home), "--data-csv", str(market_csv),
                           "--models", "", "--top-k", "2"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(Ledger(DatabaseURL(pg_url)).cycles("main")) == 1
    assert not (home / "volt.db").exists() and not (home / "checkpoints.db").exists()
    assert not (home / "locks").exists()  # the portfolio lock was an advisory lock on the server


def test_health_reads_the_database_url_and_its_advisory_lock(market_csv, settings_for, pg_url, monkeypatch, capsys):
    import json

    from graph.health import main
    from memory.run_lock import portfolio_lock

    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1, database_url=pg_url)
    run_cycle(settings, chat_model_factory=lambda spec: scripted())
    monkeypatch.setenv("VOLT_DATABASE_URL", pg_url)
    with portfolio_lock(settings.home, settings.portfolio, settings.ledger_path):
        main(["--home", str(settings.home), "--json", "--no-probe", "--expect-running"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["volt_db"]["status"] == "OK" and "reachable, schema version" in checks["volt_db"]["detail"]
    assert "volt-test-secret" not in checks["volt_db"]["detail"] and "checkpoints_db" not in checks
    assert checks["last_cycle"]["status"] == "OK" and checks["drawdown"]["status"] == "OK"
    assert checks["lock"]["status"] == "OK" and checks["lock"]["detail"].startswith(f"held by pid {os.getpid()} on ")
    main(["--home", str(settings.home), "--json", "--no-probe", "--expect-running"])
    lock = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}["lock"]
    assert lock == {"name": "lock", "status": "CRITICAL", "detail": "not held"}


def test_backtest_runs_share_one_database_as_separate_portfolios(tmp_path, clean_env, monkeypatch):
    from graph.backtest import PORTFOLIO, BacktestConfig, run_settings
    from memory.response_cache import cache_target

    cfg = BacktestConfig(models=[])
    local = run_settings(cfg, tmp_path, "agents", "runs-20260101-000000-abc123")
    assert local.portfolio == PORTFOLIO and local.ledger_path == tmp_path / "runs-20260101-000000-abc123" / "agents" / "volt.db"
    monkeypatch.setenv("VOLT_DATABASE_URL", "postgresql://volt:pw@db/volt")
    shared = {(run, state): run_settings(cfg, tmp_path, run, state)
              for run in ("agents", "agents_frozen") for state in ("runs-20260101-000000-abc123", "runs-2-def")}
    assert len({s.portfolio for s in shared.values()}) == 4  # every run of every backtest: its own portfolio
    assert {s.ledger_path for s in shared.values()} == {DatabaseURL("postgresql://volt:pw@db/volt")}
    assert cache_target(local) == tmp_path / "llm_cache.sqlite"
    assert cache_target(shared["agents", "runs-2-def"]) == DatabaseURL("postgresql://volt:pw@db/volt")
