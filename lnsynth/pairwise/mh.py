"""Mantel-Haenszel and Peto fixed-effect pooling of 2x2 tables.

Pure, batch-vectorised functions reproducing metafor 3.8-1's ``rma.mh``
(measures OR, RR, RD from 2x2 tables, with the Breslow-Day and Tarone tests for
OR; IRR and IRD from events and person-time: :func:`mh_rate_core`) and
``rma.peto``.  Inputs ``ai, bi, ci, di`` are the
raw cells (events / non-events, treatment then control) shaped ``(k,)`` or
``(B, k)``; a study that is NaN in all four cells is missing from that
analysis.  Results are always arrays of shape ``(B,)`` (``B = 1`` for 1-D
input; the caller squeezes).

How metafor treats the zero-cell settings (and so do we): ``add``, ``to``
and ``drop00`` only affect the study-level ``yi``/``vi`` (computed as
``escalc`` does) that enter the heterogeneity statistics and ``k_yi``; the
pooled estimate itself always uses the *uncorrected* counts of every
non-missing study (rma.mh/rma.peto's second ``add``/``to``/``drop00``
elements, 0/"none"/FALSE).  Studies without information (e.g. no events in
either arm for OR) therefore add nothing to the MH sums but still count in
``k``; with ``drop00=True`` they are left out of Q and its degrees of
freedom ``k_yi - 1``.

References
----------
Mantel N, Haenszel W (1959). J Natl Cancer Inst 22:719-748.
Robins J, Breslow N, Greenland S (1986). Biometrics 42:311-323 (variance of
the MH log odds ratio).
Greenland S, Robins JM (1985). Biometrics 41:55-68 (variances of the MH log
risk ratio and risk difference).
Sato T, Greenland S, Robins JM (1989). Biometrics 45:1323-1324 (risk
difference variance as used by metafor).
Breslow NE, Day NE (1980). Statistical Methods in Cancer Research, Vol. I:
The Analysis of Case-Control Studies. IARC, Lyon (test of homogeneity of
odds ratios).
Tarone RE (1985). On heterogeneity tests based on efficient scores.
Biometrika 72:91-95 (correction of the Breslow-Day statistic).
Rothman KJ, Greenland S (1998). Modern Epidemiology, 2nd ed., ch. 15
(Mantel-Haenszel rate ratio and rate difference for person-time data).
Yusuf S, Peto R, Lewis J, Collins R, Sleight P (1985). Prog Cardiovasc Dis
27:335-371 (Peto's method).
Viechtbauer W (2010). J Stat Softw 36(3) -- ``rma.mh``, ``rma.peto``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.stats import chi2, norm

from lnsynth import registry
from lnsynth.stats import normalize_level
from lnsynth.effects import EffectSizeWarning, _binary_yi_vi, _prepare

__all__ = ["mh_core", "mh_rate_core", "peto_core", "breslow_day", "MH_MEASURES", "MH_RATE_MEASURES"]

#: Mantel-Haenszel measures for person-time data (rma.mh with x1i, t1i, x2i, t2i)
MH_RATE_MEASURES = ("IRR", "IRD")
#: Mantel-Haenszel measures for 2x2 tables: the registry's MH measures other than the rate ones
MH_MEASURES = tuple(m for m in registry.method_measures("MH") if m not in MH_RATE_MEASURES)  # OR, RR, RD
_TO = ("all", "only0", "if0all", "none")


def _inputs(ai: Any, bi: Any, ci: Any, di: Any, add: float, to: str, level: float):
    if to not in _TO:
        raise ValueError(f"unknown to={to!r}; valid: {', '.join(_TO)}")
    add = float(add)
    if not np.isfinite(add) or add < 0:
        raise ValueError(f"add must be a finite number >= 0, got {add}")
    level = normalize_level(level)
    arrs, present, _, one_d = _prepare(
        dict(ai=ai, bi=bi, ci=ci, di=di), ("ai", "bi", "ci", "di"), None, "pooling"
    )
    for name in ("ai", "bi", "ci", "di"):
        x = arrs[name]
        bad = present & (x < 0)
        if bad.any():
            b, i = (int(j) for j in np.argwhere(bad)[0])
            pos = f"index {i}" if one_d else f"analysis {b}, index {i}"
            raise ValueError(f"{name} is negative for study at {pos}: {x[b, i]:g}")
    # a study needs at least one subject per arm
    for name, (p, q) in {"n_treat (ai + bi)": ("ai", "bi"), "n_ctrl (ci + di)": ("ci", "di")}.items():
        bad = present & (arrs[p] + arrs[q] <= 0)
        if bad.any():
            b, i = (int(j) for j in np.argwhere(bad)[0])
            pos = f"index {i}" if one_d else f"analysis {b}, index {i}"
            raise ValueError(f"{name} must be > 0 for study at {pos}")
    return arrs, present, add, level


def _heterogeneity(yi, vi, present, beta):
    """Cochran's Q of the escalc outcomes around the pooled estimate (rma.mh)."""
    ok = present & ~np.isnan(yi) & ~np.isnan(vi)
    k_yi = ok.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        wi = 1.0 / vi
        terms = np.where(ok, wi * (yi - beta[:, None]) ** 2, 0.0)
        q = np.maximum(0.0, terms.sum(axis=-1))  # NaN propagates as R's max()
        q = np.where(np.isnan(beta), np.nan, q)
        df = k_yi - 1
        q_p = chi2.sf(q, np.maximum(df, 1))
        i2 = np.maximum(0.0, 100.0 * (q - df) / q)
        h2 = q / np.maximum(df, 1)
    multi = k_yi > 1
    q = np.where(multi, q, 0.0)
    q_p = np.where(multi, q_p, 1.0)
    i2 = np.where(multi, i2, 0.0)
    h2 = np.where(multi, h2, 1.0)
    return q, q_p, i2, h2, k_yi


def _wald(beta, se, level):
    crit = norm.isf((1 - level) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = beta / se
    p = 2 * norm.sf(np.abs(z))
    return z, p, beta - crit * se, beta + crit * se


def mh_core(
    ai: Any,
    bi: Any,
    ci: Any,
    di: Any,
    measure: str,
    *,
    correct: bool = True,
    add: float = 0.5,
    to: str = "only0",
    drop00: bool = True,
    level: float = 0.95,
) -> dict[str, np.ndarray]:
    r"""Mantel-Haenszel pooled OR, RR or RD (metafor ``rma.mh``).

    With per-study :math:`n_1=a+b`, :math:`n_2=c+d`, :math:`N=n_1+n_2`
    (raw counts, sums over non-missing studies):

    * OR: :math:`\hat\psi=\sum R_i/\sum S_i`, :math:`R_i=a_id_i/N_i`,
      :math:`S_i=b_ic_i/N_i`; variance of :math:`\log\hat\psi` by Robins,
      Breslow & Greenland (1986) with :math:`P_i=(a_i+d_i)/N_i`,
      :math:`Q_i=(b_i+c_i)/N_i`:
      :math:`\tfrac12[\sum P_iR_i/R^2+\sum(P_iS_i+Q_iR_i)/(RS)+\sum Q_iS_i/S^2]`.
      Also the Cochran-Mantel-Haenszel test
      :math:`(|\sum(a_i-n_{1i}x_i/N_i)|-0.5\,[\text{correct}])^2/
      \sum n_{1i}n_{2i}x_iy_i/(N_i^2(N_i-1))` with :math:`x_i=a_i+c_i`,
      :math:`y_i=b_i+d_i`, on 1 df.
    * RR: :math:`\hat\psi=\sum a_in_{2i}/N_i \big/ \sum c_in_{1i}/N_i`,
      variance of the log (Greenland & Robins 1985)
      :math:`\sum(n_{1i}n_{2i}(a_i+c_i)/N_i^2-a_ic_i/N_i)/(RS)`.
    * RD: :math:`\hat\delta=\sum(a_in_{2i}-c_in_{1i})/N_i \big/ \sum n_{1i}n_{2i}/N_i`,
      with the variance of Sato, Greenland & Robins (1989) as metafor.

    Parameters
    ----------
    ai, bi, ci, di : array-like, shape (k,) or (B, k)
        Raw 2x2 cells; a study NaN in all four is missing.
    measure : {"OR", "RR", "RD"}
    correct : bool
        Continuity correction in the CMH test (OR only).
    add, to, drop00 : zero-cell settings for the study-level ``yi``/``vi``
        behind Q/I²/H² (as ``rma.mh``'s first elements: defaults 0.5,
        "only0", True).  The pooled estimate uses uncorrected counts.
    level : float
        Confidence level, e.g. 0.95.

    Returns
    -------
    dict of numpy.ndarray, each shape (B,)
        ``estimate, se, zval, pvalue, ci_low, ci_high`` (log scale for
        OR/RR), ``q, q_pvalue, i2`` (percent), ``h2``, ``k`` (non-missing
        studies, as metafor's ``k``), ``tau2`` (always 0) and for OR
        ``cmh, cmh_pvalue``.  As in metafor, the OR/RR estimate is NaN when
        the MH numerator or denominator is 0 (e.g. no events in one arm of
        every study); an :class:`~lnsynth.effects.EffectSizeWarning` says so.
        Q is 0 with p = 1, I² = 0, H² = 1 when fewer than 2 studies have a
        finite ``yi``.
    """
    if not isinstance(measure, str) or measure.upper() not in MH_MEASURES:
        raise ValueError(f"unknown measure {measure!r} for Mantel-Haenszel; valid: {', '.join(MH_MEASURES)}")
    measure = measure.upper()
    arrs, present, add, level = _inputs(ai, bi, ci, di, add, to, level)
    a0, b0, c0, d0 = (arrs[n] for n in ("ai", "bi", "ci", "di"))
    yi, vi, _ = _binary_yi_vi(a0, b0, c0, d0, measure, present, add, to, bool(drop00))

    k = present.sum(axis=-1)
    _warn_k0(k)
    # raw counts with missing studies zeroed (they then add nothing)
    a, b, c, d = (np.where(present, x, 0.0) for x in (a0, b0, c0, d0))
    N = np.where(present, a + b + c + d, 1.0)
    n1 = a + b
    n2 = c + d
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        if measure == "OR":
            P = (a + d) / N
            Qi = (b + c) / N
            Ri = a * d / N
            Si = b * c / N
            R = Ri.sum(-1)
            S = Si.sum(-1)
            ok = (R != 0) & (S != 0)
            beta = np.where(ok, np.log(R / S), np.nan)
            var = 0.5 * ((P * Ri).sum(-1) / R**2 + (P * Si + Qi * Ri).sum(-1) / (R * S) + (Qi * Si).sum(-1) / S**2)
            se = np.where(ok, np.sqrt(var), np.nan)
            xt = a + c
            yt = b + d
            cok = (xt.sum(-1) != 0) & (yt.sum(-1) != 0)
            num = (np.abs((a - n1 / N * xt).sum(-1)) - (0.5 if correct else 0.0)) ** 2
            den = (n1 / N * (n2 / N) * (xt * (yt / np.where(present, N - 1, 1.0)))).sum(-1)
            cmh = np.where(cok, num / den, np.nan)
            out["cmh"] = cmh
            out["cmh_pvalue"] = chi2.sf(cmh, 1)
            _warn_nan(ok, k, "OR", "no study has a*d > 0 or none has b*c > 0")
            out.update(_breslow_day(a, b, c, d, present, np.where(ok, R / S, np.nan)))
        elif measure == "RR":
            R = (a * (n2 / N)).sum(-1)
            S = (c * (n1 / N)).sum(-1)
            ok = (a.sum(-1) != 0) & (c.sum(-1) != 0)
            beta = np.where(ok, np.log(R / S), np.nan)
            var = (n1 / N * (n2 / N) * (a + c) - a / N * c).sum(-1) / (R * S)
            # The Greenland-Robins variance is >= 0; when every risk is 1 it is exactly 0
            # but rounding can make it -1e-17, where metafor returns NaN. We clip at 0
            # (se = 0: no sampling variability; z and p are then undefined) and warn.
            var = np.where(np.abs(var) < 1e-12, np.maximum(var, 0.0), var)
            se = np.where(ok, np.sqrt(var), np.nan)
            _warn_nan(ok, k, "RR", "no events in the treatment or in the control arms")
        else:  # RD
            W = (n1 * (n2 / N)).sum(-1)
            beta = (a * (n2 / N) - c * (n1 / N)).sum(-1) / W
            var = (
                beta * (c * (n1 / N) ** 2 - a * (n2 / N) ** 2 + (n1 / N) * (n2 / N) * (n2 - n1) / 2).sum(-1)
                + (a * (n2 - c) / N + c * (n1 - a) / N).sum(-1) / 2
            ) / W**2
            se = np.sqrt(var)
            beta = np.where(k > 0, beta, np.nan)
            se = np.where(k > 0, se, np.nan)
    zero = np.isfinite(se) & (se == 0)
    if zero.any():
        warnings.warn(
            f"MH {measure}: standard error is 0 in analysis {np.flatnonzero(zero).tolist()} (every risk is 0 or 1); "
            "z and p are undefined (NaN)", EffectSizeWarning, stacklevel=2)
    z, p, lo, hi = _wald(beta, se, level)
    q, q_p, i2, h2, _ = _heterogeneity(yi, vi, present, beta)
    out = dict(
        estimate=beta, se=se, zval=z, pvalue=p, ci_low=lo, ci_high=hi,
        q=q, q_pvalue=q_p, i2=i2, h2=h2, k=k.astype(np.int64), tau2=np.zeros_like(beta),
        **out,
    )
    return out


def _breslow_day(a, b, c, d, present, psi):
    """Breslow-Day statistic and Tarone's correction at the pooled odds ratio ``psi`` (B,)."""
    n1 = a + b
    n2 = c + d
    xt = a + c
    yt = b + d
    N = n1 + n2
    with np.errstate(divide="ignore", invalid="ignore"):
        p = psi[:, None]
        A = p * (n1 + xt) + (n2 - xt)
        Bq = np.sqrt(A * A - 4.0 * n1 * xt * p * (p - 1.0))
        fit = np.where(p == 1.0, n1 / N * xt, (A - Bq) / (2.0 * (p - 1.0)))
        pos = present & (fit > 0) & (xt > 0) & (yt > 0)
        f11 = np.where(pos, fit, 1.0)
        f12 = n1 - f11
        f21 = xt - f11
        f22 = f11 - n1 - xt + N
        V = np.where(pos, 1.0 / (1.0 / f11 + 1.0 / f12 + 1.0 / f21 + 1.0 / f22), 0.0)
        dev = np.where(pos, a - f11, 0.0)
        bd = np.maximum(0.0, np.where(pos, dev * dev / np.where(pos, V, 1.0), 0.0).sum(-1))
        ta = np.maximum(0.0, bd - dev.sum(-1) ** 2 / V.sum(-1))
        k_pos = pos.sum(-1)
        est = np.isfinite(psi)
        bd = np.where(est, bd, np.nan)
        ta = np.where(est, ta, np.nan)
        df = np.maximum(k_pos - 1, 1)
        many = est & (k_pos > 1)
        bd_p = np.where(many, chi2.sf(bd, df), np.nan)
        ta_p = np.where(many, chi2.sf(ta, df), np.nan)
    return {"bd": bd, "bd_pvalue": bd_p, "tarone": ta, "tarone_pvalue": ta_p,
            "bd_k": np.where(est, k_pos, 0).astype(np.int64)}


def breslow_day(ai: Any, bi: Any, ci: Any, di: Any) -> dict[str, np.ndarray]:
    r"""Breslow-Day test of homogeneity of odds ratios, with Tarone's correction.

    For each table the expected count :math:`\tilde a_i` in the first cell is the root in
    :math:`(\max(0, x_i - n_{2i}), \min(x_i, n_{1i}))` of
    :math:`\tilde a(\tilde a - n_{1i} - x_i + N_i) = \hat\psi (n_{1i} - \tilde a)(x_i - \tilde a)`
    (the table with the margins of study *i* and odds ratio equal to the Mantel-Haenszel
    :math:`\hat\psi`), with :math:`x_i = a_i + c_i`; with
    :math:`V_i = (1/\tilde a + 1/\tilde b + 1/\tilde c + 1/\tilde d)^{-1}`,
    :math:`BD = \sum (a_i - \tilde a_i)^2 / V_i` (Breslow & Day 1980) and Tarone's (1985)
    :math:`BD - (\sum a_i - \sum \tilde a_i)^2 / \sum V_i`, both chi-square on
    :math:`k_{pos} - 1` df, where the sums run over the tables with :math:`\tilde a_i > 0` and
    events and non-events in the table (as ``rma.mh``: fields ``BD``, ``TA``, ``k.pos``; the
    p-values are NaN when :math:`k_{pos} < 2`).  Uncorrected counts are used.

    Parameters
    ----------
    ai, bi, ci, di : array-like, shape (k,) or (B, k)
        Raw 2x2 cells (NaN in all four marks a missing study).

    Returns
    -------
    dict of numpy.ndarray, each shape (B,)
        ``bd, bd_pvalue, tarone, tarone_pvalue, bd_k``.

    References
    ----------
    Breslow NE, Day NE (1980). Statistical Methods in Cancer Research I. IARC, 142-146.
    Tarone RE (1985). Biometrika 72:91-95.

    Examples
    --------
    >>> out = breslow_day([12, 5, 20], [38, 45, 30], [20, 9, 18], [31, 40, 33])
    >>> round(float(out["bd"][0]), 4) >= 0.0, int(out["bd_k"][0])
    (True, 3)
    """
    d = mh_core(ai, bi, ci, di, "OR", correct=True)
    return {key: d[key] for key in ("bd", "bd_pvalue", "tarone", "tarone_pvalue", "bd_k")}


def mh_rate_core(
    x1i: Any,
    t1i: Any,
    x2i: Any,
    t2i: Any,
    measure: str,
    *,
    correct: bool = True,
    add: float = 0.5,
    to: str = "only0",
    drop00: bool = True,
    level: float = 0.95,
) -> dict[str, np.ndarray]:
    r"""Mantel-Haenszel pooled incidence rate ratio or difference (``rma.mh`` with person-time).

    With events :math:`x_{1i}, x_{2i}`, person-times :math:`t_{1i}, t_{2i}` and
    :math:`T_i = t_{1i} + t_{2i}` (uncorrected counts):

    * IRR: :math:`\hat\psi = \sum x_{1i}t_{2i}/T_i \big/ \sum x_{2i}t_{1i}/T_i`, variance of
      :math:`\log\hat\psi` :math:`\sum t_{1i}t_{2i}(x_{1i}+x_{2i})/T_i^2 \big/ (RS)`
      (Greenland & Robins 1985), and the Mantel-Haenszel test
      :math:`(|\sum(x_{1i} - x_i t_{1i}/T_i)| - 0.5[\text{correct}])^2 / \sum x_i t_{1i}t_{2i}/T_i^2`
      on 1 df (``cmh``).  NaN when there are no events in one arm of every study.
    * IRD: :math:`\hat\delta = \sum (x_{1i}t_{2i} - x_{2i}t_{1i})/T_i \big/ \sum t_{1i}t_{2i}/T_i`,
      :math:`SE = \sqrt{\sum (t_{1i}t_{2i}/T_i)^2 (x_{1i}/t_{1i}^2 + x_{2i}/t_{2i}^2)} \big/
      \sum t_{1i}t_{2i}/T_i` (Greenland & Robins 1985).

    Q, I² and H² come from the escalc IRR/IRD outcomes under ``add``/``to``/``drop00``
    (defaults as ``rma.mh``: 0.5, "only0", True), as for :func:`mh_core`.

    Parameters
    ----------
    x1i, t1i, x2i, t2i : array-like, shape (k,) or (B, k)
        Events and person-time, treatment then control; a study NaN in all four is missing.
    measure : {"IRR", "IRD"}
    correct : bool
        Continuity correction of the MH test (IRR only).

    Returns
    -------
    dict of numpy.ndarray, each shape (B,)
        As :func:`mh_core` (``cmh``, ``cmh_pvalue`` for IRR).

    References
    ----------
    Greenland S, Robins JM (1985). Estimation of a common effect parameter from sparse
    follow-up data. Biometrics 41:55-68.
    Rothman KJ, Greenland S, Lash TL (2008). Modern Epidemiology, 3rd ed., ch. 15.

    Examples
    --------
    >>> out = mh_rate_core([4, 10], [100.0, 250.0], [9, 14], [120.0, 240.0], "IRR")
    >>> round(float(np.exp(out["estimate"][0])), 4)
    0.6302
    """
    from lnsynth.effects import effect_sizes

    if not isinstance(measure, str) or measure.upper() not in MH_RATE_MEASURES:
        raise ValueError(f"unknown measure {measure!r} for Mantel-Haenszel with person-time; "
                         f"valid: {', '.join(MH_RATE_MEASURES)}")
    measure = measure.upper()
    level = normalize_level(level)
    if to not in _TO:
        raise ValueError(f"unknown to={to!r}; valid: {', '.join(_TO)}")
    arrs, present, _, one_d = _prepare(dict(events_treat=x1i, time_treat=t1i, events_ctrl=x2i, time_ctrl=t2i),
                                       ("events_treat", "time_treat", "events_ctrl", "time_ctrl"), None, "pooling")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EffectSizeWarning)  # drop00 of double-zero studies is expected here
        es = effect_sizes(measure, **{n: (a[0] if one_d else a) for n, a in arrs.items()}, add=add, to=to,
                          drop00=bool(drop00))
    yi = np.atleast_2d(es.yi)
    vi = np.atleast_2d(es.vi)
    k = present.sum(axis=-1)
    _warn_k0(k)
    x1, t1, x2, t2 = (np.where(present, arrs[n], 0.0) for n in ("events_treat", "time_treat", "events_ctrl",
                                                              "time_ctrl"))
    T = np.where(present, t1 + t2, 1.0)
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        if measure == "IRR":
            R = (x1 * (t2 / T)).sum(-1)
            S = (x2 * (t1 / T)).sum(-1)
            ok = (x1.sum(-1) != 0) & (x2.sum(-1) != 0)
            beta = np.where(ok, np.log(R / S), np.nan)
            se = np.where(ok, np.sqrt(((t1 / T) * (t2 / T) * (x1 + x2)).sum(-1) / (R * S)), np.nan)
            xt = x1 + x2
            cok = xt.sum(-1) != 0
            num = (np.abs((x1 - xt * (t1 / T)).sum(-1)) - (0.5 if correct else 0.0)) ** 2
            cmh = np.where(cok, num / (xt * (t1 / T) * (t2 / T)).sum(-1), np.nan)
            out["cmh"] = cmh
            out["cmh_pvalue"] = chi2.sf(cmh, 1)
            _warn_nan(ok, k, "IRR", "no events in the treatment or in the control arms")
        else:
            W = ((t1 / T) * t2).sum(-1)
            beta = ((x1 * t2 - x2 * t1) / T).sum(-1) / W
            se = np.sqrt((((t1 / T) * t2) ** 2 * (x1 / np.where(present, t1, 1.0) ** 2
                                                  + x2 / np.where(present, t2, 1.0) ** 2)).sum(-1)) / W
            beta = np.where(k > 0, beta, np.nan)
            se = np.where(k > 0, se, np.nan)
    z, p, lo, hi = _wald(beta, se, level)
    q, q_p, i2, h2, _ = _heterogeneity(yi, vi, present, beta)
    return dict(estimate=beta, se=se, zval=z, pvalue=p, ci_low=lo, ci_high=hi, q=q, q_pvalue=q_p, i2=i2, h2=h2,
                k=k.astype(np.int64), tau2=np.zeros_like(beta), **out)


def peto_core(
    ai: Any,
    bi: Any,
    ci: Any,
    di: Any,
    *,
    add: float = 0.5,
    to: str = "only0",
    drop00: bool = True,
    level: float = 0.95,
) -> dict[str, np.ndarray]:
    r"""Peto's one-step pooled log odds ratio (metafor ``rma.peto``).

    With uncorrected counts, :math:`x_i=a_i+c_i`, :math:`y_i=b_i+d_i`,
    :math:`E_i=x_in_{1i}/N_i`, :math:`V_i=x_iy_in_{1i}n_{2i}/(N_i^2(N_i-1))`:
    :math:`\hat\theta=\sum(a_i-E_i)/\sum V_i`, :math:`SE=1/\sqrt{\sum V_i}`,
    :math:`Q=\sum_{V_i>0}(a_i-E_i)^2/V_i-(\sum(a_i-E_i))^2/\sum V_i` on
    :math:`k_{yi}-1` df (studies with finite escalc ``PETO`` outcomes under
    ``add/to/drop00``); Q is reported only when more than one study has
    :math:`V_i>0` (otherwise Q's p = 1, I² = 0, H² = 1 while Q itself is
    kept, as metafor does).

    Parameters and returned keys are as :func:`mh_core` (no ``cmh``).  Where
    every study has :math:`V_i=0` (no events, or only events, overall)
    metafor stops with an error; here that analysis gets NaN and an
    :class:`~lnsynth.effects.EffectSizeWarning`.
    """
    arrs, present, add, level = _inputs(ai, bi, ci, di, add, to, level)
    a0, b0, c0, d0 = (arrs[n] for n in ("ai", "bi", "ci", "di"))
    yi, vi, _ = _binary_yi_vi(a0, b0, c0, d0, "PETO", present, add, to, bool(drop00))
    k_yi = (present & ~np.isnan(yi) & ~np.isnan(vi)).sum(-1)
    k = present.sum(axis=-1)
    _warn_k0(k)
    a, b, c, d = (np.where(present, x, 0.0) for x in (a0, b0, c0, d0))
    N = np.where(present, a + b + c + d, 2.0)
    n1 = a + b
    n2 = c + d
    with np.errstate(divide="ignore", invalid="ignore"):
        xt = a + c
        yt = b + d
        E = xt * n1 / N
        V = xt * yt * (n1 / N) * (n2 / N) / (N - 1)
        V = np.where(present, V, 0.0)
        sumV = V.sum(-1)
        ok = sumV != 0
        O_E = np.where(present, a - E, 0.0)
        beta = np.where(ok, O_E.sum(-1) / sumV, np.nan)
        se = np.where(ok, np.sqrt(1.0 / sumV), np.nan)
        pos = V > 0
        k_pos = pos.sum(-1)
        q = np.where(pos, O_E**2 / np.where(pos, V, 1.0), 0.0).sum(-1) - O_E.sum(-1) ** 2 / sumV
        q = np.where(ok, np.maximum(0.0, q), np.nan)
        df = k_yi - 1
        multi = k_pos > 1
        q_p = np.where(multi, chi2.sf(q, np.maximum(df, 1)), 1.0)
        i2 = np.where(multi, np.maximum(0.0, 100.0 * (q - df) / q), 0.0)
        h2 = np.where(multi, q / np.maximum(df, 1), 1.0)
    _warn_nan(ok | (k == 0), k, "PETO", "one of the two outcomes never occurred in any study")
    z, p, lo, hi = _wald(beta, se, level)
    return dict(
        estimate=beta, se=se, zval=z, pvalue=p, ci_low=lo, ci_high=hi,
        q=q, q_pvalue=q_p, i2=i2, h2=h2, k=k.astype(np.int64), tau2=np.zeros_like(beta),
    )


def _warn_k0(k: np.ndarray) -> None:
    if (k == 0).any():
        idx = np.flatnonzero(k == 0).tolist()
        warnings.warn(
            f"no non-missing studies in analysis {idx}; results are NaN", EffectSizeWarning, stacklevel=3
        )


def _warn_nan(ok: np.ndarray, k: np.ndarray, what: str, why: str) -> None:
    bad = ~ok & (k > 0)
    if bad.any():
        idx = np.flatnonzero(bad).tolist()
        warnings.warn(
            f"{what} pooled estimate not estimable ({why}) in analysis {idx}; set to NaN as metafor does",
            EffectSizeWarning,
            stacklevel=3,
        )
