"""Contrast-based consistency network meta-analysis (fixed and random effects).

References
----------
Salanti G. (2012). Indirect and mixed-treatment comparison, network, or
multiple-treatments meta-analysis. Res Synth Methods 3:80-97.
Rücker G. (2012). Network meta-analysis, electrical networks and graph theory.
Res Synth Methods 3:312-324.
Viechtbauer W. (2010). Conducting meta-analyses in R with the metafor
package. J Stat Softw 36(3) -- ``rma.mv``.
Viechtbauer W. (2005). Bias and efficiency of meta-analytic variance estimators in the
random-effects model. J Educ Behav Stat 30:261-293 -- ML and REML.
Jackson D., White I.R., Riley R.D. (2012). Quantifying the impact of between-study
heterogeneity in multivariate meta-analyses. Stat Med 31:3805-3820 -- method of moments.
Rücker G., Schwarzer G. (2014). Reduce dimension or reduce weights? Comparing two
approaches to multi-arm studies in network meta-analysis. Stat Med 33:4353-4369.
Paule R.C., Mandel J. (1982). Consensus values and weighting factors. J Res Natl Bur
Stand 87:377-385 -- PM (generalised here to Q(tau^2) = m - p).
Hartung J., Knapp G. (2001). On tests of the overall treatment effect in meta-analysis
with normally distributed responses. Stat Med 20:1771-1782; Sidik K., Jonkman J.N.
(2002). A simple confidence interval for meta-analysis. Stat Med 21:3153-3159.
Higgins J.P.T., Thompson S.G. (2002). Quantifying heterogeneity in a meta-analysis.
Stat Med 21:1539-1558 -- I^2 and its confidence interval via H.
Higgins J.P.T., Thompson S.G., Spiegelhalter D.J. (2009). A re-evaluation of
random-effects meta-analysis. J R Stat Soc A 172:137-159 -- prediction intervals.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .. import registry
from . import _core
from .data import NetworkData, prepare
from .results import (  # noqa: F401  (re-exported: public import path)
    MODEL_SCALE, NMABatchResult, NMAResult, _check_level, _json_floats, heterogeneity_stats,
)

NETWORK_METHODS = registry.methods("network")  # FE, DL, REML, ML, PM
TESTS = ("z", "t", "hk")
_METHODS_TEXT = " or ".join(repr(m) for m in NETWORK_METHODS)


def _check_method(method: str) -> str:
    m = str(method).upper()
    if m not in NETWORK_METHODS:
        raise ValueError(f"method must be {_METHODS_TEXT}, got {method!r}")
    return m


def _check_test(test: str) -> str:
    t = str(test).lower()
    if t == "knha":
        t = "hk"
    if t not in TESTS:
        raise ValueError(f"test must be 'z', 't' or 'hk' (Hartung-Knapp), got {test!r}")
    return t


def fit(data: NetworkData, method: str = "REML", level: float = 0.95, tau2: float | None = None,
        test: str = "z") -> NMAResult:
    """Fit the consistency model to prepared :class:`NetworkData`.

    ``tau2`` fixes the between-study variance (used internally, e.g. by
    node-splitting); otherwise FE uses 0 and the random-effects methods estimate it
    (see :func:`network_meta_analysis`).
    """
    return fit_batch([data], method=method, level=level, tau2=tau2, test=test).result(0)


def _batch_result(bf: _core.BatchFit, method: str, test: str, level: float, measure: str, reference: str,
                  treatments: tuple[str, ...], params: tuple[str, ...],
                  data: tuple[NetworkData, ...] | None) -> NMABatchResult:
    if test != "z" and np.any(bf.df <= 0):
        bad = np.flatnonzero(bf.df <= 0)
        raise ValueError(f"test={test!r} needs residual degrees of freedom (m - p > 0); network(s) "
                         f"{bad.tolist()} have none")
    ll = bf.loglik_ml if method in ("FE", "ML") else bf.loglik_reml
    return NMABatchResult(measure, method, test, level, reference, treatments, params, bf.tau2, bf.beta,
                          bf.vcov, bf.Q, bf.df.astype(int), bf.Q_re, ll, bf.converged, bf.iterations, data)


def fit_batch(datasets: Sequence[NetworkData], method: str = "REML", level: float = 0.95,
              tau2: float | np.ndarray | None = None, test: str = "z") -> NMABatchResult:
    """Fit the consistency model to many networks in one vectorised call.

    Parameters
    ----------
    datasets : sequence of NetworkData
        Networks over the same treatments and reference (e.g. bootstrap or simulation
        replicates, or subsets); the studies may differ.
    method, level, test
        As :func:`network_meta_analysis`.
    tau2 : float or array (B,), optional
        Fixed between-study variance(s).

    Returns
    -------
    NMABatchResult

    Examples
    --------
    >>> reps = [prepare(boot(arms), study="study", treatment="trt", events="x", n="n",
    ...                 reference="A") for _ in range(1000)]           # doctest: +SKIP
    >>> fit_batch(reps, method="REML").tau2.mean()                   # doctest: +SKIP
    """
    method = _check_method(method)
    test = _check_test(test)
    level = _check_level(level)
    datasets = tuple(datasets)
    if not datasets:
        raise ValueError("no networks given")
    d0 = datasets[0]
    for i, d in enumerate(datasets[1:], 1):
        if d.treatments != d0.treatments or d.reference != d0.reference:
            raise ValueError(f"network {i}: treatments/reference differ from network 0 "
                             f"({list(d.treatments)} vs {list(d0.treatments)}); fit_batch needs the same nodes")
    params = tuple(t for t in d0.treatments if t != d0.reference)
    pk = _core.pack([d.studies for d in datasets], params)
    bf = _core.fit_packed(pk, "FE" if tau2 is None and method == "FE" else method, tau2=tau2)
    return _batch_result(bf, method, test, level, d0.measure, d0.reference, d0.treatments, params, datasets)


def fit_arrays(y: np.ndarray, V: np.ndarray, X: np.ndarray, q: np.ndarray | None = None,
               method: str = "REML", level: float = 0.95, test: str = "z",
               params: Sequence[str] | None = None, reference: str = "reference",
               measure: str = "MD") -> NMABatchResult:
    """Batched consistency model straight from arrays (simulation replicates).

    ``y (B, S, q)`` contrasts of each study against its baseline, ``V (B, S, q, q)``
    their covariances, ``X (S, q, p)`` or ``(B, S, q, p)`` the design (+1 treatment
    column, -1 baseline column, none for the reference), ``q (S,)`` or ``(B, S)`` the
    number of real contrasts per study (rows beyond are ignored).
    """
    method = _check_method(method)
    test = _check_test(test)
    level = _check_level(level)
    pk = _core.pack_arrays(y, V, X, q)
    p = pk.p
    params = tuple(params) if params is not None else tuple(f"t{i + 1}" for i in range(p))
    bf = _core.fit_packed(pk, method)
    return _batch_result(bf, method, test, level, measure, reference, (reference,) + params, params, None)


def fit_design_by_treatment(data: NetworkData, method: str = "DL", tau2: float | None = None) -> dict[str, Any]:
    r"""Fit the full design-by-treatment interaction (inconsistency) model.

    Every design ``d`` (set of treatments compared in a study) gets its own basic
    parameters (effects of its treatments relative to the first of them in sorted order;
    Higgins et al. 2012), with the same random-effects structure as the consistency
    model.  Its between-study variance is estimated by ``method``: ``"DL"`` (generalised
    method of moments, Jackson, White & Riley 2012; the square root is netmeta's
    ``tau.within``), ``"REML"``, ``"ML"``, ``"PM"``, or ``"FE"`` (0); ``tau2`` fixes it.

    Returns
    -------
    dict with ``tau2, tau, method, Q_within`` (residual Q at FE weights = Q within
    designs), ``Q_re`` (at ``tau2``), ``df_within`` (``m - p_inc``), ``n_params``,
    ``converged``.

    References
    ----------
    Higgins J.P.T., Jackson D., Barrett J.K., Lu G., Ades A.E., White I.R. (2012).
    Consistency and inconsistency in network meta-analysis: concepts and models for
    multi-arm studies. Res Synth Methods 3:98-110.

    Examples
    --------
    >>> fit_design_by_treatment(res.data, "DL")["tau"]                 # doctest: +SKIP
    """
    method = _check_method(method)
    pk = _core.pack_design_by_treatment(data.studies)
    if pk.m[0] <= pk.p:
        t2 = 0.0 if tau2 is None else float(tau2)
        bf = _core.fit_packed(pk, "FE", tau2=t2)
    else:
        bf = _core.fit_packed(pk, method, tau2=tau2)
    t2 = float(bf.tau2[0])
    return {"tau2": t2, "tau": float(np.sqrt(t2)), "method": method if tau2 is None else "fixed",
            "Q_within": float(bf.Q[0]), "Q_re": float(bf.Q_re[0]), "df_within": int(bf.df[0]),
            "n_params": pk.p, "converged": bool(bf.converged[0])}


def network_meta_analysis(
    df: pd.DataFrame,
    study: str,
    treatment: str | None = None,
    events: str | None = None,
    n: str | None = None,
    measure: str = "OR",
    reference: str | None = None,
    method: str = "REML",
    *,
    mean: str | None = None,
    sd: str | None = None,
    yi: str | None = None,
    vi: str | None = None,
    treat1: str | None = None,
    treat2: str | None = None,
    cov: str | None = None,
    level: float = 0.95,
    test: str = "z",
) -> NMAResult:
    r"""Contrast-based network meta-analysis under consistency.

    Parameters
    ----------
    df : DataFrame
        Arm-level data (one row per arm) or contrast-level data (one row per
        contrast).  All other arguments name columns of ``df``.
    study, treatment : str
        Study identifier and arm treatment columns (arm-level input).
    events, n : str
        Binary arm data (measures ``OR``, ``RR``, ``RD``).
    mean, sd, n : str
        Continuous arm data (measures ``MD``, ``SMD``).
    yi, vi, treat1, treat2 : str
        Contrast-level input: ``yi`` is the effect of ``treat1`` relative to
        ``treat2`` with sampling variance ``vi``.  Multi-arm studies given as
        several contrasts must share ``treat2`` and need ``cov``.
    cov : str, optional
        Column with the covariance between the contrasts of a multi-arm
        study (variance of the shared comparator arm).
    measure : {"OR", "RR", "RD", "MD", "SMD"}
        Effect measure; results are on the model scale (log OR, log RR, RD,
        MD, SMD).  Ignored in computations for contrast input (it labels the
        scale).
    reference : str, optional
        Reference treatment; default: first treatment in sorted order.
    method : {"FE", "REML", "ML", "PM", "DL"}
        Fixed effect, or random effects with tau^2 estimated by restricted maximum
        likelihood (metafor ``rma.mv``'s default), maximum likelihood, the
        generalised Paule-Mandel estimator (:math:`Q(\tau^2) = m - (T-1)`), or the
        generalised DerSimonian-Laird method of moments (netmeta's default;
        Jackson, White & Riley 2012).  The accepted values are
        ``lnsynth.registry.methods("network")``.
    level : float
        Confidence level.
    test : {"z", "t", "hk"}
        ``"z"``: normal-theory intervals and tests (metafor's default).  ``"t"``: t
        distribution with ``m - (T - 1)`` df and model SEs (``rma.mv(test="t")``).
        ``"hk"`` (alias ``"knha"``): Hartung-Knapp / Sidik-Jonkman -- the covariance is
        multiplied by :math:`Q_{re}/(m - (T-1))`, with :math:`Q_{re}` the generalised Q
        at the fitted tau^2, and the t distribution with ``m - (T - 1)`` df is used
        (the multivariate form of ``rma(test="knha")``, to which it reduces for a
        two-treatment network of two-arm studies; netmeta's
        ``method.random.ci = "HK"`` without ad hoc correction).

    Returns
    -------
    NMAResult

    Notes
    -----
    Each study ``i`` with arms ``b`` (baseline; see :mod:`lnsynth.network.data`)
    and ``t_1..t_{k-1}`` contributes ``y_i = (\theta_{t_j} - \theta_b)_j`` with
    covariance :math:`V_i` (shared-arm variance on the off-diagonals).  The
    model is

    .. math::

        y_i = X_i d + \delta_i + \varepsilon_i,\quad
        \varepsilon_i \sim N(0, V_i),\quad
        \delta_i \sim N\left(0, \tau^2 \tfrac{1}{2}(I + J)\right),

    with basic parameters ``d`` (each treatment vs the reference) and
    consistency ``d_{AB} = d_{B} - d_{A}``.  Estimates are GLS,
    :math:`\hat d = (X'WX)^{-1}X'Wy`, :math:`W = (V + \tau^2 B)^{-1}`, with
    covariance :math:`(X'WX)^{-1}`.  tau^2 maximises the restricted
    likelihood (profile over the single parameter; the estimate can be 0 at
    the boundary).  This is exactly metafor's
    ``rma.mv(yi, V, mods = X, intercept = FALSE, random = ~ comp | study,
    rho = 1/2)`` (Salanti 2012; Rücker 2012).  ``Q`` is the generalised
    Cochran statistic :math:`(y - X\hat d_{FE})'V^{-1}(y - X\hat d_{FE})`
    with ``m - (T - 1)`` df (metafor ``QE``).

    The tau^2 estimators solve, by safeguarded Newton iterations on analytic
    derivatives computed block by block (no ``m x m`` matrix), the REML/ML score
    equations :math:`u'Bu = \operatorname{tr}(PB)` (REML) or
    :math:`u'Bu = \operatorname{tr}(WB)` (ML), :math:`u = Py`, or the Paule-Mandel
    equation; DL is closed form.  Boundary estimates are exactly 0.  Use
    :func:`fit_batch` / :func:`fit_arrays` for many networks in one call.

    Examples
    --------
    >>> res = network_meta_analysis(arms, study="study", treatment="trt", events="x", n="n",
    ...                             reference="A", method="DL", test="hk")   # doctest: +SKIP
    >>> res.prediction_intervals()                                         # doctest: +SKIP
    >>> res.heterogeneity()["I2"]                                          # doctest: +SKIP

    References
    ----------
    See the module docstring.

    Raises
    ------
    ValueError
        Bad input (missing columns, events > n, unknown reference, single-arm
        studies, duplicate arms, ...), naming study and field, or a
        disconnected network (listing the treatments of each component).
    """
    method = _check_method(method)
    test = _check_test(test)
    _check_level(level)
    data = prepare(df, study=study, treatment=treatment, events=events, n=n, mean=mean, sd=sd,
                   yi=yi, vi=vi, treat1=treat1, treat2=treat2, cov=cov, measure=measure,
                   reference=reference)
    return fit(data, method=method, level=level, test=test)
