"""Validation of the calibrated simulator by proper scoring against a meta-analytic null.

Protocol (frozen in ``params/validation.yaml``, changes in ``params/CHANGELOG.md``):

* ``loto`` rows: every calibration row is predicted from the calibration WITHOUT its trial (importance
  re-weighting of the simulation bank, :mod:`lnsynth.simulate.calibrate`), as a new trial: its random effect
  u ~ N(0, tau^2) is integrated with ``trial_effect_nodes`` Gauss-Hermite nodes (simulated outcome values
  at the bank's 3 nodes are interpolated piecewise-linearly on the logit scale).
* ``external`` rows: trials and timepoints never used in calibration, predicted from the calibration on all
  calibration rows (posterior draws resampled, each external protocol simulated at the bank's nodes with the
  same virtual patients). A later timepoint of a calibration trial conditions on that trial's random effect
  given its calibration rows; a new trial draws a new effect.
* ``log_pred`` = log P(observed events | model), the predictive distribution being the mixture over posterior
  draws, trial effect and binomial noise (a beta-binomial-like mixture, not a point binomial); the same for
  the null (:mod:`lnsynth.simulate.null`). ``pred_low/high``: central 95% interval of that distribution, as
  proportions (events / n).
* Rows whose LOTO prediction was contaminated by tuning (``not_held_out``) are shown with held_out = False
  and left out of all totals. Flare counts over person-time (events can exceed n) are scored separately
  (:func:`validate_rates`).

References
----------
Gneiting T, Raftery AE. Strictly proper scoring rules, prediction, and estimation. J Am Stat Assoc
2007;102:359-378 (logarithmic score).
Yao Y, Vehtari A, Simpson D, Gelman A. Using stacking to average Bayesian predictive distributions. Bayesian
Anal 2018;13:917-1007 (stacking weights).

Examples
--------
>>> from lnsynth.simulate.calibrate import calibrate
>>> bank = calibrate(n_sim=30, m1=8, m2=8, seed=1, cache=False, loo_min_ess=0)  # doctest: +SKIP
>>> df = validate(bank=bank, external=False)  # doctest: +SKIP
>>> list(df.columns) == COLUMNS  # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats
from scipy.special import logsumexp

from .calibrate import (GH_Z, Bank, Target, _cache_dir, _semantic, _simulate_draw, binomial_width,
                        calibrate, external_targets, validation_protocol)

COLUMNS = ["trial", "arm", "regimen", "endpoint", "endpoint_family", "observed_events", "observed_n", "pred_low",
           "pred_high", "held_out", "log_pred", "set"]
RATE_COLUMNS = ["trial", "arm", "regimen", "endpoint", "observed_events", "observed_n", "person_years",
                "pred_low", "pred_high", "held_out", "log_pred", "set"]
MODELS = ("simulator", "null", "stacked")


# ------------------------------------------------------------------------------------------------ helpers
def _settings() -> dict:
    vp = validation_protocol()
    return {"level": float(vp["scoring"]["level"]), "nodes": int(vp["scoring"]["trial_effect_nodes"]),
            "min_arms": int(vp["meta_null"]["min_arms"]), "null_nodes": int(vp["meta_null"]["quadrature_nodes"]),
            "null_method": vp["meta_null"]["method"], "k_ext": int(vp["external_draws"])}


def _fine_nodes(nf: int):
    z, w = np.polynomial.hermite_e.hermegauss(nf)
    return z, w / w.sum()


def _shrink(v, t: Target, n_sim: int):
    """Simulated value -> probability (binomial, Monte Carlo proportions moved off 0/1) or mean count per
    patient (rates)."""
    if t.kind == "binom":
        return (v * n_sim + 0.5) / (n_sim + 1.0)
    return np.maximum(v, 1e-3 / max(t.n, 1))


def _interp(v3: np.ndarray, zf: np.ndarray, kind: str) -> np.ndarray:
    """Values at the 3 bank nodes (..., 3) -> values at nodes ``zf`` (..., F): piecewise linear on the logit
    (binomial) or log (rate) scale through the 3 nodes, extended linearly beyond the outer nodes."""
    if kind == "binom":
        f = np.log(v3 / (1 - v3))
    else:
        f = np.log(v3)
    z0, z1, z2 = GH_Z
    lo = f[..., :1] + (f[..., 1:2] - f[..., :1]) / (z1 - z0) * (zf - z0)
    hi = f[..., 1:2] + (f[..., 2:3] - f[..., 1:2]) / (z2 - z1) * (zf - z1)
    g = np.where(zf <= z1, lo, hi)
    g = np.where(np.isfinite(g), g, np.nan)
    return 1.0 / (1.0 + np.exp(-g)) if kind == "binom" else np.exp(g)


def _pmf(vals: np.ndarray, wts: np.ndarray, t: Target) -> tuple[np.ndarray, np.ndarray]:
    """Mixture predictive pmf of the count of ``t`` over values ``vals`` with weights ``wts`` (flattened)."""
    vals, wts = np.ravel(vals), np.ravel(wts)
    ok = np.isfinite(vals) & (wts > 0)
    vals, wts = vals[ok], wts[ok] / wts[ok].sum()
    if t.kind == "binom":
        xs = np.arange(t.n + 1)
        pmf = (wts[:, None] * stats.binom.pmf(xs[None, :], t.n, vals[:, None])).sum(0)
    else:
        mu = vals * t.n
        hi = int(stats.poisson.ppf(1 - 1e-9, mu.max())) + 1
        xs = np.arange(max(hi, t.events) + 1)
        pmf = (wts[:, None] * stats.poisson.pmf(xs[None, :], mu[:, None])).sum(0)
    return xs, pmf / pmf.sum()


def _interval(xs, pmf, level):
    cdf = np.cumsum(pmf)
    a = (1 - level) / 2
    return int(xs[min(np.searchsorted(cdf, a), len(xs) - 1)]), int(xs[min(np.searchsorted(cdf, 1 - a), len(xs) - 1)])


def _arm_weights(tg: list[Target]) -> np.ndarray:
    cnt: dict = {}
    for t in tg:
        cnt[(t.trial, t.arm)] = cnt.get((t.trial, t.arm), 0) + 1
    return np.array([1.0 / cnt[(t.trial, t.arm)] for t in tg])


def _loglik_fine(vals: np.ndarray, tg: list[Target], wts: np.ndarray) -> np.ndarray:
    """Weighted log-likelihood of trial rows ``tg`` at fine nodes; vals (..., F, rows) -> (..., F)."""
    ll = np.zeros(vals.shape[:-1])
    for r, t in enumerate(tg):
        v = vals[..., r]
        if t.kind == "binom":
            ll = ll + wts[r] * stats.binom.logpmf(t.events, t.n, v)
        else:
            ll = ll + wts[r] * stats.poisson.logpmf(t.events, np.maximum(v * t.n, 1e-3))
    return np.where(np.isfinite(ll), ll, -np.inf)


# ------------------------------------------------------------------------------------------------ predictive
def _loto_pmf(bank: Bank, i: int, nf: int):
    t = bank.targets[i]
    w = bank.weights(exclude=t.trial)
    keep = w > 1e-8 * w.max()
    w = w[keep] / w[keep].sum()
    v3 = _shrink(bank.sims[keep][:, :, i], t, bank.n_sim)
    zf, wf = _fine_nodes(nf)
    vals = _interp(v3, zf, t.kind)  # (m, F)
    return _pmf(vals, w[:, None] * wf[None, :], t)


@dataclass
class ExternalBank:
    """Simulations of the external protocols at resampled posterior draws (indices into the bank)."""

    idx: np.ndarray  # unique bank draw indices
    counts: np.ndarray  # resampling multiplicities
    sims: np.ndarray  # (draws, 3 nodes, external targets)
    targets: list[Target]


def external_bank(bank: Bank, ev=None, k: int | None = None, seed: int = 2024, scheduler: str | None = None,
                  progress=None, cache: bool = True) -> ExternalBank:
    """Resample ``k`` posterior draws (all calibration rows) and simulate every external target at the bank's
    trial-effect nodes with the bank's virtual patients (cached like the bank)."""
    from importlib import resources

    import yaml

    from .sweep import map_tasks

    tg = external_targets(ev)
    k = k or _settings()["k_ext"]
    w = bank.weights()
    rng = np.random.default_rng(seed + 7)
    draws = rng.choice(len(w), size=k, replace=True, p=w)
    idx, counts = np.unique(draws, return_counts=True)
    h = hashlib.sha256()
    h.update(bank.theta.tobytes())
    h.update(bank.sims.tobytes())
    h.update(json.dumps([t.__dict__ for t in tg], sort_keys=True, default=str).encode())
    root = resources.files("lnsynth.simulate")
    for trial in sorted({t.trial for t in tg}):
        d = yaml.safe_load(root.joinpath(f"protocols/{trial}.yaml").read_text(encoding="utf-8"))
        h.update(json.dumps(_semantic(d), sort_keys=True, default=str).encode())
    for mod in ("engine.py", "endpoints.py", "protocols.py", "core.py", "immune.py", "kidney.py", "pk.py", "pd.py"):
        h.update(root.joinpath(mod).read_bytes())
    h.update(json.dumps([k, seed, bank.n_sim, bank.structure]).encode())
    path = _cache_dir() / f"external-{h.hexdigest()[:16]}.npz"
    if cache and path.exists():
        z = np.load(path)
        return ExternalBank(z["idx"], z["counts"], z["sims"], tg)
    items = [(dict(zip(bank.names, map(float, bank.theta[m]))), tg, bank.n_sim, seed) for m in idx]
    sims = np.stack(map_tasks(_simulate_draw, items, scheduler=scheduler, progress=progress))
    if cache:
        np.savez_compressed(path, idx=idx, counts=counts, sims=sims)
    return ExternalBank(idx, counts, sims, tg)


def _external_pmf(bank: Bank, eb: ExternalBank, e: int, nf: int):
    t = eb.targets[e]
    zf, wf = _fine_nodes(nf)
    v3 = _shrink(eb.sims[:, :, e], t, bank.n_sim)
    vals = _interp(v3, zf, t.kind)  # (u, F)
    base = (eb.counts / eb.counts.sum())[:, None]
    own = [i for i, c in enumerate(bank.targets) if c.trial == t.trial]
    if own:  # a later timepoint of a calibration trial: condition on its random effect given its rows
        ctg = [bank.targets[i] for i in own]
        cv = np.stack([_interp(_shrink(bank.sims[eb.idx][:, :, i], bank.targets[i], bank.n_sim), zf,
                               bank.targets[i].kind) for i in own], -1)  # (u, F, rows)
        ll = _loglik_fine(cv, ctg, _arm_weights(bank.targets)[own])
        lp = np.log(wf)[None, :] + ll
        post = np.exp(lp - logsumexp(lp, axis=1, keepdims=True))
        wts = base * post
    else:
        wts = base * wf[None, :]
    return _pmf(vals, wts, t)


# ------------------------------------------------------------------------------------------------ rows
def _row(t: Target, xs, pmf, level, set_: str, held_out: bool) -> dict:
    lo, hi = _interval(xs, pmf, level)
    pe = float(pmf[t.events]) if t.events < len(pmf) else 0.0
    return {"trial": t.trial, "arm": t.arm, "regimen": t.regimen, "endpoint": t.label,
            "endpoint_family": t.family, "observed_events": int(t.events), "observed_n": int(t.n),
            "pred_low": lo / t.n, "pred_high": hi / t.n, "held_out": bool(held_out),
            "log_pred": float(np.log(pe)) if pe > 0 else float("-inf"), "set": set_}


def _predictions(bank: Bank, eb: ExternalBank | None, kind: str, st: dict):
    """[(target, set, held_out, (xs, pmf) simulator, (xs, pmf) | None null)] for all rows of ``kind``."""
    from .null import null_pmf

    pool = list(bank.targets)
    out = []
    rows = [(i, t, "loto") for i, t in enumerate(bank.targets)]
    if eb is not None:
        rows += [(e, t, "external") for e, t in enumerate(eb.targets)]
    for i, t, set_ in rows:
        if t.kind != kind:
            continue
        sim = _loto_pmf(bank, i, st["nodes"]) if set_ == "loto" else _external_pmf(bank, eb, i, st["nodes"])
        npmf, fit = null_pmf(t, pool, st["min_arms"], st["null_nodes"], st["null_method"])
        nul = (np.arange(len(npmf)), npmf) if npmf is not None else None
        out.append((t, set_, t.held_out, sim, nul, fit))
    return out


def _frames(preds, level, model: str, stack_w: dict | None = None, alt: dict | None = None):
    rows = []
    for j, (t, set_, ho, sim, nul, fit) in enumerate(preds):
        if model == "simulator":
            xs, pmf = sim
        elif model == "null":
            if nul is None:
                continue
            xs, pmf = nul
        else:  # stacked: mixture of structures' pmfs with the stacking weights
            xs, pmf = sim
            pmf = stack_w["base"] * pmf
            for s, w in stack_w.items():
                if s == "base":
                    continue
                xa, pa = alt[s][j][3]
                m = min(len(pmf), len(pa))
                pmf = pmf[:m] + w * pa[:m]
                xs = xs[:m]
            pmf = pmf / pmf.sum()
        rows.append(_row(t, xs, pmf, level, set_, ho))
    return pd.DataFrame(rows, columns=COLUMNS)


def validate(ev=None, bank: Bank | None = None, model: str = "simulator", external: bool = True,
             seed: int = 2024, scheduler: str | None = "auto", progress=None, ext_bank: ExternalBank | None = None,
             alt_banks: dict | None = None) -> pd.DataFrame:
    """Proper-scoring validation table, columns exactly :data:`COLUMNS`.

    ``model``: ``simulator`` (base structure), ``null`` (random-effects pooling of the other trials' arms of the
    same endpoint family and regimen class; rows without any qualifying arm are left out) or ``stacked``
    (structures of ``params/validation.yaml`` mixed with stacking weights fitted on the held-out loto rows;
    needs ``alt_banks`` or builds them). Counts are patients; flare rates are in :func:`validate_rates`.
    """
    if model not in MODELS:
        raise ValueError(f"model: unknown model {model!r}; valid: {', '.join(MODELS)}")
    st = _settings()
    bank = bank or calibrate(ev, seed=seed, scheduler=scheduler, progress=progress)
    eb = ext_bank if ext_bank is not None else (
        external_bank(bank, ev, seed=seed, scheduler=None if scheduler == "auto" else scheduler) if external else None)
    preds = _predictions(bank, eb, "binom", st)
    if model != "stacked":
        return _frames(preds, st["level"], model)
    alt = {}
    alt_banks = alt_banks or structure_banks(ev, seed=seed, scheduler=scheduler)
    for s, b in alt_banks.items():
        if s == "base":
            continue
        ebs = external_bank(b, ev, seed=seed, scheduler=None if scheduler == "auto" else scheduler) if external else None
        alt[s] = _predictions(b, ebs, "binom", st)
    w = stacking_weights({"base": preds, **alt})
    return _frames(preds, st["level"], "stacked", w, alt)


def structure_banks(ev=None, seed: int = 2024, scheduler: str | None = "auto", progress=None) -> dict:
    """Calibration bank of every structural alternative in ``params/validation.yaml`` (cached)."""
    from .params import structure_bank_settings, structures

    out = {}
    for s in structures():
        o = {**structure_bank_settings(s), "seed": seed}
        out[s] = calibrate(ev, scheduler=scheduler, progress=progress, structure=s, **o)
    return out


def stacking_weights(preds_by_structure: dict) -> dict:
    """Stacking weights (Yao et al. 2018): maximise the sum over held-out loto rows of log sum_s w_s p_s(y_i)."""
    names = list(preds_by_structure)
    P = []
    for s in names:
        P.append([float(sim[1][t.events]) for (t, set_, ho, sim, nul, fit) in preds_by_structure[s]
                  if set_ == "loto" and ho])
    P = np.maximum(np.array(P), 1e-300)  # (S, rows)
    if len(names) == 1:
        return {names[0]: 1.0}

    def neg(a):
        w = np.exp(np.append(a, 0.0))
        w /= w.sum()
        return -np.sum(np.log(w @ P))

    r = optimize.minimize(neg, np.zeros(len(names) - 1), method="Nelder-Mead" if len(names) > 2 else "BFGS")
    w = np.exp(np.append(r.x, 0.0))
    w /= w.sum()
    return dict(zip(names, map(float, w)))


def validate_rates(ev=None, bank: Bank | None = None, model: str = "simulator", seed: int = 2024,
                   scheduler: str | None = "auto") -> pd.DataFrame:
    """Rows whose events can exceed n (flare counts over person-time), scored like :func:`validate`;
    columns :data:`RATE_COLUMNS` (``pred_low/high`` as events per patient-year)."""
    st = _settings()
    bank = bank or calibrate(ev, seed=seed, scheduler=scheduler)
    rows = []
    for t, set_, ho, sim, nul, fit in _predictions(bank, None, "rate", st):
        pr = sim if model == "simulator" else nul
        if pr is None:
            continue
        xs, pmf = pr
        lo, hi = _interval(xs, pmf, st["level"])
        py = t.n * t.exposure_years
        pe = float(pmf[t.events]) if t.events < len(pmf) else 0.0
        rows.append({"trial": t.trial, "arm": t.arm, "regimen": t.regimen, "endpoint": t.label,
                     "observed_events": t.events, "observed_n": t.n, "person_years": py, "pred_low": lo / py,
                     "pred_high": hi / py, "held_out": ho, "log_pred": float(np.log(pe)) if pe > 0 else float("-inf"),
                     "set": set_})
    return pd.DataFrame(rows, columns=RATE_COLUMNS)


# ------------------------------------------------------------------------------------------------ summaries
def _inside(df: pd.DataFrame) -> pd.Series:
    obs = df["observed_events"] / df["observed_n"]
    return (obs >= df["pred_low"] - 1e-12) & (obs <= df["pred_high"] + 1e-12)


def compare(sim: pd.DataFrame, null: pd.DataFrame) -> dict:
    """Simulator vs null on held-out rows that both predict: totals per set, coverage and a per-trial table."""
    key = ["trial", "arm", "endpoint", "set"]
    m = sim.merge(null[key + ["log_pred", "pred_low", "pred_high"]], on=key, suffixes=("", "_null"))
    m = m[m["held_out"]]
    m["inside_sim"] = _inside(m)
    obs = m["observed_events"] / m["observed_n"]
    m["inside_null"] = (obs >= m["pred_low_null"] - 1e-12) & (obs <= m["pred_high_null"] + 1e-12)
    per_trial = (m.groupby(["set", "trial"]).agg(rows=("log_pred", "size"), log_score_sim=("log_pred", "sum"),
                                                  log_score_null=("log_pred_null", "sum"),
                                                  inside_sim=("inside_sim", "sum"), inside_null=("inside_null", "sum"))
                 .reset_index())
    per_trial["better"] = np.where(per_trial.log_score_sim > per_trial.log_score_null, "simulator", "null")
    totals = {}
    for s, d in m.groupby("set"):
        totals[s] = {"rows": int(len(d)), "trials": int(d.trial.nunique()),
                     "log_score_sim": float(d.log_pred.sum()), "log_score_null": float(d.log_pred_null.sum()),
                     "coverage_sim": float(d.inside_sim.mean()), "coverage_null": float(d.inside_null.mean()),
                     "trials_sim_better": int((per_trial[per_trial.set == s].better == "simulator").sum())}
        totals[s]["simulator_beats_null"] = totals[s]["log_score_sim"] > totals[s]["log_score_null"]
    ext = m[m.set == "external"]
    won = ext[ext.log_pred > ext.log_pred_null]
    done = bool(totals.get("loto", {}).get("simulator_beats_null") and totals.get("external", {}).get("simulator_beats_null")
                and len(won) >= 4 and won.trial.nunique() >= 2
                and min(totals.get("loto", {}).get("coverage_sim", 0), totals.get("external", {}).get("coverage_sim", 0)) >= 0.8)
    return {"totals": totals, "per_trial": per_trial, "rows": m, "external_arms_sim_better": int(len(won)),
            "external_trials_sim_better": int(won.trial.nunique()), "beats_null": done}


def validation_summary(df: pd.DataFrame) -> dict:
    """Coverage of held-out rows, total log score and the median interval width relative to the pure
    binomial width (per set)."""
    d = df[df["held_out"]].copy()
    inside = _inside(d)
    width = d["pred_high"] - d["pred_low"]
    bw = np.array([binomial_width(int(e), int(n)) for e, n in zip(d["observed_events"], d["observed_n"])])
    ratio = width.to_numpy() / np.maximum(bw, 1e-9)
    out = {
        "n_arms": int(len(d)),
        "coverage": float(inside.mean()) if len(d) else float("nan"),
        "n_inside": int(inside.sum()),
        "log_score": float(d["log_pred"].sum()) if len(d) else float("nan"),
        "median_width": float(np.median(width)) if len(d) else float("nan"),
        "median_binomial_width": float(np.median(bw)) if len(d) else float("nan"),
        "median_width_ratio": float(np.median(ratio)) if len(d) else float("nan"),
        "outside": d.loc[~inside.to_numpy(), ["trial", "arm", "endpoint"]].apply(" / ".join, axis=1).tolist(),
    }
    for s in ("loto", "external"):
        ds = d[d["set"] == s]
        if len(ds):
            out[s] = {"rows": int(len(ds)), "coverage": float(_inside(ds).mean()), "log_score": float(ds["log_pred"].sum())}
    return out


def validate_loo(ev=None, seed: int = 2024, progress=None, scheduler: str | None = "auto",
                 bank: Bank | None = None, external: bool = False) -> pd.DataFrame:
    """Simulator validation table (:data:`COLUMNS`); loto rows only unless ``external``."""
    return validate(ev, bank=bank, model="simulator", external=external, seed=seed, scheduler=scheduler,
                    progress=progress)


# ------------------------------------------------------------------------------------------------ identification
def prior_posterior_widths(bank: Bank, level: float = 0.95) -> pd.DataFrame:
    """Per free parameter: central ``level`` width of the prior and of the posterior (on the prior's scale:
    log for log-uniform priors), their ratio, and whether the data identify it (ratio below
    ``scoring.not_identified_ratio`` of params/validation.yaml)."""
    from .params import free_parameters

    thr = float(validation_protocol()["scoring"]["not_identified_ratio"])
    w = bank.weights()
    a = (1 - level) / 2
    rows = []
    for j, p in enumerate(free_parameters(bank.structure)):
        lo, hi = p.prior
        tr = np.log if p.prior_scale == "log" else (lambda x: x)
        v = tr(np.maximum(bank.theta[:, j], 1e-300))
        o = np.argsort(v)
        cw = np.cumsum(w[o])
        ql, qh = v[o][np.searchsorted(cw, a)], v[o][min(np.searchsorted(cw, 1 - a), len(v) - 1)]
        pw = (tr(hi) - tr(lo)) * level  # central width of a uniform prior on that scale
        ratio = float((qh - ql) / pw)
        rows.append({"parameter": p.name, "scale": p.prior_scale, "prior_low": lo, "prior_high": hi,
                     "post_low": float(np.exp(ql) if p.prior_scale == "log" else ql),
                     "post_high": float(np.exp(qh) if p.prior_scale == "log" else qh),
                     "width_ratio": ratio, "identified": ratio < thr})
    return pd.DataFrame(rows)


_SCORECARD: dict = {}


def scorecard(ev=None, bank: Bank | None = None) -> dict:
    """Simulator and null tables (loto + external), their comparison and the rate rows, computed once per
    process for the default (cached) calibration: what the report and the figures show."""
    key = "default" if bank is None and ev is None else id(bank)
    if key not in _SCORECARD:
        b = bank or calibrate(ev)
        eb = external_bank(b, ev)
        sim = validate(ev, bank=b, ext_bank=eb)
        null = validate(ev, bank=b, ext_bank=eb, model="null")
        _SCORECARD[key] = {"bank": b, "simulator": sim, "null": null, "compare": compare(sim, null),
                           "rates": validate_rates(ev, bank=b), "identification": prior_posterior_widths(b)}
    return _SCORECARD[key]
