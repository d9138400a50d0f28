"""The standard pairwise syntheses of the stored trials, with a certainty rating each.

One place defines which comparisons lnsynth reports (efficacy and adverse events) and
runs them through the pairwise engine; the report and the summary-of-findings table
read the results from here, so every number they show is the engine's.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from lnsynth.evidence.select import PairwiseData, SelectionWarning, adverse_event_data, pairwise_data

from .certainty import Certainty, rate_certainty


@dataclass(frozen=True)
class Comparison:
    key: str
    outcome: str
    treatment: str
    control: str
    title: str
    kind: str = "efficacy"  # or "adverse event"
    measure: str = "RR"


NON_CNI = "IVCYC,CYC,MMF,AZA,PRED"

COMPARISONS: tuple[Comparison, ...] = (
    Comparison("cr_vs_cyc", "complete remission", "CNI-any", "IVCYC,CYC", "CNI-containing induction vs cyclophosphamide"),
    Comparison("or_vs_cyc", "overall remission", "CNI-any", "IVCYC,CYC", "CNI-containing induction vs cyclophosphamide"),
    Comparison("cr_vs_mmf", "complete remission", "CNI-any", "MMF", "CNI-containing induction vs MMF (incl. placebo + MMF)"),
    Comparison("or_vs_mmf", "overall remission", "CNI-any", "MMF", "CNI-containing induction vs MMF"),
    Comparison("flare_vs_mmf", "kidney flare", "CNI-any", "MMF", "Kidney flares after CNI vs MMF induction"),
    Comparison("relapse_vs_aza", "kidney relapse", "CNI-any", "AZA", "CNI-containing maintenance vs azathioprine"),
    Comparison("sae", "serious adverse events", "CNI-any", NON_CNI, "Serious adverse events: CNI-containing vs non-CNI regimen", "adverse event"),
    Comparison("death", "death", "CNI-any", NON_CNI, "Death: CNI-containing vs non-CNI regimen", "adverse event"),
    Comparison("withdrawal", "withdrawal due to adverse events", "CNI-any", NON_CNI, "Withdrawal for adverse events: CNI-containing vs non-CNI regimen", "adverse event"),
    Comparison("infection", "infection", "CNI-any", NON_CNI, "Infection: CNI-containing vs non-CNI regimen", "adverse event"),
    Comparison("any_ae", "adverse events", "CNI-any", NON_CNI, "Any adverse event: CNI-containing vs non-CNI regimen", "adverse event"),
)


@dataclass(frozen=True)
class SynthesisResult:
    comparison: Comparison
    data: PairwiseData
    result: Optional[object]  # MetaResult, None when k == 0
    certainty: Optional[Certainty]

    @property
    def k(self) -> int:
        return self.data.k

    def row(self) -> dict:
        c, d = self.comparison, self.data
        out = {
            "key": c.key,
            "comparison": c.title,
            "outcome": c.outcome,
            "kind": c.kind,
            "measure": c.measure,
            "k": d.k,
            "patients": d.patients,
            "studies": ", ".join(d.labels),
        }
        if self.result is None:
            out.update(estimate=math.nan, ci_low=math.nan, ci_high=math.nan, pi_low=math.nan, pi_high=math.nan, i2=math.nan, tau2=math.nan, pvalue=math.nan, certainty="no data")
            return out
        r = self.result.to_dict()
        out.update(
            log_estimate=r["estimate"],
            estimate=math.exp(r["estimate"]),
            ci_low=math.exp(r["ci_low"]),
            ci_high=math.exp(r["ci_high"]),
            pi_low=math.exp(r["pi_low"]),
            pi_high=math.exp(r["pi_high"]),
            i2=r["i2"],
            tau2=r["tau2"],
            pvalue=r["pvalue"],
            certainty=self.certainty.rating if self.certainty else "",
            derived_share=self.certainty.derived_share if self.certainty else math.nan,
        )
        return out


def run_syntheses(ev, method: str = "REML", approximate: bool = True, comparisons=COMPARISONS) -> list[SynthesisResult]:
    """Fit every comparison (log RR, ``method``); exclusions are recorded on each data set.

    ``approximate=True`` (default) keeps studies whose printed percentages no integer count
    reproduces, using ``round(pct/100*n)`` and flagging them (see
    :func:`lnsynth.evidence.select.pairwise_data`).
    """
    from lnsynth.pairwise import effect_sizes, meta_analysis

    out = []
    for c in comparisons:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SelectionWarning)
            if c.kind == "efficacy":
                d = pairwise_data(ev, c.outcome, c.treatment, c.control, approximate=approximate, warn=False)
            else:
                d = adverse_event_data(ev, c.outcome, c.treatment, c.control, warn=False)
        if d.k == 0:
            out.append(SynthesisResult(c, d, None, None))
            continue
        es = effect_sizes(c.measure, labels=d.labels, **d.counts())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = meta_analysis(es, method=method)
        cert = rate_certainty(res.to_dict(), d.frame, c.outcome)
        out.append(SynthesisResult(c, d, res, cert))
    return out


def summary_of_findings(results: list[SynthesisResult]) -> pd.DataFrame:
    rows = []
    for s in results:
        r = s.row()
        if s.certainty is not None:
            cd = s.certainty.to_dict()
            r.update({f"grade_{k}": v for k, v in cd.items() if k not in ("rating", "derived_share")})
        rows.append(r)
    return pd.DataFrame(rows)
