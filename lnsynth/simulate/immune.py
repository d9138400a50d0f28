"""Immune module: latent nephritis activity, its suppression, and flares.

Per patient i (weekly step)::

    S_t   = k_bg*(MMF/AZA units)_t*adh + k_bg*(cyclophosphamide units)_t + k_ster*(steroid units)_t
            + k_cni * I_t                                   # I_t: calcineurin inhibition (pd module)
    E_t   = 1 - exp(-sens_i * S_t)                           # fraction of T-cell drive suppressed
    a_t+1 = a_t + r_a * ((1 - E_t) * (1 + b_t) - a_t)        # relative activity, a_0 = 1 (active LN)
    b_t+1 = b_t * exp(-1/tau_b) + boost * [flare at t]       # flare boost of the activity set-point
    P(flare in week t) = 1 - exp(-h0 * drive_i * (1 - E_t))  # rises when suppression is withdrawn

sens_i = exp(u_trial + sens_sd z) (patient and trial-level treatment sensitivity); drive_i log-normal.
The podocyte/haemodynamic channels are NOT here: they act on proteinuria directly (kidney module), which
is why a CNI can lower proteinuria without changing immune activity.
"""

from __future__ import annotations

import math

import numba


@numba.njit(cache=True, inline="always")
def suppression(sens, k_bg, bg_units, cyc_units, k_ster, ster_units, k_cni, inhib):
    s = k_bg * (bg_units + cyc_units) + k_ster * ster_units + k_cni * inhib
    return 1.0 - math.exp(-sens * s)


@numba.njit(cache=True, inline="always")
def flare_prob(h0, drive, e):
    return 1.0 - math.exp(-h0 * drive * (1.0 - e))


@numba.njit(cache=True, inline="always")
def step_activity(a, e, boost, r_a):
    return a + r_a * ((1.0 - e) * (1.0 + boost) - a)
