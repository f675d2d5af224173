"""VOLT graph wiring: state, configuration, the compiled graph and the CLI runner."""
