"""python -m graph.health: one line per check, the worst status as a nagios exit code, and
nothing written to the home it inspects."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import scripted
from fake_ollama import FakeOllama

from graph.health import main
from graph.run import run_cycle
from memory.breakers import forget_process_breakers, get_breaker
from memory.ops_db import close_all

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--no-probe", "--disk-warn-mb", "1", "--disk-crit-mb", "0"]


@pytest.fixture(autouse=True)
def _no_leaks(monkeypatch, clean_env):
    monkeypatch.delenv("VOLT_ALERT_WEBHOOK", raising=False)
    forget_process_breakers()
    yield
    forget_process_breakers()
    close_all()


@pytest.fixture
def home(market_csv, settings_for) -> Path:
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1)
    run_cycle(settings, chat_model_factory=lambda spec: scripted())
    return settings.home


def _files(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*") if p.is_file()}


def health(capsys, *args: str) -> tuple[int, list[str]]:
    code = main(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out.strip().splitlines()


def status_of(lines: list[str], name: str) -> str:
    (line,) = [line for line in lines if line.split()[1:2] == [f"{name}:"]]
    return line.split()[0]


def test_a_healthy_home_is_ok_and_left_untouched(home, capsys):
    before = _files(home)
    code, lines = health(capsys, "--home", str(home), *FAST)
    assert code == 0, lines
    assert lines[0].startswith("VOLT OK")
    for name in ("home", "volt_db", "checkpoints_db", "disk", "last_cycle", "data", "errors", "drawdown",
                 "breakers", "models", "lock"):
        assert status_of(lines, name) == "OK", name
    assert "replay position" in next(line for line in lines if " data:" in line)
    assert _files(home) == before  # read-only: no file created or modified (no ops.db, no lock)


def test_json_is_one_document(home, capsys):
    code, lines = health(capsys, "--home", str(home), "--json", *FAST)
    doc = json.loads("\n".join(lines))
    assert code == doc["exit_code"] == 0 and doc["status"] == "OK"
    assert {c["name"] for c in doc["checks"]} >= {"volt_db", "breakers", "lock"}


def test_an_open_model_breaker_warns_and_every_model_open_is_critical(home, capsys, monkeypatch):
    b = get_breaker(home, "model", "m1", fail_max=1, reset_s=300)
    b.failed(ConnectionError("refused"))
    monkeypatch.setenv("VOLT_MODELS", "m1,m2")
    code, lines = health(capsys, "--home", str(home), *FAST)
    assert code == 1 and status_of(lines, "breakers") == "WARNING" and "model:m1 open" in " ".join(lines)
    monkeypatch.setenv("VOLT_MODELS", "m1")  # the only model: every agent answers with its prior
    code, lines = health(capsys, "--home", str(home), *FAST)
    assert code == 2 and status_of(lines, "breakers") == "CRITICAL"


def test_a_corrupted_ledger_is_critical_in_one_line(home, capsys):
    ledger = home / "volt.db"
    for suffix in ("-wal", "-shm"):
        Path(str(ledger) + suffix).unlink(missing_ok=True)
    ledger.write_bytes(b"garbage, not a database" * 200)
    code, lines = health(capsys, "--home", str(home), *FAST)
    assert code == 2
    bad = [line for line in lines if line.startswith("CRITICAL")]
    assert len(bad) == 1 and "volt_db" in bad[0] and "damaged" in bad[0]
    assert not any(" last_cycle:" in line for line in lines)  # not repeated by every ledger check


def test_a_missing_home_is_one_line_exit_2(tmp_path, capsys):
    code, lines = health(capsys, "--home", str(tmp_path / "nope"))
    assert code == 2 and len(lines) == 1 and "does not exist" in lines[0]
    assert not (tmp_path / "nope").exists()


def test_bad_arguments_exit_2(capsys):
    assert main(["--interval", "-1"]) == 2


def test_a_stale_cycle_and_a_drawdown_past_the_limit(home, capsys):
    with sqlite3.connect(home / "volt.db") as conn:
        conn.execute("UPDATE cycles SET completed_at = '2000-01-01T00:00:00.000Z'")
        conn.execute("UPDATE portfolios SET peak_equity = peak_equity * 2")
    conn.close()
    code, lines = health(capsys, "--home", str(home), *FAST)
    assert code == 2
    assert status_of(lines, "last_cycle") == "CRITICAL" and status_of(lines, "drawdown") == "CRITICAL"
    assert "new buys halt" in next(line for line in lines if " drawdown:" in line)


def test_lock_holder_alive_or_gone(home, capsys):
    (home / "locks").mkdir()
    (home / "locks" / "main.lock").write_text(str(os.getpid()))
    code, lines = health(capsys, "--home", str(home), "--expect-running", *FAST)
    assert code == 0 and "alive" in next(line for line in lines if " lock:" in line)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (home / "locks" / "main.lock").write_text(str(dead.pid))
    code, lines = health(capsys, "--home", str(home), "--expect-running", *FAST)
    assert code == 2 and status_of(lines, "lock") == "CRITICAL"
    code, lines = health(capsys, "--home", str(home), *FAST)
    assert code == 0  # a cron-driven install holds no lock between cycles


def test_model_chain_probe_against_the_local_stand_in(home, capsys, monkeypatch):
    with FakeOllama(["tiny:latest"], lambda m, b: "{}") as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        monkeypatch.setenv("VOLT_MODELS", "tiny")
        code, lines = health(capsys, "--home", str(home), "--disk-warn-mb", "1")
        assert code == 0 and "usable: tiny" in next(line for line in lines if " models:" in line)
        monkeypatch.setenv("VOLT_MODELS", "absent:7b")
        code, lines = health(capsys, "--home", str(home), "--disk-warn-mb", "1")
        assert code == 1 and status_of(lines, "models") == "WARNING"
        assert server.requests == []  # only the model list was asked for, no chat


def test_runs_as_a_module(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "graph.health", "--home", str(tmp_path / "none"), "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and json.loads(proc.stdout)["checks"][0]["status"] == "CRITICAL"


@pytest.fixture
def breaker_home(market_csv, settings_for) -> Path:
    """Two cycles in which any index move trips the market breaker: it blocks new buys."""
    settings = settings_for(market_csv, watchlist=["AAA"], top_k=1, market_breaker_pct=1e-6)
    for _ in range(2):
        state = run_cycle(settings, chat_model_factory=lambda spec: scripted()).state
    assert state["protections"]["active"] == ["market_breaker"]
    return settings.home


def _protection_days(home: Path) -> list[str]:
    with sqlite3.connect(home / "volt.db") as conn:
        days = [r[0] for r in conn.execute("SELECT as_of FROM cycle_protections ORDER BY as_of")]
    conn.close()
    return days


def test_no_active_protection_is_ok(home, capsys):
    code, lines = health(capsys, "--home", str(home), *FAST)
    assert code == 0 and status_of(lines, "protections") == "OK"
    assert "none active" in next(line for line in lines if " protections:" in line)


def test_the_market_breaker_of_the_last_cycle_warns_naming_it_and_since_when(breaker_home, capsys):
    before = _files(breaker_home)
    code, lines = health(capsys, "--home", str(breaker_home), *FAST)
    assert code == 1 and status_of(lines, "protections") == "WARNING", lines
    first, last = _protection_days(breaker_home)
    [line] = [line for line in lines if " protections:" in line]
    assert f"market_breaker blocks new buys since {first}" in line and line.split()[2] == f"{last}:"
    assert "market breaker: the index moved" in line
    code, out = health(capsys, "--home", str(breaker_home), "--json", *FAST)
    doc = json.loads("\n".join(out))
    [check] = [c for c in doc["checks"] if c["name"] == "protections"]
    assert doc["exit_code"] == 1 and check["status"] == "WARNING" and "market_breaker" in check["detail"]
    assert _files(breaker_home) == before  # read-only


def test_damaged_protection_rows_are_skipped_and_a_hostile_reason_stays_one_line(breaker_home, capsys):
    first, last = _protection_days(breaker_home)
    with sqlite3.connect(breaker_home / "volt.db") as conn:
        state = json.loads(conn.execute("SELECT state FROM cycle_protections WHERE as_of=?", (last,)).fetchone()[0])
        for item in state["items"]:
            item["reason"] = "line one\nWARNING injected: line two" if item["name"] == "market_breaker" else None
        conn.execute("UPDATE cycle_protections SET state=? WHERE as_of=?", (json.dumps(state), last))
        conn.execute("INSERT INTO cycle_protections(portfolio, as_of, state) VALUES ('main', '2999-01-01', 'nope')")
        conn.execute("INSERT INTO cycle_protections(portfolio, as_of, state) VALUES ('main', '2999-01-02', '[1]')")
    conn.close()
    code, lines = health(capsys, "--home", str(breaker_home), *FAST)
    assert code == 1 and status_of(lines, "protections") == "WARNING"
    [line] = [line for line in lines if " protections:" in line]
    assert f"since {first}" in line and "line one WARNING injected: line two" in line
    assert not any(line.startswith("WARNING injected") for line in lines)


def test_a_protection_starting_sends_exactly_one_alert_to_the_webhook(market_csv, settings_for, monkeypatch):
    from test_alerts import Webhook

    from memory.alerts import HALT, flush_alerts
    from memory.ledger import Ledger
    from nodes.trading_plans import cycle_protections
    from tools.data_source import market_dataset

    hook = Webhook()
    try:
        monkeypatch.setenv("VOLT_ALERT_WEBHOOK", hook.url)
        settings = settings_for(market_csv, watchlist=["AAA"], top_k=1, market_breaker_pct=1e-6)
        for _ in range(2):  # active in both cycles: it started once
            state = run_cycle(settings, chat_model_factory=lambda spec: scripted()).state
        # the same cycle's protections decided again (a resumed cycle) alert nothing new
        cycle_protections(settings, Ledger(settings.ledger_path), market_dataset(settings), settings.portfolio,
                          state["as_of"], settings.starting_cash)
        assert flush_alerts(5)
        halts = [b for b in hook.bodies if b["kind"] == HALT]
        assert len(halts) == 1 and len(hook.bodies) == 1, hook.bodies
        assert halts[0]["details"]["protection"] == "market_breaker"
        assert "market breaker" in halts[0]["message"]
    finally:
        hook.close()
