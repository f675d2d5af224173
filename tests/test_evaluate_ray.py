"""``python -m graph.evaluate --ray``: the replays as Ray tasks give the process pool's summary.

A tiny evaluation (2 windows x 1 universe x the on/off arms, 6 symbols, 6-day windows) runs
once in the spawned process pool and once on a local Ray (2 CPUs, no dashboard, nothing
leaves 127.0.0.1); summary.json and every cell summary are equal but for timings. Skipped
when Ray is missing unless VOLT_TEST_REQUIRE_RAY=1.
"""

from __future__ import annotations

import json
import os

import pytest

from graph.evaluate.__main__ import main
from tests.conftest import synthetic_frame

if os.environ.get("VOLT_TEST_REQUIRE_RAY") == "1":
    import ray
else:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

pytestmark = [pytest.mark.usefixtures("clean_env"), pytest.mark.slow]

SYMBOLS = {f"S{i:02d}": 0.3 - 0.06 * i for i in range(8)}


def _args(csv, out, *extra):
    return ["--data-csv", str(csv), "--out", str(out), "--windows", "2", "--window-days", "6", "--stride", "3",
            "--universes", "1", "--universe-size", "6", "--arms", "on,off", "--no-progress", "--json", *extra]


def _without_timings(data):
    """``data`` with every timing left out (seconds, wall and cell times), recursively."""
    if isinstance(data, dict):
        return {k: _without_timings(v) for k, v in data.items() if k not in ("timing", "seconds")}
    if isinstance(data, list):
        return [_without_timings(v) for v in data]
    return data


@pytest.fixture
def local_ray(monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_gives_the_summary_of_the_process_pool(tmp_path, capsys, monkeypatch, local_ray):
    monkeypatch.chdir(tmp_path)
    # a 3-day horizon: predictions resolve inside the 6-day windows, so the on and off arms differ
    monkeypatch.setenv("VOLT_HORIZON_DAYS", "3")
    csv = tmp_path / "eight.csv"
    synthetic_frame(SYMBOLS, days=62).to_csv(csv, index=False)

    assert main(_args(csv, tmp_path / "pool", "--jobs", "2")) == 0
    pool = json.loads(capsys.readouterr().out)
    assert main(_args(csv, tmp_path / "ray", "--jobs", "2", "--ray")) == 0
    on_ray = json.loads(capsys.readouterr().out)

    assert pool["cells"] == on_ray["cells"] == 2 and set(on_ray["arms"]) == {"on", "off"}
    assert _without_timings(on_ray) == _without_timings(pool)
    for cell in ("w00-u0", "w01-u0"):
        for name in ("summary.json", "on/arm.json", "off/arm.json"):
            by_pool = json.loads((tmp_path / "pool" / "cells" / cell / name).read_text())
            by_ray = json.loads((tmp_path / "ray" / "cells" / cell / name).read_text())
            assert _without_timings(by_ray) == _without_timings(by_pool), (cell, name)
    # learning acted (predictions resolved in the windows), so the two arms are a real comparison
    assert on_ray["agents"]["on"] and on_ray["agents"] == pool["agents"]


def test_ray_tasks_run_in_workers_with_the_drivers_settings_and_fail_in_one_line(local_ray, monkeypatch):
    from graph.evaluate.executors import run_tasks
    from graph.evaluate.windows import EvaluateError

    results = {}
    run_tasks(int, [("a", ("7",)), ("b", ("8",))], results.__setitem__, ray="local")
    assert results == {"a": 7, "b": 8}
    run_tasks(os.getpid, [("pid", ())], results.__setitem__, ray="local")
    assert results["pid"] != os.getpid()  # a Ray worker process, not the driver
    # the workers started before these variables were set: each task still sees the driver's
    monkeypatch.setenv("VOLT_TOP_K", "7")
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")
    run_tasks(os.environ.get, [(k, (k,)) for k in ("VOLT_TOP_K", "OLLAMA_HOST")], results.__setitem__, ray="")
    assert results["VOLT_TOP_K"] == "7" and results["OLLAMA_HOST"] == "127.0.0.1:9"
    monkeypatch.delenv("VOLT_TOP_K")  # ... and no longer once the driver has dropped it
    run_tasks(os.environ.get, [("gone", ("VOLT_TOP_K",))], results.__setitem__, ray="")
    assert results["gone"] is None
    with pytest.raises(EvaluateError) as failed:
        run_tasks(int, [("good", ("1",)), ("bad", ("x",))], results.__setitem__, ray="local",
                  label=lambda key: f"cell {key}")
    assert str(failed.value).startswith("cell bad: ValueError: invalid literal") and "\n" not in str(failed.value)
