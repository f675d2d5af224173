"""A ``gymnasium`` environment over VOLT's decision simulator: learn a per-cycle size multiplier.

Episode: a random span of ``episode_days`` consecutive recorded days (the whole history when
it is shorter). Step: one day. The agent picks an index into
:data:`tools.learning.rl_policy.MULTIPLIERS`; the simulator replays that day's recorded
decisions with entry and add sizes scaled by it (the same broker, costs and hard limits as
the graph: exits never scaled), and the day's result is the reward::

    reward = equity_after / equity_before - 1            (the day's return, net of fees and slippage)
             - drawdown_penalty * max(0, drawdown_after - drawdown_before)

``drawdown_penalty`` defaults to :data:`DRAWDOWN_PENALTY` (0.1: a 1 % deeper drawdown costs
0.1 % of reward on top of the loss itself). Observation (:func:`features_of`) for the next
decision day D: :func:`tools.learning.rl_features.cycle_observation`, the function the live
node calls, with the inputs the graph's cycle of D has: the simulated portfolio as the graph
values it before the cycle (at D's close, splits by D applied, the protections' peak), D's
market context (precomputed by the caller with the function the live cycle uses), the
previous replayed cycle's return (also at the start of an episode mid-history) and the mean
signal of the recorded cycle before D.

The simulator is :class:`tools.learning.simulator.DecisionSimulator`: ``days`` (decision days,
YYYY-MM-DD), ``reset(start, end) -> DayState`` (before day ``start``; the span is
``[start, end)``), ``step(size_multiplier) -> DayState`` (after the day), with ``index``,
``as_of``, ``equity``, ``cash``, ``gross_exposure``, ``peak_equity``, ``drawdown``, ``done``;
``portfolio_before()`` and ``previous_cycle()`` (the next decision day's inputs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from tools.learning.rl_features import HIGH, LOW, as_vector, cycle_observation
from tools.learning.rl_policy import MULTIPLIERS, multiplier_of

DRAWDOWN_PENALTY = 0.1
EPISODE_DAYS = 20


def _day(value: object) -> str:
    return str(value)[:10]


@dataclass
class Replay:
    """One recorded history to learn from: its simulator, the market context of each decision
    day (day -> dict), each recorded cycle's mean signal (day -> float), and the span of
    ``simulator.days`` episodes may use (``first`` .. ``last`` inclusive; None = all)."""

    simulator: Any
    market_context: Mapping[str, dict]
    signals: Mapping[str, float]
    first: int = 0
    last: int | None = None

    @property
    def days(self) -> list[str]:
        return [_day(d) for d in self.simulator.days]

    def span(self) -> tuple[int, int]:
        n = len(self.simulator.days)
        last = n - 1 if self.last is None else min(self.last, n - 1)
        return max(0, self.first), last


def next_decision(state: Any) -> int:
    """Index of the day the next step decides on: a state fresh from ``reset`` is before day
    ``state.index``; a stepped one is after day ``state.index``."""
    return int(state.index) if state.as_of is None else int(state.index) + 1


def features_of(replay: Replay, state: Any) -> dict[str, float]:
    """The observation for the next decision day D of ``replay``, ``state`` being the
    simulator's current state: :func:`tools.learning.rl_features.cycle_observation`, the
    function the live node calls, with what the graph's cycle of D would see: the portfolio
    as the graph values it before the cycle (``simulator.portfolio_before()``: at D's close,
    the protections' peak), D's market context, the previous replayed cycle
    (``simulator.previous_cycle()``) and its recorded mean signal."""
    days, i = replay.days, next_decision(state)
    sim = replay.simulator
    before = sim.portfolio_before() if i < len(days) else None
    if before is None:  # the span is done: the terminal observation is never acted on
        return cycle_observation(portfolio_before={}, market_context=None, previous_cycle=None, previous_signal=0.0)
    previous = sim.previous_cycle()
    signal = replay.signals.get(_day(previous["as_of"]), 0.0) if previous is not None else 0.0
    return cycle_observation(portfolio_before=before, market_context=replay.market_context.get(days[i]),
                             previous_cycle=previous, previous_signal=signal)


class SizeMultiplierEnv(gym.Env):
    """See the module docstring. Each episode picks one of ``replays`` (uniformly) and a
    random start in its span; a span shorter than ``episode_days`` is one whole episode."""

    metadata = {"render_modes": []}

    def __init__(self, replays: Sequence[Replay], *, episode_days: int = EPISODE_DAYS,
                 drawdown_penalty: float = DRAWDOWN_PENALTY):
        super().__init__()
        self.replays = [r for r in replays if r.span()[1] - r.span()[0] >= 1]  # 2 days at least
        if not self.replays:
            raise ValueError("no replay with at least 2 days to learn from")
        self.episode_days = max(1, int(episode_days))
        self.drawdown_penalty = float(drawdown_penalty)
        self.observation_space = gym.spaces.Box(LOW, HIGH, dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(MULTIPLIERS))
        self._replay: Replay = self.replays[0]
        self._state: Any = None

    def _obs(self) -> np.ndarray:
        return as_vector(features_of(self._replay, self._state))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        self._replay = self.replays[int(options.get("replay", self.np_random.integers(0, len(self.replays))))]
        first, last = self._replay.span()
        length = min(self.episode_days, last - first + 1)  # steps, one per day of [start, end)
        start = int(options.get("start", self.np_random.integers(first, last - length + 2)))
        end = min(last + 1, start + length)
        self._state = self._replay.simulator.reset(start=start, end=end)
        return self._obs(), {"start": start, "end": end}

    def step(self, action):
        before = self._state
        multiplier = multiplier_of(action)
        after = self._replay.simulator.step(size_multiplier=multiplier)
        day_return = float(after.equity) / float(before.equity) - 1.0 if before.equity > 0 else 0.0
        deeper = max(0.0, float(after.drawdown) - float(before.drawdown))
        reward = day_return - self.drawdown_penalty * deeper
        if not np.isfinite(reward):
            reward = 0.0
        self._state = after
        info = {"as_of": after.as_of, "multiplier": multiplier, "day_return": day_return,
                "equity": float(after.equity)}
        return self._obs(), float(reward), bool(after.done), False, info


def rollout(replay: Replay, act: Callable[[dict[str, float]], float] | float, start: int = 0,
            end: int | None = None) -> dict:
    """Replay ``days[start:end]`` acting with ``act(features) -> multiplier`` (or a fixed
    multiplier): the daily returns, the multipliers used and the total return."""
    state = replay.simulator.reset(start=start, end=end)
    returns, used = [], []
    while not state.done:
        m = float(act) if isinstance(act, int | float) else float(act(features_of(replay, state)))
        nxt = replay.simulator.step(size_multiplier=m)
        returns.append(float(nxt.equity) / float(state.equity) - 1.0 if state.equity > 0 else 0.0)
        used.append(m)
        state = nxt
    return {"returns": returns, "multipliers": used, "days": len(returns),
            "total_return": float(np.prod(1.0 + np.asarray(returns)) - 1.0) if returns else 0.0}
