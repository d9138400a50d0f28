r"""Component network meta-analysis: additive and interaction models (netmeta ``netcomb`` / ``discomb``).

Treatments that are combinations of components are written ``"A+B"`` (separator ``sep``).
The combination matrix ``C`` (treatments x components) has ``C[t, c] = 1`` when treatment
``t`` contains component ``c``; an *inactive* treatment (placebo, usual care) is a row of
zeros.  With the contrast design ``X`` of the network (one column per treatment, ``+1`` for
the contrast's treatment and ``-1`` for the study baseline) the additive model is

.. math::

    y = X C \beta + \delta + \varepsilon,\quad \varepsilon \sim N(0, V),\quad
    \delta \sim N(0, \tau^2 B),

so a treatment's effect is the sum of its components' effects (Welton et al. 2009).
``beta`` is the GLS estimate :math:`((XC)'W(XC))^{-1}(XC)'Wy`, :math:`W = (V + \tau^2 B)^{-1}`,
the same within-study covariances and random-effects structure (``B`` = ``(I + J)/2``
blocks) as :func:`lnsynth.network.network_meta_analysis`; treatment effects are
:math:`C\hat\beta` with covariance :math:`C\,\mathrm{Cov}(\hat\beta)\,C'`.  Extra columns of
``C`` (``interactions=["A*B"]``: 1 when a treatment contains all named components) give
the interaction model (Rücker et al. 2020, Section 2.4).

Heterogeneity and fit (Rücker et al. 2020, Section 2.3; netmeta ``nma.additive``):
``Q_additive`` is the generalised Cochran Q of the additive model with fixed-effect
weights, on ``m - rank(XC)`` df; ``Q_diff = Q_additive - Q_standard`` on
``rank(X) - rank(XC)`` df compares it with the standard (consistency) NMA.  By default
(as ``netcomb``) tau^2 is *re-estimated from the additive model* with the
method-of-moments estimator :math:`(Q_{additive} - df) / \mathrm{tr}(PB)` (netmeta's
formula ``(Q - df) / tr((I - H)(BB' * E / 2) W)`` on all pairwise contrasts, the same
number; see :func:`lnsynth.network._core.mom_tau2`); ``tau2=`` fixes it (netmeta's
``tau.preset`` squared) and ``tau2="standard"`` takes the standard NMA's tau^2.

:func:`discomb` fits the same model to a *disconnected* network: components shared
across sub-networks connect what the treatments cannot.  Every component must be
identifiable (``XC`` of full column rank); otherwise a ``ValueError`` names the
components that are not (those loading on the null space of ``XC``, as netmeta's
warning; netmeta goes on with a generalised inverse, lnsynth stops).  For a disconnected
network ``Q_standard`` is the standard model's Q within the sub-networks on
``m - rank(X)`` df (netmeta's ``discomb`` reports ``NA`` for it and for ``Q_diff``).

References
----------
Welton N.J., Caldwell D.M., Adamopoulos E., Vedhara K. (2009). Mixed treatment comparison
meta-analysis of complex interventions: psychological interventions in coronary heart
disease. Am J Epidemiol 169:1158-1165.
Rücker G., Petropoulou M., Schwarzer G. (2020). Network meta-analysis of multicomponent
interventions. Biom J 62:808-821.
Rücker G., Schmitz S., Schwarzer G. (2021). Component network meta-analysis compared to a
matching method in a disconnected network: a case study. Biom J 63:447-461.

Examples
--------
>>> import pandas as pd
>>> con = pd.DataFrame({"study": ["s1", "s2", "s3"], "t1": ["B", "C", "B+C"],
...                     "t2": ["P", "P", "P"], "yi": [1.0, 2.0, 4.0], "vi": [1.0, 1.0, 1.0]})
>>> res = discomb(con, study="study", yi="yi", vi="vi", treat1="t1", treat2="t2",
...               measure="MD", inactive="P", method="FE")
>>> res.component_effects()[["component", "estimate", "se"]].round(4)
  component  estimate      se
0         B    1.3333  0.8165
1         C    2.3333  0.8165
>>> round(res.Q_additive, 6), res.Q_additive_df, round(res.Q_diff, 6), res.Q_diff_df
(0.333333, 1, 0.333333, 1)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .. import registry
from ..stats import normalize_level
from . import _core
from .data import NetworkData, components as _graph_components
from .model import NMAResult, _check_method

__all__ = ["CNMAResult", "combination_matrix", "component_nma", "discomb", "netcomb"]


# ---------------------------------------------------------------------------- C matrix
def _split(t: str, sep: str) -> list[str]:
    parts = [p.strip() for p in str(t).split(sep)] if sep else [str(t).strip()]
    if any(p == "" for p in parts):
        raise ValueError(f"treatment {t!r}: empty component name (separator {sep!r})")
    return parts


def combination_matrix(
    treatments: Sequence[str],
    sep: str = "+",
    inactive: str | None = None,
    interactions: Sequence[str | Sequence[str]] | None = None,
    sep_ia: str = "*",
) -> pd.DataFrame:
    """Combination matrix ``C`` (treatments x components), as netmeta's ``createC``.

    Parameters
    ----------
    treatments : sequence of str
        Treatment labels; ``"A+B"`` is the combination of components ``A`` and ``B``.
    sep : str
        Component separator (``""``: every treatment is one component).
    inactive : str, optional
        Inactive component (e.g. placebo): it gets no column, so a treatment made of it
        alone is a row of zeros and the effects of the others are relative to it.
    interactions : sequence, optional
        Interaction terms, each ``"A*B"`` (``sep_ia``) or a tuple of components: a column
        that is 1 for treatments containing all of them (the interaction model).

    Returns
    -------
    DataFrame
        Index: treatments; columns: components in sorted order, then interactions.

    Examples
    --------
    >>> combination_matrix(["P", "A", "A+B"], inactive="P").astype(int)
         A  B
    P    0  0
    A    1  0
    A+B  1  1
    """
    rows = {str(t): set(_split(t, sep)) for t in treatments}
    if len(rows) != len(list(treatments)):
        raise ValueError("treatments must be unique")
    comps = sorted({c for s in rows.values() for c in s} - ({str(inactive)} if inactive is not None else set()))
    if inactive is not None and not any(str(inactive) in s for s in rows.values()):
        raise ValueError(f"inactive component {inactive!r} is not among the treatments' components")
    C = pd.DataFrame([[1.0 if c in rows[t] else 0.0 for c in comps] for t in rows], index=list(rows), columns=comps)
    for ia in interactions or ():
        parts = _split(ia, sep_ia) if isinstance(ia, str) else [str(p) for p in ia]
        unknown = [p for p in parts if p not in comps]
        if len(parts) < 2 or unknown:
            raise ValueError(
                f"interaction {ia!r}: needs at least two known components"
                + (f"; unknown: {unknown}" if unknown else "")
                + f" (components: {comps})"
            )
        name = sep_ia.join(parts)
        C[name] = [1.0 if all(p in rows[t] for p in parts) else 0.0 for t in rows]
    return C


def _check_C(C: pd.DataFrame | np.ndarray, treatments: Sequence[str]) -> pd.DataFrame:
    if not isinstance(C, pd.DataFrame):
        raise ValueError("C must be a DataFrame indexed by treatment with one column per component")
    idx = [str(i) for i in C.index]
    missing = [t for t in treatments if t not in idx]
    if missing or len(set(idx)) != len(idx):
        raise ValueError(f"C: rows must be the treatments (once each); missing: {missing}")
    out = C.copy()
    out.index = idx
    out.columns = [str(c) for c in out.columns]
    vals = out.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(vals)):
        raise ValueError("C: every entry must be a finite number")
    return pd.DataFrame(vals, index=idx, columns=list(out.columns)).loc[list(treatments)]


# ---------------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)
class CNMAResult:
    """Result of :func:`component_nma` / :func:`discomb`.

    Attributes
    ----------
    measure, method : str
        Effect measure; tau^2 estimator of the additive model (``"FE"``, ``"DL"``, ...,
        ``"fixed"`` when ``tau2`` was given, ``"standard"`` when taken from the NMA).
    reference : str
    treatments, components : tuple of str
    C : DataFrame
        Combination matrix (treatments x components, interactions included).
    estimate, vcov : ndarray
        Component effects ``beta`` and their covariance.
    tau2 : float
    Q_additive, Q_additive_df, Q_additive_pvalue
        Generalised Q of the additive model (fixed-effect weights) on ``m - rank(XC)`` df.
    Q_standard, Q_standard_df : float, int
        Same for the standard NMA (``m - rank(X)`` df).
    Q_diff, Q_diff_df, Q_diff_pvalue
        ``Q_additive - Q_standard`` on ``rank(X) - rank(XC)`` df.
    subnetworks : tuple of tuple of str
        Connected parts of the treatment graph (one when connected).
    """

    measure: str
    method: str
    reference: str
    treatments: tuple[str, ...]
    components: tuple[str, ...]
    C: pd.DataFrame = field(repr=False)
    estimate: np.ndarray = field(repr=False)
    vcov: np.ndarray = field(repr=False)
    tau2: float
    Q_additive: float
    Q_additive_df: int
    Q_additive_pvalue: float
    Q_standard: float
    Q_standard_df: int
    Q_diff: float
    Q_diff_df: int
    Q_diff_pvalue: float
    level: float
    n_studies: int
    n_contrasts: int
    subnetworks: tuple[tuple[str, ...], ...]
    data: NetworkData = field(repr=False)

    def _crit(self, level: float | None) -> float:
        lv = self.level if level is None else normalize_level(level)
        return float(stats.norm.ppf(0.5 + lv / 2.0))

    def _table(self, labels: Sequence[str], A: np.ndarray, level: float | None, key: str) -> pd.DataFrame:
        est = A @ self.estimate
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", A, self.vcov, A), 0.0))
        c = self._crit(level)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(se > 0, est / se, np.nan)
        return pd.DataFrame(
            {
                key: list(labels),
                "estimate": est,
                "se": se,
                "ci_low": est - c * se,
                "ci_high": est + c * se,
                "zval": z,
                "pvalue": 2.0 * stats.norm.sf(np.abs(z)),
            }
        )

    def component_effects(self, level: float | None = None) -> pd.DataFrame:
        """Component (and interaction) effects ``beta``: ``component, estimate, se, ci_low,
        ci_high, zval, pvalue`` (model scale; relative to the inactive treatment)."""
        return self._table(self.components, np.eye(len(self.components)), level, "component")

    def combination_effects(self, level: float | None = None) -> pd.DataFrame:
        """Each treatment's effect ``C beta`` (netmeta ``Comb``): relative to a treatment with no
        active component (the inactive one)."""
        return self._table(self.treatments, self.C.to_numpy(), level, "treatment")

    def relative_effects(self, exponentiate: bool = False, level: float | None = None) -> pd.DataFrame:
        """Effects of the non-reference treatments vs :attr:`reference` under the additive model,
        ``(C_t - C_ref) beta`` (netmeta ``TE.random[t, ref]``)."""
        Cm = self.C.to_numpy()
        r = self.treatments.index(self.reference)
        ts = [t for t in self.treatments if t != self.reference]
        A = np.array([Cm[self.treatments.index(t)] - Cm[r] for t in ts]).reshape(len(ts), -1)
        out = self._table(ts, A, level, "treatment")
        if exponentiate:
            for col in ("estimate", "ci_low", "ci_high"):
                out["exp_" + col] = np.exp(out[col])
        return out

    def pairwise_effects(self, level: float | None = None) -> pd.DataFrame:
        """All ordered pairs: effect of ``treat1`` relative to ``treat2`` under the additive model."""
        Cm = self.C.to_numpy()
        pairs = [(a, b) for a in self.treatments for b in self.treatments if a != b]
        A = np.array([Cm[self.treatments.index(a)] - Cm[self.treatments.index(b)] for a, b in pairs])
        out = self._table([f"{a}|{b}" for a, b in pairs], A, level, "pair").drop(columns="pair")
        out.insert(0, "treat2", [b for _, b in pairs])
        out.insert(0, "treat1", [a for a, _ in pairs])
        return out

    def conf_int(self, level: float | None = None) -> pd.DataFrame:
        """Component effects with confidence limits at ``level`` (default: the fit's),
        indexed by component: ``estimate, ci_low, ci_high``."""
        return self.component_effects(level).set_index("component")[["estimate", "ci_low", "ci_high"]]

    def to_frame(self) -> pd.DataFrame:
        """Component effects (same as :meth:`component_effects`)."""
        return self.component_effects()

    def heterogeneity(self) -> dict[str, float]:
        """Q statistics of the additive, standard and difference tests with tau^2."""
        return {
            "tau2": self.tau2,
            "Q_additive": self.Q_additive,
            "Q_additive_df": self.Q_additive_df,
            "Q_additive_pvalue": self.Q_additive_pvalue,
            "Q_standard": self.Q_standard,
            "Q_standard_df": self.Q_standard_df,
            "Q_diff": self.Q_diff,
            "Q_diff_df": self.Q_diff_df,
            "Q_diff_pvalue": self.Q_diff_pvalue,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (NaN as ``None``)."""

        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not np.isfinite(v) else v

        def recs(df: pd.DataFrame) -> list[dict[str, Any]]:
            return [{k: clean(v) for k, v in r.items()} for r in df.to_dict(orient="records")]

        return {
            "measure": self.measure,
            "scale": _scale(self.measure),
            "method": self.method,
            "reference": self.reference,
            "level": self.level,
            "treatments": list(self.treatments),
            "components": list(self.components),
            "n_studies": self.n_studies,
            "n_contrasts": self.n_contrasts,
            "subnetworks": [list(s) for s in self.subnetworks],
            "C": {t: [float(x) for x in row] for t, row in zip(self.treatments, self.C.to_numpy())},
            **{k: clean(v) for k, v in self.heterogeneity().items()},
            "component_effects": recs(self.component_effects()),
            "relative_effects": recs(self.relative_effects()),
        }

    def summary(self) -> str:
        """Human-readable summary."""
        model = "fixed effect" if self.method == "FE" else f"random effects, tau^2 {self.method}"
        pct = int(round(self.level * 100))
        lines = [
            f"Additive component NMA ({model}); measure {self.measure} (model scale: {_scale(self.measure)})",
            f"{self.n_studies} studies, {self.n_contrasts} contrasts, {len(self.treatments)} treatments, "
            f"{len(self.components)} components; reference: {self.reference}",
        ]
        if len(self.subnetworks) > 1:
            lines.append(f"disconnected network: {len(self.subnetworks)} sub-networks connected by components")
        lines.append(
            f"tau^2 = {self.tau2:.6g}; Q additive = {self.Q_additive:.4f} on {self.Q_additive_df} df "
            f"(p = {self.Q_additive_pvalue:.4g}); Q standard = {self.Q_standard:.4f} on "
            f"{self.Q_standard_df} df; Q diff = {self.Q_diff:.4f} on {self.Q_diff_df} df "
            f"(p = {self.Q_diff_pvalue:.4g})"
        )
        lines.append(f"{'component':<24}{'estimate':>10}{'se':>9}{f'{pct}% CI':>22}{'p':>9}")
        for r in self.component_effects().itertuples(index=False):
            lines.append(
                f"{r.component:<24}{r.estimate:>10.4f}{r.se:>9.4f}"
                f"{f'[{r.ci_low:.3f}; {r.ci_high:.3f}]':>22}{r.pvalue:>9.4f}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()


def _scale(measure: str) -> str:
    try:
        return f"log {measure}" if registry.measure(measure).scale == "log" else measure
    except Exception:  # pragma: no cover - unknown measure label
        return measure


# ---------------------------------------------------------------------------- fitting
def _design(data: NetworkData) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Full treatment design ``X (m, T)`` (+1 treatment, -1 baseline), per-study y and V."""
    col = {t: i for i, t in enumerate(data.treatments)}
    rows, ys, Vs, q = [], [], [], []
    for s in data.studies:
        for t in s.treatments[1:]:
            r = np.zeros(len(col))
            r[col[t]] += 1.0
            r[col[s.treatments[0]]] -= 1.0
            rows.append(r)
        ys.append(np.asarray(s.y, float))
        Vs.append(np.asarray(s.V, float))
        q.append(len(s.y))
    return np.array(rows), ys, Vs, np.array(q)


def _fe_q(X: np.ndarray, ys: list[np.ndarray], Vs: list[np.ndarray]) -> tuple[float, int]:
    """Fixed-effect generalised Q and rank of ``X`` (whitened least squares; ``X`` may be rank deficient)."""
    Ls = [np.linalg.cholesky(V) for V in Vs]
    yw = np.concatenate([np.linalg.solve(L, y) for L, y in zip(Ls, ys)])
    off = np.cumsum([0] + [len(y) for y in ys])
    Xw = np.vstack([np.linalg.solve(L, X[a:b]) for L, a, b in zip(Ls, off[:-1], off[1:])])
    coef, *_ = np.linalg.lstsq(Xw, yw, rcond=None)
    r = yw - Xw @ coef
    return float(r @ r), int(np.linalg.matrix_rank(Xw))


def _unidentifiable(XC: np.ndarray, names: Sequence[str], tol: float = 1e-9) -> list[str]:
    """Components loading on the null space of ``XC`` (netmeta's ``chkident``)."""
    _, s, vt = np.linalg.svd(XC, full_matrices=True)
    rank = int(np.sum(s > tol * max(s.max(initial=0.0), 1.0)))
    null = vt[rank:]
    return [n for j, n in enumerate(names) if np.any(np.abs(null[:, j]) > 1e-8)]


def _fit(
    data: NetworkData,
    C: pd.DataFrame,
    method: str,
    tau2: float | None,
    level: float,
    Q_standard: tuple[float, int] | None,
    label: str,
) -> CNMAResult:
    X, ys, Vs, q = _design(data)
    Cm = C.to_numpy()
    XC = X @ Cm
    names = tuple(C.columns)
    if XC.shape[1] == 0:
        raise ValueError("no components to estimate (every treatment is inactive)")
    rank = int(np.linalg.matrix_rank(XC))
    if rank < XC.shape[1]:
        bad = _unidentifiable(XC, names)
        raise ValueError(
            f"component(s) not identifiable from these comparisons: {', '.join(bad)} "
            f"(rank of X C is {rank} < {XC.shape[1]} components); combine or drop them, "
            "declare an inactive treatment, or add studies that separate them"
        )
    qm = int(q.max())
    S = len(ys)
    y = np.zeros((1, S, qm))
    V = np.zeros((1, S, qm, qm))
    Xs = np.zeros((S, qm, XC.shape[1]))
    off = 0
    for k, (yk, Vk) in enumerate(zip(ys, Vs)):
        n = len(yk)
        y[0, k, :n], V[0, k, :n, :n], Xs[k, :n] = yk, Vk, XC[off : off + n]
        off += n
    pk = _core.pack_arrays(y, V, Xs, q)
    bf = _core.fit_packed(pk, "FE" if (tau2 is None and method == "FE") else method, tau2=tau2, engine="numpy")
    m = int(q.sum())
    Qa, dfa = float(bf.Q[0]), m - rank
    Qs, rank_x = Q_standard if Q_standard is not None else _fe_q(X, ys, Vs)
    dfs = m - rank_x
    Qd, dfd = Qa - Qs, rank_x - rank
    if abs(Qd) < np.finfo(float).eps ** 0.75:
        Qd = 0.0
    est, vc = bf.beta[0].copy(), 0.5 * (bf.vcov[0] + bf.vcov[0].T)
    est.setflags(write=False)
    vc.setflags(write=False)
    subnets = tuple(tuple(c) for c in _graph_components(data.studies, data.treatments))
    return CNMAResult(
        measure=data.measure,
        method=label,
        reference=data.reference,
        treatments=data.treatments,
        components=names,
        C=C,
        estimate=est,
        vcov=vc,
        tau2=float(bf.tau2[0]),
        Q_additive=Qa,
        Q_additive_df=dfa,
        Q_additive_pvalue=float(stats.chi2.sf(Qa, dfa)) if dfa > 0 else float("nan"),
        Q_standard=Qs,
        Q_standard_df=dfs,
        Q_diff=Qd,
        Q_diff_df=dfd,
        Q_diff_pvalue=float(stats.chi2.sf(Qd, dfd)) if dfd > 0 else float("nan"),
        level=level,
        n_studies=S,
        n_contrasts=m,
        subnetworks=subnets,
        data=data,
    )


def _tau2_arg(tau2: float | str | None, method: str, nma: NMAResult | None) -> tuple[float | None, str]:
    if tau2 is None:
        return None, method
    if isinstance(tau2, str):
        if tau2 != "standard" or nma is None:
            raise ValueError(
                "tau2 must be a number >= 0, None (estimate from the additive model)"
                + (" or 'standard' (the NMA's tau^2)" if nma is not None else "")
            )
        return float(nma.tau2), "standard"
    t = float(tau2)
    if not np.isfinite(t) or t < 0:
        raise ValueError(f"tau2 must be a finite number >= 0, got {tau2!r}")
    return t, "fixed"


def component_nma(
    nma: NMAResult,
    *,
    C: pd.DataFrame | None = None,
    sep: str = "+",
    inactive: str | None = None,
    interactions: Sequence[str | Sequence[str]] | None = None,
    method: str = "DL",
    tau2: float | str | None = None,
    level: float | None = None,
) -> CNMAResult:
    """Additive (or interaction) component NMA of a fitted network, as netmeta's ``netcomb``.

    Parameters
    ----------
    nma : NMAResult
        Standard NMA (:func:`lnsynth.network.network_meta_analysis`); its data, reference,
        ``Q`` (for ``Q_diff``) and level are used.
    C : DataFrame, optional
        Combination matrix (rows: the treatments; columns: components and any interaction
        columns).  Default: :func:`combination_matrix` of the treatment labels.
    sep, inactive, interactions
        As :func:`combination_matrix` (ignored when ``C`` is given).
    method : {"DL", "FE", "REML", "ML", "PM"}
        tau^2 estimator applied to the additive model.  ``"DL"`` (default) is netcomb's
        random-effects default (moment estimator re-estimated from the additive model);
        ``"FE"`` is netcomb's common-effects model.
    tau2 : float or "standard", optional
        Fix tau^2 (netcomb ``tau.preset = sqrt(tau2)``), or use the standard NMA's tau^2.
    level : float, optional
        Confidence level (default: the NMA's).

    Returns
    -------
    CNMAResult

    Raises
    ------
    ValueError
        Non-identifiable components (named), a malformed ``C``, bad ``tau2``/``method``.

    References
    ----------
    Rücker G., Petropoulou M., Schwarzer G. (2020). Network meta-analysis of multicomponent
    interventions. Biom J 62:808-821.

    Examples
    --------
    >>> import pandas as pd
    >>> from lnsynth.network import network_meta_analysis
    >>> con = pd.DataFrame({"study": ["s1", "s2", "s3", "s4"], "t1": ["B", "C", "B+C", "B+C"],
    ...                     "t2": ["P", "P", "P", "B"], "yi": [1.0, 2.0, 4.0, 2.5],
    ...                     "vi": [1.0, 1.0, 1.0, 1.0]})
    >>> nma = network_meta_analysis(con, study="study", yi="yi", vi="vi", treat1="t1",
    ...                             treat2="t2", measure="MD", reference="P", method="FE")
    >>> cn = component_nma(nma, inactive="P", method="FE")
    >>> cn.component_effects()[["component", "estimate", "se", "ci_low"]].round(3)
      component  estimate     se  ci_low
    0         B       1.3  0.775  -0.218
    1         C       2.4  0.632   1.160
    >>> cn.Q_diff_df
    1
    """
    if not isinstance(nma, NMAResult):
        raise ValueError("component_nma needs an NMAResult (from network_meta_analysis)")
    method = _check_method(method)
    lv = nma.level if level is None else normalize_level(level)
    Cmat = (
        combination_matrix(nma.treatments, sep=sep, inactive=inactive, interactions=interactions)
        if C is None
        else _check_C(C, nma.treatments)
    )
    t2, label = _tau2_arg(tau2, method, nma)
    return _fit(nma.data, Cmat, method, t2, lv, (float(nma.Q), len(nma.treatments) - 1), label)


netcomb = component_nma  # netmeta's name


def discomb(
    df: pd.DataFrame,
    study: str,
    treatment: str | None = None,
    events: str | None = None,
    n: str | None = None,
    measure: str = "OR",
    reference: str | None = None,
    *,
    mean: str | None = None,
    sd: str | None = None,
    yi: str | None = None,
    vi: str | None = None,
    treat1: str | None = None,
    treat2: str | None = None,
    cov: str | None = None,
    C: pd.DataFrame | None = None,
    sep: str = "+",
    inactive: str | None = None,
    interactions: Sequence[str | Sequence[str]] | None = None,
    method: str = "DL",
    tau2: float | None = None,
    level: float = 0.95,
) -> CNMAResult:
    """Additive component NMA of a possibly disconnected network, as netmeta's ``discomb``.

    Data arguments are those of :func:`lnsynth.network.network_meta_analysis` (arm- or
    contrast-level); the network may fall apart into sub-networks as long as the
    components connect them (every component identifiable).  ``reference`` defaults to
    ``inactive`` when that is a treatment, otherwise the first treatment.  ``Q_standard``
    is the standard model's Q within the sub-networks (``m - rank(X)`` df).  Other
    arguments as :func:`component_nma`.

    Returns
    -------
    CNMAResult

    Raises
    ------
    ValueError
        Bad input (as ``network_meta_analysis``) or non-identifiable components (named).

    References
    ----------
    Rücker G., Schmitz S., Schwarzer G. (2021). Component network meta-analysis compared to
    a matching method in a disconnected network: a case study. Biom J 63:447-461.

    Examples
    --------
    >>> import pandas as pd
    >>> con = pd.DataFrame({"study": ["s1", "s2", "s3"], "t1": ["B", "C", "B+C"],
    ...                     "t2": ["P", "P", "D"], "yi": [1.0, 2.0, 2.5],
    ...                     "vi": [0.5, 0.5, 0.5]})
    >>> res = discomb(con, study="study", yi="yi", vi="vi", treat1="t1", treat2="t2",
    ...               measure="MD", inactive="P", method="FE")
    >>> len(res.subnetworks), res.components
    (2, ('B', 'C', 'D'))
    """
    from dataclasses import replace

    from .data import prepare

    method = _check_method(method)
    lv = normalize_level(level)
    data = prepare(df, study=study, treatment=treatment, events=events, n=n, mean=mean, sd=sd, yi=yi, vi=vi,
                   treat1=treat1, treat2=treat2, cov=cov, measure=measure, reference=reference, connected=False)
    if reference is None and inactive is not None and str(inactive) in data.treatments:
        data = replace(data, reference=str(inactive))
    treatments = data.treatments
    Cmat = (
        combination_matrix(treatments, sep=sep, inactive=inactive, interactions=interactions)
        if C is None
        else _check_C(C, treatments)
    )
    t2, label = _tau2_arg(tau2, method, None)
    return _fit(data, Cmat, method, t2, lv, None, label)
