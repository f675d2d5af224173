#!/usr/bin/env python
"""Benchmark one VOLT trading cycle (top_k=5, embedded replay data), offline.

Usage::

    .venv/bin/python benchmarks/cycle_benchmark.py                 # report + one JSON line
    .venv/bin/python benchmarks/cycle_benchmark.py --json          # only the JSON line
    .venv/bin/python benchmarks/cycle_benchmark.py --cycles 20 --answers buy --fresh-portfolios

Two scenarios, each on its own fresh temporary VOLT home (``tempfile``), each driving
``graph.run.run_cycle`` once per cycle (one trading day per call):

- ``fake_model``: every LLM agent asks a FAKE chat model (no network). It echoes the
  ``quantitative_prior`` from the evidence (always valid), or with ``--answers buy``
  answers a confident, approved BUY, which sends every candidate through risk, audit and
  peer review.
- ``priors_only``: ``models=[]``, no model reachable: the agents answer with their priors.

By default one portfolio advances day by day, so symbols it holds are analysed on top of
the ``top_k`` candidates; ``--fresh-portfolios`` uses a new portfolio per cycle (pinned to
successive days) so every cycle has exactly ``top_k`` candidates. The first cycle of a
scenario is a warm-up, excluded from the medians and p90.

How the cycle's wall time is split (additive, sums to the total exactly)
-----------------------------------------------------------------------
Candidates run in parallel threads, so per-thread *wall* times overlap (and include
waiting on the GIL and on SqliteSaver's single lock); summing them over threads gives more
than the cycle's wall time. The split therefore uses per-thread CPU time
(``time.thread_time``) spent inside each instrumented region, exclusive of nested regions:

- ``data+indicators``: the ``prepare_cycle`` node (universe selection + indicator
  snapshots, plus its ledger/valuation work). The one-time dataset load is separate.
- ``agent nodes excl. model``: the four LLM agent nodes minus the fake model's
  ``_generate`` (prompt, evidence, prior, LangChain invoke wrapper, validation).
- ``other nodes``: consensus, history_reviewer, peer_review, request_correction,
  finalize, execution_agent, portfolio_manager.
- ``checkpointing``: inside ``SqliteSaver`` (put, put_writes, get_tuple, list), via a
  subclass swapped in for ``graph.run.SqliteSaver``.
- ``fake LLM``: inside the fake model's ``_generate``.
- ``graph overhead``: process CPU time minus all of the above: LangGraph/LangChain work
  outside node bodies (scheduling, channels and reducers, ``Send`` fan-out, subgraph loops
  including the ``analyze_candidate`` node that runs them, thread pool) and ``run_cycle``'s own setup (``build_graph().compile()``, ``get_state``).
- ``off-CPU``: wall minus process CPU time: waiting on I/O (SQLite fsync on commit, in the
  checkpointer and the ledger) or idle; negative when threads overlapped on 2+ cores.

``non-LLM work`` = cycle wall time - wall time inside the fake model's ``_generate``
(summed over threads). Instrumentation patches objects in this process only
(``graph.run.SqliteSaver``, ``graph.run.build_graph``, ``graph.builder.StateGraph``, two
names in ``nodes.prepare_cycle``); no project file is touched.
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

TARGET_CALLS_PER_CANDIDATE = 5
TARGET_NON_LLM_MS = 150.0
FAKE_SPEC = "bench:fake"
AGENT_PREFIXES = {
    "You are MarketAgent": "market",
    "You are StrategyAgent": "strategy",
    "You are RiskAgent": "risk",
    "You are AuditorAgent": "auditor",
    "You are MacroAgent": "macro",
    "You are SentimentAgent": "sentiment",
    "You are ForexAgent": "forex",
    "You are LearningAgent": "learning",
}
LLM_NODES = frozenset({"market_agent", "strategy_agent", "risk_agent", "auditor_agent", "macro_agent",
                       "sentiment_agent", "forex_agent"})
BUY_ANSWERED = frozenset({"market", "strategy", "risk", "auditor"})
# (key, label, counts toward the additive split): ms per cycle, in report order
COMPONENTS = (
    ("total", "TOTAL cycle wall time", False),
    ("data_indicators", "data+indicators (prepare_cycle)", True),
    ("select_candidates", "  universe selection", False),
    ("indicator_snapshots", "  indicator snapshots", False),
    ("agent_nodes", "agent nodes excl. model", True),
    ("langchain_invoke", "  LangChain invoke wrapper", False),
    ("other_nodes", "other nodes", True),
    ("checkpointing", "checkpointing (SqliteSaver)", True),
    ("ckpt_put", "  put", False),
    ("ckpt_put_writes", "  put_writes", False),
    ("ckpt_reads", "  get_tuple/list/setup", False),
    ("graph_overhead", "graph overhead (residual CPU)", True),
    ("graph_build", "  build_graph()+compile()", False),
    ("off_cpu", "off-CPU (I/O wait, idle; - = parallel)", True),
    ("fake_llm", "fake LLM (_generate CPU)", True),
    ("non_llm", "NON-LLM WORK (total - fake LLM wall)", False),
)
WALL_KEYS = ("checkpointing", "agent_nodes", "fake_llm")  # thread-summed wall, for reference


# --------------------------------------------------------------------------- meter


class Meter:
    """Thread-safe exclusive CPU/wall time per region key (nested regions are subtracted
    from their parent, per thread), plus per key group (``ckpt``, ``node``, ...) the wall
    time during which at least one thread was inside such a region (``busy``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.cpu: dict[str, float] = defaultdict(float)
            self.wall: dict[str, float] = defaultdict(float)
            self.counts: dict[str, int] = defaultdict(int)
            self.busy: dict[str, float] = defaultdict(float)  # union of wall intervals per group
            self._active: dict[str, int] = defaultdict(int)
            self._since: dict[str, float] = {}

    def _enter_busy(self, group: str) -> None:
        with self._lock:
            if self._active[group] == 0:
                self._since[group] = time.perf_counter()
            self._active[group] += 1

    def _leave_busy(self, group: str) -> None:
        with self._lock:
            self._active[group] -= 1
            if self._active[group] == 0:
                self.busy[group] += time.perf_counter() - self._since.pop(group)

    def call(self, key: str, fn: Callable, *args, **kwargs):
        stack = self._local.__dict__.setdefault("stack", [])
        group = key.split(":", 1)[0]
        outermost = not any(f[4] == group for f in stack)
        frame = [time.thread_time(), time.perf_counter(), 0.0, 0.0, group]  # cpu0, wall0, child cpu/wall
        stack.append(frame)
        if outermost:
            self._enter_busy(group)
        try:
            return fn(*args, **kwargs)
        finally:
            cpu, wall = time.thread_time() - frame[0], time.perf_counter() - frame[1]
            stack.pop()
            if outermost:
                self._leave_busy(group)
            if stack:
                stack[-1][2] += cpu
                stack[-1][3] += wall
            with self._lock:
                self.cpu[key] += cpu - frame[2]
                self.wall[key] += wall - frame[3]
                self.counts[key] += 1

    def snapshot(self) -> tuple[dict[str, float], dict[str, float], dict[str, int], dict[str, float]]:
        with self._lock:
            return dict(self.cpu), dict(self.wall), dict(self.counts), dict(self.busy)


METER = Meter()


def timed(key: str, fn: Callable) -> Callable:
    """``fn`` measured under ``key``; ``functools.wraps`` keeps the signature LangGraph reads."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return METER.call(key, fn, *args, **kwargs)

    return wrapper


def _saver_method(key: str, method: Callable) -> Callable:
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return METER.call(key, method, self, *args, **kwargs)

    return wrapper


class TimedSqliteSaver(SqliteSaver):
    """``SqliteSaver`` whose sync methods are measured (write path and read path)."""

    put = _saver_method("ckpt:put", SqliteSaver.put)
    put_writes = _saver_method("ckpt:put_writes", SqliteSaver.put_writes)
    get_tuple = _saver_method("ckpt:get_tuple", SqliteSaver.get_tuple)
    list = _saver_method("ckpt:list", SqliteSaver.list)
    setup = _saver_method("ckpt:setup", SqliteSaver.setup)


class TimedStateGraph(StateGraph):
    """``StateGraph`` that measures every plain node and ``compile()``. Compiled subgraphs
    are not wrapped: their own nodes are measured, wrapping them would double count."""

    def add_node(self, node, action=None, **kwargs):  # type: ignore[override]
        if isinstance(node, str) and action is not None and not isinstance(action, Runnable):
            target = action if inspect.isfunction(action) or inspect.ismethod(action) else action.__call__
            action = timed(f"node:{node}", target)
        return super().add_node(node, action, **kwargs)

    def compile(self, *args, **kwargs):  # type: ignore[override]
        return METER.call("graph:build", super().compile, *args, **kwargs)


def install_instrumentation() -> list[str]:
    """Patch module globals of this process (never files). Returns what could not be patched."""
    notes = []
    graph.run.SqliteSaver = TimedSqliteSaver
    graph.builder.StateGraph = TimedStateGraph
    # The runner compiles the graph once per process (at import); recompile it here with
    # timed nodes. That one-time compile is outside every measured cycle.
    graph.run.cycle_graph = graph.builder.build_graph(checkpoint_candidates=False).compile(name="volt")
    for name, key in (("select_candidates", "prep:select"), ("indicator_snapshot", "prep:indicators")):
        fn = getattr(nodes.prepare_cycle, name, None)
        if callable(fn):
            setattr(nodes.prepare_cycle, name, timed(key, fn))
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
    """A confident, approved BUY (drives the whole candidate path)."""
    symbol = evidence["symbol"]
    ind = evidence.get("indicators") or {}
    close = float(ind.get("close") or 100.0)
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
    """Offline chat model answering each agent from its evidence; every call is measured.

    ``format`` mirrors ``ChatOllama.format`` so ``call_structured`` takes the production
    path (``model.bind(format=<JSON schema>)``). Thread-safe: no mutable state of its own,
    the shared ``METER`` locks.
    """

    answers: str = "prior"  # "prior": echo evidence["quantitative_prior"]; "buy": approved BUY
    format: Any = None
    model_name: str = "bench-fake"

    @property
    def _llm_type(self) -> str:
        return "volt-bench-fake"

    def bind_tools(self, tools, **kwargs):
        return self

    def invoke(self, input, config=None, *, stop=None, **kwargs):
        return METER.call("llm:invoke", super().invoke, input, config, stop=stop, **kwargs)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return METER.call("llm:generate", self._answer, messages)

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        agent = _agent_of(messages)
        evidence = json.loads(str(messages[1].content).split("\n", 1)[1])
        buy = self.answers == "buy" and agent in BUY_ANSWERED
        body = _buy_answer(agent, evidence) if buy else evidence["quantitative_prior"]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=json.dumps(body)))])


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
    return round(seconds * 1000.0, 3)


def cycle_row(state: dict, wall_s: float, cpu_s: float) -> dict[str, Any]:
    cpu, wall, cnt, busy = METER.snapshot()

    def group(source: dict[str, float], pred: Callable[[str], bool]) -> float:
        return sum(v for k, v in source.items() if pred(k))

    def is_agent(k: str) -> bool:
        return k.startswith("node:") and k[5:] in LLM_NODES

    def is_other(k: str) -> bool:
        # analyze_candidate's own time (nested nodes excluded) is the candidate subgraph's
        # scheduling: graph overhead, as it was when the subgraph was a node by itself
        return (k.startswith("node:") and k[5:] not in LLM_NODES
                and k not in ("node:prepare_cycle", "node:analyze_candidate"))

    prep = group(cpu, lambda k: k == "node:prepare_cycle" or k.startswith("prep:"))
    agent = group(cpu, is_agent) + cpu.get("llm:invoke", 0.0)
    other = group(cpu, is_other)
    ckpt = group(cpu, lambda k: k.startswith("ckpt:"))
    llm_cpu = cpu.get("llm:generate", 0.0)
    graph_cpu = cpu_s - prep - agent - other - ckpt - llm_cpu
    llm_wall = wall.get("llm:generate", 0.0)
    candidates = list(state.get("candidates") or [])
    decisions = list(state.get("decisions") or [])
    calls = [int(d.get("llm_calls", 0)) for d in decisions]
    node_cpu = defaultdict(float)  # inclusive of nested regions, per node
    for k, v in cpu.items():
        if k.startswith("node:"):
            node_cpu[k[5:]] += v
    node_cpu["prepare_cycle"] += group(cpu, lambda k: k.startswith("prep:"))
    return {
        "as_of": state.get("as_of"),
        "candidates": len(candidates),
        "decisions": len(decisions),
        "outcomes": dict(Counter(d.get("outcome") for d in decisions)),
        "errors": len(state.get("errors") or []),
        "llm_calls": sum(calls),
        "llm_calls_model_side": cnt.get("llm:generate", 0),
        "max_llm_calls_per_candidate": max(calls, default=0),
        "ckpt_put_calls": cnt.get("ckpt:put", 0),
        "ckpt_put_writes_calls": cnt.get("ckpt:put_writes", 0),
        "node_cpu_ms": {k: _ms(v) for k, v in sorted(node_cpu.items())},
        "ms": {
            "total": _ms(wall_s),
            "data_indicators": _ms(prep),
            "select_candidates": _ms(cpu.get("prep:select", 0.0)),
            "indicator_snapshots": _ms(cpu.get("prep:indicators", 0.0)),
            "agent_nodes": _ms(agent),
            "langchain_invoke": _ms(cpu.get("llm:invoke", 0.0)),
            "other_nodes": _ms(other),
            "checkpointing": _ms(ckpt),
            "ckpt_put": _ms(cpu.get("ckpt:put", 0.0)),
            "ckpt_put_writes": _ms(cpu.get("ckpt:put_writes", 0.0)),
            "ckpt_reads": _ms(ckpt - cpu.get("ckpt:put", 0.0) - cpu.get("ckpt:put_writes", 0.0)),
            "graph_overhead": _ms(graph_cpu),
            "graph_build": _ms(cpu.get("graph:build", 0.0)),
            "off_cpu": _ms(wall_s - cpu_s),
            "fake_llm": _ms(llm_cpu),
            "non_llm": _ms(wall_s - llm_wall),
            "process_cpu": _ms(cpu_s),
        },
        "ckpt_busy_ms": _ms(busy.get("ckpt", 0.0)),
        "wall_thread_summed_ms": {
            "checkpointing": _ms(group(wall, lambda k: k.startswith("ckpt:"))),
            "agent_nodes": _ms(group(wall, is_agent) + wall.get("llm:invoke", 0.0)),
            "fake_llm": _ms(llm_wall),
        },
    }


def first_day_index(settings: VoltSettings) -> tuple[list[str], int]:
    cal = tools.market_data.load_dataset(settings.data_csv).calendar
    return [f"{d:%Y-%m-%d}" for d in cal], min(settings.min_history - 1, len(cal) - 1)


def run_scenario(name: str, args: argparse.Namespace, factory: Callable | None, models: list[str]) -> dict:
    rows = []
    with tempfile.TemporaryDirectory(prefix=f"volt-bench-{name}-") as tmp:
        base = dict(home=Path(tmp), top_k=args.top_k, models=models,
                    data_csv=None, watchlist=[])  # explicit: no VOLT_* environment leaks in
        days, first = first_day_index(VoltSettings(portfolio="bench", **base))
        for i in range(args.cycles):
            if args.fresh_portfolios:
                settings, as_of = VoltSettings(portfolio=f"bench{i}", **base), days[first + i]
            else:
                settings, as_of = VoltSettings(portfolio="bench", **base), None
            METER.reset()
            c0, t0 = time.process_time(), time.perf_counter()
            result = run_cycle(settings, as_of=as_of, chat_model_factory=factory)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            rows.append(cycle_row(result.state, wall, cpu))
    return summarize(name, rows)


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"median": round(float(np.median(arr)), 3), "p90": round(float(np.percentile(arr, 90)), 3)}


def summarize(name: str, rows: list[dict]) -> dict:
    measured = rows[1:]
    keys = [*rows[0]["ms"]]
    total_calls = sum(r["llm_calls"] for r in measured)
    total_cands = sum(r["candidates"] for r in measured)
    per_cand = total_calls / total_cands if total_cands else 0.0
    max_per_cand = max((r["max_llm_calls_per_candidate"] for r in measured), default=0)
    ms = {k: _stats([r["ms"][k] for r in measured]) for k in keys}
    outcomes: Counter = Counter()
    for r in measured:
        outcomes.update(r["outcomes"])
    return {
        "scenario": name,
        "cycles": len(rows),
        "measured_cycles": len(measured),
        "warmup_total_ms": rows[0]["ms"]["total"],
        "days": [rows[0]["as_of"], rows[-1]["as_of"]],
        "candidates_per_cycle": _stats([r["candidates"] for r in measured]),
        "ms": ms,
        "wall_thread_summed_ms": {k: _stats([r["wall_thread_summed_ms"][k] for r in measured])
                                  for k in WALL_KEYS},
        "checkpointer_busy_ms": _stats([r["ckpt_busy_ms"] for r in measured]),
        "non_llm_ms_per_candidate": _stats([r["ms"]["non_llm"] / max(r["candidates"], 1) for r in measured]),
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
        "node_cpu_ms_median": {
            k: round(float(np.median([r["node_cpu_ms"].get(k, 0.0) for r in measured])), 3)
            for k in sorted({k for r in measured for k in r["node_cpu_ms"]})
        },
        "outcomes": dict(outcomes),
        "errors": sum(r["errors"] for r in measured),
        "targets": {
            "llm_calls_per_candidate": {
                "target": f"<= {TARGET_CALLS_PER_CANDIDATE}", "mean": round(per_cand, 3), "max": max_per_cand,
                "pass": per_cand <= TARGET_CALLS_PER_CANDIDATE and max_per_cand <= TARGET_CALLS_PER_CANDIDATE,
            },
            "non_llm_ms": {
                "target": f"< {TARGET_NON_LLM_MS:g} (2-core machine)", "median": ms["non_llm"]["median"],
                "p90": ms["non_llm"]["p90"], "pass": ms["non_llm"]["median"] < TARGET_NON_LLM_MS,
            },
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
    m = report["machine"]
    lines = [
        f"VOLT cycle benchmark: top_k={report['top_k']}, {report['cycles']} cycles per scenario "
        f"(first = warm-up, excluded), fake answers={report['answers']!r}, "
        f"{'fresh portfolio per cycle' if report['fresh_portfolios'] else 'one portfolio advancing daily'}",
        f"machine: {m['cpus']} CPUs, Python {m['python']}, {m['platform']}",
        f"one-time: imports {report['one_time_ms']['imports']:.0f} ms, "
        f"dataset load {report['one_time_ms']['dataset_load']:.0f} ms (embedded replay data)",
    ]
    for s in report["scenarios"].values():
        ms, t, c = s["ms"], s["targets"], s["llm_calls"]
        total = ms["total"]["median"]
        lines += [
            "",
            f"== {s['scenario']}: days {s['days'][0]}..{s['days'][1]}, candidates/cycle median "
            f"{s['candidates_per_cycle']['median']:g} (p90 {s['candidates_per_cycle']['p90']:g}), "
            f"warm-up cycle {s['warmup_total_ms']:.1f} ms",
            f"   {'component, ms per cycle':<42}{'median':>9}{'p90':>9}{'% total':>9}",
        ]
        for key, label, additive in COMPONENTS:
            st = ms[key]
            share = f"{100 * st['median'] / total:8.1f}%" if additive and total else ""
            lines.append(f"   {label:<42}{st['median']:>9.2f}{st['p90']:>9.2f}{share:>9}")
        w = s["wall_thread_summed_ms"]
        busy = s["checkpointer_busy_ms"]["median"]
        lines += [
            f"   checkpointer busy (wall time with >= 1 thread inside SqliteSaver, incl. lock waits and "
            f"fsync): {busy:.1f} ms = {100 * busy / total if total else 0:.0f}% of the cycle",
            f"   (wall time summed over threads, overlapping: checkpointing {w['checkpointing']['median']:.1f}, "
            f"agent nodes {w['agent_nodes']['median']:.1f}, fake LLM {w['fake_llm']['median']:.2f}; "
            f"process CPU {ms['process_cpu']['median']:.1f})",
            f"   LLM calls per candidate: {c['per_candidate']:.2f} mean, {c['max_per_candidate']} max   "
            f"[target {t['llm_calls_per_candidate']['target']}: {_ok(t['llm_calls_per_candidate']['pass'])}]"
            f"   ({c['total']} calls in {s['measured_cycles']} cycles, model saw {c['model_side_total']})",
            f"   non-LLM work per cycle: median {t['non_llm_ms']['median']:.1f} ms, p90 "
            f"{t['non_llm_ms']['p90']:.1f} ms, per candidate {s['non_llm_ms_per_candidate']['median']:.1f} ms   "
            f"[target {t['non_llm_ms']['target']}: {_ok(t['non_llm_ms']['pass'])}]",
            f"   checkpoint calls per cycle: put {s['checkpoint_calls_per_cycle']['put']:g}, put_writes "
            f"{s['checkpoint_calls_per_cycle']['put_writes']:g}; outcomes {s['outcomes']}; errors {s['errors']}",
            "   node CPU medians, ms (incl. model): "
            + ", ".join(f"{k} {v:.2f}" for k, v in s["node_cpu_ms_median"].items()),
        ]
    lines += ["", *(f"note: {n}" for n in report["notes"])] if report["notes"] else []
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark one VOLT trading cycle offline (fake chat model).")
    p.add_argument("--cycles", type=int, default=10, metavar="N",
                   help="cycles per scenario; the first is a warm-up (default: 10)")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="candidates per cycle (default: 5)")
    p.add_argument("--answers", choices=("prior", "buy"), default="prior",
                   help="fake model answers: echo the quantitative prior (default) or an approved BUY")
    p.add_argument("--scenario", choices=("both", "fake_model", "priors_only"), default="both")
    p.add_argument("--fresh-portfolios", action="store_true",
                   help="new portfolio per cycle (exactly top_k candidates, no held symbols)")
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
        scenarios["fake_model"] = run_scenario("fake_model", args, make_factory(args.answers), [FAKE_SPEC])
    if args.scenario in ("both", "priors_only"):
        scenarios["priors_only"] = run_scenario("priors_only", args, None, [])
    report = {
        "benchmark": "volt_cycle",
        "top_k": args.top_k,
        "cycles": args.cycles,
        "warmup_cycles": 1,
        "answers": args.answers,
        "fresh_portfolios": args.fresh_portfolios,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(terse=True)},
        "one_time_ms": {"imports": _ms(IMPORT_S), "dataset_load": _ms(dataset_s)},
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
