"""The point-in-time view the agent tools read: data up to ``as_of`` and the ledger.

It is passed to tools as an injected argument, so a model can never choose it: every
tool call sees exactly what the agent is allowed to see.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from memory.ledger import Ledger
from tools.market_data import MarketDataset


@dataclass(frozen=True)
class ToolView:
    dataset: MarketDataset
    as_of: pd.Timestamp
    ledger: Ledger
    portfolio: str
    min_history: int = 50

    def last_close(self, symbol: str) -> float | None:
        bars = self.dataset.history(symbol, self.as_of)
        return float(bars["close"].iloc[-1]) if len(bars) else None
