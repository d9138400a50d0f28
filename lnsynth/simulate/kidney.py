"""Kidney module: proteinuria and eGFR.

    j_t+1  = j_t + r_j (a_t - j_t)                       # glomerular immune injury, follows activity
    F_pod  = 1 - f_ni (1 - hd_share) I_t                 # podocyte stabilisation (immediate, reversible)
    F_hd   = 1 - f_ni hd_share I_t                       # afferent vasoconstriction (immediate, reversible)
    UPCR_t = P0_i (c_i + (1 - c_i) j_t) F_pod F_hd       # c_i: irreversible (scarred) fraction
    M_t+1  = M_t exp(-loss a_t - tox I_t)                # nephron mass: activity damage + chronic CNI
                                                         # nephrotoxicity growing with cumulative exposure
    eGFR_t = G_i M_t (1 - infl j_t)(1 - dip I_t) - decline t

Measurements add log-normal noise (UPCR, eGFR). Switching the CNI off sets I to 0 at once, so the
non-immune factors and the eGFR dip vanish immediately while immune injury j recovers only slowly.
"""

from __future__ import annotations

import numba


@numba.njit(cache=True, inline="always")
def nonimmune_factor(f_ni, hd_share, inhib, pod_on, hd_on):
    f_pod = 1.0 - f_ni * (1.0 - hd_share) * inhib * pod_on
    f_hd = 1.0 - f_ni * hd_share * inhib * hd_on
    return f_pod * f_hd


@numba.njit(cache=True, inline="always")
def upcr(p0, chronic, injury, f_nonimm):
    return p0 * (chronic + (1.0 - chronic) * injury) * f_nonimm


@numba.njit(cache=True, inline="always")
def egfr(g_max, mass, infl, injury, dip, inhib, hd_on, decline):
    inj = injury if injury < 3.0 else 3.0
    f_inf = 1.0 - infl * inj
    if f_inf < 0.2:
        f_inf = 0.2
    v = g_max * mass * f_inf * (1.0 - dip * inhib * hd_on) - decline
    return v if v > 1.0 else 1.0
