r"""Contribution matrix of a network meta-analysis: how much each direct comparison contributes
to each network estimate (the basis of CINeMA's within-study bias and indirectness judgements).

Hat matrix at comparison level
------------------------------
Each direct comparison (edge) ``x:y`` gets one aggregate direct estimate.  The
network estimates of all comparisons are linear in them,
:math:`\hat\theta = H \hat y_{dir}`, with ``H`` (rows: all ``T(T-1)/2``
comparisons, columns: the direct comparisons) the *aggregate hat matrix*.  Two
constructions are used, following netmeta's ``netcontrib`` for each method:

* ``"aggregate"`` (used by ``method="randomwalk"``): the edge weight is the sum
  over studies of the study's edge weight in the electrical-network
  representation of the GLS model (Rücker 2012): for a study with contrast
  covariance :math:`\Sigma_i = V_i + \tau^2 B` the weight of edge ``a-b`` is
  :math:`-L_i[a, b]` with :math:`L_i = G_i'\Sigma_i^{-1}G_i` its Laplacian
  (``G_i`` maps arm effects to the study's contrasts).  Then
  :math:`H = B_{full} L^+ B' W` with ``L = B'WB`` -- the network estimates are
  exactly those of the fitted consistency model.
* ``"naive"`` (used by ``method="shortestpath"``): the edge weight is the
  inverse variance of the plain inverse-variance pooled direct estimate (every
  study with both treatments contributes its pairwise contrast with its own
  variance plus :math:`\tau^2`, multi-arm correlations ignored), as netmeta's
  ``netcontrib(method = "shortestpath")`` built on Krahn et al.'s direct
  estimates.  For networks of two-arm studies both coincide.

Flow decomposition
------------------
Row ``a:b`` of ``H`` is a flow of evidence from ``a`` to ``b`` through the
network graph (edge ``x:y`` carries :math:`|H_{ab,xy}|` in the direction of its
sign).  It is decomposed into paths :math:`\pi` with flows :math:`\phi_\pi`
(summing to 1) and an edge's contribution is
:math:`\sum_{\pi \ni e} \phi_\pi / |\pi|` (Papakonstantinou et al. 2018), so
each row sums to 1:

* ``method="shortestpath"`` (Papakonstantinou et al. 2018): repeatedly take
  the shortest path (fewest edges; ties broken by breadth-first search over
  edges in column order) with positive remaining flow, give it the smallest
  flow along it and subtract.
* ``method="randomwalk"`` (Davies et al. 2022): :math:`\phi_\pi` is the
  probability that a random walk from ``a`` moving along edges in proportion
  to their flow takes path :math:`\pi`; computed exactly by dynamic
  programming over path lengths (no path enumeration).

References
----------
Papakonstantinou T., Nikolakopoulou A., Rücker G., Chaimani A., Schwarzer G.,
Egger M., Salanti G. (2018). Estimating the contribution of studies in
network meta-analysis: paths, flows and streams. F1000Research 7:610.
Davies A.L., Papakonstantinou T., Nikolakopoulou A., Rücker G., Galla T.
(2022). Network meta-analysis and random walks. Stat Med 41:2091-2114.
Rücker G. (2012). Network meta-analysis, electrical networks and graph theory.
Res Synth Methods 3:312-324.
Nikolakopoulou A. et al. (2020). CINeMA: An approach for assessing confidence
in the results of a network meta-analysis. PLoS Med 17:e1003082.

Examples
--------
>>> cm = contribution_matrix(res, method="randomwalk")            # doctest: +SKIP
>>> cm.matrix.sum(axis=1)                                          # all 1  # doctest: +SKIP
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from .model import NMAResult

_METHODS = ("shortestpath", "randomwalk")


def _edge_weights(result: "NMAResult", kind: str, tau2: float) -> dict[tuple[str, str], float]:
    """Weight of each direct comparison (sorted pair)."""
    out: dict[tuple[str, str], float] = {}
    for s in result.data.studies:
        ts = s.treatments
        k = len(ts)
        if kind == "naive":
            for i in range(k):
                for j in range(i + 1, k):
                    a, b = sorted((ts[i], ts[j]))
                    _, v = s.pair_contrast(b, a)
                    out[(a, b)] = out.get((a, b), 0.0) + 1.0 / (v + tau2)
            continue
        q = k - 1
        G = np.zeros((q, k))
        G[:, 0] = -1.0
        G[np.arange(q), np.arange(1, k)] = 1.0
        S = np.asarray(s.V, float) + tau2 * 0.5 * (np.eye(q) + 1.0)
        L = G.T @ np.linalg.solve(S, G)
        for i in range(k):
            for j in range(i + 1, k):
                a, b = sorted((ts[i], ts[j]))
                out[(a, b)] = out.get((a, b), 0.0) - float(L[i, j])
    return out


def hat_matrix(result: "NMAResult", kind: str = "aggregate") -> pd.DataFrame:
    """Aggregate (comparison-level) hat matrix; see the module docstring.

    Rows: every comparison ``"a:b"`` (``a`` before ``b`` in sorted order; the
    effect of ``a`` relative to ``b``); columns: the direct comparisons
    ``"x:y"`` (effect of ``x`` relative to ``y``).  Weights use the fit's tau^2.
    """
    if kind not in ("aggregate", "naive"):
        raise ValueError(f"kind must be 'aggregate' or 'naive', got {kind!r}")
    trts = list(result.treatments)
    pos = {t: i for i, t in enumerate(trts)}
    w = _edge_weights(result, kind, float(result.tau2))
    edges = sorted(w)
    n = len(trts)
    Bm = np.zeros((len(edges), n))
    for e, (a, b) in enumerate(edges):
        Bm[e, pos[a]], Bm[e, pos[b]] = 1.0, -1.0
    W = np.diag([w[e] for e in edges])
    L = Bm.T @ W @ Bm
    Lp = np.linalg.pinv(L, hermitian=True)
    rows = [(a, b) for i, a in enumerate(trts) for b in trts[i + 1:]]
    Bf = np.zeros((len(rows), n))
    for r, (a, b) in enumerate(rows):
        Bf[r, pos[a]], Bf[r, pos[b]] = 1.0, -1.0
    H = Bf @ Lp @ Bm.T @ W
    return pd.DataFrame(H, index=[f"{a}:{b}" for a, b in rows], columns=[f"{a}:{b}" for a, b in edges])


def _flow_graph(h: np.ndarray, edges: list[tuple[str, str]], tol: float) -> list[tuple[str, str, float]]:
    out = []
    for (x, y), v in zip(edges, h):
        if abs(v) > tol:
            out.append((x, y, float(v)) if v > 0 else (y, x, float(-v)))
    return out


def _shortest_path_row(h: np.ndarray, edges: list[tuple[str, str]], src: str, dst: str) -> np.ndarray:
    tol = 1e-12 * max(1.0, float(np.abs(h).max()))
    flow = {}
    for e, v in enumerate(h):
        if abs(v) > tol:
            x, y = edges[e]
            flow[e] = (x, y, v) if v > 0 else (y, x, -v)
    contrib = np.zeros(len(edges))
    for _ in range(10 * len(edges) + 10):  # each step empties at least one edge
        out: dict[str, list[int]] = {}
        for e in sorted(flow):
            out.setdefault(flow[e][0], []).append(e)
        prev: dict[str, int | None] = {src: None}
        dq = deque([src])
        while dq and dst not in prev:
            u = dq.popleft()
            for e in out.get(u, []):
                v = flow[e][1]
                if v not in prev:
                    prev[v] = e
                    dq.append(v)
        if dst not in prev:
            break
        path, u = [], dst
        while prev[u] is not None:
            e = prev[u]
            path.append(e)
            u = flow[e][0]
        phi = min(flow[e][2] for e in path)
        for e in path:
            contrib[e] += phi / len(path)
            x, y, v = flow[e]
            if v - phi <= tol:
                del flow[e]
            else:
                flow[e] = (x, y, v - phi)
    return contrib


def _random_walk_row(h: np.ndarray, edges: list[tuple[str, str]], trts: list[str], src: str, dst: str) -> np.ndarray:
    n = len(trts)
    pos = {t: i for i, t in enumerate(trts)}
    tol = 1e-12 * max(1.0, float(np.abs(h).max()))
    Q = np.zeros((n, n))
    eidx = np.full((n, n), -1)
    for e, ((x, y), v) in enumerate(zip(edges, h)):
        i, j = pos[x], pos[y]
        eidx[i, j] = eidx[j, i] = e
        if v > tol:
            Q[i, j] = v
        elif v < -tol:
            Q[j, i] = -v
    s, t = pos[src], pos[dst]
    Q[t, :] = 0.0
    rs = Q.sum(axis=1, keepdims=True)
    P = np.divide(Q, rs, out=np.zeros_like(Q), where=rs > 0)
    # F[l, u]: probability of being at u after exactly l steps; G[l, v]: of reaching the sink from v in l steps
    F = np.zeros((n, n))
    F[0, s] = 1.0
    for L in range(1, n):
        F[L] = F[L - 1] @ P
    G = np.zeros((n, n))
    G[0, t] = 1.0
    for L in range(1, n):
        G[L] = P @ G[L - 1]
        G[L, t] = 0.0
    contrib = np.zeros(len(edges))
    lens = np.arange(n)
    denom = lens[:, None] + 1 + lens[None, :]
    for i in range(n):
        for j in range(n):
            if P[i, j] <= 0 or i == t:
                continue
            tot = float(np.sum(np.outer(F[:, i], G[:, j]) / denom)) * P[i, j]
            contrib[eidx[i, j]] += tot
    return contrib


@dataclass(frozen=True, eq=False)
class ContributionMatrix:
    """Result of :func:`contribution_matrix`.

    Attributes
    ----------
    matrix : DataFrame
        Rows: network comparisons ``"a:b"``; columns: direct comparisons;
        entries: proportion contributed (each row sums to 1).
    hat : DataFrame
        The aggregate hat matrix used.
    method : str
    tau2 : float
    """

    matrix: pd.DataFrame = field(repr=False)
    hat: pd.DataFrame = field(repr=False)
    method: str
    tau2: float

    def to_frame(self, percent: bool = False) -> pd.DataFrame:
        return self.matrix * 100.0 if percent else self.matrix.copy()

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "tau2": self.tau2, "rows": list(self.matrix.index),
                "columns": list(self.matrix.columns), "matrix": self.matrix.to_numpy().tolist()}

    def summary(self) -> str:
        tot = self.matrix.sum(axis=0) / len(self.matrix) * 100.0
        lines = [f"Contribution matrix ({self.method}; tau^2 = {self.tau2:.4g}): "
                 f"{self.matrix.shape[0]} network estimates x {self.matrix.shape[1]} direct comparisons",
                 "share of the whole network (%): " + ", ".join(f"{c} {v:.1f}" for c, v in tot.items())]
        return "\n".join(lines)


def contribution_matrix(result: "NMAResult", method: str = "shortestpath") -> ContributionMatrix:
    """Proportion contribution of each direct comparison to each network estimate.

    Parameters
    ----------
    result : NMAResult
        Weights use ``result.tau2`` (0 for a fixed-effect fit).
    method : {"shortestpath", "randomwalk"}
        Flow decomposition (see the module docstring).

    Returns
    -------
    ContributionMatrix

    Examples
    --------
    >>> cm = contribution_matrix(res)                                  # doctest: +SKIP
    >>> cm.to_frame(percent=True).round(1)                             # doctest: +SKIP
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    H = hat_matrix(result, "naive" if method == "shortestpath" else "aggregate")

    edges = [_split(c, result.treatments) for c in H.columns]
    trts = list(result.treatments)
    out = np.zeros(H.shape)
    for r, row in enumerate(H.index):
        a, b = _split(row, result.treatments)
        h = H.to_numpy()[r]
        out[r] = (_shortest_path_row(h, edges, a, b) if method == "shortestpath"
                  else _random_walk_row(h, edges, trts, a, b))
    return ContributionMatrix(pd.DataFrame(out, index=H.index, columns=H.columns), H, method, float(result.tau2))


def _split(label: str, treatments) -> tuple[str, str]:
    for t in treatments:
        if label.startswith(t + ":") and label[len(t) + 1:] in treatments:
            return t, label[len(t) + 1:]
    raise ValueError(f"cannot split comparison label {label!r}")  # pragma: no cover
