"""Subgroup analysis with the test for subgroup differences.

Two models, as in metafor's documentation and the ``meta`` package:

* **separate tau^2** (``meta``'s default ``tau.common = FALSE``): a random-effects
  model in every subgroup (its own tau^2), then the subgroup estimates are
  compared with a fixed-effect model on them: ``Q_between = sum w_g (mu_g - mu)^2``,
  ``w_g = 1/SE_g^2``, chi-square(G - 1)  (metafor: ``rma(est, sei=se, mods=~grp,
  method="FE")`` -> QM, identical to the Q of ``rma(est, sei=se, method="FE")``).
* **common tau^2**: the meta-regression ``rma(yi, vi, mods = ~ factor(group))``;
  the test for subgroup differences is its omnibus QM (chi-square(G-1), or
  F(G-1, k-G) with test="knha"); subgroup estimates are the fitted group means
  with their SEs from the model.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from .regression import meta_regression


@dataclass(frozen=True)
class SubgroupResult:
    """Per-subgroup fits and the tests for subgroup differences.

    ``groups``: subgroup names (sorted as R's factor levels); ``separate`` and
    ``common`` are per-group dicts of arrays; ``test_separate`` / ``test_common``
    hold ``q``, ``df``, ``pvalue`` (``common`` also ``tau2``, ``qe``, ``qe_pvalue``).
    """

    groups: tuple
    k: np.ndarray
    separate: dict
    common: dict
    test_separate: dict
    test_common: dict
    method: str
    test: str
    overall: object = field(repr=False, default=None)
    regression: object = field(repr=False, default=None)

    def to_frame(self, transf=None):
        import pandas as pd

        f = (lambda x: x) if transf is None else (np.exp if transf == "exp" else transf)
        rows = []
        for j, g in enumerate(self.groups):
            s = self.separate
            rows.append({"subgroup": g, "k": int(self.k[j]), "model": "separate tau2",
                         "estimate": f(s["estimate"][j]), "ci_low": f(s["ci_low"][j]), "ci_high": f(s["ci_high"][j]),
                         "se": s["se"][j], "pvalue": s["pvalue"][j], "tau2": s["tau2"][j], "i2": s["i2"][j],
                         "q": s["q"][j]})
        for j, g in enumerate(self.groups):
            c = self.common
            rows.append({"subgroup": g, "k": int(self.k[j]), "model": "common tau2",
                         "estimate": f(c["estimate"][j]), "ci_low": f(c["ci_low"][j]), "ci_high": f(c["ci_high"][j]),
                         "se": c["se"][j], "pvalue": c["pvalue"][j], "tau2": self.test_common["tau2"],
                         "i2": math.nan, "q": math.nan})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """The per-subgroup fits and the tests for subgroup differences as text."""
        def test(t: dict) -> str:  # df is one number (Q test) or [df1, df2] (F test with knha)
            df = t["df"] if not isinstance(t["df"], (list, tuple)) else ", ".join(str(x) for x in t["df"] if x is not None)
            return f"Q = {float(t['q']):.4f}, df = {df}, p = {float(t['pvalue']):.4g}"

        return (f"Subgroup analysis ({self.method}, test {self.test}): {len(self.groups)} subgroups\n"
                + self.to_frame().to_string(index=False)
                + f"\nTest for subgroup differences (separate tau2): {test(self.test_separate)}"
                + f"\nTest for subgroup differences (common tau2): {test(self.test_common)}")

    def to_dict(self):
        return {"groups": list(self.groups), "k": [int(x) for x in self.k],
                "separate": {k: [float(x) for x in v] for k, v in self.separate.items()},
                "common": {k: [float(x) for x in v] for k, v in self.common.items()},
                "test_separate": dict(self.test_separate), "test_common": dict(self.test_common)}


def _levels(groups):
    import pandas as pd

    s = pd.Series(groups)
    if isinstance(s.dtype, pd.CategoricalDtype):
        return [lv for lv in s.cat.categories if (s == lv).any()]
    return sorted(set(s.tolist()), key=lambda x: (str(type(x)), x))


def subgroup_analysis(yi, vi, groups, method: str = "REML", test: str = "z", level: float = 0.95) -> SubgroupResult:
    """Subgroup analysis (separate and common tau^2) with the tests for subgroup differences."""
    from .api import meta_analysis

    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    g = np.asarray(groups, dtype=object)
    if not (len(y) == len(v) == len(g)):
        raise ValueError(f"groups: length {len(g)} does not match yi ({len(y)}) / vi ({len(v)})")
    levels = _levels(list(g))
    G = len(levels)
    if G < 2:
        raise ValueError(f"groups: need at least 2 subgroups, got {levels}")
    K = np.array([int(np.sum(g == lv)) for lv in levels])
    sep = {key: np.full(G, np.nan) for key in ("estimate", "se", "ci_low", "ci_high", "pvalue", "tau2", "i2", "q")}
    for j, lv in enumerate(levels):
        m = g == lv
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="k = 1")
            r = meta_analysis(yi=y[m], vi=v[m], method=method, test=test, level=level, ci_tau2=False)
        for key in sep:
            sep[key][j] = float(getattr(r, key))
    # FE model on the subgroup estimates
    w = 1.0 / sep["se"] ** 2
    mu = float(np.sum(w * sep["estimate"]) / w.sum())
    qb = float(np.sum(w * (sep["estimate"] - mu) ** 2))
    t_sep = {"q": qb, "df": G - 1, "pvalue": float(special.chdtrc(G - 1, qb))}
    # common tau2: meta-regression on the factor
    import pandas as pd

    cat = pd.Categorical(list(g), categories=levels)
    reg = meta_regression(yi=y, vi=v, moderators=pd.DataFrame({"group": cat}), method=method, test=test,
                          level=level)
    Xg = np.zeros((G, G))
    Xg[:, 0] = 1.0
    for j in range(1, G):
        Xg[j, j] = 1.0
    pr = reg.predict(Xg)
    crit = reg.extra["crit"]
    with np.errstate(divide="ignore", invalid="ignore"):
        zc = pr["pred"] / pr["se"]
    if reg.test == "knha" and reg.k > reg.p:
        pc = 2.0 * special.stdtr(reg.k - reg.p, -np.abs(zc))
    else:
        pc = 2.0 * special.ndtr(-np.abs(zc))
    com = {"estimate": pr["pred"], "se": pr["se"], "ci_low": pr["pred"] - crit * pr["se"],
           "ci_high": pr["pred"] + crit * pr["se"], "pvalue": pc}
    t_com = {"q": float(reg.qm), "df": list(reg.qm_df), "pvalue": float(reg.qm_pvalue), "tau2": float(reg.tau2),
             "qe": float(reg.qe), "qe_pvalue": float(reg.qe_pvalue)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="k = 1")
        overall = meta_analysis(yi=y, vi=v, method=method, test=test, level=level, ci_tau2=False)
    return SubgroupResult(tuple(levels), K, sep, com, t_sep, t_com, method.upper(), test.lower(), overall, reg)


__all__ = ["subgroup_analysis", "SubgroupResult"]
