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
class Block:
    """All studies with the same number of contrasts ``q``, stacked for batched algebra."""

    rows: np.ndarray  # (n, q) row indices into the stacked vectors
    y: np.ndarray  # (n, q)
    V: np.ndarray  # (n, q, q)
    X: np.ndarray  # (n, q, p)
    B: np.ndarray  # (q, q): (I + J)/2


@dataclass(frozen=True, eq=False)
class Stacked:
    y: np.ndarray
    X: np.ndarray
    blocks: tuple[Block, ...]
    study_index: np.ndarray  # study number of each row

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """Dense block-diagonal ``V`` and ``B`` (for checks and small problems)."""
        m = len(self.y)
        V, B = np.zeros((m, m)), np.zeros((m, m))
        for b in self.blocks:
            for r, Vi in zip(b.rows, b.V):
                V[np.ix_(r, r)] = Vi
                B[np.ix_(r, r)] = b.B
        return V, B


def stack(studies: Sequence[StudyContrasts], params: Sequence[str]) -> Stacked:
    """Stack studies into ``y, X`` and per-size blocks of ``V`` (``B`` implied)."""
    col = {t: i for i, t in enumerate(params)}
    m = sum(len(s.y) for s in studies)
    y = np.empty(m)
    X = np.zeros((m, len(params)))
    sidx = np.empty(m, dtype=int)
    by_q: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    r = 0
    for k, s in enumerate(studies):
        q = len(s.y)
        rows = np.arange(r, r + q)
        y[rows] = s.y
        b = s.treatments[0]
        for i, t in enumerate(s.treatments[1:]):
            if t in col:
                X[r + i, col[t]] += 1.0
            if b in col:
                X[r + i, col[b]] -= 1.0
        sidx[rows] = k
        by_q.setdefault(q, []).append((rows, np.asarray(s.V, float)))
        r += q
    blocks = []
    for q, items in sorted(by_q.items()):
        rows = np.array([it[0] for it in items])
        blocks.append(Block(rows, y[rows], np.array([it[1] for it in items]), X[rows],
                            0.5 * (np.eye(q) + 1.0)))
    return Stacked(y, X, tuple(blocks), sidx)


@dataclass(frozen=True, eq=False)
class GLSFit:
    beta: np.ndarray
    vcov: np.ndarray
    Q: float  # r' Sigma^{-1} r
    loglik_reml: float
    loglik_ml: float


def _loglik(k: int, p: int, logdetS: float, logdetXWX: float, logdetXX: float, Q: float) -> tuple[float, float]:
    ll_reml = -0.5 * (k - p) * _LOG2PI + 0.5 * logdetXX - 0.5 * logdetS - 0.5 * logdetXWX - 0.5 * Q
    ll_ml = -0.5 * k * _LOG2PI - 0.5 * logdetS - 0.5 * Q
    return float(ll_reml), float(ll_ml)


def gls(y: np.ndarray, Sigma: np.ndarray, X: np.ndarray) -> GLSFit:
    """Dense generalised least squares ``beta = (X'WX)^{-1} X'Wy`` with ``W = Sigma^{-1}``."""
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
    _, logdetXX = np.linalg.slogdet(X.T @ X)
    ll, ll_ml = _loglik(*X.shape, logdetS, logdetX, logdetXX, Q)
    return GLSFit(beta, 0.5 * (vcov + vcov.T), Q, ll, ll_ml)


def _block_weights(st: Stacked, tau2: float) -> tuple[list[np.ndarray], float]:
    """Per-block inverses of ``V_i + tau2 B`` and the total log-determinant."""
    Ws, logdet = [], 0.0
    for b in st.blocks:
        S = b.V + tau2 * b.B
        L = np.linalg.cholesky(S)
        logdet += 2.0 * float(np.log(np.diagonal(L, axis1=1, axis2=2)).sum())
        Linv = np.linalg.inv(L)
        Ws.append(np.einsum("nji,njk->nik", Linv, Linv))  # (L L')^{-1} = L^{-T} L^{-1}
    return Ws, logdet


def gls_st(st: Stacked, tau2: float = 0.0) -> GLSFit:
    """GLS fit with ``Sigma = V + tau2 B`` using the block-diagonal structure (batched)."""
    Ws, logdetS = _block_weights(st, tau2)
    p = st.X.shape[1]
    XtWX = np.zeros((p, p))
    XtWy = np.zeros(p)
    for b, W in zip(st.blocks, Ws):
        WX = W @ b.X
        XtWX += np.einsum("nqp,nqr->pr", b.X, WX)
        XtWy += np.einsum("nqp,nq->p", WX, b.y)
    cx = linalg.cho_factor(XtWX, lower=True)
    beta = linalg.cho_solve(cx, XtWy)
    vcov = linalg.cho_solve(cx, np.eye(p))
    Q = 0.0
    for b, W in zip(st.blocks, Ws):
        r = b.y - b.X @ beta
        Q += float(np.einsum("nq,nqr,nr->", r, W, r))
    logdetX = 2.0 * np.log(np.diag(cx[0])).sum()
    _, logdetXX = np.linalg.slogdet(st.X.T @ st.X)
    ll, ll_ml = _loglik(len(st.y), p, logdetS, logdetX, logdetXX, Q)
    return GLSFit(beta, 0.5 * (vcov + vcov.T), Q, ll, ll_ml)


def reml_score(tau2: float, st: Stacked) -> float:
    """Derivative of the REML log-likelihood w.r.t. tau^2.

    ``dl/dtau2 = 1/2 [ y'P B P y - tr(P B) ]`` with
    ``P = W - W X (X'WX)^{-1} X'W``, ``W = (V + tau2 B)^{-1}``; computed block
    by block: ``Py = W r``, ``tr(PB) = tr(WB) - tr((X'WX)^{-1} X'WBWX)``.
    """
    Ws, _ = _block_weights(st, tau2)
    p = st.X.shape[1]
    XtWX = np.zeros((p, p))
    XtWy = np.zeros(p)
    M = np.zeros((p, p))
    trWB = 0.0
    WXs = []
    for b, W in zip(st.blocks, Ws):
        WX = W @ b.X
        WXs.append(WX)
        XtWX += np.einsum("nqp,nqr->pr", b.X, WX)
        XtWy += np.einsum("nqp,nq->p", WX, b.y)
        M += np.einsum("nqp,qr,nrs->ps", WX, b.B, WX)
        trWB += float(np.einsum("nqr,rq->", W, b.B))
    beta = np.linalg.solve(XtWX, XtWy)
    quad = 0.0
    for b, W in zip(st.blocks, Ws):
        Pr = np.einsum("nqr,nr->nq", W, b.y - b.X @ beta)
        quad += float(np.einsum("nq,qr,nr->", Pr, b.B, Pr))
    trPB = trWB - float(np.trace(np.linalg.solve(XtWX, M)))
    return 0.5 * (quad - trPB)


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
        return gls_st(st, t).loglik_reml

    vbar = float(np.mean(np.concatenate([np.diagonal(b.V, axis1=1, axis2=2).ravel() for b in st.blocks])))
    scale = max(float(np.var(st.y)), vbar, 1e-8)
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
