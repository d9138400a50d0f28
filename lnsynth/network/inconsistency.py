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

Random-effects design-by-treatment test
---------------------------------------
Under random effects the same decomposition is computed with weights
:math:`W = (V + \tau^2 B)^{-1}` (``B`` the block-diagonal ``(I + J)/2``).  By
default (``tau2="full"``) :math:`\tau^2` is the between-study variance of the
*full design-by-treatment interaction model*, estimated by the generalised
method of moments (DerSimonian-Laird type; Jackson, White & Riley 2012) from
that model's residual Q, which is the within-design Q:

.. math::

    \hat\tau^2_{within} = \max\left(0, \frac{Q_{within} - (m - p_{inc})}
    {\operatorname{tr}(W_0 B) - \operatorname{tr}\{(X'W_0X)^{-1} X'W_0 B W_0 X\}}\right),

with ``m`` stacked contrasts, ``p_inc`` design-specific parameters, ``X`` the
inconsistency-model design matrix and ``W_0 = V^{-1}``.  This is the
quantity netmeta's ``decomp.design`` uses for ``Q.inc.random`` (its internal
``tau.within`` is the square root; Krahn et al. 2013).  For Stowe et al.
(2010) it gives tau^2 = 0.2067 and chi^2 = 0.454 on 2 df, where the REML
consistency tau^2 (0.129) gives 0.583.  It does
not depend on the consistency assumption, so the test of that assumption is
not biased by inconsistency inflating tau^2.  ``tau2="consistency"`` uses the
tau^2 of the fitted consistency model instead (what this module did before),
and a number fixes it.

Node-splitting
--------------
Two methods (:func:`node_split`):

* ``method="back-calculation"`` (netmeta's ``netsplit`` default): Separating
  Indirect from Direct Evidence by back-calculation (Dias et al. 2010; König,
  Krahn & Binder 2013).  The direct estimate of a
  comparison ``A-B`` is the inverse-variance pooled estimate of the ``B`` vs
  ``A`` contrasts of every study containing both (multi-arm studies
  contribute their ``A-B`` contrast with its own variance), weights
  :math:`1/(v_i + \hat\tau^2)`.  The *direct evidence proportion* is
  :math:`P = \operatorname{Var}(\hat\theta_{nma}) / \operatorname{Var}(\hat\theta_{dir})`
  and the indirect estimate follows from the network estimate as
  :math:`\hat\theta_{ind} = (\hat\theta_{nma} - P\hat\theta_{dir})/(1-P)` with
  :math:`\operatorname{Var} = \operatorname{Var}(\hat\theta_{nma})/(1-P)`.
  Every comparison with ``0 < P < 1`` is split, including comparisons whose
  only other route runs through a multi-arm study (in Stowe et al. 2010 the
  three-arm LARGO trial closes the COMTI-MAOBI-placebo loop: three splits).
  As in netmeta, a multi-arm study's pairwise contrast enters the direct
  estimate with its own variance, ignoring its correlation with the study's
  other contrasts, so ``P`` and the indirect estimate are approximations when
  multi-arm studies inform the comparison; with two-arm studies only they are
  exact (the indirect estimate then equals the exclusion method's).
* ``method="exclusion"`` (default here, kept for backward compatibility of
  ``NMAResult.node_split()``): the indirect estimate is the consistency model
  refitted (tau^2 fixed at the full network's estimate) without the studies
  containing both ``A`` and ``B`` (whole multi-arm studies excluded); a loop
  formed only by one multi-arm study then gives no indirect evidence (Stowe:
  one split).

In both, difference = direct - indirect, :math:`SE = \sqrt{SE_d^2 + SE_i^2}`,
two-sided normal p-value.

Net heat plot (Krahn, Binder & König 2013)
------------------------------------------
:func:`net_heat` aggregates studies to designs (multivariate inverse-variance
pooling within each design, weights ``(V_i + tau^2 B)^{-1}``), fits the
consistency model to the design-level estimates, and reports for each pair
of design-level contrasts (row ``j``, column ``k``): the hat-matrix element
:math:`H_{jk}` (the contribution of design ``k``'s direct estimate to the
network estimate of row ``j``'s comparison; drawn as square size) and the
change :math:`Q_j - Q_j^{(k)}` in row ``j``'s contribution to the
between-design Q when design ``k`` is *detached* (given its own parameters).
Positive values (drawn warm) mean design ``k`` drives inconsistency seen at
``j``.  Designs whose contribution to between-design Q is zero are dropped
and the rest ordered by complete-linkage clustering of Manhattan distances of
rows plus columns, as in the paper.

References
----------
Krahn U., Binder H., König J. (2013). A graphical tool for locating
inconsistency in network meta-analyses. BMC Med Res Methodol 13:35.
König J., Krahn U., Binder H. (2013). Visualizing the flow of evidence in
network meta-analysis and characterizing mixed treatment comparisons. Stat
Med 32:5414-5429.
Dias S., Welton N.J., Caldwell D.M., Ades A.E. (2010). Checking consistency
in mixed treatment comparison meta-analysis. Stat Med 29:932-944.
Higgins J.P.T., Jackson D., Barrett J.K., Lu G., Ades A.E., White I.R. (2012).
Consistency and inconsistency in network meta-analysis: concepts and models
for multi-arm studies. Res Synth Methods 3:98-110.
Jackson D., White I.R., Riley R.D. (2012). Quantifying the impact of
between-study heterogeneity in multivariate meta-analyses. Stat Med
31:3805-3820.

Examples
--------
>>> res = network_meta_analysis(arms, study="study", treatment="trt", mean="m", sd="s", n="n",
...                             measure="MD", reference="Placebo")          # doctest: +SKIP
>>> design_by_treatment(res, random=True)                     # full-model tau^2  # doctest: +SKIP
>>> node_split(res)                                           # back-calculation  # doctest: +SKIP
>>> net_heat(res).diff                                        # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
from scipy import linalg, stats

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


# --------------------------------------------------------------------------- full design-by-treatment model
def tau2_within(result_or_data: Any, method: str = "DL") -> float:
    r"""Between-study variance of the full design-by-treatment interaction model.

    ``method="DL"``: generalised method-of-moments (DerSimonian-Laird type;
    Jackson, White & Riley 2012) estimate from the residual Q of the model with
    separate parameters per design (see the module docstring); netmeta's
    internal ``tau.within`` is its square root.  Other methods as
    :func:`lnsynth.network.model.fit_design_by_treatment` (which fits the model).
    Accepts an :class:`~lnsynth.network.NMAResult` or
    :class:`~lnsynth.network.NetworkData`.  0 when the full model has no
    residual degrees of freedom (every design has one study).

    Examples
    --------
    >>> tau2_within(res)                                               # doctest: +SKIP
    """
    from .model import fit_design_by_treatment

    data = getattr(result_or_data, "data", result_or_data)
    return float(fit_design_by_treatment(data, method=method)["tau2"])


def _resolve_tau2(result: "NMAResult", random: bool, tau2: Any) -> tuple[float, str]:
    if not random:
        return 0.0, "fixed"
    if tau2 is None or (isinstance(tau2, str) and tau2 == "full"):
        return float(tau2_within(result)), "full"
    if isinstance(tau2, str):
        if tau2 != "consistency":
            raise ValueError(f"tau2 must be 'full', 'consistency' or a number >= 0, got {tau2!r}")
        return float(result.tau2), "consistency"
    t = float(tau2)
    if not np.isfinite(t) or t < 0:
        raise ValueError(f"tau2 must be 'full', 'consistency' or a number >= 0, got {tau2!r}")
    return t, "fixed value"


def design_by_treatment(result: "NMAResult", random: bool | None = None, tau2: Any = "full") -> dict[str, Any]:
    """Design-by-treatment interaction test (global inconsistency; Higgins 2012, Krahn 2013).

    ``Q_between`` of :func:`q_decomposition` referred to chi^2 with
    ``sum_d (k_d - 1) - (T - 1)`` df.  With ``random=True`` (default for
    random-effects fits) the weights are ``(V + tau2 B)^{-1}`` where ``tau2``
    is

    * ``"full"`` (default): the method-of-moments tau^2 of the full
      design-by-treatment interaction model (:func:`tau2_within`; netmeta's
      ``tau.within`` squared, used by netmeta's ``decomp.design``);
    * ``"consistency"``: the tau^2 of the fitted consistency model
      (``result.tau2``, e.g. REML);
    * a number: that value.

    Parameters
    ----------
    result : NMAResult
    random : bool, optional
        Random-effects weights; default ``result.method != "FE"``.
    tau2 : {"full", "consistency"} or float

    Returns
    -------
    dict with ``chi2, df, pvalue, tau2, tau2_source, random``.

    Examples
    --------
    >>> design_by_treatment(res, random=True)["chi2"]                 # doctest: +SKIP
    """
    if random is None:
        random = result.method != "FE"
    t2, source = _resolve_tau2(result, bool(random), tau2)
    q_tot, df_tot, per = _decompose(result, t2)
    q_w = sum(q for _, _, q, _ in per)
    df_b = df_tot - int(sum(df for *_, df in per))
    q_b = q_tot - q_w
    return {"chi2": float(q_b), "df": int(df_b), "pvalue": _p(q_b, df_b), "tau2": t2, "tau2_source": source,
            "random": bool(random)}


# --------------------------------------------------------------------------- node-splitting
_NS_COLUMNS = ["treat1", "treat2", "n_direct", "direct", "direct_se", "indirect", "indirect_se",
               "nma", "nma_se", "difference", "difference_se", "zval", "pvalue"]
_NS_BC_COLUMNS = _NS_COLUMNS[:3] + ["prop_direct"] + _NS_COLUMNS[3:]


def _oriented_pairs(result: "NMAResult") -> list[tuple[str, str]]:
    """(comparator, treatment) pairs: effect of the second relative to the first; the network reference
    is the comparator when the pair contains it, otherwise the earlier in sorted order."""
    trts = result.treatments
    out = []
    for i, a in enumerate(trts):
        for b in trts[i + 1:]:
            out.append((b, a) if b == result.reference else (a, b))
    return out


def _direct(studies: Sequence[StudyContrasts], a: str, b: str, tau2: float) -> tuple[int, float, float]:
    """Inverse-variance pooled effect of ``b`` relative to ``a`` over studies with both (weights 1/(v + tau2))."""
    yv = np.array([s.pair_contrast(b, a) for s in studies if a in s.treatments and b in s.treatments])
    if len(yv) == 0:
        return 0, float("nan"), float("nan")
    w = 1.0 / (yv[:, 1] + tau2)
    return len(yv), float(np.sum(w * yv[:, 0]) / np.sum(w)), float(np.sqrt(1.0 / np.sum(w)))


def direct_evidence_proportions(result: "NMAResult") -> pd.DataFrame:
    r"""Direct evidence proportion of every comparison (König, Krahn & Binder 2013, sec. 3.4.1).

    :math:`P = \operatorname{Var}(\hat\theta_{nma}) / \operatorname{Var}(\hat\theta_{dir})`,
    with the direct estimate as in :func:`node_split` (back-calculation; the
    weights include the fit's tau^2); 0 for comparisons without direct
    evidence.  Columns ``treat1, treat2, n_direct, prop_direct`` (orientation
    as :func:`node_split`).

    Examples
    --------
    >>> direct_evidence_proportions(res)                               # doctest: +SKIP
    """
    pw = result.pairwise_effects().set_index(["treat1", "treat2"])
    tau2 = float(result.tau2)
    rows = []
    for a, b in _oriented_pairs(result):
        k, _, se_d = _direct(result.data.studies, a, b, tau2)
        se_n = float(pw.loc[(b, a), "se"])
        rows.append((b, a, k, (se_n / se_d) ** 2 if k else 0.0))
    return pd.DataFrame(rows, columns=["treat1", "treat2", "n_direct", "prop_direct"])


def node_split(result: "NMAResult", method: str = "exclusion", tol_direct: float = 0.0005) -> pd.DataFrame:
    """Node-splitting: direct vs indirect evidence for each comparison with both (see the module docstring).

    Parameters
    ----------
    result : NMAResult
    method : {"back-calculation", "exclusion"}
        Back-calculation with direct evidence proportions (as netmeta's
        ``netsplit``), or exclusion of the studies with direct evidence.
    tol_direct : float
        Back-calculation: comparisons with ``P > 1 - tol_direct`` count as
        direct-only and ``P < tol_direct`` as indirect-only (netmeta's
        ``tol.direct``).

    Returns
    -------
    DataFrame
        One row per comparison with both direct and indirect evidence;
        effects are of ``treat1`` relative to ``treat2`` on the model scale,
        where ``treat2`` is the network reference if the pair includes it,
        otherwise the earlier of the two in sorted order.  Columns:
        ``treat1, treat2, n_direct, [prop_direct,] direct, direct_se,
        indirect, indirect_se, nma, nma_se, difference, difference_se, zval,
        pvalue`` (``prop_direct`` for back-calculation).  Empty when no
        comparison has both.

    Examples
    --------
    >>> node_split(res)                                                # doctest: +SKIP
    >>> node_split(res, method="exclusion")                            # doctest: +SKIP
    """
    m = str(method).lower().replace("_", "-")
    if m in ("back-calculation", "backcalculation", "back"):
        return _node_split_back(result, tol_direct)
    if m in ("exclusion", "side-exclusion"):
        return _node_split_exclusion(result)
    raise ValueError(f"method must be 'back-calculation' or 'exclusion', got {method!r}")


def _node_split_back(result: "NMAResult", tol: float) -> pd.DataFrame:
    studies = result.data.studies
    tau2 = float(result.tau2)
    pw = result.pairwise_effects().set_index(["treat1", "treat2"])
    rows = []
    for a, b in _oriented_pairs(result):
        k, d_est, d_se = _direct(studies, a, b, tau2)
        if k == 0:
            continue
        nma = pw.loc[(b, a)]
        n_est, n_se = float(nma["estimate"]), float(nma["se"])
        P = (n_se / d_se) ** 2
        if P > 1.0 - tol or P < tol:
            continue
        i_est = (n_est - P * d_est) / (1.0 - P)
        i_se = n_se / np.sqrt(1.0 - P)
        diff = d_est - i_est
        diff_se = float(np.hypot(d_se, i_se))
        z = diff / diff_se
        rows.append((b, a, k, P, d_est, d_se, i_est, i_se, n_est, n_se, diff, diff_se, z,
                     float(2 * stats.norm.sf(abs(z)))))
    return pd.DataFrame(rows, columns=_NS_BC_COLUMNS)


def _node_split_exclusion(result: "NMAResult") -> pd.DataFrame:
    studies = result.data.studies
    tau2 = float(result.tau2)
    pw = result.pairwise_effects().set_index(["treat1", "treat2"])
    rows = []
    for a, b in _oriented_pairs(result):  # effect of b relative to comparator a
        has = [a in s.treatments and b in s.treatments for s in studies]
        if not any(has):
            continue
        rest = [s for s, h in zip(studies, has) if not h]
        comp = next((c for c in components(rest) if a in c), None)
        if comp is None or b not in comp:
            continue
        k, d_est, d_se = _direct(studies, a, b, tau2)
        sub = [s for s in rest if s.treatments[0] in comp]
        params = [t for t in comp if t != a]
        st = _core.stack(sub, params)
        g = _core.gls_st(st, tau2)
        j = params.index(b)
        i_est, i_se = float(g.beta[j]), float(np.sqrt(g.vcov[j, j]))
        diff = d_est - i_est
        diff_se = float(np.hypot(d_se, i_se))
        z = diff / diff_se
        nma = pw.loc[(b, a)]
        rows.append((b, a, k, d_est, d_se, i_est, i_se, float(nma["estimate"]),
                     float(nma["se"]), diff, diff_se, z, float(2 * stats.norm.sf(abs(z)))))
    return pd.DataFrame(rows, columns=_NS_COLUMNS)


# --------------------------------------------------------------------------- design-level model, net heat
@dataclass(frozen=True, eq=False)
class DesignLevel:
    """Studies aggregated to designs: one row per (design, non-first treatment) contrast."""

    labels: tuple[str, ...]          # "B:A" (two-arm) or "B:A_A:B:C" (multi-arm row)
    comparisons: tuple[tuple[str, str], ...]  # (treatment, design's first treatment)
    design_of_row: tuple[str, ...]
    y: np.ndarray
    V: np.ndarray
    X: np.ndarray                    # rows on the basic parameters (non-reference treatments)
    params: tuple[str, ...]


def design_level(result: "NMAResult", tau2: float = 0.0) -> DesignLevel:
    """Aggregate the studies of each design by multivariate inverse-variance pooling
    (weights ``(V_i + tau2 B)^{-1}``), contrasts against the design's first treatment (sorted)."""
    params = tuple(result.params)
    col = {t: i for i, t in enumerate(params)}
    labels, comps, drow, ys, Vs, Xr = [], [], [], [], [], []
    for d, ss in _by_design(result.data.studies).items():
        ts = d.split(":")
        d0, rest = ts[0], ts[1:]
        q = len(rest)
        Wsum, Wy = np.zeros((q, q)), np.zeros(q)
        for s in ss:
            # map the study's contrasts (vs its baseline) to contrasts vs d0: e_t - e_d0
            G = np.zeros((q, q))
            for i, t in enumerate(rest):
                it, i0 = s.treatments.index(t), s.treatments.index(d0)
                if it > 0:
                    G[i, it - 1] += 1.0
                if i0 > 0:
                    G[i, i0 - 1] -= 1.0
            S = G @ (np.asarray(s.V, float) + tau2 * 0.5 * (np.eye(q) + 1.0)) @ G.T
            W = np.linalg.inv(S)
            Wsum += W
            Wy += W @ (G @ s.y)
        Vd = np.linalg.inv(Wsum)
        ys.append(Vd @ Wy)
        Vs.append(0.5 * (Vd + Vd.T))
        for t in rest:
            labels.append(f"{t}:{d0}" if q == 1 else f"{t}:{d0}_{d}")
            comps.append((t, d0))
            drow.append(d)
            x = np.zeros(len(params))
            if t in col:
                x[col[t]] += 1.0
            if d0 in col:
                x[col[d0]] -= 1.0
            Xr.append(x)
    return DesignLevel(tuple(labels), tuple(comps), tuple(drow), np.concatenate(ys), linalg.block_diag(*Vs),
                       np.array(Xr), params)


def _rowwise_q(r: np.ndarray, Winv_blocks: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    out = np.full(len(r), np.nan)
    for idx, W in Winv_blocks:
        out[idx] = r[idx] * (W @ r[idx])
    return out


@dataclass(frozen=True, eq=False)
class NetHeat:
    """Net heat plot data (Krahn et al. 2013); see :func:`net_heat`.

    Attributes
    ----------
    labels : tuple of str
        Design-level contrasts in plotting order (rows and columns).
    hat : ndarray
        ``hat[j, k]``: hat-matrix element of design contrast ``k`` in the
        network estimate of row ``j``'s comparison (drawn as square size, ``|hat|``).
    diff : ndarray
        ``diff[j, k] = Q_j - Q_j^{(k)}``: change of row ``j``'s contribution to
        between-design Q when column ``k``'s design is detached (NaN when
        detaching it disconnects the network).
    q_design : ndarray
        Each row's contribution to between-design Q under consistency.
    tau2 : float
    """

    labels: tuple[str, ...]
    hat: np.ndarray = field(repr=False)
    diff: np.ndarray = field(repr=False)
    q_design: np.ndarray = field(repr=False)
    tau2: float = 0.0

    def to_frame(self) -> pd.DataFrame:
        """Long format: ``row, column, hat, diff``."""
        n = len(self.labels)
        return pd.DataFrame({"row": np.repeat(self.labels, n), "column": np.tile(self.labels, n),
                             "hat": self.hat.ravel(), "diff": self.diff.ravel()})

    def to_dict(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "hat": self.hat.tolist(),
                "diff": [[None if not np.isfinite(v) else float(v) for v in row] for row in self.diff],
                "q_design": self.q_design.tolist(), "tau2": self.tau2}

    def summary(self) -> str:
        return (f"Net heat plot data: {len(self.labels)} design contrasts; "
                f"between-design Q = {np.nansum(self.q_design):.4f} (tau^2 = {self.tau2:.4g})")


def net_heat(result: "NMAResult", random: bool = False, tau2: Any = "full", showall: bool = False) -> NetHeat:
    """Data of the net heat plot (Krahn, Binder & König 2013); drawn by
    :func:`lnsynth.plots.network.net_heat_plot`.

    Parameters
    ----------
    result : NMAResult
    random : bool
        Random-effects weights with ``tau2`` (``"full"``: :func:`tau2_within`,
        as netmeta's ``netheat(random=TRUE)``; ``"consistency"``; or a number).
    showall : bool
        Keep designs that contribute nothing to between-design Q.

    Raises
    ------
    ValueError
        Fewer than three designs or no loop (nothing to show).

    Examples
    --------
    >>> h = net_heat(res)                                              # doctest: +SKIP
    >>> h.diff.shape                                                   # doctest: +SKIP
    """
    t2, _ = _resolve_tau2(result, bool(random), tau2)
    dl = design_level(result, t2)
    designs = list(dict.fromkeys(dl.design_of_row))
    if len(designs) <= 2:
        raise ValueError(f"net heat plot needs at least 3 designs; the network has {len(designs)}")
    blocks = []
    for d in designs:
        idx = np.array([i for i, x in enumerate(dl.design_of_row) if x == d])
        blocks.append((idx, np.linalg.inv(dl.V[np.ix_(idx, idx)])))
    Winv = linalg.block_diag(*[W for _, W in blocks])

    def fit(keep: np.ndarray) -> np.ndarray | None:
        X, y, W = dl.X[keep], dl.y[keep], Winv[np.ix_(keep, keep)]
        XtWX = X.T @ W @ X
        if np.linalg.matrix_rank(XtWX, tol=1e-10 * max(1.0, np.abs(XtWX).max())) < X.shape[1]:
            return None
        return np.linalg.solve(XtWX, X.T @ W @ y)

    allrows = np.ones(len(dl.y), bool)
    C = np.linalg.inv(dl.X.T @ Winv @ dl.X)
    H = dl.X @ C @ dl.X.T @ Winv
    theta = C @ dl.X.T @ Winv @ dl.y
    q0 = _rowwise_q(dl.y - dl.X @ theta, blocks)
    n = len(dl.y)
    diff = np.full((n, n), np.nan)
    for d in designs:
        keep = allrows.copy()
        cols = [i for i, x in enumerate(dl.design_of_row) if x == d]
        keep[cols] = False
        th = fit(keep)
        if th is None:
            continue
        r = dl.y - dl.X @ th
        r[cols] = 0.0  # the detached design is fitted exactly by its own parameters
        qd = _rowwise_q(r, blocks)
        for c in cols:
            diff[:, c] = q0 - qd
    if not np.isfinite(diff).any():
        raise ValueError("net heat plot not available: detaching single designs leaves the network "
                         "without loops or disconnected")
    keep = np.ones(n, bool)
    if not showall:
        for d in designs:
            idx = [i for i, x in enumerate(dl.design_of_row) if x == d]
            if abs(float(np.sum(q0[idx]))) <= np.sqrt(np.finfo(float).eps):
                keep[idx] = False
    keep &= ~np.all(np.isnan(diff), axis=0)
    idx = np.flatnonzero(keep)
    if len(idx) < 2:
        raise ValueError("net heat plot not available: fewer than two informative designs")
    D = -diff[np.ix_(idx, idx)]
    order = _cluster_order(D)
    sel = idx[order]
    return NetHeat(tuple(dl.labels[i] for i in sel), H[np.ix_(sel, sel)].copy(), diff[np.ix_(sel, sel)].copy(),
                   q0[sel].copy(), t2)


def _cluster_order(D: np.ndarray) -> np.ndarray:
    """Leaf order of complete-linkage clustering on Manhattan distances of rows plus columns."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import pdist

    if len(D) < 3:
        return np.arange(len(D))
    Z = np.nan_to_num(D)
    dist = pdist(Z, "cityblock") + pdist(Z.T, "cityblock")
    return np.asarray(leaves_list(linkage(dist, "complete")))
