"""Market data for the dashboard: the home's data set, the equal-weight index, indicator series.

The data set is the one the home's settings name (``VOLT_DATA_CSV`` or the embedded replay
data), loaded once in a background thread so that the first page paints without waiting for
it (about 2 s for the embedded year); until then the figures that need it say so.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd

from tools.indicators import compute_indicators
from tools.market_data import MarketDataset, load_dataset


class MarketView:
    """The data set behind a home, loaded lazily (``start()``), with derived series."""

    def __init__(self, data_csv: Path | str | None = None):
        self.data_csv = data_csv
        self._dataset: MarketDataset | None = None
        self.error: str | None = None
        self._ready = threading.Event()
        self._started = False
        self._lock = threading.Lock()
        self._index: pd.Series | None = None

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._load, name="dashboard-dataset", daemon=True).start()

    def _load(self) -> None:
        try:
            self._dataset = load_dataset(self.data_csv)
        except Exception as exc:  # a bad CSV is shown on the page, not raised in a callback
            self.error = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        finally:
            self._ready.set()

    def dataset(self, wait_s: float = 0.0) -> MarketDataset | None:
        """The data set, or None while it loads (waiting up to ``wait_s`` seconds) or failed."""
        self.start()
        self._ready.wait(wait_s)
        return self._dataset

    def symbols(self) -> list[str]:
        ds = self.dataset()
        return list(ds.symbols) if ds is not None else []

    def equal_weight_index(self) -> pd.Series | None:
        """Cumulative growth of 1 in an equal-weight, daily-rebalanced basket of every symbol
        listed on each day (mean of the day's close-to-close returns over symbols with both
        closes), indexed by day. None while the data set loads."""
        ds = self.dataset()
        if ds is None:
            return None
        if self._index is None:
            returns = ds.close_panel.pct_change(fill_method=None)
            self._index = (1 + returns.mean(axis=1, skipna=True).fillna(0.0)).cumprod()
        return self._index

    def indicators(self, symbol: str) -> pd.DataFrame | None:
        """Bars (adjusted) joined with SMA20/50, Bollinger, RSI14 and MACD for one symbol."""
        ds = self.dataset()
        if ds is None or symbol not in ds.bars:
            return None
        bars = ds.bars[symbol]
        if len(bars) < 2:
            return None
        return bars.join(compute_indicators(bars))


def index_against(equity: pd.DataFrame, index: pd.Series | None) -> pd.Series | None:
    """The index rebased to the first cycle's equity, on the cycles' days (as_of strings).
    None when there is no index or no overlap."""
    if index is None or equity.empty:
        return None
    days = pd.to_datetime(equity["as_of"])
    aligned = index.reindex(days, method="ffill")
    if aligned.isna().all():
        return None
    base = aligned.dropna().iloc[0]
    return pd.Series((aligned / base * float(equity["equity"].iloc[0])).to_numpy(), index=equity["as_of"].to_numpy())
