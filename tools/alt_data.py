"""Alternative and cross-asset data for the specialist agents, behind one small interface.

Replay has none of it (the embedded set is prices only), so :class:`ReplayAltData`
answers ``None`` everywhere and the specialists abstain. The live source answers from
Finnhub; an endpoint the plan refuses also answers ``None`` (recorded as unavailable).

News text is untrusted input: :func:`clean_headline` keeps it as short, printable data.
"""

from __future__ import annotations

import math
import re
from typing import Protocol

MAX_HEADLINE = 200
MAX_SUMMARY = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean_headline(text: str | None, limit: int = MAX_HEADLINE) -> str:
    return _CONTROL.sub(" ", str(text or "")).strip()[:limit]


class AltDataProvider(Protocol):
    name: str

    def news(self, symbol: str, as_of: str) -> list[dict] | None: ...
    def news_sentiment(self, symbol: str) -> dict | None: ...
    def insider_sentiment(self, symbol: str, as_of: str) -> dict | None: ...
    def recommendations(self, symbol: str) -> dict | None: ...
    def forex_rates(self, base: str) -> dict | None: ...
    def crypto_trend(self, as_of: str) -> dict | None: ...
    def unavailable(self) -> list[str]: ...


class ReplayAltData:
    """The embedded replay data set has no news, fundamentals, forex or crypto."""

    name = "replay"

    def news(self, symbol, as_of):
        return None

    def news_sentiment(self, symbol):
        return None

    def insider_sentiment(self, symbol, as_of):
        return None

    def recommendations(self, symbol):
        return None

    def forex_rates(self, base):
        return None

    def crypto_trend(self, as_of):
        return None

    def unavailable(self) -> list[str]:
        return ["news", "news_sentiment", "insider_sentiment", "recommendations", "forex", "crypto"]


def finite(x) -> bool:
    """A real number (not bool, NaN or inf): provider payloads may hold anything."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def is_forex_pair(symbol: str) -> bool:
    """Finnhub forex symbols look like ``OANDA:EUR_USD``."""
    return bool(re.fullmatch(r"[A-Z]+:[A-Z]{3}_[A-Z]{3}", symbol))
