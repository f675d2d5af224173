"""``python -m graph.rl``: train the RL controller's policy on a VOLT home's recorded days, and
show what it did.

    python -m graph.rl train --home DIR [--portfolio P] [--timesteps N] [--seed S] [--until YYYY-MM-DD]
    python -m graph.rl show  --home DIR [--portfolio P] [--json]

``train`` replays the home's recorded past days (strictly before ``--until`` when given) in
the decision simulator (tools/learning/simulator.py, the same broker, costs and limits as the
graph) and fits PPO (stable-baselines3, the extra ``rl``: ``make rl``) to choose each day's
entry size multiplier (:mod:`tools.learning.rl_env`). The last fifth of the days (at least
:data:`MIN_HELD_OUT`) is held out: the policy never trains on it, and ``policy.json`` reports
its replay there and on the training days next to multiplier 1.0. It saves
``$VOLT_HOME/rl/policy.zip`` and ``policy.json`` beside it (features, multipliers, days, seed,
timesteps, the comparisons). The graph uses it with ``VOLT_RL_CONTROLLER=1``.

Exit codes: 0 done, 2 bad input (one line: no home, no ledger, too few days, no policy, the
extra not installed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from graph.errors import OperationalError

MIN_DAYS = 10
MIN_HELD_OUT = 5
DEFAULT_TIMESTEPS = 5000
PPO_PARAMS = {"n_steps": 256, "batch_size": 64, "n_epochs": 5, "gamma": 0.9, "learning_rate": 3e-4,
              "ent_coef": 0.01}
NET_ARCH = [32, 32]


# -- the replay of a home ----------------------------------------------------------------------
def home_replay(settings, until: str | None = None, history=None, signals: dict | None = None):
    """A :class:`tools.learning.rl_env.Replay` of the home's recorded days (strictly before
    ``until``): the simulator over the ledger's history (or ``history``, a
    :class:`tools.learning.sim_history.ReplayHistory`), the market context of every day (the
    live cycle's function, on the same data), and each recorded cycle's mean calibrated
    signal (or ``signals``, day -> value, e.g. kept in a file with the history)."""
    import pandas as pd

    from memory.replay_source import read_history
    from nodes.alt_data_ingestion import market_context
    from tools.data_source import market_dataset
    from tools.learning.rl_env import Replay
    from tools.learning.simulator import DecisionSimulator, SimSettings

    dataset = market_dataset(settings)
    if history is None:
        history = read_history(settings.ledger_path, settings.portfolio)
    if until is not None:
        history = replace(history, days=[d for d in history.days if d.as_of < until])
    unknown = [d.as_of for d in history.days if pd.Timestamp(d.as_of) not in dataset.calendar
               or dataset.fill_day(pd.Timestamp(d.as_of)) is None]
    if unknown:  # the home was run on other data: VOLT_DATA_CSV as for its runs
        raise OperationalError(f"recorded day {unknown[0]} has no next trading day in {dataset.source}: train with "
                               "the data the home ran on (VOLT_DATA_CSV)")
    if signals is None:
        signals = ledger_signals(settings.ledger_path, settings.portfolio, until)
    sim = DecisionSimulator(history, dataset, SimSettings.from_settings(settings))
    days = [str(d)[:10] for d in sim.days]
    context = {d: market_context(dataset, pd.Timestamp(d)) for d in days}
    return Replay(sim, context, signals)


def ledger_signals(ledger_path: Path, portfolio: str, until: str | None = None) -> dict[str, float]:
    """Each recorded cycle's mean calibrated signal (before ``until``), day -> value."""
    from memory import rl_store
    from tools.learning.rl_features import signals_by_day

    rows = [r for r in rl_store.cycle_predictions(ledger_path, portfolio) if until is None or r["as_of"] < until]
    return signals_by_day(rows, rl_store.resolved_history(ledger_path, portfolio, until))


# -- training ----------------------------------------------------------------------------------
class _Bar:
    """A rich progress bar over PPO's timesteps (an SB3 callback)."""

    @staticmethod
    def callback(total: int, enabled: bool):
        from stable_baselines3.common.callbacks import BaseCallback

        class RichBar(BaseCallback):
            def _on_training_start(self) -> None:
                self.progress = None
                if enabled:
                    from rich.console import Console
                    from rich.progress import (
                        BarColumn,
                        MofNCompleteColumn,
                        Progress,
                        TextColumn,
                        TimeRemainingColumn,
                    )

                    self.progress = Progress(TextColumn("PPO"), BarColumn(), MofNCompleteColumn(),
                                             TimeRemainingColumn(), console=Console(stderr=True))
                    self.progress.start()
                    self.task = self.progress.add_task("train", total=total)

            def _on_step(self) -> bool:
                if self.progress is not None:
                    self.progress.update(self.task, completed=min(total, self.num_timesteps))
                return True

            def _on_training_end(self) -> None:
                if self.progress is not None:
                    self.progress.stop()

        return RichBar()


def train_policy(replays: list, *, timesteps: int, seed: int, progress: bool = False):
    """A PPO model fitted on ``replays`` (their spans) for ``timesteps`` simulated days."""
    from tools.learning.rl_policy import require_sb3

    sb3 = require_sb3()
    import torch

    from tools.learning.rl_env import SizeMultiplierEnv

    torch.set_num_threads(1)  # a 32x32 MLP: threads only add overhead on a shared machine
    env = SizeMultiplierEnv(replays)
    model = sb3.PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0,
                    policy_kwargs={"net_arch": list(NET_ARCH)}, **PPO_PARAMS)
    model.learn(total_timesteps=int(timesteps), callback=_Bar.callback(int(timesteps), progress))
    return model


def comparison(model, replay, start: int, end: int | None) -> dict:
    """The deterministic policy's replay of ``days[start:end]`` against multiplier 1.0."""
    from tools.learning.rl_env import rollout
    from tools.learning.rl_features import as_vector
    from tools.learning.rl_policy import clip_multiplier, multiplier_of

    def act(features):
        return clip_multiplier(multiplier_of(model.predict(as_vector(features), deterministic=True)[0]))

    policy, base = rollout(replay, act, start, end), rollout(replay, 1.0, start, end)
    days = replay.days
    last = (end if end is not None else len(days)) - 1
    return {"first_day": days[start], "last_day": days[last], "days": policy["days"],
            "policy_return": round(policy["total_return"], 6), "multiplier_1_return": round(base["total_return"], 6),
            "difference": round(policy["total_return"] - base["total_return"], 6),
            "mean_multiplier": round(sum(policy["multipliers"]) / max(1, len(policy["multipliers"])), 4)}


def save_policy(model, path: Path, meta: dict) -> dict:
    """Write ``policy.zip`` and its ``policy.json`` (written last: a zip without it is unfinished)."""
    from tools.learning.rl_features import FEATURE_NAMES
    from tools.learning.rl_policy import MULTIPLIERS, meta_path, policy_id

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path))
    meta = {"features": list(FEATURE_NAMES), "multipliers": list(MULTIPLIERS), "policy": policy_id(path), **meta}
    tmp = meta_path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    tmp.replace(meta_path(path))
    return meta


def train_home(settings, *, timesteps: int, seed: int, until: str | None, progress: bool) -> dict:
    """Train on the home's days, hold out the last fifth, save; returns policy.json's content."""
    from tools.learning.rl_policy import require_sb3

    require_sb3()
    replay = home_replay(settings, until)
    n = len(replay.days)
    if n < MIN_DAYS:
        raise OperationalError(f"{settings.home}: {n} recorded day(s) of portfolio {settings.portfolio}"
                               f"{' before ' + until if until else ''}; training needs at least {MIN_DAYS}")
    held = max(MIN_HELD_OUT, n // 5)
    cut = n - held  # train on days[0:cut]; the held-out replay starts from the recorded state before days[cut]
    replay.last = cut - 1
    t0 = time.perf_counter()
    model = train_policy([replay], timesteps=timesteps, seed=seed, progress=progress)
    replay.last = None
    meta = {"portfolio": settings.portfolio, "home": str(settings.home), "until": until, "seed": seed,
            "timesteps": timesteps, "ppo": {**PPO_PARAMS, "net_arch": NET_ARCH},
            "reward": "daily return of simulated equity net of costs - 0.1 x the deepening of the drawdown",
            "training_days": {"first": replay.days[0], "last": replay.days[cut - 1], "count": cut},
            "held_out_days": {"first": replay.days[cut], "last": replay.days[-1], "count": held},
            "in_sample": comparison(model, replay, 0, cut),
            "held_out": comparison(model, replay, cut, None),
            "train_seconds": round(time.perf_counter() - t0, 2)}
    return save_policy(model, settings.rl_policy_path, meta)


# -- the CLI -----------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="python -m graph.rl", description="Train and inspect the RL controller's policy.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train on a home's recorded days; saves $VOLT_HOME/rl/policy.zip")
    s = sub.add_parser("show", help="the recorded actions of the RL controller")
    for q in (t, s):
        q.add_argument("--home", required=True, metavar="DIR", help="VOLT home with a ledger")
        q.add_argument("--portfolio", metavar="P", help="portfolio (default VOLT_PORTFOLIO or main)")
    t.add_argument("--timesteps", type=int, default=DEFAULT_TIMESTEPS, metavar="N",
                   help=f"simulated days of PPO training (default {DEFAULT_TIMESTEPS})")
    t.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    t.add_argument("--until", metavar="YYYY-MM-DD", help="train only on days strictly before this one")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true", help="the rows as JSON")
    args = p.parse_args(argv)
    if args.command == "train":
        if args.timesteps < 1:
            p.error(f"--timesteps must be at least 1 (got {args.timesteps})")
        if args.until is not None:
            from datetime import date

            try:
                date.fromisoformat(args.until)
            except ValueError:
                p.error(f"--until {args.until!r} is not a date (use YYYY-MM-DD)")
    return args


def _settings(args):
    from graph.settings import existing_home_settings

    if not Path(args.home).expanduser().is_dir():
        raise OperationalError(f"no VOLT home at {args.home}")
    return existing_home_settings(home=Path(args.home).expanduser(), portfolio=args.portfolio)


def show(settings, as_json: bool) -> str:
    from memory import rl_store
    from tools.learning.rl_policy import meta_path

    rows = rl_store.actions(settings.ledger_path, settings.portfolio)
    meta_file = meta_path(settings.rl_policy_path)
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else None
    if not rows and meta is None:
        raise OperationalError(f"no RL policy at {settings.rl_policy_path} and no recorded action in "
                               f"{settings.ledger_path} (train one: python -m graph.rl train --home {settings.home})")
    if as_json:
        return json.dumps({"policy": meta, "actions": rows}, indent=2, default=str)
    lines = []
    if meta is not None:
        h = meta.get("held_out") or {}
        lines.append(f"policy {meta.get('policy')}: trained on {meta['training_days']['count']} days "
                     f"{meta['training_days']['first']}..{meta['training_days']['last']}, seed {meta.get('seed')}, "
                     f"{meta.get('timesteps')} steps; held-out {h.get('days')} days: policy "
                     f"{h.get('policy_return', 0):+.2%} vs multiplier 1.0 {h.get('multiplier_1_return', 0):+.2%}")
    lines.append(f"{len(rows)} recorded action(s) of portfolio {settings.portfolio}")
    if rows:
        lines.append(f"{'as_of':<11} {'action':>6} {'applied':>7}  policy / drawdown, exposure, vol, signal")
        for r in rows:
            o = r["observation"]
            lines.append(f"{r['as_of']:<11} {r['action']:>6.2f} {r['applied']:>7.2f}  {r['policy']} / "
                         f"{o.get('drawdown', 0):.3f}, {o.get('gross_exposure', 0):.2f}, "
                         f"{o.get('market_vol', 0):.2f}, {o.get('mean_signal', 0):+.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from tools.learning.rl_policy import PolicyUnavailable

    try:
        settings = _settings(args)
        if args.command == "show":
            print(show(settings, args.json))
            return 0
        meta = train_home(settings, timesteps=args.timesteps, seed=args.seed, until=args.until,
                          progress=not args.no_progress)
    except (OperationalError, PolicyUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no policy written", file=sys.stderr)
        return 130
    h, i = meta["held_out"], meta["in_sample"]
    print(f"saved {settings.rl_policy_path} ({meta['policy']}), trained {meta['train_seconds']:.1f} s on "
          f"{meta['training_days']['count']} days\n"
          f"in-sample {i['days']} days: policy {i['policy_return']:+.2%} vs multiplier 1.0 "
          f"{i['multiplier_1_return']:+.2%} (mean multiplier {i['mean_multiplier']:.2f})\n"
          f"held-out  {h['days']} days: policy {h['policy_return']:+.2%} vs multiplier 1.0 "
          f"{h['multiplier_1_return']:+.2%} (mean multiplier {h['mean_multiplier']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
