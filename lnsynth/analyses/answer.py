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
from typing import Optional

import pandas as pd

from lnsynth import registry
from lnsynth.stats import Z95, back_value
from lnsynth.evidence.load import EvidenceBase, currency
from lnsynth.evidence.schema import RiskOfBias, Study
from lnsynth.analyses.selection import SelectionWarning, adverse_event_data, pairwise_data

from .baselines import baseline_rows
from .grade import grade_outcome
from .profiles import profile_rows
from .outcome_rules import choose_method, continuous_rows, efficacy_calls, map_arms, parent_link, reported_row
from .questions import COMPONENTS, CNI_DRUGS, OutcomeSpec, Question, get_question, load_questions, relation_between
from .answer_types import (  # noqa: F401  (re-exported: public import path)
    _DRUG_NAMES, Answer, OutcomeAnswer, StudyDecision, TrialRow, _clean,
)

_CLASS_V_ONLY = re.compile(r"(pure\s+class\s+(5|v)\b|^class\s+(5|v)\b|membranous)", re.I)
_PROLIF = re.compile(r"\b(iii|iv|3|4)\b|proliferative", re.I)


def is_class_v_only(study: Study) -> bool:
    """True when the stored population is pure class V (membranous) lupus nephritis."""
    txt = study.population.value if study.population else ""
    return bool(_CLASS_V_ONLY.search(txt)) and not _PROLIF.search(re.sub(r"class\s+(5|v)", "", txt, flags=re.I))


def _phase_ok(arm_phase: str, phase: str) -> bool:
    return arm_phase == phase or arm_phase == "induction+maintenance"


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
        if registry.is_ratio(plan.measure) and t.events_int == 0 and t.events_ctrl == 0:
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
    with warnings.catch_warnings(record=True) as caught:  # recorded on the answer, not silenced
        warnings.simplefilter("always")
        res = meta_analysis(es, method=fit, test=plan.test if method not in ("none", "MH", "Peto") else "z")
    common.update(fit_diagnostics(res, caught))
    yi, vi, w = list(res.yi), list(res.vi), list(res.weights)

    def back(x: float) -> float:
        return back_value(measure, x)

    j = 0
    done = []
    for t in trials:
        if not t.in_model:
            done.append(t)
            continue
        y, v = float(yi[j]), float(vi[j])
        done.append(_replace(t, estimate=back(y), ci_low=back(y - Z95 * math.sqrt(v)), ci_high=back(y + Z95 * math.sqrt(v)),
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


def fit_diagnostics(res, caught) -> dict:
    """Warnings raised by a fit (messages, in order, de-duplicated) and its ``converged`` / ``n_maxima``.

    Returns keyword arguments of :class:`OutcomeAnswer` (``warnings``, ``converged``, ``n_maxima``);
    ``converged`` and ``n_maxima`` are ``None`` when the result does not expose them.
    """
    conv = getattr(res, "converged", None)
    nmax = getattr(res, "n_maxima", None)
    return {"warnings": tuple(dict.fromkeys(f"{type(w.message).__name__}: {w.message}" for w in caught)),
            "converged": None if conv is None else bool(pd.Series(conv).astype(bool).all()),
            "n_maxima": None if nmax is None else int(pd.Series(nmax).max())}


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
