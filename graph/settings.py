"""VOLT configuration: one pydantic-settings model, every field overridable by environment.

Each field ``name`` reads ``VOLT_<NAME>`` (e.g. ``VOLT_TOP_K=8``), except ``ollama_host``,
which reads ``OLLAMA_HOST`` exactly as the ollama client does. List fields take
comma-separated values (``VOLT_MODELS=qwen2.5-coder:7b,gemma3:latest``).
"""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from graph.errors import OperationalError, settings_error_line

# Ollama models first, then the embedded llama.cpp model (usable when the extra `local` is installed).
DEFAULT_MODELS = ["qwen2.5-coder:7b", "gemma3:latest", "dolphin-llama3:latest", "llamacpp:smollm2"]


def normalize_ollama_host(value: str) -> str:
    """Accept what OLLAMA_HOST accepts: ``host``, ``host:port`` or a full URL; the URL with its port."""
    host = value.strip() or "localhost"
    if "://" not in host:
        host = "http://" + host
    scheme, rest = host.split("://", 1)
    rest = rest.rstrip("/")
    if rest.startswith("0.0.0.0"):
        rest = "127.0.0.1" + rest[len("0.0.0.0") :]
    if ":" not in rest.rsplit("]", 1)[-1]:
        rest += ":11434"
    return f"{scheme}://{rest}"


class VoltSettings(BaseSettings):
    """Run configuration. Money is in USD; fractions are of 1 (0.25 = 25%)."""

    model_config = SettingsConfigDict(env_prefix="VOLT_", extra="ignore", frozen=True)

    home: Path = Field(default=Path(".volt"), description="Data directory (ledger, checkpoints).")
    portfolio: str = Field(default="main", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    source: Literal["replay", "finnhub"] = Field(default="replay", description="Replay data, or live Finnhub.")
    stale_after_s: float = Field(default=900.0, gt=0, description="Live: an older price is stale (no trade).")
    finnhub_ws_url: str = Field(default="wss://ws.finnhub.io", description="Live trade stream.")
    market_calendar: str = Field(
        default="XNYS", pattern=r"^(none|[A-Z0-9]{3,6})$",
        description="Live loop: exchange_calendars name whose sessions it sleeps between; "
        "'none' polls every --loop SECONDS (24/7 markets, tests).",
    )
    stream_warmup_s: float = Field(
        default=60.0, ge=0,
        description="Live loop: seconds the first cycle waits for a trade per watchlist symbol.",
    )
    data_csv: Path | None = Field(default=None, description="Own CSV instead of the embedded set.")
    watchlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Symbols to consider; empty means the whole data set."
    )
    top_k: int = Field(default=5, ge=1, le=50, description="Candidates per cycle (plus held).")

    models: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_MODELS))
    ollama_host: str = Field(
        default="http://localhost:11434",
        validation_alias=AliasChoices("OLLAMA_HOST", "VOLT_OLLAMA_HOST"),
    )
    ollama_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Several Ollama servers (comma-separated, each like OLLAMA_HOST), used by least "
        "in-flight requests, then round-robin, each (host, model) behind its own breaker; empty = OLLAMA_HOST alone.",
    )
    model_timeout_s: float = Field(default=60.0, gt=0, description="Per model call.")
    probe_timeout_s: float = Field(default=1.0, gt=0, description="Model-server reachability check.")
    max_tool_rounds: int = Field(default=2, ge=0, le=2)
    llm_cache: Path | None = Field(
        default=None, description="SQLite file caching model answers (memory/response_cache.py); unset = off."
    )
    database_url: str | None = Field(
        default=None, pattern=r"^(postgresql|postgres)://",
        description="Shared state on PostgreSQL (postgresql://user:password@host:port/db): ledger, learning "
        "store, checkpoints, portfolio locks; unset = the SQLite files in home.")
    chroma_url: str | None = Field(
        default=None, pattern=r"^https?://[^/\s]+/?$",
        description="A `chroma run` server for the situation memory (http://host:port); unset = the "
        "embedded directory $VOLT_HOME/chroma.")

    # operations: breakers, deadline, logs (memory/breakers.py, graph/logs.py, graph/health.py)
    breaker_fail_max: int = Field(default=3, ge=1, le=100, description="Failures in a row that open a breaker.")
    breaker_reset_s: float = Field(
        default=300.0, gt=0, description="Seconds an open breaker skips its model/endpoint before one probe.")
    cycle_deadline_s: float = Field(
        default=300.0, gt=0, description="No retry, backoff or rate-limit wait goes past this after a cycle starts.")
    log_max_bytes: int = Field(default=10_000_000, ge=1024, description="$VOLT_HOME/logs/volt.log rotates at this size.")
    log_backups: int = Field(default=5, ge=1, le=100, description="Rotated log files kept.")

    # money (USD): finite and positive; "inf", "nan" and 1e309 (an overflow to inf) are refused
    starting_cash: float = Field(default=1000.0, gt=0, allow_inf_nan=False)
    fee_rate: float = Field(default=0.0025, ge=0, le=0.05, description="Per fill, of notional.")
    max_slippage: float = Field(default=0.005, ge=0, le=0.05)
    slippage_alert: float = Field(default=0.002, ge=0, description="Feedback event above this.")
    max_position_pct: float = Field(default=0.20, gt=0, le=1, description="Of equity, per symbol.")
    max_gross_exposure_pct: float = Field(default=1.0, gt=0, le=1, description="Of equity.")
    allow_short: bool = False
    max_drawdown_pct: float = Field(default=0.20, gt=0, le=1, description="Halts new buys.")
    quote_band_pct: float = Field(
        default=0.15, gt=0, le=1,
        description="Live: a quote more than this fraction away from the decision price never fills.",
    )
    unfilled_orders: Literal["expire"] = Field(
        default="expire",
        description="An order whose symbol has no bar on the fill day is recorded UNFILLED and expires.",
    )
    default_size_pct: float = Field(default=0.10, gt=0, le=1)
    consensus_threshold: float = Field(default=0.25, gt=0, lt=1)
    # action chains (graph/chains.py): the user-editable file, validated at start-up
    chains_file: Path = Field(
        default=Path(__file__).resolve().parents[1] / "config" / "chains.toml",
        description="Action chains and consensus models (TOML); default: the shipped config/chains.toml.")
    reduce_fraction: float = Field(
        default=0.5, gt=0, lt=1, description="Exit review REDUCE: this fraction of the held quantity is sold.")
    min_history: int = Field(default=50, ge=50, description="Bars needed for the indicators.")

    # position plans, dust and protections (tools/trading/)
    max_holding_days: int = Field(default=20, ge=1, le=500, description="A plan's horizon: trading days "
                                  "after the entry fill at whose open the broker exits (time exit).")
    untraded_exit_days: int = Field(
        default=5, ge=0, le=250,
        description="A position past its horizon whose symbol has had no bar for this many trading "
        "days (acquired, delisted) closes at its last close; 0 = wait for a bar forever.")
    review_trail_atr: float = Field(
        default=0.0, ge=0, le=20,
        description="Exit reviews propose a stop this many ATRs below the close (longs), tightening "
        "only; 0 = off (the optional trailing stop of the reviews).")
    trailing_stop_pct: float = Field(default=0.0, ge=0, lt=1, description="Trailing stop below the best "
                                     "price since entry (fraction); 0 = off.")
    risk_per_trade_pct: float = Field(default=0.02, gt=0, le=1, allow_inf_nan=False, description="Most "
                                      "equity a trade may lose at its stop: stop distance x shares is sized to it.")
    min_order_notional: float = Field(default=5.0, ge=0, allow_inf_nan=False,
                                      description="USD; a smaller order is not placed.")
    dust_notional: float = Field(default=1.0, ge=0, allow_inf_nan=False,
                                 description="USD; a position worth less is closed out by the broker.")
    halt_cooldown_cycles: int = Field(default=10, ge=0, le=1000, description="Cycles in a drawdown halt after "
                                      "which the peak resets to the equity then (0 = never: an absorbing halt).")
    trading_breaker_window: int = Field(default=5, ge=1, le=250, description="Cycles the trading breaker looks back.")
    trading_breaker_rate: float = Field(default=0.5, gt=0, le=1, description="Failed share of the orders "
                                        "in the window above which no new orders are placed.")
    market_breaker_pct: float = Field(default=0.07, gt=0, le=1, description="An index move larger than this "
                                      "(either way) on the decision day: no new buys.")

    # market data: corporate actions and outlier guards (tools/market/)
    split_adjust: bool = Field(
        default=True, description="Detect splits/reverse splits in the bars and back-adjust prices before them."
    )
    outlier_band_z: float = Field(
        default=12.0, gt=0, description="Reject a bar whose log return against the last accepted close has a "
        "robust z-score (median/MAD of the trailing accepted returns) above this...")
    outlier_min_move: float = Field(
        default=0.6, gt=0, le=100, description="...and moves more than a factor 1 + this either way "
        "(0.6: up 60% or down 37.5%); also the live quote band against the last close.")
    outlier_lookback: int = Field(default=60, ge=10, le=1000, description="Accepted returns in the robust z-score.")
    outlier_confirm_bars: int = Field(
        default=3, ge=1, le=20, description="Rejected bars agreeing on a new level before it is accepted again.")
    outlier_max_price: float = Field(
        default=1e7, gt=0, description="A price above this (USD) is absurd: a data issue from its date on.")

    # self-learning loop
    learning: bool = Field(default=True, description="Off: frozen equal weights, no memory, no changes.")
    # 10: the median position is held 10 trading days (mean 11.2) under the default plans
    # (max_holding_days 20): predictions are scored on the horizon the P&L depends on.
    horizon_days: int = Field(default=10, ge=1, le=60, description="Bars until a prediction resolves.")
    memory_k: int = Field(default=5, ge=1, le=50, description="Similar past situations recalled.")
    memory_max_distance: float = Field(default=2.0, gt=0, description="Squared L2 in feature space.")
    confidence_threshold: float = Field(default=0.3, ge=0, lt=1, description="Per agent, initial.")
    max_confidence_threshold: float = Field(default=0.9, gt=0, lt=1)
    accuracy_window: int = Field(default=20, ge=2, description="Resolved predictions judged per agent.")
    min_resolved: int = Field(default=10, ge=1, description="Before any change is made or judged.")
    timeout_limit: int = Field(default=3, ge=1, description="Timeouts in the window before a change.")
    lesson_min_error: float = Field(default=0.03, gt=0, description="Return against a call that earns a lesson.")
    max_lessons_per_cycle: int = Field(default=3, ge=0)
    # learning switches (each acts only when ``learning`` is on): every ablation is a setting
    learn_weights: bool = Field(default=True, description="Off: equal vote weights, not learned.")
    learn_memory: bool = Field(default=True, description="Off: no situation memory, lessons or recall.")
    learn_improver: bool = Field(default=True, description="Off: AgentImprover changes nothing; default profiles.")
    learn_gate: bool = Field(default=True, description="Off: the history reviewer's statistical BUY gate is off.")
    weight_rounds: int = Field(default=250, ge=1, le=10_000, description="T in the Hedge rate "
                               "eta = sqrt(8 ln N / ((horizon + 1) T)): rounds (cycles) the weights answer for.")
    gate_min_blocks: int = Field(default=8, ge=2, le=520, description="Independent weeks before a gate "
                                 "or an AgentImprover change may act on an agent's hit rate.")
    gate_alpha: float = Field(default=0.05, gt=0, lt=0.5, description="One-sided significance level.")
    # RL controller (nodes/rl_controller.py): a learned per-cycle size multiplier, clipped by the hard limits
    rl_controller: bool = Field(default=False, description="On: the policy scales entry sizes (needs `make rl`).")
    rl_policy: Path | None = Field(default=None, description="Policy file; default $VOLT_HOME/rl/policy.zip.")

    @field_validator("watchlist", "models", "ollama_hosts", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("watchlist")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [s.upper() for s in value]

    @field_validator("ollama_hosts")
    @classmethod
    def _normalize_hosts(cls, value: list[str]) -> list[str]:
        """Each host as OLLAMA_HOST is read; a host listed twice counts once."""
        return list(dict.fromkeys(normalize_ollama_host(h) for h in value))

    @field_validator("ollama_host")
    @classmethod
    def _normalize_host(cls, value: str) -> str:
        return normalize_ollama_host(value)

    @property
    def model_hosts(self) -> list[str]:
        """The Ollama servers in use: ``ollama_hosts``, or ``ollama_host`` alone when it is empty."""
        return list(self.ollama_hosts) or [self.ollama_host]

    @field_validator("database_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        """Empty is unset; a URL that will be refused is shown without its password."""
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and not value.startswith(("postgresql://", "postgres://")):
            from memory.db import redact

            return redact(value)
        return value

    @property
    def ledger_path(self) -> Path:
        """``home/volt.db``, or a ``memory.db.DatabaseURL`` when ``database_url`` is set."""
        if self.database_url:
            from memory.db import DatabaseURL

            return DatabaseURL(self.database_url)
        return self.home / "volt.db"

    @property
    def checkpoint_path(self) -> Path:
        """``home/checkpoints.db``, or the same database as the ledger when ``database_url`` is set."""
        if self.database_url:
            return self.ledger_path
        return self.home / "checkpoints.db"

    @property
    def rl_policy_path(self) -> Path:
        return self.rl_policy if self.rl_policy is not None else self.home / "rl" / "policy.zip"


def existing_home_settings(**overrides: object) -> VoltSettings:
    """Settings for a command that only reads an existing VOLT home (``graph.learning``,
    ``graph.positions``); ``None`` overrides are left out. :class:`OperationalError` with one
    line for invalid settings or a home without a ledger yet."""
    try:
        settings = VoltSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise OperationalError(settings_error_line(exc)) from None
    if not settings.ledger_path.is_file():
        raise OperationalError(f"no VOLT data in {settings.home} (run `python -m graph.run` first)")
    return settings
