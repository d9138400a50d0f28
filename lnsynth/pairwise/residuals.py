"""Residuals, standardized residuals, BLUPs and random effects (metafor ``residuals()``,
``rstandard()``, ``blup()``, ``ranef()`` for ``rma.uni`` models).

Work for a fitted :class:`~lnsynth.pairwise.results.MetaResult` (intercept-only
model, inverse-variance methods) and a
:class:`~lnsynth.pairwise.regression.MetaRegressionResult`.  With weights
:math:`w_i = 1/(v_i+\\hat\\tau^2)`, :math:`M = \\mathrm{diag}(v_i+\\hat\\tau^2)`, the hat
matrix :math:`H = X(X'WX)^{-1}X'W`, the fitted values :math:`X\\hat\\beta`, their
covariance :math:`X\\,\\mathrm{Var}(\\hat\\beta)X'` (including the Knapp-Hartung factor
for ``test="knha"``) and shrinkage factors :math:`\\lambda_i = \\hat\\tau^2/(\\hat\\tau^2+v_i)`:

* raw residuals :math:`e_i = y_i - x_i'\\hat\\beta`; Pearson :math:`e_i/\\sqrt{v_i+\\hat\\tau^2}`;
* standardized (marginal) residuals :math:`e_i/\\sqrt{[(I-H)M(I-H)']_{ii}}`
  (Viechtbauer & Cheung 2010); conditional: :math:`y_i - \\hat\\theta_i` over
  :math:`\\sqrt{v_i^2/(v_i+\\hat\\tau^2)(1-h_{ii})}`;
* BLUPs of the study effects :math:`\\hat\\theta_i = \\lambda_i y_i + (1-\\lambda_i)x_i'\\hat\\beta`
  with variance :math:`\\lambda_i v_i + (1-\\lambda_i)^2 x_i'\\mathrm{Var}(\\hat\\beta)x_i`
  (Raudenbush & Bryk 1985; Robinson 1991);
* random effects :math:`\\hat u_i = \\lambda_i(y_i - x_i'\\hat\\beta)` with variance
  :math:`\\lambda_i v_i + \\lambda_i^2 x_i'\\mathrm{Var}(\\hat\\beta)x_i`, as metafor's ``ranef()``.

Intervals use z, or t(k-p) for ``test="knha"``.

References
----------
Viechtbauer W, Cheung MW-L (2010). Outlier and influence diagnostics for meta-analysis.
Res Synth Methods 1:112-125.
Raudenbush SW, Bryk AS (1985). Empirical Bayes meta-analysis. J Educ Stat 10:75-98.
Robinson GK (1991). That BLUP is a good thing: the estimation of random effects.
Stat Sci 6:15-32.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from ..stats import normalize_level

__all__ = ["residuals", "rstandard", "blup", "ranef", "StudyValues", "model_view"]

_RESID_TYPES = ("response", "pearson", "rstandard")


@dataclass(frozen=True)
class _View:
    y: np.ndarray
    v: np.ndarray
    X: np.ndarray
    beta: np.ndarray
    vb: np.ndarray
    tau2: float
    method: str
    test: str
    level: float
    labels: tuple | None
    tau2_fixed: bool
    names: tuple

    @property
    def k(self) -> int:
        return int(self.y.shape[0])

    @property
    def p(self) -> int:
        return int(self.X.shape[1])

    def crit(self, level: float | None = None) -> float:
        alpha = 1.0 - normalize_level(level, self.level)
        if self.test == "knha" and self.k > self.p:
            return float(special.stdtrit(self.k - self.p, 1.0 - alpha / 2.0))
        return float(special.ndtri(1.0 - alpha / 2.0))


def model_view(res) -> _View:
    """(y, v, X, beta, Var(beta), tau2, ...) of a fitted MetaResult or MetaRegressionResult."""
    from .regression import MetaRegressionResult
    from .results import MetaBatchResult, MetaResult

    if isinstance(res, MetaBatchResult):
        raise TypeError("res: a batch result; index one analysis first (res[i])")
    if isinstance(res, MetaResult):
        if res.method in ("MH", "PETO"):
            raise ValueError(f"res: method {res.method} pools 2x2 tables; residuals, BLUPs, likelihoods and tau^2 "
                             "CIs need an inverse-variance model (FE or a random-effects method)")
        y = np.asarray(res.yi, dtype=np.float64)
        return _View(y=y, v=np.asarray(res.vi, dtype=np.float64), X=np.ones((y.size, 1)),
                     beta=np.array([float(res.estimate)]), vb=np.array([[float(res.se) ** 2]]),
                     tau2=float(res.tau2), method=res.method, test=res.test, level=float(res.level),
                     labels=res.labels, tau2_fixed=bool(res.extra.get("tau2_fixed", False)), names=("intrcpt",))
    if isinstance(res, MetaRegressionResult):
        return _View(y=np.asarray(res.yi, dtype=np.float64), v=np.asarray(res.vi, dtype=np.float64),
                     X=np.asarray(res.X, dtype=np.float64), beta=np.asarray(res.coefficients, dtype=np.float64),
                     vb=np.asarray(res.vb, dtype=np.float64), tau2=float(res.tau2), method=res.method,
                     test=res.test, level=float(res.level), labels=None,
                     tau2_fixed=bool(res.extra.get("tau2_fixed", False)), names=tuple(res.names))
    raise TypeError(f"res: expected a MetaResult or MetaRegressionResult, got {type(res).__name__}")


def _level(level, default):
    return normalize_level(level, default)


@dataclass(frozen=True)
class StudyValues:
    """Per-study values with standard errors and intervals (``blup``, ``ranef``, ``rstandard``).

    ``value`` is the prediction (BLUP / random effect) or the residual; ``se`` its
    standard error; ``low``/``high`` the interval at ``level`` (NaN for residuals, whose
    ``z`` is ``value / se``).
    """

    kind: str
    value: np.ndarray
    se: np.ndarray
    low: np.ndarray
    high: np.ndarray
    z: np.ndarray
    labels: tuple | None
    level: float
    crit_df: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value.tolist(), "se": self.se.tolist(), "low": self.low.tolist(),
                "high": self.high.tolist(), "z": self.z.tolist(), "level": self.level,
                "labels": list(self.labels) if self.labels is not None else None}

    def to_frame(self):
        import pandas as pd

        labels = self.labels if self.labels is not None else tuple(f"Study {i + 1}" for i in range(len(self.value)))
        return pd.DataFrame({"label": list(labels), "value": self.value, "se": self.se, "low": self.low,
                             "high": self.high, "z": self.z})

    def conf_int(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Intervals ``value -/+ crit * se`` at another level (z, or t(df) for Knapp-Hartung fits)."""
        level = _level(level, self.level)
        alpha = 1.0 - level
        crit = (float(special.stdtrit(self.crit_df, 1.0 - alpha / 2.0)) if self.crit_df
                else float(special.ndtri(1.0 - alpha / 2.0)))
        return self.value - crit * self.se, self.value + crit * self.se

    def summary(self, digits: int = 4) -> str:
        return f"{self.kind} (level {self.level:g})\n" + self.to_frame().to_string(
            index=False, float_format=lambda x: f"{x:.{digits}f}")


def _hat(view: _View):
    w = 1.0 / (view.v + view.tau2)
    A = np.linalg.inv((view.X.T * w) @ view.X)
    H = view.X @ A @ (view.X.T * w)
    return w, H


def residuals(res, type: str = "response") -> np.ndarray:
    """Study residuals of a fitted model (metafor ``residuals(res, type=)``).

    Parameters
    ----------
    res : MetaResult or MetaRegressionResult
    type : {"response", "pearson", "rstandard"}
        Raw :math:`y_i - x_i'\\hat\\beta`, Pearson (divided by
        :math:`\\sqrt{v_i+\\hat\\tau^2}`) or standardized (:func:`rstandard`'s ``z``).

    Returns
    -------
    numpy.ndarray (k,)

    Examples
    --------
    >>> from lnsynth.pairwise import meta_analysis
    >>> res = meta_analysis(yi=[0.1, 0.5, -0.2, 0.3], vi=[0.02, 0.05, 0.04, 0.03])
    >>> r = residuals(res)
    >>> r.shape
    (4,)
    """
    if type not in _RESID_TYPES:
        raise ValueError(f"type: unknown residual type {type!r}; valid: {', '.join(_RESID_TYPES)}")
    view = model_view(res)
    if type == "rstandard":
        return rstandard(res).z
    e = view.y - view.X @ view.beta
    return e if type == "response" else e / np.sqrt(view.v + view.tau2)


def rstandard(res, type: str = "marginal") -> StudyValues:
    """Standardized residuals (metafor ``rstandard()``).

    ``type="marginal"``: :math:`e_i / \\sqrt{[(I-H)M(I-H)']_{ii}}`; ``"conditional"``:
    deviations of :math:`y_i` from the BLUP, over
    :math:`\\sqrt{v_i^2/(v_i+\\hat\\tau^2)(1-h_{ii})}` (Viechtbauer & Cheung 2010).

    Returns
    -------
    StudyValues (``value`` = residual, ``se``, ``z``)

    References
    ----------
    Viechtbauer W, Cheung MW-L (2010). Res Synth Methods 1:112-125.

    Examples
    --------
    >>> from lnsynth.pairwise import meta_analysis
    >>> res = meta_analysis(yi=[0.1, 0.5, -0.2, 0.3], vi=[0.02, 0.05, 0.04, 0.03])
    >>> rs = rstandard(res)
    >>> bool(abs(rs.z[0] - rs.value[0] / rs.se[0]) < 1e-12)
    True
    """
    if type not in ("marginal", "conditional"):
        raise ValueError(f"type: expected 'marginal' or 'conditional', got {type!r}")
    view = model_view(res)
    w, H = _hat(view)
    fitted = view.X @ view.beta
    if type == "marginal":
        e = view.y - fitted
        e = np.where(np.abs(e) < 100 * np.finfo(float).eps, 0.0, e)
        ImH = np.eye(view.k) - H
        ve = ImH @ np.diag(view.v + view.tau2) @ ImH.T
        se = np.sqrt(np.maximum(np.diag(ve), 0.0))
    else:
        li = view.tau2 / (view.tau2 + view.v)
        e = view.y - (li * view.y + (1.0 - li) * fitted)
        se = np.sqrt(view.v ** 2 / (view.v + view.tau2) * (1.0 - np.diag(H)))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = e / se
    nan = np.full(view.k, np.nan)
    return StudyValues(kind=f"rstandard ({type})", value=e, se=se, low=nan, high=nan.copy(), z=z,
                       labels=view.labels, level=view.level)


def _predictions(res, kind: str, level) -> StudyValues:
    view = model_view(res)
    level = _level(level, view.level)
    fitted = view.X @ view.beta
    vfit = np.einsum("ij,jk,ik->i", view.X, view.vb, view.X)
    li = view.tau2 / (view.tau2 + view.v)
    if kind == "blup":
        pred = li * view.y + (1.0 - li) * fitted
        var = li * view.v + (1.0 - li) ** 2 * vfit
    else:
        pred = li * (view.y - fitted)
        var = li * view.v + li ** 2 * vfit
    se = np.sqrt(var)
    crit = view.crit(level)
    df = view.k - view.p if (view.test == "knha" and view.k > view.p) else None
    with np.errstate(divide="ignore", invalid="ignore"):
        z = pred / se
    return StudyValues(kind=kind, value=pred, se=se, low=pred - crit * se, high=pred + crit * se, z=z,
                       labels=view.labels, level=level, crit_df=df)


def blup(res, level: float | None = None) -> StudyValues:
    """Best linear unbiased predictions of the study effects (metafor ``blup()``).

    :math:`\\hat\\theta_i = \\lambda_i y_i + (1-\\lambda_i)x_i'\\hat\\beta`,
    :math:`\\lambda_i = \\hat\\tau^2/(\\hat\\tau^2+v_i)`, with standard error
    :math:`\\sqrt{\\lambda_i v_i + (1-\\lambda_i)^2 x_i'\\mathrm{Var}(\\hat\\beta)x_i}` and a
    prediction interval with z (t(k-p) for Knapp-Hartung).  For a fixed-effect model
    (:math:`\\hat\\tau^2 = 0`) every BLUP is the fitted value.

    References
    ----------
    Raudenbush SW, Bryk AS (1985). Empirical Bayes meta-analysis. J Educ Stat 10:75-98.
    Robinson GK (1991). Stat Sci 6:15-32.

    Examples
    --------
    >>> from lnsynth.pairwise import meta_analysis
    >>> res = meta_analysis(yi=[0.1, 0.5, -0.2, 0.3], vi=[0.02, 0.05, 0.04, 0.03], method="DL")
    >>> b = blup(res)
    >>> bool(((b.value >= -0.2) & (b.value <= 0.5)).all())
    True
    """
    return _predictions(res, "blup", level)


def ranef(res, level: float | None = None) -> StudyValues:
    """Predicted random effects :math:`\\hat u_i = \\lambda_i(y_i - x_i'\\hat\\beta)` (metafor ``ranef()``).

    Standard error :math:`\\sqrt{\\lambda_i v_i + \\lambda_i^2 x_i'\\mathrm{Var}(\\hat\\beta)x_i}`, as
    metafor 3.8 computes it.  Needs a random-effects model.

    References
    ----------
    Raudenbush SW, Bryk AS (1985). J Educ Stat 10:75-98.

    Examples
    --------
    >>> from lnsynth.pairwise import meta_analysis
    >>> res = meta_analysis(yi=[0.1, 0.5, -0.2, 0.3], vi=[0.02, 0.05, 0.04, 0.03], method="DL")
    >>> u = ranef(res)
    >>> u.value.shape
    (4,)
    """
    view = model_view(res)
    if view.method == "FE":
        raise ValueError("res: ranef() needs a random-effects model (method FE has no random effects)")
    return _predictions(res, "ranef", level)
