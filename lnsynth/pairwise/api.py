"""Public entry point :func:`meta_analysis` (metafor ``rma()`` for intercept-only models)."""
from __future__ import annotations

import warnings

import numpy as np

from .. import registry
from ..stats import normalize_level
from .results import MetaBatchResult

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
    """0.95 or 95 -> 0.95 (:func:`lnsynth.stats.normalize_level`)."""
    return normalize_level(level)


def meta_analysis(es=None, *, yi=None, vi=None, sei=None, method: str = "REML", test: str = "z",
                  level: float = 0.95, labels=None, measure: str | None = None,
                  control: dict | None = None, ci_tau2: bool | None = None, correct: bool = True,
                  tau2=None):
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
        multiprocessing worker);
        ``tau2_init`` (float >= 0, or (B,) array): metafor's ``control=list(tau2.init=)``.
        For SJ it is the a-priori value :math:`\tau^2_0` of the Sidik-Jonkman
        estimator :math:`\tau^2_0 Q(\tau^2_0)/(k-1)` (default the variance of yi
        with divisor k), so it changes the estimate, as in metafor.  For ML/REML
        it selects the local maximum of the likelihood uphill from ``tau2_init``
        (the one Fisher scoring started there reaches); without it the global
        maximum is returned, so it only matters when ``n_maxima`` > 1.  PM and EB
        solve an equation with one root and DL/HE are closed-form: no effect.
    ci_tau2 : bool, optional
        Shortcut for ``control={"ci_tau2": ...}``.
    correct : bool
        Method MH with measure OR (or IRR): continuity correction (0.5) in the
        Cochran-Mantel-Haenszel test, as ``rma.mh(..., correct=TRUE)``
        (default True; reported as ``extra["cmh"]``, ``extra["cmh_pvalue"]``).
        MH with measure OR also reports the Breslow-Day test and Tarone's
        correction (``extra["bd"]``, ``"bd_pvalue"``, ``"tarone"``,
        ``"tarone_pvalue"``, ``"bd_k"``).  Ignored by the other methods.
    tau2 : float or (B,) array, optional
        Fix tau2 at this value instead of estimating it (metafor
        ``rma(..., tau2=)``), with any random-effects ``method`` (which then
        only names the model and the formula of ``se_tau2``, evaluated at the
        fixed value as metafor does).  The tau2 CI is NaN and
        ``extra["tau2_fixed"]`` is True; Q is the fixed-effect Q and I², H²
        follow from the fixed tau2 as metafor's.

    Returns
    -------
    MetaResult for 1-D input, MetaBatchResult for a (B, k) batch.

    References
    ----------
    Viechtbauer W (2010). Conducting meta-analyses in R with the metafor
    package. J Stat Softw 36(3):1-48.
    Sidik K, Jonkman JN (2005). Simple heterogeneity variance estimation for
    meta-analysis. J R Stat Soc C 54:367-384 (the a-priori value of SJ).

    Examples
    --------
    >>> import numpy as np
    >>> yi = np.array([-0.89, -1.59, -1.35, -1.44, -0.22, -0.79, -1.62, 0.01, -0.47, -1.37, -0.34, 0.45, -0.02])
    >>> vi = np.array([0.33, 0.19, 0.42, 0.02, 0.05, 0.01, 0.22, 0.004, 0.06, 0.07, 0.01, 0.53, 0.07])
    >>> res = meta_analysis(yi=yi, vi=vi, tau2=0.1)
    >>> float(res.tau2), bool(res.extra["tau2_fixed"])
    (0.1, True)
    >>> sj = meta_analysis(yi=yi, vi=vi, method="SJ", control={"tau2_init": 0.2})
    >>> sj.tau2 > 0
    True
    """
    control = dict(control or {})
    unknown = set(control) - {"ci_tau2", "parallel", "tau2_init"}
    if unknown:
        raise ValueError(f"control: unknown option(s) {sorted(unknown)}; valid: ci_tau2, parallel, tau2_init")
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
        if tau2 is not None or control.get("tau2_init") is not None:
            raise ValueError(f"tau2: {method} is a fixed-effect method; tau2 and tau2_init need a random-effects "
                             f"method ({', '.join(registry.random_effects_methods())})")
        return _fit_mh(es, method, test, level, labels, measure, bool(correct))

    Y, V, K, batch, labels = _validate(yi, vi, labels)
    fixed = _tau2_arg(tau2, "tau2", Y.shape[0], method)
    init = _tau2_arg(control.get("tau2_init"), "control['tau2_init']", Y.shape[0], method)
    return _fit_iv(Y, V, K, batch, labels, method, test, level, measure, do_ci, control.get("parallel"),
                   fixed, init)


def _tau2_arg(value, name, B, method):
    """A fixed tau2 / tau2_init as a (B,) array (None when not given), checked."""
    if value is None:
        return None
    if method not in registry.random_effects_methods():
        raise ValueError(f"{name}: method {method} has no tau^2; use a random-effects method "
                         f"({', '.join(registry.random_effects_methods())})")
    try:
        t = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number >= 0 (or one per analysis), got {value!r}") from None
    if t.ndim == 0:
        t = np.full(B, float(t))
    if t.shape != (B,):
        raise ValueError(f"{name}: expected a scalar or {B} values (one per analysis), got shape {t.shape}")
    bad = np.flatnonzero(~(np.isfinite(t) & (t >= 0)))
    if bad.size:
        where = f" for analysis {int(bad[0])}" if B > 1 else ""
        raise ValueError(f"{name} must be a finite number >= 0{where}, got {float(t[bad[0]])!r}")
    return t


def _given_tau2(Yk, Vk, K, T, knha):
    """Model statistics at a given tau2 (B,) in the kernel's output layout (missing: y=0, v=inf)."""
    df = (K - 1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = 1.0 / (Vk + T[:, None])
        sw = w.sum(1)
        mu = (w * Yk).sum(1) / sw
        qt = (w * (Yk - mu[:, None]) ** 2).sum(1)
        vb = 1.0 / sw
        if knha:
            s2w = np.where(qt <= np.finfo(float).eps, 0.0, qt / np.maximum(df, 1.0))
            vb = np.where(K > 1, vb * s2w, vb)
        w0 = 1.0 / Vk
        sw0 = w0.sum(1)
        mu0 = (w0 * Yk).sum(1) / sw0
        qe = np.maximum(0.0, (w0 * (Yk - mu0[:, None]) ** 2).sum(1))
        trp0 = sw0 - (w0 * w0).sum(1) / sw0
        vt = df / trp0
        i2 = np.where(K > 1, 100.0 * T / (vt + T), 0.0)
        h2 = np.where(K > 1, T / vt + 1.0, 1.0)
    qe = np.where(K > 1, qe, 0.0)
    nan = np.full(T.shape, np.nan)
    return {"estimate": mu, "se": np.sqrt(vb), "tau2": T.astype(np.float64), "se_tau2": nan, "q": qe, "i2": i2,
            "h2": h2, "tau2_ci_low": nan.copy(), "tau2_ci_high": nan.copy(), "converged": np.ones(T.shape),
            "n_maxima": np.ones(T.shape), "tau2_ci_flag": np.zeros(T.shape)}


def _se_tau2_row(method, y, v, tau2, t0=None):
    """Standard error of the tau2 estimator ``method`` evaluated at ``tau2`` (one analysis, complete data).

    The formulas of the kernel (metafor's), used for a fixed tau2 (metafor reports them there too)
    and after ``tau2_init``; SJ's depends on its a-priori value ``t0`` (default var(y) (k-1)/k).
    """
    k = y.size
    df = k - 1.0
    if k < 2 or method == "FE":
        return np.nan
    if method in ("ML", "REML", "PM", "EB"):
        w = 1.0 / (v + tau2)
        sw, sw2, sw3 = w.sum(), (w * w).sum(), (w ** 3).sum()
        if method == "ML":
            return float(np.sqrt(2.0 / sw2))
        if method == "REML":
            return float(np.sqrt(2.0 / (sw2 - 2.0 * sw3 / sw + sw2 ** 2 / sw ** 2)))
        return float(np.sqrt(2.0 * k * k / df) / sw)
    if method == "DL":
        w = 1.0 / v
        sw, sw2, sw3 = w.sum(), (w * w).sum(), (w ** 3).sum()
        trp = sw - sw2 / sw
        ppt = sw2 - 2.0 * sw3 / sw + sw2 ** 2 / sw ** 2
        return float(np.sqrt((2.0 * df + 4.0 * tau2 * trp + 2.0 * tau2 ** 2 * ppt) / trp ** 2))
    if method == "HE":
        vs, v2s = v.sum(), (v * v).sum()
        trpv = vs * (1.0 - 1.0 / k)
        pvpv = (1.0 - 2.0 / k) * v2s + vs ** 2 / k ** 2
        return float(np.sqrt(2.0 * pvpv + 4.0 * tau2 * trpv + 2.0 * tau2 ** 2 * df) / df)
    # SJ
    if t0 is None:
        t0 = float(np.mean((y - y.mean()) ** 2))
    w = 1.0 / (v + t0)
    sw = w.sum()
    w2 = w * w
    sw2, sw3 = w2.sum(), (w2 * w).sum()
    pvpv = ((w2 - 2.0 * w2 * w / sw) * v * v).sum() + (w2 * v).sum() ** 2 / sw ** 2
    pvp = (v * (w2 - 2.0 * w2 * w / sw + w2 * sw2 / sw ** 2)).sum()
    ppt = sw2 - 2.0 * sw3 / sw + sw2 ** 2 / sw ** 2
    return float(t0 / df * np.sqrt(2.0 * pvpv + 4.0 * tau2 * pvp + 2.0 * tau2 ** 2 * ppt))


def _se_tau2_batch(method, Yk, Vk, K, T):
    """:func:`_se_tau2_row` for every row at once (missing studies: y = 0, v = inf)."""
    ok = np.isfinite(Vk)
    k = K.astype(np.float64)
    df = k - 1.0
    t = T[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        if method in ("ML", "REML", "PM", "EB"):
            w = 1.0 / (Vk + t)
            sw, sw2, sw3 = w.sum(1), (w * w).sum(1), (w ** 3).sum(1)
            if method == "ML":
                se = np.sqrt(2.0 / sw2)
            elif method == "REML":
                se = np.sqrt(2.0 / (sw2 - 2.0 * sw3 / sw + sw2 ** 2 / sw ** 2))
            else:
                se = np.sqrt(2.0 * k * k / df) / sw
        elif method == "DL":
            w = 1.0 / Vk
            sw, sw2, sw3 = w.sum(1), (w * w).sum(1), (w ** 3).sum(1)
            trp = sw - sw2 / sw
            ppt = sw2 - 2.0 * sw3 / sw + sw2 ** 2 / sw ** 2
            se = np.sqrt((2.0 * df + 4.0 * T * trp + 2.0 * T ** 2 * ppt) / trp ** 2)
        elif method == "HE":
            v0 = np.where(ok, Vk, 0.0)
            vs, v2s = v0.sum(1), (v0 * v0).sum(1)
            trpv = vs * (1.0 - 1.0 / k)
            pvpv = (1.0 - 2.0 / k) * v2s + vs ** 2 / k ** 2
            se = np.sqrt(2.0 * pvpv + 4.0 * T * trpv + 2.0 * T ** 2 * df) / df
        else:  # SJ with the default a-priori value var(y) (k-1)/k
            ybar = np.where(ok, Yk, 0.0).sum(1) / k
            t0 = (np.where(ok, (Yk - ybar[:, None]) ** 2, 0.0)).sum(1) / k
            w = 1.0 / (Vk + t0[:, None])
            v0 = np.where(ok, Vk, 0.0)
            sw = w.sum(1)
            w2 = w * w
            sw2, sw3 = w2.sum(1), (w2 * w).sum(1)
            pvpv = ((w2 - 2.0 * w2 * w / sw[:, None]) * v0 * v0).sum(1) + (w2 * v0).sum(1) ** 2 / sw ** 2
            pvp = (v0 * (w2 - 2.0 * w2 * w / sw[:, None] + w2 * (sw2 / sw ** 2)[:, None])).sum(1)
            ppt = sw2 - 2.0 * sw3 / sw + sw2 ** 2 / sw ** 2
            se = t0 / df * np.sqrt(2.0 * pvpv + 4.0 * T * pvp + 2.0 * T ** 2 * ppt)
    return np.where(K > 1, se, np.nan)


def _ml_local(y, v, reml, t0):
    """Local maximum of the (RE)ML likelihood uphill from t0 (one analysis, complete data)."""
    from scipy import optimize

    def score(t):
        w = 1.0 / (v + t)
        sw = w.sum()
        r = y - (w * y).sum() / sw
        s = (w * w * r * r).sum() - sw
        return s + ((w * w).sum() / sw if reml else 0.0)

    s0 = score(t0)
    step = max(float(v.min()), t0, 1e-8)
    if s0 > 0.0:  # uphill to the right: first + to - crossing above t0
        a, b = t0, t0 + step
        for _ in range(200):
            if score(b) <= 0.0:
                break
            a, b = b, b + 2.0 * (b - a)
        return optimize.brentq(score, a, b, xtol=1e-300, rtol=1e-15, maxiter=1000)
    if t0 == 0.0:
        return 0.0
    b, a = t0, t0 / 2.0  # uphill to the left: the crossing below t0, or the boundary 0
    for _ in range(200):
        if score(a) > 0.0:
            return optimize.brentq(score, a, b, xtol=1e-300, rtol=1e-15, maxiter=1000)
        if a < 1e-300:
            break
        b, a = a, a / 2.0
    return 0.0 if score(0.0) <= 0.0 else optimize.brentq(score, 0.0, a, xtol=1e-300, rtol=1e-15)


def _apply_init(out, Yk, Vk, K, method, knha, init):
    """Re-estimate tau2 from ``tau2_init`` (SJ: a-priori value; ML/REML: local maximum uphill from it)."""
    B = Yk.shape[0]
    if method == "SJ":
        rows = np.flatnonzero(K > 1)
    elif method in ("ML", "REML"):
        rows = np.flatnonzero((K > 1) & (out["n_maxima"] > 1))
    else:
        return out
    if rows.size == 0:
        return out
    T = out["tau2"].copy()
    se_t = out["se_tau2"].copy()
    for i in rows:
        ok = np.isfinite(Vk[i])
        y, v, t0 = Yk[i][ok], Vk[i][ok], float(init[i])
        k = y.size
        if method == "SJ":
            w = 1.0 / (v + t0)
            sw = w.sum()
            r = y - (w * y).sum() / sw
            tau2 = t0 * (w * r * r).sum() / (k - 1)
        else:
            tau2 = _ml_local(y, v, method == "REML", t0)
        T[i], se_t[i] = tau2, _se_tau2_row(method, y, v, tau2, t0)
    new = _given_tau2(Yk, Vk, K, T, knha)
    res = dict(out)
    for key in ("estimate", "se", "tau2", "i2", "h2"):
        res[key] = np.where(np.isin(np.arange(B), rows), new[key], out[key])
    res["se_tau2"] = se_t
    return res


def _fit_iv(Y, V, K, batch, labels, method, test, level, measure, do_ci, parallel, fixed=None, init=None):
    from scipy import special

    from ._kernels import kernels

    core = kernels(Y.shape[0])
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
    if fixed is not None:
        out = _given_tau2(Yk, Vk, K, np.where(K == 1, 0.0, fixed), test == "knha")
        # metafor reports the estimator's SE formula evaluated at the fixed value
        out["se_tau2"] = _se_tau2_batch(method, Yk, Vk, K, out["tau2"])
    else:
        out = core.fit_batch(np.ascontiguousarray(Yk), np.ascontiguousarray(Vk), K, method, test == "knha",
                             do_ci, level, parallel=parallel)
        if init is not None:
            out = _apply_init(out, Yk, Vk, K, method, test == "knha", init)
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
        measure=measure, method=method, test=test, level=level,
        extra={"tau2_ci_flag": flag, "tau2_fixed": fixed is not None,
               **({"tau2_init": init} if init is not None else {})},
    )
    return res if batch else res[0]


def _fit_mh(es, method, test, level, labels, measure, correct=True):
    from . import mh

    rates = (method == "MH" and es is not None and getattr(es, "x1i", None) is not None
             and str(es.measure).upper() in mh.MH_RATE_MEASURES)
    if es is None or (getattr(es, "ai", None) is None and not rates):
        raise ValueError(f"method: {method} needs es=effect_sizes(...) with 2x2 counts (ai, bi, ci, di)"
                         + (" or, for MH, person-time data (measure IRR or IRD)" if method == "MH" else ""))
    if test != "z":
        raise ValueError(f"test: {method} supports only test='z' (as metafor rma.mh/rma.peto)")

    meas = str(es.measure).upper()
    if rates:
        d = mh.mh_rate_core(es.x1i, es.t1i, es.x2i, es.t2i, meas, correct=correct, level=level)
    elif method == "PETO":
        if meas not in registry.method_measures("PETO"):
            raise ValueError(f"method: PETO needs es.measure 'OR' or 'PETO', got {es.measure!r}")
        d = mh.peto_core(es.ai, es.bi, es.ci, es.di, level=level)
    else:
        d = mh.mh_core(es.ai, es.bi, es.ci, es.di, meas, correct=correct, level=level)
    batch = np.ndim(es.yi) == 2
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
    extra = {key: np.asarray(val).reshape(B) for key, val in d.items()
             if key in ("cmh", "cmh_pvalue", "bd", "bd_pvalue", "tarone", "tarone_pvalue", "bd_k")}
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
