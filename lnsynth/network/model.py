"""Contrast-based consistency network meta-analysis (fixed and random effects).

References
----------
Salanti G. (2012). Indirect and mixed-treatment comparison, network, or
multiple-treatments meta-analysis. Res Synth Methods 3:80-97.
Rücker G. (2012). Network meta-analysis, electrical networks and graph theory.
Res Synth Methods 3:312-324.
Viechtbauer W. (2010). Conducting meta-analyses in R with the metafor
package. J Stat Softw 36(3) -- ``rma.mv``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .. import registry
from . import _core
from .data import NetworkData, prepare

MODEL_SCALE = {m: f"log {m}" if registry.measure(m).scale == "log" else m for m in registry.network_measures()}
NETWORK_METHODS = registry.methods("network")  # FE, REML
_METHODS_TEXT = " or ".join(repr(m) for m in NETWORK_METHODS)


@dataclass(frozen=True, eq=False)
class NMAResult:
    """Result of :func:`network_meta_analysis`.

    Attributes
    ----------
    measure : str
        ``"OR"``, ``"RR"``, ``"RD"``, ``"MD"`` or ``"SMD"``.
    method : str
        ``"FE"`` or ``"REML"``.
    reference : str
    treatments : tuple of str
        All treatments, sorted.
    params : tuple of str
        Non-reference treatments (order of ``estimate`` / ``vcov``).
    estimate : ndarray
        Effects of ``params`` relative to ``reference`` (model scale).
    vcov : ndarray
        Their covariance matrix.
    tau2 : float
        Between-study variance (0 for FE).
    Q, Q_df, Q_pvalue : float, int, float
        Generalised Cochran's Q of the consistency model with FE weights
        (metafor's ``QE``; netmeta's ``Q``).
    loglik : float
        Log-likelihood as metafor's ``logLik``: ML for FE; REML at ``tau2``
        for REML (including metafor's ``+ log|X'X|/2`` term).
    tau2_at_boundary : bool
        True when the REML maximum is at ``tau2 = 0``.
    level : float
        Confidence level for intervals (normal-theory, as metafor ``test="z"``).
    data : NetworkData
        The validated contrast data the model was fitted to.
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

    # ------------------------------------------------------------------ basic
    @property
    def n_studies(self) -> int:
        return len(self.data.studies)

    @property
    def dropped_studies(self) -> tuple[str, ...]:
        return self.data.dropped

    @property
    def _z(self) -> float:
        return float(stats.norm.ppf(0.5 + self.level / 2.0))

    def _full(self) -> tuple[np.ndarray, np.ndarray]:
        """Effects and covariance for *all* treatments (reference = 0)."""
        T = len(self.treatments)
        idx = [self.treatments.index(t) for t in self.params]
        th = np.zeros(T)
        S = np.zeros((T, T))
        th[idx] = self.estimate
        S[np.ix_(idx, idx)] = self.vcov
        return th, S

    def relative_effects(self, exponentiate: bool = False) -> pd.DataFrame:
        """Effects of each non-reference treatment vs the reference.

        Columns ``treatment, estimate, se, ci_low, ci_high, zval, pvalue`` on
        the model scale; with ``exponentiate=True`` (ratio measures) also
        ``exp_estimate, exp_ci_low, exp_ci_high``.
        """
        se = np.sqrt(np.diag(self.vcov))
        z = self._z
        zval = self.estimate / se
        out = pd.DataFrame({
            "treatment": list(self.params),
            "estimate": self.estimate,
            "se": se,
            "ci_low": self.estimate - z * se,
            "ci_high": self.estimate + z * se,
            "zval": zval,
            "pvalue": 2.0 * stats.norm.sf(np.abs(zval)),
        })
        if exponentiate:
            for c in ("estimate", "ci_low", "ci_high"):
                out["exp_" + c] = np.exp(out[c])
        return out

    def pairwise_effects(self) -> pd.DataFrame:
        """All ordered pairs: effect of ``treat1`` relative to ``treat2``."""
        th, S = self._full()
        z = self._z
        rows = []
        for i, a in enumerate(self.treatments):
            for j, b in enumerate(self.treatments):
                if i == j:
                    continue
                est = th[i] - th[j]
                se = float(np.sqrt(max(S[i, i] + S[j, j] - 2.0 * S[i, j], 0.0)))
                rows.append((a, b, est, se, est - z * se, est + z * se))
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

    def design_by_treatment(self, random: bool | None = None) -> dict[str, Any]:
        """Design-by-treatment interaction test; see
        :func:`lnsynth.network.inconsistency.design_by_treatment`."""
        from .inconsistency import design_by_treatment
        return design_by_treatment(self, random=random)

    def node_split(self) -> pd.DataFrame:
        """Node-splitting (SIDE by exclusion); see :func:`lnsynth.network.inconsistency.node_split`."""
        from .inconsistency import node_split
        return node_split(self)

    # ----------------------------------------------------------------- output
    def to_frame(self) -> pd.DataFrame:
        """Relative effects vs the reference (same as :meth:`relative_effects`)."""
        return self.relative_effects(exponentiate=registry.is_ratio(self.measure))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary."""
        re = self.relative_effects()
        return {
            "measure": self.measure,
            "scale": MODEL_SCALE[self.measure],
            "method": self.method,
            "reference": self.reference,
            "treatments": list(self.treatments),
            "n_studies": self.n_studies,
            "dropped_studies": list(self.dropped_studies),
            "tau2": self.tau2,
            "tau2_at_boundary": self.tau2_at_boundary,
            "Q": self.Q,
            "Q_df": self.Q_df,
            "Q_pvalue": self.Q_pvalue,
            "loglik": self.loglik,
            "level": self.level,
            "relative_effects": re.to_dict(orient="records"),
            "q_decomposition": {k: {"Q": float(r.Q), "df": int(r.df), "pvalue": float(r.pvalue)}
                                for k, r in self.q_decomposition().iterrows()},
            "design_by_treatment": self.design_by_treatment(),
        }

    def summary(self) -> str:
        """Human-readable summary."""
        re = self.relative_effects(exponentiate=registry.is_ratio(self.measure))
        lines = [
            f"Network meta-analysis ({'fixed effect' if self.method == 'FE' else 'random effects, REML'}); "
            f"measure {self.measure} (model scale: {MODEL_SCALE[self.measure]})",
            f"{self.n_studies} studies, {len(self.treatments)} treatments; reference: {self.reference}",
        ]
        if self.dropped_studies:
            lines.append(f"dropped (no information): {', '.join(self.dropped_studies)}")
        lines.append(f"tau^2 = {self.tau2:.6g}{' (boundary)' if self.tau2_at_boundary and self.method != 'FE' else ''}; "
                     f"Q = {self.Q:.4f} on {self.Q_df} df (p = {self.Q_pvalue:.4g})")
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


def fit(data: NetworkData, method: str = "REML", level: float = 0.95, tau2: float | None = None) -> NMAResult:
    """Fit the consistency model to prepared :class:`NetworkData`.

    ``tau2`` fixes the between-study variance (used internally, e.g. by
    node-splitting); otherwise FE uses 0 and REML estimates it.
    """
    method = str(method).upper()
    if method not in NETWORK_METHODS:
        raise ValueError(f"method must be {_METHODS_TEXT}, got {method!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    params = tuple(t for t in data.treatments if t != data.reference)
    st = _core.stack(data.studies, params)
    m, p = st.X.shape
    if tau2 is not None:
        t2, info = float(tau2), {"at_boundary": tau2 == 0}
    elif method == "FE":
        t2, info = 0.0, {"at_boundary": True}
    else:
        t2, info = _core.reml_tau2(st)
    fe = _core.gls_st(st, 0.0)
    g = fe if t2 == 0 else _core.gls_st(st, t2)
    df = m - p
    est, vc = g.beta.copy(), g.vcov.copy()
    est.setflags(write=False)  # the result is immutable, arrays included
    vc.setflags(write=False)
    return NMAResult(
        measure=data.measure, method=method, reference=data.reference, treatments=data.treatments,
        params=params, estimate=est, vcov=vc, tau2=t2, Q=fe.Q, Q_df=df,
        Q_pvalue=float(stats.chi2.sf(fe.Q, df)) if df > 0 else float("nan"),
        loglik=g.loglik_ml if method == "FE" else g.loglik_reml, tau2_at_boundary=bool(info.get("at_boundary", False)), level=level, data=data,
    )


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
    method : {"FE", "REML"}
        Fixed effect, or random effects with tau^2 estimated by REML.
    level : float
        Confidence level.

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

    Raises
    ------
    ValueError
        Bad input (missing columns, events > n, unknown reference, single-arm
        studies, duplicate arms, ...), naming study and field, or a
        disconnected network (listing the treatments of each component).
    """
    if str(method).upper() not in NETWORK_METHODS:
        raise ValueError(f"method must be {_METHODS_TEXT}, got {method!r}")
    data = prepare(df, study=study, treatment=treatment, events=events, n=n, mean=mean, sd=sd,
                   yi=yi, vi=vi, treat1=treat1, treat2=treat2, cov=cov, measure=measure,
                   reference=reference)
    return fit(data, method=method, level=level)
