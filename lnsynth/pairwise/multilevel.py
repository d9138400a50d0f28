"""Three-level meta-analysis (metafor ``rma.mv(yi, vi, random = ~ 1 | cluster/es)``), batched.

Model: ``y_ij = mu + u_i + w_ij + e_ij`` with ``u_i ~ N(0, sigma2_1)`` (between clusters),
``w_ij ~ N(0, sigma2_2)`` (within clusters, between effect sizes) and ``e_ij ~ N(0, v_ij)``
(known sampling variances).  The marginal covariance is block diagonal by cluster; each block is
``diag(v_c + sigma2_2) + sigma2_1 11'``, whose inverse and determinant follow from the
Sherman-Morrison-Woodbury identities, so every quantity of the (restricted) likelihood, its
score and its observed and expected information is a sum of per-cluster sums.  The core works on
(B, k) arrays (B analyses at once) and maximises the exact ML or REML likelihood by Newton's method
on (sigma2_1, sigma2_2) >= 0 (Fisher scoring where the observed information is not positive
definite), each step maximising the quadratic model on the non-negative quadrant
(so a component reaches the boundary 0 exactly) and halved until the likelihood does not fall.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from .api import MetaAnalysisWarning, _idx_list, _level, _validate
from .results import _fmtp

MULTILEVEL_METHODS = ("REML", "ML")
MULTILEVEL_TESTS = ("z", "t")
_DICT_KEYS = ("estimate", "se", "zval", "pval", "ci_low", "ci_high", "sigma2_between", "sigma2_within",
              "qe", "qe_pval", "loglik", "deviance", "aic", "bic", "aicc", "k", "n_clusters", "df")
_LOG2PI = float(np.log(2.0 * np.pi))


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------
def _cluster_codes(cluster, shape: tuple[int, int], batch: bool, present: np.ndarray) -> np.ndarray:
    """Per-row dense cluster codes 0..m_b-1 (B, k) from labels of shape (k,) or (B, k)."""
    C = np.asarray(cluster)
    B, k = shape
    if C.ndim == 1 and batch and C.shape == (k,):
        C = np.broadcast_to(C, (B, k))
    elif not batch and C.shape == (k,):
        C = C[None, :]
    elif not (batch and C.shape == (B, k)):
        want = f"({k},) or ({B}, {k})" if batch else f"({k},)"
        raise ValueError(f"cluster: shape {C.shape} does not match yi (expected {want}; length mismatch)")
    if C.dtype.kind == "f":
        bad = np.isnan(C) & present
        if bad.any():
            b, j = (int(x) for x in np.argwhere(bad)[0])
            pre = f"analysis {b}, " if batch else ""
            raise ValueError(f"cluster is NaN at {pre}study index {j}; every effect size needs a cluster")
        C = np.where(present, C, 0.0)
    elif C.dtype.kind == "O":
        bad = np.array([[x is None for x in row] for row in C]) & present
        if bad.any():
            b, j = (int(x) for x in np.argwhere(bad)[0])
            pre = f"analysis {b}, " if batch else ""
            raise ValueError(f"cluster is missing (None) at {pre}study index {j}; every effect size needs a cluster")
        C = C.astype(str)
    try:
        _, glob = np.unique(C.ravel(), return_inverse=True)
    except TypeError as exc:
        raise ValueError(f"cluster: labels must be numbers or strings of one kind ({exc})") from None
    glob = glob.reshape(B, k)
    order = np.argsort(glob, axis=1, kind="stable")
    srt = np.take_along_axis(glob, order, axis=1)
    new = np.ones((B, k), dtype=np.int64)
    new[:, 1:] = (srt[:, 1:] != srt[:, :-1])
    dense = np.cumsum(new, axis=1) - 1
    codes = np.empty_like(dense)
    np.put_along_axis(codes, order, dense, axis=1)
    return codes


# ---------------------------------------------------------------------------
# the (B, k) core
# ---------------------------------------------------------------------------
class _Data:
    """Rows of the batch: y (0 where absent), v (inf where absent), cluster codes, offsets for bincount."""

    def __init__(self, Y, V, codes, m):
        self.Y, self.V, self.codes, self.m = Y, V, codes, m
        self.B = Y.shape[0]
        self.idx = (codes + (np.arange(self.B) * m)[:, None]).ravel()

    def rows(self, sel):
        return _Data(self.Y[sel], self.V[sel], self.codes[sel], self.m)

    def csum(self, x):
        # bincount: as fast as a one-thread matrix product, and no BLAS threads on a busy machine
        return np.bincount(self.idx, weights=x.ravel(), minlength=self.B * self.m).reshape(self.B, self.m)

    def take(self, xc):
        return np.take_along_axis(xc, self.codes, axis=1)


def _evaluate(d: _Data, s1, s2, reml: bool, derivs: bool = True):
    """Log-likelihood (and score, expected information) at (s1, s2), each (B,)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = 1.0 / (d.V + s2[:, None])  # 0 for an absent study (v = inf)
    S, Sa2, T = d.csum(a), d.csum(a * a), d.csum(a * d.Y)
    h = 1.0 / (1.0 + s1[:, None] * S)  # (B, m)
    g = s1[:, None] * h
    q = S * h  # 1' W_c 1
    sw = q.sum(1)  # 1' W 1
    mu = (T * h).sum(1) / sw
    r = np.where(a > 0.0, d.Y - mu[:, None], 0.0)
    Ar = d.csum(a * r)
    rwr = (d.csum(a * r * r) - g * Ar * Ar).sum(1)
    k = (a > 0.0).sum(1)
    with np.errstate(divide="ignore"):
        logdet = -np.where(a > 0.0, np.log(np.where(a > 0.0, a, 1.0)), 0.0).sum(1) - np.log(h).sum(1)
    if reml:
        ll = -0.5 * ((k - 1) * _LOG2PI - np.log(k) + logdet + np.log(sw) + rwr)
    else:
        ll = -0.5 * (k * _LOG2PI + logdet + rwr)
    out = {"ll": ll, "mu": mu, "sw": sw, "rwr": rwr}
    if not derivs:
        return out
    Sa3 = d.csum(a ** 3)
    u1 = ((h * Ar) ** 2).sum(1)  # r'W G1 W r
    u2 = (a * a * (r - d.take(g * Ar)) ** 2).sum(1)  # r'W W r
    t1 = sw  # tr(W G1)
    t2 = (S - g * Sa2).sum(1)  # tr(W)
    i11 = (q * q).sum(1)
    i12 = (h * h * Sa2).sum(1)
    i22 = (Sa2 - 2.0 * g * Sa3 + g * g * Sa2 * Sa2).sum(1)
    if reml:  # P = W - w w' / sw with w = W 1
        wg1w, wg2w = i11, i12
        t1 = t1 - wg1w / sw
        t2 = t2 - wg2w / sw
        i11 = i11 - 2.0 * (q ** 3).sum(1) / sw + wg1w ** 2 / sw ** 2
        i12 = i12 - 2.0 * (q * h * h * Sa2).sum(1) / sw + wg1w * wg2w / sw ** 2
        i22 = i22 - 2.0 * (h * h * (Sa3 - g * Sa2 * Sa2)).sum(1) / sw + wg2w ** 2 / sw ** 2
    out["score"] = np.stack([0.5 * (u1 - t1), 0.5 * (u2 - t2)], axis=1)
    info = 0.5 * np.stack([np.stack([i11, i12], 1), np.stack([i12, i22], 1)], 1)
    out["info"] = info
    # observed information -d2l/ds_i ds_j = z_i' P z_j - info_ij with z_i = G_i W r (P: REML's, also for
    # the profiled ML likelihood), z_1 = b_c on cluster c, z_2 = W r = e
    b = h * Ar
    e = a * (r - d.take(g * Ar))
    Ae = d.csum(a * e)
    wz1, wz2 = (q * b).sum(1), (h * Ae).sum(1)
    z11 = (b * b * q).sum(1) - wz1 * wz1 / sw
    z12 = (b * h * Ae).sum(1) - wz1 * wz2 / sw
    z22 = (d.csum(a * e * e) - g * Ae * Ae).sum(1) - wz2 * wz2 / sw
    out["obs"] = np.stack([np.stack([z11, z12], 1), np.stack([z12, z22], 1)], 1) - info
    return out


def _qp_step(s, grad, info):
    """Maximiser d of grad'd - d'Id/2 subject to s + d >= 0 (2 variables, rows of a batch)."""
    i11, i12, i22 = info[:, 0, 0], info[:, 0, 1], info[:, 1, 1]
    g1, g2 = grad[:, 0], grad[:, 1]
    det = i11 * i22 - i12 * i12
    sing = ~(det > 1e-13 * np.abs(i11 * i22))
    with np.errstate(divide="ignore", invalid="ignore"):
        d_full = np.stack([(i22 * g1 - i12 * g2) / det, (i11 * g2 - i12 * g1) / det], 1)
        # singular information (components not separately identified): move along the gradient
        nrm = i11 + i22
        d_full = np.where(sing[:, None], grad / np.where(nrm > 0, nrm, 1.0)[:, None], d_full)
        cands = [d_full]
        d1 = -s[:, 0]  # s1 -> 0, best s2
        cands.append(np.stack([d1, np.maximum((g2 - i12 * d1) / i22, -s[:, 1])], 1))
        d2 = -s[:, 1]  # s2 -> 0, best s1
        cands.append(np.stack([np.maximum((g1 - i12 * d2) / i11, -s[:, 0]), d2], 1))
        cands.append(-s)
        best = np.full(s.shape[0], -np.inf)
        step = np.zeros_like(s)
        for c in cands:
            c = np.nan_to_num(c)
            ok = (s + c >= -1e-300).all(1)
            val = (grad * c).sum(1) - 0.5 * np.einsum("bi,bij,bj->b", c, info, c)
            better = ok & (val > best)
            best = np.where(better, val, best)
            step = np.where(better[:, None], c, step)
    return step


def _start(d: _Data) -> np.ndarray:
    """Starting values: half of max(var(y) - mean(v), mean(v) / 10) for each component."""
    ok = np.isfinite(d.V)
    k = ok.sum(1)
    ybar = np.where(ok, d.Y, 0.0).sum(1) / k
    var = np.where(ok, (d.Y - ybar[:, None]) ** 2, 0.0).sum(1) / np.maximum(k - 1, 1)
    vbar = np.where(ok, d.V, 0.0).sum(1) / k
    tot = np.maximum(var - vbar, vbar / 10.0)
    return np.stack([tot / 2.0, tot / 2.0], 1)


def _fit_core(d: _Data, reml: bool, tol: float, max_iter: int, init=None):
    """Newton / Fisher scoring on (sigma2_1, sigma2_2) >= 0 for every row; returns s (B, 2), converged, iterations.

    The full step is evaluated with derivatives, so an accepted step (the usual case) costs one
    evaluation per iteration; rows whose step had to be halved get their derivatives afresh.
    """
    B = d.B
    s = _start(d) if init is None else np.array(init, dtype=np.float64)
    scale = np.maximum(np.nanmax(np.where(np.isfinite(d.V), d.V, np.nan), axis=1), 1e-300)
    conv = np.zeros(B, dtype=bool)
    iters = np.zeros(B, dtype=np.int64)
    keys = ("ll", "score", "info", "obs")
    cache = {key: val for key, val in _evaluate(d, s[:, 0], s[:, 1], reml).items() if key in keys}
    act = np.arange(B)
    for it in range(max_iter):
        if act.size == 0:
            break
        sub = d if act.size == B else d.rows(act)
        sa = s[act]
        obs, info = cache["obs"][act], cache["info"][act]
        # Newton where the observed information is positive definite, else Fisher scoring
        pd = (obs[:, 0, 0] > 0) & (obs[:, 0, 0] * obs[:, 1, 1] - obs[:, 0, 1] ** 2 > 0)
        step = _qp_step(sa, cache["score"][act], np.where(pd[:, None, None], obs, info))
        ll0 = cache["ll"][act]
        new = np.maximum(sa + step, 0.0)
        ev = _evaluate(sub, new[:, 0], new[:, 1], reml)
        good = ev["ll"] >= ll0 - 1e-12 * np.abs(ll0)
        for key in keys:
            cache[key][act[good]] = ev[key][good]
        pending = np.flatnonzero(~good)
        if pending.size:
            lam = np.full(pending.size, 0.5)
            fixed = []
            for _ in range(60):  # step halving until the likelihood does not decrease
                cand = np.maximum(sa[pending] + lam[:, None] * step[pending], 0.0)
                ll1 = _evaluate(sub.rows(pending), cand[:, 0], cand[:, 1], reml, derivs=False)["ll"]
                ok = ll1 >= ll0[pending] - 1e-12 * np.abs(ll0[pending])
                new[pending[ok]] = cand[ok]
                fixed.append(pending[ok])
                pending, lam = pending[~ok], lam[~ok] * 0.5
                if pending.size == 0:
                    break
            new[pending] = sa[pending]  # no ascent possible: at the maximum numerically
            fixed = np.concatenate(fixed)
            if fixed.size:
                ev = _evaluate(sub.rows(fixed), new[fixed, 0], new[fixed, 1], reml)
                for key in keys:
                    cache[key][act[fixed]] = ev[key]
        delta = np.abs(new - sa).max(1)
        s[act] = new
        iters[act] = it + 1
        stuck = np.zeros(act.size, dtype=bool)
        stuck[pending] = True
        done = (delta <= tol * np.maximum(new.max(1), 1e-4 * scale[act])) | stuck
        conv[act[done]] = True
        act = act[~done]
    return s, conv, iters


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------
def _crit(level: float, test: str, df):
    q = 1.0 - (1.0 - level) / 2.0
    if test == "t":
        return special.stdtrit(df, q)
    return special.ndtri(q) + 0.0 * np.asarray(df, dtype=np.float64)


@dataclass(frozen=True)
class MultilevelResult:
    """One three-level meta-analysis (metafor ``rma.mv(yi, vi, random = ~ 1 | cluster/es)``).

    ``sigma2`` is ``[between-cluster, within-cluster]``; ``zval``/``pval`` are z or t(k - 1)
    (``test``); ``qe`` is the test for residual heterogeneity (Cochran's Q with weights 1/vi,
    ``qe_pval`` on k - 1 df); ``loglik`` is metafor's ``logLik`` for ``method`` (REML including
    its 1/2 log|X'X| term) and ``deviance``, ``aic``, ``bic``, ``aicc`` its ``fitstats`` (3 parameters;
    the ML deviance is taken from the saturated model, as metafor's).
    """

    estimate: float
    se: float
    zval: float
    pval: float
    ci_low: float
    ci_high: float
    sigma2: np.ndarray
    qe: float
    qe_pval: float
    loglik: float
    deviance: float
    aic: float
    bic: float
    aicc: float
    k: int
    n_clusters: int
    converged: bool
    iterations: int
    method: str
    test: str
    level: float
    extra: dict = field(default_factory=dict)

    @property
    def df(self) -> int | None:
        """Degrees of freedom of the t test (k - 1), None for z."""
        return self.k - 1 if self.test == "t" else None

    @property
    def QE(self) -> float:  # noqa: N802 - metafor's name
        return self.qe

    def conf_int(self, level: float | None = None) -> tuple[float, float]:
        """Confidence interval of the pooled estimate (the fit's ``level`` by default; z or t(k - 1))."""
        lev = self.level if level is None else _level(level)
        crit = float(_crit(lev, self.test, max(self.k - 1, 1)))
        return float(self.estimate - crit * self.se), float(self.estimate + crit * self.se)

    def to_dict(self) -> dict[str, Any]:
        """Statistics as Python scalars (``sigma2_between``, ``sigma2_within`` for ``sigma2``)."""
        d: dict[str, Any] = {}
        for key in _DICT_KEYS:
            if key == "sigma2_between":
                d[key] = float(self.sigma2[0])
            elif key == "sigma2_within":
                d[key] = float(self.sigma2[1])
            elif key in ("k", "n_clusters"):
                d[key] = int(getattr(self, key))
            elif key == "df":
                d[key] = self.df
            else:
                d[key] = float(getattr(self, key))
        d.update(method=self.method, test=self.test, level=float(self.level), converged=bool(self.converged))
        return d

    def to_frame(self):
        """One-row pandas DataFrame of :meth:`to_dict`."""
        import pandas as pd

        return pd.DataFrame([self.to_dict()])

    def summary(self, digits: int = 4) -> str:
        """Printable summary in the layout of metafor's ``print.rma.mv``."""
        f = f"{{:.{digits}f}}"
        lines = [f"Multivariate Meta-Analysis Model (k = {self.k}; method: {self.method})", "",
                 f"logLik = {f.format(self.loglik)}; deviance = {f.format(self.deviance)}; "
                 f"AIC = {f.format(self.aic)}; BIC = {f.format(self.bic)}; AICc = {f.format(self.aicc)}", "",
                 "Variance Components:", "",
                 "            estim    sqrt  nlvls",
                 f"sigma^2.1  {f.format(self.sigma2[0])}  {f.format(np.sqrt(self.sigma2[0]))}  "
                 f"{self.n_clusters:5d}  cluster",
                 f"sigma^2.2  {f.format(self.sigma2[1])}  {f.format(np.sqrt(self.sigma2[1]))}  "
                 f"{self.k:5d}  cluster/es", "",
                 f"Test for Heterogeneity:\nQ(df = {self.k - 1}) = {f.format(self.qe)}, p-val = {_fmtp(self.qe_pval)}",
                 ""]
        stat = "tval" if self.test == "t" else "zval"
        lines.append("Model Results" + (f" (df = {self.k - 1})" if self.test == "t" else "") + ":")
        lines.append("")
        lines.append(f"estimate      se     {stat}    pval    ci.lb    ci.ub")
        lines.append(f"{f.format(self.estimate)}  {f.format(self.se)}  {self.zval:.4f}  {_fmtp(self.pval)}  "
                     f"{f.format(self.ci_low)}  {f.format(self.ci_high)}")
        if not self.converged:
            lines.append("WARNING: estimation did not converge.")
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()


_SCALARS = ("estimate", "se", "zval", "pval", "ci_low", "ci_high", "qe", "qe_pval", "loglik", "deviance",
            "aic", "bic", "aicc", "k", "n_clusters", "converged", "iterations")


@dataclass(frozen=True)
class MultilevelBatchResult:
    """B three-level meta-analyses: every statistic an array (B,), ``sigma2`` (B, 2).

    ``res[i]`` is the i-th analysis as a :class:`MultilevelResult`; ``to_dict()`` gives arrays.
    """

    estimate: np.ndarray
    se: np.ndarray
    zval: np.ndarray
    pval: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    sigma2: np.ndarray
    qe: np.ndarray
    qe_pval: np.ndarray
    loglik: np.ndarray
    deviance: np.ndarray
    aic: np.ndarray
    bic: np.ndarray
    aicc: np.ndarray
    k: np.ndarray
    n_clusters: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    method: str
    test: str
    level: float
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.estimate.shape[0])

    def __getitem__(self, i) -> MultilevelResult:
        n = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError("index a MultilevelBatchResult with an integer")
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"analysis index {i} out of range for a batch of {n}")
        vals = {key: getattr(self, key)[i].item() for key in _SCALARS}
        vals.update(k=int(vals["k"]), n_clusters=int(vals["n_clusters"]), converged=bool(vals["converged"]),
                    iterations=int(vals["iterations"]))
        return MultilevelResult(**vals, sigma2=self.sigma2[i].copy(), method=self.method, test=self.test,
                                level=self.level, extra=dict(self.extra))

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    @property
    def df(self) -> np.ndarray | None:
        return self.k - 1 if self.test == "t" else None

    @property
    def QE(self) -> np.ndarray:  # noqa: N802 - metafor's name
        return self.qe

    def conf_int(self, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Confidence limits (B,) of the pooled estimates (the fit's ``level`` by default)."""
        lev = self.level if level is None else _level(level)
        crit = _crit(lev, self.test, np.maximum(self.k - 1, 1))
        return self.estimate - crit * self.se, self.estimate + crit * self.se

    def to_dict(self) -> dict[str, np.ndarray]:
        d: dict[str, Any] = {}
        for key in _DICT_KEYS:
            if key == "sigma2_between":
                d[key] = self.sigma2[:, 0].copy()
            elif key == "sigma2_within":
                d[key] = self.sigma2[:, 1].copy()
            elif key == "df":
                d[key] = (self.k - 1).astype(np.float64) if self.test == "t" else np.full(len(self), np.nan)
            else:
                d[key] = np.asarray(getattr(self, key))
        d["converged"] = np.asarray(self.converged, dtype=bool)
        return d

    def to_frame(self):
        import pandas as pd

        df = pd.DataFrame(self.to_dict())
        df["method"] = self.method
        df["test"] = self.test
        return df

    def summary(self, digits: int = 4) -> str:
        n_bad = int((~self.converged.astype(bool)).sum())
        head = (f"Batch of {len(self)} three-level meta-analyses (method: {self.method}; test: {self.test}; "
                f"k from {int(self.k.min())} to {int(self.k.max())}; not converged: {n_bad})")
        with np.printoptions(precision=digits):
            return head + "\n" + self.to_frame().describe().to_string()


# ---------------------------------------------------------------------------
# public entry point
# ---------------------------------------------------------------------------
def multilevel_meta_analysis(yi, vi, cluster, method: str = "REML", test: str = "z", level: float = 0.95,
                             control: dict | None = None):
    """Fit the three-level random-effects model of metafor ``rma.mv(yi, vi, random = ~ 1 | cluster/es)``.

    Parameters
    ----------
    yi, vi : array_like
        Effect sizes and sampling variances, shape (k,) for one analysis or (B, k) for B analyses
        in one call (NaN in both marks an effect size absent from an analysis; batch only).
    cluster : array_like
        Cluster (e.g. study, district) of each effect size: numbers or strings, shape (k,) (shared
        by every analysis of a batch) or (B, k).  Each effect size is its own inner level (``es``).
    method : {"REML", "ML"}
        Restricted or full maximum likelihood.
    test : {"z", "t"}
        Inference for the pooled estimate: normal, or t with k - 1 df (metafor's ``test="t"``).
    level : float
        Confidence level (0.95 or 95).
    control : dict, optional
        ``tol`` (default 1e-10: relative change of the variance components at convergence),
        ``max_iter`` (default 500), ``sigma2_init`` (2 values, or (B, 2)).

    Returns
    -------
    MultilevelResult for 1-D input (``sigma2`` of length 2), MultilevelBatchResult for (B, k)
    input (``estimate``, ``se`` of shape (B,), ``sigma2`` of shape (B, 2)).  ``sigma2`` is
    (between-cluster, within-cluster); a component on the boundary is exactly 0 (metafor, which
    optimises log(sigma2), reports a tiny positive number there).

    References
    ----------
    Konstantopoulos S (2011). Fixed effects and variance components estimation in three-level
    meta-analysis. Research Synthesis Methods 2(1):61-76.
    Viechtbauer W (2010). Conducting meta-analyses in R with the metafor package. Journal of
    Statistical Software 36(3):1-48.

    Examples
    --------
    >>> import numpy as np
    >>> yi = np.array([0.10, 0.30, 0.25, -0.05, 0.60, 0.45, 0.20, 0.05, 0.35])
    >>> vi = np.array([0.02, 0.03, 0.02, 0.04, 0.03, 0.02, 0.05, 0.02, 0.03])
    >>> cluster = ["a", "a", "a", "b", "b", "c", "c", "d", "d"]
    >>> res = multilevel_meta_analysis(yi, vi, cluster)
    >>> res.sigma2.shape, res.k, res.n_clusters
    ((2,), 9, 4)
    >>> bool(res.ci_low < res.estimate < res.ci_high)
    True
    >>> batch = multilevel_meta_analysis(np.stack([yi, yi + 0.1]), np.stack([vi, vi]), cluster)
    >>> batch.sigma2.shape, bool(np.isclose(batch.estimate[1] - batch.estimate[0], 0.1))
    ((2, 2), True)
    """
    if not isinstance(method, str) or method.upper() not in MULTILEVEL_METHODS:
        raise ValueError(f"method: unknown method {method!r}; valid: {', '.join(MULTILEVEL_METHODS)}")
    method = method.upper()
    if not isinstance(test, str) or test.lower() not in MULTILEVEL_TESTS:
        raise ValueError(f"test: unknown test {test!r}; valid: {', '.join(MULTILEVEL_TESTS)}")
    test = test.lower()
    level = _level(level)
    control = dict(control or {})
    unknown = set(control) - {"tol", "max_iter", "sigma2_init"}
    if unknown:
        raise ValueError(f"control: unknown option(s) {sorted(unknown)}; valid: max_iter, sigma2_init, tol")
    tol = float(control.get("tol", 1e-10))
    max_iter = int(control.get("max_iter", 500))
    if not (tol > 0 and max_iter > 0):
        raise ValueError("control: tol and max_iter must be > 0")
    if cluster is None:
        raise ValueError("cluster: required (one cluster label per effect size)")

    Y, V, K, batch, _ = _validate(yi, vi, None)
    B, k = Y.shape
    present = ~np.isnan(Y)
    codes = _cluster_codes(cluster, (B, k), batch, present)
    missing = ~present
    if missing.any():  # absent: y = 0, v = inf (weight 0); own code so it adds nothing anywhere
        Yk = np.where(missing, 0.0, Y)
        Vk = np.where(missing, np.inf, V)
    else:
        Yk, Vk = Y, V
    m = int(codes.max()) + 1
    n_cl = np.array([np.unique(codes[b][present[b]]).size for b in range(B)]) if missing.any() else codes.max(1) + 1
    an = (lambda idx: f"analysis {_idx_list(idx)}") if batch else (lambda idx: "the analysis")
    small = np.flatnonzero(K < 2)
    if small.size:
        raise ValueError(f"yi: {an(small)} has fewer than 2 effect sizes; a three-level model needs k >= 2")
    one = np.flatnonzero(n_cl < 2)
    if one.size:
        warnings.warn(f"cluster: {an(one)} has a single cluster; the between-cluster variance is not identified "
                      "(REML likelihood flat in it).", MetaAnalysisWarning, stacklevel=2)
    flat = np.flatnonzero(n_cl == K)
    if flat.size:
        warnings.warn(f"cluster: every cluster holds one effect size in {an(flat)}; only sigma2_1 + sigma2_2 is "
                      "identified.", MetaAnalysisWarning, stacklevel=2)
    init = control.get("sigma2_init")
    if init is not None:
        init = np.asarray(init, dtype=np.float64)
        init = np.broadcast_to(init, (B, 2)).copy() if init.shape in ((2,), (B, 2)) else None
        if init is None or not (np.isfinite(init).all() and (init >= 0).all()):
            raise ValueError("control['sigma2_init']: expected 2 finite values >= 0 (or (B, 2))")

    d = _Data(Yk, Vk, codes, m)
    reml = method == "REML"
    s, conv, iters = _fit_core(d, reml, tol, max_iter, init)
    ev = _evaluate(d, s[:, 0], s[:, 1], reml, derivs=False)
    est = ev["mu"]
    se = 1.0 / np.sqrt(ev["sw"])
    kf = K.astype(np.float64)
    df = kf - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        zval = est / se
        if test == "t":
            pval = 2.0 * special.stdtr(df, -np.abs(zval))
        else:
            pval = 2.0 * special.ndtr(-np.abs(zval))
        crit = _crit(level, test, df)
        w0 = np.where(present, 1.0 / V, 0.0)
        mu0 = (w0 * Yk).sum(1) / w0.sum(1)
        qe = (w0 * (Yk - mu0[:, None]) ** 2).sum(1)
        qe_p = special.chdtrc(df, qe)
    ll = ev["ll"]
    if reml:
        dev = -2.0 * ll
    else:  # metafor: relative to the saturated model, log-likelihood -1/2 sum log(2 pi vi)
        dev = -2.0 * (ll + 0.5 * np.where(present, np.log(2.0 * np.pi * np.where(present, V, 1.0)), 0.0).sum(1))
    parms = 3.0
    n_eff = kf - 1.0 if reml else kf
    aicc_n = np.maximum(n_eff, parms + 2.0)
    bad = np.flatnonzero(~conv)
    if bad.size:
        warnings.warn(f"{method}: Newton/Fisher scoring did not converge for {an(bad)} within {max_iter} iterations; "
                      "flagged converged=False.", MetaAnalysisWarning, stacklevel=2)
    res = MultilevelBatchResult(
        estimate=est, se=se, zval=zval, pval=pval, ci_low=est - crit * se, ci_high=est + crit * se, sigma2=s,
        qe=qe, qe_pval=qe_p, loglik=ll, deviance=dev, aic=-2.0 * ll + 2.0 * parms,
        bic=-2.0 * ll + parms * np.log(n_eff), aicc=-2.0 * ll + 2.0 * parms * aicc_n / (aicc_n - parms - 1.0),
        k=K.astype(np.int64), n_clusters=np.asarray(n_cl, dtype=np.int64), converged=conv, iterations=iters,
        method=method, test=test, level=level)
    return res if batch else res[0]
