"""PD module: calcineurin inhibition versus concentration (Emax / Hill).

    I(C) = Imax * C^h / (C^h + EC50^h)

EC50 is drug specific: voclosporin 78.3 ng/mL (single ascending dose PK/PD study, sourced); tacrolimus and
cyclosporin EC50s on the trough scale are assumptions (no published value found), see params/model.yaml.
The same inhibition I drives all three CNI channels: T-cell (immune), podocyte and haemodynamic.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def emax(c, ec50, imax, hill):
    if c <= 0.0 or ec50 <= 0.0:
        return 0.0
    ch = c**hill
    return imax * ch / (ch + ec50**hill)


def inhibition(c, ec50: float, imax: float = 1.0, hill: float = 1.0) -> np.ndarray:
    """Vectorised Emax (NumPy)."""
    c = np.asarray(c, dtype=float)
    ch = np.where(c > 0, c, 0.0) ** hill
    return imax * ch / (ch + ec50**hill)


def ec50_for(drug: str, p: dict) -> float:
    return {"TAC": p["tac_ec50_ng_ml"], "CSA": p["csa_ec50_ng_ml"], "VCS": p["vcs_ec50_ng_ml"]}[drug]
