"""The ledger database on both engines (SQLite file, PostgreSQL URL): migrations, one
writer at a time across processes, transactions that are all or nothing (an exception or a
kill -9 mid-transaction), and storage failures as one line naming the URL without its
password. The ``backend`` fixture (tests/conftest.py) runs each test on both; the postgres
case skips without a server unless VOLT_TEST_REQUIRE_POSTGRES=1."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import eventually

from graph.errors import StorageError
from memory.db import MIGRATIONS, DatabaseURL, as_target, open_db, redact
from memory.learning_store import LearningStore
from memory.ledger import Ledger
from memory.weights import read_weights, write_weight

ROOT = Path(__file__).resolve().parents[1]


def child(code: str, target, *args: str) -> subprocess.Popen:
    """A Python process running ``code`` with ``TARGET`` (the database) and ``ARGS`` defined."""
    prelude = (f"import sys, json, time, os\nsys.path.insert(0, {str(ROOT)!r})\n"
               f"from memory.db import as_target\nTARGET = as_target(sys.argv[1])\nARGS = sys.argv[2:]\n")
    raw = target.url if isinstance(target, DatabaseURL) else str(target)
    return subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(code), raw, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(procs: list[subprocess.Popen], timeout: float = 60) -> list[str]:
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-2000:]
        outs.append(out)
    return outs


def tables(target) -> dict[str, set[str]]:
    """Table -> column names, on either engine (bookkeeping left out)."""
    with open_db(target) as conn:
        if isinstance(target, DatabaseURL):
            rows = conn.execute("SELECT table_name, column_name FROM information_schema.columns"
                                " WHERE table_schema = 'public'").fetchall()
            out: dict[str, set[str]] = {}
            for table, column in rows:
                out.setdefault(table, set()).add(column)
            out.pop("schema_version", None)
            out["agent_messages"].discard("rowid")  # SQLite's implicit rowid, explicit here
            return out
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"
                                            " AND name NOT LIKE 'sqlite_%'")]
        return {n: {r[1] for r in conn.execute(f"PRAGMA table_info({n})")} for n in names}


def version(target) -> int:
    with open_db(target) as conn:
        if isinstance(target, DatabaseURL):
            return conn.execute("SELECT version FROM schema_version").fetchone()[0]
        return conn.execute("PRAGMA user_version").fetchone()[0]


# ------------------------------------------------------------------------------- schema


def test_migrations_from_an_empty_database_give_the_same_tables_and_reopen_keeps_rows(backend, tmp_path):
    ledger = Ledger(backend.target)
    ledger.ensure_portfolio("p", 1000.0)
    assert version(backend.target) == len(MIGRATIONS)
    reference = tmp_path / "reference.db"
    with open_db(reference):
        pass
    assert tables(backend.target) == tables(reference)  # same tables, same columns on both engines
    # a new process opens it again: no migration runs twice, the row is there
    [out] = finish([child("print(__import__('memory.ledger').ledger.Ledger(TARGET).account('p').cash)",
                          backend.target)])
    assert float(out) == 1000.0
    assert version(backend.target) == len(MIGRATIONS)


def test_processes_racing_to_migrate_a_new_database_all_succeed(backend):
    start = time.time() + 1.5
    code = """
        while time.time() < float(ARGS[0]):
            time.sleep(0.005)
        from memory.db import open_db
        with open_db(TARGET) as conn:
            print(conn.execute("SELECT COUNT(*) FROM portfolios").fetchone()[0])
    """
    outs = finish([child(code, backend.target, str(start)) for _ in range(4)])
    assert [o.strip() for o in outs] == ["0"] * 4
    assert version(backend.target) == len(MIGRATIONS)


# -------------------------------------------------------------------- one writer at a time

RACE = """
    from memory.ledger import FillRecord, Ledger
    portfolio, symbol, start = ARGS[0], ARGS[1], float(ARGS[2])
    ledger = Ledger(TARGET)
    while time.time() < start:
        time.sleep(0.002)

    def make_fill(account):
        print("make_fill", flush=True)
        time.sleep(float(ARGS[3]))  # widen the window between the check and the write
        return FillRecord(order_id="", symbol=symbol, side="BUY", qty=1.0, reference_price=10.0, price=10.0,
                          slippage_pct=0.0, fee=0.0, realized_pnl=0.0, fill_date="2021-01-05", latency_ms=1.0)

    for day in ARGS[4:]:
        fill = ledger.record_fill(portfolio=portfolio, as_of=day, symbol=symbol, side="BUY", qty_requested=1.0,
                                  make_fill=make_fill)
        print(json.dumps(fill.as_dict()), flush=True)
"""


def test_processes_racing_on_one_order_fill_it_exactly_once(backend):
    ledger = Ledger(backend.target)
    ledger.ensure_portfolio("p", 1000.0)
    start = str(time.time() + 1.5)
    outs = finish([child(RACE, backend.target, "p", "AAA", start, "0.3", "2021-01-04") for _ in range(4)])
    lines = [line for out in outs for line in out.splitlines()]
    assert lines.count("make_fill") == 1  # the others found the fill under the write lock
    fills = {line for line in lines if line != "make_fill"}
    assert len(fills) == 1 and json.loads(fills.pop())["order_id"] == "p:2021-01-04:AAA"
    assert ledger.account("p").cash == pytest.approx(990.0)
    with open_db(backend.target) as conn:
        assert conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 1


def test_processes_writing_different_portfolios_lose_nothing(backend):
    ledger = Ledger(backend.target)
    for p in ("p1", "p2"):
        ledger.ensure_portfolio(p, 1000.0)
    days = [f"2021-02-{d:02d}" for d in range(1, 16)]
    start = str(time.time() + 1.5)
    finish([child(RACE, backend.target, p, "AAA", start, "0", *days) for p in ("p1", "p2")])
    for p in ("p1", "p2"):
        assert ledger.account(p).cash == pytest.approx(1000.0 - 10.0 * len(days))
        assert ledger.account(p).positions["AAA"].qty == len(days)
        assert len(ledger.recent_fills(p, limit=100)) == len(days)


# ------------------------------------------------------------------- all or nothing

def _seed(target) -> LearningStore:
    store = LearningStore(target)
    Ledger(target).ensure_portfolio("main", 1000.0)
    store.record_predictions([{
        "prediction_id": "main:2021-01-04:market_agent:AAA", "portfolio": "main", "cycle_id": "main:2021-01-04",
        "agent": "market_agent", "source": "prior", "symbol": "AAA", "as_of": "2021-01-04", "action": "BUY",
        "confidence": 0.6, "signal": 0.6, "features": {"x": 1.0}, "horizon": 5, "filled_qty": 0.0,
        "profile_version": 0}])
    return store


UPDATE = {"prediction_id": "main:2021-01-04:market_agent:AAA", "resolved_as_of": "2021-01-11", "entry_price": 10.0,
          "exit_price": 11.0, "realized_return": 0.1, "hit": True, "loss": 0.1, "trade_pnl": None, "lesson": None}


def _nothing_half_written(store: LearningStore, target) -> None:
    assert len(store.pending("main", "2021-02-01")) == 1  # still unresolved
    assert read_weights(target, "main", ["market_agent"]) == {"market_agent": 1.0}
    assert store.weight_history("main") == []


def test_an_exception_mid_transaction_leaves_nothing_half_written(backend):
    store = _seed(backend.target)
    with pytest.raises(RuntimeError), open_db(backend.target) as conn:
        conn.execute("BEGIN IMMEDIATE")
        store.resolve([UPDATE], conn=conn)
        write_weight(backend.target, "main", "market_agent", 1.4, conn=conn)
        store.record_weight_history("main", "2021-01-11", {"market_agent": 1.4}, {"market_agent": 1}, conn=conn)
        raise RuntimeError("crash between the writes and COMMIT")
    _nothing_half_written(store, backend.target)
    # the same transaction, committed, lands whole (and bools are stored as 0/1 on both engines)
    with open_db(backend.target) as conn:
        conn.execute("BEGIN IMMEDIATE")
        store.resolve([UPDATE], conn=conn)
        write_weight(backend.target, "main", "market_agent", 1.4, conn=conn)
        conn.execute("COMMIT")
    assert store.pending("main", "2021-02-01") == []
    assert store.accuracy_table("main") == [{"agent": "market_agent", "resolved": 1, "accuracy": 1.0,
                                             "mean_loss": 0.1}]
    assert read_weights(backend.target, "main", ["market_agent"]) == {"market_agent": 1.4}


def test_a_process_killed_mid_transaction_leaves_nothing_and_releases_the_write_lock(backend):
    store = _seed(backend.target)
    code = f"""
        from memory.db import open_db
        from memory.learning_store import LearningStore
        from memory.weights import write_weight
        store = LearningStore(TARGET)
        with open_db(TARGET) as conn:
            conn.execute("BEGIN IMMEDIATE")
            store.resolve([{UPDATE!r}], conn=conn)
            write_weight(TARGET, "main", "market_agent", 1.4, conn=conn)
            print("written", flush=True)
            time.sleep(120)
    """
    proc = child(code, backend.target)
    try:
        assert proc.stdout.readline().strip() == "written", proc.stderr.read() if proc.poll() is not None else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    _nothing_half_written(store, backend.target)

    def next_writer_gets_in() -> bool:  # the writer's lock died with it
        try:
            write_weight(backend.target, "main", "market_agent", 1.2)
            return True
        except StorageError:  # SQLite: busy until the dead writer's journal is rolled back
            return False

    assert eventually(next_writer_gets_in, timeout=10)
    assert read_weights(backend.target, "main", ["market_agent"]) == {"market_agent": 1.2}


# ------------------------------------------------------------------ postgres specifics


def test_parameters_are_translated_outside_quoted_strings(pg_server):  # psycopg needed: skips without it
    from memory.pg import translate

    assert translate("SELECT * FROM t WHERE a=? AND b LIKE '%x?%' AND c=:name AND d::text = ?") == \
        "SELECT * FROM t WHERE a=%s AND b LIKE '%%x?%%' AND c=%(name)s AND d::text = %s"
    assert translate("SELECT 5 % 2") == "SELECT 5 %% 2"


def test_rows_read_by_name_and_index_and_as_dicts(pg_url):
    from memory.pg import all_migrations

    assert len(all_migrations()) == len(MIGRATIONS)
    with open_db(DatabaseURL(pg_url)) as conn:
        row = conn.execute("SELECT 1 AS a, 'x' AS b, AVG(v) AS m, SUM(v) AS s FROM (VALUES (1), (2)) t(v)").fetchone()
        assert row[0] == row["a"] == 1 and row["b"] == "x" and dict(row) == {"a": 1, "b": "x", "m": 1.5, "s": 3}
        assert isinstance(row["m"], float) and isinstance(row["s"], int)  # as SQLite gives them
        assert conn.in_transaction is False


def test_redact_removes_the_password_only():
    assert redact("postgresql://volt:s3cret@db:5432/volt?sslmode=require") == \
        "postgresql://volt:***@db:5432/volt?sslmode=require"
    assert redact("postgresql://db/volt?user=a&password=s3cret") == "postgresql://db/volt?user=a&password=***"
    assert str(DatabaseURL("postgresql://volt:s3cret@db/volt")) == "postgresql://volt:***@db/volt"
    assert isinstance(as_target("postgresql://db/volt"), DatabaseURL) and as_target("x/volt.db") == Path("x/volt.db")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_and_wrong_password_are_one_line_without_the_password(pg_url):
    down = DatabaseURL(f"postgresql://volt:s3cret@127.0.0.1:{_free_port()}/volt")
    with pytest.raises(StorageError) as info:
        Ledger(down).account("p")
    message = str(info.value)
    assert "\n" not in message and "s3cret" not in message and message.startswith("postgresql://volt:***@127.0.0.1")
    assert info.value.kind == "unavailable"
    wrong = DatabaseURL(pg_url.replace(":volt-test-secret@", ":not-the-password@"))
    with pytest.raises(StorageError) as info:
        Ledger(wrong).ensure_portfolio("p", 1.0)
    assert "password authentication failed" in str(info.value) and "not-the-password" not in str(info.value)


def test_a_read_only_database_is_a_storage_error(pg_url):
    import psycopg

    url = DatabaseURL(pg_url)
    Ledger(url).ensure_portfolio("p", 1000.0)
    from memory.pg import close_pool

    close_pool()  # new sessions pick up the database's new default
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    with pytest.raises(StorageError) as info:
        Ledger(url).complete_cycle("p", "2021-01-04", 1000.0, 1000.0, 0.0)
    assert info.value.kind == "read-only" and "***" in str(info.value)
    assert Ledger(url).account("p").cash == 1000.0  # reads still work


def test_sqlstates_map_to_storage_kinds(pg_server):
    import psycopg

    from memory.pg import storage_error

    url = DatabaseURL("postgresql://volt:pw@db/volt")
    assert storage_error(psycopg.errors.DiskFull("could not extend file"), url).kind == "full"
    assert storage_error(psycopg.errors.AdminShutdown("terminating connection"), url).kind == "unavailable"
    assert storage_error(psycopg.errors.DataCorrupted("invalid page"), url).kind == "damaged"
    assert storage_error(psycopg.errors.UndefinedTable("no such table"), url) is None  # a bug: a traceback


def test_the_cli_exits_2_with_one_line_when_the_server_is_down(tmp_path, market_csv, pg_server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLT_")}
    env["VOLT_DATABASE_URL"] = f"postgresql://volt:s3cret@127.0.0.1:{_free_port()}/volt"
    proc = subprocess.run([sys.executable, "-m", "graph.run", "--home", str(tmp_path / "home"), "--data-csv",
                           str(market_csv), "--models", ""], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "s3cret" not in proc.stderr and "postgresql://volt:***@127.0.0.1" in lines[0]


def test_sqlite_is_still_the_default(tmp_path, clean_env):
    from graph.settings import VoltSettings

    settings = VoltSettings(home=tmp_path)
    assert settings.ledger_path == tmp_path / "volt.db" and settings.checkpoint_path == tmp_path / "checkpoints.db"
    with open_db(settings.ledger_path) as conn:
        assert isinstance(conn, sqlite3.Connection)
    url = VoltSettings(home=tmp_path, database_url="postgresql://volt:pw@db/volt")
    assert url.ledger_path == url.checkpoint_path == DatabaseURL("postgresql://volt:pw@db/volt")
    with pytest.raises(ValueError) as info:
        VoltSettings(database_url="mysql://volt:s3cret@db/volt")
    from graph.errors import settings_error_line

    assert "s3cret" not in settings_error_line(info.value) and "VOLT_DATABASE_URL" in settings_error_line(info.value)


def test_the_response_cache_in_the_database_is_shared_by_processes(pg_url):
    from langchain_core.outputs import Generation

    from memory.response_cache import ResponseStore

    url = DatabaseURL(pg_url)
    ResponseStore(url).put("k1", "ns", [Generation(text="cached answer")])
    [out] = finish([child("""
        from memory.response_cache import ResponseStore
        store = ResponseStore(TARGET)
        print(store.get("k1")[0].text, store.get("k2"), store.count())
    """, url)])
    assert out.split() == ["cached", "answer", "None", "1"]


def test_on_postgres_a_writer_blocks_its_own_portfolio_only(pg_url):
    from memory.db import begin_write

    url = DatabaseURL(pg_url)
    ledger = Ledger(url)
    for p in ("p1", "p2"):
        ledger.ensure_portfolio(p, 1000.0)
    holder = child("""
        from memory.db import begin_write, open_db
        with open_db(TARGET) as conn:
            begin_write(conn, "p1")
            print("holding", flush=True)
            time.sleep(3)
            conn.execute("COMMIT")
    """, url)
    try:
        assert holder.stdout.readline().strip() == "holding"
        t0 = time.monotonic()
        fill = ledger.record_fill(portfolio="p2", as_of="2021-01-04", symbol="AAA", side="BUY", qty_requested=1.0,
                                  make_fill=lambda account: "no price")  # another portfolio: no wait
        other = time.monotonic() - t0
        with open_db(url) as conn:  # the same portfolio waits for the holder's COMMIT
            begin_write(conn, "p1")
            same = time.monotonic() - t0
            conn.execute("ROLLBACK")
    finally:
        finish([holder])
    assert fill == "no price" and other < 1.0 and same > 1.5


def test_on_postgres_a_writer_waits_at_most_the_lock_timeout_then_busy(pg_url, monkeypatch):
    from memory import pg
    from memory.db import begin_write

    url = DatabaseURL(pg_url)
    Ledger(url).ensure_portfolio("p1", 1000.0)
    pg.close_pool()
    monkeypatch.setattr(pg, "LOCK_TIMEOUT_S", 1)  # connections opened from here on
    holder = child("""
        from memory.db import begin_write, open_db
        with open_db(TARGET) as conn:
            begin_write(conn, "p1")
            print("holding", flush=True)
            time.sleep(4)
    """, url)
    try:
        assert holder.stdout.readline().strip() == "holding"
        t0 = time.monotonic()
        with pytest.raises(StorageError) as info, open_db(url) as conn:
            begin_write(conn, "p1")
        assert info.value.kind == "busy" and 0.9 < time.monotonic() - t0 < 3.5
    finally:
        finish([holder])
    pg.close_pool()
