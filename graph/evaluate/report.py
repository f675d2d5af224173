"""``summary.json``, a self-contained ``report.html`` and the terminal text of ``graph.evaluate``.

Units: daily differences are shown in basis points a day (1 bp = 0.0001 = 0.01 %); total
returns in percent; Sharpe ratios per day as computed by :mod:`graph.evaluate.stats`
(multiply by sqrt(252) for an annual figure).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from graph.evaluate import analysis


def build_summary(cfg, arms: list, cells: list[dict], timing: dict, *, horizon_days: int | None = None) -> dict:
    names = [a.name for a in arms]
    graph_names = {a.name for a in arms if a.kind == "graph"}
    effect = analysis.treatment_effect(cells, seed=cfg.seed) if {"on", "off"} <= graph_names else None
    plac = analysis.placebo(cells) if effect else None
    dsr = analysis.deflated_sharpes(cells, names)
    arm_rows = {}
    for a in arms:
        totals = [float(np.prod(1 + np.asarray(c["arms"][a.name]["returns"], float)) - 1)
                  for c in cells if a.name in c["arms"]]
        arm_rows[a.name] = {"label": a.label, "kind": a.kind, "overrides": a.overrides,
                            "mean_window_return": float(np.nanmean(totals)) if totals else None,
                            "windows_positive": int(np.sum(np.asarray(totals) > 0)),
                            "sharpe_per_day": dsr[a.name]["sharpe"], "deflated_sharpe": dsr[a.name]["dsr"]}
    days = sorted({d for c in cells for d in c["days"]})
    return {
        "command": "python -m graph.evaluate",
        "config": asdict(cfg),
        "cells": len(cells), "windows": len({c["window"] for c in cells}),
        "universes": len({c["universe"] for c in cells}),
        "symbols_per_universe": sorted({c["symbols"] for c in cells}),
        "period": {"first_decision": days[0] if days else None, "last_decision": days[-1] if days else None,
                   "calendar_days": len(days)},
        "arms": arm_rows,
        "on_minus_off": effect,
        "rl_minus_on": rl_effect(cells, cfg.seed) if {"rl", "on"} <= graph_names else None,
        "placebo": plac,
        "deflated_sharpe": dsr,
        "agents": analysis.agents(cells),
        "horizon_days": horizon_days,
        "verdict": analysis.verdicts(effect, plac, dsr, window_days=cfg.window_days,
                                     horizon_days=horizon_days) if effect else [],
        "timing": {k: round(v, 3) for k, v in timing.items()},
    }


def rl_effect(cells: list[dict], seed: int) -> dict:
    """RL controller - learning ON, paired, over the cells whose policy was trained (on earlier
    windows); the untrained ones (no earlier window, multiplier 1.0) are counted, not compared."""
    trained = [c for c in cells if "rl" in c["arms"] and (c["arms"]["rl"].get("rl") or {}).get("trained")]
    untrained = sum(1 for c in cells if "rl" in c["arms"]) - len(trained)
    applied = [m for c in trained if (m := c["arms"]["rl"]["rl"].get("mean_applied")) is not None]
    return {**analysis.treatment_effect(trained, "rl", "on", seed=seed), "trained_cells": len(trained),
            "untrained_cells": untrained, "mean_applied": float(np.mean(applied)) if applied else None}


def _bp(v: float | None) -> str:
    return "-" if v is None else f"{v * 1e4:+.2f} bp"


def _pct(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.2%}"


def _num(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def render_text(s: dict) -> str:
    lines = [f"VOLT evaluation: {s['windows']} windows x {s['universes']} universes = {s['cells']} cells, "
             f"{s['config']['window_days']} days each, {', '.join(map(str, s['symbols_per_universe']))} symbols "
             f"({s['period']['first_decision']}..{s['period']['last_decision']}), priors only"]
    e = s["on_minus_off"]
    if e:
        lines.append(f"ON - OFF: {_bp(e['mean_daily'])} a day, {e['level']:.0%} CI [{_bp(e['ci_low'])}, "
                     f"{_bp(e['ci_high'])}] (block bootstrap, {e['block_days']}-day blocks, {e['calendar_days']} days); "
                     f"cells ON better {e['cells_positive']}, worse {e['cells_negative']}")
    p = s["placebo"]
    if p and p["pairs"]:
        lines.append(f"placebo (OFF vs OFF, other start): std {_bp(p['placebo_std'])}, 95% range "
                     f"[{_bp(p['placebo_low'])}, {_bp(p['placebo_high'])}] over {p['pairs']} pairs; "
                     f"ON - OFF on the same days {_bp(p['observed_mean'])}")
    r = s.get("rl_minus_on")
    if r:
        lines.append(f"RL - ON: {_bp(r['mean_daily'])} a day, {r['level']:.0%} CI [{_bp(r['ci_low'])}, "
                     f"{_bp(r['ci_high'])}] over {r['trained_cells']} cells with a policy trained on earlier windows "
                     f"({r['untrained_cells']} untrained, left out); cells RL better {r['cells_positive']}, "
                     f"worse {r['cells_negative']}; mean size multiplier applied {_num(r['mean_applied'], '.2f')}")
    lines.append(f"{'arm':<32}{'mean window return':>20}{'Sharpe/day':>12}{'DSR':>8}")
    for a in s["arms"].values():
        lines.append(f"{a['label']:<32}{_pct(a['mean_window_return']):>20}{_num(a['sharpe_per_day']):>12}"
                     f"{_num(a['deflated_sharpe'], '.2f'):>8}")
    lines += s["verdict"]
    reused = (s.get("replays") or {}).get("reused", 0)
    lines.append(f"wall time {s['timing'].get('wall_s', 0):.1f} s"
                 + (f" ({reused} of {s['replays']['total']} replays reused from an earlier run)" if reused else ""))
    return "\n".join(lines)


def chart_png(s: dict) -> bytes | None:
    e = s["on_minus_off"]
    if not e or not e["series"]["dates"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    means = [c["mean_daily"] * 1e4 for c in e["cells"] if c["mean_daily"] is not None]
    ax1.bar(range(len(means)), means, color=["#2a7" if m > 0 else "#c44" for m in means])
    p = s["placebo"]
    if p and p["pairs"]:
        ax1.axhspan(p["placebo_low"] * 1e4, p["placebo_high"] * 1e4, color="#999", alpha=0.25,
                    label="placebo 95% range")
        ax1.legend(loc="best", fontsize=8)
    ax1.axhline(0, color="black", lw=0.8)
    ax1.set(title="ON - OFF per cell (bp a day)", xlabel="cell")
    cum = np.cumsum(e["series"]["diff"]) * 100
    ax2.plot(range(len(cum)), cum, color="#246")
    ax2.axhline(0, color="black", lw=0.8)
    ax2.set(title="cumulative ON - OFF (pooled, % points)", xlabel="calendar day")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def render_html(s: dict, png: bytes | None) -> str:
    esc = html.escape
    rows = "".join(f"<tr><td>{esc(a['label'])}</td><td>{esc(json.dumps(a['overrides']) if a['kind'] == 'graph' else 'rule')}"
                   f"</td><td>{_pct(a['mean_window_return'])}</td><td>{a['windows_positive']}</td>"
                   f"<td>{_num(a['sharpe_per_day'])}</td><td>{_num(a['deflated_sharpe'], '.2f')}</td></tr>"
                   for a in s["arms"].values())
    agent_rows = "".join(
        f"<tr><td>{esc(arm)}</td><td>{esc(agent)}</td><td>{m['n']}</td><td>{_num(m['ic'])}</td>"
        f"<td>{_num(m['hit_rate'], '.1%')}</td><td>{_num(m['base_rate'], '.1%')}</td><td>{_num(m['brier'])}</td>"
        f"<td>{_num(m['brier_base'])}</td><td>{_num(m.get('brier_calibrated'))}</td>"
        f"<td>{_num(m.get('brier_calibrated_base'))}</td></tr>"
        for arm, per in s["agents"].items() for agent, m in per.items())
    img = (f'<img alt="ON - OFF per cell and cumulative" src="data:image/png;base64,'
           f'{base64.b64encode(png).decode()}">') if png else ""
    head = esc(render_text(s).splitlines()[0])
    verdict = "".join(f"<li>{esc(v)}</li>" for v in s["verdict"])
    detail = esc("\n".join(render_text(s).splitlines()[1:3]))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>VOLT evaluation</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>VOLT evaluation</h1><p>{head}</p><h2>What the data can and cannot resolve</h2><ul>{verdict}</ul>
<pre>{detail}</pre>{img}
<h2>Arms</h2><table><tr><th>arm</th><th>settings</th><th>mean window return</th><th>windows &gt; 0</th>
<th>Sharpe / day</th><th>deflated Sharpe</th></tr>{rows}</table>
<h2>Agents (resolved predictions)</h2><table><tr><th>arm</th><th>agent</th><th>n</th><th>IC (Spearman)</th>
<th>hit rate</th><th>base rate</th><th>Brier (raw confidence)</th><th>Brier of the base rate</th>
<th>Brier, calibrated out of sample</th><th>its base rate's</th></tr>{agent_rows}</table>
</body></html>"""


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def write_reports(out: Path, s: dict) -> None:
    (out / "summary.json").write_text(json.dumps(s, indent=2, default=_json_default))
    (out / "report.html").write_text(render_html(s, chart_png(s)))
