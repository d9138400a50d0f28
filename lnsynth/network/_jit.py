"""Compiled (numba) kernels of the network core: the same algebra as
:func:`lnsynth.network._core.evaluate` and the tau^2 solvers of ``_core``, one network per
call of :func:`_solve`, batches in parallel by :func:`solve_batch`.

Imported lazily by ``_core`` (importing numba costs about a second per process), only
for batches or when numba is already loaded or ``LNSYNTH_JIT=1``.  The design matrix is
held sparsely: contrast ``i`` of study ``s`` has ``+1`` in column ``cp[s, i]`` and
``-1`` in column ``cm[s, i]`` (``-1`` = no such column, the reference).  The NumPy
implementation in ``_core`` is the specification; ``tests/test_network_estimators.py``
checks the two against each other.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

_LOG2PI = float(np.log(2.0 * np.pi))
METHOD_CODES = {"FE": 0, "REML": 1, "ML": 2, "PM": 3, "DL": 4, "FIXED": 5}


@njit(cache=True, inline="always")
def _scatter(Mp, K, cp, cm, q):
    # Mp += X_s' K X_s for the sparse rows of one study
    for i in range(q):
        for j in range(q):
            k = K[i, j]
            if cp[i] >= 0 and cp[j] >= 0:
                Mp[cp[i], cp[j]] += k
            if cp[i] >= 0 and cm[j] >= 0:
                Mp[cp[i], cm[j]] -= k
            if cm[i] >= 0 and cp[j] >= 0:
                Mp[cm[i], cp[j]] -= k
            if cm[i] >= 0 and cm[j] >= 0:
                Mp[cm[i], cm[j]] += k


@njit(cache=True, inline="always")
def _mm(A, B, q):
    out = np.zeros((q, q))
    for i in range(q):
        for k in range(q):
            a = A[i, k]
            for j in range(q):
                out[i, j] += a * B[k, j]
    return out


@njit(cache=True, inline="always")
def _score_info(restricted, uBu, trWB, trCM, trWBWB, trPBPB, uBPBu):
    """(RE)ML score of tau^2 and the information used for the Newton step (observed when positive,
    expected otherwise)."""
    if restricted:
        sc = 0.5 * (uBu - (trWB - trCM))
        obs = uBPBu - 0.5 * trPBPB
        ex = 0.5 * trPBPB
    else:
        sc = 0.5 * (uBu - trWB)
        obs = uBPBu - 0.5 * trWBWB
        ex = 0.5 * trWBWB
    return sc, (obs if obs > 0 else ex)


@njit(cache=True)
def _eval(t, y, V, cp, cm, qv, p, second, W, out_beta, out_C):
    """Fill W (ns, qm, qm), beta, C at tau2 = t; return the scalar pieces."""
    ns = y.shape[0]
    XtWX = np.zeros((p, p))
    XtWy = np.zeros(p)
    logdetS = 0.0
    trWB = 0.0
    for s in range(ns):
        q = qv[s]
        if q == 0:
            continue
        if q == 1:
            a = V[s, 0, 0] + t
            logdetS += np.log(a)
            W[s, 0, 0] = 1.0 / a
        elif q == 2:
            a = V[s, 0, 0] + t
            d = V[s, 1, 1] + t
            c = 0.5 * (V[s, 0, 1] + V[s, 1, 0]) + 0.5 * t
            det = a * d - c * c
            logdetS += np.log(det)
            W[s, 0, 0] = d / det
            W[s, 1, 1] = a / det
            W[s, 0, 1] = -c / det
            W[s, 1, 0] = -c / det
        else:
            S = np.empty((q, q))
            for i in range(q):
                for j in range(q):
                    S[i, j] = V[s, i, j] + t * (1.0 if i == j else 0.5)
            L = np.linalg.cholesky(S)
            for i in range(q):
                logdetS += 2.0 * np.log(L[i, i])
            Wi = np.linalg.inv(S)
            for i in range(q):
                for j in range(q):
                    W[s, i, j] = 0.5 * (Wi[i, j] + Wi[j, i])
        Ws = W[s, :q, :q]
        _scatter(XtWX, Ws, cp[s], cm[s], q)
        for i in range(q):
            wy = 0.0
            for j in range(q):
                wy += Ws[i, j] * y[s, j]
            if cp[s, i] >= 0:
                XtWy[cp[s, i]] += wy
            if cm[s, i] >= 0:
                XtWy[cm[s, i]] -= wy
            for j in range(q):
                trWB += Ws[i, j] * (1.0 if i == j else 0.5)
    Lx = np.linalg.cholesky(XtWX)
    logdetXWX = 0.0
    for i in range(p):
        logdetXWX += 2.0 * np.log(Lx[i, i])
    C = np.linalg.inv(XtWX)
    for i in range(p):
        for j in range(p):
            out_C[i, j] = 0.5 * (C[i, j] + C[j, i])
    for i in range(p):
        b = 0.0
        for j in range(p):
            b += out_C[i, j] * XtWy[j]
        out_beta[i] = b
    Q = 0.0
    uBu = 0.0
    M = np.zeros((p, p))
    N = np.zeros((p, p))
    g = np.zeros(p)
    trWBWB = 0.0
    BuWBu = 0.0
    for s in range(ns):
        q = qv[s]
        if q == 0:
            continue
        Ws = W[s, :q, :q]
        r = np.empty(q)
        for i in range(q):
            ri = y[s, i]
            if cp[s, i] >= 0:
                ri -= out_beta[cp[s, i]]
            if cm[s, i] >= 0:
                ri += out_beta[cm[s, i]]
            r[i] = ri
        u = np.zeros(q)
        for i in range(q):
            for j in range(q):
                u[i] += Ws[i, j] * r[j]
        Bu = np.empty(q)
        for i in range(q):
            acc = 0.0
            for j in range(q):
                acc += (1.0 if i == j else 0.5) * u[j]
            Bu[i] = acc
        for i in range(q):
            Q += r[i] * u[i]
            uBu += u[i] * Bu[i]
        WB = np.empty((q, q))
        for i in range(q):
            for j in range(q):
                acc = 0.0
                for k in range(q):
                    acc += Ws[i, k] * (1.0 if k == j else 0.5)
                WB[i, j] = acc
        WBW = _mm(WB, Ws, q)
        _scatter(M, WBW, cp[s], cm[s], q)
        if second:
            WBWB = _mm(WB, WB, q)
            for i in range(q):
                trWBWB += WBWB[i, i]
            _scatter(N, _mm(WBWB, Ws, q), cp[s], cm[s], q)
            WBu = np.zeros(q)
            for i in range(q):
                for j in range(q):
                    WBu[i] += Ws[i, j] * Bu[j]
            for i in range(q):
                BuWBu += Bu[i] * WBu[i]
                if cp[s, i] >= 0:
                    g[cp[s, i]] += WBu[i]
                if cm[s, i] >= 0:
                    g[cm[s, i]] -= WBu[i]
    CM = out_C @ M
    trCM = 0.0
    for i in range(p):
        trCM += CM[i, i]
    trPBPB = 0.0
    uBPBu = 0.0
    if second:
        CN = out_C @ N
        trCN = 0.0
        trCMCM = 0.0
        for i in range(p):
            trCN += CN[i, i]
            for j in range(p):
                trCMCM += CM[i, j] * CM[j, i]
        trPBPB = trWBWB - 2.0 * trCN + trCMCM
        Cg = out_C @ g
        gCg = 0.0
        for i in range(p):
            gCg += g[i] * Cg[i]
        uBPBu = BuWBu - gCg
    return Q, logdetS, logdetXWX, uBu, trWB, trCM, trWBWB, trPBPB, uBPBu


@njit(cache=True)
def _solve(y, V, cp, cm, qv, p, m, method, tau2_fixed, tol, maxiter, beta, C, res):
    """One network.  res[:] = tau2, Q_fe, Q_re, logdetS, logdetXWX, converged, iterations."""
    ns, qm = y.shape[0], y.shape[1]
    W = np.zeros((ns, qm, qm))
    Q0, ld0, ldx0, uBu0, trWB0, trCM0, trWBWB0, trPBPB0, uBPBu0 = _eval(
        0.0, y, V, cp, cm, qv, p, method == 1 or method == 2, W, beta, C)
    df = m - p
    t = 0.0
    conv = 1.0
    iters = 0
    if method == 5:
        t = tau2_fixed
    elif method == 4:
        den = trWB0 - trCM0
        if df > 0 and den > 0 and Q0 > df:
            t = (Q0 - df) / den
    elif method == 3:
        if df > 0 and Q0 > df:
            f = Q0 - df
            d = uBu0
            conv = 0.0
            for _ in range(maxiter):
                step = f / max(d, 1e-300)
                t += step
                iters += 1
                Q, ld, ldx, uBu, trWB, trCM, a1, a2, a3 = _eval(t, y, V, cp, cm, qv, p, False, W, beta, C)
                f = Q - df
                d = uBu
                if abs(step) <= tol * max(t, 1e-300) or f <= 0:
                    conv = 1.0
                    break
    elif method == 1 or method == 2:
        restricted = method == 1
        sc, info = _score_info(restricted, uBu0, trWB0, trCM0, trWBWB0, trPBPB0, uBPBu0)
        dfl = df if restricted else m
        if sc > 0 and dfl > 0:
            lo = 0.0
            hi = np.inf
            conv = 0.0
            # start at the method-of-moments estimate (closer than a Newton step from 0)
            den = trWB0 - trCM0
            start = (Q0 - df) / den if (df > 0 and den > 0 and Q0 > df) else 0.0
            for it_ in range(maxiter):
                new = start if (it_ == 0 and start > 0) else t + sc / info
                bad = (new <= lo) or (new >= hi) or not np.isfinite(new)
                if bad:
                    new = 0.5 * (lo + hi) if np.isfinite(hi) else 2.0 * max(t, 1e-4) + 1e-4
                done = (not bad) and abs(new - t) <= tol * max(new, 1e-300)
                t = new
                iters += 1
                Q, ld, ldx, uBu, trWB, trCM, trWBWB, trPBPB, uBPBu = _eval(
                    t, y, V, cp, cm, qv, p, True, W, beta, C)
                sc, info = _score_info(restricted, uBu, trWB, trCM, trWBWB, trPBPB, uBPBu)
                if sc > 0:
                    lo = max(lo, t)
                elif sc < 0:
                    hi = min(hi, t)
                if done or sc == 0 or (np.isfinite(hi) and hi - lo <= tol * max(hi, 1e-300)):
                    conv = 1.0
                    break
    if t > 0:
        Q, ld, ldx, uBu, trWB, trCM, a1, a2, a3 = _eval(t, y, V, cp, cm, qv, p, False, W, beta, C)
    else:
        t = 0.0
        Q, ld, ldx = Q0, ld0, ldx0
        _eval(0.0, y, V, cp, cm, qv, p, False, W, beta, C)
    res[0] = t
    res[1] = Q0
    res[2] = Q
    res[3] = ld
    res[4] = ldx
    res[5] = conv
    res[6] = iters


@njit(cache=True, parallel=True)
def solve_batch(y, V, cp, cm, qv, p, m, method, tau2_fixed, tol, maxiter):
    nb = y.shape[0]
    beta = np.zeros((nb, p))
    C = np.zeros((nb, p, p))
    res = np.zeros((nb, 7))
    for b in prange(nb):
        _solve(y[b], V[b], cp[b], cm[b], qv[b], p, m[b], method, tau2_fixed[b], tol, maxiter,
               beta[b], C[b], res[b])
    return beta, C, res


@njit(cache=True)
def solve_one(y, V, cp, cm, qv, p, m, method, tau2_fixed, tol, maxiter):
    beta = np.zeros(p)
    C = np.zeros((p, p))
    res = np.zeros(7)
    _solve(y, V, cp, cm, qv, p, m, method, tau2_fixed, tol, maxiter, beta, C, res)
    return beta, C, res
