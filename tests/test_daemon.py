"""The daemon: trading calendar, stop signals (SIGTERM mid-cycle: exit 0, one line, the next
start resumes with no double fill), JSON log of the loop, workers dying with their parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import scripted

from graph.daemon import StopRequested, StopSignals, next_bar_at, session_after, session_on
from graph.run import main, run_cycle
from memory.db import open_db

HELPER = Path(__file__).with_name("daemon_helper.py")
NY = ZoneInfo("America/New_York")


# --- calendar -------------------------------------------------------------------------------

def test_the_session_after_a_friday_is_monday():
    s = session_after(date(2025, 3, 7))  # a Friday
    assert s.day == date(2025, 3, 10) and s.open.astimezone(NY).hour == 9


def test_half_day_closes_at_one_and_christmas_is_skipped():
    eve = session_on(date(2025, 12, 24))
    assert eve is not None and eve.half_day
    assert (eve.close.astimezone(NY).hour, eve.close.astimezone(NY).minute) == (13, 0)
    assert session_on(date(2025, 12, 25)) is None  # holiday
    assert session_after(date(2025, 12, 24)).day == date(2025, 12, 26)
    assert session_after(date(2026, 7, 2)).day == date(2026, 7, 6)  # July 3 observed, weekend


def test_next_bar_waits_for_the_next_session_after_the_last_completed_day():
    # Wednesday 2025-12-24 after the early close, cycle done: Friday's open (+ settle)
    when = next_bar_at(datetime(2025, 12, 24, 19, 0, tzinfo=UTC), date(2025, 12, 24), settle_s=0)
    assert when.astimezone(NY) == datetime(2025, 12, 26, 9, 30, tzinfo=NY)
    # inside a session whose cycle is not done: now (a time not after now)
    now = datetime(2025, 12, 26, 16, 0, tzinfo=UTC)
    assert next_bar_at(now, date(2025, 12, 24)) <= now
    # Saturday: Monday's open
    assert next_bar_at(datetime(2025, 12, 27, 12, 0, tzinfo=UTC), date(2025, 12, 26), settle_s=0).day == 29
    with pytest.raises(ValueError):
        next_bar_at(datetime(2025, 12, 27, 12, 0), None)  # naive time refused


# --- stop signals ----------------------------------------------------------------------------

def test_stop_signals_wake_a_sleep_and_stop_at_the_next_check():
    with StopSignals() as stop:
        stop.check()  # nothing requested: no-op
        os.kill(os.getpid(), signal.SIGTERM)
        started = time.monotonic()
        assert stop.sleep(30) is True and time.monotonic() - started < 5
        with pytest.raises(StopRequested) as info:
            stop.check()
        assert info.value.signal_name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):  # a second signal: at once
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def _run_helper_until_mid_cycle(tmp_path, csv, sig, *extra):
    marker = tmp_path / "started"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOLT_", "LANGSMITH", "LANGCHAIN"))}
    proc = subprocess.Popen([sys.executable, str(HELPER), str(marker), str(tmp_path / "home"), str(csv), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "the cycle never started"
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_sigterm_during_a_loop_cycle_exits_0_with_one_line_and_resumes_without_double_fill(
        tmp_path, market_csv, settings_for):
    rc, out, err = _run_helper_until_mid_cycle(tmp_path, market_csv, signal.SIGTERM, "--loop", "0")
    assert rc == 0, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("stopped (SIGTERM)"), err
    assert "Traceback" not in err

    settings = settings_for(market_csv, home=tmp_path / "home")
    with open_db(settings.ledger_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM cycles").fetchone()[0] == 0  # stopped mid-cycle
    resumed = run_cycle(settings, chat_model_factory=lambda spec: scripted())
    assert resumed.resumed is True
    with open_db(settings.ledger_path) as conn:
        fills = conn.execute("SELECT portfolio, fill_date, symbol, COUNT(*) FROM fills GROUP BY 1, 2, 3").fetchall()
        assert conn.execute("SELECT COUNT(*) FROM cycles").fetchone()[0] == 1
    assert all(row[3] == 1 for row in fills)
    assert len(fills) == len(resumed.state["fills"])
    # the loop's JSON log says what it did
    events = [json.loads(line) for line in (tmp_path / "home" / "logs" / "volt.log").read_text().splitlines()]
    names = [e["event"] for e in events]
    assert "loop start" in names and "cycle start" in names and "loop stopped" in names
    assert next(e for e in events if e["event"] == "loop stopped")["signal"] == "SIGTERM"


def test_loop_logs_each_cycle_with_duration_fills_and_errors(tmp_path, market_csv, settings_for):
    settings = settings_for(market_csv, home=tmp_path / "home")
    assert main(["--home", str(settings.home), "--data-csv", str(market_csv), "--models", "m1",
                 "--loop", "0", "--cycles", "2"], chat_model_factory=lambda spec: scripted()) == 0
    events = [json.loads(line) for line in (settings.home / "logs" / "volt.log").read_text().splitlines()]
    ends = [e for e in events if e["event"] == "cycle end"]
    assert [e["cycle"] for e in ends] == [1, 2]
    assert all({"duration_s", "fills", "errors", "as_of"} <= set(e) for e in ends)


# --- workers die with their parent ------------------------------------------------------------

PARENT = textwrap.dedent("""
    import multiprocessing, os, sys, time
    sys.path.insert(0, {root!r})

    def worker(parent, path):
        from graph.daemon import die_with_parent
        die_with_parent(parent)
        while True:  # "still writing"
            with open(path, "a") as f:
                f.write("x")
            time.sleep(0.05)

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("spawn")
        kids = [ctx.Process(target=worker, args=(os.getpid(), {out!r} + str(i))) for i in range(2)]
        for k in kids:
            k.start()
        print(" ".join(str(k.pid) for k in kids), flush=True)
        time.sleep(600)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (not reaped yet) is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_replay_workers_die_within_2s_of_a_killed_parent(tmp_path):
    root = str(Path(__file__).resolve().parents[1])
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(root=root, out=str(tmp_path / "w")))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"w{i}").exists() for i in range(2)):  # both are writing
        assert time.monotonic() < deadline
        time.sleep(0.05)
    parent.kill()
    parent.wait()
    killed = time.monotonic()
    while any(_alive(p) for p in pids) and time.monotonic() - killed < 2.0:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "a worker outlived its parent by 2 s"


def test_backtest_worker_watches_its_parent():
    import inspect

    from graph import backtest

    assert "die_with_parent" in inspect.getsource(backtest._replay_worker)
    assert "os.getpid()" in inspect.getsource(backtest._run_in_parallel)
