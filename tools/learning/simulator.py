"""Decision simulator: replays a recorded run day by day, as recorded or with alternatives.

It replays the cycles of a :class:`~tools.learning.sim_history.ReplayHistory` (read from a
ledger by :func:`memory.replay_source.read_history`) over the same market data with the
broker's own rules (:class:`~tools.learning.sim_book.SimBook`: fill on the next trading day's
bar, the cost model, splits, plans and their exits, dust, the hard limits), so that replaying
"no change" books exactly the recorded fills, cash and equity (tests/test_simulator.py).

Alternatives:

- other sizes: ``size_multiplier`` (a constant, or per day through :meth:`DecisionSimulator.run`
  with a callable) scales the day's entries and adds. A recorded entry keeps its decided size
  as a fraction of the equity before the decision (from the recorded run) times the
  multiplier; :func:`tools.risk_limits.size_order` then clips it with the simulated equity,
  cash, exposure and the protections (a multiplier can never loosen a limit), and the broker
  re-clips at the fill price. Exits are not scaled: an exit closes what is held, a reduce
  sells ``reduce_fraction`` of what is held.
- a :class:`~tools.learning.sim_variants.Variant`: proposals the graph did not trade taken
  (``take``), and other confidence thresholds (``thresholds``), see that module.

A day on the recorded path (nothing differed so far, multiplier 1) uses the recorded
quantities verbatim. Stepping API (for the RL environment): :attr:`days`, :meth:`reset`,
:meth:`step`, and what the graph's cycle of the next day would see before it decides
(:meth:`portfolio_before`, :meth:`previous_cycle`); :meth:`run` replays a span at once.
Settings and result types: :mod:`tools.learning.sim_types`. A year replays in about 1 s.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from tools.broker import fill_day_marks
from tools.indicators import indicator_series, indicator_snapshot
from tools.learning.sim_book import SimBook
from tools.learning.sim_history import DayRecord, ReplayHistory
from tools.learning.sim_types import DaySnapshots, DayState, ReplayResult, SimSettings
from tools.learning.sim_variants import Variant, proposal_levels, redecide, strategist_side
from tools.market_data import MarketDataset
from tools.risk_limits import size_order
from tools.trading.fills import FAILURE_PREFIXES
from tools.trading.plans import review_qty
from tools.trading.protections import (
    ProtectionInput,
    evaluate,
    index_day_return,
)


class DecisionSimulator:
    def __init__(self, history: ReplayHistory, dataset: MarketDataset, settings: SimSettings,
                 variant: Variant | None = None):
        self.history, self.dataset, self.settings = history, dataset, settings
        self.variant = variant or Variant()
        self._records: list[DayRecord] = list(history.days)
        self._snapshots: dict[tuple[str, str], dict | None] = {}
        self._baseline: list[SimBook] | None = None  # the recorded path's book before each day
        self._before_equity: list[float] = []  # the recorded path's equity before each decision
        self._book = SimBook.new(history.starting_cash)
        self._i = self._end = 0
        self._on_path = True
        self._peak = history.starting_cash
        self._last_before_equity = history.starting_cash
        self.last_orders: list[dict] = []  # the orders and fills of the last day stepped
        self.last_fills: list[dict] = []

    @property
    def days(self) -> list[str]:
        return [d.as_of for d in self._records]

    @property
    def positions(self) -> dict[str, float]:
        """Shares held now (signed, dust included), by symbol."""
        return {s: p.qty for s, p in self._book.account.positions.items()}

    # ------------------------------------------------------------------ stepping API
    def reset(self, start: int = 0, end: int | None = None) -> DayState:
        """Start a replay at day index ``start`` from the recorded state before it; the span
        ends before ``end`` (default: the last recorded day)."""
        n = len(self._records)
        end = n if end is None else end
        if not (0 <= start <= end <= n):
            raise ValueError(f"reset({start}, {end}): days are 0..{n}")
        if start:
            self._ensure_baseline()
            self._book = self._baseline[start].copy()
        else:
            self._book = SimBook.new(self.history.starting_cash)
        self._i, self._end, self._on_path = start, end, True
        self._peak = max([self.history.starting_cash, *self._book.equities])
        equity = self._book.equities[-1] if self._book.equities else self.history.starting_cash
        value = self._book.valuation(self.dataset, pd.Timestamp(self._records[start - 1].as_of),
                                     self.dataset.fill_day(pd.Timestamp(self._records[start - 1].as_of))) \
            if start else None
        return DayState(index=start, as_of=None, fill_day=None, equity=equity, cash=self._book.account.cash,
                        gross_exposure=value.gross_exposure if value else 0.0, peak_equity=self._peak,
                        drawdown=1.0 - equity / self._peak if self._peak > 0 else 0.0, fees=0.0, n_fills=0,
                        done=start >= end)

    def step(self, size_multiplier: float = 1.0) -> DayState:
        """Replay the next day with entries and adds scaled by ``size_multiplier`` (>= 0)."""
        if self._i >= self._end:
            raise RuntimeError("the replay is done: call reset()")
        m = float(size_multiplier)
        if not (math.isfinite(m) and m >= 0):
            raise ValueError(f"size_multiplier must be a finite number >= 0, got {size_multiplier!r}")
        on_path = self._on_path and m == 1.0 and not self.variant.changes_decisions()
        if not on_path:
            self._ensure_baseline()
        state, self.last_orders, self.last_fills = self._replay_day(self._i, m, on_path)
        self._on_path = on_path
        self._i += 1
        state.done = self._i >= self._end
        return state

    def portfolio_before(self) -> dict | None:
        """The portfolio as the graph values it before the cycle of the next day to step (day
        ``days[i]``, D), or None when the span is done: the fields of ``prepare_cycle``'s
        ``portfolio_before`` (:meth:`tools.portfolio.Valuation.as_dict`: ``cash``, ``equity``,
        ``gross_exposure`` in USD with each held position at D's last close, splits effective
        by D applied), plus ``as_of`` (D), ``peak_equity`` (the drawdown halt's peak, after any
        reset) and ``protections``. It applies D's splits to the book as the step then does
        (once each), so a replay asking for it books exactly what one that does not books."""
        if self._i >= self._end:
            return None
        before, protections = self._decision_side(self._i)
        return {**before.as_dict(), "as_of": self._records[self._i].as_of,
                "peak_equity": protections["peak_equity"], "protections": protections}

    def previous_cycle(self) -> dict | None:
        """The last replayed cycle before the next day to step, as a ledger ``cycles`` row:
        ``as_of``, ``equity`` (USD after it, marked on its fill day) and ``reward`` (USD: that
        equity less the one after the cycle before, the starting cash for the first); None
        before the first recorded day."""
        equities = self._book.equities
        if self._i == 0 or not equities:
            return None
        # as the ledger has them: portfolio_manager books Valuation.as_dict's equity (1e-6 USD)
        equity = round(equities[-1], 6)
        reference = round(equities[-2], 6) if len(equities) >= 2 else self.history.starting_cash
        return {"as_of": self._records[self._i - 1].as_of, "equity": equity, "reward": equity - reference}

    def run(self, multiplier: float | Callable[[DayState], float] = 1.0, *, variant: Variant | None = None,
            start: int = 0, end: int | None = None) -> ReplayResult:
        """Replay ``[start, end)``. ``multiplier``: a constant, or a function of the state before
        each day (the previous day's :class:`DayState`) giving that day's multiplier.
        ``variant`` replaces this simulator's variant for this run only."""
        if variant is not None:
            saved, self.variant = self.variant, variant
            try:
                return self.run(multiplier, start=start, end=end)
            finally:
                self.variant = saved
        state = self.reset(start, end)
        before = state.equity
        result = ReplayResult([], [], [], [], start_equity=before)
        while not state.done:
            m = multiplier(state) if callable(multiplier) else multiplier
            i = self._i
            on_path = self._on_path and float(m) == 1.0 and not self.variant.changes_decisions()
            if not on_path:
                self._ensure_baseline()
            state, orders, fills = self._replay_day(i, float(m), on_path)
            self._on_path, self._i = on_path, i + 1
            state.done = self._i >= self._end
            result.dates.append(state.as_of)
            result.equity.append(state.equity)
            result.cash.append(state.cash)
            result.daily_returns.append(state.equity / before - 1.0)
            result.fills += fills
            result.orders += orders
            before = state.equity
        return result

    # ------------------------------------------------------------------ one day
    def _snapshot(self, symbol: str, day: str) -> dict | None:
        key = (symbol, day)
        if key not in self._snapshots:
            as_of = pd.Timestamp(day)
            try:
                self._snapshots[key] = indicator_snapshot(symbol, self.dataset.history(symbol, as_of),
                                                          series=indicator_series(self.dataset, symbol, as_of))
            except ValueError:
                self._snapshots[key] = None
        return self._snapshots[key]

    def _ensure_baseline(self) -> None:
        """The recorded path's book before each day (and its equity before each decision),
        replayed once with no change."""
        if self._baseline is not None:
            return
        saved = (self._book, self._i, self._end, self._on_path, self._peak)
        self._book, self._baseline, self._before_equity = SimBook.new(self.history.starting_cash), [], []
        for i in range(len(self._records)):
            self._baseline.append(self._book.copy())
            self._replay_day(i, 1.0, True)
            self._before_equity.append(self._last_before_equity)
        self._baseline.append(self._book.copy())
        self._book, self._i, self._end, self._on_path, self._peak = saved

    def _decision_side(self, i: int):
        """Day ``i``'s decision side as the graph's ``prepare_cycle`` has it: the splits
        effective by D applied to the book (once each: idempotent), the portfolio valued at D's
        last close (:class:`tools.portfolio.Valuation`) and the protections' state."""
        book, ds = self._book, self.dataset
        as_of = pd.Timestamp(self._records[i].as_of)
        book.apply_splits(ds, as_of)
        before = book.valuation(ds, as_of, None)
        protections = evaluate(ProtectionInput(
            starting_cash=self.history.starting_cash, equities=list(book.equities),
            order_history=list(book.order_history), index_return=index_day_return(ds.close_panel, ds.calendar, as_of),
            settings=self.settings.protections))
        return before, protections

    def _replay_day(self, i: int, m: float, on_path: bool) -> tuple[DayState, list[dict], list[dict]]:
        rec, book, ds, cfg = self._records[i], self._book, self.dataset, self.settings
        day = rec.as_of
        as_of = pd.Timestamp(day)
        fill_on = ds.fill_day(as_of)
        if fill_on is None:
            raise ValueError(f"{day}: no trading day after it in the data to fill on")
        before, protections = self._decision_side(i)
        self._last_before_equity = before.equity
        candidates = rec.candidates if rec.candidates is not None else [p["symbol"] for p in rec.proposals]
        snapshots = DaySnapshots(candidates, day, self._snapshot)
        held_at_decision = {s: round(book.held_qty(s), 8) for s in book.account.held()}
        orders = rec.orders if on_path else self._orders(i, rec, m, before, protections, held_at_decision, snapshots)
        # the broker's side: splits by F, reviews' stops, plan exits, orders, dust
        book.apply_splits(ds, fill_on)
        for t in rec.tightens:
            book.tighten(ds, as_of, t["symbol"], t["proposal"], (snapshots.get(t["symbol"]) or {}).get("close"))
        day_orders, fills, exited = book.plan_exits(ds, day, fill_on, snapshots, cfg.rules, cfg.max_holding_days,
                                                    cfg.trailing_stop_pct, cfg.untraded_exit_days)
        approved = sorted(orders, key=lambda o: (o["side"] != "SELL", -(o.get("confidence") or 0.0), o["symbol"]))
        marks = fill_day_marks(ds, sorted({*book.account.positions, *(o["symbol"] for o in approved)}),
                               as_of, fill_on)[0]
        for order in approved:
            record, fill = book.fill_order(ds, as_of, fill_on, order, snapshots.get(order["symbol"]) or {}, marks,
                                           exited, protections, cfg.rules, cfg.max_holding_days)
            day_orders.append(record)
            if fill is not None:
                fills.append(fill)
        dust_orders, dust_fills = book.close_dust(ds, as_of, fill_on, cfg.rules)
        day_orders += dust_orders
        fills += dust_fills
        failed = sum(1 for o in day_orders if o["status"] == "UNFILLED" and str(o["reason"]).startswith(FAILURE_PREFIXES))
        after = book.valuation(ds, as_of, fill_on)
        previous = book.equities[-1] if book.equities else self.history.starting_cash
        book.equities.append(after.equity)
        book.order_history.append((len(day_orders), failed))
        book.account.peak_equity = max(book.account.peak_equity, after.equity)
        self._peak = max(self._peak, after.equity)
        scores = [p["score"] for p in rec.proposals if p.get("score") is not None]
        state = DayState(
            index=i, as_of=day, fill_day=f"{fill_on:%Y-%m-%d}", equity=after.equity, cash=after.cash,
            gross_exposure=after.gross_exposure, peak_equity=self._peak,
            drawdown=1.0 - after.equity / self._peak if self._peak > 0 else 0.0,
            fees=sum(f["fee"] for f in fills), n_fills=len(fills), done=False,
            mean_signal=sum(scores) / len(scores) if scores else None,
            day_return=after.equity / previous - 1.0 if previous > 0 else 0.0, multiplier=m,
            n_orders=len(day_orders), blocked_buys=bool(protections.get("blocks_buys")))
        return state, day_orders, fills

    # ------------------------------------------------------------------ the day's orders off the recorded path
    def _orders(self, i: int, rec: DayRecord, m: float, before, protections: dict, held: dict[str, float],
                snapshots: dict) -> list[dict]:
        """The day's agents' orders when the replay has left the recorded path: recorded exits
        of what is still held, recorded entries re-sized, and the variant's changes."""
        cfg, v = self.settings, self.variant
        out, taken = [], set()
        proposals = {p["symbol"]: p for p in rec.proposals}
        for o in rec.orders:
            symbol = o["symbol"]
            if o["kind"] in ("exit_review", "reduce_review"):
                if symbol not in held:
                    continue  # nothing held any more: no exit review would have run
                qty = o["qty"] if o["kind"] == "exit_review" else review_qty("REDUCE", held[symbol], cfg.reduce_fraction)
                out.append({**o, "qty": qty})
                taken.add(symbol)
                continue
            p = proposals.get(symbol)
            if v.thresholds and p is not None and symbol not in held:
                decided = redecide(p, v.thresholds, cfg.consensus_model, cfg.consensus_threshold)
                if decided is not None and decided[0] != o["side"]:
                    taken.add(symbol)
                    continue  # re-decided away from this entry: no order
            base = self._baseline_equity(i)
            close = (snapshots.get(symbol) or {}).get("close") or o.get("price")
            if not base or not close:
                continue
            fraction = float(o["qty"]) * float(o.get("price") or close) / base
            plan = o.get("plan") or {}
            sized = self._size(symbol, o["side"], fraction * m, float(close), before, protections, held,
                               plan.get("stop"), plan.get("target"))
            taken.add(symbol)
            if sized is not None:
                out.append({**o, "qty": sized})
        for symbol, p in proposals.items():
            if symbol in taken or symbol in held:
                continue
            side = None
            if v.thresholds:
                decided = redecide(p, v.thresholds, cfg.consensus_model, cfg.consensus_threshold)
                if decided is not None and decided[0] != p.get("action") and decided[0] != "HOLD":
                    side = decided[0]
            if side is None and v.takes(rec.as_of, symbol, p.get("result")):
                side = p.get("action") if p.get("action") != "HOLD" else strategist_side(p)
            if side != "BUY" or strategist_side(p) != "BUY" or symbol not in snapshots:
                continue  # longs only, and only with the strategist on that side (coherence)
            snap = snapshots[symbol]
            stop, target = proposal_levels(p, side, float(snap["close"]), float(snap.get("atr14") or 0.0))
            qty = self._size(symbol, side, float(p.get("size_pct") or 0.0) * m, float(snap["close"]), before,
                             protections, held, stop, target)
            if qty is None:
                continue
            out.append({"symbol": symbol, "side": side, "qty": qty, "kind": "entry",
                        "price": round(float(snap["close"]), 6), "confidence": p.get("confidence") or 0.0,
                        "plan": {"direction": 1, "entry": round(float(snap["close"]), 6), "stop": round(stop, 6),
                                 "target": None if target is None else round(target, 6),
                                 "levels_from": "replay", "horizon_days": cfg.max_holding_days,
                                 "trailing_pct": cfg.trailing_stop_pct or None}})
        return out

    def _baseline_equity(self, i: int) -> float | None:
        self._ensure_baseline()
        return self._before_equity[i] if i < len(self._before_equity) else None

    def _size(self, symbol: str, side: str, size_pct: float, price: float, before, protections: dict,
              held: dict[str, float], stop, target) -> float | None:
        """Shares of D for an entry of ``size_pct`` of equity under the hard limits, or None
        when they block it (the graph places no order then)."""
        sized = size_order(symbol=symbol, side=side, size_pct=size_pct, price=price, equity=before.equity,
                           cash=before.cash, position_qty=held.get(symbol, 0.0),
                           gross_exposure=before.gross_exposure, peak_equity=protections["peak_equity"],
                           limits=self.settings.limits, stop=stop, target=target,
                           blocks_orders=protections.get("blocks_orders"), blocks_buys=protections.get("blocks_buys"))
        return None if sized.blocked else round(sized.qty, 8)
