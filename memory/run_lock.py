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
from memory.storage import ensure_dir, storage_error


@contextmanager
def portfolio_lock(home: Path, portfolio: str) -> Iterator[None]:
    lock_dir = ensure_dir(Path(home) / "locks")  # a file in the way, read-only: one line
    path = lock_dir / f"{portfolio}.lock"
    try:
        handle = open(path, "a+")  # noqa: SIM115 - held for the whole run
    except OSError as exc:
        raise storage_error(exc, path) from None
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
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
        except OSError as exc:  # a full disk
            raise storage_error(exc, path) from None
        yield
    finally:
        handle.close()
