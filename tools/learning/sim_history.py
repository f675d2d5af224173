"""What a replay needs from a run's ledger, as plain JSON-serializable data.

:class:`ReplayHistory` is read from a ledger by :func:`memory.replay_source.read_history`
and consumed by :class:`tools.learning.simulator.DecisionSimulator`. It is plain dicts and
lists (``to_dict``/``from_dict`` round-trip through ``json``), so an evaluation can keep it
in a file after deleting the run's ledger. Days are ``YYYY-MM-DD`` strings (decision days
D); quantities are shares of D for orders (as decided) and shares of the fill day F for
fills; prices in USD per share.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class DayRecord:
    """One recorded cycle.

    - ``orders``: the agents' orders in booking order, each ``{"symbol", "side", "qty"
      (shares of D), "kind" (entry, exit_review, reduce_review), "price" (the decision
      price), "plan" (an entry's plan, levels in D's shares), "confidence" (the consensus
      confidence, the broker's ordering key), "status", "reason", "verdict"}``.
    - ``broker_orders``: the broker's own orders (plan exits, dust), ``{"symbol", "side",
      "suffix" (exit or dust), "status", "reason"}`` (for the record and the breaker count).
    - ``fills``: every booked fill, ``{"order_id", "symbol", "side", "qty", "reference_price",
      "price", "slippage_pct", "fee", "realized_pnl", "fill_date", "kind"}``.
    - ``proposals``: one per candidate (its final consensus), ``{"symbol", "action",
      "score", "confidence", "size_pct", "entry", "exit", "stop_loss", "model", "threshold",
      "votes" ({agent: {"vote", "weight", "threshold"}}), "result" (HOLD, BLOCKED, REJECTED,
      APPROVED, CAUTION), "held" (the exit-review chain), "calls" ({agent: {"action",
      "confidence", "signal"}}: each agent's raw call, before any threshold)}``.
    - ``tightens``: stop proposals of exit reviews, ``{"symbol", "proposal"}``.
    - ``candidates``: the symbols analysed (their snapshots price the broker's slippage).
    - ``equity``/``cash``: after the cycle, as recorded.
    """

    as_of: str
    equity: float
    cash: float
    orders: list[dict] = field(default_factory=list)
    broker_orders: list[dict] = field(default_factory=list)
    fills: list[dict] = field(default_factory=list)
    proposals: list[dict] = field(default_factory=list)
    tightens: list[dict] = field(default_factory=list)
    candidates: list[str] | None = None


@dataclass
class ReplayHistory:
    """A portfolio's recorded run: its starting cash, its cycles in order, the splits applied
    to its positions and its plans (with their timelines), for the record."""

    portfolio: str
    starting_cash: float
    days: list[DayRecord]
    splits_applied: list[dict] = field(default_factory=list)
    plans: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ReplayHistory:
        days = [DayRecord(**d) for d in data.get("days", [])]
        return cls(portfolio=data["portfolio"], starting_cash=float(data["starting_cash"]), days=days,
                   splits_applied=list(data.get("splits_applied") or []), plans=list(data.get("plans") or []))

    def day(self, as_of: str) -> DayRecord | None:
        for d in self.days:
            if d.as_of == as_of:
                return d
        return None
