"""Chat models: which configured models are usable this cycle, and how to build one.

The chain is tried in order by every LLM node. A model spec is an Ollama model name
(``qwen2.5-coder:7b``) or ``ollama:<name>``. Reachability is probed once per cycle with a
short timeout, so with no server running every agent goes straight to its prior: a
refused connection costs milliseconds, not a model timeout per call.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from langchain_core.language_models import BaseChatModel

from graph.context import ChatModelFactory
from graph.settings import VoltSettings

OLLAMA_PREFIX = "ollama:"


@dataclass(frozen=True)
class ModelChainStatus:
    usable: list[str]
    host: str
    reachable: bool | None  # None: models come from an injected factory, not probed
    missing: list[str] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def ollama_name(spec: str) -> str:
    return spec[len(OLLAMA_PREFIX) :] if spec.startswith(OLLAMA_PREFIX) else spec


def resolve_model_chain(settings: VoltSettings, factory: ChatModelFactory | None) -> ModelChainStatus:
    if factory is not None:
        return ModelChainStatus(list(settings.models), "injected", None, note="models supplied by the caller")
    if not settings.models:
        return ModelChainStatus([], settings.ollama_host, None, note="no models configured (VOLT_MODELS is empty): quantitative priors only")
    import ollama  # deferred: only needed when talking to a server

    try:
        listed = ollama.Client(host=settings.ollama_host, timeout=settings.probe_timeout_s).list()
    except Exception as exc:  # refused, DNS, timeout, bad answer: all mean "not reachable"
        return ModelChainStatus(
            [],
            settings.ollama_host,
            False,
            note=(
                f"no language model reachable at {settings.ollama_host} ({type(exc).__name__}); "
                "agents used their quantitative priors (degraded). To use a model: install Ollama "
                f"(https://ollama.com), `ollama pull {ollama_name(settings.models[0])}`, "
                "or point OLLAMA_HOST at a running server."
            ),
        )
    available: set[str] = set()
    for entry in getattr(listed, "models", []) or []:
        name = getattr(entry, "model", None) or getattr(entry, "name", None)
        if name:
            available.add(name)
            if name.endswith(":latest"):
                available.add(name[: -len(":latest")])
    usable = [m for m in settings.models if ollama_name(m) in available]
    missing = [m for m in settings.models if m not in usable]
    if usable:
        note = f"models: {', '.join(usable)} at {settings.ollama_host}"
        if missing:
            note += f" (not pulled: {', '.join(missing)})"
    else:
        note = (
            f"Ollama is running at {settings.ollama_host} but none of {', '.join(settings.models)} is pulled; "
            f"agents used their quantitative priors (degraded). Run `ollama pull {ollama_name(settings.models[0])}`."
        )
    return ModelChainStatus(usable, settings.ollama_host, True, missing, note)


def make_chat_model(spec: str, *, host: str, timeout_s: float) -> BaseChatModel:
    """An Ollama chat model: deterministic (temperature 0), bounded output and time."""
    from langchain_ollama import ChatOllama

    return ChatOllama(
        model=ollama_name(spec),
        base_url=host,
        temperature=0.0,
        num_predict=512,
        client_kwargs={"timeout": timeout_s},
    )
