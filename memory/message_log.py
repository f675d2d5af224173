"""AgentMessage: every inter-agent exchange, stored in the ledger database so a cycle can be audited."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from memory.db import DatabaseURL, as_target, open_db


class MessageType(StrEnum):
    TRADE_PROPOSAL = "trade_proposal"
    MARKET_VIEW = "market_view"
    CONSENSUS_RESULT = "consensus_result"
    RISK_APPROVAL = "risk_approval"
    PEER_REVIEW = "peer_review"
    CORRECTION_REQUEST = "correction_request"
    EXECUTION_COMPLETE = "execution_complete"
    FEEDBACK_EVENT = "feedback_event"
    ERROR_REPORT = "error_report"
    STATUS_UPDATE = "status_update"


class Priority(StrEnum):
    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class AgentMessage(BaseModel):
    message_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))
    from_agent: str
    to_agent: str
    message_type: MessageType
    priority: Priority = Priority.NORMAL
    payload: dict[str, Any] = Field(default_factory=dict)


def message(from_agent: str, to_agent: str, kind: MessageType, payload: dict, priority: Priority = Priority.NORMAL) -> dict:
    """A new message as a plain dict (what graph state carries and checkpoints)."""
    return AgentMessage(
        from_agent=from_agent, to_agent=to_agent, message_type=kind, priority=priority, payload=payload
    ).model_dump(mode="json")


def stable_ids(cycle_id: str, messages: list[dict]) -> list[dict]:
    """Copies of ``messages`` whose ids derive from the cycle, the sender and the content
    (recipient, type, priority, payload; not the timestamp), with a counter for identical
    messages. A node that runs again after a crash (LangGraph re-runs the node whose
    checkpoint was not written) makes new messages with new random ids; with these ids
    ``ON CONFLICT DO NOTHING`` stores each message exactly once. Order-independent: candidates
    run in parallel, so their messages may arrive in any order."""
    seen: dict[str, int] = {}
    out = []
    for raw in messages:
        m = AgentMessage.model_validate(raw)
        content = json.dumps([m.to_agent, m.message_type.value, m.priority.value, m.payload],
                             sort_keys=True, default=str)
        key = f"{cycle_id}:{m.from_agent}:{hashlib.sha256(content.encode()).hexdigest()[:16]}"
        seen[key] = seen.get(key, 0) + 1
        out.append({**raw, "message_id": f"{key}:{seen[key]}"})
    return out


class MessageLog:
    def __init__(self, path: Path | DatabaseURL):
        self.path = as_target(path)

    def write(self, cycle_id: str, messages: list[dict]) -> int:
        """Store messages; a message id already stored is skipped (safe on resume when the
        ids are stable: see :func:`stable_ids`). Returns how many were new."""
        rows = []
        for raw in messages:
            m = AgentMessage.model_validate(raw)
            rows.append((m.message_id, cycle_id, m.timestamp, m.from_agent, m.to_agent,
                         m.message_type.value, m.priority.value, json.dumps(m.payload, default=str)))
        with open_db(self.path) as conn:
            return conn.executemany("INSERT INTO agent_messages VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                                    rows).rowcount

    def for_cycle(self, cycle_id: str) -> list[AgentMessage]:
        with open_db(self.path) as conn:
            rows = conn.execute(
                "SELECT * FROM agent_messages WHERE cycle_id=? ORDER BY timestamp, rowid", (cycle_id,)
            ).fetchall()
        return [
            AgentMessage(
                message_id=r["message_id"], timestamp=r["timestamp"], from_agent=r["from_agent"],
                to_agent=r["to_agent"], message_type=r["message_type"], priority=r["priority"],
                payload=json.loads(r["payload"]),
            )
            for r in rows
        ]
