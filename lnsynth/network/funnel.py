r"""Comparison-adjusted funnel plot data (Chaimani & Salanti 2012).

Every study contributes each of its pairwise contrasts (all pairs of a
multi-arm study, as netmeta's ``funnel.netmeta``) oriented by a treatment
``order``: the effect of the treatment later in ``order`` relative to the one
earlier in it (e.g. order treatments from oldest to newest, or placebo first,
so that small-study effects favouring newer treatments point the same way).
The comparison-adjusted effect is

.. math::

    y^{adj}_{iXY} = y_{iXY} - \hat\mu_{XY},

with :math:`\hat\mu_{XY}` the comparison-specific direct pooled estimate
(inverse-variance, weights :math:`1/(v_i + \hat\tau^2)` with the fit's
tau^2), plotted against its standard error :math:`\sqrt{v_i}`.  Without
small-study effects the points scatter symmetrically around 0.  An
Egger-type test (Egger et al. 1997) regresses :math:`y^{adj}/se` on
:math:`1/se` by ordinary least squares; the intercept's t-test (``k - 2`` df)
measures asymmetry.

References
----------
Chaimani A., Salanti G. (2012). Using network meta-analysis to evaluate the
existence of small-study effects in a network of interventions. Res Synth
Methods 3:161-176.
Chaimani A., Higgins J.P.T., Mavridis D., Spyridonos P., Salanti G. (2013).
Graphical tools for network meta-analysis in STATA. PLoS One 8:e76654.
Egger M., Davey Smith G., Schneider M., Minder C. (1997). Bias in
meta-analysis detected by a simple, graphical test. BMJ 315:629-634.

Examples
--------
>>> fd = comparison_adjusted_funnel(res, order=["Placebo", "COMTI", "MAOBI"])   # doctest: +SKIP
>>> fd.points.head(); fd.egger                                               # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

if TYPE_CHECKING:  # pragma: no cover
    from .model import NMAResult


@dataclass(frozen=True, eq=False)
class AdjustedFunnel:
    """Result of :func:`comparison_adjusted_funnel`.

    Attributes
    ----------
    points : DataFrame
        ``study, treat1, treat2, comparison, y, se, direct, y_adj`` (effect
        of ``treat1`` relative to ``treat2``; ``treat2`` earlier in ``order``).
    order : tuple of str
    egger : dict
        ``intercept, se, tval, df, pvalue, slope`` of the Egger-type regression
        (NaN with fewer than 3 points).
    measure : str
    tau2 : float
    """

    points: pd.DataFrame = field(repr=False)
    order: tuple[str, ...]
    egger: dict[str, float]
    measure: str
    tau2: float

    def to_frame(self) -> pd.DataFrame:
        return self.points.copy()

    def to_dict(self) -> dict[str, Any]:
        return {"order": list(self.order), "egger": dict(self.egger), "measure": self.measure, "tau2": self.tau2,
                "points": self.points.to_dict(orient="records")}

    def summary(self) -> str:
        e = self.egger
        return (f"Comparison-adjusted funnel: {len(self.points)} contrasts from "
                f"{self.points['study'].nunique()} studies, {self.points['comparison'].nunique()} comparisons; "
                f"Egger-type test intercept = {e['intercept']:.4f} (SE {e['se']:.4f}, p = {e['pvalue']:.4g})")


def _egger(y: np.ndarray, se: np.ndarray) -> dict[str, float]:
    k = len(y)
    nan = float("nan")
    if k < 3:
        return {"intercept": nan, "se": nan, "tval": nan, "df": k - 2, "pvalue": nan, "slope": nan}
    Z = y / se
    A = np.column_stack([np.ones(k), 1.0 / se])
    coef, *_ = np.linalg.lstsq(A, Z, rcond=None)
    res = Z - A @ coef
    s2 = float(res @ res) / (k - 2)
    cov = s2 * np.linalg.inv(A.T @ A)
    se0 = float(np.sqrt(cov[0, 0]))
    t = float(coef[0]) / se0 if se0 > 0 else nan
    return {"intercept": float(coef[0]), "se": se0, "tval": t, "df": k - 2,
            "pvalue": float(2 * stats.t.sf(abs(t), k - 2)) if np.isfinite(t) else nan, "slope": float(coef[1])}


def comparison_adjusted_funnel(result: "NMAResult", order: Sequence[str] | None = None) -> AdjustedFunnel:
    """Comparison-adjusted funnel plot data (see the module docstring).

    Parameters
    ----------
    result : NMAResult
    order : sequence of str, optional
        All treatments, in the order that orients the contrasts (each point is
        the later treatment relative to the earlier one).  Default: the
        network reference first, then the others in sorted order.

    Returns
    -------
    AdjustedFunnel

    Raises
    ------
    ValueError
        ``order`` misses treatments of the network or names unknown ones.

    Examples
    --------
    >>> comparison_adjusted_funnel(res).egger["pvalue"]               # doctest: +SKIP
    """
    trts = list(result.treatments)
    if order is None:
        order = [result.reference] + [t for t in trts if t != result.reference]
    order = [str(t) for t in order]
    unknown = [t for t in order if t not in trts]
    missing = [t for t in trts if t not in order]
    if unknown or missing or len(set(order)) != len(order):
        raise ValueError(f"order must list every treatment exactly once; unknown: {unknown}, missing: {missing}")
    rank = {t: i for i, t in enumerate(order)}
    tau2 = float(result.tau2)
    rows = []
    for s in result.data.studies:
        ts = s.treatments
        for i in range(len(ts)):
            for j in range(i + 1, len(ts)):
                lo, hi = sorted((ts[i], ts[j]), key=rank.get)
                y, v = s.pair_contrast(hi, lo)
                rows.append((s.study, hi, lo, f"{hi}:{lo}", y, float(np.sqrt(v)), v))
    pts = pd.DataFrame(rows, columns=["study", "treat1", "treat2", "comparison", "y", "se", "_v"])
    centre = {}
    for comp, g in pts.groupby("comparison", sort=False):
        w = 1.0 / (g["_v"].to_numpy() + tau2)
        centre[comp] = float(np.sum(w * g["y"].to_numpy()) / np.sum(w))
    pts["direct"] = pts["comparison"].map(centre)
    pts["y_adj"] = pts["y"] - pts["direct"]
    pts = pts.drop(columns="_v")
    return AdjustedFunnel(pts, tuple(order), _egger(pts["y_adj"].to_numpy(), pts["se"].to_numpy()),
                          result.measure, tau2)
