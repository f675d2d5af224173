"""A backtest killed part-way (os._exit in a child process) resumes to the same result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import held_reduces, scripted, synthetic_frame

from graph.backtest import BacktestConfig, BacktestError, DayStore, main, run_backtest
from memory.db import open_db

HELPER = Path(__file__).with_name("backtest_crash_helper.py")
END = "2020-03-13"  # 4 decision days on the 60-bar synthetic data


pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture(scope="module")
def csv_and_reference(tmp_path_factory):
    """The data and an uninterrupted backtest of it (learning on and off)."""
    root = tmp_path_factory.mktemp("bt")
    csv = root / "market.csv"
    synthetic_frame({"AAA": 0.25, "BBB": 0.15, "CCC": -0.05}, days=60).to_csv(csv, index=False)
    cfg = BacktestConfig(data_csv=str(csv), models=["m1"], top_k=3, cache=False, end=END)
    env = {k: v for k, v in os.environ.items() if k.startswith("VOLT_")}
    for k in env:
        del os.environ[k]
    try:
        reference = run_backtest(cfg, root / "reference", chat_model_factory=lambda spec: scripted(respond=held_reduces), reports=False)
    finally:
        os.environ.update(env)
    return csv, reference


def crash(mode: str, out: Path, csv: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLT_")}
    proc = subprocess.run([sys.executable, str(HELPER), mode, str(out), str(csv), END], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-3000:]


def count(path: Path, sql: str) -> int:
    with open_db(path) as conn:
        return conn.execute(sql).fetchone()[0]


@pytest.mark.parametrize("mode", ["mid_cycle", "after_cycle", "frozen_run"])
def test_killed_backtest_resumes_to_the_same_final_equity(mode, csv_and_reference, tmp_path):
    csv, reference = csv_and_reference
    out = tmp_path / "out"
    crash(mode, out, csv)
    [ledger] = out.glob("runs-*/agents/volt.db")
    done = count(ledger, "SELECT COUNT(*) FROM cycles")
    assert 0 < done < reference["period"]["days"] or mode == "frozen_run"

    with pytest.raises(BacktestError, match="--resume"):  # not silently restarted
        run_backtest(BacktestConfig(data_csv=str(csv), models=["m1"], end=END), out, reports=False)

    resumed = run_backtest(None, out, resume=True, chat_model_factory=lambda spec: scripted(respond=held_reduces), reports=False)
    assert resumed["resumed"] is True
    for run in ("agents", "agents_frozen"):
        got, want = resumed["strategies"][run], reference["strategies"][run]
        assert got["final_equity"] == pytest.approx(want["final_equity"], abs=1e-9), run
        assert got["fills"] == want["fills"], run
        assert resumed["series"]["equity"][run] == reference["series"]["equity"][run], run
    # nothing booked twice, every day recorded once
    assert count(ledger, "SELECT COUNT(*) FROM fills") == reference["strategies"]["agents"]["fills"]
    assert len(DayStore(out / "backtest.db").days("agents")) == reference["period"]["days"]


def test_interrupt_then_resume_from_the_cli(csv_and_reference, tmp_path, capsys):
    csv, reference = csv_and_reference
    out = tmp_path / "cli"
    state = {"calls": 0}

    def interrupting(spec):
        def respond(agent, symbol, evidence, messages):
            state["calls"] += 1
            if state["calls"] == 25:
                raise KeyboardInterrupt  # Ctrl-C during a model call on the third day or so
            return held_reduces(agent, symbol, evidence, messages)

        return scripted(respond=respond)

    args = ["--data-csv", str(csv), "--start", "2019-06-01", "--end", END, "--model", "m1", "--top-k", "3",
            "--no-cache", "--out", str(out), "--no-progress"]
    assert main(args, chat_model_factory=interrupting) == 130
    err = capsys.readouterr().err
    assert "--resume" in err and "replay starts 2020-03-10" in err

    assert main(args, chat_model_factory=lambda spec: scripted(respond=held_reduces)) == 2  # unfinished: refuses to start over
    assert "unfinished backtest" in capsys.readouterr().err

    assert main(["--out", str(out), "--resume", "--no-progress"], chat_model_factory=lambda spec: scripted(respond=held_reduces)) == 0
    text = capsys.readouterr().out
    assert "VOLT backtest 2020-03-10..2020-03-13" in text
    for label in ("Agent graph (learning)", "Agent graph, learning off", "Buy & hold", "SMA(20/50)", "RSI(14)"):
        assert label in text
    summary = __import__("json").loads((out / "summary.json").read_text())
    assert summary["strategies"]["agents"]["final_equity"] == pytest.approx(
        reference["strategies"]["agents"]["final_equity"], abs=1e-9)
    assert (out / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    for section in ("<h2>Equity</h2>", "<h2>Drawdown</h2>", "<h2>Agent weights</h2>", "Trades of the agent graph",
                    "data:image/png;base64,", "cache hits"):
        assert section in page

    # a finished backtest re-run into the same directory starts over (the cache is kept)
    assert main(args, chat_model_factory=lambda spec: scripted(respond=held_reduces)) == 0
