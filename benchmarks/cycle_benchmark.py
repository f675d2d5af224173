#!/usr/bin/env python
"""Benchmark one VOLT trading cycle (5 candidates, embedded replay data) without a network.

Usage::

    .venv/bin/python benchmarks/cycle_benchmark.py               # report + one JSON line
    .venv/bin/python benchmarks/cycle_benchmark.py --json        # only the JSON line
    .venv/bin/python benchmarks/cycle_benchmark.py --cycles 20 --answers buy

Two scenarios run on their own fresh temporary VOLT home (``tempfile``), each advancing one
paper portfolio one trading day per cycle through ``graph.run.run_cycle``:

- ``fake_model``: every agent asks a FAKE chat model (no network). By default it echoes
  the ``quantitative_prior`` found in the evidence (always valid); ``--answers buy``
  answers a confident, approved BUY instead, which drives every candidate through risk,
  audit and peer review (the longest path without a correction).
- ``priors_only``: ``models=[]``, no model reachable; agents answer with their priors.

The first cycle of each scenario is a warm-up and is excluded from the medians/p90.

Wall time per cycle is split into (all in-process, measured with ``time.perf_counter``):

- ``data_indicators``: the ``prepare_cycle`` node (universe selection + indicator
  snapshots + ledger/valuation work). The one-time dataset load is reported separately.
- ``agent_nodes``: the LLM agent nodes minus the time inside the fake model's
  ``_generate`` (prompt/evidence/prior building, LangChain invoke machinery, validation).
- ``other_nodes``: every other node (consensus, history_reviewer, peer_review,
  request_correction, finalize, execution_agent, portfolio_manager).
- ``checkpointing``: time inside ``SqliteSaver`` (put, put_writes, and the reads
  get_tuple/list), measured by a subclass swapped in for ``graph.run.SqliteSaver``.
- ``fake_llm``: time inside the fake model's ``_generate``.
- ``graph_overhead``: the rest: total - node work - checkpointing (LangGraph scheduling,
  state channels/reducers, Send fan-out, thread pool, plus ``run_cycle``'s own setup:
  opening the SQLite saver, ``build_graph().compile()``, ``get_state``).

``non_llm`` = total - fake_llm. Instrumentation only patches objects in this process
(``graph.run.SqliteSaver``, ``graph.builder.StateGraph``, two names in
``nodes.prepare_cycle``); no project file is modified. Node branches run in parallel
threads, so per-component sums are thread-summed; with the GIL they are close to
additive, but a small negative/positive skew in ``graph_overhead`` is possible.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import platform
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `python benchmarks/cycle_benchmark.py`
    sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore", category=DeprecationWarning)

_IMPORT_T0 = time.perf_counter()
import numpy as np  # noqa: E402
from langchain_core.language_models import BaseChatModel  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from langchain_core.runnables import Runnable  # noqa: E402
from langgraph.checkpoint.sqlite import SqliteSaver  # noqa: E402
from langgraph.graph import StateGraph  # noqa: E402

import graph.builder  # noqa: E402
import graph.run  # noqa: E402
import nodes.prepare_cycle  # noqa: E402
import tools.market_data  # noqa: E402
from graph.run import run_cycle  # noqa: E402
from graph.settings import VoltSettings  # noqa: E402

IMPORT_S = time.perf_counter() - _IMPORT_T0

TARGET_CALLS_PER_CANDIDATE = 5.0
TARGET_NON_LLM_MS = 150.0
FAKE_SPEC = "bench:fake"
AGENT_PREFIXES = {
    "You are MarketAgent": "market",
    "You are StrategyAgent": "strategy",
    "You are RiskAgent": "risk",
    "You are AuditorAgent": "auditor",
}
LLM_NODES = ("market_agent", "strategy_agent", "risk_agent", "auditor_agent")
COMPONENTS = (  # (key, label) in report order; all in ms per cycle
    ("total", "total cycle wall time"),
    ("data_indicators", "data+indicators (prepare_cycle)"),
    ("select_candidates", "  universe selection"),
    ("indicator_snapshots", "  indicator snapshots"),
    ("agent_nodes", "agent nodes excl. model"),
    ("langchain_invoke", "  of which LangChain invoke wrapper"),
    ("other_nodes", "other nodes"),
    ("checkpointing", "checkpointing (SqliteSaver)"),
    ("ckpt_put", "  put"),
    ("ckpt_put_writes", "  put_writes"),
    ("ckpt_reads", "  get_tuple/list"),
    ("graph_overhead", "graph overhead (residual)"),
    ("fake_llm", "time inside fake LLM"),
    ("non_llm", "NON-LLM WORK (total - fake LLM)"),
    ("cpu", "process CPU time (all threads)"),
)


# --------------------------------------------------------------------------- meter


class Meter:
    """Thread-safe accumulator of seconds and call counts per key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def reset(self) -> None:
        with self._lock:
            self.seconds = defaultdict(float)
            self.counts = defaultdict(int)

    def add(self, key: str, seconds: float, count: int = 1) -> None:
        with self._lock:
            self.seconds[key] += seconds
            self.counts[key] += count

    def snapshot(self) -> tuple[dict[str, float], dict[str, int]]:
        with self._lock:
            return dict(self.seconds), dict(self.counts)


METER = Meter()
_DEPTH = threading.local()  # checkpoint methods may call each other: time the outermost only


def _timed_saver_method(key: str, method: Callable) -> Callable:
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        depth = getattr(_DEPTH, "n", 0)
        _DEPTH.n = depth + 1
        t0 = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            _DEPTH.n = depth
            if depth == 0:
                METER.add(key, time.perf_counter() - t0)

    return wrapper


class TimedSqliteSaver(SqliteSaver):
    """``SqliteSaver`` whose public sync methods add their wall time to ``METER``."""

    put = _timed_saver_method("ckpt:put", SqliteSaver.put)
    put_writes = _timed_saver_method("ckpt:put_writes", SqliteSaver.put_writes)
    get_tuple = _timed_saver_method("ckpt:get_tuple", SqliteSaver.get_tuple)
    list = _timed_saver_method("ckpt:list", SqliteSaver.list)
    setup = _timed_saver_method("ckpt:setup", SqliteSaver.setup)


def _timed_node(name: str, action: Any) -> Callable:
    """Wrap a node callable; ``functools.wraps`` keeps the signature LangGraph inspects."""
    target = action if inspect.isfunction(action) or inspect.ismethod(action) else action.__call__

    @functools.wraps(target)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return target(*args, **kwargs)
        finally:
            METER.add(f"node:{name}", time.perf_counter() - t0)

    return wrapper


class TimedStateGraph(StateGraph):
    """``StateGraph`` that times every plain node (compiled subgraphs are left alone:
    their own nodes are timed, so wrapping them would double count)."""

    def add_node(self, node, action=None, **kwargs):  # type: ignore[override]
        if isinstance(node, str) and action is not None and not isinstance(action, Runnable):
            action = _timed_node(node, action)
        return super().add_node(node, action, **kwargs)


def _timed_function(key: str, fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            METER.add(key, time.perf_counter() - t0)

    return wrapper


def install_instrumentation() -> list[str]:
    """Patch this process's module globals (never files). Returns notes on what was skipped."""
    notes = []
    graph.run.SqliteSaver = TimedSqliteSaver
    graph.builder.StateGraph = TimedStateGraph
    for name, key in (("select_candidates", "prep:select"), ("indicator_snapshot", "prep:indicators")):
        fn = getattr(nodes.prepare_cycle, name, None)
        if callable(fn):
            setattr(nodes.prepare_cycle, name, _timed_function(key, fn))
        else:
            notes.append(f"nodes.prepare_cycle.{name} not found: sub-split unavailable")
    return notes


# --------------------------------------------------------------------------- fake model


def _agent_of(messages: list[BaseMessage]) -> str:
    system = str(messages[0].content)
    for prefix, agent in AGENT_PREFIXES.items():
        if system.startswith(prefix):
            return agent
    raise ValueError(f"unknown agent prompt: {system[:60]!r}")


def _buy_answer(agent: str, evidence: dict) -> dict:
    """A confident, approved BUY (drives the full candidate path)."""
    symbol = evidence["symbol"]
    ind = evidence.get("indicators") or {}
    close = float(ind.get("close") or (evidence.get("quantitative_prior") or {}).get("entry") or 100.0)
    if agent == "market":
        low, high = float(ind.get("low20", close * 0.9)), float(ind.get("high20", close * 1.1))
        return {"symbol": symbol, "direction": "BULLISH", "strength": 0.8, "support": min(low, high),
                "resistance": max(low, high), "volume_pattern": "NORMAL", "rationale": "bench"}
    if agent == "strategy":
        return {"symbol": symbol, "action": "BUY", "confidence": 0.9, "entry": close, "exit": close * 1.1,
                "stop_loss": close * 0.95, "size_pct": 0.1, "rationale": "bench"}
    if agent == "risk":
        return {"symbol": symbol, "verdict": "APPROVED", "risk_score": 0.2, "max_position_pct": None,
                "reasons": ["ok"]}
    return {"symbol": symbol, "verdict": "APPROVED", "objections": []}


class BenchChatModel(BaseChatModel):
    """Offline chat model: answers each agent from its evidence, timing every call.

    ``format`` mirrors ``ChatOllama.format`` so ``call_structured`` takes the same
    ``model.bind(format=<json schema>)`` path as production.
    """

    answers: str = "prior"  # "prior" (echo quantitative_prior) or "buy"
    format: Any = None
    model_name: str = "bench-fake"

    @property
    def _llm_type(self) -> str:
        return "volt-bench-fake"

    def bind_tools(self, tools, **kwargs):
        return self

    def invoke(self, input, config=None, *, stop=None, **kwargs):
        t0 = time.perf_counter()
        try:
            return super().invoke(input, config, stop=stop, **kwargs)
        finally:
            METER.add("llm:invoke", time.perf_counter() - t0)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            agent = _agent_of(messages)
            evidence = json.loads(str(messages[1].content).split("\n", 1)[1])
            body = evidence["quantitative_prior"] if self.answers == "prior" else _buy_answer(agent, evidence)
            message = AIMessage(content=json.dumps(body))
            return ChatResult(generations=[ChatGeneration(message=message)])
        finally:
            METER.add("llm:generate", time.perf_counter() - t0)
            METER.add("llm:generate_cpu", time.thread_time() - c0)


def make_factory(answers: str) -> Callable[[str], BaseChatModel]:
    """One model instance per spec, like production's ``lru_cache``-d ``_cached_model``."""
    models: dict[str, BenchChatModel] = {}
    lock = threading.Lock()

    def factory(spec: str) -> BaseChatModel:
        with lock:
            if spec not in models:
                models[spec] = BenchChatModel(answers=answers)
            return models[spec]

    return factory


# --------------------------------------------------------------------------- running


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def cycle_row(state: dict, wall_s: float, cpu_s: float) -> dict[str, Any]:
    sec, cnt = METER.snapshot()
    nodes_s = {k[5:]: v for k, v in sec.items() if k.startswith("node:")}
    llm_s = sec.get("llm:generate", 0.0)
    ckpt_put, ckpt_pw = sec.get("ckpt:put", 0.0), sec.get("ckpt:put_writes", 0.0)
    ckpt_reads = sec.get("ckpt:get_tuple", 0.0) + sec.get("ckpt:list", 0.0) + sec.get("ckpt:setup", 0.0)
    ckpt = ckpt_put + ckpt_pw + ckpt_reads
    prep = nodes_s.get("prepare_cycle", 0.0)
    agent = sum(v for k, v in nodes_s.items() if k in LLM_NODES)
    other = sum(v for k, v in nodes_s.items() if k not in LLM_NODES and k != "prepare_cycle")
    node_total = prep + agent + other  # agent includes the time inside the model
    candidates = list(state.get("candidates") or [])
    decisions = list(state.get("decisions") or [])
    calls = [int(d.get("llm_calls", 0)) for d in decisions]
    n = max(len(candidates), 1)
    return {
        "as_of": state.get("as_of"),
        "candidates": len(candidates),
        "decisions": len(decisions),
        "outcomes": dict(Counter(d.get("outcome") for d in decisions)),
        "errors": len(state.get("errors") or []),
        "llm_calls": sum(calls),
        "llm_calls_model_side": cnt.get("llm:generate", 0),
        "llm_calls_per_candidate": sum(calls) / n,
        "max_llm_calls_per_candidate": max(calls, default=0),
        "ckpt_put_calls": cnt.get("ckpt:put", 0),
        "ckpt_put_writes_calls": cnt.get("ckpt:put_writes", 0),
        "node_ms": {k: round(_ms(v), 3) for k, v in sorted(nodes_s.items())},
        "ms": {
            "total": _ms(wall_s),
            "data_indicators": _ms(prep),
            "select_candidates": _ms(sec.get("prep:select", 0.0)),
            "indicator_snapshots": _ms(sec.get("prep:indicators", 0.0)),
            "agent_nodes": _ms(agent - llm_s),
            "langchain_invoke": _ms(sec.get("llm:invoke", 0.0) - llm_s),
            "other_nodes": _ms(other),
            "checkpointing": _ms(ckpt),
            "ckpt_put": _ms(ckpt_put),
            "ckpt_put_writes": _ms(ckpt_pw),
            "ckpt_reads": _ms(ckpt_reads),
            "graph_overhead": _ms(wall_s - node_total - ckpt),
            "fake_llm": _ms(llm_s),
            "fake_llm_cpu": _ms(sec.get("llm:generate_cpu", 0.0)),
            "non_llm": _ms(wall_s - llm_s),
            "cpu": _ms(cpu_s),
        },
    }


def run_scenario(name: str, cycles: int, top_k: int, factory: Callable | None, models: list[str]) -> dict:
    rows = []
    with tempfile.TemporaryDirectory(prefix=f"volt-bench-{name}-") as tmp:
        settings = VoltSettings(
            home=Path(tmp), portfolio="bench", top_k=top_k, models=models,
            data_csv=None, watchlist=[],  # explicit: no VOLT_* environment leaks in
        )
        for _ in range(cycles):
            METER.reset()
            c0, t0 = time.process_time(), time.perf_counter()
            result = run_cycle(settings, chat_model_factory=factory)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            rows.append(cycle_row(result.state, wall, cpu))
    return summarize(name, rows)


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": float("nan"), "p90": float("nan")}
    arr = np.asarray(values, dtype=float)
    return {"median": round(float(np.median(arr)), 3), "p90": round(float(np.percentile(arr, 90)), 3)}


def summarize(name: str, rows: list[dict]) -> dict:
    measured = rows[1:] if len(rows) > 1 else rows
    keys = [k for k, _ in COMPONENTS] + ["fake_llm_cpu"]
    ms = {k: _stats([r["ms"][k] for r in measured]) for k in keys}
    total_calls = sum(r["llm_calls"] for r in measured)
    total_cands = sum(r["candidates"] for r in measured)
    per_cand = total_calls / total_cands if total_cands else 0.0
    max_per_cand = max((r["max_llm_calls_per_candidate"] for r in measured), default=0)
    non_llm = ms["non_llm"]["median"]
    outcomes: Counter = Counter()
    for r in measured:
        outcomes.update(r["outcomes"])
    return {
        "scenario": name,
        "cycles": len(rows),
        "measured_cycles": len(measured),
        "warmup_ms": round(rows[0]["ms"]["total"], 3),
        "days": [rows[0]["as_of"], rows[-1]["as_of"]],
        "candidates_per_cycle": _stats([r["candidates"] for r in measured]),
        "ms": ms,
        "llm_calls": {
            "total": total_calls,
            "per_candidate": round(per_cand, 3),
            "max_per_candidate": max_per_cand,
            "per_cycle": _stats([r["llm_calls"] for r in measured]),
            "model_side_total": sum(r["llm_calls_model_side"] for r in measured),
        },
        "checkpoint_calls_per_cycle": {
            "put": _stats([r["ckpt_put_calls"] for r in measured])["median"],
            "put_writes": _stats([r["ckpt_put_writes_calls"] for r in measured])["median"],
        },
        "node_ms_median": {
            k: round(float(np.median([r["node_ms"].get(k, 0.0) for r in measured])), 3)
            for k in sorted({k for r in measured for k in r["node_ms"]})
        },
        "outcomes": dict(outcomes),
        "errors": sum(r["errors"] for r in measured),
        "targets": {
            "llm_calls_per_candidate": {"target": f"<= {TARGET_CALLS_PER_CANDIDATE:g}",
                                        "value": round(per_cand, 3), "max": max_per_cand,
                                        "pass": per_cand <= TARGET_CALLS_PER_CANDIDATE
                                        and max_per_cand <= TARGET_CALLS_PER_CANDIDATE},
            "non_llm_ms": {"target": f"< {TARGET_NON_LLM_MS:g}", "median": non_llm,
                           "p90": ms["non_llm"]["p90"], "pass": non_llm < TARGET_NON_LLM_MS},
        },
    }


def measure_dataset_load() -> float:
    cached = getattr(tools.market_data, "_load_cached", None)
    if cached is not None and hasattr(cached, "cache_clear"):
        cached.cache_clear()
    t0 = time.perf_counter()
    tools.market_data.load_dataset(None)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- report


def _ok(flag: bool) -> str:
    return "PASS" if flag else "FAIL"


def render_text(report: dict) -> str:
    lines = [
        f"VOLT cycle benchmark: top_k={report['top_k']}, {report['cycles']} cycles per scenario "
        f"(first = warm-up, excluded), fake answers={report['answers']!r}",
        f"machine: {report['machine']['cpus']} CPUs, Python {report['machine']['python']}, "
        f"{report['machine']['platform']}",
        f"one-time: imports {report['one_time_ms']['imports']:.0f} ms, "
        f"dataset load {report['one_time_ms']['dataset_load']:.0f} ms (embedded replay data)",
    ]
    for s in report["scenarios"].values():
        lines += ["", f"== {s['scenario']}  days {s['days'][0]}..{s['days'][1]}, "
                      f"candidates/cycle median {s['candidates_per_cycle']['median']:g}, "
                      f"warm-up cycle {s['warmup_ms']:.1f} ms",
                  f"   {'component (ms per cycle)':<38}{'median':>10}{'p90':>10}{'% non-LLM':>11}"]
        non_llm = s["ms"]["non_llm"]["median"] or float("nan")
        for key, label in COMPONENTS:
            st = s["ms"][key]
            share = "" if key in ("total", "non_llm", "cpu", "fake_llm") else f"{100 * st['median'] / non_llm:10.1f}%"
            lines.append(f"   {label:<38}{st['median']:>10.2f}{st['p90']:>10.2f}{share:>11}")
        c = s["llm_calls"]
        t = s["targets"]
        lines += [
            f"   LLM calls: {c['total']} over {s['measured_cycles']} cycles "
            f"(model saw {c['model_side_total']}); per cycle median {c['per_cycle']['median']:g}",
            f"   LLM calls per candidate: {c['per_candidate']:.2f} (max {c['max_per_candidate']})"
            f"   target {t['llm_calls_per_candidate']['target']}  "
            f"{_ok(t['llm_calls_per_candidate']['pass'])}",
            f"   non-LLM work per cycle: median {t['non_llm_ms']['median']:.1f} ms, "
            f"p90 {t['non_llm_ms']['p90']:.1f} ms   target {t['non_llm_ms']['target']} ms on a 2-core "
            f"machine  {_ok(t['non_llm_ms']['pass'])}",
            f"   checkpoint calls per cycle: put {s['checkpoint_calls_per_cycle']['put']:g}, "
            f"put_writes {s['checkpoint_calls_per_cycle']['put_writes']:g}; "
            f"outcomes {s['outcomes']}; errors {s['errors']}",
            "   node medians (ms, incl. model time): "
            + ", ".join(f"{k} {v:.2f}" for k, v in s["node_ms_median"].items()),
        ]
    if report["notes"]:
        lines += ["", *(f"note: {n}" for n in report["notes"])]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=10, metavar="N",
                   help="cycles per scenario, the first is a warm-up (default: 10)")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="candidates per cycle (default: 5)")
    p.add_argument("--answers", choices=("prior", "buy"), default="prior",
                   help="fake model answers: echo the quantitative prior (default) or an approved BUY")
    p.add_argument("--scenario", choices=("both", "fake_model", "priors_only"), default="both")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cycles < 2:
        print("error: --cycles must be >= 2 (the first cycle is a warm-up)", file=sys.stderr)
        return 2
    notes = install_instrumentation()
    dataset_s = measure_dataset_load()
    scenarios = {}
    if args.scenario in ("both", "fake_model"):
        scenarios["fake_model"] = run_scenario(
            "fake_model", args.cycles, args.top_k, make_factory(args.answers), [FAKE_SPEC])
    if args.scenario in ("both", "priors_only"):
        scenarios["priors_only"] = run_scenario("priors_only", args.cycles, args.top_k, None, [])
    report = {
        "benchmark": "volt_cycle",
        "top_k": args.top_k,
        "cycles": args.cycles,
        "warmup_cycles": 1,
        "answers": args.answers,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(terse=True)},
        "one_time_ms": {"imports": round(_ms(IMPORT_S), 1), "dataset_load": round(_ms(dataset_s), 1)},
        "targets": {"llm_calls_per_candidate_max": TARGET_CALLS_PER_CANDIDATE,
                    "non_llm_ms_per_cycle": TARGET_NON_LLM_MS},
        "scenarios": scenarios,
        "notes": notes,
    }
    if not args.json:
        print(render_text(report))
        print()
    print(json.dumps(report, separators=(",", ":"), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
