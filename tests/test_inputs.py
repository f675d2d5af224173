"""Inputs that used to be accepted and should not be: a non-ISO --as-of, non-finite money."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest
from pydantic import ValidationError

from graph.errors import CycleDateError
from graph.run import main, run_cycle
from graph.settings import VoltSettings
from memory.ledger import Ledger
from nodes.prepare_cycle import iso_day, resolve_as_of
from tools.market_data import load_dataset

BAD_DAYS = ["11/20/2009", "2009-13-01", "20091120", "today", "2020-02-30", "2020-3-10", " 2020-03-10",
            "2020-03-10T00:00", "2020-03-10 ", "２０２０-０３-１０", "", "-2020-03-10"]


@pytest.mark.parametrize("text", BAD_DAYS)
def test_iso_day_refuses_everything_but_yyyy_mm_dd(text):
    with pytest.raises(CycleDateError, match="is not a date"):
        iso_day(text)


def test_iso_day_accepts_a_real_date():
    assert iso_day("2009-11-20") == pd.Timestamp("2009-11-20")
    assert iso_day("2020-02-29") == pd.Timestamp("2020-02-29")  # a leap day


def test_resolve_as_of_pinned_us_date_is_refused_not_reinterpreted(market_csv):
    dataset = load_dataset(market_csv)
    day = dataset.calendar[60]
    us = f"{day:%m/%d/%Y}"  # pandas would read this as the very same day
    assert pd.Timestamp(us) == day
    with pytest.raises(CycleDateError, match="use YYYY-MM-DD"):
        resolve_as_of(dataset, None, us, 50)
    assert resolve_as_of(dataset, None, f"{day:%Y-%m-%d}", 50) == day


def ledger_digest(settings) -> str | None:
    path = settings.ledger_path
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.mark.parametrize("text", ["11/20/2009", "2009-13-01", "20091120", "today"])
def test_bad_as_of_is_one_line_exit_2_and_changes_nothing(market_csv, settings_for, capsys, text):
    settings = settings_for(market_csv, models=[])
    run_cycle(settings)
    before, last = ledger_digest(settings), Ledger(settings.ledger_path).last_completed_cycle("main")
    capsys.readouterr()
    assert main(["--home", str(settings.home), "--data-csv", str(market_csv), "--models", "", "--as-of", text]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --as-of {text!r} is not a date")
    assert ledger_digest(settings) == before
    assert Ledger(settings.ledger_path).last_completed_cycle("main") == last
    # nothing was skipped: the next run is the next trading day
    assert main(["--home", str(settings.home), "--data-csv", str(market_csv), "--models", ""]) == 0
    dataset = load_dataset(market_csv)
    following = dataset.calendar[dataset.calendar > pd.Timestamp(last["as_of"])][0]
    assert Ledger(settings.ledger_path).last_completed_cycle("main")["as_of"] == f"{following:%Y-%m-%d}"


def test_bad_as_of_on_a_new_home_creates_nothing(market_csv, tmp_path, clean_env, capsys):
    home = tmp_path / "fresh"
    assert main(["--home", str(home), "--data-csv", str(market_csv), "--as-of", "11/20/2009"]) == 2
    assert not home.exists()


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "NaN", "1e309", "-5", "0", "abc"])
def test_starting_cash_must_be_finite_and_positive(market_csv, tmp_path, clean_env, monkeypatch, capsys, value):
    monkeypatch.setenv("VOLT_STARTING_CASH", value)
    home = tmp_path / "h"
    assert main(["--home", str(home), "--data-csv", str(market_csv), "--models", ""]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"error: invalid configuration: VOLT_STARTING_CASH={value!r} (starting_cash): ")
    assert not home.exists()  # refused before anything was created


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 0.0, -1.0])
def test_starting_cash_model_refuses_non_finite_values(clean_env, value):
    with pytest.raises(ValidationError):
        VoltSettings(starting_cash=value)
    assert VoltSettings(starting_cash=1e12).starting_cash == 1e12


def test_learning_cli_bad_setting_is_one_line(tmp_path, clean_env, monkeypatch, capsys):
    from graph.learning import main as learning_main

    monkeypatch.setenv("VOLT_STARTING_CASH", "inf")
    assert learning_main(["--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "VOLT_STARTING_CASH='inf'" in err
