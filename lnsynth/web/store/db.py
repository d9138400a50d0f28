"""The store's two database backends behind one small interface.

* :class:`SqliteBackend` -- the embedded default: one file, WAL mode, ``BEGIN IMMEDIATE`` so that
  concurrent writers queue on the database lock (busy timeout) and readers never block.  Its
  connections are plain :class:`sqlite3.Connection` objects (rows are :class:`sqlite3.Row`).
* :class:`PostgresBackend` -- a PostgreSQL server (``LNSYNTH_DATABASE_URL=postgresql://...``) through
  psycopg 3.  A thin adapter (:class:`PgConnection`) runs the store's SQL, written once in the SQLite
  dialect: ``?`` placeholders become ``%s``, ``IS ?`` becomes ``IS NOT DISTINCT FROM``, ``INSERT OR
  IGNORE`` / ``INSERT OR REPLACE`` become ``ON CONFLICT`` clauses, and rows behave like
  :class:`sqlite3.Row` (index, name, ``keys()``, ``dict(row)``).  Writers serialise on a transaction
  advisory lock (one per schema), as SQLite writers do on the database lock, so every
  read-check-write of the store is atomic; the evidence is read in one ``REPEATABLE READ`` snapshot.
  Several panels can share one server, each in its own database or schema
  (``?options=-csearch_path%3Dpanel_a``).

:func:`backend_for` picks the backend; the schema and its migrations are in :mod:`.schema`.
"""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

BUSY_TIMEOUT_S = 30.0

# primary keys of the tables written with INSERT OR REPLACE (the PostgreSQL ON CONFLICT target)
_UPSERT_KEYS = {"meta": ("key",), "login_failures": ("scope", "key")}


class StoreUnavailable(RuntimeError):
    """The database named by ``LNSYNTH_DATABASE_URL`` (or ``--db``) cannot be opened."""


def redact_url(url: str) -> str:
    """The URL without its password (safe for messages)."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


# ------------------------------------------------------------------------------------------- SQLite
class SqliteBackend:
    """The embedded SQLite file at ``path``."""

    name = "sqlite"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return str(self.path)

    def connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        c.row_factory = sqlite3.Row
        c.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        c.execute("PRAGMA foreign_keys = ON")
        c.execute("PRAGMA synchronous = FULL")  # fsync each commit: a power cut loses nothing acknowledged
        return c

    def prepare(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # pragma: no cover - e.g. a network filesystem
            raise RuntimeError(f"{self.path}: could not switch SQLite to WAL mode (got {mode!r})")

    @staticmethod
    def begin_write(conn) -> None:
        conn.execute("BEGIN IMMEDIATE")

    @staticmethod
    def begin_read(conn) -> None:
        conn.execute("BEGIN")

    @staticmethod
    def columns(conn, table: str) -> set[str]:
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}

    @staticmethod
    def tables(conn) -> set[str]:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    @staticmethod
    def insert_id(conn, sql: str, params: Sequence[Any]) -> int:
        return int(conn.execute(sql, params).lastrowid)

    @staticmethod
    def raise_ids_above(conn, table: str, n: int) -> None:
        """Make the next autoincrement id of ``table`` larger than ``n``."""
        conn.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?", (n, table))

    @staticmethod
    def ddl(sql: str) -> str:
        return sql

    def close_all(self, conns: list) -> None:
        """Close every connection of the store except those of other threads (SQLite: they stay usable)."""


# --------------------------------------------------------------------------------------- PostgreSQL
class PgRow(tuple):
    """A row of the PostgreSQL adapter that reads like :class:`sqlite3.Row`."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> "PgRow":
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _pg_row_factory(cursor):
    desc = cursor.description or ()
    index = {c.name: i for i, c in enumerate(desc)}

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(values, index)

    return make


_LITERAL_OR_MARK = re.compile(r"'(?:[^']|'')*'|\bIS \?|\?")
_INSERT_OR = re.compile(r"^\s*INSERT OR (IGNORE|REPLACE) INTO (\w+)\s*\(([^)]*)\)", re.I)


@lru_cache(maxsize=512)
def pg_sql(sql: str, bound: bool = True) -> str:
    """The store's SQLite-dialect statement in PostgreSQL's dialect (``bound``: run with parameters)."""
    def mark(m: re.Match) -> str:
        t = m.group(0)
        if t == "?":
            return "%s"
        if t.upper() == "IS ?":
            return "IS NOT DISTINCT FROM %s"
        return t.replace("%", "%%") if bound else t

    out = _LITERAL_OR_MARK.sub(mark, sql)
    m = _INSERT_OR.match(out)
    if m:
        how, table, cols = m.group(1).upper(), m.group(2), [c.strip() for c in m.group(3).split(",")]
        out = "INSERT INTO" + out[m.start(2) - 1:]
        if how == "IGNORE":
            out += " ON CONFLICT DO NOTHING"
        else:
            keys = _UPSERT_KEYS[table]
            sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in keys)
            out += f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}"
    return out


class PgConnection:
    """A psycopg connection that runs the store's SQLite-dialect SQL (autocommit; explicit BEGIN/COMMIT)."""

    def __init__(self, raw):
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()):
        cur = self.raw.cursor()
        cur.execute(pg_sql(sql, bool(params)), tuple(params) if params else None)
        return cur

    @property
    def broken(self) -> bool:
        return bool(self.raw.closed or getattr(self.raw, "broken", False))

    def close(self) -> None:
        self.raw.close()


_PG_DDL = (
    (re.compile(r"INTEGER PRIMARY KEY AUTOINCREMENT"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),  # PostgreSQL's REAL is 4 bytes: epoch seconds need 8
    (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"'),  # byte order, as SQLite sorts (ORDER BY name, question ...)
)


class PostgresBackend:
    """A PostgreSQL database at ``url`` (psycopg 3)."""

    name = "postgresql"

    def __init__(self, url: str):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise StoreUnavailable("LNSYNTH_DATABASE_URL names a PostgreSQL database but psycopg is not installed: "
                                   "pip install 'lnsynth[web]'") from None
        self.url = url
        self.path = Path("postgresql")

    def describe(self) -> str:
        return redact_url(self.url)

    def connect(self) -> PgConnection:
        import psycopg

        try:
            raw = psycopg.connect(self.url, autocommit=True, row_factory=_pg_row_factory, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"{redact_url(self.url)}: cannot connect ({str(exc).strip()})") from None
        raw.execute(f"SET lock_timeout = '{int(BUSY_TIMEOUT_S * 1000)}ms'")
        return PgConnection(raw)

    def prepare(self, conn: PgConnection) -> None:
        pass

    @staticmethod
    def begin_write(conn: PgConnection) -> None:
        conn.execute("BEGIN")
        # one writer at a time per schema, like SQLite's database lock (readers are never blocked)
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('lnsynth:' || current_schema()))")

    @staticmethod
    def begin_read(conn: PgConnection) -> None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    @staticmethod
    def columns(conn: PgConnection, table: str) -> set[str]:
        return {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE"
                                           " table_schema = current_schema() AND table_name = ?", (table,))}

    @staticmethod
    def tables(conn: PgConnection) -> set[str]:
        return {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables WHERE"
                                           " table_schema = current_schema()")}

    @staticmethod
    def insert_id(conn: PgConnection, sql: str, params: Sequence[Any]) -> int:
        return int(conn.execute(sql + " RETURNING id", params).fetchone()[0])

    @staticmethod
    def raise_ids_above(conn: PgConnection, table: str, n: int) -> None:
        seq = conn.execute("SELECT pg_get_serial_sequence(?, 'id')", (table,)).fetchone()[0]
        conn.execute("SELECT setval(?, GREATEST(?, (SELECT COALESCE(MAX(id), 0) FROM " + table + ")))", (seq, n))

    @staticmethod
    def ddl(sql: str) -> str:
        for pat, rep in _PG_DDL:
            sql = pat.sub(rep, sql)
        return sql

    @staticmethod
    def close_all(conns: list) -> None:
        for c in conns:
            try:
                c.close()
            except Exception:  # pragma: no cover - already gone
                pass
        conns.clear()


def backend_for(path: Optional[Path], url: Optional[str]):
    """The backend of a store: PostgreSQL when ``url`` is a ``postgresql://`` (or ``postgres://``) URL,
    else the SQLite file ``path`` (a ``sqlite:///FILE`` URL names the file itself)."""
    if url:
        scheme = url.split(":", 1)[0].lower()
        if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
            return PostgresBackend(re.sub(r"^postgresql\+\w+:", "postgresql:", url))
        if scheme == "sqlite":
            rest = url.split(":", 1)[1]
            if rest.startswith("///") and len(rest) > 3:
                return SqliteBackend(Path(rest[3:]))
            if path is None:
                raise StoreUnavailable(f"{url}: no SQLite file named (sqlite:///FILE)")
            return SqliteBackend(Path(path))
        raise StoreUnavailable(f"LNSYNTH_DATABASE_URL={scheme}://...: unsupported database (expected "
                               "postgresql://USER@HOST/DB or sqlite:///FILE)")
    if path is None:
        raise StoreUnavailable("no store: give --db FILE or set LNSYNTH_DATABASE_URL")
    return SqliteBackend(Path(path))

