"""Damaged state never blocks: one line and exit 2 for storage failures (ledger untouched),
checkpoints and the situation memory rebuilt from the ledger, audit messages exactly-once.

Tests run as root in CI, and root ignores file permissions, so a read-only home is
simulated where needed: SQLite opened with ``mode=ro`` (real SQLITE_READONLY errors) and a
PermissionError at the lock-file boundary. The chmod test runs only as a normal user.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import memory.db as db
from graph.errors import StorageError
from graph.run import main, run_cycle
from memory.checkpoints import is_damage
from memory.db import open_db
from memory.learning_store import LearningStore
from memory.ledger import Ledger
from memory.message_log import MessageLog, MessageType, message, stable_ids
from memory.situation_memory import MEMORY_AGENT, memory_for, open_memory
from memory.storage import storage_error
from tools.situation_features import FEATURES

ROOT = Path(__file__).resolve().parents[1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(settings, *extra) -> list[str]:
    return ["--home", str(settings.home), "--data-csv", str(settings.data_csv), "--models", "", *extra]


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err.strip()


def settle(path: Path) -> None:
    """Move the WAL into the file, as the last connection of a finished process does (this
    process keeps pooled connections open, so SQLite would keep reading pages from the WAL)."""
    conn = sqlite3.connect(path)
    busy, _log, _moved = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    conn.close()
    assert busy == 0


def replaced(path: Path, data: bytes) -> None:
    """Write ``data`` as a new file over ``path`` (a new inode, as another process would see)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def last_day(settings) -> str:
    return Ledger(settings.ledger_path).last_completed_cycle(settings.portfolio)["as_of"]


@pytest.fixture
def ran(market_csv, settings_for):
    """Settings (priors only, fast) with two completed cycles."""
    settings = settings_for(market_csv, models=[])
    for _ in range(2):
        run_cycle(settings)
    return settings


# --- the ledger (volt.db) ------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["garbage", "truncated", "zeroed-page"])
def test_damaged_ledger_is_one_line_exit_2_and_untouched(ran, capsys, damage):
    path = ran.ledger_path
    settle(path)
    good = path.read_bytes()
    backup = path.with_name("volt.db.bak")
    backup.write_bytes(good)
    if damage == "garbage":
        bad = os.urandom(len(good))
    elif damage == "truncated":
        bad = good[: len(good) // 2 + 1000]  # mid-file, not on a page boundary
    else:
        bad = good[:4096] + b"\0" * 4096 + good[8192:]  # one page of the tables wiped
    replaced(path, bad)
    before = digest(path)
    capsys.readouterr()
    assert main(cli(ran)) == 2
    err = one_line(capsys)
    assert f"{path} is damaged" in err and "restore it from a backup" in err
    assert digest(path) == before  # not a byte written to the damaged ledger
    # restored from the backup: the portfolio continues with the next day
    days = sorted(c["as_of"] for c in Ledger(backup).cycles(ran.portfolio))
    os.replace(backup, path)
    assert main(cli(ran, "--json")) == 0
    assert last_day(ran) > days[-1] and len(Ledger(path).cycles(ran.portfolio)) == 3


def test_damaged_ledger_in_a_fresh_process_prints_exactly_one_line(ran):
    settle(ran.ledger_path)
    ran.ledger_path.write_bytes(b"this is not sqlite" * 300)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLT_")}
    proc = subprocess.run([sys.executable, "-m", "graph.run", *cli(ran)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {ran.ledger_path} is damaged (not a SQLite database): restore it from a backup, "
        "or move it aside to start a new ledger"]
    learning = subprocess.run([sys.executable, "-m", "graph.learning", "--home", str(ran.home)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert learning.returncode == 2 and len(learning.stderr.splitlines()) == 1
    assert "volt.db is damaged" in learning.stderr


# --- the data directory ---------------------------------------------------------------------

def test_home_that_is_a_file_is_one_line(market_csv, settings_for, tmp_path, capsys):
    settings = settings_for(market_csv)
    home = tmp_path / "afile"
    home.write_text("not a directory")
    assert main(["--home", str(home), "--data-csv", str(market_csv)]) == 2
    assert one_line(capsys) == f"error: VOLT_HOME {home} is a file, not a directory: use --home DIR"
    assert main(["--home", str(home / "below"), "--data-csv", str(market_csv)]) == 2
    assert f"{home} is a file, not a directory" in one_line(capsys)
    assert home.read_text() == "not a directory"
    del settings


def test_read_only_ledger_is_one_line_and_untouched(ran, capsys, monkeypatch):
    """SQLite opened read-only (``mode=ro``): the real SQLITE_READONLY a read-only home gives."""
    real = sqlite3.connect

    def read_only(path, *args, **kwargs):
        return real(f"file:{path}?mode=ro", *args, uri=True, **kwargs)

    before = digest(ran.ledger_path)
    db._local.pool = {}  # connections opened before are read-write: a new process would not have them
    monkeypatch.setattr(sqlite3, "connect", read_only)
    capsys.readouterr()
    assert main(cli(ran)) == 2
    err = one_line(capsys)
    assert "read-only" in err and "use --home DIR" in err and str(ran.home) in err
    monkeypatch.undo()
    db._local.pool = {}
    assert digest(ran.ledger_path) == before
    day = last_day(ran)
    assert main(cli(ran)) == 0 and last_day(ran) > day


def test_read_only_lock_directory_is_one_line(ran, capsys, monkeypatch):
    import memory.run_lock as run_lock

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(args[0]))

    monkeypatch.setattr(run_lock, "open", denied, raising=False)
    capsys.readouterr()
    assert main(cli(ran)) == 2
    err = one_line(capsys)
    assert "main.lock" in err and "read-only" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions (simulated above)")
def test_read_only_home_with_chmod(ran, capsys):
    day = last_day(ran)
    before = digest(ran.ledger_path)
    for p in [ran.home, *ran.home.iterdir()]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        assert main(cli(ran)) == 2
        assert "read-only" in one_line(capsys)
    finally:
        for p in [ran.home, *ran.home.iterdir()]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert digest(ran.ledger_path) == before
    assert main(cli(ran)) == 0 and last_day(ran) > day


def test_full_disk_is_one_line_and_the_next_run_finishes_the_cycle(ran, settings_for, market_csv, tmp_path,
                                                                  capsys, monkeypatch):
    """A real SQLITE_FULL: ``PRAGMA max_page_count`` caps the ledger at its current size."""
    real_prepare = db._prepare

    def capped(conn, path):
        conn = real_prepare(conn, path)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    day = last_day(ran)
    db._local.pool = {}
    monkeypatch.setattr(db, "_prepare", capped)
    capsys.readouterr()
    assert main(cli(ran)) == 2
    err = one_line(capsys)
    assert f"{ran.ledger_path}: disk full" in err and "free space and run again" in err
    monkeypatch.undo()
    db._local.pool = {}
    assert main(cli(ran)) == 0  # resumes the interrupted cycle (or runs it) to the end
    assert last_day(ran) > day
    # the same portfolio as a run that never met a full disk
    clean = settings_for(market_csv, models=[], home=tmp_path / "clean")
    for _ in range(3):
        run_cycle(clean)
    ours, theirs = Ledger(ran.ledger_path).account("main"), Ledger(clean.ledger_path).account("main")
    assert ours.cash == pytest.approx(theirs.cash)
    assert {s: p.qty for s, p in ours.positions.items()} == pytest.approx({s: p.qty for s, p in theirs.positions.items()})
    for table in ("cycles", "fills", "agent_predictions", "agent_messages"):
        with open_db(ran.ledger_path) as ours_db, open_db(clean.ledger_path) as theirs_db:
            count = f"SELECT COUNT(*) FROM {table}"
            assert ours_db.execute(count).fetchone()[0] == theirs_db.execute(count).fetchone()[0], table


def test_storage_errors_are_classified():
    home = Path("/volt-home")
    full = storage_error(OSError(errno.ENOSPC, "No space left on device"), home / "locks" / "main.lock")
    assert full.kind == "full" and "disk full" in str(full) and "free space" in str(full)
    sq = sqlite3.OperationalError("database or disk is full")
    assert storage_error(sq, home / "volt.db").kind == "full"
    assert storage_error(sqlite3.OperationalError("database is locked"), home / "volt.db").kind == "busy"
    assert storage_error(sqlite3.DatabaseError("file is not a database"), home / "volt.db").kind == "damaged"
    # a programming error is a bug with a traceback, not a storage failure
    assert storage_error(sqlite3.IntegrityError("NOT NULL constraint failed: x"), home / "volt.db") is None
    assert storage_error(sqlite3.ProgrammingError("Incorrect number of bindings"), home / "volt.db") is None


# --- checkpoints: a cache of the ledger -------------------------------------------------------

@pytest.mark.parametrize("damage", ["garbage", "truncated", "blob"])
def test_damaged_checkpoints_are_moved_aside_and_the_cycle_continues(ran, capsys, damage):
    path = ran.checkpoint_path
    day = last_day(ran)
    if damage == "garbage":
        replaced(path, os.urandom(path.stat().st_size))
    elif damage == "truncated":
        data = path.read_bytes()
        replaced(path, data[: len(data) // 2 + 777])
    else:  # a valid database whose checkpoint does not decode
        conn = sqlite3.connect(path)
        conn.execute("UPDATE checkpoints SET checkpoint = x'c1deadbeef00ff'")
        conn.commit()
        conn.close()
    capsys.readouterr()
    result = run_cycle(ran)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {path} is damaged") and "restarts from the ledger" in err
    assert result.resumed is False and result.state["as_of"] > day
    assert last_day(ran) == result.state["as_of"]
    assert len(list(ran.home.glob("checkpoints.db.damaged-*"))) == 1
    # the new checkpoint file works: the following run continues normally, no warning
    assert run_cycle(ran).state["as_of"] > result.state["as_of"]
    assert capsys.readouterr().err == ""


def test_damaged_checkpoints_mid_cycle_restart_without_double_fills(market_csv, settings_for, tmp_path, capsys):
    from conftest import scripted
    from test_crash_resume import crash, table_count

    settings = settings_for(market_csv, top_k=3)
    crash("after_first_fill", settings.home, market_csv)
    assert table_count(settings, "fills") == 1 and table_count(settings, "cycles") == 0
    wal = settings.checkpoint_path.with_name("checkpoints.db-wal")
    assert wal.exists()  # the killed process left its checkpoints in the WAL: damage both
    replaced(wal, os.urandom(wal.stat().st_size))
    replaced(settings.checkpoint_path, os.urandom(8192))
    result = run_cycle(settings, chat_model_factory=lambda spec: scripted())
    assert "restarts from the ledger" in capsys.readouterr().err
    assert result.resumed is False
    assert table_count(settings, "fills") == len(result.state["fills"]) == 3
    assert table_count(settings, "cycles") == 1
    clean = settings_for(market_csv, top_k=3, home=tmp_path / "clean")
    reference = run_cycle(clean, chat_model_factory=lambda spec: scripted()).state
    assert result.state["as_of"] == reference["as_of"]
    # one fill per symbol (the one made before the kill was kept, not repeated), and the
    # cash is exactly what those fills left (the restart decided with that fill in the books,
    # so its sizes differ slightly from an uninterrupted run's)
    with open_db(settings.ledger_path) as conn:
        fills = [dict(r) for r in conn.execute("SELECT symbol, side, qty, price, fee FROM fills")]
    assert sorted(f["symbol"] for f in fills) == sorted(f["symbol"] for f in reference["fills"])
    spent = sum(f["qty"] * f["price"] + f["fee"] for f in fills if f["side"] == "BUY")
    assert Ledger(settings.ledger_path).account("main").cash == pytest.approx(settings.starting_cash - spent)


def test_checkpoint_storage_failure_that_is_not_damage_is_not_moved(ran):
    assert not is_damage(StorageError("x", path=ran.checkpoint_path, kind="full"), ran.checkpoint_path)
    assert not is_damage(StorageError("x", path=ran.ledger_path, kind="damaged"), ran.checkpoint_path)
    assert is_damage(StorageError("x", path=ran.checkpoint_path, kind="damaged"), ran.checkpoint_path)


# --- situation memory: rebuilt from the learning store -----------------------------------------

@pytest.fixture
def learned(market_csv, settings_for):
    """Cycles with learning on until the memory holds resolved situations."""
    settings = settings_for(market_csv, models=[], horizon_days=2)
    for _ in range(6):
        run_cycle(settings)
    store = LearningStore(settings.ledger_path)
    assert store.resolved_count(settings.portfolio, MEMORY_AGENT) == memory_for(settings.home, "main").count() > 0
    return settings


def recall(settings) -> list:
    rows = LearningStore(settings.ledger_path).resolved(settings.portfolio, MEMORY_AGENT, limit=-1)
    queries = [r["features"] for r in rows[:4]] + [{k: 0.0 for k in FEATURES}]
    found = memory_for(settings.home, settings.portfolio).similar_many(queries, before="2100-01-01", k=5,
                                                                       max_distance=10.0)
    return [sorted((n.symbol, n.date, n.action, n.realized_return, n.hit, n.lesson, round(n.distance, 5))
                   for n in near) for near in found]


@pytest.mark.parametrize("damage", ["deleted", "garbage", "a-file"])
def test_lost_or_damaged_memory_is_rebuilt_with_the_same_recall(learned, capsys, damage):
    store = LearningStore(learned.ledger_path)
    before = recall(learned)
    assert any(before)
    directory = learned.home / "chroma" / "main"  # the portfolio's own directory
    if damage == "deleted":
        shutil.rmtree(directory)
    elif damage == "garbage":
        replaced(directory / "chroma.sqlite3", os.urandom(20000))
    else:
        shutil.rmtree(directory)
        directory.write_text("not a directory")
    memory, note = open_memory(learned.home, learned.portfolio, store)
    expected = store.resolved_count(learned.portfolio, MEMORY_AGENT)
    assert note and f"rebuilt {expected} situations from the learning store" in note
    assert ("is missing" if damage == "deleted" else "is damaged") in note
    assert memory.count() == expected
    assert recall(learned) == before
    assert len(list(learned.home.glob("chroma/main.damaged-*"))) == (0 if damage == "deleted" else 1)
    # healthy again: no warning
    assert open_memory(learned.home, learned.portfolio, store)[1] is None


def test_next_cycle_warns_and_rebuilds_a_deleted_memory(learned, capsys):
    shutil.rmtree(learned.home / "chroma")
    capsys.readouterr()
    state = run_cycle(learned).state
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: situation memory") and "is missing" in err
    assert "memory_note" in state["learning"]
    store = LearningStore(learned.ledger_path)
    assert memory_for(learned.home, "main").count() == store.resolved_count("main", MEMORY_AGENT)


def test_partly_lost_memory_is_completed(learned):
    memory = memory_for(learned.home, "main")
    memory.collection.delete(ids=memory.collection.get(limit=2)["ids"])
    store = LearningStore(learned.ledger_path)
    fixed, note = open_memory(learned.home, "main", store)
    assert note and "missing 2 of" in note
    assert fixed.count() == store.resolved_count("main", MEMORY_AGENT)


def test_full_disk_in_the_memory_is_a_storage_error_not_damage(learned, monkeypatch):
    from chromadb.errors import InternalError

    from memory.situation_memory import SituationMemory

    def full(self):
        raise InternalError("error returned from database: (code: 13) database or disk is full")

    monkeypatch.setattr(SituationMemory, "probe", full)
    with pytest.raises(StorageError) as caught:
        open_memory(learned.home, "main", LearningStore(learned.ledger_path))
    assert caught.value.kind == "full" and "chroma" in str(caught.value)
    assert (learned.home / "chroma" / "main").is_dir() and not list(learned.home.glob("chroma/main.damaged-*"))


def test_rebuild_memory_cli(learned, capsys):
    from graph.learning import main as learning_main

    store = LearningStore(learned.ledger_path)
    expected = store.resolved_count("main", MEMORY_AGENT)
    before = recall(learned)
    replaced(learned.home / "chroma" / "main" / "chroma.sqlite3", b"garbage" * 1000)
    capsys.readouterr()
    assert learning_main(["--home", str(learned.home), "--rebuild-memory"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == (f"situation memory rebuilt: {expected} situations from the learning store "
                           f"(portfolio main, {learned.home / 'chroma' / 'main'})")
    assert err.startswith("warning: situation memory") and "was damaged" in err
    assert recall(learned) == before
    # on a healthy memory it rebuilds from scratch, to the same count
    assert learning_main(["--home", str(learned.home), "--rebuild-memory"]) == 0
    assert f"rebuilt: {expected} situations" in capsys.readouterr().out
    assert memory_for(learned.home, "main").count() == expected


# --- audit messages: exactly-once across a crash -------------------------------------------------

CRASH_AFTER_MESSAGES = """
import os, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from conftest import scripted
from graph.run import run_cycle
from graph.settings import VoltSettings
from memory import message_log

original = message_log.MessageLog.write
def write_then_die(self, cycle_id, messages):
    original(self, cycle_id, messages)
    os._exit(9)  # stored, but the portfolio manager's checkpoint is not
message_log.MessageLog.write = write_then_die
settings = VoltSettings(home=Path({home!r}), data_csv=Path({csv!r}), models=["m1"], top_k=3)
run_cycle(settings, chat_model_factory=lambda spec: scripted())
"""


def test_audit_messages_are_stored_once_across_a_crash(market_csv, settings_for, tmp_path):
    from conftest import scripted

    settings = settings_for(market_csv, top_k=3)
    script = CRASH_AFTER_MESSAGES.format(tests=str(Path(__file__).parent), home=str(settings.home), csv=str(market_csv))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLT_")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 9, proc.stderr[-2000:]
    with open_db(settings.ledger_path) as conn:
        after_crash = conn.execute("SELECT COUNT(*) FROM agent_messages").fetchone()[0]
    assert after_crash > 0
    result = run_cycle(settings, chat_model_factory=lambda spec: scripted())
    assert result.resumed is True
    stored = MessageLog(settings.ledger_path).for_cycle(result.state["cycle_id"])
    assert len(stored) == after_crash
    assert len([m for m in stored if m.from_agent == "portfolio_manager"]) == 2  # status + feedback, once
    clean = settings_for(market_csv, top_k=3, home=tmp_path / "clean")
    reference = run_cycle(clean, chat_model_factory=lambda spec: scripted()).state
    assert len(MessageLog(clean.ledger_path).for_cycle(reference["cycle_id"])) == len(stored)


def test_stable_ids_ignore_order_and_time_but_count_repeats():
    a = message("risk_agent", "consensus", MessageType.RISK_APPROVAL, {"symbol": "AAA", "verdict": "APPROVED"})
    b = message("risk_agent", "consensus", MessageType.RISK_APPROVAL, {"symbol": "BBB", "verdict": "APPROVED"})
    again = {**a, "message_id": "fresh-uuid", "timestamp": "2099-01-01T00:00:00.000+00:00"}
    first = {m["payload"]["symbol"]: m["message_id"] for m in stable_ids("p:2020-01-01", [a, b])}
    second = {m["payload"]["symbol"]: m["message_id"] for m in stable_ids("p:2020-01-01", [b, again])}
    assert first == second and first["AAA"] != first["BBB"]
    repeated = stable_ids("p:2020-01-01", [a, a])
    assert repeated[0]["message_id"] != repeated[1]["message_id"]
    assert stable_ids("p:2020-01-02", [a])[0]["message_id"] != first["AAA"]  # per cycle
