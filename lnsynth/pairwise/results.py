"""Result objects for pairwise meta-analysis.

All statistics are on the model scale (log scale for ratio measures).
``MetaResult`` is one analysis; ``MetaBatchResult`` holds B analyses as arrays
of shape (B,) (and (B, k) for yi/vi/weights, NaN marking absent studies).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import registry
from ..stats import ConfidenceInterval, normalize_level

DICT_KEYS = ("estimate", "se", "ci_low", "ci_high", "pvalue", "tau2", "tau2_ci_low",
             "tau2_ci_high", "i2", "h2", "q", "q_pvalue", "pi_low", "pi_high", "k")
RATIO_MEASURES = registry.ratio_measures()  # RR, OR, PETO, ROM, IRR, HR

_FIXED = registry.fixed_effect_methods()  # FE, MH, PETO: no tau^2

_STAT_FIELDS = ("estimate", "se", "zval", "pvalue", "ci_low", "ci_high", "tau2", "se_tau2",
                "tau2_ci_low", "tau2_ci_high", "i2", "h2", "q", "q_pvalue", "pi_low",
                "pi_high", "k", "converged", "n_maxima")


def _is_ratio(measure) -> bool:
    return measure is not None and str(measure).upper() in RATIO_MEASURES


def _transf_fn(transf):
    if transf is None or transf is False:
        return None
    if transf == "exp" or transf is True:
        return np.exp
    if callable(transf):
        return transf
    raise ValueError(f"transf: expected None, 'exp' or a callable, got {transf!r}")


@dataclass(frozen=True)
class MetaResult:
    """One fitted meta-analysis (metafor ``rma()`` equivalent, intercept only).

    ``weights`` are percentage weights (as metafor ``weights()``), ``zval`` is the
    z or t statistic (``test``), ``df`` = k-1 for test="knha" else None.
    ``tau2_ci_low/high`` are the Q-profile limits (NaN for FE/MH/PETO, k=1 or
    when not computed); ``converged`` is False when an iterative step failed;
    ``n_maxima`` > 1 flags a multimodal (RE)ML likelihood (global max returned).
    """

    estimate: float
    se: float
    zval: float
    pvalue: float
    ci_low: float
    ci_high: float
    tau2: float
    se_tau2: float
    tau2_ci_low: float
    tau2_ci_high: float
    i2: float
    h2: float
    q: float
    q_pvalue: float
    pi_low: float
    pi_high: float
    k: int
    converged: bool
    n_maxima: int
    yi: np.ndarray
    vi: np.ndarray
    weights: np.ndarray
    labels: tuple | None
    measure: str | None
    method: str
    test: str
    level: float
    extra: dict = field(default_factory=dict)

    # -- conversions ---------------------------------------------------------
    @property
    def is_ratio(self) -> bool:
        return _is_ratio(self.measure)

    @property
    def df(self):
        return self.k - 1 if self.test == "knha" else None

    def to_dict(self) -> dict[str, Any]:
        """Model-scale statistics under the keys ``DICT_KEYS`` (Python scalars)."""
        d = {}
        for key in DICT_KEYS:
            val = getattr(self, key)
            d[key] = int(val) if key == "k" else float(val)
        return d

    def conf_int(self, level: float | None = None) -> ConfidenceInterval:
        """Confidence interval of the pooled estimate (z, or t(k-1) for test="knha") on the model scale.

        ``level`` (0.95 or 95) defaults to the fit's level. For the tau², I² and H² intervals see
        :func:`lnsynth.pairwise.tau2_conf_int`.
        """
        from scipy import special

        level = normalize_level(level, self.level)
        q = 1.0 - (1.0 - level) / 2.0
        crit = float(special.stdtrit(self.k - 1, q)) if (self.test == "knha" and self.k > 1) else float(special.ndtri(q))
        return ConfidenceInterval(float(self.estimate - crit * self.se), float(self.estimate + crit * self.se))

    def exp(self) -> dict[str, float]:
        """Back-transformed (exp) estimate, CI and PI; for ratio measures."""
        return self.transformed("exp")

    def transformed(self, transf="exp") -> dict[str, float]:
        f = _transf_fn(transf)
        return {key: float(f(getattr(self, key)))
                for key in ("estimate", "ci_low", "ci_high", "pi_low", "pi_high")}

    def to_frame(self, transf=None):
        import pandas as pd

        row = self.to_dict()
        f = _transf_fn(transf)
        if f is not None:
            for key in ("estimate", "ci_low", "ci_high", "pi_low", "pi_high"):
                row[key] = float(f(row[key]))
        row.update(method=self.method, test=self.test, converged=bool(self.converged),
                   measure=self.measure)
        return pd.DataFrame([row])

    def study_frame(self):
        """Per-study table (label, yi, vi, weight %)."""
        import pandas as pd

        labels = self.labels if self.labels is not None else tuple(f"Study {i + 1}" for i in range(len(self.yi)))
        return pd.DataFrame({"label": list(labels), "yi": self.yi, "vi": self.vi, "weight": self.weights})

    # -- text ---------------------------------------------------------------
    def summary(self, digits: int = 4) -> str:
        f = f"{{:.{digits}f}}"
        model = "Fixed-Effects" if self.method in _FIXED else "Random-Effects"
        lines = [f"{model} Model (k = {self.k}; method: {self.method}; test: {self.test})", ""]
        if self.method not in _FIXED:
            ci = ""
            if np.isfinite(self.tau2_ci_low):
                ci = f" [{f.format(self.tau2_ci_low)}, {f.format(self.tau2_ci_high)}]"
            se = f" (SE = {f.format(self.se_tau2)})" if np.isfinite(self.se_tau2) else ""
            what = "specified (fixed)" if self.extra.get("tau2_fixed") else "estimated"
            lines.append(f"tau^2 ({what} amount of total heterogeneity): {f.format(self.tau2)}{se}{ci}")
            lines.append(f"tau (square root of estimated tau^2 value):      {f.format(np.sqrt(self.tau2))}")
        lines.append(f"I^2 (total heterogeneity / total variability):   {self.i2:.2f}%")
        lines.append(f"H^2 (total variability / sampling variability):  {self.h2:.2f}")
        lines.append("")
        lines.append(f"Test for Heterogeneity:\nQ(df = {max(self.k - 1, 0)}) = {f.format(self.q)}, p-val = {_fmtp(self.q_pvalue)}")
        lines.append("")
        stat = "tval" if self.test == "knha" else "zval"
        dfs = f" (df = {self.k - 1})" if self.test == "knha" else ""
        lines.append(f"Model Results{dfs}:")
        lines.append("")
        lines.append(f"estimate      se     {stat}    pval    ci.lb    ci.ub")
        lines.append(f"{f.format(self.estimate)}  {f.format(self.se)}  {self.zval:.4f}  {_fmtp(self.pvalue)}  "
                     f"{f.format(self.ci_low)}  {f.format(self.ci_high)}")
        lines.append(f"Prediction interval: [{f.format(self.pi_low)}, {f.format(self.pi_high)}]")
        if self.is_ratio:
            e = self.exp()
            lines.append("")
            lines.append(f"Back-transformed (exp, {self.measure}): {f.format(e['estimate'])} "
                         f"[{f.format(e['ci_low'])}, {f.format(e['ci_high'])}]; "
                         f"PI [{f.format(e['pi_low'])}, {f.format(e['pi_high'])}]")
        if "cmh" in self.extra and np.isfinite(self.extra["cmh"]):
            name = "Mantel-Haenszel test: MH" if str(self.measure).upper() == "IRR" else "Cochran-Mantel-Haenszel test: CMH"
            lines.append(f"{name} = {f.format(self.extra['cmh'])}, df = 1, "
                         f"p-val = {_fmtp(self.extra['cmh_pvalue'])}")
        if "bd" in self.extra and np.isfinite(self.extra["bd"]):
            dfb = int(self.extra.get("bd_k", self.k)) - 1
            lines.append(f"Breslow-Day test: X^2 = {f.format(self.extra['bd'])}, df = {dfb}, "
                         f"p-val = {_fmtp(self.extra['bd_pvalue'])}; Tarone's test: X^2 = "
                         f"{f.format(self.extra['tarone'])}, df = {dfb}, p-val = {_fmtp(self.extra['tarone_pvalue'])}")
        if not self.converged:
            lines.append("WARNING: estimation did not converge.")
        if self.n_maxima > 1:
            lines.append(f"NOTE: likelihood has {self.n_maxima} local maxima; global maximum reported.")
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()


def _fmtp(p: float) -> str:
    if not np.isfinite(p):
        return "NA"
    return "<.0001" if p < 1e-4 else f"{p:.4f}"


@dataclass(frozen=True)
class MetaBatchResult:
    """B meta-analyses fitted in one call; every statistic is an array of shape (B,).

    ``yi``, ``vi``, ``weights`` are (B, k) with NaN for absent studies.
    ``to_dict()`` returns, for each key of ``DICT_KEYS``, a NumPy array (B,).
    ``res[i]`` is the i-th analysis as a :class:`MetaResult`.
    """

    estimate: np.ndarray
    se: np.ndarray
    zval: np.ndarray
    pvalue: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    tau2: np.ndarray
    se_tau2: np.ndarray
    tau2_ci_low: np.ndarray
    tau2_ci_high: np.ndarray
    i2: np.ndarray
    h2: np.ndarray
    q: np.ndarray
    q_pvalue: np.ndarray
    pi_low: np.ndarray
    pi_high: np.ndarray
    k: np.ndarray
    converged: np.ndarray
    n_maxima: np.ndarray
    yi: np.ndarray
    vi: np.ndarray
    weights: np.ndarray
    labels: tuple | None
    measure: str | None
    method: str
    test: str
    level: float
    extra: dict = field(default_factory=dict)

    @property
    def is_ratio(self) -> bool:
        return _is_ratio(self.measure)

    def __len__(self) -> int:
        return int(self.estimate.shape[0])

    def __getitem__(self, i) -> MetaResult:
        n = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError("index a MetaBatchResult with an integer")
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"analysis index {i} out of range for a batch of {n}")
        keep = ~np.isnan(self.yi[i])
        labels = None
        if self.labels is not None:
            labels = tuple(lab for lab, kp in zip(self.labels, keep) if kp)
        vals = {f: getattr(self, f)[i].item() for f in _STAT_FIELDS}
        vals["k"] = int(vals["k"])
        vals["converged"] = bool(vals["converged"])
        vals["n_maxima"] = int(vals["n_maxima"])
        extra = {key: (val[i] if isinstance(val, np.ndarray) and val.shape[:1] == (n,) else val)
                 for key, val in self.extra.items()}
        return MetaResult(**vals, yi=self.yi[i][keep], vi=self.vi[i][keep], weights=self.weights[i][keep],
                          labels=labels, measure=self.measure, method=self.method, test=self.test,
                          level=self.level, extra=extra)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def to_dict(self) -> dict[str, np.ndarray]:
        return {key: np.asarray(getattr(self, key)) for key in DICT_KEYS}

    def to_frame(self, transf=None):
        import pandas as pd

        d = self.to_dict()
        f = _transf_fn(transf)
        if f is not None:
            for key in ("estimate", "ci_low", "ci_high", "pi_low", "pi_high"):
                d[key] = f(d[key])
        df = pd.DataFrame(d)
        df["method"] = self.method
        df["test"] = self.test
        df["converged"] = self.converged.astype(bool)
        df["measure"] = self.measure
        return df

    def exp(self) -> dict[str, np.ndarray]:
        return {key: np.exp(getattr(self, key)) for key in ("estimate", "ci_low", "ci_high", "pi_low", "pi_high")}

    def conf_int(self, level: float | None = None) -> ConfidenceInterval:
        """Confidence limits of every pooled estimate, arrays (B,) (z, or t(k-1) for test="knha").

        ``level`` (0.95 or 95) defaults to the fit's level; the same limits as ``res[i].conf_int(level)``.
        """
        from scipy import special

        lev = normalize_level(level, self.level)
        q = 1.0 - (1.0 - lev) / 2.0
        k = np.asarray(self.k, dtype=float)
        if self.test == "knha":
            crit = np.where(k > 1, special.stdtrit(np.maximum(k - 1, 1), q), special.ndtri(q))
        else:
            crit = np.full(k.shape, float(special.ndtri(q)))
        est, se = np.asarray(self.estimate, dtype=float), np.asarray(self.se, dtype=float)
        return ConfidenceInterval(est - crit * se, est + crit * se)

    def summary(self, digits: int = 4) -> str:
        n_bad = int((~self.converged.astype(bool)).sum())
        head = (f"Batch of {len(self)} meta-analyses (method: {self.method}; test: {self.test}; "
                f"k from {int(self.k.min())} to {int(self.k.max())}; not converged: {n_bad})")
        with np.printoptions(precision=digits):
            return head + "\n" + self.to_frame().describe().to_string()
