"""Certainty of evidence per comparison, from explicit rules for the GRADE domains.

These rules are mechanical stand-ins for a panel's judgement, written down so anyone
can see and dispute them. They are applied to a pooled pairwise result and the study
data behind it. Evidence from randomised trials starts at *high*; each domain can
lower it by one or two levels.

Rules
-----
risk of bias
    The evidence base records no risk-of-bias assessment (the review gives none). An
    unassessed risk of bias is treated as *unclear*: -1, so no comparison is rated high
    on unexamined trials.
inconsistency
    k >= 2 and (I² > 50% or the 95% prediction interval includes the null while the CI
    does not): -1. I² > 75% and the PI includes the null: -2.
imprecision
    The 95% CI includes the null (ratio 1, difference 0): -1. Also fewer than 300 patients
    in total (optimal-information-size heuristic for dichotomous outcomes): a further -1.
    At most -2.
indirectness
    Population: >= 50% of patients from trials conducted in a single country (the review's
    main limitation: "Many of the studies discussed above are from China"): one concern.
    Outcome: a proteinuria-based remission assessed at <= 26 weeks, while patients are on
    the CNI (the review argues this overstates CNI efficacy), for >= 50% of the patients:
    one concern.
    One concern: -1; two: -2.
small-study effects
    Only assessable with k >= 10 (Egger's regression test, p < 0.10: -1); otherwise
    *not assessable* and not downgraded.
derived data
    Not a GRADE domain; reported alongside: the share of patients whose counts were derived
    from printed percentages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import pandas as pd

LEVELS = ["very low", "low", "moderate", "high"]
REMISSION_ENDPOINTS = {"complete remission", "overall remission", "remission", "at least partial remission", "kidney response"}
SINGLE_COUNTRY_HINTS = ("china", "hong kong", "japan", "italy", "italian", "czech")


@dataclass(frozen=True)
class Certainty:
    rating: str
    downgrades: int
    risk_of_bias: str
    inconsistency: str
    imprecision: str
    indirectness: str
    small_study: str
    derived_share: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _crosses_null(lo: float, hi: float, null: float) -> bool:
    return lo <= null <= hi


def rate_certainty(
    result: dict,
    studies: pd.DataFrame,
    outcome: str,
    null: float = 0.0,
    egger_pvalue: Optional[float] = None,
    design: str = "RCT",
) -> Certainty:
    """Apply the module's rules.

    Parameters
    ----------
    result : ``MetaResult.to_dict()`` (model scale: log for ratio measures, so ``null=0``).
    studies : study rows (``n_treat``, ``n_ctrl``, ``timepoint_weeks``, ``setting``, ``derived``).
    """
    start = 3 if design == "RCT" else 1
    down = 1  # risk of bias unassessed -> unclear (see module docstring)
    k = int(result["k"])
    # inconsistency
    i2 = float(result.get("i2", 0.0) or 0.0)
    ci_null = _crosses_null(result["ci_low"], result["ci_high"], null)
    pi_null = _crosses_null(result["pi_low"], result["pi_high"], null)
    if k < 2:
        inc, d_inc = "not assessable (single study)", 0
    elif i2 > 75 and pi_null:
        inc, d_inc = f"-2: I² = {i2:.0f}% and the prediction interval includes no effect", 2
    elif i2 > 50 or (pi_null and not ci_null):
        inc, d_inc = f"-1: I² = {i2:.0f}%" + ("; prediction interval includes no effect" if pi_null and not ci_null else ""), 1
    else:
        inc, d_inc = f"no concern: I² = {i2:.0f}%", 0
    down += d_inc
    # imprecision
    n_total = int(studies["n_treat"].sum() + studies["n_ctrl"].sum()) if len(studies) else 0
    d_imp, why = 0, []
    if ci_null:
        d_imp += 1
        why.append("CI includes no effect")
    if n_total < 300:
        d_imp += 1
        why.append(f"{n_total} patients < 300")
    d_imp = min(d_imp, 2)
    imp = (f"-{d_imp}: " + "; ".join(why)) if d_imp else f"no concern ({n_total} patients)"
    down += d_imp
    # indirectness
    concerns = []
    if len(studies) and "setting" in studies:
        single = studies["setting"].astype(object).where(studies["setting"].notna(), "").astype(str).str.lower().map(lambda s: any(h in s for h in SINGLE_COUNTRY_HINTS))
        n_single = (studies.loc[single, "n_treat"] + studies.loc[single, "n_ctrl"]).sum()
        if n_total and n_single / n_total >= 0.5:
            concerns.append(f"{100 * n_single / n_total:.0f}% of patients from single-country trials")
    if outcome in REMISSION_ENDPOINTS and len(studies) and "timepoint_weeks" in studies:
        npat = studies["n_treat"] + studies["n_ctrl"]
        known = studies["timepoint_weeks"].notna()
        early = known & (studies["timepoint_weeks"].astype(float) <= 26)
        if known.any() and npat[early].sum() >= 0.5 * npat[known].sum():
            concerns.append("proteinuria-based remission at <= 26 weeks on drug (surrogate)")
    d_ind = min(len(concerns), 2)
    ind = (f"-{d_ind}: " + "; ".join(concerns)) if d_ind else "no concern recorded"
    down += d_ind
    # small-study effects
    if k >= 10 and egger_pvalue is not None:
        d_ss = 1 if egger_pvalue < 0.10 else 0
        ss = f"-1: Egger p = {egger_pvalue:.3f}" if d_ss else f"no concern: Egger p = {egger_pvalue:.3f}"
    else:
        d_ss, ss = 0, f"not assessable (k = {k} < 10)"
    down += d_ss
    rating = LEVELS[max(0, start - down)]
    derived_share = 0.0
    if n_total and "derived" in studies:
        derived_share = float((studies.loc[studies["derived"].astype(bool), "n_treat"] + studies.loc[studies["derived"].astype(bool), "n_ctrl"]).sum() / n_total)
    return Certainty(rating, down, "-1: unclear (no risk-of-bias assessment recorded)", inc, imp, ind, ss, derived_share)
