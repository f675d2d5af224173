"""The real graph, end to end, driven by scripted fake chat models."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import default_answer, scripted
from langchain_core.messages import AIMessage

from graph.run import run_cycle
from memory.ledger import Ledger
from memory.message_log import MessageLog
from tools.broker import fill_price, slippage_fraction
from tools.market_data import load_dataset


def factory(model):
    return lambda spec: model


def decision(state, symbol):
    return next(d for d in state["decisions"] if d["symbol"] == symbol)


def test_full_cycle_fills_at_next_open_with_slippage_and_fee(market_csv, settings_for):
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    result = run_cycle(settings, chat_model_factory=factory(scripted()))
    state = result.state
    dataset = load_dataset(market_csv)
    as_of = pd.Timestamp(state["as_of"])
    assert as_of == dataset.calendar[49]  # first day with 50 bars of history

    [fill] = state["fills"]
    next_day, next_bar = dataset.next_bar("AAA", as_of)
    assert fill["fill_date"] == f"{next_day:%Y-%m-%d}" and next_day > as_of
    snap = state["snapshots"]["AAA"]
    assert snap["date"] == state["as_of"]  # agents saw data up to D only
    slip = slippage_fraction(atr_pct=snap["atr_pct"], order_shares=fill["qty"],
                             avg_daily_shares=snap["volume_avg20"], max_slippage=settings.max_slippage)
    assert fill["reference_price"] == pytest.approx(next_bar["open"])
    assert fill["price"] == pytest.approx(fill_price(next_bar["open"], "BUY", slip))
    assert fill["price"] != pytest.approx(snap["close"])  # never a price the agents saw
    assert fill["fee"] == pytest.approx(0.0025 * fill["qty"] * fill["price"])

    # size_pct 0.1 of 1000 USD equity at the decision-day close
    assert fill["qty"] == pytest.approx(100.0 / snap["close"])
    after = state["portfolio_after"]
    assert after["cash"] == pytest.approx(1000.0 - fill["qty"] * fill["price"] - fill["fee"])
    pos = after["positions"]["AAA"]
    assert after["equity"] == pytest.approx(after["cash"] + pos["market_value"])
    assert state["reward"] == pytest.approx(after["equity"] - 1000.0)
    account = Ledger(settings.ledger_path).account(settings.portfolio)
    assert account.cash == pytest.approx(after["cash"])


def test_fan_out_runs_every_candidate_in_its_own_branch(market_csv, settings_for):
    model = scripted()
    settings = settings_for(market_csv, top_k=3)
    state = run_cycle(settings, chat_model_factory=factory(model)).state
    assert sorted(state["candidates"]) == ["AAA", "BBB", "CCC"]
    assert sorted(d["symbol"] for d in state["decisions"]) == ["AAA", "BBB", "CCC"]
    for symbol in ("AAA", "BBB", "CCC"):
        agents = sorted(a for a, s, _, _ in model.calls if s == symbol)
        assert agents == ["auditor", "market", "risk", "strategy"]
        assert decision(state, symbol)["llm_calls"] == 4
    assert len(state["fills"]) == 3


def test_each_run_advances_one_trading_day(market_csv, settings_for):
    settings = settings_for(market_csv, models=[])
    first = run_cycle(settings).state["as_of"]
    second = run_cycle(settings).state["as_of"]
    cal = load_dataset(market_csv).calendar
    assert pd.Timestamp(second) == cal[cal.get_loc(pd.Timestamp(first)) + 1]


@pytest.mark.parametrize(
    ("risk", "auditor", "verdict", "qty_factor"),
    [
        ("APPROVED", "APPROVED", "APPROVED", 1.0),
        ("REJECTED", "APPROVED", "APPROVED", 1.0),  # 2 of 3 (history approves)
        ("REJECTED", "REJECTED", "CAUTION", 0.5),  # only history approves: half size
    ],
)
def test_peer_review_votes(market_csv, settings_for, risk, auditor, verdict, qty_factor):
    model = scripted({"risk": {"verdict": risk, "reasons": ["r"]}, "auditor": {"verdict": auditor, "objections": ["o"]}})
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    state = run_cycle(settings, chat_model_factory=factory(model)).state
    d = decision(state, "AAA")
    assert d["outcome"] == verdict
    assert d["review"]["approvals"] == {"APPROVED": 3 if risk == "APPROVED" else 2, "CAUTION": 1}[verdict]
    full = d["risk"]["order"]["qty"]
    assert d["order"]["qty"] == pytest.approx(full * qty_factor)
    assert state["fills"][0]["qty"] == pytest.approx(full * qty_factor)


def test_rejection_goes_back_to_strategy_once_with_objections_then_approves(market_csv, settings_for, tmp_path):
    # Seed a losing history so the history reviewer rejects BUYs of AAA.
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    rounds = {"strategy": 0}

    def respond(agent, symbol, evidence, messages):
        if agent == "strategy":
            rounds["strategy"] += 1
            if rounds["strategy"] == 2:
                assert any("auditor: entry looks stale" in o for o in evidence["objections"])
                return default_answer(agent, symbol, evidence, strategy={"confidence": 0.8})
        if agent in ("risk", "auditor"):
            # reject the first proposal (confidence 0.9), approve the revised one (0.8)
            first = evidence["proposal"]["votes"]["strategy_agent"]["vote"] == pytest.approx(0.9)
            verdict = "REJECTED" if first else "APPROVED"
            if agent == "risk":
                return default_answer(agent, symbol, evidence, risk={"verdict": verdict, "reasons": ["too hot"]})
            return default_answer(agent, symbol, evidence, auditor={"verdict": verdict, "objections": ["entry looks stale"]})
        return default_answer(agent, symbol, evidence)

    _seed_losses(settings)
    model = scripted(respond=respond)
    state = run_cycle(settings, chat_model_factory=factory(model)).state
    d = decision(state, "AAA")
    assert rounds["strategy"] == 2
    assert d["revision"] == 1 and d["outcome"] == "APPROVED"
    assert len(state["fills"]) == 1
    types = [m["message_type"] for m in state["agent_messages"]]
    assert "correction_request" in types


def test_second_rejection_holds(market_csv, settings_for):
    _settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    _seed_losses(_settings)
    model = scripted({"risk": {"verdict": "REJECTED"}, "auditor": {"verdict": "REJECTED", "objections": ["no"]}})
    state = run_cycle(_settings, chat_model_factory=factory(model)).state
    d = decision(state, "AAA")
    assert d["outcome"] == "REJECTED" and d["revision"] == 1 and d["order"] is None
    assert sum(1 for a, *_ in model.calls if a == "strategy") == 2
    assert state["fills"] == []


def _seed_losses(settings):
    """Two losing closed trades in AAA before the first cycle (history reviewer says no)."""
    ledger = Ledger(settings.ledger_path)
    ledger.ensure_portfolio(settings.portfolio, settings.starting_cash)
    from memory.db import open_db

    with open_db(settings.ledger_path) as conn:
        for i in range(2):
            oid = f"{settings.portfolio}:2000-01-0{i + 1}:AAA"
            conn.execute("INSERT INTO orders(order_id, portfolio, as_of, symbol, side, qty_requested, status)"
                         " VALUES (?,?,?,?,?,?, 'FILLED')", (oid, settings.portfolio, f"2000-01-0{i + 1}", "AAA", "SELL", 1))
            conn.execute("INSERT INTO fills VALUES (?,?,?,?,?,?,?,?,?,?,?,?, '2000-01-01')",
                         (oid, settings.portfolio, "AAA", "SELL", 1, 10, 10, 0, 0.01, -5.0, f"2000-01-0{i + 1}", 1.0))


def test_model_fallback_order_then_prior(market_csv, settings_for):
    seen = []

    def model_for(spec):
        def respond(agent, symbol, evidence, messages):
            seen.append((spec, agent))
            if spec == "m1":
                return ConnectionError("connection refused")
            if spec == "m2":
                return "I think you should buy it!"  # prose, not JSON
            return default_answer(agent, symbol, evidence)
        return scripted(respond=respond)

    models = {s: model_for(s) for s in ("m1", "m2", "m3")}
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1, models=["m1", "m2", "m3"])
    state = run_cycle(settings, chat_model_factory=models.__getitem__).state
    d = decision(state, "AAA")
    assert d["market"]["source"] == "model" and d["market"]["model"] == "m3"
    assert [s for s, a in seen if a == "market"] == ["m1", "m2", "m3"]
    market_errors = [e for e in state["errors"] if e["agent"] == "market_agent"]
    assert [(e["model"], e["category"]) for e in market_errors] == [("m1", "network"), ("m2", "model")]
    assert market_errors[0]["recovery"] == "fallback to m2"


def test_all_models_fail_gives_degraded_prior(market_csv, settings_for):
    bad = scripted(respond=lambda a, s, e, m: TimeoutError("model timed out"))
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1, models=["m1", "m2"])
    state = run_cycle(settings, chat_model_factory=factory(bad)).state
    d = decision(state, "AAA")
    for key in ("market", "strategy"):
        assert d[key]["source"] == "prior" and d[key]["degraded"] is True
    errors = [e for e in state["errors"] if e["agent"] == "market_agent"]
    assert [e["recovery"] for e in errors] == ["fallback to m2", "quantitative prior"]
    assert d["market"]["output"] == _prior_market(state, "AAA")


def _prior_market(state, symbol):
    from graph.settings import VoltSettings
    from nodes.market_agent import market_prior

    return market_prior({"symbol": symbol, "snapshot": state["snapshots"][symbol]}, VoltSettings()).model_dump(mode="json")


@pytest.mark.parametrize(
    "bad_strategy",
    [
        {"confidence": 1.5},  # out of range
        {"action": "YOLO"},  # unknown action
        {"symbol": "ZZZ"},  # unknown symbol
        {"size_pct": 10.0},  # 10x equity
        {"entry": -1},
    ],
)
def test_invalid_model_output_is_a_failed_attempt(market_csv, settings_for, bad_strategy):
    model = scripted({"strategy": bad_strategy})
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    state = run_cycle(settings, chat_model_factory=factory(model)).state
    d = decision(state, "AAA")
    assert d["strategy"]["source"] == "prior" and d["strategy"]["degraded"]
    [err] = [e for e in state["errors"] if e["agent"] == "strategy_agent"]
    assert err["category"] == "model" and err["message"].startswith("invalid output")


def test_hard_limits_hold_against_a_model_asking_for_everything(market_csv, settings_for):
    # Strategy wants 100% of equity (5x the cap); risk "approves" and tries to loosen the cap.
    model = scripted({"strategy": {"size_pct": 1.0}, "risk": {"max_position_pct": 1.0}})
    settings = settings_for(market_csv, watchlist=["AAA", "BBB", "CCC"], top_k=3)
    state = run_cycle(settings, chat_model_factory=factory(model)).state
    after = state["portfolio_after"]
    assert after["cash"] >= 0
    for symbol, pos in after["positions"].items():
        fill = next(f for f in state["fills"] if f["symbol"] == symbol)
        cost = fill["qty"] * fill["price"]
        assert cost <= settings.max_position_pct * 1000.0 + 1e-6, symbol
        assert "max position" in decision(state, symbol)["risk"]["order"]["capped_by"]
        assert pos["qty"] == pytest.approx(fill["qty"])


def test_model_can_tighten_the_position_cap(market_csv, settings_for):
    model = scripted({"strategy": {"size_pct": 1.0}, "risk": {"max_position_pct": 0.05}})
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    state = run_cycle(settings, chat_model_factory=factory(model)).state
    [fill] = state["fills"]
    assert fill["qty"] * state["snapshots"]["AAA"]["close"] == pytest.approx(50.0, rel=1e-6)


def test_sell_without_position_is_blocked_without_asking_reviewers(market_csv, settings_for):
    model = scripted({"market": {"direction": "BEARISH"}, "strategy": {"action": "SELL", "stop_loss": 200.0}})
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    state = run_cycle(settings, chat_model_factory=factory(model)).state
    d = decision(state, "AAA")
    assert d["outcome"] == "BLOCKED" and "short" in d["reason"]
    assert sorted({a for a, s, *_ in model.calls if s == "AAA"}) == ["market", "strategy"]
    assert state["fills"] == []


def test_tool_calls_are_answered_and_bounded(market_csv, settings_for):
    rounds = []

    def respond(agent, symbol, evidence, messages):
        if agent == "market":
            rounds.append(len(messages))
            tool_results = [m for m in messages if m.type == "tool"]
            if len(tool_results) < 3:  # keeps asking; the graph must cut it off after 2 rounds
                return AIMessage(content="", tool_calls=[
                    {"name": "get_indicators", "args": {"symbol": symbol}, "id": f"c{len(rounds)}"},
                    {"name": "get_portfolio", "args": {}, "id": f"p{len(rounds)}"},
                ][: 1 if tool_results else 2])
            return default_answer(agent, symbol, evidence)
        return default_answer(agent, symbol, evidence)

    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    state = run_cycle(settings, chat_model_factory=factory(scripted(respond=respond))).state
    d = decision(state, "AAA")
    assert d["market"]["source"] == "model"
    assert len(rounds) == 3  # two tool rounds, then the answer round
    model_calls = d["llm_calls"]
    assert model_calls == 3 + 3  # market 3, strategy, risk, auditor 1 each


def test_tools_see_point_in_time_data(market_csv, settings_for):
    captured = {}

    def respond(agent, symbol, evidence, messages):
        if agent == "strategy":
            results = [m for m in messages if m.type == "tool"]
            if not results:
                return AIMessage(content="", tool_calls=[
                    {"name": "get_price_history", "args": {"symbol": symbol, "bars": 60}, "id": "h"}])
            captured["history"] = json.loads(results[0].content)
        return default_answer(agent, symbol, evidence)

    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    state = run_cycle(settings, chat_model_factory=factory(scripted(respond=respond))).state
    dates = [b["date"] for b in captured["history"]["bars"]]
    assert max(dates) == state["as_of"] and len(dates) == 50


def test_agent_messages_are_stored_for_audit(market_csv, settings_for):
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    state = run_cycle(settings, chat_model_factory=factory(scripted())).state
    stored = MessageLog(settings.ledger_path).for_cycle(state["cycle_id"])
    types = {m.message_type.value for m in stored}
    assert {"market_view", "trade_proposal", "consensus_result", "risk_approval", "peer_review",
            "execution_complete", "status_update"} <= types
    assert all(m.message_id and m.timestamp and m.from_agent and m.to_agent for m in stored)
    execution = next(m for m in stored if m.message_type.value == "execution_complete")
    assert execution.payload["symbol"] == "AAA" and execution.payload["latency_ms"] >= 0


def test_bad_data_symbol_is_skipped_with_a_data_error(tmp_path, settings_for):
    from conftest import synthetic_frame

    frame = synthetic_frame({"AAA": 0.2, "BAD": 0.3})
    frame["Close"] = frame["Close"].astype(object)
    frame.loc[(frame.Symbol == "BAD") & (frame.index % 80 == 10), "Close"] = "n/a"
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    model = scripted()
    settings = settings_for(path, top_k=2)
    state = run_cycle(settings, chat_model_factory=factory(model)).state
    assert state["candidates"] == ["AAA"]
    [err] = state["data_errors"]
    assert err["symbol"] == "BAD" and "Close" in err["message"] and err["message"].startswith("DATA BAD")
    assert all(s != "BAD" for _, s, _, _ in model.calls)
    assert all(f["symbol"] != "BAD" for f in state["fills"])


def test_consensus_uses_stored_weights(market_csv, settings_for):
    from memory.weights import write_weight

    # Market says BEARISH 0.8, strategy BUY 0.9: equal weights net +0.05 (HOLD);
    # weighting the strategy 3:1 makes it a BUY.
    model = scripted({"market": {"direction": "BEARISH"}})
    equal = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    d_equal = decision(run_cycle(equal, chat_model_factory=factory(model)).state, "AAA")
    assert d_equal["consensus"]["action"] == "HOLD"
    assert d_equal["consensus"]["score"] == pytest.approx((0.9 - 0.8) / 2)

    weighted = settings_for(market_csv, watchlist=["AAA"], top_k=1, portfolio="weighted")
    write_weight(weighted.ledger_path, "weighted", "strategy_agent", 3.0)
    state = run_cycle(weighted, chat_model_factory=factory(model)).state
    d = decision(state, "AAA")
    assert {a: state["weights"][a] for a in ("market_agent", "strategy_agent")} == {"market_agent": 1.0, "strategy_agent": 3.0}
    assert d["consensus"]["votes"]["strategy_agent"]["weight"] == 3.0
    assert d["consensus"]["score"] == pytest.approx((3 * 0.9 - 0.8) / 4)
    assert d["consensus"]["action"] == "BUY"


def test_ordered_script_with_generic_fake_model(market_csv, settings_for):
    """GenericFakeChatModel (+ bind_tools) replays a fixed script: one candidate runs in order."""
    from conftest import FakeToolChatModel

    dataset = load_dataset(market_csv)
    from tools.indicators import indicator_snapshot

    snap = indicator_snapshot("AAA", dataset.history("AAA", dataset.calendar[49]))
    ev = {"indicators": snap}
    script = iter([
        AIMessage(content=default_answer("macro", "MARKET", {})),  # the cycle-level MacroAgent goes first
        AIMessage(content="", tool_calls=[{"name": "get_portfolio", "args": {}, "id": "t1"}]),
        AIMessage(content=default_answer("market", "AAA", ev)),
        AIMessage(content=default_answer("strategy", "AAA", ev, strategy={"size_pct": 0.05})),
        AIMessage(content=default_answer("risk", "AAA", ev)),
        AIMessage(content=default_answer("auditor", "AAA", ev)),
    ])
    model = FakeToolChatModel(messages=script)
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    state = run_cycle(settings, chat_model_factory=lambda spec: model).state
    d = decision(state, "AAA")
    assert d["outcome"] == "APPROVED" and d["llm_calls"] == 5
    assert d["strategy"]["output"]["size_pct"] == 0.05
    assert state["fills"][0]["qty"] == pytest.approx(50.0 / snap["close"])


def test_slippage_above_threshold_emits_feedback_event(market_csv, settings_for):
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1, slippage_alert=0.0)
    state = run_cycle(settings, chat_model_factory=factory(scripted())).state
    [fill] = state["fills"]
    events = [m for m in state["agent_messages"] if m["message_type"] == "feedback_event"
              and m["payload"].get("trigger") == "slippage"]
    assert len(events) == 1 and events[0]["payload"]["slippage_pct"] == pytest.approx(fill["slippage_pct"], abs=1e-8)
    assert fill["slippage_pct"] > 0
    quiet = settings_for(market_csv, watchlist=["AAA"], top_k=1, portfolio="quiet", slippage_alert=0.05)
    state = run_cycle(quiet, chat_model_factory=factory(scripted())).state
    assert not [m for m in state["agent_messages"] if m["payload"].get("trigger") == "slippage"]


def test_round_trip_realizes_pnl_net_of_fees(market_csv, settings_for):
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    buy = run_cycle(settings, chat_model_factory=factory(scripted())).state
    sell_model = scripted({"market": {"direction": "BEARISH"},
                           "strategy": {"action": "SELL", "size_pct": 1.0, "stop_loss": 1000.0}})
    sell = run_cycle(settings, chat_model_factory=factory(sell_model)).state
    [b], [s] = buy["fills"], sell["fills"]
    assert s["side"] == "SELL" and s["qty"] == pytest.approx(b["qty"])
    expected = (s["price"] - (b["qty"] * b["price"] + b["fee"]) / b["qty"]) * s["qty"] - s["fee"]
    assert s["realized_pnl"] == pytest.approx(expected)
    after = sell["portfolio_after"]
    assert after["positions"] == {} and after["realized_pnl"] == pytest.approx(expected)
    assert after["cash"] == pytest.approx(1000.0 + expected)
