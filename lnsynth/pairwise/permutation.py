"""Permutation tests for random/fixed-effects models and meta-regressions (metafor ``permutest``).

* Intercept-only model (:class:`~lnsynth.pairwise.MetaResult`): under the null of a zero mean effect the
  signs of the ``yi`` are exchangeable; the model is refitted (same ``method``, ``test``, fixed tau² if the
  fit fixed it) for every sign vector -- all ``2^k`` when that is at most ``iter`` (or ``exact=True``),
  otherwise ``iter`` random ones of which the first is the observed data, as metafor does.  The refits
  are one batched call of the engine (rows of a (n_perm, k) array).
* Meta-regression (:class:`~lnsynth.pairwise.regression.MetaRegressionResult`): the rows of the design
  matrix are permuted against ``yi``/``vi``; exactly over the distinct permutations (a multinomial count when
  rows repeat: ``k! / prod(n_g!)`` for groups of identical rows), else ``iter`` random permutations.

Two-sided p-values are metafor's defaults (``p2defn = "abs"``, ``stat = "test"``): the share of permuted
test statistics with ``|z*| >= |z| - tol``, and for the omnibus test ``QM* >= QM - tol``, with
``tol = sqrt(machine epsilon)`` (metafor's ``comptol``).  Random permutations use NumPy's generator with
``seed``; their p-values cannot equal metafor's draw for draw (different random streams), exact ones do.

References
----------
Follmann DA, Proschan MA (1999). Valid inference in random effects meta-analysis. Biometrics 55:732-737.
Higgins JPT, Thompson SG (2004). Controlling the risk of spurious findings from meta-regression. Statistics
in Medicine 23:1663-1682.
Viechtbauer W, López-López JA, Sánchez-Meca J, Marín-Martínez F (2015). A comparison of procedures to test
for moderators in mixed-effects meta-regression models. Psychological Methods 20:360-374.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .results import _fmtp

__all__ = ["permutation_test", "PermutationResult"]
_TOL = math.sqrt(np.finfo(float).eps)
_CHUNK = 65536


@dataclass(frozen=True)
class PermutationResult:
    """Permutation p-values of a fitted model (metafor ``permutest``).

    ``zval`` and ``qm`` are the observed statistics, ``pvalue`` (per coefficient) and ``qm_pvalue`` their
    permutation p-values over ``n_perm`` permutations (``exact`` when all were enumerated);
    ``zval_perm`` (n_perm, p) and ``qm_perm`` (n_perm,) the permutation distributions.
    """

    names: tuple
    coefficients: np.ndarray
    zval: np.ndarray
    pvalue: np.ndarray
    qm: float
    qm_pvalue: float
    n_perm: int
    exact: bool
    zval_perm: np.ndarray
    qm_perm: np.ndarray
    fit: Any = None
    extra: dict = field(default_factory=dict)

    @property
    def estimate(self) -> float:
        return float(self.coefficients[0])

    @property
    def level(self) -> float:
        """Confidence level of the fitted model."""
        return float(self.fit.level)

    def conf_int(self, level: float | None = None):
        """The fitted model's confidence interval (metafor's ``permutest`` without ``permci``)."""
        if level is None:
            if hasattr(self.fit, "ci_low"):
                return self.fit.ci_low, self.fit.ci_high
            raise ValueError("conf_int: no fit attached")
        return self.fit.conf_int(level)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "coefficients": [float(x) for x in self.coefficients],
                "zval": [float(x) for x in self.zval], "pvalue": [float(x) for x in self.pvalue],
                "qm": float(self.qm), "qm_pvalue": float(self.qm_pvalue), "n_perm": int(self.n_perm),
                "exact": bool(self.exact)}

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"term": list(self.names), "estimate": self.coefficients, "zval": self.zval,
                             "pval_perm": self.pvalue})

    def summary(self, digits: int = 4) -> str:
        f = f"{{:.{digits}f}}"
        kind = "exact" if self.exact else "approximate"
        lines = [f"Permutation test ({kind}, {self.n_perm} permutations)", "",
                 f"Test of Moderators: QM = {f.format(self.qm)}, p-val* = {_fmtp(self.qm_pvalue)}", "",
                 self.to_frame().to_string(index=False, float_format=lambda x: f.format(x))]
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover
        return self.summary()


def _multiset_perms(groups: np.ndarray):
    """All distinct orderings of the multiset ``groups`` (ints), as a (n, k) array."""
    vals, counts = np.unique(groups, return_counts=True)
    counts = counts.tolist()
    k = len(groups)
    out = []
    cur = [0] * k

    def rec(pos):
        if pos == k:
            out.append(cur.copy())
            return
        for i, c in enumerate(counts):
            if c:
                counts[i] -= 1
                cur[pos] = vals[i]
                rec(pos + 1)
                counts[i] += 1

    rec(0)
    return np.array(out, dtype=np.int64)


def _n_distinct(groups: np.ndarray) -> float:
    _, counts = np.unique(groups, return_counts=True)
    n = math.factorial(len(groups))
    for c in counts:
        n //= math.factorial(int(c))
    return float(n)


def _pvals(z_obs, z_perm, qm_obs, qm_perm, tol):
    ok = np.isfinite(z_perm).all(1)
    with np.errstate(invalid="ignore"):
        p = np.mean(np.abs(z_perm[ok]) >= np.abs(z_obs)[None, :] - tol, axis=0)
    okq = np.isfinite(qm_perm)
    pq = float(np.mean(qm_perm[okq] >= qm_obs - tol)) if np.isfinite(qm_obs) else math.nan
    return np.minimum(p, 1.0), pq


def _intercept_only(fit, exact, iter, rng):
    from .api import meta_analysis

    if fit.method in ("MH", "PETO"):
        raise ValueError(f"fit: permutation_test needs an inverse-variance fit (rma.uni), not method {fit.method}")
    y = np.asarray(fit.yi, dtype=np.float64)
    v = np.asarray(fit.vi, dtype=np.float64)
    k = y.size
    n_exact = 2.0 ** k
    exact = bool(exact) or n_exact <= iter
    if exact and k > 24:
        raise ValueError(f"exact: 2^{k} sign flips are too many for an exact test; use exact=False")
    n = int(n_exact) if exact else int(iter)
    fixed = bool(fit.extra.get("tau2_fixed"))
    zs = np.empty(n)
    for start in range(0, n, _CHUNK):
        m = min(_CHUNK, n - start)
        if exact:
            idx = np.arange(start, start + m, dtype=np.int64)[:, None]
            signs = 1.0 - 2.0 * ((idx >> np.arange(k)[None, :]) & 1)  # row 0: all +1 (the observed data)
        else:
            signs = rng.choice(np.array([-1.0, 1.0]), size=(m, k))
            if start == 0:
                signs[0] = 1.0
        kw = {"tau2": np.full(m, float(fit.tau2))} if fixed else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = meta_analysis(yi=signs * y[None, :], vi=np.broadcast_to(v, (m, k)).copy(), method=fit.method,
                                test=fit.test, level=fit.level, ci_tau2=False, **kw)
        zs[start:start + m] = res.zval
    z_obs = np.array([float(fit.zval)])
    p, pq = _pvals(z_obs, zs[:, None], float(fit.zval) ** 2, zs ** 2, _TOL)
    return PermutationResult(("intrcpt",), np.array([float(fit.estimate)]), z_obs, p, float(fit.zval) ** 2, pq, n,
                             exact, zs[:, None], zs ** 2, fit)


def _regression(fit, exact, iter, rng):
    from .regression import rma_fit

    if "weights" in fit.extra:
        raise ValueError("fit: permutation_test for a fit with user weights (GENQ) is not supported")
    X = np.asarray(fit.X, dtype=np.float64)
    k, p = X.shape
    _, groups = np.unique(X, axis=0, return_inverse=True)
    groups = groups.reshape(k)
    n_exact = _n_distinct(groups)
    exact = bool(exact) or n_exact <= iter
    if exact and n_exact > 5e6:
        raise ValueError(f"exact: {n_exact:.3g} distinct permutations are too many for an exact test; use exact=False")
    rep = {g: X[np.flatnonzero(groups == g)[0]] for g in np.unique(groups)}
    if exact:
        orders = _multiset_perms(groups)
        designs = (np.stack([rep[g] for g in row]) for row in orders)
        n = orders.shape[0]
    else:
        n = int(iter)
        designs = (X if i == 0 else X[rng.permutation(k)] for i in range(n))
    tau2 = float(fit.tau2) if fit.extra.get("tau2_fixed") else None
    zs = np.full((n, p), np.nan)
    qs = np.full(n, np.nan)
    y = np.asarray(fit.yi, dtype=np.float64)
    v = np.asarray(fit.vi, dtype=np.float64)
    fast = fit.method in ("FE", "DL", "ML", "REML") or tau2 is not None
    todo = []
    start = 0
    while True:  # batches of designs: one vectorised refit each (FE, ML, REML, fixed tau2)
        chunk = [Xp for _, Xp in zip(range(_CHUNK // 16), designs)]
        if not chunk:
            break
        Xs = np.stack(chunk)
        if fast:
            z, q, ok = _refit_batch(y, v, Xs, fit.method, fit.test, tau2)
            zs[start:start + len(chunk)] = z
            qs[start:start + len(chunk)] = q
            todo.extend(start + np.flatnonzero(~ok))
        else:
            todo.extend(range(start, start + len(chunk)))
        if not fast or len(todo):
            for i in [j for j in todo if j >= start]:
                try:
                    d = rma_fit(y, v, Xs[i - start], method=fit.method, test=fit.test, level=fit.level, tau2=tau2,
                                r2=False)
                except (ValueError, np.linalg.LinAlgError):  # design of deficient rank: skipped, as metafor
                    continue
                zs[i] = d["zval"]
                qs[i] = d["qm"]
        start += len(chunk)
    p_, pq = _pvals(np.asarray(fit.zval, dtype=float), zs, float(fit.qm), qs, _TOL)
    return PermutationResult(tuple(fit.names), np.asarray(fit.coefficients, dtype=float),
                             np.asarray(fit.zval, dtype=float), p_, float(fit.qm), pq, n, exact, zs, qs, fit)


def _refit_batch(y, v, Xs, method, test, tau2_fixed, tol=1e-13, max_iter=200):
    """z statistics and QM of ``rma.uni(y, v, mods=Xs[i], intercept=FALSE)`` for a stack of designs (n, k, p).

    tau2: 0 (FE), the fixed value, DL's closed form, or the ML/REML estimate: from the HE estimate, Newton steps on
    the score where its derivative is negative and Fisher scoring steps elsewhere, truncated at 0, until the
    change is below ``tol`` (relative above 1); rows that do not
    converge, or whose design is not of full rank, come back with ``ok`` False (refitted one by one).
    """
    n, k, p = Xs.shape
    eye = np.eye(k)
    intercept = bool(np.all(Xs[:, :, 0] == 1.0))
    btt = list(range(1, p)) if (intercept and p > 1) else list(range(p))

    def parts(t, rows=slice(None)):
        Xr = Xs[rows]
        w = 1.0 / (v[None, :] + t[:, None])
        wX = Xr * w[:, :, None]
        A = np.einsum("nkp,nkq->npq", Xr, wX)
        Ainv = np.linalg.inv(A)
        P = w[:, :, None] * eye[None] - np.einsum("nkp,npq,njq->nkj", wX, Ainv, wX)
        return w, Ainv, P

    ok = np.ones(n, dtype=bool)
    rank_ok = np.linalg.matrix_rank(Xs) == p
    ok &= rank_ok
    Xs = np.where(rank_ok[:, None, None], Xs, np.eye(k, p)[None])  # placeholder for skipped rows
    if method == "FE":
        t = np.zeros(n)
    elif tau2_fixed is not None:
        t = np.full(n, float(tau2_fixed))
    elif method == "DL":
        w, Ainv, P = parts(np.zeros(n))
        t = np.maximum(0.0, (np.einsum("i,nij,j->n", y, P, y) - (k - p)) / np.einsum("nkk->n", P))
    else:
        XtX = np.einsum("nkp,nkq->npq", Xs, Xs)
        H = np.einsum("nkp,npq,njq->nkj", Xs, np.linalg.inv(XtX), Xs)
        P0 = eye[None] - H
        yc = y - y.mean()
        t = np.maximum(0.0, (np.einsum("i,nij,j->n", yc, P0, yc) - np.einsum("nii,i->n", P0, v)) / (k - p))
        conv = np.zeros(n, dtype=bool)
        act = np.arange(n)
        for _ in range(max_iter):  # only the rows still moving are recomputed
            ta = t[act]
            w, Ainv, P = parts(ta, act)
            Py = np.einsum("nkj,j->nk", P, y)
            PPy = np.einsum("nkj,nj->nk", P, Py)
            if method == "REML":
                score = (Py * Py).sum(1) - np.einsum("nkk->n", P)
                info = (P * P).sum((1, 2))
            else:
                score = (Py * Py).sum(1) - w.sum(1)
                info = (w * w).sum(1)
            dscore = info - 2.0 * (Py * PPy).sum(1)  # derivative of the score: Newton where it is negative
            step = np.where(dscore < 0.0, -score / np.where(dscore < 0.0, dscore, -1.0), score / info)
            new = np.maximum(0.0, ta + step)
            done = np.abs(new - ta) <= tol * np.maximum(1.0, new)
            t[act] = new
            conv[act[done]] = True
            act = act[~done]
            if act.size == 0:
                break
        ok &= conv
    w, Ainv, P = parts(t)
    wX = Xs * w[:, :, None]
    beta = np.einsum("npq,nkq,k->np", Ainv, wX, y)
    vb = Ainv
    kp = k - p
    if test == "knha":
        r = y[None, :] - np.einsum("nkp,np->nk", Xs, beta)
        rss = (w * r * r).sum(1)
        s2w = np.where(rss <= np.finfo(float).eps, 0.0, rss / kp)
        vb = vb * s2w[:, None, None]
    se = np.sqrt(np.einsum("npp->np", vb))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = beta / se
        bt = beta[:, btt]
        sub = vb[:, btt][:, :, btt]
        qm = np.einsum("np,np->n", bt, np.linalg.solve(sub, bt[:, :, None])[:, :, 0])
    if test == "knha":
        qm = qm / len(btt)
    return z, qm, ok


def permutation_test(fit, exact: bool = False, iter: int = 1000, seed: int | None = None) -> PermutationResult:
    """Permutation test of a fitted model, as metafor's ``permutest(fit, exact=, iter=)``.

    Parameters
    ----------
    fit : MetaResult or MetaRegressionResult
        An inverse-variance fit (``meta_analysis`` with FE/DL/REML/ML/PM/SJ/HE/EB, or ``meta_regression``).
    exact : bool
        Enumerate every permutation (automatic when their number is at most ``iter``).
    iter : int
        Number of random permutations (the first is the observed data) when not exact.
    seed : int, optional
        Seed of NumPy's generator for random permutations.

    Returns
    -------
    PermutationResult

    References
    ----------
    Follmann DA, Proschan MA (1999). Biometrics 55:732-737.
    Higgins JPT, Thompson SG (2004). Stat Med 23:1663-1682.

    Examples
    --------
    >>> import numpy as np
    >>> from lnsynth.pairwise import meta_analysis
    >>> yi = np.array([0.42, 0.18, 0.55, 0.31, -0.05, 0.27, 0.39, 0.12])
    >>> vi = np.array([0.04, 0.06, 0.09, 0.03, 0.05, 0.07, 0.04, 0.08])
    >>> res = permutation_test(meta_analysis(yi=yi, vi=vi))
    >>> res.n_perm, res.exact
    (256, True)
    >>> float(res.pvalue[0])  # 4 of the 256 sign vectors reach |z|
    0.015625
    """
    from .regression import MetaRegressionResult
    from .results import MetaResult

    iter = int(iter)
    if iter < 2:
        raise ValueError(f"iter must be >= 2, got {iter}")
    rng = np.random.default_rng(seed)
    if isinstance(fit, MetaResult):
        return _intercept_only(fit, exact, iter, rng)
    if isinstance(fit, MetaRegressionResult):
        return _regression(fit, exact, iter, rng)
    raise TypeError(f"fit: expected a MetaResult (one analysis) or MetaRegressionResult, got {type(fit).__name__}")
