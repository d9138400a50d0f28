"""Sensitivity analyses of the clinical questions' answers: the review's critiques, tested.

A sensitivity analysis repeats the primary analysis with an arbitrary or debatable decision
changed and asks whether the conclusion survives (Cochrane Handbook, ch. 10.14: "sensitivity
analyses"; they are not subgroup analyses to estimate effects in subsets, and no formal test of
difference between the variants is made).  Here the primary analysis is always the answer of
one catalogue question (:func:`lnsynth.analyses.answer.answer`): this module never selects
trials from the evidence base itself.  It takes the trials the answer analysed for an outcome
(``OutcomeAnswer.trials``) and refits subsets and variants of them with the same effect-size and
model code (:func:`lnsynth.effects.effect_sizes`, :func:`lnsynth.pairwise.meta_analysis`, batched
as ``(B, k)`` arrays with NaN for the trials a variant leaves out).  Where a variant needs other
counts (another timepoint window, one dose arm), the answer machinery is run again with the
question's outcome window or the trial's arms changed, so the count rules (best-ranked source,
approximate-count policy, arm combination, double-zero trials) are the answer's.

Analyses (one row each; ``analysis`` names the family, ``subgroup`` the variant)
-------------------------------------------------------------------------------
main
    The answer's pooled estimate, as the answer reports it (the reference of every other row).
leave-one-out
    Each analysed trial omitted in turn (Cochrane Handbook 10.14; Viechtbauer & Cheung, Res
    Synth Methods 2010;1:112-25).
timepoint (remission outcomes)
    The review argues that a proteinuria-based remission assessed at about 6 months, while the
    patient is on the drug, overstates a calcineurin inhibitor's (CNI) effect (haemodynamic
    lowering of proteinuria).  Rows: the analysed trials whose timepoint is <= 26 weeks, and
    > 26 weeks; and the question re-answered with the outcome window limited to 26 weeks (each
    trial's latest result up to 26 weeks) or starting after 26 weeks, selection unchanged.
population
    Trials conducted in a single Asian country vs multinational or other settings (the stored
    setting and population text, matched against the single-country hints of
    :data:`lnsynth.analyses.grade.SINGLE_COUNTRY_HINTS` restricted to Asian countries); a trial
    whose setting is not stored is counted as "other" and named as such.
CNI type
    Voclosporin, tacrolimus and cyclosporin trials separately, where a question's intervention
    pools more than one CNI.
dose
    A trial whose answer combines several intervention arms (AURA-LV, Rovin 2019: voclosporin
    23.7 mg and 39.5 mg twice daily) is replaced by each arm alone against the shared comparator;
    the arms are found from the answer's record ids (``TrialRow.records``).
count policy
    ``strict``: trials whose counts were approximated (``round(pct/100*n)`` where no integer
    reproduces the printed percentage; ``TrialRow.approximate``) left out; ``primary sources
    only``: trials whose counts rest only on news or secondary summaries left out.
estimator
    Fixed effect, REML and DerSimonian-Laird on the same trials (Veroniki et al., Res Synth
    Methods 2016;7:55-79 on tau² estimators).

Outcomes: every efficacy outcome with at least one analysed trial, and adverse-event outcomes
with at least two.  An efficacy outcome the answer cannot estimate gets its ``main`` row with
the answer's reason; the adverse-event outcomes left out are listed in ``skipped`` with the
reason.  A variant with no trial left is a row with ``k = 0`` and ``not_estimable`` saying why;
no row is silently dropped.  A single trial is its own estimate (no pooling, no tau²).

``method`` / ``test`` (optional) replace the question plan's tau² estimator and test in every
refitted variant; the ``main`` row stays the answer's and the ``estimator`` rows name their own
estimator.

References
----------
Higgins JPT, Thomas J, et al. (eds). Cochrane Handbook for Systematic Reviews of Interventions,
version 6.4, 2023; section 10.14 (sensitivity analyses), 10.10.4 (fixed vs random effects).
Viechtbauer W, Cheung MW-L. Outlier and influence diagnostics for meta-analysis. Res Synth
Methods 2010;1:112-25.
Veroniki AA et al. Methods to estimate the between-study variance and its uncertainty in
meta-analysis. Res Synth Methods 2016;7:55-79.

Examples
--------
>>> from lnsynth.evidence import load_evidence
>>> rep = run_sensitivity(load_evidence(), ["voclosporin-addon-mmf"])
>>> {"main", "leave-one-out", "count policy", "estimator"} <= set(rep.to_frame()["analysis"])
True
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from lnsynth.evidence.load import EvidenceBase
from lnsynth.stats import back_value
from lnsynth.evidence.schema import SECONDARY_TYPES

from .answer import Answer, OutcomeAnswer, StudyDecision, TrialRow, answer, answer_outcome
from .answer import jsonable as _clean
from .answer import setting_text as _setting_of
from .grade import REMISSION_ENDPOINTS, SINGLE_COUNTRY_HINTS
from .questions import CNI_DRUGS, COMPONENTS, Window, get_question, load_questions

#: Timepoint cut-off of the review's critique (about 6 months).
EARLY_WEEKS = 26.0
#: Single-country hints (from :data:`lnsynth.analyses.grade.SINGLE_COUNTRY_HINTS`) that name an Asian country or city.
ASIAN_COUNTRY_HINTS = tuple(h for h in SINGLE_COUNTRY_HINTS if h not in ("italy", "italian", "czech"))
CNI_NAMES = {"VCS": "voclosporin", "TAC": "tacrolimus", "CSA": "cyclosporin"}
ESTIMATORS = (("FE", "fixed effect"), ("REML", "REML"), ("DL", "DerSimonian-Laird"))
ANALYSES = ("main", "leave-one-out", "timepoint", "population", "CNI type", "dose", "count policy", "estimator")

FRAME_COLUMNS = ("question", "outcome", "outcome_label", "kind", "analysis", "subgroup", "description", "k", "patients",
                 "measure", "model", "estimate", "ci_low", "ci_high", "pvalue", "i2", "tau2", "studies",
                 "not_estimable", "note")


@dataclass(frozen=True)
class SensitivityRow:
    """One analysis of one outcome of one question (ratio scale for RR / OR)."""

    question: str
    outcome: str
    outcome_label: str
    kind: str
    analysis: str
    subgroup: str
    description: str
    k: int
    patients: int
    measure: str
    model: str = ""
    estimate: Optional[float] = None
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    pvalue: Optional[float] = None
    i2: Optional[float] = None
    tau2: Optional[float] = None
    studies: tuple[str, ...] = ()
    not_estimable: Optional[str] = None
    note: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["studies"] = list(self.studies)
        return _clean(d)


@dataclass(frozen=True)
class SensitivityReport:
    """Output of :func:`run_sensitivity`: one row per analysis, and the outcomes not analysed."""

    rows: tuple[SensitivityRow, ...]
    skipped: tuple[tuple[str, str, str], ...] = ()  # (question, outcome, reason)
    questions: tuple[tuple[str, str], ...] = ()  # (id, title)
    method: Optional[str] = None
    test: Optional[str] = None
    evidence: dict = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        recs = []
        for r in self.rows:
            d = r.to_dict()
            d["studies"] = ", ".join(r.studies)
            recs.append(d)
        f = pd.DataFrame(recs, columns=list(FRAME_COLUMNS))
        for c in ("estimate", "ci_low", "ci_high", "pvalue", "i2", "tau2"):
            f[c] = f[c].astype(float)
        return f

    def to_dict(self) -> dict:
        """The contract of ``lnsynth sensitivity --format json``."""
        return _clean({
            "method": self.method or "per question plan",
            "test": self.test or "per question plan",
            "questions": [{"id": q, "title": t} for q, t in self.questions],
            "rows": [r.to_dict() for r in self.rows],
            "skipped": [{"question": q, "outcome": o, "reason": w} for q, o, w in self.skipped],
            "evidence": dict(self.evidence),
            "disclaimer": "lnsynth summarises published evidence; it does not prescribe.",
        })

    def question_rows(self, question: str) -> tuple[SensitivityRow, ...]:
        return tuple(r for r in self.rows if r.question == question)

    def to_markdown(self, digits: int = 2) -> str:
        lines = ["# Sensitivity analyses of the clinical questions' answers", "",
                 "Each question's answer (row *main*) refitted on subsets and variants of the trials it analysed "
                 "(Cochrane Handbook 10.14). Risk ratios > 1 favour the intervention for remission outcomes; "
                 f"refits: {self.method or 'the plan estimator'}, test {self.test or 'of the plan'}.", ""]
        titles = dict(self.questions)
        for qid in [q for q, _ in self.questions]:
            rows = self.question_rows(qid)
            skipped = [(o, w) for q, o, w in self.skipped if q == qid]
            if not rows and not skipped:
                continue
            lines += [f"## {titles.get(qid, qid)} (`{qid}`)", ""]
            for oid in dict.fromkeys(r.outcome for r in rows):
                orows = [r for r in rows if r.outcome == oid]
                lines += [f"### {orows[0].outcome_label}", "",
                          "| analysis | variant | k | patients | estimate [95% CI] | I² (%) | tau² | studies | note |",
                          "|---|---|---:|---:|---|---:|---:|---|---|"]
                for r in orows:
                    if r.estimate is None:
                        est = f"not estimable: {r.not_estimable}"
                    else:
                        est = f"{r.measure} {r.estimate:.{digits}f} [{r.ci_low:.{digits}f}, {r.ci_high:.{digits}f}]"
                    i2 = "" if r.i2 is None else f"{r.i2:.0f}"
                    t2 = "" if r.tau2 is None else f"{r.tau2:.3f}"
                    note = "; ".join(x for x in (r.description, r.note) if x)
                    lines.append(f"| {r.analysis} | {r.subgroup} | {r.k} | {r.patients} | {est} | {i2} | {t2} | "
                                 f"{', '.join(r.studies)} | {note} |")
                lines.append("")
            if skipped:
                lines += ["Not analysed:", ""] + [f"- {o}: {w}" for o, w in skipped] + [""]
        return "\n".join(lines)

    def summary(self) -> str:
        """Headline lines: per question and outcome, the main estimate, the leave-one-out range and the
        early/late timepoint subsets."""
        out = []
        titles = dict(self.questions)
        for qid in [q for q, _ in self.questions]:
            rows = self.question_rows(qid)
            if not rows:
                continue
            out.append(f"{titles.get(qid, qid)} [{qid}]")
            for oid in dict.fromkeys(r.outcome for r in rows):
                orows = [r for r in rows if r.outcome == oid]
                main = orows[0]
                if main.estimate is None:
                    out.append(f"  - {main.outcome_label}: not estimable ({main.not_estimable})")
                    continue
                s = f"  - {main.outcome_label}: {_est(main)} (k={main.k})"
                loo = [r for r in orows if r.analysis == "leave-one-out" and r.estimate is not None]
                if loo:
                    s += f"; leave-one-out {min(r.estimate for r in loo):.2f} to {max(r.estimate for r in loo):.2f}"
                for r in orows:
                    if r.analysis == "timepoint" and r.subgroup.startswith("window"):
                        s += f"; {r.subgroup}: " + (_est(r) + f" (k={r.k})" if r.estimate is not None else "not estimable")
                out.append(s)
        return "\n".join(out)


def _est(r: SensitivityRow) -> str:
    return f"{r.measure} {r.estimate:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]"


# ----------------------------------------------------------------------------- variants


@dataclass
class _Variant:
    analysis: str
    subgroup: str
    description: str
    trials: list  # TrialRow, analysed
    method: str
    test: str
    empty_reason: str = ""
    note: str = ""
    model_label: Optional[str] = None


def _drugs(ev: EvidenceBase, dec: Optional[StudyDecision]) -> frozenset[str]:
    if dec is None:
        return frozenset()
    s = ev.study(dec.study)
    regs = [a.regimen for a in s.arms if a.id in dec.intervention_arms]
    return frozenset().union(*(COMPONENTS.get(r, frozenset()) & CNI_DRUGS for r in regs)) if regs else frozenset()


def _asian(ev: EvidenceBase, sid: str) -> bool:
    txt = _setting_of(ev.study(sid)).lower()
    return bool(txt) and any(h in txt for h in ASIAN_COUNTRY_HINTS)


def _setting_text(ev: EvidenceBase, sid: str) -> str:
    s = ev.study(sid)
    return s.setting.value if s.setting else "setting not stated"


def _tp(t: TrialRow) -> str:
    return "timepoint not stated" if t.timepoint_weeks is None else f"{t.timepoint_weeks:g} wk"


def _reanswer(ev: EvidenceBase, a: Answer, spec, decisions=None) -> OutcomeAnswer:
    """The answer machinery for one outcome spec (and optionally other arm decisions), selection unchanged."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return answer_outcome(ev, a, spec, decisions)


def _record_arms(ev: EvidenceBase, t: TrialRow) -> list[str]:
    s = ev.study(t.study)
    where = {r.id: r.arm for r in s.outcomes}
    where.update({r.id: r.arm for r in s.adverse_events})
    return list(dict.fromkeys(where[r] for r in t.records if r in where))


def _variants(ev: EvidenceBase, a: Answer, o: OutcomeAnswer, method: str, test: str) -> list[_Variant]:
    plan = a.question.plan
    tr = list(o.analysed)
    V: list[_Variant] = []
    k = len(tr)
    # leave-one-out
    if k == 1:
        V.append(_Variant("leave-one-out", f"omitting {tr[0].study}", "", [], method, test,
                          "k = 1: omitting the only analysed trial leaves none"))
    else:
        for t in tr:
            V.append(_Variant("leave-one-out", f"omitting {t.study}", f"{t.study} ({t.label}) left out",
                              [x for x in tr if x is not t], method, test))
    # timepoint (remission outcomes)
    spec = o.spec
    if spec.kind == "efficacy" and set(spec.endpoints) & REMISSION_ENDPOINTS and getattr(spec, "timing", "") != "long term":
        tps = "; ".join(f"{t.study} {_tp(t)}" for t in tr)
        early = [t for t in tr if t.timepoint_weeks is not None and t.timepoint_weeks <= EARLY_WEEKS]
        late = [t for t in tr if t.timepoint_weeks is not None and t.timepoint_weeks > EARLY_WEEKS]
        nots = [t.study for t in tr if t.timepoint_weeks is None]
        extra = f"; in neither: {', '.join(nots)} (timepoint not stated)" if nots else ""
        V.append(_Variant("timepoint", f"as analysed: <= {EARLY_WEEKS:g} wk",
                          f"analysed trials assessed at <= {EARLY_WEEKS:g} weeks (timepoints: {tps}){extra}", early,
                          method, test, f"no analysed trial assessed at <= {EARLY_WEEKS:g} weeks (timepoints: {tps})"))
        V.append(_Variant("timepoint", f"as analysed: > {EARLY_WEEKS:g} wk",
                          f"analysed trials assessed after {EARLY_WEEKS:g} weeks (timepoints: {tps}){extra}", late,
                          method, test, f"no analysed trial assessed after {EARLY_WEEKS:g} weeks (timepoints: {tps})"))
        lo, hi = spec.window.min_weeks, spec.window.max_weeks
        windows = (
            (f"window <= {EARLY_WEEKS:g} wk (re-answered)", Window(min_weeks=lo, max_weeks=EARLY_WEEKS),
             f"question re-answered with the window {Window(min_weeks=lo, max_weeks=EARLY_WEEKS).text()} "
             f"(each included trial's {spec.prefer} result up to {EARLY_WEEKS:g} weeks)"),
            (f"window > {EARLY_WEEKS:g} wk (re-answered)", Window(min_weeks=EARLY_WEEKS + 1e-6, max_weeks=hi),
             f"question re-answered with the window after {EARLY_WEEKS:g}" + (f" to {hi:g} weeks" if hi is not None else " weeks")
             + f" (each included trial's {spec.prefer} result after {EARLY_WEEKS:g} weeks)"),
        )
        for name, win, desc in windows:
            oa = _reanswer(ev, a, spec.model_copy(update={"window": win}))
            got = list(oa.analysed)
            desc2 = desc + (": " + "; ".join(f"{t.study} {_tp(t)}" for t in got) if got else "")
            note = "; ".join(n for n in oa.notes if "approximate" in n or "combined" in n)
            V.append(_Variant("timepoint", name, desc2, got, method, test,
                              f"{oa.not_estimable or 'no included trial reports it'} in this window", note))
    # population
    asian = [t for t in tr if _asian(ev, t.study)]
    other = [t for t in tr if not _asian(ev, t.study)]
    V.append(_Variant("population", "single Asian country",
                      "; ".join(f"{t.study}: {_setting_text(ev, t.study)}" for t in asian),
                      asian, method, test, "no analysed trial was conducted in a single Asian country"))
    V.append(_Variant("population", "multinational or other",
                      "; ".join(f"{t.study}: {_setting_text(ev, t.study)}" for t in other),
                      other, method, test, "every analysed trial was conducted in a single Asian country"))
    # CNI type
    decs = {d.study: d for d in a.decisions}
    q_drugs = sorted(frozenset().union(*(COMPONENTS[r] & CNI_DRUGS for r in a.question.intervention.regimens)))
    if len(q_drugs) > 1:
        for drug in q_drugs:
            sub = [t for t in tr if _drugs(ev, decs.get(t.study)) == {drug}]
            V.append(_Variant("CNI type", f"{CNI_NAMES[drug]} only", f"trials whose intervention arm is {CNI_NAMES[drug]}-based",
                              sub, method, test, f"no analysed {CNI_NAMES[drug]} trial"))
    # dose: a trial with several intervention arms combined, one arm at a time
    for t in tr:
        if t.combined_arms <= 1:
            continue
        d = decs[t.study]
        arms = [x for x in _record_arms(ev, t) if x in d.intervention_arms] or list(d.intervention_arms)
        st = ev.study(t.study)
        lab = {x.id: x.label for x in st.arms}
        for arm in arms:
            one = StudyDecision(d.study, d.label, True, d.reason, (arm,), d.comparator_arms)
            oa = _reanswer(ev, a, spec, (one,))
            got = [x for x in oa.analysed if x.study == t.study]
            if not got:
                V.append(_Variant("dose", f"{t.study}: {lab.get(arm, arm)} only", "", [], method, test,
                                  f"{t.study}: {lab.get(arm, arm)} vs comparator not estimable ({oa.not_estimable})"))
                continue
            g = got[0]
            note = "" if g.timepoint_weeks == t.timepoint_weeks else f"{t.study} arm result at {_tp(g)} (combined: {_tp(t)})"
            V.append(_Variant("dose", f"{t.study}: {lab.get(arm, arm)} only",
                              f"{t.study} {g.events_int}/{g.n_int} ({lab.get(arm, arm)}) vs {g.events_ctrl}/{g.n_ctrl} "
                              f"instead of the combined {t.events_int}/{t.n_int}; other trials unchanged",
                              [g if x is t else x for x in tr], method, test, note=note))
    # count policy
    approx = [t.study for t in tr if t.approximate]
    V.append(_Variant("count policy", "strict: exact counts only",
                      (f"approximate counts left out: {', '.join(approx)}" if approx else "no analysed trial has an approximate count (same trials as main)"),
                      [t for t in tr if not t.approximate], method, test,
                      f"every analysed trial's count is approximate ({', '.join(approx)})"))
    sec = [t.study for t in tr if t.source_types and all(s in SECONDARY_TYPES for s in t.source_types)]
    V.append(_Variant("count policy", "primary sources only",
                      (f"left out (counts only from {' / '.join(SECONDARY_TYPES)}): {', '.join(sec)}" if sec
                       else "no analysed trial rests only on news or secondary summaries (same trials as main)"),
                      [t for t in tr if t.study not in sec], method, test,
                      f"every analysed trial's counts rest only on news or secondary summaries ({', '.join(sec)})"))
    # estimator
    if k == 1:
        V.append(_Variant("estimator", "FE, REML, DL", "single trial: not pooled; every estimator gives its own estimate",
                          tr, "FE", "z", model_label="single trial"))
    else:
        for m, name in ESTIMATORS:
            V.append(_Variant("estimator", name, f"all analysed trials, {name}" + (" (the plan)" if m == plan.method else ""),
                              tr, m, plan.test if m != "FE" else "z"))
    return V


def _fit(variants: Sequence[_Variant], measure: str) -> list[Optional[dict]]:
    """Fit every variant with k >= 1: one ``(B, k)`` batch per (estimator, test)."""
    from lnsynth.effects import effect_sizes
    from lnsynth.pairwise import meta_analysis

    cells = sorted({(t.events_int, t.n_int, t.events_ctrl, t.n_ctrl) for v in variants for t in v.trials})
    out: list[Optional[dict]] = [None] * len(variants)
    if not cells:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        es = effect_sizes(measure, events_treat=[c[0] for c in cells], n_treat=[c[1] for c in cells],
                          events_ctrl=[c[2] for c in cells], n_ctrl=[c[3] for c in cells])
    yv = {c: (float(y), float(v)) for c, y, v in zip(cells, es.yi, es.vi)}
    groups: dict[tuple[str, str], list[int]] = {}
    for i, v in enumerate(variants):
        if v.trials:
            groups.setdefault((v.method, v.test), []).append(i)

    def back(x: float) -> float:
        return back_value(measure, x)

    for (m, test), idx in groups.items():
        K = max(len(variants[i].trials) for i in idx)
        Y = np.full((len(idx), K), np.nan)
        Vv = np.full((len(idx), K), np.nan)
        for b, i in enumerate(idx):
            for j, t in enumerate(variants[i].trials):
                Y[b, j], Vv[b, j] = yv[(t.events_int, t.n_int, t.events_ctrl, t.n_ctrl)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = meta_analysis(yi=Y, vi=Vv, method=m, test=test, ci_tau2=False)
        for b, i in enumerate(idx):
            r = res[b]
            kk = len(variants[i].trials)
            out[i] = {"estimate": back(r.estimate), "ci_low": back(r.ci_low), "ci_high": back(r.ci_high),
                      "pvalue": float(r.pvalue), "i2": float(r.i2) if kk > 1 else None,
                      "tau2": float(r.tau2) if kk > 1 else None,
                      "model": "single trial" if kk == 1 else (m if test == "z" else f"{m}, {test}")}
    return out


def _outcome_rows(ev: EvidenceBase, a: Answer, o: OutcomeAnswer, method: Optional[str], test: Optional[str]) -> list[SensitivityRow]:
    plan = a.question.plan
    base = dict(question=a.id, outcome=o.spec.id, outcome_label=o.spec.label, kind=o.spec.kind, measure=o.measure)
    d = o.to_dict()
    main = SensitivityRow(
        **base, analysis="main", subgroup="answer", k=o.k, patients=d["patients"],
        description=f"the answer: {o.spec.window.text() if o.spec.kind == 'efficacy' else 'as reported'}, "
                    f"{plan.model}, {plan.tau2}, test {plan.test}; method as answered: {o.method} ({o.method_reason})",
        model=d.get("model", "") or "", estimate=d["estimate"], ci_low=d["ci_low"], ci_high=d["ci_high"],
        pvalue=d.get("pvalue"), i2=d.get("i2") if o.k > 1 else None, tau2=d.get("tau2") if o.k > 1 else None,
        studies=tuple(t.study for t in o.analysed), not_estimable=o.not_estimable,
        note="; ".join(o.notes) if o.k else "")
    if o.k == 0:
        return [main]
    m = method or plan.method
    t = test or plan.test
    vs = _variants(ev, a, o, m, t)
    fits = _fit(vs, o.measure)
    rows = [main]
    for v, f in zip(vs, fits):
        kk = len(v.trials)
        common = dict(**base, analysis=v.analysis, subgroup=v.subgroup, description=v.description, k=kk,
                      patients=sum(x.n_int + x.n_ctrl for x in v.trials), studies=tuple(x.study for x in v.trials),
                      note=v.note)
        if f is None:
            rows.append(SensitivityRow(**common, not_estimable=v.empty_reason or "no trial left"))
        else:
            if v.model_label:
                f = {**f, "model": v.model_label}
            rows.append(SensitivityRow(**common, **f))
    return rows


def _question_ids(question_ids) -> list[str]:
    if question_ids is None:
        return [q.id for q in load_questions()]
    if isinstance(question_ids, str):
        question_ids = [question_ids]
    ids = [x.strip() for q in question_ids for x in str(q).split(",") if x.strip()]
    for qid in ids:
        get_question(qid)  # QuestionError with the known ids
    return list(dict.fromkeys(ids))


def run_sensitivity(ev: EvidenceBase, question_ids: Union[str, Sequence[str], None] = None,
                    method: Optional[str] = None, test: Optional[str] = None) -> SensitivityReport:
    """Sensitivity analyses of the answers to catalogue questions.

    Parameters
    ----------
    ev : the loaded evidence (:func:`lnsynth.evidence.load_evidence`).
    question_ids : ids of the catalogue (a list, or a comma-separated string); default all.
    method : tau² estimator for the refitted variants (default: each question's plan).
    test : ``"z"`` or ``"knha"`` for the refitted variants (default: each question's plan).

    Returns
    -------
    SensitivityReport

    Raises
    ------
    lnsynth.analyses.questions.QuestionError
        Unknown question id.
    ValueError
        Unknown ``method`` or ``test``.
    """
    from lnsynth.pairwise import METHODS, TESTS

    if method is not None:
        if method.upper() not in METHODS or method.upper() in ("MH", "PETO"):
            raise ValueError(f"method: unknown or unsupported estimator {method!r}; valid: "
                             f"{', '.join(m for m in METHODS if m not in ('MH', 'PETO'))}")
        method = method.upper()
    if test is not None:
        if test.lower() not in TESTS:
            raise ValueError(f"test: unknown test {test!r}; valid: {', '.join(TESTS)}")
        test = test.lower()
    rows: list[SensitivityRow] = []
    skipped: list[tuple[str, str, str]] = []
    titles = []
    cur: dict = {}
    for qid in _question_ids(question_ids):
        a = answer(ev, qid)
        cur = a.evidence
        titles.append((qid, a.question.title))
        for o in a.outcomes:
            if o.spec.kind == "continuous":
                skipped.append((qid, o.spec.id, f"continuous arm-level summaries shown side by side: {o.not_estimable}"))
                continue
            if o.k >= 2 and o.result is None:
                skipped.append((qid, o.spec.id, f"not pooled by the answer's sparse-data rule: {o.method_reason}"))
                continue
            if o.spec.kind == "adverse event" and o.k < 2:
                why = (f"adverse-event outcome with k = {o.k}: analysed only with at least 2 trials"
                       + (f" ({o.not_estimable})" if o.not_estimable else ""))
                skipped.append((qid, o.spec.id, why))
                continue
            rows += _outcome_rows(ev, a, o, method, test)
    return SensitivityReport(tuple(rows), tuple(skipped), tuple(titles), method, test, dict(cur))


__all__ = ["ANALYSES", "EARLY_WEEKS", "FRAME_COLUMNS", "SensitivityReport", "SensitivityRow", "run_sensitivity"]
