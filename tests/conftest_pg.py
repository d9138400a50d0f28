"""PostgreSQL for the store's tests: ``$LNSYNTH_TEST_PG_URL`` when set (CI starts a server), else a
throwaway cluster made with Debian's ``initdb``/``pg_ctl`` in a temporary directory (run as the
``postgres`` user when the tests run as root), else the tests that need it skip with the reason.

Fixtures: ``pg_server`` (session: the server's URL) and ``pg_url`` (per test: a URL whose
``search_path`` is a fresh schema, dropped afterwards, so every test gets an empty database).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import quote

import pytest

PG_ENV = "LNSYNTH_TEST_PG_URL"


def _pg_bin(name: str) -> Optional[str]:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return found[0] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(cmd: list[str], owner: Optional[str]) -> list[str]:
    if owner is None:
        return cmd
    runuser = shutil.which("runuser")
    return [runuser, "-u", owner, "--", *cmd] if runuser else ["su", owner, "-s", "/bin/sh", "-c",
                                                                " ".join(map(quote_sh, cmd))]


def quote_sh(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


class _Cluster:
    """A throwaway PostgreSQL cluster (unix socket in its own directory, trust authentication)."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl); install the postgresql package "
                               f"or set {PG_ENV}")
        self.owner: Optional[str] = None
        if os.geteuid() == 0:
            import pwd

            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' user to run the server") from None
            self.owner = "postgres"
        self.dir = Path(tempfile.mkdtemp(prefix="lnsynth-pg-"))
        if self.owner:
            shutil.chown(self.dir, self.owner)
        self.data = self.dir / "data"
        self.port = _free_port()
        self.user = self.owner or os.environ.get("USER") or "postgres"

    def start(self) -> str:
        r = subprocess.run(_as_owner([self.initdb, "-D", str(self.data), "-A", "trust", "-U", self.user, "-E",
                                      "UTF8", "--locale=C", "--no-sync"], self.owner),
                           capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stderr.strip()[-400:]}")
        opts = (f"-c listen_addresses='' -c unix_socket_directories={self.dir} -p {self.port} -c fsync=off "
                "-c max_connections=200 -c shared_buffers=32MB")
        r = subprocess.run(_as_owner([self.pg_ctl, "-D", str(self.data), "-o", opts, "-l",
                                      str(self.dir / "log"), "-w", "-t", "60", "start"], self.owner),
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            log = (self.dir / "log").read_text(errors="replace")[-400:] if (self.dir / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stderr.strip()[-300:]} {log}")
        return f"postgresql://{self.user}@/postgres?host={quote(str(self.dir))}&port={self.port}"

    def stop(self) -> None:
        subprocess.run(_as_owner([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"], self.owner),
                       capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


def _usable(url: str) -> Optional[str]:
    """``None`` when a connection works, else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'lnsynth[web]')"
    for _ in range(20):
        try:
            with psycopg.connect(url, connect_timeout=5) as c:
                c.execute("SELECT 1")
            return None
        except psycopg.OperationalError as exc:
            last = str(exc).strip()
            time.sleep(0.25)
    return last


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of a PostgreSQL server the tests may create schemas in (skips when there is none)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("PostgreSQL tests: psycopg is not installed (pip install 'lnsynth[web]')")
    url = os.environ.get(PG_ENV, "").strip()
    cluster = None
    if not url:
        try:
            cluster = _Cluster()
            url = cluster.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            if cluster is not None:
                cluster.stop()
            pytest.skip(f"PostgreSQL tests: no server ({exc}); set {PG_ENV}=postgresql://... to use one")
    why = _usable(url)
    if why is not None:
        if cluster is not None:
            cluster.stop()
        pytest.skip(f"PostgreSQL tests: cannot connect to the test server ({why})")
    try:
        yield url
    finally:
        if cluster is not None:
            cluster.stop()


def schema_url(url: str, schema: str) -> str:
    """``url`` with ``search_path`` set to ``schema`` (libpq ``options``)."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote('-csearch_path=' + schema)}"


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL of an empty schema of the test server (dropped after the test)."""
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_server, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(pg_server, schema)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")
