"""First node of a cycle: fix the as-of day, pick candidates, compute their indicators.

Everything here is point-in-time: only bars dated on or before the as-of day are read.
The cycle's errors start with one MARKET record per active protection.
"""

from __future__ import annotations

import re
from datetime import date

import pandas as pd
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from graph.context import VoltContext
from graph.errors import CycleDateError
from graph.models import resolve_model_chain
from graph.state import CycleState
from memory.ledger import Ledger
from memory.message_log import MessageType, message
from nodes.trading_plans import cycle_protections, open_plans_view
from tools.broker import fill_day_marks
from tools.data_source import market_dataset
from tools.error_handler import is_history_note, protection_records
from tools.indicators import indicator_series, indicator_snapshot
from tools.market_data import MarketDataset
from tools.portfolio import value_account
from tools.universe import select_candidates

_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def iso_day(text: str) -> pd.Timestamp:
    """``YYYY-MM-DD`` and nothing else, as a real calendar date (CycleDateError otherwise).

    Strict on purpose: pandas reads ``11/20/2009`` as US month/day and ``20091120`` or
    ``today`` as dates too, so a typo would quietly pick another day (and cycles only move
    forward, so the days skipped are skipped for good)."""
    if not isinstance(text, str) or not _ISO_DAY.fullmatch(text):
        raise CycleDateError(f"--as-of {text!r} is not a date (use YYYY-MM-DD, e.g. 2009-11-20)")
    try:
        return pd.Timestamp(date.fromisoformat(text))
    except ValueError as exc:
        raise CycleDateError(f"--as-of {text!r} is not a date ({exc}; use YYYY-MM-DD)") from None


def resolve_as_of(dataset: MarketDataset, last_completed: str | None, pinned: str | None, min_history: int) -> pd.Timestamp:
    """The day this cycle decides on.

    Pinned (ISO ``YYYY-MM-DD`` only, see :func:`iso_day`): must be a trading day of the data
    with a next day to fill on, and after the portfolio's last completed cycle. Otherwise:
    the trading day after the last completed cycle, or, for a new portfolio, the first day
    with ``min_history`` bars.
    """
    cal = dataset.calendar
    first = cal[min(min_history - 1, len(cal) - 1)]
    last_tradable = cal[-2] if len(cal) >= 2 else None
    if last_tradable is None or first > last_tradable:
        raise CycleDateError(f"{dataset.source}: not enough trading days for a cycle ({len(cal)})")
    span = f"{first:%Y-%m-%d}..{last_tradable:%Y-%m-%d}"
    if pinned is not None:
        day = iso_day(pinned)
        if day not in cal or day < first or day > last_tradable:
            raise CycleDateError(f"--as-of {day:%Y-%m-%d} is not a tradable day of the data ({span})")
        if last_completed and day <= pd.Timestamp(last_completed):
            raise CycleDateError(
                f"--as-of {day:%Y-%m-%d}: this portfolio already completed {last_completed}; "
                "cycles only move forward (use --portfolio NAME for a fresh one)"
            )
        return day
    if last_completed is None:
        return first
    later = cal[cal > pd.Timestamp(last_completed)]
    if len(later) == 0 or later[0] > last_tradable:
        raise CycleDateError(
            f"replay finished: the last cycle ({last_completed}) used the final tradable day; "
            "use --portfolio NAME to start a new portfolio"
        )
    return later[0]


def live_as_of(dataset: MarketDataset, last_completed: str | None) -> pd.Timestamp:
    """Live cycles decide on the latest bar (today's, from the quote) once per trading day."""
    day = dataset.calendar[-1]
    if last_completed and day <= pd.Timestamp(last_completed):
        raise CycleDateError(f"the cycle for {day:%Y-%m-%d} is already complete; the next one runs after the next daily bar")
    return day


def prepare_cycle(state: CycleState, runtime: Runtime[VoltContext]) -> dict:
    settings = runtime.context.settings
    portfolio = state.get("portfolio_id") or settings.portfolio
    dataset = market_dataset(settings)
    ledger = Ledger(settings.ledger_path)
    ledger.ensure_portfolio(portfolio, settings.starting_cash)
    last = ledger.last_completed_cycle(portfolio)
    last_day = last["as_of"] if last else None
    if settings.source == "replay":
        as_of = resolve_as_of(dataset, last_day, state.get("as_of"), settings.min_history)
    else:
        as_of = live_as_of(dataset, last_day)
    day = f"{as_of:%Y-%m-%d}"
    cycle_id = f"{portfolio}:{day}"

    # positions are in as-traded shares: convert them across splits effective by D (once)
    ledger.apply_splits(portfolio, dataset.splits, as_of)
    account = ledger.account(portfolio)
    selection = select_candidates(
        dataset, as_of, k=settings.top_k, held=account.held(),
        watchlist=settings.watchlist or None, min_history=settings.min_history,
    )
    # A symbol with too little history yet is a note (nothing failed), not a data error.
    data_errors = [{"symbol": e.symbol, "category": "data", "message": str(e)}
                   for e in selection.data_errors if not is_history_note(e)]
    data_notes = [{"symbol": e.symbol, "category": "data", "message": str(e)}
                  for e in selection.data_errors if is_history_note(e)]
    snapshots, candidates = {}, []
    for symbol in selection.candidates:
        try:
            snapshots[symbol] = indicator_snapshot(symbol, dataset.history(symbol, as_of),
                                                   series=indicator_series(dataset, symbol, as_of))
            candidates.append(symbol)
        except ValueError as exc:
            data_errors.append({"symbol": symbol, "category": "data", "message": f"DATA {symbol}: {exc}"})

    # valuation before the cycle: each held symbol at its last close as of D, in D's shares
    prices, _ = fill_day_marks(dataset, account.held(), as_of, None)
    before = value_account(account, prices).as_dict()
    before["peak_equity"] = account.peak_equity
    # protections (drawdown halt with recovery, breakers) and each held position's plan
    protections = cycle_protections(settings, ledger, dataset, portfolio, day, account.starting_cash)
    before["peak_equity"] = protections["peak_equity"]  # the halt's peak, after any reset
    before["protections"] = protections
    plans = open_plans_view(ledger, portfolio, dataset, day)
    for symbol, position in before["positions"].items():
        if symbol in plans:
            position["plan"] = plans[symbol]
    models = resolve_model_chain(settings, runtime.context.chat_model_factory)
    status = message("prepare_cycle", "broadcast", MessageType.STATUS_UPDATE,
                     {"as_of": day, "candidates": candidates, "models": models.usable, "note": models.note})
    return {
        "portfolio_id": portfolio,
        "as_of": day,
        "cycle_id": cycle_id,
        "data_source": dataset.source,
        "candidates": candidates,
        "scores": {s: selection.scores.get(s) for s in candidates},
        "snapshots": snapshots,
        "data_errors": data_errors,
        "data_notes": data_notes,
        "model_status": models.as_dict(),
        "portfolio_before": before,
        "protections": protections,
        "plans": plans,
        "exits": [],
        "decisions": Overwrite([]),
        "agent_messages": Overwrite([status]),
        # a protection blocking new orders or buys is one MARKET error of the cycle, however
        # many candidates it blocks (risk_limits and the broker then only enforce it)
        "errors": Overwrite(protection_records(protections)),
        "improvements": [],
        "orders": [],
        "fills": [],
        "portfolio_after": {},
        "reward": 0.0,
    }
