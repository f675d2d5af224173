"""Run one cycle in a child process and die abruptly (os._exit) at a chosen point.

Usage: python tests/crash_helper.py MODE HOME CSV
MODE: after_first_fill | mid_review
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import default_answer, scripted  # noqa: E402

from graph.run import run_cycle  # noqa: E402
from graph.settings import VoltSettings  # noqa: E402
from memory import ledger as ledger_module  # noqa: E402

mode, home, csv = sys.argv[1], sys.argv[2], sys.argv[3]

if mode == "after_first_fill":
    original = ledger_module.Ledger.record_fill

    def record_then_die(self, **kwargs):
        result = original(self, **kwargs)
        os._exit(9)  # the fill is committed, the checkpoint after execution is not
        return result

    ledger_module.Ledger.record_fill = record_then_die


def respond(agent, symbol, evidence, messages):
    if mode == "mid_review" and agent == "auditor" and symbol == "CCC":
        os._exit(9)
    return default_answer(agent, symbol, evidence)


settings = VoltSettings(home=Path(home), data_csv=Path(csv), models=["m1"], top_k=3)
run_cycle(settings, chat_model_factory=lambda spec: scripted(respond=respond))
sys.exit(0)
