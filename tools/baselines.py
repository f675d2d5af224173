"""Baseline strategies on the same data, days, costs and fills as the agent graph.

Every baseline is simulated by :class:`Simulator`, which shares the paper broker's rules:

- a decision on day D sees bars up to D only (indicators from ``ta``, causal);
- orders fill only on the fill day F (the market calendar's day after D), at the symbol's
  open on F, after :func:`tools.broker.slippage_fraction` (ATR% and 20-day average volume as
  of D, the order's shares) and :func:`tools.broker.fee`; a symbol with no bar on F does not
  trade that day (its signal is looked at again the next day); sells first, then buys; a buy
  is clipped to the cash left (fees included);
- accounting is :func:`tools.portfolio.apply_fill` (average cost, realized P&L net of fees);
- equity after D is marked on F like the graph's ``portfolio_manager``
  (:func:`tools.broker.fill_day_marks`): the open on F when the symbol trades on F, else
  its last close before F. No bar after F is read for day D.

Prices are the split-adjusted ``dataset.bars``: the simulation counts adjusted shares, but
every dollar amount (sleeves, fills, fees, equity) is the same as in as-traded shares, and
each fill is recorded as traded (shares and prices of its fill day).

Sizing, point-in-time: the symbols *listed* on D are those of the universe with at least
``min_history`` bars up to D and no data issue by D. Each gets an equal sleeve,
``equity at D's close / (symbols listed on D)``; a position is opened with
``sleeve / (close * (1 + fee_rate))`` shares and closed whole. Long only. A symbol that
lists later changes nothing before it is listed.

Strategies (signal at D's close, position taken at F's open):

- ``buy_and_hold``: buy every symbol listed on the first day, in equal sleeves, and hold to
  the end (one without a bar on the first fill day buys on its first later fill day);
  symbols listed later are not bought (no rebalancing), so it is fully invested from the
  first day up to costs.
- ``sma_crossover``: long while SMA20 > SMA50, flat otherwise.
- ``rsi_rule``: buy when RSI14 < 30, sell when RSI14 > 70, otherwise keep the position.

A symbol with a data issue (or too little history, or no bar) on D is not traded on D.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from ta.momentum import RSIIndicator
from ta.trend import SMAIndicator

from tools.broker import fee, fill_price, slippage_fraction
from tools.market_data import MarketDataset
from tools.portfolio import Account, apply_fill

BASELINES = {
    "buy_and_hold": "Buy & hold, equal weight",
    "sma_crossover": "SMA(20/50) crossover",
    "rsi_rule": "RSI(14) 30/70",
}


def average_true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int = 14) -> np.ndarray:
    """``ta``'s AverageTrueRange (Wilder smoothing seeded with the mean of the first ``window``
    true ranges, zeros before), as a plain loop over numpy floats: the same operations in the
    same order, so the same numbers (tests/test_baselines.py compares), ~25x faster."""
    n = len(close)
    atr = np.zeros(n)
    if n < window:
        return atr
    prev = np.concatenate([[np.nan], close[:-1]])
    ranges = np.vstack([high - low, np.abs(high - prev), np.abs(low - prev)])
    with warnings.catch_warnings():  # a bar with no usable price: NaN, as in ta
        warnings.simplefilter("ignore", RuntimeWarning)
        true_range = np.nanmax(ranges, axis=0)
    atr[window - 1] = true_range[0:window].mean()
    for i in range(window, n):
        atr[i] = (atr[i - 1] * (window - 1) + true_range[i]) / float(window)
    return atr


@dataclass(frozen=True)
class CostModel:
    fee_rate: float = 0.0025
    max_slippage: float = 0.005
    starting_cash: float = 1000.0
    min_history: int = 50

    @classmethod
    def from_settings(cls, settings) -> CostModel:
        return cls(settings.fee_rate, settings.max_slippage, settings.starting_cash, settings.min_history)


@dataclass
class BaselineResult:
    name: str
    label: str
    equity: pd.Series  # by decision day, marked at the next open
    cash: pd.Series
    exposure: pd.Series  # gross exposure / equity
    fills: list[dict] = field(default_factory=list)


@dataclass
class _SymbolData:
    dates: np.ndarray  # datetime64[ns]
    open: np.ndarray
    close: np.ndarray
    sma20: np.ndarray
    sma50: np.ndarray
    rsi14: np.ndarray
    atr_pct: np.ndarray
    avg_shares: np.ndarray  # 20-bar mean volume, in shares
    usable_before: np.datetime64 | None  # bars on or after this day are unusable (data issue)


class Simulator:
    """Daily replay of ``days`` for a universe of symbols (see the module docstring)."""

    def __init__(self, dataset: MarketDataset, days: list[pd.Timestamp], universe: list[str], costs: CostModel):
        self.dataset, self.costs = dataset, costs
        self.days = pd.DatetimeIndex(days)
        self.universe = [s for s in sorted(set(universe)) if s in dataset.bars]
        self.data = {s: self._symbol_data(s) for s in self.universe}
        day64 = self.days.to_numpy()
        n_days, n_sym = len(self.days), len(self.universe)
        # the fill day of each decision day: the calendar's next day (NaT after the last)
        cal = dataset.calendar.to_numpy()
        at = np.searchsorted(cal, day64, side="right")
        fill64 = np.where(at < len(cal), cal[np.minimum(at, len(cal) - 1)], np.datetime64("NaT"))
        # per (day, symbol): listed on D, tradable on D, row of D's bar, row of F's bar, marks
        self.listed = np.zeros((n_days, n_sym), dtype=bool)
        self.tradable = np.zeros((n_days, n_sym), dtype=bool)
        self.row = np.full((n_days, n_sym), -1, dtype=np.int64)
        self.next_row = np.full((n_days, n_sym), -1, dtype=np.int64)
        self.mark = np.full((n_days, n_sym), np.nan)
        self.last_close = np.full((n_days, n_sym), np.nan)
        for j, s in enumerate(self.universe):
            d = self.data[s]
            count = np.searchsorted(d.dates, day64, side="right")  # bars on or before D
            has_bar = (count > 0) & (d.dates[np.maximum(count - 1, 0)] == day64)
            usable_now = np.ones(n_days, dtype=bool) if d.usable_before is None else day64 < d.usable_before
            self.listed[:, j] = usable_now & (count >= costs.min_history)
            self.tradable[:, j] = has_bar & self.listed[:, j]
            self.row[:, j] = np.where(count > 0, count - 1, -1)
            # a fill needs the symbol's bar dated exactly F (never the next bar through a gap)
            nxt_date = d.dates[np.minimum(count, len(d.dates) - 1)] if len(d.dates) else fill64
            nxt_ok = (count < len(d.dates)) & (nxt_date == fill64)
            if d.usable_before is not None:
                nxt_ok &= nxt_date < d.usable_before
            self.next_row[:, j] = np.where(nxt_ok, count, -1)
            close = np.where(count > 0, d.close[np.maximum(count - 1, 0)], np.nan)
            self.last_close[:, j] = close
            # no bar on F: the last close before F (adjusted prices: no split conversion needed)
            self.mark[:, j] = np.where(nxt_ok, d.open[np.minimum(count, len(d.dates) - 1)], close)

    def _symbol_data(self, symbol: str) -> _SymbolData:
        bars = self.dataset.bars[symbol]
        close, high, low = bars["close"], bars["high"], bars["low"]
        atr = average_true_range(high.to_numpy(dtype=float), low.to_numpy(dtype=float), close.to_numpy(dtype=float))
        issue = self.dataset.issues.get(symbol)
        usable_before = None
        if issue is not None:
            usable_before = np.datetime64("1677-09-22") if issue.from_date is None else issue.from_date.to_datetime64()
        return _SymbolData(
            dates=bars.index.to_numpy(),
            open=bars["open"].to_numpy(dtype=float),
            close=close.to_numpy(dtype=float),
            sma20=SMAIndicator(close=close, window=20).sma_indicator().to_numpy(dtype=float),
            sma50=SMAIndicator(close=close, window=50).sma_indicator().to_numpy(dtype=float),
            rsi14=RSIIndicator(close=close, window=14).rsi().to_numpy(dtype=float),
            atr_pct=atr / close.to_numpy(dtype=float),
            avg_shares=(bars["volume"].rolling(20, min_periods=1).mean() * self.dataset.volume_unit).to_numpy(dtype=float),
            usable_before=usable_before,
        )

    # ------------------------------------------------------------------ signals

    def _at(self, attr: str) -> np.ndarray:
        """Indicator ``attr`` on each day's bar (NaN where the symbol is not tradable)."""
        out = np.full(self.tradable.shape, np.nan)
        for j, s in enumerate(self.universe):
            values = getattr(self.data[s], attr)
            rows = self.row[:, j]
            out[:, j] = np.where(rows >= 0, values[np.maximum(rows, 0)], np.nan)
        out[~self.tradable] = np.nan
        return out

    def want_buy_and_hold(self) -> np.ndarray:
        want = np.zeros(self.tradable.shape, dtype=bool)
        if len(self.days):
            want[:, :] = self.listed[0]
        return want

    def want_sma_crossover(self) -> np.ndarray:
        fast, slow = self._at("sma20"), self._at("sma50")
        with np.errstate(invalid="ignore"):
            return fast > slow

    def want_rsi_rule(self) -> np.ndarray:
        rsi = self._at("rsi14")
        want = np.zeros(rsi.shape, dtype=bool)
        state = np.zeros(rsi.shape[1], dtype=bool)
        for i in range(rsi.shape[0]):
            with np.errstate(invalid="ignore"):
                state = np.where(rsi[i] < 30, True, np.where(rsi[i] > 70, False, state))
            want[i] = state
        return want

    # ------------------------------------------------------------------ replay

    def run(self, name: str, want: np.ndarray, label: str | None = None) -> BaselineResult:
        """Trade toward ``want`` (days x symbols, True = hold a position) day by day."""
        c = self.costs
        account = Account(name, c.starting_cash, c.starting_cash, c.starting_cash)
        qty = np.zeros(len(self.universe))
        listed = self.listed.sum(axis=1)
        fills: list[dict] = []
        equity, cash, exposure = [], [], []
        for i in range(len(self.days)):
            held = qty > 1e-12
            can = self.tradable[i] & (self.next_row[i] >= 0)
            sells = np.nonzero(held & ~want[i] & can)[0]
            buys = np.nonzero(~held & want[i] & can)[0]
            if len(sells) or len(buys):
                closes = self.last_close[i]
                value_at_close = account.cash + float(np.nansum(qty * np.nan_to_num(closes)))
                sleeve = value_at_close / listed[i] if listed[i] else 0.0
                for j in sells:
                    self._fill(name, account, qty, j, i, "SELL", qty[j], fills)
                for j in buys:
                    want_qty = sleeve / (closes[j] * (1.0 + c.fee_rate))
                    self._fill(name, account, qty, j, i, "BUY", want_qty, fills)
            marks = self.mark[i]
            values = qty * np.nan_to_num(marks)
            eq = account.cash + float(values.sum())
            equity.append(eq)
            cash.append(account.cash)
            exposure.append(float(np.abs(values).sum()) / eq if eq > 0 else 0.0)
        index = pd.DatetimeIndex(self.days, name="as_of")
        return BaselineResult(name, label or BASELINES.get(name, name), pd.Series(equity, index=index),
                              pd.Series(cash, index=index), pd.Series(exposure, index=index), fills)

    def _fill(self, name: str, account: Account, qty: np.ndarray, j: int, i: int, side: str,
              want_qty: float, fills: list[dict]) -> None:
        c, symbol = self.costs, self.universe[j]
        d = self.data[symbol]
        row, nxt = self.row[i, j], self.next_row[i, j]
        reference = float(d.open[nxt])
        slip = slippage_fraction(atr_pct=float(d.atr_pct[row]), order_shares=float(want_qty),
                                 avg_daily_shares=float(d.avg_shares[row]), max_slippage=c.max_slippage)
        price = fill_price(reference, side, slip)
        q = float(want_qty)
        if side == "BUY":
            q = min(q, account.cash / (price * (1.0 + c.fee_rate)) * (1 - 1e-12))
        if q <= 1e-9:
            return
        cost = fee(q * price, c.fee_rate)
        realized = apply_fill(account, symbol, side, q, price, cost)
        qty[j] = account.positions[symbol].qty if symbol in account.positions else 0.0
        day, fill_day = self.days[i], pd.Timestamp(d.dates[nxt])
        # the record is as traded: adjusted prices carry splits after F (dollars do not change)
        traded, scale = reference, 1.0
        if self.dataset.splits.get(symbol) and (bar := self.dataset.bar_on(symbol, fill_day)) is not None:
            traded = float(bar["open"])
            scale = traded / reference
        fills.append({
            "order_id": f"{name}:{day:%Y-%m-%d}:{symbol}", "as_of": f"{day:%Y-%m-%d}", "symbol": symbol,
            "side": side, "qty": q / scale, "reference_price": traded, "price": fill_price(traded, side, slip),
            "slippage_pct": slip, "fee": cost, "realized_pnl": realized, "fill_date": f"{fill_day:%Y-%m-%d}",
        })


STRATEGIES: dict[str, Callable[[Simulator], np.ndarray]] = {
    "buy_and_hold": Simulator.want_buy_and_hold,
    "sma_crossover": Simulator.want_sma_crossover,
    "rsi_rule": Simulator.want_rsi_rule,
}


def run_baselines(dataset: MarketDataset, days: list[pd.Timestamp], universe: list[str], costs: CostModel,
                  names: list[str] | None = None) -> dict[str, BaselineResult]:
    """Every baseline (or ``names``) over ``days`` on ``universe``."""
    sim = Simulator(dataset, days, universe, costs)
    return {name: sim.run(name, STRATEGIES[name](sim)) for name in (names or list(STRATEGIES))}
