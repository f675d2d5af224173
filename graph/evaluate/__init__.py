"""``python -m graph.evaluate``: many walk-forward windows x universes, arms side by side.

- :mod:`graph.evaluate.windows`: rolling windows (start offsets) over the tradable days and
  seeded universes;
- :mod:`graph.evaluate.runner`: runs each (window, universe, arm) with the backtest engine
  (``graph.backtest.run_graph``) in a process pool, resumable per cell;
- :mod:`graph.evaluate.stats`: paired differences, block bootstrap, placebo, deflated Sharpe,
  per-agent IC / hit rate / Brier (pure numpy);
- :mod:`graph.evaluate.report`: ``summary.json``, ``report.html`` and the plain-words verdict.
"""
