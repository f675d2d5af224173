"""``python -m graph.run``: one trading cycle for a paper portfolio.

Each run on the replay data advances the portfolio one trading day. State is
checkpointed with ``SqliteSaver`` (one thread per portfolio), so a run killed at any
point resumes its cycle on the next start instead of starting a new one.

Exit codes: 0 done; 2 operational error (unreadable CSV, bad --as-of, portfolio busy).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import date

from langgraph.checkpoint.sqlite import SqliteSaver

from graph.builder import build_graph
from graph.context import ChatModelFactory, VoltContext
from graph.errors import CycleDateError, DataError, OperationalError
from graph.report import build_report, render_json, render_text
from graph.secrets import finnhub_api_key
from graph.settings import VoltSettings
from memory.ledger import Ledger
from memory.run_lock import portfolio_lock
from nodes.prepare_cycle import live_as_of, resolve_as_of
from tools.alt_data import AltDataProvider
from tools.data_source import market_dataset, set_live_dataset
from tools.finnhub_alt_data import FinnhubAltData
from tools.finnhub_gateway import open_gateway
from tools.live_market import latest_price, load_live_dataset
from tools.market_data import MarketDataset, SymbolIssue, load_dataset
from tools.trade_stream import TradeStream

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
        """The quote a fill uses; a stale feed or quote is a DataError, never an old price."""
        if self.stream is not None and self.stream.is_stale(symbol, max_age_s=self.settings.stale_after_s):
            raise DataError(symbol, f"stale feed: no trade in the last {self.settings.stale_after_s:.0f}s")
        return latest_price(self.gateway, symbol, max_age_s=self.settings.stale_after_s)


def open_live_source(settings: VoltSettings, today: date | None = None, stream: TradeStream | None = None) -> LiveSource:
    """Finnhub bars up to today for the watchlist (FINNHUB_API_KEY from the environment or .env).

    With a running trade stream, its bars fill in where the plan refuses candles, and a
    symbol whose feed went quiet is marked stale: a DATA error this cycle, not a trade."""
    gateway = open_gateway(settings.home)  # MissingApiKeyError (exit 2) names the variable
    watchlist = settings.watchlist or DEFAULT_LIVE_WATCHLIST
    dataset, notes = load_live_dataset(gateway, watchlist, today or date.today(), min_history=settings.min_history,
                                       stream=stream)
    if stream is not None:
        for symbol in stream.stale_symbols(max_age_s=settings.stale_after_s):
            dataset.issues[symbol] = SymbolIssue(
                symbol, f"stale feed: no trade in the last {settings.stale_after_s:.0f}s", None)
    set_live_dataset(settings, dataset)
    return LiveSource(gateway, dataset, notes, settings, stream)


# The graph runs compile once per process: checkpoints per cycle step and per finished
# candidate (graph.builder explains why not per candidate step); the checkpointer is attached
# per run.
cycle_graph = build_graph(checkpoint_candidates=False).compile(name="volt")


def thread_config(portfolio: str) -> dict:
    return {"configurable": {"thread_id": f"portfolio:{portfolio}"}, "recursion_limit": 200}


def open_checkpointer(settings: VoltSettings) -> SqliteSaver:
    """SqliteSaver on its own connection. WAL + synchronous=NORMAL: every checkpoint
    survives a killed process (what resuming needs) without an fsync per write."""
    conn = sqlite3.connect(str(settings.checkpoint_path), check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return SqliteSaver(conn)


def run_cycle(settings: VoltSettings, *, as_of: str | None = None,
              chat_model_factory: ChatModelFactory | None = None,
              alt_data: AltDataProvider | None = None, stream: TradeStream | None = None) -> CycleResult:
    """Run (or resume) one cycle. The caller holds the portfolio lock."""
    settings.home.mkdir(parents=True, exist_ok=True)
    live = open_live_source(settings, stream=stream) if settings.source == "finnhub" else None
    context = VoltContext(
        settings=settings,
        chat_model_factory=chat_model_factory,
        alt_data=alt_data or (FinnhubAltData(live.gateway) if live else None),
        live_price=live.price if live else None,
    )
    notes = live.notes if live else []
    config = thread_config(settings.portfolio)
    saver = open_checkpointer(settings)
    try:
        app = cycle_graph.copy(update={"checkpointer": saver})
        pending = app.get_state(config)
        if pending.next:
            state = app.invoke(None, config, context=context, durability="sync")
            return CycleResult(state, resumed=True, notes=notes)
        # The previous cycle is complete and fully recorded in the ledger and the learning
        # store; dropping its checkpoints keeps the file at about one cycle's size.
        saver.delete_thread(config["configurable"]["thread_id"])
        dataset = market_dataset(settings)
        last = Ledger(settings.ledger_path).last_completed_cycle(settings.portfolio)
        last_day = last["as_of"] if last else None
        day = live_as_of(dataset, last_day) if live else resolve_as_of(dataset, last_day, as_of, settings.min_history)
        state = app.invoke({"portfolio_id": settings.portfolio, "as_of": f"{day:%Y-%m-%d}"},
                           config, context=context, durability="sync")
        return CycleResult(state, resumed=False, notes=notes)
    finally:
        saver.conn.close()
        if live is not None:
            live.gateway.close()


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
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the summary")
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> VoltSettings:
    overrides = {
        "data_csv": args.data_csv, "portfolio": args.portfolio, "home": args.home,
        "top_k": args.top_k, "models": args.models, "watchlist": args.watchlist, "source": args.source,
    }
    return VoltSettings(**{k: v for k, v in overrides.items() if v is not None})


def run_loop(settings: VoltSettings, args: argparse.Namespace, chat_model_factory: ChatModelFactory | None) -> int:
    """Cycles until Ctrl-C, ``--cycles``, or (replay) the end of the data. The caller holds the lock.

    Live: a trade stream for the watchlist runs the whole time, feeding the bar builder and
    the stale-feed check; a cycle runs when a new daily bar exists, else the loop waits."""
    stream = None
    if settings.source == "finnhub":
        stream = TradeStream(finnhub_api_key(), settings.watchlist or DEFAULT_LIVE_WATCHLIST,
                             url=settings.finnhub_ws_url, stale_after_s=settings.stale_after_s)
        stream.start()
    done, waiting = 0, False
    try:
        while args.cycles is None or done < args.cycles:
            try:
                result = run_cycle(settings, chat_model_factory=chat_model_factory, stream=stream)
            except CycleDateError as exc:
                if settings.source == "replay":
                    print(f"loop finished: {exc}", file=sys.stderr)
                    return 0
                if not waiting:
                    print(f"waiting: {exc}", file=sys.stderr, flush=True)
                waiting = True
            else:
                waiting = False
                done += 1
                report = build_report(result.state, resumed=result.resumed, notes=result.notes)
                print(render_json(report) if args.json else render_text(report) + "\n", flush=True)
            if args.cycles is not None and done >= args.cycles:
                break
            time.sleep(args.loop)
    except KeyboardInterrupt:
        print(f"stopped after {done} cycle(s)", file=sys.stderr)
    finally:
        if stream is not None:
            stream.stop()
    return 0


def main(argv: list[str] | None = None, *, chat_model_factory: ChatModelFactory | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = settings_from_args(args)
        if settings.source == "replay":
            load_dataset(settings.data_csv)  # an unreadable CSV fails here, before anything runs
        if args.loop is not None:
            with portfolio_lock(settings.home, settings.portfolio):
                return run_loop(settings, args, chat_model_factory)
        with portfolio_lock(settings.home, settings.portfolio):
            result = run_cycle(settings, as_of=args.as_of, chat_model_factory=chat_model_factory)
    except OperationalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # invalid settings (pydantic) name the field
        print(f"error: invalid configuration: {exc}".splitlines()[0] + " " + " ".join(str(exc).splitlines()[1:3]),
              file=sys.stderr)
        return 2
    report = build_report(result.state, resumed=result.resumed, notes=result.notes)
    print(render_json(report) if args.json else render_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
