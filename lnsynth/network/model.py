"""Contrast-based consistency network meta-analysis (fixed and random effects).

References
----------
Salanti G. (2012). Indirect and mixed-treatment comparison, network, or
multiple-treatments meta-analysis. Res Synth Methods 3:80-97.
Rücker G. (2012). Network meta-analysis, electrical networks and graph theory.
Res Synth Methods 3:312-324.
Viechtbauer W. (2010). Conducting meta-analyses in R with the metafor
package. J Stat Softw 36(3) -- ``rma.mv``.
Viechtbauer W. (2005). Bias and efficiency of meta-analytic variance estimators in the
random-effects model. J Educ Behav Stat 30:261-293 -- ML and REML.
Jackson D., White I.R., Riley R.D. (2012). Quantifying the impact of between-study
heterogeneity in multivariate meta-analyses. Stat Med 31:3805-3820 -- method of moments.
Rücker G., Schwarzer G. (2014). Reduce dimension or reduce weights? Comparing two
approaches to multi-arm studies in network meta-analysis. Stat Med 33:4353-4369.
Paule R.C., Mandel J. (1982). Consensus values and weighting factors. J Res Natl Bur
Stand 87:377-385 -- PM (generalised here to Q(tau^2) = m - p).
Hartung J., Knapp G. (2001). On tests of the overall treatment effect in meta-analysis
with normally distributed responses. Stat Med 20:1771-1782; Sidik K., Jonkman J.N.
(2002). A simple confidence interval for meta-analysis. Stat Med 21:3153-3159.
Higgins J.P.T., Thompson S.G. (2002). Quantifying heterogeneity in a meta-analysis.
Stat Med 21:1539-1558 -- I^2 and its confidence interval via H.
Higgins J.P.T., Thompson S.G., Spiegelhalter D.J. (2009). A re-evaluation of
random-effects meta-analysis. J R Stat Soc A 172:137-159 -- prediction intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from .. import registry
from . import _core
from .data import NetworkData, prepare

MODEL_SCALE = {m: f"log {m}" if registry.measure(m).scale == "log" else m for m in registry.network_measures()}
NETWORK_METHODS = registry.methods("network")  # FE, DL, REML, ML, PM
TESTS = ("z", "t", "hk")
_METHODS_TEXT = " or ".join(repr(m) for m in NETWORK_METHODS)


@dataclass(frozen=True, eq=False)
class NMAResult:
    """Result of :func:`network_meta_analysis`.

    Attributes
    ----------
    measure : str
        ``"OR"``, ``"RR"``, ``"RD"``, ``"MD"`` or ``"SMD"``.
    method : str
        ``"FE"``, ``"REML"``, ``"ML"``, ``"PM"`` or ``"DL"`` (tau^2 estimator).
    reference : str
    treatments : tuple of str
        All treatments, sorted.
    params : tuple of str
        Non-reference treatments (order of ``estimate`` / ``vcov``).
    estimate : ndarray
        Effects of ``params`` relative to ``reference`` (model scale).
    vcov : ndarray
        Their model-based covariance matrix ``(X'WX)^{-1}`` (not Hartung-Knapp scaled;
        see :attr:`vcov_adjusted`).
    tau2 : float
        Between-study variance (0 for FE).
    Q, Q_df, Q_pvalue : float, int, float
        Generalised Cochran's Q of the consistency model with FE weights
        (metafor's ``QE``; netmeta's ``Q``), ``Q_df = m - (T - 1)``.
    loglik : float
        Log-likelihood as metafor's ``logLik``: ML for FE and ML; REML for the
        other random-effects methods (including metafor's ``+ log|X'X|/2`` term),
        evaluated at ``tau2``.
    tau2_at_boundary : bool
        True when the estimate is ``tau2 = 0``.
    level : float
        Confidence level for intervals.
    data : NetworkData
        The validated contrast data the model was fitted to.
    test : {"z", "t", "hk"}
        Inference for the effects: normal (metafor ``test="z"``), t with ``Q_df`` df and
        unscaled SEs (``rma.mv(test="t")``), or Hartung-Knapp (SEs scaled by
        ``sqrt(Q_re / Q_df)``, t with ``Q_df`` df).
    Q_re : float
        Generalised Q at the fitted tau^2, :math:`r'(V + \\hat\\tau^2 B)^{-1}r`.
    converged : bool
    iterations : int
        Newton iterations of the tau^2 estimator (0 for FE, DL and boundary estimates).
    """

    measure: str
    method: str
    reference: str
    treatments: tuple[str, ...]
    params: tuple[str, ...]
    estimate: np.ndarray = field(repr=False)
    vcov: np.ndarray = field(repr=False)
    tau2: float
    Q: float
    Q_df: int
    Q_pvalue: float
    loglik: float
    tau2_at_boundary: bool
    level: float
    data: NetworkData = field(repr=False)
    test: str = "z"
    Q_re: float = float("nan")
    converged: bool = True
    iterations: int = 0

    # ------------------------------------------------------------------ basic
    @property
    def n_studies(self) -> int:
        return len(self.data.studies)

    @property
    def dropped_studies(self) -> tuple[str, ...]:
        return self.data.dropped

    @property
    def tau(self) -> float:
        return float(np.sqrt(self.tau2))

    @property
    def hk_scale(self) -> float:
        """Hartung-Knapp variance factor ``Q_re / Q_df`` (1 unless ``test="hk"``)."""
        return float(self.Q_re / self.Q_df) if self.test == "hk" else 1.0

    @property
    def vcov_adjusted(self) -> np.ndarray:
        """Covariance used for inference: ``vcov`` times :attr:`hk_scale`."""
        return self.vcov * self.hk_scale

    def _crit(self, level: float | None = None) -> float:
        lv = self.level if level is None else _check_level(level)
        if self.test == "z":
            return float(stats.norm.ppf(0.5 + lv / 2.0))
        return float(stats.t.ppf(0.5 + lv / 2.0, self.Q_df))

    @property
    def _z(self) -> float:
        return self._crit()

    def _pval(self, stat: np.ndarray) -> np.ndarray:
        if self.test == "z":
            return 2.0 * stats.norm.sf(np.abs(stat))
        return 2.0 * stats.t.sf(np.abs(stat), self.Q_df)

    def _full(self) -> tuple[np.ndarray, np.ndarray]:
        """Effects and (model-based) covariance for *all* treatments (reference = 0)."""
        T = len(self.treatments)
        idx = [self.treatments.index(t) for t in self.params]
        th = np.zeros(T)
        S = np.zeros((T, T))
        th[idx] = self.estimate
        S[np.ix_(idx, idx)] = self.vcov
        return th, S

    def relative_effects(self, exponentiate: bool = False, level: float | None = None) -> pd.DataFrame:
        """Effects of each non-reference treatment vs the reference.

        Columns ``treatment, estimate, se, ci_low, ci_high, zval, pvalue`` on
        the model scale (``se`` Hartung-Knapp adjusted when ``test="hk"``; ``zval``
        is the t statistic for ``test="t"``/``"hk"``); with ``exponentiate=True``
        (ratio measures) also ``exp_estimate, exp_ci_low, exp_ci_high``.
        """
        se = np.sqrt(np.diag(self.vcov_adjusted))
        c = self._crit(level)
        zval = self.estimate / se
        out = pd.DataFrame({
            "treatment": list(self.params),
            "estimate": self.estimate,
            "se": se,
            "ci_low": self.estimate - c * se,
            "ci_high": self.estimate + c * se,
            "zval": zval,
            "pvalue": self._pval(zval),
        })
        if exponentiate:
            for col in ("estimate", "ci_low", "ci_high"):
                out["exp_" + col] = np.exp(out[col])
        return out

    def conf_int(self, level: float | None = None) -> pd.DataFrame:
        """Relative effects vs the reference with confidence limits at ``level``
        (default: the fit's level), indexed by treatment: ``estimate, ci_low, ci_high``."""
        re = self.relative_effects(level=level)
        return re.set_index("treatment")[["estimate", "ci_low", "ci_high"]]

    def pairwise_effects(self, level: float | None = None) -> pd.DataFrame:
        """All ordered pairs: effect of ``treat1`` relative to ``treat2``."""
        th, S = self._full()
        S = S * self.hk_scale
        c = self._crit(level)
        rows = []
        for i, a in enumerate(self.treatments):
            for j, b in enumerate(self.treatments):
                if i == j:
                    continue
                est = th[i] - th[j]
                se = float(np.sqrt(max(S[i, i] + S[j, j] - 2.0 * S[i, j], 0.0)))
                rows.append((a, b, est, se, est - c * se, est + c * se))
        return pd.DataFrame(rows, columns=["treat1", "treat2", "estimate", "se", "ci_low", "ci_high"])

    def league_table(self, exponentiate: bool = False, digits: int = 2) -> pd.DataFrame:
        """League table: cell (row *i*, column *j*) is the effect of *i* relative to *j*.

        Formatted as ``"estimate [ci_low; ci_high]"`` (model scale, or exp
        scale with ``exponentiate=True``); the diagonal holds the treatment name.
        """
        pw = self.pairwise_effects()
        tab = pd.DataFrame("", index=list(self.treatments), columns=list(self.treatments), dtype=object)
        f = np.exp if exponentiate else (lambda x: x)
        for r in pw.itertuples(index=False):
            tab.loc[r.treat1, r.treat2] = (
                f"{f(r.estimate):.{digits}f} [{f(r.ci_low):.{digits}f}; {f(r.ci_high):.{digits}f}]")
        for t in self.treatments:
            tab.loc[t, t] = t
        return tab

    def prediction_intervals(self, level: float | None = None, dist: str = "t",
                             pairs: bool = False) -> pd.DataFrame:
        r"""Prediction intervals for the effect in a new study.

        :math:`\hat d \pm c\,\sqrt{SE^2 + \hat\tau^2}` (Higgins, Thompson & Spiegelhalter
        2009), where ``SE`` is the standard error used for the confidence interval
        (Hartung-Knapp scaled under ``test="hk"``) and ``c`` is the t quantile with
        ``Q_df = m - (T - 1)`` degrees of freedom (``dist="t"``, default: netmeta's choice
        and what metafor's ``predict`` gives for ``rma.mv(test="t")``, whose residual df
        ``k - p`` is the same number), or the normal quantile (``dist="z"``: metafor's
        ``predict`` for ``test="z"``).

        Returns one row per non-reference treatment (``pairs=False``) or per ordered
        pair (``pairs=True``) with ``estimate, se, pi_low, pi_high``.
        """
        lv = self.level if level is None else _check_level(level)
        if dist == "t":
            if self.Q_df <= 0:
                raise ValueError("prediction interval with dist='t' needs Q_df > 0 (more contrasts than "
                                 "treatments - 1)")
            c = float(stats.t.ppf(0.5 + lv / 2.0, self.Q_df))
        elif dist == "z":
            c = float(stats.norm.ppf(0.5 + lv / 2.0))
        else:
            raise ValueError(f"dist must be 't' or 'z', got {dist!r}")
        if pairs:
            out = self.pairwise_effects()[["treat1", "treat2", "estimate", "se"]].copy()
        else:
            out = self.relative_effects()[["treatment", "estimate", "se"]].copy()
        half = c * np.sqrt(out["se"].to_numpy() ** 2 + self.tau2)
        out["pi_low"] = out["estimate"] - half
        out["pi_high"] = out["estimate"] + half
        return out

    def heterogeneity(self, level: float | None = None) -> dict[str, float]:
        """tau^2, tau, Q (FE weights), its df and p-value, H and I^2 with confidence limits.

        ``I2 = max(0, (Q - df) / Q)`` (netmeta's Q-based I^2) and ``H = sqrt(Q / df)``
        (at least 1) with the Higgins & Thompson (2002) interval for ``ln H``: standard error
        ``(ln Q - ln df) / (2 (sqrt(2Q) - sqrt(2 df - 1)))`` when ``Q > df + 1``, otherwise
        ``sqrt(1 / (2 (df - 1)) * (1 - 1 / (3 (df - 1)^2)))``; limits of H truncated at 1
        and transformed to I^2 = (H^2 - 1)/H^2.  Intervals are NaN for ``df < 1`` (and for
        ``df = 1`` when ``Q <= 2``).
        """
        lv = self.level if level is None else _check_level(level)
        return heterogeneity_stats(self.Q, self.Q_df, lv) | {"tau2": self.tau2, "tau": self.tau}

    # ---------------------------------------------------------------- ranking
    def pscores(self, small_values: str = "good") -> pd.Series:
        """P-scores (Rücker & Schwarzer 2015); see :func:`lnsynth.network.ranking.pscores`."""
        from .ranking import pscores
        th, S = self._full()
        return pscores(th, S, self.treatments, small_values=small_values)

    def sucra(self, small_values: str = "good", n_sim: int = 10000, seed: int | None = 1) -> pd.DataFrame:
        """Resampling SUCRA and mean rank; see :func:`lnsynth.network.ranking.sucra`."""
        from .ranking import sucra
        th, S = self._full()
        return sucra(th, S, self.treatments, small_values=small_values, n_sim=n_sim, seed=seed)

    def ranking(self, small_values: str = "good", n_sim: int = 10000, seed: int | None = 1) -> pd.DataFrame:
        """P-scores and resampling SUCRA side by side, sorted by P-score."""
        out = self.sucra(small_values=small_values, n_sim=n_sim, seed=seed)
        out.insert(1, "pscore", self.pscores(small_values=small_values).reindex(out["treatment"]).to_numpy())
        return out.sort_values("pscore", ascending=False, ignore_index=True)

    # ---------------------------------------------------------- inconsistency
    def q_decomposition(self, by_design: bool = False) -> pd.DataFrame:
        """Design-based decomposition of Q (Krahn et al. 2013); see
        :func:`lnsynth.network.inconsistency.q_decomposition`."""
        from .inconsistency import q_decomposition
        return q_decomposition(self, by_design=by_design)

    def design_by_treatment(self, random: bool | None = None, **kwargs: Any) -> dict[str, Any]:
        """Design-by-treatment interaction test; see
        :func:`lnsynth.network.inconsistency.design_by_treatment` (keyword arguments
        such as ``tau2=`` are passed on)."""
        from .inconsistency import design_by_treatment
        return design_by_treatment(self, random=random, **kwargs)

    def node_split(self, **kwargs: Any) -> pd.DataFrame:
        """Node-splitting; see :func:`lnsynth.network.inconsistency.node_split` (keyword
        arguments such as ``method=`` are passed on)."""
        from .inconsistency import node_split
        return node_split(self, **kwargs)

    # ----------------------------------------------------------------- output
    def to_frame(self) -> pd.DataFrame:
        """Relative effects vs the reference (same as :meth:`relative_effects`)."""
        return self.relative_effects(exponentiate=registry.is_ratio(self.measure))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary."""
        re = self.relative_effects()
        out = {
            "measure": self.measure,
            "scale": MODEL_SCALE[self.measure],
            "method": self.method,
            "test": self.test,
            "reference": self.reference,
            "treatments": list(self.treatments),
            "n_studies": self.n_studies,
            "dropped_studies": list(self.dropped_studies),
            "tau2": self.tau2,
            "tau2_at_boundary": self.tau2_at_boundary,
            "converged": self.converged,
            "Q": self.Q,
            "Q_df": self.Q_df,
            "Q_pvalue": self.Q_pvalue,
            "Q_re": self.Q_re,
            "heterogeneity": _json_floats(self.heterogeneity()),
            "loglik": self.loglik,
            "level": self.level,
            "relative_effects": re.to_dict(orient="records"),
            "q_decomposition": {k: {"Q": float(r.Q), "df": int(r.df), "pvalue": float(r.pvalue)}
                                for k, r in self.q_decomposition().iterrows()},
            "design_by_treatment": self.design_by_treatment(),
        }
        if self.Q_df > 0:
            out["prediction_intervals"] = self.prediction_intervals().to_dict(orient="records")
        return out

    def summary(self) -> str:
        """Human-readable summary."""
        re = self.relative_effects(exponentiate=registry.is_ratio(self.measure))
        model = "fixed effect" if self.method == "FE" else f"random effects, tau^2 by {self.method}"
        infer = {"z": "normal", "t": f"t ({self.Q_df} df)", "hk": f"Hartung-Knapp, t ({self.Q_df} df)"}[self.test]
        lines = [
            f"Network meta-analysis ({model}; {infer} intervals); "
            f"measure {self.measure} (model scale: {MODEL_SCALE[self.measure]})",
            f"{self.n_studies} studies, {len(self.treatments)} treatments; reference: {self.reference}",
        ]
        if self.dropped_studies:
            lines.append(f"dropped (no information): {', '.join(self.dropped_studies)}")
        h = self.heterogeneity()
        i2 = (f"; I^2 = {100 * h['I2']:.1f}% [{100 * h['I2_low']:.1f}%; {100 * h['I2_high']:.1f}%]"
              if np.isfinite(h["I2_low"]) else "")
        lines.append(f"tau^2 = {self.tau2:.6g}{' (boundary)' if self.tau2_at_boundary and self.method != 'FE' else ''}; "
                     f"Q = {self.Q:.4f} on {self.Q_df} df (p = {self.Q_pvalue:.4g}){i2}")
        if not self.converged:
            lines.append("WARNING: the tau^2 estimator did not converge")
        if len({s.design for s in self.data.studies}) > 1:
            dbt = self.design_by_treatment()
            lines.append(f"design-by-treatment interaction ({'RE' if dbt['random'] else 'FE'}): "
                         f"chi2 = {dbt['chi2']:.4f} on {dbt['df']} df (p = {dbt['pvalue']:.4g})")
        pct = int(round(self.level * 100))
        lines.append(f"{'treatment':<24}{'estimate':>10}{'se':>9}{f'{pct}% CI':>22}{'p':>9}")
        for r in re.itertuples(index=False):
            ci = f"[{r.ci_low:.3f}; {r.ci_high:.3f}]"
            lines.append(f"{r.treatment:<24}{r.estimate:>10.4f}{r.se:>9.4f}{ci:>22}{r.pvalue:>9.4f}")
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()


def _check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return float(level)


def _json_floats(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}


def heterogeneity_stats(Q: float, df: int, level: float = 0.95) -> dict[str, float]:
    """H and I^2 with Higgins & Thompson (2002) confidence limits from ``Q`` on ``df``.

    See :meth:`NMAResult.heterogeneity`.  Returns ``Q, df, pvalue, H, H_low, H_high,
    I2, I2_low, I2_high`` (I^2 as a proportion).
    """
    nan = float("nan")
    Q = float(Q)
    out = {"Q": Q, "df": int(df), "pvalue": float(stats.chi2.sf(Q, df)) if df > 0 else nan}
    if df < 1:
        return out | {"H": nan, "H_low": nan, "H_high": nan, "I2": nan, "I2_low": nan, "I2_high": nan}
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    H = max(1.0, float(np.sqrt(Q / df)))
    if Q > df + 1:
        se = 0.5 * (np.log(Q) - np.log(df)) / (np.sqrt(2.0 * Q) - np.sqrt(2.0 * df - 1.0))
    elif df > 1:
        se = float(np.sqrt(1.0 / (2.0 * (df - 1)) * (1.0 - 1.0 / (3.0 * (df - 1) ** 2))))
    else:
        se = nan
    lnH = 0.5 * (np.log(Q) - np.log(df)) if Q > 0 else -np.inf
    lo = max(1.0, float(np.exp(lnH - z * se))) if np.isfinite(se) else nan
    hi = max(1.0, float(np.exp(lnH + z * se))) if np.isfinite(se) else nan

    def i2(h: float) -> float:
        return (h * h - 1.0) / (h * h) if np.isfinite(h) else nan

    return out | {"H": H, "H_low": lo, "H_high": hi, "I2": max(0.0, (Q - df) / Q) if Q > 0 else 0.0,
                  "I2_low": i2(lo), "I2_high": i2(hi)}


def _check_method(method: str) -> str:
    m = str(method).upper()
    if m not in NETWORK_METHODS:
        raise ValueError(f"method must be {_METHODS_TEXT}, got {method!r}")
    return m


def _check_test(test: str) -> str:
    t = str(test).lower()
    if t == "knha":
        t = "hk"
    if t not in TESTS:
        raise ValueError(f"test must be 'z', 't' or 'hk' (Hartung-Knapp), got {test!r}")
    return t


def fit(data: NetworkData, method: str = "REML", level: float = 0.95, tau2: float | None = None,
        test: str = "z") -> NMAResult:
    """Fit the consistency model to prepared :class:`NetworkData`.

    ``tau2`` fixes the between-study variance (used internally, e.g. by
    node-splitting); otherwise FE uses 0 and the random-effects methods estimate it
    (see :func:`network_meta_analysis`).
    """
    return fit_batch([data], method=method, level=level, tau2=tau2, test=test).result(0)


@dataclass(frozen=True, eq=False)
class NMABatchResult:
    """Consistency-model fits of a batch of networks over the same treatments.

    Attributes are arrays with a leading batch axis: ``tau2 (B,)``, ``estimate (B, p)``,
    ``vcov (B, p, p)``, ``Q, Q_df, Q_re, loglik, converged (B,)``.  :meth:`result`
    gives the full :class:`NMAResult` of one network.
    """

    measure: str
    method: str
    test: str
    level: float
    reference: str
    treatments: tuple[str, ...]
    params: tuple[str, ...]
    tau2: np.ndarray = field(repr=False)
    estimate: np.ndarray = field(repr=False)
    vcov: np.ndarray = field(repr=False)
    Q: np.ndarray = field(repr=False)
    Q_df: np.ndarray = field(repr=False)
    Q_re: np.ndarray = field(repr=False)
    loglik: np.ndarray = field(repr=False)
    converged: np.ndarray = field(repr=False)
    iterations: np.ndarray = field(repr=False)
    data: tuple[NetworkData, ...] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.tau2)

    def se(self) -> np.ndarray:
        """(B, p) standard errors used for inference (Hartung-Knapp scaled under ``test="hk"``)."""
        d = np.sqrt(np.diagonal(self.vcov, axis1=1, axis2=2))
        if self.test == "hk":
            d = d * np.sqrt(self.Q_re / self.Q_df)[:, None]
        return d

    def conf_int(self, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B, p) lower and upper confidence limits at ``level`` (default: the fit's)."""
        lv = self.level if level is None else _check_level(level)
        if self.test == "z":
            c = np.full(len(self), stats.norm.ppf(0.5 + lv / 2.0))
        else:
            c = stats.t.ppf(0.5 + lv / 2.0, self.Q_df)
        h = c[:, None] * self.se()
        return self.estimate - h, self.estimate + h

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per network and non-reference treatment."""
        lo, hi = self.conf_int()
        B, p = self.estimate.shape
        return pd.DataFrame({
            "network": np.repeat(np.arange(B), p), "treatment": np.tile(list(self.params), B),
            "estimate": self.estimate.ravel(), "se": self.se().ravel(), "ci_low": lo.ravel(),
            "ci_high": hi.ravel(), "tau2": np.repeat(self.tau2, p),
        })

    def to_dict(self) -> dict[str, Any]:
        return {"measure": self.measure, "method": self.method, "test": self.test, "level": self.level,
                "reference": self.reference, "params": list(self.params), "tau2": self.tau2.tolist(),
                "estimate": self.estimate.tolist(), "se": self.se().tolist(), "Q": self.Q.tolist(),
                "Q_df": self.Q_df.tolist(), "converged": self.converged.tolist()}

    def summary(self) -> str:
        q = np.quantile(self.tau2, [0.0, 0.5, 1.0])
        return (f"{len(self)} network fits ({self.method}, test {self.test}), {len(self.treatments)} treatments, "
                f"reference {self.reference}; tau^2 min/median/max {q[0]:.4g}/{q[1]:.4g}/{q[2]:.4g}; "
                f"{int((~self.converged).sum())} not converged")

    def result(self, i: int) -> NMAResult:
        """The full :class:`NMAResult` of network ``i`` (needs the batch built from NetworkData)."""
        if self.data is None:
            raise ValueError("result(i) needs a batch fitted from NetworkData (fit_batch(datasets))")
        est, vc = self.estimate[i].copy(), self.vcov[i].copy()
        est.setflags(write=False)
        vc.setflags(write=False)
        df = int(self.Q_df[i])
        return NMAResult(
            measure=self.measure, method=self.method, reference=self.reference, treatments=self.treatments,
            params=self.params, estimate=est, vcov=vc, tau2=float(self.tau2[i]), Q=float(self.Q[i]), Q_df=df,
            Q_pvalue=float(special.chdtrc(df, self.Q[i])) if df > 0 else float("nan"),
            loglik=float(self.loglik[i]), tau2_at_boundary=bool(self.tau2[i] == 0), level=self.level,
            data=self.data[i], test=self.test, Q_re=float(self.Q_re[i]), converged=bool(self.converged[i]),
            iterations=int(self.iterations[i]))


def _batch_result(bf: _core.BatchFit, method: str, test: str, level: float, measure: str, reference: str,
                  treatments: tuple[str, ...], params: tuple[str, ...],
                  data: tuple[NetworkData, ...] | None) -> NMABatchResult:
    if test != "z" and np.any(bf.df <= 0):
        bad = np.flatnonzero(bf.df <= 0)
        raise ValueError(f"test={test!r} needs residual degrees of freedom (m - p > 0); network(s) "
                         f"{bad.tolist()} have none")
    ll = bf.loglik_ml if method in ("FE", "ML") else bf.loglik_reml
    return NMABatchResult(measure, method, test, level, reference, treatments, params, bf.tau2, bf.beta,
                          bf.vcov, bf.Q, bf.df.astype(int), bf.Q_re, ll, bf.converged, bf.iterations, data)


def fit_batch(datasets: Sequence[NetworkData], method: str = "REML", level: float = 0.95,
              tau2: float | np.ndarray | None = None, test: str = "z") -> NMABatchResult:
    """Fit the consistency model to many networks in one vectorised call.

    Parameters
    ----------
    datasets : sequence of NetworkData
        Networks over the same treatments and reference (e.g. bootstrap or simulation
        replicates, or subsets); the studies may differ.
    method, level, test
        As :func:`network_meta_analysis`.
    tau2 : float or array (B,), optional
        Fixed between-study variance(s).

    Returns
    -------
    NMABatchResult

    Examples
    --------
    >>> reps = [prepare(boot(arms), study="study", treatment="trt", events="x", n="n",
    ...                 reference="A") for _ in range(1000)]           # doctest: +SKIP
    >>> fit_batch(reps, method="REML").tau2.mean()                   # doctest: +SKIP
    """
    method = _check_method(method)
    test = _check_test(test)
    level = _check_level(level)
    datasets = tuple(datasets)
    if not datasets:
        raise ValueError("no networks given")
    d0 = datasets[0]
    for i, d in enumerate(datasets[1:], 1):
        if d.treatments != d0.treatments or d.reference != d0.reference:
            raise ValueError(f"network {i}: treatments/reference differ from network 0 "
                             f"({list(d.treatments)} vs {list(d0.treatments)}); fit_batch needs the same nodes")
    params = tuple(t for t in d0.treatments if t != d0.reference)
    pk = _core.pack([d.studies for d in datasets], params)
    bf = _core.fit_packed(pk, "FE" if tau2 is None and method == "FE" else method, tau2=tau2)
    return _batch_result(bf, method, test, level, d0.measure, d0.reference, d0.treatments, params, datasets)


def fit_arrays(y: np.ndarray, V: np.ndarray, X: np.ndarray, q: np.ndarray | None = None,
               method: str = "REML", level: float = 0.95, test: str = "z",
               params: Sequence[str] | None = None, reference: str = "reference",
               measure: str = "MD") -> NMABatchResult:
    """Batched consistency model straight from arrays (simulation replicates).

    ``y (B, S, q)`` contrasts of each study against its baseline, ``V (B, S, q, q)``
    their covariances, ``X (S, q, p)`` or ``(B, S, q, p)`` the design (+1 treatment
    column, -1 baseline column, none for the reference), ``q (S,)`` or ``(B, S)`` the
    number of real contrasts per study (rows beyond are ignored).
    """
    method = _check_method(method)
    test = _check_test(test)
    level = _check_level(level)
    pk = _core.pack_arrays(y, V, X, q)
    p = pk.p
    params = tuple(params) if params is not None else tuple(f"t{i + 1}" for i in range(p))
    bf = _core.fit_packed(pk, method)
    return _batch_result(bf, method, test, level, measure, reference, (reference,) + params, params, None)


def fit_design_by_treatment(data: NetworkData, method: str = "DL", tau2: float | None = None) -> dict[str, Any]:
    r"""Fit the full design-by-treatment interaction (inconsistency) model.

    Every design ``d`` (set of treatments compared in a study) gets its own basic
    parameters (effects of its treatments relative to the first of them in sorted order;
    Higgins et al. 2012), with the same random-effects structure as the consistency
    model.  Its between-study variance is estimated by ``method``: ``"DL"`` (generalised
    method of moments, Jackson, White & Riley 2012; the square root is netmeta's
    ``tau.within``), ``"REML"``, ``"ML"``, ``"PM"``, or ``"FE"`` (0); ``tau2`` fixes it.

    Returns
    -------
    dict with ``tau2, tau, method, Q_within`` (residual Q at FE weights = Q within
    designs), ``Q_re`` (at ``tau2``), ``df_within`` (``m - p_inc``), ``n_params``,
    ``converged``.

    References
    ----------
    Higgins J.P.T., Jackson D., Barrett J.K., Lu G., Ades A.E., White I.R. (2012).
    Consistency and inconsistency in network meta-analysis: concepts and models for
    multi-arm studies. Res Synth Methods 3:98-110.

    Examples
    --------
    >>> fit_design_by_treatment(res.data, "DL")["tau"]                 # doctest: +SKIP
    """
    method = _check_method(method)
    pk = _core.pack_design_by_treatment(data.studies)
    if pk.m[0] <= pk.p:
        t2 = 0.0 if tau2 is None else float(tau2)
        bf = _core.fit_packed(pk, "FE", tau2=t2)
    else:
        bf = _core.fit_packed(pk, method, tau2=tau2)
    t2 = float(bf.tau2[0])
    return {"tau2": t2, "tau": float(np.sqrt(t2)), "method": method if tau2 is None else "fixed",
            "Q_within": float(bf.Q[0]), "Q_re": float(bf.Q_re[0]), "df_within": int(bf.df[0]),
            "n_params": pk.p, "converged": bool(bf.converged[0])}


def network_meta_analysis(
    df: pd.DataFrame,
    study: str,
    treatment: str | None = None,
    events: str | None = None,
    n: str | None = None,
    measure: str = "OR",
    reference: str | None = None,
    method: str = "REML",
    *,
    mean: str | None = None,
    sd: str | None = None,
    yi: str | None = None,
    vi: str | None = None,
    treat1: str | None = None,
    treat2: str | None = None,
    cov: str | None = None,
    level: float = 0.95,
    test: str = "z",
) -> NMAResult:
    r"""Contrast-based network meta-analysis under consistency.

    Parameters
    ----------
    df : DataFrame
        Arm-level data (one row per arm) or contrast-level data (one row per
        contrast).  All other arguments name columns of ``df``.
    study, treatment : str
        Study identifier and arm treatment columns (arm-level input).
    events, n : str
        Binary arm data (measures ``OR``, ``RR``, ``RD``).
    mean, sd, n : str
        Continuous arm data (measures ``MD``, ``SMD``).
    yi, vi, treat1, treat2 : str
        Contrast-level input: ``yi`` is the effect of ``treat1`` relative to
        ``treat2`` with sampling variance ``vi``.  Multi-arm studies given as
        several contrasts must share ``treat2`` and need ``cov``.
    cov : str, optional
        Column with the covariance between the contrasts of a multi-arm
        study (variance of the shared comparator arm).
    measure : {"OR", "RR", "RD", "MD", "SMD"}
        Effect measure; results are on the model scale (log OR, log RR, RD,
        MD, SMD).  Ignored in computations for contrast input (it labels the
        scale).
    reference : str, optional
        Reference treatment; default: first treatment in sorted order.
    method : {"FE", "REML", "ML", "PM", "DL"}
        Fixed effect, or random effects with tau^2 estimated by restricted maximum
        likelihood (metafor ``rma.mv``'s default), maximum likelihood, the
        generalised Paule-Mandel estimator (:math:`Q(\tau^2) = m - (T-1)`), or the
        generalised DerSimonian-Laird method of moments (netmeta's default;
        Jackson, White & Riley 2012).  The accepted values are
        ``lnsynth.registry.methods("network")``.
    level : float
        Confidence level.
    test : {"z", "t", "hk"}
        ``"z"``: normal-theory intervals and tests (metafor's default).  ``"t"``: t
        distribution with ``m - (T - 1)`` df and model SEs (``rma.mv(test="t")``).
        ``"hk"`` (alias ``"knha"``): Hartung-Knapp / Sidik-Jonkman -- the covariance is
        multiplied by :math:`Q_{re}/(m - (T-1))`, with :math:`Q_{re}` the generalised Q
        at the fitted tau^2, and the t distribution with ``m - (T - 1)`` df is used
        (the multivariate form of ``rma(test="knha")``, to which it reduces for a
        two-treatment network of two-arm studies; netmeta's
        ``method.random.ci = "HK"`` without ad hoc correction).

    Returns
    -------
    NMAResult

    Notes
    -----
    Each study ``i`` with arms ``b`` (baseline; see :mod:`lnsynth.network.data`)
    and ``t_1..t_{k-1}`` contributes ``y_i = (\theta_{t_j} - \theta_b)_j`` with
    covariance :math:`V_i` (shared-arm variance on the off-diagonals).  The
    model is

    .. math::

        y_i = X_i d + \delta_i + \varepsilon_i,\quad
        \varepsilon_i \sim N(0, V_i),\quad
        \delta_i \sim N\left(0, \tau^2 \tfrac{1}{2}(I + J)\right),

    with basic parameters ``d`` (each treatment vs the reference) and
    consistency ``d_{AB} = d_{B} - d_{A}``.  Estimates are GLS,
    :math:`\hat d = (X'WX)^{-1}X'Wy`, :math:`W = (V + \tau^2 B)^{-1}`, with
    covariance :math:`(X'WX)^{-1}`.  tau^2 maximises the restricted
    likelihood (profile over the single parameter; the estimate can be 0 at
    the boundary).  This is exactly metafor's
    ``rma.mv(yi, V, mods = X, intercept = FALSE, random = ~ comp | study,
    rho = 1/2)`` (Salanti 2012; Rücker 2012).  ``Q`` is the generalised
    Cochran statistic :math:`(y - X\hat d_{FE})'V^{-1}(y - X\hat d_{FE})`
    with ``m - (T - 1)`` df (metafor ``QE``).

    The tau^2 estimators solve, by safeguarded Newton iterations on analytic
    derivatives computed block by block (no ``m x m`` matrix), the REML/ML score
    equations :math:`u'Bu = \operatorname{tr}(PB)` (REML) or
    :math:`u'Bu = \operatorname{tr}(WB)` (ML), :math:`u = Py`, or the Paule-Mandel
    equation; DL is closed form.  Boundary estimates are exactly 0.  Use
    :func:`fit_batch` / :func:`fit_arrays` for many networks in one call.

    Examples
    --------
    >>> res = network_meta_analysis(arms, study="study", treatment="trt", events="x", n="n",
    ...                             reference="A", method="DL", test="hk")   # doctest: +SKIP
    >>> res.prediction_intervals()                                         # doctest: +SKIP
    >>> res.heterogeneity()["I2"]                                          # doctest: +SKIP

    References
    ----------
    See the module docstring.

    Raises
    ------
    ValueError
        Bad input (missing columns, events > n, unknown reference, single-arm
        studies, duplicate arms, ...), naming study and field, or a
        disconnected network (listing the treatments of each component).
    """
    method = _check_method(method)
    test = _check_test(test)
    _check_level(level)
    data = prepare(df, study=study, treatment=treatment, events=events, n=n, mean=mean, sd=sd,
                   yi=yi, vi=vi, treat1=treat1, treat2=treat2, cov=cov, measure=measure,
                   reference=reference)
    return fit(data, method=method, level=level, test=test)
