"""Market data concerns with no I/O: corporate actions (splits) and outlier guards.

:func:`clean_symbol` is the one place where a symbol's validated as-traded bars become the
data set's views: bars with an open or close outside their own range are dropped, splits
are detected on the rest (:mod:`tools.market.corporate_actions`), and bars far outside the
symbol's recent range are rejected on the split-adjusted closes
(:mod:`tools.market.price_guard`). Every step judges a bar from it and earlier bars only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tools.market.corporate_actions import Split, adjust_bars, detect_splits
from tools.market.price_guard import (
    GuardConfig,
    RejectedBar,
    intraday_reason,
    intraday_rejects,
    return_rejects,
)

__all__ = ["CleanSymbol", "DataOptions", "GuardConfig", "RejectedBar", "Split", "clean_symbol"]


@dataclass(frozen=True)
class DataOptions:
    """How raw bars become the data set (hashable: part of the data set cache key)."""

    split_adjust: bool = True
    guard: GuardConfig = field(default_factory=GuardConfig)

    @classmethod
    def from_settings(cls, settings: object) -> DataOptions:
        """From :class:`graph.settings.VoltSettings` (defaults for any field it lacks)."""
        base = GuardConfig()
        guard = GuardConfig(
            band_z=float(getattr(settings, "outlier_band_z", base.band_z)),
            min_move=float(getattr(settings, "outlier_min_move", base.min_move)),
            lookback=int(getattr(settings, "outlier_lookback", base.lookback)),
            confirm=int(getattr(settings, "outlier_confirm_bars", base.confirm)),
            max_price=float(getattr(settings, "outlier_max_price", base.max_price)),
        )
        return cls(split_adjust=bool(getattr(settings, "split_adjust", True)), guard=guard)


@dataclass
class CleanSymbol:
    """One symbol's views: ``bars`` fully split-adjusted, ``raw`` as traded (None when it
    has no split: the same as ``bars``), both without the ``rejected`` bars."""

    bars: pd.DataFrame
    raw: pd.DataFrame | None
    splits: list[Split]
    rejected: list[RejectedBar]


def clean_symbol(symbol: str, raw: pd.DataFrame, options: DataOptions) -> CleanSymbol:
    """``raw``: one symbol's as-traded bars, sorted by date, finite positive prices."""
    rejected: list[RejectedBar] = []
    bad = intraday_rejects(raw)
    if bad.any():
        rejected += [RejectedBar(symbol, pd.Timestamp(raw.index[i]), intraday_reason(raw.iloc[i]))
                     for i in np.flatnonzero(bad)]
        raw = raw[~bad]
    splits = detect_splits(symbol, raw) if options.split_adjust else []
    adjusted = adjust_bars(raw, splits)
    dropped = return_rejects(adjusted.index, adjusted["close"].to_numpy(dtype=float), options.guard)
    if dropped:
        rejected += [RejectedBar(symbol, pd.Timestamp(adjusted.index[i]), reason) for i, reason in dropped.items()]
        keep = np.ones(len(adjusted), dtype=bool)
        keep[list(dropped)] = False
        adjusted, raw = adjusted[keep], raw[keep]
    rejected.sort(key=lambda b: b.date)
    return CleanSymbol(adjusted, raw if splits else None, splits, rejected)
