"""The simulated account of a decision replay and the broker's day, pure (no storage).

:class:`SimBook` is what the ledger holds for a portfolio (cash, positions, open plans, the
splits applied, each symbol's last fill day, the equity and order counts per cycle), kept in
memory. Its methods are the broker's steps of one cycle in the graph's order, each calling
the same rule the graph calls, so a replay of the recorded orders books the same numbers:

1. :meth:`apply_splits` (by D before the decision, by F before filling; as
   ``Ledger.apply_splits``: ``due_splits``, ``split_applies``, ``split_position``),
2. :meth:`tighten` (exit reviews' stops, ``tighten``),
3. :meth:`plan_exits` (``plan_on_fill_day``/``untraded_exit``, ``exit_fill``),
4. :meth:`fill_order` for each agents' order (``order_blocked``, ``order_fill``,
``entry_plan``; an add: ``in_plan_units``, ``merge_add``), 5. :meth:`close_dust`
(``is_dust``, ``dust_fill``), then :meth:`valuation` (``fill_day_marks``,
``value_account``). Fills are applied with :func:`tools.portfolio.apply_fill`, as the
ledger applies them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from tools.broker import fill_day_marks
from tools.market.corporate_actions import due_splits, split_applies, split_position
from tools.market_data import MarketDataset
from tools.portfolio import DUST_QTY, Account, Valuation, apply_fill, value_account
from tools.trading.fills import (
    BrokerRules,
    FillTerms,
    dust_fill,
    exit_fill,
    is_dust,
    opens_position,
    order_blocked,
    order_fill,
    plan_on_fill_day,
    untraded_exit,
)
from tools.trading.plans import (
    Plan,
    days_between,
    default_levels,
    entry_plan,
    in_plan_units,
    merge_add,
    tighten,
)


@dataclass
class SimBook:
    account: Account
    plans: dict[str, dict] = field(default_factory=dict)  # symbol -> {"opened", "plan"} (opening-day units)
    applied_splits: set = field(default_factory=set)  # (symbol, ex_date)
    last_fill: dict[str, str] = field(default_factory=dict)  # symbol -> last fill day
    equities: list[float] = field(default_factory=list)  # after each cycle
    order_history: list[tuple[int, int]] = field(default_factory=list)  # (orders, failed) per cycle

    @classmethod
    def new(cls, starting_cash: float) -> SimBook:
        return cls(Account("replay", starting_cash, starting_cash, starting_cash, {}))

    def copy(self) -> SimBook:
        return copy.deepcopy(self)

    def held_qty(self, symbol: str) -> float:
        pos = self.account.positions.get(symbol)
        return pos.qty if pos is not None else 0.0

    # ------------------------------------------------------------------ splits, reviews
    def apply_splits(self, dataset: MarketDataset, upto: pd.Timestamp) -> None:
        """Held positions across splits effective by ``upto``, once each; a split on or before
        the symbol's last fill was already in that fill's shares."""
        for symbol, ex_date, ratio in due_splits(self.account.positions, dataset.splits, upto):
            if (symbol, ex_date) in self.applied_splits or symbol not in self.account.positions:
                continue
            if not split_applies(ratio, ex_date, self.last_fill.get(symbol)):
                continue
            pos = self.account.positions[symbol]
            pos.qty, pos.avg_cost = split_position(pos.qty, pos.avg_cost, ratio)
            self.applied_splits.add((symbol, ex_date))

    def tighten(self, dataset: MarketDataset, day: pd.Timestamp, symbol: str, proposal: Mapping,
                close: float | None) -> None:
        """An exit review's stop proposal (D's shares) on the open plan, stored in its units."""
        rec = self.plans.get(symbol)
        if rec is None or close is None:
            return
        factor = dataset.split_factor(symbol, pd.Timestamp(rec["opened"]), day)
        current = Plan.from_dict(rec["plan"]).scaled(factor)
        plan, _ = tighten(current, proposal, float(close))
        if plan.stop != current.stop:
            rec["plan"] = {**rec["plan"], "stop": plan.stop * factor}

    # ------------------------------------------------------------------ fills
    def _book(self, symbol: str, side: str, terms: FillTerms, fill_date: str, kind: str, as_of: str) -> dict:
        realized = apply_fill(self.account, symbol, side, terms.qty, terms.price, terms.fee)
        # by symbol, as the ledger reads its positions: sums over them (equity, exposure) then
        # add in the same order, to the last bit
        self.account.positions = dict(sorted(self.account.positions.items()))
        self.last_fill[symbol] = max(self.last_fill.get(symbol, ""), fill_date)
        return {"as_of": as_of, "symbol": symbol, "side": side, "qty": terms.qty,
                "reference_price": terms.reference_price, "price": terms.price, "slippage_pct": terms.slippage_pct,
                "fee": terms.fee, "realized_pnl": realized, "fill_date": fill_date, "kind": kind}

    def plan_exits(self, dataset: MarketDataset, as_of: str, fill_on: pd.Timestamp, snapshots: Mapping,
                   rules: BrokerRules, max_holding_days: int, trailing_pct: float | None,
                   untraded_exit_days: int) -> tuple[list[dict], list[dict], dict]:
        """The plans' exits on F's bar, in symbol order: (orders, fills, exited by symbol)."""
        fill_date = f"{fill_on:%Y-%m-%d}"
        for symbol in self.account.held():
            snap = snapshots.get(symbol)
            if symbol not in self.plans and snap is not None:  # adopt: a plan from today, never none
                pos = self.account.positions[symbol]
                stop, target = default_levels("BUY" if pos.qty > 0 else "SELL", float(snap["close"]),
                                              float(snap.get("atr14") or 0.0))
                plan = Plan(1 if pos.qty > 0 else -1, pos.avg_cost, stop, target, max_holding_days, as_of,
                            trailing_pct or None, float(snap["close"]), {"adopted": True})
                self.plans[symbol] = {"opened": as_of, "plan": {**plan.as_dict(), "levels_from": "atr"}}
        orders, fills, exited = [], [], {}
        held = set(self.account.held())
        for symbol in sorted(self.plans):
            rec = self.plans[symbol]
            if symbol not in held:  # sold by a path that left the plan open: reconciled
                del self.plans[symbol]
                continue
            if rec["opened"] >= fill_date:
                continue
            factor = dataset.split_factor(symbol, pd.Timestamp(rec["opened"]), fill_on)
            plan = Plan.from_dict(rec["plan"]).scaled(factor)
            bar = dataset.bar_on(symbol, fill_on)
            held_days = days_between(dataset.calendar, rec["opened"], fill_on)
            ex, moved = plan_on_fill_day(plan, bar, held_days, lambda symbol=symbol, plan=plan, held_days=held_days:
                                         untraded_exit(dataset, symbol, plan, fill_on, held_days, untraded_exit_days))
            if moved is not None:
                rec["plan"] = {**rec["plan"], **moved.scaled(1.0 / factor).as_dict()}
            if ex is None:
                continue
            side = "SELL" if self.held_qty(symbol) > 0 else "BUY"
            terms = exit_fill(held=self.held_qty(symbol), side=side, exit_price=ex.price,
                              snapshot=snapshots.get(symbol) or {}, volume_unit=dataset.volume_unit, rules=rules)
            order = {"symbol": symbol, "side": side, "kind": ex.kind, "suffix": "exit"}
            if isinstance(terms, str):
                orders.append({**order, "status": "UNFILLED", "reason": terms})
                continue
            fills.append(self._book(symbol, side, terms, fill_date, ex.kind, as_of))
            del self.plans[symbol]
            orders.append({**order, "status": "FILLED", "reason": ex.reason})
            exited[symbol] = {"symbol": symbol, "kind": ex.kind}
        return orders, fills, exited

    def fill_order(self, dataset: MarketDataset, as_of: pd.Timestamp, fill_on: pd.Timestamp, order: Mapping,
                   snapshot: Mapping, marks: Mapping[str, float], exited: Mapping, protections: Mapping,
                   rules: BrokerRules, max_holding_days: int) -> tuple[dict, dict | None]:
        """One agents' order, as the graph's broker fills it: (order record, fill or None)."""
        symbol, side, kind = order["symbol"], order["side"], order["kind"]
        held = self.held_qty(symbol)
        opening = opens_position(side, held, rules.allow_short)
        result: FillTerms | str | None = order_blocked(symbol, side, opening, exited.get(symbol), protections, fill_on)
        if result is None:
            bar = dataset.bar_on(symbol, fill_on)
            if bar is None:
                result = f"no bar on {fill_on:%Y-%m-%d} (gap or data issue)"
            else:
                result = order_fill(symbol=symbol, side=side, ordered=float(order["qty"]), kind=kind,
                                    reference=float(bar["open"]), factor=dataset.split_factor(symbol, as_of, fill_on),
                                    snapshot=snapshot, volume_unit=dataset.volume_unit, cash=self.account.cash,
                                    positions=self.account.positions, marks=marks, rules=rules)
        record = {"symbol": symbol, "side": side, "qty": order["qty"], "kind": kind}
        if isinstance(result, str):
            return {**record, "status": "UNFILLED", "reason": result}, None
        fill_date = f"{fill_on:%Y-%m-%d}"
        fill = self._book(symbol, side, result, fill_date, kind, f"{as_of:%Y-%m-%d}")
        if opening:
            factor = dataset.split_factor(symbol, as_of, fill_on)
            plan = entry_plan(order, snapshot, fill_price=result.price, reference_price=result.reference_price,
                              fill_date=fill_date, factor=factor, max_holding_days=max_holding_days)
            current = self.plans.get(symbol)
            if current is None:
                self.plans[symbol] = {"opened": plan["opened"], "plan": plan}
            else:  # an add: levels in the open plan's units; the stop only tightens (PlanStore.open_plan)
                if held != 0:
                    plan = in_plan_units(plan, dataset.split_factor(symbol, pd.Timestamp(current["opened"]), fill_on))
                current["plan"] = merge_add(current["plan"], plan)
        else:
            pos = self.account.positions.get(symbol)
            if pos is None or abs(pos.qty) < DUST_QTY:
                self.plans.pop(symbol, None)
        return {**record, "status": "FILLED", "reason": None}, fill

    def close_dust(self, dataset: MarketDataset, as_of: pd.Timestamp, fill_on: pd.Timestamp,
                   rules: BrokerRules) -> tuple[list[dict], list[dict]]:
        if not self.account.positions:
            return [], []
        marks = fill_day_marks(dataset, sorted(self.account.positions), as_of, fill_on)[0]
        orders, fills = [], []
        for symbol, pos in sorted(self.account.positions.items()):
            mark = marks.get(symbol, pos.avg_cost)
            if not is_dust(pos.qty, mark, rules.dust_notional):
                continue
            side = "SELL" if pos.qty > 0 else "BUY"
            terms = dust_fill(self.held_qty(symbol), mark, rules)
            order = {"symbol": symbol, "side": side, "kind": "dust", "suffix": "dust"}
            if isinstance(terms, str):
                orders.append({**order, "status": "UNFILLED", "reason": terms})
                continue
            fills.append(self._book(symbol, side, terms, f"{fill_on:%Y-%m-%d}", "dust", f"{as_of:%Y-%m-%d}"))
            self.plans.pop(symbol, None)
            orders.append({**order, "status": "FILLED", "reason": "dust close-out"})
        return orders, fills

    def valuation(self, dataset: MarketDataset, as_of: pd.Timestamp, fill_on: pd.Timestamp | None) -> Valuation:
        """Held positions marked as the graph marks them: on F after the fills (``fill_on``),
        at D's last close before the decision (``fill_on`` None)."""
        marks = fill_day_marks(dataset, self.account.held(), as_of, fill_on)[0]
        return value_account(self.account, marks)
