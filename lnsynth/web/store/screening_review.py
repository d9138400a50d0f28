"""Two-person screening of the records queued by ``lnsynth records import`` (issue 22, item 2).

Each record is screened in two stages, ``title_abstract`` then ``full_text``; at each stage two
independent curators decide ``include`` or ``exclude`` (an exclusion names one of the protocol's fixed
reasons, ``exclusion_reasons`` of ``evidence/data/search/protocol.yaml``).  A curator decides a stage
of a record once; two agreeing decisions settle it; two differing ones are a *conflict*, resolved by a
third curator who made neither decision (and is not linked to either by account creation, the rule
of :func:`~lnsynth.web.store.common.check_verifier`).  The full-text stage opens only for a record
included at title/abstract.  Every decision writes an audit row in its transaction.

Table ``screening_decisions`` (migration step of :mod:`.schema`): one row per decision (record id,
stage, reviewer, decision, reason, note, ``resolution`` = 1 for a third curator's resolution, ``at``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Optional

from .common import Forbidden, NotFound, check_verifier, now, role_of

STAGES = ("title_abstract", "full_text")
DECISIONS = ("include", "exclude")
STAGE_LABEL = {"title_abstract": "title/abstract", "full_text": "full text"}
#: per-stage states
PENDING, AWAITING, AGREED_INCLUDE, AGREED_EXCLUDE, CONFLICT, RESOLVED = (
    "pending", "awaiting second", "agreed include", "agreed exclude", "conflict", "resolved")

DDL = (
    """CREATE TABLE IF NOT EXISTS screening_decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id INTEGER NOT NULL REFERENCES screening_records(id),
    stage TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT,
    note TEXT,
    resolution INTEGER NOT NULL DEFAULT 0,
    at TEXT NOT NULL
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS screening_decisions_one ON screening_decisions(record_id, stage, reviewer)",
)


def add_screening_decisions(tx: Any, be: Any) -> None:
    """Migration step: the ``screening_decisions`` table and its one-decision-per-reviewer index."""
    for stmt in DDL:
        tx.execute(be.ddl(stmt))


class ScreeningInputError(ValueError):
    """A screening decision refused for its content: ``field`` names what is wrong (API: 422)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@lru_cache(maxsize=1)
def exclusion_reasons() -> dict[str, str]:
    """The protocol's fixed exclusion reasons ``{id: label}`` (``protocol.yaml``, ``exclusion_reasons``)."""
    import yaml

    from lnsynth.evidence.search import search_dir

    doc = yaml.safe_load((search_dir() / "protocol.yaml").read_text(encoding="utf-8")) or {}
    reasons = doc.get("exclusion_reasons") or {}
    return {str(k): str(v) for k, v in reasons.items()}


def check_decision(stage: Any, decision: Any, reason: Any, note: Any) -> tuple[str, str, Optional[str], Optional[str]]:
    """Validate a decision's fields; returns them cleaned or raises :class:`ScreeningInputError`."""
    if stage not in STAGES:
        raise ScreeningInputError("stage", f"expected one of {', '.join(STAGES)}, got {str(stage)[:40]!r}")
    if decision not in DECISIONS:
        raise ScreeningInputError("decision", f"expected include or exclude, got {str(decision)[:40]!r}")
    if reason is not None and not isinstance(reason, str):
        raise ScreeningInputError("reason", "reason must be one of the protocol's reason ids (text)")
    reason = (reason or "").strip() or None
    if decision == "exclude":
        if reason is None:
            raise ScreeningInputError("reason", "an exclusion needs a reason from the protocol's list: "
                                      + ", ".join(exclusion_reasons()))
        if reason not in exclusion_reasons():
            raise ScreeningInputError("reason", f"unknown reason {reason[:40]!r}; the protocol's reasons are: "
                                      + ", ".join(exclusion_reasons()))
    elif reason is not None:
        raise ScreeningInputError("reason", "an inclusion takes no exclusion reason")
    if note is not None and (not isinstance(note, str) or len(note) > 2000):
        raise ScreeningInputError("note", "note must be text of at most 2000 characters")
    return stage, decision, reason, (note or "").strip() or None


def stage_state(decisions: list[dict]) -> dict:
    """The state of one stage from its decision rows: ``{state, outcome, reason, decisions, resolution}``.

    ``outcome`` is ``include``/``exclude`` once settled (agreed or resolved), else ``None``; ``reason``
    is the exclusion reason of the settled outcome (agreeing exclusions with different reasons count
    under the first reviewer's reason; both stay in ``decisions``)."""
    regular = [d for d in decisions if not d["resolution"]]
    res = next((d for d in decisions if d["resolution"]), None)
    out: dict[str, Any] = {"decisions": regular, "resolution": res, "outcome": None, "reason": None}
    if res is not None:
        out.update(state=RESOLVED, outcome=res["decision"], reason=res["reason"])
    elif not regular:
        out["state"] = PENDING
    elif len(regular) == 1:
        out["state"] = AWAITING
    elif regular[0]["decision"] != regular[1]["decision"]:
        out["state"] = CONFLICT
    else:
        d = regular[0]["decision"]
        out.update(state=AGREED_INCLUDE if d == "include" else AGREED_EXCLUDE, outcome=d, reason=regular[0]["reason"])
    return out


def record_state(stages: dict[str, dict]) -> tuple[str, Optional[str]]:
    """(overall label, open stage or ``None`` when screening of the record is finished)."""
    ta, ft = stages["title_abstract"], stages["full_text"]
    if ta["outcome"] is None:
        return f"title/abstract: {ta['state']}", "title_abstract"
    if ta["outcome"] == "exclude":
        return "excluded at title/abstract", None
    if ft["outcome"] is None:
        return f"full text: {ft['state']}", "full_text"
    return ("included" if ft["outcome"] == "include" else "excluded at full text"), None


class ScreeningReviewMixin:
    """Two-person screening decisions of :class:`lnsynth.web.store.Store`."""

    # ------------------------------------------------------------ reads
    def _screening_rows(self, tx: Any, record_id: Optional[int] = None) -> tuple[list[dict], dict[int, list[dict]]]:
        q, args = "SELECT * FROM screening_records", ()
        if record_id is not None:
            q, args = q + " WHERE id = ?", (record_id,)
        recs = [dict(r) for r in tx.execute(q + " ORDER BY id", args)]
        q = "SELECT * FROM screening_decisions" + (" WHERE record_id = ?" if record_id is not None else "")
        by: dict[int, list[dict]] = {}
        for r in tx.execute(q + " ORDER BY id", args):
            by.setdefault(int(r["record_id"]), []).append(dict(r))
        return recs, by

    @staticmethod
    def _with_status(rec: dict, decisions: list[dict]) -> dict:
        stages = {s: stage_state([d for d in decisions if d["stage"] == s]) for s in STAGES}
        label, open_stage = record_state(stages)
        return {**rec, "screening": label, "open_stage": open_stage, "stages": stages}

    def screening_status(self, record_id: int) -> dict:
        """One queued record with its screening state per stage (``stages``), its overall label
        (``screening``) and the stage open for decisions (``open_stage``, ``None`` when finished)."""
        recs, by = self._screening_rows(self._conn(), record_id)
        if not recs:
            raise NotFound(f"no screening record {record_id}")
        return self._with_status(recs[0], by.get(record_id, []))

    def screening_overview(self) -> list[dict]:
        """Every queued record with its screening state (see :meth:`screening_status`), oldest first."""
        recs, by = self._screening_rows(self._conn())
        return [self._with_status(r, by.get(int(r["id"]), [])) for r in recs]

    def screening_queue(self, user: str) -> list[dict]:
        """Records whose open stage awaits a decision that ``user`` has not made (pending or awaiting a
        second reviewer)."""
        out = []
        for r in self.screening_overview():
            st = r["open_stage"]
            if st is None or r["stages"][st]["state"] not in (PENDING, AWAITING):
                continue
            if any(d["reviewer"] == user for d in r["stages"][st]["decisions"]):
                continue
            out.append(r)
        return out

    def screening_conflicts(self) -> list[dict]:
        """Records with a stage in conflict (both decisions side by side in ``stages[stage]``)."""
        return [r for r in self.screening_overview()
                if r["open_stage"] is not None and r["stages"][r["open_stage"]]["state"] == CONFLICT]

    def screening_counts(self) -> dict:
        """Counts for the PRISMA update: queued (identified by import), screened and excluded at
        title/abstract (with reasons), sought and assessed at full text, excluded at full text (with
        reasons), included, and the records still open per stage and state."""
        rows = self.screening_overview()
        excl_ta: dict[str, int] = {}
        excl_ft: dict[str, int] = {}
        open_: dict[str, dict[str, int]] = {s: {} for s in STAGES}
        screened = sought = assessed = included = 0
        for r in rows:
            ta, ft = r["stages"]["title_abstract"], r["stages"]["full_text"]
            if r["open_stage"] is not None:
                st = r["stages"][r["open_stage"]]["state"]
                open_[r["open_stage"]][st] = open_[r["open_stage"]].get(st, 0) + 1
            if ta["outcome"] is None:
                continue
            screened += 1
            if ta["outcome"] == "exclude":
                excl_ta[ta["reason"]] = excl_ta.get(ta["reason"], 0) + 1
                continue
            sought += 1
            if ft["outcome"] is None:
                continue
            assessed += 1
            if ft["outcome"] == "exclude":
                excl_ft[ft["reason"]] = excl_ft.get(ft["reason"], 0) + 1
            else:
                included += 1
        return {"identified": len(rows), "screened": screened, "excluded_screening": sum(excl_ta.values()),
                "excluded_screening_reasons": dict(sorted(excl_ta.items())), "sought": sought, "assessed": assessed,
                "excluded_full": dict(sorted(excl_ft.items())), "included": included,
                "awaiting": {s: dict(sorted(v.items())) for s, v in open_.items()}}

    # ------------------------------------------------------------ writes
    def _screening_writer(self, tx: Any, user: str) -> None:
        if role_of(tx, user) not in ("curator", "reviewer", "admin"):
            raise Forbidden(f"screening needs an active account with role 'curator' or above ({user!r} has none)")

    def record_decision(self, record_id: int, stage: str, reviewer: str, decision: str, reason: Optional[str] = None,
                        note: Optional[str] = None, actor: Optional[str] = None) -> dict:
        """``reviewer``'s decision on ``record_id`` at ``stage``; returns the record's new status.

        Raises :class:`ScreeningInputError` (bad stage, decision, reason or note: an exclusion needs one
        of the protocol's reasons), :class:`NotFound`, or :class:`Forbidden`: the stage is not open
        (full text before inclusion at title/abstract, or already settled), two reviewers have decided
        already (a conflict goes to a third curator), the reviewer decided this stage before, or she is
        not independent of the first reviewer (:func:`check_verifier`: bootstrap, linked accounts)."""
        stage, decision, reason, note = check_decision(stage, decision, reason, note)
        with self._tx() as tx:
            recs, by = self._screening_rows(tx, record_id)
            if not recs:
                raise NotFound(f"no screening record {record_id}")
            before = self._with_status(recs[0], by.get(record_id, []))
            self._screening_writer(tx, reviewer)
            if before["open_stage"] != stage:
                where = before["screening"]
                raise Forbidden(f"record {record_id} is not open for {STAGE_LABEL[stage]} screening ({where})")
            cur = before["stages"][stage]
            if any(d["reviewer"] == reviewer for d in cur["decisions"]):
                raise Forbidden(f"{reviewer} already decided record {record_id} at {STAGE_LABEL[stage]}: two "
                                "independent reviewers decide each record, each once")
            if len(cur["decisions"]) >= 2:
                raise Forbidden(f"two reviewers decided record {record_id} at {STAGE_LABEL[stage]} already "
                                f"({cur['state']}); a conflict is resolved by a third curator")
            check_verifier(tx, reviewer, [d["reviewer"] for d in cur["decisions"]], "screening decision")
            ts = now()
            tx.execute("INSERT INTO screening_decisions(record_id, stage, reviewer, decision, reason, note, resolution,"
                       " at) VALUES (?,?,?,?,?,?,0,?)", (record_id, stage, reviewer, decision, reason, note, ts))
            after = self._screening_finish(tx, record_id, actor or f"store:{reviewer}", "screening decision",
                                           before, {"stage": stage, "decision": decision, "reason": reason,
                                                    "note": note}, reviewer)
        return after

    def resolve_conflict(self, record_id: int, stage: str, resolver: str, decision: str, reason: Optional[str] = None,
                         note: Optional[str] = None, actor: Optional[str] = None) -> dict:
        """A third curator settles a conflict at ``stage``: she made neither decision (nor is linked to
        either reviewer by account creation).  Returns the record's new status; raises like
        :meth:`record_decision` (:class:`Forbidden` when there is no open conflict)."""
        stage, decision, reason, note = check_decision(stage, decision, reason, note)
        with self._tx() as tx:
            recs, by = self._screening_rows(tx, record_id)
            if not recs:
                raise NotFound(f"no screening record {record_id}")
            before = self._with_status(recs[0], by.get(record_id, []))
            self._screening_writer(tx, resolver)
            cur = before["stages"][stage]
            if cur["state"] != CONFLICT:
                raise Forbidden(f"no conflict to resolve: record {record_id} at {STAGE_LABEL[stage]} is "
                                f"{cur['state']}")
            names = [d["reviewer"] for d in cur["decisions"]]
            if resolver in names:
                raise Forbidden(f"{resolver} made one of the conflicting decisions: a third curator, who made "
                                "neither, resolves the conflict")
            check_verifier(tx, resolver, names, "screening conflict")
            tx.execute("INSERT INTO screening_decisions(record_id, stage, reviewer, decision, reason, note, resolution,"
                       " at) VALUES (?,?,?,?,?,?,1,?)", (record_id, stage, resolver, decision, reason, note, now()))
            after = self._screening_finish(tx, record_id, actor or f"store:{resolver}", "screening resolve", before,
                                           {"stage": stage, "decision": decision, "reason": reason, "note": note,
                                            "conflict": [{k: d[k] for k in ("reviewer", "decision", "reason")}
                                                         for d in cur["decisions"]]}, resolver)
        return after

    def _screening_finish(self, tx: Any, record_id: int, actor: str, action: str, before: dict, what: dict,
                          user: str) -> dict:
        """Store the record's new overall label and write the audit row; returns the new status."""
        recs, by = self._screening_rows(tx, record_id)
        after = self._with_status(recs[0], by.get(record_id, []))
        tx.execute("UPDATE screening_records SET status = ? WHERE id = ?", (after["screening"], record_id))
        after["status"] = after["screening"]
        self._audit(tx, actor, action, None, None, {"screening_record": record_id, "status": before["screening"]},
                    {"screening_record": record_id, "status": after["screening"], **what}, user)
        return after
