"""Action chains and consensus models: the pydantic models of ``config/chains.toml``.

A chain is the ordered list of steps a candidate runs through, the consensus model its vote
uses, and a ``when`` selector: ``held`` (a symbol the portfolio holds, or a new candidate) and
optionally ``regime`` (MacroAgent's regimes it applies to). Per symbol the most specific match
wins: a chain naming the cycle's regime before one for any regime; ties go to the first in
the file. The file is read with the standard library's ``tomllib`` and validated at start-up
(``python -m graph.run``), so a bad file is one :class:`ChainConfigError` line, exit 2, before
anything runs. A foundation module like ``graph.settings``: nodes may import it.

Rules beyond the field types (each a one-line error naming the file and the chain):

- every step is a known agent or step (:data:`STEPS`), listed once (a step named twice would
  make the chain loop: a cycle);
- a step comes after the steps it reads (:data:`NEEDS`: the consensus reads the strategist's
  signal, peer review reads risk, audit and history...);
- a new-symbol (entry) chain ends with ``peer_review``, which sizes the order; a held-symbol
  (exit review) chain ends with ``exit_review``; steps of one kind are refused in the other;
- some chain matches every new symbol and every held symbol (one with no ``regime`` for each).
"""

from __future__ import annotations

import os
import tomllib
import typing
from pathlib import Path
from threading import Lock

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from graph.errors import OperationalError
from graph.schemas import Regime

CONSENSUS_MODELS = ("weighted", "majority", "unanimous", "confidence_weighted")
REGIMES = typing.get_args(Regime)
ANALYSTS = ("market_agent", "sentiment_agent", "forex_agent", "strategy_agent")
ENTRY_STEPS = ("risk_agent", "auditor_agent", "history_reviewer", "peer_review")
HELD_STEPS = ("position_risk", "exit_review")
STEPS = (*ANALYSTS, "consensus", *ENTRY_STEPS, *HELD_STEPS)
# step -> steps that must run before it in the same chain (it reads their results)
NEEDS: dict[str, tuple[str, ...]] = {
    "consensus": ("strategy_agent",),
    "risk_agent": ("consensus",),
    "auditor_agent": ("market_agent", "risk_agent"),
    "history_reviewer": ("consensus",),
    "peer_review": ("risk_agent", "auditor_agent", "history_reviewer"),
    "exit_review": ("market_agent", "strategy_agent", "consensus", "position_risk"),
}
# Today's candidate graph: the entry chain when no file says otherwise (Studio, old callers).
DEFAULT_ENTRY = ("market_agent", "sentiment_agent", "forex_agent", "strategy_agent", "consensus",
                 "risk_agent", "auditor_agent", "history_reviewer", "peer_review")


class ChainConfigError(OperationalError):
    """A chains file that cannot be used: one line naming the file, the chain and the problem."""


class When(BaseModel):
    model_config = ConfigDict(extra="forbid")

    held: bool  # True: symbols the portfolio holds (exit review); False: new candidates
    regime: list[Regime] | None = Field(default=None, min_length=1)  # None: any regime


class Chain(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    when: When
    steps: list[str] = Field(min_length=1)
    consensus: str | None = None  # None: the file's default
    threshold: float | None = Field(default=None, gt=0, lt=1)  # None: the default, or the setting


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    consensus: str = "weighted"
    threshold: float | None = Field(default=None, gt=0, lt=1)  # None: settings.consensus_threshold


class ChainsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: Defaults = Field(default_factory=Defaults)
    chains: dict[str, Chain] = Field(min_length=1)

    @field_validator("chains")
    @classmethod
    def _names(cls, chains: dict[str, Chain]) -> dict[str, Chain]:
        for name in chains:
            if not name.replace("_", "").isalnum() or not name[:1].isalpha():
                raise ValueError(f"chain name {name!r} must be letters, digits and _")
        return chains


def chain_problem(name: str, chain: Chain, default_model: str) -> str | None:
    """The first thing wrong with one chain, or None."""
    model = chain.consensus or default_model
    if model not in CONSENSUS_MODELS:
        return f"unknown consensus model {model!r} (known: {', '.join(CONSENSUS_MODELS)})"
    seen: list[str] = []
    for step in chain.steps:
        if step not in STEPS:
            return f"unknown agent {step!r} (known: {', '.join(STEPS)})"
        if step in seen:
            return f"step {step!r} appears twice (a cycle)"
        if missing := [n for n in NEEDS.get(step, ()) if n not in seen]:
            return f"step {step!r} needs {', '.join(repr(m) for m in missing)} before it"
        seen.append(step)
    held = chain.when.held
    wrong = [s for s in chain.steps if s in (ENTRY_STEPS if held else HELD_STEPS)]
    if wrong:
        kind = "held-symbol" if held else "new-symbol"
        return f"step {wrong[0]!r} cannot run in a {kind} chain"
    last = "exit_review" if held else "peer_review"
    if chain.steps[-1] != last:
        kind = "held-symbol (when.held = true)" if held else "new-symbol (when.held = false)"
        return f"a {kind} chain must end with {last!r}, not {chain.steps[-1]!r}"
    return None


class ChainSet:
    """A validated chains file: choose the chain for a symbol with :meth:`select`."""

    def __init__(self, spec: ChainsFile, path: Path):
        self.spec, self.path = spec, path

    def select(self, *, held: bool, regime: str | None) -> dict:
        """The chain for a held (exit review) or new (entry) symbol in ``regime``, as the
        JSON-able dict the candidate state carries: name, steps, consensus model, threshold."""
        matches = [(name, c) for name, c in self.spec.chains.items()
                   if c.when.held == held and (c.when.regime is None or regime in c.when.regime)]
        # a chain naming the regime beats a catch-all; the file's order breaks ties
        name, chain = min(matches, key=lambda m: m[1].when.regime is None)
        return resolved(name, chain, self.spec.defaults)


def resolved(name: str, chain: Chain, defaults: Defaults) -> dict:
    return {"name": name, "held": chain.when.held, "steps": list(chain.steps),
            "consensus": chain.consensus or defaults.consensus,
            "threshold": chain.threshold if chain.threshold is not None else defaults.threshold}


def default_entry_chain() -> dict:
    """Today's graph as a chain: the candidate subgraph's route when a payload carries none."""
    return {"name": "entry", "held": False, "steps": list(DEFAULT_ENTRY), "consensus": "weighted",
            "threshold": None}


def _one_line(path: Path, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    where = f"chain {loc[1]!r}: " if len(loc) >= 2 and loc[0] == "chains" else ""
    field = ".".join(loc[2:] if where else loc)
    if err["type"] == "missing":
        problem = f"missing field {field!r}"
    elif err["type"] == "extra_forbidden":
        problem = f"unknown field {field!r}"
    else:
        problem = f"{field}: {err['msg']}" if field else err["msg"]
    return f"{path}: {where}{problem}"


def parse_chains(text: str, path: Path) -> ChainSet:
    """Validate a chains file's text; :class:`ChainConfigError` (one line) when it is unusable."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ChainConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        spec = ChainsFile.model_validate(raw)
    except ValidationError as exc:
        raise ChainConfigError(_one_line(path, exc)) from None
    if spec.defaults.consensus not in CONSENSUS_MODELS:
        raise ChainConfigError(f"{path}: defaults: unknown consensus model {spec.defaults.consensus!r} "
                               f"(known: {', '.join(CONSENSUS_MODELS)})")
    for name, chain in spec.chains.items():
        if (problem := chain_problem(name, chain, spec.defaults.consensus)) is not None:
            raise ChainConfigError(f"{path}: chain {name!r}: {problem}")
    for held, what in ((False, "a new symbol"), (True, "a held symbol")):
        if not any(c.when.held == held and c.when.regime is None for c in spec.chains.values()):
            raise ChainConfigError(f"{path}: no chain matches {what} in every regime "
                                   f"(add one with when.held = {str(held).lower()} and no regime)")
    return ChainSet(spec, path)


_cache: dict[Path, tuple[tuple[int, int], ChainSet]] = {}
_lock = Lock()


def load_chains(path: Path | str) -> ChainSet:
    """Read and validate the chains file, cached per path until its size or mtime changes
    (each cycle's fan-out asks; an edit takes effect at the next cycle)."""
    path = Path(path)
    try:
        stat = os.stat(path)
        key = (stat.st_mtime_ns, stat.st_size)
        with _lock:
            hit = _cache.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChainConfigError(f"{path}: chains file not found (set VOLT_CHAINS_FILE)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChainConfigError(f"{path}: cannot read the chains file: {type(exc).__name__}: {exc}") from None
    chains = parse_chains(text, path)
    with _lock:
        _cache[path] = (key, chains)
    return chains
