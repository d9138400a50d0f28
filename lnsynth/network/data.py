"""Input handling for network meta-analysis: arm- or contrast-level data to
per-study contrast vectors with their within-study covariance matrices.

Conventions
-----------
* Each study contributes ``k - 1`` contrasts of its non-baseline arms against
  its **baseline arm**.  The baseline is the network reference treatment when
  the study contains it, otherwise the first of the study's treatments in
  sorted (string) order.  Contrasts are "treatment minus baseline" on the model
  scale (log OR, log RR, RD, MD, SMD).  The fitted consistency model does not
  depend on this choice (the random-effects structure used is invariant to the
  baseline), it only fixes what is stored.
* Arm-level binary data (``events``/``n``): arm statistic ``theta_k`` with
  sampling variance ``v_k`` (log odds: ``1/x + 1/(n-x)``; log risk:
  ``1/x - 1/n``; risk: ``p(1-p)/n``).  The contrast vector
  ``y_t = theta_t - theta_b`` has covariance ``V = diag(v_t) + v_b J``
  (shared-control variance on the off-diagonals; Salanti 2012, Rücker 2012).
* Zero cells: if any arm of a study has 0 events or all events, 0.5 is added to
  the events and non-events of **every** arm of that study (so ``n + 1``), as
  metafor's ``escalc`` default (``add = 1/2, to = "only0"``) does for a
  two-arm table, applied study-wide so that multi-arm covariances stay
  coherent.  Studies in which all arms have 0 events, or all arms have all
  events, carry no information on the odds ratio and are dropped with a
  warning naming them (for RR only all-zero studies are dropped; RD keeps them).
* Arm-level continuous data (``mean``/``sd``/``n``): MD arms have
  ``theta_k = mean_k``, ``v_k = sd_k^2 / n_k``.  SMD uses Hedges' g with the
  standard deviation pooled over all arms of the study (``df = N - k``, exact
  correction ``J = Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2))`` as escalc) and the Gleser & Olkin (2009)
  covariance ``Var(g_t) = 1/n_b + 1/n_t + g_t^2/(2N)``,
  ``Cov(g_s, g_t) = 1/n_b + g_s g_t/(2N)`` with ``N`` the study's total sample
  size.  For two-arm studies this is exactly metafor's ``escalc("SMD")``.
* Contrast-level input (``yi``, ``vi``, ``treat1``, ``treat2``): ``yi`` is the
  effect of ``treat1`` relative to ``treat2`` (netmeta convention).  A study
  with one row is a two-arm study.  A multi-arm study is given either

  - as netmeta does, by **all** ``k(k-1)/2`` pairwise contrasts of its ``k`` arms
    (no ``cov``): arm variances are recovered from ``v_ab = s_a + s_b`` and the
    study is reduced to its ``k - 1`` basic contrasts with covariance
    ``diag(s_t) + s_b`` (Rücker & Schwarzer 2014); inconsistent contrasts or
    variances are an error naming the study; or
  - by ``k - 1`` rows sharing the same ``treat2`` (the common comparator) with a
    ``cov`` column holding the covariance between that study's contrasts (the
    variance of the shared comparator arm);

  otherwise a ``ValueError`` is raised.
* Labels: a study label whose rows repeat a treatment (arm input), repeat a
  comparison or form unconnected groups of treatments (contrast input) looks
  like two studies sharing a label and is an error naming the study; treatment
  labels that differ only in case or whitespace (``'B'`` vs ``'B '``) are kept
  apart and warned about (:func:`check_labels`).

References
----------
Salanti G. (2012). Indirect and mixed-treatment comparison, network, or
multiple-treatments meta-analysis. Res Synth Methods 3:80-97.
Rücker G. (2012). Network meta-analysis, electrical networks and graph theory.
Res Synth Methods 3:312-324.
Gleser L.J., Olkin I. (2009). Stochastically dependent effect sizes. In: The
Handbook of Research Synthesis and Meta-Analysis, 2nd ed.
Rücker G., Schwarzer G. (2014). Reduce dimension or reduce weights? Comparing two
approaches to multi-arm studies in network meta-analysis. Stat Med 33:4353-4369.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import networkx as nx
import numpy as np
import pandas as pd
from scipy.special import gammaln

from .. import registry

BINARY_MEASURES = registry.network_measures("binary")  # OR, RR, RD
CONTINUOUS_MEASURES = registry.network_measures("continuous")  # MD, SMD
MEASURES = BINARY_MEASURES + CONTINUOUS_MEASURES


@dataclass(frozen=True, eq=False)
class StudyContrasts:
    """Contrasts of one study against its baseline arm.

    Attributes
    ----------
    study : str
    treatments : tuple of str
        Baseline first, then the treatments of ``y`` in order.
    y : ndarray, shape (k-1,)
        Effect of ``treatments[i+1]`` relative to ``treatments[0]``.
    V : ndarray, shape (k-1, k-1)
        Within-study covariance of ``y``.
    n : ndarray or None, shape (k,)
        Arm sample sizes (arm-level input only), aligned with ``treatments``.
    """

    study: str
    treatments: tuple[str, ...]
    y: np.ndarray
    V: np.ndarray
    n: np.ndarray | None = None

    @property
    def baseline(self) -> str:
        return self.treatments[0]

    @property
    def design(self) -> str:
        return ":".join(sorted(self.treatments))

    def pair_contrast(self, a: str, b: str) -> tuple[float, float]:
        """Effect of ``a`` relative to ``b`` in this study and its variance."""
        ia, ib = self.treatments.index(a), self.treatments.index(b)
        # arm effects relative to baseline: e_0 = 0, e_i = y[i-1]
        g = np.zeros(len(self.treatments) - 1)
        if ia > 0:
            g[ia - 1] += 1.0
        if ib > 0:
            g[ib - 1] -= 1.0
        return float(g @ self.y), float(g @ self.V @ g)


@dataclass(frozen=True, eq=False)
class NetworkData:
    """Validated network: per-study contrasts plus bookkeeping."""

    studies: tuple[StudyContrasts, ...]
    treatments: tuple[str, ...]
    reference: str
    measure: str
    dropped: tuple[str, ...] = ()

    def subset(self, keep: Sequence[bool]) -> "NetworkData":
        return NetworkData(
            tuple(s for s, k in zip(self.studies, keep) if k),
            self.treatments, self.reference, self.measure, self.dropped,
        )

    def edges(self) -> pd.DataFrame:
        """One row per treatment pair observed directly: number of studies and patients."""
        rows: dict[tuple[str, str], list[float]] = {}
        for s in self.studies:
            ts = s.treatments
            for i in range(len(ts)):
                for j in range(i + 1, len(ts)):
                    a, b = sorted((ts[i], ts[j]))
                    r = rows.setdefault((a, b), [0, 0.0])
                    r[0] += 1
                    if s.n is not None:
                        r[1] += float(s.n[i] + s.n[j])
        return pd.DataFrame(
            [(a, b, c, p) for (a, b), (c, p) in sorted(rows.items())],
            columns=["treat1", "treat2", "n_studies", "n_patients"],
        )

    def patients(self) -> dict[str, float]:
        """Total patients randomised to each treatment (NaN without arm sizes)."""
        out = {t: 0.0 for t in self.treatments}
        for s in self.studies:
            if s.n is None:
                return {t: float("nan") for t in self.treatments}
            for t, m in zip(s.treatments, s.n):
                out[t] += float(m)
        return out


def components(studies: Sequence[StudyContrasts], treatments: Sequence[str] = ()) -> list[list[str]]:
    """Connected components (sorted lists of treatments) of the network graph."""
    g = nx.Graph()
    g.add_nodes_from(treatments)
    for s in studies:
        ts = s.treatments
        g.add_nodes_from(ts)
        for t in ts[1:]:
            g.add_edge(ts[0], t)
    comps = [sorted(c) for c in nx.connected_components(g)]
    return sorted(comps, key=lambda c: c[0])


def _require_columns(df: pd.DataFrame, cols: dict[str, str | None]) -> None:
    for field, col in cols.items():
        if col is None:
            raise ValueError(f"argument '{field}' (column name) is required for this input type")
        if col not in df.columns:
            raise ValueError(f"column '{col}' (given as {field}=) not found in data; available: {list(df.columns)}")


def _check_finite(df: pd.DataFrame, study_col: str, cols: dict[str, str]) -> None:
    for field, col in cols.items():
        vals = pd.to_numeric(df[col], errors="coerce")
        bad = ~np.isfinite(vals.to_numpy(dtype=float))
        if bad.any():
            st = df.loc[bad, study_col].iloc[0]
            raise ValueError(f"study '{st}': field '{col}' ({field}) is missing or not numeric")


def _baseline(ts: Sequence[str], reference: str | None) -> str:
    return reference if reference is not None and reference in ts else sorted(ts)[0]


def _contrasts_from_arms(theta: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = theta[1:] - theta[0]
    if len(v) == 2:
        return y, np.array([[v[1] + v[0]]])
    V = np.diag(v[1:]) + v[0]
    return y, V


def prepare(
    df: pd.DataFrame,
    *,
    study: str,
    treatment: str | None = None,
    events: str | None = None,
    n: str | None = None,
    mean: str | None = None,
    sd: str | None = None,
    yi: str | None = None,
    vi: str | None = None,
    treat1: str | None = None,
    treat2: str | None = None,
    cov: str | None = None,
    measure: str = "OR",
    reference: str | None = None,
    connected: bool = True,
) -> NetworkData:
    """Validate input and build :class:`NetworkData` (see module docstring).

    ``connected=False`` accepts a network that falls apart into sub-networks (component NMA,
    :func:`lnsynth.network.component.discomb`, connects them through shared components).
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError("df must be a pandas DataFrame")
    measure = str(measure).upper()
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    if study is None or study not in df.columns:
        raise ValueError(f"column '{study}' (given as study=) not found in data")
    if len(df) == 0:
        raise ValueError("no data rows")
    if reference is not None:
        reference = str(reference)  # treatments are compared as strings
    if df[study].isna().any():
        raise ValueError("field 'study' has missing values")

    if yi is not None or vi is not None:
        studies = _prepare_contrasts(df, study, yi, vi, treat1, treat2, cov, reference)
        dropped: list[str] = []
    else:
        studies, dropped = _prepare_arms(df, study, treatment, events, n, mean, sd, measure, reference)

    if not studies:
        raise ValueError("no studies with information left")
    check_labels(studies, treatment if treatment is not None else f"{treat1}/{treat2}")
    treatments = tuple(sorted({t for s in studies for t in s.treatments}))
    if reference is None:
        reference = treatments[0]
    elif reference not in treatments:
        raise ValueError(f"unknown reference treatment {reference!r}; treatments are {list(treatments)}")
    comps = components(studies, treatments)
    if connected and len(comps) > 1:
        desc = "; ".join(f"component {i + 1}: {', '.join(c)}" for i, c in enumerate(comps))
        raise ValueError(f"network is disconnected ({len(comps)} components) - {desc}")
    return NetworkData(tuple(studies), treatments, reference, measure, tuple(dropped))


def _prepare_contrasts(df, study, yi, vi, treat1, treat2, cov, reference) -> list[StudyContrasts]:
    _require_columns(df, {"yi": yi, "vi": vi, "treat1": treat1, "treat2": treat2})
    num = {"yi": yi, "vi": vi}
    if cov is not None:
        _require_columns(df, {"cov": cov})
    _check_finite(df, study, num)
    out = []
    for sid, g in df.groupby(study, sort=False):
        sid = str(sid)
        t1 = [str(x) for x in g[treat1]]
        t2 = [str(x) for x in g[treat2]]
        for a, b in zip(t1, t2):
            if a == b:
                raise ValueError(f"study '{sid}': field 'treat1' equals 'treat2' ({a})")
        y = g[yi].to_numpy(dtype=float)
        v = g[vi].to_numpy(dtype=float)
        if (v <= 0).any():
            raise ValueError(f"study '{sid}': field '{vi}' (vi) must be positive")
        if len(g) == 1:
            a, b = t1[0], t2[0]
            base = _baseline([a, b], reference)
            if base == b:
                out.append(StudyContrasts(sid, (b, a), np.array([y[0]]), np.array([[v[0]]])))
            else:
                out.append(StudyContrasts(sid, (a, b), np.array([-y[0]]), np.array([[v[0]]])))
            continue
        arms = sorted(set(t1) | set(t2))
        pairs = [frozenset(ab) for ab in zip(t1, t2)]
        g_links = nx.Graph(list(zip(t1, t2)))
        if nx.number_connected_components(g_links) > 1:
            parts = "; ".join(", ".join(sorted(c)) for c in sorted(nx.connected_components(g_links), key=min))
            raise ValueError(
                f"study '{sid}': its contrasts form {nx.number_connected_components(g_links)} unconnected "
                f"groups of treatments ({parts}) - this looks like two different studies sharing one label; "
                f"give each study its own label in field '{study}'")
        if len(set(pairs)) != len(pairs):
            dup = sorted({"-".join(sorted(pq)) for pq in pairs if pairs.count(pq) > 1})
            raise ValueError(
                f"study '{sid}': the same comparison appears more than once ({', '.join(dup)}) - "
                f"two different studies sharing one label? give each its own label in field '{study}'")
        k = len(arms)
        if len(g) == k * (k - 1) // 2 and k > 2 and cov is None:
            out.append(_from_all_pairs(sid, arms, t1, t2, y, v, reference, treat1, vi))
            continue
        if len(set(t2)) != 1:
            raise ValueError(
                f"study '{sid}': multi-arm contrast input needs either all k(k-1)/2 pairwise contrasts of "
                f"its k arms (netmeta style; {len(g)} rows for {k} arms given) or k - 1 rows that share the "
                f"same comparator in field '{treat2}' (treat2) with cov=; got comparators {sorted(set(t2))}")
        if len(set(t1)) != len(t1):
            raise ValueError(f"study '{sid}': duplicate arms in field '{treat1}' (treat1)")
        if cov is None:
            raise ValueError(
                f"study '{sid}': multi-arm contrast input ({len(g)} contrasts) requires cov= "
                "(column with the covariance between the study's contrasts, i.e. the variance "
                "of the shared comparator arm)")
        _check_finite(g, study, {"cov": cov})
        c = g[cov].to_numpy(dtype=float)
        if not np.allclose(c, c[0], rtol=1e-12, atol=0):
            raise ValueError(f"study '{sid}': field '{cov}' (cov) must be constant within a multi-arm study")
        comp = t2[0]
        # contrasts vs comparator: y_i = theta_{t1_i} - theta_comp, Cov = c
        Vc = np.full((len(g), len(g)), c[0]) + np.diag(v - c[0])
        if np.linalg.eigvalsh(Vc).min() <= 0:
            raise ValueError(f"study '{sid}': covariance matrix from vi/cov is not positive definite")
        ts = [comp] + t1
        base = _baseline(ts, reference)
        # transform to contrasts vs base: arm effects e (comp=0); y' = e_t - e_base
        order = [base] + sorted(t for t in ts if t != base)
        G = np.zeros((len(order) - 1, len(g)))
        for r, t in enumerate(order[1:]):
            if t != comp:
                G[r, t1.index(t)] += 1.0
            if base != comp:
                G[r, t1.index(base)] -= 1.0
        out.append(StudyContrasts(sid, tuple(order), G @ y, G @ Vc @ G.T))
    return out


def _from_all_pairs(sid, arms, t1, t2, y, v, reference, treat1, vi, tol: float = 1e-3) -> StudyContrasts:
    """A multi-arm study given as all pairwise contrasts (netmeta's input) -> basic contrasts.

    With arm effects ``theta`` and arm variances ``s`` (Rücker & Schwarzer 2014),
    ``y_ab = theta_a - theta_b`` and ``v_ab = s_a + s_b``; both are solved by least
    squares (exactly determined for 3 arms) and the study is stored as contrasts against
    its baseline arm with covariance ``diag(s_t) + s_b``, the covariance the pairwise
    variances imply (netmeta's reduced weights give the same information matrix).
    The contrasts must be consistent (``y_ab + y_bc = y_ac``; ``tol`` relative to the
    largest |y|, as netmeta's ``tol.multiarm``) and so must the variances, else a
    ``ValueError`` names the study.
    """
    idx = {t: i for i, t in enumerate(arms)}
    k, R = len(arms), len(y)
    D = np.zeros((R, k))
    A = np.zeros((R, k))
    for r, (a, b) in enumerate(zip(t1, t2)):
        D[r, idx[a]], D[r, idx[b]] = 1.0, -1.0
        A[r, idx[a]], A[r, idx[b]] = 1.0, 1.0
    theta = np.linalg.lstsq(D, y, rcond=None)[0]
    res_y = y - D @ theta
    scale_y = max(float(np.max(np.abs(y))), 1e-12)
    if np.max(np.abs(res_y)) > tol * max(scale_y, 1.0):
        raise ValueError(
            f"study '{sid}': its {R} pairwise contrasts are not consistent (e.g. y(A-B) + y(B-C) != y(A-C); "
            f"largest deviation {np.max(np.abs(res_y)):.3g}) - check the signs and treat1/treat2 of field "
            f"'{treat1}'")
    s_arm = np.linalg.lstsq(A, v, rcond=None)[0] if k > 3 else np.linalg.solve(A.T @ A, A.T @ v)
    res_v = v - A @ s_arm
    if np.max(np.abs(res_v)) > tol * float(np.max(v)):
        raise ValueError(
            f"study '{sid}': the variances of its pairwise contrasts (field '{vi}') do not come from one set "
            f"of arm variances (v(A-B) = s_A + s_B); largest deviation {np.max(np.abs(res_v)):.3g}")
    base = _baseline(arms, reference)
    order = [base] + sorted(t for t in arms if t != base)
    th = np.array([theta[idx[t]] for t in order])
    sv = np.array([s_arm[idx[t]] for t in order])
    yy, VV = _contrasts_from_arms(th, sv)
    if np.linalg.eigvalsh(VV).min() <= 0:
        raise ValueError(f"study '{sid}': the pairwise variances in field '{vi}' imply a covariance matrix "
                         "that is not positive definite")
    return StudyContrasts(sid, tuple(order), yy, VV)


def _norm_label(t: str) -> str:
    return " ".join(str(t).split()).casefold()


def check_labels(studies: Sequence[StudyContrasts], field: str) -> None:
    """Warn about treatment labels that differ only in case or whitespace ('B' vs 'B ').

    They are kept as different treatments (never merged silently); the warning names
    the labels and the studies using each.
    """
    by: dict[str, dict[str, list[str]]] = {}
    for s in studies:
        for t in s.treatments:
            by.setdefault(_norm_label(t), {}).setdefault(t, []).append(s.study)
    clashes = {k: v for k, v in by.items() if len(v) > 1}
    if clashes:
        parts = []
        for v in clashes.values():
            parts.append(" vs ".join(f"{t!r} (studies {', '.join(sorted(set(ss))[:5])})" for t, ss in sorted(v.items())))
        warnings.warn(
            f"treatment labels in field '{field}' differ only in case or whitespace and are treated as "
            f"different treatments: {'; '.join(parts)} - correct the labels if they are the same treatment",
            UserWarning, stacklevel=4)


def _prepare_arms(df, study, treatment, events, n, mean, sd, measure, reference):
    if measure in BINARY_MEASURES:
        if mean is not None or sd is not None:
            raise ValueError(f"measure {measure} needs events= and n=, not mean=/sd=")
        _require_columns(df, {"treatment": treatment, "events": events, "n": n})
        _check_finite(df, study, {"events": events, "n": n})
    else:
        _require_columns(df, {"treatment": treatment, "mean": mean, "sd": sd, "n": n})
        _check_finite(df, study, {"mean": mean, "sd": sd, "n": n})
    if df[treatment].isna().any():
        st = df.loc[df[treatment].isna(), study].iloc[0]
        raise ValueError(f"study '{st}': field '{treatment}' (treatment) is missing")

    out: list[StudyContrasts] = []
    dropped: list[str] = []
    cols = {c: pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
            for c in (n, events, mean, sd) if c is not None}
    trt_all = df[treatment].to_numpy()
    groups = df.groupby(study, sort=False).indices
    # per-row flags, so that clean studies skip the per-study reductions (same checks, same order)
    any_bad_n = bool((cols[n] <= 0).any())
    if measure in BINARY_MEASURES:
        xe, ne = cols[events], cols[n]
        any_bad_x = bool(((xe < 0) | (xe > ne)).any())
        edge_row = (xe == 0) | (xe == ne)
    else:
        any_bad_sd = bool((cols[sd] <= 0).any())
    for sid in pd.unique(df[study]):
        rows_g = groups[sid]
        sid = str(sid)
        ts = [str(x) for x in trt_all[rows_g]]
        if len(ts) < 2:
            raise ValueError(f"study '{sid}': single-arm study (field '{treatment}' has one arm); need >= 2 arms")
        dup = sorted({t for t in ts if ts.count(t) > 1})
        if dup:
            raise ValueError(f"study '{sid}': duplicate arms in field '{treatment}' (treatment): {dup} - "
                             f"if these rows are two different studies sharing one label, give each its own "
                             f"label in field '{study}'")
        base = _baseline(ts, reference)
        order = [base] + sorted(t for t in ts if t != base)
        idx = [ts.index(t) for t in order]
        nn = cols[n][rows_g][idx]
        if any_bad_n and (nn <= 0).any():
            raise ValueError(f"study '{sid}': field '{n}' (n) must be positive")
        if measure in BINARY_MEASURES:
            x = cols[events][rows_g][idx]
            if any_bad_x and (x < 0).any():
                raise ValueError(f"study '{sid}': field '{events}' (events) is negative")
            if any_bad_x and (x > nn).any():
                raise ValueError(f"study '{sid}': field '{events}' (events) exceeds field '{n}' (n)")
            edge = bool(edge_row[rows_g].any())
            if edge:
                allzero, allfull = bool((x == 0).all()), bool((x == nn).all())
                if (measure == "OR" and (allzero or allfull)) or (measure == "RR" and allzero):
                    dropped.append(sid)
                    continue
            if edge:
                x, nn_c = x + 0.5, nn + 1.0
            else:
                nn_c = nn
            p = x / nn_c
            if measure == "OR":
                theta, v = np.log(x / (nn_c - x)), 1.0 / x + 1.0 / (nn_c - x)
            elif measure == "RR":
                theta, v = np.log(p), 1.0 / x - 1.0 / nn_c
            else:
                theta, v = p, p * (1.0 - p) / nn_c
            y, V = _contrasts_from_arms(theta, v)
        else:
            m = cols[mean][rows_g][idx]
            s = cols[sd][rows_g][idx]
            if any_bad_sd and (s <= 0).any():
                raise ValueError(f"study '{sid}': field '{sd}' (sd) must be positive")
            if measure == "MD":
                y, V = _contrasts_from_arms(m, s**2 / nn)
            else:
                N = nn.sum()
                dfree = N - len(nn)
                if dfree < 2:
                    raise ValueError(f"study '{sid}': field '{n}' (n) too small for SMD")
                sp = np.sqrt(np.sum((nn - 1) * s**2) / dfree)
                J = float(np.exp(gammaln(dfree / 2) - 0.5 * np.log(dfree / 2) - gammaln((dfree - 1) / 2)))
                y = J * (m[1:] - m[0]) / sp
                V = 1.0 / nn[0] + np.outer(y, y) / (2.0 * N) + np.diag(1.0 / nn[1:])
        out.append(StudyContrasts(sid, tuple(order), np.asarray(y, float), np.asarray(V, float), nn))
    if dropped:
        what = "all arms with 0 events or all arms with all events" if measure == "OR" else "all arms with 0 events"
        warnings.warn(
            f"dropped {len(dropped)} stud{'y' if len(dropped) == 1 else 'ies'} without information on "
            f"the {measure} ({what}): {', '.join(dropped)}", UserWarning, stacklevel=3)
    return out, dropped
