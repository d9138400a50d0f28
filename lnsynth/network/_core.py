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

Two layers live here.  ``stack``/``gls_st``/``reml_score`` are single-network dense-block
routines (fixed-tau^2 GLS, used by the inconsistency module and the property tests).  The batched core
(``pack``, ``evaluate``, ``fit_packed``) holds a batch of networks as padded per-study blocks
``(nb, ns, q, q)`` and evaluates, at one tau^2 per network, the GLS fit and every derivative
piece the estimators need by block algebra (REML/ML score and observed/expected
information, generalised Q and its derivative, the moment-estimator traces); the tau^2
solvers iterate on whole batches at once.  :mod:`lnsynth.network._jit` is the compiled twin
(numba, sparse X), used for batches and once numba is loaded.

Estimators (``fit_packed(method=)``): REML and ML (Viechtbauer 2005; Harville 1977 for the
score and information of variance components), PM (Paule & Mandel 1982, generalised to
``Q(tau^2) = m - p``), DL (the moment estimator of Jackson, White & Riley 2012, as netmeta).

References
----------
Harville D.A. (1977). Maximum likelihood approaches to variance component estimation and to
related problems. J Am Stat Assoc 72:320-338.
Jackson D., White I.R., Riley R.D. (2012). Quantifying the impact of between-study
heterogeneity in multivariate meta-analyses. Stat Med 31:3805-3820.
Paule R.C., Mandel J. (1982). Consensus values and weighting factors. J Res Natl Bur Stand
87:377-385.
Viechtbauer W. (2005). Bias and efficiency of meta-analytic variance estimators in the
random-effects model. J Educ Behav Stat 30:261-293.

Examples
--------
>>> pk = pack([data.studies], params)                    # doctest: +SKIP
>>> fit_packed(pk, "REML").tau2                          # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import linalg

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


# =====================================================================================
# Batched core: padded per-study blocks, one evaluation of every quantity the tau^2
# estimators need at a vector of tau^2 values (one per network of the batch).
# =====================================================================================
METHODS_TAU2 = ("REML", "ML", "PM", "DL")


@dataclass(frozen=True, eq=False)
class Packed:
    """A batch of ``nb`` networks with the same basic parameters, as padded arrays.

    Study ``s`` of network ``b`` has ``q[b, s]`` contrasts (0 for a padding study);
    rows beyond ``q`` are padding: ``y = 0``, ``X = 0``, ``V = I``, ``B = 0``, so they
    contribute nothing to any sum below.

    Attributes
    ----------
    y : (nb, ns, qm)
    V : (nb, ns, qm, qm)
    X : (nb, ns, qm, p) or (1, ns, qm, p) (broadcast over the batch)
    B : (1 or nb, ns, qm, qm) -- blocks ``(I + J)/2`` on the real rows, 0 elsewhere
    m : (nb,) number of real contrasts per network
    logdetXX : (nb,) ``log|X'X|`` (metafor's REML constant)
    """

    y: np.ndarray
    V: np.ndarray
    X: np.ndarray
    B: np.ndarray
    m: np.ndarray
    logdetXX: np.ndarray
    cp: np.ndarray | None = None  # (nb, ns, qm) column of +1 per contrast (-1: none)
    cm: np.ndarray | None = None  # (nb, ns, qm) column of -1 per contrast (-1: none)
    qv: np.ndarray | None = None  # (nb, ns) contrasts per study

    @property
    def nb(self) -> int:
        return self.y.shape[0]

    @property
    def p(self) -> int:
        return self.X.shape[-1]


def pack(networks: Sequence[Sequence[StudyContrasts]], params: Sequence[str]) -> Packed:
    """Pad a batch of networks (each a sequence of studies) over the same ``params``."""
    col = {t: i for i, t in enumerate(params)}
    nb = len(networks)
    ns = max(len(n) for n in networks)
    qm = max(len(s.y) for n in networks for s in n)
    p = len(params)
    y = np.zeros((nb, ns, qm))
    V = np.zeros((nb, ns, qm, qm))
    cp = np.full((nb, ns, qm), -1, dtype=np.int64)
    cm = np.full((nb, ns, qm), -1, dtype=np.int64)
    qv = np.zeros((nb, ns), dtype=np.int64)
    for b, net in enumerate(networks):
        for k, s in enumerate(net):
            q = len(s.y)
            qv[b, k] = q
            if q == 1:
                y[b, k, 0] = s.y[0]
                V[b, k, 0, 0] = s.V[0, 0]
            else:
                y[b, k, :q] = s.y
                V[b, k, :q, :q] = s.V
            ts = s.treatments
            jb = col.get(ts[0], -1)
            cm[b, k, :q] = jb
            cp[b, k, :q] = [col.get(t, -1) for t in ts[1:]]
    return _finish_pack(y, V, cp, cm, qv, p)


def _finish_pack(y, V, cp, cm, qv, p) -> Packed:
    """Padding (identity V, zero B/X beyond ``qv``) and the dense X from ``cp``/``cm``."""
    nb, ns, qm = y.shape
    real = np.arange(qm)[None, None, :] < qv[..., None]
    eye = np.eye(qm, dtype=bool)
    pair = real[..., :, None] & real[..., None, :]
    V[~pair & eye] = 1.0
    B = np.where(pair, np.where(eye, 1.0, 0.5), 0.0)
    X = np.zeros((nb, ns, qm, p + 1))  # last column collects "no column" (-1) and is dropped
    idx = np.nonzero(real)
    X[idx + (cp[idx],)] += 1.0
    X[idx + (cm[idx],)] -= 1.0
    X = np.ascontiguousarray(X[..., :p])
    return Packed(y, V, X, B, qv.sum(axis=1).astype(int), _logdet_xx(X, nb), cp, cm, qv)


def pack_design_by_treatment(studies: Sequence[StudyContrasts]) -> Packed:
    """One network packed with the design-by-treatment interaction design matrix.

    Columns: for each design (sorted treatment set) its treatments other than the first,
    i.e. parameters ``theta_{d,t}`` relative to the design's first treatment; study
    contrast ``t - b`` of design ``d`` has ``+1`` at ``(d, t)`` and ``-1`` at ``(d, b)``.
    """
    cols: dict[tuple[str, str], int] = {}
    for s in studies:
        ts = sorted(s.treatments)
        for t in ts[1:]:
            cols.setdefault((":".join(ts), t), len(cols))
    ns, qm, p = len(studies), max(len(s.y) for s in studies), len(cols)
    y = np.zeros((1, ns, qm))
    V = np.zeros((1, ns, qm, qm))
    V[..., range(qm), range(qm)] = 1.0
    X = np.zeros((1, ns, qm, p))
    B = np.zeros((1, ns, qm, qm))
    cp = np.full((1, ns, qm), -1, dtype=np.int64)
    cm = np.full((1, ns, qm), -1, dtype=np.int64)
    qv = np.zeros((1, ns), dtype=np.int64)
    m = 0
    for k, s in enumerate(studies):
        q = len(s.y)
        d = s.design
        y[0, k, :q] = s.y
        V[0, k, :q, :q] = s.V
        B[0, k, :q, :q] = 0.5
        B[0, k, range(q), range(q)] = 1.0
        base = s.treatments[0]
        jb = cols.get((d, base), -1)
        for i, t in enumerate(s.treatments[1:]):
            jt = cols.get((d, t), -1)
            if jt >= 0:
                X[0, k, i, jt] += 1.0
            if jb >= 0:
                X[0, k, i, jb] -= 1.0
            cp[0, k, i], cm[0, k, i] = jt, jb
        m += q
        qv[0, k] = q
    return Packed(y, V, X, B, np.array([m]), _logdet_xx(X, 1), cp, cm, qv)


def pack_arrays(y: np.ndarray, V: np.ndarray, X: np.ndarray, q: np.ndarray | None = None) -> Packed:
    """Packed batch from arrays: ``y (nb, ns, qm)``, ``V (nb, ns, qm, qm)``, ``X (ns, qm, p)``
    or ``(nb, ns, qm, p)``; ``q (ns,)`` or ``(nb, ns)`` contrasts per study (default ``qm``).

    Padding rows (beyond ``q``) are overwritten as described in :class:`Packed`.
    """
    y = np.array(y, dtype=float, ndmin=3)
    V = np.array(V, dtype=float)
    X = np.array(X, dtype=float)
    if X.ndim == 3:
        X = X[None]
    nb, ns, qm = y.shape
    if V.shape != (nb, ns, qm, qm) or X.shape[1:3] != (ns, qm) or X.shape[0] not in (1, nb):
        raise ValueError(f"shapes do not match: y {y.shape}, V {V.shape}, X {X.shape}")
    qq = np.full((nb, ns), qm) if q is None else np.broadcast_to(np.asarray(q, int), (nb, ns))
    real = np.arange(qm)[None, None, :] < qq[..., None]  # (nb, ns, qm)
    pair = real[..., :, None] & real[..., None, :]
    eye = np.eye(qm, dtype=bool)
    y = np.where(real, y, 0.0)
    V = np.where(pair, V, np.where(eye, 1.0, 0.0))
    B = np.where(pair, np.where(eye, 1.0, 0.5), 0.0)
    if X.shape[0] == nb:
        X = np.where(real[..., None], X, 0.0)
    elif not np.all(qq == qq[0]):
        X = np.where(real[..., None], np.broadcast_to(X, (nb,) + X.shape[1:]), 0.0)
    else:
        X = np.where(real[:1, ..., None], X, 0.0)
    return Packed(y, V, X, B, qq.sum(axis=1).astype(int), _logdet_xx(X, nb))


def _logdet_xx(X: np.ndarray, nb: int) -> np.ndarray:
    X2 = X.reshape(X.shape[0], -1, X.shape[-1])
    XtX = np.swapaxes(X2, 1, 2) @ X2
    sign, ld = np.linalg.slogdet(XtX)
    return np.broadcast_to(np.where(sign > 0, ld, -np.inf), (nb,)).copy()


@dataclass(frozen=True, eq=False)
class Eval:
    """Everything at one tau^2 per network (arrays with leading batch axis)."""

    tau2: np.ndarray
    beta: np.ndarray  # (nb, p)
    C: np.ndarray  # (nb, p, p) = (X'WX)^-1
    Q: np.ndarray  # r'Wr
    logdetS: np.ndarray
    logdetXWX: np.ndarray
    uBu: np.ndarray  # y'PBPy
    trWB: np.ndarray
    trCM: np.ndarray  # tr((X'WX)^-1 X'WBWX); tr(PB) = trWB - trCM
    second: dict | None  # trWBWB, trPBPB, uBPBu (when asked)


def evaluate(pk: Packed, tau2: np.ndarray, second: bool = False) -> Eval:
    r"""Evaluate the GLS fit and the derivative pieces at ``tau2`` (one per network).

    With :math:`\Sigma = V + \tau^2 B`, :math:`W = \Sigma^{-1}`,
    :math:`C = (X'WX)^{-1}`, :math:`P = W - WXCX'W`, :math:`u = Py = W(y - X\hat\beta)`:
    ``Q = y'Py``, ``uBu = u'Bu``, ``tr(PB) = tr(WB) - tr(C X'WBWX)`` and, with
    ``second=True``, ``tr(PBPB)``, ``tr(WBWB)`` and ``u'BPBu`` -- all by block algebra
    over the studies (no ``m x m`` matrix is formed).
    """
    t = np.asarray(tau2, float).reshape(-1)
    nb, ns, qm = pk.y.shape
    p = pk.p
    S = pk.V + t[:, None, None, None] * pk.B
    if qm == 1:  # two-arm studies only: scalar blocks
        S1 = S[..., 0, 0]
        logdetS = np.log(S1).sum(axis=1)
        W = (1.0 / S1)[..., None, None]
    else:
        L = np.linalg.cholesky(S)
        logdetS = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=(1, 2))
        W = np.linalg.inv(S)
        W = 0.5 * (W + np.swapaxes(W, -1, -2))
    X = pk.X
    # stacked (ns * qm)-row views: the sums over studies become one matmul each
    X2 = X.reshape(X.shape[0], ns * qm, p)
    X2t = np.swapaxes(X2, 1, 2)
    WX = W @ X  # (nb, ns, qm, p)
    WX2 = WX.reshape(nb, ns * qm, p)
    WX2t = np.swapaxes(WX2, 1, 2)
    XtWX = X2t @ WX2
    y2 = pk.y.reshape(nb, ns * qm, 1)
    XtWy = (WX2t @ y2)[..., 0]
    Lx = np.linalg.cholesky(XtWX)
    logdetXWX = 2.0 * np.log(np.diagonal(Lx, axis1=-2, axis2=-1)).sum(axis=1)
    C = np.linalg.inv(XtWX)
    C = 0.5 * (C + np.swapaxes(C, -1, -2))
    beta = (C @ XtWy[..., None])[..., 0]
    r = pk.y - (X2 @ beta[..., None]).reshape(nb, ns, qm)
    u = (W @ r[..., None])[..., 0]
    Q = (r * u).sum(axis=(1, 2))
    B = pk.B
    Bu = (B @ u[..., None])[..., 0]
    uBu = (u * Bu).sum(axis=(1, 2))
    WB = W @ B
    trWB = np.trace(WB, axis1=-2, axis2=-1).sum(axis=1)
    BWX = B @ WX
    M = WX2t @ BWX.reshape(nb, ns * qm, p)
    CM = C @ M
    trCM = np.trace(CM, axis1=-2, axis2=-1)
    sec = None
    if second:
        trWBWB = (WB * np.swapaxes(WB, -1, -2)).sum(axis=(1, 2, 3))
        WBWX = (W @ BWX).reshape(nb, ns * qm, p)
        N = np.swapaxes(BWX.reshape(nb, ns * qm, p), 1, 2) @ WBWX
        trCN = (C * np.swapaxes(N, 1, 2)).sum(axis=(1, 2))
        trCMCM = (CM * np.swapaxes(CM, 1, 2)).sum(axis=(1, 2))
        g = (WX2t @ Bu.reshape(nb, ns * qm, 1))[..., 0]
        WBu = (W @ Bu[..., None])[..., 0]
        uBPBu = (Bu * WBu).sum(axis=(1, 2)) - ((C @ g[..., None])[..., 0] * g).sum(axis=1)
        sec = {"trWBWB": trWBWB, "trPBPB": trWBWB - 2.0 * trCN + trCMCM, "uBPBu": uBPBu}
    return Eval(t, beta, C, Q, logdetS, logdetXWX, uBu, trWB, trCM, sec)


def logliks(pk: Packed, ev: Eval) -> tuple[np.ndarray, np.ndarray]:
    """(REML, ML) log-likelihoods as metafor's ``logLik`` (REML with ``+ log|X'X|/2``)."""
    m, p = pk.m.astype(float), pk.p
    ll_ml = -0.5 * (m * _LOG2PI + ev.logdetS + ev.Q)
    ll_reml = -0.5 * ((m - p) * _LOG2PI + ev.logdetS + ev.logdetXWX + ev.Q) + 0.5 * pk.logdetXX
    return ll_reml, ll_ml


def mom_tau2(pk: Packed, ev0: Eval | None = None) -> np.ndarray:
    r"""Method-of-moments (DerSimonian-Laird type) tau^2 for the multivariate model.

    With FE weights :math:`W = V^{-1}`, :math:`E[Q] = (m - p) + \tau^2\,\mathrm{tr}(PB)`
    (Jackson, White & Riley 2012, Eq. for the matrix-based moment estimator with a
    single heterogeneity parameter), hence

    .. math:: \hat\tau^2 = \max\{0, (Q - (m - p)) / (\mathrm{tr}(WB) - \mathrm{tr}((X'WX)^{-1}X'WBWX))\}.

    This is netmeta's default estimator (Rücker 2012; Rücker & Schwarzer 2014 show its
    graph-theoretical form ``(Q - df) / tr((I - H) U W)`` on all pairwise contrasts; the two
    traces are equal because both Laplacians ``B_s' W_s B_s`` equal the study's
    information matrix on the arm effects) and the ``tau.within`` of netmeta's
    ``decomp.design`` when applied to the design-by-treatment interaction model.
    """
    ev = evaluate(pk, np.zeros(pk.nb)) if ev0 is None else ev0
    df = pk.m - pk.p
    den = ev.trWB - ev.trCM
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(den > 0, (ev.Q - df) / den, 0.0)
    return np.where((df > 0) & (t > 0), t, 0.0)


def _newton_ml(pk: Packed, restricted: bool, tol: float, maxiter: int,
               ev0: Eval | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, Eval]:
    """(RE)ML tau^2: safeguarded Newton on the score with a sign-change bracket.

    Score ``S = (u'Bu - tr(PB))/2`` (REML) or ``(u'Bu - tr(WB))/2`` (ML); observed
    information ``u'BPBu - tr(PBPB)/2`` (REML) or ``u'BPBu - tr(WBWB)/2`` (ML), replaced
    by the expected information (``tr(PBPB)/2``, ``tr(WBWB)/2``: Fisher scoring) where it
    is not positive, and by bisection where a step leaves the bracket.  The estimate is 0
    when the score at 0 is <= 0 (the likelihood decreases from the boundary).
    Returns ``tau2, converged, iterations`` and the evaluation at the returned ``tau2``.
    """
    nb = pk.nb

    def score_info(ev):
        s2 = ev.second
        if restricted:
            sc = 0.5 * (ev.uBu - (ev.trWB - ev.trCM))
            obs, exp = s2["uBPBu"] - 0.5 * s2["trPBPB"], 0.5 * s2["trPBPB"]
        else:
            sc = 0.5 * (ev.uBu - ev.trWB)
            obs, exp = s2["uBPBu"] - 0.5 * s2["trWBWB"], 0.5 * s2["trWBWB"]
        return sc, np.where(obs > 0, obs, exp)

    t = np.zeros(nb)
    ev = ev0 if ev0 is not None and ev0.second is not None else evaluate(pk, t, second=True)
    sc, info = score_info(ev)
    df_ok = (pk.m - (pk.p if restricted else 0)) > 0
    active = (sc > 0) & df_ok
    conv = ~active
    lo = np.zeros(nb)
    hi = np.full(nb, np.inf)
    it = np.zeros(nb, dtype=int)
    start = mom_tau2(pk, ev)  # first iterate: the method-of-moments estimate where positive
    for k in range(maxiter):
        if not active.any():
            break
        step = np.where(active, sc / info, 0.0)
        new = t + step
        if k == 0:
            new = np.where(start > 0, start, new)
        bad = active & ((new <= lo) | (new >= hi) | ~np.isfinite(new))
        mid = np.where(np.isfinite(hi), 0.5 * (lo + hi), 2.0 * np.maximum(t, 1e-4) + 1e-4)
        new = np.where(bad, mid, new)
        new = np.where(active, new, t)
        done_now = active & (np.abs(new - t) <= tol * np.maximum(new, 1e-300)) & ~bad
        t = new
        it += active
        ev = evaluate(pk, t, second=True)
        sc, info = score_info(ev)
        lo = np.where(active & (sc > 0), np.maximum(lo, t), lo)
        hi = np.where(active & (sc < 0), np.minimum(hi, t), hi)
        exact = active & (sc == 0)
        finished = done_now | exact | (active & np.isfinite(hi) & (hi - lo <= tol * np.maximum(hi, 1e-300)))
        conv |= finished
        active &= ~finished
    return t, conv, it, ev


def _pm(pk: Packed, tol: float, maxiter: int,
        ev0: Eval | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, Eval]:
    r"""Paule-Mandel generalised: solve :math:`Q(\tau^2) = m - p` (Newton from 0).

    :math:`Q(\tau^2) = y'P y` is decreasing and convex in :math:`\tau^2`
    (:math:`dQ/d\tau^2 = -u'Bu`, :math:`d^2Q/d(\tau^2)^2 = 2u'BPBu \ge 0`), so Newton's
    method from 0 increases monotonically to the root without overshooting.
    """
    nb = pk.nb
    df = (pk.m - pk.p).astype(float)
    t = np.zeros(nb)
    ev = ev0 if ev0 is not None else evaluate(pk, t)
    f = ev.Q - df
    active = (f > 0) & (df > 0)
    conv = ~active
    it = np.zeros(nb, dtype=int)
    for _ in range(maxiter):
        if not active.any():
            break
        step = np.where(active, f / np.maximum(ev.uBu, 1e-300), 0.0)
        t = t + step
        it += active
        ev = evaluate(pk, t)
        f = ev.Q - df
        fin = active & ((np.abs(step) <= tol * np.maximum(t, 1e-300)) | (f <= 0))
        conv |= fin
        active &= ~fin
    return t, conv, it, ev


@dataclass(frozen=True, eq=False)
class BatchFit:
    """Fitted consistency model for every network of a batch."""

    method: str
    tau2: np.ndarray  # (nb,)
    beta: np.ndarray  # (nb, p)
    vcov: np.ndarray  # (nb, p, p)
    Q: np.ndarray  # FE Q (metafor QE)
    Q_re: np.ndarray  # r'(V + tau2 B)^-1 r at the fitted tau2 (Hartung-Knapp)
    df: np.ndarray  # m - p
    loglik_reml: np.ndarray
    loglik_ml: np.ndarray
    at_boundary: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray


JIT_FROM = 32  # networks per call from which the compiled kernels repay importing numba


def use_jit(nb: int) -> bool:
    """Compiled kernels for batches of ``JIT_FROM`` or more, or once numba is loaded anyway
    (``LNSYNTH_JIT=1`` forces them, ``LNSYNTH_JIT=0`` the NumPy implementation)."""
    env = os.environ.get("LNSYNTH_JIT")
    if env in ("0", "1"):
        return env == "1"
    return nb >= JIT_FROM or "numba" in sys.modules


def _fit_jit(pk: Packed, method: str, tau2, tol: float, maxiter: int) -> BatchFit:
    from . import _jit

    nb = pk.nb
    code = _jit.METHOD_CODES["FIXED" if tau2 is not None else method]
    tf = np.zeros(nb) if tau2 is None else np.broadcast_to(np.asarray(tau2, float), (nb,)).copy()
    y = np.ascontiguousarray(pk.y)
    V = np.ascontiguousarray(pk.V)
    if nb == 1:
        beta, C, res = _jit.solve_one(y[0], V[0], pk.cp[0], pk.cm[0], pk.qv[0], pk.p, int(pk.m[0]), code,
                                      float(tf[0]), tol, maxiter)
        beta, C, res = beta[None], C[None], res[None]
    else:
        beta, C, res = _jit.solve_batch(y, V, pk.cp, pk.cm, pk.qv, pk.p, pk.m.astype(np.int64), code, tf,
                                        tol, maxiter)
    t = res[:, 0]
    m, p = pk.m.astype(float), pk.p
    Q = res[:, 2]
    ll_ml = -0.5 * (m * _LOG2PI + res[:, 3] + Q)
    ll_reml = -0.5 * ((m - p) * _LOG2PI + res[:, 3] + res[:, 4] + Q) + 0.5 * pk.logdetXX
    return BatchFit(method, t, beta, C, res[:, 1], Q, pk.m - pk.p, ll_reml, ll_ml, t == 0,
                    res[:, 5] > 0, res[:, 6].astype(int))


def fit_packed(pk: Packed, method: str = "REML", tau2: float | np.ndarray | None = None,
               tol: float = 1e-13, maxiter: int = 100, engine: str = "auto") -> BatchFit:
    """Fit the consistency model to every network of ``pk``.

    ``method``: ``"FE"``, ``"REML"``, ``"ML"``, ``"PM"`` or ``"DL"`` (method of
    moments, :func:`mom_tau2`); ``tau2`` fixes the between-study variance instead.
    ``engine``: ``"numpy"`` (vectorised over the batch; the specification),
    ``"jit"`` (compiled kernels of :mod:`lnsynth.network._jit`, one network per thread)
    or ``"auto"`` (:func:`use_jit`).
    """
    method = method.upper()
    nb = pk.nb
    if pk.cp is not None and (engine == "jit" or (engine == "auto" and use_jit(nb))):
        return _fit_jit(pk, method, tau2, tol, maxiter)
    ev0 = evaluate(pk, np.zeros(nb), second=tau2 is None and method in ("REML", "ML"))
    it = np.zeros(nb, dtype=int)
    conv = np.ones(nb, dtype=bool)
    evf = None
    if tau2 is not None:
        t = np.broadcast_to(np.asarray(tau2, float), (nb,)).copy()
    elif method == "FE":
        t = np.zeros(nb)
    elif method == "DL":
        t = mom_tau2(pk, ev0)
    elif method == "PM":
        t, conv, it, evf = _pm(pk, tol, maxiter, ev0)
    elif method in ("REML", "ML"):
        t, conv, it, evf = _newton_ml(pk, method == "REML", tol, maxiter, ev0)
    else:
        raise ValueError(f"unknown tau^2 method {method!r}")
    if not np.any(t):
        ev = ev0
    elif evf is not None and np.array_equal(evf.tau2, t):
        ev = evf
    else:
        ev = evaluate(pk, t)
    if np.any(t) and not np.all(t):  # keep the exact FE algebra where tau2 == 0
        zero = t == 0
        ev = Eval(*(np.where(zero.reshape((-1,) + (1,) * (np.ndim(a) - 1)), a0, a)
                    for a0, a in zip((ev0.tau2, ev0.beta, ev0.C, ev0.Q, ev0.logdetS, ev0.logdetXWX,
                                      ev0.uBu, ev0.trWB, ev0.trCM),
                                     (ev.tau2, ev.beta, ev.C, ev.Q, ev.logdetS, ev.logdetXWX,
                                      ev.uBu, ev.trWB, ev.trCM))), None)
    ll_reml, ll_ml = logliks(pk, ev)
    return BatchFit(method, t, ev.beta, ev.C, ev0.Q, ev.Q, pk.m - pk.p, ll_reml, ll_ml,
                    t == 0, conv, it)
