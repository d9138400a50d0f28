r"""CINeMA: confidence in the results of a network meta-analysis, six domains per NMA estimate.

For each relative effect of a fitted :class:`~lnsynth.network.NMAResult` (every pair of
treatments) this module judges the six CINeMA domains as ``"no concerns"``, ``"some concerns"``
or ``"major concerns"``, each with its reason, and summarises them into a confidence rating
(``"high"``, ``"moderate"``, ``"low"``, ``"very low"``) -- the framework of Nikolakopoulou et al.
(2020) as implemented in the CINeMA web application (Papakonstantinou et al. 2020).  No evidence
is read here: the caller gives per-study levels and the thresholds.

Domains
-------
Within-study bias and indirectness (contribution-weighted study levels)
    Each study's percentage contribution to each NMA estimate is its comparison's share in the
    contribution matrix (:func:`lnsynth.network.contribution_matrix`, Papakonstantinou et al.
    2018) split among the studies of that direct comparison in proportion to their
    inverse-variance weights ``1/(v_i + tau^2)`` (:func:`study_contributions`).  Study levels
    ``low / some concerns / high`` (CINeMA's 1/2/3; ``L/U/H``, ``moderate`` and ``unclear`` are
    accepted as aliases) are summarised by one of CINeMA's three rules:

    * ``"majority"``: the level with the largest total contribution;
    * ``"average"``: the contribution-weighted mean of the scores 1, 2, 3, rounded half up;
    * ``"highest"``: the worst level among the studies that contribute.

    Level 1 gives *no concerns*, 2 *some concerns*, 3 *major concerns*.
Reporting bias
    Declared per comparison (CINeMA offers no statistical rule): ``"undetected"`` -> no
    concerns, ``"suspected"`` -> some concerns, ``"strongly suspected"`` -> major concerns; the
    default for undeclared comparisons is a parameter.
Imprecision
    The confidence interval against the range of equivalence ``roe = (lower, upper)`` (on the
    analysis scale, i.e. log for ratio measures; the clinically important effects lie outside it):
    the number of its boundaries lying strictly inside the CI -- 0 (the CI lies within the range,
    or wholly on one side of it) no concerns, 1 some concerns, 2 (clinically important effects in
    both directions) major concerns.  This is the CINeMA application's ``numberOfCrosses`` rule.
Heterogeneity
    Agreement of the confidence and the prediction interval with respect to the clinically
    important effects: CINeMA's table ``level = crossings(PI) - crossings(CI)`` (0 no concerns,
    1 some, 2 major), counted as in the application's heterogeneity rule: against the range of
    equivalence when the CI lies within it, otherwise against the line of no effect and the
    threshold on the *other* side of it from the estimate (so a PI that reaches the null, or
    important effects in the opposite direction, raises concerns).
Incoherence
    * direct evidence only: no concerns;
    * indirect evidence only: the design-by-treatment interaction test -- p > 0.10 no concerns,
      0.01 <= p <= 0.10 some concerns, p < 0.01 major concerns (not assessable, so no concerns
      with that reason, when the test has 0 df because the network has no loop of designs);
    * mixed evidence: the SIDE (node-splitting) direct and indirect confidence intervals are placed
      in the three areas left of, within and right of the range of equivalence; the number of
      areas on which they agree (both touch it, or both do not) is 3 -> no concerns, 2 -> some
      concerns, 0 or 1 -> major concerns (CINeMA documentation).  The SIDE p-value is reported;
      with ``mixed_rule="areas+p"`` the worse of that judgement and the p-value rule above is used.

Overall confidence
    Start at *high*; each *some concerns* lowers by one level and each *major concerns* by two,
    down to *very low* (the CINeMA paper's suggested starting point; the application leaves the
    final rating to the reviewer, who may rate down less where domains overlap, e.g. imprecision
    and heterogeneity judged on the same thresholds).

Deliberate differences from CINeMA
----------------------------------
* Ties in the majority rule go to the worse level (the application keeps whichever level it met
  first, which depends on data order).
* Study contributions are computed from lnsynth's own contribution matrix (``"shortestpath"`` by
  default, ``"randomwalk"`` available); multi-arm studies contribute to each of their comparisons
  with their pairwise weights.
* A study without a level is an error unless ``missing=`` names the level to assume (CINeMA
  requires one for every study).
* The mixed-evidence incoherence rule can add the SIDE p-value (``mixed_rule="areas+p"``); by
  default it is CINeMA's CI-agreement rule.
* With ``tau^2 = 0`` heterogeneity is *no concerns* (CINeMA would compare the CI with a prediction
  interval that is wider only because it uses a t instead of a normal quantile).
* Prediction intervals are lnsynth's (:meth:`NMAResult.prediction_intervals`, t with the network
  Q's df, as netmeta); when they cannot be computed (no residual df) heterogeneity is reported as
  not assessable (no concerns).

References
----------
Nikolakopoulou A, Higgins JPT, Papakonstantinou T, Chaimani A, Del Giovane C, Egger M, Salanti G.
CINeMA: An approach for assessing confidence in the results of a network meta-analysis. PLoS Med
2020;17(4):e1003082. doi:10.1371/journal.pmed.1003082
Papakonstantinou T, Nikolakopoulou A, Higgins JPT, Egger M, Salanti G. CINeMA: Software for
semiautomated assessment of the confidence in the results of network meta-analysis. Campbell Syst
Rev 2020;16(1):e1080. doi:10.1002/cl2.1080
Papakonstantinou T et al. Estimating the contribution of studies in network meta-analysis: paths,
flows and streams. F1000Research 2018;7:610.
Dias S, Welton NJ, Caldwell DM, Ades AE. Checking consistency in mixed treatment comparison
meta-analysis. Stat Med 2010;29:932-944 (SIDE).

Examples
--------
>>> res = network_meta_analysis(arms, study="study", treatment="arm", events="r", n="n",
...                             measure="OR", reference="A")                 # doctest: +SKIP
>>> cin = cinema(res, rob={"s1": "low", "s2": "high"}, roe=roe_from_ratio(0.8))  # doctest: +SKIP
>>> cin.to_frame()[["comparison", "within_study_bias", "imprecision", "confidence"]]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from .model import NMAResult

JUDGEMENTS = ("no concerns", "some concerns", "major concerns")
CONFIDENCE = ("high", "moderate", "low", "very low")
DOMAINS = ("within_study_bias", "reporting_bias", "indirectness", "imprecision", "heterogeneity", "incoherence")
DOMAIN_LABELS = {"within_study_bias": "Within-study bias", "reporting_bias": "Reporting bias",
                 "indirectness": "Indirectness", "imprecision": "Imprecision", "heterogeneity": "Heterogeneity",
                 "incoherence": "Incoherence"}
RULES = ("majority", "average", "highest")
STUDY_LEVELS = ("low", "some concerns", "high")
_LEVEL_ALIASES = {"low": 1, "l": 1, "1": 1, "some concerns": 2, "some": 2, "moderate": 2, "unclear": 2, "u": 2,
                  "m": 2, "2": 2, "high": 3, "h": 3, "3": 3}
REPORTING = {"undetected": 0, "suspected": 1, "strongly suspected": 2}
_REPORTING_ALIASES = {"undetected": 0, "not suspected": 0, "no concerns": 0, "suspected": 1, "some concerns": 1,
                      "strongly suspected": 2, "major concerns": 2}
_TOL = 1e-12


# ----------------------------------------------------------------------------- small rules (public, testable)
def study_level(value: Any, what: str = "level") -> int:
    """Map a study level (``low``/``some concerns``/``high``, CINeMA's 1/2/3 or L/U/H) to 1, 2, 3."""
    key = str(value).strip().lower()
    key = key.removesuffix(".0")
    if key not in _LEVEL_ALIASES:
        raise ValueError(f"{what}: {value!r} is not a study level; use low, some concerns or high (or 1/2/3, L/U/H)")
    return _LEVEL_ALIASES[key]


def summarise_levels(shares: Mapping[int, float], rule: str = "majority") -> int:
    """Summarise contribution shares per level ``{1: s1, 2: s2, 3: s3}`` (summing to 1) by a CINeMA rule.

    ``"majority"``: the level with the largest share (ties to the worse level); ``"average"``:
    ``floor(sum(level * share) + 0.5)`` (JavaScript's ``Math.round``, as the CINeMA application);
    ``"highest"``: the worst level with a positive share.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    sh = {lv: float(shares.get(lv, 0.0)) for lv in (1, 2, 3)}
    if rule == "majority":
        best = max(sh.values())
        return max(lv for lv, s in sh.items() if s >= best - 1e-9)
    if rule == "average":
        tot = sum(sh.values()) or 1.0
        return int(min(3, max(1, math.floor(sum(lv * s for lv, s in sh.items()) / tot + 0.5 + 1e-12))))
    return max(lv for lv, s in sh.items() if s > 1e-9) if any(s > 1e-9 for s in sh.values()) else 1


def crossings(lo: float, hi: float, lower: float, upper: float) -> int:
    """How many of the boundaries ``lower < upper`` lie strictly inside the interval ``(lo, hi)``
    (0, 1 or 2): CINeMA's ``numberOfCrosses``."""
    return int(lo < lower < hi) + int(lo < upper < hi)


def imprecision_level(ci: tuple[float, float], roe: tuple[float, float]) -> int:
    """0 no concerns, 1 some concerns, 2 major concerns: boundaries of the range of equivalence inside the CI."""
    return crossings(ci[0], ci[1], *roe)


def heterogeneity_level(estimate: float, ci: tuple[float, float], pi: tuple[float, float],
                        roe: tuple[float, float], null: float = 0.0) -> tuple[int, int, int, tuple[float, float]]:
    """CINeMA's heterogeneity rule: ``(level, CI crossings, PI crossings, boundaries used)``.

    When the CI lies within the range of equivalence both intervals are compared with it;
    otherwise with the null and the threshold on the other side of the null from the estimate.
    ``level = PI crossings - CI crossings`` (0, 1, 2).
    """
    lower, upper = roe
    if ci[0] > lower and ci[1] < upper:
        bounds = (lower, upper)
        ci_x = 0
    else:
        if estimate < null:
            bounds = (null, upper)
        elif estimate > null:
            bounds = (lower, null)
        else:
            bounds = (lower, upper)
        ci_x = crossings(ci[0], ci[1], *bounds)
    pi_x = crossings(pi[0], pi[1], *bounds)
    return max(0, min(2, pi_x - ci_x)), ci_x, pi_x, bounds


def _areas(lo: float, hi: float, roe: tuple[float, float]) -> tuple[bool, bool, bool]:
    lower, upper = roe
    return (lo < lower, hi > lower and lo < upper, hi > upper)


def incoherence_areas_level(direct_ci: tuple[float, float], indirect_ci: tuple[float, float],
                            roe: tuple[float, float]) -> tuple[int, int]:
    """CINeMA's mixed-evidence rule: ``(level, agreements)`` where ``agreements`` counts the areas
    (left of, within, right of the range of equivalence) that the direct and indirect CIs both touch
    or both miss; 3 -> 0 (no concerns), 2 -> 1 (some concerns), 0-1 -> 2 (major concerns)."""
    a, b = _areas(*direct_ci, roe), _areas(*indirect_ci, roe)
    agree = sum(x == y for x, y in zip(a, b))
    return (0 if agree == 3 else 1 if agree == 2 else 2), agree


def pvalue_level(p: float) -> int:
    """p > 0.10 -> 0, 0.01 <= p <= 0.10 -> 1, p < 0.01 -> 2 (CINeMA's design-by-treatment rule)."""
    return 0 if p > 0.10 else (1 if p >= 0.01 else 2)


def overall_confidence(levels: Mapping[str, int]) -> tuple[str, int]:
    """``(confidence, levels down)``: one level down per *some concerns*, two per *major concerns*."""
    down = int(sum(int(v) for v in levels.values()))
    return CONFIDENCE[min(3, down)], down


def roe_from_ratio(lower: float, upper: float | None = None) -> tuple[float, float]:
    """Range of equivalence on the log scale from ratio thresholds: ``(log lower, log upper)``;
    ``upper`` defaults to ``1/lower`` (CINeMA's symmetric range from one clinically important OR)."""
    if lower <= 0 or (upper is not None and upper <= 0):
        raise ValueError("ratio thresholds must be positive")
    up = 1.0 / lower if upper is None else upper
    lo, hi = sorted((math.log(lower), math.log(up)))
    if not lo < 0 < hi:
        raise ValueError(f"the range of equivalence ({lower:g}, {up:g}) must contain the null (1)")
    return lo, hi


# ----------------------------------------------------------------------------- study contributions
def study_contributions(result: NMAResult, method: str = "shortestpath") -> pd.DataFrame:
    """Share of each study in each NMA estimate (rows ``"a:b"`` as the contribution matrix; each row sums to 1).

    A direct comparison's contribution is split among its studies in proportion to
    ``1/(v_i + tau^2)``, ``v_i`` the variance of the study's contrast for that comparison.
    """
    from .contribution import _split, contribution_matrix

    cm = contribution_matrix(result, method=method).matrix
    tau2 = float(result.tau2)
    studies = [s.study for s in result.data.studies]
    out = np.zeros((len(cm.index), len(studies)))
    for j, col in enumerate(cm.columns):
        a, b = _split(col, result.treatments)
        w = np.zeros(len(studies))
        for i, s in enumerate(result.data.studies):
            if a in s.treatments and b in s.treatments:
                _, v = s.pair_contrast(b, a)
                w[i] = 1.0 / (v + tau2)
        if w.sum() > 0:
            out += np.outer(cm.iloc[:, j].to_numpy(), w / w.sum())
    return pd.DataFrame(out, index=cm.index, columns=studies)


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)
class CinemaResult:
    """Result of :func:`cinema`.

    Attributes
    ----------
    frame : DataFrame
        One row per NMA estimate (see :func:`cinema`).
    contributions : DataFrame
        Study contributions (rows ``"a:b"``, columns studies).
    roe : (float, float)
        Range of equivalence on the analysis scale.
    rule : str
    measure : str
    """

    frame: pd.DataFrame = field(repr=False)
    contributions: pd.DataFrame = field(repr=False)
    roe: tuple[float, float]
    rule: str
    measure: str
    mixed_rule: str = "areas"

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()

    def to_dict(self) -> dict[str, Any]:
        import json

        return {"measure": self.measure, "rule": self.rule, "mixed_rule": self.mixed_rule,
                "roe": list(self.roe), "estimates": json.loads(self.frame.to_json(orient="records"))}

    def summary(self) -> str:
        lines = [f"CINeMA ({self.rule} rule; range of equivalence {_fmt_roe(self.roe, self.measure)})"]
        for r in self.frame.itertuples(index=False):
            doms = ", ".join(f"{DOMAIN_LABELS[d]}: {getattr(r, d)}" for d in DOMAINS)
            lines.append(f"{r.comparison}: {r.confidence} ({doms})")
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()


def _ratio(measure: str) -> bool:
    from lnsynth import registry

    return registry.is_ratio(measure)


def _show(x: float, measure: str) -> str:
    return f"{math.exp(x):.2f}" if _ratio(measure) else f"{x:.2f}"


def _fmt_roe(roe: tuple[float, float], measure: str) -> str:
    return f"{_show(roe[0], measure)} to {_show(roe[1], measure)}" + (f" ({measure})" if measure else "")


def _share_text(shares: Mapping[int, float]) -> str:
    return ", ".join(f"{STUDY_LEVELS[lv - 1]} {100 * shares.get(lv, 0.0):.0f}%" for lv in (1, 2, 3))


def _levels_for(studies: list[str], given: Mapping[str, Any] | None, what: str, missing: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    lacking = []
    for s in studies:
        v = None if given is None else given.get(s)
        if v is None:
            if missing is None:
                lacking.append(s)
                continue
            v = missing
        out[s] = study_level(v, f"{what}[{s!r}]")
    if lacking:
        raise ValueError(f"{what}: no level for stud{'y' if len(lacking) == 1 else 'ies'} {', '.join(lacking)} "
                         f"(give low / some concerns / high for every study, or missing=...)")
    return out


def _contribution_domain(row: pd.Series, levels: Mapping[str, int], rule: str, name: str) -> tuple[int, str]:
    shares = {1: 0.0, 2: 0.0, 3: 0.0}
    for s, c in row.items():
        if c > _TOL:
            shares[levels[s]] += float(c)
    tot = sum(shares.values()) or 1.0
    shares = {k: v / tot for k, v in shares.items()}
    lv = summarise_levels(shares, rule)
    top = row[row > _TOL].sort_values(ascending=False)
    main = ", ".join(f"{s} {100 * c:.0f}% ({STUDY_LEVELS[levels[s] - 1]})" for s, c in top.head(3).items())
    return lv - 1, (f"{rule} rule -> {STUDY_LEVELS[lv - 1]}; contribution by {name}: {_share_text(shares)}"
                    f" (largest: {main})")


def _key(a: str, b: str) -> frozenset:
    return frozenset((a, b))


def _reporting(judgements: None | str | Mapping[Any, str], a: str, b: str, default: str) -> tuple[int, str]:
    declared = None
    if isinstance(judgements, str):
        declared = judgements
    elif judgements is not None:
        for k, v in judgements.items():
            pair = tuple(k) if isinstance(k, (tuple, list, frozenset, set)) else tuple(str(k).split(":", 1))
            if len(pair) == 2 and _key(*pair) == _key(a, b):
                declared = v
                break
    val = declared if declared is not None else default
    key = str(val).strip().lower()
    if key not in _REPORTING_ALIASES:
        raise ValueError(f"reporting bias for {a} vs {b}: {val!r}; use undetected, suspected or strongly suspected")
    lv = _REPORTING_ALIASES[key]
    words = ("undetected", "suspected", "strongly suspected")[lv]
    how = "declared" if declared is not None else "not declared for this comparison; default"
    return lv, f"publication/reporting bias {words} ({how})"


def cinema(result: NMAResult, rob: Mapping[str, Any], indirectness: Mapping[str, Any] | None = None, *,
           roe: tuple[float, float], rule: str = "majority", indirectness_rule: str | None = None,
           reporting_bias: None | str | Mapping[Any, str] = None, default_reporting: str = "undetected",
           contribution_method: str = "shortestpath", mixed_rule: str = "areas",
           split_method: str = "back-calculation", missing: str | None = None,
           missing_indirectness: str | None = "low") -> CinemaResult:
    """CINeMA's six domains and the confidence rating for every NMA relative effect.

    Parameters
    ----------
    result : NMAResult
    rob : mapping study -> level
        Within-study (risk of) bias of each study (``low``/``some concerns``/``high``; RoB 2 overall).
    indirectness : mapping study -> level, optional
        Each study's indirectness relative to the question; studies not listed take
        ``missing_indirectness`` (default ``"low"``; ``None`` makes them an error).
    roe : (float, float)
        Range of equivalence on the analysis scale (log scale for ratio measures; see
        :func:`roe_from_ratio`); it must contain 0.
    rule : {"majority", "average", "highest"}
        Rule summarising contribution-weighted study levels (within-study bias; also indirectness
        unless ``indirectness_rule`` is given).
    reporting_bias : str or mapping, optional
        One judgement for all comparisons, or per comparison (keys ``"a:b"`` or ``(a, b)``, either
        order): ``undetected``, ``suspected`` or ``strongly suspected``.
    default_reporting : str
        The judgement for comparisons not declared.
    contribution_method : {"shortestpath", "randomwalk"}
    mixed_rule : {"areas", "areas+p"}
        Incoherence of mixed evidence: CINeMA's CI-agreement rule, or the worse of it and the SIDE
        p-value rule.
    split_method : {"back-calculation", "exclusion"}
        SIDE direct/indirect estimates (:func:`lnsynth.network.node_split`; netmeta's ``netsplit``,
        which CINeMA calls, back-calculates).
    missing : str, optional
        Level assumed for a study without a RoB level (default: error).

    Returns
    -------
    CinemaResult
        ``frame`` has one row per NMA estimate: ``treat1, treat2, comparison, evidence
        ("mixed" / "direct only" / "indirect only"), n_direct, estimate, ci_low, ci_high, pi_low,
        pi_high`` (analysis scale), then for each domain in :data:`DOMAINS` the judgement and
        ``<domain>_reason``, then ``downgrade, confidence``.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    irule = indirectness_rule or rule
    if irule not in RULES:
        raise ValueError(f"indirectness_rule must be one of {RULES}, got {irule!r}")
    if mixed_rule not in ("areas", "areas+p"):
        raise ValueError(f"mixed_rule must be 'areas' or 'areas+p', got {mixed_rule!r}")
    lo_r, hi_r = (float(roe[0]), float(roe[1]))
    if not (lo_r < 0.0 < hi_r):
        raise ValueError(f"roe: the range of equivalence {roe!r} must contain the null (0 on the analysis scale; "
                         "log thresholds for ratio measures)")
    roe_t = (lo_r, hi_r)
    measure = str(result.measure)
    studies = [s.study for s in result.data.studies]
    rob_lv = _levels_for(studies, rob, "rob", missing)
    ind_lv = _levels_for(studies, indirectness or {}, "indirectness", missing_indirectness)
    contrib = study_contributions(result, method=contribution_method)

    from .inconsistency import _oriented_pairs

    pw = result.pairwise_effects().set_index(["treat1", "treat2"])
    try:
        pi = result.prediction_intervals(pairs=True).set_index(["treat1", "treat2"])
    except ValueError:
        pi = None
    ns = result.node_split(method=split_method)
    ns = ns.set_index(["treat1", "treat2"]) if len(ns) else ns
    dbt = result.design_by_treatment()
    n_direct = {}
    for a, b in _oriented_pairs(result):
        n_direct[(b, a)] = sum(1 for s in result.data.studies if a in s.treatments and b in s.treatments)

    rows = []
    for a, b in _oriented_pairs(result):
        t1, t2 = b, a  # effect of t1 relative to t2 (t2 the reference when the pair holds it)
        est, ci_lo, ci_hi = (float(pw.loc[(t1, t2), c]) for c in ("estimate", "ci_low", "ci_high"))
        p_lo, p_hi = (float(pi.loc[(t1, t2), "pi_low"]), float(pi.loc[(t1, t2), "pi_high"])) if pi is not None \
            else (math.nan, math.nan)
        lbl = f"{min(t1, t2)}:{max(t1, t2)}"
        crow = contrib.loc[lbl] if lbl in contrib.index else contrib.loc[f"{t1}:{t2}"]
        nd = n_direct[(t1, t2)]
        mixed = len(ns) > 0 and (t1, t2) in ns.index
        evidence = "mixed" if mixed else ("direct only" if nd > 0 else "indirect only")
        rec: dict[str, Any] = {"treat1": t1, "treat2": t2, "comparison": f"{t1} vs {t2}", "evidence": evidence,
                               "n_direct": nd, "estimate": est, "ci_low": ci_lo, "ci_high": ci_hi,
                               "pi_low": p_lo, "pi_high": p_hi}
        lv: dict[str, int] = {}
        # within-study bias, indirectness
        lv["within_study_bias"], rec["within_study_bias_reason"] = _contribution_domain(crow, rob_lv, rule, "risk of bias")
        lv["indirectness"], rec["indirectness_reason"] = _contribution_domain(crow, ind_lv, irule, "indirectness")
        # reporting bias
        lv["reporting_bias"], rec["reporting_bias_reason"] = _reporting(reporting_bias, t1, t2, default_reporting)
        # imprecision
        ci_txt = f"95% CI {_show(ci_lo, measure)} to {_show(ci_hi, measure)}"
        roe_txt = f"range of equivalence {_fmt_roe(roe_t, measure)}"
        k = imprecision_level((ci_lo, ci_hi), roe_t)
        lv["imprecision"] = k
        rec["imprecision_reason"] = ci_txt + (
            f" lies within the {roe_txt}" if k == 0 and ci_lo > lo_r and ci_hi < hi_r else
            f" crosses neither boundary of the {roe_txt}" if k == 0 else
            f" crosses one boundary of the {roe_txt}" if k == 1 else
            f" crosses both boundaries of the {roe_txt}: clinically important effects in both directions")
        # heterogeneity
        if float(result.tau2) <= 0.0:
            lv["heterogeneity"] = 0
            rec["heterogeneity_reason"] = ("tau^2 = 0: no between-study variance estimated (the prediction interval "
                                           "would differ from the CI only by its t quantile)")
        elif math.isfinite(p_lo) and math.isfinite(p_hi):
            h, cx, px, bnd = heterogeneity_level(est, (ci_lo, ci_hi), (p_lo, p_hi), roe_t)
            lv["heterogeneity"] = h
            rec["heterogeneity_reason"] = (
                f"prediction interval {_show(p_lo, measure)} to {_show(p_hi, measure)} crosses {px} and the CI "
                f"{cx} of the boundaries {_show(bnd[0], measure)} and {_show(bnd[1], measure)} "
                f"(tau^2 = {float(result.tau2):.3g})"
                + ("; CI and PI agree" if h == 0 else "; the PI reaches effects the CI excludes"))
        else:
            lv["heterogeneity"] = 0
            rec["heterogeneity_reason"] = ("not assessable: no prediction interval (no residual df); "
                                           f"tau^2 = {float(result.tau2):.3g}")
        # incoherence
        rec["side_pvalue"] = math.nan
        if evidence == "direct only":
            lv["incoherence"] = 0
            rec["incoherence_reason"] = "direct evidence only: no indirect evidence to disagree with"
        elif evidence == "indirect only":
            if dbt["df"] > 0 and math.isfinite(dbt["pvalue"]):
                lv["incoherence"] = pvalue_level(dbt["pvalue"])
                rec["incoherence_reason"] = (f"indirect evidence only: design-by-treatment interaction chi2 = "
                                             f"{dbt['chi2']:.2f}, df = {dbt['df']}, p = {dbt['pvalue']:.3f}")
            else:
                lv["incoherence"] = 0
                rec["incoherence_reason"] = ("indirect evidence only; not assessable: the design-by-treatment test "
                                             "has 0 df (no loop of designs)")
        else:
            r = ns.loc[(t1, t2)]
            from scipy import stats

            z = float(stats.norm.ppf(0.5 + float(result.level) / 2.0))
            dci = (float(r["direct"]) - z * float(r["direct_se"]), float(r["direct"]) + z * float(r["direct_se"]))
            ici = (float(r["indirect"]) - z * float(r["indirect_se"]), float(r["indirect"]) + z * float(r["indirect_se"]))
            a_lv, agree = incoherence_areas_level(dci, ici, roe_t)
            p = float(r["pvalue"])
            rec["side_pvalue"] = p
            lvl = a_lv
            if mixed_rule == "areas+p":
                lvl = max(a_lv, pvalue_level(p))
            lv["incoherence"] = lvl
            rec["incoherence_reason"] = (
                f"mixed evidence: direct {_show(float(r['direct']), measure)} ({_show(dci[0], measure)} to "
                f"{_show(dci[1], measure)}), indirect {_show(float(r['indirect']), measure)} ({_show(ici[0], measure)} to "
                f"{_show(ici[1], measure)}); the CIs agree on {agree} of 3 areas around the range of equivalence; "
                f"SIDE p = {p:.3f}" + ("" if mixed_rule == "areas" else " (p-value rule applied)"))
        for d in DOMAINS:
            rec[d] = JUDGEMENTS[lv[d]]
        conf, down = overall_confidence(lv)
        rec["downgrade"] = down
        rec["confidence"] = conf
        rows.append(rec)
    cols = (["treat1", "treat2", "comparison", "evidence", "n_direct", "estimate", "ci_low", "ci_high", "pi_low",
             "pi_high", "side_pvalue"] + [c for d in DOMAINS for c in (d, d + "_reason")] + ["downgrade", "confidence"])
    frame = pd.DataFrame(rows)[cols]
    return CinemaResult(frame, contrib, roe_t, rule, measure, mixed_rule)


__all__ = [
    "CONFIDENCE",
    "DOMAINS",
    "DOMAIN_LABELS",
    "JUDGEMENTS",
    "RULES",
    "CinemaResult",
    "cinema",
    "crossings",
    "heterogeneity_level",
    "imprecision_level",
    "incoherence_areas_level",
    "overall_confidence",
    "pvalue_level",
    "roe_from_ratio",
    "study_contributions",
    "study_level",
    "summarise_levels",
]
