"""One error handler: six categories with recovery actions, identical errors of a cycle stored
once with a count, and "too little history" a note, never an error row."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import synthetic_frame

from graph.errors import (
    HALT_RUN,
    DataError,
    ErrorCategory,
    ExchangeError,
    MarketHaltError,
    ModelUnavailableError,
    StorageError,
    classify,
)
from graph.run import run_cycle
from memory.db import open_db
from memory.learning_store import LearningStore
from nodes.llm_call import ModelAttemptError
from tools.error_handler import (
    counts_by_category,
    dedupe,
    error_record,
    is_history_note,
    split_history_notes,
    stored_message,
)


@pytest.mark.parametrize(("exc", "category"), [
    (ConnectionRefusedError("refused"), ErrorCategory.NETWORK),
    (TimeoutError("slow"), ErrorCategory.NETWORK),
    (ModelUnavailableError("down"), ErrorCategory.NETWORK),
    (ModelAttemptError(ErrorCategory.MODEL, "invalid output", 1), ErrorCategory.MODEL),
    (DataError("AAA", "bad close"), ErrorCategory.DATA),
    (ExchangeError("no quote to fill at"), ErrorCategory.EXCHANGE),
    (MarketHaltError("drawdown breaker"), ErrorCategory.MARKET),
    (KeyError("a bug"), ErrorCategory.LOGIC),
    (ZeroDivisionError(), ErrorCategory.LOGIC),
])
def test_classify_maps_every_category_to_a_recovery(exc, category):
    got, recovery = classify(exc)
    assert got is category
    assert recovery and isinstance(recovery, str)


def test_all_six_categories_are_reachable_and_halts_are_named():
    seen = {classify(e)[0] for e in (OSError(111, "x"), ModelAttemptError(ErrorCategory.MODEL, "m", 0),
                                     ValueError(), DataError("A", "r"), ExchangeError("e"), MarketHaltError("m"))}
    assert seen == set(ErrorCategory)
    assert classify(StorageError("volt.db is damaged", kind="damaged"))[1] == HALT_RUN
    assert classify(sqlite3.OperationalError("disk I/O error"))[1] == HALT_RUN


def test_error_record_and_dedupe_count_identical_errors_once():
    a = error_record(ConnectionRefusedError("refused"), agent="market_agent", symbol="AAA", model="m1")
    b = error_record(ConnectionRefusedError("refused"), agent="market_agent", symbol="AAA", model="m1")
    other_symbol = error_record(ConnectionRefusedError("refused"), agent="market_agent", symbol="BBB")
    other_text = error_record(ConnectionRefusedError("reset"), agent="market_agent", symbol="AAA")
    merged = dedupe([a, b, other_symbol, a, other_text])
    assert [(m["symbol"], m["message"], m["count"]) for m in merged] == [
        ("AAA", "refused", 3), ("BBB", "refused", 1), ("AAA", "reset", 1)]
    assert a["count"] == 1  # inputs untouched
    assert stored_message(merged[0]) == "refused (×3)" and stored_message(merged[1]) == "refused"
    assert counts_by_category(merged)["network"] == 5 and counts_by_category(merged)["logic"] == 0
    assert error_record(ValueError(), agent="x")["message"] == "ValueError"  # never empty


def test_history_notes_are_not_errors_even_with_hostile_text():
    note = {"symbol": "NEW", "category": "data",
            "message": "DATA NEW: too little history: 3 bars up to 2020-01-01, indicators need 50"}
    real = {"symbol": "BAD", "category": "data", "message": "DATA BAD: Close is not a number"}
    # a model error whose text merely mentions the phrase stays an error
    model = {"symbol": "X", "category": "model", "message": "DATA X: too little history: says the model"}
    errors, notes = split_history_notes([note, real, model])
    assert notes == [note] and errors == [real, model]
    assert is_history_note(DataError("NEW", "too little history: 3 bars"))
    assert not is_history_note(DataError("BAD", "bad close; too little history: no"))


def test_store_keeps_one_row_per_distinct_error_with_its_count(tmp_path):
    store = LearningStore(tmp_path / "volt.db")
    rec = {"agent": "market_agent", "symbol": "AAA", "model": "m1", "category": "network",
           "message": "timeout", "recovery": "quantitative prior"}
    store.record_errors("p", "p:2020-01-01", dedupe([rec, rec, rec]))
    with open_db(tmp_path / "volt.db") as conn:
        rows = conn.execute("SELECT message, category FROM agent_errors").fetchall()
    assert [tuple(r) for r in rows] == [("timeout (×3)", "network")]


def late_listing_csv(tmp_path, days: int = 75):
    """AAA/BBB from the first day; LATE listed 40 days later (too little history for weeks)."""
    frame = synthetic_frame({"AAA": 0.25, "BBB": 0.15, "LATE": 0.1}, days=days)
    first_late = sorted(frame.Date.unique())[40]
    frame = frame[(frame.Symbol != "LATE") | (frame.Date >= first_late)]
    path = tmp_path / "late.csv"
    frame.to_csv(path, index=False)
    return path


def test_cycles_leave_no_too_little_history_error_rows(tmp_path, settings_for):
    """Fast variant of the issue's 50-cycle check: a symbol listed later is a note in every
    cycle, in the state and the report, and never an agent_errors row."""
    from graph.report import build_report, render_text

    settings = settings_for(late_listing_csv(tmp_path), models=[], top_k=2)
    reports = []
    for _ in range(12):
        result = run_cycle(settings)
        assert not [e for e in result.state["data_errors"] if "too little history" in e["message"]]
        reports.append(build_report(result.state, home=settings.home))
    assert any(r.short_history == ["LATE"] for r in reports)
    text = render_text(reports[0])
    assert "note: 1 symbol(s) with too little history yet, not considered: LATE" in text
    assert "data errors" not in text
    with open_db(settings.ledger_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM agent_errors WHERE message LIKE '%too little history%'"
                            ).fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM cycles").fetchone()[0] == 12


@pytest.mark.slow
def test_fifty_cycles_on_the_embedded_data_leave_zero_history_error_rows(tmp_path, clean_env):
    from graph.settings import VoltSettings

    settings = VoltSettings(home=tmp_path / "home", models=[])
    for _ in range(50):
        run_cycle(settings)
    with open_db(settings.ledger_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM agent_errors WHERE message LIKE '%too little history%'"
                            ).fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM cycles").fetchone()[0] == 50
