"""Result classes of the consistency network meta-analysis: :class:`NMAResult`, :class:`NMABatchResult`.

Fitted by :mod:`lnsynth.network.model` (:func:`~lnsynth.network.model.network_meta_analysis`,
:func:`~lnsynth.network.model.fit_batch`), which re-exports every name here; references are
in that module's docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from .. import registry
from ..stats import normalize_level
from .data import NetworkData

MODEL_SCALE = {m: f"log {m}" if registry.measure(m).scale == "log" else m for m in registry.network_measures()}


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
    return normalize_level(level)  # 0.95 or 95, as every result


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
