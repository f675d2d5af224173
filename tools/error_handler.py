"""One error handler: every failure becomes one record with its category, recovery and count.

A record is a plain dict (JSON-able, it goes into the graph state and the ledger)::

    {"agent": "market_agent", "symbol": "AAPL", "model": "ollama:x", "category": "network",
     "message": "...", "recovery": "fallback to ...", "count": 1}

- :func:`error_record` builds one from an exception through :func:`graph.errors.classify`
  (the single exception -> (category, recovery) mapping);
- :func:`dedupe` merges identical records of one cycle (same agent, symbol, category and
  message) into the first one, with ``count`` the number of times it happened;
- :func:`stored_message` is the text kept in ``agent_errors.message``: the message, plus
  ``" (×N)"`` when it happened N > 1 times (the table has no count column; one row per
  distinct error per cycle);
- :func:`split_history_notes`: a symbol with too little history yet (listed later in the
  data, or a young listing) is a data *note*, not an error: nothing failed;
- :func:`unfilled_order_record`: an order the broker could not fill, as DATA (no bar on the
  fill day, an implausible quote) or EXCHANGE (no quote source, no fill day, storage);
  :func:`protection_records`: one MARKET record per protection that blocks this cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from graph.errors import (
    RECOVERY,
    DataError,
    ErrorCategory,
    ExchangeError,
    MarketHaltError,
    classify,
)

HISTORY_NOTE = "too little history"
# The broker's unfilled-order reasons (nodes/execution_agent.py) that are failures, by cause;
# any other reason (limits, a plan's exit, a protection's block) is a decision, not an error.
DATA_UNFILLED = ("no bar on", "DATA ")
EXCHANGE_UNFILLED = ("no live quote", "no fill day", "storage failure")
ORDER_EXPIRES = "order expired unfilled; the next cycle decides again"


def error_record(exc: BaseException, *, agent: str, symbol: str | None = None, model: str | None = None,
                 recovery: str | None = None, message: str | None = None) -> dict[str, Any]:
    """The record of one failure. ``recovery`` overrides the category's default action (a
    more precise one, e.g. ``fallback to <next model>``); ``message`` the exception's text
    (its first line, at most 500 characters, never empty)."""
    category, default_recovery = classify(exc)
    text = message if message is not None else (str(exc).splitlines()[0] if str(exc) else "")
    return {"agent": agent, "symbol": symbol, "model": model, "category": category.value,
            "message": (text or type(exc).__name__)[:500], "recovery": recovery or default_recovery,
            "count": 1}


def _key(record: Mapping[str, Any]) -> tuple:
    return (record.get("agent", "data"), record.get("symbol"), record.get("category"), record.get("message"))


def dedupe(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Identical records (agent, symbol, category, message) merged into the first, in order,
    with ``count`` summed (a record without one counts 1). The inputs are not modified."""
    merged: dict[tuple, dict[str, Any]] = {}
    for record in records:
        key = _key(record)
        n = int(record.get("count") or 1)
        if key in merged:
            merged[key]["count"] += n
        else:
            merged[key] = {**record, "count": n}
    return list(merged.values())


def stored_message(record: Mapping[str, Any]) -> str:
    """The message as stored: ``"<message> (×N)"`` for N > 1 occurrences in one cycle."""
    n = int(record.get("count") or 1)
    return f"{record['message']} (×{n})" if n > 1 else str(record["message"])


def counts_by_category(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Occurrences per category (counts summed), every category present with 0 if none."""
    out = {c.value: 0 for c in ErrorCategory}
    for record in records:
        out[str(record.get("category"))] = out.get(str(record.get("category")), 0) + int(record.get("count") or 1)
    return out


def is_history_note(record: Mapping[str, Any] | Any) -> bool:
    """Whether a data error (a record dict or a ``DataError``) only says the symbol has too
    little history yet: then it is a note, not an error."""
    if isinstance(record, Mapping):  # "DATA <symbol>: too little history: ..."
        return f": {HISTORY_NOTE}:" in str(record.get("message", "")) and record.get("category", "data") == "data"
    return str(getattr(record, "reason", "")).startswith(HISTORY_NOTE)


def split_history_notes(records: Iterable[Mapping[str, Any]]) -> tuple[list[dict], list[dict]]:
    """``(errors, notes)``: the records that are real data errors, and the history notes."""
    errors, notes = [], []
    for record in records:
        (notes if is_history_note(record) else errors).append(dict(record))
    return errors, notes


def unfilled_order_record(reason: str, *, symbol: str | None, agent: str = "execution_agent") -> dict | None:
    """The error record of an order left UNFILLED for ``reason``, or None when the reason is
    a decision (limits, a plan's exit, a protection's block: recorded elsewhere or not an
    error). DATA: no bar on the fill day, a quote outside the band (``"DATA ..."``);
    EXCHANGE: no live quote source or quote, no fill day, a storage failure while booking.
    An EXCHANGE record names no symbol: the venue failed, not the symbol, so one outage
    hitting N orders is one record counted N times (each order keeps its reason in the
    ledger). Decided from the reason's text, so a resumed cycle (which reads the stored
    reason back) records the same thing."""
    text = str(reason or "")
    if text.startswith(DATA_UNFILLED):
        exc: Exception = DataError(symbol or "?", text)
        return error_record(exc, agent=agent, symbol=symbol, message=text,
                            recovery=f"{ORDER_EXPIRES} ({RECOVERY[ErrorCategory.DATA]})")
    if text.startswith(EXCHANGE_UNFILLED):
        return error_record(ExchangeError(text), agent=agent, symbol=None)
    return None


def protection_records(protections: Mapping[str, Any] | None, *, agent: str = "protections") -> list[dict]:
    """One MARKET record per protection blocking new orders or buys this cycle (the
    ``tools.trading.protections.evaluate`` state), however many candidates it blocks.
    A protection that blocks every order names that as its recovery; exits still run."""
    out = []
    for item in (protections or {}).get("items") or []:
        if not isinstance(item, Mapping) or not (item.get("blocks_orders") or item.get("blocks_buys")):
            continue
        recovery = ("no new orders this cycle; plan exits still run" if item.get("blocks_orders")
                    else RECOVERY[ErrorCategory.MARKET])
        reason = str(item.get("reason") or f"{item.get('name', 'protection')} active")
        out.append(error_record(MarketHaltError(reason), agent=agent, symbol=None, recovery=recovery))
    return out
