"""What would change the answer: the smallest new trial that moves a question's conclusion across its
decision threshold (issue 22, item 5; ``lnsynth threshold ID``).

For a question's headline outcome (:attr:`lnsynth.analyses.questions.Question.headline_outcome`)
and each of its thresholds on a field of the summary-of-findings row (the question's declared
``thresholds``, else the default: the 95% CI against the null), a hypothetical two-arm trial with
``n`` patients per arm is added to the trials the question's own pipeline analysed
(:func:`lnsynth.analyses.answer.answer`: same selection, counts, sparse-data rule
(:func:`lnsynth.analyses.outcome_rules.choose_method`), model, tau² estimator and test), and the
pooled row is recomputed.  ``new_trial_n`` is the smallest ``n`` per arm for which the field lies on
the other side of the threshold.

The new trial's control arm has the answer's assumed control risk (``control_risk``: the median
control-arm risk of the included trials unless the question declares one); its events are
``round(risk * n)`` in each arm; an ``n`` so small that an arm has no events or only events is not
counted (its zero cell would switch the pipeline's sparse-data rule, an artefact, not a result).
Its result is, in this order, the first that can cross:

1. **no effect** (RR or OR 1): the usual question "how large a null trial would overturn a shown
   effect (or bring the estimate below the MID)?";
2. for the CI-against-the-null threshold, **the opposite threshold**: the effect at the question's
   declared minimal important difference (a ``per1000*`` threshold, converted at the control risk)
   when it lies on the crossing side;
3. **the current pooled estimate** (how large a trial confirming the current estimate would make it
   conclusive).

``n`` is searched on a doubling grid up to :data:`N_MAX` per arm and then bisected (the pooled row
need not be monotone in ``n`` under random effects: the search reports the smallest crossing ``n``
in the first bracket that crosses).  Under random effects one trial's weight is capped by the
between-trial variance, so no finite ``n`` may exist: ``new_trial_n`` is then ``None`` with a
``note`` saying why.
"""
from __future__ import annotations

import warnings
from dataclasses import replace as _dc_replace
from typing import Any, Optional

from lnsynth import registry
from lnsynth.evidence.load import EvidenceBase

from .answer import OutcomeAnswer, TrialRow, answer, jsonable
from .grade import intervention_risk
from .outcome_rules import choose_method
from .questions import Question, Threshold

__all__ = ["N_MAX", "network_thresholds", "network_to_text", "new_trial_thresholds", "refit_with", "to_text"]

#: the largest trial searched, patients per arm
N_MAX = 50_000
_NEW = "new trial (hypothetical)"


def _new_row(template: TrialRow, n: int, control_risk: float, effect: float, measure: str) -> TrialRow:
    """The hypothetical two-arm trial: ``n`` per arm, control risk ``control_risk``, relative ``effect``."""
    rc = min(max(control_risk, 0.0), 1.0)
    ri = min(max(intervention_risk("OR" if measure == "OR" else "RR", rc, effect), 0.0), 1.0)
    return _dc_replace(template, study=_NEW, label=_NEW, events_int=int(round(ri * n)), n_int=int(n),
                       events_ctrl=int(round(rc * n)), n_ctrl=int(n), derived=False, approximate=False,
                       combined_arms=1, sources=(), source_types=(), records=(), rob="low", estimate=None,
                       ci_low=None, ci_high=None, weight=None, in_model=True, note="", continuation_of="")


def refit_with(q: Question, oa: OutcomeAnswer, extra: list[TrialRow]) -> Optional[dict]:
    """The outcome's pooled row with ``extra`` trials added to the analysed ones, by the pipeline's model.

    Returns ``{measure, method, estimate, ci_low, ci_high, per1000, per1000_low, per1000_high}``
    (ratio scale; ``per1000*`` at the answer's control risk) or ``None`` when the pipeline would not
    pool (e.g. two sparse trials pointing in opposite directions).
    """
    from lnsynth.pairwise import effect_sizes, meta_analysis

    rows = list(oa.analysed) + [
        t for t in extra if not (registry.is_ratio(q.plan.measure) and t.events_int == 0 and t.events_ctrl == 0)]
    method, _ = choose_method(rows, q.plan.method)
    if method == "none" and len(rows) > 1 or not rows:
        return None
    measure = "OR" if method == "Peto" else q.plan.measure
    es = effect_sizes(measure, labels=[f"{t.study}#{i}" for i, t in enumerate(rows)],
                      events_treat=[t.events_int for t in rows], n_treat=[t.n_int for t in rows],
                      events_ctrl=[t.events_ctrl for t in rows], n_ctrl=[t.n_ctrl for t in rows])
    fit = {"none": "FE", "MH": "MH", "Peto": "PETO"}.get(method, q.plan.method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = meta_analysis(es, method=fit, test=q.plan.test if method not in ("none", "MH", "Peto") else "z")
    tmp = OutcomeAnswer(oa.spec, measure, tuple(rows), (), (), res)
    est = tmp._back(res.estimate)
    lo, hi = tmp.conf_int()
    out = {"measure": measure, "method": method, "estimate": est, "ci_low": lo, "ci_high": hi,
           "per1000": None, "per1000_low": None, "per1000_high": None}
    cr = oa.control_risk
    if cr is not None and (registry.is_ratio(measure) or measure == "RD") and None not in (est, lo, hi):
        out.update({k: 1000 * (intervention_risk(measure, cr, v) - cr)
                    for k, v in (("per1000", est), ("per1000_low", lo), ("per1000_high", hi))})
    return out


def _current(oa: OutcomeAnswer) -> dict:
    d = oa.to_dict()
    return {k: d.get(k) for k in ("measure", "k", "estimate", "ci_low", "ci_high", "per1000", "per1000_low",
                                  "per1000_high", "certainty", "control_risk")}


def _effect_at_per1000(measure: str, cr: float, per1000: float) -> Optional[float]:
    """The relative effect (RR or OR) giving ``per1000`` more events per 1000 at control risk ``cr``."""
    ri = cr + per1000 / 1000
    if not 0 < ri < 1 or not 0 < cr < 1:
        return None
    return ri / cr if measure == "RR" else (ri / (1 - ri)) / (cr / (1 - cr))


def _candidates(q: Question, oa: OutcomeAnswer, t: Threshold, cur: dict) -> list[tuple[str, float]]:
    measure = cur.get("measure") or q.plan.measure
    out = [("no effect (RR 1)" if measure == "RR" else f"no effect ({measure} 1)", 1.0)]
    cr = oa.control_risk
    if t.field in ("ci_low", "ci_high", "estimate") and cr is not None:
        for m in q.thresholds_for(oa.spec.id):
            if m.field and m.field.startswith("per1000") and m.value:
                eff = _effect_at_per1000(measure, cr, float(m.value))
                if eff is not None:
                    out.append((f"the opposite threshold: the MID ({m.value:+g} per 1000, {measure} {eff:.3g})", eff))
    if cur.get("estimate") not in (None, 1.0):
        out.append((f"the current pooled estimate ({measure} {cur['estimate']:.3g})", float(cur["estimate"])))
    return out


def _value(q: Question, oa: OutcomeAnswer, t: Threshold, n: int, effect: float, measure: str) -> Optional[float]:
    new = _new_row(oa.analysed[0], n, float(oa.control_risk), effect, measure)
    if any(x in (0, n) for x in (new.events_int, new.events_ctrl)):
        return None  # a trial too small to have events and non-events in each arm: not a result that could count
    row = refit_with(q, oa, [new])
    return None if row is None else row.get(t.field)


def _smallest_n(q: Question, oa: OutcomeAnswer, t: Threshold, above: bool, effect: float,
                measure: str) -> Optional[int]:
    """Smallest n per arm (grid then bisection) for which the field is on the other side of the threshold."""
    def crosses(n: int) -> bool:
        v = _value(q, oa, t, n, effect, measure)
        return v is not None and (v >= t.value) != above

    lo, n = 1, 2
    while True:
        if crosses(n):
            hi = n
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if crosses(mid):
                    hi = mid
                else:
                    lo = mid
            return hi
        if n >= N_MAX:
            return None
        lo, n = n, min(n * 2, N_MAX)


def _field_text(field: str) -> str:
    return {"ci_low": "lower 95% limit", "ci_high": "upper 95% limit", "estimate": "point estimate",
            "per1000": "absolute effect per 1000", "per1000_low": "lower 95% limit of the absolute effect per 1000",
            "per1000_high": "upper 95% limit of the absolute effect per 1000"}[field]


def _thresholds(q: Question, oa: OutcomeAnswer) -> list[Threshold]:
    decl = [t for t in q.thresholds_for(oa.spec.id) if t.field is not None]
    if decl:
        return decl
    benefit_higher = oa.spec.benefit == "higher" and not oa.spec.harm
    field = "ci_low" if benefit_higher else "ci_high"
    return [Threshold(outcome=oa.spec.id, field=field, value=1.0,
                      label=f"default: {_field_text(field)} of the {oa.measure} crosses 1 (the CI against the null)")]


def new_trial_thresholds(ev: EvidenceBase, question_id: str) -> dict:
    """The smallest new trial that would move the question's headline conclusion across each threshold.

    Returns
    -------
    dict
        ``{question, outcome, outcome_label, measure, assumed_control_risk, control_risk_source,
        current, results: [{threshold, current, new_trial_n, direction, trial_result, after, note}]}``.

    Raises
    ------
    lnsynth.analyses.questions.QuestionError
        Unknown question id.
    """
    a = answer(ev, question_id)
    q = a.question
    spec = q.headline_outcome
    oa = a.outcome(spec.id)
    cur = _current(oa)
    out: dict[str, Any] = {"question": q.id, "outcome": spec.id, "outcome_label": spec.label,
                           "measure": cur["measure"], "assumed_control_risk": oa.control_risk,
                           "control_risk_source": oa.control_risk_source, "n_max": N_MAX, "current": cur,
                           "results": []}
    for t in _thresholds(q, oa):
        th = {"field": t.field, "value": t.value, "label": t.name(), "assumption": t.assumption}
        now = cur.get(t.field)
        res: dict[str, Any] = {"outcome": spec.id, "threshold": th, "current": now, "new_trial_n": None,
                               "direction": None, "trial_result": None, "trial_effect": None, "after": None,
                               "note": None}
        if now is None or oa.control_risk is None or not oa.analysed:
            res["note"] = f"not estimable now ({oa.not_estimable or 'no pooled estimate or control risk'}): no threshold analysis"
            out["results"].append(res)
            continue
        above = now >= t.value
        res["direction"] = (f"{_field_text(t.field)} from {now:.4g} ({'at or above' if above else 'below'} "
                            f"{t.value:g}) to {'below' if above else 'at or above'} {t.value:g}")
        tried = []
        for what, effect in _candidates(q, oa, t, cur):
            n = _smallest_n(q, oa, t, above, effect, cur["measure"])
            tried.append(what)
            if n is not None:
                after = refit_with(q, oa, [_new_row(oa.analysed[0], n, float(oa.control_risk), effect, cur["measure"])])
                res.update(new_trial_n=n, trial_result=what, trial_effect=effect, after=after,
                           note=f"a two-arm trial of {n} patients per arm (total {2 * n}) at control risk "
                                f"{oa.control_risk:.3f} showing {what}")
                break
        else:
            res["note"] = (f"no single new trial up to {N_MAX} per arm showing {' or '.join(tried)} moves the "
                           f"{_field_text(t.field)} across {t.value:g}" +
                           (" (random effects: the between-trial variance caps one trial's weight)"
                            if oa.method not in ("MH", "Peto", "none") else ""))
        out["results"].append(res)
    return jsonable(out)


def to_text(d: dict) -> str:
    """A plain-text rendering of :func:`new_trial_thresholds`."""
    c = d["current"]
    fmt = (lambda x: "n/a" if x is None else f"{x:.3g}")
    lines = [f"{d['question']}: {d['outcome_label']}",
             f"  now: {d['measure']} {fmt(c['estimate'])} ({fmt(c['ci_low'])} to {fmt(c['ci_high'])}), k={c['k']}, "
             f"certainty {c['certainty']}; assumed control risk {fmt(d['assumed_control_risk'])} ({d['control_risk_source']})"]
    for r in d["results"]:
        lines.append(f"  - {r['threshold']['label']}")
        if r["direction"]:
            lines.append(f"    moves: {r['direction']}")
        lines.append(f"    smallest new trial: {r['new_trial_n'] if r['new_trial_n'] is not None else 'none'}"
                     + (f" per arm, showing {r['trial_result']}" if r["new_trial_n"] is not None else ""))
        if r["new_trial_n"] is None and r["note"]:
            lines.append(f"    {r['note']}")
        if r["threshold"].get("assumption"):
            lines.append(f"    (assumption: {r['threshold']['assumption']})")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- network (lnsynth threshold --network)
def network_thresholds(ev: EvidenceBase, outcome: str, method: str = "REML", small_values: Optional[str] = None,
                       approximate: bool = False) -> dict:
    """Phillippo threshold analysis of the evidence base's network for ``outcome`` (study and contrast level).

    The network is the one ``lnsynth nma --outcome`` fits (:func:`lnsynth.analyses.network_data.arm_level_data`,
    log OR, reference :data:`~lnsynth.analyses.network_data.REFERENCE_NODE`); ``small_values``
    defaults to ``"bad"`` (higher is better) for remission and response outcomes, else ``"good"``.

    Raises
    ------
    ValueError
        Fewer than two studies with usable counts, or a network the model cannot fit.
    """
    from lnsynth.network.threshold import contrast_thresholds, study_thresholds

    from .network_evidence import evidence_network

    sv = small_values or ("bad" if any(w in outcome.lower() for w in ("remission", "response")) else "good")
    net = evidence_network(ev, outcome, approximate=approximate, method=method.upper(), raise_errors=True)
    if net.data.k < 2:
        raise ValueError(f"--network {outcome!r}: fewer than two studies with usable counts")
    if net.fit is None:
        raise ValueError(f"--network {outcome!r}: {net.error}")
    d, fit = net.data, net.fit
    s, c = study_thresholds(fit, sv), contrast_thresholds(fit, sv)
    return jsonable({"outcome": outcome, "measure": "OR", "scale": "log OR", "method": fit.method, "tau2": float(fit.tau2),
            "reference": fit.reference, "small_values": sv, "best": s.best,
            "relative_effects": {t: float(e) for t, e in zip(fit.params, fit.estimate)},
            "study": s.to_dict()["rows"], "contrast": c.to_dict()["rows"],
            "notes": [f"{x}: excluded ({w})" for x, w in d.excluded] + list(s.notes) + list(c.notes[1:])})


def network_to_text(d: dict) -> str:
    """Plain text of :func:`network_thresholds`."""
    f = (lambda x: "none" if x is None else f"{x:+.3f}")
    lines = [f"network threshold analysis: {d['outcome']} ({d['scale']}, {d['method']}); best now: {d['best']} "
             f"({'higher' if d['small_values'] == 'bad' else 'lower'} is better)"]
    for lvl in ("study", "contrast"):
        lines.append(f"{lvl} level (change before the best treatment changes -> new best):")
        for r in d[lvl]:
            lines.append(f"  {r['label']}: estimate {r['estimate']:+.3f}; lower {f(r['lower'])} -> {r['lower_best'] or '-'}; "
                         f"upper {f(r['upper'])} -> {r['upper_best'] or '-'}" + ("  [within 95% CI]" if r["threshold_within_ci"] else ""))
    lines += [f"- note: {n}" for n in d["notes"]]
    return "\n".join(lines) + "\n"
