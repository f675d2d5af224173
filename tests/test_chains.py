"""The action-chain file: validation (each bad case is one line, exit 2), selection, routing."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from conftest import scripted

from graph.chains import ChainConfigError, load_chains, parse_chains
from graph.run import main, run_cycle

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ('["market_agent", "sentiment_agent", "forex_agent", "strategy_agent", "consensus", '
         '"risk_agent", "auditor_agent", "history_reviewer", "peer_review"]')
EXIT = '["market_agent", "strategy_agent", "consensus", "position_risk", "exit_review"]'


def chains_text(entry_steps: str = ENTRY, exit_steps: str = EXIT, extra: str = "", *,
                entry_model: str = "weighted", defaults: str = "") -> str:
    return (f"[defaults]\n{defaults}\n"
            f"[chains.entry]\nwhen = {{ held = false }}\nsteps = {entry_steps}\nconsensus = \"{entry_model}\"\n"
            f"[chains.exit_review]\nwhen = {{ held = true }}\nsteps = {exit_steps}\n{extra}")


BAD = {
    "unknown agent": (chains_text(ENTRY.replace('"forex_agent"', '"oracle_agent"')),
                      "chain 'entry': unknown agent 'oracle_agent'"),
    "unknown consensus model": (chains_text(entry_model="plurality"),
                                "chain 'entry': unknown consensus model 'plurality'"),
    "unknown default model": (chains_text(defaults='consensus = "coin_flip"'),
                              "defaults: unknown consensus model 'coin_flip'"),
    "cycle": (chains_text(exit_steps=EXIT.replace('"consensus",', '"consensus", "market_agent",')),
              "chain 'exit_review': step 'market_agent' appears twice (a cycle)"),
    "order": (chains_text('["market_agent", "consensus", "strategy_agent", "risk_agent", "auditor_agent", '
                          '"history_reviewer", "peer_review"]'),
              "chain 'entry': step 'consensus' needs 'strategy_agent' before it"),
    "missing steps": ("[chains.entry]\nwhen = { held = false }\n", "chain 'entry': missing field 'steps'"),
    "missing when": (chains_text() + "[chains.odd]\nsteps = [\"market_agent\"]\n",
                     "chain 'odd': missing field 'when'"),
    "missing held": (chains_text() + f"[chains.odd]\nwhen = {{ regime = [\"SIDEWAYS\"] }}\nsteps = {EXIT}\n",
                     "chain 'odd': missing field 'when.held'"),
    "no held chain": (f"[chains.entry]\nwhen = {{ held = false }}\nsteps = {ENTRY}\n",
                      "no chain matches a held symbol in every regime"),
    "held chain only in one regime": (
        f"[chains.entry]\nwhen = {{ held = false }}\nsteps = {ENTRY}\n"
        f"[chains.hv]\nwhen = {{ held = true, regime = [\"HIGH_VOLATILITY\"] }}\nsteps = {EXIT}\n",
        "no chain matches a held symbol in every regime"),
    "no entry chain": (f"[chains.exit_review]\nwhen = {{ held = true }}\nsteps = {EXIT}\n",
                       "no chain matches a new symbol in every regime"),
    "entry step in exit chain": (chains_text(exit_steps=EXIT.replace('"position_risk"', '"risk_agent", "position_risk"')),
                                 "chain 'exit_review': step 'risk_agent' cannot run in a held-symbol chain"),
    "exit chain without its review": (chains_text(exit_steps='["market_agent", "strategy_agent", "consensus", '
                                                             '"position_risk"]'),
                                      "chain 'exit_review': a held-symbol (when.held = true) chain must end "
                                      "with 'exit_review'"),
    "unknown regime": (chains_text() + f"[chains.hv]\nwhen = {{ held = false, regime = [\"MOON\"] }}\nsteps = {ENTRY}\n",
                       "chain 'hv': when.regime.0: Input should be"),
    "unknown field": (chains_text(extra='consensus_model = "majority"\n'),
                      "chain 'exit_review': unknown field 'consensus_model'"),
    "no chains": ("[defaults]\nconsensus = \"weighted\"\n", "missing field 'chains'"),
    "bad toml": ("[chains.entry\nsteps = [", "not valid TOML"),
    "bad threshold": (chains_text(extra="threshold = 1.5\n"), "chain 'exit_review': threshold: Input should be"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_is_one_line_and_exit_2_before_anything_runs(case, tmp_path, monkeypatch, clean_env, capsys):
    text, expected = BAD[case]
    path = tmp_path / "chains.toml"
    path.write_text(text)
    monkeypatch.setenv("VOLT_CHAINS_FILE", str(path))
    home = tmp_path / "home"
    assert main(["--home", str(home)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: {path}: ") and expected in line, line
    assert not home.exists()  # nothing ran: not even the data directory was made


def test_missing_file_is_one_line(tmp_path, monkeypatch, clean_env, capsys):
    monkeypatch.setenv("VOLT_CHAINS_FILE", str(tmp_path / "nope.toml"))
    assert main(["--home", str(tmp_path / "home")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "nope.toml: chains file not found" in line


def test_error_is_an_operational_error_with_the_file_name(tmp_path):
    with pytest.raises(ChainConfigError, match=r"x\.toml: chain 'entry': unknown agent 'ghost'"):
        parse_chains(chains_text(ENTRY.replace('"market_agent", ', '"ghost", ')), Path("x.toml"))


def test_shipped_file_is_valid_and_packaged():
    chains = load_chains(ROOT / "config" / "chains.toml")
    assert chains.select(held=False, regime=None)["name"] == "entry"
    assert chains.select(held=True, regime="BULL_MARKET")["name"] == "exit_review"
    hv = chains.select(held=False, regime="HIGH_VOLATILITY")
    assert hv["name"] == "high_volatility_entry" and hv["consensus"] == "confidence_weighted"
    assert hv["threshold"] == 0.4
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "config" in project["tool"]["setuptools"]["packages"]
    assert "*.toml" in project["tool"]["setuptools"]["package-data"]["config"]
    from graph.settings import VoltSettings
    assert VoltSettings().chains_file == ROOT / "config" / "chains.toml"


def test_selection_prefers_the_regime_chain_then_the_file_order():
    text = chains_text() + (f"[chains.second_exit]\nwhen = {{ held = true }}\nsteps = {EXIT}\nconsensus = \"majority\"\n"
                            f"[chains.bear_exit]\nwhen = {{ held = true, regime = [\"BEAR_MARKET\", \"SIDEWAYS\"] }}\n"
                            f"steps = {EXIT}\nconsensus = \"unanimous\"\nthreshold = 0.4\n")
    chains = parse_chains(text, Path("c.toml"))
    assert chains.select(held=True, regime="BULL_MARKET")["name"] == "exit_review"  # first catch-all
    assert chains.select(held=True, regime=None)["name"] == "exit_review"
    bear = chains.select(held=True, regime="SIDEWAYS")
    assert bear == {"name": "bear_exit", "held": True, "steps": eval(EXIT), "consensus": "unanimous",
                    "threshold": 0.4}
    assert chains.select(held=False, regime="SIDEWAYS")["name"] == "entry"


def test_edits_take_effect_on_the_next_load(tmp_path):
    path = tmp_path / "chains.toml"
    path.write_text(chains_text())
    assert load_chains(path).select(held=False, regime=None)["consensus"] == "weighted"
    path.write_text(chains_text(entry_model="confidence_weighted") + "\n# edited\n")
    assert load_chains(path).select(held=False, regime=None)["consensus"] == "confidence_weighted"


def test_graph_routes_by_the_chain_file(market_csv, settings_for, tmp_path):
    """An entry chain without sentiment and forex never runs them; its model is used."""
    path = tmp_path / "chains.toml"
    path.write_text(chains_text('["market_agent", "strategy_agent", "consensus", "risk_agent", '
                                '"auditor_agent", "history_reviewer", "peer_review"]', entry_model="majority"))
    model = scripted()
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1, chains_file=path)
    state = run_cycle(settings, chat_model_factory=lambda spec: model).state
    [d] = state["decisions"]
    assert d["chain"] == "entry" and d["consensus"]["model"] == "majority"
    assert d["sentiment"] is None and d["forex"] is None
    asked = {agent for agent, *_ in model.calls}
    assert "sentiment" not in asked and "forex" not in asked and "strategy" in asked


def test_studio_export_compiles_without_a_chains_file():
    from graph.builder import graph
    nodes = set(graph.get_graph(xray=1).nodes)
    assert {"analyze_candidate:exit_review", "analyze_candidate:position_risk"} <= nodes
