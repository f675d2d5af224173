"""The specialists' data from Finnhub (an :class:`tools.alt_data.AltDataProvider`).

An endpoint the plan refuses (or that fails) answers ``None`` and stays recorded in the
gateway's ``unavailable`` set, so the dependent agent abstains instead of failing the cycle.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

import pandas as pd

from tools.finnhub.errors import FinnhubError
from tools.finnhub.gateway import FinnhubGateway

log = logging.getLogger("volt.finnhub")
NEWS_DAYS = 7
BTC = "BINANCE:BTCUSDT"


class FinnhubAltData:
    name = "finnhub"

    def __init__(self, gateway: FinnhubGateway):
        self.gateway = gateway

    def _try(self, what: str, call):
        try:
            return call()
        except FinnhubError as exc:  # refused, temporary or malformed: this agent abstains
            log.info("finnhub %s unavailable: %s", what, self.gateway.redact(str(exc)))
            return None

    def news(self, symbol, as_of):
        day = date.fromisoformat(as_of[:10])
        return self._try("news", lambda: self.gateway.company_news(symbol, day - timedelta(days=NEWS_DAYS), day, limit=8))

    def news_sentiment(self, symbol):
        body = self._try("news sentiment", lambda: self.gateway.news_sentiment(symbol))
        if not body:
            return None
        return {"companyNewsScore": body.get("company_news_score"),
                "sentiment": {"bullishPercent": body.get("bullish_percent"), "bearishPercent": body.get("bearish_percent")},
                "buzz": body.get("buzz")}

    def insider_sentiment(self, symbol, as_of):
        day = date.fromisoformat(as_of[:10])
        rows = self._try("insider sentiment", lambda: self.gateway.insider_sentiment(symbol, day - timedelta(days=92), day))
        return {"mspr": rows[-1]["mspr"], "month": f"{rows[-1]['year']}-{rows[-1]['month']:02d}"} if rows else None

    def recommendations(self, symbol):
        rows = self._try("recommendations", lambda: self.gateway.recommendation_trends(symbol))
        if not rows:
            return None
        r = rows[0]
        return {"strongBuy": r["strong_buy"], "buy": r["buy"], "hold": r["hold"], "sell": r["sell"],
                "strongSell": r["strong_sell"], "period": r["period"]}

    def forex_rates(self, base):
        rates = self._try("forex rates", lambda: self.gateway.forex_rates(base))
        return {"base": base, "quote": rates} if rates else None

    def crypto_trend(self, as_of):
        day = date.fromisoformat(as_of[:10])
        frame = self._try("crypto candles", lambda: self.gateway.crypto_candles(BTC, "D", day - timedelta(days=90), day))
        if frame is None or len(frame) < 50:
            return None
        close = frame["close"]
        return {"btc_trend_vs_sma50": round(float(close.iloc[-1] / close.iloc[-50:].mean() - 1.0), 6),
                "btc_close": float(close.iloc[-1]), "as_of": f"{pd.Timestamp(frame.index[-1]):%Y-%m-%d}"}

    def unavailable(self) -> list[str]:
        return sorted(self.gateway.unavailable)
