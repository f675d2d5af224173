"""One run per portfolio at a time: an exclusive, non-blocking file lock.

The OS releases the lock when the process dies, so a crash never leaves it stuck.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from graph.errors import PortfolioBusyError


@contextmanager
def portfolio_lock(home: Path, portfolio: str) -> Iterator[None]:
    lock_dir = Path(home) / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{portfolio}.lock"
    handle = open(path, "a+")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise PortfolioBusyError(
                f"portfolio '{portfolio}' is in use by another run (pid {holder}); "
                "wait for it to finish or use --portfolio NAME"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()
