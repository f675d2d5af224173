"""The operations part of the cycle report: the short model line, history notes, error counts
per category, open breakers and the alerts raised during the cycle.

Reads ``$VOLT_HOME/ops.db`` only when it exists (a report never creates it), and a failure
to read it is a line in the report, not a failed cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tools.error_handler import counts_by_category, dedupe

MAX_SHOWN = 6


def model_line(models: dict[str, Any]) -> str:
    """One short line for the model chain, e.g. ``models: llamacpp:smollm2 (Ollama unreachable)``;
    the full status is ``models["note"]`` (``--verbose``)."""
    usable, missing = list(models.get("usable") or []), list(models.get("missing") or [])
    blocked = list(models.get("breaker_open") or [])
    note = str(models.get("note") or "")
    if not usable and not missing:
        return "models: none configured (quantitative priors)" if "no models configured" in note \
            else "models: none (quantitative priors)"
    why = []
    if models.get("reachable") is False:
        why.append("Ollama unreachable")
    if blocked:
        why.append(f"breaker open: {_short(blocked)}")
    others = [m for m in missing if m not in blocked]
    if others and models.get("reachable") is not False:
        why.append(f"unavailable: {_short(others)}")
    head = f"models: {_short(usable)}" if usable else "models: none usable, quantitative priors"
    if models.get("host") == "injected":
        why.append("supplied by the caller")
    return head + (f" ({'; '.join(why)})" if why else "")


def _short(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" +{len(items) - n}" if len(items) > n else "")


def _ops_rows(home: Path, alerts_since: float | None) -> tuple[list[dict], list[dict], str | None]:
    from memory.alerts import list_alerts  # deferred: storage below the report
    from memory.breakers import open_breakers
    from memory.ops_db import ops_path

    if not ops_path(home).exists():
        return [], [], None
    try:
        breakers = [{k: b[k] for k in ("name", "state", "failures", "opened_at", "last_error")}
                    for b in open_breakers(home)]
        alerts = [] if alerts_since is None else [
            {k: a[k] for k in ("id", "created_at", "kind", "message")}
            for a in list_alerts(home, limit=50) if a["created_at"] >= alerts_since]
    except Exception as exc:  # a damaged ops.db must not fail the cycle's report
        return [], [], f"ops.db unreadable ({type(exc).__name__})"
    return breakers, list(reversed(alerts)), None


def operations_fields(state: dict, *, home: Path | None, verbose: bool,
                      alerts_since: float | None) -> dict[str, Any]:
    """The report's operations fields (see ``graph.report.CycleReport``)."""
    models = state.get("model_status") or {}
    breakers, alerts, problem = _ops_rows(Path(home), alerts_since) if home is not None else ([], [], None)
    if problem:
        alerts = [{"id": None, "created_at": None, "kind": "report", "message": problem}]
    return {
        "short_history": [n["symbol"] for n in state.get("data_notes") or []],
        "error_counts": {k: v for k, v in counts_by_category(
            [*state.get("errors", []), *state.get("data_errors", [])]).items() if v},
        "breakers": breakers,
        "alerts": alerts,
        "model_line": (models.get("note") or model_line(models)) if verbose else model_line(models),
    }


def operations_lines(report: Any) -> list[str]:
    """Text lines: the history note, errors per category (identical ones counted once),
    breakers open, alerts raised this cycle."""
    lines = []
    if report.short_history:
        lines.append(f"note: {len(report.short_history)} symbol(s) with too little history yet, not "
                     f"considered: {_short(report.short_history, MAX_SHOWN)}")
    if report.errors:
        distinct = dedupe(report.errors)
        repeated = sum(e["count"] for e in distinct) - len(distinct)
        counts = ", ".join(f"{k} {v}" for k, v in report.error_counts.items())
        lines.append(f"errors: {counts}" + (f" ({repeated} repeats merged)" if repeated else ""))
    if report.breakers:
        lines.append("breakers: open: " + ", ".join(
            f"{b['name']} ({b['failures']} failures)" if b["state"] == "open" else f"{b['name']} ({b['state']})"
            for b in report.breakers[:MAX_SHOWN]))
    for alert in report.alerts[:MAX_SHOWN]:
        lines.append(f"alert: {alert['kind']}: {alert['message']}")
    return lines
