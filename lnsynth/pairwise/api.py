"""Public entry point :func:`meta_analysis` (metafor ``rma()`` for intercept-only models)."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .. import registry
from .results import MetaBatchResult, MetaResult

METHODS = registry.methods("pairwise")  # FE, MH, PETO, DL, REML, ML, PM, SJ, HE, EB
TESTS = ("z", "knha")
_IV_METHODS = registry.iv_methods()
_TABLE_METHODS = registry.methods(inverse_variance=False)  # MH, PETO: pool 2x2 tables


class MetaAnalysisWarning(UserWarning):
    """Non-convergence, multimodal likelihood, k = 1 and similar conditions."""


def _where(study: int, labels, analysis: int | None) -> str:
    lab = f" ({labels[study]!r})" if labels is not None and study < len(labels) else ""
    pre = f"analysis {analysis}, " if analysis is not None else ""
    return f"{pre}study index {study}{lab}"


def _idx_list(idx, limit: int = 10) -> str:
    idx = [int(i) for i in idx]
    s = ", ".join(str(i) for i in idx[:limit])
    return s + (f", ... ({len(idx)} in all)" if len(idx) > limit else "")


def _validate(yi, vi, labels):
    """Return 2-D float arrays Y, V (B, k), the batch flag and labels tuple."""
    try:
        Y = np.asarray(yi, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"yi: could not convert to a float array ({exc})") from None
    try:
        V = np.asarray(vi, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"vi: could not convert to a float array ({exc})") from None
    if Y.ndim not in (1, 2):
        raise ValueError(f"yi: expected a 1-D (k,) or 2-D (B, k) array, got shape {Y.shape}")
    if V.shape != Y.shape:
        raise ValueError(f"vi: shape {V.shape} does not match yi shape {Y.shape} (length mismatch)")
    batch = Y.ndim == 2
    if not batch:
        Y = Y[None, :]
        V = V[None, :]
    B, k = Y.shape
    if k == 0 or B == 0:
        raise ValueError("yi: no studies given (empty array)")
    if labels is not None:
        labels = tuple(str(x) for x in labels)
        if len(labels) != k:
            raise ValueError(f"labels: {len(labels)} labels for {k} studies (length mismatch)")
    an = (lambda b: b) if batch else (lambda b: None)
    ny = np.isnan(Y)
    nv = np.isnan(V)
    if not batch and (ny.any() or nv.any()):
        name, m = ("yi", ny) if ny.any() else ("vi", nv)
        j = int(np.argmax(m[0]))
        raise ValueError(f"{name} is NaN at {_where(j, labels, None)}; a single analysis needs complete data "
                         "(drop the study, or pass a 2-D batch where NaN marks absent studies)")
    for name, a, b_ in (("yi", ny, nv), ("vi", nv, ny)):
        bad = a & ~b_
        if bad.any():
            b, j = (int(x) for x in np.argwhere(bad)[0])
            other = "vi" if name == "yi" else "yi"
            raise ValueError(f"{name} is NaN but {other} is not at {_where(j, labels, an(b))}")
    for name, a in (("yi", Y), ("vi", V)):
        bad = np.isinf(a)
        if bad.any():
            b, j = (int(x) for x in np.argwhere(bad)[0])
            raise ValueError(f"{name} is infinite at {_where(j, labels, an(b))}")
    bad = ~nv & (V <= 0)
    if bad.any():
        b, j = (int(x) for x in np.argwhere(bad)[0])
        raise ValueError(f"vi must be > 0; got {float(V[b, j])!r} at {_where(j, labels, an(b))}")
    K = (~ny).sum(axis=1)
    empty = np.flatnonzero(K == 0)
    if empty.size:
        raise ValueError(f"yi/vi: analysis {_idx_list(empty)} has no studies (all NaN)")
    return Y, V, K, batch, labels


def _level(level) -> float:
    level = float(level)
    if 1.0 < level < 100.0:
        level /= 100.0
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1) (or a percentage), got {level}")
    return level


def meta_analysis(es=None, *, yi=None, vi=None, sei=None, method: str = "REML", test: str = "z",
                  level: float = 0.95, labels=None, measure: str | None = None,
                  control: dict | None = None, ci_tau2: bool | None = None, correct: bool = True):
    """Fit a fixed- or random-effects meta-analysis like ``metafor::rma()``.

    Parameters
    ----------
    es : EffectSizes, optional
        Output of :func:`lnsynth.effects.effect_sizes`; supplies yi, vi,
        labels, measure and (for MH/PETO) the 2x2 counts.
    yi, vi, sei : array_like
        Effect sizes and sampling variances (or standard errors ``sei``);
        shape (k,) for one analysis or (B, k) for a batch, NaN marking a study
        absent from an analysis (batch only).
    method : {"REML", "ML", "DL", "PM", "SJ", "HE", "EB", "FE", "MH", "PETO"}
    test : {"z", "knha"}
        ``"knha"``: Knapp-Hartung standard error with t(k-1) (no truncation of
        the adjustment, as metafor's ``test="knha"``).  k = 1 always uses z.
    level : float
        Confidence level (0.95 or 95).
    control : dict, optional
        ``ci_tau2`` (bool, default True): compute the Q-profile CI of tau2;
        ``parallel`` (bool or None): use the multi-threaded kernel (default:
        B >= 1024, in the main thread of a process that is not a
        multiprocessing worker).
    ci_tau2 : bool, optional
        Shortcut for ``control={"ci_tau2": ...}``.
    correct : bool
        Method MH with measure OR: continuity correction (0.5) in the
        Cochran-Mantel-Haenszel test, as ``rma.mh(..., correct=TRUE)``
        (default True; reported as ``extra["cmh"]``, ``extra["cmh_pvalue"]``).
        Ignored by the other methods.

    Returns
    -------
    MetaResult for 1-D input, MetaBatchResult for a (B, k) batch.
    """
    control = dict(control or {})
    unknown = set(control) - {"ci_tau2", "parallel"}
    if unknown:
        raise ValueError(f"control: unknown option(s) {sorted(unknown)}; valid: ci_tau2, parallel")
    if ci_tau2 is not None:
        control["ci_tau2"] = bool(ci_tau2)
    do_ci = bool(control.get("ci_tau2", True))
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ValueError(f"method: unknown method {method!r}; valid: {', '.join(METHODS)}")
    method = method.upper()
    if not isinstance(test, str) or test.lower() not in TESTS:
        raise ValueError(f"test: unknown test {test!r}; valid: {', '.join(TESTS)}")
    test = test.lower()
    level = _level(level)

    if es is not None:
        if yi is not None or vi is not None or sei is not None:
            raise ValueError("es: give either es or yi/vi (sei), not both")
        yi, vi = es.yi, es.vi
        if labels is None:
            labels = getattr(es, "labels", None)
        if measure is None:
            measure = getattr(es, "measure", None)
    else:
        if yi is None:
            raise ValueError("yi: required (or pass es)")
        if vi is None and sei is None:
            raise ValueError("vi: required (or sei)")
        if vi is not None and sei is not None:
            raise ValueError("vi: give vi or sei, not both")
        if vi is None:
            s = np.asarray(sei, dtype=np.float64)
            bad = ~np.isnan(s) & (s <= 0)
            if bad.any():
                idx = tuple(int(x) for x in np.argwhere(bad)[0])
                raise ValueError(f"sei must be > 0; got {float(s[idx])!r} at index {idx}")
            vi = s * s

    if method in _TABLE_METHODS:
        return _fit_mh(es, method, test, level, labels, measure, bool(correct))

    Y, V, K, batch, labels = _validate(yi, vi, labels)
    return _fit_iv(Y, V, K, batch, labels, method, test, level, measure, do_ci, control.get("parallel"))


def _fit_iv(Y, V, K, batch, labels, method, test, level, measure, do_ci, parallel):
    from scipy import special

    from . import core

    if method == "FE" and test == "knha":
        warnings.warn("Knapp & Hartung method is not meant to be used in the context of FE models.",
                      MetaAnalysisWarning, stacklevel=3)
    ones = np.flatnonzero(K == 1)
    if ones.size:
        where = f" (analysis {_idx_list(ones)})" if batch else ""
        warnings.warn(f"k = 1{where}: tau^2 set to 0 (fixed-effect result, z test, Q = 0, I^2 = 0, H^2 = 1); "
                      "no heterogeneity can be estimated.", MetaAnalysisWarning, stacklevel=3)
    missing = np.isnan(Y)
    if missing.any():  # absent study -> y = 0, v = inf: weight exactly 0 in the kernel
        Yk = np.where(missing, 0.0, Y)
        Vk = np.where(missing, np.inf, V)
    else:
        Yk, Vk = Y, V
    out = core.fit_batch(np.ascontiguousarray(Yk), np.ascontiguousarray(Vk), K, method, test == "knha",
                         do_ci, level, parallel=parallel)
    est, se, tau2 = out["estimate"], out["se"], out["tau2"]
    df = (K - 1).astype(np.float64)
    alpha = 1.0 - level
    use_t = (test == "knha") & (K > 1)
    dft = np.where(use_t, df, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        zval = est / se
        if use_t.any():
            udf, inv = np.unique(dft, return_inverse=True)  # t quantiles once per distinct k
            crit = np.where(use_t, special.stdtrit(udf, 1.0 - alpha / 2.0)[inv], special.ndtri(1.0 - alpha / 2.0))
            pval = np.where(use_t, 2.0 * special.stdtr(dft, -np.abs(zval)), 2.0 * special.ndtr(-np.abs(zval)))
        else:
            crit = np.full(est.shape, special.ndtri(1.0 - alpha / 2.0))
            pval = 2.0 * special.ndtr(-np.abs(zval))
        q_p = np.where(K > 1, special.chdtrc(np.maximum(df, 1.0), out["q"]), 1.0)
        half = crit * se
        pih = crit * np.sqrt(se * se + tau2)
        w = 1.0 / (Vk + tau2[:, None])
        w *= (100.0 / w.sum(axis=1))[:, None]
        weights = w
    if Vk is not V:
        weights[missing] = np.nan
    conv = out["converged"].astype(bool)
    nmax = out["n_maxima"].astype(np.int64)
    bad = np.flatnonzero(~conv)
    if bad.size:
        where = f"analysis {_idx_list(bad)}" if batch else "the analysis"
        warnings.warn(f"{method}: iterative estimation did not converge for {where}; results flagged "
                      "converged=False.", MetaAnalysisWarning, stacklevel=3)
    multi = np.flatnonzero(nmax > 1)
    if multi.size:
        where = f"analysis {_idx_list(multi)}" if batch else "this analysis"
        warnings.warn(f"{method}: the likelihood has more than one local maximum for {where}; the global "
                      "maximum on [0, inf) is returned (metafor's Fisher scoring may report another).",
                      MetaAnalysisWarning, stacklevel=3)
    flag = out["tau2_ci_flag"].astype(np.int64)
    if do_ci and (flag > 0).any():
        idx = np.flatnonzero(flag > 0)
        where = f"analysis {_idx_list(idx)}" if batch else "this analysis"
        warnings.warn(f"Q-profile CI for tau^2: bound(s) not found below tau2.max = max(100, 10*tau2) for "
                      f"{where}; reported as tau2.max (as confint.rma.uni).", MetaAnalysisWarning, stacklevel=3)
    res = MetaBatchResult(
        estimate=est, se=se, zval=zval, pvalue=pval, ci_low=est - half, ci_high=est + half, tau2=tau2,
        se_tau2=out["se_tau2"], tau2_ci_low=out["tau2_ci_low"], tau2_ci_high=out["tau2_ci_high"],
        i2=out["i2"], h2=out["h2"], q=out["q"], q_pvalue=q_p, pi_low=est - pih, pi_high=est + pih,
        k=K.astype(np.int64), converged=conv, n_maxima=nmax, yi=Y, vi=V, weights=weights, labels=labels,
        measure=measure, method=method, test=test, level=level, extra={"tau2_ci_flag": flag},
    )
    return res if batch else res[0]


def _fit_mh(es, method, test, level, labels, measure, correct=True):
    if es is None or getattr(es, "ai", None) is None:
        raise ValueError(f"method: {method} needs es=effect_sizes(...) with 2x2 counts (ai, bi, ci, di)")
    if test != "z":
        raise ValueError(f"test: {method} supports only test='z' (as metafor rma.mh/rma.peto)")
    from . import mh

    meas = str(es.measure).upper()
    if method == "PETO":
        if meas not in registry.method_measures("PETO"):
            raise ValueError(f"method: PETO needs es.measure 'OR' or 'PETO', got {es.measure!r}")
        d = mh.peto_core(es.ai, es.bi, es.ci, es.di, level=level)
    else:
        d = mh.mh_core(es.ai, es.bi, es.ci, es.di, meas, correct=correct, level=level)
    ai = np.asarray(es.ai, dtype=np.float64)
    batch = ai.ndim == 2
    Y = np.atleast_2d(np.asarray(es.yi, dtype=np.float64))
    V = np.atleast_2d(np.asarray(es.vi, dtype=np.float64))
    B = Y.shape[0]

    def arr(key, default=np.nan):
        if key in d:
            return np.asarray(d[key], dtype=np.float64).reshape(B)
        return np.full(B, default)

    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(np.isnan(V), np.nan, 1.0 / V)
        weights = 100.0 * w / np.nansum(w, axis=1, keepdims=True)
    nan = np.full(B, np.nan)
    extra = {key: np.asarray(val).reshape(B) for key, val in d.items() if key in ("cmh", "cmh_pvalue")}
    extra["weights_note"] = "inverse-variance % weights of the escalc outcomes (display only)"
    res = MetaBatchResult(
        estimate=arr("estimate"), se=arr("se"), zval=arr("zval"), pvalue=arr("pvalue"),
        ci_low=arr("ci_low"), ci_high=arr("ci_high"), tau2=np.zeros(B), se_tau2=nan.copy(),
        tau2_ci_low=nan.copy(), tau2_ci_high=nan.copy(), i2=arr("i2"), h2=arr("h2"), q=arr("q"),
        q_pvalue=arr("q_pvalue"), pi_low=arr("ci_low"), pi_high=arr("ci_high"),
        k=arr("k").astype(np.int64), converged=np.ones(B, dtype=bool), n_maxima=np.ones(B, dtype=np.int64),
        yi=Y, vi=V, weights=weights, labels=tuple(labels) if labels is not None else None,
        measure=measure, method=method, test=test, level=level, extra=extra,
    )
    return res if batch else res[0]
