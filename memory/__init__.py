"""Persistence: the SQLite ledger, the agent-message log, agent weights, the run lock."""
