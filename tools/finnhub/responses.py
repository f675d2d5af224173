"""Finnhub's response bodies as VOLT's plain data: validated, renamed, sorted.

Pure functions, no I/O: each takes the parsed JSON body of one endpoint (untrusted data) and
returns dicts, lists or a pandas frame in VOLT's names (``strong_buy``, not ``strongBuy``).
A body of the wrong shape raises :class:`~tools.finnhub.errors.FinnhubError`; a number that
is missing, not a number, NaN or infinite becomes ``None``; items that are not objects are
skipped. :class:`~tools.finnhub.gateway.FinnhubGateway` fetches the bodies and calls these.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from tools.finnhub.errors import FinnhubError

CANDLE_COLUMNS = ("open", "high", "low", "close", "volume")

# The metrics worth an agent's attention, each with Finnhub's metric names in order of preference.
# Ratios are in percent as Finnhub gives them (roeTTM 25.3 means 25.3%).
FINANCIAL_METRICS: dict[str, tuple[str, ...]] = {
    "eps_ttm": ("epsTTM", "epsBasicExclExtraItemsTTM", "epsInclExtraItemsTTM", "epsExclExtraItemsTTM"),
    "eps_growth_ttm_yoy": ("epsGrowthTTMYoy",),
    "pe_ttm": ("peTTM", "peBasicExclExtraTTM", "peExclExtraTTM"),
    "pb": ("pbQuarterly", "pbAnnual"),
    "roe_ttm": ("roeTTM", "roeRfy"),
    "roa_ttm": ("roaTTM", "roaRfy"),
    "gross_margin_ttm": ("grossMarginTTM", "grossMarginAnnual"),
    "operating_margin_ttm": ("operatingMarginTTM", "operatingMarginAnnual"),
    "net_margin_ttm": ("netProfitMarginTTM", "netProfitMarginAnnual"),
    "dividend_yield": ("dividendYieldIndicatedAnnual", "currentDividendYieldTTM"),
    "revenue_growth_ttm_yoy": ("revenueGrowthTTMYoy",),
    "current_ratio": ("currentRatioQuarterly", "currentRatioAnnual"),
    "debt_to_equity": ("totalDebt/totalEquityQuarterly", "totalDebt/totalEquityAnnual"),
    "beta": ("beta",),
    "week52_high": ("52WeekHigh",),
    "week52_low": ("52WeekLow",),
    "market_cap": ("marketCapitalization",),
}


def parse_quote(body: Any, symbol: str) -> dict[str, Any]:
    """``c`` current, ``h``/``l``/``o`` of the day, ``pc`` previous close, ``d``/``dp`` change
    (floats or ``None``), ``t`` unix seconds (0 when missing), plus ``symbol``."""
    if not isinstance(body, dict) or "c" not in body:
        raise FinnhubError(f"Finnhub quote {symbol}: unexpected response shape")
    out = {k: body.get(k) for k in ("c", "d", "dp", "h", "l", "o", "pc", "t")}
    for k in ("c", "h", "l", "o", "pc", "d", "dp"):
        out[k] = _float(out[k])
    out["t"] = int(body.get("t") or 0)
    out["symbol"] = symbol
    return out


def parse_splits(body: Any, start: date, end: date) -> list[dict[str, Any]]:
    """``[{"date": "YYYY-MM-DD", "ratio": new/old}]`` effective ``start``..``end``, oldest
    first. Entries that are not a date with finite positive factors are dropped; a body that
    is not a list is no splits."""
    out: list[dict[str, Any]] = []
    for item in body if isinstance(body, list) else []:
        if not isinstance(item, dict):
            continue
        new, old, day = _float(item.get("toFactor")), _float(item.get("fromFactor")), item.get("date")
        try:
            when = date.fromisoformat(str(day))
        except ValueError:
            continue
        if new and old and new > 0 and old > 0 and start <= when <= end:
            out.append({"date": f"{when:%Y-%m-%d}", "ratio": new / old})
    return sorted(out, key=lambda x: x["date"])


def parse_company_news(body: Any, symbol: str, limit: int | None = None) -> list[dict]:
    """Articles with a headline, newest first, at most ``limit``: ``headline``, ``summary``,
    ``source``, ``datetime`` (ISO UTC, ``""`` when missing), ``url``, ``id``, ``category``,
    ``related``."""
    if not isinstance(body, list):
        raise FinnhubError(f"Finnhub company-news {symbol}: unexpected response shape")
    items = []
    for raw in body:
        if not isinstance(raw, dict) or not raw.get("headline"):
            continue
        ts = int(raw.get("datetime") or 0)
        items.append({
            "headline": str(raw.get("headline", "")).strip(),
            "summary": str(raw.get("summary") or "").strip(),
            "source": str(raw.get("source") or ""),
            "datetime": _iso(ts),
            "url": str(raw.get("url") or ""),
            "id": raw.get("id"),
            "category": str(raw.get("category") or ""),
            "related": str(raw.get("related") or ""),
            "_ts": ts,
        })
    items.sort(key=lambda i: i["_ts"], reverse=True)
    for item in items:
        del item["_ts"]
    return items[:limit] if limit is not None else items


def parse_news_sentiment(body: Any, symbol: str) -> dict[str, Any]:
    """News buzz and sentiment, numbers as Finnhub gives them (``None`` where missing)."""
    if not isinstance(body, dict):
        raise FinnhubError(f"Finnhub news-sentiment {symbol}: unexpected response shape")
    buzz = body.get("buzz") or {}
    sentiment = body.get("sentiment") or {}
    return {
        "symbol": symbol,
        "articles_in_last_week": _int(buzz.get("articlesInLastWeek")),
        "buzz": _float(buzz.get("buzz")),
        "weekly_average": _float(buzz.get("weeklyAverage")),
        "bullish_percent": _float(sentiment.get("bullishPercent")),
        "bearish_percent": _float(sentiment.get("bearishPercent")),
        "company_news_score": _float(body.get("companyNewsScore")),
        "sector_average_bullish_percent": _float(body.get("sectorAverageBullishPercent")),
        "sector_average_news_score": _float(body.get("sectorAverageNewsScore")),
    }


def parse_insider_sentiment(body: Any, symbol: str) -> list[dict[str, Any]]:
    """Monthly rows, oldest first: ``year``, ``month``, ``change`` (net shares), ``mspr``
    (monthly share purchase ratio, -100..100)."""
    rows = body.get("data") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise FinnhubError(f"Finnhub insider-sentiment {symbol}: unexpected response shape")
    out = [
        {"year": _int(r.get("year")), "month": _int(r.get("month")), "change": _float(r.get("change")),
         "mspr": _float(r.get("mspr"))}
        for r in rows if isinstance(r, dict)
    ]
    return sorted(out, key=lambda r: (r["year"] or 0, r["month"] or 0))


def parse_recommendations(body: Any, symbol: str) -> list[dict[str, Any]]:
    """Analyst recommendation counts per month (``period`` YYYY-MM-DD), newest first."""
    if not isinstance(body, list):
        raise FinnhubError(f"Finnhub recommendation {symbol}: unexpected response shape")
    out = [
        {"period": str(r.get("period", "")), "strong_buy": _int(r.get("strongBuy")), "buy": _int(r.get("buy")),
         "hold": _int(r.get("hold")), "sell": _int(r.get("sell")), "strong_sell": _int(r.get("strongSell"))}
        for r in body if isinstance(r, dict)
    ]
    return sorted(out, key=lambda r: r["period"], reverse=True)


def parse_basic_financials(body: Any, symbol: str) -> dict[str, Any]:
    """The metrics of :data:`FINANCIAL_METRICS`, each the first of its Finnhub names that has
    a finite number, ``None`` where none has; plus ``symbol``."""
    metric = body.get("metric") if isinstance(body, dict) else None
    if not isinstance(metric, dict):
        raise FinnhubError(f"Finnhub basic financials {symbol}: unexpected response shape")
    out: dict[str, Any] = {"symbol": symbol}
    for name, keys in FINANCIAL_METRICS.items():
        out[name] = next((v for k in keys if (v := _float(metric.get(k))) is not None), None)
    return out


def parse_earnings_calendar(body: Any) -> list[dict[str, Any]]:
    """Earnings releases sorted by (date, symbol): EPS and revenue estimates and actuals
    (``None`` until reported), ``hour`` as Finnhub gives it (``""`` when missing)."""
    rows = body.get("earningsCalendar") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise FinnhubError("Finnhub earnings calendar: unexpected response shape")
    out = [
        {"symbol": str(r.get("symbol", "")), "date": str(r.get("date", "")), "hour": str(r.get("hour") or ""),
         "eps_estimate": _float(r.get("epsEstimate")), "eps_actual": _float(r.get("epsActual")),
         "revenue_estimate": _float(r.get("revenueEstimate")),
         "revenue_actual": _float(r.get("revenueActual")),
         "quarter": _int(r.get("quarter")), "year": _int(r.get("year"))}
        for r in rows if isinstance(r, dict)
    ]
    return sorted(out, key=lambda r: (r["date"], r["symbol"]))


def parse_forex_rates(body: Any, base: str) -> dict[str, float]:
    """Units of each currency per one ``base``; currencies without a finite rate are left out."""
    quote = body.get("quote") if isinstance(body, dict) else None
    if not isinstance(quote, dict):
        raise FinnhubError(f"Finnhub forex rates {base}: unexpected response shape")
    return {str(k): v for k, raw in quote.items() if (v := _float(raw)) is not None}


def empty_bars(index_name: str = "date", utc: bool = False) -> pd.DataFrame:
    """An OHLCV frame with no rows: float columns :data:`CANDLE_COLUMNS`, a DatetimeIndex
    named ``index_name`` (tz-aware UTC when ``utc``)."""
    index = pd.DatetimeIndex([], tz="UTC" if utc else None, name=index_name)
    return pd.DataFrame({c: pd.Series(dtype=float) for c in CANDLE_COLUMNS}, index=index)


def candle_frame(body: Any, what: str, *, daily: bool) -> pd.DataFrame:
    """Finnhub's column arrays (``o``, ``h``, ``l``, ``c``, ``v``, ``t``, ``s``) as a frame.

    Daily bars are indexed by their UTC date (Finnhub stamps a daily candle at 00:00 UTC of
    the trading day); intraday bars by tz-aware UTC time. ``no_data`` (or no times) is an
    empty frame; a later duplicate time replaces an earlier one; values that are not numbers
    become NaN. ``what`` names the request in error messages.
    """
    if not isinstance(body, dict):
        raise FinnhubError(f"Finnhub candles {what}: unexpected response shape")
    status = body.get("s")
    if status == "no_data" or not body.get("t"):
        return empty_bars("date" if daily else "time", utc=not daily)
    if status not in ("ok", None):
        raise FinnhubError(f"Finnhub candles {what}: status {status!r}")
    t = body["t"]
    arrays = {name: body.get(key) for name, key in zip(CANDLE_COLUMNS, "ohlcv", strict=True)}
    if any(not isinstance(a, list) or len(a) != len(t) for a in arrays.values()):
        raise FinnhubError(f"Finnhub candles {what}: arrays of different lengths")
    when = pd.to_datetime(pd.Series(t, dtype="int64"), unit="s", utc=True)
    if daily:
        index = pd.DatetimeIndex(when.dt.tz_localize(None).dt.normalize(), name="date")
    else:
        index = pd.DatetimeIndex(when, name="time")
    frame = pd.DataFrame({k: pd.to_numeric(pd.Series(v), errors="coerce").to_numpy(dtype=float)
                          for k, v in arrays.items()}, index=index)
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    return frame


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts > 0 else ""


def _float(value: Any) -> float | None:
    """A finite float, or ``None`` (missing, a bool, not a number, NaN, infinite)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out and out not in (float("inf"), float("-inf")) else None


def _int(value: Any) -> int | None:
    f = _float(value)
    return None if f is None else int(f)
