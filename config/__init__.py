"""User-editable configuration shipped with VOLT: ``chains.toml`` (action chains and consensus
models, validated by :mod:`graph.chains` at start-up). A package so the file is installed too."""

from pathlib import Path

CHAINS_FILE = Path(__file__).resolve().parent / "chains.toml"
