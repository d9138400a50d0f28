r"""Bayesian network meta-analysis of binary outcomes with an exact binomial likelihood.

The model is the one of NICE DSU Technical Support Document 2 (Dias, Welton, Sutton &
Ades 2011, updated 2016; Dias et al. 2013 *Med Decis Making*), fitted by the No-U-Turn
sampler of NumPyro (install the ``bayes`` extra: ``pip install lnsynth[bayes]``; NumPyro
and JAX are imported only when a model is fitted, so ``lnsynth`` imports without them).

For arm *k* of study *i* with ``r_ik`` events of ``n_ik`` and treatment ``t_ik``,

.. math::
    r_{ik} \sim \mathrm{Bin}(n_{ik}, p_{ik}),\qquad
    \operatorname{logit} p_{ik} = \mu_i + \delta_{ik},\qquad \delta_{i1} = 0,

with the study's first arm (the arm of its lowest-ordered treatment; the network
reference when present) as its baseline.  Fixed effects: ``delta_ik = d_{t_ik} -
d_{t_i1}``.  Random effects: ``delta_ik ~ N(d_{t_ik} - d_{t_i1}, tau^2)`` with
covariance ``tau^2 / 2`` between the arms of a multi-arm study (consistency with a
common heterogeneity; TSD2 section 2.3.1 "multi-arm trials").  The multivariate
normal is sampled non-centred (``delta_i = d-contrast + tau L z_i`` with ``L`` the
Cholesky factor of the unit-variance 1/2-correlation matrix), which is the same
distribution as TSD2's conditional univariate form.  Priors as TSD2: ``mu_i, d_k ~
N(0, 100^2)`` and ``tau ~ Uniform(0, 5)`` (``prior_tau_max``), ``d_ref = 0``.

Results: posterior summaries of every relative effect (log odds ratios), of ``tau``,
rank probabilities (from the joint posterior of ``d``), SUCRA, the posterior mean
residual deviance with pD and DIC as TSD2 defines them (pD = Dbar - D(posterior mean
of the fitted values)), and ArviZ diagnostics: R-hat, bulk and tail effective sample
sizes, Monte Carlo standard errors and the number of divergent transitions.  A fit is
reproducible: the same data, settings and ``seed`` give identical draws on the same
platform.  Fitting switches JAX to 64-bit floats (``jax_enable_x64``) for the whole process.
Start-up is dominated by XLA compilation (tens of seconds on a loaded CPU); set the environment
variable ``LNSYNTH_JAX_CACHE_DIR`` to a directory to keep compiled code between processes.

Published posteriors reproduced (within Monte Carlo error): NICE DSU TSD4 smoking cessation
(random effects) and thrombolytics (fixed effect) -- tests/test_published_tsd4_*.py.

References
----------
Dias S, Welton NJ, Sutton AJ, Ades AE (2011, last updated 2016). NICE DSU Technical
Support Document 2: A generalised linear modelling framework for pairwise and network
meta-analysis of randomised controlled trials. Available from http://www.nicedsu.org.uk
Dias S, Sutton AJ, Ades AE, Welton NJ (2013). Evidence synthesis for decision making 2:
a generalized linear modeling framework for pairwise and network meta-analysis of
randomized controlled trials. *Med Decis Making* 33:607-617.
Spiegelhalter DJ, Best NG, Carlin BP, van der Linde A (2002). Bayesian measures of model
complexity and fit. *J R Stat Soc B* 64:583-639 (DIC, pD).
Hoffman MD, Gelman A (2014). The No-U-Turn sampler. *J Mach Learn Res* 15:1593-1623.
Phan D, Pradhan N, Jankowiak M (2019). Composable effects for flexible and accelerated
probabilistic programming in NumPyro. arXiv:1912.11554.
Vehtari A, Gelman A, Simpson D, Carpenter B, Buerkner PC (2021). Rank-normalization,
folding, and localization: an improved R-hat for assessing convergence of MCMC.
*Bayesian Analysis* 16:667-718 (R-hat, bulk/tail ESS as ArviZ computes them).
Salanti G, Ades AE, Ioannidis JPA (2011). Graphical methods and numerical summaries for
presenting results from multiple-treatment meta-analysis. *J Clin Epidemiol* 64:163-171
(rank probabilities, SUCRA).

Examples
--------
>>> import pandas as pd
>>> from lnsynth.network.bayes import bayesian_nma
>>> arms = pd.DataFrame({"study": ["s1", "s1", "s2", "s2", "s3", "s3"],
...                      "trt": ["A", "B", "A", "C", "B", "C"],
...                      "r": [10, 15, 8, 14, 12, 11], "n": [100, 100, 90, 95, 80, 85]})
>>> res = bayesian_nma(arms, study="study", treatment="trt", events="r", n="n",
...                    effects="fixed", chains=2, warmup=500, samples=500, seed=1)  # doctest: +SKIP
>>> res.relative_effects()  # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..stats import normalize_level

__all__ = ["bayesian_nma", "BayesNMAResult", "BayesNetwork", "prepare_arms", "EFFECTS"]

EFFECTS = ("fixed", "random")


def _f(v) -> float:
    """ArviZ returns 0-d or 1-element arrays; a Python float."""
    return float(np.asarray(v).reshape(-1)[0])


def _summarise(x: np.ndarray, level: float) -> dict[str, float]:
    """Posterior summary of draws x (chains, draws) with Monte Carlo SEs and diagnostics (ArviZ)."""
    import arviz as az

    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    flat = x.reshape(-1)
    return dict(mean=float(flat.mean()), sd=float(flat.std(ddof=1)), median=float(np.median(flat)),
                lower=float(np.quantile(flat, lo_q)), upper=float(np.quantile(flat, hi_q)),
                mcse_mean=_f(az.mcse(x, method="mean")), mcse_sd=_mcse_sd(x),
                mcse_median=_f(az.mcse(x, method="median")),
                mcse_lower=_f(az.mcse(x, method="quantile", prob=lo_q)),
                mcse_upper=_f(az.mcse(x, method="quantile", prob=hi_q)),
                ess_bulk=_f(az.ess(x, method="bulk")), ess_tail=_f(az.ess(x, method="tail")),
                rhat=_f(az.rhat(x)))


def _mcse_sd(x: np.ndarray) -> float:
    """Monte Carlo SE of the posterior SD (draws (chains, draws)), as the ``posterior`` R package and
    ArviZ define it: ESS = min(ESS of x, ESS of x^2) and sd * sqrt(e (1 - 1/ESS)^(ESS - 1) - 1).
    (ArviZ 0.23's own ``mcse(method="sd")`` fails on plain arrays with NumPy 2.4.)"""
    import arviz as az

    ess = min(_f(az.ess(x, method="mean")), _f(az.ess(x ** 2, method="mean")))
    sd = float(x.reshape(-1).std(ddof=1))
    return sd * math.sqrt(max(0.0, math.e * (1 - 1 / ess) ** (ess - 1) - 1))


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BayesNetwork:
    """Arm-level binary network in padded arrays (S studies x A_max arms)."""

    studies: tuple
    treatments: tuple
    reference: str
    trt: np.ndarray  # (S, A) treatment index, baseline first; padded with 0
    r: np.ndarray  # (S, A) events (0 where padded)
    n: np.ndarray  # (S, A) arm sizes (0 where padded)
    mask: np.ndarray  # (S, A) bool, True for real arms
    narms: np.ndarray  # (S,)


def prepare_arms(df, *, study: str, treatment: str, events: str, n: str, reference: str | None = None,
                 treatments: Sequence[str] | None = None) -> BayesNetwork:
    """Validate one-row-per-arm binary data and build :class:`BayesNetwork`.

    Errors name the row and field.  Treatments are ordered as ``treatments`` (default:
    sorted labels, the network reference first); each study's baseline is its
    lowest-ordered treatment.
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ValueError("data must be a pandas DataFrame with one row per study arm")
    for role, col in (("study", study), ("treatment", treatment), ("events", events), ("n", n)):
        if col is None or col not in df.columns:
            raise ValueError(f"column {col!r} (given as {role}=) not found in data; columns: {list(df.columns)}")
    if len(df) == 0:
        raise ValueError("no data rows")
    rows = df.reset_index(drop=True)
    for col in (study, treatment):
        bad = rows[col].isna()
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            raise ValueError(f"row {i}: field {col!r} is missing")
    for col in (events, n):
        vals = pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(vals) | (vals < 0) | (vals != np.round(vals))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"row {i} (study {rows[study].iloc[i]!r}): field {col!r} must be a non-negative whole "
                             f"number, got {rows[col].iloc[i]!r}")
    ev = rows[events].to_numpy(dtype=float)
    nn = rows[n].to_numpy(dtype=float)
    bad = nn <= 0
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"row {i} (study {rows[study].iloc[i]!r}): field {n!r} must be > 0")
    bad = ev > nn
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"row {i} (study {rows[study].iloc[i]!r}): {events!r} ({ev[i]:g}) exceeds {n!r} ({nn[i]:g})")
    tlab = rows[treatment].astype(str).to_numpy()
    slab = rows[study].astype(str).to_numpy()
    present = sorted(set(tlab))
    if treatments is None:
        order = list(present)
        if reference is not None:
            reference = str(reference)
            if reference not in order:
                raise ValueError(f"unknown reference treatment {reference!r}; treatments are {order}")
            order.remove(reference)
            order.insert(0, reference)
    else:
        order = [str(t) for t in treatments]
        missing = sorted(set(present) - set(order))
        if missing:
            raise ValueError(f"treatments {missing} occur in the data but not in treatments=")
        order = [t for t in order if t in set(present)]
        if reference is not None and str(reference) != order[0]:
            order.remove(str(reference))
            order.insert(0, str(reference))
    reference = order[0]
    index = {t: j for j, t in enumerate(order)}
    studies = list(dict.fromkeys(slab))
    groups: dict[str, list[int]] = {s: [] for s in studies}
    for i, s in enumerate(slab):
        groups[s].append(i)
    amax = max(len(v) for v in groups.values())
    S = len(studies)
    trt = np.zeros((S, amax), int)
    r = np.zeros((S, amax))
    nmat = np.zeros((S, amax))
    mask = np.zeros((S, amax), bool)
    for si, s in enumerate(studies):
        idx = groups[s]
        ts = [tlab[i] for i in idx]
        if len(idx) < 2:
            raise ValueError(f"study {s!r} (row {idx[0]}) has a single arm; every study needs at least two arms")
        dup = sorted({t for t in ts if ts.count(t) > 1})
        if dup:
            raise ValueError(f"study {s!r} has more than one arm with treatment {dup[0]!r} (rows "
                             f"{[i for i in idx if tlab[i] == dup[0]]}); combine them or relabel")
        idx = sorted(idx, key=lambda i: index[tlab[i]])
        for a, i in enumerate(idx):
            trt[si, a] = index[tlab[i]]
            r[si, a] = ev[i]
            nmat[si, a] = nn[i]
            mask[si, a] = True
    _check_connected(trt, mask, order)
    return BayesNetwork(tuple(studies), tuple(order), reference, trt, r, nmat, mask, mask.sum(1))


def _check_connected(trt, mask, order):
    parent = list(range(len(order)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for row, m in zip(trt, mask):
        ts = row[m]
        for t in ts[1:]:
            parent[find(int(t))] = find(int(ts[0]))
    comps: dict[int, list[str]] = {}
    for j, t in enumerate(order):
        comps.setdefault(find(j), []).append(t)
    if len(comps) > 1:
        parts = "; ".join(", ".join(c) for c in comps.values())
        raise ValueError(f"the network is disconnected: {parts}")


# ---------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------
def _potential_fn(effects: str, prior_sd: float, prior_tau_max: float, net: BayesNetwork,
                  groups: list[tuple[int, np.ndarray]]):
    """Negative log posterior (up to a constant) of the TSD2 model in unconstrained parameters.

    Parameters: ``mu`` (S,), ``d_free`` (T-1,), and for random effects ``tau_u`` (tau = tau_max *
    logistic(tau_u), with its log-Jacobian) and, per multi-arm size a, ``delta_{a}arm`` (S_a, a-1), the
    centred trial-specific effects with density MVN(contrast_i, tau^2 (I + J)/2).  Written directly in JAX
    (rather than as a NumPyro model) so that NUTS needs one compilation, not one per primitive at start-up.
    """
    import jax.numpy as jnp
    from jax.nn import log_sigmoid, softplus

    trt = jnp.asarray(net.trt)
    r = jnp.asarray(net.r)
    n = jnp.asarray(net.n)
    mask = jnp.asarray(net.mask)
    prec = {a: jnp.asarray(np.linalg.inv(0.5 * (np.ones((a - 1, a - 1)) + np.eye(a - 1)))) for a, _ in groups}
    logdet = {a: float(np.linalg.slogdet(0.5 * (np.ones((a - 1, a - 1)) + np.eye(a - 1)))[1]) for a, _ in groups}
    gidx = [(a, jnp.asarray(idx)) for a, idx in groups]
    S, A = net.trt.shape
    inv_var = 1.0 / (prior_sd * prior_sd)

    def eta_of(params):
        d = jnp.concatenate([jnp.zeros(1), params["d_free"]])
        contrast = d[trt[:, 1:]] - d[trt[:, :1]]
        if effects == "random":
            delta = jnp.zeros((S, A - 1))
            for a, idx in gidx:
                delta = delta.at[idx, : a - 1].set(params[f"delta_{a}arm"])
        else:
            delta = contrast
        return params["mu"][:, None] + jnp.concatenate([jnp.zeros((S, 1)), delta], axis=1), contrast

    def potential(params):
        eta, contrast = eta_of(params)
        lp = -0.5 * inv_var * (jnp.sum(params["mu"] ** 2) + jnp.sum(params["d_free"] ** 2))
        if effects == "random":
            u = params["tau_u"]
            tau = prior_tau_max * jnp.exp(log_sigmoid(u))
            lp = lp + log_sigmoid(u) + log_sigmoid(-u)  # log-Jacobian of the logistic map (uniform prior)
            for a, idx in gidx:
                dev = params[f"delta_{a}arm"] - contrast[idx, : a - 1]
                quad = jnp.einsum("si,ij,sj->", dev, prec[a], dev)
                lp = lp - 0.5 * quad / tau ** 2 - idx.shape[0] * ((a - 1) * jnp.log(tau) + 0.5 * logdet[a])
        ll = jnp.where(mask, r * eta - n * softplus(eta), 0.0)
        return -(lp + jnp.sum(ll))

    return potential, eta_of


def _init_params(effects, net, groups, chains, rng, prior_tau_max):
    """Over-dispersed starting values per chain (empirical logits and log odds ratios plus jitter)."""
    S, A = net.trt.shape
    T = len(net.treatments)
    with np.errstate(divide="ignore", invalid="ignore"):
        logit = np.log((net.r + 0.5) / (net.n - net.r + 0.5))
    mu0 = logit[:, 0]
    out = {"mu": np.stack([mu0 + rng.uniform(-0.5, 0.5, S) for _ in range(chains)]),
           "d_free": rng.uniform(-0.5, 0.5, (chains, T - 1))}
    if effects == "random":
        tau0 = rng.uniform(0.2, 1.0, chains)
        out["tau_u"] = np.log(tau0 / prior_tau_max) - np.log1p(-tau0 / prior_tau_max)
        emp = logit[:, 1:] - logit[:, :1]
        for a, idx in groups:
            out[f"delta_{a}arm"] = np.stack([emp[idx, : a - 1] + rng.uniform(-0.3, 0.3, (idx.size, a - 1))
                                             for _ in range(chains)])
    return out


# ---------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BayesNMAResult:
    """Posterior of a Bayesian binomial-logit NMA (see :func:`bayesian_nma`).

    ``d`` holds the posterior draws of the log odds ratios against ``reference``,
    shape (chains, draws, T) with ``d[..., 0] = 0``; ``tau`` (chains, draws) for
    random effects, else None.  ``diagnostics`` is a DataFrame (R-hat, ESS bulk/tail,
    MCSE) per parameter; ``divergences`` the number of divergent transitions.
    """

    treatments: tuple
    reference: str
    effects: str
    d: np.ndarray
    tau: np.ndarray | None
    diagnostics: Any
    divergences: int
    resdev: float
    pd: float
    dic: float
    n_datapoints: int
    chains: int
    warmup: int
    samples: int
    seed: int
    level: float = 0.95
    settings: dict = field(default_factory=dict)
    idata: Any = None

    # --- summaries ---------------------------------------------------------
    def _draws(self, a: str, b: str) -> np.ndarray:
        ia, ib = self.treatments.index(a), self.treatments.index(b)
        return (self.d[..., ib] - self.d[..., ia]).reshape(-1)

    def relative_effects(self, all_contrasts: bool = False, level: float | None = None):
        """Posterior summaries of log odds ratios ``d[trt vs base]`` (trt minus base).

        Default: every treatment against the reference; ``all_contrasts=True``: all pairs
        ``(base, trt)`` with base before trt in :attr:`treatments`.  Columns: base, trt,
        mean, sd, median, lower, upper (equal-tailed credible interval), mcse_mean,
        ess_bulk, ess_tail, rhat.
        """
        import arviz as az
        import pandas as pd

        level = normalize_level(level, self.level)
        lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
        T = self.treatments
        pairs = ([(T[0], t) for t in T[1:]] if not all_contrasts
                 else [(T[i], T[j]) for i in range(len(T)) for j in range(i + 1, len(T))])
        rows = []
        for base, trt in pairs:
            ia, ib = T.index(base), T.index(trt)
            x = self.d[..., ib] - self.d[..., ia]  # (chains, draws)
            flat = x.reshape(-1)
            rows.append(dict(base=base, trt=trt, mean=float(flat.mean()), sd=float(flat.std(ddof=1)),
                             median=float(np.median(flat)), lower=float(np.quantile(flat, lo_q)),
                             upper=float(np.quantile(flat, hi_q)),
                             mcse_mean=_f(az.mcse(x, method="mean")),
                             mcse_sd=_mcse_sd(x),
                             mcse_lower=_f(az.mcse(x, method="quantile", prob=lo_q)),
                             mcse_upper=_f(az.mcse(x, method="quantile", prob=hi_q)),
                             mcse_median=_f(az.mcse(x, method="median")),
                             ess_bulk=_f(az.ess(x, method="bulk")), ess_tail=_f(az.ess(x, method="tail")),
                             rhat=_f(az.rhat(x))))
        return pd.DataFrame(rows)

    def contrast(self, base: str, trt: str, level: float | None = None) -> dict[str, float]:
        """Posterior summary of the log odds ratio of ``trt`` versus ``base`` (any pair, either order)."""
        for t in (base, trt):
            if t not in self.treatments:
                raise ValueError(f"unknown treatment {t!r}; treatments are {list(self.treatments)}")
        ia, ib = self.treatments.index(base), self.treatments.index(trt)
        return _summarise(self.d[..., ib] - self.d[..., ia], normalize_level(level, self.level))

    def tau_summary(self, level: float | None = None) -> dict[str, float]:
        """Posterior mean, sd, median and equal-tailed interval of tau, with MCSEs (random effects only)."""
        if self.tau is None:
            raise ValueError("tau is only estimated by the random-effects model (effects='random')")
        return _summarise(self.tau, normalize_level(level, self.level))

    def rank_probabilities(self, larger_is_better: bool = True):
        """P(treatment has rank j) from the joint posterior; rank 1 = best.  DataFrame (T x T)."""
        import pandas as pd

        d = self.d.reshape(-1, len(self.treatments))
        score = d if larger_is_better else -d
        # rank 1 for the largest score; ties (measure zero) broken by order
        ranks = (-score).argsort(axis=1).argsort(axis=1) + 1
        T = len(self.treatments)
        probs = np.stack([(ranks == j).mean(0) for j in range(1, T + 1)], axis=1)
        return pd.DataFrame(probs, index=list(self.treatments), columns=[f"rank_{j}" for j in range(1, T + 1)])

    def sucra(self, larger_is_better: bool = True) -> dict[str, float]:
        """Surface under the cumulative ranking curve (Salanti et al. 2011), per treatment."""
        p = self.rank_probabilities(larger_is_better).to_numpy()
        T = p.shape[1]
        cum = np.cumsum(p, axis=1)[:, :-1]
        vals = cum.sum(1) / (T - 1) if T > 1 else np.ones(p.shape[0])
        return {t: float(v) for t, v in zip(self.treatments, vals)}

    def conf_int(self, level: float | None = None) -> dict[str, tuple[float, float]]:
        """Equal-tailed credible intervals of every effect against the reference: {trt: (lower, upper)}.

        ``level`` (0.95 or 95) defaults to the fit's level."""
        level = normalize_level(level, self.level)
        df = self.relative_effects(level=level)
        return {row.trt: (row.lower, row.upper) for row in df.itertuples()}

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python summary: effects vs reference, tau, fit, diagnostics."""
        re = self.relative_effects()
        out: dict[str, Any] = dict(
            treatments=list(self.treatments), reference=self.reference, effects=self.effects,
            relative_effects=re.to_dict(orient="records"),
            resdev=self.resdev, pd=self.pd, dic=self.dic, n_datapoints=self.n_datapoints,
            divergences=int(self.divergences), chains=self.chains, warmup=self.warmup, samples=self.samples,
            seed=self.seed, max_rhat=float(self.diagnostics["r_hat"].max()),
            min_ess_bulk=float(self.diagnostics["ess_bulk"].min()),
            min_ess_tail=float(self.diagnostics["ess_tail"].min()),
        )
        if self.tau is not None:
            out["tau"] = self.tau_summary()
        return out

    def to_frame(self):
        """Relative effects against the reference as a DataFrame (see :meth:`relative_effects`)."""
        return self.relative_effects()

    def summary(self, digits: int = 3) -> str:
        """Printable summary (posterior of effects, tau, fit, diagnostics)."""
        f = f"{{:.{digits}f}}"
        model = "Random-effects" if self.effects == "random" else "Fixed-effect"
        lines = [f"{model} Bayesian NMA, binomial likelihood, logit link (NICE TSD2); "
                 f"{self.chains} chains x {self.samples} draws after {self.warmup} warm-up; seed {self.seed}", ""]
        lines.append(f"Log odds ratios vs {self.reference} (posterior mean, sd, {self.level:.0%} CrI):")
        for row in self.relative_effects().itertuples():
            lines.append(f"  {row.trt:<24s} {f.format(row.mean):>8s} {f.format(row.sd):>7s}  "
                         f"[{f.format(row.lower)}, {f.format(row.upper)}]  R-hat {row.rhat:.3f}  "
                         f"ESS {row.ess_bulk:.0f}")
        if self.tau is not None:
            t = self.tau_summary()
            lines.append(f"tau: median {f.format(t['median'])}, sd {f.format(t['sd'])}, "
                         f"{self.level:.0%} CrI [{f.format(t['lower'])}, {f.format(t['upper'])}]")
        lines.append(f"Residual deviance {self.resdev:.1f} ({self.n_datapoints} data points); "
                     f"pD {self.pd:.1f}; DIC {self.dic:.1f}")
        dg = self.diagnostics
        lines.append(f"Diagnostics: max R-hat {dg['r_hat'].max():.3f}; min ESS bulk {dg['ess_bulk'].min():.0f}, "
                     f"tail {dg['ess_tail'].min():.0f}; divergences {self.divergences}")
        if dg["r_hat"].max() > 1.01 or self.divergences > 0:
            lines.append("WARNING: convergence is doubtful (R-hat > 1.01 or divergent transitions); run longer.")
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover
        return self.summary()


# ---------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------
def bayesian_nma(
    df,
    *,
    study: str,
    treatment: str,
    events: str,
    n: str,
    reference: str | None = None,
    treatments: Sequence[str] | None = None,
    effects: str = "random",
    prior_sd: float = 100.0,
    prior_tau_max: float = 5.0,
    chains: int = 2,
    warmup: int = 1000,
    samples: int = 1000,
    seed: int = 0,
    target_accept: float = 0.9,
    level: float = 0.95,
    chain_method: str = "vectorized",
    keep_idata: bool = False,
    dense_mass: bool = True,
) -> BayesNMAResult:
    """Fit the NICE TSD2 binomial-logit network meta-analysis by NUTS (NumPyro).

    Parameters
    ----------
    df : pandas.DataFrame
        One row per study arm.
    study, treatment, events, n : str
        Column names.
    reference : str, optional
        Network reference treatment (default: first of ``treatments`` / sorted labels).
    treatments : sequence of str, optional
        Treatment order (decides each study's baseline arm and the ranking table order).
    effects : {"random", "fixed"}
    prior_sd : float
        SD of the normal priors of the study baselines ``mu_i`` and the effects ``d_k`` (TSD2: 100).
    prior_tau_max : float
        Upper limit of the uniform prior of the heterogeneity SD ``tau`` (TSD2: 5).
    chains, warmup, samples : int
        Number of chains, warm-up iterations and retained draws per chain.
    seed : int
        Seed of the JAX PRNG; identical inputs and seed reproduce the draws.
    target_accept : float
        NUTS target acceptance probability (higher: smaller steps, fewer divergences).
    level : float
        Credible-interval level of the summaries.
    chain_method : {"sequential", "vectorized", "parallel"}
        How NumPyro runs the chains.
    keep_idata : bool
        Keep the full ArviZ ``InferenceData`` on the result (memory: all ``mu``, ``z``).

    Returns
    -------
    BayesNMAResult

    Raises
    ------
    ImportError
        When NumPyro/JAX/ArviZ are not installed (``pip install lnsynth[bayes]``).
    ValueError
        For invalid data (naming the row and field) or settings.

    Examples
    --------
    >>> res = bayesian_nma(arms, study="study", treatment="trt", events="r", n="n",
    ...                    reference="A", effects="random", seed=2026)  # doctest: +SKIP
    >>> res.relative_effects(all_contrasts=True)  # doctest: +SKIP
    >>> res.rank_probabilities(larger_is_better=True)  # doctest: +SKIP
    """
    effects = str(effects).lower()
    if effects not in EFFECTS:
        raise ValueError(f"unknown effects {effects!r}; valid: {', '.join(EFFECTS)}")
    for name, v in (("chains", chains), ("warmup", warmup), ("samples", samples)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive whole number, got {v!r}")
    if not (prior_sd > 0 and math.isfinite(prior_sd)):
        raise ValueError(f"prior_sd must be a positive number, got {prior_sd!r}")
    if not (prior_tau_max > 0 and math.isfinite(prior_tau_max)):
        raise ValueError(f"prior_tau_max must be a positive number, got {prior_tau_max!r}")
    if not 0 < target_accept < 1:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}")
    level = normalize_level(level)
    net = prepare_arms(df, study=study, treatment=treatment, events=events, n=n, reference=reference,
                       treatments=treatments)
    try:
        import arviz as az
        import jax
        import jax.numpy as jnp
        from numpyro.infer import MCMC, NUTS
        import numpyro  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("Bayesian NMA needs the 'bayes' extra: pip install 'lnsynth[bayes]' "
                          f"(numpyro, jax, arviz): {exc}") from exc
    jax.config.update("jax_enable_x64", True)
    cache = os.environ.get("LNSYNTH_JAX_CACHE_DIR")
    if cache:  # opt-in persistent compilation cache (start-up is dominated by XLA compilation)
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    T = len(net.treatments)
    S, A = net.trt.shape
    groups = [(int(a), np.flatnonzero(net.narms == a)) for a in sorted(set(net.narms.tolist())) if a > 1]
    potential, eta_of = _potential_fn(effects, float(prior_sd), float(prior_tau_max), net, groups)
    init = _init_params(effects, net, groups, int(chains), np.random.default_rng(int(seed)), float(prior_tau_max))
    kernel = NUTS(potential_fn=potential, target_accept_prob=float(target_accept), dense_mass=bool(dense_mass))
    mcmc = MCMC(kernel, num_warmup=int(warmup), num_samples=int(samples), num_chains=int(chains),
                chain_method=chain_method, progress_bar=False)
    init = {key: jnp.asarray(v) for key, v in init.items()}
    if int(chains) == 1:
        init = {key: v[0] for key, v in init.items()}
    mcmc.run(jax.random.PRNGKey(int(seed)), init_params=init, extra_fields=("diverging", "num_steps"))
    post = {key: np.asarray(v) for key, v in mcmc.get_samples(group_by_chain=True).items()}
    d_free = post["d_free"]  # (C, D, T-1)
    C, D = d_free.shape[:2]
    d = np.concatenate([np.zeros((C, D, 1)), d_free], axis=-1)
    tau = float(prior_tau_max) / (1 + np.exp(-post["tau_u"])) if effects == "random" else None
    ef = mcmc.get_extra_fields(group_by_chain=True)
    diverging = int(np.asarray(ef["diverging"]).sum())
    num_steps = np.asarray(ef["num_steps"])
    eta = np.asarray(jax.vmap(jax.vmap(lambda p: eta_of(p)[0]))({k: jnp.asarray(v) for k, v in post.items()}))
    resdev, pdv, dic, dev_draws = _dic(eta, net)
    # diagnostics of the parameters that matter (d, tau) and of the worst mu
    post_np = {"d": d_free}
    if tau is not None:
        post_np["tau"] = tau
    post_np["mu"] = post["mu"]
    idata = az.from_dict(posterior=post_np)
    summ = az.summary(idata, kind="diagnostics", round_to="none")
    names = {f"d[{j}]": f"d[{net.treatments[j + 1]}]" for j in range(T - 1)}
    names.update({f"mu[{s}]": f"mu[{net.studies[s]}]" for s in range(S)})
    summ = summ.rename(index=names)
    return BayesNMAResult(
        treatments=net.treatments, reference=net.reference, effects=effects, d=d, tau=tau, diagnostics=summ,
        divergences=diverging, resdev=resdev, pd=pdv, dic=dic, n_datapoints=int(net.mask.sum()),
        chains=int(chains), warmup=int(warmup), samples=int(samples), seed=int(seed), level=float(level),
        settings=dict(prior_sd=float(prior_sd), prior_tau_max=float(prior_tau_max),
                      target_accept=float(target_accept), chain_method=chain_method, dense_mass=bool(dense_mass),
                      mean_leapfrog_steps=float(num_steps.mean()),
                      resdev_mcse=_f(az.mcse(dev_draws, method="mean"))),
        idata=(az.from_dict(posterior={**post, "d": d, **({"tau": tau} if tau is not None else {})})
               if keep_idata else None),
    )


def _binom_dev(r, n, rhat):
    """Binomial residual deviance 2[r log(r/rhat) + (n-r) log((n-r)/(n-rhat))] (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(r > 0, r * np.log(np.where(r > 0, r, 1.0) / rhat), 0.0)
        t2 = np.where(n - r > 0, (n - r) * np.log(np.where(n - r > 0, n - r, 1.0) / (n - rhat)), 0.0)
    return 2.0 * (t1 + t2)


def _dic(eta: np.ndarray, net: BayesNetwork):
    """Posterior mean residual deviance, pD = Dbar - D(posterior mean fitted values) and DIC (TSD2)."""
    p = 1.0 / (1.0 + np.exp(-eta))
    rhat = p * net.n
    m = net.mask
    dev = np.where(m, _binom_dev(net.r, net.n, np.where(m, rhat, 1.0)), 0.0).sum(axis=(-1, -2))
    dbar = float(dev.mean())  # dev: (chains, draws)
    rbar = rhat.reshape(-1, *net.r.shape).mean(0)
    dhat = float(np.where(m, _binom_dev(net.r, net.n, np.where(m, rbar, 1.0)), 0.0).sum())
    pdv = dbar - dhat
    return dbar, pdv, dbar + pdv, dev
