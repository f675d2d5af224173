"""``python -m graph.run``: one trading cycle for a paper portfolio.

Each run on the replay data advances the portfolio one trading day. State is
checkpointed with ``SqliteSaver`` (one thread per portfolio), so a run killed at any
point resumes its cycle on the next start instead of starting a new one.

Operations (``--loop``, graph/daemon.py): SIGTERM or Ctrl-C stops at the next step of the
cycle with one line (exit 0 for a loop, 130 for an interrupted one-shot cycle, which resumes
on the next start); JSON logs go to ``$VOLT_HOME/logs/volt.log``; a live loop sleeps until
the next NYSE session's bar. After each cycle, an alert when every model failed.

Exit codes: 0 done; 2 operational error, in one line (unreadable CSV, bad --as-of, portfolio
busy, a damaged, read-only or full data store). A damaged ``checkpoints.db`` is not an error:
it is moved aside (one warning line) and the cycle restarts from the ledger.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from langgraph.checkpoint.sqlite import SqliteSaver

from graph.builder import build_graph
from graph.chains import load_chains
from graph.context import ChatModelFactory, VoltContext
from graph.daemon import StopRequested, StopSignals, next_bar_at, setup_operations, wait_until
from graph.errors import (
    CycleDateError,
    DataError,
    OperationalError,
    StorageError,
    settings_error_line,
)
from graph.report import build_report, render_json, render_text
from graph.secrets import finnhub_api_key
from graph.settings import VoltSettings
from graph.tracing import cycle_config
from memory.alerts import alert_if_all_models_failed, flush_alerts
from memory.breakers import endpoint_breakers
from memory.checkpoints import is_damage, open_saver, set_aside
from memory.ledger import Ledger
from memory.run_lock import portfolio_lock
from memory.storage import ensure_dir, kind_of
from nodes.prepare_cycle import iso_day, live_as_of, resolve_as_of
from tools.alt_data import AltDataProvider
from tools.data_source import market_dataset, set_live_dataset
from tools.finnhub.alt_data import FinnhubAltData
from tools.finnhub.errors import breaker_counts
from tools.finnhub.gateway import open_gateway
from tools.finnhub.live_market import fresh_quote_symbols, latest_price, load_live_dataset
from tools.finnhub.trade_stream import TradeStream
from tools.market import DataOptions
from tools.market_data import MarketDataset, SymbolIssue, load_dataset

log = logging.getLogger("volt.run")

DEFAULT_LIVE_WATCHLIST = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "V", "XOM"]


@dataclass
class CycleResult:
    state: dict
    resumed: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class LiveSource:
    """The live source for one run: Finnhub data, its specialists' provider, quotes for fills."""

    gateway: object
    dataset: MarketDataset
    notes: list[str]
    settings: VoltSettings
    stream: TradeStream | None = None

    def price(self, symbol: str) -> float:
        """The quote a fill uses; a stale quote is a DataError, never an old price. Without a
        recent trade on the stream the quote must carry its time to prove it is fresh."""
        max_age = self.settings.stale_after_s
        if self.stream is not None and self.stream.is_stale(symbol, max_age_s=max_age):
            try:
                return latest_price(self.gateway, symbol, max_age_s=max_age, require_time=True)
            except DataError as exc:
                raise DataError(symbol, f"stale feed: no trade in the last {max_age:.0f}s, {exc.reason}") from None
        return latest_price(self.gateway, symbol, max_age_s=max_age)


def open_live_source(settings: VoltSettings, today: date | None = None, stream: TradeStream | None = None) -> LiveSource:
    """Finnhub bars up to today for the watchlist (FINNHUB_API_KEY from the environment or .env).

    With a running trade stream, its bars fill in where the plan refuses candles, and a
    symbol with neither a recent trade on the stream nor a fresh quote is marked stale: a DATA
    error this cycle, not a trade. When every symbol is stale (stream warming up, market
    closed) the cycle does not run: CycleDateError, so the day is not recorded as done and the
    loop tries again."""
    # MissingApiKeyError (exit 2) names the variable; endpoint breakers persist in ops.db
    gateway = open_gateway(settings.home, breaker_for=endpoint_breakers(settings, counts=breaker_counts))
    watchlist = settings.watchlist or DEFAULT_LIVE_WATCHLIST
    try:
        dataset, notes = load_live_dataset(gateway, watchlist, today or date.today(),
                                           min_history=settings.min_history, stream=stream,
                                           options=DataOptions.from_settings(settings))
        if stream is not None:
            quiet = stream.stale_symbols(max_age_s=settings.stale_after_s)
            fresh = set(fresh_quote_symbols(gateway, quiet, settings.stale_after_s))
            stale = [s for s in quiet if s not in fresh]
            if stale and len(stale) == len(stream.symbols):
                raise CycleDateError(
                    f"no live price yet: no trade on the stream and no fresh quote "
                    f"(last {settings.stale_after_s:.0f}s) for any of {len(stale)} symbols")
            for symbol in stale:
                dataset.issues[symbol] = SymbolIssue(
                    symbol, f"stale feed: no trade and no quote in the last {settings.stale_after_s:.0f}s", None)
    except BaseException:
        gateway.close()
        raise
    set_live_dataset(settings, dataset)
    return LiveSource(gateway, dataset, notes, settings, stream)


# The graph runs compile once per process: checkpoints per cycle step and per finished
# candidate (graph.builder explains why not per candidate step); the checkpointer is attached
# per run.
cycle_graph = build_graph(checkpoint_candidates=False).compile(name="volt")


def thread_config(portfolio: str) -> dict:
    return {"configurable": {"thread_id": f"portfolio:{portfolio}"}, "recursion_limit": 200}


def open_checkpointer(settings: VoltSettings) -> SqliteSaver:
    """SqliteSaver on its own connection (:func:`memory.checkpoints.open_saver`): WAL, one
    line naming ``checkpoints.db`` for any storage failure, a damaged file refused at open."""
    return open_saver(settings.checkpoint_path)


def run_cycle(settings: VoltSettings, *, as_of: str | None = None,
              chat_model_factory: ChatModelFactory | None = None,
              alt_data: AltDataProvider | None = None, stream: TradeStream | None = None,
              stop: StopSignals | None = None, trace: dict | None = None) -> CycleResult:
    """Run (or resume) one cycle. The caller holds the portfolio lock.

    ``stop``: checked after each step of the graph; a requested stop raises
    :class:`graph.daemon.StopRequested` with the step's checkpoint saved (the next run resumes
    there). ``trace``: extra LangSmith metadata (``graph.tracing.cycle_config``). A live cycle
    has a deadline of ``settings.cycle_deadline_s`` seconds: no Finnhub wait and no model call
    goes past it.

    Storage failures are one-line :class:`StorageError`\\ s. The ledger is read first, so a
    damaged ``volt.db`` stops the run before anything else is touched. A damaged
    ``checkpoints.db`` (a cache of the ledger) is moved aside with one warning line on stderr
    and the cycle restarts from the ledger: fills are idempotent per portfolio:as_of:symbol,
    so a restarted cycle never fills an order twice."""
    ensure_dir(settings.home)
    last = Ledger(settings.ledger_path).last_completed_cycle(settings.portfolio)
    live = open_live_source(settings, stream=stream) if settings.source == "finnhub" else None
    context = VoltContext(
        settings=settings,
        chat_model_factory=chat_model_factory,
        alt_data=alt_data or (FinnhubAltData(live.gateway) if live else None),
        live_price=live.price if live else None,
        deadline=time.monotonic() + settings.cycle_deadline_s if live else None,
    )
    notes = live.notes if live else []
    extra = {"stop": stop, "trace": trace}
    try:
        if live is not None:
            with live.gateway.deadline_in(settings.cycle_deadline_s):
                return _invoke_or_restart(settings, context, as_of, True, notes, last, extra)
        return _invoke_or_restart(settings, context, as_of, False, notes, last, extra)
    finally:
        if live is not None:
            live.gateway.close()


def _invoke_or_restart(settings: VoltSettings, context: VoltContext, as_of: str | None, live: bool,
                       notes: list[str], last: dict | None, extra: dict) -> CycleResult:
    """:func:`_invoke_cycle`, once more after moving a damaged ``checkpoints.db`` aside."""
    try:
        return _invoke_cycle(settings, context, as_of, live, notes, **extra)
    except StorageError as exc:
        if not is_damage(exc, settings.checkpoint_path):
            raise
        aside = set_aside(settings.checkpoint_path)
        print(f"warning: {settings.checkpoint_path} is damaged (it only caches the ledger): moved aside to "
              f"{aside.name}; the cycle restarts from the ledger (last completed cycle: "
              f"{last['as_of'] if last else 'none'})", file=sys.stderr, flush=True)
        return _invoke_cycle(settings, context, as_of, live, notes, **extra)


def _run_graph(app, graph_input: dict | None, config: dict, context: VoltContext,
               stop: StopSignals | None) -> dict:
    """``app.invoke`` step by step: after each step (its checkpoint saved, durability
    ``sync``) a requested stop raises :class:`StopRequested`. Returns the final state."""
    final: dict = {}
    for values in app.stream(graph_input, config, context=context, durability="sync", stream_mode="values"):
        final = values
        if stop is not None:
            stop.check()
    return final


def _invoke_cycle(settings: VoltSettings, context: VoltContext, as_of: str | None, live: bool,
                  notes: list[str], stop: StopSignals | None = None, trace: dict | None = None) -> CycleResult:
    """Resume the checkpointed cycle, or start the next one (see :func:`run_cycle`)."""
    config = thread_config(settings.portfolio)
    traced = cycle_config(settings.portfolio, settings.source, as_of, **(trace or {}))
    saver = open_checkpointer(settings)
    try:
        app = cycle_graph.copy(update={"checkpointer": saver})
        pending = app.get_state(config)
        if pending.next:
            resumed_day = (pending.values or {}).get("as_of")
            run_config = {**config, **cycle_config(settings.portfolio, settings.source, resumed_day,
                                                   resumed=True, **(trace or {}))}
            state = _run_graph(app, None, run_config, context, stop)
            return CycleResult(state, resumed=True, notes=notes)
        # The previous cycle is complete and fully recorded in the ledger and the learning
        # store; dropping its checkpoints keeps the file at about one cycle's size.
        saver.delete_thread(config["configurable"]["thread_id"])
        dataset = market_dataset(settings)
        last = Ledger(settings.ledger_path).last_completed_cycle(settings.portfolio)
        last_day = last["as_of"] if last else None
        day = live_as_of(dataset, last_day) if live else resolve_as_of(dataset, last_day, as_of, settings.min_history)
        traced["metadata"]["as_of"] = f"{day:%Y-%m-%d}"
        state = _run_graph(app, {"portfolio_id": settings.portfolio, "as_of": f"{day:%Y-%m-%d}"},
                           {**config, **traced}, context, stop)
        return CycleResult(state, resumed=False, notes=notes)
    finally:
        saver.conn.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m graph.run", description="Run one VOLT trading cycle (paper).")
    p.add_argument("--as-of", metavar="YYYY-MM-DD", help="decide on this day (default: the day after the last cycle)")
    p.add_argument("--data-csv", metavar="PATH", help="own OHLCV CSV (Date,Symbol,Open,High,Low,Close,Volume)")
    p.add_argument("--portfolio", metavar="NAME", help="paper portfolio name (default: main; VOLT_PORTFOLIO)")
    p.add_argument("--home", metavar="DIR", help="data directory (default: ./.volt; VOLT_HOME)")
    p.add_argument("--top-k", type=int, metavar="K", help="candidates per cycle (default: 5; VOLT_TOP_K)")
    p.add_argument("--models", metavar="A,B", help="model chain, in order (VOLT_MODELS); empty for priors only")
    p.add_argument("--watchlist", metavar="A,B", help="symbols to consider (default: the whole data set)")
    p.add_argument("--source", choices=["replay", "finnhub"],
                   help="market data: the replay data set (default) or live Finnhub (needs FINNHUB_API_KEY)")
    p.add_argument("--loop", type=float, metavar="SECONDS",
                   help="keep running: a cycle, then wait SECONDS (live: the trade stream runs in between)")
    p.add_argument("--cycles", type=int, metavar="N", help="with --loop: stop after N cycles")
    p.add_argument("--portfolios", metavar="A,B",
                   help="worker mode: serve these portfolios, each cycle under its lock; several workers "
                        "(processes or machines sharing VOLT_DATABASE_URL) split them (graph/worker.py)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the summary")
    p.add_argument("--verbose", action="store_true", help="the model chain's full status in the summary")
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> VoltSettings:
    overrides = {
        "data_csv": args.data_csv, "portfolio": args.portfolio, "home": args.home,
        "top_k": args.top_k, "models": args.models, "watchlist": args.watchlist, "source": args.source,
    }
    return VoltSettings(**{k: v for k, v in overrides.items() if v is not None})


def _after_cycle(settings: VoltSettings, args: argparse.Namespace, result: CycleResult,
                 started: tuple[float, float], cycle: int | None = None) -> None:
    """Print the report, raise the all-models-failed alert, log the cycle's end (JSON log).
    ``started``: the cycle's start as ``(time.monotonic(), time.time())``."""
    state = result.state
    report = build_report(state, resumed=result.resumed, notes=result.notes, home=settings.home,
                          verbose=args.verbose, alerts_since=started[1])
    print(render_json(report) if args.json else render_text(report) + ("\n" if cycle is not None else ""),
          flush=True)
    alert_if_all_models_failed(settings.home, state)
    log.info("cycle end", extra={
        "cycle": cycle, "portfolio": settings.portfolio, "as_of": state.get("as_of"),
        "resumed": result.resumed, "duration_s": round(time.monotonic() - started[0], 3),
        "fills": len(state.get("fills") or []), "errors": len(state.get("errors") or []),
        "data_errors": len(state.get("data_errors") or []), "data_notes": len(state.get("data_notes") or [])})


def _start_cycle(settings: VoltSettings, cycle: int | None) -> tuple[float, float]:
    log.info("cycle start", extra={"cycle": cycle, "portfolio": settings.portfolio, "source": settings.source})
    return time.monotonic(), time.time()


def _live_wait(settings: VoltSettings, stop: StopSignals, poll_s: float, waiting: bool) -> bool:
    """Live loop: sleep until the next NYSE session's bar after the last completed cycle (or,
    inside a session whose cycle still waits for a price, ``poll_s``). True when stopped."""
    if settings.market_calendar == "none":  # no sessions to wait for: poll
        return stop.sleep(poll_s)
    last = Ledger(settings.ledger_path).last_completed_cycle(settings.portfolio)
    last_day = date.fromisoformat(last["as_of"]) if last else None
    now = datetime.now(UTC)
    when = next_bar_at(now, last_day, name=settings.market_calendar)
    if when <= now:  # the session is open and its cycle not done: try again shortly
        return stop.sleep(poll_s)
    if not waiting:
        print(f"sleeping until the next session's bar: {when:%Y-%m-%d %H:%M} UTC", file=sys.stderr, flush=True)
    log.info("sleep", extra={"until": when.isoformat(), "seconds": round((when - now).total_seconds())})
    return wait_until(when, stop)


def run_loop(settings: VoltSettings, args: argparse.Namespace, chat_model_factory: ChatModelFactory | None,
             stop: StopSignals | None = None) -> int:
    """Cycles until a stop signal, ``--cycles``, or (replay) the end of the data. The caller
    holds the lock.

    Replay: ``--loop SECONDS`` is the pause between cycles. Live: a trade stream for the
    watchlist runs the whole time, feeding the bar builder and the stale-feed check; after a
    cycle the loop sleeps until the next NYSE session's bar (holidays skipped, graph.daemon),
    and while a session's cycle waits for a live price it retries every SECONDS. The first
    cycle waits up to ``stream_warmup_s`` for a trade per symbol.

    SIGTERM or Ctrl-C: the cycle in flight stops at its next step (checkpointed, it resumes
    on the next start), one line on stderr, exit 0. A second signal stops at once."""
    stop = stop or StopSignals()
    stream = None
    if settings.source == "finnhub":
        stream = TradeStream(finnhub_api_key(), settings.watchlist or DEFAULT_LIVE_WATCHLIST,
                             url=settings.finnhub_ws_url, stale_after_s=settings.stale_after_s)
        stream.start()
    done, waiting = 0, False
    log.info("loop start", extra={"portfolio": settings.portfolio, "source": settings.source,
                                  "pause_s": args.loop, "cycles": args.cycles})
    try:
        if stream is not None and settings.stream_warmup_s > 0:
            print(f"warm-up: waiting up to {settings.stream_warmup_s:.0f}s for trades on "
                  f"{len(stream.symbols)} symbols", file=sys.stderr, flush=True)
            missing = stream.wait_for_trades(timeout=settings.stream_warmup_s)
            print(f"warm-up: {len(stream.symbols) - len(missing)} of {len(stream.symbols)} symbols traded"
                  + (f"; without a trade (quote if fresh): {', '.join(missing)}" if missing else ""),
                  file=sys.stderr, flush=True)
        while (args.cycles is None or done < args.cycles) and not stop.requested.is_set():
            started = _start_cycle(settings, done + 1)
            try:
                result = run_cycle(settings, chat_model_factory=chat_model_factory, stream=stream, stop=stop,
                                   trace={"cycle": done + 1, "loop": True})
            except CycleDateError as exc:
                if settings.source == "replay":
                    print(f"loop finished: {exc}", file=sys.stderr)
                    log.info("loop finished", extra={"reason": str(exc), "cycles_done": done})
                    return 0
                if not waiting:
                    print(f"waiting: {exc}", file=sys.stderr, flush=True)
                    log.info("waiting", extra={"reason": str(exc)})
                waiting = True
            else:
                waiting = False
                done += 1
                _after_cycle(settings, args, result, started, done)
            if args.cycles is not None and done >= args.cycles:
                break
            stopped = (_live_wait(settings, stop, args.loop, waiting) if settings.source == "finnhub"
                       else stop.sleep(args.loop))
            if stopped:
                break
    except StopRequested as exc:
        print(f"stopped ({exc.signal_name}) after {done} cycle(s): the cycle in flight resumes on the next start",
              file=sys.stderr, flush=True)
        log.info("loop stopped", extra={"signal": exc.signal_name, "cycles_done": done, "in_flight": True})
        return 0
    except KeyboardInterrupt:
        print(f"stopped at once after {done} cycle(s): the cycle in flight resumes on the next start",
              file=sys.stderr, flush=True)
        log.info("loop stopped", extra={"signal": "second", "cycles_done": done, "in_flight": True})
        return 0
    finally:
        if stream is not None:
            stream.stop()
    if stop.requested.is_set():
        print(f"stopped ({stop.signal_name}) after {done} cycle(s)", file=sys.stderr, flush=True)
        log.info("loop stopped", extra={"signal": stop.signal_name, "cycles_done": done, "in_flight": False})
    return 0


def _run_worker(settings: VoltSettings, args: argparse.Namespace, chat_model_factory: ChatModelFactory | None) -> int:
    """``--portfolios``: :func:`graph.worker.run_worker` with this module's cycle and report."""
    from graph.worker import parse_portfolios, run_worker

    try:
        portfolios = parse_portfolios(args.portfolios)
    except ValueError as exc:
        raise OperationalError(str(exc)) from None

    def run_one(own: VoltSettings, n: int) -> None:
        started = _start_cycle(own, n)
        result = run_cycle(own, chat_model_factory=chat_model_factory, stop=stop, trace={"cycle": n, "loop": True})
        _after_cycle(own, args, result, started, n)

    with StopSignals() as stop:
        tally = run_worker(settings, portfolios, pause_s=args.loop or 0.0, max_cycles=args.cycles,
                           run_one=run_one, stop=stop)
    print(f"worker {os.getpid()}: {tally.total} cycle(s) "
          f"({', '.join(f'{p} {n}' for p, n in sorted(tally.cycles.items())) or 'none'}); "
          f"finished: {', '.join(sorted(tally.finished)) or 'none'}", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None, *, chat_model_factory: ChatModelFactory | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.as_of is not None:
            iso_day(args.as_of)  # YYYY-MM-DD only, checked before anything is opened
        settings = settings_from_args(args)
        load_chains(settings.chains_file)  # a bad chains file is one line, before anything runs
        if settings.home.exists() and not settings.home.is_dir():
            raise StorageError(f"VOLT_HOME {settings.home} is a file, not a directory: use --home DIR",
                               path=settings.home, kind="not-a-directory")
        if settings.source == "replay":
            load_dataset(settings.data_csv)  # an unreadable CSV fails here, before anything runs
        setup_operations(settings)
        if args.portfolios is not None:
            return _run_worker(settings, args, chat_model_factory)
        with StopSignals() as stop, portfolio_lock(settings.home, settings.portfolio, settings.ledger_path):
            if args.loop is not None:
                return run_loop(settings, args, chat_model_factory, stop)
            started = _start_cycle(settings, None)
            result = run_cycle(settings, as_of=args.as_of, chat_model_factory=chat_model_factory, stop=stop)
            _after_cycle(settings, args, result, started)
        return 0
    except (StopRequested, KeyboardInterrupt) as exc:
        # one line, no traceback; the checkpointed cycle resumes on the next start
        how = f"({exc.signal_name})" if isinstance(exc, StopRequested) else "at once"
        print(f"interrupted {how}: the cycle resumes on the next start", file=sys.stderr, flush=True)
        log.info("cycle interrupted", extra={"signal": getattr(exc, "signal_name", "second")})
        return 130
    except OperationalError as exc:  # StorageError included: one line naming the file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # invalid settings (pydantic): one line naming the variable
        print(f"error: {settings_error_line(exc)}", file=sys.stderr)
        return 2
    except (sqlite3.Error, OSError) as exc:  # a storage failure no boundary named: still one line
        if kind_of(exc) is None:
            raise  # not a storage failure but a bug: keep its traceback
        print(f"error: storage: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 2
    finally:
        flush_alerts(5)  # webhook deliveries in flight, bounded


if __name__ == "__main__":
    sys.exit(main())
