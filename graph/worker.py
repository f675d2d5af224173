"""Several portfolios served by one or more workers: ``python -m graph.run --loop S --portfolios A,B``.

A worker visits its portfolios in turn, round after round. For each one whose lock it can
take without waiting (:func:`memory.run_lock.portfolio_lock`: a file lock on one machine, a
PostgreSQL advisory lock when ``VOLT_DATABASE_URL`` is PostgreSQL), it runs or resumes that
portfolio's next cycle, then releases the lock. So each portfolio is owned by one worker at a
time, and workers on different machines sharing one database and one checkpointer split the
portfolios between them with no coordinator. A killed worker's lock is freed by the OS (or by
the server when its connection drops); the next worker to visit that portfolio resumes the
cycle from the shared checkpoint, and since fills are idempotent per portfolio, day and
symbol, nothing fills twice.

Each worker starts its rounds at a different portfolio (by process id), so two workers
started together do not queue behind the same lock. Replay: a portfolio is finished at the
end of its data; the worker stops when every portfolio is finished, after ``--cycles`` cycles
of its own, or on a stop signal. Live: a portfolio whose next session's bar is not there yet
is skipped until a later round; the worker pauses ``--loop`` seconds between rounds. A
database still busy after its wait (SQLite shared by several writing processes) defers that
portfolio's cycle to a later round, where it resumes from its checkpoint.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from graph.daemon import StopRequested, StopSignals
from graph.errors import CycleDateError, PortfolioBusyError, StorageError
from graph.settings import VoltSettings
from memory.run_lock import portfolio_lock
from memory.situation_memory import release as release_memory
from memory.storage import BUSY

log = logging.getLogger("volt.worker")
MAX_BUSY_IN_A_ROW = 20  # cycles of one portfolio deferred in a row for a busy database, then halt


@dataclass
class WorkerTally:
    """What one worker did: cycles run per portfolio, and the portfolios it found finished."""

    cycles: dict[str, int] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    busy_skips: int = 0
    storage_retries: int = 0  # cycles deferred because the database stayed busy

    @property
    def total(self) -> int:
        return sum(self.cycles.values())


def parse_portfolios(value: str) -> list[str]:
    """``A,B,C`` -> distinct names in order; a blank or repeated name is refused (exit 2)."""
    names = [p.strip() for p in value.split(",")]
    if not names or any(not n for n in names):
        raise ValueError(f"--portfolios needs comma-separated names (got {value!r})")
    if len(set(names)) != len(names):
        raise ValueError(f"--portfolios lists a name twice ({value!r})")
    return names


def visiting_order(portfolios: list[str], round_no: int, seed: int | None = None) -> list[str]:
    """The portfolios rotated by ``seed`` (default: this process id) plus the round number:
    workers spread out, and no portfolio is always visited last."""
    start = ((os.getpid() if seed is None else seed) + round_no) % len(portfolios)
    return portfolios[start:] + portfolios[:start]


def run_worker(settings: VoltSettings, portfolios: list[str], *, pause_s: float, max_cycles: int | None,
               run_one: Callable[[VoltSettings, int], None], stop: StopSignals, seed: int | None = None) -> WorkerTally:
    """Rounds over ``portfolios`` until all are finished (replay), ``max_cycles`` cycles were
    run by this worker, or a stop signal. ``run_one(settings_for_portfolio, n)`` runs one
    cycle with the lock held (graph.run's cycle plus its report); it raises
    :class:`CycleDateError` when the portfolio has no day to trade (end of the replay data, or
    live: the next bar is not there yet). A stop in the middle of a cycle propagates
    (:class:`StopRequested`) after the lock is released; the cycle resumes on the next start."""
    tally = WorkerTally()
    busy_in_a_row: dict[str, int] = {}
    live = settings.source == "finnhub"
    round_no = 0
    while not stop.requested.is_set():
        progressed = False
        for name in visiting_order(portfolios, round_no, seed):
            if name in tally.finished or stop.requested.is_set():
                continue
            if max_cycles is not None and tally.total >= max_cycles:
                return tally
            own = settings.model_copy(update={"portfolio": name})
            try:
                with portfolio_lock(own.home, name, own.ledger_path):
                    # the embedded memory is closed before the lock is handed back, so the next
                    # turn (of this worker or another) opens it fresh: one process at a time
                    try:
                        run_one(own, tally.total + 1)
                    finally:
                        release_memory(own.home, name)
            except PortfolioBusyError:  # another worker owns it right now
                tally.busy_skips += 1
                continue
            except StorageError as exc:
                # the database busy past its wait (SQLite under several writing processes): a
                # temporary condition; the cycle resumes from its checkpoint on a later visit
                # (fills are idempotent). Anything else, or busy too often in a row, halts.
                if exc.kind != BUSY or busy_in_a_row.get(name, 0) >= MAX_BUSY_IN_A_ROW:
                    raise
                busy_in_a_row[name] = busy_in_a_row.get(name, 0) + 1
                tally.storage_retries += 1
                print(f"warning: {name}: {exc}; the cycle resumes on a later round", file=sys.stderr, flush=True)
                log.warning("storage busy, cycle deferred", extra={"portfolio": name, "error": str(exc)})
                continue
            except CycleDateError as exc:
                if not live:  # the end of the replay data: this portfolio is done
                    tally.finished.add(name)
                    print(f"{name}: finished ({exc})", file=sys.stderr, flush=True)
                    log.info("portfolio finished", extra={"portfolio": name, "reason": str(exc)})
                continue
            except StopRequested:
                raise
            tally.cycles[name] = tally.cycles.get(name, 0) + 1
            busy_in_a_row.pop(name, None)
            progressed = True
        if len(tally.finished) == len(portfolios) or (max_cycles is not None and tally.total >= max_cycles):
            return tally
        round_no += 1
        # nothing to do this round (all busy elsewhere, or live and waiting): pause; after a
        # productive replay round, go on at once unless a pause was asked for
        if (pause_s > 0 or not progressed) and stop.sleep(pause_s if pause_s > 0 else 0.2):
            break
    return tally
