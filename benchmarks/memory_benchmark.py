"""Situation-memory recall latency at 10k and 100k stored situations (target: p95 < 5 ms at 100k).

Run: .venv/bin/python benchmarks/memory_benchmark.py [--sizes 10000,100000] [--queries 300]

Stores random situations (features as the graph computes them, within their normal
ranges) through ``SituationMemory.add`` in a temporary directory, then times
``SituationMemory.similar`` (k=5), the exact call the LearningAgent makes per candidate.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from memory.situation_memory import SituationMemory
from tools.situation_features import FEATURES

BATCH = 5000


def random_features(rng: np.random.Generator, n: int) -> list[dict[str, float]]:
    values = np.tanh(rng.normal(scale=0.6, size=(n, len(FEATURES))))
    return [dict(zip(FEATURES, map(float, row), strict=True)) for row in values]


def run(size: int, queries: int, seed: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        memory = SituationMemory(Path(tmp), f"bench-{size}")
        started = time.perf_counter()
        for start in range(0, size, BATCH):
            feats = random_features(rng, min(BATCH, size - start))
            memory.add([{"id": f"s{start + i}", "features": f, "symbol": f"S{(start + i) % 500}",
                         "date": f"2010-{1 + (start + i) % 12:02d}-15", "action": ("BUY", "SELL", "HOLD")[i % 3],
                         "realized_return": float(rng.normal(scale=0.03)), "hit": bool(i % 2)}
                        for i, f in enumerate(feats)])
        insert_s = time.perf_counter() - started
        latencies, found = [], []
        for f in random_features(rng, queries + 20):
            t = time.perf_counter()
            hits = memory.similar(f, before="2011-01-01", k=5, max_distance=10.0)
            latencies.append((time.perf_counter() - t) * 1000)
            found.append(len(hits))
        lat = np.array(latencies[20:])  # first queries warm the index
        return {"situations": memory.count(), "insert_s": round(insert_s, 2),
                "p50_ms": round(float(np.percentile(lat, 50)), 3), "p95_ms": round(float(np.percentile(lat, 95)), 3),
                "max_ms": round(float(lat.max()), 3), "mean_neighbours": round(float(np.mean(found)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        r = run(size, args.queries)
        results.append(r)
        verdict = "PASS" if r["p95_ms"] < 5.0 else "FAIL"
        print(f"{r['situations']:>7} situations: recall p50 {r['p50_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms "
              f"(max {r['max_ms']:.1f}) [target p95 < 5 ms: {verdict}]; insert {r['insert_s']:.1f} s", flush=True)
    print(json.dumps({"benchmark": "memory_recall", "k": 5, "results": results}))


if __name__ == "__main__":
    main()
