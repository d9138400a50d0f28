"""SQLite store behind the web app (WAL mode, one transaction per write).

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

Writes use ``BEGIN IMMEDIATE`` with a busy timeout, so concurrent writers queue on the
database lock instead of failing or losing updates; readers never block (WAL).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
import threading
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import yaml

from lnsynth.evidence.load import EvidenceBase, data_dir, load_evidence
from lnsynth.evidence.schema import (
    AdverseEvent,
    Outcome,
    Provenance,
    Quantity,
    Source,
    Study,
    Synthesis,
    Timepoint,
)

SCHEMA_VERSION = "1"
BUSY_TIMEOUT_S = 30.0

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
    user TEXT NOT NULL REFERENCES users(name),
    label TEXT,
    created_at TEXT NOT NULL,
    last_used TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name),
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

# columns added to tables of stores created before the two-person rule (ALTER TABLE ... ADD COLUMN)
_REVIEW_COLUMNS = (("status", "TEXT NOT NULL DEFAULT 'repository'"), ("entered_by", "TEXT"),
                   ("verified_by", "TEXT"), ("verified_at", "TEXT"), ("approved", "TEXT"), ("authors", "TEXT"),
                   ("deletion", "TEXT"))
_MIGRATIONS = {
    "outcomes": _REVIEW_COLUMNS,
    "adverse_events": (("authors", "TEXT"), ("deletion", "TEXT")),
    "sessions": (("last_seen", "REAL"),),
    "studies": (("status", "TEXT NOT NULL DEFAULT 'repository'"), ("entered_by", "TEXT"), ("verified_by", "TEXT"),
                ("verified_at", "TEXT")),
    "audit": (("user", "TEXT"),),
}

VIEW_FIELDS = ("arm", "outcome", "events", "n", "timepoint_weeks", "source", "location", "quote")
AE_FIELDS = ("arm", "event", "category", "events", "n", "serious", "source", "location", "quote")
KINDS = {"outcome": ("outcomes", VIEW_FIELDS), "adverse_event": ("adverse_events", AE_FIELDS)}
ROLES = ("viewer", "curator", "reviewer", "admin")
APPROVED = ("repository", "verified")


class Forbidden(PermissionError):
    """The two-person rule or a role forbids this action (e.g. verifying one's own entry)."""


class NotFound(LookupError):
    """Unknown trial or outcome."""


class Conflict(Exception):
    """Stale version: the record changed since the client read it."""

    def __init__(self, current: dict):
        super().__init__("version conflict")
        self.current = current


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _weeks_value(w: float) -> float | int:
    return int(w) if float(w).is_integer() else float(w)


def seed_view(study: Study, o: Outcome) -> dict[str, Any]:
    """The API view of a seeded outcome (events/n/timepoint and the leading provenance)."""
    arm = study.arm(o.arm)
    n_q = o.n if o.n is not None else arm.n
    lead = next(q for q in (o.events, o.n, o.percent, o.rate, o.mean) if q is not None) if any(
        q is not None for q in (o.events, o.n, o.percent, o.rate, o.mean)) else None
    prov = lead.provenance if lead is not None else None
    return {
        "arm": o.arm,
        "outcome": o.endpoint,
        "events": o.events.value if o.events is not None and isinstance(o.events.value, int) else None,
        "n": n_q.value if n_q is not None and isinstance(n_q.value, int) else None,
        "timepoint_weeks": o.timepoint.weeks if o.timepoint is not None else None,
        "source": prov.source if prov else None,
        "location": prov.location if prov else None,
        "quote": prov.quote if prov else None,
    }


def row_to_outcome(row: dict[str, Any], study: Study) -> Outcome:
    """Rebuild the schema :class:`Outcome` of a stored row (used by export and pages).

    An untouched seeded row gives back its seeded model; an edited or new row gets
    ``events``/``n`` quantities carrying the provenance entered with the edit and, when
    the timepoint changed, a timepoint in weeks.
    """
    doc = json.loads(row["doc"]) if row.get("doc") else None
    if doc is not None:
        base = Outcome.model_validate(doc)
        old = seed_view(study, base)
        new = {k: row[k] for k in VIEW_FIELDS}
        if old == new:
            return base
        data = base.model_dump(mode="python")
    else:
        old = {k: None for k in VIEW_FIELDS}
        new = {k: row[k] for k in VIEW_FIELDS}
        data = {"id": row["key"]}
    prov = None
    if new["source"] and new["location"] and new["quote"]:
        prov = Provenance(source=new["source"], location=new["location"], quote=new["quote"])
    data["arm"] = new["arm"]
    data["endpoint"] = new["outcome"]
    prov_changed = any(old[k] != new[k] for k in ("source", "location", "quote"))
    if prov is not None and (new["events"] != old["events"] or prov_changed or data.get("events") is None):
        if new["events"] is not None:
            data["events"] = Quantity(value=new["events"], provenance=prov)
    if prov is not None and (new["n"] != old["n"] or (prov_changed and data.get("n") is not None) or doc is None):
        if new["n"] is not None:
            data["n"] = Quantity(value=new["n"], provenance=prov)
    if new["timepoint_weeks"] != old["timepoint_weeks"]:
        if new["timepoint_weeks"] is None:
            data["timepoint"] = None
        elif prov is not None:
            data["timepoint"] = Timepoint(value=_weeks_value(new["timepoint_weeks"]), unit="week", provenance=prov)
    # Re-validate from plain data so nested models are checked once more.
    plain = json.loads(json.dumps(_to_plain(data)))
    return Outcome.model_validate(plain)


def seed_view_ae(ae: AdverseEvent) -> dict[str, Any]:
    """The API view of a seeded adverse event (counts and the leading provenance)."""
    lead = next((q for q in (ae.events, ae.n, ae.percent) if q is not None), None)
    prov = lead.provenance if lead is not None else None
    return {
        "arm": ae.arm, "event": ae.event, "category": ae.category,
        "events": ae.events.value if ae.events is not None and isinstance(ae.events.value, int) else None,
        "n": ae.n.value if ae.n is not None and isinstance(ae.n.value, int) else None,
        "serious": ae.serious,
        "source": prov.source if prov else None,
        "location": prov.location if prov else None,
        "quote": prov.quote if prov else None,
    }


def row_to_ae(row: dict[str, Any]) -> AdverseEvent:
    """Rebuild the schema :class:`AdverseEvent` of a stored row (seeded model when untouched)."""
    doc = json.loads(row["doc"]) if row.get("doc") else None
    new = {k: row[k] for k in AE_FIELDS}
    new["serious"] = None if new["serious"] is None else bool(new["serious"])
    if doc is not None:
        base = AdverseEvent.model_validate(doc)
        if seed_view_ae(base) == new:
            return base
        data = base.model_dump(mode="json", exclude_none=True)
    else:
        data = {"id": row["key"]}
    prov = {"source": new["source"], "location": new["location"], "quote": new["quote"]}
    data.update(arm=new["arm"], event=new["event"], category=new["category"])
    if new["serious"] is None:
        data.pop("serious", None)
    else:
        data["serious"] = new["serious"]
    if new["events"] is not None:
        data["events"] = {"value": new["events"], "provenance": prov}
    if new["n"] is not None:
        data["n"] = {"value": new["n"], "provenance": prov}
    elif doc is None:
        data.pop("n", None)
    if new["events"] is not None and new["n"] is not None:
        data.pop("percent", None)  # the typed counts replace a printed percentage
    return AdverseEvent.model_validate(data)


def approved_row(row: dict[str, Any], fields: tuple[str, ...]) -> Optional[dict[str, Any]]:
    """The row as the analyses may use it under the two-person rule (``None``: not approved yet).

    ``repository`` and ``verified`` rows are used as they are; a ``pending``/``disputed`` change
    of a value approved before is used as it was approved; a new value nobody verified is left out.
    """
    status = row.get("status") or "repository"
    if status in APPROVED:
        return row
    if row.get("approved"):
        snap = json.loads(row["approved"])
        return {**row, **snap["values"], "status": snap["status"]}
    return None


def _to_plain(x: Any) -> Any:
    if hasattr(x, "model_dump"):
        return x.model_dump(mode="json", exclude_none=True)
    if isinstance(x, dict):
        return {k: _to_plain(v) for k, v in x.items() if v is not None}
    if isinstance(x, (list, tuple)):
        return [_to_plain(v) for v in x]
    return x


def _dumps(x: Any) -> str:
    return json.dumps(x, ensure_ascii=False, sort_keys=True, allow_nan=False)


def _authors(row) -> list[str]:
    """Curators who authored a change of this value since it was last verified (the entrant for a
    row written before authors were kept)."""
    keys = row.keys()
    raw = row["authors"] if "authors" in keys else None
    if raw:
        return list(json.loads(raw))
    return [row["entered_by"]] if "entered_by" in keys and row["entered_by"] else []


BOOTSTRAP = "bootstrap"
"""The account of the server's shared token: administration only, it never verifies a value."""


def _creators(tx, name: str) -> list[str]:
    """The accounts that created ``name``, directly or through accounts they created (nearest first)."""
    out: list[str] = []
    cur = name
    for _ in range(64):  # a chain longer than this (or a cycle) stops here
        r = tx.execute("SELECT created_by FROM users WHERE name = ?", (cur,)).fetchone()
        if r is None or not r[0] or r[0] in out or r[0] == name:
            break
        out.append(r[0])
        cur = r[0]
    return out


def check_verifier(tx, verifier: str, authors: list[str], what: str = "value") -> None:
    """Raise :class:`Forbidden` unless ``verifier`` may be the second person for a change by ``authors``.

    The rule (issue 26): the verifier authored none of the changes since the last verified state;
    the verifier is not the bootstrap account (its token is for administration); and no author
    created the verifier's account, nor the verifier an author's account, directly or through
    accounts created in turn (``users.created_by``): an admin cannot verify her own entry through an
    account she made, nor enter through a made account and verify with her own.  Accounts made at
    the command line (``created_by = 'cli'``) or by the system have no creator among the users.
    """
    if verifier == BOOTSTRAP:
        raise Forbidden("the bootstrap token is for administration, not curation: it cannot verify a "
                        f"{what}; verify with a named account")
    if verifier in authors:
        raise Forbidden(f"the two-person rule: a {what} must be verified by someone who authored none of its "
                        f"changes since it was last verified ({verifier} did)")
    mine = _creators(tx, verifier)
    for a in authors:
        if a in mine or verifier in _creators(tx, a):
            raise Forbidden(f"the two-person rule: {verifier!r} and {a!r} (an author of this {what}) are linked: "
                            "one account was created by the other (directly or through accounts it created)")


def _role(tx, name: str) -> Optional[str]:
    r = tx.execute("SELECT role FROM users WHERE name = ? AND active = 1", (name,)).fetchone()
    return r[0] if r else None


_SEED_CACHE: dict[tuple, EvidenceBase] = {}


def _package_evidence() -> EvidenceBase:
    """The package evidence, parsed once per process while its files are unchanged."""
    root = data_dir()
    files = sorted(p for p in root.rglob("*.yaml"))
    key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    ev = _SEED_CACHE.get(key)
    if ev is None:
        ev = load_evidence(root)
        _SEED_CACHE.clear()
        _SEED_CACHE[key] = ev
    return ev


@dataclass
class Store:
    """The SQLite store at ``path`` (created and seeded on first use)."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._cache_lock = threading.Lock()
        self._cache: tuple[int, EvidenceBase] | None = None
        self._shells: dict[str, Study] = {}
        self._init_db()

    # ------------------------------------------------------------ connections
    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                check_same_thread=False)
            c.row_factory = sqlite3.Row
            c.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            c.execute("PRAGMA foreign_keys = ON")
            c.execute("PRAGMA synchronous = FULL")  # fsync each commit: a power cut loses nothing acknowledged
            self._local.conn = c
        return c

    class _Tx:
        def __init__(self, conn: sqlite3.Connection):
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, et, ev, tb) -> None:
            if et is None:
                self.conn.execute("COMMIT")
            else:
                self.conn.execute("ROLLBACK")

    def _tx(self) -> "_Tx":
        return Store._Tx(self._conn())

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    def _init_db(self) -> None:
        c = self._conn()
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # pragma: no cover - e.g. a network filesystem
            raise RuntimeError(f"{self.path}: could not switch SQLite to WAL mode (got {mode!r})")
        with self._tx() as tx:
            for stmt in _DDL.split(";"):
                if stmt.strip():
                    tx.execute(stmt)
            self._migrate(tx)
            seeded = tx.execute("SELECT value FROM meta WHERE key = 'seeded'").fetchone()
            if seeded is None:
                self._seed(tx, _package_evidence())
                tx.execute("INSERT INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
                tx.execute("INSERT INTO meta(key, value) VALUES ('secret', ?)", (secrets.token_hex(32),))
                tx.execute("INSERT INTO meta(key, value) VALUES ('generation', '0')")
                tx.execute("INSERT INTO meta(key, value) VALUES ('seeded', ?)", (now(),))
                return
            self._split_adverse_events(tx)
        self._import_new_trials()

    @staticmethod
    def _migrate(tx: sqlite3.Connection) -> None:
        """Add the columns of the two-person rule and named users to tables that lack them."""
        for table, cols in _MIGRATIONS.items():
            have = {r[1] for r in tx.execute(f"PRAGMA table_info({table})")}
            for name, decl in cols:
                if name not in have:
                    tx.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")

    @classmethod
    def _split_adverse_events(cls, tx: sqlite3.Connection) -> None:
        """Move adverse events still inside study documents (stores made before) into their table."""
        for sid, doc_s in tx.execute("SELECT id, doc FROM studies").fetchall():
            doc = json.loads(doc_s)
            aes = doc.pop("adverse_events", None)
            if aes:
                cls._insert_aes(tx, sid, [AdverseEvent.model_validate(a) for a in aes], now())
                tx.execute("UPDATE studies SET doc = ? WHERE id = ?", (_dumps(doc), sid))

    @staticmethod
    def _insert_aes(tx: sqlite3.Connection, trial_id: str, aes, ts: str) -> None:
        for ae in aes:
            v = seed_view_ae(ae)
            tx.execute(
                "INSERT INTO adverse_events(trial_id, key, arm, event, category, events, n, serious, source,"
                " location, quote, doc, origin, version, deleted, created_at, updated_at, status)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'seed',1,0,?,?,'repository')",
                (trial_id, ae.id, v["arm"], v["event"], v["category"], v["events"], v["n"],
                 None if v["serious"] is None else int(v["serious"]), v["source"], v["location"], v["quote"],
                 _dumps(ae.model_dump(mode="json", exclude_none=True)), ts, ts))

    def _import_new_trials(self) -> None:
        """Add trials that appeared in the package data since the store was seeded (newest last).

        Only additions: a trial already in the store is never overwritten (the store is the
        curated copy).  A package that does not load (e.g. mid-edit) leaves the store as it is.
        """
        try:
            ev = _package_evidence()
        except Exception as exc:  # the store still works on what it has
            warnings.warn(f"lnsynth web: package evidence not loaded, no new trials imported ({exc})",
                          RuntimeWarning, stacklevel=3)
            return
        with self._tx() as tx:
            have = {r[0] for r in tx.execute("SELECT id FROM studies")}
            new = [s for s in ev.studies if s.id not in have]
            if not new:
                return
            known = json.loads(tx.execute("SELECT value FROM meta WHERE key = 'sources'").fetchone()[0] or "[]")
            ids = {x["id"] for x in known}
            known += [s.model_dump(mode="json", exclude_none=True) for s in ev.sources if s.id not in ids]
            tx.execute("UPDATE meta SET value = ? WHERE key = 'sources'", (_dumps(known),))
            n_out = self._insert_studies(tx, new, now())
            self._audit(tx, "system:import", "import", None, None, None,
                        {"from": str(ev.root), "studies": [s.id for s in new], "outcomes": n_out})
            self._bump(tx)

    def _seed(self, tx: sqlite3.Connection, ev: EvidenceBase) -> None:
        ts = now()
        tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('sources', ?)",
                   (_dumps([s.model_dump(mode="json", exclude_none=True) for s in ev.sources]),))
        tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('syntheses', ?)",
                   (_dumps([s.model_dump(mode="json", exclude_none=True) for s in ev.syntheses]),))
        n_out = self._insert_studies(tx, ev.studies, ts)
        tx.execute(
            "INSERT INTO audit(at, actor, action, trial_id, outcome_id, before, after) VALUES (?,?,?,?,?,?,?)",
            (ts, "system:seed", "seed", None, None, None,
             _dumps({"from": str(ev.root), "studies": len(ev.studies), "outcomes": n_out})),
        )

    @classmethod
    def _insert_studies(cls, tx: sqlite3.Connection, studies, ts: str) -> int:
        n_out = 0
        for s in studies:
            doc = s.model_dump(mode="json", exclude_none=True)
            doc.pop("outcomes", None)
            doc.pop("adverse_events", None)
            tx.execute("INSERT INTO studies(id, doc) VALUES (?, ?)", (s.id, _dumps(doc)))
            cls._insert_aes(tx, s.id, s.adverse_events, ts)
            for o in s.outcomes:
                v = seed_view(s, o)
                tx.execute(
                    "INSERT INTO outcomes(trial_id, key, arm, outcome, events, n, timepoint_weeks, source,"
                    " location, quote, doc, origin, version, deleted, created_at, updated_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,'seed',1,0,?,?)",
                    (s.id, o.id, v["arm"], v["outcome"], v["events"], v["n"], v["timepoint_weeks"],
                     v["source"], v["location"], v["quote"],
                     _dumps(o.model_dump(mode="json", exclude_none=True)), ts, ts),
                )
                n_out += 1
        return n_out

    # ------------------------------------------------------------------ reads
    def meta(self, key: str) -> Optional[str]:
        r = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return r[0] if r else None

    def generation(self) -> int:
        return int(self.meta("generation") or 0)

    def trial_ids(self) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT id FROM studies ORDER BY seq")]

    def has_trial(self, trial_id: str) -> bool:
        return self._conn().execute("SELECT 1 FROM studies WHERE id = ?", (trial_id,)).fetchone() is not None

    def study_docs(self) -> list[dict]:
        return [json.loads(r[0]) for r in self._conn().execute("SELECT doc FROM studies ORDER BY seq")]

    def study_doc(self, trial_id: str) -> dict:
        r = self._conn().execute("SELECT doc FROM studies WHERE id = ?", (trial_id,)).fetchone()
        if r is None:
            raise NotFound(f"unknown trial {trial_id!r}")
        return json.loads(r[0])

    @staticmethod
    def record(row: sqlite3.Row | dict) -> dict[str, Any]:
        r = dict(row)
        return {
            "id": r["id"],
            "trial_id": r["trial_id"],
            "key": r["key"],
            "arm": r["arm"],
            "outcome": r["outcome"],
            "events": r["events"],
            "n": r["n"],
            "timepoint_weeks": r["timepoint_weeks"],
            "source": r["source"],
            "location": r["location"],
            "quote": r["quote"],
            "origin": r["origin"],
            "version": r["version"],
            "created_at": r["created_at"],
            "updated_at": r["updated_at"],
            **Store._review_view(r),
        }

    @staticmethod
    def _review_view(r: dict) -> dict[str, Any]:
        approved = json.loads(r["approved"]) if r.get("approved") else None
        return {"status": r.get("status") or "repository", "entered_by": r.get("entered_by"),
                "verified_by": r.get("verified_by"), "verified_at": r.get("verified_at"),
                "in_analyses": (r.get("status") or "repository") in APPROVED or approved is not None,
                "approved": approved, "authors": _authors(r) if (r.get("status") or "repository") not in APPROVED
                else [], "deletion": json.loads(r["deletion"]) if r.get("deletion") else None}

    @staticmethod
    def ae_record(row: sqlite3.Row | dict) -> dict[str, Any]:
        r = dict(row)
        out = {"id": r["id"], "trial_id": r["trial_id"], "key": r["key"]}
        out.update({k: r[k] for k in AE_FIELDS})
        out["serious"] = None if r["serious"] is None else bool(r["serious"])
        out.update(origin=r["origin"], version=r["version"], created_at=r["created_at"], updated_at=r["updated_at"],
                   **Store._review_view(r))
        return out

    def _rec(self, kind: str, row) -> dict[str, Any]:
        return self.record(row) if kind == "outcome" else self.ae_record(row)

    def _live_rows(self, kind: str, trial_id: Optional[str]) -> list[dict]:
        """Rows of ``kind`` (KINDS) not deleted, of one trial or of all, in id order."""
        table = KINDS[kind][0]
        if trial_id is None:
            rows = self._conn().execute(f"SELECT * FROM {table} WHERE deleted = 0 ORDER BY id").fetchall()
        else:
            rows = self._conn().execute(f"SELECT * FROM {table} WHERE trial_id = ? AND deleted = 0 ORDER BY id",
                                        (trial_id,)).fetchall()
        return [dict(r) for r in rows]

    def outcome_rows(self, trial_id: Optional[str] = None) -> list[dict]:
        return self._live_rows("outcome", trial_id)

    def outcomes(self, trial_id: str) -> list[dict]:
        if not self.has_trial(trial_id):
            raise NotFound(f"unknown trial {trial_id!r}")
        return [self.record(r) for r in self.outcome_rows(trial_id)]

    def outcome(self, trial_id: str, outcome_id: int) -> dict:
        return self.record(self._live_row(self._conn(), "outcome", trial_id, outcome_id))

    def audit(self, limit: Optional[int] = None) -> list[dict]:
        c = self._conn()
        if limit is None:
            rows = c.execute("SELECT * FROM audit ORDER BY id").fetchall()
        else:
            rows = c.execute("SELECT * FROM (SELECT * FROM audit ORDER BY id DESC LIMIT ?) ORDER BY id",
                             (int(limit),)).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["before"] = json.loads(d["before"]) if d["before"] else None
            d["after"] = json.loads(d["after"]) if d["after"] else None
            # the contract's words: when, who, what (aliases of at, actor, action + target)
            d["when"], d["who"] = d["at"], d["actor"]
            target = f" {d['trial_id']}" if d["trial_id"] else ""
            target += f"/outcomes/{d['outcome_id']}" if d["outcome_id"] is not None else ""
            d["what"] = f"{d['action']}{target}"
            out.append(d)
        return out

    # ----------------------------------------------------------------- writes
    @staticmethod
    def _bump(tx: sqlite3.Connection) -> None:
        tx.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    @staticmethod
    def _audit(tx, actor: str, action: str, trial_id: Optional[str], outcome_id: Optional[int], before,
               after, user: Optional[str] = None) -> None:
        tx.execute(
            "INSERT INTO audit(at, actor, action, trial_id, outcome_id, before, after, user)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (now(), actor, action, trial_id, outcome_id,
             _dumps(before) if before is not None else None, _dumps(after) if after is not None else None, user),
        )

    # generic writes of outcomes and adverse events (``kind``: "outcome" or "adverse_event").
    # A write from the app makes the value "pending": it enters the analyses only once a second
    # curator has verified it (see verify_record); an approved value that is changed stays in the
    # analyses as it was approved (kept in ``approved``) until the change is verified.
    def _db_values(self, kind: str, values: dict[str, Any]) -> list:
        fields = KINDS[kind][1]
        return [int(values[f]) if f == "serious" and values.get(f) is not None else values.get(f) for f in fields]

    def create_record(self, kind: str, trial_id: str, values: dict[str, Any], actor: str, origin: str = "api",
                      user: Optional[str] = None) -> dict:
        table, fields = KINDS[kind]
        ts = now()
        with self._tx() as tx:
            if tx.execute("SELECT 1 FROM studies WHERE id = ?", (trial_id,)).fetchone() is None:
                raise NotFound(f"unknown trial {trial_id!r}")
            tmp_key = "pending_" + secrets.token_hex(8)
            cols = ", ".join(fields)
            cur = tx.execute(
                f"INSERT INTO {table}(trial_id, key, {cols}, doc, origin, version, deleted, created_at, updated_at,"
                f" status, entered_by, authors) VALUES (?,?,{','.join('?' * len(fields))},NULL,?,1,0,?,?,'pending',?,?)",
                (trial_id, tmp_key, *self._db_values(kind, values), origin, ts, ts, user or actor,
                 _dumps([user or actor])),
            )
            oid = int(cur.lastrowid)
            prefix = "web_" if kind == "outcome" else "web_ae_"
            tx.execute(f"UPDATE {table} SET key = ? WHERE id = ?", (f"{prefix}{oid}", oid))
            rec = self._rec(kind, tx.execute(f"SELECT * FROM {table} WHERE id = ?", (oid,)).fetchone())
            self._audit(tx, actor, "create" if kind == "outcome" else "create adverse event", trial_id, oid, None,
                        rec, user)
            self._bump(tx)
        return rec

    def _live_row(self, tx, kind: str, trial_id: str, rid: int):
        table = KINDS[kind][0]
        row = tx.execute(f"SELECT * FROM {table} WHERE trial_id = ? AND id = ? AND deleted = 0",
                         (trial_id, rid)).fetchone()
        if row is None:
            what = "outcome" if kind == "outcome" else "adverse event"
            raise NotFound(f"trial {trial_id!r} has no {what} {rid}")
        return row

    def _versioned_row(self, tx, kind: str, trial_id: str, rid: int, version: int):
        """The live row and its record, or :class:`Conflict` when ``version`` is not the current one."""
        row = self._live_row(tx, kind, trial_id, rid)
        before = self._rec(kind, row)
        if before["version"] != version:
            raise Conflict(before)
        return row, before

    def update_record(self, kind: str, trial_id: str, rid: int, version: int, values: dict[str, Any], actor: str,
                      user: Optional[str] = None) -> dict:
        table, fields = KINDS[kind]
        with self._tx() as tx:
            row, before = self._versioned_row(tx, kind, trial_id, rid, version)
            approved = row["approved"]
            if row["status"] in APPROVED:  # keep what analyses use until the change is verified
                approved = _dumps({"status": row["status"], "verified_by": row["verified_by"],
                                   "values": {f: row[f] for f in fields}})
            # every author of a change since the last verified state is kept: none of them may verify it
            authors = [] if row["status"] in APPROVED else _authors(row)
            authors = authors + [a for a in [user or actor] if a not in authors]
            # a disputed value stays disputed when its entry is changed (only a reviewer resolves it): the
            # readings stay open and the replaced entry joins them, side by side in the review queue
            disputed = row["status"] == "disputed"
            old = {f: row[f] for f in fields}
            if disputed and self._db_values(kind, values) != [old[f] for f in fields]:
                tx.execute("INSERT INTO reviews(kind, record_id, record_version, reviewer, decision, proposed, note,"
                           " at, open) VALUES (?,?,?,?,'earlier entry',?,?,?,1)",
                           (kind, rid, version, row["entered_by"] or "?", _dumps(Store._plain_values(kind, old)),
                            f"entry replaced by {user or actor}", now()))
            sets = ", ".join(f"{f}=?" for f in fields)
            tx.execute(
                f"UPDATE {table} SET {sets}, version = version + 1, updated_at=?, status=?, entered_by=?,"
                f" verified_by=NULL, verified_at=NULL, approved=?, authors=?, deletion=NULL"
                f" WHERE id = ? AND version = ?",
                (*self._db_values(kind, values), now(), "disputed" if disputed else "pending", user or actor,
                 approved, _dumps(authors), rid, version),
            )
            if not disputed:
                tx.execute("UPDATE reviews SET open = 0 WHERE kind = ? AND record_id = ?", (kind, rid))
            after = self._rec(kind, tx.execute(f"SELECT * FROM {table} WHERE id = ?", (rid,)).fetchone())
            self._audit(tx, actor, "update" if kind == "outcome" else "update adverse event", trial_id, rid, before,
                        after, user)
            self._bump(tx)
        return after

    @staticmethod
    def _plain_values(kind: str, vals: dict) -> dict:
        out = dict(vals)
        if "serious" in out and out["serious"] is not None:
            out["serious"] = bool(out["serious"])
        return out

    def delete_record(self, kind: str, trial_id: str, rid: int, version: int, actor: str,
                      user: Optional[str] = None) -> dict:
        """Delete a value under the two-person rule; returns the record with ``delete``: what happened.

        * A value no analysis uses (a new entry never verified) is deleted at once (``delete`` =
          ``"deleted"``; the record as it was).
        * A value the analyses use (``repository``, ``verified``, or a pending change of one) is only
          proposed for deletion (``"pending deletion"``; the record as it is now): it stays in the
          analyses until a second person -- who authored none of its changes since it was last
          verified, under :func:`check_verifier` -- confirms, by deleting it too or verifying it.
        * Deleting a value proposed for deletion confirms the proposal (``"deleted"``); by one of its
          authors it raises :class:`Forbidden`.
        """
        table = KINDS[kind][0]
        who = user or actor
        with self._tx() as tx:
            row, before = self._versioned_row(tx, kind, trial_id, rid, version)
            if row["deletion"]:
                check_verifier(tx, who, _authors(row), "deletion")
                self._confirm_deletion(tx, kind, trial_id, row, who, actor)
                return {**before, "delete": "deleted"}
            if row["status"] == "disputed" and _role(tx, who) not in ("reviewer", "admin"):
                # deleting and re-entering would make the dispute vanish from the review queue
                raise Forbidden("a disputed value is resolved by a reviewer: ask a reviewer to settle or delete it")
            if row["status"] in APPROVED or row["approved"]:
                fields = KINDS[kind][1]
                approved = row["approved"]
                if row["status"] in APPROVED:
                    approved = _dumps({"status": row["status"], "verified_by": row["verified_by"],
                                       "values": {f: row[f] for f in fields}})
                authors = [] if row["status"] in APPROVED else _authors(row)
                authors = authors + [a for a in [who] if a not in authors]
                tx.execute(f"UPDATE {table} SET version = version + 1, updated_at = ?, status = 'pending',"
                           " verified_by = NULL, verified_at = NULL, approved = ?, authors = ?, deletion = ?"
                           " WHERE id = ?", (now(), approved, _dumps(authors), _dumps({"by": who, "at": now()}), rid))
                tx.execute("UPDATE reviews SET open = 0 WHERE kind = ? AND record_id = ?", (kind, rid))
                after = self._rec(kind, tx.execute(f"SELECT * FROM {table} WHERE id = ?", (rid,)).fetchone())
                self._audit(tx, actor, "propose deletion" if kind == "outcome" else "propose deletion of adverse event",
                            trial_id, rid, before, after, user)
                self._bump(tx)
                return {**after, "delete": "pending deletion"}
            tx.execute(f"UPDATE {table} SET deleted = 1, version = version + 1, updated_at = ? WHERE id = ?",
                       (now(), rid))
            tx.execute("UPDATE reviews SET open = 0 WHERE kind = ? AND record_id = ?", (kind, rid))
            self._audit(tx, actor, "delete" if kind == "outcome" else "delete adverse event", trial_id, rid, before,
                        None, user)
            self._bump(tx)
        return {**before, "delete": "deleted"}

    def _confirm_deletion(self, tx, kind: str, trial_id: str, row, who: str, actor: str) -> None:
        table = KINDS[kind][0]
        before = self._rec(kind, row)
        tx.execute(f"UPDATE {table} SET deleted = 1, version = version + 1, updated_at = ?, verified_by = ?,"
                   " verified_at = ? WHERE id = ?", (now(), who, now(), row["id"]))
        tx.execute("UPDATE reviews SET open = 0 WHERE kind = ? AND record_id = ?", (kind, row["id"]))
        self._audit(tx, actor, "delete" if kind == "outcome" else "delete adverse event", trial_id, row["id"], before,
                    {"confirmed_by": who, "proposed_by": (json.loads(row["deletion"]) or {}).get("by")}, who)
        self._bump(tx)

    def keep_record(self, kind: str, trial_id: str, rid: int, version: int, user: str, actor: str) -> dict:
        """Withdraw a proposed deletion: the value is restored as it was last approved (any curator may:
        it brings back only what two people approved)."""
        table, fields = KINDS[kind]
        with self._tx() as tx:
            row, before = self._versioned_row(tx, kind, trial_id, rid, version)
            if not row["deletion"] or not row["approved"]:
                raise NotFound("no deletion of this value awaits confirmation")
            snap = json.loads(row["approved"])
            sets = ", ".join(f"{f}=?" for f in fields)
            tx.execute(f"UPDATE {table} SET {sets}, version = version + 1, updated_at = ?, status = ?, verified_by = ?,"
                       " approved = NULL, authors = NULL, deletion = NULL WHERE id = ?",
                       (*self._db_values(kind, snap["values"]), now(), snap["status"], snap.get("verified_by"), rid))
            tx.execute("UPDATE reviews SET open = 0 WHERE kind = ? AND record_id = ?", (kind, rid))
            after = self._rec(kind, tx.execute(f"SELECT * FROM {table} WHERE id = ?", (rid,)).fetchone())
            self._audit(tx, actor, "keep" if kind == "outcome" else "keep adverse event", trial_id, rid, before, after,
                        user)
            self._bump(tx)
        return after

    def create_outcome(self, trial_id: str, values: dict[str, Any], actor: str, origin: str = "api",
                       user: Optional[str] = None) -> dict:
        return self.create_record("outcome", trial_id, values, actor, origin, user)

    def update_outcome(self, trial_id: str, outcome_id: int, version: int, values: dict[str, Any],
                       actor: str, user: Optional[str] = None) -> dict:
        return self.update_record("outcome", trial_id, outcome_id, version, values, actor, user)

    def delete_outcome(self, trial_id: str, outcome_id: int, version: int, actor: str,
                       user: Optional[str] = None) -> dict:
        return self.delete_record("outcome", trial_id, outcome_id, version, actor, user)

    # ---------------------------------------------------------- two-person rule
    def verify_record(self, kind: str, trial_id: str, rid: int, version: int, reviewer: str, actor: str,
                      proposed: Optional[dict[str, Any]] = None, note: Optional[str] = None) -> dict:
        """A second curator's check of a pending value against its quote.

        ``proposed`` is the reviewer's own reading of the source (the same fields); when it is
        ``None`` or equal to the entry, the value becomes ``verified``; otherwise the record is
        ``disputed`` and both readings go to the review queue.  No author of any change since the
        value was last verified (the entrant, and every curator who edited any field of it since)
        can verify it (:class:`Forbidden`): otherwise a second curator's edit of, say, the location
        would let the entrant verify her own count.  The full rule is :func:`check_verifier` (no
        bootstrap account, no account linked to an author by creation).

        A ``disputed`` value is settled only by a reviewer (role ``reviewer`` or ``admin``): a curator
        may add her own differing reading, but her agreeing check does not end a dispute.  Verifying a
        value proposed for deletion confirms the deletion (the record comes back with ``deleted``).
        """
        table, fields = KINDS[kind]
        with self._tx() as tx:
            row, before = self._versioned_row(tx, kind, trial_id, rid, version)
            if row["status"] not in ("pending", "disputed"):
                raise Forbidden(f"nothing to verify: the value is {row['status']}")
            check_verifier(tx, reviewer, _authors(row), "deletion" if row["deletion"] else "value")
            if row["deletion"]:
                self._confirm_deletion(tx, kind, trial_id, row, reviewer, actor)
                return {**before, "status": "deleted", "deleted": True}
            agree = proposed is None or all(proposed.get(f) == row[f] if f != "serious" else
                                            (proposed.get(f) == (None if row[f] is None else bool(row[f])))
                                            for f in fields)
            if agree and _role(tx, reviewer) not in ("reviewer", "admin"):
                if row["status"] == "disputed":
                    raise Forbidden("a disputed value is resolved by a reviewer: record your own reading if it "
                                    "differs, or ask a reviewer to settle it")
                if self._disputed_sibling(tx, kind, row):
                    raise Forbidden("another entry of this value (same arm and measure) is disputed: a reviewer "
                                    "settles it before a new entry is verified")
            decision = "verify" if agree else "dispute"
            tx.execute("INSERT INTO reviews(kind, record_id, record_version, reviewer, decision, proposed, note, at,"
                       " open) VALUES (?,?,?,?,?,?,?,?,?)",
                       (kind, rid, version, reviewer, decision, _dumps(proposed) if proposed is not None else None,
                        note, now(), 0 if agree else 1))
            if agree:
                tx.execute(f"UPDATE {table} SET status='verified', verified_by=?, verified_at=?, approved=NULL,"
                           " authors=NULL WHERE id = ?", (reviewer, now(), rid))
                tx.execute("UPDATE reviews SET open = 0 WHERE kind = ? AND record_id = ?", (kind, rid))
            else:
                tx.execute(f"UPDATE {table} SET status='disputed' WHERE id = ?", (rid,))
            after = self._rec(kind, tx.execute(f"SELECT * FROM {table} WHERE id = ?", (rid,)).fetchone())
            self._audit(tx, actor, decision if kind == "outcome" else f"{decision} adverse event", trial_id, rid,
                        before, {**after, "proposed": proposed, "note": note}, reviewer)
            self._bump(tx)
        return after

    @staticmethod
    def _disputed_sibling(tx, kind: str, row) -> bool:
        """Whether another live entry of the same value (trial, arm, endpoint and timepoint; for an adverse
        event trial, arm and event) is disputed: a fresh entry must not route around an open dispute."""
        if kind == "outcome":
            q = ("SELECT 1 FROM outcomes WHERE trial_id = ? AND arm = ? AND outcome = ? AND timepoint_weeks IS ?"
                 " AND deleted = 0 AND status = 'disputed' AND id != ?")
            args = (row["trial_id"], row["arm"], row["outcome"], row["timepoint_weeks"], row["id"])
        else:
            q = ("SELECT 1 FROM adverse_events WHERE trial_id = ? AND arm = ? AND event = ? AND deleted = 0"
                 " AND status = 'disputed' AND id != ?")
            args = (row["trial_id"], row["arm"], row["event"], row["id"])
        return tx.execute(q, args).fetchone() is not None

    def adopt_review(self, kind: str, trial_id: str, rid: int, version: int, review_id: int, resolver: str,
                     actor: str) -> dict:
        """Resolve a disputed value with a reviewer's reading: the value becomes the reviewer's,
        verified by ``resolver`` (who must not be that reviewer)."""
        table, fields = KINDS[kind]
        with self._tx() as tx:
            row, before = self._versioned_row(tx, kind, trial_id, rid, version)
            rv = tx.execute("SELECT * FROM reviews WHERE id = ? AND kind = ? AND record_id = ? AND open = 1",
                            (review_id, kind, rid)).fetchone()
            if row["status"] != "disputed" or rv is None or not rv["proposed"]:
                raise NotFound(f"no open disputed reading {review_id} for this value")
            if rv["reviewer"] == resolver:
                raise Forbidden("the two-person rule: your own reading must be accepted by someone else")
            if _role(tx, resolver) not in ("reviewer", "admin"):
                raise Forbidden("resolving a dispute needs role 'reviewer'")
            check_verifier(tx, resolver, _authors(row) + [rv["reviewer"]], "value")
            proposed = json.loads(rv["proposed"])
            sets = ", ".join(f"{f}=?" for f in fields)
            tx.execute(f"UPDATE {table} SET {sets}, version = version + 1, updated_at=?, status='verified',"
                       f" entered_by=?, verified_by=?, verified_at=?, approved=NULL, authors=NULL WHERE id = ?",
                       (*self._db_values(kind, proposed), now(), rv["reviewer"], resolver, now(), rid))
            tx.execute("UPDATE reviews SET open = 0 WHERE kind = ? AND record_id = ?", (kind, rid))
            after = self._rec(kind, tx.execute(f"SELECT * FROM {table} WHERE id = ?", (rid,)).fetchone())
            self._audit(tx, actor, "resolve" if kind == "outcome" else "resolve adverse event", trial_id, rid,
                        before, {**after, "review": review_id}, resolver)
            self._bump(tx)
        return after

    def reviews_of(self, kind: str, rid: int, open_only: bool = True) -> list[dict]:
        q = "SELECT * FROM reviews WHERE kind = ? AND record_id = ?" + (" AND open = 1" if open_only else "")
        out = []
        for r in self._conn().execute(q + " ORDER BY id", (kind, rid)):
            d = dict(r)
            d["proposed"] = json.loads(d["proposed"]) if d["proposed"] else None
            out.append(d)
        return out

    def review_queue(self) -> list[dict]:
        """Every pending or disputed value (outcomes, adverse events) with its open reviews, oldest first."""
        c = self._conn()
        items = []
        for kind, (table, _) in KINDS.items():
            for r in c.execute(f"SELECT * FROM {table} WHERE deleted = 0 AND status IN ('pending', 'disputed')"
                               " ORDER BY updated_at, id"):
                rec = self._rec(kind, r)
                items.append({"kind": kind, "record": rec, "reviews": self.reviews_of(kind, rec["id"])})
        for r in c.execute("SELECT id, doc, status, entered_by FROM studies WHERE status IN ('pending', 'disputed')"
                           " ORDER BY seq"):
            items.append({"kind": "trial", "record": {"id": r["id"], "trial_id": r["id"], "status": r["status"],
                                                      "entered_by": r["entered_by"], "doc": json.loads(r["doc"])},
                          "reviews": []})
        items.sort(key=lambda x: x["record"].get("updated_at") or "")
        return items

    def verification_counts(self) -> dict[str, int]:
        """Values by review status (live outcomes and adverse events; trials separately)."""
        c = self._conn()
        out = {"repository": 0, "verified": 0, "pending": 0, "disputed": 0}
        for table in ("outcomes", "adverse_events"):
            for st, n in c.execute(f"SELECT status, COUNT(*) FROM {table} WHERE deleted = 0 GROUP BY status"):
                out[st] = out.get(st, 0) + n
        out["pending_trials"] = c.execute("SELECT COUNT(*) FROM studies WHERE status = 'pending'").fetchone()[0]
        out["verified_trials"] = c.execute("SELECT COUNT(*) FROM studies WHERE status = 'verified'").fetchone()[0]
        return out

    # ------------------------------------------------------------- trials
    def create_trial(self, doc: dict[str, Any], actor: str, user: str) -> dict:
        """Add a trial (a :class:`Study` document without outcomes); pending until a second curator verifies it."""
        study = Study.model_validate({**doc, "outcomes": [], "adverse_events": []})
        d = study.model_dump(mode="json", exclude_none=True)
        d.pop("outcomes", None)
        d.pop("adverse_events", None)
        with self._tx() as tx:
            if tx.execute("SELECT 1 FROM studies WHERE id = ?", (study.id,)).fetchone() is not None:
                raise Conflict({"id": study.id})
            tx.execute("INSERT INTO studies(id, doc, status, entered_by) VALUES (?, ?, 'pending', ?)",
                       (study.id, _dumps(d), user))
            self._audit(tx, actor, "create trial", study.id, None, None, d, user)
            self._bump(tx)
        return {"id": study.id, "status": "pending", "entered_by": user, "doc": d}

    def trial_status(self, trial_id: str) -> dict:
        r = self._conn().execute("SELECT status, entered_by, verified_by, verified_at FROM studies WHERE id = ?",
                                 (trial_id,)).fetchone()
        if r is None:
            raise NotFound(f"unknown trial {trial_id!r}")
        return dict(r)

    def verify_trial(self, trial_id: str, reviewer: str, actor: str) -> dict:
        with self._tx() as tx:
            r = tx.execute("SELECT status, entered_by FROM studies WHERE id = ?", (trial_id,)).fetchone()
            if r is None:
                raise NotFound(f"unknown trial {trial_id!r}")
            if r["status"] != "pending":
                raise Forbidden(f"nothing to verify: the trial is {r['status']}")
            if r["entered_by"] == reviewer:
                raise Forbidden("the two-person rule: a trial must be verified by someone other than the curator "
                                f"who entered it ({reviewer})")
            check_verifier(tx, reviewer, [r["entered_by"]] if r["entered_by"] else [], "trial")
            tx.execute("UPDATE studies SET status='verified', verified_by=?, verified_at=? WHERE id = ?",
                       (reviewer, now(), trial_id))
            self._audit(tx, actor, "verify trial", trial_id, None, {"status": "pending"}, {"status": "verified"},
                        reviewer)
            self._bump(tx)
        return self.trial_status(trial_id)

    # -------------------------------------------------------------- adverse events
    def adverse_event_rows(self, trial_id: Optional[str] = None) -> list[dict]:
        return self._live_rows("adverse_event", trial_id)

    def adverse_events(self, trial_id: str) -> list[dict]:
        if not self.has_trial(trial_id):
            raise NotFound(f"unknown trial {trial_id!r}")
        return [self.ae_record(r) for r in self.adverse_event_rows(trial_id)]

    def adverse_event(self, trial_id: str, rid: int) -> dict:
        return self.ae_record(self._live_row(self._conn(), "adverse_event", trial_id, rid))

    def record_of(self, kind: str, trial_id: str, rid: int) -> dict:
        return self._rec(kind, self._live_row(self._conn(), kind, trial_id, rid))

    # -------------------------------------------------------------- users
    def add_user(self, name: str, role: str, password_hash: Optional[str], created_by: str) -> dict:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        with self._tx() as tx:
            if tx.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None:
                raise Conflict({"name": name})
            tx.execute("INSERT INTO users(name, role, password_hash, active, created_at, created_by)"
                       " VALUES (?,?,?,1,?,?)", (name, role, password_hash, now(), created_by))
            self._audit(tx, created_by, "add user", None, None, None, {"name": name, "role": role}, created_by)
        return self.user(name)

    def ensure_user(self, name: str, role: str) -> None:
        """Create ``name`` (no password) if absent; used for the bootstrap admin of the shared token."""
        with self._tx() as tx:
            tx.execute("INSERT OR IGNORE INTO users(name, role, password_hash, active, created_at, created_by)"
                       " VALUES (?,?,NULL,1,?,'system')", (name, role, now()))

    def update_user(self, name: str, actor: str, role: Optional[str] = None, password_hash: Optional[str] = None,
                    active: Optional[bool] = None, keep_session: Optional[str] = None,
                    keep_token: Optional[str] = None) -> dict:
        """Change a user's role, password or activity.  A new password or a deactivation ends every session
        and API token of the user (a role change ends the sessions), except ``keep_session`` /
        ``keep_token`` (digests): the credential of a user who changes her own password herself."""
        if role is not None and role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        with self._tx() as tx:
            if tx.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
                raise NotFound(f"unknown user {name!r}")
            if role is not None:
                tx.execute("UPDATE users SET role = ? WHERE name = ?", (role, name))
            if password_hash is not None:
                tx.execute("UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name))
            if active is not None:
                tx.execute("UPDATE users SET active = ? WHERE name = ?", (int(active), name))
            if password_hash is not None or active is False or role is not None:
                tx.execute("DELETE FROM sessions WHERE user = ? AND id_hash != ?", (name, keep_session or ""))
            if active is False or password_hash is not None:
                # a reset password means the old credentials may be known: every API token goes too
                tx.execute("DELETE FROM api_tokens WHERE user = ? AND hash != ?", (name, keep_token or ""))
            self._audit(tx, actor, "update user", None, None, None,
                        {"name": name, "role": role, "password_changed": password_hash is not None,
                         "active": active}, actor)
        return self.user(name)

    def user(self, name: str) -> Optional[dict]:
        r = self._conn().execute("SELECT name, role, active, created_at, created_by FROM users WHERE name = ?",
                                 (name,)).fetchone()
        return dict(r) if r else None

    def password_hash(self, name: str) -> Optional[str]:
        r = self._conn().execute("SELECT password_hash FROM users WHERE name = ? AND active = 1", (name,)).fetchone()
        return r[0] if r else None

    def users(self) -> list[dict]:
        return [dict(r) for r in self._conn().execute(
            "SELECT name, role, active, created_at, created_by FROM users ORDER BY name")]

    def add_api_token(self, user: str, token_hash: str, label: str, actor: str) -> None:
        with self._tx() as tx:
            if tx.execute("SELECT 1 FROM users WHERE name = ? AND active = 1", (user,)).fetchone() is None:
                raise NotFound(f"unknown user {user!r}")
            tx.execute("INSERT INTO api_tokens(hash, user, label, created_at) VALUES (?,?,?,?)",
                       (token_hash, user, label, now()))
            self._audit(tx, actor, "add api token", None, None, None, {"user": user, "label": label}, actor)

    def api_tokens_of(self, user: str) -> list[dict]:
        """The user's API tokens: ``id`` (the first 16 hex digits of the stored SHA-256, which reveals
        nothing of the token), label, created and last used (never the token)."""
        return [{"id": r[0][:16], "label": r[1], "created_at": r[2], "last_used": r[3]} for r in self._conn().execute(
            "SELECT hash, label, created_at, last_used FROM api_tokens WHERE user = ? ORDER BY created_at, hash",
            (user,))]

    def revoke_api_token(self, user: str, token_id: str, actor: str) -> dict:
        """Delete the user's token ``token_id`` (as :meth:`api_tokens_of` lists it); audited."""
        if not re.fullmatch(r"[0-9a-f]{16}", token_id or ""):
            raise NotFound(f"user {user!r} has no token {token_id[:40]!r}")
        with self._tx() as tx:
            r = tx.execute("SELECT hash, label, created_at FROM api_tokens WHERE user = ? AND substr(hash, 1, 16) = ?",
                           (user, token_id)).fetchone()
            if r is None:
                raise NotFound(f"user {user!r} has no token {token_id!r}")
            tx.execute("DELETE FROM api_tokens WHERE hash = ?", (r[0],))
            info = {"user": user, "token": token_id, "label": r[1], "created_at": r[2]}
            self._audit(tx, actor, "revoke api token", None, None, info, None, actor)
        return info

    def user_for_token(self, token_hash: str) -> Optional[dict]:
        r = self._conn().execute(
            "SELECT u.name, u.role FROM api_tokens t JOIN users u ON u.name = t.user WHERE t.hash = ? AND u.active = 1",
            (token_hash,)).fetchone()
        return dict(r) if r else None

    # ----------------------------------------------------------- sessions
    def create_session(self, id_hash: str, user: str, csrf: str, ttl_s: float, ip: str) -> None:
        import time as _t

        t = _t.time()
        with self._tx() as tx:
            tx.execute("DELETE FROM sessions WHERE expires_at < ?", (t,))
            tx.execute("INSERT INTO sessions(id_hash, user, csrf, created_at, expires_at, ip, last_seen)"
                       " VALUES (?,?,?,?,?,?,?)", (id_hash, user, csrf, t, t + ttl_s, ip, t))

    def session(self, id_hash: str, idle_s: Optional[float] = None) -> Optional[dict]:
        """The live session ``id_hash`` (``None`` when expired, idle longer than ``idle_s``, or its user inactive)."""
        import time as _t

        t = _t.time()
        r = self._conn().execute(
            "SELECT s.user, s.csrf, s.expires_at, COALESCE(s.last_seen, s.created_at) AS last_seen, u.role"
            " FROM sessions s JOIN users u ON u.name = s.user"
            " WHERE s.id_hash = ? AND s.expires_at > ? AND u.active = 1", (id_hash, t)).fetchone()
        if r is None or (idle_s is not None and t - r["last_seen"] > idle_s):
            return None
        return dict(r)

    def touch_session(self, id_hash: str, t: float) -> None:
        """Record activity on a session (the idle timeout slides)."""
        with self._tx() as tx:
            tx.execute("UPDATE sessions SET last_seen = ? WHERE id_hash = ?", (t, id_hash))

    def delete_session(self, id_hash: str) -> bool:
        with self._tx() as tx:
            return tx.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,)).rowcount > 0

    def delete_sessions(self, user: str) -> int:
        """End every session of ``user`` (logout everywhere; bootstrap token rotated). Returns how many."""
        with self._tx() as tx:
            return tx.execute("DELETE FROM sessions WHERE user = ?", (user,)).rowcount

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as tx:
            tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def audit_event(self, actor: str, action: str, detail: Optional[dict] = None) -> None:
        """An audit row for an event that changes no value (login, failed login, logout): ``actor`` is
        the authenticated name (or the name tried), ``detail`` holds the connection's address."""
        with self._tx() as tx:
            self._audit(tx, actor, action, None, None, None, detail, actor)

    # ----------------------------------------------------------- login throttling
    def login_locked(self, keys: list[tuple[str, str]], t: float) -> float:
        """Seconds until every (scope, key) is unlocked (0 when none is locked)."""
        c = self._conn()
        wait = 0.0
        for scope, key in keys:
            r = c.execute("SELECT locked_until FROM login_failures WHERE scope = ? AND key = ?", (scope, key)).fetchone()
            if r is not None and r[0] > t:
                wait = max(wait, r[0] - t)
        return wait

    def login_failed(self, scope: str, key: str, t: float, free: int, base_s: float, cap_s: float,
                     forget_s: float) -> float:
        """Count a failure; past ``free`` failures lock for base*2^(k-free) seconds (at most cap). Returns the lock."""
        with self._tx() as tx:
            r = tx.execute("SELECT failures, last_at FROM login_failures WHERE scope = ? AND key = ?",
                           (scope, key)).fetchone()
            failures = 1 if r is None or t - r[1] > forget_s else r[0] + 1
            lock = 0.0 if failures < free else min(cap_s, base_s * 2 ** (failures - free))
            tx.execute("INSERT OR REPLACE INTO login_failures(scope, key, failures, last_at, locked_until)"
                       " VALUES (?,?,?,?,?)", (scope, key, failures, t, t + lock))
        return lock

    def login_failures(self, scope: str, key: str, t: float, forget_s: float) -> int:
        """Failures counted for (scope, key) that are not yet forgotten."""
        r = self._conn().execute("SELECT failures, last_at FROM login_failures WHERE scope = ? AND key = ?",
                                 (scope, key)).fetchone()
        return 0 if r is None or t - r[1] > forget_s else int(r[0])

    def login_clear_account(self, user: str) -> None:
        """Lift every lock of ``user`` (the account and each address+account pair): a correct API token
        -- a second, unguessable credential -- proves the holder is at the keyboard."""
        with self._tx() as tx:
            prefix = user + "|"  # pair keys are "user|address" (a user name never holds "|")
            tx.execute("DELETE FROM login_failures WHERE (scope = 'user' AND key = ?) OR (scope = 'pair' AND"
                       " substr(key, 1, ?) = ?)", (user, len(prefix), prefix))

    def login_succeeded(self, scope: str, key: str) -> None:
        with self._tx() as tx:
            tx.execute("DELETE FROM login_failures WHERE scope = ? AND key = ?", (scope, key))

    # ------------------------------------------------- records in, answer snapshots (issue 22)
    SCREENING_FIELDS = ("pmid", "doi", "nct", "url", "registration", "title", "year", "abstract", "has_results",
                        "kind")

    def screening_records(self) -> list[dict]:
        """Every record queued by ``lnsynth records import`` (oldest first)."""
        return [dict(r) for r in self._conn().execute("SELECT * FROM screening_records ORDER BY id")]

    def queue_screening(self, records: list[dict], source_file: str, fmt: str, actor: str = "cli:records") -> list[int]:
        """Queue new records for title/abstract screening, all in ONE transaction (all or nothing).

        ``records`` are mappings with ``number`` (record number in the file) and any of
        :attr:`SCREENING_FIELDS`.  Returns the new row ids.  The evidence is unchanged (no
        generation bump); an audit row names the file and the ids.
        """
        ids: list[int] = []
        with self._tx() as tx:
            ts = now()
            for r in records:
                hr = r.get("has_results")
                cur = tx.execute(
                    "INSERT INTO screening_records(source_file, format, record_number, pmid, doi, nct, url,"
                    " registration, title, year, abstract, has_results, kind, imported_at, imported_by)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (source_file, fmt, int(r["number"]), *(r.get(f) for f in self.SCREENING_FIELDS[:8]),
                     None if hr is None else int(bool(hr)), r.get("kind"), ts, actor))
                ids.append(int(cur.lastrowid))
            if ids:
                self._audit(tx, actor, "records import", None, None, None,
                            {"file": source_file, "format": fmt, "screening_records": ids})
        return ids

    def latest_answer_snapshot(self) -> Optional[dict]:
        """The last stored answers: ``{run, snapshot, created_at, rows}`` or ``None`` before the first update."""
        c = self._conn()
        r = c.execute("SELECT MAX(run) FROM answer_snapshots").fetchone()
        if r is None or r[0] is None:
            return None
        rows = c.execute("SELECT snapshot, created_at, row FROM answer_snapshots WHERE run = ? ORDER BY question,"
                         " outcome", (r[0],)).fetchall()
        return {"run": int(r[0]), "snapshot": rows[0][0], "created_at": rows[0][1],
                "rows": [json.loads(x[2]) for x in rows]}

    def save_answer_snapshot(self, snapshot: str, rows: list[dict]) -> int:
        """Store every question's answer rows (``question``, ``outcome`` keys) under ``snapshot``; returns the run."""
        with self._tx() as tx:
            run = int(tx.execute("SELECT COALESCE(MAX(run), 0) + 1 FROM answer_snapshots").fetchone()[0])
            ts = now()
            for row in rows:
                tx.execute("INSERT INTO answer_snapshots(run, snapshot, created_at, question, outcome, row)"
                           " VALUES (?,?,?,?,?,?)", (run, snapshot, ts, row["question"], row["outcome"], _dumps(row)))
        return run

    # -------------------------------------------------------------- evidence
    def evidence(self) -> EvidenceBase:
        """The store as an :class:`EvidenceBase` (cached until the next write)."""
        gen = self.generation()
        with self._cache_lock:
            if self._cache is not None and self._cache[0] == gen:
                return self._cache[1]
        ev = self._build_evidence()
        with self._cache_lock:
            self._cache = (gen, ev)
        return ev

    def _build_evidence(self) -> EvidenceBase:
        c = self._conn()
        c.execute("BEGIN")  # one consistent snapshot across the reads below
        try:
            # the two-person rule: trials and values not (yet) approved stay out of the evidence
            docs = [(r[0], r[1]) for r in c.execute(
                "SELECT id, doc FROM studies WHERE status IN ('repository', 'verified') ORDER BY seq")]
            # rows approved_row() would drop (new values nobody verified yet) are not even read
            usable = "deleted = 0 AND (status IN ('repository', 'verified') OR COALESCE(approved, '') != '')"
            rows = [dict(r) for r in c.execute(f"SELECT * FROM outcomes WHERE {usable} ORDER BY id")]
            ae_rows = [dict(r) for r in c.execute(f"SELECT * FROM adverse_events WHERE {usable} ORDER BY id")]
            sources_raw = self.meta("sources") or "[]"
            synth_raw = self.meta("syntheses") or "[]"
        finally:
            c.execute("COMMIT")
        by_trial: dict[str, list[dict]] = {}
        for r in rows:
            r = approved_row(r, VIEW_FIELDS)
            if r is not None:
                by_trial.setdefault(r["trial_id"], []).append(r)
        ae_by_trial: dict[str, list[dict]] = {}
        for r in ae_rows:
            r = approved_row(r, AE_FIELDS)
            if r is not None:
                ae_by_trial.setdefault(r["trial_id"], []).append(r)
        studies = []
        # per trial, the Study is rebuilt only when its document or its (approved) rows changed: a write
        # costs one trial's validation, and unchanged trials keep their object (analysis caches key on it)
        memo: dict[str, tuple[tuple, Study]] = self.__dict__.setdefault("_study_memo", {})
        for sid, raw in docs:
            memo_key = (raw, tuple(tuple(r.items()) for r in by_trial.get(sid, [])),
                        tuple(tuple(r.items()) for r in ae_by_trial.get(sid, [])))
            hit = memo.get(sid)
            if hit is not None and hit[0] == memo_key:
                studies.append(hit[1])
                continue
            d = json.loads(raw)
            shell = Study.model_validate({**d, "outcomes": []})
            outs = [row_to_outcome(r, shell) for r in by_trial.get(d["id"], [])]
            aes = [row_to_ae(r) for r in ae_by_trial.get(d["id"], [])]
            studies.append(Study.model_validate({**d, "outcomes": [o.model_dump(mode="json", exclude_none=True)
                                                                   for o in outs],
                                                 "adverse_events": [a.model_dump(mode="json", exclude_none=True)
                                                                    for a in aes]}))
            memo[sid] = (memo_key, studies[-1])
        reg = self.__dict__.get("_register_memo")  # source register and syntheses: validated once per change
        if reg is None or reg[0] != (sources_raw, synth_raw):
            reg = ((sources_raw, synth_raw), tuple(Source.model_validate(s) for s in json.loads(sources_raw)),
                   tuple(Synthesis.model_validate(s) for s in json.loads(synth_raw)))
            self.__dict__["_register_memo"] = reg
        return EvidenceBase(reg[1], tuple(studies), reg[2], self.path)

    def study_shell(self, trial_id: str) -> Study:
        """The trial's :class:`Study` without outcomes or adverse events (stored trial documents never change)."""
        with self._cache_lock:
            st = self._shells.get(trial_id)
        if st is None:
            st = Study.model_validate({**self.study_doc(trial_id), "outcomes": []})
            with self._cache_lock:
                self._shells[trial_id] = st
        return st

    def study_shells(self) -> list[Study]:
        return [self.study_shell(t) for t in self.trial_ids()]

    def outcome_stats(self) -> dict[str, dict[str, Any]]:
        """Per trial: live outcome count, endpoints and timepoints (one aggregate query)."""
        out: dict[str, dict[str, Any]] = {}
        for r in self._conn().execute(
                "SELECT trial_id, outcome, timepoint_weeks, COUNT(*) FROM outcomes WHERE deleted = 0"
                " GROUP BY trial_id, outcome, timepoint_weeks"):
            d = out.setdefault(r[0], {"n": 0, "endpoints": set(), "timepoints": set()})
            d["n"] += r[3]
            d["endpoints"].add(r[1])
            if r[2] is not None:
                d["timepoints"].add(float(r[2]))
        return out

    def outcome_models(self, trial_id: str) -> list[tuple[dict, Outcome]]:
        """(API record, schema Outcome) for every live outcome of a trial."""
        shell = self.study_shell(trial_id)
        return [(self.record(r), row_to_outcome(r, shell)) for r in self.outcome_rows(trial_id)]


# ------------------------------------------------------------------ export
_SLUG = re.compile(r"[^a-z0-9_]+")


def source_slug(s: str) -> str:
    slug = _SLUG.sub("_", s.lower()).strip("_") or "source"
    return slug[:60]


def _typed_source_id(text: str, taken: set[str]) -> str:
    """A source id for free text typed as a source, never one already taken.

    The plain slug when free; otherwise the slug with the first 8 hex digits of the text's
    SHA-256 (deterministic: the same store exports the same ids), so "Smith 2020, NEJM" and
    "smith 2020 nejm" -- or a text whose slug is a registered id -- stay different sources.
    """
    slug = source_slug(text)
    if slug not in taken:
        return slug
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    for n in range(8, 65, 4):
        cand = f"{slug[:50]}_{digest[:n]}"
        if cand not in taken:
            return cand
    raise RuntimeError(f"no free source id for {text[:60]!r}")  # pragma: no cover - 2**256 collisions


def _shorthand(node: Any) -> Any:
    """Collapse ``{value, provenance: {...}}`` into the loader's inline-provenance form."""
    if isinstance(node, list):
        return [_shorthand(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _shorthand(v) for k, v in node.items() if k != "provenance"}
    if "provenance" in node:
        p = node["provenance"]
        out["source"] = p["source"]
        out["location"] = p["location"]
        out["quote"] = p["quote"]
        if p.get("derived"):
            out["derived"] = True
            out["rule"] = p["rule"]
    return out


def _prov_sources(node: Any, out: list[str]) -> None:
    """Append the ``source`` of every provenance inside ``node`` (document order)."""
    if isinstance(node, dict):
        p = node.get("provenance")
        if isinstance(p, dict) and isinstance(p.get("source"), str):
            out.append(p["source"])
        for v in node.values():
            _prov_sources(v, out)
    elif isinstance(node, list):
        for v in node:
            _prov_sources(v, out)


def _fix_sources(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_fix_sources(x, mapping) for x in node]
    if isinstance(node, dict):
        out = {k: _fix_sources(v, mapping) for k, v in node.items()}
        if "provenance" in out and isinstance(out["provenance"], dict):
            s = out["provenance"].get("source")
            if s in mapping:
                out["provenance"] = {**out["provenance"], "source": mapping[s]}
        return out
    return node


def export_store(store: Store, out: Path) -> Path:
    """Write the store as ``sources.yaml``, ``studies/<id>.yaml``, ``syntheses/<id>.yaml``.

    The layout is the one :func:`lnsynth.evidence.load_evidence` reads.  Free-text
    sources typed into the web app that are not known source ids are added to
    ``sources.yaml`` under a slug id (kind ``other``, citation = the text typed); two
    different texts never share an id (:func:`_typed_source_id`), so each keeps its citation.
    The files depend only on the store's content (no timestamp), so export -> ``lnsynth
    import`` -> export gives the same bytes.
    """
    out = Path(out)
    ev = store.evidence()
    sources = [s.model_dump(mode="json", exclude_none=True) for s in ev.sources]
    known = {s["id"] for s in sources}
    mapping: dict[str, str] = {}
    study_docs = []
    for st in ev.studies:
        d = st.model_dump(mode="json", exclude_none=True)
        used: list[str] = []
        _prov_sources(d, used)  # outcomes, adverse events, study-level values: every provenance
        for src in used:
            if src not in known and src not in mapping:
                slug = _typed_source_id(src, known)
                mapping[src] = slug
                known.add(slug)
                sources.append(Source.model_validate({"id": slug, "citation": src, "kind": "other"}).model_dump(
                    mode="json", exclude_none=True))  # canonical form: re-imported, it exports the same
        study_docs.append(d)
    (out / "studies").mkdir(parents=True, exist_ok=True)
    (out / "syntheses").mkdir(parents=True, exist_ok=True)
    if sources:
        _write_yaml(out / "sources.yaml", sources)
    for d in study_docs:
        d = _shorthand(_fix_sources(d, mapping))
        _write_yaml(out / "studies" / f"{d['id']}.yaml", d,
                    header="# exported by lnsynth web (re-import with `lnsynth import --db DB DIR`)\n")
    for sy in ev.syntheses:
        d = _shorthand(sy.model_dump(mode="json", exclude_none=True))
        _write_yaml(out / "syntheses" / f"{d['id']}.yaml", d)
    return out


def _write_yaml(path: Path, data: Any, header: str = "") -> None:
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(header + text, encoding="utf-8")
    tmp.replace(path)


# ------------------------------------------------------------------ import
class ImportRefused(ValueError):
    """An import refused as a whole (incomplete provenance, a clash with the store); nothing was written."""


_PROV_SHORTHAND = ("quote", "location", "loc")


def _explicit_sources(path: Path, raw: Any) -> None:
    """Every provenance in an imported file names its source (unless the file names one at the top).

    The loader attributes a value without ``source`` to the review; in a file to import that
    would silently credit a number to a document nobody named, so it is refused instead.
    """
    if not isinstance(raw, dict) or isinstance(raw.get("source"), str):
        return
    sid = str(raw.get("id", path.stem))

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            prov = node.get("provenance")
            if (any(k in node for k in _PROV_SHORTHAND) and "provenance" not in node and "source" not in node) or (
                    isinstance(prov, dict) and "source" not in prov):
                raise ImportRefused(f"{path.name}: study {sid!r}: field {where or '<root>'}: provenance without a "
                                    f"source (name the source id the value comes from)")
            for k, v in node.items():
                walk(v, f"{where}.{k}" if where else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                ident = v.get("id") if isinstance(v, dict) else None
                walk(v, f"{where}[{i}]" + (f"({ident})" if ident else ""))

    walk(raw, "")


def _study_rows_doc(s: Study) -> dict:
    doc = s.model_dump(mode="json", exclude_none=True)
    doc.pop("outcomes", None)
    doc.pop("adverse_events", None)
    return doc


def import_store(store: Store, path: Path, actor: str = "cli:import") -> dict[str, list[str]]:
    """Bring an export (a directory as :func:`export_store` writes it, or one study file) into ``store``.

    Everything is checked before anything is written, by the evidence loader itself
    (:func:`lnsynth.evidence.load.load_evidence`: every value has a source, location and quote,
    sources are registered, quotes from external sources are short, links resolve) plus
    :func:`_explicit_sources`; a single file is checked in the context of the store (its
    sources and trials).  Any problem raises :class:`ImportRefused` naming the file, the trial
    and the field, and the store is left as it was.

    Then, in one transaction: a trial not in the store is added; a trial whose content differs
    from the store's replaces it (its old values are kept as audited tombstones); an identical
    trial is left alone, so importing an export of the same store changes nothing.  A trial with
    values still awaiting a second curator is refused rather than overwritten.  Sources in the
    file are merged into the register (the file's entry wins), and a directory's syntheses replace
    the store's.  Imported values count like the package's own files (status ``repository``):
    the two-person rule governs values entered in the app.  Trials of the store that the import
    does not mention are kept.  Restart a running server after an import (it caches trial facts).

    Returns the ids ``added``, ``replaced``, ``unchanged`` and the ``sources_added``.
    """
    import shutil
    import tempfile

    from lnsynth.evidence.load import EvidenceError, _read_yaml, load_study_file

    path = Path(path)
    if not path.exists():
        raise ImportRefused(f"{path}: no such file or directory")
    with tempfile.TemporaryDirectory(prefix="lnsynth-import-") as tmp:
        if path.is_dir():
            root = path
            files = sorted((root / "studies").glob("*.yaml"))
            if not files:
                raise ImportRefused(f"{path}: no studies/*.yaml (expected the layout `lnsynth export` writes)")
            take_sources = (root / "sources.yaml").exists() or (root / "sources").is_dir()
            take_synth = (root / "syntheses").is_dir()
        else:
            try:
                raw = _read_yaml(path)
            except EvidenceError as exc:
                raise ImportRefused(str(exc)) from None
            if not isinstance(raw, dict) or not isinstance(raw.get("id", path.stem), str):
                raise ImportRefused(f"{path.name}: expected one study (a mapping with an id)")
            sid = str(raw.get("id", path.stem))
            root = Path(tmp) / "context"
            export_store(store, root)  # the store as files: the study is checked against its sources and trials
            (root / "studies" / f"{sid}.yaml").unlink(missing_ok=True)
            target = root / "studies" / path.name
            if target.exists():
                raise ImportRefused(f"{path.name}: the store has another trial in a file of this name; "
                                    f"rename the file to {sid}.yaml")
            shutil.copyfile(path, target)
            files, take_sources, take_synth = [target], False, False
        for f in files:
            try:
                _explicit_sources(f, _read_yaml(f))
            except EvidenceError as exc:
                raise ImportRefused(str(exc)) from None
        try:
            ev = load_evidence(root)
            studies = [load_study_file(f) for f in files]  # as written (the loader adds publications on load)
        except EvidenceError as exc:
            raise ImportRefused(str(exc)) from None
        names = {s.id: f.name for s, f in zip(studies, files)}
        sources = [s.model_dump(mode="json", exclude_none=True) for s in ev.sources] if take_sources else None
        synth = [s.model_dump(mode="json", exclude_none=True) for s in ev.syntheses] if take_synth else None

    current = {st.id: st for st in store.evidence().studies}
    ts = now()
    out: dict[str, list[str]] = {"added": [], "replaced": [], "unchanged": [], "sources_added": []}
    max_web = {"outcomes": 0, "adverse_events": 0}
    with store._tx() as tx:
        have = {r[0] for r in tx.execute("SELECT id FROM studies")}
        for s in studies:
            for o in s.outcomes:
                m = re.fullmatch(r"web_([0-9]{1,15})", o.id)
                max_web["outcomes"] = max(max_web["outcomes"], int(m.group(1)) if m else 0)
            for a in s.adverse_events:
                m = re.fullmatch(r"web_ae_([0-9]{1,15})", a.id)
                max_web["adverse_events"] = max(max_web["adverse_events"], int(m.group(1)) if m else 0)
            if s.id not in have:
                n_out = Store._insert_studies(tx, [s], ts)
                for table in ("outcomes", "adverse_events"):
                    tx.execute(f"UPDATE {table} SET origin = 'import' WHERE trial_id = ?", (s.id,))
                Store._audit(tx, actor, "import", s.id, None, None,
                             {"from": str(path), "file": names[s.id], "added": True, "outcomes": n_out,
                              "adverse_events": len(s.adverse_events)})
                out["added"].append(s.id)
                continue
            cur = current.get(s.id)
            if cur is not None and cur.model_dump(mode="json", exclude_none=True) == s.model_dump(
                    mode="json", exclude_none=True):
                out["unchanged"].append(s.id)
                continue
            waiting = sum(tx.execute(f"SELECT COUNT(*) FROM {t} WHERE trial_id = ? AND deleted = 0 AND status NOT IN"
                                     f" ('repository', 'verified')", (s.id,)).fetchone()[0]
                          for t in ("outcomes", "adverse_events"))
            waiting += tx.execute("SELECT COUNT(*) FROM studies WHERE id = ? AND status NOT IN ('repository',"
                                  " 'verified')", (s.id,)).fetchone()[0]
            if waiting:
                raise ImportRefused(f"{names[s.id]}: trial {s.id!r}: {waiting} value(s) in the store await a second "
                                    f"curator; verify or delete them before importing over this trial")
            before = [Store.record(r) for r in tx.execute(
                "SELECT * FROM outcomes WHERE trial_id = ? AND deleted = 0 ORDER BY id", (s.id,))]
            for table in ("outcomes", "adverse_events"):  # tombstones (keys freed for the imported records)
                tx.execute(f"UPDATE {table} SET deleted = 1, key = key || '~' || id, version = version + 1,"
                           f" updated_at = ? WHERE trial_id = ? AND deleted = 0", (ts, s.id))
            tx.execute("UPDATE studies SET doc = ? WHERE id = ?", (_dumps(_study_rows_doc(s)), s.id))
            Store._insert_aes(tx, s.id, s.adverse_events, ts)
            for o in s.outcomes:
                v = seed_view(s, o)
                tx.execute(
                    "INSERT INTO outcomes(trial_id, key, arm, outcome, events, n, timepoint_weeks, source,"
                    " location, quote, doc, origin, version, deleted, created_at, updated_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,'import',1,0,?,?)",
                    (s.id, o.id, v["arm"], v["outcome"], v["events"], v["n"], v["timepoint_weeks"],
                     v["source"], v["location"], v["quote"], _dumps(o.model_dump(mode="json", exclude_none=True)),
                     ts, ts))
            tx.execute("UPDATE adverse_events SET origin = 'import' WHERE trial_id = ? AND deleted = 0", (s.id,))
            Store._audit(tx, actor, "import", s.id, None, {"outcomes": before},
                         {"from": str(path), "file": names[s.id], "outcomes": [o.id for o in s.outcomes],
                          "adverse_events": [a.id for a in s.adverse_events]})
            out["replaced"].append(s.id)
        if sources is not None:
            reg = json.loads(tx.execute("SELECT value FROM meta WHERE key = 'sources'").fetchone()[0] or "[]")
            ids = {x["id"] for x in sources}
            merged = sources + [x for x in reg if x["id"] not in ids]
            if merged != reg:
                out["sources_added"] = [x["id"] for x in sources if x["id"] not in {r["id"] for r in reg}]
                tx.execute("UPDATE meta SET value = ? WHERE key = 'sources'", (_dumps(merged),))
                Store._audit(tx, actor, "import", None, None, {"sources": reg}, {"from": str(path), "sources": merged})
        changed_synth = False
        if synth is not None:
            cur_synth = json.loads(tx.execute("SELECT value FROM meta WHERE key = 'syntheses'").fetchone()[0] or "[]")
            if synth != cur_synth:
                tx.execute("UPDATE meta SET value = ? WHERE key = 'syntheses'", (_dumps(synth),))
                Store._audit(tx, actor, "import", None, None, {"syntheses": [x["id"] for x in cur_synth]},
                             {"from": str(path), "syntheses": [x["id"] for x in synth]})
                changed_synth = True
        for table, n in max_web.items():  # keys web_<id> of records made later never meet imported ones
            if n:
                tx.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?", (n, table))
        if out["added"] or out["replaced"] or out["sources_added"] or changed_synth or (
                sources is not None and merged != reg):
            Store._bump(tx)
    shells = getattr(store, "_shells", None)
    if isinstance(shells, dict):
        shells.clear()
    return out
