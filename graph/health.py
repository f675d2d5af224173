"""``python -m graph.health``: is this VOLT installation healthy? Nagios-style exit codes.

Each check is one line ``STATUS name: detail``; the first line is the overall status, the
worst of them: exit 0 OK, 1 WARNING, 2 CRITICAL (also for bad arguments and a home that does
not exist). ``--json`` prints one document instead. Everything here only READS: databases
are opened with ``mode=ro``, the portfolio lock is never taken (its file's pid is checked),
and the model probe asks the server for its model list, nothing more.

Checks and when they warn (W) or are critical (C):

- ``home``: the data directory exists (C otherwise, and nothing else is checked);
- ``volt_db``, ``checkpoints_db``, ``chroma``: SQLite ``PRAGMA quick_check`` (C when damaged);
- ``disk``: free space in the home (W below ``--disk-warn-mb``, C below ``--disk-crit-mb``);
- ``last_cycle``: age of the last completed cycle against ``--interval`` (the loop's
  seconds): W past 2 intervals (or no cycle yet), C past 5;
- ``data``: replay position (the last cycle's day), or for the live source the age of that
  day (W when older than 4 days: more than a weekend);
- ``errors``: agent errors per cycle and category over the last ``--cycles`` cycles
  (W at ``--error-warn``, C at ``--error-crit``);
- ``breakers``: open breakers in ``ops.db`` (W; C when every configured model's breaker is
  open, or a Finnhub endpoint's is while the source is live);
- ``models``: the chain's reachability (W when no model is usable: agents answer with their
  priors) and which model answered last;
- ``drawdown``: from the peak equity (W at 3/4 of ``max_drawdown_pct``, C at the limit:
  new buys halt);
- ``protections``: the protections decided for the portfolio's latest cycle
  (``cycle_protections``): W while the drawdown halt, the trading breaker or the market
  breaker blocks new buys or orders, each named with the first day of its current run;
- ``lock``: whether the pid in the portfolio's lock file is alive (C with
  ``--expect-running`` when it is not: the service is down).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote

from graph.errors import settings_error_line
from graph.settings import VoltSettings

OK, WARNING, CRITICAL = "OK", "WARNING", "CRITICAL"
EXIT = {OK: 0, WARNING: 1, CRITICAL: 2}


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def worst(checks: list[Check]) -> str:
    return max((c.status for c in checks), key=EXIT.__getitem__, default=OK)


def _ro(path: Path) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``): health never writes. A WAL database with no
    ``-wal`` file (no writer has it open) is opened ``immutable`` too, because a plain
    read-only open would create its ``-wal`` and ``-shm`` files. A ``VOLT_DATABASE_URL``
    gives a read-only PostgreSQL session with the same surface (memory/pg.py)."""
    from memory.db import DatabaseURL

    if isinstance(path, DatabaseURL):
        from memory.pg import PgConnection, connect

        conn = PgConnection(connect(path), path)
        conn.execute("SET default_transaction_read_only = on")
        return conn
    immutable = "" if Path(f"{path}-wal").exists() else "&immutable=1"
    return sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro{immutable}", uri=True, timeout=5)


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]


def quick_check(name: str, path: Path, *, missing: str) -> Check:
    from memory.db import DatabaseURL

    if isinstance(path, DatabaseURL):  # the server checks its own pages: is it reachable, migrated?
        try:
            with _ro(path) as conn:
                version = conn.execute("SELECT version FROM schema_version").fetchone()[0] \
                    if _table_exists(conn, "schema_version") else 0
            conn.close()
        except Exception as exc:
            return Check(name, CRITICAL, f"{path} is unreachable ({_one_line(exc)})")
        return Check(name, OK, f"{path}: reachable, schema version {version}" if version else f"{path}: {missing}")
    if not path.exists():
        return Check(name, OK, missing)
    try:
        with _ro(path) as conn:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        conn.close()
    except sqlite3.Error as exc:
        return Check(name, CRITICAL, f"{path} is damaged or unreadable ({_one_line(exc)})")
    if rows != ["ok"]:
        return Check(name, CRITICAL, f"{path} is damaged: {'; '.join(map(str, rows[:2]))[:200]}")
    return Check(name, OK, f"quick_check ok ({path.stat().st_size / 1e6:.1f} MB)")


def _table_exists(conn: sqlite3.Connection, table: str) -> bool:
    if not isinstance(conn, sqlite3.Connection):  # PostgreSQL
        return conn.execute("SELECT to_regclass(?) IS NOT NULL", (table,)).fetchone()[0]
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone() is not None


def _age_s(stamp: str, now: float) -> float:
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return now - (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _human(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def ledger_checks(settings: VoltSettings, args: argparse.Namespace, now: float) -> list[Check]:
    """last_cycle, data, errors, drawdown, and the last model that answered (for ``models``)."""
    portfolio, checks = settings.portfolio, []
    with _ro(settings.ledger_path) as conn:
        conn.row_factory = sqlite3.Row
        cycles = conn.execute(
            "SELECT as_of, equity, completed_at FROM cycles WHERE portfolio=? ORDER BY as_of DESC LIMIT ?",
            (portfolio, args.cycles)).fetchall() if _table_exists(conn, "cycles") else []
        peak = conn.execute("SELECT peak_equity FROM portfolios WHERE id=?", (portfolio,)).fetchone() \
            if _table_exists(conn, "portfolios") else None
        errors = []
        if cycles and _table_exists(conn, "agent_errors"):
            ids = [f"{portfolio}:{c['as_of']}" for c in cycles]
            errors = conn.execute(
                f"SELECT category, COUNT(*) AS n FROM agent_errors WHERE portfolio=? AND cycle_id IN "
                f"({','.join('?' * len(ids))}) GROUP BY category ORDER BY n DESC", (portfolio, *ids)).fetchall()
        last_model = conn.execute(
            "SELECT model, as_of FROM agent_predictions WHERE portfolio=? AND source='model' AND model IS NOT NULL"
            f" ORDER BY as_of DESC, {'rowid' if isinstance(conn, sqlite3.Connection) else 'prediction_id'} DESC"
            " LIMIT 1", (portfolio,)).fetchone() \
            if _table_exists(conn, "agent_predictions") else None
    conn.close()
    args.last_model = f"{last_model['model']} on {last_model['as_of']}" if last_model else None
    if not cycles:
        checks.append(Check("last_cycle", WARNING, f"no completed cycle for portfolio '{portfolio}' yet"))
        checks.append(Check("data", OK, "no cycle yet"))
        return checks
    last = cycles[0]
    age = _age_s(last["completed_at"], now)
    status = CRITICAL if age > 5 * args.interval else WARNING if age > 2 * args.interval else OK
    checks.append(Check("last_cycle", status, f"{last['as_of']} completed {_human(age)} ago "
                                              f"(interval {args.interval:.0f}s)"))
    if settings.source == "replay":
        checks.append(Check("data", OK, f"replay position {last['as_of']}"))
    else:
        days = (datetime.fromtimestamp(now, UTC).date() - date.fromisoformat(last["as_of"][:10])).days
        checks.append(Check("data", WARNING if days > 4 else OK, f"live: last bar day {last['as_of']} ({days} days old)"))
    rates = {r["category"]: r["n"] / len(cycles) for r in errors}
    top = max(rates.values(), default=0.0)
    status = CRITICAL if top >= args.error_crit else WARNING if top >= args.error_warn else OK
    shown = ", ".join(f"{k} {v:.1f}" for k, v in rates.items()) or "none"
    checks.append(Check("errors", status, f"per cycle over the last {len(cycles)}: {shown} "
                                          f"(warn {args.error_warn:g}, crit {args.error_crit:g})"))
    if peak is not None and peak[0] and peak[0] > 0:
        drawdown = max(0.0, 1 - last["equity"] / peak[0])
        limit = settings.max_drawdown_pct
        status = CRITICAL if drawdown >= limit else WARNING if drawdown >= 0.75 * limit else OK
        halted = ": new buys halt" if status == CRITICAL else ""
        checks.append(Check("drawdown", status, f"{drawdown:.1%} from the peak {peak[0]:.2f} "
                                                f"(limit {limit:.0%}){halted}"))
    return checks


PROTECTION_ROWS = 1000  # how far back "since" looks (cycles); older runs say "since at least"


def protection_check(settings: VoltSettings) -> Check:
    """The latest cycle's protections: OK when none blocks, WARNING naming each active one,
    the day its current run of consecutive cycles started and what it blocks. Rows whose
    state is not a JSON object (damaged, or an order count written first) are skipped."""
    with _ro(settings.ledger_path) as conn:
        rows = conn.execute(
            "SELECT as_of, state FROM cycle_protections WHERE portfolio=? ORDER BY as_of DESC LIMIT ?",
            (settings.portfolio, PROTECTION_ROWS)).fetchall() \
            if _table_exists(conn, "cycle_protections") else []
    conn.close()
    states = []
    for as_of, text in rows:
        try:
            state = json.loads(text)
        except (TypeError, ValueError):
            continue
        if isinstance(state, dict) and "active" in state:
            states.append((str(as_of), state))
    if not states:
        return Check("protections", OK, "none recorded yet")
    last_day, last = states[0]
    active = [str(n) for n in last.get("active") or []]
    if not active:
        return Check("protections", OK, f"none active ({last_day})")
    reasons = {i.get("name"): i for i in last.get("items") or [] if isinstance(i, dict)}
    shown = []
    for name in active:
        since = last_day
        for day, state in states[1:]:  # newest first: walk back while it stayed active
            if name not in (state.get("active") or []):
                break
            since = day
        item = reasons.get(name) or {}
        blocks = "new orders" if item.get("blocks_orders") else "new buys"
        reason = " ".join(str(item.get("reason") or "").split())[:160]
        shown.append(f"{name} blocks {blocks} since {since}" + (f" ({reason})" if reason else ""))
    return Check("protections", WARNING, f"{last_day}: " + "; ".join(shown))


def breaker_check(settings: VoltSettings, now: float) -> Check:
    path = settings.home / "ops.db"
    if not path.exists():
        return Check("breakers", OK, "none recorded")
    with _ro(path) as conn:
        rows = conn.execute("SELECT name, kind, target, state, opened_at FROM breakers WHERE state != 'closed'"
                            " ORDER BY name").fetchall() if _table_exists(conn, "breakers") else []
    conn.close()
    if not rows:
        return Check("breakers", OK, "all closed")
    open_models = {r[2] for r in rows if r[1] == "model"}
    live_data = settings.source == "finnhub" and any(r[1] == "endpoint" for r in rows)
    every_model = bool(settings.models) and set(settings.models) <= open_models
    shown = ", ".join(f"{r[0]} {r[3]}" + (f" {_human(now - r[4])}" if r[4] else "") for r in rows)
    return Check("breakers", CRITICAL if live_data or every_model else WARNING, f"not closed: {shown}")


def model_check(settings: VoltSettings, args: argparse.Namespace) -> Check:
    from graph.models import resolve_model_chain  # deferred: imports the model stack

    last = getattr(args, "last_model", None)
    answered = f"; last answered: {last}" if last else "; no model answer recorded"
    if not settings.models:
        return Check("models", OK, "no models configured: quantitative priors only")
    if args.no_probe:
        return Check("models", OK, f"not probed (--no-probe){answered}")
    status = resolve_model_chain(settings, None, breakers=False)
    if not status.usable:
        return Check("models", WARNING, f"no model usable: {status.note[:160]}{answered}")
    return Check("models", OK, f"usable: {', '.join(status.usable)}{answered}")


def lock_check(settings: VoltSettings, args: argparse.Namespace) -> Check:
    path = settings.home / "locks" / f"{settings.portfolio}.lock"
    down = CRITICAL if args.expect_running else OK
    if settings.database_url:  # an advisory lock on the server, held by any worker anywhere
        from memory.run_lock import advisory_holder

        holder = advisory_holder(settings.ledger_path, settings.portfolio)
        return Check("lock", OK, f"held by pid {holder}") if holder else Check("lock", down, "not held")
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return Check("lock", down, "no run has held the lock yet")
    if not text.isdigit():
        return Check("lock", down, "lock file holds no pid")
    pid = int(text)
    try:
        os.kill(pid, 0)  # signal 0: existence only
    except ProcessLookupError:
        return Check("lock", down, f"not held: the last holder (pid {pid}) has exited")
    except PermissionError:
        pass  # alive, owned by another user
    return Check("lock", OK, f"pid {pid} alive")


def disk_check(home: Path, args: argparse.Namespace) -> Check:
    free_mb = shutil.disk_usage(home).free / 1e6
    status = CRITICAL if free_mb < args.disk_crit_mb else WARNING if free_mb < args.disk_warn_mb else OK
    return Check("disk", status, f"{free_mb:,.0f} MB free in {home}")


def run_checks(settings: VoltSettings, args: argparse.Namespace, now: float | None = None) -> list[Check]:
    """Every check; a check that fails unexpectedly is CRITICAL with one line, no traceback."""
    now = time.time() if now is None else now
    home = settings.home
    if not home.is_dir():
        what = "is a file, not a directory" if home.exists() else "does not exist"
        return [Check("home", CRITICAL, f"{home} {what}: use --home DIR or set VOLT_HOME")]
    checks = [Check("home", OK, str(home.resolve()))]

    def guarded(name: str, fn: Callable[[], Check | list[Check]]) -> None:
        try:
            result = fn()
        except Exception as exc:
            checks.append(Check(name, CRITICAL, f"check failed: {_one_line(exc)}"))
            return
        checks.extend(result if isinstance(result, list) else [result])

    ledger = quick_check("volt_db", settings.ledger_path, missing="no ledger yet (no cycle has run)")
    checks.append(ledger)
    if not settings.database_url:  # else the same database as volt_db
        guarded("checkpoints_db", lambda: quick_check("checkpoints_db", settings.checkpoint_path, missing="none yet"))
    from memory.situation_memory import memory_dir  # deferred, as the other storage imports here

    guarded("chroma", lambda: quick_check("chroma", memory_dir(home, settings.portfolio) / "chroma.sqlite3",
                                          missing="no situation memory yet"))
    guarded("disk", lambda: disk_check(home, args))
    if ledger.status == OK and settings.ledger_path.exists():  # a damaged ledger is said once, above
        guarded("ledger", lambda: ledger_checks(settings, args, now))
        guarded("protections", lambda: protection_check(settings))
    guarded("breakers", lambda: breaker_check(settings, now))
    guarded("models", lambda: model_check(settings, args))
    guarded("lock", lambda: lock_check(settings, args))
    return checks


def render(checks: list[Check]) -> str:
    overall = worst(checks)
    if len(checks) == 1:  # e.g. no home: nothing else was checked, one line says it
        return f"VOLT {overall} - {checks[0].name}: {checks[0].detail}"
    counts = {s: sum(c.status == s for c in checks) for s in (CRITICAL, WARNING)}
    head = f"VOLT {overall}" + (f" - {counts[CRITICAL]} critical, {counts[WARNING]} warning"
                                if overall != OK else f" - {len(checks)} checks")
    return "\n".join([head, *(f"{c.status:<8} {c.name}: {c.detail}" for c in checks)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m graph.health", description="Check a VOLT installation (read-only).")
    p.add_argument("--home", metavar="DIR", help="data directory (default: ./.volt; VOLT_HOME)")
    p.add_argument("--portfolio", metavar="NAME", help="portfolio (default: main; VOLT_PORTFOLIO)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--interval", type=float, default=300.0, metavar="S", help="the loop's seconds (default 300)")
    p.add_argument("--cycles", type=int, default=20, metavar="N", help="cycles for the error rates (default 20)")
    p.add_argument("--error-warn", type=float, default=2.0, metavar="X", help="errors per cycle, one category")
    p.add_argument("--error-crit", type=float, default=10.0, metavar="X", help="errors per cycle, one category")
    p.add_argument("--disk-warn-mb", type=float, default=1000.0, metavar="MB")
    p.add_argument("--disk-crit-mb", type=float, default=100.0, metavar="MB")
    p.add_argument("--expect-running", action="store_true", help="CRITICAL when no process holds the lock")
    p.add_argument("--no-probe", action="store_true", help="do not contact the model server")
    args = p.parse_args(argv)
    if args.interval <= 0 or args.cycles < 1:
        p.error("--interval must be > 0 and --cycles >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: usage line already printed
        return 2 if exc.code else 0
    try:
        overrides = {"home": args.home, "portfolio": args.portfolio}
        settings = VoltSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        print(f"VOLT CRITICAL - {settings_error_line(exc)}")
        return 2
    checks = run_checks(settings, args)
    overall = worst(checks)
    if args.json:
        print(json.dumps({"status": overall, "exit_code": EXIT[overall], "home": str(settings.home),
                          "portfolio": settings.portfolio, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        print(render(checks))
    return EXIT[overall]


if __name__ == "__main__":
    sys.exit(main())
