"""``python -m graph.backtest``: side-by-side replays, errors, the user's portfolio left alone."""

from __future__ import annotations

import json

import pytest

from graph.backtest import main

pytestmark = pytest.mark.usefixtures("clean_env")


def test_parallel_replays_match_sequential_ones(market_csv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a live ./.volt here must stay untouched
    common = ["--data-csv", str(market_csv), "--end", "2020-03-13", "--model", "none", "--no-progress", "--json"]
    assert main([*common, "--out", str(tmp_path / "seq"), "--jobs", "1"]) == 0
    seq = json.loads(capsys.readouterr().out)
    assert main([*common, "--out", str(tmp_path / "par"), "--jobs", "2"]) == 0
    par = json.loads(capsys.readouterr().out)
    assert par["series"]["equity"] == seq["series"]["equity"]
    assert set(par["strategies"]) == {"agents", "agents_frozen", "buy_and_hold", "sma_crossover", "rsi_rule"}
    llm = par["strategies"]["agents"]["llm"]
    assert llm["model_calls"] == 0 and llm["degraded_rate"] == 1.0  # priors only
    assert par["strategies"]["agents"]["learning"] is True and par["strategies"]["agents_frozen"]["learning"] is False
    assert not (tmp_path / ".volt").exists()
    for name in ("summary.json", "report.html", "equity.png"):
        assert (tmp_path / "par" / name).exists()


def test_operational_errors_are_one_line(market_csv, tmp_path, capsys):
    assert main(["--data-csv", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["--data-csv", str(market_csv), "--start", "2030-01-01", "--out", str(tmp_path / "o")]) == 2
    assert "no tradable day" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
