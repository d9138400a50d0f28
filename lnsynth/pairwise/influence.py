"""Leave-one-out, cumulative meta-analysis, influence diagnostics and Baujat data.

All refits go through the batched engine in ONE call: the k leave-one-out
analyses are a (k, k) batch with NaN on the diagonal, the cumulative analyses
a (k, k) batch with NaN above the diagonal.  Definitions follow metafor 3.8
(``leave1out.rma.uni``, ``cumul.rma.uni``, ``influence.rma.uni``, ``baujat.rma``)
for intercept-only models fitted with :func:`lnsynth.pairwise.meta_analysis`
(inverse-variance methods FE, DL, HE, SJ, ML, REML, PM, EB; tests z and knha).

Column-name mapping to ``influence.rma.uni``: ``rstudent`` = rstudent,
``dffits`` = dffits, ``cook_d`` = cook.d, ``cov_r`` = cov.r, ``tau2_del`` = tau2.del,
``qe_del`` = QE.del, ``hat`` = hat, ``weight`` = weight, ``dfbs`` = dfbs (intrcpt),
``flagged`` = is.infl (the ``*`` column of print.infl.rma.uni).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import special

from .. import registry

_IV = registry.iv_methods()
LOO_COLUMNS = ("estimate", "se", "zval", "pvalue", "ci_low", "ci_high", "q", "q_pvalue", "tau2", "i2", "h2")


def _check_fit(fit):
    if getattr(fit, "method", None) not in _IV:
        raise ValueError(f"fit: needs an inverse-variance model (method in {', '.join(_IV)}), "
                         f"got method={getattr(fit, 'method', None)!r}")
    if not hasattr(fit, "yi") or np.ndim(fit.estimate) != 0:
        raise ValueError("fit: pass a single MetaResult (meta_analysis on 1-D yi/vi)")
    if fit.k < 2:
        raise ValueError("fit: stopped because k = 1")


def _labels(fit):
    k = len(fit.yi)
    if fit.labels is not None and len(fit.labels) == k:
        return list(fit.labels)
    return [f"Study {i + 1}" for i in range(k)]


def refit_batch(fit, Y, V, ci_tau2=False):
    """Fit a (B, k) batch with the model settings of ``fit`` (k = 1 warnings silenced)."""
    from .api import meta_analysis

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = meta_analysis(yi=Y, vi=V, method=fit.method, test=fit.test, level=fit.level, ci_tau2=ci_tau2)
    for w in caught:
        if not str(w.message).startswith("k = 1"):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return res


def _frame(res, labels, extra=None):
    import pandas as pd

    cols = {"study": labels}
    if extra:
        cols.update(extra)
    for c in LOO_COLUMNS:
        cols[c] = np.asarray(getattr(res, c), dtype=float)
    cols["k"] = np.asarray(res.k, dtype=int)
    return pd.DataFrame(cols)


@dataclass(frozen=True)
class LeaveOneOut:
    """Leave-one-out results; ``batch`` is the engine's MetaBatchResult (row i omits study i)."""

    batch: object
    labels: tuple

    def to_frame(self):
        """One row per omitted study (study order): estimate, se, zval, pvalue, ci_low, ci_high,
        q, q_pvalue, tau2, i2, h2 (as metafor ``leave1out``), k."""
        return _frame(self.batch, list(self.labels))

    def to_dict(self):
        return {c: np.asarray(getattr(self.batch, c), dtype=float) for c in LOO_COLUMNS}


def leave_one_out(fit) -> LeaveOneOut:
    """metafor ``leave1out(fit)``: the model refitted k times, each omitting one study (one batched call)."""
    _check_fit(fit)
    y = np.asarray(fit.yi, dtype=float)
    v = np.asarray(fit.vi, dtype=float)
    k = len(y)
    Y = np.tile(y, (k, 1))
    V = np.tile(v, (k, 1))
    np.fill_diagonal(Y, np.nan)
    np.fill_diagonal(V, np.nan)
    return LeaveOneOut(refit_batch(fit, Y, V), tuple(_labels(fit)))


@dataclass(frozen=True)
class Cumulative:
    """Cumulative meta-analysis; row j pools the first j+1 studies in ``order``."""

    batch: object
    labels: tuple
    order: np.ndarray

    def to_frame(self):
        return _frame(self.batch, list(self.labels), {"added": list(self.labels)})


def cumulative(fit, order=None, decreasing: bool = False) -> Cumulative:
    """metafor ``cumul(fit, order=)``: studies added one at a time.

    ``order`` is a variable (length k) to sort the studies by (stable sort, as
    R's ``order()``); default: study order.
    """
    _check_fit(fit)
    y = np.asarray(fit.yi, dtype=float)
    v = np.asarray(fit.vi, dtype=float)
    k = len(y)
    if order is None:
        idx = np.arange(k)
    else:
        o = np.asarray(order)
        if o.shape != (k,):
            raise ValueError(f"order: length {o.size} does not match k = {k}")
        idx = np.argsort(-o if decreasing else o, kind="stable")
    ys, vs = y[idx], v[idx]
    mask = np.tril(np.ones((k, k), dtype=bool))
    Y = np.where(mask, ys[None, :], np.nan)
    V = np.where(mask, vs[None, :], np.nan)
    labs = _labels(fit)
    return Cumulative(refit_batch(fit, Y, V), tuple(labs[i] for i in idx), idx)


@dataclass(frozen=True)
class Influence:
    """Case-deletion diagnostics as metafor ``influence.rma.uni`` (see module doc for names)."""

    labels: tuple
    rstudent: np.ndarray
    dffits: np.ndarray
    cook_d: np.ndarray
    cov_r: np.ndarray
    tau2_del: np.ndarray
    qe_del: np.ndarray
    hat: np.ndarray
    weight: np.ndarray
    dfbs: np.ndarray
    flagged: np.ndarray
    resid: np.ndarray
    se_resid: np.ndarray

    def to_frame(self, names: str = "python"):
        """One row per study. ``names="python"`` (default): ``cook_d, cov_r, tau2_del, qe_del``;
        ``names="metafor"``: metafor's ``cook.d, cov.r, tau2.del, QE.del`` (``inf`` element of
        ``influence.rma.uni``)."""
        import pandas as pd

        if names not in ("python", "metafor"):
            raise ValueError(f"names: 'python' or 'metafor', got {names!r}")
        df = pd.DataFrame({"study": list(self.labels), "rstudent": self.rstudent, "dffits": self.dffits,
                           "cook_d": self.cook_d, "cov_r": self.cov_r, "tau2_del": self.tau2_del,
                           "qe_del": self.qe_del, "hat": self.hat, "weight": self.weight})
        dfbs = np.asarray(self.dfbs)
        if dfbs.ndim == 1:
            df["dfbs"] = dfbs
        else:
            for j in range(dfbs.shape[1]):
                df[f"dfbs_{j}"] = dfbs[:, j]
        df["flagged"] = self.flagged
        if names == "metafor":
            df = df.rename(columns={"cook_d": "cook.d", "cov_r": "cov.r", "tau2_del": "tau2.del", "qe_del": "QE.del"})
        return df


def influence(fit, loo: LeaveOneOut | None = None) -> Influence:
    """metafor ``influence(fit)``.

    For an intercept-only :class:`~lnsynth.pairwise.MetaResult` the k deleted fits are one
    batched engine call; for a :class:`~lnsynth.pairwise.regression.MetaRegressionResult`
    (moderators) they are k calls of the regression fitter (``dfbs`` is then (k, p)).
    """
    if hasattr(fit, "X") and getattr(fit, "coefficients", None) is not None:
        return _influence_regression(fit)
    _check_fit(fit)
    if loo is None:
        loo = leave_one_out(fit)
    b = loo.batch
    y = np.asarray(fit.yi, dtype=float)
    v = np.asarray(fit.vi, dtype=float)
    k = len(y)
    p = 1
    est, vb = float(fit.estimate), float(fit.se) ** 2
    tau2 = float(fit.tau2)
    w = 1.0 / (v + tau2)
    hat = w / w.sum()
    weight = 100.0 * hat
    est_del = np.asarray(b.estimate, float)
    vb_del = np.asarray(b.se, float) ** 2
    tau2_del = np.asarray(b.tau2, float)
    qe_del = np.asarray(b.q, float)
    # s2w of each deleted fit (1 for z; RSS/(k-1-p) for knha) recovered from vb = s2w / sum(w_del)
    Wd = 1.0 / (np.tile(v, (k, 1)) + tau2_del[:, None])
    np.fill_diagonal(Wd, 0.0)
    sw_del = Wd.sum(axis=1)
    if fit.test == "knha":
        s2w_del = vb_del * sw_del
    else:
        s2w_del = np.ones(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        dffits = (est - est_del) / np.sqrt(s2w_del * hat * (tau2_del + v))
        # vb.del: (X' W X)^-1 over ALL k studies with tau2.del
        vb_del_all = 1.0 / (1.0 / (v[None, :] + tau2_del[:, None])).sum(axis=1)
        dfbs = (est - est_del) / np.sqrt(s2w_del * vb_del_all)
        cook = (est - est_del) ** 2 / vb
        covr = vb_del / vb
        resid = y - est_del
        resid = np.where(np.abs(resid) < 100.0 * np.finfo(float).eps, 0.0, resid)
        se_resid = np.sqrt(v * s2w_del + vb_del + tau2_del * s2w_del)
        rstud = resid / se_resid
    m = 1
    flagged = ((np.abs(dffits) > 3.0 * np.sqrt(p / (k - p))) | (special.chdtr(m, cook) > 0.5)
               | (hat > 3.0 * p / k) | (np.abs(dfbs) > 1.0))
    flagged = flagged & ~np.isnan(dffits)
    return Influence(tuple(_labels(fit)), rstud, dffits, cook, covr, tau2_del, qe_del, hat, weight, dfbs,
                     flagged, resid, se_resid)


@dataclass(frozen=True)
class Baujat:
    """Baujat plot data: x = contribution to Q, y = influence on the pooled estimate."""

    labels: tuple
    x: np.ndarray
    y: np.ndarray

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"study": list(self.labels), "x": self.x, "y": self.y})


def baujat(fit, loo: LeaveOneOut | None = None) -> Baujat:
    """metafor ``baujat(fit)`` data: ``x = (y_i - mu)^2/(tau2 + v_i)``,
    ``y = (mu_(-i) - mu)^2 / Var(mu_(-i))``."""
    _check_fit(fit)
    if loo is None:
        loo = leave_one_out(fit)
    b = loo.batch
    y = np.asarray(fit.yi, dtype=float)
    v = np.asarray(fit.vi, dtype=float)
    x = (y - fit.estimate) ** 2 / (fit.tau2 + v)
    yy = (np.asarray(b.estimate) - fit.estimate) ** 2 / np.asarray(b.se) ** 2
    return Baujat(tuple(_labels(fit)), x, yy)


def _influence_regression(fit) -> Influence:
    """influence.rma.uni for a model with moderators (Cook's distance over all p coefficients, as metafor)."""
    from .regression import rma_fit

    y = np.asarray(fit.yi, dtype=float)
    v = np.asarray(fit.vi, dtype=float)
    X = np.asarray(fit.X, dtype=float)
    k, p = X.shape
    if k < 2:
        raise ValueError("fit: stopped because k = 1")
    beta = np.asarray(fit.coefficients, dtype=float)
    vb = np.asarray(fit.vb, dtype=float)
    tau2 = float(fit.tau2)
    w = 1.0 / (v + tau2)
    A = np.linalg.inv((X.T * w) @ X)
    hat = np.einsum("ij,jk,ik->i", X, A, X) * w
    weight = 100.0 * w / w.sum()
    pred_full = X @ beta
    svb = np.linalg.inv(vb)
    nan = np.full(k, np.nan)
    tau2_del, qe_del, delpred, vdelpred, s2w_del = nan.copy(), nan.copy(), nan.copy(), nan.copy(), nan.copy()
    dffits, cook, covr = nan.copy(), nan.copy(), nan.copy()
    dfbs = np.full((k, p), np.nan)
    det_vb = np.linalg.det(vb)
    for i in range(k):
        keep = np.arange(k) != i
        Xi = X[keep]
        if np.linalg.matrix_rank(Xi) < p:
            continue  # a coefficient is not estimable without study i (metafor: coef.na -> NA row)
        try:
            d = rma_fit(y[keep], v[keep], Xi, method=fit.method, test=fit.test, level=fit.level, r2=False)
        except (ValueError, RuntimeError, np.linalg.LinAlgError):
            continue
        tau2_del[i] = d["tau2"]
        qe_del[i] = d["qe"]
        delpred[i] = X[i] @ d["beta"]
        vdelpred[i] = X[i] @ d["vb"] @ X[i]
        s2w_del[i] = d["s2w"]
        with np.errstate(divide="ignore", invalid="ignore"):
            dffits[i] = (pred_full[i] - delpred[i]) / np.sqrt(d["s2w"] * hat[i] * (d["tau2"] + v[i]))
            vb_del_all = np.linalg.inv((X.T / (v + d["tau2"])) @ X)
            dfb = beta - d["beta"]
            dfbs[i] = dfb / np.sqrt(d["s2w"] * np.diag(vb_del_all))
            cook[i] = dfb @ svb @ dfb
            covr[i] = np.linalg.det(d["vb"]) / det_vb
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = y - delpred
        resid = np.where(np.abs(resid) < 100.0 * np.finfo(float).eps, 0.0, resid)
        se_resid = np.sqrt(v * s2w_del + vdelpred + tau2_del * s2w_del)
        rstud = resid / se_resid
        flagged = ((np.abs(dffits) > 3.0 * np.sqrt(p / (k - p))) | (special.chdtr(p, cook) > 0.5)
                   | (hat > 3.0 * p / k) | np.any(np.abs(dfbs) > 1.0, axis=1))
    flagged = flagged & ~np.isnan(dffits)
    labels = tuple(f"Study {i + 1}" for i in range(k))
    return Influence(labels, rstud, dffits, cook, covr, tau2_del, qe_del, hat, weight, dfbs, flagged, resid,
                     se_resid)
