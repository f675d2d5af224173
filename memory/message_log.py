"""AgentMessage: every inter-agent exchange, stored in SQLite so a cycle can be audited."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from memory.db import open_db


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


class MessageLog:
    def __init__(self, path: Path):
        self.path = Path(path)

    def write(self, cycle_id: str, messages: list[dict]) -> int:
        """Store messages; a message id already stored is skipped (safe on resume)."""
        rows = []
        for raw in messages:
            m = AgentMessage.model_validate(raw)
            rows.append((m.message_id, cycle_id, m.timestamp, m.from_agent, m.to_agent,
                         m.message_type.value, m.priority.value, json.dumps(m.payload, default=str)))
        with open_db(self.path) as conn:
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO agent_messages VALUES (?,?,?,?,?,?,?,?)", rows)
            return conn.total_changes - before

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
