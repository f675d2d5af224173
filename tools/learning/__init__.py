"""Learning maths, pure (numpy only, no I/O): calibration of an agent's conviction, skill
weights (Hedge, one round per cycle), the statistical BUY gate, prompt evaluation."""
