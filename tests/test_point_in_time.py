"""Point-in-time to the bar: fills on the fill day F only, marks never read a bar after F."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from conftest import default_answer, scripted, synthetic_frame

from graph.run import run_cycle
from memory.ledger import Ledger
from nodes.execution_agent import cycle_fill_day
from tools.broker import fill_day_marks
from tools.market_data import dataset_from_frame

pytestmark = pytest.mark.usefixtures("clean_env")


def gap_frame(days: int = 60, gaps: dict[str, list[int]] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Synthetic bars for AAA, BBB, CCC with the rows at ``gaps[symbol]`` (day numbers) removed."""
    frame = synthetic_frame({"AAA": 0.25, "BBB": 0.15, "CCC": -0.05}, days=days)
    dates = sorted(frame["Date"].unique())
    for symbol, rows in (gaps or {}).items():
        frame = frame[~((frame["Symbol"] == symbol) & frame["Date"].isin([dates[i] for i in rows]))]
    return frame.reset_index(drop=True), dates


def day(dates: list[str], i: int) -> pd.Timestamp:
    return pd.Timestamp(dates[i])


def test_marks_use_the_fill_day_open_or_the_last_close_before_it():
    frame, dates = gap_frame(gaps={"AAA": [51, 52]})
    ds = dataset_from_frame(frame, "gaps")
    D, F = day(dates, 50), day(dates, 51)
    assert ds.fill_day(D) == F
    marks, notes = fill_day_marks(ds, ["AAA", "BBB"], D, F)
    assert notes == []
    assert marks["BBB"] == float(ds.bars["BBB"].loc[F, "open"])  # trades on F: F's open
    assert marks["AAA"] == float(ds.bars["AAA"].loc[D, "close"])  # gap on F: the last close before F
    # the next bar after the gap (day 53) is never used, whatever it says
    changed = frame.copy()
    later = (changed["Symbol"] == "AAA") & (changed["Date"] > dates[51])
    changed.loc[later, ["Open", "High", "Low", "Close"]] *= 7.0
    assert fill_day_marks(dataset_from_frame(changed, "changed"), ["AAA", "BBB"], D, F)[0] == marks
    # live (no fill day): the last close as of D
    assert fill_day_marks(ds, ["BBB"], D, None)[0] == {"BBB": float(ds.bars["BBB"].loc[D, "close"])}
    assert cycle_fill_day(ds, D, live=True) is None and cycle_fill_day(ds, D, live=False) == F


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, -5.0])
def test_an_unusable_fill_day_open_falls_back_to_the_last_close(bad):
    frame, dates = gap_frame()
    ds = dataset_from_frame(frame, "bad")
    D, F = day(dates, 50), day(dates, 51)
    raw = ds.bars["AAA"].copy()
    raw.loc[F, "open"] = bad  # a bad bar that slipped past the guards upstream
    ds.raw_bars["AAA"] = raw
    marks, notes = fill_day_marks(ds, ["AAA"], D, F)
    assert marks == {"AAA": float(ds.bars["AAA"].loc[D, "close"])}
    assert len(notes) == 1 and notes[0].startswith("DATA AAA")


def test_a_symbol_without_any_price_is_left_to_its_cost():
    frame, dates = gap_frame()
    ds = dataset_from_frame(frame, "x")
    marks, notes = fill_day_marks(ds, ["ZZZ"], day(dates, 50), day(dates, 51))
    assert marks == {} and notes and "ZZZ" in notes[0]


@pytest.mark.parametrize("equity", [math.nan, math.inf, 0.0, -1.0])
def test_the_ledger_never_records_an_absurd_equity(tmp_path, equity):
    ledger = Ledger(tmp_path / "volt.db")
    ledger.ensure_portfolio("p", 1000.0)
    with pytest.raises(ValueError, match="refusing to record equity"):
        ledger.complete_cycle("p", "2020-03-10", equity, 1000.0, 0.0)
    assert ledger.account("p").peak_equity == 1000.0 and ledger.cycles("p") == []


def test_no_bar_on_the_fill_day_means_no_fill_and_a_held_gap_is_marked_at_its_last_close(tmp_path, settings_for):
    # cycle 1 (D = day 49) buys AAA and BBB on day 50; AAA has no bar on day 51 (cycle 2's fill day)
    frame, dates = gap_frame(gaps={"AAA": [51]})
    csv = tmp_path / "gaps.csv"
    frame.to_csv(csv, index=False)
    settings = settings_for(csv, watchlist=["AAA", "BBB"], top_k=2)
    factory = lambda spec: scripted()  # noqa: E731  always BUY
    first = run_cycle(settings, chat_model_factory=factory).state
    assert sorted(f["symbol"] for f in first["fills"]) == ["AAA", "BBB"]
    assert all(f["fill_date"] == dates[50][:4] + "-" + dates[50][4:6] + "-" + dates[50][6:] for f in first["fills"])

    # cycle 2: both are held, so their exit reviews decide: the strategist's SELL REDUCEs each
    reduce = lambda spec: scripted({"strategy": {"action": "SELL", "confidence": 0.6}})  # noqa: E731
    second = run_cycle(settings, chat_model_factory=reduce).state
    D, F = day(dates, 50), day(dates, 51)
    assert second["as_of"] == f"{D:%Y-%m-%d}"
    by_symbol = {o["symbol"]: o for o in second["orders"]}
    assert by_symbol["AAA"]["status"] == "UNFILLED"
    assert by_symbol["AAA"]["reason"] == f"no bar on {F:%Y-%m-%d} (gap or data issue)"
    assert [f["symbol"] for f in second["fills"]] == ["BBB"]
    assert second["fills"][0]["fill_date"] == f"{F:%Y-%m-%d}"
    # AAA is marked at its close on D (its last close before F), not at day 52's open
    ds = dataset_from_frame(frame, "gaps")
    assert second["portfolio_after"]["positions"]["AAA"]["price"] == pytest.approx(ds.bars["AAA"].loc[D, "close"])
    assert second["portfolio_after"]["positions"]["BBB"]["price"] == pytest.approx(ds.bars["BBB"].loc[F, "open"])
    # the unfilled order is recorded, and a resumed/repeated lookup gives the same reason
    assert Ledger(settings.ledger_path).get_fill(f"{settings.portfolio}:{D:%Y-%m-%d}:AAA") is None


def test_an_order_is_sized_on_marks_that_ignore_bars_after_the_fill_day(tmp_path, settings_for):
    """The buy on F is clipped against equity marked on F: a held symbol in a gap on F whose
    next bar (after F) is absurd changes nothing."""
    frame, dates = gap_frame(gaps={"AAA": [51]})
    results = []
    for factor in (1.0, 50.0):
        changed = frame.copy()
        later = (changed["Symbol"] == "AAA") & (changed["Date"] > dates[51])
        changed.loc[later, ["Open", "High", "Low", "Close"]] *= factor
        csv = tmp_path / f"f{factor}.csv"
        changed.to_csv(csv, index=False)
        settings = settings_for(csv, watchlist=["AAA", "BBB"], top_k=2, home=tmp_path / f"h{factor}",
                                max_position_pct=0.12)

        def respond(agent, symbol, evidence, messages, first=dates[49]):
            if symbol == "BBB" and evidence.get("as_of", "").replace("-", "") == first:  # day 1: AAA only
                return default_answer(agent, symbol, evidence, strategy={"action": "HOLD"},
                                      market={"direction": "NEUTRAL", "strength": 0.0})
            return default_answer(agent, symbol, evidence, strategy={"size_pct": 0.5})

        first = run_cycle(settings, chat_model_factory=lambda spec: scripted(respond=respond)).state
        assert [f["symbol"] for f in first["fills"]] == ["AAA"]
        state = run_cycle(settings, chat_model_factory=lambda spec: scripted(respond=respond)).state
        results.append((state["fills"], state["portfolio_after"]["equity"]))
    strip = [([{k: v for k, v in f.items() if k != "latency_ms"} for f in fills], eq) for fills, eq in results]
    assert strip[0] == strip[1]
    [buy] = strip[0][0]  # BBB, clipped to 12% of an equity that holds AAA at its last close
    assert buy["symbol"] == "BBB"
