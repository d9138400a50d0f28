"""The store as an :class:`~lnsynth.evidence.load.EvidenceBase` -- what every analysis reads: only
``repository`` and ``verified`` values (a pending change of an approved value leaves the approved value),
cached per write generation and rebuilt per trial only where something changed."""

from __future__ import annotations

import json
from typing import Any

from lnsynth.evidence.load import EvidenceBase
from lnsynth.evidence.schema import Outcome, Source, Study, Synthesis

from .common import AE_FIELDS, VIEW_FIELDS, approved_row, row_to_ae, row_to_outcome


class EvidenceMixin:
    """Evidence and trial shells of :class:`lnsynth.web.store.Store`."""

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
        self.backend.begin_read(c)  # one consistent snapshot across the reads below
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


