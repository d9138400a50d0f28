"""Leave-one-trial-out validation of the calibrated simulator.

For each trial j, the posterior is recomputed without trial j's likelihood (importance re-weighting of the
simulation bank, see :mod:`lnsynth.simulate.calibrate`); for every stored arm-level outcome of trial j the
95% predictive interval of the proportion a trial of that arm's size would observe combines parameter
uncertainty, the between-trial random effect (a new trial draws u ~ N(0, tau^2)), and binomial (or
Poisson, for flare rates) noise. For flare rates the "proportion" is flares per patient over the window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .calibrate import Bank, binomial_width, calibrate, predictive_interval

COLUMNS = ["trial", "arm", "endpoint", "observed_events", "observed_n", "pred_low", "pred_high", "held_out"]


def validate_loo(ev=None, seed: int = 2024, progress=None, scheduler: str | None = "auto",
                 bank: Bank | None = None, include_fitted: bool = False) -> pd.DataFrame:
    """Leave-one-trial-out predictive intervals; columns exactly
    ``trial, arm, endpoint, observed_events, observed_n, pred_low, pred_high, held_out``.

    ``include_fitted`` adds in-sample rows (``held_out`` False) from the full-data posterior.
    """
    bank = bank or calibrate(ev, seed=seed, scheduler=scheduler, progress=progress)
    rows = []
    for i, t in enumerate(bank.targets):
        lo, hi = predictive_interval(bank, i, exclude=t.trial)
        rows.append([t.trial, t.arm, t.label, t.events, t.n, lo, hi, True])
        if include_fitted:
            lo2, hi2 = predictive_interval(bank, i, exclude=None)
            rows.append([t.trial, t.arm, t.label, t.events, t.n, lo2, hi2, False])
    return pd.DataFrame(rows, columns=COLUMNS)


def validation_summary(df: pd.DataFrame) -> dict:
    """Coverage of held-out rows and the median width relative to the pure binomial width."""
    d = df[df["held_out"]].copy()
    obs = d["observed_events"] / d["observed_n"]
    inside = (obs >= d["pred_low"] - 1e-12) & (obs <= d["pred_high"] + 1e-12)
    width = d["pred_high"] - d["pred_low"]
    bw = np.array([binomial_width(int(e), int(n)) for e, n in zip(d["observed_events"], d["observed_n"])])
    ratio = width.to_numpy() / np.maximum(bw, 1e-9)
    return {
        "n_arms": int(len(d)),
        "coverage": float(inside.mean()) if len(d) else float("nan"),
        "n_inside": int(inside.sum()),
        "median_width": float(np.median(width)) if len(d) else float("nan"),
        "median_binomial_width": float(np.median(bw)) if len(d) else float("nan"),
        "median_width_ratio": float(np.median(ratio)) if len(d) else float("nan"),
        "aim_met": bool(len(d) and inside.mean() >= 0.8 and np.median(ratio) <= 2.0),
        "outside": d.loc[~inside.to_numpy(), ["trial", "arm", "endpoint"]].apply(" / ".join, axis=1).tolist(),
    }
