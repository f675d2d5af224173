"""Run a backtest in a child process and die abruptly (os._exit) part-way through.

Usage: python tests/backtest_crash_helper.py MODE OUT CSV END
MODE: mid_cycle (after the 4th fill is booked, inside a cycle)
      after_cycle (after the 3rd completed cycle, before the backtest records its day)
      frozen_run (inside the learning-off replay, after its 2nd fill)
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import held_reduces, scripted  # noqa: E402

import graph.backtest as backtest  # noqa: E402
from memory import ledger as ledger_module  # noqa: E402

mode, out, csv, end = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
count = {"fills": 0, "frozen_fills": 0, "days": 0}

original_fill = ledger_module.Ledger.record_fill


def record_then_die(self, **kwargs):
    result = original_fill(self, **kwargs)
    frozen = "agents_frozen" in str(self.path)
    count["frozen_fills" if frozen else "fills"] += 1
    if mode == "mid_cycle" and count["fills"] == 4:
        os._exit(9)
    if mode == "frozen_run" and count["frozen_fills"] == 2:
        os._exit(9)
    return result


original_record = backtest.DayStore.record


def record_day_then_die(self, row):
    count["days"] += 1
    if mode == "after_cycle" and count["days"] == 3:
        os._exit(9)  # the cycle is complete in the ledger and checkpoints, the day row is not written
    return original_record(self, row)


ledger_module.Ledger.record_fill = record_then_die
backtest.DayStore.record = record_day_then_die

cfg = backtest.BacktestConfig(data_csv=csv, models=["m1"], top_k=3, cache=False, end=end)
backtest.run_backtest(cfg, out, chat_model_factory=lambda spec: scripted(respond=held_reduces), reports=False)
sys.exit(0)
