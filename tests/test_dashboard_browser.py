"""The dashboard in a real headless browser (Debian chromium + chromedriver via Selenium):
every page loads on a home made by real cycles, shows the ledger's figures, and logs no
SEVERE console entry. Skips when the browser is missing, unless VOLT_TEST_REQUIRE_BROWSER=1
(set by .ci/run, which installs it). VOLT_DASHBOARD_SCREENSHOTS=DIR saves a PNG per page."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from graph.dashboard import harness
from graph.dashboard.app import create_app
from graph.dashboard.ui import fmt

PORTFOLIO = "backtest"
missing = harness.browser_missing()
if missing and os.environ.get("VOLT_TEST_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"VOLT_TEST_REQUIRE_BROWSER=1 but {missing}")
pytestmark = pytest.mark.skipif(missing is not None, reason=f"headless browser tests: {missing}")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("VOLT_") and key not in ("VOLT_TEST_REQUIRE_BROWSER", "VOLT_DASHBOARD_SCREENSHOTS"):
                mp.delenv(key, raising=False)
        out = tmp_path_factory.mktemp("dash") / "bt"
        home = harness.build_home(out, start="2009-11-02", end="2009-11-20", top_k=5)
    app = create_app(home, portfolio=PORTFOLIO, runs_dir=out, refresh_ms=1000)
    app.logger.disabled = True
    with harness.serve(app) as url, harness.chrome() as driver:
        yield {"url": url, "driver": driver, "home": home}


def last_cycle(home: Path) -> tuple:
    conn = sqlite3.connect(f"file:{home / 'volt.db'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT as_of, equity, cash FROM cycles WHERE portfolio=? ORDER BY as_of DESC LIMIT 1",
                            (PORTFOLIO,)).fetchone()
    finally:
        conn.close()


@pytest.mark.parametrize("path", list(harness.READY))
def test_each_page_loads_without_console_errors(site, path):
    driver = site["driver"]
    harness.severe(driver)  # start clean
    harness.open_page(driver, site["url"] + path, harness.READY[path])
    assert "this page failed" not in driver.page_source
    assert harness.severe(driver) == []
    shots = os.environ.get("VOLT_DASHBOARD_SCREENSHOTS")
    if shots:  # the README's pictures come from the year home: the benchmark's --screenshots
        Path(shots).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(shots) / f"{path.strip('/') or 'overview'}.png"))


def test_overview_shows_the_ledger_figures(site):
    from selenium.webdriver.common.by import By

    driver = site["driver"]
    harness.open_page(driver, site["url"] + "/", "m-equity")
    as_of, equity, cash = last_cycle(site["home"])
    assert driver.find_element(By.ID, "m-equity").text == fmt(equity, "money")
    assert driver.find_element(By.ID, "m-cash").text == fmt(cash, "money")
    assert as_of in driver.find_element(By.CLASS_NAME, "stamp").text


def test_decisions_page_shows_the_consensus_of_the_last_cycle(site):
    from selenium.webdriver.common.by import By

    driver = site["driver"]
    harness.open_page(driver, site["url"] + "/decisions", "consensus-result")
    as_of = last_cycle(site["home"])[0]
    conn = sqlite3.connect(f"file:{site['home'] / 'volt.db'}?mode=ro", uri=True)
    results = {r[0] for r in conn.execute("SELECT result FROM consensus_records WHERE as_of=?", (as_of,))}
    conn.close()
    shown = driver.find_element(By.ID, "consensus-result").text.removeprefix("consensus: ")
    assert shown in results
    assert driver.find_elements(By.CSS_SELECTOR, "#votes-figure .main-svg")


def test_learning_page_shows_the_rl_controller(site, tmp_path):
    """Off (the table is there, no row): says so. With rows as the controller writes them
    (memory/rl_store.record_action): the policy, both multipliers per cycle, the last observation."""
    import json
    import shutil

    from selenium.webdriver.common.by import By

    driver = site["driver"]
    harness.open_page(driver, site["url"] + "/learning", "rl-note")
    assert driver.find_element(By.ID, "rl-note").text == "RL controller off (no actions recorded)"
    home = tmp_path / "home"
    shutil.copytree(site["home"], home, ignore=shutil.ignore_patterns("chroma"))
    with sqlite3.connect(home / "volt.db") as conn:
        days = [r[0] for r in conn.execute("SELECT as_of FROM cycles WHERE portfolio=? ORDER BY as_of", (PORTFOLIO,))]
        for i, day in enumerate(days):
            observed = {"drawdown": round(0.01 * i, 4), "exposure": round(0.05 * i, 4), "trend": -0.02}
            action = 0.5 + 0.1 * i
            conn.execute("INSERT INTO rl_actions(portfolio, as_of, policy, observation, action, applied)"
                         " VALUES (?,?,?,?,?,?)", (PORTFOLIO, day, "policy.zip:9f2c", json.dumps(observed), action,
                                                  min(action, 1.5)))
    conn.close()
    app = create_app(home, portfolio=PORTFOLIO, refresh_ms=60_000)
    app.logger.disabled = True
    with harness.serve(app) as url:
        harness.severe(driver)
        harness.open_page(driver, url + "/learning", "rl-figure")
        conn = sqlite3.connect(f"file:{home / 'volt.db'}?mode=ro", uri=True)
        rows = conn.execute("SELECT as_of, policy, action, applied FROM rl_actions WHERE portfolio=? ORDER BY as_of",
                            (PORTFOLIO,)).fetchall()
        features = conn.execute("SELECT key, value FROM rl_actions, json_each(observation) WHERE portfolio=?"
                                " AND as_of=? ORDER BY key", (PORTFOLIO, rows[-1][0])).fetchall()
        conn.close()
        clipped = sum(abs(a - b) > 1e-9 for _, _, a, b in rows)
        assert driver.find_element(By.ID, "rl-summary").text == (
            f"policy policy.zip:9f2c: {len(rows)} cycles, last {rows[-1][0]}: action {fmt(rows[-1][2])},"
            f" applied {fmt(rows[-1][3])}; clipped by the hard limits in {clipped} cycles")
        drawn = driver.execute_script(
            "return document.querySelector('#rl-figure .js-plotly-plot')._fullData"
            ".map(t => [t.name, Array.from(t.x), Array.from(t.y)]);")
        assert drawn[0] == ["action (policy)", [r[0] for r in rows], pytest.approx([r[2] for r in rows])]
        assert drawn[1] == ["applied (after limits)", [r[0] for r in rows], pytest.approx([r[3] for r in rows])]
        cells = driver.execute_script(
            "return Array.from(document.querySelectorAll('#rl-observation-table tbody tr'))"
            ".map(r => Array.from(r.cells).map(c => c.textContent));")
        assert cells == [[key, fmt(value)] for key, value in features]
        assert harness.severe(driver) == []
