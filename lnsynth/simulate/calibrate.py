"""Calibration of the free parameters to the stored arm-level outcomes, and the predictive machinery.

Method (simulation-based likelihood with importance sampling):

* Free parameters (``calibrate:`` in params/model.yaml): k_bg, k_cni, nih_cyc_units, f_nonimmune,
  flare_h0 and the between-trial SD tau_trial. Priors are uniform on the stated (log-)ranges; sampling is done in probit
  space where the prior is N(0, I).
* Each trial has a random effect u_j ~ N(0, tau^2) on log treatment sensitivity (population, definition
  and co-therapy differences). It is integrated by 3-point Gauss-Hermite quadrature: every trial is
  simulated at u = tau * z_k with the same virtual patients (common random numbers).
* Likelihood of a trial = sum_k w_k prod_outcomes Bin(events | n, p_sim) (Poisson for flare rates), with
  outcome log-likelihoods of one arm down-weighted by 1/(outcomes in that arm) because repeated outcomes on
  the same patients are not independent.
* Stage 1: scrambled Sobol draws from the prior. Stages 2..: draws from a Gaussian fitted to the current
  tempered weighted posterior (likelihood^(stage/stages); covariance inflated x2, then x1.5, x1.2). For
  every trial whose leave-one-out posterior then has an effective sample size below ``loo_min_ess``,
  ``m_loo`` draws from a Gaussian fitted to that leave-one-out posterior are added. All draws are weighted
  with the deterministic-mixture proposal density, so the same bank of simulations gives the full
  posterior and every leave-one-trial-out posterior (by dropping that trial's likelihood) without
  re-simulation.

The bank (simulated outcome probabilities per draw, node and target) is cached as an .npz file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import logsumexp

from .core import run_protocol
from .params import default_params, free_parameters
from .protocols import EndpointSpec, trial_protocols

GH_Z, GH_W = np.polynomial.hermite_e.hermegauss(3)
GH_W = GH_W / GH_W.sum()


@dataclass(frozen=True)
class Target:
    trial: str  # protocol id (= study id)
    arm: str
    endpoint: str
    week: float | None
    kind: str  # binom | rate
    events: int
    n: int
    label: str  # endpoint label for reports (timepoint added when needed)
    exposure_years: float = 1.0
    outcome_id: str = ""
    regimen: str = ""
    regimen_class: str = ""
    family: str = "other"
    set: str = "loto"  # loto (calibration row, predicted leave-one-trial-out) | external
    held_out: bool = True


def _n_events(row) -> int | None:
    if pd.notna(row.get("events")):
        return int(row["events"])
    if pd.notna(row.get("percent")) and pd.notna(row.get("n")):
        return int(round(float(row["percent"]) / 100.0 * float(row["n"])))
    return None


def validation_protocol() -> dict:
    """The frozen validation protocol (``params/validation.yaml``)."""
    from importlib import resources

    import yaml

    return yaml.safe_load(resources.files("lnsynth.simulate").joinpath("params/validation.yaml")
                          .read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _default_evidence():
    from lnsynth.evidence import load_evidence

    return load_evidence()


def _rows(ev, which: str) -> list[Target]:
    """Targets of the validation protocol's ``which`` set (calibration | external), in protocol order."""
    if ev is None:
        ev = _default_evidence()
    vp = validation_protocol()
    fam = vp["families"]
    nho = vp.get("not_held_out", {})
    df = ev.outcomes_frame(superseded=True)  # the frozen protocol names review rows too
    prots = trial_protocols()
    out: list[Target] = []
    for study, ids in vp[which].items():
        if study not in prots:
            raise ValueError(f"params/validation.yaml: {which}: no simulator protocol for study {study!r}")
        prot = prots[study]
        d = df[df["study"] == prot.study]
        for oid in ids:
            rr = d[d["outcome_id"] == oid]
            if len(rr) != 1:
                raise ValueError(f"params/validation.yaml: {which}: study {study!r} has {len(rr)} stored outcomes "
                                 f"with id {oid!r} (expected 1)")
            r = rr.iloc[0]
            ep = r["endpoint"]
            if ep not in prot.endpoints:
                raise ValueError(f"params/validation.yaml: {which}: {study}/{oid}: endpoint {ep!r} not defined in "
                                 f"protocols/{study}.yaml")
            if r["arm"] not in {a.arm for a in prot.arms}:
                raise ValueError(f"params/validation.yaml: {which}: {study}/{oid}: arm {r['arm']!r} not in "
                                 f"protocols/{study}.yaml")
            spec = prot.endpoints[ep]
            if pd.isna(r.get("n")):
                raise ValueError(f"params/validation.yaml: {which}: {study}/{oid}: no stored n")
            n = int(r["n"])
            week = float(r["timepoint_weeks"]) if pd.notna(r.get("timepoint_weeks")) else spec.week
            common = dict(outcome_id=oid, regimen=str(r.get("regimen") or ""),
                          regimen_class=str(r.get("regimen_class") or ""), family=fam.get(spec.kind, "other"),
                          set="loto" if which == "calibration" else "external",
                          held_out=oid not in nho.get(study, {}))
            if spec.kind == "flare_rate":
                if pd.isna(r.get("rate")):
                    raise ValueError(f"params/validation.yaml: {which}: {study}/{oid}: flare rate without a rate")
                st = float(spec.opts.get("window_start", 0))
                yrs = ((week if week is not None else prot.weeks - prot.randomise_week) - st) / 52.0
                ev_count = int(round(float(r["rate"]) / 100.0 * n * yrs))
                out.append(Target(prot.id, r["arm"], ep, week, "rate", ev_count, n, ep, yrs, **common))
                continue
            e = _n_events(r)
            if e is None:
                raise ValueError(f"params/validation.yaml: {which}: {study}/{oid}: neither events nor percent")
            out.append(Target(prot.id, r["arm"], ep, week, "binom", e, n, ep, **common))
    counts: dict = {}
    for t in out:
        counts.setdefault((t.trial, t.arm, t.endpoint), []).append(t.week)
    res = []
    for t in out:
        if len(counts[(t.trial, t.arm, t.endpoint)]) > 1:
            t = replace(t, label=f"{t.endpoint} (week {t.week:g})")
        res.append(t)
    return res


def targets(ev=None) -> list[Target]:
    """Calibration targets: the stored arm-level outcomes listed under ``calibration`` in
    ``params/validation.yaml`` (each is predicted leave-one-trial-out)."""
    return _rows(ev, "calibration")


def external_targets(ev=None) -> list[Target]:
    """External validation targets (``external`` in ``params/validation.yaml``); never used in calibration."""
    return _rows(ev, "external")


def unclassified_outcomes(ev=None) -> list[str]:
    """Stored outcomes of studies with a simulator protocol that the validation protocol neither uses nor
    excludes (``study/outcome_id``); listed by the CLI so that nothing is dropped silently."""
    if ev is None:
        ev = _default_evidence()
    vp = validation_protocol()
    known = {}
    for sec in ("calibration", "external"):
        for st, ids in vp[sec].items():
            known.setdefault(st, set()).update(ids)
    for st, ids in vp.get("excluded", {}).items():
        known.setdefault(st, set()).update(ids)
    df = ev.outcomes_frame(superseded=True)
    studies = {p.study for p in trial_protocols().values()}
    d = df[df["study"].isin(studies)]
    return [f"{r.study}/{r.outcome_id}" for r in d.itertuples() if r.outcome_id not in known.get(r.study, set())]


# ------------------------------------------------------------------------------------------ parameter maps
def names(structure: str | None = None) -> list[str]:
    return [p.name for p in free_parameters(structure)]


def from_probit(x: np.ndarray, structure: str | None = None) -> np.ndarray:
    """Probit-space draws (..., d) -> parameter values."""
    u = stats.norm.cdf(x)
    out = np.empty_like(u)
    for j, p in enumerate(free_parameters(structure)):
        lo, hi = p.prior
        if p.prior_scale == "log":
            out[..., j] = np.exp(np.log(lo) + u[..., j] * (np.log(hi) - np.log(lo)))
        else:
            out[..., j] = lo + u[..., j] * (hi - lo)
    return out


# ------------------------------------------------------------------------------------------ simulation bank
def _simulate_draw(args) -> np.ndarray:
    """Simulated value for every target at every GH node for one parameter draw: (nodes, targets)."""
    theta, tg, n_sim, seed = args
    p = {**default_params(), **theta}
    tau = p["tau_trial"]
    by_trial: dict[str, list[int]] = {}
    for i, t in enumerate(tg):
        by_trial.setdefault(t.trial, []).append(i)
    out = np.full((len(GH_Z), len(tg)), np.nan)
    from .protocols import load_protocols

    prots = load_protocols()
    for trial, idx in by_trial.items():
        prot = prots[trial]
        # endpoints per (endpoint, week) -> temporary specs
        for k, z in enumerate(GH_Z):
            specs = {}
            for i in idx:
                t = tg[i]
                base = prot.endpoints[t.endpoint]
                specs[t.label] = EndpointSpec(t.label, base.kind, t.week, base.opts)
            prot_k = _with_endpoints(prot, specs)
            need = max(int(round(prot.randomise_week + (tg[i].week if tg[i].week is not None else 0))) for i in idx)
            if need > prot_k.weeks:  # e.g. a 10-year follow-up of a trial protocol written for 5 years
                prot_k = replace(prot_k, weeks=need)
            r = run_protocol(prot_k, params=p, n=n_sim, seed=seed + _trial_seed(trial),
                             trial_shift=tau * z)
            for i in idx:
                t = tg[i]
                out[k, i] = r[(t.arm, t.label)][0]
    return out


def _with_endpoints(prot, specs):
    return replace(prot, endpoints=specs, use_endpoints=None)


def _trial_seed(trial: str) -> int:
    return int(hashlib.sha256(trial.encode()).hexdigest()[:6], 16)


def loglik_matrix(sims: np.ndarray, tg: list[Target], n_sim: int) -> np.ndarray:
    """Per-draw, per-node, per-target weighted log-likelihood: (draws, nodes, targets)."""
    arm_counts: dict = {}
    for t in tg:
        arm_counts[(t.trial, t.arm)] = arm_counts.get((t.trial, t.arm), 0) + 1
    ll = np.zeros_like(sims)
    for i, t in enumerate(tg):
        w = 1.0 / arm_counts[(t.trial, t.arm)]
        v = sims[..., i]
        if t.kind == "binom":
            pr = (v * n_sim + 0.5) / (n_sim + 1.0)
            ll[..., i] = w * stats.binom.logpmf(t.events, t.n, pr)
        else:
            mu = np.maximum(v * t.n, 1e-3)
            ll[..., i] = w * stats.poisson.logpmf(t.events, mu)
    return ll


def trial_loglik(sims: np.ndarray, tg: list[Target], n_sim: int) -> tuple[np.ndarray, list[str]]:
    """Marginal (over the trial random effect) log-likelihood per draw and trial: (draws, trials)."""
    ll = loglik_matrix(sims, tg, n_sim)
    trials = sorted({t.trial for t in tg})
    out = np.zeros((sims.shape[0], len(trials)))
    for j, tr in enumerate(trials):
        idx = [i for i, t in enumerate(tg) if t.trial == tr]
        out[:, j] = logsumexp(ll[:, :, idx].sum(-1) + np.log(GH_W)[None, :], axis=1)
    return out, trials


@dataclass
class Bank:
    x: np.ndarray  # probit-space draws (M, d)
    theta: np.ndarray  # parameter values (M, d)
    log_q: np.ndarray  # log proposal density (deterministic mixture), probit space
    sims: np.ndarray  # (M, nodes, targets)
    targets: list[Target]
    n_sim: int
    names: list[str]
    structure: str = "base"

    @property
    def log_prior(self) -> np.ndarray:
        return stats.norm.logpdf(self.x).sum(1)

    def weights(self, exclude: str | None = None, prior: bool = False) -> np.ndarray:
        """Importance weights of the draws: posterior (optionally without trial ``exclude``), or the prior
        itself (``prior=True``: likelihood dropped) for prior-vs-posterior comparisons."""
        if prior:
            lw = self.log_prior - self.log_q
            w = np.exp(lw - lw.max())
            return w / w.sum()
        tl, trials = trial_loglik(self.sims, self.targets, self.n_sim)
        keep = [j for j, t in enumerate(trials) if t != exclude]
        lw = tl[:, keep].sum(1) + self.log_prior - self.log_q
        lw = np.where(np.isfinite(lw), lw, -np.inf)
        w = np.exp(lw - lw.max())
        return w / w.sum()

    def ess(self, exclude: str | None = None) -> float:
        w = self.weights(exclude)
        return float(1.0 / np.sum(w**2))

    def posterior_frame(self, exclude: str | None = None) -> pd.DataFrame:
        w = self.weights(exclude)
        rows = []
        for j, nm in enumerate(self.names):
            v = self.theta[:, j]
            o = np.argsort(v)
            cw = np.cumsum(w[o])
            q = lambda a: float(v[o][np.searchsorted(cw, a)])  # noqa: E731
            rows.append({"parameter": nm, "mean": float(np.sum(w * v)), "q2.5": q(0.025), "median": q(0.5),
                         "q97.5": q(0.975)})
        return pd.DataFrame(rows)

    def draws(self, k: int = 200, exclude: str | None = None, seed: int = 0, prior: bool = False) -> list[dict]:
        """Resampled posterior (or, with ``prior``, prior) parameter sets (dicts of the free parameters)."""
        w = self.weights(exclude, prior=prior)
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(w), size=k, replace=True, p=w)
        return [dict(zip(self.names, map(float, self.theta[i]))) for i in idx]


def _cache_dir() -> Path:
    d = Path(os.environ.get("LNSYNTH_CACHE", Path.home() / ".cache" / "lnsynth"))
    d.mkdir(parents=True, exist_ok=True)
    return d


_PROV_KEYS = {"quote", "source", "assumption", "why", "note", "range", "loc", "source_address", "label", "leak"}


def _semantic(obj):
    """Drop provenance text so that documenting a value does not invalidate the cache."""
    if isinstance(obj, dict):
        return {k: _semantic(v) for k, v in sorted(obj.items()) if k not in _PROV_KEYS}
    if isinstance(obj, list):
        return [_semantic(v) for v in obj]
    return obj


def _bank_key(tg, n_sim, m1, m2, seed) -> str:
    from importlib import resources

    import yaml

    from .params import load_param_table

    h = hashlib.sha256()
    h.update(json.dumps({k: [v.value, v.prior, v.prior_scale] for k, v in sorted(load_param_table().items())},
                        default=str).encode())
    root = resources.files("lnsynth.simulate").joinpath("protocols")
    for trial in sorted({t.trial for t in tg}):
        d = yaml.safe_load(root.joinpath(f"{trial}.yaml").read_text(encoding="utf-8"))
        h.update(json.dumps(_semantic(d), sort_keys=True, default=str).encode())
    for mod in ("engine.py", "endpoints.py", "protocols.py", "core.py", "immune.py", "kidney.py", "pk.py", "pd.py"):
        h.update(resources.files("lnsynth.simulate").joinpath(mod).read_bytes())
    h.update(json.dumps([t.__dict__ for t in tg], sort_keys=True, default=str).encode())
    h.update(json.dumps([n_sim, m1, m2, seed]).encode())
    return h.hexdigest()[:16]


def n_calibration_draws(m1: int = 128, m2: int = 160, stages: int = 4) -> int:
    """Simulation tasks ``calibrate`` runs before leave-one-out refinement when the bank is not cached (for
    progress bars; refinement may add up to ``m_loo`` tasks per poorly covered trial)."""
    return m1 + (stages - 1) * m2


def _mixture_logq(x, comps) -> np.ndarray:
    """Deterministic-mixture proposal density of all draws (probit space)."""
    tot = sum(c[3] for c in comps)
    parts = []
    for kind, mu, cov, m in comps:
        lq = stats.norm.logpdf(x).sum(1) if kind == "prior" else stats.multivariate_normal(mu, cov).logpdf(x)
        parts.append(np.log(m / tot) + lq)
    return logsumexp(np.stack(parts), axis=0)


def cached_bank(ev=None, structure: str = "base", **kw) -> "Bank | None":
    """The calibration bank of ``structure`` if it is already cached (default settings), else None (never
    builds: for surfaces that must not start a minutes-long calibration)."""
    from .params import structure_bank_settings

    tg = targets(ev)
    o = {**dict(n_sim=300, m1=128, m2=160, seed=2024, stages=4, loo_min_ess=20.0, m_loo=64),
         **structure_bank_settings(structure), **kw}
    key = _bank_key(tg, o["n_sim"], o["m1"], o["m2"], o["seed"]) + f"-s{o['stages']}-l{o['loo_min_ess']:g}x{o['m_loo']}"
    if structure != "base":
        key += "-" + structure
    path = _cache_dir() / f"bank-{key}.npz"
    if not path.exists():
        return None
    return calibrate(ev, structure=structure, **{k: o[k] for k in o})


def calibrate(ev=None, n_sim: int = 300, m1: int = 128, m2: int = 160, seed: int = 2024,
              scheduler: str | None = "auto", progress=None, cache: bool = True, stages: int = 4,
              loo_min_ess: float = 20.0, m_loo: int = 64, structure: str = "base") -> Bank:
    """Build (or load from cache) the simulation bank and return it (see module docstring).

    ``scheduler``: None (serial), "local" (2-worker ``distributed.LocalCluster``), a scheduler address, or
    "auto" (LocalCluster when a full-size bank has to be built, serial for small ones). The bank is cached
    in ``$LNSYNTH_CACHE`` (default ``~/.cache/lnsynth``) under a key of the parameter/protocol files, the
    simulator source and the targets; building it takes ~4-7 minutes on 2 cores. ``structure``: a structural
    alternative of ``params/validation.yaml`` (its own bank).
    """
    tg = targets(ev)
    nm = names(structure)
    d = len(nm)
    key = _bank_key(tg, n_sim, m1, m2, seed) + f"-s{stages}-l{loo_min_ess:g}x{m_loo}"
    if structure != "base":
        key += "-" + structure
    path = _cache_dir() / f"bank-{key}.npz"
    if cache and path.exists():
        z = np.load(path)
        return Bank(z["x"], z["theta"], z["log_q"], z["sims"], tg, n_sim, nm, structure)
    from .sweep import map_tasks

    if scheduler == "auto":
        scheduler = "local" if n_sim * (m1 + (stages - 1) * m2) > 20_000 else None
    sob = stats.qmc.Sobol(d, scramble=True, seed=seed)
    u = np.clip(sob.random(m1), 1e-6, 1 - 1e-6)
    x1 = stats.norm.ppf(u)

    def run(xs):
        th = from_probit(xs, structure)
        items = [(dict(zip(nm, map(float, row))), tg, n_sim, seed) for row in th]
        return np.stack(map_tasks(_simulate_draw, items, scheduler=scheduler, progress=progress))

    xs, ss, comps = [x1], [run(x1)], [("prior", None, None, m1)]
    rng = np.random.default_rng(seed + 1)
    for stage in range(1, stages):
        x = np.vstack(xs)
        sims = np.concatenate(ss)
        log_q = _mixture_logq(x, comps)
        tl, _ = trial_loglik(sims, tg, n_sim)
        beta = stage / stages  # tempered likelihood: robust proposals from few effective draws
        lw = beta * tl.sum(1) + stats.norm.logpdf(x).sum(1) - log_q
        w = np.exp(lw - lw.max())
        w /= w.sum()
        mu = (w[:, None] * x).sum(0)
        cov = np.cov(x.T, aweights=w + 1e-12) + 1e-3 * np.eye(d)
        infl = 2.0 if stage == 1 else 1.5 if stage == 2 else 1.2
        xn = rng.multivariate_normal(mu, infl * cov, size=m2)
        xs.append(xn)
        ss.append(run(xn))
        comps.append(("gauss", mu, infl * cov, m2))
    # Leave-one-trial-out refinement: where dropping a trial leaves few effective draws, add draws from a
    # Gaussian fitted to that leave-one-out posterior (weights stay exact under the full mixture).
    trials = sorted({t.trial for t in tg})
    for tr in trials:
        x = np.vstack(xs)
        sims = np.concatenate(ss)
        log_q = _mixture_logq(x, comps)
        tl, names_t = trial_loglik(sims, tg, n_sim)
        keep = [j for j, t in enumerate(names_t) if t != tr]
        lw = tl[:, keep].sum(1) + stats.norm.logpdf(x).sum(1) - log_q
        w = np.exp(lw - lw.max())
        w /= w.sum()
        if 1.0 / np.sum(w**2) >= loo_min_ess:
            continue
        mu = (w[:, None] * x).sum(0)
        cov = 1.5 * (np.cov(x.T, aweights=w + 1e-12) + 1e-3 * np.eye(d))
        xn = rng.multivariate_normal(mu, cov, size=m_loo)
        xs.append(xn)
        ss.append(run(xn))
        comps.append(("gauss", mu, cov, m_loo))
    x = np.vstack(xs)
    sims = np.concatenate(ss)
    log_q = _mixture_logq(x, comps)
    theta = from_probit(x, structure)
    bank = Bank(x, theta, log_q, sims, tg, n_sim, nm, structure)
    if cache:
        np.savez_compressed(path, x=x, theta=theta, log_q=log_q, sims=sims)
    return bank


# ------------------------------------------------------------------------------------------ prediction
def predictive_interval(bank: Bank, i: int, exclude: str | None, level: float = 0.95) -> tuple[float, float]:
    """Predictive interval of the observed proportion (events / n) for target ``i``: mixture over
    posterior draws (weights without ``exclude``), trial random effect nodes and binomial/Poisson noise."""
    t = bank.targets[i]
    w = bank.weights(exclude)
    keep = w > 1e-6 * w.max()
    w = w[keep] / w[keep].sum()
    v = bank.sims[keep][:, :, i]  # (m, nodes)
    mix_w = (w[:, None] * GH_W[None, :]).ravel()
    v = v.ravel()
    ok = np.isfinite(v)
    mix_w, v = mix_w[ok] / mix_w[ok].sum(), v[ok]
    if t.kind == "binom":
        pr = (v * bank.n_sim + 0.5) / (bank.n_sim + 1.0)
        xs = np.arange(t.n + 1)
        pmf = (mix_w[:, None] * stats.binom.pmf(xs[None, :], t.n, pr[:, None])).sum(0)
    else:
        mu = np.maximum(v * t.n, 1e-3)
        hi = int(stats.poisson.ppf(0.9999, mu.max())) + 1
        xs = np.arange(hi + 1)
        pmf = (mix_w[:, None] * stats.poisson.pmf(xs[None, :], mu[:, None])).sum(0)
    cdf = np.cumsum(pmf) / pmf.sum()
    a = (1 - level) / 2
    lo = xs[np.searchsorted(cdf, a)]
    hi = xs[min(np.searchsorted(cdf, 1 - a), len(xs) - 1)]
    return lo / t.n, hi / t.n


def binomial_width(events: int, n: int, level: float = 0.95) -> float:
    """Width of the central interval of Binomial(n, events/n)/n: the pure sampling-noise width."""
    p = min(max(events / n, 0.5 / n), 1 - 0.5 / n)
    a = (1 - level) / 2
    return float((stats.binom.ppf(1 - a, n, p) - stats.binom.ppf(a, n, p)) / n)
