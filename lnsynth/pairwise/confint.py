"""Confidence intervals for tau², tau, I² and H² (metafor ``confint.rma.uni``).

Two types, for a fitted :class:`~lnsynth.pairwise.results.MetaResult` or
:class:`~lnsynth.pairwise.regression.MetaRegressionResult`:

* ``"QP"`` -- Q-profile (Viechtbauer 2007): the set of tau² for which the generalised
  :math:`Q(\\tau^2) = \\sum w_i(\\tau^2)(y_i - x_i'\\hat\\beta(\\tau^2))^2` lies between the
  :math:`\\alpha/2` and :math:`1-\\alpha/2` quantiles of :math:`\\chi^2_{k-p}`; a bound is 0 when
  Q(0) is already below its quantile.  Any tau² estimator (metafor's default type).
* ``"PL"`` -- profile likelihood (Hardy & Thompson 1996): the tau² with
  :math:`2[\\ell(\\hat\\tau^2) - \\ell(\\tau^2)] \\le \\chi^2_{1,1-\\alpha}`, :math:`\\ell` the
  (restricted, for REML) log-likelihood with :math:`\\beta` profiled out; ML and REML only.

Both search ``[0, tau2_max]`` with ``tau2_max = max(100, 10 tau2_hat)`` (metafor's default)
and report ``tau2_max`` when the bound lies beyond it (``flag``).  I² and H² bounds are the
tau² bounds mapped through :math:`I^2 = 100\\tau^2/(\\tilde v+\\tau^2)`,
:math:`H^2 = \\tau^2/\\tilde v + 1` with the typical within-study variance
:math:`\\tilde v = (k-p)/\\mathrm{tr}(P_{FE})` (Higgins & Thompson 2002), tau's the square roots.

References
----------
Viechtbauer W (2007). Confidence intervals for the amount of heterogeneity in meta-analysis.
Stat Med 26:37-52.
Hardy RJ, Thompson SG (1996). A likelihood approach to meta-analysis with random effects.
Stat Med 15:619-629.
Higgins JPT, Thompson SG (2002). Quantifying heterogeneity in a meta-analysis. Stat Med
21:1539-1558.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, special

from .residuals import _level, model_view

__all__ = ["tau2_conf_int", "HeterogeneityCI", "HeterogeneityCIBatch", "CI_TYPES"]

CI_TYPES = ("QP", "PL")


@dataclass(frozen=True)
class HeterogeneityCI:
    """Estimates and confidence limits of tau², tau, I² (%) and H².

    Each of ``tau2``, ``tau``, ``i2``, ``h2`` is a tuple ``(estimate, low, high)``.
    ``flag`` is ``"lower"``/``"upper"``/``"both"`` when a bound was not reached below
    ``tau2_max`` and is reported as ``tau2_max`` (as metafor), else ``""``.
    """

    tau2: tuple
    tau: tuple
    i2: tuple
    h2: tuple
    type: str
    level: float
    method: str
    tau2_max: float
    flag: str
    _res: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = {}
        for name in ("tau2", "tau", "i2", "h2"):
            est, lo, hi = getattr(self, name)
            d[name] = float(est)
            d[f"{name}_low"] = float(lo)
            d[f"{name}_high"] = float(hi)
        d.update(type=self.type, level=self.level, method=self.method, tau2_max=self.tau2_max, flag=self.flag)
        return d

    def to_frame(self):
        import pandas as pd

        rows = [(lab, *map(float, getattr(self, n))) for lab, n in
                (("tau^2", "tau2"), ("tau", "tau"), ("I^2(%)", "i2"), ("H^2", "h2"))]
        return pd.DataFrame(rows, columns=["parameter", "estimate", "ci_low", "ci_high"])

    def conf_int(self, level: float = 0.95) -> "HeterogeneityCI":
        """The same interval type at another confidence level."""
        return tau2_conf_int(self._res, type=self.type, level=level)

    def summary(self, digits: int = 4) -> str:
        name = {"QP": "Q-profile", "PL": "profile likelihood"}[self.type]
        head = f"{name} {100 * self.level:g}% CI for the heterogeneity (method {self.method})"
        body = self.to_frame().to_string(index=False, float_format=lambda x: f"{x:.{digits}f}")
        note = f"\nNOTE: {self.flag} bound(s) not reached below tau2_max = {self.tau2_max:g}." if self.flag else ""
        return head + "\n" + body + note

    def __str__(self) -> str:  # pragma: no cover
        return self.summary()


@dataclass(frozen=True)
class HeterogeneityCIBatch:
    """:class:`HeterogeneityCI` for each analysis of a batch: arrays of shape (B, 3).

    Columns are (estimate, low, high); ``flag`` is a tuple of the per-analysis flags.
    ``res[i]`` is the i-th analysis as a :class:`HeterogeneityCI`.
    """

    tau2: np.ndarray
    tau: np.ndarray
    i2: np.ndarray
    h2: np.ndarray
    type: str
    level: float
    method: str
    flag: tuple
    _res: Any = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.tau2.shape[0])

    def __getitem__(self, i: int) -> HeterogeneityCI:
        return tau2_conf_int(self._res[i], type=self.type, level=self.level)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for name in ("tau2", "tau", "i2", "h2"):
            a = getattr(self, name)
            d[name], d[f"{name}_low"], d[f"{name}_high"] = a[:, 0].copy(), a[:, 1].copy(), a[:, 2].copy()
        d.update(type=self.type, level=self.level, method=self.method, flag=list(self.flag))
        return d

    def to_frame(self):
        import pandas as pd

        d = self.to_dict()
        return pd.DataFrame({k: d[k] for k in d if k not in ("type", "level", "method")})

    def conf_int(self, level: float = 0.95) -> "HeterogeneityCIBatch":
        return tau2_conf_int(self._res, type=self.type, level=level)

    def summary(self, digits: int = 4) -> str:
        name = {"QP": "Q-profile", "PL": "profile likelihood"}[self.type]
        return (f"{name} {100 * self.level:g}% CIs for the heterogeneity of {len(self)} analyses (method "
                f"{self.method})\n" + self.to_frame().describe().to_string(float_format=lambda x: f"{x:.{digits}f}"))


def _batch_ci(res, type, level):
    rows = [tau2_conf_int(res[i], type=type, level=level) for i in range(len(res))]
    stack = (lambda name: np.array([getattr(r, name) for r in rows], dtype=np.float64))  # noqa: E731
    return HeterogeneityCIBatch(tau2=stack("tau2"), tau=stack("tau"), i2=stack("i2"), h2=stack("h2"), type=type,
                                level=rows[0].level, method=res.method, flag=tuple(r.flag for r in rows), _res=res)


def _wls_q(y, v, X, t):
    w = 1.0 / (v + t)
    A = (X.T * w) @ X
    beta = np.linalg.solve(A, (X.T * w) @ y)
    r = y - X @ beta
    return float(np.sum(w * r * r)), w, A, r


def _loglik(y, v, X, t, reml):
    q, w, A, _ = _wls_q(y, v, X, t)
    ll = -0.5 * (np.sum(np.log(v + t)) + q)
    if reml:
        ll -= 0.5 * np.linalg.slogdet(A)[1]
    return float(ll)


def _root(f, a, b):
    return optimize.brentq(f, a, b, xtol=1e-300, rtol=4.0 * np.finfo(float).eps, maxiter=1000)


def tau2_conf_int(res, type: str = "QP", level: float | None = None) -> HeterogeneityCI:
    """Confidence interval for tau², tau, I² and H² (metafor ``confint(res, type=)``).

    Parameters
    ----------
    res : MetaResult, MetaBatchResult or MetaRegressionResult
        A random-effects fit (not FE/MH/PETO and not with a fixed tau²).  For a batch the
        result is a :class:`HeterogeneityCIBatch` (one row per analysis; the Q-profile at
        the fit's level reuses the bounds the batched kernel computed).
    type : {"QP", "PL"}
        Q-profile (any estimator; metafor's default) or profile likelihood (ML/REML).
    level : float, optional
        Confidence level (default the model's).

    Returns
    -------
    HeterogeneityCI

    References
    ----------
    Viechtbauer W (2007). Stat Med 26:37-52 (Q-profile).
    Hardy RJ, Thompson SG (1996). Stat Med 15:619-629 (profile likelihood).

    Examples
    --------
    >>> from lnsynth.pairwise import meta_analysis
    >>> res = meta_analysis(yi=[0.1, 0.9, -0.4, 0.5, 1.3], vi=[0.02, 0.05, 0.04, 0.03, 0.06])
    >>> ci = tau2_conf_int(res, type="PL")
    >>> lo, hi = ci.tau2[1], ci.tau2[2]
    >>> bool(lo < res.tau2 < hi)
    True
    """
    if not isinstance(type, str) or type.upper() not in CI_TYPES:
        raise ValueError(f"type: unknown CI type {type!r}; valid: {', '.join(CI_TYPES)}")
    type = type.upper()
    from .results import MetaBatchResult

    if isinstance(res, MetaBatchResult):
        return _batch_ci(res, type, level)
    view = model_view(res)
    if view.method == "FE":
        raise ValueError("res: a fixed-effect model has no tau^2 to give a CI for; fit a random-effects method")
    if view.tau2_fixed:
        raise ValueError("res: tau^2 was fixed (tau2=...), not estimated; there is no CI for it")
    if type == "PL" and view.method not in ("ML", "REML"):
        raise ValueError(f"type: the profile-likelihood CI needs method ML or REML, not {view.method}; "
                         "use type='QP'")
    level = _level(level, view.level)
    y, v, X = view.y, view.v, view.X
    k, p = view.k, view.p
    if k - p < 1:
        raise ValueError(f"res: k - p = {k - p}; a CI for tau^2 needs at least one residual degree of freedom")
    alpha = 1.0 - level
    t_hat = view.tau2
    tmax = max(100.0, 10.0 * t_hat)
    flags = []
    kernel_ci = None
    if type == "QP" and p == 1 and abs(level - view.level) < 1e-15:
        lo_k, hi_k = float(getattr(res, "tau2_ci_low", np.nan)), float(getattr(res, "tau2_ci_high", np.nan))
        if np.isfinite(lo_k) and np.isfinite(hi_k):  # computed by the fit's kernel (same definition)
            kernel_ci = (lo_k, hi_k)
            fl = int(res.extra.get("tau2_ci_flag", 0))
            flags = (["upper"] if fl & 2 else []) + (["lower"] if fl & 1 else [])
    if kernel_ci is not None:
        lo, hi = kernel_ci
    elif type == "QP":
        df = k - p
        crit_u = float(special.chdtri(df, alpha / 2.0))
        crit_l = float(special.chdtri(df, 1.0 - alpha / 2.0))
        q0 = _wls_q(y, v, X, 0.0)[0]
        qmax = _wls_q(y, v, X, tmax)[0]
        if q0 < crit_l:
            hi = 0.0
        elif qmax > crit_l:
            hi = tmax
            flags.append("upper")
        else:
            hi = _root(lambda t: _wls_q(y, v, X, t)[0] - crit_l, 0.0, tmax)
        if qmax > crit_u:
            lo = hi = tmax
            flags.append("lower")
        elif q0 < crit_u:
            lo = 0.0
        else:
            lo = _root(lambda t: _wls_q(y, v, X, t)[0] - crit_u, 0.0, tmax)
    else:
        reml = view.method == "REML"
        ll_hat = _loglik(y, v, X, t_hat, reml)
        crit = float(special.chdtri(1, alpha))

        def g(t):
            return -2.0 * (_loglik(y, v, X, t, reml) - ll_hat) - crit

        lo = 0.0 if g(0.0) < 0.0 else _root(g, 0.0, t_hat)
        if g(tmax) < 0.0:
            hi = tmax
            flags.append("upper")
        else:
            hi = _root(g, t_hat, tmax)
    w0 = 1.0 / v
    A0inv = np.linalg.inv((X.T * w0) @ X)
    trP = float(w0.sum() - np.trace(A0inv @ ((X.T * w0 * w0) @ X)))
    vt = (k - p) / trP

    def i2(t):
        return 100.0 * t / (vt + t)

    def h2(t):
        return t / vt + 1.0

    flag = "both" if len(flags) == 2 else (flags[0] if flags else "")
    return HeterogeneityCI(tau2=(t_hat, lo, hi), tau=(math.sqrt(t_hat), math.sqrt(lo), math.sqrt(hi)),
                           i2=(i2(t_hat), i2(lo), i2(hi)), h2=(h2(t_hat), h2(lo), h2(hi)), type=type, level=level,
                           method=view.method, tau2_max=tmax, flag=flag, _res=res)
