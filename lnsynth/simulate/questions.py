"""The review's four questions, answered by posterior-predictive simulation (hypothesis-generating
simulation, not treatment advice).

(a) ``question_nonimmune_share``: share of CNI-arm 6-month complete remission that is non-immunologic
    (counterfactual with the podocyte and haemodynamic channels switched off, same virtual patients).
(b) ``question_flares_after_taper``: kidney flares after CNI induction and switch to azathioprine vs MMF
    (Mok 2016 protocol), predicted from a calibration that EXCLUDES Mok 2016, compared with 54% vs 38%.
(c) ``question_hard_endpoint_power``: patients per arm for 80% power on eGFR decline >= 40% or ESKD
    (multitarget vs MMF), by follow-up.
(d) ``question_remission_horizon``: complete remission at 6, 12 and 24 months for each regimen.

Each returns a :class:`QuestionResult` with an estimate, a 95% interval over posterior draws and a table;
its figure is drawn by :func:`lnsynth.plots.simulate.question_figure` (this module never imports plotting).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .calibrate import Bank, calibrate
from .core import simulate_arm
from .endpoints import flare_counts, hard_event, remission_status
from .params import default_params
from .protocols import load_protocols

LABEL = "Hypothesis-generating simulation, not treatment advice."


@dataclass
class QuestionResult:
    question: str
    estimate: float
    low: float
    high: float
    unit: str
    summary: str
    table: pd.DataFrame
    data: dict = field(default_factory=dict)
    label: str = LABEL

    def text(self) -> str:
        return (f"{self.summary}\nEstimate {self.estimate:.3g} {self.unit} "
                f"(95% interval {self.low:.3g} to {self.high:.3g}).\n{self.label}")


def _q(x, a):
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(np.quantile(x, a)) if len(x) else float("nan")


def _draws(bank: Bank | None, k: int, exclude: str | None, seed: int, overrides: dict | None = None,
           prior: bool = False):
    """Posterior (or prior) parameter sets (optionally with fixed-parameter overrides for sensitivity analyses)
    and a trial-level random effect drawn for each (a new trial population)."""
    bank = bank or calibrate()
    rng = np.random.default_rng(seed)
    out = []
    for d in bank.draws(k, exclude=exclude, seed=seed, prior=prior):
        out.append(({**default_params(), **(overrides or {}), **d}, float(rng.standard_normal()) * d["tau_trial"]))
    return out


CNI_ARMS = {"tac": "TAC", "csa": "CSA", "mt": "TAC+MMF", "vcs": "VCS23.7+MMF"}
ALL_ARMS = {**CNI_ARMS, "mmf": "MMF", "ivc": "IVCYC"}


# ------------------------------------------------------------------------------------------------ (a)
def question_nonimmune_share(bank: Bank | None = None, k: int = 40, n: int = 1000, seed: int = 7,
                             week: int = 26, overrides: dict | None = None,
                             trajectories: bool = True, prior: bool = False) -> QuestionResult:
    """``overrides``: fixed (non-calibrated) parameters to change for a sensitivity analysis (the posterior
    of the calibrated parameters is kept, not re-fitted)."""
    prot = load_protocols()["regimens"]
    rows = []
    for j, (p, shift) in enumerate(_draws(bank, k, None, seed, overrides, prior)):
        for arm in CNI_ARMS:
            full = simulate_arm(prot, arm, p, n=n, seed=seed + j, trial_shift=shift)
            cf = simulate_arm(prot, arm, p, n=n, seed=seed + j, trial_shift=shift, channels=(True, False, False))
            c1 = remission_status(full, week, {}, p, itt=False)[0].mean()
            c0 = remission_status(cf, week, {}, p, itt=False)[0].mean()
            rows.append({"draw": j, "arm": arm, "regimen": CNI_ARMS[arm], "cr_full": c1, "cr_immune_only": c0,
                         "share_nonimmune": (c1 - c0) / c1 if c1 > 0 else np.nan})
    df = pd.DataFrame(rows)
    pooled = df.groupby("draw")[["cr_full", "cr_immune_only"]].mean()
    share = (pooled.cr_full - pooled.cr_immune_only) / pooled.cr_full
    tab = df.groupby("regimen").agg(
        cr_full=("cr_full", "median"), cr_immune_only=("cr_immune_only", "median"),
        share=("share_nonimmune", "median"),
        share_low=("share_nonimmune", lambda x: _q(x, 0.025)), share_high=("share_nonimmune", lambda x: _q(x, 0.975)),
    ).reset_index()
    est, lo, hi = float(np.median(share)), _q(share, 0.025), _q(share, 0.975)
    traj = None
    if trajectories:  # for the figure: posterior-median parameters, multitarget arm
        p0 = {**default_params(), **(overrides or {}),
              **(bank or calibrate()).posterior_frame().set_index("parameter")["median"].to_dict()}
        full = simulate_arm(prot, "mt", p0, n=2000, seed=seed, full=True)
        cf = simulate_arm(prot, "mt", p0, n=2000, seed=seed, full=True, channels=(True, False, False))
        off = simulate_arm(prot, "mmf", p0, n=2000, seed=seed, full=True)
        traj = pd.DataFrame({
            "week": np.arange(full.upcr.shape[1]),
            "cni_full": np.median(full.upcr_true, 0),
            "cni_immune_only": np.median(cf.upcr_true, 0),
            "mmf": np.median(off.upcr_true, 0),
        })
    return QuestionResult(
        "a", est, lo, hi, "fraction",
        "Share of 6-month complete remission on CNI regimens (TAC, CsA, TAC+MMF, VCS+MMF; pooled) that "
        "disappears when the podocyte and haemodynamic channels are switched off (same virtual patients).",
        tab, {"draws": df, "trajectories": traj, "week": week},
    )


# ------------------------------------------------------------------------------------------------ (b)
def _cum_flare(res, start, stop, ve, p):
    weeks = list(range(start + ve, stop + 1, ve))
    return weeks, [float((flare_counts(res, start, w, ve, {}, p) > 0).mean()) for w in weeks]


def question_flares_after_taper(bank: Bank | None = None, k: int = 40, n: int = 1000, seed: int = 11,
                                prior: bool = False) -> QuestionResult:
    prot = load_protocols()["mok2016"]
    spec = prot.endpoints["kidney flare"]
    start = int(spec.opts.get("window_start", 26))
    stop = int(spec.week)
    rows, curves = [], []
    for j, (p, shift) in enumerate(_draws(bank, k, "mok2016", seed, prior=prior)):
        r = {}
        for arm in ("tac", "mmf"):
            res = simulate_arm(prot, arm, p, n=n, seed=seed + j, trial_shift=shift)
            r[arm] = float((flare_counts(res, start, stop, prot.visit_every, {}, p) > 0).mean())
            if j < 10:
                w, c = _cum_flare(res, start, stop, prot.visit_every, p)
                curves += [{"draw": j, "arm": arm, "week": ww, "cum_flare": cc} for ww, cc in zip(w, c)]
        rows.append({"draw": j, "tac": r["tac"], "mmf": r["mmf"], "diff": r["tac"] - r["mmf"]})
    df = pd.DataFrame(rows)
    tab = pd.DataFrame({
        "arm": ["TAC then AZA", "MMF then AZA", "difference (TAC - MMF)"],
        "predicted": [df.tac.median(), df.mmf.median(), df["diff"].median()],
        "low": [_q(df.tac, .025), _q(df.mmf, .025), _q(df["diff"], .025)],
        "high": [_q(df.tac, .975), _q(df.mmf, .975), _q(df["diff"], .975)],
        "observed_mok2016": [0.54, 0.38, 0.16],
    })
    return QuestionResult(
        "b", float(df["diff"].median()), _q(df["diff"], .025), _q(df["diff"], .975), "proportion (TAC - MMF)",
        "Kidney flares during azathioprine maintenance after 6 months of tacrolimus vs MMF induction (Mok 2016 "
        "protocol), predicted by the model calibrated WITHOUT Mok 2016; the review reports 54% vs 38%.",
        tab, {"draws": df, "curves": pd.DataFrame(curves)},
    )


# ------------------------------------------------------------------------------------------------ (c)
def n_per_arm(p1, p0, power=0.8, alpha=0.05):
    """Patients per arm for a two-sided two-proportion z-test (normal approximation)."""
    p1, p0 = np.asarray(p1, float), np.asarray(p0, float)
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    pbar = (p1 + p0) / 2
    d = np.abs(p1 - p0)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = (za * np.sqrt(2 * pbar * (1 - pbar)) + zb * np.sqrt(p1 * (1 - p1) + p0 * (1 - p0))) ** 2 / d**2
    return np.where(d > 0, np.ceil(n), np.inf)


def power_two_prop(n, p1, p0, alpha=0.05):
    za = stats.norm.ppf(1 - alpha / 2)
    se = np.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / n)
    d = np.abs(p1 - p0)
    return stats.norm.cdf(d / np.maximum(se, 1e-12) - za)


def question_hard_endpoint_power(bank: Bank | None = None, k: int = 30, n: int = 2000, seed: int = 13,
                                 years=(1, 2, 3, 5, 7, 10), cni_arm: str = "mt", control_arm: str = "mmf",
                                 prior: bool = False) -> QuestionResult:
    prot = load_protocols()["regimens"]
    weeks = 52 * max(years)
    rows = []
    for j, (p, shift) in enumerate(_draws(bank, k, None, seed, prior=prior)):
        ev = {}
        for arm in (cni_arm, control_arm):
            res = simulate_arm(prot, arm, p, n=n, seed=seed + j, trial_shift=shift, weeks=weeks)
            ev[arm] = [float(hard_event(res, 52 * y, prot.visit_every).mean()) for y in years]
        for y, a, b in zip(years, ev[cni_arm], ev[control_arm]):
            rows.append({"draw": j, "years": y, "p_cni": a, "p_control": b, "n_per_arm": float(n_per_arm(a, b))})
    df = pd.DataFrame(rows)
    tab = df.groupby("years").agg(
        p_cni=("p_cni", "median"), p_control=("p_control", "median"),
        n_per_arm=("n_per_arm", "median"), n_low=("n_per_arm", lambda x: _q(x, .025)),
        n_high=("n_per_arm", lambda x: _q(x, .975)),
        prob_feasible_500=("n_per_arm", lambda x: float(np.mean(np.asarray(x) <= 500))),
    ).reset_index()
    five = df[df.years == 5]["n_per_arm"]
    return QuestionResult(
        "c", float(np.median(five)), _q(five, .025), _q(five, .975), "patients per arm (5-year follow-up)",
        f"Patients per arm for 80% power (two-sided alpha 0.05) on eGFR decline >= 40% or ESKD, "
        f"{prot.arm(cni_arm).regimen} vs {prot.arm(control_arm).regimen}; by follow-up in the table "
        f"(infinite when the simulated arms do not differ).",
        tab, {"draws": df, "years": list(years)},
    )


# ------------------------------------------------------------------------------------------------ (d)
def question_remission_horizon(bank: Bank | None = None, k: int = 40, n: int = 1000, seed: int = 17,
                               months=(6, 12, 24), prior: bool = False) -> QuestionResult:
    prot = load_protocols()["regimens"]
    wk = {6: 26, 12: 52, 24: 104}
    rows = []
    for j, (p, shift) in enumerate(_draws(bank, k, None, seed, prior=prior)):
        for arm, reg in ALL_ARMS.items():
            res = simulate_arm(prot, arm, p, n=n, seed=seed + j, trial_shift=shift)
            for m in months:
                cr, orr = remission_status(res, wk[m], {}, p, itt=False)
                rows.append({"draw": j, "regimen": reg, "months": m, "complete": cr.mean(), "overall": orr.mean()})
    df = pd.DataFrame(rows)
    tab = df.groupby(["regimen", "months"]).agg(
        complete=("complete", "median"), low=("complete", lambda x: _q(x, .025)),
        high=("complete", lambda x: _q(x, .975)), overall=("overall", "median")).reset_index()
    piv = df.pivot_table(index=["draw", "months"], columns="regimen", values="complete").reset_index()
    adv6 = (piv[piv.months == 6]["TAC+MMF"] - piv[piv.months == 6]["MMF"]).to_numpy()
    adv24 = (piv[piv.months == 24]["TAC+MMF"] - piv[piv.months == 24]["MMF"]).to_numpy()
    change = adv24 - adv6
    return QuestionResult(
        "d", float(np.median(change)), _q(change, .025), _q(change, .975), "proportion",
        "Complete remission at 6, 12 and 24 months per regimen (table; status of patients at that visit, "
        "withdrawal ignored so the curve shows the biology, not trial attrition). Headline: change from 6 to 24 months "
        "in the multitarget (TAC+MMF) minus MMF complete-remission difference (negative = the CNI advantage "
        "shrinks with time).",
        tab, {"draws": df},
    )


def sensitivity_nonimmune_share(bank: Bank | None = None, k: int = 20, n: int = 600, seed: int = 7,
                                settings: dict | None = None) -> pd.DataFrame:
    """Question (a) under alternative values of assumptions the remission data cannot identify (one at a
    time, each at the ends of its documented range; the calibrated posterior is NOT re-fitted)."""
    from .params import load_param_table

    table = load_param_table()
    names = settings or ["injury_tc_weeks", "ce_activity_max", "upcr_meas_cv", "chronic_frac_mean", "tac_ec50_ng_ml",
                         "vcs_conc_ref_ng_ml"]
    rows = []
    base = question_nonimmune_share(bank, k=k, n=n, seed=seed, trajectories=False)
    rows.append({"parameter": "(base)", "value": float("nan"), "estimate": base.estimate, "low": base.low,
                 "high": base.high})
    for nm in names:
        for v in table[nm].range:
            r = question_nonimmune_share(bank, k=k, n=n, seed=seed, overrides={nm: v}, trajectories=False)
            rows.append({"parameter": nm, "value": float(v), "estimate": r.estimate, "low": r.low, "high": r.high})
    return pd.DataFrame(rows)


def envelope(which: str, banks: dict, k: int = 30, n: int = 800, **kw) -> pd.DataFrame:
    """Question ``which`` under every structure's posterior AND prior (``banks``: structure -> Bank).

    One row per (structure, source in {posterior, prior}) with estimate and 95% interval, plus the envelope
    (lowest low, highest high) and, per structure, the posterior/prior interval width ratio; a ratio above
    ``scoring.not_identified_ratio`` (params/validation.yaml) means the answer is not identified by the data
    (it restates the prior)."""
    from .calibrate import validation_protocol

    thr = float(validation_protocol()["scoring"]["not_identified_ratio"])
    rows = []
    for s, b in banks.items():
        res = {src: QUESTIONS[which](bank=b, k=k, n=n, prior=(src == "prior"), **kw) for src in ("posterior", "prior")}
        wp = res["prior"].high - res["prior"].low
        ratio = (res["posterior"].high - res["posterior"].low) / wp if wp > 0 else float("nan")
        for src, r in res.items():
            rows.append({"question": which, "structure": s, "source": src, "estimate": r.estimate, "low": r.low,
                         "high": r.high, "unit": r.unit, "width_ratio": ratio,
                         "identified": bool(np.isfinite(ratio) and ratio < thr)})
    df = pd.DataFrame(rows)
    df.attrs["envelope"] = (float(df.low.min()), float(df.high.max()))
    return df


def envelope_text(df: pd.DataFrame, banks: dict | None = None, parameter: str | None = None) -> str:
    """One sentence: the envelope, the posterior/prior width ratios and whether the data identify the answer;
    with ``banks`` and ``parameter`` also that parameter's own posterior/prior width ratio per structure."""
    lo, hi = df.attrs.get("envelope", (df.low.min(), df.high.max()))
    post = df[df.source == "posterior"]
    ratios = ", ".join(f"{r.structure} {r.width_ratio:.2f}" for r in post.itertuples())
    ident = post.identified.all()
    ests = "; ".join(f"{r.structure} posterior {r.estimate:.3g} ({r.low:.3g} to {r.high:.3g})" for r in post.itertuples())
    txt = (f"{ests}. Over structures ({', '.join(post.structure)}) and their priors the answer lies in {lo:.3g} to "
           f"{hi:.3g} ({post.unit.iloc[0]}); posterior/prior interval width ratio of the answer: {ratios}"
           + ("" if ident else " - not identified by the data"))
    if banks and parameter:
        from .validate import prior_posterior_widths

        pr = []
        for s, b in banks.items():
            w = prior_posterior_widths(b).set_index("parameter")
            if parameter in w.index:
                r = float(w.loc[parameter, "width_ratio"])
                pr.append(f"{s} {r:.2f}" + ("" if w.loc[parameter, "identified"] else " (not identified by the data)"))
        txt += f"; {parameter} posterior/prior width ratio: " + ", ".join(pr)
    return txt + "."


QUESTIONS = {
    "a": question_nonimmune_share,
    "b": question_flares_after_taper,
    "c": question_hard_endpoint_power,
    "d": question_remission_horizon,
}


def answer(which: str, **kw) -> QuestionResult:
    """Dispatch for the CLI: ``which`` in a|b|c|d."""
    return QUESTIONS[which](**kw)
