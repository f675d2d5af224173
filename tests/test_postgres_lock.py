"""The portfolio lock on PostgreSQL: a session advisory lock held on its own connection,
shared by every process (and machine) using the database, released by the server when its
holder dies (kill -9 included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import eventually

from graph.errors import PortfolioBusyError
from memory.db import DatabaseURL
from memory.run_lock import portfolio_lock

ROOT = Path(__file__).resolve().parents[1]


def test_a_held_portfolio_is_busy_for_everyone_else_and_free_after(pg_url, tmp_path):
    url = DatabaseURL(pg_url)
    with portfolio_lock(tmp_path / "a", "main", url):
        # another home (another machine) on the same database: busy, naming the holder
        with pytest.raises(PortfolioBusyError) as info, portfolio_lock(tmp_path / "b", "main", url):
            pass
        assert str(info.value).startswith("portfolio 'main' is in use by another run (pid ")
        assert f"pid {os.getpid()} on " in str(info.value)
        with portfolio_lock(tmp_path / "b", "other", url):  # another portfolio is free
            pass
        assert not (tmp_path / "a" / "locks").exists()  # no lock file: the server holds it
    with portfolio_lock(tmp_path / "b", "main", url):  # released on exit
        pass


def test_the_lock_of_a_killed_process_is_released_by_the_server(pg_url, tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from memory.db import DatabaseURL
        from memory.run_lock import portfolio_lock
        with portfolio_lock({str(tmp_path)!r}, "main", DatabaseURL(sys.argv[1])):
            print("locked", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, pg_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked", proc.stderr.read() if proc.poll() is not None else ""
        with pytest.raises(PortfolioBusyError, match=f"pid {proc.pid} on "), \
                portfolio_lock(tmp_path, "main", DatabaseURL(pg_url)):
            pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()

    def lock_is_free() -> bool:
        try:
            with portfolio_lock(tmp_path, "main", DatabaseURL(pg_url)):
                return True
        except PortfolioBusyError:  # the server notices the closed socket within moments
            return False

    assert eventually(lock_is_free, timeout=10), "the dead holder's lock was not released"


def test_without_a_url_the_lock_is_the_file_lock(tmp_path):
    with portfolio_lock(tmp_path, "main", tmp_path / "volt.db"):
        assert (tmp_path / "locks" / "main.lock").read_text() == str(os.getpid())
        with pytest.raises(PortfolioBusyError), portfolio_lock(tmp_path, "main"):
            pass
