"""One clinical question, one answer: selection -> effect sizes -> model -> certainty.

:func:`answer` is the only pipeline from the evidence base to a clinical answer. The CLI
(``lnsynth answer``), the web app (``GET /api/questions/{id}``) and the report all call it and
render the same :class:`Answer` (its :meth:`Answer.to_dict` is the contract), so one question
gives one set of numbers everywhere.

Steps
-----
1. **Study selection** (per trial, with a reason for every trial left out): randomised;
   population (treatment phase; pure class V included, excluded or required by the question);
   arms matching the question's intervention and comparator regimen codes *exactly*; the
   relation between those arms (add-on, substitution, multitarget, maintenance; computed from
   the regimens' drug components by :func:`lnsynth.analyses.questions.relation_between`) equal
   to the question's. A trial whose arms fit another question's relation is excluded with that
   relation named (Mok 2016's tacrolimus *instead of* MMF is not an add-on trial).
2. **Per outcome** (accepted endpoints or adverse-event categories, in order of preference; the
   timepoint window; ``latest`` timepoint in the window by default): arm-level counts via
   :func:`lnsynth.analyses.selection.pairwise_data` / :func:`~lnsynth.analyses.selection.adverse_event_data`
   on the selected trials. One record per arm: the best-ranked source (article > registry >
   abstract > review > secondary summary > news). The approximate-count policy of the plan
   (default on: ``round(pct/100*n)`` where no integer count reproduces a printed percentage) is
   applied and shown per trial. Trials with no events in either arm are not estimable on a
   ratio scale and are listed as such (Cochrane Handbook 10.4.4.2).
   Each row's timepoint rule (:mod:`lnsynth.analyses.outcome_rules`: end of induction for induction
   rows, long-term rows fed by continuation / follow-up reports that keep their parent trial's
   randomised comparison) is shown as ``timepoint_rule``; percentages that are no count (cumulative
   incidences, sub-types) and continuous arm summaries are shown side by side (``reported``).
3. **Model**: the declared sparse-data rule (:func:`lnsynth.analyses.outcome_rules.choose_method`,
   Cochrane Handbook 10.4.4) picks ``method``: the plan's random-effects estimator (REML) when the
   data are not sparse, else Mantel-Haenszel or Peto, or no pooling (trials side by side); a single
   trial is its own estimate (``method: none``). Via :func:`lnsynth.pairwise.meta_analysis`.
4. **Certainty** (:mod:`lnsynth.analyses.grade`) and absolute effects per 1000 from the assumed
   control risk (median control-arm risk of the included trials unless the question declares one).

Examples
--------
>>> from lnsynth.evidence import load_evidence
>>> a = answer(load_evidence(), "voclosporin-addon-mmf")
>>> a.relation
'add-on'
"""

from __future__ import annotations

import math
import re
import statistics
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import pandas as pd

from lnsynth.evidence.load import EvidenceBase, currency
from lnsynth.evidence.schema import RiskOfBias, Study
from lnsynth.analyses.selection import COUNT_POLICY, SelectionWarning, adverse_event_data, pairwise_data

from .baselines import absolute_rows, baseline_rows
from .grade import Certainty, grade_outcome, intervention_risk
from .profiles import profile_rows
from .outcome_rules import SPARSE_RULE, choose_method, continuous_rows, efficacy_calls, map_arms, parent_link, reported_row
from .questions import COMPONENTS, CNI_DRUGS, OutcomeSpec, Question, get_question, load_questions, relation_between

_DRUG_NAMES = {"VCS": "voclosporin", "TAC": "tacrolimus", "CSA": "cyclosporin"}
_CLASS_V_ONLY = re.compile(r"(pure\s+class\s+(5|v)\b|^class\s+(5|v)\b|membranous)", re.I)
_PROLIF = re.compile(r"\b(iii|iv|3|4)\b|proliferative", re.I)


def is_class_v_only(study: Study) -> bool:
    """True when the stored population is pure class V (membranous) lupus nephritis."""
    txt = study.population.value if study.population else ""
    return bool(_CLASS_V_ONLY.search(txt)) and not _PROLIF.search(re.sub(r"class\s+(5|v)", "", txt, flags=re.I))


def _phase_ok(arm_phase: str, phase: str) -> bool:
    return arm_phase == phase or arm_phase == "induction+maintenance"


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

    @property
    def analysed(self) -> tuple[TrialRow, ...]:
        return tuple(t for t in self.trials if t.in_model)

    @property
    def k(self) -> int:
        return len(self.analysed)

    def _back(self, x: float) -> float:
        return math.exp(x) if self.measure in ("RR", "OR") else x

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
        if est is not None and self.control_risk is not None:
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
        ev_arms = {}
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


# ----------------------------------------------------------------------------- selection


def _arm_list(s: Study, regimens: list[str], phase: str) -> list:
    return [a for a in s.arms if a.regimen in regimens and _phase_ok(a.phase, phase)]


def _other_relations(s: Study, q: Question) -> list[str]:
    """Relations the trial's CNI arms have with its other arms (for a precise exclusion reason)."""
    out = []
    cni = [a for a in s.arms if COMPONENTS.get(a.regimen, frozenset()) & CNI_DRUGS]
    others = [a for a in s.arms if not COMPONENTS.get(a.regimen, frozenset()) & CNI_DRUGS]
    for a in cni:
        for b in others:
            phase = "maintenance" if a.phase == "maintenance" else "induction"
            rel = relation_between(a.regimen, b.regimen, phase)
            out.append(f"{a.regimen} vs {b.regimen} is {rel}")
    return out


def _question_for(s: Study, qs: tuple[Question, ...]) -> list[str]:
    v = is_class_v_only(s)
    return [q.id for q in qs
            if _arm_list(s, q.intervention.regimens, q.population.phase) and _arm_list(s, q.comparator.regimens, q.population.phase)
            and (q.population.class_v == "include" or (q.population.class_v == "only") == v)]


def select_studies(ev: EvidenceBase, q: Question) -> tuple[StudyDecision, ...]:
    """The inclusion table of question ``q``: every stored trial, included or excluded and why."""
    qs = load_questions()
    out = []
    later = []  # continuation / follow-up reports: decided once their parent trial is
    for s in ev.studies:
        if parent_link(s) is not None:
            later.append(s)
            out.append(None)
            continue
        arms = ", ".join(f"{a.regimen} ({a.phase})" for a in s.arms)
        ia = _arm_list(s, q.intervention.regimens, q.population.phase)
        ca = _arm_list(s, q.comparator.regimens, q.population.phase)

        def no(reason: str) -> StudyDecision:
            return StudyDecision(s.id, s.label, False, reason, tuple(a.id for a in ia), tuple(a.id for a in ca))

        if not s.randomised:
            link = f" ({s.links[0].type.replace('_', ' ')} {s.links[0].trial})" if s.links else ""
            out.append(no(f"not randomised: {s.design.value}{link}"))
            continue
        if not ia or not ca:
            has_cni = any(COMPONENTS.get(a.regimen, frozenset()) & CNI_DRUGS for a in s.arms)
            rel = _other_relations(s, q)
            fits = [x for x in _question_for(s, qs) if x != q.id]
            if has_cni and rel:
                why = f"arms do not fit the {q.relation} question: " + "; ".join(sorted(set(rel)))
                if any(not _phase_ok(a.phase, q.population.phase) for a in s.arms if a.regimen in q.intervention.regimens + q.comparator.regimens):
                    why = f"phase: arms are {arms}, the question is about {q.population.phase}"
            elif not ia and not ca:
                why = f"no arm of this comparison (arms: {arms})"
            elif not ia:
                why = f"no intervention arm ({', '.join(q.intervention.regimens)}); arms: {arms}"
            else:
                why = f"no comparator arm ({', '.join(q.comparator.regimens)}); arms: {arms}"
            if fits:
                why += f"; answered by question {', '.join(fits)}"
            out.append(no(why))
            continue
        v_only = is_class_v_only(s)
        if q.population.class_v == "exclude" and v_only:
            out.append(no(f"population: pure class V ({s.population.value}); answered by question class-v-cni"))
            continue
        if q.population.class_v == "only" and not v_only:
            pop = s.population.value if s.population else "population not stated"
            out.append(no(f"population: not pure class V ({pop})"))
            continue
        rels = {relation_between(a.regimen, c.regimen, q.population.phase) for a in ia for c in ca}
        if rels != {q.relation}:
            out.append(no(f"relation {sorted(rels)} is not {q.relation}"))
            continue
        reason = f"randomised; {', '.join(a.label for a in ia)} vs {', '.join(a.label for a in ca)} ({q.relation})"
        if len(ia) > 1:
            reason += f"; {len(ia)} intervention arms combined"
        out.append(StudyDecision(s.id, s.label, True, reason, tuple(a.id for a in ia), tuple(a.id for a in ca)))
    done = {d.study: d for d in out if d is not None}
    by_id = {s.id: _continuation_decision(ev, s, done, q, qs) for s in later}
    it = iter(later)
    return tuple(d if d is not None else by_id[next(it).id] for d in out)


def _continuation_decision(ev: EvidenceBase, s: Study, done: dict, q: Question, qs) -> StudyDecision:
    """A continuation / maintenance-phase / extension / follow-up report keeps the randomised comparison
    it came from: included (mapped onto its parent's arms, long-term rows only) where the parent trial
    is included, otherwise excluded with the question that answers the parent."""
    link = parent_link(s)
    kind = link.type.replace("_", " ")
    parent_d = done.get(link.trial)
    try:
        parent = ev.study(link.trial)
    except (KeyError, ValueError):
        return StudyDecision(s.id, s.label, False, f"{kind} {link.trial}, which is not in the evidence base")
    if parent_d is None or not parent_d.included:
        fits = [x for x in _question_for(parent, qs) if x != q.id]
        why = (f"{kind} {parent.label}: keeps that trial's randomised comparison "
               f"({' vs '.join(sorted({a.regimen for a in parent.arms}))}); its arms were not randomised to "
               f"{' vs '.join(a.regimen for a in s.arms)}")
        if fits:
            why += f"; answered as long-term rows of question {', '.join(fits)}"
        return StudyDecision(s.id, s.label, False, why)
    p_arms = [a for a in parent.arms if a.id in parent_d.intervention_arms + parent_d.comparator_arms]
    m = map_arms(list(s.arms), p_arms)
    ia = tuple(a for a, pa in m.items() if pa.id in parent_d.intervention_arms)
    ca = tuple(a for a, pa in m.items() if pa.id in parent_d.comparator_arms)
    if not ia or not ca:
        return StudyDecision(s.id, s.label, False, f"{kind} {parent.label}: its arms do not map onto the parent's "
                                                    f"intervention and comparator arms")
    reason = (f"{kind} {parent.label} (randomised comparison kept: "
              f"{', '.join(a.label for a in s.arms if a.id in ia)} vs {', '.join(a.label for a in s.arms if a.id in ca)}); "
              f"long-term rows only; induction-confounded continuation of the patients who continued (indirectness stated)")
    return StudyDecision(s.id, s.label, True, reason, ia, ca, continuation_of=parent.id,
                         regimen_map=tuple((a, pa.regimen) for a, pa in m.items() if a in ia + ca))


def _subset(ev: EvidenceBase, decisions: tuple[StudyDecision, ...]) -> EvidenceBase:
    """The evidence restricted to included trials and, within each, to the question's arms."""
    studies = []
    for d in decisions:
        if not d.included:
            continue
        s = ev.study(d.study)
        keep = set(d.intervention_arms) | set(d.comparator_arms)
        remap = dict(d.regimen_map)
        studies.append(s.model_copy(update={
            "arms": [a.model_copy(update={"regimen": remap[a.id]}) if a.id in remap else a for a in s.arms if a.id in keep],
            "outcomes": [o for o in s.outcomes if o.arm in keep],
            "adverse_events": [a for a in s.adverse_events if a.arm in keep],
        }))
    return EvidenceBase(ev.sources, tuple(studies), ev.syntheses, ev.root)


# ----------------------------------------------------------------------------- per outcome


def _rob(s: Study) -> str:
    return (s.rob or RiskOfBias()).overall()


def _secondary(types: tuple[str, ...]) -> bool:
    return bool(types) and all(t in ("news", "secondary summary") for t in types)


def _one(sub: EvidenceBase, st: Study) -> EvidenceBase:
    return EvidenceBase(sub.sources, (st,), sub.syntheses, sub.root)


def _collect(ev: EvidenceBase, sub: EvidenceBase, q: Question, spec: OutcomeSpec, decisions):
    """Per trial: the row's record (endpoint or category, in order of preference) at the timepoint its
    rule picks; what was left out and why; percentage-only reports; timepoint notes."""
    plan = q.plan
    tspec, cspec = ",".join(q.intervention.regimens), ",".join(q.comparator.regimens)
    dec = {d.study: d for d in decisions}
    long_term = spec.timing == "long term"
    rows: dict[str, TrialRow] = {}
    excluded: dict[str, str] = {}
    notes: list[str] = []
    tnotes: list[str] = []
    reported: list[dict] = []
    accepted = spec.endpoints if spec.kind == "efficacy" else spec.categories
    for st in sub.studies:
        cont = dec[st.id].continuation_of if st.id in dec else ""
        if cont and not long_term:
            excluded[st.id] = f"continuation report ({dec[st.id].reason.split(' (')[0]}): answers the long-term rows only"
            continue
        one = _one(sub, st)
        frame = one.outcomes_frame() if spec.kind == "efficacy" else one.adverse_events_frame()
        present = set(frame["endpoint" if spec.kind == "efficacy" else "category"]) if len(frame) else set()
        calls, tnote = efficacy_calls(spec, ev.study(st.id), bool(cont)) if spec.kind == "efficacy" else ([{}], "")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SelectionWarning)
            for what in accepted:
                if what not in present or st.id in rows:
                    continue
                found = []
                whys = []
                if spec.kind == "efficacy":
                    for kw in calls:
                        d = pairwise_data(one, what, tspec, cspec, timepoint=spec.prefer, warn=False,
                                          approximate=plan.approximate, allow_nonrandomised=bool(cont), **kw)
                        found += [(d, r) for r in d.frame.itertuples()]
                        whys += [w for _, w in d.excluded]
                else:
                    periods = None if (cont and long_term) else (tuple(spec.periods) if spec.periods is not None else None)
                    d = adverse_event_data(one, what, tspec, cspec, warn=False, approximate=plan.approximate,
                                           allow_nonrandomised=bool(cont), periods=periods)
                    found += [(d, r) for r in d.frame.itertuples()]
                    whys += [w for _, w in d.excluded]
                if not found:
                    if whys:
                        excluded.setdefault(st.id, f"{what}: {whys[0]}")
                    if spec.kind == "efficacy" and not any(x["study"] == st.id for x in reported):
                        rep = reported_row(one, what, tspec, cspec, calls)
                        if rep is not None:
                            reported.append(rep)
                    continue
                d, r = max(found, key=lambda x: -1.0 if pd.isna(getattr(x[1], "timepoint_weeks", None)) else float(x[1].timepoint_weeks))
                notes += [f"{st.id}: {why}" for _, why in d.set_aside]
                tp = None if pd.isna(getattr(r, "timepoint_weeks", None)) else float(r.timepoint_weeks)
                rows[st.id] = TrialRow(
                    r.study, r.label, what, tp, int(r.events_treat), int(r.n_treat), int(r.events_ctrl), int(r.n_ctrl),
                    r.treatment_arms, r.control_arms, bool(r.derived), bool(r.approximate), int(r.combined_arms),
                    tuple(r.sources), tuple(r.source_types), tuple(r.records), _rob(ev.study(st.id)),
                    period=getattr(r, "period", None) if spec.kind != "efficacy" else None,
                    count_type=getattr(r, "count_type", None) if spec.kind != "efficacy" else None,
                    continuation_of=cont)
                excluded.pop(st.id, None)
                if tnote:
                    tnotes.append(f"{st.id}: {tnote}; {tp:g} weeks used" if tp is not None else f"{st.id}: {tnote}")
        if st.id not in rows and st.id not in excluded:
            if any(x["study"] == st.id for x in reported):
                excluded[st.id] = "percentages only: shown side by side (reported)"
            else:
                excluded[st.id] = "not reported in the stored sources" + (
                    f" ({spec.timepoint_rule()})" if spec.kind == "efficacy" else "")
    for dcs in decisions:
        if dcs.included and dcs.study not in rows and dcs.study not in excluded:
            excluded[dcs.study] = "not reported in the stored sources"
    return rows, excluded, notes, tnotes, reported


def _outcome(ev: EvidenceBase, sub: EvidenceBase, q: Question, spec: OutcomeSpec, decisions) -> OutcomeAnswer:
    from lnsynth.pairwise import effect_sizes, meta_analysis

    plan = q.plan
    if spec.kind == "continuous":
        excluded, reported = continuous_rows(sub, spec, decisions)
        why = ("reported side by side (not pooled): " + "; ".join(
            f"{x['study']} {x['intervention']} vs {x['comparator']}" + (
                f", MD {x['difference']['estimate']:.1f} ({x['difference']['ci_low']:.1f} to {x['difference']['ci_high']:.1f})"
                if "difference" in x else "") for x in reported)) if reported else "no included trial reports it"
        return OutcomeAnswer(spec, "MD", (), tuple(excluded.items()), (), not_estimable=why, method="none",
                             method_reason=why, reported=tuple(reported))
    rows, excluded, notes, tnotes, reported = _collect(ev, sub, q, spec, decisions)
    # double-zero trials are not estimable on a ratio scale
    trials = []
    for t in rows.values():
        if plan.measure in ("RR", "OR") and t.events_int == 0 and t.events_ctrl == 0:
            trials.append(_replace(t, in_model=False, note="no events in either arm: not estimable on a ratio scale (Cochrane Handbook 10.4.4.2)"))
        else:
            trials.append(t)
    trials.sort(key=lambda t: (ev.study(t.study).year, t.study))
    analysed = [t for t in trials if t.in_model]
    for t in trials:
        if t.approximate:
            notes.append(f"{t.study}: approximate count: a printed percentage no integer count reproduces, round(pct/100*n) used (plan: approximate)")
        elif t.derived:
            notes.append(f"{t.study}: count derived from a printed percentage on the arm size or printed denominator (count policy)")
        if t.combined_arms > 1:
            notes.append(f"{t.study}: {t.combined_arms} arms of one side combined (events and n summed; Cochrane Handbook 23.3.4)")
        if _secondary(t.source_types):
            notes.append(f"{t.study}: counts rest on {', '.join(t.source_types)} only ({', '.join(t.sources)})")
        if t.continuation_of:
            notes.append(f"{t.study}: continuation report of {t.continuation_of} (the randomised comparison kept; only the patients who continued)")
    common = dict(timepoint_notes=tuple(tnotes), reported=tuple(reported))
    if not analysed:
        why = ("no included trial reports it with usable counts" if not trials
               else "only trials with no events in either arm")
        other = {s: w for s, w in excluded.items() if not w.startswith(("not reported", "continuation report"))}
        if other and not trials:
            why += " (" + "; ".join(f"{s}: {w}" for s, w in other.items()) + ")"
        if reported:
            why = "reported side by side (percentages or rates only, not pooled): " + "; ".join(
                f"{x['study']} {x['intervention']} vs {x['comparator']}" for x in reported)
        return OutcomeAnswer(spec, plan.measure, tuple(trials), tuple(excluded.items()), tuple(notes), not_estimable=why,
                             method="none", method_reason=why, **common)
    method, method_reason = choose_method(analysed, plan.method)
    measure = "OR" if method == "Peto" else plan.measure
    es = effect_sizes(measure, labels=[t.study for t in analysed],
                      events_treat=[t.events_int for t in analysed], n_treat=[t.n_int for t in analysed],
                      events_ctrl=[t.events_ctrl for t in analysed], n_ctrl=[t.n_ctrl for t in analysed])
    fit = {"none": "FE", "MH": "MH", "Peto": "PETO"}.get(method, plan.method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = meta_analysis(es, method=fit, test=plan.test if method not in ("none", "MH", "Peto") else "z")
    yi, vi, w = list(res.yi), list(res.vi), list(res.weights)
    back = (lambda x: math.exp(x)) if measure in ("RR", "OR") else (lambda x: x)
    j = 0
    done = []
    for t in trials:
        if not t.in_model:
            done.append(t)
            continue
        y, v = float(yi[j]), float(vi[j])
        done.append(_replace(t, estimate=back(y), ci_low=back(y - 1.959963984540054 * math.sqrt(v)),
                             ci_high=back(y + 1.959963984540054 * math.sqrt(v)),
                             weight=float(w[j]) if method != "none" or len(analysed) == 1 else None))
        j += 1
    trials = done
    analysed = [t for t in trials if t.in_model]
    if method == "none" and len(analysed) > 1:
        return OutcomeAnswer(spec, measure, tuple(trials), tuple(excluded.items()), tuple(notes),
                             not_estimable=method_reason, method="none", method_reason=method_reason, **common)
    common.update(method=method, method_reason=method_reason)
    if isinstance(plan.baseline_risk, float):
        cr, cr_src = float(plan.baseline_risk), "declared by the question"
    else:
        risks = [t.events_ctrl / t.n_ctrl for t in analysed if t.n_ctrl]
        cr = statistics.median(risks) if risks else None
        cr_src = f"median control-arm risk of the {len(risks)} included trial(s)"
    egger_p = None
    if len(analysed) >= 10:
        from lnsynth.pairwise import egger_test

        try:
            egger_p = float(egger_test(res).pvalue)
        except ValueError:
            egger_p = None
    cert = grade_outcome(ev, q, spec, analysed, decisions, res, cr, egger_p)
    bl = baseline_rows(ev, q, spec, analysed, cr, cr_src)
    return OutcomeAnswer(spec, measure, tuple(trials), tuple(excluded.items()), tuple(notes), res, cert, cr, cr_src,
                         baselines=bl, **common)


def setting_text(s: Study) -> str:
    """The trial's setting and population text (what the population/indirectness rules read)."""
    return " ".join(x for x in ((s.setting.value if s.setting else ""), (s.population.value if s.population else "")) if x)


def _replace(t: TrialRow, **kw) -> TrialRow:
    return TrialRow(**{**t.__dict__, **kw})


_CACHE: dict = {}


def answer(ev: EvidenceBase, question_id: str) -> Answer:
    """Answer one clinical question from the evidence base (cached per evidence object).

    Parameters
    ----------
    ev : the loaded evidence (:func:`lnsynth.evidence.load_evidence`, or the web store's).
    question_id : an id of the catalogue (``lnsynth questions``).

    Raises
    ------
    lnsynth.analyses.questions.QuestionError
        Unknown question id (lists the known ids).
    """
    key = (id(ev), question_id)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is ev:
        return hit[1]
    q = get_question(question_id)
    decisions = select_studies(ev, q)
    sub = _subset(ev, decisions)
    outs = tuple(_outcome(ev, sub, q, spec, decisions) for spec in q.outcomes)
    arm_regs = {(st.id, a_.id): (a_.regimen,) for st in ev.studies for a_ in st.arms}
    included = tuple(d.study for d in decisions if d.included)
    a = Answer(q, decisions, outs, currency(ev), arm_regs, profile_rows(ev, q.id, included))
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[key] = (ev, a)
    return a


def answer_outcome(ev: EvidenceBase, a: Answer, spec: OutcomeSpec,
                   decisions: Optional[tuple[StudyDecision, ...]] = None) -> OutcomeAnswer:
    """Re-run the pipeline for one outcome of an answered question with a modified outcome spec
    (e.g. another timepoint window) and optionally modified arm decisions (e.g. one dose arm):
    the same selection rules, counts policy, model and certainty as :func:`answer`.

    Used by the sensitivity analyses so that no variant selects trials its own way.
    """
    decisions = a.decisions if decisions is None else decisions
    q = a.question.model_copy(update={"outcomes": [spec]})
    return _outcome(ev, _subset(ev, decisions), q, spec, decisions)


def answer_all(ev: EvidenceBase) -> tuple[Answer, ...]:
    """Every question of the catalogue, answered."""
    return tuple(answer(ev, q.id) for q in load_questions())


__all__ = ["Answer", "OutcomeAnswer", "StudyDecision", "TrialRow", "answer", "answer_all", "answer_outcome", "is_class_v_only",
           "jsonable", "select_studies", "setting_text"]


jsonable = _clean
