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
``audit``      one row per write: when, who (actor), action, trial, outcome, before
               and after (JSON).  Written in the same transaction as the change.

Writes use ``BEGIN IMMEDIATE`` with a busy timeout, so concurrent writers queue on the
database lock instead of failing or losing updates; readers never block (WAL).
"""

from __future__ import annotations

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
"""

VIEW_FIELDS = ("arm", "outcome", "events", "n", "timepoint_weeks", "source", "location", "quote")


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
            seeded = tx.execute("SELECT value FROM meta WHERE key = 'seeded'").fetchone()
            if seeded is None:
                self._seed(tx, _package_evidence())
                tx.execute("INSERT INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
                tx.execute("INSERT INTO meta(key, value) VALUES ('secret', ?)", (secrets.token_hex(32),))
                tx.execute("INSERT INTO meta(key, value) VALUES ('generation', '0')")
                tx.execute("INSERT INTO meta(key, value) VALUES ('seeded', ?)", (now(),))
                return
        self._import_new_trials()

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

    @staticmethod
    def _insert_studies(tx: sqlite3.Connection, studies, ts: str) -> int:
        n_out = 0
        for s in studies:
            doc = s.model_dump(mode="json", exclude_none=True)
            doc.pop("outcomes", None)
            tx.execute("INSERT INTO studies(id, doc) VALUES (?, ?)", (s.id, _dumps(doc)))
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
        }

    def outcome_rows(self, trial_id: Optional[str] = None) -> list[dict]:
        c = self._conn()
        if trial_id is None:
            rows = c.execute("SELECT * FROM outcomes WHERE deleted = 0 ORDER BY id").fetchall()
        else:
            rows = c.execute("SELECT * FROM outcomes WHERE trial_id = ? AND deleted = 0 ORDER BY id",
                             (trial_id,)).fetchall()
        return [dict(r) for r in rows]

    def outcomes(self, trial_id: str) -> list[dict]:
        if not self.has_trial(trial_id):
            raise NotFound(f"unknown trial {trial_id!r}")
        return [self.record(r) for r in self.outcome_rows(trial_id)]

    def outcome(self, trial_id: str, outcome_id: int) -> dict:
        r = self._conn().execute("SELECT * FROM outcomes WHERE trial_id = ? AND id = ? AND deleted = 0",
                                 (trial_id, outcome_id)).fetchone()
        if r is None:
            raise NotFound(f"trial {trial_id!r} has no outcome {outcome_id}")
        return self.record(r)

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
               after) -> None:
        tx.execute(
            "INSERT INTO audit(at, actor, action, trial_id, outcome_id, before, after) VALUES (?,?,?,?,?,?,?)",
            (now(), actor, action, trial_id, outcome_id,
             _dumps(before) if before is not None else None, _dumps(after) if after is not None else None),
        )

    def create_outcome(self, trial_id: str, values: dict[str, Any], actor: str, origin: str = "api") -> dict:
        ts = now()
        with self._tx() as tx:
            if tx.execute("SELECT 1 FROM studies WHERE id = ?", (trial_id,)).fetchone() is None:
                raise NotFound(f"unknown trial {trial_id!r}")
            tmp_key = "pending_" + secrets.token_hex(8)
            cur = tx.execute(
                "INSERT INTO outcomes(trial_id, key, arm, outcome, events, n, timepoint_weeks, source, location,"
                " quote, doc, origin, version, deleted, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,NULL,?,1,0,?,?)",
                (trial_id, tmp_key, values["arm"], values["outcome"], values["events"], values["n"],
                 values["timepoint_weeks"], values["source"], values["location"], values["quote"], origin, ts, ts),
            )
            oid = int(cur.lastrowid)
            tx.execute("UPDATE outcomes SET key = ? WHERE id = ?", (f"web_{oid}", oid))
            rec = self.record(tx.execute("SELECT * FROM outcomes WHERE id = ?", (oid,)).fetchone())
            self._audit(tx, actor, "create", trial_id, oid, None, rec)
            self._bump(tx)
        return rec

    def update_outcome(self, trial_id: str, outcome_id: int, version: int, values: dict[str, Any],
                       actor: str) -> dict:
        with self._tx() as tx:
            row = tx.execute("SELECT * FROM outcomes WHERE trial_id = ? AND id = ? AND deleted = 0",
                             (trial_id, outcome_id)).fetchone()
            if row is None:
                raise NotFound(f"trial {trial_id!r} has no outcome {outcome_id}")
            before = self.record(row)
            if before["version"] != version:
                raise Conflict(before)
            tx.execute(
                "UPDATE outcomes SET arm=?, outcome=?, events=?, n=?, timepoint_weeks=?, source=?, location=?,"
                " quote=?, version = version + 1, updated_at=? WHERE id = ? AND version = ?",
                (values["arm"], values["outcome"], values["events"], values["n"], values["timepoint_weeks"],
                 values["source"], values["location"], values["quote"], now(), outcome_id, version),
            )
            after = self.record(tx.execute("SELECT * FROM outcomes WHERE id = ?", (outcome_id,)).fetchone())
            self._audit(tx, actor, "update", trial_id, outcome_id, before, after)
            self._bump(tx)
        return after

    def delete_outcome(self, trial_id: str, outcome_id: int, version: int, actor: str) -> dict:
        with self._tx() as tx:
            row = tx.execute("SELECT * FROM outcomes WHERE trial_id = ? AND id = ? AND deleted = 0",
                             (trial_id, outcome_id)).fetchone()
            if row is None:
                raise NotFound(f"trial {trial_id!r} has no outcome {outcome_id}")
            before = self.record(row)
            if before["version"] != version:
                raise Conflict(before)
            tx.execute("UPDATE outcomes SET deleted = 1, version = version + 1, updated_at = ? WHERE id = ?",
                       (now(), outcome_id))
            self._audit(tx, actor, "delete", trial_id, outcome_id, before, None)
            self._bump(tx)
        return before

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
            docs = [json.loads(r[0]) for r in c.execute("SELECT doc FROM studies ORDER BY seq")]
            rows = [dict(r) for r in c.execute("SELECT * FROM outcomes WHERE deleted = 0 ORDER BY id")]
            sources = json.loads(self.meta("sources") or "[]")
            synth = json.loads(self.meta("syntheses") or "[]")
        finally:
            c.execute("COMMIT")
        by_trial: dict[str, list[dict]] = {}
        for r in rows:
            by_trial.setdefault(r["trial_id"], []).append(r)
        studies = []
        for d in docs:
            shell = Study.model_validate({**d, "outcomes": []})
            outs = [row_to_outcome(r, shell) for r in by_trial.get(d["id"], [])]
            studies.append(Study.model_validate({**d, "outcomes": [o.model_dump(mode="json", exclude_none=True)
                                                                   for o in outs]}))
        src = [Source.model_validate(s) for s in sources]
        return EvidenceBase(tuple(src), tuple(studies), tuple(Synthesis.model_validate(s) for s in synth),
                            self.path)

    def study_shell(self, trial_id: str) -> Study:
        """The trial's :class:`Study` without outcomes (trials are not edited through the app)."""
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
    ``sources.yaml`` under a slug id (kind ``other``, citation = the text typed).
    """
    out = Path(out)
    ev = store.evidence()
    sources = [s.model_dump(mode="json", exclude_none=True) for s in ev.sources]
    known = {s["id"] for s in sources}
    mapping: dict[str, str] = {}
    study_docs = []
    for st in ev.studies:
        d = st.model_dump(mode="json", exclude_none=True)
        for o in d.get("outcomes", []):
            for q in ("events", "n", "timepoint"):
                if q in o:
                    src = o[q]["provenance"]["source"]
                    if src not in known and src not in mapping:
                        slug = source_slug(src)
                        mapping[src] = slug
                        if slug not in known:
                            known.add(slug)
                            sources.append({"id": slug, "citation": src, "kind": "other"})
        study_docs.append(d)
    (out / "studies").mkdir(parents=True, exist_ok=True)
    (out / "syntheses").mkdir(parents=True, exist_ok=True)
    if sources:
        _write_yaml(out / "sources.yaml", sources)
    for d in study_docs:
        d = _shorthand(_fix_sources(d, mapping))
        _write_yaml(out / "studies" / f"{d['id']}.yaml", d,
                    header=f"# exported by lnsynth web from {store.path.name} at {now()}\n")
    for sy in ev.syntheses:
        d = _shorthand(sy.model_dump(mode="json", exclude_none=True))
        _write_yaml(out / "syntheses" / f"{d['id']}.yaml", d)
    return out


def _write_yaml(path: Path, data: Any, header: str = "") -> None:
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(header + text, encoding="utf-8")
    tmp.replace(path)
