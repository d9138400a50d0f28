"""GRADE certainty of evidence for one outcome of a clinical question, and absolute effects.

The rules below are mechanical stand-ins for a guideline panel's judgement, written down so
anyone can see and dispute them (GRADE Handbook, Schünemann et al. 2013; Guyatt et al.,
J Clin Epidemiol 2011;64:383-94 and the GRADE series 64(12) for each domain). Evidence from
randomised trials starts at *high*; each of the five domains can lower it by one or two levels.

risk of bias
    From the RoB 2 judgements the evidence base records per trial (randomisation, deviations,
    missing data, measurement, selective reporting; Sterne et al. BMJ 2019;366:l4898). The
    overall judgement per trial follows RoB 2 (high if any domain high, low only if all low).
    A trial with no recorded judgement is *unclear*, and says so; it is never guessed.
    >= 50% of the analysed patients in trials at high risk: -2; >= 50% in trials at high risk,
    some concerns or unclear: -1.
inconsistency
    k >= 2 only. I² > 75% with point estimates on both sides of no effect: -2; I² > 50%, or the
    95% prediction interval includes no effect while the CI excludes it: -1. Direction is
    reported (how many trials favour each arm).
indirectness
    Concerns, -1 each (at most -2): population (>= 50% of patients from trials in a single
    country); timepoint (a proteinuria-based remission outcome assessed at <= 26 weeks, on drug,
    for >= 50% of the patients: the review's argument that early remission overstates a CNI's
    effect); source (>= 50% of patients' counts resting on a news story or secondary summary).
    Relation mismatch cannot arise: a question never mixes relations (selection excludes
    such trials).
imprecision
    The optimal information size (OIS) for a 25% relative risk reduction from the assumed control
    risk (alpha 0.05, power 0.80; Guyatt et al. J Clin Epidemiol 2011;64:1283-93). The 95% CI
    includes no effect: -1; it also includes both declared thresholds (appreciable benefit and
    appreciable harm; default RR 0.75 and 1.25): -2; fewer patients than the OIS: -1. At most -2.
publication bias
    Funnel-plot asymmetry (Egger's test, p < 0.10: -1) only where k >= 10; otherwise
    *not assessable* and not downgraded.

Absolute effects (GRADE summary-of-findings convention): the assumed control risk is the
median control-arm risk of the included trials, or a value the question declares; the
intervention risk is ``CR * RR`` (RR), ``OR*CR/(1 - CR + OR*CR)`` (OR) or ``CR + RD`` (RD);
``per1000`` is the difference, ``1000 * (risk_int - CR)``, with the CI limits of the relative
effect carried through.

References
----------
Schünemann H, Brożek J, Guyatt G, Oxman A (eds). GRADE Handbook. 2013.
Guyatt GH et al. GRADE guidelines 6: imprecision. J Clin Epidemiol 2011;64:1283-93.
Guyatt GH et al. GRADE guidelines 7: inconsistency. J Clin Epidemiol 2011;64:1294-302.
Guyatt GH et al. GRADE guidelines 8: indirectness. J Clin Epidemiol 2011;64:1303-10.
Guyatt GH et al. GRADE guidelines 4: risk of bias. J Clin Epidemiol 2011;64:407-15.
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
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

from scipy.stats import norm

LEVELS = ("very low", "low", "moderate", "high")
REMISSION_ENDPOINTS = frozenset({"complete remission", "overall remission", "remission",
                                 "at least partial remission", "kidney response"})
SINGLE_COUNTRY_HINTS = ("china", "hong kong", "japan", "italy", "italian", "czech", "india", "nepal",
                        "thailand", "malaysia", "kolkata", "chandigarh")


@dataclass(frozen=True)
class Domain:
    """One GRADE domain: the levels it lowers certainty by and why (a footnote)."""

    name: str
    downgrade: int
    judgement: str  # "no serious concern" | "serious" | "very serious" | "not assessable" | "unclear"
    reason: str

    def footnote(self) -> str:
        sign = f"-{self.downgrade}" if self.downgrade else "0"
        return f"{self.name} ({sign}): {self.reason}"


@dataclass(frozen=True)
class Certainty:
    rating: str
    downgrades: int
    domains: tuple[Domain, ...]

    def reasons(self) -> list[str]:
        return [d.footnote() for d in self.domains]

    def to_dict(self) -> dict:
        return {"rating": self.rating, "downgrades": self.downgrades,
                "domains": {d.name: asdict(d) for d in self.domains}}


@dataclass(frozen=True)
class TrialFacts:
    """What the certainty rules need to know about one analysed trial."""

    study: str
    patients: int
    events: int
    estimate: Optional[float]  # the trial's own effect on the model scale (log for ratios)
    timepoint_weeks: Optional[float]
    setting: Optional[str]
    rob_overall: str  # "low" | "some concerns" | "high" | "unclear"
    secondary_only: bool  # counts rest only on news / secondary summaries


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


def _rob_domain(trials: Sequence[TrialFacts]) -> Domain:
    total = sum(t.patients for t in trials) or 1
    share = {j: sum(t.patients for t in trials if t.rob_overall == j) / total
             for j in ("low", "some concerns", "high", "unclear")}
    unclear = [t.study for t in trials if t.rob_overall == "unclear"]
    high = [t.study for t in trials if t.rob_overall == "high"]
    detail = ", ".join(f"{t.study}: {t.rob_overall}" for t in trials)
    if share["high"] >= 0.5:
        return Domain("risk of bias", 2, "very serious", f"{100 * share['high']:.0f}% of patients in trials at high risk ({', '.join(high)})")
    if share["high"] + share["some concerns"] + share["unclear"] >= 0.5:
        why = f"{100 * (1 - share['low']):.0f}% of patients in trials not at low risk ({detail})"
        if unclear:
            why += f"; unclear means no RoB 2 judgement with a quoted basis is recorded for {', '.join(unclear)} (not guessed)"
        return Domain("risk of bias", 1, "serious" if not unclear or share["unclear"] < 0.5 else "unclear", why)
    return Domain("risk of bias", 0, "no serious concern", f"most patients in trials at low risk ({detail})")


def _inconsistency(k: int, i2: float, ci: tuple[float, float], pi: tuple[float, float], estimates: Sequence[float], null: float) -> Domain:
    if k < 2:
        return Domain("inconsistency", 0, "not assessable", "single trial")
    favour_int = sum(1 for e in estimates if e > null)
    favour_ctrl = sum(1 for e in estimates if e < null)
    direction = f"{favour_int} trial(s) above and {favour_ctrl} below no effect"
    ci_null = ci[0] <= null <= ci[1]
    pi_null = pi[0] <= null <= pi[1]
    both_sides = favour_int > 0 and favour_ctrl > 0
    if i2 > 75 and both_sides:
        return Domain("inconsistency", 2, "very serious", f"I² = {i2:.0f}%; {direction}")
    if i2 > 50 or (pi_null and not ci_null):
        bits = [f"I² = {i2:.0f}%", direction]
        if pi_null and not ci_null:
            bits.append("95% prediction interval includes no effect")
        return Domain("inconsistency", 1, "serious", "; ".join(bits))
    return Domain("inconsistency", 0, "no serious concern", f"I² = {i2:.0f}%; {direction}")


def _indirectness(trials: Sequence[TrialFacts], endpoints: Sequence[str], relation: str) -> Domain:
    total = sum(t.patients for t in trials) or 1
    concerns = []
    single = [t for t in trials if t.setting and any(h in t.setting.lower() for h in SINGLE_COUNTRY_HINTS)]
    if sum(t.patients for t in single) / total >= 0.5:
        concerns.append(f"population: {100 * sum(t.patients for t in single) / total:.0f}% of patients from single-country trials "
                        f"({', '.join(t.study for t in single)})")
    if set(endpoints) & REMISSION_ENDPOINTS:
        known = [t for t in trials if t.timepoint_weeks is not None]
        early = [t for t in known if t.timepoint_weeks <= 26]
        if known and sum(t.patients for t in early) >= 0.5 * sum(t.patients for t in known):
            concerns.append("timepoint: proteinuria-based remission at <= 26 weeks on drug for most patients "
                            f"({', '.join(t.study for t in early)}), a surrogate the review argues overstates a CNI's effect")
    sec = [t for t in trials if t.secondary_only]
    if sum(t.patients for t in sec) / total >= 0.5:
        concerns.append(f"source: counts of {', '.join(t.study for t in sec)} rest on a news story or secondary summary")
    d = min(len(concerns), 2)
    base = f"relation: every trial is {relation} (a question never mixes relations)"
    if d:
        return Domain("indirectness", d, "serious" if d == 1 else "very serious", "; ".join(concerns) + f"; {base}")
    return Domain("indirectness", 0, "no serious concern", base)


def _imprecision(measure: str, ci: tuple[float, float], patients: int, events: int, control_risk: Optional[float],
                 thresholds: tuple[float, float]) -> Domain:
    ratio = measure in ("RR", "OR")
    lo, hi = (math.exp(ci[0]), math.exp(ci[1])) if ratio else ci
    null = 1.0 if ratio else 0.0
    why, d = [], 0
    crosses = lo <= null <= hi
    if ratio and lo <= thresholds[0] and hi >= thresholds[1]:
        d = 2
        why.append(f"95% CI {lo:.2f} to {hi:.2f} includes both appreciable benefit ({thresholds[0]}) and harm ({thresholds[1]})")
    elif crosses:
        d = 1
        why.append(f"95% CI {lo:.2f} to {hi:.2f} includes no effect")
    ois = optimal_information_size(control_risk) if control_risk and 0 < control_risk < 1 else None
    if ois is not None and patients < ois:
        why.append(f"{patients} patients ({events} events) < optimal information size {ois:.0f} (25% RRR from control risk {control_risk:.2f})")
        d = min(d + 1, 2)
    elif ois is None:
        why.append(f"{patients} patients, {events} events; optimal information size not computable (control risk {control_risk})")
        d = min(d + 1, 2) if events < 300 else d
    if d == 0:
        return Domain("imprecision", 0, "no serious concern",
                      f"95% CI {lo:.2f} to {hi:.2f}; {patients} patients, {events} events >= OIS {ois:.0f}" if ois else "adequate")
    return Domain("imprecision", d, "serious" if d == 1 else "very serious", "; ".join(why))


def _publication_bias(k: int, egger_p: Optional[float]) -> Domain:
    if k < 10 or egger_p is None:
        return Domain("publication bias", 0, "not assessable", f"k = {k} < 10: funnel plot and Egger's test not informative")
    if egger_p < 0.10:
        return Domain("publication bias", 1, "serious", f"Egger's test p = {egger_p:.3f}")
    return Domain("publication bias", 0, "no serious concern", f"Egger's test p = {egger_p:.3f}")


def rate_outcome(
    *,
    measure: str,
    k: int,
    estimate_ci: tuple[float, float],
    pi: tuple[float, float],
    i2: float,
    trials: Sequence[TrialFacts],
    endpoints: Sequence[str],
    relation: str,
    control_risk: Optional[float],
    thresholds: tuple[float, float] = (0.75, 1.25),
    egger_p: Optional[float] = None,
    randomised: bool = True,
) -> Certainty:
    """Apply the module's rules to one pooled outcome (model scale: log for ratio measures).

    Returns
    -------
    Certainty
        ``rating`` (high, moderate, low, very low), total ``downgrades`` and the five domains
        with their footnotes.
    """
    null = 0.0
    doms = (
        _rob_domain(trials),
        _inconsistency(k, i2, estimate_ci, pi, [t.estimate for t in trials if t.estimate is not None], null),
        _indirectness(trials, endpoints, relation),
        _imprecision(measure, estimate_ci, sum(t.patients for t in trials), sum(t.events for t in trials), control_risk, thresholds),
        _publication_bias(k, egger_p),
    )
    down = sum(d.downgrade for d in doms)
    start = 3 if randomised else 1
    return Certainty(LEVELS[max(0, start - down)], down, doms)


__all__ = ["Certainty", "Domain", "TrialFacts", "absolute_effect", "intervention_risk", "optimal_information_size", "rate_outcome"]
