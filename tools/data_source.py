"""The market data a run sees: the replay CSV (embedded or the user's) or the live bars.

Every node asks :func:`market_dataset` rather than reading a file, so the same graph runs
on replay and on live data. The live source's data set is built by the runner before the
cycle starts (:func:`set_live_dataset`) and read here for the rest of that cycle.
"""

from __future__ import annotations

import threading

from graph.errors import OperationalError
from graph.settings import VoltSettings
from tools.market import DataOptions
from tools.market_data import MarketDataset, load_dataset

_live: dict[str, MarketDataset] = {}
_lock = threading.Lock()


def _key(settings: VoltSettings) -> str:
    return f"{settings.home.resolve()}::{settings.portfolio}"


def set_live_dataset(settings: VoltSettings, dataset: MarketDataset) -> None:
    with _lock:
        _live[_key(settings)] = dataset


def market_dataset(settings: VoltSettings) -> MarketDataset:
    if settings.source == "replay":
        # the data options are part of the cache key: a changed setting is a new data set
        return load_dataset(settings.data_csv, DataOptions.from_settings(settings))
    with _lock:
        dataset = _live.get(_key(settings))
    if dataset is None:
        raise OperationalError(f"no live data loaded for source {settings.source!r}: run cycles with `python -m graph.run`")
    return dataset
