"""memory/alerts.py: stored, one ERROR line, webhook delivery to a local HTTP server that
never blocks the caller, retried, then given up."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from memory import alerts
from memory.alerts import alert_if_all_models_failed, all_models_failed, list_alerts, raise_alert
from memory.breakers import forget_process_breakers, get_breaker
from memory.ops_db import close_all


class Webhook:
    """A local webhook: answers ``status`` (or sleeps ``delay`` s first); records bodies."""

    def __init__(self, status: int = 200, delay: float = 0.0):
        self.status, self.delay = status, delay
        self.bodies: list[dict] = []
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                owner.hits += 1
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(owner.delay)
                if owner.status == 200:
                    owner.bodies.append(json.loads(body))
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _fast_delivery(monkeypatch):
    d = alerts.deliverer()
    monkeypatch.setattr(d, "backoff_s", 0.01)
    monkeypatch.setattr(d, "max_wait_s", 0.05)
    monkeypatch.setattr(d, "timeout_s", 1.0)
    monkeypatch.setattr(d, "attempts", 3)
    monkeypatch.delenv("VOLT_ALERT_WEBHOOK", raising=False)
    forget_process_breakers()
    yield
    alerts.flush_alerts(5)
    forget_process_breakers()
    close_all()


@pytest.fixture
def hook():
    server = Webhook()
    yield server
    server.close()


def test_alert_is_stored_logged_and_delivered_once(tmp_path, hook, monkeypatch, caplog):
    monkeypatch.setenv("VOLT_ALERT_WEBHOOK", hook.url)
    alert_id = raise_alert(tmp_path, "halt", "drawdown 25% over the 20% limit", {"portfolio": "main"})
    assert alerts.flush_alerts(5)
    (body,) = hook.bodies
    assert body["id"] == alert_id and body["kind"] == "halt" and body["details"] == {"portfolio": "main"}
    assert body["message"].startswith("drawdown") and body["source"] == "volt"
    (stored,) = list_alerts(tmp_path)
    assert stored["delivery"] == "delivered" and stored["details"] == {"portfolio": "main"}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "volt.alerts"]
    assert len(errors) == 1 and "halt" in errors[0].getMessage()


def test_a_failing_webhook_is_retried_then_given_up_without_blocking(tmp_path, monkeypatch):
    slow_and_failing = Webhook(status=500, delay=0.2)
    try:
        monkeypatch.setenv("VOLT_ALERT_WEBHOOK", slow_and_failing.url)
        started = time.perf_counter()
        raise_alert(tmp_path, "halt", "first")
        raise_alert(tmp_path, "halt", "second")
        assert time.perf_counter() - started < 0.05  # the caller never waits for the network
        assert alerts.flush_alerts(10)
        assert slow_and_failing.hits == 6  # 3 attempts each, then given up
        assert [a["delivery"] for a in list_alerts(tmp_path)] == ["failed", "failed"]
    finally:
        slow_and_failing.close()


def test_an_unreachable_webhook_does_not_raise(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("VOLT_ALERT_WEBHOOK", f"http://127.0.0.1:{port}/")
    started = time.perf_counter()
    assert raise_alert(tmp_path, "halt", "x") is not None
    assert time.perf_counter() - started < 0.05
    assert alerts.flush_alerts(10) and list_alerts(tmp_path)[0]["delivery"] == "failed"


def test_a_non_http_webhook_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("VOLT_ALERT_WEBHOOK", "file:///etc/passwd")
    raise_alert(tmp_path, "halt", "x")
    assert list_alerts(tmp_path)[0]["delivery"] == "stored"


def test_storage_trouble_still_logs_and_never_raises(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert raise_alert(blocker, "halt", "disk trouble") is None
    assert any("disk trouble" in r.getMessage() and "not stored" in r.getMessage() for r in caplog.records)


def test_opening_a_breaker_raises_exactly_one_alert_at_the_webhook(tmp_path, hook, monkeypatch):
    monkeypatch.setenv("VOLT_ALERT_WEBHOOK", hook.url)
    b = get_breaker(tmp_path, "endpoint", "quote", fail_max=2, reset_s=0.05)
    for _ in range(5):  # the failures past fail_max find it open: no second alert
        if b.admit():
            b.failed(ConnectionError("down"))
    time.sleep(0.06)
    assert b.admit()
    b.failed(ConnectionError("still down"))  # a failed probe: a WARNING, not an alert
    assert alerts.flush_alerts(5)
    assert [body["kind"] for body in hook.bodies] == ["breaker_open"]
    assert hook.bodies[0]["details"]["breaker"] == "endpoint:quote"


def _state(sources: list[str], usable=("m1",)) -> dict:
    decision = {k: {"source": s, "degraded": s == "prior"} for k, s in zip(("market", "risk"), sources, strict=False)}
    return {"portfolio_id": "main", "as_of": "2024-01-02", "model_status": {"usable": list(usable), "missing": []},
            "decisions": [decision], "macro": {"source": sources[0], "degraded": sources[0] == "prior"},
            "errors": [{"category": "network"}]}


def test_all_models_failed_is_detected_and_alerted_once_per_quiet_period(tmp_path, hook, monkeypatch):
    assert all_models_failed(_state(["prior", "prior"]))
    assert not all_models_failed(_state(["model", "prior"]))
    assert not all_models_failed(_state(["prior", "prior"], usable=()))  # no model configured: by choice
    assert not all_models_failed({"model_status": {"usable": ["m"]}, "decisions": []})  # nothing asked
    monkeypatch.setenv("VOLT_ALERT_WEBHOOK", hook.url)
    assert alert_if_all_models_failed(tmp_path, _state(["prior", "prior"])) is not None
    assert alert_if_all_models_failed(tmp_path, _state(["prior", "prior"])) is None  # a repeat: not sent
    assert alert_if_all_models_failed(tmp_path, _state(["model", "prior"])) is None
    assert alerts.flush_alerts(5)
    assert [b["kind"] for b in hook.bodies] == ["all_models_failed"]
