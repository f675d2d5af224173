"""Protections: rules that stop new orders for a while. Pure functions of the history.

Each protection is a callable ``(ProtectionInput) -> Protection`` (pluggable, in the
spirit of freqtrade's protections); :func:`evaluate` runs them all and combines them.
None of them touches a plan's exits: stops, targets and time exits keep working during
any halt, because they only reduce risk.

- Drawdown halt (``max_drawdown_pct``): no new BUY while equity is more than that
  fraction below the peak. Recovery rule: after ``halt_cooldown_cycles`` completed cycles
  in a halt, the peak is reset to the equity of that cycle, so buying resumes; a fresh
  fall of ``max_drawdown_pct`` from the new peak halts again. Without the reset the halt
  is absorbing (a portfolio in cash can never climb back to an old peak).
- Trading breaker: more than ``trading_breaker_rate`` of the orders of the last
  ``trading_breaker_window`` cycles failed to fill for a non-limit reason (no bar, no
  quote, a quote outside the band): no new orders. Needs ``trading_breaker_min_orders``
  orders in the window; errors age out of the window, so it recovers by itself.
- Market breaker: the equal-weight index moved more than ``market_breaker_pct`` (either
  way) on the decision day: no new BUY that cycle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ProtectionSettings:
    max_drawdown_pct: float = 0.20
    halt_cooldown_cycles: int = 10
    trading_breaker_window: int = 5
    trading_breaker_rate: float = 0.5
    trading_breaker_min_orders: int = 4
    market_breaker_pct: float = 0.07


@dataclass(frozen=True)
class ProtectionInput:
    """``equities``: equity after each completed cycle, oldest first; ``starting_cash`` is
    the peak before any cycle. ``order_history``: (orders, failed orders) per completed
    cycle, oldest first. ``index_return``: the index's return on the decision day (a
    fraction) or None when unknown."""

    starting_cash: float
    equities: Sequence[float]
    order_history: Sequence[tuple[int, int]] = ()
    index_return: float | None = None
    settings: ProtectionSettings = field(default_factory=ProtectionSettings)


@dataclass(frozen=True)
class Protection:
    name: str
    blocks_orders: bool = False  # no new order of any side
    blocks_buys: bool = False  # no new BUY
    reason: str | None = None
    detail: dict = field(default_factory=dict)


def drawdown_state(starting_cash: float, equities: Sequence[float], max_dd: float,
                   cooldown: int) -> dict:
    """Walk the equity history with the reset rule: ``{"peak", "equity", "halted",
    "halted_cycles", "resets"}``. ``halted`` says whether the next cycle starts halted.
    ``cooldown`` 0 never resets (the old absorbing halt)."""
    peak = float(starting_cash)
    halted_cycles = resets = 0
    equity = peak
    for value in equities:
        if not (math.isfinite(value) and value > 0):
            continue  # never recorded by the ledger; ignored if it ever were
        equity = float(value)
        peak = max(peak, equity)
        if equity < peak * (1.0 - max_dd):
            halted_cycles += 1
            if cooldown and halted_cycles >= cooldown:
                peak, halted_cycles, resets = equity, 0, resets + 1
        else:
            halted_cycles = 0
    return {"peak": peak, "equity": equity, "halted": equity < peak * (1.0 - max_dd),
            "halted_cycles": halted_cycles, "resets": resets}


def drawdown_halt(data: ProtectionInput) -> Protection:
    s = data.settings
    st = drawdown_state(data.starting_cash, data.equities, s.max_drawdown_pct, s.halt_cooldown_cycles)
    if not st["halted"]:
        return Protection("drawdown_halt", detail=st)
    left = f"; resumes after {s.halt_cooldown_cycles - st['halted_cycles']} more cycle(s) in the halt" \
        if s.halt_cooldown_cycles else ""
    return Protection("drawdown_halt", blocks_buys=True, detail=st, reason=(
        f"drawdown halt: equity {st['equity']:.2f} is more than {s.max_drawdown_pct:.0%} below "
        f"peak {st['peak']:.2f}{left}"))


def trading_breaker(data: ProtectionInput) -> Protection:
    s = data.settings
    window = list(data.order_history)[-s.trading_breaker_window:] if s.trading_breaker_window else []
    orders = sum(max(0, int(o)) for o, _ in window)
    failed = sum(max(0, int(f)) for _, f in window)
    rate = failed / orders if orders else 0.0
    detail = {"orders": orders, "failed": failed, "rate": round(rate, 4), "window": s.trading_breaker_window}
    if orders >= s.trading_breaker_min_orders and rate > s.trading_breaker_rate:
        return Protection("trading_breaker", blocks_orders=True, detail=detail, reason=(
            f"trading breaker: {failed} of {orders} orders in the last {len(window)} cycle(s) failed "
            f"({rate:.0%} > {s.trading_breaker_rate:.0%}); no new orders"))
    return Protection("trading_breaker", detail=detail)


def market_breaker(data: ProtectionInput) -> Protection:
    s, move = data.settings, data.index_return
    detail = {"index_return": None if move is None else round(move, 6), "limit": s.market_breaker_pct}
    if move is not None and math.isfinite(move) and abs(move) > s.market_breaker_pct:
        return Protection("market_breaker", blocks_buys=True, detail=detail, reason=(
            f"market breaker: the index moved {move:+.1%} on the day (limit ±{s.market_breaker_pct:.0%});"
            " no new buys"))
    return Protection("market_breaker", detail=detail)


DEFAULT_PROTECTIONS: tuple[Callable[[ProtectionInput], Protection], ...] = (
    drawdown_halt, trading_breaker, market_breaker)


def evaluate(data: ProtectionInput, protections=DEFAULT_PROTECTIONS) -> dict:
    """All protections combined, JSON-able: ``blocks_orders``/``blocks_buys`` hold the first
    reason (or None), ``peak_equity`` the drawdown halt's peak after resets, ``items`` each
    protection's result."""
    results = [p(data) for p in protections]
    orders = next((r.reason for r in results if r.blocks_orders), None)
    buys = orders or next((r.reason for r in results if r.blocks_buys), None)
    peak = next((r.detail.get("peak") for r in results if r.name == "drawdown_halt"), None)
    return {"blocks_orders": orders, "blocks_buys": buys,
            "peak_equity": data.starting_cash if peak is None else peak,
            "active": [r.name for r in results if r.blocks_orders or r.blocks_buys],
            "items": [asdict(r) for r in results]}


def index_day_return(close_panel, calendar, as_of) -> float | None:
    """Equal-weight mean of the close-to-close returns on ``as_of`` of the symbols with a
    usable close on both days (rows up to ``as_of`` only); None on the first day."""
    end = int(calendar.searchsorted(pd.Timestamp(as_of), side="right"))
    if end < 2:
        return None
    rows = close_panel.iloc[end - 2:end].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = rows[1] / rows[0] - 1.0
    ret = ret[np.isfinite(ret)]
    return float(ret.mean()) if len(ret) else None
