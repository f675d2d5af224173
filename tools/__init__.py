"""Market data, indicators, universe selection, cost model, accounting and agent tools."""
