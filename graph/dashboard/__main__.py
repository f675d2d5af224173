"""``python -m graph.dashboard [--home DIR] [--port N] [--host H] [--portfolio NAME] [--runs DIR]``.

Serves the read-only dashboard on 127.0.0.1 by default. Another host is refused (exit 2, one
line) unless ``VOLT_DASHBOARD_TOKEN`` is set; then every request must carry that token.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

TOKEN_ENV = "VOLT_DASHBOARD_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m graph.dashboard", description="VOLT dashboard (read-only).")
    p.add_argument("--home", metavar="DIR", help="data directory (default: ./.volt; VOLT_HOME)")
    p.add_argument("--portfolio", metavar="NAME", help="portfolio shown first (default: VOLT_PORTFOLIO or main)")
    p.add_argument("--port", type=int, default=8050, metavar="N", help="port (default 8050)")
    p.add_argument("--host", default="127.0.0.1", metavar="H",
                   help=f"bind address (default 127.0.0.1; any other needs {TOKEN_ENV})")
    p.add_argument("--runs", metavar="DIR", help="folder with backtest/evaluation summary.json files (default: home)")
    p.add_argument("--refresh", type=float, default=5.0, metavar="S", help="seconds between checks for a new cycle")
    args = p.parse_args(argv)
    if not 0 < args.port < 65536:
        p.error("--port must be 1..65535")
    if args.refresh <= 0:
        p.error("--refresh must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    token = os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and not token:
        print(f"error: --host {args.host} is not loopback: set {TOKEN_ENV} to an access token first", file=sys.stderr)
        return 2
    from graph.errors import settings_error_line
    from graph.settings import VoltSettings

    try:
        overrides = {"home": args.home, "portfolio": args.portfolio}
        settings = VoltSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        print(f"error: {settings_error_line(exc)}", file=sys.stderr)
        return 2
    home = Path(settings.home)
    if not home.is_dir():
        print(f"error: {home} is not a VOLT home (no such directory): use --home DIR or set VOLT_HOME", file=sys.stderr)
        return 2
    from graph.dashboard.app import create_app

    # compressed responses pay off over a network (plotly.js 1.3 MB -> 0.45 MB); on loopback
    # the transfer is ~50 ms and compressing only costs CPU
    app = create_app(home, portfolio=settings.portfolio, runs_dir=args.runs, token=token,
                     refresh_ms=int(args.refresh * 1000), data_csv=settings.data_csv, settings=settings,
                     compress=not is_loopback(args.host))
    print(f"VOLT dashboard on http://{args.host}:{args.port}/ (home {home}, read-only)", flush=True)
    app.run(host=args.host, port=args.port, debug=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
