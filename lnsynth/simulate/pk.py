"""PK module: weekly average calcineurin-inhibitor exposure.

Equations (weekly step, t in weeks)::

    Css_t  = ref_t * pk_i * adh_it            # steady-state level the regimen aims at this week
    C_t+1  = C_t * d + (1 - d) * Css_t        # first-order approach, d = exp(-ln2 * 168 h / t_half)

``ref_t`` is built per regimen by :func:`reference_level`:
  * trough-targeted TAC/CsA: the protocol's target trough (ng/mL);
  * fixed-dose TAC: dose (mg/day) x ``tac_trough_per_mg_day``;
  * fixed-dose voclosporin: ``vcs_conc_ref_ng_ml`` x (dose/23.7)^``vcs_dose_exponent``.
``pk_i`` is a log-normal between-patient factor (SD ``iiv_cv``); ``adh_it`` is 1 in an adherent week and
``missed_week_exposure`` otherwise (patient-specific weekly adherence probability).
"""

from __future__ import annotations

import math

import numba
import numpy as np

CNI_NONE, CNI_TAC, CNI_CSA, CNI_VCS = 0, 1, 2, 3
CNI_CODES = {"TAC": CNI_TAC, "CSA": CNI_CSA, "VCS": CNI_VCS}


def weekly_decay(half_life_h: float) -> float:
    """Fraction of the previous week's level remaining after one week."""
    return math.exp(-math.log(2.0) * 168.0 / half_life_h)


def reference_level(drug: str, mode: str, level: float, p: dict) -> float:
    """Population steady-state level (ng/mL) for a regimen week, before patient variability."""
    if level <= 0:
        return 0.0
    if drug in ("TAC", "CSA") and mode == "trough":
        return float(level)
    if drug == "TAC" and mode == "mg_day":
        return float(level) * p["tac_trough_per_mg_day"]
    if drug == "VCS" and mode == "mg_bid":
        return p["vcs_conc_ref_ng_ml"] * (float(level) / 23.7) ** p["vcs_dose_exponent"]
    raise ValueError(f"unsupported dosing {drug}/{mode}")


def half_life(drug: str, p: dict) -> float:
    return {"TAC": p["tac_half_life_h"], "CSA": p["csa_half_life_h"], "VCS": p["vcs_half_life_h"]}[drug]


@numba.njit(cache=True, inline="always")
def step_conc(c, decay, css):
    return c * decay + (1.0 - decay) * css


def steady_state_levels(ref: np.ndarray, pk_factor: np.ndarray) -> np.ndarray:
    """Vectorised helper (tests, figures): patient x week steady-state levels."""
    return np.outer(pk_factor, ref)
