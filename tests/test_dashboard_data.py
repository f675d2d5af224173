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
from graph.dashboard.pages import learning, overview

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
    # every agent's hit rate (the short window may resolve none yet, as the outcome horizon
    # outlasts it: tests/test_dashboard_year.py checks the same on a year of resolved calls)
    scores = data.agent_scores(PORTFOLIO)
    hits = dict(ledger(home, "SELECT agent, AVG(hit) FROM agent_predictions WHERE portfolio=? AND resolved=1"
                             " AND hit IS NOT NULL GROUP BY agent", (PORTFOLIO,)))
    assert dict(zip(scores["agent"], scores["accuracy"], strict=True)) == pytest.approx(hits)
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
        conn.execute("DROP TABLE IF EXISTS rl_actions")  # a ledger from before migration 5
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


RL_ROWS = [  # (as_of, policy, observation, action, applied): the rl_actions layout of migration 5
    ("2009-11-02", "policy.zip:ab12", {"drawdown": 0.0, "exposure": 0.0, "trend": 0.01}, 1.2, 1.2),
    ("2009-11-03", "policy.zip:ab12", {"drawdown": 0.02, "exposure": 0.4, "trend": -0.03}, 1.6, 1.5),
    ("2009-11-04", "policy.zip:cd34", {"drawdown": 0.05, "exposure": 0.55, "trend": -0.02}, 0.25, 0.25),
]


def values(array) -> list:
    """A figure's array as numbers: plotly sends numpy arrays as base64 (``{"dtype", "bdata"}``)."""
    if isinstance(array, dict):
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def insert_rl_rows(db: Path, rows=RL_ROWS, portfolio: str = PORTFOLIO) -> None:
    """Rows as the RL controller writes them (memory/rl_store.record_action), plus one of
    another portfolio and one with a damaged observation that must not show."""
    with sqlite3.connect(db) as conn:
        for as_of, policy, observed, action, applied in rows:
            conn.execute("INSERT INTO rl_actions(portfolio, as_of, policy, observation, action, applied)"
                         " VALUES (?,?,?,?,?,?)", (portfolio, as_of, policy, json.dumps(observed), action, applied))
        conn.execute("INSERT INTO rl_actions VALUES ('other', '2009-11-05', 'x', '{bad', 9.0, 9.0)")
    conn.close()


def test_rl_actions_are_read_and_shown(built, tmp_path):
    _, home = built
    copy = tmp_path / "home"
    shutil.copytree(home, copy, ignore=shutil.ignore_patterns("chroma"))
    data = HomeData(copy)
    assert data.rl_actions(PORTFOLIO) is not None and data.rl_actions(PORTFOLIO).empty  # table, no row
    assert repr(learning.rl_section(data.rl_actions(PORTFOLIO))).count(learning.RL_OFF) == 1
    insert_rl_rows(copy / "volt.db")
    data = HomeData(copy)
    rl = data.rl_actions(PORTFOLIO)
    assert list(rl["as_of"]) == [r[0] for r in RL_ROWS] and list(rl["applied"]) == [1.2, 1.5, 0.25]
    assert rl["observation"].iloc[1] == RL_ROWS[1][2]
    assert data.rl_actions("other")["observation"].iloc[0] == {}  # damaged JSON: no feature, no error
    summary, body = learning.rl_section(rl)
    assert summary.children == ("policy policy.zip:cd34: 3 cycles, last 2009-11-04: action 0.25, applied 0.25;"
                                " clipped by the hard limits in 1 cycles")
    action, applied = (values(trace["y"]) for trace in body.children[0].figure["data"])
    assert action == [1.2, 1.6, 0.25] and applied == [1.2, 1.5, 0.25]
    text = repr(body.children[1])
    assert "exposure" in text and "0.55" in text and "policy.zip:ab12" in text
    ctx = Context(data=data, market=MarketView(), portfolio=PORTFOLIO)
    assert "rl-summary" in repr(learning.layout(ctx, PORTFOLIO))


def test_the_partial_plotly_bundle_is_served_and_covers_every_trace_type(built):
    import re

    from plotly.offline import get_plotlyjs_version

    from graph.dashboard.app import DASH_PLOTLY_URL, PLOTLY_BUNDLE

    _, home = built
    bundle = PLOTLY_BUNDLE.read_bytes()
    assert f"plotly.js v{get_plotlyjs_version()},".encode() in bundle[:400]  # the version plotly.py writes for
    entry = (PLOTLY_BUNDLE.parent / "plotly-volt.entry.js").read_text()
    pages = Path(__file__).resolve().parents[1] / "graph" / "dashboard"
    drawn = {t for f in pages.rglob("*.py") for t in re.findall(r"\bgo\.([A-Z]\w+)\(", f.read_text())}
    assert drawn - {"Figure"} >= {"Scatter", "Bar", "Sankey"}
    for trace in drawn - {"Figure", "Scatter"}:  # scatter is in plotly's core
        assert f"plotly.js/lib/{trace.lower()}'" in entry, f"{trace} is drawn but not in the partial bundle"
    client = create_app(home, portfolio=PORTFOLIO).server.test_client()
    page = client.get("/").get_data(as_text=True)
    src = re.search(r'<script src="(/_volt/plotly-[0-9a-f]+\.min\.js)" defer', page).group(1)
    first = client.get(src)
    assert first.get_data() == bundle and "max-age=31536000" in first.headers["Cache-Control"]
    assert client.get(DASH_PLOTLY_URL).get_data() == bundle  # a figure mounting first gets the same one
    stock = create_app(home, portfolio=PORTFOLIO, full_plotly=True).server.test_client()
    assert "/_volt/plotly-" not in stock.get("/").get_data(as_text=True)
    assert len(stock.get(DASH_PLOTLY_URL).get_data()) > 3 * len(bundle)  # Dash's own, whole plotly.js
    remote = create_app(home, portfolio=PORTFOLIO, compress=True).server.test_client()
    packed = remote.get(src, headers={"Accept-Encoding": "gzip, deflate, br, zstd"})  # as Chromium asks
    assert packed.headers.get("Content-Encoding") in ("zstd", "br", "gzip", "deflate")
    assert len(packed.get_data()) < len(bundle) / 2
