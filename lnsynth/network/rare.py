r"""Rare-event network meta-analysis: Mantel-Haenszel and non-central hypergeometric (``netmetabin``).

Common-effect network meta-analysis of odds ratios from arm-level binary data, as netmeta's
``netmetabin(method = "MH")`` and ``method = "NCH"`` (Efthimiou et al. 2019), implemented from the
paper's definitions and the published algorithm (no netmeta code is copied).

Stage I (data set-up, both methods), in netmeta's order:

i.   studies with no events in any arm, or with events only, are dropped;
ii.  a study's *design* is the set of its treatments (taken before any arm is dropped);
iii. within each design, a treatment arm whose events (or non-events) summed over the design's
     studies are 0 is dropped from every study of that design (``cc.pooled = FALSE``);
iv.  designs left with a single treatment are dropped.

Stage II, ``method="MH"``: for design *d* with treatments :math:`1..m` (sorted) and studies *s*
with arm events :math:`e_{sx}`, non-events :math:`f_{sx}`, arm sizes :math:`n_{sx}` and study
total :math:`T_s = \sum_x n_{sx}` (over the arms left),
:math:`c_{xys} = e_{sx} f_{sy}/T_s`, :math:`C_{xy} = \sum_s c_{xys}` and the Mantel-Haenszel log
odds ratio :math:`L_{xy} = \log(C_{xy}/C_{yx})`.  The design's estimates are the centred
:math:`\bar L_{1y} = (\sum_z L_{1z} - \sum_z L_{yz})/m` with the variances and covariances of
Efthimiou et al. (2019, Appendix) -- Robins-Breslow-Greenland terms :math:`U_{xyy}` plus the
three-arm terms :math:`U_{xyz}`; for a two-arm design this is exactly the pairwise MH estimate and
its Robins-Breslow-Greenland variance.  The basic parameters (log OR of each treatment vs the
first) are the generalised least-squares fit of all designs' :math:`\bar L` with block-diagonal
covariance *V*, and

.. math:: Q = (y - X\hat\beta)' V^{-1} (y - X\hat\beta),\quad df = \sum_d (m_d - 1) - (n_{treat} - 1)

is netmetabin's ``Q.inconsistency`` (between-design inconsistency; netmetabin reports no
heterogeneity Q for MH).  ``method="NCH"`` maximises the conditional (multinomial) likelihood of
each study's arm events given its total events, :math:`\sum_s [\sum_x e_{sx}\theta_x - E_s
\log\sum_x n_{sx} e^{\theta_x}]` with :math:`\theta_{1}=0`, by Newton's method with the analytic
Hessian (netmeta maximises the same function with ``optim``/L-BFGS-B and a numerical Hessian, so
its values agree only to that optimiser's tolerance).

Direct estimates per comparison are pairwise MH pooled log odds ratios (:func:`lnsynth.pairwise.mh.
mh_core`, as netmetabin's ``TE.direct.fixed`` from ``metabin(method = "MH")``) of the contrasts left
after stage I; ``Q_direct`` is Cochran's Q of the study log odds ratios around the MH estimate
(0.5 added to tables with a zero cell; double-zero tables left out), as ``rma.mh``.

References
----------
Efthimiou O, Rücker G, Schwarzer G, Higgins JPT, Egger M, Salanti G (2019). Network meta-analysis
of rare events using the Mantel-Haenszel method. Stat Med 38:2992-3012. doi:10.1002/sim.8158
Robins J, Breslow N, Greenland S (1986). Estimators of the Mantel-Haenszel variance consistent in
both sparse data and large-strata limiting models. Biometrics 42:311-323.
Stijnen T, Hamza TH, Ozdemir P (2010). Random effects meta-analysis of event outcome in the
framework of the generalized linear mixed model with applications in sparse data. Stat Med
29:3046-3067.
Balduzzi S, Rücker G, Nikolakopoulou A, et al. (2023). netmeta: an R package for network
meta-analysis using frequentist methods. J Stat Softw 106(2):1-40.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm

from lnsynth.stats import DEFAULT_LEVEL, critical_value, normalize_level

__all__ = ["netmetabin", "RareNMAResult", "RareEventWarning", "mh_design"]

_METHODS = ("MH", "NCH")


class RareEventWarning(UserWarning):
    """Studies, arms or designs were excluded in stage I of ``netmetabin``."""


def mh_design(events: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Centred Mantel-Haenszel log odds ratios of one design and their covariance.

    Parameters
    ----------
    events, n : numpy.ndarray, shape (K, m)
        Events and arm sizes of the K studies of a design with m treatments (columns in the
        design's treatment order).

    Returns
    -------
    y : numpy.ndarray, shape (m - 1,)
        :math:`\bar L_{1y}`, the log odds ratio of treatment 1 vs treatment y (y = 2..m).
    V : numpy.ndarray, shape (m - 1, m - 1)
        Their covariance (Efthimiou et al. 2019, Appendix).

    References
    ----------
    Efthimiou O et al. (2019). Stat Med 38:2992-3012.

    Examples
    --------
    >>> y, V = mh_design(np.array([[2.0, 5.0], [1.0, 4.0]]), np.array([[50.0, 50.0], [40.0, 40.0]]))
    >>> y.shape, V.shape
    ((1,), (1, 1))
    """
    E = np.asarray(events, dtype=float)
    N = np.asarray(n, dtype=float)
    F = N - E
    m = E.shape[1]
    T = N.sum(axis=1)
    c = np.einsum("sx,sy->xys", E, F) / T  # c[x, y, s]
    dd = (E[:, :, None] + F[:, None, :]).transpose(1, 2, 0) / T  # d[x, y, s]
    C = c.sum(axis=2)
    off = ~np.eye(m, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        L = np.where(off, np.log(C / C.T), 0.0)
        Ct = C.T
        Uyy = ((c * dd).sum(2) / (2 * C**2) + (c * dd.transpose(1, 0, 2) + c.transpose(1, 0, 2) * dd).sum(2)
               / (2 * C * Ct) + (c.transpose(1, 0, 2) * dd.transpose(1, 0, 2)).sum(2) / (2 * Ct**2))
    Uyy = np.where(off, Uyy, 0.0)
    T2 = T**2
    # three-arm terms, zero unless t1, t2, t3 are distinct
    ps1 = np.einsum("sa,sb,sc->abc", E / T2[:, None], F, F)
    ps2 = np.einsum("sa,sb,sc->abc", N / T2[:, None], F, E)
    ps3 = np.einsum("sa,sb,sc->abc", N / T2[:, None], E, F)
    ps4 = np.einsum("sa,sb,sc->abc", F / T2[:, None], E, E)
    idx = np.arange(m)
    distinct = ((idx[:, None, None] != idx[None, :, None]) & (idx[:, None, None] != idx[None, None, :])
                & (idx[None, :, None] != idx[None, None, :]))
    with np.errstate(divide="ignore", invalid="ignore"):
        Cab = C[:, :, None]  # C[t1, t2]
        Cac = C[:, None, :]  # C[t1, t3]
        Cba = Ct[:, :, None]  # C[t2, t1]
        Cca = Ct[:, None, :]  # C[t3, t1]
        Uxyz = (ps1 / (3 * Cab * Cac) + ps2 / (3 * Cab * Cca) + ps3 / (3 * Cba * Cac) + ps4 / (3 * Cba * Cca))
    Uxyz = np.where(distinct, Uxyz, 0.0)
    Lbar = (L.sum(1)[:, None] - L.sum(1)[None, :]) / m
    Upxx = Uyy.sum(1) + Uxyz.sum(axis=(1, 2))
    Unew = Uxyz + (idx[:, None, None] != idx[None, :, None]) * (idx[None, :, None] == idx[None, None, :]) * Uyy[:, :, None]
    diag_t2 = Unew[idx[:, None], idx[None, :], idx[None, :]]  # Unew[t1, t2, t2]
    Upxy = Unew.sum(0) - Unew.sum(2) - Unew.sum(2).T + diag_t2
    var = (Upxx[0] - 2 * Upxy[0, 1:] + Upxx[1:]) / m**2
    cov = (Upxx[0] - Upxy[0, None, 1:] - Upxy[1:, 0, None] + Upxy[1:, 1:]) / m**2
    V = np.where(np.eye(m - 1, dtype=bool), np.diag(var), cov)
    return Lbar[0, 1:], V


@dataclass(frozen=True)
class RareNMAResult:
    """Common-effect rare-event NMA (log odds ratios); ``TE[i, j]`` is treatment i vs j."""

    method: str
    treatments: tuple[str, ...]
    reference: str
    TE: np.ndarray
    seTE: np.ndarray
    vcov_basic: np.ndarray
    TE_direct: np.ndarray
    seTE_direct: np.ndarray
    Q_direct: np.ndarray
    Q: float
    df_Q: int
    pval_Q: float
    level: float
    k: int
    designs: tuple[str, ...]
    excluded: dict = field(default_factory=dict)
    converged: bool = True
    measure: str = "OR"

    def _idx(self, t: str) -> int:
        if t not in self.treatments:
            raise ValueError(f"unknown treatment {t!r}; treatments: {', '.join(self.treatments)}")
        return self.treatments.index(t)

    def conf_int(self, level: float | None = None) -> pd.DataFrame:
        """Wald CIs of every treatment vs the reference (log OR) at ``level`` (default: the fit's)."""
        lev = normalize_level(level, self.level)
        z = critical_value(lev)
        r = self._idx(self.reference)
        rows = []
        for i, t in enumerate(self.treatments):
            if i == r:
                continue
            est, se = float(self.TE[i, r]), float(self.seTE[i, r])
            rows.append({"treatment": t, "estimate": est, "ci_low": est - z * se, "ci_high": est + z * se})
        return pd.DataFrame(rows)

    def relative_effects(self) -> pd.DataFrame:
        """Every treatment vs the reference: log OR, SE, CI, z and p (netmetabin ``TE.fixed[, ref]``)."""
        z = critical_value(self.level)
        r = self._idx(self.reference)
        rows = []
        for i, t in enumerate(self.treatments):
            if i == r:
                continue
            est, se = float(self.TE[i, r]), float(self.seTE[i, r])
            rows.append({"treatment": t, "reference": self.reference, "estimate": est, "se": se,
                         "ci_low": est - z * se, "ci_high": est + z * se, "zval": est / se,
                         "pvalue": float(2 * norm.sf(abs(est / se)))})
        return pd.DataFrame(rows)

    def to_frame(self) -> pd.DataFrame:
        """:meth:`relative_effects` (the result protocol's table)."""
        return self.relative_effects()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: matrices as nested lists, Q statistics and the stage-I exclusions."""
        def clean(x: Any) -> Any:
            return np.where(np.isnan(x), None, x).tolist() if np.ndim(x) else (None if np.isnan(x) else float(x))

        return {"method": self.method, "measure": self.measure, "treatments": list(self.treatments),
                "reference": self.reference, "TE": self.TE.tolist(), "seTE": self.seTE.tolist(),
                "TE_direct": clean(self.TE_direct), "seTE_direct": clean(self.seTE_direct),
                "Q_direct": clean(self.Q_direct), "Q": clean(self.Q), "df_Q": self.df_Q,
                "pval_Q": clean(self.pval_Q), "level": self.level, "k": self.k,
                "designs": list(self.designs), "excluded": self.excluded, "converged": self.converged}

    def summary(self) -> str:
        """Printable summary (odds ratios vs the reference, Q for inconsistency)."""
        name = {"MH": "Mantel-Haenszel", "NCH": "non-central hypergeometric"}[self.method]
        lines = [f"Common-effect {name} network meta-analysis (OR); k = {self.k} studies, "
                 f"{len(self.treatments)} treatments, {len(self.designs)} designs", ""]
        lines.append(f"{'treatment':<20} {'OR':>9} {'95%-CI':>22} {'p':>9}".replace("95", f"{self.level * 100:g}"))
        for row in self.relative_effects().itertuples():
            lines.append(f"{row.treatment:<20} {np.exp(row.estimate):9.4f} "
                         f"[{np.exp(row.ci_low):9.4f}; {np.exp(row.ci_high):9.4f}] {row.pvalue:9.4g}")
        lines.append(f"(reference: {self.reference})")
        if self.method == "MH" and self.df_Q > 0:
            lines.append(f"\nTest of inconsistency (between designs): Q = {self.Q:.4f}, df = {self.df_Q}, "
                         f"p = {self.pval_Q:.4g}")
        for key, vals in self.excluded.items():
            if vals:
                lines.append(f"excluded {key.replace('_', ' ')}: {', '.join(map(str, vals))}")
        return "\n".join(lines)


def _read(data: Any, study: str, treatment: str, events: str, n: str) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        df = data
    elif isinstance(data, Mapping):
        df = pd.DataFrame(dict(data))
    else:
        raise TypeError("data must be a pandas DataFrame or a mapping of columns")
    missing = [c for c in (study, treatment, events, n) if c not in df.columns]
    if missing:
        raise ValueError(f"column(s) {', '.join(missing)} not found; columns: {', '.join(map(str, df.columns))}")
    out = pd.DataFrame({"study": df[study].astype(str), "treat": df[treatment].astype(str),
                        "event": pd.to_numeric(df[events], errors="coerce"),
                        "n": pd.to_numeric(df[n], errors="coerce")})
    for i, r in enumerate(out.itertuples()):
        if not (np.isfinite(r.event) and np.isfinite(r.n)):
            raise ValueError(f"row {i} (study '{r.study}', treatment '{r.treat}'): events and n must be numbers")
        if r.n <= 0 or r.event < 0 or r.event > r.n:
            raise ValueError(f"row {i} (study '{r.study}', treatment '{r.treat}'): need 0 <= events <= n and n > 0, "
                             f"got events={r.event:g}, n={r.n:g}")
    dup = out.duplicated(["study", "treat"])
    if dup.any():
        r = out[dup].iloc[0]
        raise ValueError(f"study '{r.study}' has treatment '{r.treat}' more than once")
    narm = out.groupby("study")["treat"].nunique()
    if (narm < 2).any():
        raise ValueError(f"study '{narm[narm < 2].index[0]}' has fewer than two arms")
    return out


def _stage1(df: pd.DataFrame, warn: bool) -> tuple[pd.DataFrame, dict]:
    df = df.copy()
    df["design"] = df.groupby("study")["treat"].transform(lambda s: ":".join(sorted(s)))
    ev = df.groupby("study")["event"].sum()
    ne = (df["n"] - df["event"]).groupby(df["study"]).sum()
    drop_st = sorted(ev.index[(ev == 0) | (ne == 0)])
    df = df[~df["study"].isin(drop_st)]
    g = df.assign(ne=df["n"] - df["event"]).groupby(["design", "treat"])[["event", "ne"]].sum()
    sparse = g[(g["event"] == 0) | (g["ne"] == 0)].index
    drop_arm = [f"{t} in {d}" for d, t in sparse]
    key = list(zip(df["design"], df["treat"]))
    df = df[[k not in set(sparse) for k in key]]
    nt = df.groupby("design")["treat"].nunique()
    drop_des = sorted(nt.index[nt < 2])
    df = df[~df["design"].isin(drop_des)]
    excl = {"studies": drop_st, "arms": drop_arm, "designs": drop_des}
    if warn and any(excl.values()):
        msg = "; ".join(f"{k}: {', '.join(v)}" for k, v in excl.items() if v)
        warnings.warn(f"netmetabin stage I excluded (no events / all events) {msg}", RareEventWarning, stacklevel=3)
    if df.empty:
        raise ValueError("no study is left after excluding studies and arms without events (or with events only)")
    return df.sort_values(["study", "treat"]), excl


def _connected(df: pd.DataFrame, trts: list[str]) -> None:
    parent = {t: t for t in trts}

    def find(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    for _, grp in df.groupby("study"):
        ts = list(grp["treat"])
        for t in ts[1:]:
            parent[find(t)] = find(ts[0])
    roots = {find(t) for t in trts}
    if len(roots) > 1:
        raise ValueError(f"network is disconnected ({len(roots)} sub-networks) after stage-I exclusions")


def _fit_mh(df: pd.DataFrame, trts: list[str]) -> tuple[np.ndarray, np.ndarray, float, int]:
    pos = {t: i for i, t in enumerate(trts)}
    ys, Vs, rows = [], [], []
    for _, grp in df.groupby("design", sort=True):
        dt = sorted(grp["treat"].unique())
        E = grp.pivot(index="study", columns="treat", values="event")[dt].to_numpy(float)
        N = grp.pivot(index="study", columns="treat", values="n")[dt].to_numpy(float)
        y, V = mh_design(E, N)
        ys.append(y)
        Vs.append(V)
        for t in dt[1:]:
            x = np.zeros(len(trts) - 1)
            if pos[t] > 0:
                x[pos[t] - 1] += 1.0
            if pos[dt[0]] > 0:
                x[pos[dt[0]] - 1] -= 1.0
            rows.append(x)
    y = np.concatenate(ys)
    from scipy.linalg import block_diag

    V = block_diag(*Vs)
    X = np.array(rows)
    W = np.linalg.inv(V)
    XtWX = X.T @ W @ X
    cov = np.linalg.inv(XtWX)
    beta = cov @ (X.T @ W @ y)
    r = y - X @ beta
    Q = float(r @ W @ r)
    return beta, cov, Q, len(y) - (len(trts) - 1)


def _fit_nch(df: pd.DataFrame, trts: list[str], maxit: int = 100) -> tuple[np.ndarray, np.ndarray, bool]:
    pos = {t: i for i, t in enumerate(trts)}
    p = len(trts)
    studies = [(np.array([pos[t] for t in g["treat"]]), g["event"].to_numpy(float), g["n"].to_numpy(float))
               for _, g in df.groupby("study")]
    theta = np.zeros(p)

    def grad_hess(th: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        ll, gr, H = 0.0, np.zeros(p), np.zeros((p, p))
        for ti, e, nn in studies:
            eta = th[ti] + np.log(nn)
            mx = eta.max()
            lse = mx + np.log(np.exp(eta - mx).sum())
            pi = np.exp(eta - lse)
            R = e.sum()
            ll += float(e @ th[ti] - R * lse)
            np.add.at(gr, ti, e - R * pi)
            H[np.ix_(ti, ti)] -= R * (np.diag(pi) - np.outer(pi, pi))
        return ll, gr[1:], H[1:, 1:]

    converged = False
    ll, g, H = grad_hess(theta)
    for _ in range(maxit):
        step = np.linalg.solve(-H, g)
        t = 1.0
        while True:
            cand = theta.copy()
            cand[1:] += t * step
            ll2, g2, H2 = grad_hess(cand)
            if ll2 >= ll - 1e-12 or t < 1e-8:
                break
            t /= 2
        theta, ll, g, H = cand, ll2, g2, H2
        if np.max(np.abs(t * step)) < 1e-12 or np.max(np.abs(g)) < 1e-11:
            converged = True
            break
    return -theta[1:], np.linalg.inv(-H), converged


def netmetabin(data: Any, study: str = "study", treatment: str = "treatment", events: str = "events",
               n: str = "n", *, method: str = "MH", reference: str | None = None, level: float = DEFAULT_LEVEL,
               warn: bool = True) -> RareNMAResult:
    r"""Common-effect Mantel-Haenszel or non-central hypergeometric network meta-analysis (odds ratios).

    Parameters
    ----------
    data : pandas.DataFrame or mapping
        Arm-level data, one row per study arm.
    study, treatment, events, n : str
        Column names.
    method : {"MH", "NCH"}
        Mantel-Haenszel NMA (Efthimiou et al. 2019) or the common-effect non-central
        hypergeometric (conditional multinomial) model.
    reference : str, optional
        Reference treatment for :meth:`RareNMAResult.relative_effects` (default: first in sort order).
    level : float
        Confidence level (0.95 or 95).
    warn : bool
        Warn (:class:`RareEventWarning`) about studies, arms and designs excluded in stage I.

    Returns
    -------
    RareNMAResult
        ``TE[i, j]``/``seTE[i, j]``: log odds ratio of treatment i vs j (netmetabin ``TE.fixed``,
        ``seTE.fixed``), ``TE_direct``/``seTE_direct``/``Q_direct`` (pairwise MH per comparison), ``Q``,
        ``df_Q``, ``pval_Q`` (netmetabin ``Q.inconsistency``; NaN for NCH), ``excluded`` (stage I).

    References
    ----------
    Efthimiou O, Rücker G, Schwarzer G, Higgins JPT, Egger M, Salanti G (2019). Network meta-analysis
    of rare events using the Mantel-Haenszel method. Stat Med 38:2992-3012.

    Examples
    --------
    >>> d = {"study": ["s1", "s1", "s2", "s2", "s3", "s3", "s3"],
    ...      "treatment": ["A", "B", "A", "B", "A", "B", "C"],
    ...      "events": [1, 4, 0, 3, 2, 5, 1], "n": [100, 100, 80, 80, 120, 120, 120]}
    >>> res = netmetabin(d, reference="A")
    >>> res.treatments, res.df_Q
    (('A', 'B', 'C'), 1)
    """
    method = str(method).upper()
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(_METHODS)}")
    lev = normalize_level(level)
    df, excl = _stage1(_read(data, study, treatment, events, n), warn)
    trts = sorted(df["treat"].unique())
    _connected(df, trts)
    if reference is None:
        reference = trts[0]
    elif str(reference) not in trts:
        raise ValueError(f"reference {reference!r} is not among the treatments analysed: {', '.join(trts)}")
    converged = True
    if method == "MH":
        beta, cov, Q, dfq = _fit_mh(df, trts)
        pq = float(chi2.sf(Q, dfq)) if dfq > 0 else float("nan")
    else:
        beta, cov, converged = _fit_nch(df, trts)
        Q, dfq, pq = float("nan"), 0, float("nan")
    p = len(trts)
    b = np.concatenate([[0.0], beta])  # b_j = log OR(first vs j)
    cb = np.zeros((p, p))
    cb[1:, 1:] = cov
    TE = b[None, :] - b[:, None]
    var = np.diag(cb)[None, :] + np.diag(cb)[:, None] - 2 * cb
    seTE = np.sqrt(np.maximum(var, 0.0))
    TE_d, se_d, q_d = _direct(df, trts)
    designs = tuple(sorted(df["design"].unique()))
    return RareNMAResult(method=method, treatments=tuple(trts), reference=str(reference), TE=TE, seTE=seTE,
                         vcov_basic=cov, TE_direct=TE_d, seTE_direct=se_d, Q_direct=q_d, Q=Q, df_Q=int(dfq),
                         pval_Q=pq, level=lev, k=int(df["study"].nunique()), designs=designs, excluded=excl,
                         converged=converged)


def _direct(df: pd.DataFrame, trts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from lnsynth.effects import EffectSizeWarning
    from lnsynth.pairwise.mh import mh_core

    p = len(trts)
    TE, se, Q = (np.full((p, p), np.nan) for _ in range(3))
    pairs: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {}
    for _, g in df.groupby("study"):
        arms = sorted(zip(g["treat"], g["event"], g["n"]))
        for i in range(len(arms)):
            for j in range(i + 1, len(arms)):
                (t1, e1, n1), (t2, e2, n2) = arms[i], arms[j]
                pairs.setdefault((trts.index(t1), trts.index(t2)), []).append((e1, n1 - e1, e2, n2 - e2))
    for (i, j), tabs in pairs.items():
        a = np.array(tabs, dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EffectSizeWarning)
            out = mh_core(a[:, 0], a[:, 1], a[:, 2], a[:, 3], "OR")
        TE[i, j], TE[j, i] = out["estimate"][0], -out["estimate"][0]
        se[i, j] = se[j, i] = out["se"][0]
        Q[i, j] = Q[j, i] = out["q"][0]
    return TE, se, Q
