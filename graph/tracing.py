"""LangSmith tracing, opt-in: names, tags and metadata per cycle, and one line (not dozens)
when the endpoint cannot be reached.

Tracing is off unless ``LANGSMITH_TRACING=true`` (with ``LANGSMITH_API_KEY``; optional
``LANGSMITH_PROJECT``, ``LANGSMITH_ENDPOINT``). :func:`check_langsmith` probes the endpoint
once per process (a TCP connect with a short timeout): unreachable, it logs ONE warning and
turns tracing off for the rest of the process, because the LangSmith client would otherwise
log a failed upload for every batch of runs (~50 lines a cycle). :func:`quiet_langsmith_logs`
additionally lets through only the first warning of the ``langsmith`` loggers, for an
endpoint that goes away later.

:func:`cycle_config` is what the runner merges into the cycle's ``RunnableConfig``; each agent
adds its own run name, tags and metadata to its model calls (``nodes/agent_node.py``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("volt.tracing")

DEFAULT_ENDPOINT = "https://api.smith.langchain.com"
_FLAGS = ("LANGSMITH_TRACING", "LANGSMITH_TRACING_V2", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING")
_checked: bool | None = None
_lock = threading.Lock()


def tracing_requested() -> bool:
    """Whether the environment asks for LangSmith tracing (any of its flags is ``true``)."""
    return any(os.environ.get(flag, "").strip().lower() == "true" for flag in _FLAGS)


def endpoint() -> str:
    return (os.environ.get("LANGSMITH_ENDPOINT") or os.environ.get("LANGCHAIN_ENDPOINT") or DEFAULT_ENDPOINT).strip()


def disable_tracing() -> None:
    """Turn tracing off for this process (the flags, and langsmith's cached reading of them)."""
    for flag in _FLAGS:
        if flag in os.environ:
            os.environ[flag] = "false"
    try:
        from langsmith import utils as ls_utils

        ls_utils.get_env_var.cache_clear()  # langsmith caches environment reads
    except (ImportError, AttributeError):  # pragma: no cover - an older langsmith
        pass


def _reachable(url: str, timeout_s: float) -> tuple[bool, str]:
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return False, "no host in the URL"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True, ""
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc.strerror or exc}"


def check_langsmith(timeout_s: float = 2.0) -> bool:
    """Once per process: True when tracing is requested and the endpoint answers a TCP
    connect within ``timeout_s`` seconds. Unreachable: one WARNING line, tracing turned off.
    Not requested: False, nothing probed."""
    global _checked
    with _lock:
        if _checked is not None:
            return _checked and tracing_requested()
        if not tracing_requested():
            _checked = False
            return False
        quiet_langsmith_logs()
        url = endpoint()
        ok, why = _reachable(url, timeout_s)
        if not ok:
            log.warning("LangSmith endpoint %s unreachable (%s): tracing off for this process", url, why)
            disable_tracing()
        _checked = ok
        return ok


def reset_check() -> None:
    """Forget the once-per-process probe (tests)."""
    global _checked
    with _lock:
        _checked = None


class _FirstOnly(logging.Filter):
    """Lets the first WARNING-or-worse record through, then only a count of the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        self.seen += 1
        return self.seen == 1


def quiet_langsmith_logs() -> None:
    """At most one warning line from the ``langsmith`` client loggers per process."""
    for name in ("langsmith", "langsmith.client", "langsmith._internal._background_thread"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _FirstOnly) for f in logger.filters):
            logger.addFilter(_FirstOnly())


def cycle_config(portfolio: str, source: str, as_of: str | None = None, **metadata: Any) -> dict[str, Any]:
    """The cycle's run name, tags and metadata, to merge into the graph's ``RunnableConfig``:
    ``graph.invoke(state, {**config, **cycle_config(...)})``."""
    meta = {"portfolio": portfolio, "source": source, "as_of": as_of, **metadata}
    project = os.environ.get("LANGSMITH_PROJECT")
    if project:
        meta["langsmith_project"] = project
    return {
        "run_name": "volt-cycle",
        "tags": [f"portfolio:{portfolio}", f"source:{source}"],
        "metadata": {k: v for k, v in meta.items() if v is not None},
    }


def agent_config(agent: str, symbol: str, model: str, **metadata: Any) -> dict[str, Any]:
    """One agent's model call: run name ``<agent>:<symbol>``, tags and metadata."""
    meta = {"agent": agent, "symbol": symbol, "model": model, **metadata}
    return {
        "run_name": f"{agent}:{symbol}",
        "tags": [f"agent:{agent}", f"symbol:{symbol}", f"model:{model}"],
        "metadata": {k: v for k, v in meta.items() if v is not None},
    }
