"""A running ``python -m graph.run --loop`` and an open dashboard on the same home: the
dashboard's data layer (a polling thread) and, when Chromium is installed, an open overview
page and repeated page loads read the ledger while the loop writes it. Neither side may log
a lock error, and once the loop ends the overview shows its last cycle without a reload.

The default run does 5 cycles; the 20-cycle run of issue #14 is marked slow (``-m slow``)."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from graph.dashboard import harness
from graph.dashboard.app import create_app
from graph.dashboard.data import HomeData

PORTFOLIO = "side"
ROOT = Path(__file__).resolve().parents[1]
LOCK = re.compile(r"database is locked|database table is locked|lock(ed)? error|SQLITE_BUSY", re.I)


def ledger_last(home: Path) -> tuple[int, str | None]:
    conn = sqlite3.connect(f"file:{home / 'volt.db'}?mode=ro", uri=True)
    try:
        n, last = conn.execute("SELECT COUNT(*), MAX(as_of) FROM cycles WHERE portfolio=?", (PORTFOLIO,)).fetchone()
        return n, last
    finally:
        conn.close()


def side_by_side(csv: Path, tmp_path: Path, cycles: int) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLT_") and k != "OLLAMA_HOST"}
    cmd = [sys.executable, "-m", "graph.run", "--loop", "0", "--cycles", str(cycles), "--models", "",
           "--data-csv", str(csv), "--home", str(home), "--top-k", "3", "--portfolio", PORTFOLIO]
    loop = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    data = HomeData(home)
    errors: list[str] = []
    reads = {"n": 0, "max_seen": 0}
    stop = threading.Event()

    def poll() -> None:  # the dashboard's data layer, as its callbacks use it
        while not stop.is_set():
            try:
                n = data.stamp(PORTFOLIO)[0]
                frame = data.cycles(PORTFOLIO)
                data.fills(PORTFOLIO)
                data.positions(PORTFOLIO)
                reads["n"] += 1
                reads["max_seen"] = max(reads["max_seen"], n, len(frame))
            except Exception as exc:  # every failure is a finding, a lock error above all
                errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)

    reader = threading.Thread(target=poll, daemon=True)
    reader.start()
    browser = harness.browser_missing() is None
    try:
        if browser:
            app = create_app(home, portfolio=PORTFOLIO, refresh_ms=300)
            with harness.serve(app) as url, harness.chrome() as driver, harness.chrome() as reloader:
                from selenium.webdriver.common.by import By

                while not (home / "volt.db").exists() and loop.poll() is None:
                    time.sleep(0.05)
                harness.open_page(driver, url + "/", "page", 60)  # stays open: updates by its poll
                loads = 0
                while loop.poll() is None:  # a second visitor reloading the overview meanwhile
                    harness.open_page(reloader, url + "/", "page", 60)
                    assert "this page failed" not in reloader.page_source
                    loads += 1
                out, err = loop.communicate(timeout=300)
                n, last = ledger_last(home)

                def shows_last(d) -> bool:
                    found = d.find_elements(By.ID, "m-last")
                    return bool(found) and found[0].text == last and f"{n} cycles, last {last}" in \
                        d.find_element(By.CLASS_NAME, "stamp").text

                from selenium.common.exceptions import StaleElementReferenceException
                from selenium.webdriver.support.ui import WebDriverWait
                WebDriverWait(driver, 20, 0.1, ignored_exceptions=(StaleElementReferenceException,)).until(shows_last)
                assert "this page failed" not in driver.page_source
                logs = harness.severe(driver) + harness.severe(reloader)
                assert logs == [], "\n".join(e["message"][:300] for e in logs)
                assert loads >= 1
        else:
            out, err = loop.communicate(timeout=300)
            n, last = ledger_last(home)
    finally:
        stop.set()
        reader.join(10)
        if loop.poll() is None:
            loop.kill()
            loop.communicate()

    assert loop.returncode == 0, err[-2000:]
    assert not LOCK.search(out) and not LOCK.search(err), (out + err)[-2000:]
    assert errors == []
    assert n == cycles
    assert reads["n"] > cycles and reads["max_seen"] == cycles  # the reader ran throughout and saw them all
    assert data.stamp(PORTFOLIO)[1] == last and data.cycles(PORTFOLIO)["as_of"].iloc[-1] == last


def test_loop_and_dashboard_side_by_side_5_cycles(market_csv, tmp_path):
    side_by_side(market_csv, tmp_path, 5)


@pytest.mark.slow
def test_loop_and_dashboard_side_by_side_20_cycles(market_csv, tmp_path):
    side_by_side(market_csv, tmp_path, 20)
