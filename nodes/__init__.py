"""Graph nodes: one agent per module, plus the cycle's preparation and bookkeeping nodes."""
