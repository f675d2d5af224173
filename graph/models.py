"""Chat models: which configured models are usable this cycle, and how to build one.

The chain is tried in order by every LLM node. A model spec is an Ollama model name
(``qwen2.5-coder:7b``), ``ollama:<name>``, or a GGUF file run in-process by llama.cpp:
``llamacpp:smollm2`` (the embedded model of the optional extra ``local``) or
``llamacpp:/path/to/model.gguf`` (see :mod:`graph.local_model`). The default chain is the
Ollama models, then the embedded model; after the last usable model every agent answers with
its quantitative prior.

Ollama's reachability is probed once per cycle with a short timeout (only when the chain
names an Ollama model), so with no server running the Ollama entries are skipped at once:
a refused connection costs milliseconds, not a model timeout per call. A ``llamacpp:``
entry is usable when the extra is installed and its file exists; nothing is loaded here.

Several Ollama servers (``VOLT_OLLAMA_HOSTS``) are probed in parallel; a model is usable when
one of them lists it. Each call goes to the host serving that model with the fewest calls
in flight from this process, ties taken round-robin (:func:`hosts_for`, :func:`in_flight`),
and each (host, model) pair has its own breaker (:func:`breaker_target`). With one host
(``OLLAMA_HOST`` alone) the breaker is the model's, as before.

:func:`constrain_to_schema` is the one place that knows how each backend is made to answer
with JSON of a given schema (Ollama ``format``, a llama.cpp grammar).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

from graph import local_model
from graph.context import ChatModelFactory
from graph.local_model import is_llamacpp_spec, is_local_chat_model
from graph.settings import VoltSettings

OLLAMA_PREFIX = "ollama:"
_hosts_lock = threading.Lock()
_host_models: dict[str, set[str]] = {}  # host -> the names its last probe listed (this process)
_in_flight: dict[str, int] = {}  # host -> model calls under way from this process
_turns: dict[str, Iterator[int]] = {}  # spec -> round-robin counter among equally loaded hosts

@dataclass(frozen=True)
class ModelChainStatus:
    usable: list[str]
    host: str
    reachable: bool | None  # Ollama: None when not probed (no Ollama model configured, or injected models)
    missing: list[str] = field(default_factory=list)
    note: str = ""
    breaker_open: list[str] = field(default_factory=list)  # skipped this cycle: cool-down not over
    hosts: dict[str, list[str]] = field(default_factory=dict)  # several hosts: the usable models each serves

    def as_dict(self) -> dict:
        return asdict(self)


def ollama_name(spec: str) -> str:
    return spec[len(OLLAMA_PREFIX) :] if spec.startswith(OLLAMA_PREFIX) else spec


def _probe_ollama(settings: VoltSettings, host: str | None = None) -> tuple[set[str], Exception | None]:
    """The model names the Ollama server ``host`` (default ``settings.ollama_host``) lists, or
    the exception that says it is not there."""
    import ollama  # deferred: only needed when talking to a server

    try:
        listed = ollama.Client(host=host or settings.ollama_host, timeout=settings.probe_timeout_s).list()
    except Exception as exc:  # refused, DNS, timeout, bad answer: all mean "not reachable"
        return set(), exc
    available: set[str] = set()
    for entry in getattr(listed, "models", []) or []:
        name = getattr(entry, "model", None) or getattr(entry, "name", None)
        if name:
            available.add(name)
            if name.endswith(":latest"):
                available.add(name[: -len(":latest")])
    return available, None


def _probe_hosts(settings: VoltSettings) -> tuple[set[str], Exception | None, dict[str, set[str]]]:
    """Every host of ``settings.model_hosts`` probed (in parallel when several): (the names any
    host lists, the error when none answered, each host's names). Kept for :func:`hosts_for`."""
    hosts = settings.model_hosts
    if len(hosts) == 1:
        found = {hosts[0]: _probe_ollama(settings, hosts[0])}
    else:
        with ThreadPoolExecutor(max_workers=min(len(hosts), 16), thread_name_prefix="ollama-probe") as pool:
            found = dict(zip(hosts, pool.map(lambda h: _probe_ollama(settings, h), hosts), strict=True))
    by_host = {h: names for h, (names, error) in found.items() if error is None}
    with _hosts_lock:
        for h in hosts:
            _host_models[h] = by_host.get(h, set())
    errors = [error for _names, error in found.values() if error is not None]
    return set().union(*by_host.values()), (errors[0] if not by_host else None), by_host


def hosts_for(settings: VoltSettings, spec: str) -> list[str]:
    """The Ollama hosts to try for ``spec``, best first: those whose last probe listed it (all
    of them before any probe), fewest calls in flight first, ties in round-robin order."""
    hosts = settings.model_hosts
    if len(hosts) == 1 or is_llamacpp_spec(spec):  # in-process models have no host to choose
        return hosts[:1]
    name = ollama_name(spec)
    with _hosts_lock:
        serving = [h for h in hosts if h not in _host_models or name in _host_models[h]] or list(hosts)
        turn = next(_turns.setdefault(spec, itertools.count()))
        rotated = [serving[(turn + i) % len(serving)] for i in range(len(serving))]
        return sorted(rotated, key=lambda h: _in_flight.get(h, 0))  # stable: the rotation breaks ties


@contextmanager
def in_flight(host: str) -> Iterator[None]:
    """Count one model call to ``host`` as under way while the block runs (for :func:`hosts_for`)."""
    with _hosts_lock:
        _in_flight[host] = _in_flight.get(host, 0) + 1
    try:
        yield
    finally:
        with _hosts_lock:
            _in_flight[host] -= 1


def breaker_target(settings: VoltSettings, spec: str, host: str) -> str:
    """The breaker name of ``spec`` on ``host``: the spec alone with one host (as before several
    hosts existed), ``spec@host`` with several, so one dead server does not block the others."""
    return spec if len(settings.model_hosts) == 1 or is_llamacpp_spec(spec) else f"{spec}@{host}"


def _describe(spec: str) -> str:
    return f"{spec} ({local_model.describe(spec)})" if is_llamacpp_spec(spec) else spec


def _breaker_open(settings: VoltSettings, spec: str, hosts: dict[str, list[str]] | None = None) -> bool:
    """Whether ``spec``'s breaker is open with its cool-down still running (``memory.breakers``);
    with several hosts, whether that holds on every host serving it."""
    from memory.breakers import model_breaker  # deferred: storage is below this module
    from memory.ops_db import ops_path

    if not ops_path(settings.home).exists():  # no breaker has ever been recorded here
        return False
    serving = [h for h, names in (hosts or {}).items() if spec in names] or settings.model_hosts[:1]
    return all(model_breaker(settings, breaker_target(settings, spec, h)).retry_in_s() > 0 for h in serving)


def resolve_model_chain(
    settings: VoltSettings, factory: ChatModelFactory | None, *, breakers: bool = True
) -> ModelChainStatus:
    """Which configured models are usable this cycle. With ``breakers`` (the default), a model
    whose circuit breaker is open and still cooling down is left out (listed in
    ``breaker_open``); ``graph.health`` passes False because it only reads."""
    status = _resolve(settings, factory)
    if not breakers or factory is not None or not status.usable:
        return status
    blocked = [m for m in status.usable if _breaker_open(settings, m, status.hosts)]
    if not blocked:
        return status
    usable = [m for m in status.usable if m not in blocked]
    note = f"{status.note}; breaker open, skipped: {', '.join(blocked)}"
    if not usable:
        note += "; agents used their quantitative priors (degraded)"
    return ModelChainStatus(usable, status.host, status.reachable, [*status.missing, *blocked], note, blocked,
                            {h: [m for m in names if m in usable] for h, names in status.hosts.items()})


def _resolve(settings: VoltSettings, factory: ChatModelFactory | None) -> ModelChainStatus:
    if factory is not None:
        return ModelChainStatus(list(settings.models), "injected", None, note="models supplied by the caller")
    if not settings.models:
        return ModelChainStatus([], settings.ollama_host, None, note="no models configured (VOLT_MODELS is empty): quantitative priors only")
    host = ", ".join(settings.model_hosts)
    ollama_specs = [m for m in settings.models if not is_llamacpp_spec(m)]
    local_problems = {m: r for m in settings.models if is_llamacpp_spec(m) and (r := local_model.unavailable_reason(m))}
    reachable: bool | None = None
    available: set[str] = set()
    probe_error: Exception | None = None
    by_host: dict[str, set[str]] = {}
    if ollama_specs:
        available, probe_error, by_host = _probe_hosts(settings)
        reachable = probe_error is None
    usable = [m for m in settings.models
              if (m not in local_problems if is_llamacpp_spec(m) else ollama_name(m) in available)]
    missing = [m for m in settings.models if m not in usable]
    not_installed = "; ".join(f"{m} unavailable: {r}" for m, r in local_problems.items())

    if usable:
        where = f" at {host}" if any(not is_llamacpp_spec(m) for m in usable) else ""
        note = f"models: {', '.join(_describe(m) for m in usable)}{where}"
        skipped = [m for m in missing if not is_llamacpp_spec(m)]
        if skipped and reachable:
            note += f" (not pulled: {', '.join(skipped)})"
        elif skipped:
            note += f" (Ollama not reachable at {host}, {type(probe_error).__name__}: skipped {', '.join(skipped)})"
        if not_installed:
            note += f" ({not_installed})"
        served = {}
        if len(settings.model_hosts) > 1:
            served = {h: [m for m in usable if not is_llamacpp_spec(m) and ollama_name(m) in by_host.get(h, set())]
                      for h in settings.model_hosts}
            if down := [h for h in settings.model_hosts if h not in by_host]:
                note += f" (not reachable: {', '.join(down)})"
        return ModelChainStatus(usable, host, reachable, missing, note, hosts=served)

    if reachable is False:
        note = (
            f"no language model reachable at {host} ({type(probe_error).__name__}); "
            "agents used their quantitative priors (degraded). To use a model: install Ollama "
            f"(https://ollama.com), `ollama pull {ollama_name(ollama_specs[0])}`, "
            "or point OLLAMA_HOST at a running server."
        )
    elif reachable:
        note = (
            f"Ollama is running at {host} but none of {', '.join(ollama_specs)} is pulled; "
            f"agents used their quantitative priors (degraded). Run `ollama pull {ollama_name(ollama_specs[0])}`."
        )
    else:
        note = "no language model usable; agents used their quantitative priors (degraded)."
    if not_installed:
        note += f" {not_installed}."
    return ModelChainStatus([], host, reachable, missing, note)


def make_chat_model(spec: str, *, host: str, timeout_s: float) -> BaseChatModel:
    """The chat model for a spec: deterministic (temperature 0), bounded output and time.

    ``llamacpp:`` specs share one loaded GGUF per process (see :mod:`graph.local_model`);
    their time is bounded by the output budget, not by ``timeout_s``.
    """
    if is_llamacpp_spec(spec):
        return local_model.load_chat_model(spec)
    from langchain_ollama import ChatOllama

    return ChatOllama(
        model=ollama_name(spec),
        base_url=host,
        temperature=0.0,
        num_predict=512,
        client_kwargs={"timeout": timeout_s},
    )


def constrain_to_schema(model: BaseChatModel, schema: dict) -> Runnable:
    """``model`` bound so that its reply is a JSON document of ``schema``, where the backend can
    enforce it: a llama.cpp grammar compiled from the schema (generation cannot leave it), or
    Ollama's structured outputs (``format=<schema>``). Any other chat model is returned as is;
    every answer is validated by the agent's pydantic schema afterwards either way.
    """
    if is_local_chat_model(model):
        return model.bind(grammar=local_model.grammar_for(schema))
    if "format" in type(model).model_fields:  # ChatOllama
        return model.bind(format=schema)
    return model


def offers_tool_calls(model: BaseChatModel) -> bool:
    """Whether an agent offers tool rounds to ``model``. In-process llama.cpp models answer in
    one grammar-constrained round: their chat templates have no tool calling, and the evidence
    already holds the indicators the tools would return."""
    return not is_local_chat_model(model)
