"""Likelihood-ratio and Wald-type tests for fitted models (metafor ``anova.rma``, ``fitstats``).

* :func:`fit_stats` -- log-likelihood, deviance, AIC, BIC and AICc of a fit, as metafor's
  ``fit.stats`` (ML column, or REML for a REML fit).
* :func:`anova` with two nested models -- likelihood-ratio test
  :math:`LRT = D_{reduced} - D_{full}` on :math:`\\Delta` parameters (coefficients plus tau²
  when estimated), chi-square; the models must share yi/vi, both use FE/ML/REML, and REML
  fits must have the same fixed effects (the restricted likelihood depends on X).  Also the
  pseudo-R² of the full against the reduced model.
* :func:`anova` with one model -- Wald-type test of coefficients ``btt``
  (:math:`Q_M = \\hat\\beta_b'\\,\\mathrm{Var}(\\hat\\beta_b)^{-1}\\hat\\beta_b`, chi-square(m), or
  :math:`Q_M/m` against F(m, k-p) for Knapp-Hartung) or of linear combinations ``L``
  (each :math:`L_j\\hat\\beta` with its z/t test, and the omnibus :math:`Q_M` when L has full
  row rank).

References
----------
Hardy RJ, Thompson SG (1996). A likelihood approach to meta-analysis with random effects.
Stat Med 15:619-629 (likelihood-ratio tests).
Viechtbauer W (2010). Conducting meta-analyses in R with the metafor package. J Stat Softw
36(3):1-48 (``anova.rma``, ``fitstats``).
Knapp G, Hartung J (2003). Improved tests for a random effects meta-regression with a single
covariate. Stat Med 22:2693-2710.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from .residuals import model_view

__all__ = ["anova", "fit_stats", "LikelihoodRatioTest", "WaldTest"]

_LL_METHODS = ("FE", "ML", "REML")


def _parms(view) -> int:
    return view.p + (0 if (view.method == "FE" or view.tau2_fixed) else 1)


def fit_stats(res, reml: bool | None = None) -> dict[str, float]:
    """Log-likelihood, deviance, AIC, BIC, AICc of a fit (metafor ``fitstats``).

    With :math:`w_i = 1/(v_i+\\hat\\tau^2)`, residuals :math:`r` of the weighted fit and
    :math:`q` parameters (p coefficients, plus tau² when estimated):

    * ML (every method but REML):
      :math:`\\ell = -\\tfrac12[k\\log 2\\pi + \\sum\\log(v_i+\\hat\\tau^2) + \\sum w_ir_i^2]`,
      deviance :math:`-2(\\ell - \\ell_{sat})` with :math:`\\ell_{sat} = -\\tfrac12\\sum\\log(2\\pi v_i)`,
      BIC with :math:`\\log k`;
    * REML: :math:`\\ell = -\\tfrac12[(k-p)\\log 2\\pi - \\log|X'X| + \\sum\\log(v_i+\\hat\\tau^2)
      + \\log|X'WX| + \\sum w_ir_i^2]`, deviance :math:`-2\\ell`, BIC and AICc with k-p in
      place of k;
    * AIC :math:`-2\\ell + 2q`, AICc :math:`-2\\ell + 2q\\,n/(n-q-1)` with :math:`n=\\max(k, q+2)`.

    ``reml`` forces the restricted (True) or full (False) likelihood; default: REML for a
    REML fit, ML otherwise.  (:func:`anova` compares a REML model with an FE one on the
    restricted likelihood of both, as metafor.)

    Examples
    --------
    >>> from lnsynth.pairwise import meta_analysis
    >>> res = meta_analysis(yi=[0.1, 0.9, -0.4, 0.5, 1.3], vi=[0.02, 0.05, 0.04, 0.03, 0.06], method="ML")
    >>> s = fit_stats(res)
    >>> round(s["aic"] - (-2 * s["ll"] + 4), 12)
    0.0
    """
    view = model_view(res)
    y, v, X, t = view.y, view.v, view.X, view.tau2
    k, p = view.k, view.p
    w = 1.0 / (v + t)
    A = (X.T * w) @ X
    beta = np.linalg.solve(A, (X.T * w) @ y)
    r = y - X @ beta
    rss = float(np.sum(w * r * r))
    q = _parms(view)
    if (view.method == "REML") if reml is None else reml:
        n = k - p
        ll = -0.5 * (n * math.log(2 * math.pi) - np.linalg.slogdet(X.T @ X)[1] + np.sum(np.log(v + t))
                     + np.linalg.slogdet(A)[1] + rss)
        dev = -2.0 * ll
    else:
        n = k
        ll = -0.5 * (k * math.log(2 * math.pi) + np.sum(np.log(v + t)) + rss)
        dev = -2.0 * (ll + 0.5 * float(np.sum(np.log(2 * math.pi * v))))
    nn = max(n, q + 2)
    return {"ll": float(ll), "dev": float(dev), "aic": float(-2 * ll + 2 * q), "bic": float(-2 * ll + q * math.log(n)),
            "aicc": float(-2 * ll + 2 * q * nn / (nn - q - 1)), "parms": q, "method": view.method}


@dataclass(frozen=True)
class LikelihoodRatioTest:
    """Comparison of a full and a reduced model (metafor ``anova(full, reduced)``)."""

    lrt: float
    df: int
    pvalue: float
    fit_full: dict
    fit_reduced: dict
    qe_full: float
    qe_reduced: float
    tau2_full: float
    tau2_reduced: float
    r2: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"lrt": self.lrt, "df": self.df, "pvalue": self.pvalue, "fit_full": dict(self.fit_full),
                "fit_reduced": dict(self.fit_reduced), "qe_full": self.qe_full, "qe_reduced": self.qe_reduced,
                "tau2_full": self.tau2_full, "tau2_reduced": self.tau2_reduced, "r2": self.r2,
                "method": self.method}

    def to_frame(self):
        import pandas as pd

        rows = []
        for name, f, qe, t2 in (("Full", self.fit_full, self.qe_full, self.tau2_full),
                                ("Reduced", self.fit_reduced, self.qe_reduced, self.tau2_reduced)):
            rows.append({"model": name, "df": f["parms"], "aic": f["aic"], "bic": f["bic"], "aicc": f["aicc"],
                         "loglik": f["ll"], "lrt": self.lrt if name == "Reduced" else np.nan,
                         "pvalue": self.pvalue if name == "Reduced" else np.nan, "qe": qe, "tau2": t2})
        return pd.DataFrame(rows)

    def conf_int(self, level: float = 0.95):  # noqa: ARG002 - protocol
        """A test has no confidence interval; raises ``ValueError`` (kept for the result protocol)."""
        raise ValueError("a likelihood-ratio test has no confidence interval; see tau2_conf_int for tau^2")

    def summary(self, digits: int = 4) -> str:
        p = "<.0001" if self.pvalue < 1e-4 else f"{self.pvalue:.4f}"
        r2 = f"; R^2 = {self.r2:.2f}%" if np.isfinite(self.r2) else ""
        return (f"Likelihood-ratio test ({self.method}): LRT = {self.lrt:.{digits}f}, df = {self.df}, p-val = {p}{r2}\n"
                + self.to_frame().to_string(index=False, float_format=lambda x: f"{x:.{digits}f}"))


@dataclass(frozen=True)
class WaldTest:
    """Wald-type test of coefficients (``btt``) or of linear combinations (``L``)."""

    qm: float
    qm_df: tuple
    qm_pvalue: float
    test: str
    btt: tuple | None = None
    L: np.ndarray | None = None
    estimate: np.ndarray | None = None
    se: np.ndarray | None = None
    zval: np.ndarray | None = None
    pvalue: np.ndarray | None = None
    level: float = 0.95
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        lst = (lambda a: None if a is None else [float(x) for x in np.ravel(a)])  # noqa: E731
        return {"qm": self.qm, "qm_df": list(self.qm_df), "qm_pvalue": self.qm_pvalue, "test": self.test,
                "btt": list(self.btt) if self.btt is not None else None, "estimate": lst(self.estimate),
                "se": lst(self.se), "zval": lst(self.zval), "pvalue": lst(self.pvalue)}

    def to_frame(self):
        import pandas as pd

        if self.L is None:
            return pd.DataFrame([{"qm": self.qm, "df1": self.qm_df[0], "df2": self.qm_df[1],
                                  "pvalue": self.qm_pvalue}])
        lo, hi = self.conf_int(self.level)
        return pd.DataFrame({"estimate": self.estimate, "se": self.se, "zval": self.zval, "pvalue": self.pvalue,
                             "ci_low": lo, "ci_high": hi})

    def conf_int(self, level: float = 0.95):
        """CIs of the linear combinations (``L`` tests only)."""
        if self.L is None:
            raise ValueError("a test of coefficients (btt) has no confidence interval; use L= for combinations")
        alpha = 1.0 - level
        df2 = self.qm_df[1]
        crit = (float(special.stdtrit(df2, 1 - alpha / 2)) if df2 else float(special.ndtri(1 - alpha / 2)))
        return self.estimate - crit * self.se, self.estimate + crit * self.se

    def summary(self, digits: int = 4) -> str:
        p = "<.0001" if self.qm_pvalue < 1e-4 else f"{self.qm_pvalue:.4f}"
        what = (f"coefficient(s) {', '.join(str(b) for b in self.btt)}" if self.btt is not None
                else f"{len(self.estimate)} linear combination(s)")
        stat = (f"F(df1 = {self.qm_df[0]}, df2 = {self.qm_df[1]}) = {self.qm:.{digits}f}" if self.test == "knha"
                else f"QM(df = {self.qm_df[0]}) = {self.qm:.{digits}f}")
        out = f"Wald-type test of {what}: {stat}, p-val = {p}"
        if self.L is not None:
            out += "\n" + self.to_frame().to_string(index=False, float_format=lambda x: f"{x:.{digits}f}")
        return out


def _omnibus(b, vb, m, view):
    qm = float(b @ np.linalg.solve(vb, b))
    if view.test == "knha":
        df2 = view.k - view.p
        qm /= m
        return qm, (m, df2), float(special.fdtrc(m, df2, qm))
    return qm, (m, None), float(special.chdtrc(m, qm))


def anova(res, reduced=None, *, btt=None, L=None, test: str = "LRT"):
    """Compare nested models by a likelihood-ratio test, or test coefficients by a Wald-type test.

    Parameters
    ----------
    res : MetaResult or MetaRegressionResult
        The (full) model.
    reduced : MetaResult or MetaRegressionResult, optional
        A nested model fitted to the same yi/vi: likelihood-ratio test (the model with more
        parameters is taken as the full one, as metafor does).
    btt : sequence of int, optional
        Indices (0-based, in ``res.names`` order) of the coefficients to test jointly.
    L : array_like (m, p), optional
        Linear combinations of the coefficients to test (each against 0).
    test : {"LRT", "Wald"}
        With a reduced model: likelihood-ratio test (default) or the Wald-type test of the
        full model's coefficients that the reduced model lacks (matched by name; both fits
        must use the same method), as metafor's ``anova(full, reduced, test="Wald")``.

    Returns
    -------
    LikelihoodRatioTest or WaldTest

    Raises
    ------
    ValueError
        Models with different data, the same number of parameters, ML against REML, an FE
        full model against a random-effects reduced one, a method other than FE/ML/REML for
        the LRT (metafor only warns and computes it; here it is an error, as the likelihood
        of a moment estimator is not maximised), REML fits with different fixed effects (refit
        both with ``method="ML"``), or bad ``btt``/``L``.

    References
    ----------
    Hardy RJ, Thompson SG (1996). Stat Med 15:619-629.
    Viechtbauer W (2010). J Stat Softw 36(3):1-48.

    Examples
    --------
    >>> import numpy as np
    >>> from lnsynth.pairwise import meta_analysis, meta_regression
    >>> yi = np.array([-0.9, -1.6, -1.4, -1.4, -0.2, -0.8, -1.6, 0.0, -0.5, -1.4, -0.3, 0.4, 0.0])
    >>> vi = np.array([0.33, 0.19, 0.42, 0.02, 0.05, 0.01, 0.22, 0.004, 0.06, 0.07, 0.01, 0.53, 0.07])
    >>> lat = np.array([44, 55, 42, 52, 13, 44, 19, 13, 27, 42, 18, 33, 33.0])
    >>> full = meta_regression(yi, vi, {"lat": lat}, method="ML")
    >>> red = meta_analysis(yi=yi, vi=vi, method="ML")
    >>> t = anova(full, red)
    >>> t.df, bool(t.lrt > 0)
    (1, True)
    >>> anova(full, btt=[1]).qm_df
    (1, None)
    """
    if not isinstance(test, str) or test.upper() not in ("LRT", "WALD"):
        raise ValueError(f"test: expected 'LRT' or 'Wald', got {test!r}")
    f = model_view(res)
    if reduced is not None:
        if btt is not None or L is not None:
            raise ValueError("anova: give either a reduced model (LRT) or btt/L (Wald test), not both")
        r = model_view(reduced)
        if test.upper() == "WALD":
            if f.p < r.p:
                f, r, res = r, f, reduced
            if f.method != r.method:
                raise ValueError(f"the full and reduced model must use the same method for a Wald test "
                                 f"({f.method} vs {r.method})")
            extra = [i for i, n in enumerate(f.names) if n not in r.names]
            if not extra:
                raise ValueError("the full and reduced models appear to contain the same moderators")
            if any(n not in f.names for n in r.names):
                raise ValueError("there are coefficients in the reduced model that are not in the full model")
            return anova(res, btt=extra)
        if not (np.array_equal(f.y, r.y) and np.array_equal(f.v, r.v)):
            raise ValueError("reduced: observed outcomes and/or sampling variances differ between the full and "
                             "reduced model")
        pf, pr = _parms(f), _parms(r)
        if pf == pr:
            raise ValueError("reduced: the models have the same number of parameters; a LRT is not meaningful")
        if pf < pr:
            f, r, res, reduced = r, f, reduced, res
            pf, pr = pr, pf
        for view, name in ((f, "full"), (r, "reduced")):
            if view.method not in _LL_METHODS:
                raise ValueError(f"{name} model: a likelihood-ratio test needs method FE, ML or REML, not "
                                 f"{view.method}")
        if f.method == "FE" and r.method != "FE":
            raise ValueError("the full model is a fixed-effect and the reduced a random-effects model")
        if {f.method, r.method} == {"ML", "REML"}:
            raise ValueError(f"mismatch between {f.method} and {r.method} estimation in the full and reduced model")
        if "REML" in (f.method, r.method) and not (f.X.shape == r.X.shape and np.array_equal(f.X, r.X)):
            raise ValueError("REML likelihoods of models with different fixed effects are not comparable; refit "
                             "both models with method='ML'")
        use_reml = f.method == "REML"
        sf, sr = fit_stats(res, reml=use_reml), fit_stats(reduced, reml=use_reml)
        lrt = sr["dev"] - sf["dev"]
        df = pf - pr
        # pseudo-R^2 (metafor): residual variances for FE fits, tau^2 otherwise
        if f.method == "FE":
            def s2(view):
                w = 1.0 / view.v
                b = np.linalg.solve((view.X.T * w) @ view.X, (view.X.T * w) @ view.y)
                e = view.y - view.X @ b
                return float(np.sum(w * e * e)) / (view.k - view.p)
            s2f, s2r = s2(f), s2(r)
            r2 = 100.0 * max(0.0, (s2r - s2f) / s2r)
        elif r.tau2 == 0.0:
            r2 = 0.0
        else:
            r2 = 100.0 * max(0.0, (r.tau2 - f.tau2) / r.tau2)

        def qe(view):
            w = 1.0 / view.v
            b = np.linalg.solve((view.X.T * w) @ view.X, (view.X.T * w) @ view.y)
            e = view.y - view.X @ b
            return max(0.0, float(np.sum(w * e * e)))

        return LikelihoodRatioTest(lrt=float(lrt), df=int(df), pvalue=float(special.chdtrc(df, lrt)),
                                   fit_full=sf, fit_reduced=sr, qe_full=qe(f), qe_reduced=qe(r), tau2_full=f.tau2,
                                   tau2_reduced=r.tau2, r2=float(r2), method=f.method)
    if (btt is None) == (L is None):
        raise ValueError("anova: give a reduced model, or exactly one of btt (coefficients) and L (combinations)")
    if btt is not None:
        idx = [int(b) for b in np.atleast_1d(btt)]
        bad = [b for b in idx if not 0 <= b < f.p]
        if bad or len(set(idx)) != len(idx) or not idx:
            raise ValueError(f"btt: coefficient indices must be distinct and in 0..{f.p - 1} "
                             f"({', '.join(f.names)}); got {list(np.atleast_1d(btt))}")
        qm, qdf, qp = _omnibus(f.beta[idx], f.vb[np.ix_(idx, idx)], len(idx), f)
        return WaldTest(qm=qm, qm_df=qdf, qm_pvalue=qp, test=f.test, btt=tuple(idx), level=f.level)
    Lm = np.atleast_2d(np.asarray(L, dtype=np.float64))
    if Lm.shape[1] != f.p:
        raise ValueError(f"L: {Lm.shape[1]} columns but the model has {f.p} coefficients ({', '.join(f.names)})")
    est = Lm @ f.beta
    vL = Lm @ f.vb @ Lm.T
    se = np.sqrt(np.diag(vL))
    zval = est / se
    if f.test == "knha":
        df2 = f.k - f.p
        pval = 2.0 * special.stdtr(df2, -np.abs(zval))
    else:
        pval = 2.0 * special.ndtr(-np.abs(zval))
    m = Lm.shape[0]
    if np.linalg.matrix_rank(Lm) == m:
        qm, qdf, qp = _omnibus(est, vL, m, f)
    else:
        qm, qdf, qp = math.nan, (m, None), math.nan
    return WaldTest(qm=qm, qm_df=qdf, qm_pvalue=qp, test=f.test, L=Lm, estimate=est, se=se, zval=zval,
                    pvalue=pval, level=f.level)
