"""Treatment ranking: analytic P-scores and resampling SUCRA.

References
----------
Rücker G., Schwarzer G. (2015). Ranking treatments in frequentist network
meta-analysis works without resampling methods. BMC Med Res Methodol 15:58.
Salanti G., Ades A.E., Ioannidis J.P.A. (2011). Graphical methods and
numerical summaries for presenting results from multiple-treatment
meta-analysis. J Clin Epidemiol 64:163-171.
"""

from __future__ import annotations

from typing import Sequence

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
