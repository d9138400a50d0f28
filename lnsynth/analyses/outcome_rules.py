"""Declared rules of the answer pipeline: timepoints, continuation reports, sparse-data methods.

Three rules that :mod:`lnsynth.analyses.answer` applies to every outcome row of every question,
each stated as text on the row it shaped:

**Timepoint** (:meth:`lnsynth.analyses.questions.OutcomeSpec.timepoint_rule`). Induction rows are
answered at the *end of induction*: the result the trial marks as end of induction, else the
result at its stated induction duration, else the latest induction-phase result in the window;
a result after a different maintenance (Zavada 2010 at 18 months) answers only the long-term rows.

**Design** (:func:`continuation_decision`). A continuation, maintenance-phase, extension or
follow-up report keeps the randomised comparison it came from: AURORA 2 (continuation of
AURORA 1) and Zhang 2017 (maintenance phase of Liu 2015) enter the questions their parent trial
answers, mapped onto the parent's arms, and contribute to the long-term rows only (the
indirectness is stated by :mod:`lnsynth.analyses.grade`).

**Sparse data** (:func:`choose_method`; Cochrane Handbook 10.4.4). A random-effects interval is
not used when the analysed trials have fewer than :data:`SPARSE_EVENTS` events in total, any trial
has a zero cell, or the median control-arm risk is below :data:`LOW_RISK`; such rows are pooled by
the Mantel-Haenszel risk ratio (fixed effect, no continuity correction), by the Peto odds ratio when
events are rare (pooled risk below 1%) and arms balanced, or not at all (method ``none``: trials side
by side) when two trials point in opposite directions with few events.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

from lnsynth.stats import Z95

#: Links that make a report a later part of another randomised trial.
LONG_TERM_LINKS = ("continuation_of", "maintenance_phase_of", "extension_of", "follow_up_of")

SPARSE_EVENTS = 30
LOW_RISK = 0.05
RARE_RISK = 0.01

SPARSE_RULE = (f"sparse-data rule (Cochrane Handbook 10.4.4): a random-effects (REML) interval is used only when "
               f"the analysed trials have >= {SPARSE_EVENTS} events in total, no zero cell and a median control "
               f"risk >= {LOW_RISK:.0%}; otherwise Mantel-Haenszel risk ratio (fixed effect, no continuity "
               f"correction), Peto odds ratio when the pooled risk is < {RARE_RISK:.0%} and arms are balanced, "
               f"and no pooling (trials side by side) when two trials point in opposite directions with "
               f"< {SPARSE_EVENTS} events; a single trial is its own estimate")

METHODS = ("REML", "MH", "Peto", "GLMM", "none")


def parent_link(study: Any) -> Optional[Any]:
    """The study's link to the randomised trial it continues (``None`` for an independent trial)."""
    for link in getattr(study, "links", ()) or ():
        if link.type in LONG_TERM_LINKS:
            return link
    return None


def map_arms(arms: list, parent_arms: list) -> dict:
    """Map a continuation's arms onto its parent's arms: the same regimen first, then the one
    remaining arm onto the one remaining parent arm. Returns ``{arm id: parent arm}``."""
    out, used = {}, set()
    for a in arms:
        hit = [p for p in parent_arms if p.regimen == a.regimen and p.id not in used]
        if len(hit) == 1:
            out[a.id] = hit[0]
            used.add(hit[0].id)
    rest = [a for a in arms if a.id not in out]
    prest = [p for p in parent_arms if p.id not in used]
    if len(rest) == 1 and len(prest) == 1:
        out[rest[0].id] = prest[0]
    return out


def end_of_induction(study: Any) -> tuple[Optional[float], str]:
    """Weeks at which the trial's induction ends, and where that comes from.

    The result the trial marks as end of induction (timepoint qualifier), else its stated induction
    duration (a fact ``duration of induction``); ``(None, "")`` when neither is stored.
    """
    marked = [o.timepoint.weeks for o in study.outcomes
              if o.timepoint is not None and "end of induction" in (o.timepoint.qualifier or "").lower()]
    if marked:
        return max(marked), "result marked end of induction"
    for f in getattr(study, "facts", ()) or ():
        if re.search(r"(duration of induction|induction duration)", f.what, re.I):
            unit = (f.quantity.unit or "").lower()
            v = float(f.quantity.value)
            w = v * 52.0 / 12.0 if unit.startswith("month") else v * 52.0 if unit.startswith("year") else v
            return w, f"stated induction duration ({f.quantity.text} {f.quantity.unit})"
    return None, ""


def efficacy_calls(spec: Any, study: Any, continuation: bool) -> tuple[list[dict], str]:
    """The ``pairwise_data`` keyword sets that select this trial's timepoint for row ``spec``
    (the latest result over the sets is used), and a note on the timepoint chosen."""
    w = spec.window
    if spec.timing == "end of induction":
        e, where = end_of_induction(study)
        hi = w.max_weeks
        if e is not None:
            hi = min(hi, e + 1.0) if hi is not None else e + 1.0
        note = f"end of induction at {e:g} weeks ({where})" if e is not None else "end of induction not stated: latest induction-phase result"
        return [dict(min_weeks=w.min_weeks, max_weeks=hi, phases=("induction", "induction+maintenance"))], note
    if spec.timing == "long term":
        if continuation:
            return [dict()], "continuation report: its own timepoints"
        return [dict(min_weeks=w.min_weeks, max_weeks=w.max_weeks),
                dict(max_weeks=w.max_weeks, phases=("maintenance",))], "after induction"
    return [dict(min_weeks=w.min_weeks, max_weeks=w.max_weeks)], ""


def _log_rr(e1: int, n1: int, e2: int, n2: int) -> float:
    a, c = e1 + 0.5, e2 + 0.5
    return math.log((a / (n1 + 1.0)) / (c / (n2 + 1.0)))


def choose_method(rows: list, plan_method: str) -> tuple[str, str]:
    """The declared sparse-data rule (:data:`SPARSE_RULE`) applied to the analysed trial rows.

    Returns ``(method, reason)``: ``method`` is one of :data:`METHODS` (the plan's random-effects
    estimator is reported as ``REML`` when it is REML, else by its own name).
    """
    k = len(rows)
    if k == 0:
        return "none", "no trial with usable counts"
    if k == 1:
        return "none", "single trial: its own estimate, no pooling"
    events = sum(r.events_int + r.events_ctrl for r in rows)
    zero = any(x in (0, n) for r in rows for x, n in ((r.events_int, r.n_int), (r.events_ctrl, r.n_ctrl)))
    risks = sorted(r.events_ctrl / r.n_ctrl for r in rows if r.n_ctrl)
    med = risks[len(risks) // 2] if len(risks) % 2 else (risks[len(risks) // 2 - 1] + risks[len(risks) // 2]) / 2
    sparse = events < SPARSE_EVENTS or zero or med < LOW_RISK
    if not sparse:
        return plan_method, (f"{events} events, no zero cell, median control risk {med:.1%}: "
                             f"random effects ({plan_method}) as planned")
    why = "; ".join(x for x in (f"{events} events in total (< {SPARSE_EVENTS})" if events < SPARSE_EVENTS else "",
                                "a zero cell" if zero else "",
                                f"median control risk {med:.1%} (< {LOW_RISK:.0%})" if med < LOW_RISK else "") if x)
    signs = {math.copysign(1, _log_rr(r.events_int, r.n_int, r.events_ctrl, r.n_ctrl)) for r in rows
             if abs(_log_rr(r.events_int, r.n_int, r.events_ctrl, r.n_ctrl)) > 1e-12}
    if k == 2 and len(signs) == 2 and events < SPARSE_EVENTS:
        return "none", (f"sparse ({why}) and the two trials point in opposite directions: not pooled, "
                        f"trials shown side by side")
    n_all = sum(r.n_int + r.n_ctrl for r in rows)
    balanced = all(max(r.n_int, r.n_ctrl) <= 1.5 * min(r.n_int, r.n_ctrl) for r in rows)
    if events / n_all < RARE_RISK and balanced:
        return "Peto", f"sparse ({why}), pooled risk {events / n_all:.2%} < {RARE_RISK:.0%}, balanced arms: Peto odds ratio"
    return "MH", f"sparse ({why}): Mantel-Haenszel risk ratio (fixed effect), no random-effects interval"


def reported_row(one: Any, what: str, tspec: str, cspec: str, calls: list[dict]) -> Optional[dict]:
    """A trial that reports ``what`` as percentages only in both arms (a cumulative incidence, or
    sub-types), or as event rates per patient-time (e.g. Austin 2009's relapses per 100 patient-months):
    its latest pair in the row's window, to show side by side (never pooled: a rate has no count of
    patients, a cumulative incidence no denominator at risk)."""
    import pandas as pd

    from .selection import _matches, _spec

    of = one.outcomes_frame()
    if of.empty:
        return None
    of = of[(of["endpoint"] == what) & (of["percent"].notna() | of["rate"].notna())]
    ts, cs = _spec(tspec), _spec(cspec)
    best = None
    for kw in calls:
        f = of
        if kw.get("phases"):
            f = f[f["phase"].isin(kw["phases"])]
        if kw.get("min_weeks") is not None:
            f = f[f["timepoint_weeks"].isna() | (f["timepoint_weeks"] >= kw["min_weeks"])]
        if kw.get("max_weeks") is not None:
            f = f[f["timepoint_weeks"].isna() | (f["timepoint_weeks"] <= kw["max_weeks"])]
        if kw.get("min_weeks") is None:
            # a rate over the whole follow-up with no stated timepoint belongs to the long-term row only
            f = f[~(f["percent"].isna() & f["timepoint_weeks"].isna())]
        for tp, g in f.groupby(f["timepoint_weeks"].fillna(-1.0)):
            t = g[g.apply(lambda r: _matches(r, ts), axis=1)]
            c = g[g.apply(lambda r: _matches(r, cs), axis=1)]
            if t.empty or c.empty:
                continue
            if best is None or tp > best[0]:
                best = (tp, t, c)
    if best is None:
        return None
    tp, t, c = best
    def _value(r) -> str:
        if r.percent is not None and r.percent == r.percent:
            return f"{r.percent:g}%"
        return f"{r.rate:g} {r.rate_unit or 'per patient-time'}".rstrip()

    fmt = (lambda d: "; ".join(f"{r.arm_label}: {_value(r)}" + (f" ({r.label})" if isinstance(r.label, str) and r.label else "")
                               for r in d.itertuples()))
    rates = bool(pd.concat([t, c])["percent"].isna().any())
    return {"study": t["study"].iloc[0], "label": t["study_label"].iloc[0], "endpoint": what,
            "timepoint_weeks": None if tp < 0 else float(tp), "intervention": fmt(t), "comparator": fmt(c),
            "records": list(pd.concat([t, c])["outcome_id"]), "sources": sorted(set(pd.concat([t, c])["source"].dropna())),
            "reason": ("event rates per patient-time only (no count of patients): shown side by side, not pooled"
                       if rates else "percentages only (no count is derived from a cumulative incidence or from "
                       "sub-types of the endpoint): shown side by side, not pooled")}


def continuous_rows(sub: Any, spec: Any, decisions: Any) -> tuple[dict, list[dict]]:
    """Continuous rows (e.g. eGFR slope) stored as arm-level facts with 95% CIs: each trial's arms side by side
    with their mean difference (SE from each arm's CI, (hi - lo) / 3.92, independent arms); never pooled here."""
    dec = {d.study: d for d in decisions}
    excluded, reported = {}, []
    for st in sub.studies:
        d = dec.get(st.id)
        if d is None or (d.continuation_of and spec.timing != "long term"):
            continue
        got = None
        for pat in spec.facts:
            main = {f.arm: f for f in st.facts if f.arm and f.what.lower().startswith(pat.lower()) and "95% ci" not in f.what.lower()}
            ci = {(f.arm, "lo" if "lower" in f.what.lower() else "hi"): float(f.quantity.value) for f in st.facts
                  if f.arm and f.what.lower().startswith(pat.lower()) and "95% ci" in f.what.lower()}
            ia = [a for a in d.intervention_arms if a in main]
            ca = [a for a in d.comparator_arms if a in main]
            if len(ia) == 1 and len(ca) == 1:
                got = (pat, main[ia[0]], main[ca[0]], ci, ia[0], ca[0])
                break
        if got is None:
            excluded[st.id] = "not reported in the stored sources"
            continue
        pat, fi, fc, ci, a_i, a_c = got
        unit = fi.quantity.unit or ""

        def show(f, arm):
            lo, hi = ci.get((arm, "lo")), ci.get((arm, "hi"))
            return f"{f.quantity.text} {unit}" + (f" (95% CI {lo:g} to {hi:g})" if lo is not None and hi is not None else "")

        entry = {"study": st.id, "label": st.label, "endpoint": pat, "timepoint_weeks": None,
                 "intervention": show(fi, a_i), "comparator": show(fc, a_c), "records": [fi.id, fc.id],
                 "sources": sorted({fi.quantity.provenance.source, fc.quantity.provenance.source}),
                 "reason": "arm-level summaries with their CIs: shown side by side with the mean difference, not pooled"}
        if all(ci.get((a, x)) is not None for a in (a_i, a_c) for x in ("lo", "hi")):
            se = math.sqrt(sum(((ci[(a, "hi")] - ci[(a, "lo")]) / (2 * Z95)) ** 2 for a in (a_i, a_c)))
            md = float(fi.quantity.value) - float(fc.quantity.value)
            entry["difference"] = {"measure": "MD", "estimate": md, "ci_low": md - Z95 * se,
                                   "ci_high": md + Z95 * se, "unit": unit,
                                   "rule": "difference of arm means; SE from each arm's 95% CI ((hi - lo) / 3.92), arms independent"}
        reported.append(entry)
    return excluded, reported


__all__ = ["LONG_TERM_LINKS", "continuous_rows", "reported_row", "METHODS", "SPARSE_RULE", "choose_method", "efficacy_calls", "end_of_induction",
           "map_arms", "parent_link"]
