"""Linear-algebra core of the contrast-based NMA: stacking, GLS, REML for tau^2.

The model (for ``m`` stacked contrasts) is

.. math::

    y = X d + \\delta + \\varepsilon,\\quad
    \\varepsilon \\sim N(0, V),\\quad \\delta \\sim N(0, \\tau^2 B),

where ``d`` are the basic parameters (effects of each non-reference
treatment relative to the reference), ``X`` has ``+1`` in the column of the
contrast's treatment and ``-1`` in the column of the study baseline (no
column for the reference), ``V`` is block-diagonal (within-study
covariances) and ``B`` is block-diagonal with blocks ``(I + J)/2`` (unit
variance, correlation 1/2 between contrasts of a multi-arm study).  This is
the model metafor fits with
``rma.mv(yi, V, mods = X, intercept = FALSE, random = ~ comp | study, rho = 1/2)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import linalg, optimize

from .data import StudyContrasts

_LOG2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True, eq=False)
class Stacked:
    y: np.ndarray
    V: np.ndarray
    X: np.ndarray
    B: np.ndarray
    study_index: np.ndarray  # study number of each row


def stack(studies: Sequence[StudyContrasts], params: Sequence[str]) -> Stacked:
    """Stack studies into ``y, V, X, B``; ``params`` are the column treatments."""
    col = {t: i for i, t in enumerate(params)}
    m = sum(len(s.y) for s in studies)
    y = np.empty(m)
    V = np.zeros((m, m))
    B = np.zeros((m, m))
    X = np.zeros((m, len(params)))
    sidx = np.empty(m, dtype=int)
    r = 0
    for k, s in enumerate(studies):
        q = len(s.y)
        sl = slice(r, r + q)
        y[sl] = s.y
        V[sl, sl] = s.V
        B[sl, sl] = 0.5 * (np.eye(q) + 1.0)
        b = s.treatments[0]
        for i, t in enumerate(s.treatments[1:]):
            if t in col:
                X[r + i, col[t]] += 1.0
            if b in col:
                X[r + i, col[b]] -= 1.0
        sidx[sl] = k
        r += q
    return Stacked(y, V, X, B, sidx)


@dataclass(frozen=True, eq=False)
class GLSFit:
    beta: np.ndarray
    vcov: np.ndarray
    Q: float  # r' Sigma^{-1} r
    loglik_reml: float
    loglik_ml: float


def gls(y: np.ndarray, Sigma: np.ndarray, X: np.ndarray) -> GLSFit:
    """Generalised least squares ``beta = (X'WX)^{-1} X'Wy`` with ``W = Sigma^{-1}``."""
    c = linalg.cho_factor(Sigma, lower=True)
    Wy = linalg.cho_solve(c, y)
    WX = linalg.cho_solve(c, X)
    XtWX = X.T @ WX
    cx = linalg.cho_factor(XtWX, lower=True)
    beta = linalg.cho_solve(cx, X.T @ Wy)
    vcov = linalg.cho_solve(cx, np.eye(X.shape[1]))
    r = y - X @ beta
    Q = float(r @ linalg.cho_solve(c, r))
    logdetS = 2.0 * np.log(np.diag(c[0])).sum()
    logdetX = 2.0 * np.log(np.diag(cx[0])).sum()
    sign, logdetXX = np.linalg.slogdet(X.T @ X)
    k, p = X.shape
    ll = -0.5 * (k - p) * _LOG2PI + 0.5 * logdetXX - 0.5 * logdetS - 0.5 * logdetX - 0.5 * Q
    ll_ml = -0.5 * k * _LOG2PI - 0.5 * logdetS - 0.5 * Q
    return GLSFit(beta, 0.5 * (vcov + vcov.T), Q, float(ll), float(ll_ml))


def reml_score(tau2: float, st: Stacked) -> float:
    """Derivative of the REML log-likelihood w.r.t. tau^2.

    ``dl/dtau2 = 1/2 [ y'P B P y - tr(P B) ]`` with
    ``P = W - W X (X'WX)^{-1} X'W``, ``W = (V + tau2 B)^{-1}``.
    """
    S = st.V + tau2 * st.B
    c = linalg.cho_factor(S, lower=True)
    W = linalg.cho_solve(c, np.eye(len(st.y)))
    WX = W @ st.X
    P = W - WX @ np.linalg.solve(st.X.T @ WX, WX.T)
    Py = P @ st.y
    return 0.5 * (float(Py @ st.B @ Py) - float(np.sum(P * st.B)))


def reml_tau2(st: Stacked) -> tuple[float, dict]:
    """REML estimate of tau^2 by maximising the 1-D restricted likelihood.

    Strategy: evaluate the REML log-likelihood on a grid (0 plus a geometric
    grid up to a generous upper bound) to locate the global maximum, then
    solve the score equation ``dl/dtau2 = 0`` by Brent's method inside the
    bracketing grid cell (to machine precision), falling back to bounded Brent
    on the likelihood if no sign change is found.  If the maximum is at
    ``tau2 = 0`` (score at 0 is <= 0 and the grid maximum is at 0) the estimate
    is exactly 0 (boundary).

    Returns
    -------
    tau2 : float
    info : dict with ``at_boundary``, ``loglik``, ``score``.
    """
    m, p = st.X.shape
    if m <= p:
        return 0.0, {"at_boundary": True, "loglik": float("nan"), "score": float("nan"),
                     "note": "no residual degrees of freedom"}

    def ll(t: float) -> float:
        return gls(st.y, st.V + t * st.B, st.X).loglik_reml

    scale = max(float(np.var(st.y)), float(np.mean(np.diag(st.V))), 1e-8)
    upper = 100.0 * scale + 10.0
    grid = np.concatenate([[0.0], np.geomspace(1e-8 * scale, upper, 60)])
    vals = np.array([ll(t) for t in grid])
    i = int(np.nanargmax(vals))
    if i == 0:
        s0 = reml_score(0.0, st)
        if s0 <= 0:
            return 0.0, {"at_boundary": True, "loglik": float(vals[0]), "score": s0}
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    slo, shi = reml_score(lo, st), reml_score(hi, st)
    if slo > 0 > shi:
        t = optimize.brentq(reml_score, lo, hi, args=(st,), xtol=1e-300, rtol=4 * np.finfo(float).eps,
                            maxiter=500)
    else:  # pragma: no cover - pathological likelihood shapes
        res = optimize.minimize_scalar(lambda x: -ll(x), bounds=(lo, hi), method="bounded",
                                       options={"xatol": 1e-14 * max(hi, 1e-12)})
        t = float(res.x)
    t = max(float(t), 0.0)
    if ll(t) < vals[0] and reml_score(0.0, st) <= 0:  # pragma: no cover
        return 0.0, {"at_boundary": True, "loglik": float(vals[0]), "score": reml_score(0.0, st)}
    return t, {"at_boundary": False, "loglik": ll(t), "score": reml_score(t, st)}
