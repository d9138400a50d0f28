r"""Firth-penalised logistic regression meta-analysis of 2x2 tables (rare events).

Common-effect model on the arm level with fixed study intercepts, as a logistic regression of
the arm events on study indicators and a treatment indicator (as ``logistf(cbind(events,
n - events) ~ study + treat)``, grouped-binomial form):

.. math::
    a_i \sim \mathrm{Bin}(n_{1i}, p_{1i}),\quad c_i \sim \mathrm{Bin}(n_{2i}, p_{2i}),\quad
    \operatorname{logit} p_{1i} = \alpha_i + \beta,\quad \operatorname{logit} p_{2i} = \alpha_i .

Firth's (1993) penalty :math:`\tfrac12\log|I(\theta)|` (Jeffreys prior) is added to the
binomial log-likelihood.  The penalised score for the grouped-binomial design is
(Heinze & Schemper 2002, eq. 2, with :math:`n_j` trials per row)

.. math:: U^*(\theta) = \sum_j x_j\,\{y_j - n_j p_j + h_j(\tfrac12 - p_j)\} = 0,

where :math:`h_j` are the diagonal elements of :math:`W^{1/2}X(X'WX)^{-1}X'W^{1/2}`,
:math:`W = \mathrm{diag}(n_j p_j(1-p_j))`.  It is solved by the modified Fisher scoring
iteration :math:`\theta \leftarrow \theta + I(\theta)^{-1}U^*(\theta)` with step-halving on the
penalised log-likelihood and a maximum step of 5 (as logistf) until :math:`\max|U^*| < 10^{-12}`.
The estimates are finite for any table with at least one event and one non-event overall, including
studies with zero cells and double-zero studies (which are kept: they inform the penalty only).

Inference: Wald (``se`` from :math:`I(\hat\theta)^{-1}`), and as logistf's default the profile
penalised likelihood CI of :math:`\beta` and the penalised likelihood-ratio test of
:math:`\beta = 0` (``pl_*``), where the restricted fits keep the full model's penalty
(Heinze & Schemper 2002, section 2.2).  With ``firth=False`` the same code gives ordinary
maximum likelihood (which diverges when a treatment arm has no events in any study).

Not verified against R's logistf (not installable here): the tests check the penalised score
equation at the solution (to 1e-10), the closed form for a single table (Firth = adding 1/2 to every
cell, Haldane's estimator), finiteness with zero cells and agreement with ML as counts grow.

References
----------
Firth D (1993). Bias reduction of maximum likelihood estimates. Biometrika 80:27-38.
Heinze G, Schemper M (2002). A solution to the problem of separation in logistic regression.
Stat Med 21:2409-2419.
Heinze G, Ploner M, Jiricka L, Steiner G (2023). logistf: Firth's bias-reduced logistic
regression. R package.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import chi2, norm

from lnsynth.effects import EffectSizeWarning, _prepare
from lnsynth.stats import DEFAULT_LEVEL, critical_value, normalize_level

__all__ = ["firth_core", "firth_meta_analysis", "FirthResult"]

_MAXIT = 200
_TOL = 1e-12
_MAXSTEP = 5.0


def _loglik(eta1, eta0, a, b, c, d):
    """Binomial log-likelihood (no binomial coefficients) of the arm rows, summed over studies."""
    lp1, lq1 = -np.logaddexp(0.0, -eta1), -np.logaddexp(0.0, eta1)
    lp0, lq0 = -np.logaddexp(0.0, -eta0), -np.logaddexp(0.0, eta0)
    return (a * lp1 + b * lq1 + c * lp0 + d * lq0).sum(-1)


def _pieces(alpha, beta, a, b, c, d, firth):
    """Information matrix, its inverse, penalised score and penalised log-likelihood (batched)."""
    G, k = alpha.shape
    eta1 = alpha + beta[:, None]
    eta0 = alpha
    p1 = 1.0 / (1.0 + np.exp(-eta1))
    p0 = 1.0 / (1.0 + np.exp(-eta0))
    n1, n0 = a + b, c + d
    w1 = n1 * p1 * (1 - p1)
    w0 = n0 * p0 * (1 - p0)
    info = np.zeros((G, k + 1, k + 1))
    ii = np.arange(k)
    info[:, ii, ii] = w1 + w0
    info[:, ii, k] = w1
    info[:, k, ii] = w1
    info[:, k, k] = w1.sum(-1)
    sign, logdet = np.linalg.slogdet(info)
    inv = np.linalg.inv(info)
    r1 = a - n1 * p1
    r0 = c - n0 * p0
    if firth:
        dia = inv[:, ii, ii]
        h1 = w1 * (dia + 2 * inv[:, ii, k] + inv[:, k, k][:, None])
        h0 = w0 * dia
        r1 = r1 + h1 * (0.5 - p1)
        r0 = r0 + h0 * (0.5 - p0)
    score = np.concatenate([r1 + r0, r1.sum(-1, keepdims=True)], axis=-1)
    pll = _loglik(eta1, eta0, a, b, c, d) + (0.5 * np.where(sign > 0, logdet, -np.inf) if firth else 0.0)
    return info, inv, score, pll


def _fit(a, b, c, d, firth, beta_fixed=None, alpha0=None):
    """Modified Fisher scoring for (alpha, beta); ``beta_fixed`` (G,) profiles alpha only."""
    G, k = a.shape
    alpha = np.log((c + 0.5) / (d + 0.5)) if alpha0 is None else alpha0.copy()
    beta = np.zeros(G) if beta_fixed is None else np.asarray(beta_fixed, float).copy()
    info, inv, score, pll = _pieces(alpha, beta, a, b, c, d, firth)
    conv = np.zeros(G, dtype=bool)
    for _ in range(_MAXIT):
        if beta_fixed is None:
            step = np.einsum("gij,gj->gi", inv, score)
            crit = np.abs(score).max(-1)
        else:
            step = np.zeros((G, k + 1))
            step[:, :k] = np.linalg.solve(info[:, :k, :k], score[:, :k, None])[..., 0]
            crit = np.abs(score[:, :k]).max(-1)
        conv = crit < _TOL
        if conv.all():
            break
        mx = np.abs(step).max(-1, keepdims=True)
        step = np.where(mx > _MAXSTEP, step * _MAXSTEP / mx, step)
        step = np.where(conv[:, None], 0.0, step)
        t = np.ones(G)
        for _ in range(30):
            na = alpha + t[:, None] * step[:, :k]
            nb = beta + t * step[:, k]
            info2, inv2, score2, pll2 = _pieces(na, nb, a, b, c, d, firth)
            ok = (pll2 >= pll - 1e-9 * np.maximum(1.0, np.abs(pll))) | (t < 1e-6)
            if ok.all():
                break
            t = np.where(ok, t, t / 2)
        alpha, beta, info, inv, score, pll = na, nb, info2, inv2, score2, pll2
    return alpha, beta, inv, score, pll, conv


def firth_core(ai: Any, bi: Any, ci: Any, di: Any, *, level: float = DEFAULT_LEVEL, firth: bool = True,
               profile: bool = True) -> dict[str, np.ndarray]:
    r"""Firth-penalised (or ML) fixed-study-intercept logistic meta-analysis of 2x2 tables, batched.

    Parameters
    ----------
    ai, bi, ci, di : array-like, shape (k,) or (B, k)
        Events / non-events under treatment, then control; a study NaN in all four cells is missing.
    level : float
        Confidence level.
    firth : bool
        Firth's penalty (default) or ordinary maximum likelihood.
    profile : bool
        Also compute the profile penalised likelihood CI and likelihood-ratio test (logistf's default).

    Returns
    -------
    dict of numpy.ndarray, each shape (B,)
        ``estimate`` (log OR), ``se``, ``zval``, ``pvalue``, ``ci_low``, ``ci_high`` (Wald), ``pl_ci_low``,
        ``pl_ci_high``, ``pl_chisq``, ``pl_pvalue`` (profile penalised likelihood; NaN with
        ``profile=False``), ``loglik`` (penalised), ``max_score`` (largest absolute penalised score at the
        solution), ``converged``, ``k``.

    References
    ----------
    Firth D (1993). Biometrika 80:27-38.  Heinze G, Schemper M (2002). Stat Med 21:2409-2419.

    Examples
    --------
    >>> out = firth_core([0], [20], [3], [17])          # one table: Haldane's 0.5 correction
    >>> round(float(out["estimate"][0]), 6) == round(float(np.log(0.5 * 17.5 / (20.5 * 3.5))), 6)
    True
    """
    level = normalize_level(level)
    arrs, present, _, _ = _prepare(dict(ai=ai, bi=bi, ci=ci, di=di), ("ai", "bi", "ci", "di"), None, "pooling")
    for name in ("ai", "bi", "ci", "di"):
        bad = present & ~(arrs[name] >= 0)
        if bad.any():
            bq, i = (int(j) for j in np.argwhere(bad)[0])
            raise ValueError(f"{name} must be a count >= 0 (analysis {bq}, study index {i})")
    for p, q, lab in (("ai", "bi", "n_treat"), ("ci", "di", "n_ctrl")):
        bad = present & (arrs[p] + arrs[q] <= 0)
        if bad.any():
            bq, i = (int(j) for j in np.argwhere(bad)[0])
            raise ValueError(f"{lab} must be > 0 (analysis {bq}, study index {i})")
    B = present.shape[0]
    keys = ("estimate", "se", "zval", "pvalue", "ci_low", "ci_high", "pl_ci_low", "pl_ci_high", "pl_chisq",
            "pl_pvalue", "loglik", "max_score")
    out = {key: np.full(B, np.nan) for key in keys}
    out["converged"] = np.zeros(B, dtype=bool)
    out["k"] = present.sum(-1).astype(np.int64)
    crit = critical_value(level)
    q = chi2.isf(1 - level, 1)
    patterns: dict[bytes, list[int]] = {}
    for r in range(B):
        patterns.setdefault(present[r].tobytes(), []).append(r)
    for rows in patterns.values():
        rows_a = np.array(rows)
        m = present[rows_a[0]]
        if not m.any():
            warnings.warn(f"no non-missing studies in analysis {rows}; results are NaN", EffectSizeWarning,
                          stacklevel=2)
            continue
        a, b, c, d = (arrs[n][np.ix_(rows_a, m)] for n in ("ai", "bi", "ci", "di"))
        ev, ne = (a + c).sum(-1), (b + d).sum(-1)
        okrow = (ev > 0) & (ne > 0)
        if not okrow.all():
            warnings.warn(f"no events (or no non-events) in any study of analysis {rows_a[~okrow].tolist()}; "
                          "the log odds ratio is not estimable (NaN)", EffectSizeWarning, stacklevel=2)
        if not okrow.any():
            continue
        rows_a, a, b, c, d = rows_a[okrow], a[okrow], b[okrow], c[okrow], d[okrow]
        alpha, beta, inv, score, pll, conv = _fit(a, b, c, d, firth)
        se = np.sqrt(inv[:, -1, -1])
        out["estimate"][rows_a] = beta
        out["se"][rows_a] = se
        out["zval"][rows_a] = beta / se
        out["pvalue"][rows_a] = 2 * norm.sf(np.abs(beta / se))
        out["ci_low"][rows_a] = beta - crit * se
        out["ci_high"][rows_a] = beta + crit * se
        out["loglik"][rows_a] = pll
        out["max_score"][rows_a] = np.abs(score).max(-1)
        out["converged"][rows_a] = conv & np.isfinite(beta)
        if not profile:
            continue
        chisq, lo_b, hi_b = _profile(a, b, c, d, firth, alpha, beta, se, pll, q)
        out["pl_chisq"][rows_a] = chisq
        out["pl_pvalue"][rows_a] = chi2.sf(chisq, 1)
        out["pl_ci_low"][rows_a] = lo_b
        out["pl_ci_high"][rows_a] = hi_b
    return out


def _profile(a, b, c, d, firth, alpha, beta, se, pll, q):
    """Penalised LR statistic for beta = 0 and the profile CI {beta: 2 (pl_max - pl(beta)) <= q}, batched.

    The bounds are bracketed by doubling outwards from the estimate and refined by the Illinois
    (modified regula falsi) method on ``dev(beta) - q`` to 1e-11 in beta.
    """
    G = a.shape[0]

    def dev(b0, mask):
        res = np.full(G, np.nan)
        if mask.any():
            sl = np.flatnonzero(mask)
            pl0 = _fit(a[sl], b[sl], c[sl], d[sl], firth, b0[sl], alpha[sl])[4]
            res[sl] = 2 * (pll[sl] - pl0)
        return res

    allm = np.ones(G, dtype=bool)
    chisq = np.maximum(dev(np.zeros(G), allm), 0.0)
    bounds = []
    for side in (-1.0, 1.0):
        width = np.maximum(np.where(np.isfinite(se), se, 1.0), 0.1)
        x0, f0 = beta.copy(), np.full(G, -q)
        x1 = beta + side * width
        f1 = dev(x1, allm) - q
        for _ in range(60):  # expand until the deviance passes q
            need = ~(f1 > 0) & (np.abs(x1 - beta) < 1e6)
            if not need.any():
                break
            x0 = np.where(need, x1, x0)
            f0 = np.where(need, f1, f0)
            x1 = np.where(need, beta + 2 * (x1 - beta), x1)
            f1 = np.where(need, dev(x1, need) - q, f1)
        found = f1 > 0
        for _ in range(200):
            active = found & (np.abs(x1 - x0) > 1e-11 * np.maximum(1.0, np.abs(x1))) & (np.abs(f1) > 1e-12)
            if not active.any():
                break
            xm = np.where(active, x1 - f1 * (x1 - x0) / np.where(f1 != f0, f1 - f0, 1.0), x1)
            fm = dev(xm, active) - q
            same = active & (np.sign(fm) == np.sign(f1))
            other = active & ~same
            # Illinois: halve the retained end's f when the same end is replaced twice
            f0 = np.where(same, f0 / 2, f0)
            x0, f0 = np.where(other, x1, x0), np.where(other, f1, f0)
            x1, f1 = np.where(active, xm, x1), np.where(active, fm, f1)
            exact = active & (fm == 0)
            x0 = np.where(exact, xm, x0)
        bounds.append(np.where(found, x1, np.nan))
    return chisq, bounds[0], bounds[1]


@dataclass(frozen=True)
class FirthResult:
    """Firth logistic meta-analysis of one set of 2x2 tables (log odds ratio scale)."""

    estimate: float
    se: float
    zval: float
    pvalue: float
    ci_low: float
    ci_high: float
    pl_ci_low: float
    pl_ci_high: float
    pl_chisq: float
    pl_pvalue: float
    loglik: float
    max_score: float
    converged: bool
    k: int
    level: float
    firth: bool = True
    measure: str = "OR"

    def conf_int(self, level: float | None = None) -> tuple[float, float]:
        """Wald CI of the log odds ratio at ``level`` (default: the fit's level)."""
        lev = normalize_level(level, self.level)
        z = critical_value(lev)
        return (self.estimate - z * self.se, self.estimate + z * self.se)

    def to_dict(self) -> dict[str, Any]:
        """Statistics as Python scalars."""
        d = {key: float(getattr(self, key)) for key in ("estimate", "se", "zval", "pvalue", "ci_low", "ci_high",
                                                          "pl_ci_low", "pl_ci_high", "pl_chisq", "pl_pvalue",
                                                          "loglik", "max_score", "level")}
        d.update(converged=bool(self.converged), k=int(self.k), firth=bool(self.firth), measure=self.measure)
        return d

    def to_frame(self):
        """One-row pandas DataFrame of :meth:`to_dict`."""
        import pandas as pd

        return pd.DataFrame([self.to_dict()])

    def summary(self) -> str:
        """Printable summary (log OR and OR with Wald and profile penalised likelihood CIs)."""
        kind = "Firth-penalised" if self.firth else "Maximum-likelihood"
        lev = f"{self.level * 100:g}%"
        return "\n".join([
            f"{kind} logistic meta-analysis (fixed study intercepts; k = {self.k})",
            f"log OR = {self.estimate:.4f} (SE {self.se:.4f}); OR = {np.exp(self.estimate):.4f}",
            f"Wald {lev} CI (OR): [{np.exp(self.ci_low):.4f}; {np.exp(self.ci_high):.4f}], p = {self.pvalue:.4g}",
            f"Profile penalised likelihood {lev} CI (OR): [{np.exp(self.pl_ci_low):.4f}; "
            f"{np.exp(self.pl_ci_high):.4f}], LR chi2 = {self.pl_chisq:.4f}, p = {self.pl_pvalue:.4g}",
        ])


def firth_meta_analysis(ai: Any, bi: Any, ci: Any, di: Any, *, level: float = DEFAULT_LEVEL, firth: bool = True,
                        profile: bool = True) -> FirthResult | list[FirthResult]:
    """Firth logistic meta-analysis of 2x2 tables; a list of results for 2-D (B, k) input.

    See :func:`firth_core` for the model, parameters and statistics.

    References
    ----------
    Firth D (1993). Biometrika 80:27-38.  Heinze G, Schemper M (2002). Stat Med 21:2409-2419.

    Examples
    --------
    >>> res = firth_meta_analysis([0, 1, 2], [50, 49, 58], [3, 4, 5], [47, 46, 55])
    >>> bool(res.estimate < 0 and np.isfinite(res.se))
    True
    """
    lev = normalize_level(level)
    out = firth_core(ai, bi, ci, di, level=lev, firth=firth, profile=profile)
    res = [FirthResult(**{key: (bool(v[i]) if key == "converged" else int(v[i]) if key == "k" else float(v[i]))
                          for key, v in out.items()}, level=lev, firth=firth) for i in range(len(out["k"]))]
    return res[0] if np.ndim(ai) == 1 else res
