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
