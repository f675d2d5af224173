"""From the cells' daily returns to the evaluation's numbers (``summary.json``'s body).

- ON - OFF: per cell, the paired daily difference on the window's days; pooled, the
  difference averaged per calendar day over the cells holding that day (overlapping windows
  and universes share days, so their differences are not independent: averaging first and
  bootstrapping days in blocks keeps that honest), with a block-bootstrap 95 % interval;
- placebo: per universe, for windows i < j that overlap, OFF(j) - OFF(i) on the shared days
  (the same arm, only the start differs) next to ON(i) - OFF(i) on the same days (the late
  part of window i, where ON has had the most time to learn);
- deflated Sharpe of every arm's pooled daily returns, deflated for the number of arms tried;
- per-agent IC, hit rate against the base rate and Brier (raw confidence, and calibrated out of
  sample as the learning loop scores it), from each graph arm's resolved predictions.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from graph.evaluate import stats
from tools.learning import calibration

TREATMENT, CONTROL = "on", "off"


def _aligned(cell: dict, a: str, b: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Days both arms have, and their returns on those days."""
    ra = dict(zip(cell["arms"][a]["dates"], cell["arms"][a]["returns"], strict=True))
    rb = dict(zip(cell["arms"][b]["dates"], cell["arms"][b]["returns"], strict=True))
    days = sorted(d for d in ra if d in rb and np.isfinite(ra[d]) and np.isfinite(rb[d]))
    return days, np.array([ra[d] for d in days]), np.array([rb[d] for d in days])


def _by_day(pairs) -> tuple[list[str], np.ndarray]:
    """Average values per calendar day: ``pairs`` of (days, values)."""
    acc: dict[str, list[float]] = defaultdict(list)
    for days, values in pairs:
        for d, v in zip(days, values, strict=True):
            acc[d].append(float(v))
    days = sorted(acc)
    return days, np.array([np.mean(acc[d]) for d in days])


def treatment_effect(cells: list[dict], a: str = TREATMENT, b: str = CONTROL, *, block: int = stats.DEFAULT_BLOCK,
                     seed: int = 0) -> dict:
    per_cell, pairs = [], []
    for cell in cells:
        if a not in cell["arms"] or b not in cell["arms"]:
            continue
        days, x, y = _aligned(cell, a, b)
        d = stats.paired_difference(x, y)
        pairs.append((days, d))
        per_cell.append({"cell": cell["cell"], "days": len(days), "mean_daily": float(d.mean()) if len(d) else None,
                         "total_a": float(np.prod(1 + x) - 1), "total_b": float(np.prod(1 + y) - 1)})
    days, pooled = _by_day(pairs)
    ci = stats.block_bootstrap_ci(pooled, block=block, seed=seed)
    means = np.array([c["mean_daily"] for c in per_cell if c["mean_daily"] is not None])
    return {"arms": [a, b], "calendar_days": len(days), "cell_days": int(sum(len(p[0]) for p in pairs)),
            "mean_daily": ci["mean"], "ci_low": ci["low"], "ci_high": ci["high"], "level": ci["level"],
            "block_days": ci["block"], "n_boot": ci["n_boot"],
            "cells_positive": int(np.sum(means > 0)), "cells_negative": int(np.sum(means < 0)),
            "cells": per_cell, "series": {"dates": days, "diff": [float(v) for v in pooled]}}


def placebo(cells: list[dict], *, min_overlap: int = 5) -> dict:
    by_universe: dict[int, list[dict]] = defaultdict(list)
    for cell in cells:
        by_universe[cell["universe"]].append(cell)
    placebo_means, observed, pairs = [], [], []
    for group in by_universe.values():
        group = sorted(group, key=lambda c: c["window"])
        for i, ci in enumerate(group):
            for cj in group[i + 1:]:
                if CONTROL not in ci["arms"] or CONTROL not in cj["arms"]:
                    continue
                if TREATMENT not in ci["arms"]:
                    continue
                days_i, on_i, off_i = _aligned(ci, TREATMENT, CONTROL)
                off_j = dict(zip(cj["arms"][CONTROL]["dates"], cj["arms"][CONTROL]["returns"], strict=True))
                shared = [k for k, d in enumerate(days_i) if d in off_j]
                if len(shared) < min_overlap:
                    continue
                # the shared days are the late part of the early window: there ON has had time to learn
                p = float(np.mean([off_j[days_i[k]] - off_i[k] for k in shared]))
                o = float(np.mean([on_i[k] - off_i[k] for k in shared]))
                placebo_means.append(p)
                observed.append(o)
                pairs.append({"early": ci["cell"], "late": cj["cell"], "days": len(shared), "placebo": p, "on_off": o})
    return {**stats.placebo_summary(placebo_means, observed), "min_overlap": min_overlap, "detail": pairs}


def deflated_sharpes(cells: list[dict], arms: list[str]) -> dict:
    """Each arm's pooled daily returns (mean per calendar day over cells), deflated for len(arms)."""
    series = {}
    for arm in arms:
        pairs = [(c["arms"][arm]["dates"], c["arms"][arm]["returns"]) for c in cells if arm in c["arms"]]
        clean = [(d, r) for d, r in ((list(d), np.asarray(r, float)) for d, r in pairs)]
        clean = [([x for x, ok in zip(d, np.isfinite(r), strict=True) if ok], r[np.isfinite(r)]) for d, r in clean]
        _, values = _by_day(clean)
        series[arm] = values
    trial = [s for s in (stats.sharpe(v) for v in series.values() if len(v) > 1) if s is not None]
    return {arm: stats.deflated_sharpe(v, trial, len(arms)) for arm, v in series.items()}


def calibrated_hits(cols: dict[str, list]) -> list[float | None]:
    """Each directional call's probability of a hit, calibrated on the same agent's calls
    resolved in the same run and made on an EARLIER day (:func:`tools.learning.calibration.p_right`):
    out of sample, as the learning loop sees it. None for a neutral call (signal 0) and for
    rows without a decision day (an older ``arm.json``)."""
    dates = cols.get("as_of")
    if not dates:
        return [None] * len(cols["signal"])
    signal, hit = np.asarray(cols["signal"], dtype=float), np.asarray(cols["hit"], dtype=float)
    day = np.asarray(dates, dtype=object)
    directional = signal != 0
    out: list[float | None] = []
    for i, s in enumerate(signal):
        if s == 0:
            out.append(None)
            continue
        past = directional & (day < day[i])
        out.append(calibration.p_right(abs(s), np.abs(signal[past]), hit[past]))
    return out


def agents(cells: list[dict]) -> dict:
    """Per graph arm, per agent: IC, hit rate vs base rate, Brier raw and calibrated, over every
    cell's predictions (the calibration is fitted per cell: each run learns from its own past)."""
    merged: dict[str, dict[str, dict[str, list]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for cell in cells:
        for arm, per_agent in (cell.get("predictions") or {}).items():
            for agent, cols in per_agent.items():
                for k in ("signal", "confidence", "realized", "hit"):
                    merged[arm][agent][k].extend(cols[k])
                merged[arm][agent]["calibrated"].extend(calibrated_hits(cols))
    return {arm: {agent: stats.agent_scores(c["signal"], c["confidence"], c["realized"], c["hit"], c["calibrated"])
                  for agent, c in sorted(per_agent.items())}
            for arm, per_agent in merged.items()}


def verdicts(effect: dict, plac: dict, dsr: dict, *, window_days: int | None = None,
             horizon_days: int | None = None) -> list[str]:
    """What the data can and cannot resolve, in plain words."""
    out = []
    if window_days is not None and horizon_days is not None and window_days <= horizon_days:
        out.append(f"Each window has {window_days} decision days and a prediction resolves after {horizon_days}: "
                   "no prediction resolves inside a window, so learning cannot change anything there "
                   "(use --window-days > the horizon).")
    lo, hi, m = effect["ci_low"], effect["ci_high"], effect["mean_daily"]
    if effect["cell_days"] and not any(c["mean_daily"] for c in effect["cells"]) \
            and all(c["total_a"] == c["total_b"] for c in effect["cells"]):
        out.append("Learning ON and OFF had the same returns on every day of every cell: learning changed "
                   "no decision here, so there is no difference to measure.")
    elif lo is None or hi is None:
        out.append("Too few days to put an interval on ON - OFF: nothing can be concluded.")
    elif lo <= 0 <= hi:
        out.append(f"The {effect['level']:.0%} interval of ON - OFF ({lo * 1e4:+.2f} to {hi * 1e4:+.2f} bp a day) "
                   "covers zero: these data cannot tell learning ON from OFF.")
    else:
        side = "better" if m > 0 else "worse"
        out.append(f"The {effect['level']:.0%} interval of ON - OFF ({lo * 1e4:+.2f} to {hi * 1e4:+.2f} bp a day) "
                   f"excludes zero: learning ON did {side} than OFF on these days and symbols (one period of "
                   "data: not a promise about others).")
    share = plac.get("share_placebo_as_large")
    if share is None:
        out.append("No overlapping windows: the start-offset placebo could not be run.")
    elif share >= 0.05:
        out.append(f"{share:.0%} of the start-offset placebos (OFF vs OFF started on another day) differ at least "
                   "as much as ON - OFF: the start date alone moves results this much.")
    else:
        out.append(f"Only {share:.0%} of the start-offset placebos differ as much as ON - OFF: the difference is "
                   "larger than start-date noise.")
    good = [a for a, d in dsr.items() if d.get("dsr") is not None and d["dsr"] >= 0.95]
    out.append(("Deflated Sharpe >= 0.95 for: " + ", ".join(good) + " (after deflating for every arm tried).")
               if good else "No arm's deflated Sharpe reaches 0.95: none shows skill beyond luck across the arms tried.")
    return out
