"""deploy/volt.service: the keys an operator relies on, and ``systemd-analyze verify`` where
systemd is installed (with ExecStart pointed at an interpreter that exists here)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "volt.service"
README = UNIT.with_name("README.md")


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def _size(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMGT]?)", value).groups()
    return int(number) * 1024 ** " KMGT".index(unit or " ")


def test_the_unit_has_what_the_operations_need():
    unit = _unit()
    assert unit.sections() == ["Unit", "Service", "Install"]
    svc = unit["Service"]
    assert svc["Type"] == "simple"
    assert svc["Restart"] == "on-failure" and int(svc["RestartSec"]) > 0
    assert svc["KillSignal"] == "SIGTERM" and int(svc["TimeoutStopSec"]) >= 30
    assert svc["EnvironmentFile"] == "/etc/volt/volt.env"
    assert svc["WorkingDirectory"].startswith("/")
    assert 512 * 1024**2 <= _size(svc["MemoryMax"]) <= 64 * 1024**3
    assert re.fullmatch(r"\d+%", svc["CPUQuota"])
    command = svc["ExecStart"].split()
    assert command[0].endswith("/bin/python") and command[1:4] == ["-m", "graph.run", "--loop"]
    assert float(command[4]) > 0
    assert svc["ReadWritePaths"] in ("/var/lib/volt", svc.get("StateDirectory"))
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_readme_walks_through_every_step():
    text = README.read_text()
    for step in ("useradd", "chmod 600", "/etc/volt/volt.env", "systemctl enable --now volt",
                 "journalctl -u volt", "graph.health", "FINNHUB_API_KEY", "VOLT_HOME", "VOLT_ALERT_WEBHOOK",
                 "systemd-analyze verify", "LANGSMITH_TRACING"):
        assert step in text, step
    # the env file example in the README sets the home the unit may write to
    assert "VOLT_HOME=/var/lib/volt" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed here")
def test_systemd_analyze_verify(tmp_path):
    text = UNIT.read_text()
    python = re.search(r"^ExecStart=(\S+)", text, re.M).group(1)
    copy = tmp_path / "volt.service"
    copy.write_text(text.replace(python, sys.executable))  # the unit's path does not exist on a dev box
    proc = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if "volt.service" in line]
    assert proc.returncode == 0 and not problems, proc.stdout + proc.stderr
