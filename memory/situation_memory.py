"""Situation memory: resolved outcomes in a persistent Chroma collection (langchain-chroma).

A situation document's text is the canonical JSON of its features
(:mod:`tools.situation_features`); :class:`SituationEmbeddings` maps it to the feature
vector. That embedding is deterministic and offline: Chroma's default embedding would
download a model at run time. One collection per portfolio, each in its own directory
``$VOLT_HOME/chroma/<portfolio>`` (an embedded store is single-process), or,
with ``url`` (``VOLT_CHROMA_URL``, e.g. ``http://chroma.lan:8000``), on a ``chroma run``
server that several workers share (chromadb's HTTP client; the same collection names).

A server that cannot be reached when a cycle opens its memory is one warning line and a
cycle without recall (:class:`UnreachableMemory`); the next cycle that reaches it stores the
missing situations from the learning store. A server lost in the middle of a cycle is a
one-line :class:`StorageError` naming its URL, as a memory damaged mid-cycle is.

Point-in-time by construction: a situation is stored only once its outcome is resolved,
which only reads bars up to the resolving cycle's day, and cycles only move forward.
``similar`` also drops any neighbour dated after the query day, as a guard.
"""

from __future__ import annotations

import json
import re
import threading
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from langchain_core.embeddings import Embeddings

from graph.errors import StorageError
from memory.storage import DAMAGED, UNAVAILABLE, ensure_dir, move_aside, storage_error
from tools.situation_features import FEATURES, as_vector

DEFAULT_MAX_DISTANCE = 2.0  # squared L2 in feature space; farther is "not similar"
MEMORY_AGENT = "strategy_agent"  # the calls whose situations the memory keeps
SERVER_TIMEOUT_S = 30.0  # per request to a Chroma server (chromadb's own default is no timeout)
_clients: dict[str, tuple[object, tuple | None]] = {}
_clients_lock = threading.RLock()
_memories: dict[tuple[str, str], SituationMemory] = {}


class SituationEmbeddings(Embeddings):
    """Embeds a situation's feature JSON as its feature vector (no model, no network)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        features = json.loads(text)
        missing = [k for k in FEATURES if k not in features]
        if missing:
            raise ValueError(f"situation text lacks feature(s): {', '.join(missing)}")
        return as_vector(features)


def situation_text(features: dict[str, float]) -> str:
    return json.dumps({k: features[k] for k in FEATURES}, sort_keys=True)


@dataclass(frozen=True)
class Neighbour:
    symbol: str
    date: str
    action: str
    realized_return: float
    hit: bool
    lesson: str
    distance: float


def memory_dir(home: Path, portfolio: str) -> Path:
    """The portfolio's own embedded memory: ``home/chroma/<portfolio>``. One directory per
    portfolio because an embedded Chroma store is single-process: with one each, only the
    process holding the portfolio's lock ever opens it (several workers may share a home)."""
    return Path(home) / "chroma" / (re.sub(r"[^A-Za-z0-9._-]", "-", portfolio)[:200].strip(".") or "main")


def _identity(path: Path) -> tuple | None:
    """(device, inode) of the directory's database: a deleted or replaced memory gets a new one."""
    try:
        st = (path / "chroma.sqlite3").stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _client(path: Path):
    """One chromadb client per directory for the whole process; a new one when the
    directory was deleted or replaced meanwhile (the old one would write to a deleted file)."""
    import chromadb  # deferred: heavy import, only needed when learning is on
    from chromadb.config import Settings

    key = str(path.resolve())
    with _clients_lock:
        cached = _clients.get(key)
        if cached is not None and cached[1] == _identity(path):
            return cached[0]
        if cached is not None:
            _forget(key)
        ensure_dir(path)
        client = chromadb.PersistentClient(path=key, settings=Settings(anonymized_telemetry=False))
        _clients[key] = (client, _identity(path))
        return client


def _server_client(url: str):
    """One chromadb HTTP client per server URL for the whole process. Creating it asks the
    server for its version, so an unreachable server fails here."""
    import chromadb  # deferred: heavy import
    import httpx
    from chromadb.config import Settings

    with _clients_lock:
        cached = _clients.get(url)
        if cached is not None:
            return cached[0]
        parts = urlsplit(url)
        ssl = parts.scheme == "https"
        client = chromadb.HttpClient(host=parts.hostname or "localhost", port=parts.port or (443 if ssl else 8000),
                                     ssl=ssl, settings=Settings(anonymized_telemetry=False))
        session = getattr(getattr(client, "_server", None), "_session", None)
        if isinstance(session, httpx.Client):  # a hung server: a bounded wait, then one line
            session.timeout = httpx.Timeout(SERVER_TIMEOUT_S)
        _clients[url] = (client, None)
        return client


def _server_failed(url: str, exc: BaseException) -> StorageError:
    """A Chroma server that did not answer (refused, timed out, an error reply) as one line."""
    detail = (str(exc).splitlines() or [""])[0][:160] or type(exc).__name__
    return StorageError(f"situation memory server {url} failed ({type(exc).__name__}: {detail}): check that "
                        "`chroma run` is up there, or unset VOLT_CHROMA_URL for the local directory; run again",
                        path=url, kind=UNAVAILABLE)


def _forget(key: str) -> None:
    """Drop this process's client of a directory, and chromadb's own cached system for it
    (chromadb keeps one per path: without this a new client would reuse the old one).
    The caller holds ``_clients_lock``."""
    from chromadb.api.client import SharedSystemClient

    _clients.pop(key, None)
    for memory_key in [k for k, m in _memories.items() if m.url is None and str(m.directory.resolve()) == key]:
        _memories.pop(memory_key, None)
    systems = getattr(SharedSystemClient, "_identifier_to_system", None)
    if isinstance(systems, dict):
        system = systems.pop(key, None)
        if system is not None:
            with suppress(Exception):  # a damaged store may fail to stop cleanly
                system.stop()
    else:  # chromadb changed its internals: clearing every cached system is the public way
        SharedSystemClient.clear_system_cache()


class SituationMemory:
    """One portfolio's collection: in ``home/chroma/<portfolio>``, or on the Chroma server at ``url``."""

    def __init__(self, home: Path, portfolio: str, url: str | None = None):
        from langchain_chroma import Chroma

        name = "situations-" + re.sub(r"[^A-Za-z0-9._-]", "-", portfolio)
        name = name[:500].rstrip("-_.") or "situations-main"
        self.directory = memory_dir(home, portfolio)
        self.url = url
        client = _server_client(url) if url else _client(self.directory)
        self.client = client
        self.probed = False
        self.store = Chroma(
            collection_name=name,
            embedding_function=SituationEmbeddings(),
            client=client,
            collection_metadata={"hnsw:space": "l2"},
        )
        # the same collection through chromadb itself, for queries of several vectors at once
        # (the vector-store interface asks one at a time); vectors are given, so no embedder
        self.collection = client.get_collection(name, embedding_function=None)

    def add(self, situations: list[dict]) -> int:
        """Store resolved situations: dicts with id, features, symbol, date, action,
        realized_return, hit and lesson. The same id overwrites (safe on resume)."""
        if not situations:
            return 0
        texts = [situation_text(s["features"]) for s in situations]
        try:
            self.store.add_texts(
                texts=texts,
                metadatas=[{
                    "symbol": s["symbol"], "date": s["date"], "day": int(s["date"].replace("-", "")),
                    "action": s["action"], "realized_return": float(s["realized_return"]),
                    "hit": bool(s["hit"]), "lesson": s.get("lesson") or "",
                    "regime": s["features"].get("regime") or "",
                } for s in situations],
                ids=[s["id"] for s in situations],
            )
        except Exception as exc:  # chromadb's own errors: one line naming the directory
            raise self._failed(exc) from exc
        return len(situations)

    def _failed(self, exc: Exception) -> StorageError:
        """A chromadb failure in the middle of a cycle, as one line. Damage found here is
        rebuilt by the next run's check (:func:`open_memory`)."""
        if self.url:
            return _server_failed(self.url, exc)
        error = storage_error(exc, self.directory)
        if error is not None and error.kind != DAMAGED:
            return error
        detail = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        return StorageError(f"situation memory {self.directory} failed ({detail}): run again (a damaged memory "
                            "is rebuilt from the learning store)", path=self.directory, kind=DAMAGED)

    def count(self) -> int:
        try:
            return self.collection.count()
        except Exception as exc:  # a server gone: one line naming it (a local error stays as it was)
            if self.url:
                raise _server_failed(self.url, exc) from exc
            raise

    def probe(self) -> int:
        """The count, after reading the index once per process (a damaged index fails here,
        not in the middle of a cycle)."""
        n = self.count()
        if n and not self.probed:
            self.collection.query(query_embeddings=[[0.0] * len(FEATURES)], n_results=1, include=["distances"])
        self.probed = True
        return n

    def similar(self, features: dict[str, float], *, before: str, k: int = 5,
                max_distance: float = DEFAULT_MAX_DISTANCE) -> list[Neighbour]:
        """The ``k`` nearest stored situations dated before ``before`` within ``max_distance``."""
        return self.similar_many([features], before=before, k=k, max_distance=max_distance)[0]

    def similar_many(self, situations: list[dict[str, float]], *, before: str, k: int = 5,
                     max_distance: float = DEFAULT_MAX_DISTANCE) -> list[list[Neighbour]]:
        """:meth:`similar` for each of ``situations``, in one query (a cycle's candidates:
        one query of 15 vectors costs what three single ones do)."""
        if not situations:
            return []
        vectors = [as_vector(f) for f in situations]
        try:
            found = self.collection.query(query_embeddings=vectors, n_results=k, include=["metadatas", "distances"])
        except Exception as exc:  # chromadb's own errors: one line naming the directory
            raise self._failed(exc) from exc
        cutoff = int(before.replace("-", ""))
        out = []
        for metadatas, distances in zip(found["metadatas"], found["distances"], strict=True):
            near = []
            for m, distance in zip(metadatas, distances, strict=True):
                if distance > max_distance or m["day"] >= cutoff:
                    continue
                near.append(Neighbour(m["symbol"], m["date"], m["action"], m["realized_return"], bool(m["hit"]),
                                      m.get("lesson", ""), round(float(distance), 6)))
            out.append(near)
        return out


class UnreachableMemory:
    """The memory of a cycle that could not reach its Chroma server: it stores and recalls
    nothing. Nothing is lost: the situations stay in the learning store, and the next cycle
    that reaches the server finds them missing there and stores them (:func:`open_memory`)."""

    def __init__(self, url: str):
        self.url = url

    def add(self, situations: list[dict]) -> int:
        return 0

    def count(self) -> int:
        return 0

    def similar(self, features: dict[str, float], *, before: str, k: int = 5,
                max_distance: float = DEFAULT_MAX_DISTANCE) -> list[Neighbour]:
        return []

    def similar_many(self, situations: list[dict[str, float]], *, before: str, k: int = 5,
                     max_distance: float = DEFAULT_MAX_DISTANCE) -> list[list[Neighbour]]:
        return [[] for _ in situations]


def release(home: Path, portfolio: str) -> None:
    """Close this process's embedded store of ``portfolio`` (if open): a worker does this when
    it takes and when it hands back a portfolio's lock, so only the lock holder has the
    directory open and nobody reads through a stale cached index."""
    directory = memory_dir(home, portfolio)
    with _clients_lock:
        if str(directory.resolve()) in _clients:
            _forget(str(directory.resolve()))


def memory_for(home: Path, portfolio: str, url: str | None = None) -> SituationMemory:
    """One wrapper per data directory (or server ``url``) and portfolio for the whole process
    (building one costs about 0.2 s: a collection lookup and the langchain-chroma setup)."""
    key = (url or str(Path(home).resolve()), portfolio)
    with _clients_lock:
        found = _memories.get(key)
    if found is None or found.client is not (_server_client(url) if url else _client(memory_dir(home, portfolio))):
        found = SituationMemory(home, portfolio, url)
        with _clients_lock:
            _memories[key] = found
    return found


def situation_from_prediction(p: dict) -> dict:
    """The memory entry of a resolved prediction (an ``agent_predictions`` row with its
    outcome). The one mapping used both when a cycle resolves predictions and when the
    memory is rebuilt from the learning store, so a rebuilt memory recalls the same."""
    return {"id": p["prediction_id"], "features": p["features"], "symbol": p["symbol"], "date": p["as_of"],
            "action": p["action"], "realized_return": p["realized_return"], "hit": p["hit"], "lesson": p["lesson"]}


def rebuild(home: Path, portfolio: str, store, url: str | None = None) -> int:
    """Store every resolved ``MEMORY_AGENT`` prediction of ``portfolio`` from the learning
    store ``store`` (a :class:`~memory.learning_store.LearningStore`) in the situation
    memory; returns how many. Idempotent: ids are prediction ids, the same id overwrites."""
    memory = memory_for(home, portfolio, url)
    rows = store.resolved(portfolio, MEMORY_AGENT, limit=None)
    for start in range(0, len(rows), 1000):  # chromadb caps the size of one batch
        memory.add([situation_from_prediction(r) for r in rows[start:start + 1000]])
    return len(rows)


def _health(home: Path, portfolio: str) -> tuple[int, str | None]:
    """(situations stored, why the directory is unreadable or None). A full disk or a
    read-only directory is a :class:`StorageError` (not damage: moving it would not help)."""
    directory = memory_dir(home, portfolio)
    for path in (directory.parent, directory):
        if path.exists() and not path.is_dir():
            return 0, f"{path} is a file"
    try:
        return memory_for(home, portfolio).probe(), None
    except Exception as exc:  # chromadb raises its own errors (InternalError, ...)
        error = storage_error(exc, directory)
        if error is not None and error.kind != DAMAGED:
            raise error from exc
        return 0, (str(exc).splitlines() or [type(exc).__name__])[0][:160]


def _set_aside(directory: Path) -> Path:
    with _clients_lock:
        _forget(str(directory.resolve()))
    return move_aside(directory)


def _server_health(url: str, home: Path, portfolio: str) -> tuple[int, str | None]:
    """:func:`_health` on a Chroma server: (situations stored, why it cannot be used or None)."""
    try:
        return memory_for(home, portfolio, url).probe(), None
    except Exception as exc:  # refused, timed out, an error reply: the server is not usable now
        return 0, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"


def open_memory(home: Path, portfolio: str, store,
                url: str | None = None) -> tuple[SituationMemory | UnreachableMemory, str | None]:
    """The portfolio's situation memory, checked against the learning store: (memory, warning).

    A damaged memory directory (chromadb cannot read it, or a file where the directory
    should be) is moved aside to ``chroma.damaged-<timestamp>`` and rebuilt; a memory that
    holds fewer situations than the store has resolved (deleted, or restored from an older
    copy) is rebuilt in place. ``warning`` says which, in one line; None when all is well.
    With a server ``url`` that cannot be reached: an :class:`UnreachableMemory` and the
    warning naming the URL (the cycle goes on without recall)."""
    directory = memory_dir(home, portfolio)
    expected = store.resolved_count(portfolio, MEMORY_AGENT)
    if url:
        have, problem = _server_health(url, home, portfolio)
        if problem is not None:
            return UnreachableMemory(url), (
                f"situation memory server {url} unreachable ({problem}): this cycle recalls no similar "
                "situations; the next one that reaches the server stores the missing ones")
        if have < expected:
            n = rebuild(home, portfolio, store, url)
            return memory_for(home, portfolio, url), (
                f"situation memory server {url} is missing {expected - have} of {expected} situations of "
                f"{portfolio}: stored {n} from the learning store")
        return memory_for(home, portfolio, url), None
    have, problem = _health(home, portfolio)
    if problem is not None:
        aside = _set_aside(directory)
        n = rebuild(home, portfolio, store)
        return memory_for(home, portfolio), (
            f"situation memory {directory} is damaged ({problem}): moved aside to {aside.name}, "
            f"rebuilt {n} situations from the learning store")
    if have < expected:
        n = rebuild(home, portfolio, store)
        what = "missing" if have == 0 else f"missing {expected - have} of {expected} situations"
        return memory_for(home, portfolio), (
            f"situation memory {directory} is {what}: rebuilt {n} situations from the learning store")
    return memory_for(home, portfolio), None


def rebuild_memory(home: Path, portfolio: str, store, url: str | None = None) -> tuple[int, str | None]:
    """Rebuild the portfolio's situation memory from scratch from the learning store:
    (situations stored, warning). The old collection is dropped; a damaged directory is
    moved aside first (the warning says so). Other portfolios' memories are their own
    directories and are not touched. On a server
    ``url``: its collection is dropped and refilled (one-line :class:`StorageError` when the
    server cannot be reached)."""
    if url:
        try:
            memory = memory_for(home, portfolio, url)
            memory.client.delete_collection(memory.collection.name)
        except Exception as exc:
            raise _server_failed(url, exc) from exc
        with _clients_lock:
            _memories.pop((url, portfolio), None)
        return rebuild(home, portfolio, store, url), None
    directory = memory_dir(home, portfolio)
    _have, problem = _health(home, portfolio)
    note = None
    if problem is not None:
        aside = _set_aside(directory)
        note = f"situation memory {directory} was damaged ({problem}): moved aside to {aside.name}"
    else:
        memory = memory_for(home, portfolio)
        memory.client.delete_collection(memory.collection.name)
        with _clients_lock:
            _memories.pop((str(Path(home).resolve()), portfolio), None)
    return rebuild(home, portfolio, store), note


def summarize(neighbours: list[Neighbour], horizon: int) -> dict:
    """Compact evidence: "5 similar setups: BUY was right 2/5, mean 5-day return -1.2%"."""
    if not neighbours:
        return {"n": 0, "summary": "no similar past setups yet", "mean_return": None, "by_action": {}, "lessons": []}
    by_action: dict[str, dict] = {}
    for n in neighbours:
        entry = by_action.setdefault(n.action, {"n": 0, "right": 0})
        entry["n"] += 1
        entry["right"] += int(n.hit)
    mean = sum(n.realized_return for n in neighbours) / len(neighbours)
    parts = ", ".join(f"{a} was right {v['right']}/{v['n']}" for a, v in sorted(by_action.items()))
    return {
        "n": len(neighbours),
        "summary": f"{len(neighbours)} similar setups: {parts}, mean {horizon}-day return {mean:+.1%}",
        "mean_return": round(mean, 6),
        "by_action": by_action,
        "lessons": [f"{n.symbol} {n.date}: {n.lesson}" for n in neighbours if n.lesson][:3],
        "neighbours": [n.__dict__ for n in neighbours],
    }
