"""The VOLT dashboard (``python -m graph.dashboard``): a read-only Dash app over a VOLT home."""
