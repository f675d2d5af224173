"""Test and benchmark harness: a home made by the real graph, a local server, headless Chromium.

Used by tests/test_dashboard_browser.py and benchmarks/dashboard_benchmark.py. Chromium and
chromedriver are Debian's (``apt-get install chromium chromium-driver``); the flags keep a
machine without network quiet (no background networking, no component updates).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = os.environ.get("VOLT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("VOLT_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-extensions", "--disable-sync")

# what each page shows once it has painted (an element id)
READY = {"/": "equity-figure", "/decisions": "calls-table", "/learning": "weights-figure",
         "/feedback": "sankey-figure", "/indicators": "indicator-figure", "/evolution": "changes-table",
         "/status": "health-table", "/runs": "runs-count"}


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (shutil.which(path) or Path(path).exists()):
            return f"{path} not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install -e '.[dev]')"
    return None


def build_home(out: Path, *, start: str | None = None, end: str | None = None, top_k: int = 15) -> Path:
    """Run ``python -m graph.backtest --model none`` (priors only, embedded data) into ``out``
    unless it already holds a finished run, and return the learning graph's home."""
    out = Path(out)
    if not (out / "summary.json").exists():
        from graph.backtest import main as backtest

        with contextlib.redirect_stdout(io.StringIO()):
            window = [*(["--start", start] if start else []), *(["--end", end] if end else [])]
            code = backtest(["--model", "none", *window, "--top-k", str(top_k),
                             "--no-frozen", "--jobs", "1", "--no-progress", "--out", str(out)])
        if code != 0:
            raise RuntimeError(f"backtest into {out} failed with exit {code}")
    homes = sorted(out.glob("runs-*/agents"))
    if not homes:
        raise RuntimeError(f"no runs-*/agents home under {out}")
    return homes[-1]


@contextlib.contextmanager
def serve(app) -> Iterator[str]:
    """Serve a Dash app on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


@contextlib.contextmanager
def chrome(width: int = 1280, height: int = 800) -> Iterator:
    """A headless Chromium driven by Selenium, its console log readable with ``get_log``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver, url: str, ready_id: str, timeout_s: float = 30.0) -> float:
    """Load ``url`` and wait until ``ready_id`` is on the page (a figure: until Plotly drew it).
    Returns seconds from the request to that point (the page's first useful paint)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.perf_counter()
    driver.get(url)

    def ready(d) -> bool:
        found = d.find_elements(By.ID, ready_id)
        if not found:
            return False
        if found[0].get_attribute("class") and "dash-graph" in found[0].get_attribute("class"):
            return bool(found[0].find_elements(By.CSS_SELECTOR, ".main-svg"))
        return True

    from selenium.common.exceptions import StaleElementReferenceException

    # a re-render between finding the element and reading it: look again
    WebDriverWait(driver, timeout_s, poll_frequency=0.02,
                  ignored_exceptions=(StaleElementReferenceException,)).until(ready)
    return time.perf_counter() - started


def severe(driver) -> list[dict]:
    """SEVERE entries of the browser console since the last call."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def screenshots(driver, url: str, out: Path | str, size: tuple[int, int] = (1280, 800),
                settle_s: float = 0.5) -> list[Path]:
    """Open every page of :data:`READY` and save a ``size`` (CSS px) picture of it as
    ``out/<page>.png`` (the README's: ``overview.png``, ``decisions.png``...). The viewport is
    set exactly (``--window-size`` counts the window's frame: 1280x800 gave 1280x657).
    ``settle_s``: pause after the page painted, so late figures are in the picture."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    width, height = size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    saved = []
    try:
        for path, ready in READY.items():
            open_page(driver, url + path, ready, 60)
            time.sleep(settle_s)
            target = out / f"{path.strip('/') or 'overview'}.png"
            driver.save_screenshot(str(target))
            saved.append(target)
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return saved
