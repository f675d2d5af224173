"""Run ``python -m graph.run`` (main) with slow scripted models, for signal tests.

Usage: python tests/daemon_helper.py MARKER HOME CSV [--loop SECONDS]
Writes MARKER when the first model call starts, so the test knows a cycle is in flight.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import default_answer, scripted  # noqa: E402

from graph.run import main  # noqa: E402

marker, home, csv, *rest = sys.argv[1:]


def respond(agent, symbol, evidence, messages):
    Path(marker).touch()
    time.sleep(0.15)  # slow enough that the signal lands mid-cycle
    return default_answer(agent, symbol, evidence)


sys.exit(main(["--home", home, "--data-csv", csv, "--models", "m1", "--top-k", "3", *rest],
              chat_model_factory=lambda spec: scripted(respond=respond)))
