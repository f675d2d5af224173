"""RL controller: once per cycle, a learned size multiplier for the cycle's entries and adds.

Off by default (``VOLT_RL_CONTROLLER``). On: the observation
(:func:`tools.learning.rl_features.cycle_observation`: drawdown, exposure, cash, the market's
volatility and trend, the previous cycle's calibrated mean signal and return) goes to the
policy at ``VOLT_RL_POLICY`` (default ``$VOLT_HOME/rl/policy.zip``), which picks a multiplier;
it is clipped to ``[0, 1.5]`` and put in the cycle state as ``rl_multiplier``. RiskAgent
scales the requested size of entries and adds by it, and every hard limit then clips the
order (tools/risk_limits.py): no policy output can loosen a limit, and exits are never scaled.

Off: 1.0 and nothing recorded. On without a usable policy (no file, the extra ``rl`` not
installed): 1.0, one warning line per process, and the cycle's row says policy ``none``.
One row per cycle in ``rl_actions`` (written once: a resumed cycle keeps the first).
"""

from __future__ import annotations

import logging
import sys

from langgraph.runtime import Runtime

from graph.context import VoltContext
from graph.state import CycleState
from memory import rl_store
from memory.ledger import Ledger
from tools.learning.rl_features import cycle_observation, mean_calibrated_signal
from tools.learning.rl_policy import NEUTRAL, PolicyUnavailable, applied_multiplier, load_policy

log = logging.getLogger("volt.rl")
_warned: set[str] = set()


def _warn_once(text: str) -> None:
    if text not in _warned:
        _warned.add(text)
        log.warning(text)
        print(f"warning: {text}", file=sys.stderr, flush=True)


def live_features(state: CycleState, ledger: Ledger) -> dict[str, float]:
    """The observation of this cycle (:func:`tools.learning.rl_features.cycle_observation`,
    the function the training replay calls too) from its state (the portfolio before the
    cycle, valued at D's close; D's market context) and the ledger's previous completed cycle
    (its equity and reward, its predictions' mean calibrated signal)."""
    portfolio, day = state["portfolio_id"], state["as_of"]
    previous = ledger.last_completed_cycle(portfolio, before=day)
    signal = 0.0
    if previous is not None:
        prev_day = previous["as_of"]
        rows = rl_store.cycle_predictions(ledger.path, portfolio, prev_day)
        if rows:
            signal = mean_calibrated_signal(rows, rl_store.resolved_history(ledger.path, portfolio, prev_day), prev_day)
    return cycle_observation(portfolio_before=state.get("portfolio_before") or {},
                             market_context=state.get("market_context"), previous_cycle=previous,
                             previous_signal=signal)


def rl_controller(state: CycleState, runtime: Runtime[VoltContext]) -> dict:
    settings = runtime.context.settings
    if not settings.rl_controller:
        return {"rl_multiplier": NEUTRAL}
    ledger = Ledger(settings.ledger_path)
    features = live_features(state, ledger)
    try:
        policy = load_policy(settings.rl_policy_path)
        action, policy_name = policy.act(features), policy.id
    except PolicyUnavailable as exc:  # degraded, never loosened: today's sizing
        _warn_once(f"RL controller on but unusable, size multiplier 1.0: {exc}")
        action, policy_name = NEUTRAL, "none"
    applied = applied_multiplier(action, state.get("protections"), settings.allow_short)
    rl_store.record_action(ledger.path, state["portfolio_id"], state["as_of"], policy=policy_name,
                           observation=features, action=action, applied=applied)
    return {"rl_multiplier": applied}
