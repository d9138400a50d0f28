"""Cluster-robust (sandwich) inference for pairwise, meta-regression and three-level fits.

Equivalent of metafor's ``robust()``: with ``clubsandwich=False`` the CR1 estimator of metafor (CR0 with
``adjust=False``), with ``clubsandwich=True`` the bias-reduced linearisation estimator CR2 with
Satterthwaite degrees of freedom and the HTZ Wald test, as ``robust(..., clubSandwich=TRUE)`` (clubSandwich's
``vcovCR``, ``coef_test``, ``conf_int`` and ``Wald_test``).

Notation: ``k`` estimates in ``n`` clusters, design ``X`` (k, p), estimate ``b``, residuals ``e = y - X b``,
working (marginal) covariance ``Phi`` of the fitted model (``diag(v + tau2)`` for ``rma.uni``; for the
three-level model ``diag(v + sigma2_2) + sigma2_1`` within a random-effects cluster), weights
``W = Phi^{-1}`` and ``M = (X'WX)^{-1}``.

* CR1 (metafor): ``bread = vb X'W`` with ``vb`` the fit's covariance of ``b`` (metafor's ``x$vb``, which for
  ``test="knha"`` carries the Knapp-Hartung factor, so CR1 does too, as in metafor),
  ``V^R = n/(n-p) sum_j bread_j e_j e_j' bread_j'``; t tests with ``n - p`` df; the omnibus test
  ``QM = b_T' V^R_T^{-1} b_T / m`` on F(m, n - p).
* CR2 (Pustejovsky & Tipton 2018): ``A_j = D_j' B_j^{-1/2} D_j`` with ``Phi_j = D_j'D_j`` (Cholesky) and
  ``B_j = D_j (I - H)_j Phi (I - H)_j' D_j'``, ``H = X M X'W``; ``V^R = M sum_j X_j'W_j A_j e_j e_j' A_j W_j
  X_j M``.  For a contrast ``c`` let ``g_j = (I - H)_j' A_j W_j X_j M c``; the Satterthwaite df are
  ``(sum_j g_j'Phi g_j)^2 / sum_i sum_j (g_i'Phi g_j)^2``.  The HTZ test of q constraints (Tipton &
  Pustejovsky 2015) standardises by ``Omega = E(C V^R C')`` under the working model, takes
  ``eta = q(q+1) / sum_{s,t} Var(d_st)`` for ``d = Omega^{-1/2} C V^R C' Omega^{-1/2}`` (normal theory) and
  reports ``F = (eta - q + 1) / (eta q) Q`` on (q, eta - q + 1) df; for q = 1 it is the Satterthwaite t test.
  The inverse square root is the symmetric one from an eigen-decomposition (eigenvalues below 1e-12 of the
  largest are dropped, a pseudo-inverse, as clubSandwich does for singular ``B_j``).

The core works on (B, k) arrays with a shared design and clusters; each analysis is a small dense problem.

References
----------
Hedges LV, Tipton E, Johnson MC (2010). Robust variance estimation in meta-regression with dependent effect
size estimates. Research Synthesis Methods 1:39-65.
Pustejovsky JE, Tipton E (2018). Small-sample methods for cluster-robust variance estimation and hypothesis
testing in fixed effects models. Journal of Business & Economic Statistics 36:672-683.
Tipton E, Pustejovsky JE (2015). Small-sample adjustments for tests of moderators and model fit using robust
variance estimation in meta-regression. Journal of Educational and Behavioral Statistics 40:604-634.
Viechtbauer W (2010). Conducting meta-analyses in R with the metafor package. J Stat Softw 36(3):1-48.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from .api import _level
from .results import _fmtp

__all__ = ["robust", "robust_core", "RobustResult", "RobustBatchResult"]
_TYPES = ("CR1", "CR0", "CR2")


def _codes(cluster, k: int, what: str = "cluster") -> np.ndarray:
    c = np.asarray(cluster)
    if c.shape != (k,):
        raise ValueError(f"{what}: {c.size} labels for {k} estimates (length mismatch)")
    if c.dtype.kind == "f" and np.isnan(c).any():
        raise ValueError(f"{what} is NaN at index {int(np.flatnonzero(np.isnan(c))[0])}; every estimate needs one")
    if c.dtype.kind == "O":
        bad = [i for i, x in enumerate(c) if x is None]
        if bad:
            raise ValueError(f"{what} is missing (None) at index {bad[0]}; every estimate needs one")
        c = c.astype(str)
    return np.unique(c, return_inverse=True)[1].reshape(k)


def _msqrt_inv(B: np.ndarray) -> np.ndarray:
    """Symmetric (pseudo-)inverse square root."""
    val, vec = np.linalg.eigh((B + B.T) / 2.0)
    keep = val > 1e-12 * max(val.max(), 0.0)
    inv = np.zeros_like(val)
    inv[keep] = 1.0 / np.sqrt(val[keep])
    return (vec * inv) @ vec.T


def _one(y, X, Phi, codes, vb_fit, kind, adjust, btt):
    """Sandwich estimate and tests for one analysis (dense)."""
    k, p = X.shape
    W = np.linalg.inv(Phi)
    W = (W + W.T) / 2.0
    XtW = X.T @ W
    M = np.linalg.inv(XtW @ X)
    b = M @ (XtW @ y)
    e = y - X @ b
    groups = [np.flatnonzero(codes == g) for g in np.unique(codes)]
    n = len(groups)
    out: dict[str, Any] = {"beta": b, "n": n}
    if kind in ("CR0", "CR1"):
        bread = vb_fit @ XtW
        u = np.stack([bread[:, g] @ e[g] for g in groups])  # (n, p)
        vb = u.T @ u
        if kind == "CR1":
            vb = vb * n / (n - p)
        df = np.full(p, float(n - p))
        out.update(vb=vb, df=df)
        se = np.sqrt(np.diag(vb))
        m = len(btt)
        if m:
            bt = b[btt]
            qm = float(bt @ np.linalg.solve(vb[np.ix_(btt, btt)], bt)) / m
            out.update(qm=qm, qm_df=(float(m), float(n - p)), qm_p=float(special.fdtrc(m, n - p, qm)))
        else:
            out.update(qm=np.nan, qm_df=(0.0, float(n - p)), qm_p=np.nan)
        out["se"] = se
        return out
    # CR2
    H = X @ M @ XtW
    IH = np.eye(k) - H
    maps = []  # per cluster the (p, k) map M X_j'W_j A_j (I - H)_j taking y to the cluster's term
    for g in groups:
        D = np.linalg.cholesky(Phi[np.ix_(g, g)]).T  # upper: D'D = Phi_j
        IHj = IH[g, :]
        Bj = D @ IHj @ Phi @ IHj.T @ D.T
        A = D.T @ _msqrt_inv(Bj) @ D
        Lj = M @ XtW[:, g] @ A  # (p, k_j): contribution M X_j'W_j A_j
        maps.append(Lj @ IHj)
    terms = np.stack([Lm @ y for Lm in maps])  # (n, p); equals M X_j'W_j A_j e_j since (I-H) y = e
    vb = terms.T @ terms
    se = np.sqrt(np.diag(vb))
    # Satterthwaite df per coefficient: g_j = maps[j][c, :]
    Gs = np.stack(maps)  # (n, p, k)
    GP = np.einsum("jpk,kl->jpl", Gs, Phi)
    cross = np.einsum("ipl,jql->pqij", GP, Gs)  # (p, p, n, n): g_{p,i}' Phi g_{q,j}
    diag_pp = np.einsum("ppij->pij", cross)
    num = np.einsum("pjj->p", diag_pp) ** 2
    den = (diag_pp ** 2).sum((1, 2))
    df = num / den
    out.update(vb=vb, se=se, df=df)
    m = len(btt)
    if m == 0:
        out.update(qm=np.nan, qm_df=(0.0, np.nan), qm_p=np.nan)
        return out
    bt = b[btt]
    Q = float(bt @ np.linalg.solve(vb[np.ix_(btt, btt)], bt))
    Om = np.einsum("stjj->st", cross[np.ix_(btt, btt)])  # E(C V^R C') under the working model
    R = _msqrt_inv(Om)
    Cz = np.einsum("rs,stij->rtij", R, cross[np.ix_(btt, btt)])
    Cz = np.einsum("rtij,tu->ruij", Cz, R)  # standardised cross products (m, m, n, n)
    var = (np.einsum("ssij,ttij->st", Cz, Cz) + np.einsum("stij,tsij->st", Cz, Cz)).sum()
    eta = m * (m + 1) / var
    F = (eta - m + 1) / (eta * m) * Q
    df2 = eta - m + 1
    out.update(qm=F, qm_df=(float(m), float(df2)), qm_p=float(special.fdtrc(m, df2, F)))
    return out


def robust_core(Y, X, Phi, cluster, vb_fit=None, type: str = "CR1", btt=None) -> dict[str, np.ndarray]:
    """Cluster-robust covariance and tests for B analyses sharing a design and clusters.

    Parameters
    ----------
    Y : ndarray (B, k)
        Outcomes.
    X : ndarray (k, p)
        Design matrix (with its intercept column).
    Phi : ndarray (B, k, k) or (B, k)
        Working covariance of each analysis (a (B, k) array is the diagonal, e.g. ``v + tau2``).
    cluster : array_like (k,)
        Cluster labels.
    vb_fit : ndarray (B, p, p), optional
        The fit's covariance of the coefficients for CR1's bread (default ``(X'WX)^{-1}``).
    type : {"CR1", "CR0", "CR2"}
    btt : sequence of int, optional
        Coefficients of the omnibus test (default: all but an intercept column of ones).

    Returns
    -------
    dict
        ``beta`` (B, p), ``vb`` (B, p, p), ``se`` (B, p), ``df`` (B, p), ``qm``, ``qm_df1``, ``qm_df2``,
        ``qm_pvalue`` (B,), ``n`` (number of clusters).

    Examples
    --------
    >>> import numpy as np
    >>> Y = np.array([[0.1, 0.3, 0.2, 0.5, 0.4, 0.0]])
    >>> phi = np.full((1, 6), 0.05)
    >>> out = robust_core(Y, np.ones((6, 1)), phi, [1, 1, 2, 2, 3, 3], type="CR2")
    >>> out["beta"].shape, out["df"].shape
    ((1, 1), (1, 1))
    """
    kind = str(type).upper()
    if kind not in _TYPES:
        raise ValueError(f"type: unknown estimator {type!r}; valid: {', '.join(_TYPES)}")
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    X = np.asarray(X, dtype=np.float64)
    B, k = Y.shape
    p = X.shape[1]
    codes = _codes(cluster, k)
    n = int(codes.max()) + 1
    if n - p <= 0:
        raise ValueError(f"cluster: the number of clusters ({n}) must be larger than the number of coefficients ({p})")
    Phi = np.asarray(Phi, dtype=np.float64)
    if Phi.ndim == 2:
        Phi = np.einsum("bk,kl->bkl", Phi, np.eye(k))
    if btt is None:
        intercept = bool(np.all(X[:, 0] == 1.0))
        btt = list(range(1, p)) if (intercept and p > 1) else list(range(p))
    res = []
    for i in range(B):
        vbf = None
        if kind != "CR2":
            if vb_fit is None:
                W = np.linalg.inv(Phi[i])
                vbf = np.linalg.inv(X.T @ W @ X)
            else:
                vbf = np.asarray(vb_fit, dtype=np.float64)[i]
        res.append(_one(Y[i], X, Phi[i], codes, vbf, kind, True, list(btt)))
    out = {key: np.stack([r[key] for r in res]) for key in ("beta", "vb", "se", "df")}
    out["qm"] = np.array([r["qm"] for r in res])
    out["qm_df1"] = np.array([r["qm_df"][0] for r in res])
    out["qm_df2"] = np.array([r["qm_df"][1] for r in res])
    out["qm_pvalue"] = np.array([r["qm_p"] for r in res])
    out["n"] = n
    out["btt"] = list(btt)
    return out


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RobustResult:
    """Cluster-robust inference for one fit (metafor ``robust()``).

    ``tval``/``pvalue``/``ci_low``/``ci_high`` use t distributions with ``df`` (n - p for CR1/CR0, the
    Satterthwaite df per coefficient for CR2); ``qm`` is the omnibus F statistic of the coefficients
    ``btt`` on ``qm_df`` = (df1, df2) (HTZ for CR2); ``vb`` the robust covariance.
    """

    names: tuple
    coefficients: np.ndarray
    se: np.ndarray
    tval: np.ndarray
    df: np.ndarray
    pvalue: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    vb: np.ndarray
    qm: float
    qm_df: tuple
    qm_pvalue: float
    n_clusters: int
    k: int
    type: str
    level: float
    extra: dict = field(default_factory=dict)

    @property
    def estimate(self) -> float:
        """The first coefficient (the pooled estimate of an intercept-only model)."""
        return float(self.coefficients[0])

    def conf_int(self, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Confidence limits of the coefficients (t with ``df``; the fit's ``level`` by default)."""
        lev = self.level if level is None else _level(level)
        crit = special.stdtrit(self.df, 1.0 - (1.0 - lev) / 2.0)
        return self.coefficients - crit * self.se, self.coefficients + crit * self.se

    def to_dict(self) -> dict[str, Any]:
        lst = lambda a: [float(x) for x in np.atleast_1d(a)]  # noqa: E731
        return {"names": list(self.names), "coefficients": lst(self.coefficients), "se": lst(self.se),
                "tval": lst(self.tval), "df": lst(self.df), "pvalue": lst(self.pvalue), "ci_low": lst(self.ci_low),
                "ci_high": lst(self.ci_high), "qm": float(self.qm), "qm_df": [float(x) for x in self.qm_df],
                "qm_pvalue": float(self.qm_pvalue), "n_clusters": int(self.n_clusters), "k": int(self.k),
                "type": self.type, "level": float(self.level)}

    def to_frame(self):
        """Coefficient table (one row per coefficient)."""
        import pandas as pd

        return pd.DataFrame({"term": list(self.names), "estimate": self.coefficients, "se": self.se,
                             "tval": self.tval, "df": self.df, "pvalue": self.pvalue, "ci_low": self.ci_low,
                             "ci_high": self.ci_high})

    def summary(self, digits: int = 4) -> str:
        f = f"{{:.{digits}f}}"
        how = ("CR2, approx t/F-tests and confidence intervals, df: Satterthwaite approx"
               if self.type == "CR2" else f"{self.type}, approx t/F-tests and confidence intervals, df: residual method")
        lines = [f"Cluster-robust inference (k = {self.k}; clusters: {self.n_clusters}; var-cov estimator: {how})", "",
                 f"Test of Moderators: F(df1 = {self.qm_df[0]:g}, df2 = {f.format(self.qm_df[1])}) = "
                 f"{f.format(self.qm)}, p-val = {_fmtp(self.qm_pvalue)}", ""]
        lines.append(self.to_frame().to_string(index=False, float_format=lambda x: f.format(x)))
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover
        return self.summary()


@dataclass(frozen=True)
class RobustBatchResult:
    """B robust analyses: ``coefficients``, ``se``, ``tval``, ``df``, ``pvalue``, ``ci_low``, ``ci_high`` (B, p);
    ``vb`` (B, p, p); ``qm``, ``qm_pvalue`` (B,), ``qm_df`` ((B,), (B,)); ``res[i]`` is a :class:`RobustResult`."""

    names: tuple
    coefficients: np.ndarray
    se: np.ndarray
    tval: np.ndarray
    df: np.ndarray
    pvalue: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    vb: np.ndarray
    qm: np.ndarray
    qm_df: tuple
    qm_pvalue: np.ndarray
    n_clusters: int
    k: np.ndarray
    type: str
    level: float
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.coefficients.shape[0])

    def __getitem__(self, i) -> RobustResult:
        if not isinstance(i, (int, np.integer)):
            raise TypeError("index a RobustBatchResult with an integer")
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"analysis index {i} out of range for a batch of {n}")
        return RobustResult(self.names, self.coefficients[i], self.se[i], self.tval[i], self.df[i], self.pvalue[i],
                            self.ci_low[i], self.ci_high[i], self.vb[i], float(self.qm[i]),
                            (float(self.qm_df[0][i]), float(self.qm_df[1][i])), float(self.qm_pvalue[i]),
                            self.n_clusters, int(self.k[i]), self.type, self.level, dict(self.extra))

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    @property
    def estimate(self) -> np.ndarray:
        return self.coefficients[:, 0]

    def conf_int(self, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        lev = self.level if level is None else _level(level)
        crit = special.stdtrit(self.df, 1.0 - (1.0 - lev) / 2.0)
        return self.coefficients - crit * self.se, self.coefficients + crit * self.se

    def to_dict(self) -> dict[str, np.ndarray]:
        return {"estimate": self.estimate, "se": self.se[:, 0], "tval": self.tval[:, 0], "df": self.df[:, 0],
                "pvalue": self.pvalue[:, 0], "ci_low": self.ci_low[:, 0], "ci_high": self.ci_high[:, 0],
                "qm": self.qm, "qm_pvalue": self.qm_pvalue, "k": self.k}

    def to_frame(self):
        import pandas as pd

        df = pd.DataFrame(self.to_dict())
        df["type"] = self.type
        return df

    def summary(self, digits: int = 4) -> str:
        with np.printoptions(precision=digits):
            return (f"Batch of {len(self)} cluster-robust analyses ({self.type}; clusters: {self.n_clusters})\n"
                    + self.to_frame().describe().to_string())


# ---------------------------------------------------------------------------
# public entry point
# ---------------------------------------------------------------------------
def _model_parts(fit, yi, vi, re_cluster):
    """(Y (B, k), X, Phi (B, k[, k]), vb_fit (B, p, p), names, level, batch) of a fitted model."""
    from .multilevel import MultilevelBatchResult, MultilevelResult
    from .regression import MetaRegressionResult
    from .results import MetaBatchResult, MetaResult

    if isinstance(fit, MetaRegressionResult):
        if "weights" in fit.extra:
            raise ValueError("fit: robust() for a fit with user weights (GENQ) is not supported")
        phi = fit.vi + fit.tau2
        return fit.yi[None], fit.X, phi[None], fit.vb[None], tuple(fit.names), fit.level, False
    if isinstance(fit, (MetaResult, MetaBatchResult)):
        if fit.method in ("MH", "PETO"):
            raise ValueError(f"fit: robust() needs an inverse-variance fit (rma.uni), not method {fit.method}")
        if fit.method == "GENQ":
            raise ValueError("fit: robust() for a fit with user weights (GENQ) is not supported")
        batch = isinstance(fit, MetaBatchResult)
        Y = np.atleast_2d(fit.yi)
        V = np.atleast_2d(fit.vi)
        if np.isnan(Y).any():
            raise ValueError("fit: robust() needs complete data in every analysis of a batch (no NaN)")
        T = np.atleast_1d(fit.tau2)
        se = np.atleast_1d(fit.se)
        return Y, np.ones((Y.shape[1], 1)), V + T[:, None], (se * se)[:, None, None], ("intrcpt",), fit.level, batch
    if isinstance(fit, (MultilevelResult, MultilevelBatchResult)):
        if yi is None or vi is None:
            raise ValueError("yi, vi: a three-level fit stores no data; pass the yi and vi it was fitted to")
        batch = isinstance(fit, MultilevelBatchResult)
        Y = np.atleast_2d(np.asarray(yi, dtype=np.float64))
        V = np.atleast_2d(np.asarray(vi, dtype=np.float64))
        if Y.shape != V.shape or np.isnan(Y).any():
            raise ValueError("yi, vi: expected complete arrays of one shape (the data of the fit)")
        B, k = Y.shape
        same = _codes(re_cluster, k, "re_cluster")
        S = np.atleast_2d(fit.sigma2)
        if S.shape[0] != B:
            raise ValueError(f"yi: {B} analyses for a fit of {S.shape[0]}")
        eq = (same[:, None] == same[None, :]).astype(np.float64)
        Phi = S[:, 0, None, None] * eq[None] + np.einsum("bk,kl->bkl", V + S[:, 1, None], np.eye(k))
        se = np.atleast_1d(fit.se)
        return Y, np.ones((k, 1)), Phi, (se * se)[:, None, None], ("intrcpt",), fit.level, batch
    raise TypeError(f"fit: expected a MetaResult, MetaRegressionResult or MultilevelResult, got {type(fit).__name__}")


def robust(fit, cluster, *, clubsandwich: bool = False, adjust: bool = True, yi=None, vi=None,
           re_cluster=None, level: float | None = None):
    """Cluster-robust tests and confidence intervals for a fitted model (metafor ``robust()``).

    Parameters
    ----------
    fit : MetaResult, MetaBatchResult, MetaRegressionResult, MultilevelResult or MultilevelBatchResult
        An inverse-variance fit (``meta_analysis``, ``meta_regression``, ``multilevel_meta_analysis``).
    cluster : array_like (k,)
        Cluster of each estimate (e.g. study); estimates in different clusters are taken as independent.
    clubsandwich : bool
        False: metafor's CR1 (CR0 with ``adjust=False``), t and F tests on n - p df.  True: CR2 with
        Satterthwaite df and the HTZ Wald test, as ``robust(..., clubSandwich=TRUE)``.
    adjust : bool
        The n/(n - p) small-sample factor of CR1 (ignored for CR2).
    yi, vi : array_like, optional
        The data of a three-level fit (its result stores no data).
    re_cluster : array_like (k,), optional
        The three-level fit's cluster (default ``cluster``).
    level : float, optional
        Confidence level (default: the fit's).

    Returns
    -------
    RobustResult, or RobustBatchResult for a batch fit.

    References
    ----------
    Hedges LV, Tipton E, Johnson MC (2010). Res Synth Methods 1:39-65.
    Pustejovsky JE, Tipton E (2018). J Bus Econ Stat 36:672-683.

    Examples
    --------
    >>> import numpy as np
    >>> from lnsynth.pairwise import meta_analysis
    >>> yi = np.array([-0.89, -1.59, -1.35, -1.44, -0.22, -0.79, -1.62, 0.01, -0.47, -1.37, -0.34, 0.45, -0.02])
    >>> vi = np.array([0.33, 0.19, 0.42, 0.02, 0.05, 0.01, 0.22, 0.004, 0.06, 0.07, 0.01, 0.53, 0.07])
    >>> cl = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 6]
    >>> fit = meta_analysis(yi=yi, vi=vi)
    >>> r1 = robust(fit, cl)
    >>> r1.type, r1.n_clusters, float(r1.df[0])
    ('CR1', 6, 5.0)
    >>> r2 = robust(fit, cl, clubsandwich=True)
    >>> r2.type, bool(0 < r2.df[0] < 5)
    ('CR2', True)
    """
    Y, X, Phi, vb_fit, names, lev0, batch = _model_parts(fit, yi, vi, cluster if re_cluster is None else re_cluster)
    kind = "CR2" if clubsandwich else ("CR1" if adjust else "CR0")
    lev = lev0 if level is None else _level(level)
    out = robust_core(Y, X, Phi, cluster, vb_fit=vb_fit, type=kind)
    b, se, df = out["beta"], out["se"], out["df"]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = b / se
        pval = 2.0 * special.stdtr(df, -np.abs(t))
        crit = special.stdtrit(df, 1.0 - (1.0 - lev) / 2.0)
    B = Y.shape[0]
    res = RobustBatchResult(names, b, se, t, df, pval, b - crit * se, b + crit * se, out["vb"], out["qm"],
                            (out["qm_df1"], out["qm_df2"]), out["qm_pvalue"], out["n"], np.full(B, Y.shape[1]),
                            kind, lev, {"btt": out["btt"]})
    return res if batch else res[0]
