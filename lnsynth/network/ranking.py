"""Treatment ranking: analytic P-scores, resampling SUCRA, full rank probabilities
(rankograms), cumulative rank probabilities and SUCRA from rank probabilities.

References
----------
Rücker G., Schwarzer G. (2015). Ranking treatments in frequentist network
meta-analysis works without resampling methods. BMC Med Res Methodol 15:58.
Salanti G., Ades A.E., Ioannidis J.P.A. (2011). Graphical methods and
numerical summaries for presenting results from multiple-treatment
meta-analysis. J Clin Epidemiol 64:163-171.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats


def _sign(small_values: str) -> float:
    if small_values not in ("good", "bad"):
        raise ValueError("small_values must be 'good' or 'bad'")
    return 1.0 if small_values == "bad" else -1.0


def pscores(theta: np.ndarray, S: np.ndarray, treatments: Sequence[str], small_values: str = "good") -> pd.Series:
    r"""P-scores of Rücker & Schwarzer (2015).

    With effects :math:`\theta_i` (vs a common reference) and covariance
    :math:`S`, for larger-is-better (``small_values="bad"``)

    .. math::

        P_i = \frac{1}{T-1}\sum_{j\ne i}\Phi\left(\frac{\theta_i-\theta_j}
        {\sqrt{S_{ii}+S_{jj}-2S_{ij}}}\right),

    and with the sign of the difference flipped for ``small_values="good"``
    (e.g. harms, or log OR of an adverse outcome).  The P-score equals the
    SUCRA of the normal approximation without simulation.
    """
    s = _sign(small_values)
    theta = np.asarray(theta, float)
    d = s * (theta[:, None] - theta[None, :])
    v = np.diag(S)[:, None] + np.diag(S)[None, :] - 2.0 * S
    se = np.sqrt(np.maximum(v, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        P = stats.norm.cdf(d / se)
    P = np.where(se > 0, P, np.where(d > 0, 1.0, np.where(d < 0, 0.0, 0.5)))
    np.fill_diagonal(P, 0.0)
    T = len(theta)
    return pd.Series(P.sum(axis=1) / (T - 1), index=list(treatments), name="pscore")


def sucra(theta: np.ndarray, S: np.ndarray, treatments: Sequence[str], small_values: str = "good",
          n_sim: int = 10000, seed: int | None = 1) -> pd.DataFrame:
    r"""SUCRA by resampling from the multivariate normal of the estimates.

    Draws ``n_sim`` vectors from :math:`N(\hat\theta, S)` (reference fixed at
    0; ``numpy.random.default_rng(seed)``), ranks treatments in each draw
    (rank 1 = best), and reports ``SUCRA_i = (T - \bar r_i)/(T - 1)``
    (Salanti 2011), the mean rank and the probability of being best.
    """
    s = _sign(small_values)
    theta = np.asarray(theta, float)
    T = len(theta)
    rng = np.random.default_rng(seed)
    # factor S (singular in the reference row/column) via eigen-decomposition
    w, U = np.linalg.eigh(0.5 * (S + S.T))
    L = U * np.sqrt(np.clip(w, 0.0, None))
    draws = theta + rng.standard_normal((n_sim, T)) @ L.T
    order = np.argsort(-s * draws, axis=1, kind="stable")
    ranks = np.empty_like(order)
    ranks[np.arange(n_sim)[:, None], order] = np.arange(1, T + 1)
    mean_rank = ranks.mean(axis=0)
    return pd.DataFrame({
        "treatment": list(treatments),
        "sucra": (T - mean_rank) / (T - 1),
        "mean_rank": mean_rank,
        "p_best": (ranks == 1).mean(axis=0),
    })


def _draws(theta: np.ndarray, S: np.ndarray, n_sim: int, seed: int | None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, U = np.linalg.eigh(0.5 * (S + S.T))  # S is singular in the reference row/column
    L = U * np.sqrt(np.clip(w, 0.0, None))
    return theta + rng.standard_normal((n_sim, len(theta))) @ L.T


def rank_probabilities(theta: np.ndarray, S: np.ndarray, treatments: Sequence[str], small_values: str = "good",
                       n_sim: int = 100000, seed: int | None = 1) -> pd.DataFrame:
    r"""Probability of each rank for each treatment, by simulation from :math:`N(\hat\theta, S)`.

    Draws ``n_sim`` vectors (``numpy.random.default_rng(seed)``: the result is
    reproducible for a given seed), ranks the treatments in each draw (rank 1
    = best; ``small_values="good"`` means smaller effects are better) and
    counts.  Returns a DataFrame indexed by treatment with columns ``1..T``
    (each row and each column sums to 1).  The Monte Carlo standard error of
    an entry ``p`` is :math:`\sqrt{p(1-p)/n_{sim}}`.

    References
    ----------
    Salanti G., Ades A.E., Ioannidis J.P.A. (2011). J Clin Epidemiol 64:163-171.

    Examples
    --------
    >>> th = np.array([0.0, -0.5, 0.2]); S = np.diag([0.0, 0.04, 0.09])
    >>> bool(rank_probabilities(th, S, ["A", "B", "C"]).loc["B", 1] > 0.9)
    True
    """
    s = _sign(small_values)
    theta = np.asarray(theta, float)
    T = len(theta)
    if n_sim < 1:
        raise ValueError(f"n_sim must be a positive integer, got {n_sim!r}")
    draws = _draws(theta, np.asarray(S, float), int(n_sim), seed)
    order = np.argsort(-s * draws, axis=1, kind="stable")
    ranks = np.empty_like(order)
    ranks[np.arange(len(draws))[:, None], order] = np.arange(1, T + 1)
    P = np.stack([(ranks == k).mean(axis=0) for k in range(1, T + 1)], axis=1)
    return pd.DataFrame(P, index=pd.Index(list(treatments), name="treatment"), columns=list(range(1, T + 1)))


def cumulative_rank_probabilities(rank_probs: pd.DataFrame) -> pd.DataFrame:
    """Cumulative rank probabilities: column ``k`` is P(rank <= k) (the last column is 1)."""
    return rank_probs.cumsum(axis=1)


def sucra_from_probabilities(rank_probs: pd.DataFrame) -> pd.Series:
    r"""SUCRA from rank probabilities (Salanti et al. 2011):
    :math:`\mathrm{SUCRA}_i = \frac{1}{T-1}\sum_{k=1}^{T-1} P(\text{rank}_i \le k)`.

    Equals :math:`(T - E[\text{rank}_i])/(T-1)` and, for normal estimates,
    the P-score up to Monte Carlo error (Rücker & Schwarzer 2015).

    Examples
    --------
    >>> p = pd.DataFrame([[0.8, 0.2], [0.2, 0.8]], index=["A", "B"], columns=[1, 2])
    >>> sucra_from_probabilities(p).round(3).tolist()
    [0.8, 0.2]
    """
    T = rank_probs.shape[1]
    if T < 2:
        raise ValueError("SUCRA needs at least two treatments")
    cum = rank_probs.cumsum(axis=1).iloc[:, :T - 1]
    return pd.Series(cum.sum(axis=1).to_numpy() / (T - 1), index=rank_probs.index, name="sucra")


def mean_rank(rank_probs: pd.DataFrame) -> pd.Series:
    """Expected rank of each treatment from rank probabilities."""
    k = np.asarray(rank_probs.columns, float)
    return pd.Series(rank_probs.to_numpy() @ k, index=rank_probs.index, name="mean_rank")


def result_rank_probabilities(result: Any, small_values: str = "good", n_sim: int = 100000,
                              seed: int | None = 1) -> pd.DataFrame:
    """:func:`rank_probabilities` for a fitted :class:`~lnsynth.network.NMAResult`."""
    th, S = result._full()
    return rank_probabilities(th, S, result.treatments, small_values=small_values, n_sim=n_sim, seed=seed)
