"""The static backtest report: the metrics table has metrics as rows and arms as columns inside
a box that never widens the page, labels are escaped, and the charts' date axes carry one
major tick per month (labelled ``Jan 2010``...) over a year-long series."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import pandas as pd
import pytest

from graph import backtest_report as report

ARMS = {"agents": "Agent graph (learning)", "buy_and_hold": "Buy & hold <script>alert(1)</script>",
        "sma_crossover": "SMA crossover", "rsi_rule": "RSI rule"}


def year_summary() -> dict:
    dates = pd.bdate_range("2010-01-04", "2010-12-31")
    equity = {name: [10_000 * (1 + 0.0002 * i * (k + 1) + 0.01 * math.sin(i / 9)) for i in range(len(dates))]
              for k, name in enumerate(ARMS)}
    equity["agents"][5] = None  # a missing mark must not break the chart
    strategies = {}
    for name, label in ARMS.items():
        m = {key: 0.1234 for key, _, _ in report.METRIC_COLUMNS}
        m.update(label=label, fills=12, risk_free=0.02, max_drawdown_peak="2010-03-01",
                 max_drawdown_trough="2010-04-15", max_drawdown_recovery=None if name == "agents" else "2010-06-01",
                 llm={"model_calls": 3, "cache_hits": 1} if name == "agents" else None)
        strategies[name] = m
    return {
        "period": {"first_decision": "2010-01-04", "last_decision": "2010-12-31", "last_fill": "2010-12-31",
                   "days": len(dates)},
        "universe_size": 10, "starting_cash": 10_000.0, "data_source": "synthetic", "notes": [],
        "data_adjustments": [], "costs": {"fee_rate": 0.001, "max_slippage": 0.005},
        "llm": {"model_calls": 3, "cache_hits": 1, "tokens": None, "degraded_rate": 0.0},
        "cache": {"enabled": True}, "config": {"models": []}, "strategies": strategies, "trades": [],
        "series": {"dates": [d.strftime("%Y-%m-%d") for d in dates], "equity": equity,
                   "weights": {"agents": {"dates": [d.strftime("%Y-%m-%d") for d in dates[::5]],
                                          "technical": [1.0] * len(dates[::5])}}},
    }


class Tables(HTMLParser):
    """Rows of every <table>, each cell as (tag, class, text), with the classes of the
    enclosing <div>s of each table."""

    def __init__(self):
        super().__init__()
        self.tables, self.divs, self.cell = [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div":
            self.divs.append(a.get("class", ""))
        elif tag == "table":
            self.tables.append({"class": a.get("class", ""), "divs": list(self.divs), "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th") and self.tables:
            self.cell = [tag, a.get("class") or "", ""]

    def handle_endtag(self, tag):
        if tag == "div" and self.divs:
            self.divs.pop()
        elif tag in ("td", "th") and self.cell is not None:
            self.tables[-1]["rows"][-1].append(tuple(self.cell))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[2] += data


def test_metrics_table_has_metrics_as_rows_and_arms_as_columns():
    page = report.render_html(year_summary(), {})
    parser = Tables()
    parser.feed(page)
    metrics = [t for t in parser.tables if "metrics" in t["class"]]
    assert len(metrics) == 1
    table = metrics[0]
    assert "scroll" in table["divs"]  # the box that scrolls instead of widening the page
    assert ".scroll {" in page and "max-width: 100%" in page.split(".scroll {")[1].split("}")[0]
    head, *body = table["rows"]
    assert [c[2] for c in head] == ["metric", *ARMS.values()]  # escaped text decodes back to the label
    assert "<script>alert(1)</script>" not in page
    labels = [row[0][2] for row in body]
    assert labels == [h for _, h, _ in report.METRIC_COLUMNS] + ["Max DD dates", "Model calls", "Cache hits"]
    assert all(len(row) == 1 + len(ARMS) for row in body)
    total = body[0]
    assert total[1][1] == "main" and total[1][2] == "+12.34%"  # the agent graph's column stands out
    assert [c[2] for c in body[-2][1:]] == ["3", "0", "0", "0"]
    dates = body[-3]
    assert "not recovered" not in dates[1][2] and "recovered 2010-06-01" in dates[2][2]


def test_year_long_charts_have_one_major_tick_per_month(monkeypatch):
    import matplotlib.dates as mdates

    seen = {}
    original = report._figure_png

    def capture(fig):
        ax = fig.axes[0]
        seen[ax.get_title()[:12]] = (list(ax.xaxis.get_majorticklocs()), [t.get_text() for t in ax.get_xticklabels()],
                                     [t.get_rotation() for t in ax.get_xticklabels()])
        return original(fig)

    monkeypatch.setattr(report, "_figure_png", capture)
    images = report.charts(year_summary())
    assert set(images) == {"equity", "drawdown", "weights"}
    assert all(png.startswith(b"\x89PNG") for png in images.values())
    assert len(seen) == 3
    for title, (locs, labels, rotations) in seen.items():
        months = [mdates.num2date(x) for x in locs]
        assert all(d.day == 1 for d in months), title
        inside = [d for d in months if pd.Timestamp("2010-01-04", tz="UTC") <= d <= pd.Timestamp("2010-12-31", tz="UTC")]
        # Feb..Dec 1st fall inside the series: eleven ticks, consecutive months, none skipped
        assert [d.month for d in inside] == list(range(2, 13)), title
        shown = [t for t in labels if t]
        assert "Jun 2010" in shown and all(r == pytest.approx(30) for r in rotations), title


def test_report_fits_a_1400_px_page(tmp_path):
    from graph.dashboard import harness

    if harness.browser_missing():
        pytest.skip(harness.browser_missing())
    summary = year_summary()
    for m in summary["strategies"].values():  # the widest cells a real run writes
        m["max_drawdown_recovery"] = "2010-07-26"
    page = tmp_path / "report.html"
    page.write_text(report.render_html(summary, report.charts(summary)))
    with harness.chrome() as driver:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        driver.get(page.as_uri())
        page_width, table_width = driver.execute_script(
            "return [document.documentElement.scrollWidth, document.querySelector('table').offsetWidth]")
    assert page_width <= 1400 and 0 < table_width <= 1400
