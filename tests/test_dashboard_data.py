"""The dashboard's read-only data layer against a home made by real cycles (priors only)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from graph.dashboard.__main__ import is_loopback
from graph.dashboard.__main__ import main as dashboard_main
from graph.dashboard.app import COOKIE, HEADER, Context, create_app
from graph.dashboard.data import HomeData, ro_connect
from graph.dashboard.harness import build_home
from graph.dashboard.market import MarketView
from graph.dashboard.pages import overview

PORTFOLIO = "backtest"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        for key in list(__import__("os").environ):
            if key.startswith("VOLT_") or key == "OLLAMA_HOST":
                mp.delenv(key, raising=False)
        out = tmp_path_factory.mktemp("dash") / "bt"
        home = build_home(out, start="2009-11-02", end="2009-11-20", top_k=5)
    return out, home


def ledger(home: Path, sql: str, params: tuple = ()) -> list:
    conn = sqlite3.connect(f"file:{home / 'volt.db'}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_figures_match_the_ledger_and_the_backtest_summary(built):
    out, home = built
    data = HomeData(home, runs_dir=out)
    cycles = data.cycles(PORTFOLIO)
    rows = ledger(home, "SELECT as_of, equity, cash FROM cycles WHERE portfolio=? ORDER BY as_of", (PORTFOLIO,))
    assert len(cycles) == len(rows) >= 10
    assert list(cycles["equity"]) == [r[1] for r in rows]
    assert list(cycles["as_of"]) == [r[0] for r in rows]
    fills = data.fills(PORTFOLIO)
    assert len(fills) == ledger(home, "SELECT COUNT(*) FROM fills WHERE portfolio=?", (PORTFOLIO,))[0][0] > 0
    agents = json.loads((out / "summary.json").read_text())["strategies"]["agents"]
    market = MarketView()
    ctx = Context(data=data, market=market, portfolio=PORTFOLIO)
    assert market.dataset(wait_s=30) is not None
    s = overview.summary(ctx, PORTFOLIO)
    assert s["equity"] == pytest.approx(agents["final_equity"])
    assert s["fees"] == pytest.approx(agents["fees_paid"])
    assert s["slippage"] == pytest.approx(agents["slippage_paid"], rel=1e-6)
    assert s["realized"] == pytest.approx(agents["realized_pnl"], abs=1e-6)
    # equity = cash + positions at the last close: unrealized P&L closes the books
    cost = sum(q * c for q, c in ledger(home, "SELECT qty, avg_cost FROM positions WHERE portfolio=?", (PORTFOLIO,)))
    assert s["cash"] + cost + s["unrealized"] == pytest.approx(s["equity"], rel=0.02)


def test_decisions_and_learning_read_what_the_cycle_wrote(built):
    out, home = built
    data = HomeData(home, runs_dir=out)
    day = data.cycle_days(PORTFOLIO)[-1]
    records = data.consensus(PORTFOLIO, day)
    assert records and all(isinstance(r["votes"], dict) for r in records)
    n = ledger(home, "SELECT COUNT(*) FROM consensus_records WHERE portfolio=? AND as_of=?", (PORTFOLIO, day))[0][0]
    assert len(records) == n
    symbol = records[0]["symbol"]
    calls = data.predictions(PORTFOLIO, day, symbol)
    assert {c["source"] for c in calls} <= {"prior", "rule", "limits", "ledger", "model"}
    assert any(m["message_type"] == "trade_proposal" for m in data.cycle_messages(PORTFOLIO, day, symbol))
    scores = data.agent_scores(PORTFOLIO)
    hits = ledger(home, "SELECT AVG(hit) FROM agent_predictions WHERE portfolio=? AND agent='market_agent'"
                        " AND resolved=1 AND hit IS NOT NULL", (PORTFOLIO,))[0][0]
    assert scores.set_index("agent").loc["market_agent", "accuracy"] == pytest.approx(hits)
    counts = data.message_counts(PORTFOLIO)
    assert counts["n"].sum() == ledger(home, "SELECT COUNT(*) FROM agent_messages")[0][0]


def test_reads_create_no_file_and_change_nothing(built, tmp_path):
    _, home = built
    copy = tmp_path / "home"
    shutil.copytree(home, copy, ignore=shutil.ignore_patterns("*-wal", "*-shm", "chroma"))
    before = {p.name: p.stat().st_mtime_ns for p in copy.iterdir()}
    data = HomeData(copy)
    assert data.cycles(PORTFOLIO).shape[0] > 0 and data.fills(PORTFOLIO).shape[0] > 0
    after = {p.name: p.stat().st_mtime_ns for p in copy.iterdir()}
    assert after == before  # no -wal/-shm created, nothing modified
    with pytest.raises(sqlite3.OperationalError):  # and a write is refused outright
        ro_connect(copy / "volt.db").execute("DELETE FROM cycles")


def test_reads_while_a_writer_holds_the_write_lock(built, tmp_path):
    _, home = built
    copy = tmp_path / "home"
    shutil.copytree(home, copy, ignore=shutil.ignore_patterns("chroma"))
    writer = sqlite3.connect(copy / "volt.db", isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO cycles(portfolio, as_of, equity, cash, reward) VALUES (?, '2099-01-01', 1, 1, 0)",
                   (PORTFOLIO,))
    data = HomeData(copy)
    n = len(data.cycles(PORTFOLIO))  # a WAL reader is not blocked and does not see uncommitted rows
    writer.execute("COMMIT")
    assert len(data.cycles(PORTFOLIO)) == n + 1  # the new cycle invalidates the cache
    writer.close()


def test_absent_tables_say_not_recorded_and_present_ones_are_read(built, tmp_path):
    out, home = built
    bare = tmp_path / "bare"
    shutil.copytree(home, bare, ignore=shutil.ignore_patterns("chroma"))
    with sqlite3.connect(bare / "volt.db") as conn:
        conn.execute("DROP TABLE IF EXISTS position_plans")
    conn.close()
    data = HomeData(bare)
    assert data.plans(PORTFOLIO) is None and data.rl_actions(PORTFOLIO) is None
    ctx = Context(data=data, market=MarketView(), portfolio=PORTFOLIO)
    _, note = overview.positions_table(ctx, PORTFOLIO, data.cycle_days(PORTFOLIO)[-1])
    assert "not recorded in this home yet" in note
    symbol = data.positions(PORTFOLIO)["symbol"].iloc[0]
    for layout in ("columns", "json"):
        copy = tmp_path / layout
        shutil.copytree(bare, copy)
        with sqlite3.connect(copy / "volt.db") as conn:
            if layout == "columns":
                conn.execute("CREATE TABLE position_plans (portfolio TEXT, symbol TEXT, stop REAL, target REAL,"
                             " horizon_days INTEGER, opened TEXT, status TEXT)")
                conn.execute("INSERT INTO position_plans VALUES (?, ?, 9.5, 12.25, 10, '2009-11-03', 'open')",
                             (PORTFOLIO, symbol))
            else:  # migration 4's layout: the plan is one JSON column
                conn.execute("CREATE TABLE position_plans (plan_id TEXT, portfolio TEXT, symbol TEXT, opened TEXT,"
                             " plan TEXT, status TEXT)")
                plan = {"stop": 9.5, "target": 12.25, "horizon_days": 10, "entry": 11.0}
                conn.execute("INSERT INTO position_plans VALUES ('p', ?, ?, '2009-11-03', ?, 'open')",
                             (PORTFOLIO, symbol, json.dumps(plan)))
                conn.execute("INSERT INTO position_plans VALUES ('q', ?, ?, '2009-11-01', '{bad', 'closed')",
                             (PORTFOLIO, symbol))
        conn.close()
        ctx = Context(data=HomeData(copy), market=MarketView(), portfolio=PORTFOLIO)
        table, note = overview.positions_table(ctx, PORTFOLIO, "2009-11-20")
        assert note is None
        row = table.set_index("symbol").loc[symbol]
        assert (row["stop"], row["target"], row["horizon_days"]) == (9.5, 12.25, 10), layout


def test_hostile_names_and_damaged_run_files(built, tmp_path):
    out, home = built
    data = HomeData(home, runs_dir=tmp_path)
    assert data.message_counts("back%").empty and data.message_counts("_acktest").empty
    assert data.cycles("x' OR '1'='1").empty
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "summary.json").write_text("{not json")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "summary.json").write_text("[1, 2]")
    shutil.copy(out / "summary.json", tmp_path / "summary.json")
    runs = data.runs()
    assert len(runs) == 3 and sum("error" in r for r in runs) == 2
    assert HomeData(tmp_path / "nowhere").cycles(PORTFOLIO).empty  # no ledger: empty, no file created
    assert not (tmp_path / "nowhere").exists()


def test_token_guard_on_every_request(built):
    _, home = built
    client = create_app(home, portfolio=PORTFOLIO, token="s3cret").server.test_client()
    assert client.get("/").status_code == 401
    assert client.get("/_dash-layout").status_code == 401
    assert client.get("/", headers={HEADER: "wrong"}).status_code == 401
    assert client.get("/", headers={HEADER: "s3cret"}).status_code == 200
    first = client.get("/decisions?token=s3cret&x=1")
    assert first.status_code == 302 and "token" not in first.headers["Location"]
    assert COOKIE in first.headers["Set-Cookie"] and "HttpOnly" in first.headers["Set-Cookie"]
    assert client.get("/_dash-layout").status_code == 200  # the cookie now carries it
    assert create_app(home, portfolio=PORTFOLIO).server.test_client().get("/").status_code == 200


def test_cli_refuses_other_hosts_without_a_token(built, monkeypatch, capsys):
    _, home = built
    monkeypatch.delenv("VOLT_DASHBOARD_TOKEN", raising=False)
    assert dashboard_main(["--home", str(home), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "VOLT_DASHBOARD_TOKEN" in err[0]
    assert dashboard_main(["--home", str(home), "--port", "70000"]) == 2
    assert dashboard_main(["--home", str(home / "missing")]) == 2
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_a_ledger_still_being_created_reads_as_empty(tmp_path):
    # a first cycle writes the schema table by table: the dashboard may open it in between
    home = tmp_path / "home"
    home.mkdir()
    conn = sqlite3.connect(home / "volt.db")
    conn.execute("CREATE TABLE cycles (portfolio TEXT, as_of TEXT, equity REAL, cash REAL, reward REAL,"
                 " completed_at TEXT)")
    conn.execute("INSERT INTO cycles VALUES ('p', '2020-01-02', 1000, 1000, 0, '2020-01-02T20:00')")
    conn.commit()
    conn.close()
    data = HomeData(home)
    assert data.stamp("p")[:2] == (1, "2020-01-02")
    assert data.positions("p").empty and data.fills("p").empty and data.opened_on("p") == {}
    with pytest.raises(sqlite3.OperationalError, match="no such column"):  # other errors still surface
        data.query("SELECT missing_col FROM cycles")
