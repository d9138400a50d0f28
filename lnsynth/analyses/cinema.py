"""CINeMA ratings for the induction network of the stored trials (issue 24, item 4).

The network is the report's and ``lnsynth nma``'s: :func:`lnsynth.analyses.network_data.arm_level_data`
(induction regimens, IV cyclophosphamide the reference) fitted by
:func:`lnsynth.network.network_meta_analysis` (REML, log odds ratio).  The inputs of
:func:`lnsynth.network.cinema.cinema` come from the evidence base:

* **within-study bias**: each trial's stored RoB 2 overall judgement
  (:meth:`lnsynth.evidence.schema.RiskOfBias.overall`; a trial without one is counted as ``high``
  and the reason says so);
* **indirectness**: each trial's own concerns relative to the question "induction treatment of
  lupus nephritis" read from the stored study by :func:`lnsynth.analyses.grade.trial_indirectness`
  (dose-ranging arm, low-dose or rapidly tapered steroids, children, non-biopsy diagnosis,
  continuation designs) plus a pure class V population.  Level: ``low`` without concerns;
  ``high`` when a population or design concern covers at least half of the trial's patients;
  otherwise ``some concerns``;
* **thresholds**: the range of equivalence is the clinical questions' declared default
  (:class:`lnsynth.analyses.questions.Plan` ``thresholds``, 0.75 to 1.25) applied to the odds ratio;
* **reporting bias**: ``undetected`` for every comparison unless the caller declares otherwise.

Public API
----------
network_cinema(ev, outcome="complete remission", ...) -> NetworkCinema
cinema_frame(ev, ...) -> DataFrame (one row per NMA estimate)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lnsynth.network.cinema import CinemaResult, cinema, roe_from_ratio

#: The population the induction network answers for (what indirectness is judged against).
NETWORK_POPULATION = "adults with biopsy-proven active (proliferative, with or without membranous) lupus nephritis, induction"

_PURE_V = re.compile(r"(class\s*V\b|membranous)", re.IGNORECASE)
_PROLIF = re.compile(r"(III|IV|proliferative|\b3\b|\b4\b)", re.IGNORECASE)


def default_thresholds() -> tuple[float, float]:
    """The clinical questions' declared range of equivalence on the ratio scale."""
    from .questions import Plan

    return tuple(Plan.model_fields["thresholds"].default)  # type: ignore[return-value]


def study_indirectness(ev: Any, study: str, nodes: set) -> tuple[str, str]:
    """``(level, reason)`` of one trial's indirectness for the induction network (see the module docstring)."""
    from .grade import trial_indirectness
    from .network_data import INDUCTION_NODES

    st = ev.study(study)
    arms = [a for a in st.arms if INDUCTION_NODES.get(a.regimen) in nodes]
    concerns = list(trial_indirectness(st, arms, [], "induction"))
    pop = st.population.value if st.population is not None else ""
    if pop and _PURE_V.search(pop) and not _PROLIF.search(pop):
        concerns.append(("population", f"pure class V (membranous) nephritis ({pop})", 1.0))
    if not concerns:
        return "low", "no indirectness concern found in the stored trial (dose, steroids, population, design)"
    serious = [c for c in concerns if c[0] in ("population", "design") and c[2] >= 0.5]
    level = "high" if serious else "some concerns"
    return level, "; ".join(f"{k}: {t} ({100 * s:.0f}% of its patients)" for k, t, s in concerns)


@dataclass(frozen=True, eq=False)
class NetworkCinema:
    """CINeMA for the stored induction network.

    Attributes
    ----------
    result : CinemaResult
        The engine's result (``result.frame``: one row per NMA estimate).
    studies : DataFrame
        Per trial: ``study, label, rob, rob_basis, indirectness, indirectness_reason``.
    outcome : str
    thresholds : (float, float)
        Range of equivalence on the odds-ratio scale.
    fit, data
        The NMA fit and the arm-level data set it used.
    """

    result: CinemaResult
    studies: pd.DataFrame = field(repr=False)
    outcome: str
    thresholds: tuple[float, float]
    fit: Any = field(repr=False)
    data: Any = field(repr=False)

    @property
    def frame(self) -> pd.DataFrame:
        return self.result.to_frame()

    def to_dict(self) -> dict[str, Any]:
        import json

        return {"outcome": self.outcome, "population": NETWORK_POPULATION, "reference": self.fit.reference,
                "measure": self.fit.measure, "thresholds": list(self.thresholds), **self.result.to_dict(),
                "studies": json.loads(self.studies.to_json(orient="records"))}


def network_cinema(ev: Any, outcome: str = "complete remission", *, approximate: bool = True,
                   thresholds: tuple[float, float] | None = None, rule: str = "majority",
                   reporting_bias: None | str | Mapping[Any, str] = None, fit: Any = None,
                   data: Any = None, mixed_rule: str = "areas") -> NetworkCinema:
    """CINeMA's six domains and confidence for every estimate of the induction network.

    Parameters
    ----------
    ev : EvidenceBase
    outcome : str
        Endpoint of the network (default complete remission, the report's network).
    approximate : bool
        As ``lnsynth nma``: approximate counts where no integer reproduces a printed percentage.
    thresholds : (float, float), optional
        Range of equivalence on the odds-ratio scale (default :func:`default_thresholds`).
    rule : {"majority", "average", "highest"}
    reporting_bias : str or mapping, optional
        Declared reporting-bias judgements (default ``undetected`` for all comparisons).
    fit, data : optional
        An already fitted network and its :class:`~lnsynth.analyses.network_data.ArmData` (the
        report passes its own, so the table rates exactly the estimates it shows).
    """
    from .network_evidence import evidence_network

    net = None
    if data is None or fit is None:
        net = evidence_network(ev, outcome, approximate=approximate, fit=fit is None, min_studies=2 if data is None else 0)
        data = net.data if data is None else data
    if data.k < 2:
        raise ValueError(f"fewer than two trials with usable counts for {outcome!r}: no network to rate")
    if fit is None:
        if net is None or net.fit is None:
            raise ValueError(net.error if net is not None and net.error else f"no network fitted for {outcome!r}")
        fit = net.fit
    thr = tuple(float(x) for x in (thresholds or default_thresholds()))
    if len(thr) != 2:
        raise ValueError(f"thresholds: expected (lower, upper) on the ratio scale, got {thresholds!r}")
    rows = []
    for sid, g in data.frame.groupby("study", sort=False):
        st = ev.study(sid)
        overall = st.rob.overall() if st.rob is not None else "not assessed"
        basis = st.rob.overall_basis() if st.rob is not None else "no RoB 2 assessment recorded"
        if overall not in ("low", "some concerns", "high"):
            overall, basis = "high", "no RoB 2 assessment recorded: counted as high"
        ind, why = study_indirectness(ev, sid, set(g["treatment"]))
        rows.append({"study": sid, "label": g["label"].iloc[0], "rob": overall, "rob_basis": basis,
                     "indirectness": ind, "indirectness_reason": why})
    studies = pd.DataFrame(rows, columns=["study", "label", "rob", "rob_basis", "indirectness", "indirectness_reason"])
    res = cinema(fit, dict(zip(studies["study"], studies["rob"])),
                 dict(zip(studies["study"], studies["indirectness"])), roe=roe_from_ratio(*thr), rule=rule,
                 reporting_bias=reporting_bias, mixed_rule=mixed_rule)
    return NetworkCinema(res, studies, outcome, thr, fit, data)  # type: ignore[arg-type]


def cinema_frame(ev: Any, outcome: str = "complete remission", **kwargs: Any) -> pd.DataFrame:
    """One row per NMA estimate of the induction network with the six domains, their reasons and
    the confidence (:func:`network_cinema`'s ``frame``)."""
    return network_cinema(ev, outcome, **kwargs).frame


def cinema_text(nc: NetworkCinema, reasons: bool = True) -> str:
    """Markdown: one table row per NMA estimate (OR [95% CI], evidence, the six domains, confidence),
    then each estimate's reasons (``lnsynth cinema --format text``)."""
    import math

    from lnsynth.network.cinema import DOMAIN_LABELS, DOMAINS

    f = nc.frame
    lo, hi = nc.thresholds
    ex = (lambda x: f"{math.exp(x):.2f}")
    out = [(f"## CINeMA: {nc.outcome} network (OR; reference {nc.fit.reference}; {nc.result.rule} rule; "
            f"range of equivalence OR {lo:g} to {hi:g})"), "",
           "| comparison | OR [95% CI] | evidence | " + " | ".join(DOMAIN_LABELS[d] for d in DOMAINS) + " | confidence |",
           "|" + "---|" * (len(DOMAINS) + 4)]
    for r in f.itertuples(index=False):
        out.append(f"| {r.comparison} | {ex(r.estimate)} [{ex(r.ci_low)}, {ex(r.ci_high)}] | {r.evidence} | "
                   + " | ".join(getattr(r, d) for d in DOMAINS) + f" | {r.confidence} |")
    if reasons:
        out.append("")
        for r in f.itertuples(index=False):
            out.append(f"- {r.comparison} ({r.confidence}): "
                       + "; ".join(f"{DOMAIN_LABELS[d]}: {getattr(r, d + '_reason')}" for d in DOMAINS))
        out.append("")
        out.append("Trial inputs: " + "; ".join(f"{s.study} RoB {s.rob}, indirectness {s.indirectness}"
                                                for s in nc.studies.itertuples(index=False)))
    return "\n".join(out) + "\n"


__all__ = ["NETWORK_POPULATION", "NetworkCinema", "cinema_frame", "cinema_text", "default_thresholds",
           "network_cinema", "study_indirectness"]
