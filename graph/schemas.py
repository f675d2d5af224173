"""Pydantic models for every agent output. A model's answer must validate against these.

Validation context ``{"symbol": ...}`` rejects an answer about any other symbol. Prices
are in the data's currency; sizes and confidences are fractions of 1.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

Action = Literal["BUY", "SELL", "HOLD"]


class _AgentOutput(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class _SymbolOutput(_AgentOutput):
    symbol: str = Field(description="The symbol under analysis, exactly as given.")

    @field_validator("symbol")
    @classmethod
    def _known_symbol(cls, value: str, info: ValidationInfo) -> str:
        expected = (info.context or {}).get("symbol")
        if expected is not None and value.upper() != expected:
            raise ValueError(f"answer is about {value!r}, expected {expected!r}")
        return value.upper()


class MarketView(_SymbolOutput):
    """MarketAgent: trend, strength, support/resistance and volume pattern."""

    direction: Literal["BULLISH", "BEARISH", "NEUTRAL"]
    strength: float = Field(ge=0, le=1, description="Trend strength, 0 (none) to 1 (strong).")
    support: float = Field(gt=0)
    resistance: float = Field(gt=0)
    volume_pattern: Literal["RISING", "FALLING", "NORMAL"]
    rationale: str = Field(default="", max_length=600)

    @model_validator(mode="after")
    def _levels_ordered(self) -> MarketView:
        if self.support > self.resistance:
            raise ValueError("support must not exceed resistance")
        return self


class StrategySignal(_SymbolOutput):
    """StrategyAgent: action, confidence, entry/exit/stop and suggested size."""

    action: Action
    confidence: float = Field(ge=0, le=1)
    entry: float = Field(gt=0, description="Intended entry price.")
    exit: float = Field(gt=0, description="Take-profit price.")
    stop_loss: float = Field(gt=0)
    size_pct: float = Field(ge=0, le=1, description="Suggested position size, fraction of equity.")
    rationale: str = Field(default="", max_length=600)


class RiskOpinion(_SymbolOutput):
    """RiskAgent's view. ``max_position_pct`` can only tighten the configured cap."""

    verdict: Literal["APPROVED", "REJECTED"]
    risk_score: float = Field(ge=0, le=1, description="0 = negligible risk, 1 = extreme.")
    max_position_pct: float | None = Field(default=None, ge=0, le=1)
    reasons: list[str] = Field(default_factory=list, max_length=8)


class AuditReview(_SymbolOutput):
    """AuditorAgent: cross-check of the proposal for consistency and anomalies."""

    verdict: Literal["APPROVED", "REJECTED"]
    objections: list[str] = Field(default_factory=list, max_length=8)


class Lesson(_SymbolOutput):
    """LearningAgent's reflection on a prediction that went clearly wrong."""

    lesson: str = Field(min_length=10, max_length=240)


class SentimentView(_SymbolOutput):
    """SentimentAgent: news, insider and analyst sentiment for one symbol."""

    sentiment: Literal["BULLISH", "BEARISH", "NEUTRAL"]
    score: float = Field(ge=-1, le=1, description="-1 very negative .. +1 very positive.")
    confidence: float = Field(ge=0, le=1)
    drivers: list[str] = Field(default_factory=list, max_length=6)


Regime = Literal["HIGH_VOLATILITY", "BULL_MARKET", "BEAR_MARKET", "BTC_DOMINANCE", "SIDEWAYS"]


class MacroView(_SymbolOutput):
    """MacroAgent / GlobalMarketAnalyzer: the market regime and risk appetite (symbol MARKET)."""

    regime: Regime
    risk_appetite: float = Field(ge=-1, le=1, description="-1 risk-off .. +1 risk-on.")
    confidence: float = Field(ge=0, le=1)
    rationale: str = Field(default="", max_length=600)


class ForexView(_SymbolOutput):
    """ForexAgent: direction of a currency pair."""

    direction: Literal["BULLISH", "BEARISH", "NEUTRAL"]
    strength: float = Field(ge=0, le=1)
    rate: float = Field(gt=0)
    rationale: str = Field(default="", max_length=600)
