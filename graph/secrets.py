"""API keys: read once, never written anywhere, redacted from every message.

The Finnhub key comes from the environment (``FINNHUB_API_KEY``) or, when unset there, from
a ``.env`` file read with python-dotenv's ``dotenv_values`` (``os.environ`` is not changed).
Every error message or log line that could contain a key goes through :func:`redact`;
:func:`install_log_redaction` adds a logging filter that does the same for libraries that
log request URLs (urllib3, websocket-client).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from dotenv import dotenv_values

from graph.errors import OperationalError

FINNHUB_ENV_VAR = "FINNHUB_API_KEY"
REDACTED = "***"
# Query-string credentials, whatever their value (the key might not be known to the caller).
_TOKEN_PARAM = re.compile(r"(?i)\b(token|api_?key|apikey)=([^&\s'\"<>]+)")
_TOKEN_HEADER = re.compile(r"(?i)(X-Finnhub-Token['\"]?\s*[:=]\s*['\"]?)([^'\"\s,}]+)")


class MissingApiKeyError(OperationalError):
    """No API key configured: the run cannot use live data (exit code 2, one line)."""

    def __init__(self, name: str = FINNHUB_ENV_VAR, dotenv_path: Path | None = None):
        where = f" or add `{name}=...` to {dotenv_path}" if dotenv_path is not None else ""
        super().__init__(
            f"{name} is not set: export {name}=<your key>{where} "
            "(a free key: https://finnhub.io/register)"
        )
        self.name = name


def finnhub_api_key(
    env: Mapping[str, str] | None = os.environ, dotenv_path: Path | None = Path(".env")
) -> str:
    """The Finnhub API key from ``env`` (``None``: ``os.environ``), else from ``dotenv_path``.

    Blank values count as missing. Raises :class:`MissingApiKeyError` naming the variable.
    """
    return read_secret(FINNHUB_ENV_VAR, env=env, dotenv_path=dotenv_path)


def read_secret(
    name: str, *, env: Mapping[str, str] | None = os.environ, dotenv_path: Path | None = Path(".env")
) -> str:
    environ = os.environ if env is None else env
    value = (environ.get(name) or "").strip()
    if not value and dotenv_path is not None and Path(dotenv_path).is_file():
        value = (dotenv_values(dotenv_path).get(name) or "").strip()
    if not value:
        raise MissingApiKeyError(name, dotenv_path)
    return value


def redact(text: object, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every given secret, and any ``token=...`` query value, replaced by ``***``."""
    out = str(text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        out = out.replace(secret, REDACTED)
    out = _TOKEN_PARAM.sub(lambda m: f"{m.group(1)}={REDACTED}", out)
    return _TOKEN_HEADER.sub(lambda m: f"{m.group(1)}{REDACTED}", out)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with :func:`redact` (formats it first, then drops the args)."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        with self._lock:
            self._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to logging's own error path
            return True
        with self._lock:
            secrets = tuple(self._secrets)
        clean = redact(message, secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactingFilter()
# Loggers that may print request URLs or headers. A logger's filters only see records
# logged on that very logger, so each one is listed by its full name.
_URL_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "websocket", "volt.finnhub", "volt.stream")
_installed = False
_install_lock = threading.Lock()


def install_log_redaction(secret: str, extra_loggers: Iterable[str] = ()) -> None:
    """Redact ``secret`` (and any ``token=`` value) from the URL-logging libraries' records."""
    global _installed
    _FILTER.add(secret)
    with _install_lock:
        names = list(extra_loggers) + ([] if _installed else list(_URL_LOGGERS))
        for name in names:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
        _installed = True
