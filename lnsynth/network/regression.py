r"""Network meta-regression on one study-level covariate.

Model
-----
With the contrast-based consistency model of :mod:`lnsynth.network.model`
(each study's contrasts against its baseline, within-study covariance
``V_i``, random effects ``tau^2 (I + J)/2``), a study-level covariate
:math:`x_i` modifies the effects of the treatments relative to the reference:

.. math::

    y_i = X_i d + x_i X_i \beta + \delta_i + \varepsilon_i .

* ``assumption="common"``: one interaction coefficient for all treatments
  (``beta`` is a scalar, :math:`X_i\beta = \beta X_i 1`): the effect of each
  non-reference treatment relative to the reference changes by ``beta`` per
  unit of ``x``; contrasts between two non-reference treatments do not depend
  on ``x``.
* ``assumption="independent"``: one coefficient per non-reference treatment.

``x`` is used as given, or centred at its mean over studies with
``center=True`` (then ``d`` are the effects at the mean covariate).  The
estimates are GLS with :math:`W = (V + \tau^2 B)^{-1}`; tau^2 maximises the
restricted (``"REML"``) or full (``"ML"``) likelihood, or is 0 (``"FE"``).
This is the model metafor fits with ``rma.mv(yi, V, mods = cbind(X, x * X %*%
1), intercept = FALSE, random = ~ comp | study, rho = 1/2)`` (or ``x * X`` for
independent coefficients); ``tests/reference/make_network_extra.R`` checks it
to 1e-6.  Standard errors are model-based (normal-theory z tests, as
metafor's ``test = "z"``).

References
----------
Dias S., Sutton A.J., Welton N.J., Ades A.E. (2013). Evidence synthesis for
decision making 3: heterogeneity -- subgroups, meta-regression, bias, and
bias-adjustment. Med Decis Making 33:618-640 (NICE DSU TSD3).
Cooper N.J., Sutton A.J., Morris D., Ades A.E., Welton N.J. (2009).
Addressing between-study heterogeneity and inconsistency in mixed treatment
comparisons. Stat Med 28:1861-1881.
Viechtbauer W. (2010). Conducting meta-analyses in R with the metafor
package. J Stat Softw 36(3).

Examples
--------
>>> fit = network_meta_regression(arms, study="study", treatment="trt", events="x", n="n",
...                               covariate="year", measure="OR", reference="Placebo")  # doctest: +SKIP
>>> fit.to_frame()                                                         # doctest: +SKIP
>>> fit.effects_at(2010.0)                                                 # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg, optimize, stats

from ..stats import normalize_level
from .data import NetworkData, prepare

_LOG2PI = float(np.log(2.0 * np.pi))
REG_METHODS = ("REML", "ML", "FE")


def _dense_design(data: NetworkData, params: tuple[str, ...]):
    col = {t: i for i, t in enumerate(params)}
    m = sum(len(s.y) for s in data.studies)
    y, X = np.empty(m), np.zeros((m, len(params)))
    V, B = np.zeros((m, m)), np.zeros((m, m))
    study_row = np.empty(m, dtype=int)
    r = 0
    for k, s in enumerate(data.studies):
        q = len(s.y)
        idx = np.arange(r, r + q)
        y[idx] = s.y
        V[np.ix_(idx, idx)] = s.V
        B[np.ix_(idx, idx)] = 0.5 * (np.eye(q) + 1.0)
        b = s.baseline
        for i, t in enumerate(s.treatments[1:]):
            if t in col:
                X[r + i, col[t]] += 1.0
            if b in col:
                X[r + i, col[b]] -= 1.0
        study_row[idx] = k
        r += q
    return y, X, V, B, study_row


def _gls(y, X, S):
    c = linalg.cho_factor(S, lower=True)
    WX = linalg.cho_solve(c, X)
    XtWX = X.T @ WX
    cx = linalg.cho_factor(XtWX, lower=True)
    beta = linalg.cho_solve(cx, WX.T @ y)
    r = y - X @ beta
    Q = float(r @ linalg.cho_solve(c, r))
    logdetS = 2.0 * float(np.log(np.diag(c[0])).sum())
    logdetX = 2.0 * float(np.log(np.diag(cx[0])).sum())
    vcov = linalg.cho_solve(cx, np.eye(X.shape[1]))
    return beta, 0.5 * (vcov + vcov.T), Q, logdetS, logdetX


def _loglik(tau2: float, y, X, V, B, method: str) -> float:
    _, _, Q, ldS, ldX = _gls(y, X, V + tau2 * B)
    m, p = X.shape
    if method == "ML":
        return -0.5 * (m * _LOG2PI + ldS + Q)
    _, ldXX = np.linalg.slogdet(X.T @ X)
    return -0.5 * ((m - p) * _LOG2PI + ldS + ldX + Q) + 0.5 * ldXX


def _estimate_tau2(y, X, V, B, method: str) -> tuple[float, bool]:
    m, p = X.shape
    if method == "FE":
        return 0.0, True
    if m <= p:
        return 0.0, True
    f = lambda t: -_loglik(t, y, X, V, B, method)  # noqa: E731
    scale = max(float(np.var(y)), float(np.mean(np.diag(V))), 1e-8)
    grid = np.concatenate([[0.0], np.geomspace(1e-8 * scale, 100.0 * scale + 10.0, 80)])
    vals = np.array([f(t) for t in grid])
    i = int(np.argmin(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    if i == 0:
        # boundary unless the likelihood rises just above 0
        h = grid[1]
        if f(h) >= vals[0]:
            return 0.0, True
    res = optimize.minimize_scalar(f, bounds=(lo, hi), method="bounded",
                                   options={"xatol": 1e-15 * max(hi, 1e-300) + 1e-300, "maxiter": 2000})
    t = float(res.x)
    if f(0.0) <= f(t):
        return 0.0, True
    return t, False


@dataclass(frozen=True, eq=False)
class NMRResult:
    """Result of :func:`network_meta_regression`.

    Attributes
    ----------
    coef_names : tuple of str
        The non-reference treatments (effects relative to the reference at
        covariate value 0, or at the mean when centred), then the interaction
        coefficient(s) ``"beta"`` (common) or ``"beta:<treatment>"``.
    estimate, vcov : ndarray
    tau2 : float
    loglik : float
        ML or REML log-likelihood (metafor's ``logLik``; FE: ML).
    Q, Q_df : float, int
        Residual Q with FE weights (metafor's ``QE``).
    """

    measure: str
    method: str
    assumption: str
    covariate: str
    center: float
    reference: str
    treatments: tuple[str, ...]
    params: tuple[str, ...]
    coef_names: tuple[str, ...]
    estimate: np.ndarray = field(repr=False)
    vcov: np.ndarray = field(repr=False)
    tau2: float
    tau2_at_boundary: bool
    loglik: float
    Q: float
    Q_df: int
    level: float
    data: NetworkData = field(repr=False)

    def conf_int(self, level: float | None = None) -> pd.DataFrame:
        """Normal-theory confidence intervals of all coefficients."""
        level = normalize_level(level, self.level)
        z = float(stats.norm.ppf(0.5 + level / 2.0))
        se = np.sqrt(np.diag(self.vcov))
        return pd.DataFrame({"ci_low": self.estimate - z * se, "ci_high": self.estimate + z * se},
                            index=list(self.coef_names))

    def to_frame(self) -> pd.DataFrame:
        """Coefficients: ``estimate, se, zval, pvalue, ci_low, ci_high``."""
        se = np.sqrt(np.diag(self.vcov))
        zv = self.estimate / se
        out = pd.DataFrame({"estimate": self.estimate, "se": se, "zval": zv,
                            "pvalue": 2.0 * stats.norm.sf(np.abs(zv))}, index=pd.Index(self.coef_names, name="coef"))
        return out.join(self.conf_int())

    def effects_at(self, x: float) -> pd.DataFrame:
        """Effects of each non-reference treatment relative to the reference at covariate value ``x``."""
        p = len(self.params)
        xc = float(x) - self.center
        A = np.zeros((p, len(self.estimate)))
        A[:, :p] = np.eye(p)
        if self.assumption == "common":
            A[:, p] = xc
        else:
            A[:, p:] = xc * np.eye(p)
        est = A @ self.estimate
        se = np.sqrt(np.einsum("ij,jk,ik->i", A, self.vcov, A))
        z = float(stats.norm.ppf(0.5 + self.level / 2.0))
        return pd.DataFrame({"treatment": list(self.params), "estimate": est, "se": se,
                             "ci_low": est - z * se, "ci_high": est + z * se})

    def to_dict(self) -> dict[str, Any]:
        return {"measure": self.measure, "method": self.method, "assumption": self.assumption,
                "covariate": self.covariate, "center": self.center, "reference": self.reference,
                "tau2": self.tau2, "tau2_at_boundary": self.tau2_at_boundary, "loglik": self.loglik,
                "Q": self.Q, "Q_df": self.Q_df, "level": self.level,
                "coefficients": self.to_frame().reset_index().to_dict(orient="records")}

    def summary(self) -> str:
        lines = [f"Network meta-regression on '{self.covariate}' ({self.assumption} coefficient"
                 f"{'' if self.assumption == 'common' else 's'}; {self.method}); measure {self.measure}; "
                 f"reference {self.reference}",
                 f"{len(self.data.studies)} studies; tau^2 = {self.tau2:.6g}; Q = {self.Q:.4f} on {self.Q_df} df"]
        if self.center:
            lines.append(f"covariate centred at {self.center:.6g}")
        for name, r in self.to_frame().iterrows():
            lines.append(f"{name:<28}{r.estimate:>10.4f}{r.se:>9.4f}  [{r.ci_low:.3f}; {r.ci_high:.3f}]"
                         f"{r.pvalue:>9.4f}")
        return "\n".join(lines)


def _covariate_values(df: pd.DataFrame, study: str, covariate: str, data: NetworkData) -> np.ndarray:
    if covariate not in df.columns:
        raise ValueError(f"column '{covariate}' (given as covariate=) not found in data; "
                         f"available: {list(df.columns)}")
    vals = pd.to_numeric(df[covariate], errors="coerce")
    bad = ~np.isfinite(vals.to_numpy(dtype=float))
    if bad.any():
        raise ValueError(f"study '{df.loc[bad, study].iloc[0]}': field '{covariate}' (covariate) is missing "
                         "or not numeric")
    per: dict[str, float] = {}
    for sid, v in zip(df[study], vals):
        key = str(sid)
        if key in per and per[key] != float(v):
            raise ValueError(f"study '{sid}': covariate '{covariate}' differs between its rows "
                             f"({per[key]:g} vs {float(v):g}); a study-level covariate must be constant "
                             "within a study")
        per[key] = float(v)
    return np.array([per[str(s.study)] for s in data.studies])


def network_meta_regression(
    df: pd.DataFrame,
    study: str,
    covariate: str,
    treatment: str | None = None,
    events: str | None = None,
    n: str | None = None,
    measure: str = "OR",
    reference: str | None = None,
    method: str = "REML",
    *,
    assumption: str = "common",
    center: bool = False,
    mean: str | None = None,
    sd: str | None = None,
    yi: str | None = None,
    vi: str | None = None,
    treat1: str | None = None,
    treat2: str | None = None,
    cov: str | None = None,
    level: float = 0.95,
) -> NMRResult:
    """Network meta-regression with one study-level covariate (see the module docstring).

    Parameters
    ----------
    df, study, treatment, events, n, mean, sd, yi, vi, treat1, treat2, cov, measure, reference
        As :func:`lnsynth.network.network_meta_analysis`.
    covariate : str
        Column with the study-level covariate (constant within a study).
    method : {"REML", "ML", "FE"}
    assumption : {"common", "independent"}
        One interaction coefficient for all treatments vs the reference, or one per treatment.
    center : bool
        Centre the covariate at its mean over studies.
    level : float

    Returns
    -------
    NMRResult

    Raises
    ------
    ValueError
        Bad input (naming study and field), a covariate that varies within a
        study, or a covariate without variation (coefficient not estimable).

    Examples
    --------
    >>> fit = network_meta_regression(arms, study="study", treatment="trt", mean="m", sd="s", n="n",
    ...                               covariate="dose", measure="MD", reference="Placebo")  # doctest: +SKIP
    """
    method = str(method).upper()
    if method not in REG_METHODS:
        raise ValueError(f"method must be one of {REG_METHODS}, got {method!r}")
    if assumption not in ("common", "independent"):
        raise ValueError(f"assumption must be 'common' or 'independent', got {assumption!r}")
    level = normalize_level(level)
    data = prepare(df, study=study, treatment=treatment, events=events, n=n, mean=mean, sd=sd, yi=yi, vi=vi,
                   treat1=treat1, treat2=treat2, cov=cov, measure=measure, reference=reference)
    x = _covariate_values(df, study, covariate, data)
    c = float(np.mean(x)) if center else 0.0
    params = tuple(t for t in data.treatments if t != data.reference)
    y, X, V, B, srow = _dense_design(data, params)
    xr = (x - c)[srow]
    if assumption == "common":
        Z = (xr * X.sum(axis=1))[:, None]
        names = params + ("beta",)
    else:
        Z = xr[:, None] * X
        names = params + tuple(f"beta:{t}" for t in params)
    Xf = np.hstack([X, Z])
    if np.linalg.matrix_rank(Xf) < Xf.shape[1]:
        raise ValueError(f"covariate '{covariate}' does not vary enough across the studies to estimate the "
                         f"{'interaction' if assumption == 'common' else 'treatment-specific interactions'}")
    t2, boundary = _estimate_tau2(y, Xf, V, B, method)
    beta, vcov, _, _, _ = _gls(y, Xf, V + t2 * B)
    _, _, Q, _, _ = _gls(y, Xf, V)
    ll = _loglik(t2, y, Xf, V, B, "ML" if method == "FE" else method)
    beta.setflags(write=False)
    vcov.setflags(write=False)
    return NMRResult(measure=data.measure, method=method, assumption=assumption, covariate=covariate, center=c,
                     reference=data.reference, treatments=data.treatments, params=params, coef_names=names,
                     estimate=beta, vcov=vcov, tau2=float(t2), tau2_at_boundary=bool(boundary), loglik=float(ll),
                     Q=float(Q), Q_df=int(len(y) - Xf.shape[1]), level=level, data=data)
