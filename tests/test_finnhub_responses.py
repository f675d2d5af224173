"""Finnhub's response bodies are untrusted data: the pure parsers (tools/finnhub/responses.py)
turn good ones into VOLT's names and numbers and bad ones into one FinnhubError or None,
never a crash, a NaN, an infinity or a bool taken for a number."""

from __future__ import annotations

import math
from datetime import date

import pandas as pd
import pytest

from tools.finnhub import responses as r
from tools.finnhub.errors import FinnhubError


def test_a_quote_keeps_finite_numbers_only():
    q = r.parse_quote({"c": "101.5", "h": float("inf"), "l": True, "o": float("nan"), "pc": 100, "t": None}, "AAA")
    assert q == {"c": 101.5, "d": None, "dp": None, "h": None, "l": None, "o": None, "pc": 100.0, "t": 0,
                 "symbol": "AAA"}
    for bad in (None, [], "c", {"price": 1}):
        with pytest.raises(FinnhubError, match="quote AAA: unexpected response shape"):
            r.parse_quote(bad, "AAA")


def test_splits_are_dated_positive_ratios_within_the_range_oldest_first():
    body = [{"date": "2020-06-01", "fromFactor": 1, "toFactor": 4},
            {"date": "2020-03-02", "fromFactor": 10, "toFactor": 1},       # 1:10 reverse
            {"date": "2020-01-01", "fromFactor": 1, "toFactor": 2},        # before the range
            {"date": "not a day", "fromFactor": 1, "toFactor": 2},
            {"date": "2020-04-01", "fromFactor": 0, "toFactor": 2},        # a zero factor
            {"date": "2020-04-02", "fromFactor": 1, "toFactor": float("inf")},
            "junk"]
    got = r.parse_splits(body, date(2020, 2, 1), date(2020, 12, 31))
    assert got == [{"date": "2020-03-02", "ratio": 0.1}, {"date": "2020-06-01", "ratio": 4.0}]
    assert r.parse_splits({"not": "a list"}, date(2020, 1, 1), date(2020, 12, 31)) == []


def test_candles_daily_and_intraday_with_duplicates_gaps_and_junk():
    t = [1577923200, 1578009600, 1578009600]  # 2020-01-02, 2020-01-03 twice (the later wins)
    body = {"s": "ok", "t": t, "o": [1, 2, 3], "h": [1, 2, "x"], "l": [1, 2, 3], "c": [1, 2, 4], "v": [10, 20, 30]}
    daily = r.candle_frame(body, "AAA", daily=True)
    assert list(daily.index) == [pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-03")]
    assert daily.loc["2020-01-03", "close"] == 4 and math.isnan(daily.loc["2020-01-03", "high"])
    intraday = r.candle_frame(body, "AAA", daily=False)
    assert str(intraday.index.tz) == "UTC" and intraday.index.name == "time"
    assert r.candle_frame({"s": "no_data"}, "AAA", daily=True).empty
    with pytest.raises(FinnhubError, match="arrays of different lengths"):
        r.candle_frame({**body, "c": [1]}, "AAA", daily=True)
    with pytest.raises(FinnhubError, match="status 'error'"):
        r.candle_frame({**body, "s": "error"}, "AAA", daily=True)


def test_alt_data_parsers_rename_sort_and_refuse_the_wrong_shape():
    recs = r.parse_recommendations([{"period": "2020-01-01", "strongBuy": 3}, {"period": "2020-02-01", "buy": "2"},
                                    7], "AAA")
    assert [x["period"] for x in recs] == ["2020-02-01", "2020-01-01"] and recs[0]["buy"] == 2
    insider = r.parse_insider_sentiment({"data": [{"year": 2020, "month": 3, "mspr": -40},
                                                  {"year": 2020, "month": 1, "change": 1e3}]}, "AAA")
    assert [(x["year"], x["month"]) for x in insider] == [(2020, 1), (2020, 3)]
    fin = r.parse_basic_financials({"metric": {"peTTM": None, "peBasicExclExtraTTM": 18.5, "beta": "x"}}, "AAA")
    assert fin["pe_ttm"] == 18.5 and fin["beta"] is None and fin["symbol"] == "AAA"
    assert r.parse_forex_rates({"quote": {"EUR": 0.9, "XXX": float("nan"), "JPY": "110"}}, "USD") == {
        "EUR": 0.9, "JPY": 110.0}
    for parse, bad in ((r.parse_recommendations, {}), (r.parse_insider_sentiment, []),
                       (r.parse_basic_financials, {"metric": []}), (r.parse_forex_rates, {"quote": 1})):
        with pytest.raises(FinnhubError):
            parse(bad, "AAA")
    with pytest.raises(FinnhubError):
        r.parse_earnings_calendar({"earningsCalendar": "no"})
