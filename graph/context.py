"""Run-scoped context handed to every node (LangGraph ``context_schema``).

Configuration comes from :class:`graph.settings.VoltSettings` (environment overrides).
``chat_model_factory`` lets a caller supply chat models by name instead of Ollama:
the tests pass scripted fake models through it; production leaves it ``None``.
``alt_data`` likewise replaces the news/fundamentals/forex provider chosen by the source,
and ``live_price`` is the live source's quote for fills (``None`` on replay).
``deadline`` is the cycle's deadline on ``time.monotonic()`` (seconds; ``None``: none): the
runner sets it to now + ``cycle_deadline_s`` for a live cycle, and no model call starts
within a second of it (``nodes/agent_node.py``).
"""

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from langchain_core.language_models import BaseChatModel

from graph.settings import VoltSettings
from tools.alt_data import AltDataProvider

ChatModelFactory = Callable[[str], BaseChatModel]


@dataclass(kw_only=True)
class VoltContext:
    settings: VoltSettings = field(default_factory=VoltSettings)
    chat_model_factory: ChatModelFactory | None = None
    alt_data: AltDataProvider | None = None
    live_price: Callable[[str], float] | None = None  # live source: the quote a fill uses
    deadline: float | None = None  # time.monotonic() seconds; None: no deadline (replay)


STUDIO_PORTFOLIO = "studio"
STUDIO_HOME_ENV = "VOLT_STUDIO_HOME"


def studio_settings() -> VoltSettings:
    """LangGraph Studio's own portfolio (``studio``) in its own home (``$VOLT_STUDIO_HOME``,
    default ``./.volt-studio``): a Studio run with ``{}`` never trades the CLI's ``main``
    portfolio in ``./.volt``. Other ``VOLT_*`` settings (models, data) still apply."""
    home = Path(os.environ.get(STUDIO_HOME_ENV) or "./.volt-studio")
    return VoltSettings(portfolio=STUDIO_PORTFOLIO, home=home)


@dataclass(kw_only=True)
class StudioContext(VoltContext):
    """The Studio graph's context: :func:`studio_settings` unless the run supplies settings."""

    settings: VoltSettings = field(default_factory=studio_settings)
