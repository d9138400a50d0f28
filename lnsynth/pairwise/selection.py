"""Selection models for publication bias (metafor ``selmodel``).

:func:`selection_model` fits, to a pairwise inverse-variance fit, the selection models of
metafor's ``selmodel()``: the step function of Vevea & Hedges (1995) (``type="step"``) and
the continuous selection functions ``"beta"`` (Citkowicz & Vevea 2017), ``"halfnorm"``,
``"negexp"``, ``"logistic"`` and ``"power"`` (Preston et al. 2004), with metafor's
parametrisations.  Each study's one-sided (or two-sided) p-value ``p_i`` enters a weight
function ``w(p; delta)``; the weighted likelihood

.. math:: \\ell = \\sum_i \\log w(p_i) + \\log\\phi(y_i; \\mu, v_i + \\tau^2) - \\log A_i, \\qquad
          A_i = \\int w(p(y))\\,\\phi(y; \\mu, v_i+\\tau^2)\\,dy

is maximised in :math:`(\\mu, \\tau^2, \\delta)` (``tau2`` fixed at 0 for a fixed-effect fit,
at its value for a fit with fixed tau2; a random-effects fit by any other estimator is
refitted by ML first, as metafor does).  For the step function :math:`A_i` is a sum of normal
probabilities; for the continuous types it is computed by composite Gauss-Legendre
quadrature on panels split at the kinks of the weight function and graded where p(y) changes
(relative error below 1e-10 against scipy.integrate.quad at 1e-13).  Estimation:
bounded damped Newton iterations from three starts (metafor's and two others), with L-BFGS-B
as fallback; derivatives analytic for the step function, finite differences otherwise.
Standard errors: inverse Hessian of :math:`-\\ell` on the natural scale (as metafor): exact for
the step function, else central differences with Richardson extrapolation (step ``0.1|x|``,
6 halvings: numDeriv's defaults as metafor calls them).  ``LRT`` compares with the model
without selection (ML), ``LRT_tau2`` tests tau2 = 0 under the selection model.

References
----------
Vevea JL, Hedges LV (1995). A general linear model for estimating effect size in the presence
of publication bias. Psychometrika 60:419-435.
Citkowicz M, Vevea JL (2017). A parsimonious weight function for modeling publication bias.
Psychological Methods 22:28-41.
Preston C, Ashby D, Smyth R (2004). Adjusting for publication bias: modelling the selection
process. J Eval Clin Pract 10:313-322.
Viechtbauer W. metafor: ``selmodel`` -- Selection Models (reference manual, version 3.8).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import optimize, special

from ..stats import normalize_level
from .results import _fmtp

__all__ = ["selection_model", "SelectionModelResult", "SELECTION_TYPES"]

SELECTION_TYPES = ("step", "beta", "halfnorm", "negexp", "logistic", "power")
_ALTERNATIVES = ("greater", "less", "two.sided")
_DEFAULT_STEPS = (0.025,)
_EPS10 = 10.0 * np.finfo(float).eps
# Gauss-Legendre nodes on [0, 1] for the panels of the continuous-type integrals
_GL_X, _GL_W = np.polynomial.legendre.leggauss(10)
_GL_X = 0.5 * (_GL_X + 1.0)
_GL_W = 0.5 * _GL_W
_ZLIM = 12.0  # integrate z = (y - mu) / sigma over [-12, 12] (weights are bounded by 1e5)
_PANELS = np.linspace(-_ZLIM, _ZLIM, 13)
_YPANELS = np.linspace(-8.0, 8.0, 17)  # in units of sqrt(vi) around y = 0, where p(y) changes

# per type: number of deltas, lower/upper bound, start, null value (metafor's settings)
_SPEC = {
    "beta": dict(n=2, lo=1e-5, hi=100.0, init=1.0, null=1.0, pmin=1e-5),
    "halfnorm": dict(n=1, lo=0.0, hi=100.0, init=1.0, null=0.0, pmin=0.0),
    "negexp": dict(n=1, lo=0.0, hi=100.0, init=1.0, null=0.0, pmin=0.0),
    "logistic": dict(n=1, lo=0.0, hi=100.0, init=1.0, null=0.0, pmin=0.0),
    "power": dict(n=1, lo=0.0, hi=100.0, init=1.0, null=0.0, pmin=1e-5),
}


def _pvalues(y, sd, alternative):
    z = y / sd
    if alternative == "greater":
        return special.ndtr(-z)
    if alternative == "less":
        return special.ndtr(z)
    return 2.0 * special.ndtr(-np.abs(z))


def _weight(kind, p, delta, s):
    """Selection weight w(p) of a continuous type (metafor's parametrisation; s = steps[0])."""
    if kind == "beta":
        return p ** (delta[0] - 1.0) * (1.0 - p) ** (delta[1] - 1.0)
    d = delta[0]
    if kind == "halfnorm":
        w = np.exp(-d * (p * p - s * s))
    elif kind == "negexp":
        w = np.exp(-d * (p - s))
    elif kind == "logistic":
        w = (np.exp(-d * p) / (1.0 + np.exp(-d * p))) / (np.exp(-d * s) / (1.0 + np.exp(-d * s)))
    else:  # power
        w = (1.0 - p) ** d / (1.0 - s) ** d
    return np.where(p <= s, 1.0, w)


class _Model:
    """Negative log-likelihood of one selection model on natural-scale (mu, tau2, delta)."""

    def __init__(self, y, v, kind, steps, alternative):
        self.y, self.v, self.sd = y, v, np.sqrt(v)
        self.kind, self.alt = kind, alternative
        self.steps = steps
        if kind == "step":
            self.pmin = 0.0
            p = _pvalues(y, self.sd, alternative)
            self.pgrp = np.searchsorted(steps, p, side="left")  # first j with p <= steps[j]
            self.cnt = np.bincount(self.pgrp, minlength=len(steps))
            q = np.concatenate([[0.0], steps])
            if alternative == "two.sided":
                self.cut = self.sd[:, None] * special.ndtri(1.0 - q[None, :] / 2.0)  # |y| >= cut
            else:
                self.cut = self.sd[:, None] * special.ndtri(q[None, :])
        else:
            spec = _SPEC[kind]
            self.pmin = spec["pmin"]
            self.s = float(steps[0]) if steps is not None else 0.0
            self.pobs = np.clip(_pvalues(y, self.sd, alternative), self.pmin, 1.0 - self.pmin)
            kinks = [pk for pk in (self.pmin, 1.0 - self.pmin, self.s) if 0.0 < pk < 1.0]
            if alternative == "two.sided":
                ys = [self.sd * special.ndtri(1.0 - pk / 2.0) for pk in kinks]
                # two-sided p-values reach 1 at y = 0 like 1 - c|y|: grade the panels towards 0
                graded = [self.sd * 4.0 ** -j for j in range(1, 10)]
                self.ykinks = np.stack([*ys, *[-a for a in ys], *graded, *[-a for a in graded],
                                        np.zeros_like(y)], axis=1)
            else:
                sgn = -1.0 if alternative == "greater" else 1.0
                self.ykinks = (np.stack([sgn * self.sd * special.ndtri(pk) for pk in kinks], axis=1)
                               if kinks else np.empty((len(y), 0)))

    def nll(self, mu, tau2, delta):
        y, v = self.y, self.v
        if tau2 < _EPS10:
            tau2 = 0.0  # as metafor's likelihood
        s2 = v + tau2
        if np.any(s2 <= 0):
            return np.inf
        sig = np.sqrt(s2)
        lphi = -0.5 * (np.log(2.0 * np.pi * s2) + (y - mu) ** 2 / s2)
        if self.kind == "step":
            if self.alt == "greater":
                S = special.ndtr((mu + self.cut) / sig[:, None])
            elif self.alt == "less":
                S = special.ndtr((self.cut - mu) / sig[:, None])
            else:
                S = special.ndtr((mu - self.cut) / sig[:, None]) + special.ndtr((-self.cut - mu) / sig[:, None])
            A = np.diff(S, axis=1) @ delta
            with np.errstate(divide="ignore", invalid="ignore"):
                val = np.log(delta[self.pgrp]) + lphi - np.log(A)
        else:
            A = self._integral(mu, sig, delta)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                val = np.log(_weight(self.kind, self.pobs, delta, self.s)) + lphi - np.log(A)
        tot = float(np.sum(val))
        return -tot if np.isfinite(tot) else np.inf

    def step_derivs(self, mu, tau2, delta):
        """Type "step": -ll, its gradient and Hessian in (mu, tau2, delta_1..delta_N), analytically."""
        y, v = self.y, self.v
        s2 = v + (tau2 if tau2 >= _EPS10 else 0.0)
        sig = np.sqrt(s2)
        r = y - mu
        n = len(delta)
        ci = self.cut[:, 1:n]  # interior cut points (p = steps[0..N-2])
        sg_, s2_ = sig[:, None], s2[:, None]
        hs2 = 0.5 / s2_
        if self.alt == "two.sided":
            terms = ((-ci, 1.0), (-ci, -1.0))
        else:
            terms = ((ci, 1.0 if self.alt == "greater" else -1.0),)
        S = Sm = St = Smm = Smt = Stt = 0.0
        for c, sgn in terms:
            a = (c + sgn * mu) / sg_
            ph = np.exp(-0.5 * a * a) * 0.3989422804014327
            am = sgn / sg_
            at = -a * hs2
            aph = a * ph
            S = S + special.ndtr(a)
            Sm = Sm + ph * am
            St = St + ph * at
            Smm = Smm - aph * am * am
            Smt = Smt - aph * am * at - ph * am * hs2
            Stt = Stt - aph * at * at + 3.0 * aph * hs2 * hs2
        dd = delta[:-1] - delta[1:]
        A = delta[-1] + S @ dd
        iA = 1.0 / A
        Am, At = (Sm @ dd) * iA, (St @ dd) * iA  # derivatives of A, divided by A
        Amm, Amt, Att = (Smm @ dd) * iA, (Smt @ dd) * iA, (Stt @ dd) * iA
        k = len(y)
        P = np.empty((k, n))
        P[:, 0] = S[:, 0]
        P[:, 1:-1] = S[:, 1:] - S[:, :-1]
        P[:, -1] = 1.0 - S[:, -1]
        P *= iA[:, None]
        Pm = np.empty((k, n))
        Pt = np.empty((k, n))
        Pm[:, 0], Pt[:, 0] = Sm[:, 0], St[:, 0]
        Pm[:, 1:-1], Pt[:, 1:-1] = Sm[:, 1:] - Sm[:, :-1], St[:, 1:] - St[:, :-1]
        Pm[:, -1], Pt[:, -1] = -Sm[:, -1], -St[:, -1]
        cnt = self.cnt
        is2 = 1.0 / s2
        rr = r * r * is2
        g = np.empty(2 + n)
        H = np.empty((2 + n, 2 + n))
        g[0] = (r * is2 - Am).sum()
        g[1] = (0.5 * is2 * (rr - 1.0) - At).sum()
        g[2:] = cnt / delta - P.sum(axis=0)
        H[0, 0] = (-is2 - Amm + Am * Am).sum()
        H[0, 1] = H[1, 0] = (-r * is2 * is2 - Amt + Am * At).sum()
        H[1, 1] = (is2 * is2 * (0.5 - rr) - Att + At * At).sum()
        H[0, 2:] = H[2:, 0] = (P * Am[:, None] - Pm * iA[:, None]).sum(axis=0)
        H[1, 2:] = H[2:, 1] = (P * At[:, None] - Pt * iA[:, None]).sum(axis=0)
        H[2:, 2:] = P.T @ P - np.diag(cnt / delta ** 2)
        ll = float((np.log(delta[self.pgrp]) - 0.5 * np.log(2.0 * np.pi * s2) - 0.5 * rr + np.log(iA)).sum())
        return (-ll if np.isfinite(ll) else np.inf), -g, -H

    def _integral(self, mu, sig, delta):
        yb = np.concatenate([self.ykinks, self.sd[:, None] * _YPANELS], axis=1)
        zk = np.clip((yb - mu) / sig[:, None], -_ZLIM, _ZLIM)
        br = np.sort(np.concatenate([np.broadcast_to(_PANELS, (len(sig), len(_PANELS))), zk], axis=1), axis=1)
        a, w = br[:, :-1], np.diff(br, axis=1)
        z = a[:, :, None] + w[:, :, None] * _GL_X  # (k, panels, nodes)
        yv = mu + sig[:, None, None] * z
        p = np.clip(_pvalues(yv, self.sd[:, None, None], self.alt), self.pmin, 1.0 - self.pmin)
        with np.errstate(over="ignore", invalid="ignore"):
            f = _weight(self.kind, p, delta, self.s) * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        return np.einsum("kpn,kp,n->k", f, w, _GL_W)


def _ml_fit(y, v, tau2_fixed):
    """ML (or fixed-tau2) normal-normal fit: (mu, tau2, loglik)."""
    def mu_of(t):
        w = 1.0 / (v + t)
        return float(np.sum(w * y) / np.sum(w))

    if tau2_fixed is not None:
        t = float(tau2_fixed)
    else:
        t = max(0.0, float(np.var(y) - np.mean(v)))
        for _ in range(500):  # Newton on the profile log-likelihood, Fisher scoring where not concave
            w = 1.0 / (v + t)
            sw = np.sum(w)
            mu = np.sum(w * y) / sw
            r = y - mu
            w2 = w * w
            score = 0.5 * (np.sum(w2 * r * r) - sw)
            hess = 0.5 * np.sum(w2) - np.sum(w2 * w * r * r) + np.sum(w2 * r) ** 2 / sw
            step = -score / hess if hess < 0 else score / (0.5 * np.sum(w2))
            t_new = max(0.0, t + step)
            if abs(t_new - t) <= 1e-15 * max(1.0, t):
                t = t_new
                break
            t = t_new
    mu = mu_of(t)
    ll = -0.5 * float(np.sum(np.log(2.0 * np.pi * (v + t)) + (y - mu) ** 2 / (v + t)))
    return mu, t, ll


def _hessian(f, x, d=0.1, eps=1e-4, r=6, vv=2.0):
    """Hessian of f at x by central differences with Richardson extrapolation (numDeriv-style)."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    zero_tol = math.sqrt(np.finfo(float).eps / 7e-7)
    h0 = np.abs(d * x) + eps * (np.abs(x) < zero_tol)
    f0 = f(x)

    def extrap(vals):
        vals = list(vals)
        for m in range(1, r):
            c = 4.0 ** m
            vals = [(vals[j + 1] * c - vals[j]) / (c - 1.0) for j in range(len(vals) - 1)]
        return vals[0]

    H = np.zeros((n, n))
    for i in range(n):
        seq = []
        for m in range(r):
            h = h0[i] / vv ** m
            e = np.zeros(n)
            e[i] = h
            seq.append((f(x + e) - 2.0 * f0 + f(x - e)) / (h * h))
        H[i, i] = extrap(seq)
    for i in range(n):
        for j in range(i):
            seq = []
            for m in range(r):
                hi, hj = h0[i] / vv ** m, h0[j] / vv ** m
                e = np.zeros(n)
                e[i], e[j] = hi, hj
                val = (f(x + e) - 2.0 * f0 + f(x - e) - H[i, i] * hi * hi - H[j, j] * hj * hj) / (2.0 * hi * hj)
                seq.append(val)
            H[i, j] = H[j, i] = extrap(seq)
    return H


@dataclass(frozen=True)
class SelectionModelResult:
    """A fitted selection model (metafor ``selmodel`` equivalent, intercept only).

    ``estimate``/``se`` are mu and its standard error; ``tau2`` (0 for a fixed-effect input);
    ``delta`` the selection parameters (type "step": one per interval, ``delta[0]`` fixed at 1);
    ``LRT``/``LRTp`` the likelihood-ratio test of selection (``LRTdf`` degrees of freedom);
    ``LRT_tau2``/``LRTp_tau2`` the test of tau2 = 0 under the model (NaN when tau2 is not
    estimated); ``steps`` the interval bounds (ending with 1 for type "step").
    """

    estimate: float
    se: float
    zval: float
    pvalue: float
    ci_low: float
    ci_high: float
    tau2: float
    se_tau2: float
    delta: np.ndarray
    se_delta: np.ndarray
    delta_ci_low: np.ndarray
    delta_ci_high: np.ndarray
    LRT: float
    LRTdf: int
    LRTp: float
    LRT_tau2: float
    LRTp_tau2: float
    ll: float
    ll0: float
    k: int
    steps: tuple
    type: str
    alternative: str
    method: str
    level: float
    converged: bool
    ptable: tuple | None = None
    measure: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Statistics as Python scalars (``delta``/``se_delta`` as lists)."""
        out = {key: float(getattr(self, key)) for key in
               ("estimate", "se", "zval", "pvalue", "ci_low", "ci_high", "tau2", "se_tau2", "LRT", "LRTp",
                "LRT_tau2", "LRTp_tau2", "ll", "ll0")}
        out.update(delta=[float(x) for x in self.delta], se_delta=[float(x) for x in self.se_delta],
                   LRTdf=int(self.LRTdf), k=int(self.k), steps=list(self.steps), type=self.type,
                   alternative=self.alternative)
        return out

    def conf_int(self, level: float | None = None) -> tuple[float, float]:
        """Wald CI of mu at ``level`` (default: the fit's level)."""
        lev = normalize_level(level, self.level)
        crit = float(special.ndtri(1.0 - (1.0 - lev) / 2.0))
        return float(self.estimate - crit * self.se), float(self.estimate + crit * self.se)

    def to_frame(self):
        """One-row DataFrame of the scalar statistics plus ``delta_1..delta_m``."""
        import pandas as pd

        d = self.to_dict()
        row = {key: val for key, val in d.items() if not isinstance(val, list)}
        for j, (dv, ds) in enumerate(zip(self.delta, self.se_delta), start=1):
            row[f"delta_{j}"], row[f"se_delta_{j}"] = float(dv), float(ds)
        row["steps"] = ",".join(f"{s:g}" for s in self.steps)
        return pd.DataFrame([row])

    def summary(self, digits: int = 4) -> str:
        f = f"{{:.{digits}f}}"
        fixed = self.method == "FE"
        lines = [f"{'Fixed' if fixed else 'Random'}-Effects Model (k = {self.k}; tau^2 estimator: "
                 f"{'FE' if fixed else 'ML'})",
                 f"Selection model: {self.type} (alternative: {self.alternative}"
                 + (f"; steps: {', '.join(f'{s:g}' for s in self.steps)})" if self.steps else ")"), ""]
        if not fixed:
            if self.extra.get("tau2_fixed"):
                lines.append(f"tau^2 (specified (fixed) amount of heterogeneity): {f.format(self.tau2)}")
            else:
                lines.append(f"tau^2 (estimated amount of total heterogeneity): {f.format(self.tau2)} "
                             f"(SE = {f.format(self.se_tau2)})")
            if np.isfinite(self.LRT_tau2):
                lines.append(f"Test for heterogeneity: LRT(df = 1) = {f.format(self.LRT_tau2)}, "
                             f"p-val = {_fmtp(self.LRTp_tau2)}")
        lines.append(f"Test for selection model parameters: LRT(df = {self.LRTdf}) = {f.format(self.LRT)}, "
                     f"p-val = {_fmtp(self.LRTp)}")
        lines += ["", "Model results:", "estimate      se     zval    pval    ci.lb    ci.ub",
                  f"{f.format(self.estimate)}  {f.format(self.se)}  {self.zval:.4f}  {_fmtp(self.pvalue)}  "
                  f"{f.format(self.ci_low)}  {f.format(self.ci_high)}", "", "Selection model parameters:"]
        for j, (dv, ds, lo, hi) in enumerate(zip(self.delta, self.se_delta, self.delta_ci_low, self.delta_ci_high)):
            lab = f"delta.{j + 1}" if len(self.delta) > 1 else "delta"
            lines.append(f"{lab:<9}{f.format(dv)}  " + ("---" if not np.isfinite(ds) else
                                                        f"{f.format(ds)}  [{f.format(lo)}, {f.format(hi)}]"))
        if self.ptable is not None:
            lines.append("studies per p-value interval: " + ", ".join(str(int(n)) for n in self.ptable))
        if not self.converged:
            lines.append("WARNING: estimation did not converge.")
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()


def _input(result):
    method = getattr(result, "method", None)
    if method in ("MH", "PETO"):
        raise ValueError(f"result: selection models need an inverse-variance fit, got method {method!r}")
    if getattr(result, "yi", None) is None or getattr(result, "vi", None) is None or method is None:
        raise ValueError("result: expected a pairwise MetaResult (from lnsynth.pairwise.meta_analysis)")
    if np.ndim(getattr(result, "estimate", 0.0)) != 0:
        raise ValueError("result: pass a single fitted model, not a batch (index it: res[i])")
    if getattr(result, "X", None) is not None and np.shape(result.X)[1] > 1:
        raise ValueError("result: meta-regression models are not supported (intercept-only fits only)")
    y = np.asarray(result.yi, dtype=float)
    v = np.asarray(result.vi, dtype=float)
    if y.ndim != 1 or y.shape != v.shape or not np.all(np.isfinite(y)) or not np.all(np.isfinite(v)):
        raise ValueError("result: yi and vi must be finite 1-D arrays of equal length")
    if np.any(v <= 0):
        raise ValueError("result: cannot fit a selection model when a sampling variance vi is <= 0")
    return y, v, method


def selection_model(result, type: str = "step", steps: Sequence[float] | None = _DEFAULT_STEPS,
                    alternative: str = "greater", level: float | None = None) -> SelectionModelResult:
    """Fit a selection model to a pairwise meta-analysis, as metafor's ``selmodel()``.

    Parameters
    ----------
    result : MetaResult
        A single fit of :func:`lnsynth.pairwise.meta_analysis` by an inverse-variance method.
        ``FE``: tau2 is fixed at 0; a fit with fixed ``tau2``: tau2 stays fixed; any other
        estimator: the model is refitted by ML (as metafor).
    type : {"step", "beta", "halfnorm", "negexp", "logistic", "power"}
        ``"step"`` (alias ``"stepfun"``): weights ``delta_j`` constant on the p-value
        intervals ``(steps[j-1], steps[j]]`` with ``delta_1 = 1``; ``"beta"``:
        ``p^(d1-1) (1-p)^(d2-1)``; ``"halfnorm"``: ``exp(-d p^2)``; ``"negexp"``:
        ``exp(-d p)``; ``"logistic"``: ``2 exp(-d p) / (1 + exp(-d p))``; ``"power"``:
        ``(1-p)^d`` (each relative to its value at ``steps[0]`` and 1 below it).
    steps : sequence of float
        Type "step": interval bounds in (0, 1] (1 is appended; default ``(0.025,)``).  The
        one-parameter continuous types accept one value (the p-value below which the weight is
        1; default 0); "beta" ignores it (with a warning when given).
    alternative : {"greater", "less", "two.sided"}
        How the p-values are computed from ``yi / sqrt(vi)`` (metafor's default "greater").
    level : float, optional
        Confidence level of the Wald intervals (default: the fit's level).

    Returns
    -------
    SelectionModelResult

    References
    ----------
    Vevea JL, Hedges LV (1995). Psychometrika 60:419-435.
    Citkowicz M, Vevea JL (2017). Psychological Methods 22:28-41.
    Preston C, Ashby D, Smyth R (2004). J Eval Clin Pract 10:313-322.
    Viechtbauer W. metafor reference manual, ``selmodel`` (version 3.8).

    Examples
    --------
    >>> import numpy as np
    >>> from lnsynth.pairwise import meta_analysis
    >>> yi = np.array([0.05, 0.41, 0.19, 0.62, -0.12, 0.33, 0.71, 0.08, 0.27, 0.55, -0.03, 0.44])
    >>> vi = np.array([0.04, 0.03, 0.02, 0.09, 0.05, 0.01, 0.12, 0.02, 0.03, 0.06, 0.04, 0.05])
    >>> sel = selection_model(meta_analysis(yi=yi, vi=vi), type="step", steps=(0.025,))
    >>> sel.steps, sel.k, len(sel.delta), float(sel.delta[0])
    ((0.025, 1.0), 12, 2, 1.0)
    >>> bool(sel.se > 0) and sel.LRTdf == 1
    True
    """
    y, v, method = _input(result)
    if not isinstance(type, str):
        raise ValueError(f"type: expected one of {', '.join(SELECTION_TYPES)}, got {type!r}")
    kind = "step" if type.lower() in ("step", "stepfun") else type.lower()
    if kind not in SELECTION_TYPES:
        raise ValueError(f"type: unknown selection model {type!r}; valid: {', '.join(SELECTION_TYPES)}")
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative: expected one of {', '.join(_ALTERNATIVES)}, got {alternative!r}")
    lev = normalize_level(level, float(getattr(result, "level", 0.95)))
    given = steps is not _DEFAULT_STEPS
    st = None
    if steps is not None and (kind == "step" or given):
        arr = np.atleast_1d(np.asarray(steps, dtype=float))
        if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
            raise ValueError(f"steps: expected finite p-value cut points, got {steps!r}")
        if np.any((arr <= 0.0) | (arr > 1.0)):
            raise ValueError(f"steps: every cut point must lie in (0, 1] (1 may be given), got {list(arr)}")
        st = np.unique(arr)
    if kind == "step":
        if st is None:
            raise ValueError("steps: type 'step' needs the p-value cut points")
        if st[-1] != 1.0:
            st = np.append(st, 1.0)
        if st.size < 2:
            raise ValueError("steps: give at least one cut point below 1")
    elif kind == "beta" and st is not None:
        warnings.warn("steps ignored: not applicable to the beta selection model", UserWarning, stacklevel=2)
        st = None
    elif st is not None and st.size != 1:
        raise ValueError(f"steps: the {kind} selection model takes a single value, got {list(st)}")

    k = len(y)
    fixed_tau2 = 0.0 if method == "FE" else (float(result.tau2) if result.extra.get("tau2_fixed") else None)
    mu0, t0, ll0 = _ml_fit(y, v, fixed_tau2)
    model = _Model(y, v, kind, st, alternative)
    if kind == "step":
        nd, lo, hi, dinit, dnull = len(st), 0.0, 100.0, 1.0, 1.0
        free_d = np.arange(1, nd)
        ptab = tuple(int(n) for n in np.bincount(model.pgrp, minlength=nd))
        if any(n == 0 for n in ptab):
            raise ValueError(f"steps: one or more p-value intervals contain no study (counts {list(ptab)}); "
                             "choose other cut points")
    else:
        spec = _SPEC[kind]
        nd, lo, hi, dinit, dnull = spec["n"], spec["lo"], spec["hi"], spec["init"], spec["null"]
        free_d = np.arange(nd)
        ptab = None
    est_tau2 = fixed_tau2 is None
    n_par = 1 + int(est_tau2) + len(free_d)
    if k < n_par:
        raise ValueError(f"result: number of studies (k={k}) is too small to fit the selection model "
                         f"({n_par} parameters)")

    def unpack(x, tau2_val=None):
        mu = x[0]
        tau2 = x[1] if est_tau2 and tau2_val is None else (fixed_tau2 if tau2_val is None else tau2_val)
        delta = np.full(nd, 1.0)
        delta[free_d] = x[1 + int(est_tau2 and tau2_val is None):]
        return mu, tau2, delta

    def fit(tau2_val=None, extra=None):
        has_t = est_tau2 and tau2_val is None
        bounds = [(None, None)] + ([(0.0, None)] if has_t else []) + [(lo, hi)] * len(free_d)

        def obj(x):
            return model.nll(*unpack(x, tau2_val))

        fgh = None
        if kind == "step":
            sel = [0] + ([1] if has_t else []) + [2 + j for j in free_d]

            def fgh(x):
                f, g, H = model.step_derivs(*unpack(x, tau2_val))
                return f, g[sel], H[np.ix_(sel, sel)]

        # metafor's start (ML estimates, tau2 + 0.001, delta init) and two others; the refit with
        # tau2 = 0 starts from metafor's start and from the full model's estimates
        pairs = [(dinit, t0 + 0.001), (0.5 if kind != "beta" else 0.7, 2.0 * t0 + 0.01), (2.0, t0 + 0.001)]
        starts = [np.array([mu0] + ([ts] if has_t else []) + [ds] * len(free_d))
                  for ds, ts in (pairs if extra is None else pairs[:1])]
        if extra is not None:
            starts.append(np.clip(extra, [b[0] if b[0] is not None else -np.inf for b in bounds],
                                  [b[1] if b[1] is not None else np.inf for b in bounds]))
        lob = np.array([-np.inf if b[0] is None else b[0] for b in bounds])
        hib = np.array([np.inf if b[1] is None else b[1] for b in bounds])
        best = None
        for x0 in starts:
            xs, fs, ok = _newton(obj, x0, lob, hib, fgh=fgh, known=None if best is None else best[:2])
            if not ok and np.isfinite(obj(x0)):  # fall back on L-BFGS-B, then Newton from its optimum
                r = optimize.minimize(obj, x0, method="L-BFGS-B", bounds=bounds,
                                      options=dict(ftol=1e-13, gtol=1e-9, maxiter=5000, maxls=50))
                xs, fs, ok = _newton(obj, r.x, lob, hib, fgh=fgh)
            if np.isfinite(fs) and (best is None or fs < best[1]):
                best = (xs, fs, ok)
        if best is None:
            raise ValueError("result: the selection-model likelihood is not finite at any starting value")
        return best

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x_hat, nll_hat, conv = fit()
    mu, tau2, delta = unpack(x_hat)
    if est_tau2 and tau2 < _EPS10:
        tau2 = 0.0
    ll = -nll_hat
    conv = bool(conv and np.isfinite(ll))
    # Hessian of -ll on the natural scale over the estimated parameters
    if kind == "step":  # exact Hessian (what metafor's numerical one approximates)
        sel_all = [0] + ([1] if est_tau2 else []) + [2 + j for j in free_d]
        H = model.step_derivs(mu, tau2, delta)[2][np.ix_(sel_all, sel_all)]
    else:
        H = _hessian(lambda x: model.nll(*unpack(x)), x_hat)
    se_all = np.full(n_par, np.nan)
    try:
        c = np.linalg.cholesky(H)
        iH = np.linalg.inv(c).T @ np.linalg.inv(c)
        se_all = np.sqrt(np.diag(iH))
    except np.linalg.LinAlgError:
        warnings.warn("could not invert the Hessian: standard errors are NaN", UserWarning, stacklevel=2)
    se = float(se_all[0])
    se_tau2 = float(se_all[1]) if est_tau2 else float("nan")
    se_delta = np.full(nd, np.nan)
    se_delta[free_d] = se_all[1 + int(est_tau2):]
    crit = float(special.ndtri(1.0 - (1.0 - lev) / 2.0))
    zval = mu / se
    dlo = np.where(np.isfinite(se_delta), np.maximum(delta - crit * se_delta, 0.0), np.nan)
    dhi = np.where(np.isfinite(se_delta), delta + crit * se_delta, np.nan)
    lrt_t, lrtp_t = float("nan"), float("nan")
    if est_tau2:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            _, nll0, _ = fit(tau2_val=0.0, extra=np.delete(x_hat, 1))
        lrt_t = max(0.0, -2.0 * (-nll0 - ll))
        lrtp_t = float(special.chdtrc(1, lrt_t))
    LRT = max(0.0, -2.0 * (ll0 - ll))
    dfree = len(free_d)
    if np.any(delta[free_d] <= lo + 1e-8) or np.any(delta[free_d] >= hi - 1e-6):
        warnings.warn("one or more delta estimates are (almost) at their bound; treat results with caution",
                      UserWarning, stacklevel=2)
    return SelectionModelResult(
        estimate=float(mu), se=se, zval=float(zval), pvalue=float(2.0 * special.ndtr(-abs(zval))),
        ci_low=float(mu - crit * se), ci_high=float(mu + crit * se), tau2=float(tau2), se_tau2=se_tau2,
        delta=delta, se_delta=se_delta, delta_ci_low=dlo, delta_ci_high=dhi, LRT=float(LRT), LRTdf=dfree,
        LRTp=float(special.chdtrc(dfree, LRT)), LRT_tau2=lrt_t, LRTp_tau2=lrtp_t, ll=float(ll), ll0=float(ll0),
        k=k, steps=tuple(float(s) for s in st) if st is not None else (), type=kind, alternative=alternative,
        method="FE" if method == "FE" else "ML", level=lev, converged=conv, ptable=ptab,
        measure=getattr(result, "measure", None),
        extra={"hessian": H, "delta_null": dnull, "input_method": method,
               "tau2_fixed": fixed_tau2 is not None and method != "FE"})


def _derivs(obj, x, f0, lo, hi):
    """Finite-difference gradient and Hessian of obj at x, one-sided next to a bound."""
    n = len(x)
    h = 1e-5 * np.maximum(np.abs(x), 1e-2)
    sgn = np.where(x + 2 * h <= hi, 1.0, -1.0)
    f1 = np.empty(n)
    g = np.empty(n)
    H = np.empty((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = h[i]
        if x[i] - h[i] >= lo[i] and x[i] + h[i] <= hi[i]:
            fp, fm = obj(x + e), obj(x - e)
            g[i] = (fp - fm) / (2 * h[i])
            H[i, i] = (fp - 2 * f0 + fm) / h[i] ** 2
            f1[i] = fp
            sgn[i] = 1.0
        else:
            s = sgn[i]
            fa, fb = obj(x + s * e), obj(x + 2 * s * e)
            g[i] = s * (-3 * f0 + 4 * fa - fb) / (2 * h[i])
            H[i, i] = (f0 - 2 * fa + fb) / h[i] ** 2
            f1[i] = fa
    for i in range(n):
        for j in range(i):
            e = np.zeros(n)
            e[i], e[j] = sgn[i] * h[i], sgn[j] * h[j]
            H[i, j] = H[j, i] = (obj(x + e) - f1[i] - f1[j] + f0) / (e[i] * e[j])
    return g, H


def _newton(obj, x, lo, hi, iters: int = 100, fgh=None, known=None):
    """Bounded damped Newton minimisation of obj; returns (x, f, converged).

    ``fgh(x)`` gives the value, gradient and Hessian together (default: obj and finite
    differences)."""
    x = np.clip(np.array(x, dtype=float), lo, hi)
    if fgh is None:
        f = obj(x)
    else:
        f, g, H = fgh(x)
    if not np.isfinite(f):
        return x, f, False
    for _ in range(iters):
        if fgh is None:
            g, H = _derivs(obj, x, f, lo, hi)
        if not (np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
            return x, f, False
        at_lo = (x <= lo) & (g > 0)
        at_hi = (x >= hi) & (g < 0)
        idx = np.flatnonzero(~(at_lo | at_hi))
        if idx.size == 0:
            return x, f, True
        gf, Hf = g[idx], H[np.ix_(idx, idx)]
        lam, U = np.linalg.eigh(Hf)
        lam = np.maximum(np.abs(lam), 1e-8 * max(1.0, np.max(np.abs(lam))))
        step = U @ ((U.T @ gf) / lam)
        if np.max(np.abs(step) / np.maximum(1.0, np.abs(x[idx]))) < (1e-11 if fgh is not None else 1e-9):
            return x, f, True
        t = 1.0
        slack = 1e-13 * abs(f) if fgh is not None else 0.0  # exact derivatives: accept rounding-level ties
        while True:
            xn = x.copy()
            xn[idx] = np.clip(x[idx] - t * step, lo[idx], hi[idx])
            if fgh is None:
                fn = obj(xn)
            else:
                fn, gn, Hn = fgh(xn)
            if fn <= f + slack or t < 1e-10:
                break
            t /= 2
        if not fn <= f + slack:
            return x, f, bool(np.max(np.abs(gf)) < 1e-6)
        dx = np.max(np.abs(xn - x) / np.maximum(1.0, np.abs(x)))
        x, f = xn, fn
        if fgh is not None:
            g, H = gn, Hn
        if known is not None and np.all(np.abs(x - known[0]) <= 1e-5 * (1.0 + np.abs(known[0]))):
            return known[0], known[1], True  # inside the basin of an optimum already found
        if dx < 1e-11:
            return x, f, True
    return x, f, False
