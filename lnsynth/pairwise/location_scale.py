"""Location-scale meta-regression (metafor ``rma(yi, vi, mods = ~ x, scale = ~ z)``, i.e. ``rma.ls``), ML/REML.

Model: ``y_i ~ N(x_i'beta, v_i + tau2_i)`` with ``log(tau2_i) = z_i'alpha``.  For fixed ``alpha`` the location
coefficients are the weighted least-squares estimate with ``w_i = 1/(v_i + tau2_i)``; ``alpha`` maximises the
profiled (ML) or restricted (REML) log-likelihood

    l(alpha) = -1/2 [sum log(v_i + tau2_i) + y'P y]  (- 1/2 log|X'WX| for REML),
    P = W - W X (X'WX)^{-1} X'W,

by Newton's method on the exact gradient and Hessian (step halving; a BFGS start where the Hessian is not
negative definite).  With ``s_i = dl/dtau2_i = -1/2 (P_ii - (Py)_i^2)`` (REML; ML: ``w_i`` for ``P_ii``) and
``d2l/dtau2_i dtau2_j = 1/2 P_ij^2 - (Py)_i P_ij (Py)_j`` (ML: ``1/2 w_i^2`` on the diagonal for the first term),
the chain rule through ``tau2_i = exp(z_i'alpha)`` gives ``grad = Z'(tau2 * s)`` and
``H = Z' diag(tau2) H_tau diag(tau2) Z + Z' diag(tau2 * s) Z``.  The covariance of ``alpha`` is ``(-H)^{-1}``
(metafor takes the same observed Hessian, numerically); that of ``beta`` is ``(X'WX)^{-1}``.  Wald tests: ``QM``
(location coefficients but the intercept) and ``QS`` (scale coefficients but the intercept), chi-square.

References
----------
Viechtbauer W, López-López JA (2022). Location-scale models for meta-analysis. Research Synthesis Methods
13:697-715.
Harvey AC (1976). Estimating regression models with multiplicative heteroscedasticity. Econometrica 44:461-465.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from .api import _level
from .results import _fmtp

__all__ = ["location_scale", "LocationScaleResult"]
_LOG2PI = math.log(2.0 * math.pi)


def _design(m, k: int, what: str):
    from .regression import design_matrix

    if m is None:
        return np.ones((k, 1)), ["intrcpt"]
    X, names = design_matrix(m, data=None) if not isinstance(m, str) else (None, None)
    if X is None:
        raise ValueError(f"{what}: give an array or DataFrame (formulas need data=; use design_matrix)")
    if X.shape[0] != k:
        raise ValueError(f"{what}: {X.shape[0]} rows for {k} studies (length mismatch)")
    return X, names


def _parts(alpha, y, v, X, Z, reml):
    tau2 = np.exp(Z @ alpha)
    m = v + tau2
    w = 1.0 / m
    WX = X * w[:, None]
    A = X.T @ WX
    Ainv = np.linalg.inv(A)
    P = np.diag(w) - WX @ Ainv @ WX.T
    Py = P @ y
    ll = -0.5 * (np.log(m).sum() + y @ Py)
    if reml:
        ll -= 0.5 * np.linalg.slogdet(A)[1]
    d = np.diag(P) if reml else w
    s = -0.5 * (d - Py * Py)
    Ht = -np.outer(Py, Py) * P
    Ht += 0.5 * (P * P) if reml else 0.5 * np.diag(w * w)
    grad = Z.T @ (tau2 * s)
    H = Z.T @ (Ht * np.outer(tau2, tau2)) @ Z + (Z.T * (tau2 * s)) @ Z
    return ll, grad, H, tau2, w, Ainv


def _fit_alpha(y, v, X, Z, reml, tol, max_iter):
    from scipy import optimize  # only for a BFGS step where the Hessian is not negative definite

    k = y.size
    # start: constant tau2 from the moment estimate of the location model, other scale coefficients 0
    w0 = 1.0 / v
    b0 = np.linalg.lstsq(X * np.sqrt(w0)[:, None], y * np.sqrt(w0), rcond=None)[0]
    r = y - X @ b0
    t0 = max(float(np.mean(r * r) - np.mean(v)), 0.01 * float(np.mean(v)))
    alpha = np.linalg.lstsq(Z, np.full(k, math.log(t0)), rcond=None)[0]

    def negll(a):
        return -_parts(a, y, v, X, Z, reml)[0]

    def neggrad(a):
        return -_parts(a, y, v, X, Z, reml)[1]

    ll, g, H, *_ = _parts(alpha, y, v, X, Z, reml)
    conv = False
    for it in range(max_iter):
        try:
            ev = np.linalg.eigvalsh(H)
            newton_ok = bool(ev.max() < 0)
        except np.linalg.LinAlgError:
            newton_ok = False
        if not newton_ok:
            res = optimize.minimize(negll, alpha, jac=neggrad, method="BFGS", options={"gtol": 1e-10, "maxiter": 500})
            step = res.x - alpha
        else:
            step = -np.linalg.solve(H, g)
        lam = 1.0
        for _ in range(60):
            cand = alpha + lam * step
            ll1 = _parts(cand, y, v, X, Z, reml)[0]
            if np.isfinite(ll1) and ll1 >= ll - 1e-12 * abs(ll):
                break
            lam *= 0.5
        else:
            break
        alpha = cand
        ll, g, H, *_ = _parts(alpha, y, v, X, Z, reml)
        if np.max(np.abs(lam * step)) <= tol * max(1.0, np.max(np.abs(alpha))):
            conv = True
            break
    return alpha, conv, it + 1


@dataclass(frozen=True)
class LocationScaleResult:
    """A fitted location-scale model (metafor ``rma.ls``).

    Location part: ``coefficients``, ``se``, ``zval``, ``pvalue``, ``ci_low``, ``ci_high`` (order of ``names``),
    ``qm``/``qm_pvalue``; scale part: ``alpha``, ``se_alpha``, ``zval_alpha``, ``pvalue_alpha``,
    ``ci_low_alpha``, ``ci_high_alpha`` (order of ``scale_names``), ``qs``/``qs_pvalue``; ``tau2`` per study;
    ``loglik`` as metafor's ``logLik``.
    """

    names: tuple
    coefficients: np.ndarray
    se: np.ndarray
    zval: np.ndarray
    pvalue: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    vb: np.ndarray
    scale_names: tuple
    alpha: np.ndarray
    se_alpha: np.ndarray
    zval_alpha: np.ndarray
    pvalue_alpha: np.ndarray
    ci_low_alpha: np.ndarray
    ci_high_alpha: np.ndarray
    va: np.ndarray
    tau2: np.ndarray
    qm: float
    qm_pvalue: float
    qs: float
    qs_pvalue: float
    loglik: float
    k: int
    method: str
    level: float
    converged: bool
    iterations: int
    extra: dict = field(default_factory=dict)

    @property
    def estimate(self) -> float:
        return float(self.coefficients[0])

    def conf_int(self, level: float | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Wald limits of the location (``"beta"``) and scale (``"alpha"``) coefficients (the fit's level by default)."""
        lev = self.level if level is None else _level(level)
        c = float(special.ndtri(1.0 - (1.0 - lev) / 2.0))
        return {"beta": (self.coefficients - c * self.se, self.coefficients + c * self.se),
                "alpha": (self.alpha - c * self.se_alpha, self.alpha + c * self.se_alpha)}

    def to_dict(self) -> dict[str, Any]:
        lst = lambda a: [float(x) for x in a]  # noqa: E731
        return {"names": list(self.names), "coefficients": lst(self.coefficients), "se": lst(self.se),
                "pvalue": lst(self.pvalue), "scale_names": list(self.scale_names), "alpha": lst(self.alpha),
                "se_alpha": lst(self.se_alpha), "pvalue_alpha": lst(self.pvalue_alpha), "qm": float(self.qm),
                "qm_pvalue": float(self.qm_pvalue), "qs": float(self.qs), "qs_pvalue": float(self.qs_pvalue),
                "loglik": float(self.loglik), "k": int(self.k), "method": self.method,
                "converged": bool(self.converged)}

    def to_frame(self):
        """Coefficient table: location rows then scale rows (column ``part``)."""
        import pandas as pd

        loc = pd.DataFrame({"part": "location", "term": list(self.names), "estimate": self.coefficients,
                            "se": self.se, "zval": self.zval, "pvalue": self.pvalue, "ci_low": self.ci_low,
                            "ci_high": self.ci_high})
        sc = pd.DataFrame({"part": "scale", "term": list(self.scale_names), "estimate": self.alpha,
                           "se": self.se_alpha, "zval": self.zval_alpha, "pvalue": self.pvalue_alpha,
                           "ci_low": self.ci_low_alpha, "ci_high": self.ci_high_alpha})
        return pd.concat([loc, sc], ignore_index=True)

    def summary(self, digits: int = 4) -> str:
        f = f"{{:.{digits}f}}"
        lines = [f"Location-Scale Model (k = {self.k}; method: {self.method})", "",
                 f"logLik = {f.format(self.loglik)}", "",
                 f"Test of Location Coefficients: QM = {f.format(self.qm)}, p-val = {_fmtp(self.qm_pvalue)}",
                 f"Test of Scale Coefficients:    QS = {f.format(self.qs)}, p-val = {_fmtp(self.qs_pvalue)}", "",
                 self.to_frame().to_string(index=False, float_format=lambda x: f.format(x))]
        if not self.converged:
            lines.append("WARNING: estimation did not converge.")
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover
        return self.summary()


def _wald(b, V, idx):
    if not idx:
        return math.nan, math.nan
    q = float(b[idx] @ np.linalg.solve(V[np.ix_(idx, idx)], b[idx]))
    return q, float(special.chdtrc(len(idx), q))


def location_scale(yi, vi, mods=None, scale=None, method: str = "REML", level: float = 0.95,
                   control: dict | None = None) -> LocationScaleResult:
    """Fit a location-scale model, as ``rma(yi, vi, mods = ~ x, scale = ~ z, method=)``.

    Parameters
    ----------
    yi, vi : array_like (k,)
        Effect sizes and sampling variances.
    mods : array_like or DataFrame, optional
        Location moderators (intercept added; factors as :func:`~lnsynth.pairwise.meta_regression`).
    scale : array_like or DataFrame, optional
        Scale moderators of ``log(tau2)`` (intercept added); None: constant tau² (the random-effects model).
    method : {"REML", "ML"}
    level : float
        Confidence level.
    control : dict, optional
        ``tol`` (default 1e-12: relative change of alpha), ``max_iter`` (default 200).

    Returns
    -------
    LocationScaleResult

    References
    ----------
    Viechtbauer W, López-López JA (2022). Location-scale models for meta-analysis. Res Synth Methods
    13:697-715.

    Examples
    --------
    >>> import numpy as np
    >>> yi = np.array([-0.89, -1.59, -1.35, -1.44, -0.22, -0.79, -1.62, 0.01, -0.47, -1.37, -0.34, 0.45, -0.02])
    >>> vi = np.array([0.33, 0.19, 0.42, 0.02, 0.05, 0.01, 0.22, 0.004, 0.06, 0.07, 0.01, 0.53, 0.07])
    >>> z = np.array([44, 55, 42, 52, 13, 44, 19, 13, 27, 42, 18, 33, 33])
    >>> res = location_scale(yi, vi, scale=z)
    >>> res.scale_names, res.tau2.shape
    (('intrcpt', 'mods'), (13,))
    >>> bool(res.converged)
    True
    """
    method = str(method).upper()
    if method not in ("REML", "ML"):
        raise ValueError(f"method: location-scale models need 'REML' or 'ML', got {method!r}")
    y = np.asarray(yi, dtype=np.float64).ravel()
    v = np.asarray(vi, dtype=np.float64).ravel()
    k = y.size
    if v.size != k:
        raise ValueError(f"vi: {v.size} values for {k} effect sizes (length mismatch)")
    if not (np.isfinite(y).all() and np.isfinite(v).all() and (v > 0).all()):
        raise ValueError("yi, vi: need finite yi and finite vi > 0 (no missing values)")
    lev = _level(level)
    control = dict(control or {})
    unknown = set(control) - {"tol", "max_iter"}
    if unknown:
        raise ValueError(f"control: unknown option(s) {sorted(unknown)}; valid: max_iter, tol")
    X, names = _design(mods, k, "mods")
    Z, snames = _design(scale, k, "scale")
    p, q = X.shape[1], Z.shape[1]
    if k <= p + q or np.linalg.matrix_rank(X) < p or np.linalg.matrix_rank(Z) < q:
        raise ValueError(f"mods/scale: {p} location and {q} scale coefficients need full-rank designs and k > p + q "
                         f"(k = {k})")
    reml = method == "REML"
    alpha, conv, iters = _fit_alpha(y, v, X, Z, reml, float(control.get("tol", 1e-12)),
                                    int(control.get("max_iter", 200)))
    ll, g, H, tau2, w, Ainv = _parts(alpha, y, v, X, Z, reml)
    beta = Ainv @ ((X * w[:, None]).T @ y)
    se = np.sqrt(np.diag(Ainv))
    va = np.linalg.inv(-H)
    se_a = np.sqrt(np.diag(va))
    c = float(special.ndtri(1.0 - (1.0 - lev) / 2.0))
    zb, za = beta / se, alpha / se_a
    # metafor's logLik: ML -1/2 (k log 2pi + ...); REML -1/2 ((k - p) log 2pi - log|X'X| + ...)
    if reml:
        loglik = ll - 0.5 * (k - p) * _LOG2PI + 0.5 * np.linalg.slogdet(X.T @ X)[1]
    else:
        loglik = ll - 0.5 * k * _LOG2PI
    qm, qm_p = _wald(beta, Ainv, list(range(1, p)))
    qs, qs_p = _wald(alpha, va, list(range(1, q)))
    return LocationScaleResult(
        names=tuple(names), coefficients=beta, se=se, zval=zb, pvalue=2.0 * special.ndtr(-np.abs(zb)),
        ci_low=beta - c * se, ci_high=beta + c * se, vb=Ainv, scale_names=tuple(snames), alpha=alpha, se_alpha=se_a,
        zval_alpha=za, pvalue_alpha=2.0 * special.ndtr(-np.abs(za)), ci_low_alpha=alpha - c * se_a,
        ci_high_alpha=alpha + c * se_a, va=va, tau2=tau2, qm=qm, qm_pvalue=qm_p, qs=qs, qs_pvalue=qs_p,
        loglik=float(loglik), k=k, method=method, level=lev, converged=conv, iterations=iters,
        extra={"gradient": g})
