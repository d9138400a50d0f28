"""The two-person rule's second person: verify or dispute a value, settle a dispute with a reviewer's
reading, the review queue and the counts by review status (see :mod:`lnsynth.web.curation`)."""

from __future__ import annotations

import json
from typing import Any, Optional

from .common import KINDS, Forbidden, NotFound, authors_of, check_verifier, dumps, now, role_of


class ReviewMixin:
    """Second-curator decisions of :class:`lnsynth.web.store.Store`."""

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
            check_verifier(tx, reviewer, authors_of(row), "deletion" if row["deletion"] else "value")
            if row["deletion"]:
                self._confirm_deletion(tx, kind, trial_id, row, reviewer, actor)
                return {**before, "status": "deleted", "deleted": True}
            agree = proposed is None or all(proposed.get(f) == row[f] if f != "serious" else
                                            (proposed.get(f) == (None if row[f] is None else bool(row[f])))
                                            for f in fields)
            if agree and role_of(tx, reviewer) not in ("reviewer", "admin"):
                if row["status"] == "disputed":
                    raise Forbidden("a disputed value is resolved by a reviewer: record your own reading if it "
                                    "differs, or ask a reviewer to settle it")
                if self._disputed_sibling(tx, kind, row):
                    raise Forbidden("another entry of this value (same arm and measure) is disputed: a reviewer "
                                    "settles it before a new entry is verified")
            decision = "verify" if agree else "dispute"
            tx.execute("INSERT INTO reviews(kind, record_id, record_version, reviewer, decision, proposed, note, at,"
                       " open) VALUES (?,?,?,?,?,?,?,?,?)",
                       (kind, rid, version, reviewer, decision, dumps(proposed) if proposed is not None else None,
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
            if role_of(tx, resolver) not in ("reviewer", "admin"):
                raise Forbidden("resolving a dispute needs role 'reviewer'")
            check_verifier(tx, resolver, authors_of(row) + [rv["reviewer"]], "value")
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

