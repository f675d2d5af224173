"""The decision simulator's settings and results (:mod:`tools.learning.simulator`): what a
replay is configured with, what each replayed day looks like, and the replay's outcome."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field

from tools.risk_limits import Limits
from tools.trading.fills import BrokerRules
from tools.trading.protections import ProtectionSettings


@dataclass(frozen=True)
class SimSettings:
    """The settings a replay depends on; build with :meth:`from_settings` from the run's."""

    rules: BrokerRules
    limits: Limits
    protections: ProtectionSettings
    max_holding_days: int
    trailing_stop_pct: float | None
    reduce_fraction: float
    untraded_exit_days: int
    consensus_model: str = "weighted"
    consensus_threshold: float = 0.25

    @classmethod
    def from_settings(cls, s) -> SimSettings:
        return cls(
            rules=BrokerRules.from_settings(s),
            limits=Limits(max_position_pct=s.max_position_pct, max_gross_exposure_pct=s.max_gross_exposure_pct,
                          allow_short=s.allow_short, max_drawdown_pct=s.max_drawdown_pct, fee_rate=s.fee_rate,
                          risk_per_trade_pct=s.risk_per_trade_pct, min_order_notional=s.min_order_notional),
            protections=ProtectionSettings(
                max_drawdown_pct=s.max_drawdown_pct, halt_cooldown_cycles=s.halt_cooldown_cycles,
                trading_breaker_window=s.trading_breaker_window, trading_breaker_rate=s.trading_breaker_rate,
                market_breaker_pct=s.market_breaker_pct),
            max_holding_days=s.max_holding_days, trailing_stop_pct=s.trailing_stop_pct or None,
            reduce_fraction=s.reduce_fraction, untraded_exit_days=s.untraded_exit_days,
            consensus_threshold=s.consensus_threshold)


@dataclass
class DayState:
    """The simulated portfolio after a replayed day (before any day: after ``reset``).
    USD amounts; ``drawdown`` a fraction of ``peak_equity``; ``mean_signal`` the mean
    consensus score of the day's recorded proposals (None without any); ``done`` when the
    span is replayed."""

    index: int
    as_of: str | None
    fill_day: str | None
    equity: float
    cash: float
    gross_exposure: float
    peak_equity: float
    drawdown: float
    fees: float  # this day's
    n_fills: int
    done: bool
    mean_signal: float | None = None
    day_return: float = 0.0
    multiplier: float = 1.0
    n_orders: int = 0
    blocked_buys: bool = False

    @property
    def exposure_pct(self) -> float:
        return self.gross_exposure / self.equity if self.equity > 0 else 0.0


@dataclass
class ReplayResult:
    """A replayed span: per day its decision day, equity and cash after it, its return
    (a fraction; the first against the equity before the span) and every fill."""

    dates: list[str]
    equity: list[float]
    cash: list[float]
    daily_returns: list[float]
    fills: list[dict] = field(default_factory=list)
    orders: list[dict] = field(default_factory=list)
    start_equity: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def total_return(self) -> float:
        return self.equity[-1] / self.start_equity - 1.0 if self.equity and self.start_equity > 0 else 0.0


class DaySnapshots(Mapping):
    """The day's indicator snapshots of its candidates (what the graph's broker prices
    slippage and plans from), each computed on first use: most candidates never trade."""

    def __init__(self, candidates: list[str], day: str, compute: Callable[[str, str], dict | None]):
        self._candidates, self._day, self._compute = set(candidates), day, compute

    def __getitem__(self, symbol: str) -> dict:
        snap = self._compute(symbol, self._day) if symbol in self._candidates else None
        if snap is None:
            raise KeyError(symbol)
        return snap

    def __iter__(self) -> Iterator[str]:
        return (s for s in sorted(self._candidates) if s in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)
