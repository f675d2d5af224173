"""Prompt evaluation: how good are an agent's calls under each prompt version?

Per (agent, prompt_version), over resolved predictions:
- ``accuracy``: share of hits (a directional call whose sign matched the excess return);
- ``ic``: information coefficient, Spearman rank correlation of the signal with the
  realized excess return (None with fewer than 3 rows or a constant input);
- ``brier``: mean Brier score of the calibrated probability (the stored ``loss``);
- ``claimed``: mean raw claim ``(1 + |s|) / 2`` of the directional calls, and ``overconfidence``
  = claimed - accuracy (positive: the agent says more than it delivers).
Rows: dicts with ``agent``, ``prompt_version`` (None -> "-"), ``signal``, ``hit``, ``loss``
and optionally ``excess_return``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 with ties averaged."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):
        tie = x == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(x: Iterable[float], y: Iterable[float]) -> float | None:
    a, b = np.asarray(list(x), dtype=float), np.asarray(list(y), dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    ra, rb = _ranks(a), _ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def evaluate(rows: Iterable[dict]) -> list[dict]:
    """One dict per (agent, prompt_version), sorted by agent then version."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["agent"], r.get("prompt_version") or "-"), []).append(r)
    out = []
    for (agent, version), rs in sorted(groups.items()):
        hits = [r["hit"] for r in rs if r.get("hit") is not None]
        losses = [r["loss"] for r in rs if r.get("loss") is not None]
        directional = [r for r in rs if r.get("signal")]
        claimed = float(np.mean([(1 + abs(r["signal"])) / 2 for r in directional])) if directional else None
        dir_hits = [r["hit"] for r in directional if r.get("hit") is not None]
        dir_acc = float(np.mean(dir_hits)) if dir_hits else None
        with_excess = [r for r in rs if r.get("excess_return") is not None]
        ic = spearman([r["signal"] for r in with_excess], [r["excess_return"] for r in with_excess])
        out.append({
            "agent": agent, "prompt_version": version, "n": len(rs),
            "accuracy": round(float(np.mean(hits)), 6) if hits else None,
            "ic": None if ic is None else round(ic, 6),
            "brier": round(float(np.mean(losses)), 6) if losses else None,
            "claimed": None if claimed is None else round(claimed, 6),
            "overconfidence": None if claimed is None or dir_acc is None else round(claimed - dir_acc, 6),
        })
    return out
