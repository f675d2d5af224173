"""A PostgreSQL server for the tests: the one named by ``VOLT_TEST_POSTGRES_URL``, or else a
throwaway cluster started from Debian's binaries (``/usr/lib/postgresql/*/bin``).

The throwaway cluster lives in a temporary directory, listens on 127.0.0.1 on a free port
(and a socket directory in /tmp), uses password authentication (so the tests see a URL with
a password, which must never be printed) and is stopped and deleted at the end of the
session. ``initdb`` refuses to run as root: as root, the cluster runs as the ``postgres``
user (``runuser -u postgres --``), which Debian's package creates. Durability is off
(``fsync=off``): the tests kill clients, never the server.

Each test gets its own database (:meth:`PgServer.create_database`), dropped afterwards.
Without a server (no URL, no binaries, no psycopg), the Postgres tests skip, unless
``VOLT_TEST_REQUIRE_POSTGRES=1`` (CI), which makes that a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

URL_ENV = "VOLT_TEST_POSTGRES_URL"
REQUIRE_ENV = "VOLT_TEST_REQUIRE_POSTGRES"
# read at import: the tests' clean_env fixture removes every VOLT_* variable
EXTERNAL_URL = os.environ.get(URL_ENV, "").strip() or None
REQUIRED = os.environ.get(REQUIRE_ENV) == "1"
PASSWORD = "volt-test-secret"
USER = "volt"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binaries() -> Path | None:
    """The newest Debian PostgreSQL bin directory with initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


class PgServer:
    """A server the tests may create databases on; ``admin_url`` names its ``postgres`` db."""

    def __init__(self, admin_url: str, stop=None):
        self.admin_url = admin_url
        self._stop = stop
        self.base: Path | None = None  # the cluster's directory, when this session made it

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)

    def create_database(self) -> str:
        """A new empty database; returns its URL (with the password)."""
        name = f"volt_test_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return with_database(self.admin_url, name)

    def drop_database(self, url: str) -> None:
        """Drop it, ending any session still connected (a test's pooled connections)."""
        from memory.pg import close_pool

        close_pool()
        name = urlsplit(url).path.lstrip("/")
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()


def start_cluster() -> PgServer:
    """initdb + pg_ctl start of a throwaway cluster; raises RuntimeError with the log on failure."""
    bindir = binaries()
    if bindir is None:
        raise RuntimeError("no PostgreSQL binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    base = Path(tempfile.mkdtemp(prefix="volt-pg-"))
    data, sockets, log = base / "data", base / "sock", base / "server.log"
    sockets.mkdir()
    pwfile = base / "pw"
    pwfile.write_text(PASSWORD + "\n")
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse root
        owner = pwd.getpwnam("postgres")
        for path in (base, sockets, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    os.chmod(base, 0o700)
    port = _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip()[-2000:]} {tail}")

    run(str(bindir / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(pwfile), "-A", "scram-sha-256",
        "-E", "UTF8", "--locale=C", "--no-sync")
    options = (f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
               " -c full_page_writes=off -c max_connections=200")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")

    def stop() -> None:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)

    server = PgServer(f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/postgres", stop)
    server.base = base
    return server


def stop_cluster(base: Path) -> None:
    """Stop the cluster in ``base`` (made by :func:`start_cluster`) and delete it."""
    bindir = binaries()
    data = Path(base) / "data"
    if bindir is not None and data.is_dir():
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
    shutil.rmtree(base, ignore_errors=True)


def server_or_reason() -> tuple[PgServer | None, str]:
    """The server to test against, or None and why not."""
    try:
        import langgraph.checkpoint.postgres  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as exc:
        return None, f"the postgres extra is not installed ({exc.name})"
    if EXTERNAL_URL:
        return PgServer(EXTERNAL_URL), ""
    try:
        return start_cluster(), ""
    except (RuntimeError, OSError, KeyError, subprocess.TimeoutExpired) as exc:
        return None, f"no PostgreSQL server: {exc}"


if __name__ == "__main__":
    # .ci/run: one cluster for the whole run. `start` prints its admin URL and its directory
    # (for VOLT_TEST_POSTGRES_URL and for `stop DIR`); the cluster outlives this process.
    import sys

    if sys.argv[1:2] == ["start"]:
        started = start_cluster()
        print(started.admin_url, started.base)
    elif sys.argv[1:2] == ["stop"] and len(sys.argv) == 3:
        stop_cluster(Path(sys.argv[2]))
    else:
        sys.exit("usage: python tests/pg_server.py start | stop DIR")
