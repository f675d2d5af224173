"""Situation memory: resolved outcomes in a persistent Chroma collection (langchain-chroma).

A situation document's text is the canonical JSON of its features
(:mod:`tools.situation_features`); :class:`SituationEmbeddings` maps it to the feature
vector. That embedding is deterministic and offline: Chroma's default embedding would
download a model at run time. One collection per portfolio under ``$VOLT_HOME/chroma``.

Point-in-time by construction: a situation is stored only once its outcome is resolved,
which only reads bars up to the resolving cycle's day, and cycles only move forward.
``similar`` also drops any neighbour dated after the query day, as a guard.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from langchain_core.embeddings import Embeddings

from tools.situation_features import FEATURES, as_vector

DEFAULT_MAX_DISTANCE = 2.0  # squared L2 in feature space; farther is "not similar"
_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


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


def _client(path: Path):
    import chromadb  # deferred: heavy import, only needed when learning is on
    from chromadb.config import Settings

    key = str(path.resolve())
    with _clients_lock:
        if key not in _clients:
            path.mkdir(parents=True, exist_ok=True)
            _clients[key] = chromadb.PersistentClient(path=key, settings=Settings(anonymized_telemetry=False))
        return _clients[key]


class SituationMemory:
    def __init__(self, home: Path, portfolio: str):
        from langchain_chroma import Chroma

        name = "situations-" + re.sub(r"[^A-Za-z0-9._-]", "-", portfolio)
        name = name[:500].rstrip("-_.") or "situations-main"
        client = _client(Path(home) / "chroma")
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
        self.store.add_texts(
            texts=[situation_text(s["features"]) for s in situations],
            metadatas=[{
                "symbol": s["symbol"], "date": s["date"], "day": int(s["date"].replace("-", "")),
                "action": s["action"], "realized_return": float(s["realized_return"]),
                "hit": bool(s["hit"]), "lesson": s.get("lesson") or "",
                "regime": s["features"].get("regime") or "",
            } for s in situations],
            ids=[s["id"] for s in situations],
        )
        return len(situations)

    def count(self) -> int:
        return self.collection.count()

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
        found = self.collection.query(query_embeddings=[as_vector(f) for f in situations], n_results=k,
                                      include=["metadatas", "distances"])
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


_memories: dict[tuple[str, str], SituationMemory] = {}


def memory_for(home: Path, portfolio: str) -> SituationMemory:
    """One wrapper per data directory and portfolio for the whole process (building one
    costs about 0.2 s: a collection lookup and the langchain-chroma setup)."""
    key = (str(Path(home).resolve()), portfolio)
    with _clients_lock:
        found = _memories.get(key)
    if found is None:
        found = SituationMemory(home, portfolio)
        with _clients_lock:
            _memories.setdefault(key, found)
    return found


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
