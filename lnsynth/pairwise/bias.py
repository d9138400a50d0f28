"""Small-study effects: Egger's regression test, rank correlation, trim-and-fill, fail-safe N.

Implemented after metafor 3.8:

* :func:`egger_test` = ``regtest(fit, model="rma", predictor="sei")``: the model
  refitted with ``sqrt(vi)`` as moderator (same method, test, level); the
  statistic is the z (or t, test="knha") of that coefficient; ``est`` is the
  limit estimate (intercept) with its CI.
* :func:`rank_test` = ``ranktest(fit)``: Kendall's tau between the standardised
  deviations ``(y - theta_FE)/sqrt(v - 1/sum(1/v))`` and ``v``; exact p-value
  (R's ``cor.test(..., exact=TRUE)``) when there are no ties, otherwise R's
  normal approximation with tie correction (what ``cor.test`` falls back to).
* :func:`trim_and_fill` = ``trimfill(fit, side, estimator)``: side from the
  sign of the Egger slope (fitted with the model's method), iterative L0/R0
  estimation of k0, refit on the filled data (method of the fit, test "z", as
  metafor).  With k0 = 0 the original fit is returned unchanged (as metafor).
* :func:`fail_safe_n` = ``fsn(yi, vi)`` (Rosenthal / Stouffer by default;
  Orwin and Rosenberg also available).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from .. import registry
from .regression import rma_fit

_IV = registry.iv_methods()


def _yv(fit):
    if getattr(fit, "method", None) not in _IV:
        raise ValueError(f"fit: needs an inverse-variance model (method in {', '.join(_IV)}), "
                         f"got {getattr(fit, 'method', None)!r}")
    if np.ndim(getattr(fit, "tau2", 0.0)) != 0:
        raise ValueError("fit: pass a single fitted model, not a batch")
    return np.asarray(fit.yi, dtype=float), np.asarray(fit.vi, dtype=float)


# ---------------------------------------------------------------------------------------------
# Egger
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EggerTest:
    statistic: float
    pvalue: float
    df: float | None
    slope: float
    slope_se: float
    est: float
    ci_low: float
    ci_high: float
    method: str
    test: str

    def to_dict(self):
        return {"statistic": self.statistic, "pvalue": self.pvalue, "df": self.df, "slope": self.slope,
                "slope_se": self.slope_se, "est": self.est, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "method": self.method, "test": self.test}

    def __getitem__(self, key):
        return self.to_dict()[key]


def egger_test(fit, predictor: str = "sei") -> EggerTest:
    """metafor ``regtest(fit, model="rma", predictor="sei")`` (also "vi")."""
    y, v = _yv(fit)
    X = np.asarray(getattr(fit, "X", np.ones((len(y), 1))), dtype=float)
    if predictor == "sei":
        X2 = np.column_stack([X, np.sqrt(v)])
    elif predictor == "vi":
        X2 = np.column_stack([X, v])
    else:
        raise ValueError(f"predictor: 'sei' or 'vi', got {predictor!r}")
    if np.linalg.matrix_rank(X2) < X2.shape[1]:
        raise ValueError("Model matrix no longer of full rank after addition of predictor (equal vi?)")
    d = rma_fit(y, v, X2, method=fit.method, test=fit.test, level=fit.level, r2=False)
    j = X2.shape[1] - 1
    df = float(d["k"] - d["p"]) if fit.test == "knha" else None
    int_only = X.shape[1] == 1
    return EggerTest(float(d["zval"][j]), float(d["pvalue"][j]), df, float(d["beta"][j]), float(d["se"][j]),
                     float(d["beta"][0]) if int_only else math.nan,
                     float(d["ci_low"][0]) if int_only else math.nan,
                     float(d["ci_high"][0]) if int_only else math.nan, fit.method, fit.test)


# ---------------------------------------------------------------------------------------------
# Kendall rank correlation (R cor.test semantics)
# ---------------------------------------------------------------------------------------------
def _mahonian_cdf(n: int) -> np.ndarray:
    """P(T <= q), q = 0..n(n-1)/2, T = number of inversions of a random permutation of n."""
    dist = np.array([1.0])
    for m in range(2, n + 1):
        # convolve with uniform on 0..m-1
        new = np.convolve(dist, np.ones(m)) / m
        dist = new
    return np.cumsum(dist)


def kendall_test(x, y, exact: bool = True) -> tuple[float, float]:
    """Kendall's tau (tau-b) and two-sided p as R ``cor.test(x, y, method="kendall", exact=exact)``."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(n, 1)
    s = float(np.sum(dx[iu] * dy[iu]))
    n0 = n * (n - 1) / 2.0
    tx = float(np.sum(dx[iu] == 0))
    ty = float(np.sum(dy[iu] == 0))
    r = s / math.sqrt((n0 - tx) * (n0 - ty)) if (n0 - tx) > 0 and (n0 - ty) > 0 else math.nan
    ties = tx > 0 or ty > 0
    if exact and not ties:
        q = int(round((r + 1.0) * n * (n - 1) / 4.0))
        cdf = _mahonian_cdf(n)
        if q > n * (n - 1) / 4.0:
            p = 1.0 - (cdf[q - 1] if q - 1 >= 0 else 0.0)
        else:
            p = cdf[q]
        return r, float(min(2.0 * p, 1.0))
    _, xc = np.unique(x, return_counts=True)
    _, yc = np.unique(y, return_counts=True)
    xt = xc[xc > 1].astype(float)
    yt = yc[yc > 1].astype(float)
    T0 = n0
    T1 = np.sum(xt * (xt - 1)) / 2.0
    T2 = np.sum(yt * (yt - 1)) / 2.0
    S = r * math.sqrt((T0 - T1) * (T0 - T2))
    v0 = n * (n - 1) * (2 * n + 5)
    vt = np.sum(xt * (xt - 1) * (2 * xt + 5))
    vu = np.sum(yt * (yt - 1) * (2 * yt + 5))
    v1 = np.sum(xt * (xt - 1)) * np.sum(yt * (yt - 1))
    v2 = np.sum(xt * (xt - 1) * (xt - 2)) * np.sum(yt * (yt - 1) * (yt - 2))
    var_s = (v0 - vt - vu) / 18.0 + v1 / (2.0 * n * (n - 1)) + v2 / (9.0 * n * (n - 1) * (n - 2))
    z = S / math.sqrt(var_s)
    p = 2.0 * min(special.ndtr(z), special.ndtr(-z))
    return r, float(p)


@dataclass(frozen=True)
class RankTest:
    tau: float
    pvalue: float
    exact: bool

    def to_dict(self):
        return {"tau": self.tau, "pvalue": self.pvalue, "exact": self.exact}

    def __getitem__(self, key):
        return self.to_dict()[key]


def rank_test(fit=None, *, yi=None, vi=None) -> RankTest:
    """Begg & Mazumdar rank correlation test as metafor ``ranktest``."""
    if fit is not None:
        y, v = _yv(fit)
    else:
        y, v = np.asarray(yi, dtype=float), np.asarray(vi, dtype=float)
    w = 1.0 / v
    theta = np.sum(w * y) / w.sum()
    vstar = v - 1.0 / w.sum()
    ystar = (y - theta) / np.sqrt(vstar)
    has_ties = len(np.unique(ystar)) < len(ystar) or len(np.unique(v)) < len(v)
    tau, p = kendall_test(ystar, v, exact=True)
    return RankTest(float(tau), p, not has_ties)


# ---------------------------------------------------------------------------------------------
# trim and fill
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrimFill:
    """Trim-and-fill result; ``fit`` is the model on observed + filled studies (a MetaResult)."""

    k0: int
    se_k0: float
    side: str
    estimator: str
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    pvalue: float
    tau2: float
    q: float
    p_k0: float
    filled_yi: np.ndarray
    filled_vi: np.ndarray
    fit: object = field(repr=False)

    def to_dict(self):
        return {"k0": self.k0, "se_k0": self.se_k0, "side": self.side, "estimator": self.estimator,
                "estimate": self.estimate, "se": self.se, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "pvalue": self.pvalue, "tau2": self.tau2, "q": self.q, "p_k0": self.p_k0,
                "filled_yi": [float(x) for x in self.filled_yi], "filled_vi": [float(x) for x in self.filled_vi]}

    def __getitem__(self, key):
        return self.to_dict()[key]

    def filled_frame(self):
        import pandas as pd

        return pd.DataFrame({"yi": self.filled_yi, "vi": self.filled_vi})


def _mu(y, v, method):
    return float(rma_fit(y, v, np.ones((len(y), 1)), method=method, test="z", r2=False)["beta"][0])


def trim_and_fill(fit, side: str | None = None, estimator: str = "L0", maxiter: int = 100) -> TrimFill:
    """Duval & Tweedie trim-and-fill as metafor ``trimfill`` (estimators L0, R0)."""
    from .api import meta_analysis

    y0, v0 = _yv(fit)
    if getattr(fit, "X", None) is not None and np.asarray(fit.X).shape[1] > 1:
        raise ValueError("fit: trim-and-fill is only applicable to models without moderators")
    estimator = estimator.upper()
    if estimator not in ("L0", "R0"):
        raise ValueError(f"estimator: 'L0' or 'R0', got {estimator!r}")
    k = len(y0)
    if k == 1:
        raise ValueError("fit: stopped because k = 1")
    if side is None:
        if np.ptp(v0) == 0.0:
            raise ValueError("side: cannot be chosen from the Egger slope when all vi are equal "
                             "(metafor fails here too); pass side='left' or side='right'")
        d = rma_fit(y0, v0, np.column_stack([np.ones(k), np.sqrt(v0)]), method=fit.method, test="z", r2=False)
        side = "right" if d["beta"][1] < 0 else "left"
    elif side not in ("left", "right"):
        raise ValueError(f"side: 'left' or 'right', got {side!r}")
    yy = -y0 if side == "right" else y0.copy()
    ix = np.argsort(yy, kind="stable")
    yy, vv = yy[ix], v0[ix]
    k0_sav, k0, it = -1, 0, 0
    beta = math.nan
    se_k0 = math.nan
    while abs(k0 - k0_sav) > 0:
        k0_sav = k0
        it += 1
        if it > maxiter:
            raise RuntimeError("Trim and fill algorithm did not converge.")
        beta = _mu(yy[:k - k0], vv[:k - k0], fit.method)
        yc = yy - beta
        order = np.argsort(np.abs(yc), kind="stable")
        rank = np.empty(k)
        rank[order] = np.arange(1, k + 1)
        rs = np.sign(yc) * rank
        if estimator == "R0":
            neg = rs[rs < 0]
            if neg.size == 0:
                raise ValueError("R0: no study below the centre; k0 cannot be estimated")
            k0f = (k - np.max(-neg)) - 1
            se_k0 = math.sqrt(2.0 * max(0.0, k0f) + 2.0)
        else:
            Sr = float(np.sum(rs[rs > 0]))
            k0f = (4.0 * Sr - k * (k + 1)) / (2.0 * k - 1.0)
            var_sr = (k * (k + 1) * (2 * k + 1) + 10 * k0f ** 3 + 27 * k0f ** 2 + 17 * k0f - 18 * k * k0f ** 2
                      - 18 * k * k0f + 6 * k ** 2 * k0f) / 24.0
            se_k0 = 4.0 * math.sqrt(var_sr) / (2.0 * k - 1.0) if var_sr >= 0 else math.nan
        k0 = int(max(0, _round_half_even(k0f)))
        se_k0 = se_k0 if math.isnan(se_k0) else max(0.0, se_k0)  # R: max(0, NaN) is NaN
    if estimator == "R0":
        mm = np.arange(-1, k0)
        p_k0 = float(1.0 - np.sum(special.comb(mm + 1, mm + 1) * 0.5 ** (mm + 2)))
    else:
        p_k0 = math.nan
    if k0 > 0:
        if side == "right":
            yc = -1.0 * (yc - beta)
        else:
            yc = yc - beta
        fy = -1.0 * yc[k - k0:]
        fv = vv[k - k0:]
        labels = None
        if fit.labels is not None:
            labels = tuple(fit.labels) + tuple(f"Filled {i + 1}" for i in range(k0))
        res = meta_analysis(yi=np.concatenate([y0, fy]), vi=np.concatenate([v0, fv]), method=fit.method,
                            test="z", level=fit.level, labels=labels, measure=fit.measure)
    else:
        fy, fv = np.array([]), np.array([])
        res = fit
    return TrimFill(k0, float(se_k0), side, estimator, float(res.estimate), float(res.se), float(res.ci_low),
                    float(res.ci_high), float(res.pvalue), float(res.tau2), float(res.q), p_k0, fy, fv, res)


def _round_half_even(x: float) -> float:
    return float(np.round(x))


# ---------------------------------------------------------------------------------------------
# fail-safe N
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FailSafeN:
    fsnum: float
    pvalue: float
    type: str
    alpha: float
    meanes: float = math.nan
    target: float = math.nan

    def to_dict(self):
        return {"fsnum": self.fsnum, "pvalue": self.pvalue, "type": self.type, "alpha": self.alpha,
                "meanes": self.meanes, "target": self.target}

    def __getitem__(self, key):
        return self.to_dict()[key]


def fail_safe_n(fit=None, *, yi=None, vi=None, type: str = "Rosenthal", alpha: float = 0.05,
                target: float | None = None, weighted: bool = False) -> FailSafeN:
    """metafor ``fsn(yi, vi, type=)``: Rosenthal (Stouffer), Orwin, Rosenberg."""
    if fit is not None:
        y, v = np.asarray(fit.yi, dtype=float), np.asarray(fit.vi, dtype=float)
    else:
        y, v = np.asarray(yi, dtype=float), np.asarray(vi, dtype=float)
    k = len(y)
    meanes = math.nan
    pval = math.nan
    tgt = math.nan
    if type == "Rosenthal":
        z = np.sum(y / np.sqrt(v)) / math.sqrt(k)
        zavg = abs(z)
        pval = float(special.ndtr(-zavg))
        fsnum = max(0.0, k * (zavg / special.ndtri(1.0 - alpha)) ** 2 - k)
    elif type == "Orwin":
        if weighted:
            w = 1.0 / v
            meanes = float(np.sum(w * y) / w.sum())
        else:
            meanes = float(np.mean(y))
        tgt = meanes / 2.0 if target is None else float(target)
        if tgt == 0:
            fsnum = math.inf
        else:
            if np.sign(tgt) != np.sign(meanes):
                tgt = -tgt
            fsnum = max(0.0, k * (meanes - tgt) / tgt)
    elif type == "Rosenberg":
        w = 1.0 / v
        meanes = float(np.sum(w * y) / w.sum())
        zval = meanes / math.sqrt(1.0 / w.sum())
        wp = (np.sum(w * y) / special.ndtri(1.0 - alpha / 2.0)) ** 2 - w.sum()
        pval = float(2.0 * special.ndtr(-abs(zval)))
        fsnum = max(0.0, k * wp / w.sum())
    else:
        raise ValueError(f"type: 'Rosenthal', 'Orwin' or 'Rosenberg', got {type!r}")
    if not math.isinf(fsnum) and abs(fsnum - round(fsnum)) >= math.sqrt(np.finfo(float).eps):
        fsnum = float(math.ceil(fsnum))
    else:
        fsnum = float(round(fsnum))
    return FailSafeN(fsnum, pval, type, alpha, meanes, tgt)
