"""More tau² estimators of ``metafor::rma.uni``: HS, HSk and GENQ, batched over (B, k).

The estimators are registered in :data:`lnsynth.registry.TAU2_ESTIMATORS` (the methods that
``meta_analysis`` does not run through its compiled kernel); :func:`estimate_tau2` dispatches on
the registry code to one kernel per estimator.  With ``P_A = A - A X (X'AX)^{-1} X'A`` for a weight
matrix ``A`` and the mean-centred outcomes ``y`` (metafor centres them before forming the quadratic
forms), ``k`` studies and ``p`` coefficients:

* HS (Hunter-Schmidt): ``A = W = diag(1/v)``, ``tau2 = (y'P_W y - k) / sum(w)``;
* HSk (Hunter-Schmidt with a small-sample correction): ``(k/(k-p) y'P_W y - k) / sum(w)``;
* GENQ (generalised Q, user weights ``a``): ``A = diag(a)``,
  ``tau2 = (y'P_A y - tr(P_A V)) / tr(P_A)``;

each truncated at 0 as metafor does.  Standard errors are metafor's: for HS
``sqrt(2(k-p) + 4 tau2 tr(P_W) + 2 tau2^2 tr(P_W P_W)) / sum(w)`` (HSk: times k/(k-p)); for GENQ
``sqrt(2 tr(P_A V P_A V) + 4 tau2 tr(P_A V P_A) + 2 tau2^2 tr(P_A P_A)) / tr(P_A)``.

The fit at the estimate (:func:`meta_analysis_tau2`) is the inverse-variance fit of
:func:`lnsynth.pairwise.meta_analysis` (or :func:`~lnsynth.pairwise.meta_regression`) at that tau²
for HS and HSk; GENQ, as ``rma(..., weights=a)``, pools with the weights ``a``:
``beta = (X'AX)^{-1} X'A y`` with the sandwich ``(X'AX)^{-1} X'A (V + tau2 I) A X (X'AX)^{-1}``.

References
----------
Hunter JE, Schmidt FL (2004). Methods of Meta-Analysis: Correcting Error and Bias in Research
Findings, 2nd ed. Sage.
Hartung J, Makambi KH (2002). Positive estimation of the between-study variance in meta-analysis.
South African Statistical Journal 36:55-76.
DerSimonian R, Kacker R (2007). Random-effects model for meta-analysis of clinical trials: an update.
Contemporary Clinical Trials 28:105-114 (the generalised Q / GENQ estimator).
Viechtbauer W (2005). Bias and efficiency of meta-analytic variance estimators in the random-effects
model. Journal of Educational and Behavioral Statistics 30:261-293.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import special

from .. import registry
from .api import _level, _validate

__all__ = ["estimate_tau2", "meta_analysis_tau2"]


def _projector(A, X):
    """P_A = A - A X (X'AX)^{-1} X'A for (B, k) weights A (0 for an absent study) and a shared X (k, p)."""
    AX = A[:, :, None] * X[None, :, :]  # (B, k, p)
    M = np.einsum("kp,bkq->bpq", X, AX)
    Minv = np.linalg.inv(M)
    P = -np.einsum("bkp,bpq,bjq->bkj", AX, Minv, AX)
    idx = np.arange(A.shape[1])
    P[:, idx, idx] += A
    return P, Minv


def _hs(Yc, V, W, A, X, K, p, small_k):
    P, _ = _projector(W, X)
    rss = np.einsum("bi,bij,bj->b", Yc, P, Yc)
    sw = W.sum(1)
    kp = K - p
    fac = K / kp if small_k else 1.0
    tau2 = np.maximum(0.0, (fac * rss - K) / sw)
    trP = np.einsum("bii->b", P)
    pp = (P * P).sum((1, 2))
    se = fac * np.sqrt(2.0 * kp + 4.0 * tau2 * trP + 2.0 * tau2 ** 2 * pp) / sw
    return tau2, se


def _genq(Yc, V, W, A, X, K, p, small_k):
    P, _ = _projector(A, X)
    rss = np.einsum("bi,bij,bj->b", Yc, P, Yc)
    PV = P * V[:, None, :]
    trP = np.einsum("bii->b", P)
    trPV = np.einsum("bii->b", PV)
    tau2 = np.maximum(0.0, (rss - trPV) / trP)
    pvpv = np.einsum("bij,bji->b", PV, PV)
    pvp = (PV * P).sum((1, 2))
    pp = (P * P).sum((1, 2))
    se = np.sqrt(2.0 * pvpv + 4.0 * tau2 * pvp + 2.0 * tau2 ** 2 * pp) / trP
    return tau2, se


#: registry code (upper case) -> (kernel, small-sample flag, needs weights)
_KERNELS = {"HS": (_hs, False, False), "HSK": (_hs, True, False), "GENQ": (_genq, False, True)}


def _prepare(yi, vi, weights, X):
    Y, V, K, batch, _ = _validate(yi, vi, None)
    B, k = Y.shape
    present = ~np.isnan(Y)
    if X is None:
        X = np.ones((k, 1))
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.shape[0] != k:
        raise ValueError(f"X: {X.shape[0]} rows for {k} studies (length mismatch)")
    A = None
    if weights is not None:
        A = np.asarray(weights, dtype=np.float64)
        if A.shape == (k,):
            A = np.broadcast_to(A, (B, k)).copy()
        if A.shape != (B, k):
            raise ValueError(f"weights: shape {A.shape} does not match yi shape {Y.shape}")
        bad = present & ~(np.isfinite(A) & (A > 0))
        if bad.any():
            b, j = (int(x) for x in np.argwhere(bad)[0])
            pre = f"analysis {b}, " if batch else ""
            raise ValueError(f"weights must be finite and > 0; got {float(A[b, j])!r} at {pre}study index {j}")
        A = np.where(present, A, 0.0)
    Yk = np.where(present, Y, 0.0)
    Vk = np.where(present, V, 0.0)
    W = np.where(present, 1.0 / np.where(present, V, 1.0), 0.0)
    ybar = Yk.sum(1) / K
    Yc = np.where(present, Yk - ybar[:, None], 0.0)
    return Y, V, Yk, Vk, Yc, W, A, K, X, batch, present


def estimate_tau2(yi, vi, method: str = "HS", weights=None, X=None):
    """tau² and its standard error by HS, HSk or GENQ, as ``metafor::rma.uni(method=)``.

    Parameters
    ----------
    yi, vi : array_like
        Effect sizes and sampling variances, (k,) or (B, k) (NaN in both marks an absent study).
    method : {"HS", "HSk", "GENQ"}
        A code of :func:`lnsynth.registry.tau2_estimators` (case-insensitive).
    weights : array_like, optional
        GENQ's weights ``a`` ((k,) or (B, k)); required for GENQ, ignored otherwise.
    X : array_like, optional
        Design matrix (k, p), shared by the batch, including the intercept column (default: intercept only).

    Returns
    -------
    tuple of ndarray
        ``(tau2, se_tau2)``, each (B,) (scalars' arrays of shape (1,) for 1-D input).

    References
    ----------
    Hunter JE, Schmidt FL (2004). Methods of Meta-Analysis, 2nd ed. Sage.
    DerSimonian R, Kacker R (2007). Contemp Clin Trials 28:105-114.

    Examples
    --------
    >>> import numpy as np
    >>> yi = np.array([-0.89, -1.59, -1.35, -1.44, -0.22, -0.79, -1.62, 0.01, -0.47, -1.37, -0.34, 0.45, -0.02])
    >>> vi = np.array([0.33, 0.19, 0.42, 0.02, 0.05, 0.01, 0.22, 0.004, 0.06, 0.07, 0.01, 0.53, 0.07])
    >>> t_hs, se_hs = estimate_tau2(yi, vi, "HS")
    >>> t_hsk, _ = estimate_tau2(yi, vi, "HSk")
    >>> bool(t_hsk[0] > t_hs[0] > 0)
    True
    """
    entry = registry.tau2_estimator(method)
    kern, small_k, needs_w = _KERNELS[entry.code.upper()]
    if needs_w and weights is None:
        raise ValueError(f"weights: method {entry.code} needs weights (as rma(..., weights=))")
    Y, V, Yk, Vk, Yc, W, A, K, X, batch, present = _prepare(yi, vi, weights if needs_w else None, X)
    p = X.shape[1]
    small = np.flatnonzero(K <= p)
    if small.size:
        raise ValueError(f"yi: analysis {int(small[0])} has k = {int(K[small[0]])} <= p = {p} studies; "
                         "tau^2 cannot be estimated")
    if np.linalg.matrix_rank(X) < p:
        raise ValueError("X: design matrix is not of full rank (redundant predictors)")
    return kern(Yc, Vk, W, A, X, K.astype(np.float64), p, small_k)


def meta_analysis_tau2(yi, vi, method: str = "HS", weights=None, moderators=None, data=None,
                       test: str = "z", level: float = 0.95):
    """Fit ``rma(yi, vi, method=<HS|HSk|GENQ>[, weights=][, mods=])``.

    Parameters
    ----------
    yi, vi : array_like
        (k,) or, without moderators, (B, k) for a batch.
    method : {"HS", "HSk", "GENQ"}
        tau² estimator (:func:`estimate_tau2`).
    weights : array_like, optional
        GENQ's weights: they are also the weights of the pooled estimate, as in metafor.
    moderators, data
        As :func:`lnsynth.pairwise.meta_regression` (one analysis only).
    test : {"z", "knha"}
        ``"knha"`` for HS and HSk only.
    level : float
        Confidence level.

    Returns
    -------
    MetaResult / MetaBatchResult (no moderators) or MetaRegressionResult, with ``method`` set to
    the estimator, its ``se_tau2`` and, for GENQ, the weighted fit.  The Q-profile CI of tau² is
    not computed (NaN).

    Examples
    --------
    >>> import numpy as np
    >>> yi = np.array([-0.89, -1.59, -1.35, -1.44, -0.22, -0.79, -1.62, 0.01, -0.47, -1.37, -0.34, 0.45, -0.02])
    >>> vi = np.array([0.33, 0.19, 0.42, 0.02, 0.05, 0.01, 0.22, 0.004, 0.06, 0.07, 0.01, 0.53, 0.07])
    >>> res = meta_analysis_tau2(yi, vi, "HS")
    >>> res.method, bool(res.ci_low < res.estimate < res.ci_high)
    ('HS', True)
    >>> g = meta_analysis_tau2(yi, vi, "GENQ", weights=np.ones(13))
    >>> round(float(g.weights.sum()), 6)
    100.0
    """
    from .api import meta_analysis
    from .regression import design_matrix, meta_regression

    code = registry.tau2_estimator(method).code
    test = str(test).lower()
    if test not in ("z", "knha"):
        raise ValueError(f"test: unknown test {test!r}; valid: z, knha")
    if code == "GENQ" and test != "z":
        raise ValueError("test: GENQ (a weighted fit) supports test='z' only here")
    lev = _level(level)
    if moderators is not None:
        y = np.asarray(yi, dtype=np.float64)
        if y.ndim != 1:
            raise ValueError("yi: moderators need a single analysis (1-D yi)")
        X, names = design_matrix(moderators, data=data)
        tau2, se_t = estimate_tau2(yi, vi, code, weights=weights, X=X)
        if code == "GENQ":
            res = _genq_fit(yi, vi, weights, X, names, float(tau2[0]), float(se_t[0]), lev)
            if res.p > 1:
                t0 = float(estimate_tau2(yi, vi, code, weights=weights)[0][0])
                r2 = 0.0 if t0 == 0.0 else max(0.0, 100.0 * (t0 - res.tau2) / t0)
                res = dataclasses.replace(res, r2=r2, extra=dict(res.extra, tau2_0=t0))
            return res
        fit = meta_regression(yi, vi, X[:, 1:] if names[0] == "intrcpt" else X, method="DL", test=test,
                              level=lev, tau2=float(tau2[0]))
        r2 = fit.r2
        if fit.p > 1:
            t0 = float(estimate_tau2(yi, vi, code)[0][0])
            r2 = 0.0 if t0 == 0.0 else max(0.0, 100.0 * (t0 - float(tau2[0])) / t0)
        extra = dict(fit.extra, tau2_fixed=False, tau2_0=t0 if fit.p > 1 else np.nan)
        return dataclasses.replace(fit, method=code, se_tau2=float(se_t[0]), r2=r2, extra=extra,
                                   names=tuple(names))
    tau2, se_t = estimate_tau2(yi, vi, code, weights=weights)
    if code == "GENQ":
        return _genq_fit(yi, vi, weights, None, None, tau2, se_t, lev)
    batch = np.ndim(yi) == 2
    res = meta_analysis(yi=yi, vi=vi, method="DL", test=test, level=lev, tau2=tau2 if batch else float(tau2[0]))
    return dataclasses.replace(res, method=code, se_tau2=se_t if batch else float(se_t[0]),
                               extra=dict(res.extra, tau2_fixed=False))


def _genq_fit(yi, vi, weights, X, names, tau2, se_tau2, level):
    """rma.uni's fit with user weights A at a given tau2 (intercept-only batch, or one regression)."""
    from .regression import MetaRegressionResult
    from .results import MetaBatchResult

    Y, V, Yk, Vk, Yc, W, A, K, Xd, batch, present = _prepare(yi, vi, weights, X)
    p = Xd.shape[1]
    B = Y.shape[0]
    T = np.broadcast_to(np.asarray(tau2, dtype=np.float64), (B,))
    AX = A[:, :, None] * Xd[None]
    Minv = np.linalg.inv(np.einsum("kp,bkq->bpq", Xd, AX))
    beta = np.einsum("bpq,bkq,bk->bp", Minv, AX, Yk)
    mid = np.einsum("bkp,bk,bkq->bpq", AX, np.where(present, Vk + T[:, None], 0.0), AX)
    vb = Minv @ mid @ Minv
    se = np.sqrt(np.einsum("bpp->bp", vb))
    z = beta / se
    crit = special.ndtri(1.0 - (1.0 - level) / 2.0)
    pval = 2.0 * special.ndtr(-np.abs(z))
    # heterogeneity statistics from the fixed-effect (1/v) fit, as metafor
    P0, _ = _projector(W, Xd)
    qe = np.maximum(0.0, np.einsum("bi,bij,bj->b", Yk, P0, Yk))
    kp = (K - p).astype(np.float64)
    vt = kp / np.einsum("bii->b", P0)
    i2 = 100.0 * T / (vt + T)
    h2 = T / vt + 1.0
    qe_p = special.chdtrc(kp, qe)
    if X is not None:
        btt = list(range(1, p)) if names[0] == "intrcpt" else list(range(p))
        b0, v0 = beta[0], vb[0]
        qm = float(b0[btt] @ np.linalg.solve(v0[np.ix_(btt, btt)], b0[btt])) if btt else np.nan
        return MetaRegressionResult(
            names=tuple(names), coefficients=b0, se=se[0], zval=z[0], pvalue=pval[0], ci_low=b0 - crit * se[0],
            ci_high=b0 + crit * se[0], vb=v0, tau2=float(T[0]), se_tau2=float(se_tau2), qm=qm,
            qm_df=(len(btt), None), qm_pvalue=float(special.chdtrc(len(btt), qm)) if btt else np.nan,
            qe=float(qe[0]), qe_pvalue=float(qe_p[0]), i2=float(i2[0]), h2=float(h2[0]), r2=np.nan,
            k=int(K[0]), p=p, method="GENQ", test="z", level=level, yi=Y[0], vi=V[0], X=Xd,
            extra={"crit": float(crit), "s2w": 1.0, "tau2_fixed": False, "weights": A[0].copy()})
    est, s = beta[:, 0], se[:, 0]
    pih = crit * np.sqrt(s * s + T)
    wts = np.where(present, 100.0 * A / A.sum(1, keepdims=True), np.nan)
    nan = np.full(B, np.nan)
    res = MetaBatchResult(
        estimate=est, se=s, zval=z[:, 0], pvalue=pval[:, 0], ci_low=est - crit * s, ci_high=est + crit * s,
        tau2=T.copy(), se_tau2=np.asarray(se_tau2, dtype=np.float64).reshape(B), tau2_ci_low=nan,
        tau2_ci_high=nan.copy(), i2=i2, h2=h2, q=qe, q_pvalue=qe_p, pi_low=est - pih, pi_high=est + pih,
        k=K.astype(np.int64), converged=np.ones(B, dtype=bool), n_maxima=np.ones(B, dtype=np.int64), yi=Y, vi=V,
        weights=wts, labels=None, measure=None, method="GENQ", test="z", level=level,
        extra={"tau2_fixed": False, "weights_note": "GENQ: the pooled estimate uses the user weights"})
    return res if batch else res[0]
