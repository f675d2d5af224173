"""graph/logs.py: JSON lines under $VOLT_HOME/logs, rotated at the configured size."""

from __future__ import annotations

import json
import logging

import pytest

from graph.errors import StorageError
from graph.logs import setup_logging, teardown_logging


@pytest.fixture(autouse=True)
def _teardown():
    yield
    teardown_logging()


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_line_is_json_with_the_fields(tmp_path):
    path = setup_logging(tmp_path / "home", "INFO")
    log = logging.getLogger("volt.test")
    log.info("hello %s", "world", extra={"symbol": "AAPL"})
    log.debug("not at INFO")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("it broke")
    logging.getLogger("somelib").info("library chatter stays out")
    logging.getLogger("somelib").warning("library warning gets in")
    records = _lines(path)
    assert [r["event"] for r in records] == ["hello world", "it broke", "library warning gets in"]
    first = records[0]
    assert first["level"] == "info" and first["logger"] == "volt.test" and first["symbol"] == "AAPL"
    assert first["timestamp"].endswith("Z") and first["timestamp"][:2] == "20"
    assert "ValueError: bad" in records[1]["exception"] and records[1]["level"] == "error"
    assert path == tmp_path / "home" / "logs" / "volt.log"


def test_rotates_at_max_bytes_and_keeps_backups(tmp_path):
    path = setup_logging(tmp_path, "INFO", max_bytes=2000, backups=2)
    log = logging.getLogger("volt.test")
    for i in range(200):
        log.info("line %d %s", i, "x" * 50)
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["volt.log", "volt.log.1", "volt.log.2"]  # older ones dropped
    for p in path.parent.iterdir():
        assert p.stat().st_size <= 2000
        assert all("event" in r for r in _lines(p))
    assert _lines(path)[-1]["event"].startswith("line 199 ")


def test_setup_twice_keeps_one_handler(tmp_path):
    setup_logging(tmp_path / "a")
    path = setup_logging(tmp_path / "b")
    logging.getLogger("volt.test").warning("once")
    assert len(_lines(path)) == 1
    assert not (tmp_path / "a" / "logs" / "volt.log").read_text()


def test_unusable_home_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="not a directory"):
        setup_logging(blocker)
