"""``python -m graph.run``: text and JSON output, exit codes, the portfolio lock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import scripted

from graph.run import main


def args_for(settings, *extra):
    return ["--home", str(settings.home), "--data-csv", str(settings.data_csv), *extra]


def test_text_summary(market_csv, settings_for, capsys):
    settings = settings_for(market_csv)
    assert main(args_for(settings, "--watchlist", "AAA", "--top-k", "1", "--models", "m1"), chat_model_factory=lambda s: scripted()) == 0
    out = capsys.readouterr().out
    assert out.startswith("VOLT cycle ")
    for expected in ("candidates (volume surge + momentum, plus held): AAA", "market    BULLISH",
                     "strategy  BUY", "[model m1]", "consensus BUY", "review    APPROVED",
                     "decision  APPROVED: BUY", "orders and fills", "portfolio after: cash", "LLM calls: 5"):
        assert expected in out, expected


def test_json_document(market_csv, settings_for, capsys):
    settings = settings_for(market_csv)
    assert main(args_for(settings, "--json"), chat_model_factory=lambda s: scripted()) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["as_of"] and sorted(doc["candidates"]) == ["AAA", "BBB", "CCC"]
    assert {s["source"] for s in doc["signals"]} == {"model", "abstain"}
    assert {s["agent"] for s in doc["signals"] if s["source"] == "model"} == {
        "macro_agent", "market_agent", "strategy_agent", "risk_agent", "auditor_agent"}
    # replay has no news or forex: the specialists abstain and are left out of the vote
    assert {s["agent"] for s in doc["signals"] if s["source"] == "abstain"} == {"sentiment_agent", "forex_agent"}
    assert all(c["abstained"] == ["forex_agent", "sentiment_agent"] for c in doc["consensus"].values())
    assert set(doc["consensus"]) == {"AAA", "BBB", "CCC"}
    assert all(r["outcome"] == "APPROVED" for r in doc["reviews"].values())
    assert len(doc["orders"]) == len(doc["fills"]) == 3
    p = doc["portfolio"]
    held = sum(pos["market_value"] for pos in p["positions"].values())
    assert p["equity"] == pytest.approx(p["cash"] + held)
    assert all(pos["qty"] > 0 for pos in p["positions"].values())


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_model_reachable_uses_priors_and_says_how_to_get_one(market_csv, settings_for, capsys, monkeypatch):
    settings = settings_for(market_csv)
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{closed_port()}")
    assert main(args_for(settings, "--models", "qwen2.5-coder:7b", "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["models"]["reachable"] is False and doc["models"]["usable"] == []
    assert "no language model reachable" in doc["models"]["note"] and "ollama pull qwen2.5-coder:7b" in doc["models"]["note"]
    assert doc["signals"] and all(s["source"] in ("prior", "limits", "abstain") for s in doc["signals"])
    assert all(s["degraded"] for s in doc["signals"] if s["source"] == "prior")
    assert doc["errors"] == [] and doc["llm_calls"] == 0


def test_unreadable_csv_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("this,is,not\nmarket,data,at all\n")
    assert main(["--home", str(tmp_path / "h"), "--data-csv", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "missing column" in err and "\n" not in err


@pytest.mark.parametrize(("as_of", "message"), [("2020-01-04", "not a tradable day"), ("yesterday", "not a date")])
def test_bad_as_of_is_exit_2(market_csv, settings_for, capsys, as_of, message):
    settings = settings_for(market_csv)
    assert main(args_for(settings, "--as-of", as_of, "--models", "")) == 2
    assert message in capsys.readouterr().err


def test_as_of_cannot_go_back(market_csv, settings_for, capsys):
    settings = settings_for(market_csv)
    assert main(args_for(settings, "--as-of", "2020-04-01", "--models", "")) == 0
    assert main(args_for(settings, "--as-of", "2020-03-20", "--models", "")) == 2
    assert "already completed 2020-04-01" in capsys.readouterr().err


def test_second_concurrent_run_fails_fast(market_csv, settings_for, capsys):
    settings = settings_for(market_csv)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from memory.run_lock import portfolio_lock\n"
         f"with portfolio_lock(Path({str(settings.home)!r}), 'main'):\n"
         "    print('locked', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(args_for(settings, "--models", "")) == 2
        err = capsys.readouterr().err
        assert "portfolio 'main' is in use by another run" in err and str(holder.pid) in err
    finally:
        holder.kill()
        holder.wait()
    assert main(args_for(settings, "--models", "")) == 0  # free again once the holder is gone


def test_ctrl_c_on_a_one_shot_run_is_one_line(tmp_path, market_csv):
    """SIGINT mid-cycle: one line on stderr, no KeyboardInterrupt traceback, exit 130; the
    checkpointed cycle resumes on the next start."""
    import signal

    from test_daemon import _run_helper_until_mid_cycle

    rc, out, err = _run_helper_until_mid_cycle(tmp_path, market_csv, signal.SIGINT)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 130 and len(lines) == 1 and lines[0].startswith("interrupted"), err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_model_line_is_short_unless_verbose():
    from graph.report_ops import model_line

    status = {"usable": ["llamacpp:smollm2"], "missing": ["ollama:qwen3:8b"], "reachable": False,
              "host": "http://localhost:11434", "breaker_open": [], "note": "x" * 400}
    assert model_line(status) == "models: llamacpp:smollm2 (Ollama unreachable)"
    assert model_line({"usable": [], "missing": [], "note": "no models configured (VOLT_MODELS is empty)"}) \
        == "models: none configured (quantitative priors)"
    blocked = {"usable": [], "missing": ["ollama:a"], "breaker_open": ["ollama:a"], "reachable": True}
    assert model_line(blocked) == "models: none usable, quantitative priors (breaker open: ollama:a)"


def test_report_lists_open_breakers_and_this_cycles_alerts(tmp_path, market_csv, settings_for):
    import time as time_module

    from graph.report import build_report, render_text
    from graph.run import run_cycle
    from memory.alerts import raise_alert
    from memory.breakers import forget_process_breakers, model_breaker

    settings = settings_for(market_csv, home=tmp_path / "home", breaker_fail_max=1)
    state = run_cycle(settings, chat_model_factory=lambda spec: scripted()).state
    since = time_module.time()
    model_breaker(settings, "ollama:dead").record(ConnectionError("refused"))  # fail_max 1: open
    raise_alert(settings.home, "halt", "drawdown halt")
    forget_process_breakers()
    report = build_report(state, home=settings.home, alerts_since=since)
    text = render_text(report)
    assert [b["name"] for b in report.breakers] == ["model:ollama:dead"]
    assert "breakers: open: model:ollama:dead" in text
    assert "alert: halt: drawdown halt" in text and "alert: breaker_open" in text
    later = build_report(state, home=settings.home, alerts_since=time_module.time() + 1)
    assert later.alerts == []
