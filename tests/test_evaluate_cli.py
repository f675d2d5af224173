"""``python -m graph.evaluate``: a tiny evaluation end to end, resume, and bad arguments."""

from __future__ import annotations

import json

import pytest

from graph.evaluate.__main__ import main
from tests.conftest import synthetic_frame

pytestmark = pytest.mark.usefixtures("clean_env")

SYMBOLS = {f"S{i:02d}": 0.3 - 0.06 * i for i in range(10)}


@pytest.fixture
def small_csv(tmp_path):
    path = tmp_path / "ten.csv"
    synthetic_frame(SYMBOLS, days=62).to_csv(path, index=False)  # 50 bars of history + 11 decision days
    return path


def _args(csv, out, *extra):
    return ["--data-csv", str(csv), "--out", str(out), "--windows", "2", "--window-days", "6", "--stride", "3",
            "--universes", "2", "--universe-size", "6", "--jobs", "1", "--no-progress", "--json", *extra]


def test_tiny_evaluation_runs_resumes_and_reports(small_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a live ./.volt here must stay untouched
    monkeypatch.setenv("VOLT_HORIZON_DAYS", "20")  # longer than the windows, whatever the default is
    out = tmp_path / "ev"
    assert main(_args(small_csv, out)) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["cells"] == 4 and s["windows"] == 2 and s["universes"] == 2 and s["symbols_per_universe"] == [6]
    assert set(s["arms"]) == {"on", "off", "buy_and_hold", "sma_crossover", "rsi_rule"}
    assert s["arms"]["off"]["overrides"] == {"learning": False}
    e = s["on_minus_off"]
    assert e["calendar_days"] == 9 and e["cell_days"] == 24  # 2 windows of 6 days, 3 apart, x 2 universes
    assert e["ci_low"] <= e["mean_daily"] <= e["ci_high"]
    p = s["placebo"]
    assert p["pairs"] == 0  # 3 shared days < the 5-day minimum: said, not faked
    assert any("placebo could not be run" in v for v in s["verdict"])
    # 6-day windows, a 20-day prediction horizon: learning cannot act, and the report says so
    assert s["horizon_days"] == 20 and any("no prediction resolves inside a window" in v for v in s["verdict"])
    assert e["mean_daily"] == 0 and any("same returns on every day" in v for v in s["verdict"])
    assert set(s["deflated_sharpe"]) == set(s["arms"])
    for name in ("summary.json", "report.html"):
        assert (out / name).exists()
    assert "What the data can and cannot resolve" in (out / "report.html").read_text()
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert cells == ["w00-u0", "w00-u1", "w01-u0", "w01-u1"]
    assert not (out / "cells" / "w00-u0" / "on" / "state").exists()  # replay state dropped after arm.json
    assert not (tmp_path / ".volt").exists()

    # resume: finished cells are skipped (a marker in one summary survives) and the result is the same
    marker = out / "cells" / "w00-u0" / "summary.json"
    data = json.loads(marker.read_text())
    data["marker"] = True
    marker.write_text(json.dumps(data))
    assert main(_args(small_csv, out, "--resume")) == 0
    again = json.loads(capsys.readouterr().out)
    assert json.loads(marker.read_text())["marker"] is True
    assert again["on_minus_off"]["mean_daily"] == e["mean_daily"]
    assert s["replays"] == {"total": 8, "reused": 0} and again["replays"] == {"total": 8, "reused": 8}
    # resuming with other settings is refused in one line
    assert main(_args(small_csv, out, "--resume", "--seed", "7")) == 2
    err = capsys.readouterr().err.strip()
    assert "other settings (seed)" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv, needle", [
    (["--windows", "0"], "--windows must be at least 1"),
    (["--window-days", "x"], "invalid int value"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_arguments_exit_2_in_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_operational_errors_are_one_line(small_csv, tmp_path, capsys):
    assert main(["--data-csv", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "not found" in capsys.readouterr().err
    # 12 windows of 20 days do not fit in 11 decision days
    assert main(["--data-csv", str(small_csv), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "does not fit" in capsys.readouterr().err
    assert main(["--data-csv", str(small_csv), "--out", str(tmp_path / "o"), "--universe-size", "0",
                 "--windows", "1", "--window-days", "5", "--no-progress"]) == 2
    assert "every universe would be the same" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "none"), "--resume", "--no-progress"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["--data-csv", str(small_csv), "--out", str(tmp_path / "o"), "--arms", "on,bogus"]) == 2
    assert "unknown arm(s) bogus" in capsys.readouterr().err
    assert main(["--data-csv", str(small_csv), "--out", str(tmp_path / "o"), "--arms", "on,on"]) == 2
    assert "distinct" in capsys.readouterr().err
    (tmp_path / "foreign" / "cells").mkdir(parents=True)  # not ours: never deleted
    assert main(["--data-csv", str(small_csv), "--out", str(tmp_path / "foreign"), "--windows", "1",
                 "--window-days", "5", "--universes", "1", "--universe-size", "3", "--no-progress"]) == 2
    assert "not an evaluation's" in capsys.readouterr().err and (tmp_path / "foreign" / "cells").exists()
