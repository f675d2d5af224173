"""Dashboard speed on a home with a year of cycles (195 cycles x ~15 candidates, priors only).

    .venv/bin/python benchmarks/dashboard_benchmark.py [--out /tmp/volt-dashboard-year] [--repeat 20]
        [--cold 5] [--before] [--screenshots docs/dashboard]

The home is made once by ``python -m graph.backtest --model none --top-k 15`` on the embedded
data (about a minute) and reused from ``--out`` afterwards. Then:

- first paint per page: headless Chromium (Debian's) opens each page and waits until its main
  element is drawn (a figure: until Plotly drew it). ``cold`` is the first load of the
  overview by a fresh browser (new profile, empty cache: every script fetched and compiled),
  ``--cold`` times, each in a new Chromium; ``--before`` also measures cold loads the way the
  dashboard loaded Plotly before (Dash's full 4.8 MB plotly.js, fetched when the first figure
  mounts), in the same run, against the same home and machine load; the per-page figures
  are the median of ``--paints`` loads with the browser cache warm, as a returning user sees them;
- callbacks: each server-side callback (page render, decision detail, indicator figure,
  feedback filter, stamp poll) ``--repeat`` times on varied inputs; p50 and p95 in ms.
Target: first paint <= 2 s per page, every callback p95 <= 300 ms, on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graph.dashboard import harness  # noqa: E402
from graph.dashboard.app import Context, _pages, create_app  # noqa: E402
from graph.dashboard.data import HomeData  # noqa: E402
from graph.dashboard.market import MarketView  # noqa: E402
from graph.dashboard.pages import decisions, feedback, indicators  # noqa: E402

PORTFOLIO = "backtest"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def callbacks(home: Path, runs: Path, repeat: int) -> dict:
    rng = random.Random(7)
    ctx = Context(data=HomeData(home, runs_dir=runs), market=MarketView(), portfolio=PORTFOLIO)
    ctx.market.dataset(wait_s=60)
    days = ctx.data.cycle_days(PORTFOLIO)
    symbols = ctx.market.symbols()
    counts = ctx.data.message_counts(PORTFOLIO)
    types = sorted(counts["message_type"].unique())
    cases = {f"render {path}": (lambda m=module: m.layout(ctx, PORTFOLIO)) for path, (_, module) in _pages().items()}

    def detail():
        day = rng.choice(days)
        picks = decisions.symbols_of(ctx, PORTFOLIO, day)
        return decisions.detail(ctx, PORTFOLIO, day, rng.choice(picks)) if picks else None

    cases["decision detail"] = detail
    cases["decision symbols"] = lambda: decisions.symbols_of(ctx, PORTFOLIO, rng.choice(days))
    cases["indicator figure"] = lambda: indicators.figure(ctx, PORTFOLIO, rng.choice(symbols))
    cases["feedback filter"] = lambda: feedback.body(feedback.filtered(
        ctx.data.message_counts(PORTFOLIO), rng.sample(types, k=max(1, len(types) // 2)), ["NORMAL", "HIGH"]))
    cases["stamp poll"] = lambda: ctx.data.stamp(PORTFOLIO)
    out = {}
    for name, fn in cases.items():
        fn()  # first call fills the per-cycle cache, as the first visitor does
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1000)
        out[name] = {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(p95(times), 1)}
    return out


def cold_loads(home: Path, runs: Path, loads: int, full_plotly: bool = False) -> dict:
    """Seconds to the overview's first paint in ``loads`` fresh browsers (each a new profile),
    against a server that is up (its market data loaded, its warm-up done)."""
    app = create_app(home, portfolio=PORTFOLIO, runs_dir=runs, full_plotly=full_plotly)
    app.logger.disabled = True
    started = time.perf_counter()
    times = []
    with harness.serve(app) as url:
        ready_s = _server_ready(url)
        for _ in range(loads):
            with harness.chrome() as driver:
                times.append(round(harness.open_page(driver, url + "/", harness.READY["/"], 60), 3))
                assert not harness.severe(driver), "console errors on the cold load"
    return {"loads_s": times, "median_s": round(statistics.median(times), 3), "max_s": max(times),
            "server_ready_s": round(ready_s - started if ready_s else -1, 3)}


def _server_ready(url: str, timeout_s: float = 120.0) -> float | None:
    """Wait until the overview renders with market data (the equal-weight index is in it)."""
    import urllib.request

    body = json.dumps({"output": "page.children", "outputs": {"id": "page", "property": "children"},
                       "inputs": [{"id": "url", "property": "pathname", "value": "/"},
                                  {"id": "stamp", "property": "data", "value": None}],
                       "changedPropIds": ["url.pathname"],
                       "state": [{"id": "portfolio", "property": "value", "value": PORTFOLIO}]}).encode()
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        request = urllib.request.Request(url + "/_dash-update-component", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            if b"equal-weight index" in answer.read():
                return time.perf_counter()
        time.sleep(0.2)
    return None


def paints(home: Path, runs: Path, loads: int, shots: Path | None = None) -> dict:
    app = create_app(home, portfolio=PORTFOLIO, runs_dir=runs)
    app.logger.disabled = True
    result = {}
    with harness.serve(app) as url, harness.chrome() as driver:
        _server_ready(url)
        for path, ready in harness.READY.items():
            times = [harness.open_page(driver, url + path, ready, 60) for _ in range(loads)]
            result[path] = round(statistics.median(times), 3)
        result["severe_console_entries"] = len(harness.severe(driver))
        if shots is not None:
            result["screenshots"] = [str(p) for p in harness.screenshots(driver, url, shots)]
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/volt-dashboard-year", help="backtest folder (made once, then reused)")
    p.add_argument("--repeat", type=int, default=20, help="calls per callback (default 20)")
    p.add_argument("--paints", type=int, default=3, help="loads per page (default 3)")
    p.add_argument("--cold", type=int, default=3, help="cold loads, each in a fresh browser (default 3)")
    p.add_argument("--before", action="store_true",
                   help="also cold loads with Dash's full plotly.js fetched on the first figure (the old way)")
    p.add_argument("--no-browser", action="store_true", help="callbacks only")
    p.add_argument("--screenshots", type=Path, help="also save a 1280x800 PNG per page into this folder")
    args = p.parse_args()
    out = Path(args.out)
    started = time.perf_counter()
    home = harness.build_home(out, top_k=15)
    built_s = time.perf_counter() - started
    data = HomeData(home)
    n_cycles = data.stamp(PORTFOLIO)[0]
    per_cycle = len(data.query("SELECT 1 FROM consensus_records")) / max(1, n_cycles)
    # the machine is shared: its 1-minute load average says how busy it was (2 = both cores busy)
    report = {"load_average_1min": round(os.getloadavg()[0], 2),
              "home": str(home), "cycles": n_cycles, "decisions_per_cycle": round(per_cycle, 1),
              "home_ready_s": round(built_s, 1), "callbacks": callbacks(home, out, args.repeat)}
    if not args.no_browser:
        why = harness.browser_missing()
        if why is not None:
            report["first_paint_s"] = {"skipped": why}
        else:
            import logging

            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            if args.before:
                report["cold_first_load_before"] = cold_loads(home, out, args.cold, full_plotly=True)
            report["cold_first_load"] = cold_loads(home, out, args.cold)
            report["first_paint_s"] = paints(home, out, args.paints, args.screenshots)
    report["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
