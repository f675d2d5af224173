"""Plans end to end: priors-only cycles honour the invariants, the report and the
``python -m graph.positions`` timeline show them."""

from __future__ import annotations

import json

import pytest
from conftest import synthetic_frame

from graph.positions import main as positions_main
from graph.report import build_report, render_json, render_text
from graph.run import run_cycle
from memory.db import open_db
from memory.ledger import Ledger
from tools.portfolio import DUST_QTY


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plans")
    csv = tmp / "market.csv"
    synthetic_frame({"AAA": 0.25, "BBB": 0.15, "CCC": -0.05, "DDD": 0.1}, days=80).to_csv(csv, index=False)
    from graph.settings import VoltSettings

    settings = VoltSettings(home=tmp / "home", data_csv=csv, models=[], top_k=4, max_holding_days=3,
                            learning=False)
    states = [run_cycle(settings).state for _ in range(25)]
    return settings, states


def test_priors_only_cycles_keep_every_invariant(replay):
    settings, states = replay
    ledger = Ledger(settings.ledger_path)
    plans = ledger.timeline(settings.portfolio)
    assert plans, "the replay should trade"
    for p in plans:
        entry = next(e for e in p["events"] if e["kind"] == "entry")["detail"]["plan"]
        assert entry["stop"] < entry["entry"] < entry["target"]  # no BUY with its stop at/above the entry
        exit_event = next((e for e in p["events"] if e["kind"] == "exit"), None)
        if exit_event and exit_event["detail"].get("days_in_trade") is not None:
            assert exit_event["detail"]["days_in_trade"] <= settings.max_holding_days + 1
    assert any(p["exit_kind"] == "time" for p in plans)
    with open_db(settings.ledger_path) as conn:
        fills = [dict(r) for r in conn.execute("SELECT * FROM fills")]
        positions = [dict(r) for r in conn.execute("SELECT * FROM positions")]
    buys = [f for f in fills if f["side"] == "BUY"]
    assert all(f["qty"] * f["price"] >= settings.min_order_notional for f in buys)
    assert all(abs(p["qty"]) >= DUST_QTY for p in positions)
    # each held position has an open plan; no plan is open without a position
    assert {p["symbol"] for p in positions} == set(ledger.open_plans(settings.portfolio))


def test_report_has_a_positions_section_in_text_and_json(replay):
    _, states = replay
    state = next(s for s in states if s.get("plans"))
    report = build_report(state)
    doc = json.loads(render_json(report))
    assert set(doc["positions"]) >= {"plans", "exits", "exits_by_kind", "protections"}
    symbol, plan = next(iter(doc["positions"]["plans"].items()))
    assert plan["days_in_trade"] <= plan["horizon_days"] + 1
    text = render_text(report)
    assert f"plan {symbol}" in text and "positions (plans enforced by the broker):" in text
    exit_state = next(s for s in states if s.get("exits"))
    assert "exit " in render_text(build_report(exit_state))


def test_positions_cli_prints_each_timeline(replay, capsys):
    settings, _ = replay
    assert positions_main(["--home", str(settings.home), "--data-csv", str(settings.data_csv)]) == 0
    out = capsys.readouterr().out
    assert "positions of portfolio main" in out and "entry at" in out and "exit time" in out
    assert positions_main(["--home", str(settings.home), "--data-csv", str(settings.data_csv), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["plans"] == len(doc["positions"]) > 0
    assert doc["summary"]["max_days_in_trade"] <= settings.max_holding_days + 1
    assert positions_main(["--home", str(settings.home), "--symbol", "ZZZ", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["positions"] == []


def test_positions_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, clean_env):
    assert positions_main(["--home", str(tmp_path / "none")]) == 2
    assert positions_main(["--home", str(tmp_path), "--portfolio", "../etc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error:") for line in err)
