"""The store's core: backend connections (one per thread), write transactions, opening (migrations,
seeding from the package data, trials added to the package since), meta reads and the audit row."""

from __future__ import annotations

import json
import secrets
import threading
import warnings
from pathlib import Path
from typing import Any, Optional

from lnsynth.evidence.load import EvidenceBase
from lnsynth.evidence.schema import Study

from .common import NotFound, dumps, now, seed_view, seed_view_ae
from .db import backend_for
from .schema import migrate


def _seed_evidence() -> EvidenceBase:
    # looked up on the package at call time (tests replace lnsynth.web.store._package_evidence)
    from lnsynth.web import store as pkg

    return pkg._package_evidence()


def insert_aes(tx: Any, trial_id: str, aes, ts: str) -> None:
    """Insert seeded/imported adverse events of a trial (status ``repository``)."""
    for ae in aes:
        v = seed_view_ae(ae)
        tx.execute(
            "INSERT INTO adverse_events(trial_id, key, arm, event, category, events, n, serious, source,"
            " location, quote, doc, origin, version, deleted, created_at, updated_at, status)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'seed',1,0,?,?,'repository')",
            (trial_id, ae.id, v["arm"], v["event"], v["category"], v["events"], v["n"],
             None if v["serious"] is None else int(v["serious"]), v["source"], v["location"], v["quote"],
             dumps(ae.model_dump(mode="json", exclude_none=True)), ts, ts))


def insert_outcome(tx: Any, s: Study, o, ts: str, origin: str = "seed") -> None:
    v = seed_view(s, o)
    tx.execute(
        "INSERT INTO outcomes(trial_id, key, arm, outcome, events, n, timepoint_weeks, source,"
        " location, quote, doc, origin, version, deleted, created_at, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,1,0,?,?)",
        (s.id, o.id, v["arm"], v["outcome"], v["events"], v["n"], v["timepoint_weeks"],
         v["source"], v["location"], v["quote"], dumps(o.model_dump(mode="json", exclude_none=True)), origin, ts, ts),
    )


def insert_studies(tx: Any, studies, ts: str) -> int:
    """Insert whole trials (document, adverse events, outcomes); returns the number of outcomes."""
    n_out = 0
    for s in studies:
        doc = s.model_dump(mode="json", exclude_none=True)
        doc.pop("outcomes", None)
        doc.pop("adverse_events", None)
        tx.execute("INSERT INTO studies(id, doc) VALUES (?, ?)", (s.id, dumps(doc)))
        insert_aes(tx, s.id, s.adverse_events, ts)
        for o in s.outcomes:
            insert_outcome(tx, s, o, ts)
            n_out += 1
    return n_out


def bump(tx: Any) -> None:
    """Count a change of the evidence (the cache key of :meth:`Store.evidence`)."""
    tx.execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'generation'")


def audit_row(tx: Any, actor: str, action: str, trial_id: Optional[str], outcome_id: Optional[int], before,
              after, user: Optional[str] = None) -> None:
    """One audit row, in the transaction of the change it records."""
    tx.execute(
        'INSERT INTO audit(at, actor, action, trial_id, outcome_id, before, after, "user")'
        " VALUES (?,?,?,?,?,?,?,?)",
        (now(), actor, action, trial_id, outcome_id,
         dumps(before) if before is not None else None, dumps(after) if after is not None else None, user),
    )


class _Tx:
    """A write transaction: serialised with every other writer of the store; rolled back on error."""

    def __init__(self, conn: Any, backend: Any):
        self.conn = conn
        self.backend = backend

    def __enter__(self) -> Any:
        self.backend.begin_write(self.conn)
        return self.conn

    def __exit__(self, et, ev, tb) -> None:
        if et is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


class StoreCore:
    """Connections, transactions and opening of the store (see :class:`lnsynth.web.store.Store`)."""

    path: Path
    url: Optional[str]

    def __post_init__(self) -> None:
        self.backend = backend_for(self.path, self.url)
        self.path = self.backend.path
        self._local = threading.local()
        self._conns: list = []
        self._conns_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._cache: tuple[int, EvidenceBase] | None = None
        self._shells: dict[str, Study] = {}
        self._init_db()

    # ------------------------------------------------------------ connections
    def _conn(self) -> Any:
        c = getattr(self._local, "conn", None)
        if c is not None and getattr(c, "broken", False):  # a PostgreSQL connection lost (server restart)
            c = None
        if c is None:
            c = self.backend.connect()
            self._local.conn = c
            with self._conns_lock:
                self._conns.append(c)
        return c

    def _tx(self) -> _Tx:
        return _Tx(self._conn(), self.backend)

    def close(self) -> None:
        """Close this thread's connection (PostgreSQL: every connection the store opened)."""
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None
        with self._conns_lock:
            if c is not None and c in self._conns:
                self._conns.remove(c)
            self.backend.close_all(self._conns)

    @property
    def database(self) -> str:
        """Where the store lives (the SQLite file, or the PostgreSQL URL without its password)."""
        return self.backend.describe()

    def _init_db(self) -> None:
        c = self._conn()
        self.backend.prepare(c)
        with self._tx() as tx:
            migrate(tx, self.backend)
            seeded = tx.execute("SELECT value FROM meta WHERE key = 'seeded'").fetchone()
            if seeded is None:
                self._seed(tx, _seed_evidence())
                tx.execute("INSERT INTO meta(key, value) VALUES ('secret', ?)", (secrets.token_hex(32),))
                tx.execute("INSERT INTO meta(key, value) VALUES ('generation', '0')")
                tx.execute("INSERT INTO meta(key, value) VALUES ('seeded', ?)", (now(),))
                return
        self._import_new_trials()

    # kept as (static) methods too: callers outside the package used them
    _insert_aes = staticmethod(insert_aes)
    _insert_studies = staticmethod(insert_studies)
    _bump = staticmethod(bump)
    _audit = staticmethod(audit_row)

    def _import_new_trials(self) -> None:
        """Add trials that appeared in the package data since the store was seeded (newest last).

        Only additions: a trial already in the store is never overwritten (the store is the
        curated copy).  A package that does not load (e.g. mid-edit) leaves the store as it is.
        """
        try:
            ev = _seed_evidence()
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
            tx.execute("UPDATE meta SET value = ? WHERE key = 'sources'", (dumps(known),))
            n_out = insert_studies(tx, new, now())
            audit_row(tx, "system:import", "import", None, None, None,
                      {"from": str(ev.root), "studies": [s.id for s in new], "outcomes": n_out})
            bump(tx)

    def _seed(self, tx: Any, ev: EvidenceBase) -> None:
        ts = now()
        tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('sources', ?)",
                   (dumps([s.model_dump(mode="json", exclude_none=True) for s in ev.sources]),))
        tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('syntheses', ?)",
                   (dumps([s.model_dump(mode="json", exclude_none=True) for s in ev.syntheses]),))
        n_out = insert_studies(tx, ev.studies, ts)
        tx.execute(
            "INSERT INTO audit(at, actor, action, trial_id, outcome_id, before, after) VALUES (?,?,?,?,?,?,?)",
            (ts, "system:seed", "seed", None, None, None,
             dumps({"from": str(ev.root), "studies": len(ev.studies), "outcomes": n_out})),
        )

    # ------------------------------------------------------------------ reads
    def meta(self, key: str) -> Optional[str]:
        r = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return r[0] if r else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as tx:
            tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

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

    def audit_event(self, actor: str, action: str, detail: Optional[dict] = None) -> None:
        """An audit row for an event that changes no value (login, failed login, logout): ``actor`` is
        the authenticated name (or the name tried), ``detail`` holds the connection's address."""
        with self._tx() as tx:
            audit_row(tx, actor, action, None, None, None, detail, actor)
