"""GOSH (graphical display of study heterogeneity): the model fitted to subsets of the studies.

As metafor's ``gosh.rma``: for k <= 20 (default) every subset with at least
p = 1 study (2^k - 1 subsets) is fitted, otherwise a random sample of subsets
(each study included with probability 1/2, empty subsets redrawn; metafor draws
the subset size from Binomial(k, 1/2) restricted to >= 1 and then a uniform
subset of that size, which is the same distribution).  Every subset is fitted
by the compiled batched engine (:func:`lnsynth.pairwise.core.fit_batch`): a
chunk of subsets is split by subset size j and each part is a dense (B_j, j)
batch holding only the included studies (the (B, k) NaN-masked layout would
make the kernel walk over the k - j absent studies of every subset too; the
results are the same up to summation order).

For DL (and FE) the H^2 column is Q/(k-1) as metafor's gosh computes it (its
fast path), which for DL differs from ``rma()``'s H^2 = 1 when tau2 = 0.

Rows are ordered as metafor orders them: by subset size, then (for all-subset
runs) by the binary number whose bit j is study j.  Columns: k, qe, i2, h2,
tau2, estimate (metafor's ``res``: k, QE, I2, H2, tau2, estimate).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import registry

_IV = registry.iv_methods()
MAX_EXACT_K = 20


@dataclass(frozen=True)
class GoshResult:
    """Subset fits; ``incl`` is a (N, k) bool matrix of the studies in each subset."""

    k_total: int
    incl: np.ndarray
    k: np.ndarray
    qe: np.ndarray
    i2: np.ndarray
    h2: np.ndarray
    tau2: np.ndarray
    estimate: np.ndarray
    exact: bool
    method: str
    converged: np.ndarray
    labels: tuple | None = None

    def __len__(self) -> int:
        return int(self.k.shape[0])

    def to_dict(self) -> dict:
        """Plain Python: the settings and, per subset, k, Q, I², H², tau² and the estimate (lists)."""
        return {"k_total": int(self.k_total), "n_subsets": len(self), "exact": bool(self.exact), "method": self.method,
                "labels": list(self.labels) if self.labels is not None else None,
                "converged": [bool(x) for x in self.converged],
                **{key: [float(x) for x in getattr(self, key)] for key in ("k", "qe", "i2", "h2", "tau2", "estimate")}}

    def summary(self, digits: int = 4) -> str:
        """One line on the subsets and the spread of the estimate and I² across them."""
        est, i2 = np.asarray(self.estimate, dtype=float), np.asarray(self.i2, dtype=float)
        return (f"GOSH: {len(self)} subsets of {self.k_total} studies ({'all' if self.exact else 'sampled'}; "
                f"method {self.method}); estimate from {np.nanmin(est):.{digits}g} to {np.nanmax(est):.{digits}g}, "
                f"I^2 from {np.nanmin(i2):.{digits}g} to {np.nanmax(i2):.{digits}g}%")

    @property
    def mask(self) -> np.ndarray:
        """Subset as an integer bit mask (bit j = study j), for k <= 62."""
        if self.k_total > 62:
            raise ValueError("mask: only for k <= 62")
        return (self.incl.astype(np.int64) << np.arange(self.k_total, dtype=np.int64)).sum(axis=1)

    def to_frame(self, include_incl: bool = False):
        import pandas as pd

        df = pd.DataFrame({"k": self.k, "qe": self.qe, "i2": self.i2, "h2": self.h2, "tau2": self.tau2,
                           "estimate": self.estimate})
        if include_incl:
            labs = self.labels or tuple(str(j + 1) for j in range(self.k_total))
            for j, lab in enumerate(labs):
                df[lab] = self.incl[:, j]
        return df


def all_subsets(k: int, min_k: int = 1) -> np.ndarray:
    """Bit masks of all subsets with >= min_k of k studies, in metafor's order (size, then mask)."""
    if k > 62:
        raise ValueError("k too large for all subsets")
    masks = np.arange(1 << k, dtype=np.int64)
    pc = np.zeros(masks.shape, dtype=np.int8)
    for j in range(k):
        pc += ((masks >> j) & 1).astype(np.int8)
    keep = pc >= min_k
    masks, pc = masks[keep], pc[keep]
    order = np.argsort(pc, kind="stable")
    return masks[order]


def _masks_to_incl(masks: np.ndarray, k: int) -> np.ndarray:
    return ((masks[:, None] >> np.arange(k, dtype=np.int64)[None, :]) & 1).astype(bool)


def random_subsets(k: int, n: int, seed=None, min_k: int = 1) -> np.ndarray:
    """n random subsets as a (n, k) bool matrix, each study included with probability 1/2 (|S| >= min_k)."""
    rng = np.random.default_rng(seed)
    out = rng.random((n, k)) < 0.5
    bad = out.sum(axis=1) < min_k
    while bad.any():
        out[bad] = rng.random((int(bad.sum()), k)) < 0.5
        bad = out.sum(axis=1) < min_k
    sizes = out.sum(axis=1)
    return out[np.argsort(sizes, kind="stable")]


def _fit_compact(y, v, m, method, parallel, out, s):
    """Fit the rows of bool matrix m (B, k) and store into out[...][s:s+B].

    Rows of equal size j are packed into dense (n_j, j) arrays (no masked
    padding), so the kernel touches only the studies in each subset.
    """
    from . import core

    K = m.sum(axis=1).astype(np.int64)
    if m.shape[0] == 0:
        return
    sizes = np.unique(K)
    for j in sizes:
        rows = np.flatnonzero(K == j)
        sub = m[rows]
        cols = np.nonzero(sub)[1].reshape(len(rows), int(j))
        Y = np.ascontiguousarray(y[cols])
        V = np.ascontiguousarray(v[cols])
        r = core.fit_batch(Y, V, np.full(len(rows), j, dtype=np.int64), method, False, False, 0.95,
                           parallel=parallel)
        for f in out:
            out[f][s + rows] = r[f]


def fit_subsets(y, v, incl, method: str = "REML", chunk: int = 1 << 16, parallel: bool | None = None):
    """Fit every row of ``incl`` (N, k bool) through the compiled engine; returns a dict of (N,) arrays."""
    y = np.asarray(y, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    N, k = incl.shape
    out = {f: np.empty(N) for f in ("estimate", "tau2", "q", "i2", "h2", "converged")}
    for s in range(0, N, chunk):
        _fit_compact(y, v, incl[s:s + chunk], method, parallel, out, s)
    return out


def _fit_masks(y, v, masks, method, chunk, parallel):
    """As fit_subsets but builds each chunk's inclusion matrix from bit masks (saves memory)."""
    N = masks.shape[0]
    k = len(y)
    out = {f: np.empty(N) for f in ("estimate", "tau2", "q", "i2", "h2", "converged")}
    incl = np.empty((N, k), dtype=bool)
    bits = np.arange(k, dtype=np.int64)
    for s in range(0, N, chunk):
        mk = masks[s:s + chunk]
        m = ((mk[:, None] >> bits[None, :]) & 1).astype(bool)
        incl[s:s + chunk] = m
        _fit_compact(y, v, m, method, parallel, out, s)
    return out, incl


def gosh(fit, subsets: int | None = None, seed=0, chunk: int = 1 << 16, parallel: bool | None = None,
         max_exact_k: int = MAX_EXACT_K) -> GoshResult:
    """GOSH analysis of a fitted :class:`~lnsynth.pairwise.MetaResult` (inverse-variance methods).

    ``subsets=None``: all 2^k - 1 subsets when k <= ``max_exact_k`` (20), otherwise
    10^6 random subsets (as metafor); an integer asks for that many random
    subsets (all subsets if that is at least 2^k - 1).  ``seed`` seeds the
    random draw (numpy Generator).  All fits run through the batched engine in
    chunks of ``chunk`` subsets.
    """
    method = getattr(fit, "method", None)
    if method not in _IV:
        raise ValueError(f"fit: needs an inverse-variance model (method in {', '.join(_IV)}), got {method!r}")
    y = np.asarray(fit.yi, dtype=np.float64)
    v = np.asarray(fit.vi, dtype=np.float64)
    k = len(y)
    if k < 2:
        raise ValueError("fit: stopped because k = 1")
    n_all = (1 << k) - 1 if k <= 62 else math.inf
    if subsets is None:
        exact = k <= max_exact_k
        n = n_all if exact else 10 ** 6
    else:
        n = int(round(subsets))
        if n < 2:
            raise ValueError("subsets: must be >= 2")
        exact = n >= n_all
    if exact:
        masks = all_subsets(k)
        r, incl = _fit_masks(y, v, masks, method, chunk, parallel)
    else:
        incl = random_subsets(k, int(n), seed=seed)
        r = fit_subsets(y, v, incl, method, chunk, parallel)
    kk = incl.sum(axis=1).astype(np.int64)
    if method == "DL":
        # metafor's gosh fast path for FE/DL reports H2 = Q/(k-1) (not truncated at 1 when tau2 = 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r["h2"] = np.where(kk > 1, r["q"] / (kk - 1), 1.0)
    return GoshResult(k, incl, kk, r["q"], r["i2"], r["h2"], r["tau2"], r["estimate"], exact, method,
                      r["converged"].astype(bool), tuple(fit.labels) if fit.labels is not None else None)
