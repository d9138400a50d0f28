"""Endpoints as each trial defines them, evaluated on simulated measurements.

Remission (at absolute week ``W``; baseline = week 0 of the simulation)::

    CR: UPCR_W < cr_upcr  and  eGFR_W >= (1 - gfr_drop) eGFR_0  and  activity_W < ce_activity_max
    PR: UPCR_W <= pr_upcr_max and UPCR_W <= (1 - pr_reduction) UPCR_0 and eGFR stable (not CR)
    overall (OR) = CR or PR

Withdrawal: each patient has an exponential withdrawal time (``dropout_per_year``); remission endpoints
count withdrawn patients as non-responders (intention to treat). Flare and kidney-function endpoints
ignore withdrawal (the stored long-term figures are cumulative incidences).

Kidney flare (visits only): after a response (OR at a visit), a visit with UPCR >= max(flare_upcr_abs,
flare_upcr_rel x post-response nadir) or relative activity >= flare_activity, at two consecutive visits;
the patient must respond
again before another flare counts. ``flare`` = proportion with >= 1 flare in the window, ``flare_rate`` =
flares per patient-year, ``relapse`` = ``flare`` among those who entered in response.
Entry (denominator): all patients; ``entry: response`` (protocol) = in overall remission at the
randomisation week (maintenance trials); ``entry: completed`` = not withdrawn by the protocol's ``entry_week``
(continuation studies such as AURORA 2). An endpoint may narrow its own denominator with ``among: response``
(overall remission at week ``among_week``, with ``among_upcr_max`` as the UPCR ceiling), e.g. flares among
responders.

Composite / hard endpoint: eGFR decline >= ``decline`` from baseline or eGFR < ``floor`` at two
consecutive visits (``hard``: 40% decline or eGFR < 15, i.e. ESKD). Single components:
``egfr_decline`` (>= ``decline``, default 30%), ``doubling`` (doubling of serum creatinine, taken as a
sustained halving of eGFR), ``eskd`` (eGFR < 15 at two consecutive visits).
"""

from __future__ import annotations

import numpy as np

DEFAULTS = dict(cr_upcr=0.5, pr_upcr_max=3.0, pr_reduction=0.5, gfr_drop=0.25)


def _opt(spec_opts: dict, key: str, p: dict):
    if key in spec_opts:
        return float(spec_opts[key])
    if key in DEFAULTS:
        return DEFAULTS[key]
    return float(p[key])


def remission_status(res, w: int, opts: dict, p: dict, itt: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(complete, overall) boolean arrays at absolute week ``w``; with ``itt`` patients withdrawn before
    ``w`` count as non-responders (intention to treat)."""
    u = res.upcr[:, w]
    g = res.egfr[:, w]
    stable = g >= (1.0 - _opt(opts, "gfr_drop", p)) * res.egfr[:, 0]
    cr = (u < _opt(opts, "cr_upcr", p)) & stable & (res.activity[:, w] < p["ce_activity_max"])
    pr = (u <= _opt(opts, "pr_upcr_max", p)) & (u <= (1.0 - _opt(opts, "pr_reduction", p)) * res.upcr[:, 0]) & stable
    if itt and res.dropout_week is not None:
        on = res.dropout_week > w
        cr, pr = cr & on, pr & on
    return cr, cr | pr


def flare_counts(res, start: int, stop: int, visit_every: int, opts: dict, p: dict) -> np.ndarray:
    """Number of kidney flares per patient at visits in (start, stop] (absolute weeks)."""
    n = res.upcr.shape[0]
    resp = np.zeros(n, bool)
    nadir = np.full(n, np.inf)
    count = np.zeros(n, np.int64)
    pending = np.zeros(n, bool)
    fa, fr, fact = p["flare_upcr_abs"], p["flare_upcr_rel"], p["flare_activity"]
    for v in range(0, stop + 1, visit_every):
        u = res.upcr[:, v]
        a = res.activity[:, v]
        crit = resp & ((u >= np.maximum(fa, fr * nadir)) | (a >= fact))
        flare = crit & pending  # confirmed at two consecutive visits
        pending = crit & ~flare
        if v > start:
            count += flare
        _, orr = remission_status(res, v, opts, p, itt=False)
        new_resp = ~resp & orr & ~flare
        resp = np.where(flare, False, resp | new_resp)
        nadir = np.where(flare | ~resp, np.inf, np.where(crit, nadir, np.minimum(nadir, u)))
    return count


def hard_event(res, stop: int, visit_every: int, decline: float = 0.4, floor: float = 15.0) -> np.ndarray:
    """Sustained (two consecutive visits) eGFR decline >= ``decline`` or eGFR < ``floor`` by week ``stop``."""
    base = res.egfr[:, 0]
    visits = list(range(0, stop + 1, visit_every))
    bad = np.stack([(res.egfr[:, v] <= (1 - decline) * base) | (res.egfr[:, v] < floor) for v in visits], 1)
    return (bad[:, 1:] & bad[:, :-1]).any(1) if bad.shape[1] > 1 else bad[:, 0]


def evaluate(res, spec, protocol, p: dict) -> tuple[float, float, int]:
    """Simulated (value, exposure, n_included) of one endpoint for one arm.

    value = proportion (or flares per patient over the window for ``flare_rate``); exposure = patient-years
    per patient for rates, else 1.
    """
    r0 = protocol.randomise_week
    T = res.upcr.shape[1] - 1
    w = int(round(r0 + (spec.week if spec.week is not None else T - r0)))
    w = min(w, T)
    incl = np.ones(res.upcr.shape[0], bool)
    if protocol.entry == "response":
        _, orr = remission_status(res, r0, spec.opts, p, itt=False)
        incl = orr
    elif protocol.entry == "completed":
        ew = getattr(protocol, "entry_week", None)
        ew = r0 if ew is None else ew
        if res.dropout_week is not None:
            incl = res.dropout_week > ew
    elif protocol.entry is not None:
        raise ValueError(f"protocol {protocol.id}: unknown entry {protocol.entry!r} (response | completed)")
    if spec.opts.get("among") is not None:
        if spec.opts["among"] != "response":
            raise ValueError(f"protocol {protocol.id}: endpoint {spec.name}: unknown 'among' {spec.opts['among']!r}")
        aw = int(spec.opts.get("among_week", r0))
        ao = {"pr_upcr_max": float(spec.opts.get("among_upcr_max", DEFAULTS["pr_upcr_max"]))}
        _, orr = remission_status(res, aw, ao, p, itt=False)
        incl = incl & orr
    k = int(incl.sum())
    if k == 0:
        return float("nan"), 1.0, 0
    ve = protocol.visit_every
    if spec.kind == "cr":
        v = remission_status(res, w, spec.opts, p)[0][incl].mean()
    elif spec.kind in ("or", "pr"):
        cr, orr = remission_status(res, w, spec.opts, p)
        v = (orr if spec.kind == "or" else orr & ~cr)[incl].mean()
    elif spec.kind in ("flare", "relapse"):
        st = r0 + int(spec.opts.get("window_start", 0))
        v = (flare_counts(res, st, w, ve, spec.opts, p)[incl] > 0).mean()
    elif spec.kind == "flare_rate":
        st = r0 + int(spec.opts.get("window_start", 0))
        c = flare_counts(res, st, w, ve, spec.opts, p)[incl]
        return float(c.mean()), (w - st) / 52.0, k
    elif spec.kind == "composite":
        v = hard_event(res, w, ve, float(spec.opts.get("decline", 0.3)), float(spec.opts.get("floor", 30)))[incl].mean()
    elif spec.kind == "hard":
        v = hard_event(res, w, ve, 0.4, 15.0)[incl].mean()
    elif spec.kind == "egfr_decline":
        v = hard_event(res, w, ve, float(spec.opts.get("decline", 0.3)), 0.0)[incl].mean()
    elif spec.kind == "doubling":
        v = hard_event(res, w, ve, 0.5, 0.0)[incl].mean()
    elif spec.kind == "eskd":
        v = hard_event(res, w, ve, 1.0, 15.0)[incl].mean()
    else:
        raise ValueError(spec.kind)
    return float(v), 1.0, k
