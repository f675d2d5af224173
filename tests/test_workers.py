"""Several portfolios, several worker processes (``graph.run --portfolios``, graph/worker.py):
each portfolio owned by one worker at a time, none lost or doubled, and a killed worker's
portfolio taken over and resumed by another.

All portfolios trade the same data with the same settings and a scripted model that trades
every day, so each one's ledger must equal a single process's run of one portfolio, fill for
fill."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from graph.worker import parse_portfolios, visiting_order
from memory.db import DatabaseURL, open_db
from tests.conftest import synthetic_frame

HELPER = Path(__file__).with_name("worker_helper.py")
PORTFOLIOS = ["p1", "p2", "p3", "p4"]
REPLAY_DAYS = 20  # 50 bars of history, then 20 decision days


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "market.csv"
    synthetic_frame({"AAA": 0.25, "BBB": 0.15, "CCC": -0.05, "DDD": 0.1}, days=50 + REPLAY_DAYS).to_csv(path, index=False)
    return path


def _env(database_url: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not (k.startswith("VOLT_") or k == "OLLAMA_HOST")}
    if database_url:
        env["VOLT_DATABASE_URL"] = database_url
    return {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


class Worker:
    """A worker process whose output goes to files: with pipes, a worker blocked on a full pipe
    nobody reads would hold its portfolio's lock forever."""

    def __init__(self, home: Path, csv: Path, portfolios: list[str], *, die_after_fills: int = 0,
                 database_url: str | None = None):
        env = _env(database_url)
        if die_after_fills:
            env["VOLT_TEST_DIE_AFTER_FILLS"] = str(die_after_fills)
        args = ["--home", str(home), "--data-csv", str(csv), "--models", "m1", "--top-k", "2", "--json",
                "--loop", "0", "--portfolios", ",".join(portfolios)]
        home.parent.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = (home.parent / f"{home.name}-{id(self)}.{k}" for k in ("out", "err"))
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen([sys.executable, str(HELPER), *args], env=env, stdout=out, stderr=err)

    def wait(self, timeout: float = 300) -> tuple[int, str, str]:
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return rc, self.out_path.read_text(), self.err_path.read_text()


def worker(home: Path, csv: Path, portfolios: list[str], *, die_after_fills: int = 0,
           database_url: str | None = None) -> Worker:
    return Worker(home, csv, portfolios, die_after_fills=die_after_fills, database_url=database_url)


def ledger_rows(target: Path | DatabaseURL, portfolio: str) -> dict:
    """A portfolio's fills, cycles and order statuses, from a home's volt.db or a database URL."""
    with open_db(target) as conn:
        def rows(sql: str) -> list[tuple]:
            return [tuple(r) for r in conn.execute(sql, (portfolio,)).fetchall()]

        return {"fills": rows("SELECT fill_date, symbol, side, qty, price, fee FROM fills WHERE portfolio=?"
                              " ORDER BY fill_date, symbol"),
                "cycles": rows("SELECT as_of, equity, cash FROM cycles WHERE portfolio=? ORDER BY as_of"),
                "orders": rows("SELECT order_id, status FROM orders WHERE portfolio=? ORDER BY order_id")}


@pytest.fixture
def reference(tmp_path: Path, csv: Path) -> dict:
    """One portfolio, one process, start to end of the data."""
    rc, _, err = worker(tmp_path / "ref", csv, ["solo"]).wait()
    assert rc == 0, err
    ref = ledger_rows(tmp_path / "ref" / "volt.db", "solo")
    assert len(ref["cycles"]) == REPLAY_DAYS and len(ref["fills"]) >= REPLAY_DAYS, "the reference must trade daily"
    return ref


def assert_same_as_reference(target: Path | DatabaseURL, reference: dict) -> None:
    for p in PORTFOLIOS:
        got = ledger_rows(target, p)
        assert got["cycles"] == reference["cycles"], f"{p}: cycles lost, doubled or different"
        assert got["fills"] == reference["fills"], f"{p}: fills lost, doubled or different"
        assert [s for _, s in got["orders"]] == [s for _, s in reference["orders"]]


def test_portfolio_list_is_checked_and_workers_start_apart():
    assert parse_portfolios(" a, b ,c") == ["a", "b", "c"]
    for bad in ("a,,b", "a,a", ""):
        with pytest.raises(ValueError):
            parse_portfolios(bad)
    orders = {tuple(visiting_order(PORTFOLIOS, 0, seed)) for seed in range(4)}
    assert len(orders) == 4  # four workers begin at four different portfolios
    assert visiting_order(PORTFOLIOS, 1, 0)[0] == visiting_order(PORTFOLIOS, 0, 1)[0]


def test_bad_portfolio_list_is_one_line_exit_2(tmp_path, csv):
    rc, _, err = worker(tmp_path / "home", csv, ["a", "a"]).wait(60)
    assert rc == 2 and err.strip().startswith("error: --portfolios lists a name twice"), err


def _target(backend, home: Path) -> Path | DatabaseURL:
    return backend.target if backend.url else home / "volt.db"


@pytest.mark.slow
def test_two_workers_share_four_portfolios_with_no_lost_or_doubled_fill(tmp_path, csv, reference, backend):
    """On SQLite: two processes on one machine (file locks). On PostgreSQL: the same two
    workers as they would run on two machines, sharing only the database (advisory locks,
    checkpoints, ledger) — each has its own home."""
    homes = [tmp_path / "home", tmp_path / "home"] if backend.url is None else [tmp_path / "w1", tmp_path / "w2"]
    procs = [worker(h, csv, PORTFOLIOS, database_url=backend.url) for h in homes]
    results = [p.wait() for p in procs]
    for rc, _, err in results:
        assert rc == 0, err
    assert_same_as_reference(_target(backend, homes[0]), reference)
    # both workers did some of the work (each reports its own count on stderr)
    counts = [int(err.rsplit("worker ", 1)[1].split(": ", 1)[1].split(" ", 1)[0]) for _, _, err in results]
    assert sum(counts) == len(PORTFOLIOS) * REPLAY_DAYS and min(counts) > 0, counts


@pytest.mark.slow
def test_a_killed_worker_s_portfolio_is_taken_over_and_resumed_without_a_double_fill(tmp_path, csv, reference,
                                                                                     backend):
    homes = [tmp_path / "home", tmp_path / "home"] if backend.url is None else [tmp_path / "w1", tmp_path / "w2"]
    # dies mid-cycle (like kill -9), right after a committed fill
    doomed = worker(homes[0], csv, PORTFOLIOS, die_after_fills=5, database_url=backend.url)
    survivor = worker(homes[1], csv, PORTFOLIOS, database_url=backend.url)  # side by side all along
    assert doomed.wait()[0] == 9
    rc, out, err = survivor.wait()
    assert rc == 0, err
    assert '"resumed": true' in out  # the killed cycle was resumed from its checkpoint, not restarted
    assert_same_as_reference(_target(backend, homes[1]), reference)


def test_a_busy_database_defers_the_cycle_and_anything_else_halts(tmp_path):
    from graph.daemon import StopSignals
    from graph.errors import CycleDateError, StorageError
    from graph.settings import VoltSettings
    from graph.worker import run_worker

    settings = VoltSettings(home=tmp_path / "home", models=[])
    calls: list[str] = []

    def run_one(own, n):
        calls.append(own.portfolio)
        if len(calls) <= 2:
            raise StorageError("volt.db is locked by another process (database is locked)", kind="busy")
        if calls.count(own.portfolio) > 3:
            raise CycleDateError("end of the data")

    with StopSignals() as stop:
        tally = run_worker(settings, ["a"], pause_s=0, max_cycles=None, run_one=run_one, stop=stop, seed=0)
    assert tally.storage_retries == 2 and tally.cycles == {"a": 1} and tally.finished == {"a"}

    def damaged(own, n):
        raise StorageError("volt.db is damaged", kind="damaged")

    with StopSignals() as stop, pytest.raises(StorageError, match="damaged"):
        run_worker(settings, ["a"], pause_s=0, max_cycles=None, run_one=damaged, stop=stop, seed=0)
