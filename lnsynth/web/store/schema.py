"""The store's schema (written once, in the SQLite dialect; :mod:`.db` adapts it to PostgreSQL) and its
migrations: the table ``schema_version`` holds one row per applied step (version, description,
applied_at), and :func:`migrate` applies the missing steps in order, inside the opening write
transaction, on either backend.  A store made before ``schema_version`` existed starts at 0: every step
is idempotent (``CREATE ... IF NOT EXISTS``, columns added only when missing), so old SQLite files
upgrade in place.  A store whose version is newer than this code is refused.

Tables
------
``meta``       key/value: schema version, seed flag, session secret, sources and
               syntheses (JSON), a write ``generation`` counter (cache key).
``studies``    one row per trial: the :class:`~lnsynth.evidence.schema.Study` as JSON
               *without* its outcomes; ``seq`` orders trials (seed order, newest last).
``outcomes``   one row per arm-level outcome.  The API view (arm, outcome, events, n,
               timepoint_weeks, source, location, quote) lives in columns; ``doc``
               keeps the full seeded :class:`Outcome` (percent, derivation rules,
               candidates ...) so an untouched outcome exports byte-for-byte the same
               model.  ``version`` starts at 1 and is bumped by every update
               (optimistic concurrency: a write with a stale version is refused).
               Deleted rows are kept as tombstones (``deleted = 1``) for the audit.
``audit``      one row per write: when, who (actor, and the named ``user``), action, trial,
               outcome, before and after (JSON).  Written in the same transaction as the change.
``adverse_events`` one row per arm-level adverse-event count, kept like ``outcomes``.
``users``      named curators: role (viewer, curator, reviewer, admin) and an argon2 hash.
``api_tokens`` per-user API tokens, stored as SHA-256 digests only (the tokens are random).
``sessions``   server-side login sessions: SHA-256 of the random session id (the cookie holds
               only the id), the user, the CSRF token bound to the session, expiry and last use
               (idle timeout).  Logout deletes the row, so a replayed cookie is refused.
``login_failures`` failed logins per account (``user``), per ``pair`` (``user|address``) and per
               client address (``ip``): throttling.
``reviews``    second-curator decisions (verify / dispute with the reviewer's own values).
``screening_records`` records queued by ``lnsynth records import`` (file, format, record number, PMID,
               DOI, NCT, URL, cited registration, title, year, abstract, posted-results flag, status
               ``awaiting title/abstract screening``, imported_at): issue 22.
``answer_snapshots`` every question's summary-of-findings rows per ``lnsynth update`` run (``run``,
               evidence ``snapshot`` id, question, outcome, the row as JSON): issue 22.

Two-person rule (see :mod:`lnsynth.web.curation`): every outcome, adverse event and trial row
has a ``status``: ``repository`` (the package's curated data, not claimed to be double-checked),
``pending`` (entered or changed in the app by one curator), ``verified`` (checked against its
quote by a second, different curator) or ``disputed``.  :meth:`Store.evidence` -- what every
analysis reads -- holds only ``repository`` and ``verified`` values; a pending change of an
approved value leaves the approved value (kept in ``approved``) in the analyses until verified.
``authors`` lists everyone who changed a value since it was last verified; none of them, nor the
bootstrap account, nor an account linked to one of them by creation may verify it
(:func:`check_verifier`).  ``deletion`` marks a proposed deletion of a value the analyses use: it
stays in them (from ``approved``) until a second person confirms (:meth:`Store.delete_record`).

Writes are serialised (SQLite: ``BEGIN IMMEDIATE`` with a busy timeout; PostgreSQL: a transaction
advisory lock), so concurrent writers queue instead of failing or losing updates; readers never block.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from .common import now
from .db import StoreUnavailable

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outcomes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trial_id TEXT NOT NULL REFERENCES studies(id),
    key TEXT NOT NULL,
    arm TEXT NOT NULL,
    outcome TEXT NOT NULL,
    events INTEGER,
    n INTEGER,
    timepoint_weeks REAL,
    source TEXT,
    location TEXT,
    quote TEXT,
    doc TEXT,
    origin TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    deleted INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outcomes_trial ON outcomes(trial_id, deleted);
CREATE UNIQUE INDEX IF NOT EXISTS outcomes_key ON outcomes(trial_id, key);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    trial_id TEXT,
    outcome_id INTEGER,
    before TEXT,
    after TEXT
);
CREATE TABLE IF NOT EXISTS adverse_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trial_id TEXT NOT NULL REFERENCES studies(id),
    key TEXT NOT NULL,
    arm TEXT NOT NULL,
    event TEXT NOT NULL,
    category TEXT NOT NULL,
    events INTEGER,
    n INTEGER,
    serious INTEGER,
    source TEXT,
    location TEXT,
    quote TEXT,
    doc TEXT,
    origin TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    deleted INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'repository',
    entered_by TEXT,
    verified_by TEXT,
    verified_at TEXT,
    approved TEXT,
    authors TEXT,
    deletion TEXT
);
CREATE INDEX IF NOT EXISTS ae_trial ON adverse_events(trial_id, deleted);
CREATE UNIQUE INDEX IF NOT EXISTS ae_key ON adverse_events(trial_id, key);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    created_by TEXT
);
CREATE TABLE IF NOT EXISTS api_tokens (
    hash TEXT PRIMARY KEY,
    "user" TEXT NOT NULL REFERENCES users(name),
    label TEXT,
    created_at TEXT NOT NULL,
    last_used TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    "user" TEXT NOT NULL REFERENCES users(name),
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    ip TEXT
);
CREATE TABLE IF NOT EXISTS login_failures (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    failures INTEGER NOT NULL,
    last_at REAL NOT NULL,
    locked_until REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    record_id INTEGER NOT NULL,
    record_version INTEGER NOT NULL,
    reviewer TEXT NOT NULL,
    decision TEXT NOT NULL,
    proposed TEXT,
    note TEXT,
    at TEXT NOT NULL,
    open INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS screening_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_file TEXT NOT NULL,
    format TEXT NOT NULL,
    record_number INTEGER NOT NULL,
    pmid TEXT,
    doi TEXT,
    nct TEXT,
    url TEXT,
    registration TEXT,
    title TEXT NOT NULL,
    year INTEGER,
    abstract TEXT,
    has_results INTEGER,
    kind TEXT,
    status TEXT NOT NULL DEFAULT 'awaiting title/abstract screening',
    imported_at TEXT NOT NULL,
    imported_by TEXT
);
CREATE TABLE IF NOT EXISTS answer_snapshots (
    run INTEGER NOT NULL,
    snapshot TEXT NOT NULL,
    created_at TEXT NOT NULL,
    question TEXT NOT NULL,
    outcome TEXT NOT NULL,
    row TEXT NOT NULL,
    PRIMARY KEY (run, question, outcome)
);
"""

# columns added to tables of stores created before the two-person rule (ALTER TABLE ... ADD COLUMN);
# ``user`` is quoted: it is a reserved word in PostgreSQL
_REVIEW_COLUMNS = (("status", "TEXT NOT NULL DEFAULT 'repository'"), ("entered_by", "TEXT"),
                   ("verified_by", "TEXT"), ("verified_at", "TEXT"), ("approved", "TEXT"), ("authors", "TEXT"),
                   ("deletion", "TEXT"))
_COLUMNS = {
    "outcomes": _REVIEW_COLUMNS,
    "adverse_events": (("authors", "TEXT"), ("deletion", "TEXT")),
    "sessions": (("last_seen", "REAL"),),
    "studies": (("status", "TEXT NOT NULL DEFAULT 'repository'"), ("entered_by", "TEXT"), ("verified_by", "TEXT"),
                ("verified_at", "TEXT")),
    "audit": (('"user"', "TEXT"),),
}


def _base_tables(tx: Any, be: Any) -> None:
    for stmt in _DDL.split(";"):
        if stmt.strip():
            tx.execute(be.ddl(stmt))


def _review_columns(tx: Any, be: Any) -> None:
    """Add the columns of the two-person rule and named users to tables that lack them."""
    for table, cols in _COLUMNS.items():
        have = be.columns(tx, table)
        for name, decl in cols:
            if name.strip('"') not in have:
                tx.execute(f"ALTER TABLE {table} ADD COLUMN {name} {be.ddl(decl)}")


def _split_adverse_events(tx: Any, be: Any) -> None:
    """Move adverse events still inside study documents (stores made before) into their table."""
    from lnsynth.evidence.schema import AdverseEvent

    from .base import dumps, insert_aes

    for sid, doc_s in tx.execute("SELECT id, doc FROM studies").fetchall():
        doc = json.loads(doc_s)
        aes = doc.pop("adverse_events", None)
        if aes:
            insert_aes(tx, sid, [AdverseEvent.model_validate(a) for a in aes], now())
            tx.execute("UPDATE studies SET doc = ? WHERE id = ?", (dumps(doc), sid))


def _screening_decisions(tx: Any, be: Any) -> None:
    """The table of two-person screening decisions (issue 22; see :mod:`.screening_review`)."""
    from .screening_review import add_screening_decisions

    add_screening_decisions(tx, be)


MIGRATIONS: tuple[tuple[int, str, Callable[[Any, Any], None]], ...] = (
    (1, "base tables", _base_tables),
    (2, "two-person rule, named users and session idle-timeout columns", _review_columns),
    (3, "adverse events out of study documents into their table", _split_adverse_events),
    (4, "two-person screening decisions (table screening_decisions)", _screening_decisions),
)
"""The ordered migration steps: (version, description, step(tx, backend)).  Append new steps; never edit one
that was released (stores record the versions they applied)."""

SCHEMA_VERSION = MIGRATIONS[-1][0]

_VERSION_DDL = ("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
                " applied_at TEXT NOT NULL)")


def schema_version(tx: Any, be: Any) -> int:
    """The store's schema version (0 for a store made before versions were kept, or an empty database)."""
    if "schema_version" not in be.tables(tx):
        return 0
    return int(tx.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])


def migrate(tx: Any, be: Any, upto: int | None = None) -> list[int]:
    """Apply the missing :data:`MIGRATIONS` steps (up to ``upto``) in order; returns the versions applied.

    Runs inside the caller's write transaction: on failure nothing of it stays (PostgreSQL and SQLite
    both roll DDL back)."""
    current = schema_version(tx, be)
    if current > SCHEMA_VERSION:
        raise StoreUnavailable(f"{be.describe()}: store schema version {current} is newer than this lnsynth "
                               f"understands ({SCHEMA_VERSION}); upgrade lnsynth")
    tx.execute(be.ddl(_VERSION_DDL))
    done = []
    for version, description, step in MIGRATIONS:
        if version <= current or (upto is not None and version > upto):
            continue
        step(tx, be)
        tx.execute("INSERT INTO schema_version(version, description, applied_at) VALUES (?,?,?)",
                   (version, description, now()))
        done.append(version)
    if done:
        tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)", (str(max(done)),))
    return done
