r"""Heterogeneity and inconsistency for the contrast-based NMA.

Q decomposition (Krahn, Binder & König 2013)
--------------------------------------------
A *design* is the set of treatments compared in a study (``"A:B:C"``).  With
FE weights :math:`W = V^{-1}`, the generalised Cochran statistic of the
consistency model, :math:`Q_{tot} = (y - X\hat d)'W(y - X\hat d)`, splits as

.. math::

    Q_{tot} = \underbrace{\sum_d Q_d}_{\text{within designs}}
            + Q_{between},

where :math:`Q_d` is the residual Q of a model with a separate set of
parameters for design ``d`` fitted to that design's studies (heterogeneity
within designs) and :math:`Q_{between} = Q_{tot} - \sum_d Q_d` is the
design-by-treatment interaction statistic (inconsistency between designs),
with degrees of freedom :math:`\sum_s (k_s-1) - \sum_d (k_d-1)` (within) and
:math:`\sum_d (k_d-1) - (T-1)` (between).  Equivalently, ``Q_between`` is the
difference of residual Q between the consistency model and the full
design-by-treatment interaction model, which is how the R reference computes it
with ``rma.mv``.

Under random effects (``random=True``) the same decomposition is computed with
:math:`W = (V + \hat\tau^2 B)^{-1}`, where :math:`\hat\tau^2` is the
consistency model's estimate (REML here).  This mirrors netmeta's
``decomp.design`` ``Q.inc.random``, which plugs in the tau^2 of the
consistency model; numbers agree with netmeta when the same tau^2 is used
(netmeta's default tau^2 is a method-of-moments estimate, so values differ).

Node-splitting (SIDE by exclusion)
----------------------------------
For every pair ``(A, B)`` with direct evidence (studies containing both) and
indirect evidence (``A`` and ``B`` still connected after removing those
studies):

* direct: inverse-variance pooling of the within-study ``B`` vs ``A``
  contrasts of the studies containing both, weights
  :math:`1/(v_i + \hat\tau^2)` (``tau^2 = 0`` under FE);
* indirect: the consistency model refitted, with tau^2 fixed at the full
  network's estimate, to the remaining studies (whole multi-arm studies
  containing both ``A`` and ``B`` are excluded);
* difference = direct - indirect, :math:`SE = \sqrt{SE_d^2 + SE_i^2}` (disjoint
  studies, hence independent), two-sided normal p-value.

This is the "separating indirect from direct evidence" idea of Dias et al.
(2010) in its exclusion form (as netmeta's ``netsplit(method = "SIDE")`` is
described), not back-calculation.  Because multi-arm studies with both ``A``
and ``B`` are removed entirely, a loop formed only by one multi-arm study gives
no indirect evidence; a network without loops gives an empty table.

References
----------
Krahn U., Binder H., König J. (2013). A graphical tool for locating
inconsistency in network meta-analyses. BMC Med Res Methodol 13:35.
Dias S., Welton N.J., Caldwell D.M., Ades A.E. (2010). Checking consistency
in mixed treatment comparison meta-analysis. Stat Med 29:932-944.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from . import _core
from .data import StudyContrasts, components

if TYPE_CHECKING:  # pragma: no cover
    from .model import NMAResult


def _q_of(studies: Sequence[StudyContrasts], tau2: float) -> tuple[float, int]:
    """Residual Q (weights ``(V + tau2 B)^{-1}``) of the consistency model on ``studies``."""
    trts = sorted({t for s in studies for t in s.treatments})
    params = trts[1:]
    st = _core.stack(studies, params)
    fit = _core.gls_st(st, tau2)
    return fit.Q, len(st.y) - len(params)


def _by_design(studies: Sequence[StudyContrasts]) -> dict[str, list[StudyContrasts]]:
    out: dict[str, list[StudyContrasts]] = defaultdict(list)
    for s in studies:
        out[s.design].append(s)
    return dict(sorted(out.items()))


def _decompose(result: "NMAResult", tau2: float) -> tuple[float, int, list[tuple[str, int, float, int]]]:
    studies = result.data.studies
    q_tot, df_tot = _q_of(studies, tau2)
    per = []
    for d, ss in _by_design(studies).items():
        q, df = _q_of(ss, tau2)
        per.append((d, len(ss), q, df))
    return q_tot, df_tot, per


def _p(q: float, df: int) -> float:
    return float(stats.chi2.sf(q, df)) if df > 0 else float("nan")


def q_decomposition(result: "NMAResult", by_design: bool = False) -> pd.DataFrame:
    """Decomposition of the (FE-weighted) Q statistic (Krahn et al. 2013).

    Returns a DataFrame indexed by ``component`` (``"total"``,
    ``"within designs"``, ``"between designs"``) with columns ``Q, df,
    pvalue``; with ``by_design=True`` one row per design (``n_studies, Q, df,
    pvalue``) is returned instead.  ``total = within + between`` holds exactly.
    """
    q_tot, df_tot, per = _decompose(result, 0.0)
    if by_design:
        return pd.DataFrame([(d, n, q, df, _p(q, df)) for d, n, q, df in per],
                            columns=["design", "n_studies", "Q", "df", "pvalue"])
    q_w = float(sum(q for _, _, q, _ in per))
    df_w = int(sum(df for *_, df in per))
    rows = [("total", q_tot, df_tot), ("within designs", q_w, df_w),
            ("between designs", q_tot - q_w, df_tot - df_w)]
    out = pd.DataFrame([(c, q, df, _p(q, df)) for c, q, df in rows], columns=["component", "Q", "df", "pvalue"])
    return out.set_index("component")


def design_by_treatment(result: "NMAResult", random: bool | None = None) -> dict[str, Any]:
    """Design-by-treatment interaction test (global inconsistency; Krahn 2013).

    ``Q_between`` of :func:`q_decomposition` referred to chi^2 with
    ``sum_d (k_d - 1) - (T - 1)`` df.  ``random=True`` (default for REML
    fits) uses weights ``(V + tau2 B)^{-1}`` with the consistency model's tau^2.

    Returns
    -------
    dict with ``chi2, df, pvalue, tau2, random``.
    """
    if random is None:
        random = result.method != "FE"
    tau2 = float(result.tau2) if random else 0.0
    q_tot, df_tot, per = _decompose(result, tau2)
    q_w = sum(q for _, _, q, _ in per)
    df_b = df_tot - int(sum(df for *_, df in per))
    q_b = q_tot - q_w
    return {"chi2": float(q_b), "df": int(df_b), "pvalue": _p(q_b, df_b), "tau2": tau2, "random": bool(random)}


_NS_COLUMNS = ["treat1", "treat2", "n_direct", "direct", "direct_se", "indirect", "indirect_se",
               "nma", "nma_se", "difference", "difference_se", "zval", "pvalue"]


def node_split(result: "NMAResult") -> pd.DataFrame:
    """Node-splitting by exclusion (SIDE); see the module docstring.

    One row per comparison with both direct and indirect evidence; effects
    are of ``treat1`` relative to ``treat2`` on the model scale, where
    ``treat2`` is the network reference if the pair includes it, otherwise
    the earlier of the two in sorted order.  Columns: ``treat1, treat2, n_direct,
    direct, direct_se, indirect, indirect_se, nma, nma_se, difference,
    difference_se, zval, pvalue``.  Empty when no comparison has both.
    """
    studies = result.data.studies
    tau2 = float(result.tau2)
    pw = result.pairwise_effects().set_index(["treat1", "treat2"])
    trts = result.treatments
    pairs = []
    for i, a in enumerate(trts):
        for b in trts[i + 1:]:
            pairs.append((b, a) if b == result.reference else (a, b))
    rows = []
    for a, b in pairs:  # effect of b relative to comparator a
        has = [a in s.treatments and b in s.treatments for s in studies]
        if not any(has):
            continue
        rest = [s for s, h in zip(studies, has) if not h]
        comp = next((c for c in components(rest) if a in c), None)
        if comp is None or b not in comp:
            continue
        # direct
        yv = np.array([s.pair_contrast(b, a) for s, h in zip(studies, has) if h])
        w = 1.0 / (yv[:, 1] + tau2)
        d_est = float(np.sum(w * yv[:, 0]) / np.sum(w))
        d_se = float(np.sqrt(1.0 / np.sum(w)))
        # indirect
        sub = [s for s in rest if s.treatments[0] in comp]
        params = [t for t in comp if t != a]
        st = _core.stack(sub, params)
        g = _core.gls_st(st, tau2)
        k = params.index(b)
        i_est, i_se = float(g.beta[k]), float(np.sqrt(g.vcov[k, k]))
        diff = d_est - i_est
        diff_se = float(np.hypot(d_se, i_se))
        z = diff / diff_se
        nma = pw.loc[(b, a)]
        rows.append((b, a, int(sum(has)), d_est, d_se, i_est, i_se, float(nma["estimate"]),
                     float(nma["se"]), diff, diff_se, z, float(2 * stats.norm.sf(abs(z)))))
    return pd.DataFrame(rows, columns=_NS_COLUMNS)
