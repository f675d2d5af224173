"""The dashboard's data layer on a ledger in PostgreSQL (VOLT_DATABASE_URL): the same figures
as the ledger, read in READ ONLY transactions, nothing created in an empty database."""

from __future__ import annotations

import pytest

from graph.dashboard.app import Context
from graph.dashboard.data import HomeData
from graph.dashboard.market import MarketView
from graph.dashboard.pages import overview
from graph.run import run_cycle
from memory.db import DatabaseURL, open_db


def test_dashboard_reads_a_postgres_ledger(market_csv, settings_for, pg_url):
    settings = settings_for(market_csv, models=[], top_k=3, database_url=pg_url)
    for _ in range(4):
        run_cycle(settings)
    data = HomeData(settings.home, database_url=pg_url)
    assert data.portfolios() == [settings.portfolio]
    with open_db(DatabaseURL(pg_url)) as conn:
        rows = [tuple(r) for r in conn.execute("SELECT as_of, equity, cash FROM cycles WHERE portfolio=?"
                                              " ORDER BY as_of", (settings.portfolio,)).fetchall()]
        n_fills = conn.execute("SELECT COUNT(*) FROM fills WHERE portfolio=?", (settings.portfolio,)).fetchone()[0]
    cycles = data.cycles(settings.portfolio)
    assert list(zip(cycles["as_of"], cycles["equity"], cycles["cash"], strict=True)) == rows and len(rows) == 4
    assert len(data.fills(settings.portfolio)) == n_fills
    assert {"cycles", "fills", "rl_actions"} <= data.tables()
    ctx = Context(data=data, market=MarketView(market_csv), portfolio=settings.portfolio)
    assert ctx.market.dataset(wait_s=30) is not None
    assert overview.summary(ctx, settings.portfolio)["equity"] == pytest.approx(rows[-1][1])
    assert not (settings.home / "volt.db").exists()  # nothing read from or made in the home


def test_an_empty_database_stays_empty(pg_url, tmp_path):
    data = HomeData(tmp_path, database_url=pg_url)
    assert data.cycles("main").empty and data.portfolios() == []
    assert not DatabaseURL(pg_url).exists()  # the dashboard created no table
