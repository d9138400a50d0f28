"""Mixed-effects meta-regression matching ``metafor::rma.uni(yi, vi, mods=..., method=, test=)``.

Estimators of tau2 follow metafor 3.8 for a general design matrix X (k x p):

* FE: tau2 = 0.
* HE: ``(Y'P0Y - tr(P0 V)) / (k-p)`` with the OLS projector ``P0 = I - X(X'X)^-1X'``.
* DL: ``(Q_FE - (k-p)) / tr(P_FE)``.
* SJ: ``t0 Q(t0)/(k-p)`` with ``t0 = var(y)(k-1)/k``.
* ML / REML: the maximiser of the (restricted) likelihood on [0, inf), i.e. the
  root of the score ``y'PPy - sum(w)`` (ML) or ``y'PPy - tr(P)`` (REML), the
  point Fisher scoring converges to (bracketed root search here, so it cannot
  diverge; the global maximum is returned when there are several).
* PM / EB: root of the generalised ``Q(tau2) = y'P(tau2)y = k-p`` (0 if
  ``Q(0) < k-p``); metafor's EB fixed point ``Q k/(k-p) = k`` is the same equation.

HE and DL are truncated at 0.  Tests: ``"z"`` (normal, QM chi-square(m)) or
``"knha"`` (vb scaled by ``s2w = Q(tau2)/(k-p)``, t(k-p), QM/m ~ F(m, k-p)).
QE and I^2/H^2 use metafor's default definitions (``i2def = "1"``); the
pseudo-R^2 is metafor's default ``(tau2_0 - tau2)/tau2_0`` (the intercept-only
model fitted with the same method), truncated at 0, and for FE the adjusted R^2
of the weighted least-squares fit.

Categorical moderators use treatment coding with the first level (sorted order,
or the category order of a pandas Categorical) as reference, as R's ``factor()``;
dummy columns are named ``<column><level>`` as R does.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, special

from .. import registry
from ..stats import normalize_level

REG_METHODS = registry.iv_methods()
_EPS = np.finfo(float).eps


# ---------------------------------------------------------------------------------------------
# design matrices
# ---------------------------------------------------------------------------------------------
def _is_numeric(s) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def design_matrix(moderators, data=None, intercept: bool = True):
    """Design matrix X (k, p) and column names from a DataFrame/array or a formula.

    DataFrame (or dict / Series / 1-D or 2-D array): numeric columns enter as
    they are; any other column (strings, bool, pandas Categorical) is a factor
    with treatment coding, reference = first level (sorted, or the
    Categorical's category order), dummies named ``<column><level>`` as R.
    Formula string (``"~ ablat + alloc"``; needs ``data``): built with
    formulaic (string columns are factors with sorted levels, as R), names
    converted to R's (``alloc[T.random]`` -> ``allocrandom``).
    """
    import pandas as pd

    if isinstance(moderators, str):
        if data is None:
            raise ValueError("moderators: a formula needs data=<DataFrame>")
        from formulaic import model_matrix

        f = moderators.strip()
        if not f.startswith("~"):
            f = "~ " + f
        df = pd.DataFrame(data)
        mm = model_matrix(f, df, na_action="raise")
        import re

        # R-style names: alloc[T.random] -> allocrandom (as model.matrix with treatment contrasts)
        names = [re.sub(r"([\w.]+)\[T\.([^\]]+)\]", r"\1\2", str(c)) for c in mm.columns]
        X = np.asarray(mm, dtype=np.float64)
        if "Intercept" not in names:
            if intercept:
                X = np.column_stack([np.ones(len(df)), X])
                names = ["intrcpt"] + names
        else:
            j = names.index("Intercept")
            names[j] = "intrcpt"
            if j != 0:
                order = [j] + [i for i in range(len(names)) if i != j]
                X = X[:, order]
                names = [names[i] for i in order]
        return X, names
    if isinstance(moderators, pd.Series):
        df = moderators.to_frame(name=moderators.name if moderators.name is not None else "mods")
    elif isinstance(moderators, pd.DataFrame):
        df = moderators
    elif isinstance(moderators, dict):
        df = pd.DataFrame(moderators)
    else:
        a = np.asarray(moderators)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise ValueError(f"moderators: expected a 1-D or 2-D array, got shape {a.shape}")
        df = pd.DataFrame(a, columns=[f"X{j + 1}" for j in range(a.shape[1])] if a.shape[1] > 1 else ["mods"])
        if a.dtype.kind in "fiu":
            df = df.astype(float)
    cols = []
    names = []
    k = len(df)
    if intercept:
        cols.append(np.ones(k))
        names.append("intrcpt")
    for c in df.columns:
        s = df[c]
        if s.isna().any():
            i = int(np.flatnonzero(s.isna().to_numpy())[0])
            raise ValueError(f"moderators: column {c!r} is missing at study index {i}")
        if _is_numeric(s):
            cols.append(s.to_numpy(dtype=np.float64))
            names.append(str(c))
            continue
        if isinstance(s.dtype, pd.CategoricalDtype):
            levels = [lv for lv in s.cat.categories if (s == lv).any()]
        else:
            vals = s.to_numpy()
            if s.dtype == bool:
                levels = [lv for lv in (False, True) if (vals == lv).any()]
            else:
                levels = sorted(set(vals.tolist()), key=lambda x: (str(type(x)), x))
        if len(levels) < 2:
            raise ValueError(f"moderators: factor {c!r} has fewer than 2 levels ({levels})")
        for lv in levels[1:]:
            cols.append((s.to_numpy() == lv).astype(np.float64))
            names.append(f"{c}{'TRUE' if lv is True else lv}")
    X = np.column_stack(cols) if cols else np.ones((k, 0))
    return X, names


# ---------------------------------------------------------------------------------------------
# core fit (one analysis)
# ---------------------------------------------------------------------------------------------
def _wls(y, v, X, t):
    w = 1.0 / (v + t)
    XtW = X.T * w
    A = XtW @ X
    Ainv = np.linalg.inv(A)
    beta = Ainv @ (XtW @ y)
    r = y - X @ beta
    return w, Ainv, beta, r


def _pmat(w, X, Ainv):
    WX = X * w[:, None]
    return np.diag(w) - WX @ Ainv @ WX.T


def _qgen(y, v, X, t):
    w, Ainv, beta, r = _wls(y, v, X, t)
    return float(np.sum(w * r * r))


def _score(y, v, X, t, reml):
    w, Ainv, beta, r = _wls(y, v, X, t)
    wr = w * r
    s = float(wr @ wr)
    if reml:
        P = _pmat(w, X, Ainv)
        return s - float(np.trace(P))
    return s - float(w.sum())


def _loglik(y, v, X, t, reml):
    w, Ainv, beta, r = _wls(y, v, X, t)
    ll = -0.5 * (np.sum(np.log(v + t)) + np.sum(w * r * r))
    if reml:
        sign, logdet = np.linalg.slogdet(X.T * w @ X)
        ll -= 0.5 * logdet
    return float(ll)


def _upper(y, v, X, f):
    """A tau2 with f(tau2) < 0 (f decreasing to negative for large tau2)."""
    U = max(1.0, float(np.max(v)))
    P0 = np.eye(len(y)) - X @ np.linalg.pinv(X)
    U = max(U, 10.0 * float(y @ P0 @ y))
    for _ in range(200):
        if f(U) < 0.0:
            return U
        U *= 4.0
    raise RuntimeError("could not bracket tau2")


def _root(f, a, b):
    return optimize.brentq(f, a, b, xtol=1e-300, rtol=4.0 * _EPS, maxiter=1000)


def _tau2_ml(y, v, X, reml):
    """Global maximiser of the (RE)ML likelihood on [0, inf); returns tau2, n_maxima."""
    f = lambda t: _score(y, v, X, t, reml)  # noqa: E731
    U = _upper(y, v, X, f)
    cands = []
    if f(0.0) <= 0.0:
        cands.append(0.0)
    grid = np.concatenate([[0.0], U * np.logspace(-12, 0, 40)])
    fg = np.array([f(t) for t in grid])
    for i in range(len(grid) - 1):
        if fg[i] > 0.0 and fg[i + 1] <= 0.0:
            cands.append(_root(f, grid[i], grid[i + 1]) if fg[i + 1] < 0.0 else grid[i + 1])
    if not cands:  # pragma: no cover - f(U) < 0 guarantees a sign change
        return 0.0, 0
    if len(cands) == 1:
        return cands[0], 1
    lls = [_loglik(y, v, X, t, reml) for t in cands]
    return cands[int(np.argmax(lls))], len(cands)


def _tau2_pm(y, v, X, target):
    f = lambda t: _qgen(y, v, X, t) - target  # noqa: E731
    if f(0.0) < 0.0:
        return 0.0
    if f(0.0) == 0.0:
        return 0.0
    U = _upper(y, v, X, f)
    return _root(f, 0.0, U)


def _estimate_tau2(y, v, X, method):
    """tau2 and its standard error as metafor rma.uni."""
    k, p = X.shape
    kp = k - p
    nmax = 1
    if method == "FE":
        return 0.0, math.nan, 1
    if method == "HE":
        P0 = np.eye(k) - X @ np.linalg.inv(X.T @ X) @ X.T
        rss = float(y @ P0 @ y)
        PV = P0 * v[None, :]
        trPV = float(np.trace(PV))
        tau2 = max(0.0, (rss - trPV) / kp)
        se = math.sqrt((2.0 * np.sum(PV * PV.T) + 4.0 * tau2 * trPV + 2.0 * tau2 ** 2 * kp) / kp ** 2)
        return tau2, se, 1
    if method == "DL":
        w, Ainv, beta, r = _wls(y, v, X, 0.0)
        P = _pmat(w, X, Ainv)
        rss = float(np.sum(w * r * r))
        trP = float(np.trace(P))
        tau2 = max(0.0, (rss - kp) / trP)
        se = math.sqrt((2.0 * kp + 4.0 * tau2 * trP + 2.0 * tau2 ** 2 * np.sum(P * P)) / trP ** 2)
        return tau2, se, 1
    if method == "SJ":
        t0 = float(np.var(y))  # var(y) (k-1)/k
        w, Ainv, beta, r = _wls(y, v, X, t0)
        P = _pmat(w, X, Ainv)
        rss = float(np.sum(w * r * r))
        tau2 = max(0.0, t0 * rss / kp)
        PV = P * v[None, :]
        se = math.sqrt(t0 ** 2 / kp ** 2 * (2.0 * np.sum(PV * PV.T) + 4.0 * tau2 * np.sum(PV * P)
                                             + 2.0 * tau2 ** 2 * np.sum(P * P)))
        return tau2, se, 1
    if method in ("ML", "REML"):
        tau2, nmax = _tau2_ml(y, v, X, method == "REML")
        w, Ainv, beta, r = _wls(y, v, X, tau2)
        if method == "ML":
            se = math.sqrt(2.0 / np.sum(w * w))
        else:
            P = _pmat(w, X, Ainv)
            se = math.sqrt(2.0 / np.sum(P * P))
        return tau2, se, nmax
    if method in ("PM", "EB"):
        tau2 = _tau2_pm(y, v, X, float(kp))
        w = 1.0 / (v + tau2)
        se = math.sqrt(2.0 * k * k / kp / w.sum() ** 2)
        return tau2, se, 1
    raise ValueError(f"method: unknown method {method!r}; valid: {', '.join(REG_METHODS)}")


def _level(level) -> float:
    return normalize_level(level)  # 0.95 or 95


def rma_fit(y, v, X, method="REML", test="z", level=0.95, tau2=None, btt=None, r2=True) -> dict:
    """Fit ``rma.uni(y, v, mods=X, intercept=FALSE)``; X must hold the intercept column if wanted.

    ``tau2`` fixes tau2 (as metafor's ``tau2=`` argument).  Returns a dict of arrays/scalars.
    """
    y = np.asarray(y, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    k, p = X.shape
    method = method.upper()
    test = test.lower()
    level = _level(level)
    if method not in REG_METHODS:
        raise ValueError(f"method: unknown method {method!r}; valid: {', '.join(REG_METHODS)}")
    if test not in ("z", "knha"):
        raise ValueError(f"test: unknown test {test!r}; valid: z, knha")
    if len(y) != k or len(v) != k:
        raise ValueError(f"yi/vi: lengths {len(y)}/{len(v)} do not match moderators ({k} rows)")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"yi: non-finite value at study index {int(np.flatnonzero(~np.isfinite(y))[0])}")
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        bad = int(np.flatnonzero(~(np.isfinite(v) & (v > 0)))[0])
        raise ValueError(f"vi must be finite and > 0; got {v[bad]!r} at study index {bad}")
    if np.linalg.matrix_rank(X) < p:
        raise ValueError("moderators: design matrix is not of full rank (redundant predictors)")
    if k < p:
        raise ValueError(f"moderators: {p} coefficients but only {k} studies")
    kp = k - p
    intercept = bool(p > 0 and np.all(X[:, 0] == 1.0))
    if btt is None:
        btt = list(range(1, p)) if (intercept and p > 1) else list(range(p))
    btt = list(btt)
    m = len(btt)
    nmax = 1
    if tau2 is not None:
        tau2 = float(tau2)
        se_tau2 = math.nan
    elif kp == 0:
        tau2, se_tau2 = 0.0, math.nan
    else:
        tau2, se_tau2, nmax = _estimate_tau2(y, v, X, method)
    w, Ainv, beta, r = _wls(y, v, X, tau2)
    vb = Ainv.copy()
    s2w = 1.0
    if test == "knha":
        rss = float(np.sum(w * r * r))
        s2w = 0.0 if rss <= _EPS else (rss / kp if kp > 0 else math.nan)
        vb = vb * s2w
    se = np.sqrt(np.diag(vb))
    with np.errstate(divide="ignore", invalid="ignore"):
        zval = beta / se
    alpha = 1.0 - level
    if m > 0:
        try:
            sub = vb[np.ix_(btt, btt)]
            qm = float(beta[btt] @ np.linalg.solve(sub, beta[btt]))
        except np.linalg.LinAlgError:
            qm = math.nan
    else:
        qm = math.nan
    if test == "knha":
        qm = qm / m if m > 0 else math.nan
        qm_df = (m, kp)
        qm_p = float(special.fdtrc(m, kp, qm)) if kp > 0 and m > 0 else math.nan
        if kp > 0:
            pval = 2.0 * special.stdtr(kp, -np.abs(zval))
            crit = float(special.stdtrit(kp, 1.0 - alpha / 2.0))
        else:
            pval = np.full(p, np.nan)
            crit = math.nan
    else:
        qm_df = (m, None)
        qm_p = float(special.chdtrc(m, qm)) if m > 0 else math.nan
        pval = 2.0 * special.ndtr(-np.abs(zval))
        crit = float(special.ndtri(1.0 - alpha / 2.0))
    ci_low = beta - crit * se
    ci_high = beta + crit * se
    # heterogeneity (FE weights)
    if kp > 0:
        w0, A0, b0, r0 = _wls(y, v, X, 0.0)
        P0 = _pmat(w0, X, A0)
        qe = max(0.0, float(np.sum(w0 * r0 * r0)))
        qe_p = float(special.chdtrc(kp, qe))
        vt = kp / float(np.trace(P0))
        if method == "FE":
            i2 = max(0.0, 100.0 * (qe - kp) / qe) if qe > 0 else 0.0
            h2 = qe / kp
        else:
            i2 = 100.0 * tau2 / (vt + tau2)
            h2 = tau2 / vt + 1.0
    else:
        qe, qe_p, i2, h2 = 0.0, 1.0, 0.0, 1.0
    # pseudo R^2
    r2v = math.nan
    tau2_0 = math.nan
    if r2 and intercept and p > 1:
        if method == "FE":
            if np.var(y) == 0.0:
                r2v = 0.0
            else:
                wf = 1.0 / v
                fitted = X @ beta
                mf = np.sum(wf * fitted) / wf.sum()
                mss = float(np.sum(wf * (fitted - mf) ** 2))
                rss = float(np.sum(wf * (y - fitted) ** 2))
                rsq = mss / (mss + rss)
                adj = 1.0 - (1.0 - rsq) * ((k - 1) / (k - p)) if k > p else math.nan
                r2v = max(0.0, 100.0 * adj)
        else:
            tau2_0 = _estimate_tau2(y, v, np.ones((k, 1)), method)[0] if k > 1 else 0.0
            r2v = 0.0 if tau2_0 == 0.0 else max(0.0, 100.0 * (tau2_0 - tau2) / tau2_0)
    return dict(beta=beta, se=se, zval=zval, pvalue=np.asarray(pval, dtype=float), ci_low=ci_low,
                ci_high=ci_high, vb=vb, tau2=float(tau2), se_tau2=float(se_tau2), k=k, p=p, m=m, qm=qm,
                qm_df=qm_df, qm_pvalue=qm_p, qe=qe, qe_pvalue=qe_p, i2=float(i2), h2=float(h2), r2=r2v,
                tau2_0=tau2_0, s2w=s2w, n_maxima=nmax, fitted=X @ beta, weights_raw=w, btt=btt)


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetaRegressionResult:
    """A fitted mixed-effects meta-regression (metafor ``rma.uni`` with ``mods``).

    Arrays ``coefficients, se, zval, pvalue, ci_low, ci_high`` are in the order of
    ``names`` (intercept first).  ``qm`` is the omnibus test of the moderators
    (all coefficients but the intercept): chi-square(m) for test="z", F(m, k-p)
    (QM/m) for test="knha".  ``r2`` is metafor's pseudo-R^2 in percent (NaN
    for intercept-only models).
    """

    names: tuple
    coefficients: np.ndarray
    se: np.ndarray
    zval: np.ndarray
    pvalue: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    vb: np.ndarray
    tau2: float
    se_tau2: float
    qm: float
    qm_df: tuple
    qm_pvalue: float
    qe: float
    qe_pvalue: float
    i2: float
    h2: float
    r2: float
    k: int
    p: int
    method: str
    test: str
    level: float
    yi: np.ndarray
    vi: np.ndarray
    X: np.ndarray
    n_maxima: int = 1
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        lst = lambda a: [float(x) for x in a]  # noqa: E731
        return {
            "names": list(self.names), "coefficients": lst(self.coefficients), "se": lst(self.se),
            "zval": lst(self.zval), "pvalue": lst(self.pvalue), "ci_low": lst(self.ci_low),
            "ci_high": lst(self.ci_high), "tau2": float(self.tau2), "se_tau2": float(self.se_tau2),
            "qm": float(self.qm), "qm_df": list(self.qm_df), "qm_pvalue": float(self.qm_pvalue),
            "qe": float(self.qe), "qe_pvalue": float(self.qe_pvalue), "i2": float(self.i2),
            "h2": float(self.h2), "r2": float(self.r2), "k": int(self.k), "p": int(self.p),
            "method": self.method, "test": self.test,
        }

    def to_frame(self):
        """Coefficient table (one row per coefficient)."""
        import pandas as pd

        return pd.DataFrame({"term": list(self.names), "estimate": self.coefficients, "se": self.se,
                             "zval": self.zval, "pvalue": self.pvalue, "ci_low": self.ci_low,
                             "ci_high": self.ci_high})

    def conf_int(self, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Confidence limits of the coefficients at ``level`` (z, or t(k-p) for test="knha"; default: the fit's level).

        For tau², I² and H² see :func:`lnsynth.pairwise.tau2_conf_int`.
        """
        lev = _level(self.level if level is None else level)
        q = 1.0 - (1.0 - lev) / 2.0
        kp = self.k - self.p
        crit = float(special.stdtrit(kp, q)) if (self.test == "knha" and kp > 0) else float(special.ndtri(q))
        return self.coefficients - crit * self.se, self.coefficients + crit * self.se

    def predict(self, newX) -> dict[str, np.ndarray]:
        """Linear predictor and its SE/CI for rows of a design matrix (with intercept column)."""
        Xn = np.atleast_2d(np.asarray(newX, dtype=np.float64))
        pred = Xn @ self.coefficients
        se = np.sqrt(np.einsum("ij,jk,ik->i", Xn, self.vb, Xn))
        crit = self.extra.get("crit", float(special.ndtri(1.0 - (1.0 - self.level) / 2.0)))
        return {"pred": pred, "se": se, "ci_low": pred - crit * se, "ci_high": pred + crit * se}

    def summary(self, digits: int = 4) -> str:
        f = f"{{:.{digits}f}}"
        lines = [f"Mixed-Effects Model (k = {self.k}; tau^2 estimator: {self.method}; test: {self.test})", ""]
        if self.method != "FE":
            lines.append(f"tau^2 (estimated amount of residual heterogeneity): {f.format(self.tau2)}")
            lines.append(f"I^2 (residual heterogeneity / unaccounted variability): {self.i2:.2f}%")
            lines.append(f"H^2 (unaccounted variability / sampling variability): {self.h2:.2f}")
            if np.isfinite(self.r2):
                lines.append(f"R^2 (amount of heterogeneity accounted for): {self.r2:.2f}%")
        lines.append("")
        lines.append(f"Test for Residual Heterogeneity: QE(df = {self.k - self.p}) = {f.format(self.qe)}, "
                     f"p-val = {self.qe_pvalue:.4g}")
        if self.test == "knha":
            lines.append(f"Test of Moderators: F(df1 = {self.qm_df[0]}, df2 = {self.qm_df[1]}) = "
                         f"{f.format(self.qm)}, p-val = {self.qm_pvalue:.4g}")
        else:
            lines.append(f"Test of Moderators: QM(df = {self.qm_df[0]}) = {f.format(self.qm)}, "
                         f"p-val = {self.qm_pvalue:.4g}")
        lines.append("")
        lines.append(self.to_frame().to_string(index=False, float_format=lambda x: f.format(x)))
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover
        return self.summary()


def meta_regression(yi=None, vi=None, moderators=None, data=None, method: str = "REML", test: str = "z",
                    level: float = 0.95, *, sei=None, tau2=None, btt=None) -> MetaRegressionResult:
    """Mixed-effects meta-regression as ``metafor::rma(yi, vi, mods=..., method=, test=)``.

    Parameters
    ----------
    yi, vi : array_like (k,)
        Effect sizes and sampling variances (or ``sei``).  ``yi``/``vi`` may also be
        column names in ``data``.
    moderators : DataFrame, dict, array or formula string
        DataFrame-like: numeric columns as is, other columns as factors (treatment
        coding, first sorted level as reference).  A formula (``"~ ablat + alloc"``)
        is evaluated in ``data`` with formulaic.  ``None``: intercept-only model.
    method : FE, DL, HE, SJ, ML, REML, PM, EB
    test : "z" or "knha"
    tau2 : float, optional
        Fix tau2 at this value (metafor's ``tau2=``).
    btt : list of int, optional
        Coefficients for the omnibus test (default: all but the intercept).
    """
    import pandas as pd

    if isinstance(yi, str):
        yi = pd.DataFrame(data)[yi].to_numpy()
    if isinstance(vi, str):
        vi = pd.DataFrame(data)[vi].to_numpy()
    if yi is None:
        raise ValueError("yi: required")
    if vi is None:
        if sei is None:
            raise ValueError("vi: required (or sei)")
        vi = np.asarray(sei, dtype=np.float64) ** 2
    y = np.asarray(yi, dtype=np.float64).ravel()
    v = np.asarray(vi, dtype=np.float64).ravel()
    if moderators is None:
        X, names = np.ones((len(y), 1)), ["intrcpt"]
    else:
        X, names = design_matrix(moderators, data=data)
    if not isinstance(method, str) or method.upper() not in REG_METHODS:
        raise ValueError(f"method: unknown method {method!r}; valid: {', '.join(REG_METHODS)}")
    if method.upper() == "FE" and str(test).lower() == "knha":
        warnings.warn("Knapp & Hartung method is not meant to be used in the context of FE models.",
                      UserWarning, stacklevel=2)
    d = rma_fit(y, v, X, method=method, test=test, level=level, tau2=tau2, btt=btt)
    if d["n_maxima"] > 1:
        warnings.warn(f"{method}: the likelihood has {d['n_maxima']} local maxima; the global maximum is "
                      "returned (metafor's Fisher scoring may stop at another).", UserWarning, stacklevel=2)
    lev = _level(level)
    crit = (float(special.stdtrit(d["k"] - d["p"], 1.0 - (1.0 - lev) / 2.0))
            if str(test).lower() == "knha" and d["k"] > d["p"] else float(special.ndtri(1.0 - (1.0 - lev) / 2.0)))
    return MetaRegressionResult(
        names=tuple(names), coefficients=d["beta"], se=d["se"], zval=d["zval"], pvalue=d["pvalue"],
        ci_low=d["ci_low"], ci_high=d["ci_high"], vb=d["vb"], tau2=d["tau2"], se_tau2=d["se_tau2"],
        qm=d["qm"], qm_df=d["qm_df"], qm_pvalue=d["qm_pvalue"], qe=d["qe"], qe_pvalue=d["qe_pvalue"],
        i2=d["i2"], h2=d["h2"], r2=d["r2"], k=d["k"], p=d["p"], method=method.upper(), test=str(test).lower(),
        level=lev, yi=y, vi=v, X=X, n_maxima=d["n_maxima"], extra={"crit": crit, "s2w": d["s2w"],
                                                                  "tau2_0": d["tau2_0"],
                                                                  "tau2_fixed": tau2 is not None},
    )
