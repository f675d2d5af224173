"""The ``rl`` arm of ``graph.evaluate``: learning ON plus the RL controller, trained on past
windows only.

- The ``on`` arm of every cell keeps its replay history (:func:`save_replay`:
  ``cells/<cell>/on/rl_replay.json``: the ledger's :class:`ReplayHistory`, each cycle's mean
  calibrated signal, the window's days and symbols) before its run's state is deleted.
- The ``rl`` arm of window k uses one policy per window (``cells/rl-policies/wKK/policy.zip``), trained
  (:func:`policy_for`) on the decision-simulator replays of the ``on`` arm of every cell whose
  window ENDED before window k's first day (any universe): never on a day it is scored on.
  The first arm of a window to get there trains it (a file lock); the others reuse it.
- A window with no earlier window ends uses multiplier 1.0 (the controller off): its cells
  say ``untrained`` and the rl - on comparison leaves them out.

The ``rl`` arms run in a second phase, after every other arm (``runner._phases``).
"""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path

REPLAY_FILE = "rl_replay.json"
TIMESTEPS = 3000  # simulated days of PPO per window's policy
SEED = 0


def save_replay(settings, arm_dir: Path, days: list[str], symbols: list[str]) -> Path:
    """Keep what the ``rl`` arm trains on from this ``on`` run (call before deleting its state)."""
    from graph.rl import ledger_signals
    from memory.replay_source import read_history

    history = read_history(settings.ledger_path, settings.portfolio)
    data = {"days": list(days), "symbols": list(symbols), "history": history.to_dict(),
            "signals": ledger_signals(settings.ledger_path, settings.portfolio)}
    path = Path(arm_dir) / REPLAY_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str))
    tmp.replace(path)
    return path


def _past_cells(out: Path, cfg, first_day: str) -> list[str]:
    """Ids of the cells whose window ended before ``first_day``."""
    from graph.evaluate.runner import plan_cells

    _, cells = plan_cells(cfg, out)
    return [c.id for c in cells if c.window.days[-1] < first_day]


def policy_for(cfg, out: Path, cell_id: str, days: list[str], replay_settings) -> tuple[dict, dict]:
    """(settings overrides, what the cell's summary says) for the ``rl`` arm of a cell.

    ``replay_settings(symbols)``: the ``on`` arm's settings for a universe (costs, limits,
    data) to build each past replay's simulator with."""
    window = cell_id.split("-")[0]
    past = _past_cells(out, cfg, days[0])
    if not past:
        return {"rl_controller": False}, {"trained": False, "note": "untrained: no window ended before this "
                                          "one, multiplier 1.0"}
    files = [out / "cells" / c / "on" / REPLAY_FILE for c in past]
    if missing := [f for f in files if not f.exists()]:  # the on arms run in the phase before
        raise RuntimeError(f"{missing[0]} is missing: the on arm of that cell did not finish")
    # under cells/: a fresh evaluation in the same --out deletes it with the cells, never reusing a stale policy
    policy = out / "cells" / "rl-policies" / window / "policy.zip"
    policy.parent.mkdir(parents=True, exist_ok=True)
    with open(policy.parent / "train.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one trainer per window; the others wait, then reuse
        meta_file = policy.with_suffix(".json")
        if not meta_file.exists():
            _train(files, past, policy, replay_settings)
        meta = json.loads(meta_file.read_text())
    info = {"trained": True, "policy": meta.get("policy"), "trained_on": meta.get("trained_on"),
            "training_days": meta.get("training_days"), "in_sample": meta.get("in_sample")}
    return {"rl_controller": True, "rl_policy": str(policy)}, info


def with_actions(info: dict, settings) -> dict:
    """``info`` plus what the controller did in the run: cycles recorded, the mean applied
    multiplier and how many cycles had each (none when it was off)."""
    from memory import rl_store

    rows = rl_store.actions(settings.ledger_path, settings.portfolio) if settings.ledger_path.exists() else []
    counts: dict[str, int] = {}
    for r in rows:
        counts[f"{r['applied']:g}"] = counts.get(f"{r['applied']:g}", 0) + 1
    mean = sum(r["applied"] for r in rows) / len(rows) if rows else None
    return {**info, "cycles": len(rows), "mean_applied": mean, "applied_counts": counts,
            "degraded": sum(1 for r in rows if r["policy"] == "none")}


def _train(files: list[Path], cells: list[str], policy: Path, replay_settings) -> None:
    from graph.rl import PPO_PARAMS, comparison, home_replay, save_policy, train_policy
    from tools.learning.sim_history import ReplayHistory

    replays, days = [], set()
    for f in files:
        data = json.loads(f.read_text())
        history = ReplayHistory.from_dict(data["history"])
        replays.append(home_replay(replay_settings(data["symbols"]), history=history, signals=data["signals"]))
        days.update(data["days"])
    t0 = time.perf_counter()
    model = train_policy(replays, timesteps=TIMESTEPS, seed=SEED)
    gains = [comparison(model, r, 0, None) for r in replays]
    ordered = sorted(days)
    save_policy(model, policy, {
        "seed": SEED, "timesteps": TIMESTEPS, "ppo": PPO_PARAMS, "trained_on": cells,
        "training_days": {"first": ordered[0], "last": ordered[-1], "count": len(ordered)},
        "in_sample": {"policy_return_mean": sum(g["policy_return"] for g in gains) / len(gains),
                      "multiplier_1_return_mean": sum(g["multiplier_1_return"] for g in gains) / len(gains),
                      "mean_multiplier": sum(g["mean_multiplier"] for g in gains) / len(gains)},
        "train_seconds": round(time.perf_counter() - t0, 2)})
