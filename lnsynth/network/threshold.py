r"""Threshold analysis of a network meta-analysis (Phillippo et al. 2018, 2019; R package nmathresh).

How much could each data point (a study's contrast) or each contrast's combined direct evidence
change -- for any reason: bias, sampling variation, relevance -- before the best treatment
changes, and which treatment would then be best?

For a fitted :class:`~lnsynth.network.model.NMAResult` with basic parameters :math:`\hat d`
(each treatment vs the reference), covariance :math:`P = (X'WX)^{-1}` and data :math:`y` (each
study's contrasts against its baseline arm, within-study covariance :math:`V`),
:math:`W = (V + \tau^2 B)^{-1}` (:math:`B = \tfrac12(I+J)` per study; :math:`\tau^2 = 0` under
fixed effect), the estimate is linear in the data: :math:`\hat d = P X' W y`.  The *influence
matrix* :math:`H = P X' W` gives the change of :math:`\hat d` when data point :math:`m` changes by
:math:`u`: :math:`\Delta \hat d = H_{\cdot m} u`.  With :math:`k^*` the current best treatment
(smallest effect when ``small_values="good"``, largest otherwise), treatment :math:`a` ties with
:math:`k^*` at

.. math:: u_{a,m} = -\frac{\hat d_a - \hat d_{k^*}}{H_{a m} - H_{k^* m}},

and the data point's *thresholds* are the smallest positive and the largest negative
:math:`u_{a,m}` over :math:`a \ne k^*`; the :math:`a` reached first is the new best treatment.
The *decision-invariant interval* is ``[estimate + lower, estimate + upper]``.  This is
nmathresh's ``nma_thresh(..., nmatype = "fixed")`` with the posterior mean and covariance
replaced by the GLS estimate and its covariance (the same under a normal likelihood and flat
priors); for a random-effects fit :math:`\tau^2` is held at its estimate (fixed and known, the
approximation Phillippo et al. make for random effects).

Contrast level: all direct evidence on one contrast (every data point comparing the same two
treatments, oriented alike) is shifted together; its influence is the sum of those data points'
columns of :math:`H`.  For a network of two-arm studies under fixed effect this equals a
contrast-level analysis whose data are the direct pooled estimates.  A contrast that appears only
implicitly inside a multi-arm study (between two non-baseline arms) is not shifted on its own
(stated in ``notes``); nmathresh instead reconstructs a hypothetical contrast-level likelihood
from the posterior covariance (``recon_vcov``), which can give somewhat different values.

No evidence I/O here: callers pass a fitted model (:mod:`lnsynth.analyses.network_data` builds one
from the evidence base).

References
----------
Phillippo DM, Dias S, Ades AE, et al. Sensitivity of treatment recommendations to bias in network
meta-analysis. J R Stat Soc A 2018;181:843-867.  Phillippo DM, Dias S, Welton NJ, et al. Threshold
analysis as an alternative to GRADE for assessing confidence in guideline recommendations based on
network meta-analyses. Ann Intern Med 2019;170:538-546.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from lnsynth import registry
from lnsynth.stats import Z95

__all__ = ["ThresholdAnalysis", "ThresholdRow", "contrast_thresholds", "influence_matrix", "study_thresholds",
           "thresholds_from_influence"]


@dataclass(frozen=True)
class ThresholdRow:
    """The thresholds of one data point (study level) or one contrast (contrast level).

    ``lower`` / ``upper`` are the changes (model scale, e.g. log OR) at which the best treatment
    changes to ``lower_best`` / ``upper_best``; ``-inf`` / ``inf`` (and ``None``) when no change
    in that direction alters the decision.
    """

    label: str
    treatment: str
    comparator: str
    estimate: float
    lower: float
    lower_best: Optional[str]
    upper: float
    upper_best: Optional[str]
    study: Optional[str] = None
    se: Optional[float] = None
    n_data_points: int = 1

    @property
    def lower_bound(self) -> float:
        """Lower end of the decision-invariant interval (``estimate + lower``)."""
        return self.estimate + self.lower

    @property
    def upper_bound(self) -> float:
        return self.estimate + self.upper

    @property
    def within_ci(self) -> bool:
        """A threshold lies inside the estimate's 95% CI (the decision is sensitive to its imprecision)."""
        if self.se is None or not math.isfinite(self.se):
            return False
        half = Z95 * self.se
        return (math.isfinite(self.lower) and -self.lower < half) or (math.isfinite(self.upper) and self.upper < half)

    def to_dict(self) -> dict:
        fin = (lambda x: float(x) if math.isfinite(x) else None)
        return {"label": self.label, "study": self.study, "treatment": self.treatment, "comparator": self.comparator,
                "estimate": float(self.estimate), "se": self.se, "n_data_points": self.n_data_points,
                "lower": fin(self.lower), "lower_best": self.lower_best, "upper": fin(self.upper),
                "upper_best": self.upper_best, "lower_bound": fin(self.lower_bound), "upper_bound": fin(self.upper_bound),
                "threshold_within_ci": self.within_ci}


@dataclass(frozen=True)
class ThresholdAnalysis:
    """Result of :func:`study_thresholds` or :func:`contrast_thresholds`."""

    level: str
    best: str
    treatments: tuple[str, ...]
    small_values: str
    measure: str
    method: str
    rows: tuple[ThresholdRow, ...]
    influence: np.ndarray = field(repr=False)
    notes: tuple[str, ...] = ()

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([r.to_dict() for r in self.rows])

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "best": self.best, "treatments": list(self.treatments),
                "small_values": self.small_values, "measure": self.measure, "method": self.method,
                "scale": f"log {self.measure}" if registry.is_ratio(self.measure) else self.measure,
                "rows": [r.to_dict() for r in self.rows], "notes": list(self.notes)}

    def row(self, label: str) -> ThresholdRow:
        for r in self.rows:
            if r.label == label:
                return r
        raise KeyError(f"no row {label!r}; rows: {[r.label for r in self.rows]}")


# ----------------------------------------------------------------------------- core
def _design(res) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, str, str]]]:
    """Stacked data ``y``, design ``X`` (rows: data points, columns: ``res.params``), ``W`` (block
    inverse of ``V + tau2 B``) and ``(study, treatment, baseline)`` per data point."""
    pidx = {p: i for i, p in enumerate(res.params)}
    ys, xs, blocks, meta = [], [], [], []
    for s in res.data.studies:
        k = len(s.y)
        Vs = np.atleast_2d(np.asarray(s.V, dtype=float)) + res.tau2 * 0.5 * (np.eye(k) + np.ones((k, k)))
        blocks.append(np.linalg.inv(Vs))
        base = s.treatments[0]
        for j, t in enumerate(s.treatments[1:]):
            x = np.zeros(len(res.params))
            if t in pidx:
                x[pidx[t]] += 1.0
            if base in pidx:
                x[pidx[base]] -= 1.0
            xs.append(x)
            ys.append(float(s.y[j]))
            meta.append((s.study, t, base))
    n = len(ys)
    W = np.zeros((n, n))
    i = 0
    for b in blocks:
        k = b.shape[0]
        W[i:i + k, i:i + k] = b
        i += k
    return np.asarray(ys), np.vstack(xs), W, meta


def influence_matrix(res) -> np.ndarray:
    r"""``H = P X' W`` (``len(res.params)`` x data points): the change of each basic parameter per
    unit change of each data point (``res.data.studies`` order, contrasts against each study's baseline)."""
    _, X, W, _ = _design(res)
    return np.asarray(res.vcov) @ X.T @ W


def _best(d_full: np.ndarray, small_values: str) -> int:
    return int(np.argmin(d_full) if small_values == "good" else np.argmax(d_full))


def thresholds_from_influence(d: Sequence[float], H: np.ndarray, treatments: Sequence[str],
                              small_values: str = "good") -> tuple[int, list[tuple[float, Optional[int], float, Optional[int]]]]:
    """Thresholds of each column of ``H`` (``d`` and the rows of ``H``: treatments 2..K vs treatment 1).

    Returns ``(k_star, [(lower, lower_new_best, upper, upper_new_best), ...])`` with treatment indices
    into ``treatments`` (``None`` when infinite).  Pure linear algebra: usable with a Bayesian
    posterior mean and covariance as nmathresh is (``H = post X' V^{-1}``).
    """
    if small_values not in ("good", "bad"):
        raise ValueError(f"small_values: expected 'good' or 'bad', got {small_values!r}")
    d_full = np.r_[0.0, np.asarray(d, dtype=float)]
    H_full = np.vstack([np.zeros((1, H.shape[1])), np.asarray(H, dtype=float)])
    if len(treatments) != len(d_full):
        raise ValueError(f"{len(treatments)} treatments for {len(d_full)} effects (reference + basic parameters)")
    ks = _best(d_full, small_values)
    out = []
    scale = max(1.0, float(np.max(np.abs(H_full)))) if H_full.size else 1.0
    for m in range(H_full.shape[1]):
        lo, lo_a, hi, hi_a = -math.inf, None, math.inf, None
        for a in range(len(d_full)):
            if a == ks:
                continue
            h = H_full[a, m] - H_full[ks, m]
            if abs(h) <= 1e-13 * scale:
                continue
            u = -(d_full[a] - d_full[ks]) / h
            if 0 < u < hi:
                hi, hi_a = u, a
            elif lo < u < 0:
                lo, lo_a = u, a
        out.append((lo, lo_a, hi, hi_a))
    return ks, out


def _check(res, small_values: str) -> None:
    if small_values not in ("good", "bad"):
        raise ValueError(f"small_values: expected 'good' (smaller effects are better) or 'bad', got {small_values!r}")
    if len(res.treatments) < 2 or not res.data.studies:
        raise ValueError("threshold analysis needs a fitted network with at least two treatments and one study")


def _order(res) -> tuple[list[str], np.ndarray]:
    """Treatments with the reference first (the order of ``d`` with 0 prepended)."""
    return [res.reference, *res.params], np.asarray(res.estimate, dtype=float)


def study_thresholds(res, small_values: str = "good") -> ThresholdAnalysis:
    """Study-level thresholds: one row per data point (each study's contrast against its baseline arm).

    Parameters
    ----------
    res : NMAResult
        A fitted network (:func:`lnsynth.network.network_meta_analysis`).
    small_values : {"good", "bad"}
        ``"good"``: the best treatment has the smallest effect vs the reference (e.g. log OR of
        death); ``"bad"``: the largest (e.g. log OR of remission).
    """
    _check(res, small_values)
    trts, d = _order(res)
    y, X, W, meta = _design(res)
    H = np.asarray(res.vcov) @ X.T @ W
    ks, th = thresholds_from_influence(d, H, trts, small_values)
    rows = []
    i = 0
    for s in res.data.studies:
        V = np.atleast_2d(np.asarray(s.V, dtype=float))
        for j in range(len(s.y)):
            lo, la, hi, ha = th[i]
            study, t, base = meta[i]
            rows.append(ThresholdRow(label=f"{study} ({t} vs {base})", study=study, treatment=t, comparator=base,
                                     estimate=float(y[i]), se=float(math.sqrt(V[j, j])), lower=lo,
                                     lower_best=None if la is None else trts[la], upper=hi,
                                     upper_best=None if ha is None else trts[ha]))
            i += 1
    notes = (f"best treatment now: {trts[ks]} ({'smallest' if small_values == 'good' else 'largest'} effect vs "
             f"{res.reference}); thresholds on the model scale ({'log ' + res.measure if registry.is_ratio(res.measure) else res.measure})",)
    if res.tau2 > 0:
        notes += (f"random effects: tau2 held at its estimate {res.tau2:.4g} (fixed and known)",)
    return ThresholdAnalysis("study", trts[ks], tuple(trts), small_values, res.measure, res.method, tuple(rows), H, notes)


def contrast_thresholds(res, small_values: str = "good") -> ThresholdAnalysis:
    """Contrast-level thresholds: one row per pair of treatments with direct evidence.

    The row's estimate is the inverse-variance pooled direct estimate of its data points (with
    ``tau2`` added under random effects; multi-arm correlations ignored for this summary only);
    the thresholds shift all its data points together (see the module docstring).
    """
    _check(res, small_values)
    trts, d = _order(res)
    y, X, W, meta = _design(res)
    H = np.asarray(res.vcov) @ X.T @ W
    var = []
    for s in res.data.studies:
        V = np.atleast_2d(np.asarray(s.V, dtype=float))
        var.extend(float(V[j, j]) + res.tau2 for j in range(len(s.y)))
    rank = {t: i for i, t in enumerate(res.treatments)}
    groups: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for m, (_, t, base) in enumerate(meta):
        a, b = (base, t) if rank[base] < rank[t] else (t, base)  # contrast "b vs a", a first in sorted order
        groups.setdefault((a, b), []).append((m, 1.0 if (base, t) == (a, b) else -1.0))
    cols, rows_meta = [], []
    for (a, b), members in sorted(groups.items(), key=lambda kv: (rank[kv[0][0]], rank[kv[0][1]])):
        cols.append(sum(sign * H[:, m] for m, sign in members))
        w = np.array([1.0 / var[m] for m, _ in members])
        est = float(np.sum(w * np.array([sign * y[m] for m, sign in members])) / np.sum(w))
        rows_meta.append((a, b, est, float(math.sqrt(1.0 / np.sum(w))), len(members)))
    Hc = np.column_stack(cols)
    ks, th = thresholds_from_influence(d, Hc, trts, small_values)
    rows = tuple(ThresholdRow(label=f"{b} vs {a}", treatment=b, comparator=a, estimate=est, se=se, n_data_points=k,
                              lower=lo, lower_best=None if la is None else trts[la], upper=hi,
                              upper_best=None if ha is None else trts[ha])
                 for (a, b, est, se, k), (lo, la, hi, ha) in zip(rows_meta, th))
    notes = [f"best treatment now: {trts[ks]}; each contrast's direct evidence shifted together"]
    multi = sorted({s.study for s in res.data.studies if len(s.y) > 1})
    if multi:
        notes.append("multi-arm studies (" + ", ".join(multi) + "): contrasts between two non-baseline arms are not "
                     "shifted on their own")
    if res.tau2 > 0:
        notes.append(f"random effects: tau2 held at its estimate {res.tau2:.4g} (fixed and known)")
    return ThresholdAnalysis("contrast", trts[ks], tuple(trts), small_values, res.measure, res.method, rows, Hc,
                             tuple(notes))
