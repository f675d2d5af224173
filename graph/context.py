"""Run-scoped context handed to every node (LangGraph ``context_schema``).

Configuration comes from :class:`graph.settings.VoltSettings` (environment overrides).
``chat_model_factory`` lets a caller supply chat models by name instead of Ollama:
the tests pass scripted fake models through it; production leaves it ``None``.
``alt_data`` likewise replaces the news/fundamentals/forex provider chosen by the source,
and ``live_price`` is the live source's quote for fills (``None`` on replay).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

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
