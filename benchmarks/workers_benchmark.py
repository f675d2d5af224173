"""Cycles per minute with several worker processes sharing portfolios (graph/worker.py).

    .venv/bin/python benchmarks/workers_benchmark.py [--workers 1,2,4] [--portfolios 4] [--days 10]
        [--top-k 5] [--database-url postgresql://...] [--json]

Every configuration starts from an empty home (and, on PostgreSQL, an empty database: the
tables are dropped first) and runs ``--portfolios`` portfolios over ``--days`` decision days
of a synthetic 30-symbol CSV (priors only, no model, no network), so each configuration does
the same work: portfolios x days cycles. Measured: the wall time from the first worker's start
to the last worker's end; cycles per minute = cycles / wall minutes.

Rows: one process on SQLite (the default storage; one worker = the plain loop), then 1, 2
and 4 workers on the database given by ``--database-url`` (skipped without it), and the same
worker counts on SQLite for comparison (several processes on one machine share the SQLite
files through file locks). On a 2-core machine, more than 2 workers cannot run in parallel:
the figure then shows the cost of contention, not scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import synthetic_frame  # noqa: E402

SYMBOLS = {f"S{i:02d}": 0.02 * ((i % 7) - 3) for i in range(30)}


def _reset_postgres(url: str) -> None:
    """Drop VOLT's tables (and LangGraph's checkpoint tables) so each configuration starts empty."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def run_config(workers: int, portfolios: int, csv: Path, home: Path, top_k: int, database_url: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not (k.startswith("VOLT_") or k == "OLLAMA_HOST")}
    env["PYTHONPATH"] = str(ROOT)
    if database_url:
        env["VOLT_DATABASE_URL"] = database_url
        _reset_postgres(database_url)
    names = ",".join(f"b{i}" for i in range(portfolios))
    args = [sys.executable, "-m", "graph.run", "--home", str(home), "--data-csv", str(csv), "--models", "",
            "--top-k", str(top_k), "--json", "--loop", "0", "--portfolios", names]
    logs = []
    t0 = time.perf_counter()
    procs = []
    for i in range(workers):
        out = open(home.parent / f"{home.name}-w{i}.log", "w")  # noqa: SIM115 - closed below
        logs.append(out)
        procs.append(subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT))
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - t0
    for f in logs:
        f.close()
    if any(codes):
        raise SystemExit(f"a worker failed (exit codes {codes}); see {home.parent}/*.log")
    return {"wall_s": round(wall, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--portfolios", type=int, default=4)
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--database-url", help="a PostgreSQL URL (its public schema is emptied before each run)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="volt-workers-") as tmp:
        csv = Path(tmp) / "market.csv"
        synthetic_frame(SYMBOLS, days=50 + args.days).to_csv(csv, index=False)
        cycles = args.portfolios * args.days
        plan = [("sqlite", 1)] + [("sqlite", n) for n in counts if n != 1]
        if args.database_url:
            plan += [("postgres", n) for n in counts]
        for backend, n in plan:
            home = Path(tmp) / f"{backend}-{n}"
            r = run_config(n, args.portfolios, csv, home, args.top_k,
                           args.database_url if backend == "postgres" else None)
            row = {"backend": backend, "workers": n, "cycles": cycles, **r,
                   "cycles_per_min": round(cycles / (r["wall_s"] / 60), 1)}
            rows.append(row)
            if not args.json:
                print(f"{backend:<9}{n:>2} worker(s): {cycles} cycles in {r['wall_s']:6.1f} s = "
                      f"{row['cycles_per_min']:6.1f} cycles/min", flush=True)
    print(json.dumps({"cpus": os.cpu_count(), "top_k": args.top_k, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
