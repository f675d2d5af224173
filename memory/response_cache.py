"""LLM response cache in SQLite, plugged into LangChain's own chat-model cache hook.

LangChain's ``BaseChatModel._generate_with_cache`` asks ``model.cache`` (a
:class:`~langchain_core.caches.BaseCache`) before every model call with two strings:

- ``prompt``: ``dumps(messages)`` of the full message list (system prompt, evidence,
  earlier tool calls and tool results), message ids removed;
- ``llm_string``: the model's invocation parameters **plus the call's kwargs**, which is
  where ``bind_tools(tools)`` puts ``tools`` and ``bind(format=<JSON schema>)`` puts the
  answer schema (checked in langchain-core's source: ``_get_llm_string(stop, **kwargs)``).

That string does NOT always name the model: for ``ChatOllama`` it is just
``[('_type', 'chat-ollama'), ('stop', None)]``, so two Ollama models would share answers.
Each :class:`ResponseCache` therefore carries a namespace with the model spec and the
model's own settings (:func:`model_identity`), and the key is
``sha256(namespace, llm_string, prompt)``: model, prompt, tools and schema.

A hit returns the stored generations and the model is not called; a miss calls the model
and stores its answer (a failed call stores nothing). Counters (hits, model calls,
tokens) are kept per process for reports.

Enabled by ``VoltSettings.llm_cache`` (a file path; unset = off): ``nodes.agent_node.chat_model``
wraps every chat model it hands out with :func:`with_response_cache`. With ``VOLT_DATABASE_URL``
set, the enabled cache lives in that PostgreSQL database instead (table ``responses``,
:func:`cache_target`), shared by every process and machine using it: a prompt answered once
is not asked again anywhere.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import message_to_dict, messages_from_dict
from langchain_core.outputs import ChatGeneration, Generation

from memory.db import DatabaseURL, as_target, require_postgres

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    generations TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
)
"""

# Model fields that change how a call is transported, not what the model answers.
TRANSPORT_FIELDS = frozenset({
    "cache", "callbacks", "callback_manager", "verbose", "tags", "metadata", "rate_limiter",
    "custom_get_token_ids", "base_url", "client_kwargs", "async_client_kwargs", "sync_client_kwargs",
    "keep_alive", "timeout", "request_timeout", "disable_streaming", "output_version",
})


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0  # lookups that went on to the model: the real LLM calls
    stored: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_known: int = 0  # stored answers that reported token usage

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def minus(self, other: CacheStats) -> CacheStats:
        return CacheStats(**{k: v - getattr(other, k) for k, v in asdict(self).items()})


class ResponseStore:
    """One SQLite file, shared by threads (one connection, a lock) and processes (WAL); or a
    PostgreSQL database (a :class:`~memory.db.DatabaseURL`), shared by every process using it."""

    def __init__(self, path: Path | DatabaseURL):
        self.path = as_target(path)
        self._lock = threading.Lock()
        self.stats = CacheStats()
        if isinstance(self.path, DatabaseURL):
            require_postgres(self.path)
            self._conn = _pg_connection(self.path)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False,
                                     isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(SCHEMA)

    def snapshot(self) -> CacheStats:
        with self._lock:
            return CacheStats(**self.stats.as_dict())

    def get(self, key: str) -> list[Generation] | None:
        with self._lock:
            row = self._conn.execute("SELECT generations FROM responses WHERE key=?", (key,)).fetchone()
            if row is None:
                self.stats.misses += 1
                return None
            self.stats.hits += 1
        return _loads(row[0])

    def put(self, key: str, namespace: str, generations: RETURN_VAL_TYPE) -> None:
        payload = _dumps(generations)
        usage = [u for g in generations if (u := _usage(g))]
        with self._lock:
            self._conn.execute("INSERT INTO responses(key, namespace, generations) VALUES (?,?,?) ON CONFLICT(key)"
                               " DO UPDATE SET namespace=excluded.namespace, generations=excluded.generations",
                               (key, namespace, payload))
            self.stats.stored += 1
            if usage:
                self.stats.tokens_known += 1
                self.stats.input_tokens += sum(int(u.get("input_tokens") or 0) for u in usage)
                self.stats.output_tokens += sum(int(u.get("output_tokens") or 0) for u in usage)

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def clear(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM responses")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class ResponseCache(BaseCache):
    """LangChain cache for ONE model: the store plus the model's namespace."""

    def __init__(self, store: ResponseStore, namespace: str):
        self.store = store
        self.namespace = namespace

    def key(self, prompt: str, llm_string: str) -> str:
        raw = json.dumps([self.namespace, llm_string, prompt], ensure_ascii=False)
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        return self.store.get(self.key(prompt, llm_string))

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        self.store.put(self.key(prompt, llm_string), self.namespace, return_val)

    def clear(self, **kwargs: Any) -> None:
        self.store.clear()


def _pg_connection(url: DatabaseURL):
    """A connection of the store's own (autocommit), its table created once under an
    advisory lock (two processes creating it at once would collide)."""
    from memory.pg import PgConnection, advisory_key, connect, storage_error
    from memory.schema_pg import NOW_UTC

    try:
        conn = PgConnection(connect(url), url)
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(?)", (advisory_key("volt:responses"),))
        conn.raw.execute(SCHEMA.replace("(strftime('%Y-%m-%dT%H:%M:%fZ','now'))", NOW_UTC))
        conn.execute("COMMIT")
    except Exception as exc:
        raise (storage_error(exc, url) or exc) from None
    return conn


def _dumps(generations: RETURN_VAL_TYPE) -> str:
    out = []
    for g in generations:
        if isinstance(g, ChatGeneration):
            out.append({"message": message_to_dict(g.message), "generation_info": g.generation_info})
        else:
            out.append({"text": g.text, "generation_info": g.generation_info})
    return json.dumps(out, default=str)


def _loads(payload: str) -> list[Generation]:
    gens: list[Generation] = []
    for item in json.loads(payload):
        if "message" in item:
            message = messages_from_dict([item["message"]])[0]
            gens.append(ChatGeneration(message=message, generation_info=item.get("generation_info")))
        else:
            gens.append(Generation(text=item["text"], generation_info=item.get("generation_info")))
    return gens


def _usage(generation: Generation) -> dict | None:
    message = getattr(generation, "message", None)
    usage = getattr(message, "usage_metadata", None)
    return dict(usage) if usage else None


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def model_identity(spec: str, model: BaseChatModel) -> str:
    """Model spec, class and every plain (JSON-able) setting that can change an answer."""
    fields = {}
    for name in sorted(type(model).model_fields):
        if name in TRANSPORT_FIELDS:
            continue
        value = getattr(model, name, None)
        if _plain(value):
            fields[name] = value
    return json.dumps({"spec": spec, "class": f"{type(model).__module__}.{type(model).__qualname__}",
                       "fields": fields}, sort_keys=True, default=str)


_STORES: dict[str, ResponseStore] = {}
_WRAPPED: dict[tuple[int, str, str], tuple[BaseChatModel, BaseChatModel]] = {}
_LOCK = threading.Lock()
MAX_WRAPPED = 256


def _key(path: Path | str | DatabaseURL) -> str:
    target = as_target(path)
    return target.url if isinstance(target, DatabaseURL) else str(target.expanduser().resolve())


def open_store(path: Path | str | DatabaseURL) -> ResponseStore:
    """The process-wide store for ``path`` (one connection and one set of counters per file
    or database URL)."""
    key = _key(path)
    with _LOCK:
        store = _STORES.get(key)
        if store is None:
            target = as_target(path)
            store = _STORES[key] = ResponseStore(target if isinstance(target, DatabaseURL) else Path(key))
        return store


def cache_target(settings: Any) -> Path | DatabaseURL | None:
    """Where ``settings``' response cache lives: None when off (``llm_cache`` unset), the
    database of ``database_url`` when that is set (shared by every worker), else the file."""
    path = getattr(settings, "llm_cache", None)
    if not path:
        return None
    return settings.ledger_path if getattr(settings, "database_url", None) else path


def close_store(path: Path | str | DatabaseURL) -> None:
    key = _key(path)
    with _LOCK:
        store = _STORES.pop(key, None)
        for k in [k for k in _WRAPPED if k[1] == key]:
            del _WRAPPED[k]
    if store is not None:
        store.close()


def with_response_cache(model: Any, spec: str, settings: Any) -> Any:
    """``model`` with the response cache of ``settings.llm_cache`` attached (a shallow copy,
    made once per model and file), or ``model`` itself when the cache is off."""
    path = cache_target(settings)
    if not path or not isinstance(model, BaseChatModel):
        return model
    store = open_store(path)
    key = (id(model), _key(store.path), spec)
    with _LOCK:
        hit = _WRAPPED.get(key)
        if hit is not None and hit[0] is model:
            return hit[1]
    wrapped = model.model_copy(update={"cache": ResponseCache(store, model_identity(spec, model))})
    with _LOCK:
        if len(_WRAPPED) >= MAX_WRAPPED:  # factories that build a new model per call
            _WRAPPED.clear()
        _WRAPPED[key] = (model, wrapped)  # holds ``model`` so its id cannot be reused
    return wrapped
