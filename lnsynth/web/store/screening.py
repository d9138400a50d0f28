"""Records in for screening (``lnsynth records import``) and every question's answers per evidence
snapshot (``lnsynth update``): issue 22."""

from __future__ import annotations

import json
from typing import Optional

from .common import dumps, now


class ScreeningMixin:
    """Screening queue and answer snapshots of :class:`lnsynth.web.store.Store`."""

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
                ids.append(self.backend.insert_id(
                    tx,
                    "INSERT INTO screening_records(source_file, format, record_number, pmid, doi, nct, url,"
                    " registration, title, year, abstract, has_results, kind, imported_at, imported_by)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (source_file, fmt, int(r["number"]), *(r.get(f) for f in self.SCREENING_FIELDS[:8]),
                     None if hr is None else int(bool(hr)), r.get("kind"), ts, actor)))
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
        rows = c.execute('SELECT snapshot, created_at, "row" FROM answer_snapshots WHERE run = ? ORDER BY question,'
                         " outcome", (r[0],)).fetchall()
        return {"run": int(r[0]), "snapshot": rows[0][0], "created_at": rows[0][1],
                "rows": [json.loads(x[2]) for x in rows]}

    def save_answer_snapshot(self, snapshot: str, rows: list[dict]) -> int:
        """Store every question's answer rows (``question``, ``outcome`` keys) under ``snapshot``; returns the run."""
        with self._tx() as tx:
            run = int(tx.execute("SELECT COALESCE(MAX(run), 0) + 1 FROM answer_snapshots").fetchone()[0])
            ts = now()
            for row in rows:
                tx.execute('INSERT INTO answer_snapshots(run, snapshot, created_at, question, outcome, "row")'
                           " VALUES (?,?,?,?,?,?)", (run, snapshot, ts, row["question"], row["outcome"], dumps(row)))
        return run

