"""The cycle report's positions section: each held position's plan and time in trade, the
broker's exits this cycle by kind, and the protections in force (halt, breakers)."""

from __future__ import annotations

from collections import Counter
from typing import Any


def positions_fields(state: dict) -> dict[str, Any]:
    """``positions`` for :class:`graph.report.CycleReport` (also in ``--json``)."""
    exits = list(state.get("exits") or [])
    closes = [o for o in state.get("orders") or []
              if o.get("status") == "FILLED" and o.get("kind") not in (None, "entry")]
    protections = state.get("protections") or {}
    return {"positions": {
        "plans": state.get("plans") or {},
        "exits": exits,
        "exits_by_kind": dict(Counter(o["kind"] for o in closes)),
        "protections": {"blocks_orders": protections.get("blocks_orders"),
                        "blocks_buys": protections.get("blocks_buys"),
                        "active": protections.get("active") or [],
                        "peak_equity": protections.get("peak_equity"),
                        "items": protections.get("items") or []},
    }}


def _level(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def positions_lines(report) -> list[str]:
    """Text lines: plans of the positions held at the start, exits, protections."""
    info = getattr(report, "positions", None) or {}
    lines: list[str] = []
    for symbol, p in sorted((info.get("plans") or {}).items()):
        trail = f"  trailing {p['trailing_pct']:.0%}" if p.get("trailing_pct") else ""
        lines.append(f"  plan {symbol:<6} entry {_level(p.get('entry'))}  stop {_level(p.get('stop'))}"
                     f"  target {_level(p.get('target'))}{trail}  day {p.get('days_in_trade')}"
                     f"/{p.get('horizon_days') or '-'} (opened {p.get('opened')})")
    for e in info.get("exits") or []:
        lines.append(f"  exit {e['symbol']:<6} {e['kind']} at {e['price']:.4f} after {e['days_in_trade']}"
                     f"/{e.get('horizon_days') or '-'} days ({e['reason']}), realized {e['realized_pnl']:+.2f}")
    if info.get("exits_by_kind"):
        lines.append("  exits by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(info["exits_by_kind"].items())))
    prot = info.get("protections") or {}
    blocked = prot.get("blocks_orders") or prot.get("blocks_buys")
    if blocked:
        lines.append(f"  protections: {blocked}")
    if lines:
        lines.insert(0, "positions (plans enforced by the broker):")
    elif prot:
        lines.append("protections: none active")
    return lines
