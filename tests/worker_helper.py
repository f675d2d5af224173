"""A ``python -m graph.run --portfolios ...`` worker in its own process, for the worker tests.

Usage: python tests/worker_helper.py ARGS...   (graph.run's own arguments)
Every model call is answered by a scripted model (pass ``--models m1``).
With VOLT_TEST_DIE_AFTER_FILLS=N the process dies abruptly (os._exit, like kill -9: no
cleanup, no lock release but the OS's) right after its N-th committed fill, mid-cycle.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graph.run import main  # noqa: E402
from memory import ledger as ledger_module  # noqa: E402

die_after = int(os.environ.pop("VOLT_TEST_DIE_AFTER_FILLS", "0") or 0)
if die_after:
    original = ledger_module.Ledger.record_fill
    fills = 0

    def record_then_die(self, **kwargs):
        global fills
        result = original(self, **kwargs)
        fills += 1
        if fills >= die_after:
            os._exit(9)  # the fill is committed; the cycle's next checkpoint is not
        return result

    ledger_module.Ledger.record_fill = record_then_die

# a scripted model that buys, then reduces every held position each cycle: fills every day,
# so a lost or doubled fill cannot hide (tests/conftest.py held_reduces)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import held_reduces, scripted  # noqa: E402

sys.exit(main(sys.argv[1:], chat_model_factory=lambda spec: scripted(respond=held_reduces)))
