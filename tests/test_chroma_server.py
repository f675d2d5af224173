"""The situation memory on a real `chroma run` server (VOLT_CHROMA_URL).

A `chroma` server process on 127.0.0.1 (the CLI the chromadb package installs): VOLT's
SituationMemory recalls exactly what the embedded client recalls on the same inputs; cycles
store their situations there (nothing under $VOLT_HOME/chroma); a server that is down when a
cycle starts is one warning line and a cycle without recall; a server killed in the middle
of a run is a one-line StorageError naming its URL. Skipped when the CLI is missing, unless
VOLT_TEST_REQUIRE_CHROMA_SERVER=1.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import scripted

from graph.errors import StorageError
from graph.run import run_cycle
from memory.learning_store import LearningStore
from memory.situation_memory import SituationMemory, UnreachableMemory, open_memory, summarize
from tools.situation_features import FEATURES

CHROMA = Path(sys.executable).with_name("chroma")
if not CHROMA.exists() and shutil.which("chroma"):
    CHROMA = Path(shutil.which("chroma"))
if not CHROMA.exists():
    if os.environ.get("VOLT_TEST_REQUIRE_CHROMA_SERVER") == "1":
        raise RuntimeError(f"VOLT_TEST_REQUIRE_CHROMA_SERVER=1 but no `chroma` CLI at {CHROMA}")
    pytest.skip("the `chroma` CLI (installed with chromadb) is missing", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChromaServer:
    """`chroma run --path DIR --host 127.0.0.1 --port FREE`, up once its heartbeat answers."""

    def __init__(self, path: Path):
        self.path, self.port = path, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = path.with_suffix(".log")
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> ChromaServer:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(CHROMA), "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chroma run exited {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"chroma run did not answer its heartbeat in {timeout:.0f}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)  # killed, not shut down: the worst case
            self.process.wait(timeout=10)


@pytest.fixture
def server(tmp_path):
    running = ChromaServer(tmp_path / "chroma-server").start()
    yield running
    running.stop()


def features(value: float, spread: float = 0.0) -> dict[str, float]:
    return {k: value + spread * i for i, k in enumerate(FEATURES)}


SITUATIONS = (
    [{"id": f"a{i}", "features": features(0.5 + 0.01 * i), "symbol": "AAA", "date": f"2021-01-0{i + 1}",
      "action": "BUY", "realized_return": -0.02 + 0.001 * i, "hit": i == 1, "lesson": "careful" if i == 0 else ""}
     for i in range(4)]
    + [{"id": f"b{i}", "features": features(-0.5, 0.02 * i), "symbol": "BBB", "date": f"2021-01-1{i}",
        "action": "SELL", "realized_return": 0.01, "hit": False, "lesson": ""} for i in range(3)]
)
QUERIES = [features(0.5), features(0.52), features(-0.5, 0.01), features(3.0)]


def test_the_server_recalls_what_the_embedded_memory_recalls(tmp_path, server):
    embedded = SituationMemory(tmp_path / "home-embedded", "p")
    remote = SituationMemory(tmp_path / "home-remote", "p", server.url)
    assert embedded.add(SITUATIONS) == remote.add(SITUATIONS) == len(SITUATIONS)
    for before in ("2021-01-03", "2021-02-01"):
        near_embedded = embedded.similar_many(QUERIES, before=before, k=5)
        near_remote = remote.similar_many(QUERIES, before=before, k=5)
        assert near_remote == near_embedded  # symbols, dates, actions, returns, lessons, distances
        assert [summarize(n, 5) for n in near_remote] == [summarize(n, 5) for n in near_embedded]
    assert near_remote[0] and near_remote[2] and near_remote[3] == []  # far from everything: nothing similar
    # the same id overwrites (a resumed cycle); one collection per portfolio on the server
    remote.add(SITUATIONS[:2])
    assert remote.count() == len(SITUATIONS)
    assert SituationMemory(tmp_path / "another-worker", "p", server.url).count() == len(SITUATIONS)
    assert SituationMemory(tmp_path / "home-remote", "other", server.url).count() == 0
    assert not (tmp_path / "home-remote" / "chroma").exists()  # nothing embedded on the server path


def test_cycles_store_situations_on_the_server_and_degrade_when_it_is_down(tmp_path, settings_for, server, capfd):
    from test_learning import trend_csv

    csv = tmp_path / "down.csv"
    trend_csv(csv, drift=-1.0, drifts={"AAA": -1.0, "BBB": 1.0})
    model = scripted({"market": {"direction": "BULLISH"}, "strategy": {"action": "BUY", "confidence": 0.9}})
    settings = settings_for(csv, top_k=1, horizon_days=3, watchlist=["AAA"], chroma_url=server.url)
    for _ in range(6):
        state = run_cycle(settings, chat_model_factory=lambda s: model).state
    stored = state["learning"]["memory_size"]
    assert stored >= 2 and state["memories"]["AAA"]["n"] >= 1
    assert SituationMemory(tmp_path / "elsewhere", settings.portfolio, server.url).count() == stored
    assert not (settings.home / "chroma").exists()

    server.stop()  # down before the next cycle starts: one warning line, the cycle completes without recall
    capfd.readouterr()
    state = run_cycle(settings, chat_model_factory=lambda s: model).state
    warnings = [line for line in capfd.readouterr().err.splitlines() if "situation memory server" in line]
    assert len(warnings) == 1 and server.url in warnings[0] and "recalls no similar situations" in warnings[0]
    assert state["memories"]["AAA"]["n"] == 0 and state["learning"]["memory_size"] == 0
    assert state["decisions"] and state["fills"] is not None

    server.start()  # back (same directory): the situations resolved meanwhile are stored again
    state = run_cycle(settings, chat_model_factory=lambda s: model).state
    assert state["learning"]["memory_size"] > stored and state["memories"]["AAA"]["n"] >= 1


def test_a_server_killed_mid_run_is_one_line_naming_its_url(tmp_path, server):
    store = LearningStore(tmp_path / "volt.db")  # nothing resolved yet (open_memory compares counts)
    memory, note = open_memory(tmp_path, "p", store, server.url)
    assert note is None and memory.add(SITUATIONS) == len(SITUATIONS)
    server.stop()
    for action in (lambda: memory.add(SITUATIONS[:1]), lambda: memory.similar_many(QUERIES, before="2021-02-01"),
                   memory.count):
        with pytest.raises(StorageError) as failed:
            action()
        line = str(failed.value)
        assert "\n" not in line and server.url in line and "chroma run" in line, line
        assert failed.value.kind == "unavailable" and failed.value.path == server.url
    # a cycle starting now goes on without recall, with the URL in its one warning line
    memory, note = open_memory(tmp_path, "p", store, server.url)
    assert isinstance(memory, UnreachableMemory) and server.url in note and "\n" not in note
    assert memory.similar_many(QUERIES, before="2021-02-01") == [[] for _ in QUERIES] and memory.add(SITUATIONS) == 0
