"""GRADE certainty of evidence for one outcome of a clinical question, and absolute effects.

The rules below are mechanical stand-ins for a guideline panel's judgement, written down so
anyone can see and dispute them (GRADE Handbook, Schünemann et al. 2013; Guyatt et al.,
J Clin Epidemiol 2011;64 for each domain). Evidence from randomised trials starts at *high*;
each of the five domains can lower it by one or two levels. Every domain returns
``{name, downgrade (0, 1, 2), judgement, reason}``; the reason states the numbers behind the
judgement. A panel can override any domain of any outcome in the question file
(``overrides: {outcome_id: {domain: {downgrade: 0, reason: "..."}}}``); the override, its written
reason and the rule's own judgement are all shown.

risk of bias
    From the RoB 2 judgements stored per trial (:meth:`lnsynth.evidence.schema.RiskOfBias.overall`:
    high if any domain is high, low only if all five are low, "no information" counted as the
    RoB 2 algorithm proposes; Sterne et al. BMJ 2019;366:l4898). Shares are of the analysed
    patients. >= 50% in trials with a domain judged high on its quoted basis: -2 (very serious);
    >= 50% in trials at high risk, or with some concerns in three or more domains (RoB 2's
    "multiple domains" rule): -1 (serious). Some concerns in one or two domains (typically an
    analysis plan or a loss to follow-up the reachable text does not describe) are stated beside
    the judgement and not rated down: GRADE rates down for limitations likely to bias the estimate
    (Guyatt et al. J Clin Epidemiol 2011;64:407-15), not for each concern. A trial nobody assessed is **not assessed**: it is named,
    never rated down as if biased, and never counted as low risk either (its patients are in the
    denominator only). Counts that rest only on a news story or secondary summary are a
    reporting concern and count as *some concerns* for that outcome.
inconsistency
    k = 1: *not applicable*. k >= 2: I² > 75% with point estimates on both sides of no effect and
    either two trials whose 95% CIs do not overlap or Cochran's Q p < 0.10: -2; I² > 50% with
    non-overlapping CIs or Q p < 0.10: -1. The prediction-interval rule (the 95% PI includes no
    effect while the CI excludes it: -1) is used only with k >= 3: a PI from two trials says
    nothing about inconsistency.
indirectness
    Concerns, each stated with the share of analysed patients it touches; a concern counts when
    it touches >= 50% of them (smaller ones are named, not counted). One or two concerns: -1;
    three or more: -2. Kinds: *drug* (the question names several calcineurin inhibitors, the
    evidence holds only some of them); *dose* (an intervention arm outside the dose carried
    into phase 3, :data:`DOSE_RANGING_ARMS`); *comparator regimen* (cyclophosphamide given as
    monthly IV pulses dosed per m² (NIH type) instead of the low-dose Euro-Lupus regimen);
    *steroid regimen* (arms on rapidly tapered or low-dose steroids, not the standard-dose
    steroids of the question's comparator); *surrogate endpoint* (proteinuria-based remission,
    at whatever week, stands in for kidney failure); *population* (children, or cases not
    biopsy-proven); *design* (a continuation or maintenance phase of another trial: the
    comparison keeps the first randomisation, so the continued treatment is confounded by the
    induction it followed). Country and source type are **not** indirectness (a news-only count
    is a risk-of-bias concern above). The relation (add-on, substitution, ...) cannot differ:
    a question never mixes relations.
imprecision
    Rated once. Ratio measures: the 95% CI includes both declared thresholds (appreciable
    benefit and harm; default RR 0.75 and 1.25): -2; it includes no effect: -1. When the CI
    excludes no effect (it looks narrow), the optimal information size (OIS; 25% relative risk
    reduction from the assumed control risk, alpha 0.05, power 0.80; Guyatt et al. J Clin
    Epidemiol 2011;64:1283-93) is the check: fewer patients than the OIS: -1 (the same single
    hit, never added to a CI hit). Without a control risk the check is 300 events; for mean
    differences 400 patients.
publication bias
    Funnel-plot asymmetry (Egger's test, p < 0.10: -1) only where k >= 10; otherwise *not
    assessable* and not downgraded.

Absolute effects (GRADE summary-of-findings convention): from an assumed control risk ``CR``
the intervention risk is ``CR * RR`` (RR), ``OR*CR/(1 - CR + OR*CR)`` (OR) or ``CR + RD`` (RD);
``per1000`` is ``1000 * (risk_int - CR)`` with the CI limits of the relative effect carried
through. Several assumed control risks per outcome (:mod:`lnsynth.analyses.baselines`).

References
----------
Schünemann H, Brożek J, Guyatt G, Oxman A (eds). GRADE Handbook. 2013.
Guyatt GH et al. GRADE guidelines 4: risk of bias. J Clin Epidemiol 2011;64:407-15.
Guyatt GH et al. GRADE guidelines 6: imprecision. J Clin Epidemiol 2011;64:1283-93.
Guyatt GH et al. GRADE guidelines 7: inconsistency. J Clin Epidemiol 2011;64:1294-302.
Guyatt GH et al. GRADE guidelines 8: indirectness. J Clin Epidemiol 2011;64:1303-10.
Sterne JAC et al. RoB 2: a revised tool for assessing risk of bias in randomised trials. BMJ 2019;366:l4898.

Examples
--------
>>> round(optimal_information_size(0.3), 0)
1073.0
>>> round(absolute_effect("RR", 0.2, 1.5), 6)
100.0
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from scipy.stats import norm

from lnsynth import registry
from lnsynth.stats import Z95

MULTI_CONCERNS = 3
"""Domains at "some concerns" (or worse) from which a trial counts with those at high risk (RoB 2 guidance:
"some concerns for multiple domains in a way that substantially lowers confidence in the result")."""

LEVELS = ("very low", "low", "moderate", "high")
DOMAINS = ("risk of bias", "inconsistency", "indirectness", "imprecision", "publication bias")
JUDGEMENTS = {0: "not serious", 1: "serious", 2: "very serious"}
REMISSION_ENDPOINTS = frozenset({"complete remission", "overall remission", "remission",
                                 "at least partial remission", "kidney response"})
#: Setting words naming a single country or city. Used by the sensitivity analyses' population split and
#: by the baseline risks; **not** an indirectness concern (a trial's country is not indirectness).
SINGLE_COUNTRY_HINTS = ("china", "hong kong", "japan", "italy", "italian", "czech", "india", "nepal",
                        "thailand", "malaysia", "kolkata", "chandigarh")
#: Intervention regimens outside the dose carried into phase 3: the 39.5 mg twice-daily arm of AURA-LV
#: (AURORA 1, the phase 3 trial, used 23.7 mg twice daily; both doses are stored with their quotes).
DOSE_RANGING_ARMS = {"VCS39.5+MMF": "voclosporin 39.5 mg twice daily, the dose-ranging arm (phase 3 used 23.7 mg)"}
#: Link types whose trial keeps another trial's randomisation (its comparison follows that trial's induction).
CONTINUATION_LINKS = ("continuation_of", "maintenance_phase_of", "extension_of")
CNI_NAMES = {"VCS": "voclosporin", "TAC": "tacrolimus", "CSA": "cyclosporin"}

_LOW_STEROID = re.compile(r"(low[- ]dose|rapidly tapered|reduced[- ]dose|minimi[sz]ed)[^;,.]*"
                          r"(steroid|glucocorticoid|corticosteroid|prednis)|(steroid|glucocorticoid|corticosteroid|prednis)"
                          r"[^;,.]*(low[- ]dose|rapidly tapered|reduced[- ]dose)", re.I)
_CHILDREN = re.compile(r"\b(child|children|paediatric|pediatric|adolescent|juvenile)", re.I)
_AGE_FROM = re.compile(r"aged?\s*(?:>=|≥|from|over)?\s*(\d{1,2})\s*(?:years|y\b|-|to|and)", re.I)
_NON_BIOPSY = re.compile(r"clinical or biopsy|clinically diagnosed|without (a )?biopsy|not biopsy|biopsy (was )?not", re.I)
_NIH_CYC = re.compile(r"\bNIH\b|g\s*/\s*m\s*2|g/m²|g/m 2", re.I)
_EURO_CYC = re.compile(r"500\s*mg|fortnight|every (2|two) weeks|euro-?lupus", re.I)


@dataclass(frozen=True)
class Domain:
    """One GRADE domain: the levels it lowers certainty by, the judgement and the numbers behind it.

    ``overridden`` is True when a panel's written override replaced the rule's judgement, which
    is kept in ``rule`` (``{downgrade, judgement, reason}``).
    """

    name: str
    downgrade: int
    judgement: str  # not serious | serious | very serious | not applicable | not assessable | not assessed
    reason: str
    overridden: bool = False
    rule: Optional[dict] = None

    def footnote(self) -> str:
        sign = f"-{self.downgrade}" if self.downgrade else "0"
        return f"{self.name}: {self.judgement} ({sign}): {self.reason}"

    def to_dict(self) -> dict:
        out = {"name": self.name, "downgrade": self.downgrade, "judgement": self.judgement, "reason": self.reason,
               "overridden": self.overridden}
        if self.rule is not None:
            out["rule"] = dict(self.rule)
        return out


@dataclass(frozen=True)
class Certainty:
    rating: str
    downgrades: int
    domains: tuple[Domain, ...]

    def reasons(self) -> list[str]:
        """One footnote per domain: judgement, levels and the numbers behind it."""
        return [d.footnote() for d in self.domains]

    def domain_list(self) -> list[dict]:
        """``[{name, downgrade, judgement, reason, overridden[, rule]}]`` (the JSON contract)."""
        return [d.to_dict() for d in self.domains]

    def to_dict(self) -> dict:
        return {"rating": self.rating, "downgrades": self.downgrades, "domains": self.domain_list()}


@dataclass(frozen=True)
class TrialFacts:
    """What the certainty rules need to know about one analysed trial.

    ``indirect`` lists the trial's own indirectness concerns as ``(kind, text, share)`` with
    ``share`` the fraction of the trial's analysed patients it touches; ``drugs`` the calcineurin
    inhibitors of its intervention arms.
    """

    study: str
    patients: int
    events: int
    estimate: Optional[float]  # the trial's own effect on the model scale (log for ratios)
    timepoint_weeks: Optional[float]
    setting: Optional[str]
    rob_overall: str  # "low" | "some concerns" | "high" | "not assessed"
    secondary_only: bool  # counts rest only on news / secondary summaries
    se: Optional[float] = None  # standard error on the model scale
    drugs: frozenset = frozenset()
    indirect: tuple = ()
    rob_recorded_high: bool = True  # a domain itself judged high (not only "no information" mapped to high)
    rob_detail: str = ""  # the domains behind the overall judgement
    rob_concerns: int = 0  # domains counting as some concerns or high (RoB 2 "multiple domains")


def optimal_information_size(control_risk: float, rrr: float = 0.25, alpha: float = 0.05, power: float = 0.80) -> float:
    """Total patients (both arms) a single adequately powered trial would need to detect a
    relative risk reduction ``rrr`` from ``control_risk`` (two-sided ``alpha``, ``power``).

    Formula: ``n per arm = (z_{1-a/2} + z_{power})^2 (p_c(1-p_c) + p_t(1-p_t)) / (p_c - p_t)^2``
    with ``p_t = p_c (1 - rrr)``; returns ``2 n``.
    """
    pc = min(max(float(control_risk), 1e-6), 1 - 1e-6)
    pt = pc * (1 - rrr)
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    n = z * z * (pc * (1 - pc) + pt * (1 - pt)) / (pc - pt) ** 2
    return float(2 * n)


def intervention_risk(measure: str, control_risk: float, effect: float) -> float:
    """Risk in the intervention arm implied by a relative effect (ratio scale) or RD."""
    cr = float(control_risk)
    if measure == "RR":
        return min(cr * effect, 1.0)
    if measure == "OR":
        return effect * cr / (1 - cr + effect * cr)
    if measure == "RD":
        return min(max(cr + effect, 0.0), 1.0)
    raise ValueError(f"absolute effects need RR, OR or RD, got {measure!r}")


def absolute_effect(measure: str, control_risk: float, effect: float) -> float:
    """Difference per 1000 patients, ``1000 * (risk_int - control_risk)``."""
    return 1000.0 * (intervention_risk(measure, control_risk, effect) - float(control_risk))


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


# ----------------------------------------------------------------------------- risk of bias


def _rob_domain(trials: Sequence[TrialFacts]) -> Domain:
    total = sum(t.patients for t in trials) or 1

    def eff(t: TrialFacts) -> str:
        j = "not assessed" if t.rob_overall in ("unclear", "not assessed", None) else t.rob_overall
        if t.secondary_only and j in ("low", "not assessed"):
            return "some concerns"  # reporting: the counts rest on a news story or secondary summary only
        return j

    judged = {t.study: eff(t) for t in trials}
    share = {j: sum(t.patients for t in trials if judged[t.study] == j) / total
             for j in ("low", "some concerns", "high", "not assessed")}
    recorded_high = sum(t.patients for t in trials if judged[t.study] == "high" and t.rob_recorded_high) / total
    detail = "; ".join(f"{t.study} {t.rob_overall if t.rob_overall not in ('unclear', None) else 'not assessed'}"
                       f"{' [' + t.rob_detail + ']' if t.rob_detail else ''}"
                       f"{' (counts from news/secondary summary only: reporting concern)' if t.secondary_only else ''}"
                       f" ({t.patients} patients)" for t in trials)
    unassessed = [t.study for t in trials if judged[t.study] == "not assessed"]
    tail = ""
    if unassessed:
        tail = (f"; not assessed (no RoB 2 judgement recorded, not rated down, not counted as low risk): "
                f"{', '.join(unassessed)} ({_pct(share['not assessed'])} of patients)")
    nums = (f"high {_pct(share['high'])}, some concerns {_pct(share['some concerns'])}, low {_pct(share['low'])}"
            f" of {total} patients")
    if share["not assessed"] >= 1.0 - 1e-12:
        return Domain("risk of bias", 0, "not assessed",
                      f"no analysed trial has a recorded RoB 2 assessment ({detail}): not rated down; "
                      "the risk of bias of this evidence is unknown")
    if recorded_high >= 0.5:
        return Domain("risk of bias", 2, "very serious",
                      f"{nums}: >= 50% in trials with a domain judged high on its quoted basis ({detail}){tail}")
    # "some concerns" in several domains can lower confidence as much as one high domain (RoB 2 guidance
    # for the overall judgement); "some concerns" in one or two domains is stated, not rated down
    multi = {t.study for t in trials if judged[t.study] == "some concerns"
             and (t.rob_concerns >= MULTI_CONCERNS or t.secondary_only)}
    share_multi = sum(t.patients for t in trials if t.study in multi) / total
    if share["high"] + share_multi >= 0.5:
        why = f"{nums}: >= 50% in trials at high risk"
        if multi:
            why += (f" or with some concerns in >= {MULTI_CONCERNS} domains or counts resting on a news story or "
                    f"secondary summary ({', '.join(sorted(multi))}: {_pct(share_multi)} of patients)")
        if share["high"] > recorded_high:
            why += (f" ({_pct(share['high'] - recorded_high)} of patients are high only because a domain has no "
                    "information, which RoB 2 maps to high: an absence of reporting, rated down once, not twice)")
        return Domain("risk of bias", 1, "serious", f"{why} ({detail}){tail}")
    return Domain("risk of bias", 0, "not serious",
                  f"{nums}: < 50% in trials at high risk or with some concerns in >= {MULTI_CONCERNS} domains; "
                  f"some concerns in one or two domains are stated, not rated down ({detail}){tail}")


# ----------------------------------------------------------------------------- inconsistency


def _no_overlap(trials: Sequence[TrialFacts]) -> list[tuple[str, str]]:
    z = Z95
    ci = [(t.study, t.estimate - z * t.se, t.estimate + z * t.se) for t in trials
          if t.estimate is not None and t.se is not None and math.isfinite(t.se)]
    out = []
    for i, a in enumerate(ci):
        for b in ci[i + 1:]:
            if a[2] < b[1] or b[2] < a[1]:
                out.append((a[0], b[0]))
    return out


def _inconsistency(k: int, i2: Optional[float], ci: tuple[float, float], pi: tuple[Optional[float], Optional[float]],
                   trials: Sequence[TrialFacts], null: float, q_pvalue: Optional[float]) -> Domain:
    if k < 2:
        return Domain("inconsistency", 0, "not applicable", "single trial: no between-trial comparison")
    est = [t.estimate for t in trials if t.estimate is not None]
    above = sum(1 for e in est if e > null)
    below = sum(1 for e in est if e < null)
    both_sides = above > 0 and below > 0
    gaps = _no_overlap(trials)
    i2v = float(i2) if i2 is not None and math.isfinite(float(i2)) else None
    qp = float(q_pvalue) if q_pvalue is not None and math.isfinite(float(q_pvalue)) else None
    signal = bool(gaps) or (qp is not None and qp < 0.10)
    bits = [f"k = {k}", f"I² = {i2v:.0f}%" if i2v is not None else "I² not available",
            f"Q p = {qp:.3f}" if qp is not None else "Q test not available",
            f"{above} trial(s) above and {below} below no effect",
            ("95% CIs of " + ", ".join(f"{a} and {b}" for a, b in gaps) + " do not overlap") if gaps
            else "every pair of trial 95% CIs overlaps"]
    pi_ok = pi[0] is not None and pi[1] is not None and all(math.isfinite(float(x)) for x in pi)
    pi_rule = False
    if k >= 3 and pi_ok:
        ci_null = ci[0] <= null <= ci[1]
        pi_null = float(pi[0]) <= null <= float(pi[1])
        pi_rule = pi_null and not ci_null
        bits.append("95% prediction interval includes no effect while the CI excludes it" if pi_rule
                    else "95% prediction interval " + ("includes" if pi_null else "excludes") + " no effect")
    elif k < 3:
        bits.append("prediction interval not used (fewer than 3 trials)")
    why = "; ".join(bits)
    if i2v is not None and i2v > 75 and both_sides and signal:
        return Domain("inconsistency", 2, "very serious", why)
    if (i2v is not None and i2v > 50 and signal) or pi_rule:
        return Domain("inconsistency", 1, "serious", why)
    return Domain("inconsistency", 0, "not serious", why)


# ----------------------------------------------------------------------------- indirectness


def trial_indirectness(study: Any, intervention_arms: Sequence[Any], comparator_arms: Sequence[Any],
                       phase: str = "induction") -> tuple[tuple[str, str, float], ...]:
    """A trial's own indirectness concerns ``(kind, text, share of its patients)`` read from the
    stored study: dose of the intervention arms, comparator cyclophosphamide regimen, steroid
    regimen of the arms, population (children, non-biopsy) and design (continuation links)."""
    arms = list(intervention_arms) + list(comparator_arms)
    size = {a.id: (a.n.value if getattr(a, "n", None) is not None else None) for a in arms}
    known = [v for v in size.values() if v]
    fill = (sum(known) / len(known)) if known else 1.0
    n_of = {k: float(v) if v else fill for k, v in size.items()}
    out: list[tuple[str, str, float]] = []
    side_i = sum(n_of[a.id] for a in intervention_arms) or 1.0
    side_c = sum(n_of[a.id] for a in comparator_arms) or 1.0
    # a concern about one side touches the whole comparison in the share of that side's patients it covers
    dose = [a for a in intervention_arms if a.regimen in DOSE_RANGING_ARMS]
    if dose:
        out.append(("dose", "; ".join(f"{a.label}: {DOSE_RANGING_ARMS[a.regimen]}" for a in dose),
                    sum(n_of[a.id] for a in dose) / side_i))
    nih = []
    for a in comparator_arms:
        doses = " ".join(d.dose.value for d in a.drugs if getattr(d, "dose", None) is not None and isinstance(d.dose.value, str))
        if "CYC" in a.regimen and (a.regimen == "IVCYC-HIGH" or (_NIH_CYC.search(doses) and not _EURO_CYC.search(doses))):
            nih.append((a, doses or "high-dose arm"))
    if nih:
        out.append(("comparator regimen", "cyclophosphamide as monthly IV pulses dosed per m² (NIH type), not the low-dose "
                    "Euro-Lupus regimen: " + "; ".join(f"{a.label}: {d}" for a, d in nih),
                    sum(n_of[a.id] for a, _ in nih) / side_c))
    low = [a for a in arms if a.background is not None and _LOW_STEROID.search(a.background.value or "")]
    if low:
        ctrl = [a for a in low if a in comparator_arms]
        both = ctrl and len(ctrl) < len(low)
        who = "both arms" if both else ("comparator arm" if ctrl else "intervention arm")
        out.append(("steroid regimen", f"{who} on low-dose or rapidly tapered steroids, not standard-dose steroids ("
                    + "; ".join(sorted({repr(a.background.value) for a in low})) + ")",
                    sum(n_of[a.id] for a in ctrl) / side_c if ctrl else sum(n_of[a.id] for a in low) / side_i))
    pop = study.population.value if getattr(study, "population", None) is not None else ""
    m = _AGE_FROM.search(pop or "")
    if _CHILDREN.search(pop or "") or (m and int(m.group(1)) < 18):
        out.append(("population", f"children or adolescents included ({pop})", 1.0))
    if _NON_BIOPSY.search(pop or ""):
        out.append(("population", f"not all cases biopsy-proven ({pop})", 1.0))
    for link in getattr(study, "links", []) or []:
        if link.type in CONTINUATION_LINKS:
            what = link.type.replace("_", " ")
            out.append(("design", f"{what} {link.trial}: the comparison keeps {link.trial}'s randomisation, so the "
                        "continued treatment is confounded by the induction it followed (and by who continued)", 1.0))
    return tuple(out)


def _indirectness(trials: Sequence[TrialFacts], endpoints: Sequence[str], relation: str,
                  question_drugs: frozenset = frozenset()) -> Domain:
    total = sum(t.patients for t in trials) or 1
    concerns: list[str] = []
    minor: list[str] = []

    def add(kind: str, text: str, patients: float) -> None:
        line = f"{kind}: {text} ({_pct(patients / total)} of {total} patients)"
        (concerns if patients / total >= 0.5 else minor).append(line)

    # drug: the question names several CNIs, the evidence holds only some
    got = frozenset().union(*(t.drugs for t in trials)) if trials else frozenset()
    if len(question_drugs) > 1 and got and got < question_drugs:
        names = lambda ds: " and ".join(CNI_NAMES.get(d, d) for d in sorted(ds))  # noqa: E731
        add("drug", f"the question covers {names(question_drugs)}; the evidence is {names(got)} only "
            f"(no trial of {names(question_drugs - got)})", total)
    # per-trial concerns (dose, comparator, steroids, population, design), patients summed per kind and text
    by: dict[tuple[str, str], float] = {}
    studies: dict[tuple[str, str], list[str]] = {}
    for t in trials:
        for kind, text, share in t.indirect:
            key = (kind, text)
            by[key] = by.get(key, 0.0) + share * t.patients
            studies.setdefault(key, []).append(t.study)
    kinds: dict[str, list] = {}
    for (kind, text), p in by.items():
        kinds.setdefault(kind, []).append((text, p, studies[(kind, text)]))
    for kind, items in kinds.items():
        p = sum(x[1] for x in items)
        text = "; ".join(f"{', '.join(s)}: {txt}" for txt, _, s in items)
        add(kind, text, min(p, total))
    # surrogate endpoint: proteinuria-based remission stands in for kidney failure
    if set(endpoints) & REMISSION_ENDPOINTS:
        tps = ", ".join(f"{t.study} {t.timepoint_weeks:g} wk" if t.timepoint_weeks is not None else f"{t.study} week not stated"
                        for t in trials)
        add("surrogate endpoint", f"proteinuria-based remission ({tps}) stands in for kidney failure, the outcome that "
            "matters to patients", total)
    counted = {c.split(":", 1)[0] for c in concerns}
    d = 0 if not counted else (1 if len(counted) < 3 else 2)
    base = f"relation: every trial is {relation} (a question never mixes relations); country and source type are not indirectness"
    tail = (f"; named, < 50% of patients (not counted): {'; '.join(minor)}" if minor else "")
    if d:
        return Domain("indirectness", d, JUDGEMENTS[d],
                      f"{len(counted)} concern(s) touching >= 50% of patients ({'; '.join(concerns)}){tail}; {base}")
    return Domain("indirectness", 0, "not serious", f"no concern touching >= 50% of patients{tail}; {base}")


# ----------------------------------------------------------------------------- imprecision


def _imprecision(measure: str, ci: tuple[float, float], patients: int, events: int, control_risk: Optional[float],
                 thresholds: tuple[float, float]) -> Domain:
    ratio = registry.is_ratio(measure)
    lo, hi = (math.exp(ci[0]), math.exp(ci[1])) if ratio else (float(ci[0]), float(ci[1]))
    null = 1.0 if ratio else 0.0
    cis = f"95% CI {lo:.2f} to {hi:.2f}"
    tb, th = sorted(thresholds)
    if ratio and lo <= tb and hi >= th:
        return Domain("imprecision", 2, "very serious",
                      f"{cis} includes appreciable benefit ({measure} {tb:g}) and appreciable harm ({measure} {th:g}); "
                      f"{patients} patients, {events} events")
    if lo <= null <= hi:
        side = ""
        if ratio:
            side = (f" and appreciable effect ({measure} {tb:g})" if lo <= tb else
                    f" and appreciable effect ({measure} {th:g})" if hi >= th else "")
        return Domain("imprecision", 1, "serious", f"{cis} includes no effect ({null:g}){side}; {patients} patients, {events} events")
    # the CI excludes no effect: the optimal information size is the check
    if measure in ("MD", "SMD"):
        if patients < 400:
            return Domain("imprecision", 1, "serious", f"{cis} excludes no effect but {patients} patients < 400 "
                          "(rule of thumb for a continuous outcome)")
        return Domain("imprecision", 0, "not serious", f"{cis} excludes no effect; {patients} patients >= 400")
    if control_risk is not None and 0 < control_risk < 1:
        ois = optimal_information_size(control_risk)
        check = f"optimal information size {ois:.0f} (25% RRR from control risk {control_risk:.2f}, alpha 0.05, power 0.80)"
        if patients < ois:
            return Domain("imprecision", 1, "serious",
                          f"{cis} excludes no effect, but {patients} patients ({events} events) < {check}")
        return Domain("imprecision", 0, "not serious", f"{cis} excludes no effect; {patients} patients >= {check}")
    if events < 300:
        return Domain("imprecision", 1, "serious", f"{cis} excludes no effect, but {events} events < 300 "
                      f"(no control risk for an optimal information size; {patients} patients)")
    return Domain("imprecision", 0, "not serious", f"{cis} excludes no effect; {events} events >= 300")


def _publication_bias(k: int, egger_p: Optional[float]) -> Domain:
    if k < 10 or egger_p is None:
        return Domain("publication bias", 0, "not assessable", f"k = {k} < 10: funnel plot and Egger's test not informative")
    if egger_p < 0.10:
        return Domain("publication bias", 1, "serious", f"Egger's test p = {egger_p:.3f} (k = {k})")
    return Domain("publication bias", 0, "not serious", f"Egger's test p = {egger_p:.3f} (k = {k})")


# ----------------------------------------------------------------------------- overrides and rating


def _key(name: str) -> str:
    return name.strip().lower().replace("_", " ")


def apply_overrides(domains: Sequence[Domain], overrides: Optional[Mapping[str, Any]]) -> tuple[Domain, ...]:
    """Replace domains by a panel's written overrides ``{domain: {downgrade, reason[, judgement]}}``
    (domain names as in :data:`DOMAINS`, underscores allowed); the rule's judgement is kept in ``rule``."""
    if not overrides:
        return tuple(domains)
    ov = {_key(k): v for k, v in overrides.items()}
    unknown = sorted(set(ov) - set(DOMAINS))
    if unknown:
        raise ValueError(f"override of unknown GRADE domain(s) {unknown}; known: {list(DOMAINS)}")
    out = []
    for d in domains:
        o = ov.get(d.name)
        if o is None:
            out.append(d)
            continue
        get = (lambda k: getattr(o, k, None)) if not isinstance(o, Mapping) else o.get
        down = int(get("downgrade"))
        reason = str(get("reason") or "").strip()
        judgement = get("judgement") or JUDGEMENTS.get(down, "serious")
        out.append(Domain(d.name, down, judgement,
                          f"panel override: {reason} (the rule said {d.judgement}, -{d.downgrade}: {d.reason})",
                          overridden=True, rule={"downgrade": d.downgrade, "judgement": d.judgement, "reason": d.reason}))
    return tuple(out)


def rate_outcome(
    *,
    measure: str,
    k: int,
    estimate_ci: tuple[float, float],
    pi: tuple[Optional[float], Optional[float]],
    i2: Optional[float],
    trials: Sequence[TrialFacts],
    endpoints: Sequence[str],
    relation: str,
    control_risk: Optional[float],
    thresholds: tuple[float, float] = (0.75, 1.25),
    egger_p: Optional[float] = None,
    randomised: bool = True,
    q_pvalue: Optional[float] = None,
    question_drugs: frozenset = frozenset(),
    overrides: Optional[Mapping[str, Any]] = None,
) -> Certainty:
    """Apply the module's rules to one pooled outcome (model scale: log for ratio measures).

    Returns
    -------
    Certainty
        ``rating`` (high, moderate, low, very low), total ``downgrades`` and the five domains
        with their footnotes (after any panel ``overrides``).
    """
    null = 0.0
    doms = (
        _rob_domain(trials),
        _inconsistency(k, i2, estimate_ci, pi, trials, null, q_pvalue),
        _indirectness(trials, endpoints, relation, question_drugs),
        _imprecision(measure, estimate_ci, sum(t.patients for t in trials), sum(t.events for t in trials), control_risk, thresholds),
        _publication_bias(k, egger_p),
    )
    doms = apply_overrides(doms, overrides)
    down = sum(d.downgrade for d in doms)
    start = 3 if randomised else 1
    return Certainty(LEVELS[max(0, start - down)], down, doms)


def _rob_of(study: Any) -> tuple[str, bool, str, int]:
    """(overall judgement, whether a domain is itself judged high, the domains behind the overall,
    how many domains count as some concerns or high)."""
    rob = getattr(study, "rob", None)
    if rob is None:
        return "not assessed", False, "", 0
    overall = rob.overall()
    if overall in ("not assessed", "unclear"):
        return "not assessed", False, "", 0
    names = ("randomisation", "deviations", "missing_data", "measurement", "selective_reporting")
    bits, recorded = [], False
    for d in names:
        j = getattr(rob, d, None)
        if j is None:
            continue
        counts = j.counts_as(d) if hasattr(j, "counts_as") else j.judgement
        recorded = recorded or j.judgement == "high"
        if counts != "low":
            shown = d.replace("_", " ")
            bits.append(f"{shown} {j.judgement}" + (f" (counts as {counts})" if counts != j.judgement else ""))
    return overall, recorded, ", ".join(bits), len(bits)


def grade_outcome(ev: Any, question: Any, spec: Any, analysed: Sequence[Any], decisions: Sequence[Any], result: Any,
                  control_risk: Optional[float], egger_p: Optional[float] = None) -> Certainty:
    """Certainty of one answered outcome, from the pipeline's objects
    (:mod:`lnsynth.analyses.answer`): the analysed trial rows, the inclusion decisions (which arms
    of each trial were used), the fitted model and the assumed control risk. Reads the question's
    ``overrides`` for this outcome when it has any."""
    from .questions import CNI_DRUGS, COMPONENTS

    measure = question.plan.measure
    ratio = registry.is_ratio(measure)
    dec = {d.study: d for d in decisions}
    yi = [float(x) for x in (getattr(result, "yi", None) if getattr(result, "yi", None) is not None else [])]
    vi = [float(x) for x in (getattr(result, "vi", None) if getattr(result, "vi", None) is not None else [])]
    long_term = getattr(spec, "timing", "window") == "long term"
    children: dict[str, list[str]] = {}
    for other in getattr(ev, "studies", ()):
        for link in other.links:
            if link.type in CONTINUATION_LINKS + ("follow_up_of",):
                children.setdefault(link.trial, []).append(f"{other.id} ({link.type.replace('_', ' ')} {link.trial})")
    facts = []
    for j, t in enumerate(analysed):
        st = ev.study(t.study)
        d = dec.get(t.study)
        ia = [a for a in st.arms if d is not None and a.id in d.intervention_arms]
        ca = [a for a in st.arms if d is not None and a.id in d.comparator_arms]
        drugs = frozenset().union(*(COMPONENTS.get(a.regimen, frozenset()) & CNI_DRUGS for a in ia)) if ia else frozenset()
        est = (math.log(t.estimate) if ratio and t.estimate else t.estimate) if t.estimate is not None else None
        se = math.sqrt(float(vi[j])) if j < len(vi) and vi[j] is not None and float(vi[j]) >= 0 else None
        if j < len(yi):
            est = float(yi[j])
        rob, recorded_high, rob_detail, rob_concerns = _rob_of(st)
        secondary = bool(t.source_types) and all(s in ("news", "secondary summary") for s in t.source_types)
        setting = " ".join(x for x in ((st.setting.value if st.setting else ""), (st.population.value if st.population else "")) if x)
        indirect = trial_indirectness(st, ia, ca, question.population.phase)
        kids = children.get(t.study, [])
        after_induction = any(a.phase == "induction" for a in ia + ca)
        if long_term and (kids or after_induction) and not any(k == "design" for k, _, _ in indirect):
            indirect += (("design", "long-term result" + (f" (reports: {', '.join(kids)})" if kids else "")
                          + ": the randomised comparison is carried past induction into treatment that was not "
                          "randomised, or only for patients who continued (induction-confounded)", 1.0),)
        facts.append(TrialFacts(t.study, t.n_int + t.n_ctrl, t.events_int + t.events_ctrl, est, t.timepoint_weeks, setting,
                                rob, secondary, se, drugs, indirect, recorded_high, rob_detail, rob_concerns))
    q_drugs = frozenset().union(*(COMPONENTS.get(r, frozenset()) & CNI_DRUGS for r in question.intervention.regimens))
    overrides = (getattr(question, "overrides", None) or {}).get(spec.id)
    fin = (lambda x: float(x) if x is not None and math.isfinite(float(x)) else None)  # noqa: E731
    return rate_outcome(measure=measure, k=len(facts), estimate_ci=(float(result.ci_low), float(result.ci_high)),
                        pi=(fin(getattr(result, "pi_low", None)), fin(getattr(result, "pi_high", None))),
                        i2=fin(getattr(result, "i2", None)), trials=facts,
                        endpoints=[t.endpoint for t in analysed] if spec.kind == "efficacy" else [],
                        relation=question.relation, control_risk=control_risk, thresholds=question.plan.thresholds,
                        egger_p=egger_p, q_pvalue=fin(getattr(result, "q_pvalue", None)), question_drugs=q_drugs,
                        overrides=overrides)


__all__ = ["CONTINUATION_LINKS", "Certainty", "DOMAINS", "DOSE_RANGING_ARMS", "Domain", "JUDGEMENTS", "LEVELS",
           "REMISSION_ENDPOINTS", "SINGLE_COUNTRY_HINTS", "TrialFacts", "absolute_effect", "apply_overrides",
           "grade_outcome", "intervention_risk", "optimal_information_size", "rate_outcome", "trial_indirectness"]
