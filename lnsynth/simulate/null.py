"""Built-in meta-analytic null for simulator validation: random-effects pooling without any mechanism.

For a row to predict (trial, arm, endpoint family, regimen class), the null pools the calibration rows of the
OTHER trials with the same endpoint family and regimen class (one row per trial arm: the one nearest in time),
by a random-effects meta-analysis of logit proportions (REML, :func:`lnsynth.pairwise.meta_analysis`)::

    y_i = logit((x_i + 0.5) / (n_i + 1)),  v_i = 1/(x_i + 0.5) + 1/(n_i - x_i + 0.5)

and predicts a new arm's logit probability as N(mu, se(mu)^2 + tau^2) (the predictive distribution of a new
study's true effect, Higgins, Thompson & Spiegelhalter 2009); the count is Binomial(n, p) mixed over it
(Gauss-Hermite quadrature). With fewer than ``min_arms`` arms of the class, the class restriction is dropped.
Flare rates (events over person-time) are pooled the same way on the log-rate scale,
y = log((x + 0.5) / PY), v = 1/(x + 0.5), and the count is Poisson mixed over the predictive distribution.
The rule is frozen in ``params/validation.yaml`` (``meta_null:``).

References
----------
Higgins JPT, Thompson SG, Spiegelhalter DJ. A re-evaluation of random-effects meta-analysis. J R Stat Soc A
2009;172:137-159.
Viechtbauer W. Bias and efficiency of meta-analytic variance estimators in the random-effects model. J Educ
Behav Stat 2005;30:261-293 (REML).

Examples
--------
>>> from lnsynth.simulate.calibrate import targets
>>> tg = targets()
>>> pmf, info = null_pmf(tg[0], tg)
>>> round(float(pmf.sum()), 6)
1.0
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import expit


def _pool(target, pool, min_arms: int):
    cand = [t for t in pool if t.trial != target.trial and t.family == target.family and t.kind == target.kind]

    def one_per_arm(rows):
        best: dict = {}
        for t in rows:
            key = (t.trial, t.arm)
            dt = abs((t.week or 0.0) - (target.week or 0.0))
            if key not in best or dt < best[key][0]:
                best[key] = (dt, t)
        return [v[1] for v in best.values()]

    same = one_per_arm([t for t in cand if t.regimen_class == target.regimen_class])
    if len(same) >= min_arms:
        return same, f"same family and class ({target.regimen_class})"
    allc = one_per_arm(cand)
    return allc, "same family, any class (fewer than %d arms of class %s)" % (min_arms, target.regimen_class)


def null_fit(target, pool, min_arms: int = 2, method: str = "REML") -> dict | None:
    """Random-effects fit of the pool for ``target``: dict(mu, se, tau2, k, rule, arms) or None (no arm)."""
    from lnsynth.pairwise import meta_analysis

    rows, rule = _pool(target, pool, min_arms)
    if not rows:
        return None
    x = np.array([t.events for t in rows], float)
    n = np.array([t.n for t in rows], float)
    if target.kind == "rate":
        py = np.array([t.n * t.exposure_years for t in rows], float)
        yi = np.log((x + 0.5) / py)
        vi = 1.0 / (x + 0.5)
    else:
        yi = np.log((x + 0.5) / (n - x + 0.5))
        vi = 1.0 / (x + 0.5) + 1.0 / (n - x + 0.5)
    if len(rows) == 1:
        mu, se, tau2 = float(yi[0]), float(np.sqrt(vi[0])), 0.0
    else:
        r = meta_analysis(yi=yi, vi=vi, method=method, ci_tau2=False)
        mu, se, tau2 = float(r.estimate), float(r.se), float(r.tau2)
    return {"mu": mu, "se": se, "tau2": tau2, "k": len(rows), "rule": rule,
            "arms": [f"{t.trial}/{t.arm}" for t in rows]}


def null_pmf(target, pool, min_arms: int = 2, nodes: int = 40, method: str = "REML"):
    """Predictive pmf of the count of ``target`` under the null (array over 0..n for proportions, 0..xmax for
    rates) and the fit dict; (None, None) when no arm qualifies."""
    fit = null_fit(target, pool, min_arms, method)
    if fit is None:
        return None, None
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    theta = fit["mu"] + np.sqrt(fit["se"] ** 2 + fit["tau2"]) * z
    if target.kind == "rate":
        mu = np.exp(theta) * target.n * target.exposure_years
        hi = int(stats.poisson.ppf(1 - 1e-9, mu.max())) + 1
        xs = np.arange(max(hi, target.events) + 1)
        pmf = (w[:, None] * stats.poisson.pmf(xs[None, :], mu[:, None])).sum(0)
    else:
        xs = np.arange(target.n + 1)
        pmf = (w[:, None] * stats.binom.pmf(xs[None, :], target.n, expit(theta)[:, None])).sum(0)
    return pmf / pmf.sum(), fit
