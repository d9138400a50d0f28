"""Result types of a clinical answer: the inclusion table, per-trial rows, per-outcome results.

:class:`Answer` (and its :meth:`Answer.to_dict`, the JSON contract) is built by
:func:`lnsynth.analyses.answer.answer`; split out of :mod:`lnsynth.analyses.answer`, which
re-exports every name here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import pandas as pd

from lnsynth.stats import back_value
from lnsynth.analyses.selection import COUNT_POLICY

from .baselines import absolute_rows
from .grade import Certainty, intervention_risk
from .outcome_rules import SPARSE_RULE
from .questions import COMPONENTS, CNI_DRUGS, OutcomeSpec, Question

_DRUG_NAMES = {"VCS": "voclosporin", "TAC": "tacrolimus", "CSA": "cyclosporin"}


@dataclass(frozen=True)
class StudyDecision:
    """One row of a question's inclusion table."""

    study: str
    label: str
    included: bool
    reason: str
    intervention_arms: tuple[str, ...] = ()
    comparator_arms: tuple[str, ...] = ()
    #: a continuation / follow-up report: the parent trial whose randomised comparison it keeps
    continuation_of: str = ""
    #: (arm id, parent arm regimen) for a continuation's arms
    regimen_map: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict:
        return {"study": self.study, "label": self.label, "included": self.included, "reason": self.reason,
                "intervention_arms": list(self.intervention_arms), "comparator_arms": list(self.comparator_arms),
                "continuation_of": self.continuation_of or None}


@dataclass(frozen=True)
class TrialRow:
    """One trial's data in one outcome's analysis."""

    study: str
    label: str
    endpoint: str
    timepoint_weeks: Optional[float]
    events_int: int
    n_int: int
    events_ctrl: int
    n_ctrl: int
    intervention_arms: str
    comparator_arms: str
    derived: bool
    approximate: bool
    combined_arms: int
    sources: tuple[str, ...]
    source_types: tuple[str, ...]
    records: tuple[str, ...]
    rob: str
    estimate: Optional[float] = None
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    weight: Optional[float] = None
    in_model: bool = True
    note: str = ""
    period: Optional[str] = None  # adverse events: the period the record covers (induction, maintenance, overall)
    count_type: Optional[str] = None  # adverse events: patients (with >= 1 event) or events
    continuation_of: str = ""  # a continuation report: its parent trial

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class OutcomeAnswer:
    spec: OutcomeSpec
    measure: str
    trials: tuple[TrialRow, ...]
    excluded: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    result: Any = None  # MetaResult or None
    certainty: Optional[Certainty] = None
    control_risk: Optional[float] = None
    control_risk_source: str = ""
    not_estimable: Optional[str] = None
    method: str = "none"  # REML, MH, Peto, GLMM or none (outcome_rules.choose_method)
    method_reason: str = ""
    reported: tuple = ()  # trials reporting percentages only (shown side by side, never pooled)
    timepoint_notes: tuple = ()
    baselines: tuple = ()  # declared baseline risks ({label, risk, source, rule}), lnsynth.analyses.baselines
    warnings: tuple = ()  # messages of the warnings the model raised (answer.fit_diagnostics), never silenced
    converged: Optional[bool] = None  # the fit's converged flag, when it exposes one
    n_maxima: Optional[int] = None  # local maxima of the likelihood found (REML/ML), when exposed

    @property
    def analysed(self) -> tuple[TrialRow, ...]:
        return tuple(t for t in self.trials if t.in_model)

    @property
    def k(self) -> int:
        return len(self.analysed)

    def _back(self, x: float) -> float:
        return back_value(self.measure, x)

    def conf_int(self, level: float = 0.95) -> tuple[Optional[float], Optional[float]]:
        """CI of the pooled effect (ratio scale for ratio measures) at ``level``."""
        if self.result is None:
            return (None, None)
        if abs(level - self.result.level) < 1e-12:
            return (self._back(self.result.ci_low), self._back(self.result.ci_high))
        from scipy.stats import norm, t

        crit = t.ppf(0.5 + level / 2, self.k - 1) if self.result.test == "knha" else norm.ppf(0.5 + level / 2)
        return (self._back(self.result.estimate - crit * self.result.se), self._back(self.result.estimate + crit * self.result.se))

    def to_dict(self) -> dict:
        a = self.analysed
        r = self.result
        est = lo = hi = None
        extra: dict = {}
        if r is not None:
            est, (lo, hi) = self._back(r.estimate), self.conf_int()
            extra = {"pi_low": self._back(r.pi_low), "pi_high": self._back(r.pi_high), "i2": r.i2, "tau2": r.tau2,
                     "pvalue": r.pvalue, "model": "single trial" if self.k == 1 else r.method, "test": r.test}
        p1000 = p1000_lo = p1000_hi = risk_int = None
        if est is not None and lo is not None and hi is not None and self.control_risk is not None:
            p1000 = 1000 * (intervention_risk(self.measure, self.control_risk, est) - self.control_risk)
            p1000_lo = 1000 * (intervention_risk(self.measure, self.control_risk, lo) - self.control_risk)
            p1000_hi = 1000 * (intervention_risk(self.measure, self.control_risk, hi) - self.control_risk)
            risk_int = 1000 * intervention_risk(self.measure, self.control_risk, est)
        out = {
            "outcome": self.spec.label,
            "outcome_id": self.spec.id,
            "kind": self.spec.kind,
            "accepted": list(self.spec.endpoints or self.spec.categories),
            "window": self.spec.window.text() if self.spec.kind == "efficacy" else "as reported",
            "timepoint_rule": self.spec.timepoint_rule(),
            "counted": self.spec.counted,
            "harm": self.spec.harm,
            "long_term": self.spec.timing == "long term",
            "method": self.method,
            "method_reason": self.method_reason,
            "sparse_rule": SPARSE_RULE,
            "count_policy": COUNT_POLICY,
            "k": self.k,
            "studies": [t.study for t in a],
            "patients": sum(t.n_int + t.n_ctrl for t in a),
            "events_int": sum(t.events_int for t in a),
            "n_int": sum(t.n_int for t in a),
            "events_ctrl": sum(t.events_ctrl for t in a),
            "n_ctrl": sum(t.n_ctrl for t in a),
            "measure": self.measure,
            "estimate": est,
            "ci_low": lo,
            "ci_high": hi,
            **extra,
            "control_risk": self.control_risk,
            "control_risk_source": self.control_risk_source,
            "risk_int_per1000": risk_int,
            "per1000": p1000,
            "per1000_low": p1000_lo,
            "per1000_high": p1000_hi,
            "certainty": self.certainty.rating if self.certainty else None,
            "reasons": (self.certainty.reasons() if self.certainty else []) + ([self.not_estimable] if self.not_estimable else []),
            "domains": self.certainty.domain_list() if self.certainty else [],
            "baseline_risks": absolute_rows(self.measure, est, lo, hi, self.baselines),
            "not_estimable": self.not_estimable,
            "warnings": list(self.warnings),
            "converged": self.converged,
            "n_maxima": self.n_maxima,
            "trials": [t.to_dict() for t in self.trials],
            "reported": [dict(x) for x in self.reported],
            "timepoint_notes": list(self.timepoint_notes),
            "excluded": [{"study": s, "reason": w} for s, w in self.excluded],
            "notes": list(self.notes),
        }
        return _clean(out)


def _clean(x):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


@dataclass(frozen=True)
class Answer:
    """The answer to one clinical question: inclusion table, one result per outcome, certainty."""

    question: Question
    decisions: tuple[StudyDecision, ...]
    outcomes: tuple[OutcomeAnswer, ...]
    evidence: dict = field(default_factory=dict)
    _arm_regimens: dict = field(default_factory=dict, repr=False, compare=False)  # (study, arm id) -> (regimen,)
    profiles: tuple = ()  # patient-profile rows (:func:`lnsynth.analyses.profiles.profile_rows`)

    @property
    def id(self) -> str:
        return self.question.id

    @property
    def relation(self) -> str:
        return self.question.relation

    @property
    def included(self) -> tuple[str, ...]:
        return tuple(d.study for d in self.decisions if d.included)

    @property
    def excluded(self) -> tuple[tuple[str, str], ...]:
        return tuple((d.study, d.reason) for d in self.decisions if not d.included)

    def outcome(self, outcome_id: str) -> OutcomeAnswer:
        for o in self.outcomes:
            if o.spec.id == outcome_id:
                return o
        raise KeyError(f"question {self.id}: no outcome {outcome_id!r}")

    def intervention_drugs(self) -> tuple[str, ...]:
        """The calcineurin inhibitors of the intervention arms of the included trials (not of the question's label)."""
        ev_arms: dict[tuple[str, str], None] = {}
        for d in self.decisions:
            if d.included and not d.continuation_of:
                ev_arms.update({(d.study, a): None for a in d.intervention_arms})
        regs = {r for (sid, aid) in ev_arms for r in self._arm_regimens.get((sid, aid), ())}
        found = set().union(*(COMPONENTS.get(r, frozenset()) & CNI_DRUGS for r in regs)) if regs else set()
        return tuple(_DRUG_NAMES[x] for x in sorted(found))

    def intervention_label(self) -> str:
        """The question's intervention label; for an any-CNI question, with the drugs its included trials contain."""
        q = self.question
        if not q.any_cni:
            return q.intervention.label
        drugs = self.intervention_drugs()
        asked = sorted({_DRUG_NAMES[x] for r in q.intervention.regimens for x in COMPONENTS.get(r, frozenset()) & CNI_DRUGS})
        if not drugs:
            return f"{q.intervention.label} (no included trial)"
        missing = [x for x in asked if x not in drugs]
        return (f"{q.intervention.label}: {' and '.join(drugs)} only (the included trials' drugs"
                + (f"; no trial of {', '.join(missing)}: indirect for the class)" if missing else ")"))

    def to_dict(self) -> dict:
        """The contract of ``lnsynth answer ID --format json`` and ``GET /api/questions/{id}``."""
        q = self.question
        return _clean({
            "id": q.id,
            "title": q.title,
            "question": q.question,
            "population": q.population.description,
            "relation": q.relation,
            "intervention": self.intervention_label(),
            "intervention_regimens": list(q.intervention.regimens),
            "intervention_drugs": list(self.intervention_drugs()),
            "comparator": q.comparator.label,
            "comparator_regimens": list(q.comparator.regimens),
            "plan": q.summary_dict()["plan"],
            "outcomes": [o.to_dict() for o in self.outcomes],
            "included": list(self.included),
            "excluded": [{"study": s, "reason": w} for s, w in self.excluded],
            "inclusion": [d.to_dict() for d in self.decisions],
            "evidence": dict(self.evidence),
            "profiles": [{k: r.get(k) for k in ("profile", "kind", "statement", "trials", "source", "location", "quote")}
                         for r in self.profiles],
            "disclaimer": "lnsynth summarises published evidence; it does not prescribe.",
        })

    def to_frame(self) -> pd.DataFrame:
        """The summary-of-findings table, one row per outcome."""
        cols = ["outcome", "k", "patients", "events_int", "n_int", "events_ctrl", "n_ctrl", "measure", "estimate",
                "ci_low", "ci_high", "control_risk", "per1000", "per1000_low", "per1000_high", "certainty"]
        return pd.DataFrame([{c: o.to_dict().get(c) for c in cols} for o in self.outcomes], columns=cols)

    def summary(self) -> str:
        lines = [f"{self.question.title}  [{self.relation}]", f"  {self.question.question}"]
        for o in self.outcomes:
            d = o.to_dict()
            if d["estimate"] is None:
                lines.append(f"  - {d['outcome']}: not estimable ({d['not_estimable']})")
            else:
                lines.append(f"  - {d['outcome']}: {d['measure']} {d['estimate']:.2f} [{d['ci_low']:.2f}, {d['ci_high']:.2f}], "
                             f"k={d['k']}, {d['patients']} patients; certainty {d['certainty']}")
        return "\n".join(lines)
