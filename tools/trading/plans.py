"""Position plans and the exits the broker enforces from them. Pure functions, no I/O.

A plan is recorded when a fill opens a position: the side actually traded, the entry
price, a stop and a target (USD per share, in the as-traded units of the entry day), a
horizon (max holding, in trading days), an optional trailing stop (a fraction of the best
price since entry) and the thesis (which agents called what).

:func:`exit_on_bar` checks one daily bar against a plan, in this order:

1. At the open. A gap through the stop (long: open <= stop) fills at the open; a gap
   through the target (open >= target) fills at the open; a due time exit (held
   ``horizon_days`` trading days or more) fills at the open.
2. Intraday. The low touching the stop fills at the stop; the high touching the target
   fills at the target. When one bar touches both, the stop wins: a daily bar does not
   say which came first, so the conservative reading is taken.

The exit price is a price the bar traded (clipped to [low, high]); slippage and the fee
are the broker's, as for any order. Shorts mirror all of it. The trailing stop uses the
best price of the bars *before* the one checked; :func:`advance` moves it with the bar's
high (a short: low) only after that bar's check, so one bar never both raises the stop
and hits it. :func:`tighten` is the only way a review changes a plan: the stop may move
toward the price, never away from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

import pandas as pd

EXIT_KINDS = ("stop", "trailing", "target", "time")


@dataclass(frozen=True)
class Plan:
    """``direction`` is +1 for a long, -1 for a short. Prices in USD per share; ``stop``
    and ``target`` may be None (no such exit). ``horizon_days`` None or 0: no time exit.
    ``best`` is the best price seen since entry (the trailing stop's anchor)."""

    direction: int
    entry: float
    stop: float | None
    target: float | None
    horizon_days: int | None
    opened: str  # YYYY-MM-DD, the entry fill day
    trailing_pct: float | None = None
    best: float | None = None
    thesis: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> Plan:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def effective_stop(self) -> tuple[float | None, str]:
        """The stop in force and its kind: the fixed stop, or the trailing one when tighter."""
        stop, kind = self.stop, "stop"
        if self.trailing_pct and self.best is not None:
            trail = self.best * (1.0 - self.direction * self.trailing_pct)
            if stop is None or self.direction * (trail - stop) > 0:
                stop, kind = trail, "trailing"
        return stop, kind

    def scaled(self, factor: float) -> Plan:
        """The plan in share units after a split of ``factor`` new shares per old share."""
        if factor == 1.0 or not (math.isfinite(factor) and factor > 0):
            return self

        def div(x: float | None) -> float | None:
            return None if x is None else x / factor

        return replace(self, entry=self.entry / factor, stop=div(self.stop), target=div(self.target),
                       best=div(self.best))


@dataclass(frozen=True)
class Exit:
    kind: str  # stop, trailing, target or time
    price: float  # the bar's price the exit fills at, before slippage
    reason: str


def _num(bar: Mapping, key: str) -> float | None:
    try:
        value = float(bar[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def exit_on_bar(plan: Plan, bar: Mapping, days_held: int) -> Exit | None:
    """The exit this bar triggers, or None. ``days_held``: trading days from the entry fill
    day to this bar's day (0 on the entry day). A bar without a usable open is not
    checked (None): no price means no fill. A missing high/low is read as the open."""
    open_ = _num(bar, "open")
    if open_ is None:
        return None
    high = max(_num(bar, "high") or open_, open_)
    low = min(_num(bar, "low") or open_, open_)
    d = plan.direction
    stop, stop_kind = plan.effective_stop()
    target = plan.target

    def through(level: float | None, price: float, sign: int) -> bool:
        # sign +1: price at or beyond the level in the trade's favour; -1: against it
        return level is not None and sign * d * (price - level) >= 0

    if through(stop, open_, -1):
        return Exit(stop_kind, open_, f"opened {open_:g} through the {stop_kind} {stop:g}")
    if through(target, open_, +1):
        return Exit("target", open_, f"opened {open_:g} through the target {target:g}")
    if plan.horizon_days and days_held >= plan.horizon_days:
        return Exit("time", open_, f"held {days_held} trading days, horizon {plan.horizon_days}")
    adverse, favourable = (low, high) if d > 0 else (high, low)
    if through(stop, adverse, -1):  # conservative: the stop first when both are touched
        return Exit(stop_kind, min(max(stop, low), high), f"touched the {stop_kind} {stop:g}")
    if through(target, favourable, +1):
        return Exit("target", min(max(target, low), high), f"touched the target {target:g}")
    return None


def advance(plan: Plan, bar: Mapping) -> Plan:
    """The plan after a bar it survived: ``best`` moves to the bar's high (short: low).
    Call only after :func:`exit_on_bar` returned None for this bar."""
    extreme = _num(bar, "high" if plan.direction > 0 else "low")
    if extreme is None:
        return plan
    if plan.best is None or plan.direction * (extreme - plan.best) > 0:
        return replace(plan, best=extreme)
    return plan


def tighten(plan: Plan, proposal: Mapping | None, price: float) -> tuple[Plan, str | None]:
    """Apply a review's ``{"stop": x}`` only if it moves the stop toward ``price`` (the
    latest price) and stays on the losing side of it; otherwise the plan is unchanged.
    Returns the plan and a note saying what happened (None when nothing was proposed)."""
    if not proposal or proposal.get("stop") is None:
        return plan, None
    try:
        stop = float(proposal["stop"])
    except (TypeError, ValueError):
        return plan, f"ignored stop {proposal.get('stop')!r}: not a number"
    d = plan.direction
    if not (math.isfinite(stop) and stop > 0):
        return plan, f"ignored stop {stop!r}: not a positive price"
    if d * (price - stop) <= 0:
        return plan, f"ignored stop {stop:g}: at or beyond the price {price:g} (an exit is a review's call)"
    if plan.stop is not None and d * (stop - plan.stop) <= 0:
        return plan, f"ignored stop {stop:g}: looser than {plan.stop:g} (a plan is never loosened)"
    before = "none" if plan.stop is None else f"{plan.stop:g}"
    return replace(plan, stop=stop), f"stop {before} -> {stop:g}"


def coherent_levels(side: str, entry: float, stop: float | None, target: float | None) -> str | None:
    """Why a plan's levels contradict its side, or None. A BUY needs stop < entry < target;
    a SELL that opens a short needs target < entry < stop. A missing level is allowed."""
    d = 1 if side == "BUY" else -1
    if stop is not None and d * (entry - stop) <= 0:
        return f"incoherent plan: {side} with the stop {stop:g} {'at or above' if d > 0 else 'at or below'} entry {entry:g}"
    if target is not None and d * (target - entry) <= 0:
        return f"incoherent plan: {side} with the target {target:g} {'at or below' if d > 0 else 'at or above'} entry {entry:g}"
    return None


def default_levels(side: str, entry: float, atr: float) -> tuple[float, float]:
    """Stop 2 ATR against the trade, target 3 ATR with it (the StrategyAgent's own rule)."""
    d = 1 if side == "BUY" else -1
    atr = atr if math.isfinite(atr) and atr > 0 else entry * 0.02
    return max(entry - d * 2 * atr, 0.01), max(entry + d * 3 * atr, 0.01)


def days_between(calendar, opened: str, day) -> int:
    """Trading days of ``calendar`` (a sorted DatetimeIndex) in (opened, day]."""
    return int(calendar.searchsorted(pd.Timestamp(day), side="right")
               - calendar.searchsorted(pd.Timestamp(opened), side="right"))


def entry_plan(order: Mapping, snapshot: Mapping | None, *, fill_price: float, reference_price: float,
               fill_date: str, factor: float, max_holding_days: int | None) -> dict:
    """The plan recorded for an entry fill: the order's plan (levels from D's shares
    converted to F's by the split ``factor``) at the fill's price, or the ATR rule's. A fill
    that gapped through the stop or the target moves both by the gap (fill - decision price),
    so the recorded plan is always coherent and keeps its planned risk per share."""
    side = order["side"]
    given = dict(order.get("plan") or {})
    if given.get("stop") is None:
        stop, target = default_levels(side, reference_price, float((snapshot or {}).get("atr14") or 0.0))
        given.update(stop=stop, target=target, levels_from="atr")
    else:
        given["stop"] = given["stop"] / factor
        if given.get("target") is not None:
            given["target"] = given["target"] / factor
        d, decided = (1 if side == "BUY" else -1), float(order.get("price") or 0.0) / factor
        through = d * (fill_price - given["stop"]) <= 0 or (
            given.get("target") is not None and d * (given["target"] - fill_price) <= 0)
        if through and decided > 0:  # a gap past a level: keep the planned distances from the fill
            shift = fill_price - decided
            given["stop"] += shift
            given["target"] = None if given.get("target") is None else given["target"] + shift
            given["reanchored"] = round(shift, 6)
        if d * (fill_price - given["stop"]) <= 0:  # still incoherent (no decision price): ATR levels
            given["stop"], given["target"] = default_levels(side, fill_price, float((snapshot or {}).get("atr14") or 0.0))
    plan = Plan(direction=1 if side == "BUY" else -1, entry=fill_price, stop=given["stop"],
                target=given.get("target"), horizon_days=given.get("horizon_days") or max_holding_days,
                opened=fill_date, trailing_pct=given.get("trailing_pct") or None, best=fill_price,
                thesis=given.get("thesis") or {})
    return {**plan.as_dict(), "levels_from": given.get("levels_from"), "reanchored": given.get("reanchored")}


def plan_levels(side: str, strategist_action: str | None, stop_loss: float | None, exit_price: float | None,
                close: float, atr: float) -> tuple[float, float | None, str]:
    """Stop, target (USD per share of D) and their source for an order on ``side`` (the
    RiskAgent's rule): the StrategyAgent's ``stop_loss`` and ``exit`` when it called that
    side (``source`` "strategy"; its target may be None), else :func:`default_levels` on
    that side from D's ``close`` and ATR (``source`` "atr"), never the other side's stop."""
    if strategist_action == side and stop_loss is not None:
        return float(stop_loss), None if exit_price is None else float(exit_price), "strategy"
    stop, target = default_levels(side, close, atr)
    return stop, target, "atr"


PLAN_PRICE_KEYS = ("entry", "stop", "target", "best")


def in_plan_units(plan: Mapping, units: float) -> dict:
    """An add's plan (entry, stop, target, best in USD per share of its fill day) in the share
    units of the open plan it joins: prices multiplied by ``units`` (the open plan's shares
    per fill-day share: 2.0 when a 2:1 split came after the plan opened, 0.1 after a 1:10
    reverse split). A missing (None) level stays None; ``units`` 1.0 returns a copy as is."""
    if units == 1.0:
        return dict(plan)
    return {**plan, **{k: plan[k] * units for k in PLAN_PRICE_KEYS if isinstance(plan.get(k), int | float)}}


def merge_add(current: Mapping, added: Mapping) -> dict:
    """The open plan after an add (both in the open plan's units, see :func:`in_plan_units`):
    the add's stop replaces the current one only when it is tighter (a long's higher, a
    short's lower) or there is none; everything else stays (entry, opening day, horizon),
    so adding never loosens a plan nor extends a trade's life."""
    merged = dict(current)
    new, old, d = added.get("stop"), current.get("stop"), current.get("direction", 1)
    if new is not None and (old is None or d * (new - old) > 0):
        merged["stop"] = new
    return merged


def review_qty(verdict: str, held: float, reduce_fraction: float) -> float | None:
    """Shares an exit review's verdict trades (shares of the decision day, unsigned): all of
    ``held`` for EXIT, ``reduce_fraction`` of it rounded to 1e-8 for REDUCE, None for HOLD or
    when nothing is held (|held| <= 1e-9). A REDUCE that would leave dust is not rounded up
    here: the broker's fill (:func:`tools.trading.fills.order_fill`) closes such a position
    to zero on the fill day, in that day's shares and prices."""
    if verdict == "HOLD" or abs(held) <= 1e-9:
        return None
    return abs(held) if verdict == "EXIT" else round(abs(held) * reduce_fraction, 8)
