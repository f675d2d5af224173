"""Coherent decisions: an order's side is the strategist's own action, or no order at all."""

from __future__ import annotations

from conftest import default_answer, scripted

from graph.run import run_cycle
from graph.settings import VoltSettings
from nodes.strategy_agent import coherence, strategy_prior

# BULLISH 0.9 and SELL 0.35 average to +0.275: a BUY consensus against the strategist's SELL
AGAINST = {"market": {"direction": "BULLISH", "strength": 0.9}, "strategy": {"action": "SELL", "confidence": 0.35}}


def factory(model):
    return lambda spec: model


def strategy_evidence(model) -> list[dict]:
    return [evidence for agent, _, evidence, _ in model.calls if agent == "strategy"]


def test_strategist_still_disagreeing_holds_with_the_reason(market_csv, settings_for):
    model = scripted(AGAINST)
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    state = run_cycle(settings, chat_model_factory=factory(model)).state
    [d] = state["decisions"]
    first, again = strategy_evidence(model)  # asked exactly twice
    assert "reconsider" not in first
    assert again["reconsider"]["consensus_side"] == "BUY" and again["reconsider"]["strategist_said"] == "SELL"
    assert d["consensus"]["action"] == "BUY" and d["strategy"]["output"]["action"] == "SELL"
    assert d["outcome"] == "HOLD" and d["order"] is None
    assert d["reason"] == "consensus BUY against the strategist's SELL (asked again): no order"
    assert d["coherence"]["status"] == "disagree"
    assert state["fills"] == [] and state["orders"] == []
    assert not any(agent in ("risk", "auditor") for agent, *_ in model.calls)  # never sized


def test_strategist_agreeing_when_asked_again_trades_its_side(market_csv, settings_for):
    def respond(agent, symbol, evidence, messages):
        if agent == "strategy" and "reconsider" in evidence:
            return default_answer(agent, symbol, evidence, strategy={"action": "BUY", "confidence": 0.6})
        return default_answer(agent, symbol, evidence, **AGAINST)

    model = scripted(respond=respond)
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    state = run_cycle(settings, chat_model_factory=factory(model)).state
    [d] = state["decisions"]
    assert len(strategy_evidence(model)) == 2
    assert d["coherence"]["status"] == "agree" and d["coherence"]["asked_again"]
    assert d["outcome"] == "APPROVED" and d["order"]["side"] == "BUY" == d["strategy"]["output"]["action"]
    assert [f["side"] for f in state["fills"]] == ["BUY"]


def test_agreeing_strategist_is_not_asked_again(market_csv, settings_for):
    model = scripted()
    run_cycle(settings_for(market_csv, watchlist=["AAA"], top_k=1), chat_model_factory=factory(model))
    assert len(strategy_evidence(model)) == 1


def snapshot(**kw):
    base = {"close": 100.0, "rsi14": 50.0, "atr14": 2.0, "sma20": 100.0, "sma50": 100.0, "macd_hist": 0.0}
    return {**base, **kw}


def test_prior_goes_along_only_when_no_rule_of_its_own_fired(clean_env):
    settings = VoltSettings()
    neutral = {"symbol": "X", "snapshot": snapshot(), "memory": {}}
    assert strategy_prior(neutral, settings).action == "HOLD"
    asked = {**neutral, "reconsider": {"consensus_side": "BUY", "strategist_said": "HOLD"}}
    signal = strategy_prior(asked, settings)
    assert signal.action == "BUY" and signal.confidence == 0.5 and "asked again" in signal.rationale
    assert signal.stop_loss < signal.entry  # a BUY's levels, not a HOLD's
    overbought = {"symbol": "X", "snapshot": snapshot(rsi14=80.0), "memory": {},
                  "reconsider": {"consensus_side": "BUY", "strategist_said": "SELL"}}
    assert strategy_prior(overbought, settings).action == "SELL"  # its own call stands


def test_coherence_statuses():
    def state(said, held=0.0, chain=None, asked=False):
        return {"symbol": "X", "strategy": {"output": {"action": said}}, "chain": chain,
                "portfolio": {"positions": {"X": {"qty": held}} if held else {}},
                "reconsider": {"consensus_side": "BUY"} if asked else None}

    assert coherence(state("BUY"), {"action": "BUY"})["status"] == "agree"
    assert coherence(state("SELL"), {"action": "BUY"})["status"] == "reask"
    assert coherence(state("SELL", asked=True), {"action": "BUY"})["status"] == "disagree"
    assert coherence(state("HOLD"), {"action": "BUY"})["status"] == "reask"  # a HOLD is not a BUY
    assert coherence(state("BUY"), {"action": "HOLD"})["status"] == "n/a"
    assert coherence(state("BUY"), {"action": "SELL"})["status"] == "n/a"  # nothing held, no shorts
    assert coherence(state("BUY"), {"action": "SELL"}, allow_short=True)["status"] == "reask"
    held = {"held": True}
    assert coherence(state("HOLD", held=5.0, chain=held), {"action": "BUY"})["status"] == "n/a"
    assert coherence(state("HOLD", held=5.0, chain=held), {"action": "SELL"})["status"] == "reask"


def test_no_approved_buy_against_the_strategist_over_a_20_cycle_priors_replay(tmp_path, clean_env):
    settings = VoltSettings(home=tmp_path / "home", models=[], top_k=5)
    approved_buys, reasked, exit_reviews = 0, 0, 0
    for _ in range(20):
        state = run_cycle(settings).state
        for d in state["decisions"]:
            order, said = d.get("order"), d["strategy"]["output"]["action"]
            reasked += bool((d.get("coherence") or {}).get("asked_again"))
            exit_reviews += d["chain"] == "exit_review"
            if order and order["side"] == "BUY":
                approved_buys += 1
                assert said == "BUY", (state["as_of"], d["symbol"], d["reason"])
            if d["chain"] == "entry" and order:
                assert order["side"] == said
        assert all(f["side"] != "BUY" or any(d["symbol"] == f["symbol"] and d["strategy"]["output"]["action"] == "BUY"
                                             for d in state["decisions"]) for f in state["fills"])
    # the replay exercised the rule: buys happened, disagreements were re-asked, holdings reviewed
    assert approved_buys > 0 and reasked > 0 and exit_reviews > 0
