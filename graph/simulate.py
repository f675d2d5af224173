"""``python -m graph.simulate``: replay a recorded run with an alternative, paired with "no change".

``--home DIR`` is a VOLT home (its ledger ``volt.db``) or a backtest's ``--out`` directory
(its ``backtest.json`` names the run and its settings). The decision simulator
(:mod:`tools.learning.simulator`) replays the recorded days twice over the same data, costs
and limits: as recorded, and with the variant (``--size`` multiplier on entries and adds,
``--threshold agent=value`` for a voter's confidence threshold, ``--take`` results of
proposals the graph did not trade). It prints both equity curves' ends, the mean paired
daily-return difference with its 95% block-bootstrap interval, and whether the "no change"
replay reproduces the ledger.

Exit codes: 0 done, 2 bad arguments or an unusable home (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from graph.errors import OperationalError
from graph.settings import VoltSettings
from memory.replay_source import read_history
from tools.data_source import market_dataset
from tools.learning.sim_stats import block_bootstrap_ci, paired_difference, paired_verdict
from tools.learning.sim_variants import VOTERS, Variant
from tools.learning.simulator import DecisionSimulator, SimSettings

TAKEABLE = ("HOLD", "BLOCKED", "REJECTED")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _threshold(text: str) -> tuple[str, float]:
    agent, sep, value = text.partition("=")
    if not sep or agent not in VOTERS:
        raise argparse.ArgumentTypeError(f"{text!r}: use AGENT=VALUE with AGENT one of {', '.join(VOTERS)}")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {value!r} is not a number") from None
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: a confidence threshold is between 0 and 1")
    return agent, number


def _size(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 10.0:
        raise argparse.ArgumentTypeError(f"{text!r}: a size multiplier is between 0 and 10")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="python -m graph.simulate",
                description="Replay a recorded run with another size, threshold or taken proposals, paired with "
                            "the replay of no change (same days, data, costs and limits).")
    p.add_argument("--home", required=True, type=Path, help="VOLT home (volt.db) or a backtest --out directory")
    p.add_argument("--portfolio", help="portfolio (default: VOLT_PORTFOLIO, or 'backtest' for a backtest)")
    p.add_argument("--size", type=_size, default=1.0, help="size multiplier of entries and adds (default 1)")
    p.add_argument("--threshold", type=_threshold, action="append", default=[], metavar="AGENT=VALUE",
                   help="a voter's confidence threshold (repeatable), e.g. market_agent=0.6")
    p.add_argument("--take", default="", metavar="R1,R2",
                   help=f"proposals not traded, taken as if traded, by result ({', '.join(TAKEABLE)})")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = p.parse_args(argv)
    args.take = tuple(t for t in (s.strip().upper() for s in args.take.split(",")) if t)
    if bad := [t for t in args.take if t not in TAKEABLE]:
        p.error(f"--take {','.join(bad)}: results are {', '.join(TAKEABLE)}")
    return args


def resolve_settings(home: Path, portfolio: str | None) -> VoltSettings:
    """The run's settings: a backtest's own (its manifest), else the home's with the environment."""
    if not home.is_dir():
        raise OperationalError(f"--home {home}: not a directory")
    manifest = home / "backtest.json"
    if manifest.exists():
        from graph.backtest import BacktestConfig, run_settings

        try:
            data = json.loads(manifest.read_text())
            cfg, state = BacktestConfig.from_dict(data["config"]), data["state"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OperationalError(f"{manifest}: unreadable backtest manifest ({exc})") from None
        settings = run_settings(cfg, home, "agents", state)
    else:
        settings = VoltSettings(home=home)
    if portfolio:
        settings = settings.model_copy(update={"portfolio": portfolio})
    if isinstance(settings.ledger_path, Path) and not settings.ledger_path.exists():
        raise OperationalError(f"--home {home}: no ledger at {settings.ledger_path}")
    return settings


def compare(settings: VoltSettings, size: float, thresholds: dict[str, float], take: tuple[str, ...]) -> dict:
    try:
        history = read_history(settings.ledger_path, settings.portfolio)
    except KeyError:
        raise OperationalError(f"portfolio {settings.portfolio!r} has no record in {settings.ledger_path}") from None
    if len(history.days) < 2:
        raise OperationalError(f"portfolio {settings.portfolio!r}: {len(history.days)} recorded days, need 2 or more")
    sim = DecisionSimulator(history, market_dataset(settings), SimSettings.from_settings(settings))
    base = sim.run()
    alt = sim.run(size, variant=Variant(take=take, thresholds=thresholds))
    diff = paired_difference(alt.daily_returns, base.daily_returns)
    ci = block_bootstrap_ci(diff, level=0.95)
    verdict = paired_verdict(alt.daily_returns, base.daily_returns, min_days=2, label="variant vs no change")
    reproduced = all(d.equity == round(e, 6) and d.cash == round(c, 6)
                     for d, e, c in zip(history.days, base.equity, base.cash, strict=True))
    return {"portfolio": settings.portfolio, "days": len(base.dates), "first": base.dates[0], "last": base.dates[-1],
            "variant": {"size": size, "thresholds": thresholds, "take": list(take)},
            "no_change": {"equity": base.equity[-1], "total_return": base.total_return, "fills": len(base.fills)},
            "alternative": {"equity": alt.equity[-1], "total_return": alt.total_return, "fills": len(alt.fills)},
            "mean_daily_difference": ci["mean"], "ci95": [ci["low"], ci["high"]],
            "one_sided_lower_95": verdict.low, "favours_variant": verdict.favoured,
            "no_change_reproduces_ledger": reproduced}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = resolve_settings(args.home, args.portfolio)
        out = compare(settings, args.size, dict(args.threshold), args.take)
    except (OperationalError, ValueError) as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    low, high = out["ci95"]
    print(f"{out['portfolio']}: {out['days']} days {out['first']}..{out['last']}")
    print(f"  no change    equity {out['no_change']['equity']:12.2f}  {out['no_change']['total_return']:+.2%}"
          f"  ({out['no_change']['fills']} fills; reproduces the ledger: {'yes' if out['no_change_reproduces_ledger'] else 'NO'})")
    print(f"  alternative  equity {out['alternative']['equity']:12.2f}  {out['alternative']['total_return']:+.2%}"
          f"  ({out['alternative']['fills']} fills)")
    interval = "n/a" if low is None else f"[{low:+.4%}, {high:+.4%}]"
    print(f"  mean daily difference {out['mean_daily_difference']:+.4%}, 95% block-bootstrap CI {interval}"
          f"; {'favours' if out['favours_variant'] else 'does not favour'} the alternative (one-sided 95%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
