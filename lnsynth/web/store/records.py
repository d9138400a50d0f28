"""Outcomes, adverse events and trials: the API views of stored rows, reads, and the writes of one
curator (create, update, delete -- as a proposal when the analyses use the value -- and keep).  The
second person's checks are in :mod:`.review`."""

from __future__ import annotations

import json
import secrets
from typing import Any, Optional

from lnsynth.evidence.schema import Study

from .common import (AE_FIELDS, APPROVED, KINDS, Conflict, Forbidden, NotFound, authors_of, check_verifier, dumps, now,
                     role_of)


class RecordsMixin:
    """Outcome, adverse-event and trial records of :class:`lnsynth.web.store.Store`."""

    @staticmethod
    def record(row: Any) -> dict[str, Any]:
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
            **RecordsMixin._review_view(r),
        }

    @staticmethod
    def _review_view(r: dict) -> dict[str, Any]:
        approved = json.loads(r["approved"]) if r.get("approved") else None
        return {"status": r.get("status") or "repository", "entered_by": r.get("entered_by"),
                "verified_by": r.get("verified_by"), "verified_at": r.get("verified_at"),
                "in_analyses": (r.get("status") or "repository") in APPROVED or approved is not None,
                "approved": approved, "authors": authors_of(r) if (r.get("status") or "repository") not in APPROVED
                else [], "deletion": json.loads(r["deletion"]) if r.get("deletion") else None}

    @staticmethod
    def ae_record(row: Any) -> dict[str, Any]:
        r = dict(row)
        out = {"id": r["id"], "trial_id": r["trial_id"], "key": r["key"]}
        out.update({k: r[k] for k in AE_FIELDS})
        out["serious"] = None if r["serious"] is None else bool(r["serious"])
        out.update(origin=r["origin"], version=r["version"], created_at=r["created_at"], updated_at=r["updated_at"],
                   **RecordsMixin._review_view(r))
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
            rows = c.execute("SELECT * FROM (SELECT * FROM audit ORDER BY id DESC LIMIT ?) AS recent ORDER BY id",
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
            oid = self.backend.insert_id(
                tx,
                f"INSERT INTO {table}(trial_id, key, {cols}, doc, origin, version, deleted, created_at, updated_at,"
                f" status, entered_by, authors)"
                f" VALUES (?,?,{','.join('?' * len(fields))},NULL,?,1,0,?,?,'pending',?,?)",
                (trial_id, tmp_key, *self._db_values(kind, values), origin, ts, ts, user or actor,
                 dumps([user or actor])),
            )
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
                approved = dumps({"status": row["status"], "verified_by": row["verified_by"],
                                   "values": {f: row[f] for f in fields}})
            # every author of a change since the last verified state is kept: none of them may verify it
            authors = [] if row["status"] in APPROVED else authors_of(row)
            authors = authors + [a for a in [user or actor] if a not in authors]
            # a disputed value stays disputed when its entry is changed (only a reviewer resolves it): the
            # readings stay open and the replaced entry joins them, side by side in the review queue
            disputed = row["status"] == "disputed"
            old = {f: row[f] for f in fields}
            if disputed and self._db_values(kind, values) != [old[f] for f in fields]:
                tx.execute("INSERT INTO reviews(kind, record_id, record_version, reviewer, decision, proposed, note,"
                           " at, open) VALUES (?,?,?,?,'earlier entry',?,?,?,1)",
                           (kind, rid, version, row["entered_by"] or "?", dumps(RecordsMixin._plain_values(kind, old)),
                            f"entry replaced by {user or actor}", now()))
            sets = ", ".join(f"{f}=?" for f in fields)
            tx.execute(
                f"UPDATE {table} SET {sets}, version = version + 1, updated_at=?, status=?, entered_by=?,"
                f" verified_by=NULL, verified_at=NULL, approved=?, authors=?, deletion=NULL"
                f" WHERE id = ? AND version = ?",
                (*self._db_values(kind, values), now(), "disputed" if disputed else "pending", user or actor,
                 approved, dumps(authors), rid, version),
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
                check_verifier(tx, who, authors_of(row), "deletion")
                self._confirm_deletion(tx, kind, trial_id, row, who, actor)
                return {**before, "delete": "deleted"}
            if row["status"] == "disputed" and role_of(tx, who) not in ("reviewer", "admin"):
                # deleting and re-entering would make the dispute vanish from the review queue
                raise Forbidden("a disputed value is resolved by a reviewer: ask a reviewer to settle or delete it")
            if row["status"] in APPROVED or row["approved"]:
                fields = KINDS[kind][1]
                approved = row["approved"]
                if row["status"] in APPROVED:
                    approved = dumps({"status": row["status"], "verified_by": row["verified_by"],
                                       "values": {f: row[f] for f in fields}})
                authors = [] if row["status"] in APPROVED else authors_of(row)
                authors = authors + [a for a in [who] if a not in authors]
                tx.execute(f"UPDATE {table} SET version = version + 1, updated_at = ?, status = 'pending',"
                           " verified_by = NULL, verified_at = NULL, approved = ?, authors = ?, deletion = ?"
                           " WHERE id = ?", (now(), approved, dumps(authors), dumps({"by": who, "at": now()}), rid))
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
                       (study.id, dumps(d), user))
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

