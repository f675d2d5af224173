"""``python -m graph.positions``: each position's timeline, from the ledger.

For every plan (open and closed, oldest first): the entry (day, price, stop, target,
horizon, thesis), every review and tightening, the exit (day, kind: stop, trailing,
target, time, exit_review, reduce_review, dust, reconciled) and the time in trade against
the horizon, in trading days of the data set. ``--symbol`` narrows it to one symbol,
``--json`` prints the same as one JSON document. Exit 2 with one line on bad input or a
home without a ledger.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from graph.errors import OperationalError
from graph.settings import VoltSettings, existing_home_settings
from memory.ledger import Ledger
from tools.data_source import market_dataset
from tools.trading.plans import days_between


def positions_report(settings: VoltSettings, symbol: str | None = None) -> dict:
    """Plans with their events, days in trade, and a summary (exits by kind, holding)."""
    ledger = Ledger(settings.ledger_path)
    plans = ledger.timeline(settings.portfolio, symbol)
    last = ledger.last_completed_cycle(settings.portfolio)
    calendar = None
    if any(p["status"] == "open" for p in plans):
        try:
            calendar = market_dataset(settings).calendar
        except Exception:  # the timeline does not need the data; only an open trade's age does
            calendar = None
    for p in plans:
        exit_event = next((e for e in p["events"] if e["kind"] == "exit"), None)
        if exit_event is not None and exit_event["detail"].get("days_in_trade") is not None:
            p["days_in_trade"] = exit_event["detail"]["days_in_trade"]
        elif calendar is not None and last is not None:
            p["days_in_trade"] = days_between(calendar, p["opened"], p["closed"] or last["as_of"])
        else:
            p["days_in_trade"] = None
        p["horizon_days"] = p["plan"].get("horizon_days")
    held = [p["days_in_trade"] for p in plans if p["status"] == "closed" and p["days_in_trade"] is not None]
    summary = {"plans": len(plans), "open": sum(p["status"] == "open" for p in plans),
               "exits_by_kind": dict(Counter(p["exit_kind"] for p in plans if p["status"] == "closed")),
               "mean_days_in_trade": round(sum(held) / len(held), 2) if held else None,
               "max_days_in_trade": max(held) if held else None}
    return {"portfolio": settings.portfolio, "summary": summary, "positions": plans}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def render(report: dict) -> str:
    s = report["summary"]
    lines = [f"positions of portfolio {report['portfolio']}: {s['plans']} plan(s), {s['open']} open"]
    if s["exits_by_kind"]:
        lines.append("exits by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(s["exits_by_kind"].items()))
                     + f"; days in trade mean {s['mean_days_in_trade']}, max {s['max_days_in_trade']}")
    for p in report["positions"]:
        plan = p["plan"]
        side = "long" if plan.get("direction", 1) > 0 else "short"
        state = f"closed {p['closed']} by {p['exit_kind']}" if p["status"] == "closed" else "open"
        lines.append("")
        lines.append(f"{p['symbol']} {side}, opened {p['opened']}, {state}; day {p['days_in_trade']}"
                     f"/{p['horizon_days'] or '-'}")
        for e in p["events"]:
            d = e["detail"]
            if e["kind"] == "entry":
                entry = d.get("plan") or {}
                thesis = ", ".join(f"{a.replace('_agent', '')} {c}" for a, c in (entry.get("thesis") or {}).items())
                text = (f"entry at {_fmt(entry.get('entry'))}, stop {_fmt(entry.get('stop'))}, target "
                        f"{_fmt(entry.get('target'))}, horizon {entry.get('horizon_days')} days"
                        + (f"; thesis: {thesis}" if thesis else ""))
            elif e["kind"] == "review":
                text = f"review {d.get('verdict')}: {(d.get('reasons') or [''])[0]}"
            elif e["kind"] == "exit":
                pnl = d.get("realized_pnl")
                text = (f"exit {d.get('kind')} at {_fmt(d.get('price'))}"
                        + (f" ({d['reason']})" if d.get("reason") else "")
                        + (f", realized {pnl:+.2f}" if isinstance(pnl, int | float) else ""))
            else:
                text = f"{e['kind']}: " + (d.get("note") or json.dumps(d, default=str)[:120])
            lines.append(f"  {e['as_of']}  {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graph.positions",
                                     description="Each position's timeline: entry, plan, reviews, exit.")
    parser.add_argument("--portfolio", metavar="NAME")
    parser.add_argument("--home", metavar="DIR")
    parser.add_argument("--data-csv", metavar="PATH")
    parser.add_argument("--symbol", metavar="SYM")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        settings = existing_home_settings(portfolio=args.portfolio, home=args.home, data_csv=args.data_csv)
        report = positions_report(settings, args.symbol.upper() if args.symbol else None)
    except OperationalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, default=str) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
