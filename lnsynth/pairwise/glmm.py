r"""Exact-likelihood (binomial) random-effects meta-analysis of 2x2 tables.

Two models for the log odds ratio, as metafor 3.8-1's ``rma.glmm(measure="OR")``
defines them, implemented here from the papers (no metafor/lme4 code is used):

``model="UM.FS"`` -- unconditional binomial-normal model with fixed study effects
    (Turner et al. 2000; Stijnen, Hamza & Ozdemir 2010, section 3.1).  For study
    *i* with ``a_i`` of ``n1_i`` events under treatment and ``c_i`` of ``n2_i`` under
    control,

    .. math::
        a_i \sim \mathrm{Bin}(n_{1i}, p_{1i}),\quad c_i \sim \mathrm{Bin}(n_{2i}, p_{2i}),\\
        \operatorname{logit} p_{1i} = \alpha_i + \beta + u_i/2,\quad
        \operatorname{logit} p_{2i} = \alpha_i - u_i/2,\quad u_i \sim N(0, \tau^2),

    the random effect entering with metafor's default contrast coding (+-1/2,
    invariant to swapping the arms).  The ``alpha_i`` are fixed study intercepts.
    The marginal likelihood integrates each ``u_i`` out by adaptive Gauss-Hermite
    quadrature with ``n_agq`` nodes centred at the conditional mode and scaled by
    the curvature there (Pinheiro & Bates 1995; Liu & Pierce 1994) -- the same
    approximation as lme4's ``glmer(nAGQ=)`` that metafor calls, whose default is
    ``nAGQ = 7``; ``n_agq = 1`` is the Laplace approximation.  Larger ``n_agq``
    (e.g. 21 or 51) gives the exact integral to machine precision; that is a
    deliberate *difference* from metafor's default, offered because 7 nodes can be
    visibly inexact for very sparse tables.
``model="CM.EL"`` -- conditional model, exact likelihood (van Houwelingen, Zwinderman
    & Stijnen 1993; Stijnen et al. 2010, section 3.3).  Conditioning on each study's
    total events ``t_i = a_i + c_i`` removes the study intercept: ``a_i`` follows
    Fisher's non-central hypergeometric distribution with odds ratio
    ``exp(theta_i)``, ``theta_i ~ N(beta, tau^2)``.  The integral over ``theta_i``
    is computed by adaptive Gauss-Hermite quadrature with ``n_agq`` nodes (default
    51 for this model: exact to machine precision).  metafor integrates with R's
    ``integrate()`` (relative tolerance about 1e-4 by default) and maximises with
    ``nlminb``, so agreement with metafor for CM.EL is limited by metafor's
    integration and optimiser tolerances (about 1e-5 relative for the estimate in
    the reference cases), not by this module.

Both models are fitted by maximum likelihood (``method="ML"``) or with tau^2 fixed at
0 (``method="EE"``, the equal-effects logistic / conditional logistic model).
The parameters are estimated by maximising the profile likelihood of ``(beta, tau)``
(study intercepts profiled out by Newton's method for UM.FS); the standard error of
``beta`` is the square root of the ``beta`` element of the inverse observed
information of all parameters, obtained from the profile Hessian (Schur complement;
this equals lme4's Hessian-based ``vcov`` for glmer fits).  The Hessian is computed
by central finite differences, as lme4/numDeriv also do, so the standard errors
agree with metafor to about 1e-6 relative, not to machine precision.

Heterogeneity is tested as metafor does, against the saturated model (one odds
ratio per study): a likelihood-ratio statistic ``QE.LRT = -2 (ll_EE - ll_sat)`` and a
Wald statistic of the saturated model's study-specific log odds ratios.  For a study
with a zero cell the saturated log odds ratio is infinite; the Wald statistic then
gives it weight 0 (the limit that glm's iterations approach; metafor reports the
value at which glm stopped), and a warning says so.  ``I^2``/``H^2`` use the
"typical" within-study variance of the ``escalc`` log odds ratios (0.5 added to
tables with a zero cell), as metafor.

Log-likelihood (a deliberate difference): ``loglik`` is the marginal log-likelihood that is maximised
(binomial coefficients included), so AIC/BIC and likelihood-ratio comparisons between the EE and ML fits
are valid.  For UM.FS with ``method="ML"`` metafor reports instead the *conditional* log-likelihood at the
predicted random effects (the saturated log-likelihood minus half of glmer's deviance); that value and the
AIC/BIC built on it are in ``extra["loglik_conditional"]``, ``extra["aic_conditional"]`` and
``extra["bic_conditional"]`` and match metafor.

Agreement with metafor (tests/test_glmm.py): the likelihoods are identical (our maximum is never below our
likelihood evaluated at metafor's estimates, and the two agree to 1e-6); estimates agree to 1e-5 relative
because glmer's bobyqa stops on a PIRLS-approximated objective, standard errors to 1e-4 (lme4's Hessian is a
finite-difference one) and, for CM.EL, to 2e-4 (numDeriv through ``integrate()``).  Equal-effects fits
agree to 1e-7.

Missing counts are an error (metafor omits such studies); leave the study out explicitly.  Studies with no
events in both arms, or only events in both arms, carry no
information on the odds ratio and are left out (metafor's ``drop00=TRUE``), with a
warning naming them.

References
----------
Turner RM, Omar RZ, Yang M, Goldstein H, Thompson SG (2000). A multilevel model
framework for meta-analysis of clinical trials with binary outcomes. *Stat Med*
19:3417-3432.
Stijnen T, Hamza TH, Ozdemir P (2010). Random effects meta-analysis of event outcome
in the framework of the generalized linear mixed model with applications in sparse
data. *Stat Med* 29:3046-3067.
van Houwelingen HC, Zwinderman KH, Stijnen T (1993). A bivariate approach to
meta-analysis. *Stat Med* 12:2273-2284.
Liu Q, Pierce DA (1994). A note on Gauss-Hermite quadrature. *Biometrika* 81:624-629.
Pinheiro JC, Bates DM (1995). Approximations to the log-likelihood function in the
nonlinear mixed-effects model. *J Comput Graph Stat* 4:12-35.
Jackson D, Law M, Stijnen T, Viechtbauer W, White IR (2018). A comparison of seven
random-effects models for meta-analyses that estimate the summary odds ratio.
*Stat Med* 37:1059-1085.
Viechtbauer W (2010). Conducting meta-analyses in R with the metafor package. *J Stat
Softw* 36(3):1-48 (``rma.glmm``).

Examples
--------
>>> from lnsynth.pairwise.glmm import glmm_meta_analysis
>>> res = glmm_meta_analysis(events_treat=[4, 6, 3, 62], n_treat=[123, 306, 231, 13598],
...                          events_ctrl=[11, 29, 11, 248], n_ctrl=[139, 303, 220, 12867])
>>> round(res.estimate, 2), res.k, res.tau2
(-1.45, 4, 0.0)
>>> low, high = res.conf_int(0.90)
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import optimize, special, stats

from lnsynth import registry
from lnsynth.stats import ConfidenceInterval, normalize_level
from .results import _fmtp

__all__ = ["glmm_meta_analysis", "profile_loglik", "GLMMResult", "GLMM_MODELS", "GLMM_METHODS", "GLMMWarning"]

GLMM_MODELS = registry.likelihood_models("pairwise")  # ("UM.FS", "CM.EL")
GLMM_METHODS = ("ML", "EE")
_DEFAULT_AGQ = {"UM.FS": 7, "CM.EL": 51}


class GLMMWarning(UserWarning):
    """A study was left out, a statistic is a limit, or the optimiser had trouble."""


# ---------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class GLMMResult:
    """One binomial-likelihood meta-analysis (metafor ``rma.glmm`` equivalent).

    All effect statistics are on the log odds ratio scale.  ``qe_wald``/``qe_lrt``
    are the Wald and likelihood-ratio tests for heterogeneity on ``qe_df = k - 1``
    degrees of freedom; ``loglik`` is the (approximated, for ``n_agq``) marginal
    log-likelihood including the binomial coefficients, as metafor's ``logLik``;
    ``deviance = -2 (loglik - loglik_saturated)``.
    """

    estimate: float
    se: float
    zval: float
    pvalue: float
    ci_low: float
    ci_high: float
    tau2: float
    i2: float
    h2: float
    loglik: float
    deviance: float
    aic: float
    bic: float
    qe_wald: float
    qe_wald_pvalue: float
    qe_lrt: float
    qe_lrt_pvalue: float
    qe_df: int
    k: int
    model: str
    method: str
    n_agq: int
    test: str
    level: float
    converged: bool
    labels: tuple
    dropped: tuple = ()
    extra: dict = field(default_factory=dict)

    measure = "OR"

    @property
    def df(self) -> int | None:
        """Degrees of freedom of the t test (``test="t"``: k - 1), else None."""
        return self.k - 1 if self.test == "t" else None

    def conf_int(self, level: float | None = None) -> ConfidenceInterval:
        """Wald confidence interval for the log odds ratio at ``level`` (z or t as ``test``; default: the fit's level)."""
        level = _check_level(self.level if level is None else level)
        crit = _crit(level, self.test, self.k)
        return ConfidenceInterval(float(self.estimate - crit * self.se), float(self.estimate + crit * self.se))

    def to_dict(self) -> dict[str, Any]:
        """Statistics as Python scalars (log-OR scale)."""
        keys = ("estimate", "se", "zval", "pvalue", "ci_low", "ci_high", "tau2", "i2", "h2", "loglik",
                "deviance", "aic", "bic", "qe_wald", "qe_wald_pvalue", "qe_lrt", "qe_lrt_pvalue")
        d: dict[str, Any] = {key: float(getattr(self, key)) for key in keys}
        d.update(qe_df=int(self.qe_df), k=int(self.k), model=self.model, method=self.method,
                 n_agq=int(self.n_agq), test=self.test, level=float(self.level), converged=bool(self.converged),
                 measure=self.measure)
        return d

    def to_frame(self, transf=None):
        """One-row pandas DataFrame of :meth:`to_dict` (``transf="exp"``: OR scale for estimate/CI)."""
        import pandas as pd

        row = self.to_dict()
        if transf is not None:
            f = np.exp if transf in ("exp", True) else transf
            for key in ("estimate", "ci_low", "ci_high"):
                row[key] = float(f(row[key]))
        return pd.DataFrame([row])

    def exp(self) -> dict[str, float]:
        """Odds ratio and CI (back-transformed)."""
        return {key: float(np.exp(getattr(self, key))) for key in ("estimate", "ci_low", "ci_high")}

    def summary(self, digits: int = 4) -> str:
        """Printable summary in the layout of metafor's ``print.rma.glmm``."""
        f = f"{{:.{digits}f}}"
        kind = "Random-Effects" if self.method == "ML" else "Equal-Effects"
        agq = f"; nAGQ = {self.n_agq}" if self.method == "ML" or self.model == "UM.FS" else ""
        lines = [f"{kind} Model (k = {self.k}; model: {self.model}; method: {self.method}{agq})", ""]
        lines.append(f"logLik = {f.format(self.loglik)}; deviance = {f.format(self.deviance)}; "
                     f"AIC = {f.format(self.aic)}; BIC = {f.format(self.bic)}")
        if self.method == "ML":
            lines.append(f"tau^2 (estimated amount of total heterogeneity): {f.format(self.tau2)}")
            lines.append(f"tau (square root of estimated tau^2 value):      {f.format(math.sqrt(self.tau2))}")
            lines.append(f"I^2 (total heterogeneity / total variability):   {self.i2:.2f}%")
            lines.append(f"H^2 (total variability / sampling variability):  {self.h2:.2f}")
        lines.append("")
        lines.append("Tests for Heterogeneity:")
        lines.append(f"Wld(df = {self.qe_df}) = {f.format(self.qe_wald)}, p-val = {_fmtp(self.qe_wald_pvalue)}")
        lines.append(f"LRT(df = {self.qe_df}) = {f.format(self.qe_lrt)}, p-val = {_fmtp(self.qe_lrt_pvalue)}")
        lines.append("")
        stat = "tval" if self.test == "t" else "zval"
        lines.append("Model Results" + (f" (df = {self.k - 1})" if self.test == "t" else "") + ":")
        lines.append(f"estimate      se     {stat}    pval    ci.lb    ci.ub")
        lines.append(f"{f.format(self.estimate)}  {f.format(self.se)}  {self.zval:.4f}  {_fmtp(self.pvalue)}  "
                     f"{f.format(self.ci_low)}  {f.format(self.ci_high)}")
        e = self.exp()
        lines.append(f"Odds ratio: {f.format(e['estimate'])} [{f.format(e['ci_low'])}, {f.format(e['ci_high'])}]")
        if self.dropped:
            lines.append(f"Left out (no information on the OR): {', '.join(self.dropped)}")
        if not self.converged:
            lines.append("WARNING: the optimiser did not converge.")
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()


def _check_level(level: float) -> float:
    return normalize_level(level)  # 0.95 or metafor's 95


def _crit(level: float, test: str, k: int) -> float:
    if test == "t":
        return float(stats.t.isf((1 - level) / 2, max(k - 1, 1)))
    return float(stats.norm.isf((1 - level) / 2))


# ---------------------------------------------------------------------------
# input
# ---------------------------------------------------------------------------
def _as_counts(name: str, x: Any) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected numbers, got {x!r}") from exc
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of counts (one per study), got shape {arr.shape}")
    return arr


def _inputs(events_treat, n_treat, events_ctrl, n_ctrl, labels, drop00: bool):
    a = _as_counts("events_treat", events_treat)
    n1 = _as_counts("n_treat", n_treat)
    c = _as_counts("events_ctrl", events_ctrl)
    n2 = _as_counts("n_ctrl", n_ctrl)
    k0 = a.shape[0]
    for name, arr in (("n_treat", n1), ("events_ctrl", c), ("n_ctrl", n2)):
        if arr.shape[0] != k0:
            raise ValueError(f"length mismatch: events_treat has length {k0} but {name} has length {arr.shape[0]}")
    if k0 == 0:
        raise ValueError("events_treat is empty (no studies)")
    if labels is None:
        labs = tuple(f"Study {i + 1}" for i in range(k0))
    else:
        labs = tuple(str(s) for s in (list(labels) if not isinstance(labels, str) else [labels]))
        if len(labs) != k0:
            raise ValueError(f"labels has length {len(labs)} but there are {k0} studies")

    def where(i):
        return f"study {labs[i]!r} (index {i})"

    for name, arr in (("events_treat", a), ("n_treat", n1), ("events_ctrl", c), ("n_ctrl", n2)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name} is missing or not finite for {where(i)}: {arr[i]!r}")
        bad = (arr < 0) | (arr != np.round(arr))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name} must be a non-negative whole number for {where(i)}, got {arr[i]:g}")
    for ev, nn, en, nname in ((a, n1, "events_treat", "n_treat"), (c, n2, "events_ctrl", "n_ctrl")):
        bad = nn <= 0
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{nname} must be > 0 for {where(i)}")
        bad = ev > nn
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{en} ({ev[i]:g}) exceeds {nname} ({nn[i]:g}) for {where(i)}")
    keep = np.ones(k0, bool)
    if drop00:
        keep = ~(((a == 0) & (c == 0)) | ((a == n1) & (c == n2)))
    dropped = tuple(lab for lab, kp in zip(labs, keep) if not kp)
    if dropped:
        warnings.warn(f"left out {len(dropped)} stud{'y' if len(dropped) == 1 else 'ies'} with no events (or only "
                      f"events) in both arms, which carry no information on the odds ratio: {', '.join(dropped)}",
                      GLMMWarning, stacklevel=3)
    a, n1, c, n2 = (x[keep] for x in (a, n1, c, n2))
    labs_kept = tuple(lab for lab, kp in zip(labs, keep) if kp)
    if a.shape[0] == 0:
        raise ValueError("no study has events in one arm and non-events in the other: the odds ratio is not estimable")
    if (a + c).sum() == 0 or (n1 - a + n2 - c).sum() == 0:
        raise ValueError("there are no events (or no non-events) in any study: the odds ratio is not estimable")
    return a, n1, c, n2, labs_kept, dropped


# ---------------------------------------------------------------------------
# UM.FS: binomial-normal model with fixed study intercepts
# ---------------------------------------------------------------------------
def _log1pexp(x):
    return np.logaddexp(0.0, x)


def _expit(x):
    return special.expit(x)


class _UMFS:
    """Marginal log-likelihood of the UM.FS model for one data set (arrays of length k)."""

    def __init__(self, a, n1, c, n2, n_agq: int):
        self.a, self.n1, self.c, self.n2 = a, n1, c, n2
        self.const = (special.gammaln(n1 + 1) - special.gammaln(a + 1) - special.gammaln(n1 - a + 1)
                      + special.gammaln(n2 + 1) - special.gammaln(c + 1) - special.gammaln(n2 - c + 1))
        z, w = np.polynomial.hermite_e.hermegauss(n_agq)
        self.z = z
        self.logw = np.log(w / math.sqrt(2 * math.pi)) + z ** 2 / 2
        self.k = a.shape[0]
        # starting intercepts: logit of the control-arm proportion (shrunk)
        self.alpha = special.logit((c + 0.5) / (n2 + 1.0))

    def _h(self, u, alpha, beta, tau):
        """log f(a, c | u) + log of the N(0,1) kernel, without constants (any broadcastable shapes)."""
        e1 = alpha + beta + 0.5 * tau * u
        e2 = alpha - 0.5 * tau * u
        return (self.a * e1 - self.n1 * _log1pexp(e1) + self.c * e2 - self.n2 * _log1pexp(e2) - 0.5 * u * u)

    def _mode(self, alpha, beta, tau):
        """Conditional mode of u (Newton with step halving; h is strictly concave)."""
        u = np.zeros(np.broadcast(alpha, beta, tau).shape)
        a, n1, c, n2 = self.a, self.n1, self.c, self.n2
        h = self._h(u, alpha, beta, tau)
        for _ in range(200):
            p1 = _expit(alpha + beta + 0.5 * tau * u)
            p2 = _expit(alpha - 0.5 * tau * u)
            g = 0.5 * tau * ((a - n1 * p1) - (c - n2 * p2)) - u
            hess = -(0.25 * tau * tau) * (n1 * p1 * (1 - p1) + n2 * p2 * (1 - p2)) - 1.0
            step = -g / hess
            unew = u + step
            hnew = self._h(unew, alpha, beta, tau)
            for _ in range(30):
                worse = hnew < h - 1e-12 * np.abs(h)
                if not worse.any():
                    break
                step = np.where(worse, step / 2, step)
                unew = u + step
                hnew = self._h(unew, alpha, beta, tau)
            u, h = unew, hnew
            if np.all(np.abs(step) < 1e-13 * (1 + np.abs(u))):
                break
        p1 = _expit(alpha + beta + 0.5 * tau * u)
        p2 = _expit(alpha - 0.5 * tau * u)
        curv = (0.25 * tau * tau) * (n1 * p1 * (1 - p1) + n2 * p2 * (1 - p2)) + 1.0
        return u, h, curv

    def study_loglik(self, alpha, beta, tau):
        """Per-study AGQ log-likelihood; alpha, beta, tau broadcast to (..., k)."""
        alpha, beta, tau = np.broadcast_arrays(np.asarray(alpha, float), np.asarray(beta, float),
                                               np.asarray(tau, float))
        u, h0, curv = self._mode(alpha, beta, tau)
        sigma = 1.0 / np.sqrt(curv)
        nodes = u[..., None] + sigma[..., None] * self.z
        al, be, ta = alpha[..., None], beta[..., None], tau[..., None]
        e1 = al + be + 0.5 * ta * nodes
        e2 = al - 0.5 * ta * nodes
        hk = (self.a[:, None] * e1 - self.n1[:, None] * _log1pexp(e1) + self.c[:, None] * e2
              - self.n2[:, None] * _log1pexp(e2) - 0.5 * nodes * nodes)
        lse = special.logsumexp(hk - h0[..., None] + self.logw, axis=-1)
        # the binomial coefficients are added by the caller: leaving the large constant out keeps the
        # finite differences free of cancellation error
        return h0 + np.log(sigma) + lse

    def conditional_loglik(self, alpha, beta, tau) -> float:
        """log f(data | alpha, beta, u = conditional mode) incl. binomial coefficients (metafor's ``ll``)."""
        u, _, _ = self._mode(np.asarray(alpha, float), np.asarray(beta, float), np.asarray(tau, float))
        e1 = alpha + beta + 0.5 * tau * u
        e2 = alpha - 0.5 * tau * u
        return float(np.sum(self.a * e1 - self.n1 * _log1pexp(e1) + self.c * e2 - self.n2 * _log1pexp(e2)
                            + self.const))

    def profile(self, beta: float, tau: float, alpha0=None) -> float:
        """max over the study intercepts of the log-likelihood at fixed (beta, tau), with constants."""
        alpha = (self.alpha if alpha0 is None else np.asarray(alpha0, float)).copy()
        h = _HSTEP
        for _ in range(100):
            F = self.study_loglik(alpha[None, :] + np.array([[-h], [0.0], [h]]), beta, abs(tau))
            d1 = (F[2] - F[0]) / (2 * h)
            d2 = (F[2] - 2 * F[1] + F[0]) / h ** 2
            step = np.clip(np.where(d2 < 0, -d1 / np.where(d2 < 0, d2, -1.0), np.sign(d1)), -2, 2)
            alpha = alpha + step
            if np.all(np.abs(step) < 1e-10):
                break
        return float(self.study_loglik(alpha, beta, abs(tau)).sum() + self.const.sum())

    def fit(self, alpha0, beta0, tau0, maxiter=200):
        """Maximise the AGQ log-likelihood over (alpha_1..k, beta, tau) by Newton's method.

        Derivatives are central finite differences of the per-study log-likelihoods, all stencil points
        evaluated in one vectorised call; the Hessian is arrowhead-shaped (each study's intercept only meets
        beta and tau), so a Newton step costs O(k).  Returns alpha, beta, tau, loglik, cov of (beta, tau),
        converged.
        """
        alpha = np.asarray(alpha0, float).copy()
        x = np.array([beta0, tau0], float)
        ll = float(self.study_loglik(alpha, x[0], x[1]).sum())
        converged = False
        lam = 0.0
        for _ in range(maxiter):
            g, H_aa, H_ax, S_xx = _arrow_derivs(self.study_loglik, alpha, x)
            # Schur complement onto (beta, tau)
            S = S_xx - np.einsum("ki,kj->ij", H_ax / H_aa[:, None], H_ax)
            r = g[1] - (H_ax * (g[0] / H_aa)[:, None]).sum(0)
            ok = np.all(H_aa < 0) and np.all(np.linalg.eigvalsh(S) < 0)
            if ok and lam == 0.0:
                dx = -np.linalg.solve(S, r)
            else:  # Levenberg-Marquardt damping towards gradient ascent
                lam = max(lam * 10, 1e-3 * (1 + np.abs(np.diag(S)).max()))
                Sd = S - lam * np.eye(2)
                if np.any(np.linalg.eigvalsh(Sd) >= 0):
                    Sd = -np.diag(np.abs(np.diag(S)) + lam)
                dx = -np.linalg.solve(Sd, r)
            Haa = np.where(H_aa < 0, H_aa, -np.abs(H_aa) - 1.0)
            da = -(g[0] + H_ax @ dx) / Haa
            step_ok = False
            t = 1.0
            for _ in range(40):
                xn = x + t * dx
                xn[1] = abs(xn[1])
                an = alpha + t * da
                lln = float(self.study_loglik(an, xn[0], xn[1]).sum())
                if lln >= ll - 1e-12 * abs(ll):
                    step_ok = True
                    break
                t /= 2
            if not step_ok:
                break
            small = np.all(np.abs(t * dx) < 1e-9) and np.all(np.abs(t * da) < 1e-8)
            alpha, x, ll = an, xn, lln
            if t == 1.0 and ok:
                lam = 0.0
            else:
                lam = lam / 10 if lam > 1e-12 else 0.0
            if small and ok:
                converged = True
                break
            if x[1] < 1e-7:  # heading to the boundary tau = 0
                break
        g, H_aa, H_ax, S_xx = _arrow_derivs(self.study_loglik, alpha, x)
        S = S_xx - np.einsum("ki,kj->ij", H_ax / H_aa[:, None], H_ax)
        return alpha, float(x[0]), float(x[1]), ll, S, converged


_GSTEP = 1e-5
_HSTEP = 1e-4


def _arrow_derivs(fun, alpha, x):
    """Gradient and arrowhead Hessian of sum_i fun_i(alpha_i, beta, tau) by central differences.

    Returns (g_alpha (k,), g_x (2,)), H_aa (k,), H_ax (k, 2), H_xx (2, 2).
    """
    k = alpha.shape[0]
    # stencil offsets in (alpha, beta, tau): centre, +-hg e_j (gradient), +-h e_j, +-h e_j +-h e_l
    hg, h = _GSTEP, _HSTEP
    offs = [np.zeros(3)]
    for j in range(3):
        for s in (hg, -hg):
            e = np.zeros(3)
            e[j] = s
            offs.append(e)
    for j in range(3):
        for s in (h, -h):
            e = np.zeros(3)
            e[j] = s
            offs.append(e)
    pairs = [(0, 1), (0, 2), (1, 2)]
    for j, l in pairs:
        for sj in (h, -h):
            for sl in (h, -h):
                e = np.zeros(3)
                e[j], e[l] = sj, sl
                offs.append(e)
    O = np.array(offs)  # (m, 3)
    A = alpha[None, :] + O[:, :1]
    B = x[0] + O[:, 1:2] + 0 * A
    T = np.abs(x[1] + O[:, 2:3]) + 0 * A
    F = fun(A, B, T)  # (m, k)
    f0 = F[0]
    grad = np.empty((3, k))
    for j in range(3):
        grad[j] = (F[1 + 2 * j] - F[2 + 2 * j]) / (2 * hg)
    hd = np.empty((3, k))
    for j in range(3):
        hd[j] = (F[7 + 2 * j] - 2 * f0 + F[8 + 2 * j]) / h ** 2
    mixed = {}
    for q, (j, l) in enumerate(pairs):
        base = 13 + 4 * q
        fpp, fpm, fmp, fmm = F[base], F[base + 1], F[base + 2], F[base + 3]
        mixed[(j, l)] = (fpp - fpm - fmp + fmm) / (4 * h * h)
    g_alpha = grad[0]
    g_x = np.array([grad[1].sum(), grad[2].sum()])
    H_aa = hd[0]
    H_ax = np.stack([mixed[(0, 1)], mixed[(0, 2)]], axis=1)
    H_xx = np.array([[hd[1].sum(), mixed[(1, 2)].sum()], [mixed[(1, 2)].sum(), hd[2].sum()]])
    return (g_alpha, g_x), H_aa, H_ax, H_xx


def _fit_fe_logistic(a, n1, c, n2):
    """Equal-effects logistic regression with study intercepts (exact Newton on all parameters)."""
    alpha = special.logit((a + c + 0.5) / (n1 + n2 + 1.0))
    beta = 0.0
    for _ in range(200):
        p1 = _expit(alpha + beta)
        p2 = _expit(alpha)
        w1, w2 = n1 * p1 * (1 - p1), n2 * p2 * (1 - p2)
        g_alpha = (a - n1 * p1) + (c - n2 * p2)
        g_beta = float(np.sum(a - n1 * p1))
        haa = w1 + w2
        # Newton on the full parameter vector via the Schur complement
        hbb = float(np.sum(w1) - np.sum(w1 * w1 / haa))
        rhs = g_beta - float(np.sum(w1 * g_alpha / haa))
        dbeta = rhs / hbb
        dalpha = (g_alpha - w1 * dbeta) / haa
        dalpha = np.clip(dalpha, -5, 5)
        alpha = alpha + dalpha
        beta = beta + float(np.clip(dbeta, -5, 5))
        if abs(dbeta) < 1e-13 and np.all(np.abs(dalpha) < 1e-13 * (1 + np.abs(alpha))):
            break
    p1 = _expit(alpha + beta)
    p2 = _expit(alpha)
    w1, w2 = n1 * p1 * (1 - p1), n2 * p2 * (1 - p2)
    hbb = float(np.sum(w1) - np.sum(w1 * w1 / (w1 + w2)))
    ll = float(np.sum(_binom_ll(a, n1, alpha + beta) + _binom_ll(c, n2, alpha)))
    return beta, math.sqrt(1.0 / hbb), ll, alpha


def _binom_ll(y, n, eta):
    return (special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
            + y * eta - n * _log1pexp(eta))


def _sat_ll(y, n):
    """Binomial log-likelihood at the observed proportion (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = y / n
        t1 = np.where(y > 0, y * np.log(np.where(y > 0, p, 1.0)), 0.0)
        t2 = np.where(n - y > 0, (n - y) * np.log(np.where(n - y > 0, 1 - p, 1.0)), 0.0)
    return special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1) + t1 + t2


# ---------------------------------------------------------------------------
# CM.EL: conditional (non-central hypergeometric) likelihood
# ---------------------------------------------------------------------------
class _CMEL:
    """Fisher non-central hypergeometric likelihood of a_i given t_i = a_i + c_i."""

    def __init__(self, a, n1, c, n2, n_agq: int):
        t = a + c
        lo = np.maximum(0, t - n2)
        hi = np.minimum(n1, t)
        width = int((hi - lo).max()) + 1
        j = np.arange(width)
        sup = lo[:, None] + j[None, :]
        valid = sup <= hi[:, None]
        supc = np.where(valid, sup, lo[:, None])
        logc = (special.gammaln(n1[:, None] + 1) - special.gammaln(supc + 1) - special.gammaln(n1[:, None] - supc + 1)
                + special.gammaln(n2[:, None] + 1) - special.gammaln(t[:, None] - supc + 1)
                - special.gammaln(n2[:, None] - t[:, None] + supc + 1))
        self.logc = np.where(valid, logc, -np.inf)
        self.sup = np.where(valid, sup, 0.0).astype(float)
        self.sup2 = self.sup ** 2
        self.a = a
        self.loga = (special.gammaln(n1 + 1) - special.gammaln(a + 1) - special.gammaln(n1 - a + 1)
                     + special.gammaln(n2 + 1) - special.gammaln(c + 1) - special.gammaln(n2 - c + 1))
        self.lo, self.hi = lo, hi
        z, w = np.polynomial.hermite_e.hermegauss(n_agq)
        self.z = z
        self.logw = np.log(w / math.sqrt(2 * math.pi)) + z ** 2 / 2

    def _logp(self, theta):
        """log P(a_i | theta_i) and its first two derivatives; theta broadcasts as (..., k)."""
        theta = np.asarray(theta, float)
        extra = theta.ndim - 1  # axes after the study axis (e.g. quadrature nodes)
        idx = (slice(None),) + (None,) * extra
        logc, sup = self.logc[idx], self.sup[idx]
        a, loga = self.a[idx], self.loga[idx]
        lt = logc + sup * theta[..., None]
        mx = lt.max(axis=-1, keepdims=True)
        e = np.exp(lt - mx)
        tot = e.sum(-1)
        m1 = (e * sup).sum(-1) / tot
        m2 = (e * self.sup2[idx]).sum(-1) / tot
        lse = np.log(tot) + mx[..., 0]
        logp = loga + a * theta - lse
        return logp, a - m1, -(m2 - m1 * m1)

    def ee_loglik(self, beta):
        return float(self._logp(np.full(self.a.shape, beta))[0].sum())

    def study_loglik(self, beta, tau):
        """Per-study log of the integral of P(a | theta) N(theta; beta, tau^2) (adaptive GH)."""
        if tau == 0:
            return self._logp(np.full(self.a.shape, beta))[0]
        # integrate over v ~ N(0,1), theta = beta + tau v; g(v) = logP + (-v^2/2) is concave
        v = np.zeros(self.a.shape)
        for _ in range(200):
            lp, d1, d2 = self._logp(beta + tau * v)
            g1 = tau * d1 - v
            g2 = tau * tau * d2 - 1.0
            step = -g1 / g2
            v = v + np.clip(step, -5, 5)
            if np.all(np.abs(step) < 1e-11 * (1 + np.abs(v))):
                break
        lp0, _, d2 = self._logp(beta + tau * v)
        h0 = lp0 - 0.5 * v * v
        sigma = 1.0 / np.sqrt(1.0 - tau * tau * d2)
        nodes = v[:, None] + sigma[:, None] * self.z
        lpk = self._logp(beta + tau * nodes)[0]
        hk = lpk - 0.5 * nodes * nodes
        return h0 + np.log(sigma) + special.logsumexp(hk - h0[:, None] + self.logw, axis=-1)

    def sat(self):
        """Saturated model: per-study conditional MLE of theta (inf at the support bounds), its log-lik and
        information."""
        at_lo = self.a == self.lo
        at_hi = self.a == self.hi
        theta = np.zeros(self.a.shape)
        inner = ~(at_lo | at_hi)
        for _ in range(200):
            _, d1, d2 = self._logp(theta)
            step = np.where(inner, -d1 / np.where(inner, d2, -1.0), 0.0)
            theta = theta + np.clip(step, -3, 3)
            if np.all(np.abs(step) < 1e-13 * (1 + np.abs(theta))):
                break
        lp, _, d2 = self._logp(theta)
        # at a support bound the supremum of the likelihood is 1 (log 0)
        ll = np.where(inner, lp, 0.0)
        return np.where(inner, theta, np.nan), ll, np.where(inner, -d2, 0.0)


# ---------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------
def _newton_2d(fun, x0, maxiter=200):
    """Maximise fun(beta, tau) (even in tau) by damped Newton with finite-difference derivatives.

    Returns (x, f, H, converged) with H the finite-difference Hessian at the solution.
    """
    x = np.array(x0, float)
    f = fun(x[0], x[1])
    converged = False
    lam = 0.0
    for _ in range(maxiter):
        g, H = _fd_grad_hess(fun, x)
        nd = np.all(np.linalg.eigvalsh(H) < 0)
        if nd and lam == 0.0:
            dx = -np.linalg.solve(H, g)
        else:
            lam = max(lam * 10, 1e-3 * (1 + np.abs(np.diag(H)).max()))
            Hd = -np.diag(np.abs(np.diag(H)) + lam) if not nd else H - lam * np.eye(2)
            dx = -np.linalg.solve(Hd, g)
        t, ok = 1.0, False
        for _ in range(40):
            xn = x + t * dx
            xn[1] = abs(xn[1])
            fn = fun(xn[0], xn[1])
            if fn >= f - 1e-12 * abs(f):
                ok = True
                break
            t /= 2
        if not ok:
            break
        small = np.all(np.abs(t * dx) < 1e-9)
        x, f = xn, fn
        lam = 0.0 if (t == 1.0 and nd) else (lam / 10 if lam > 1e-12 else 0.0)
        if small and nd:
            converged = True
            break
        if x[1] < 1e-7:
            break
    g, H = _fd_grad_hess(fun, x)
    return x, f, H, converged


def _fd_grad_hess(fun, x, h=(_HSTEP, _HSTEP)):
    hb, ht = h
    b, t = x
    f0 = fun(b, t)
    hg = _GSTEP
    gb = (fun(b + hg, t) - fun(b - hg, t)) / (2 * hg)
    gt = (fun(b, t + hg) - fun(b, abs(t - hg))) / (2 * hg)
    fpp = fun(b + hb, t + ht)
    fpm = fun(b + hb, abs(t - ht))
    fmp = fun(b - hb, t + ht)
    fmm = fun(b - hb, abs(t - ht))
    fb1, fb0 = fun(b + hb, t), fun(b - hb, t)
    ft1, ft0 = fun(b, t + ht), fun(b, abs(t - ht))
    g = np.array([gb, gt])
    H = np.array([[(fb1 - 2 * f0 + fb0) / hb ** 2, (fpp - fpm - fmp + fmm) / (4 * hb * ht)],
                  [0.0, (ft1 - 2 * f0 + ft0) / ht ** 2]])
    H[1, 0] = H[0, 1]
    return g, H


def _dl_tau2(a, n1, c, n2) -> float:
    """DerSimonian-Laird tau^2 of the escalc log odds ratios (a starting value only)."""
    zero = (a == 0) | (c == 0) | (n1 - a == 0) | (n2 - c == 0)
    add = np.where(zero, 0.5, 0.0)
    yi = np.log((a + add) * (n2 - c + add) / ((n1 - a + add) * (c + add)))
    vi = 1 / (a + add) + 1 / (n1 - a + add) + 1 / (c + add) + 1 / (n2 - c + add)
    w = 1 / vi
    if w.size < 2:
        return 0.0
    mu = (w * yi).sum() / w.sum()
    q = (w * (yi - mu) ** 2).sum()
    return float(max(0.0, (q - (w.size - 1)) / (w.sum() - (w ** 2).sum() / w.sum())))


def _i2_vt(a, n1, c, n2) -> float:
    """metafor's typical within-study variance (k - 1) / tr(P) of the escalc log odds ratios."""
    zero = (a == 0) | (c == 0) | (n1 - a == 0) | (n2 - c == 0)
    add = np.where(zero, 0.5, 0.0)
    vi = 1 / (a + add) + 1 / (n1 - a + add) + 1 / (c + add) + 1 / (n2 - c + add)
    wi = 1 / vi
    k = wi.size
    if k < 2:
        return float(vi[0]) if k == 1 else float("nan")
    trp = wi.sum() - (wi ** 2).sum() / wi.sum()
    return float((k - 1) / trp)


def profile_loglik(events_treat: Any, n_treat: Any, events_ctrl: Any, n_ctrl: Any, beta: float, tau2: float, *,
                   model: str = "UM.FS", n_agq: int | None = None) -> float:
    """Log-likelihood at (beta, tau^2), maximised over the study intercepts (UM.FS) -- for checking optima.

    Uses the same likelihood (and quadrature) as :func:`glmm_meta_analysis`; studies are taken as given
    (no ``drop00``).  For CM.EL there are no nuisance parameters and this is the marginal log-likelihood.

    Examples
    --------
    >>> profile_loglik([4, 6], [123, 306], [11, 29], [139, 303], beta=-0.9, tau2=0.1)  # doctest: +SKIP
    """
    model = str(model).upper()
    if model not in GLMM_MODELS:
        raise ValueError(f"unknown model {model!r}; valid: {', '.join(GLMM_MODELS)}")
    n_agq = _DEFAULT_AGQ[model] if n_agq is None else int(n_agq)
    a, n1, c, n2, _, _ = _inputs(events_treat, n_treat, events_ctrl, n_ctrl, None, False)
    tau = math.sqrt(max(0.0, float(tau2)))
    if model == "UM.FS":
        lik = _UMFS(a, n1, c, n2, n_agq)
        lik.alpha = _fit_fe_logistic(a, n1, c, n2)[3]
        return lik.profile(float(beta), tau)
    return float(_CMEL(a, n1, c, n2, n_agq).study_loglik(float(beta), tau).sum())


def glmm_meta_analysis(
    events_treat: Any,
    n_treat: Any,
    events_ctrl: Any,
    n_ctrl: Any,
    *,
    model: str = "UM.FS",
    method: str = "ML",
    n_agq: int | None = None,
    test: str = "z",
    level: float = 0.95,
    labels: Sequence[str] | None = None,
    drop00: bool = True,
) -> GLMMResult:
    """Random-effects (or equal-effects) meta-analysis of log odds ratios with a binomial likelihood.

    Parameters
    ----------
    events_treat, n_treat, events_ctrl, n_ctrl : array-like of int, shape (k,)
        Events and group sizes per study (NumPy arrays, lists or pandas columns).
    model : {"UM.FS", "CM.EL"}
        Unconditional model with fixed study intercepts (metafor's default) or the
        conditional model with the exact non-central hypergeometric likelihood.
    method : {"ML", "EE"}
        Estimate tau^2 by maximum likelihood, or fix it at 0 (equal effects).
    n_agq : int, optional
        Gauss-Hermite nodes per study for integrating the random effect (adaptive:
        centred at the mode).  Default 7 for UM.FS (metafor's/lme4's ``nAGQ``
        default; 1 = Laplace) and 51 for CM.EL (numerically exact).
    test : {"z", "t"}
        Wald z test, or t with k - 1 degrees of freedom (metafor ``test="t"``).
    level : float
        Confidence level (0.95 or 95).
    labels : sequence of str, optional
        Study labels (used in messages).
    drop00 : bool
        Leave out studies with no events (or only events) in both arms (metafor default).

    Returns
    -------
    GLMMResult

    Raises
    ------
    ValueError
        For invalid counts (naming the field and the study), an unknown model or
        method, or data with no information on the odds ratio.

    Examples
    --------
    >>> res = glmm_meta_analysis([4, 6, 3], [123, 306, 231], [11, 29, 11], [139, 303, 220],
    ...                          model="UM.FS", method="ML", n_agq=7)
    >>> print(res.summary())  # doctest: +SKIP
    """
    model = str(model).upper()
    if model not in GLMM_MODELS:
        raise ValueError(f"unknown model {model!r}; valid: {', '.join(GLMM_MODELS)}")
    method = str(method).upper()
    if method == "FE":
        method = "EE"
    if method not in GLMM_METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(GLMM_METHODS)}")
    if test not in ("z", "t"):
        raise ValueError(f"unknown test {test!r}; valid: z, t")
    level = _check_level(level)
    if n_agq is None:
        n_agq = _DEFAULT_AGQ[model]
    if int(n_agq) != n_agq or n_agq < 1 or n_agq > 200:
        raise ValueError(f"n_agq must be a whole number in 1..200, got {n_agq!r}")
    n_agq = int(n_agq)
    a, n1, c, n2, labs, dropped = _inputs(events_treat, n_treat, events_ctrl, n_ctrl, labels, drop00)
    k = a.shape[0]
    b, d = n1 - a, n2 - c

    # saturated model and the heterogeneity tests
    zero_cell = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    converged = True
    extra: dict[str, Any] = {}
    if model == "UM.FS":
        ll_sat = float(np.sum(_sat_ll(a, n1) + _sat_ll(c, n2)))
        beta_fe, se_fe, ll_fe, alpha_fe = _fit_fe_logistic(a, n1, c, n2)
        with np.errstate(divide="ignore"):
            yi_sat = np.where(zero_cell, np.nan, np.log(np.where(zero_cell, 1, a * d) / np.where(zero_cell, 1, b * c)))
            wi_sat = np.where(zero_cell, 0.0, 1 / (1 / np.maximum(a, 1) + 1 / np.maximum(b, 1) + 1 / np.maximum(c, 1)
                                                    + 1 / np.maximum(d, 1)))
    else:
        lik = _CMEL(a, n1, c, n2, n_agq)
        theta_sat, llsat_i, info_sat = lik.sat()
        ll_sat = float(llsat_i.sum())
        r = optimize.minimize_scalar(lambda bb: -lik.ee_loglik(bb), bracket=(-1.0, 1.0))
        beta_fe = float(r.x)
        for _ in range(50):  # Newton polish (exact derivatives)
            _, g1, g2 = lik._logp(np.full(k, beta_fe))
            step = -g1.sum() / g2.sum()
            beta_fe += step
            if abs(step) < 1e-14:
                break
        _, _, g2 = lik._logp(np.full(k, beta_fe))
        se_fe = math.sqrt(-1.0 / g2.sum())
        ll_fe = lik.ee_loglik(beta_fe)
        inner = np.isfinite(theta_sat)
        yi_sat = theta_sat
        wi_sat = np.where(inner, info_sat, 0.0)
        zero_cell = ~inner
    sw = wi_sat.sum()
    if k > 1 and sw > 0:
        ybar = np.nansum(wi_sat * np.nan_to_num(yi_sat)) / sw
        qe_wald = float(np.nansum(wi_sat * (np.nan_to_num(yi_sat) - ybar) ** 2))
    else:
        qe_wald = 0.0
    if k > 1 and zero_cell.any():
        warnings.warn("the saturated model's log odds ratio is infinite for studies "
                      f"{', '.join(l for l, z in zip(labs, zero_cell) if z)}; the Wald heterogeneity test gives them "
                      "weight 0 (its limit)", GLMMWarning, stacklevel=2)
        extra["qe_wald_limit"] = True
    qe_lrt = max(0.0, -2.0 * (ll_fe - ll_sat))
    qe_df = k - 1
    qe_wald_p = float(stats.chi2.sf(qe_wald, qe_df)) if qe_df > 0 else 1.0
    qe_lrt_p = float(stats.chi2.sf(qe_lrt, qe_df)) if qe_df > 0 else 1.0

    if method == "EE":
        beta, se, tau2, ll = beta_fe, se_fe, 0.0, ll_fe
        parms = k + 1 if model == "UM.FS" else 1
        if model == "UM.FS":
            extra["study_intercepts"] = alpha_fe
    else:
        tau0 = max(0.1, math.sqrt(_dl_tau2(a, n1, c, n2)))
        if model == "UM.FS":
            lik_u = _UMFS(a, n1, c, n2, n_agq)
            alpha, beta, tau, ll, S, converged = lik_u.fit(alpha_fe, beta_fe, tau0)
            ll += float(lik_u.const.sum())
        else:
            fun = lambda bb, tt: float(lik.study_loglik(bb, tt).sum())  # noqa: E731
            (beta, tau), ll, S, converged = _newton_2d(fun, np.array([beta_fe, tau0]))
        if tau < 1e-6 or ll_fe >= ll - 1e-10:  # maximum at the boundary tau = 0
            beta, tau, ll, se, converged = beta_fe, 0.0, ll_fe, se_fe, True
            if model == "UM.FS":
                alpha = alpha_fe
        else:
            try:
                cov = np.linalg.inv(-S)
                se = math.sqrt(cov[0, 0]) if cov[0, 0] > 0 else float("nan")
            except np.linalg.LinAlgError:
                se = float("nan")
        if not np.isfinite(se):
            converged = False
            warnings.warn("the observed information of the log odds ratio is not positive definite; SE is NaN",
                          GLMMWarning, stacklevel=2)
        tau2 = tau * tau
        parms = (k + 2) if model == "UM.FS" else 2
        if model == "UM.FS":
            extra["study_intercepts"] = np.asarray(alpha).copy()
            llc = lik_u.conditional_loglik(np.asarray(alpha), beta, tau) if tau > 0 else ll
            extra["loglik_conditional"] = llc
            extra["aic_conditional"] = -2 * llc + 2 * parms
            extra["bic_conditional"] = -2 * llc + parms * math.log(2 * k)
    n_obs = 2 * k if model == "UM.FS" else k
    crit = _crit(level, test, k)
    zval = beta / se
    if test == "t":
        pval = float(2 * stats.t.sf(abs(zval), max(k - 1, 1)))
    else:
        pval = float(2 * stats.norm.sf(abs(zval)))
    vt = _i2_vt(a, n1, c, n2)
    i2 = 100 * tau2 / (vt + tau2) if method == "ML" else 0.0
    h2 = tau2 / vt + 1 if method == "ML" else 1.0
    if not converged:
        warnings.warn("the likelihood maximisation did not report convergence", GLMMWarning, stacklevel=2)
    return GLMMResult(
        estimate=beta, se=se, zval=float(zval), pvalue=pval, ci_low=beta - crit * se, ci_high=beta + crit * se,
        tau2=float(tau2), i2=float(i2), h2=float(h2), loglik=float(ll), deviance=float(-2 * (ll - ll_sat)),
        aic=float(-2 * ll + 2 * parms), bic=float(-2 * ll + parms * math.log(n_obs)),
        qe_wald=qe_wald, qe_wald_pvalue=qe_wald_p, qe_lrt=qe_lrt, qe_lrt_pvalue=qe_lrt_p, qe_df=qe_df,
        k=k, model=model, method=method, n_agq=n_agq, test=test, level=level, converged=bool(converged),
        labels=labs, dropped=dropped, extra=extra,
    )
