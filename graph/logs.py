"""Structured logs: one JSON object per line in ``$VOLT_HOME/logs/volt.log``, rotated by size.

:func:`setup_logging` puts a :class:`logging.handlers.RotatingFileHandler` with
structlog's ``ProcessorFormatter`` (JSON renderer) on the root logger, so every ``volt.*``
logger and any library's WARNING lands in the file as::

    {"event": "ALERT breaker_open: ...", "level": "error", "logger": "volt.alerts",
     "timestamp": "2025-01-02T03:04:05.678Z", "alert_id": 3, ...}

``extra={...}`` fields of a log call become keys of the object; an exception becomes an
``exception`` key (the formatted traceback), still on one line. When the file reaches
``max_bytes`` it is renamed ``volt.log.1`` (older ones shift up to ``backups``) and a new one
starts. Calling it again replaces the handler it installed (idempotent).
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

import structlog

from memory.storage import ensure_dir

LOG_DIR = "logs"
LOG_FILE = "volt.log"
_MARK = "_volt_json_handler"


def json_formatter() -> logging.Formatter:
    """A stdlib formatter rendering each record as one JSON object (structlog)."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=str, sort_keys=True),
        ],
    )


def setup_logging(home: Path, level: str | int = "INFO", max_bytes: int = 10_000_000,
                  backups: int = 5) -> Path:
    """Log JSON lines to ``home/logs/volt.log``, rotating at ``max_bytes`` (bytes) and keeping
    ``backups`` old files. ``level`` applies to VOLT's own loggers (``volt.*``); other
    libraries keep their own level (WARNING by default), so their chatter stays out.
    Returns the log file's path. Raises a one-line ``StorageError`` when ``home/logs``
    cannot be created."""
    if max_bytes < 1 or backups < 1:
        raise ValueError("max_bytes and backups must be at least 1")
    path = ensure_dir(Path(home) / LOG_DIR) / LOG_FILE
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                   encoding="utf-8")
    handler.setFormatter(json_formatter())
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    logging.getLogger("volt").setLevel(level.upper() if isinstance(level, str) else level)
    return path


def teardown_logging() -> None:
    """Remove and close the handler :func:`setup_logging` installed (tests, shutdown)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
        old.close()
