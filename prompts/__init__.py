"""Agent prompts as files, one per agent, loaded by name.

Each file starts with a version line (``version: N``); the rest is the system prompt.
Edit the files to iterate on prompts; the version is recorded with every agent result.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PROMPT_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    text: str


def load_prompt(name: str, directory: Path | None = None) -> Prompt:
    return _load(name, str(directory or PROMPT_DIR), _mtime(name, directory or PROMPT_DIR))


def _mtime(name: str, directory: Path) -> float:
    path = directory / f"{name}.md"
    return path.stat().st_mtime if path.exists() else -1.0


@lru_cache(maxsize=32)
def _load(name: str, directory: str, _mtime: float) -> Prompt:
    path = Path(directory) / f"{name}.md"
    if not path.exists():
        raise FileNotFoundError(f"no prompt named {name!r} ({path})")
    first, _, body = path.read_text(encoding="utf-8").partition("\n")
    if not first.lower().startswith("version:"):
        raise ValueError(f"{path}: first line must be 'version: N', got {first!r}")
    return Prompt(name=name, version=first.split(":", 1)[1].strip(), text=body.strip())
