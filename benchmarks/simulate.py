"""Benchmark: 100,000 virtual patients x 52 weeks, and linearity of cost in patients.

Run: .venv/bin/python benchmarks/simulate.py  (writes benchmarks/results_simulate.md)
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def main(out: Path | None = None, repeats: int = 3) -> str:
    from lnsynth.simulate.core import simulate_arm
    from lnsynth.simulate.endpoints import remission_status
    from lnsynth.simulate.params import default_params

    p = default_params()
    simulate_arm("regimens", "mt", p, n=100, seed=0, weeks=52)  # compile / load Numba cache
    sizes = [12_500, 25_000, 50_000, 100_000]
    rows = []
    for n in sizes:
        ts = []
        for r in range(repeats):
            t0 = time.perf_counter()
            res = simulate_arm("regimens", "mt", p, n=n, seed=r, weeks=52)
            cr = remission_status(res, 52, {}, p)[0].mean()
            ts.append(time.perf_counter() - t0)
        rows.append((n, min(ts), float(np.median(ts)), cr))
    # linearity: slope of time on patients and ratio of per-patient cost small vs large
    ns = np.array([r[0] for r in rows], float)
    tt = np.array([r[2] for r in rows])
    slope, intercept = np.polyfit(ns, tt, 1)
    per_pt = tt / ns
    t100 = rows[-1][2]
    lines = [
        "# Simulator benchmark (lnsynth.simulate)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, Python "
        f"{sys.version.split()[0]}; shared machine (other jobs may be running).",
        "Workload: multitarget arm (tacrolimus 4 mg/day + MMF 1 g/day + steroid taper) of the `regimens` protocol,",
        "52 weekly steps, PK + PD + immune + kidney modules, measured UPCR/eGFR/activity stored for every patient-week,",
        "plus complete-remission evaluation at week 52. Numba kernel, single thread. Median of "
        f"{repeats} runs (min in brackets).",
        "",
        "| patients | time (s) | per patient (us) | CR at 52 weeks |",
        "|---:|---:|---:|---:|",
    ]
    for n, tmin, tmed, cr in rows:
        lines.append(f"| {n:,} | {tmed:.3f} ({tmin:.3f}) | {1e6 * tmed / n:.2f} | {cr:.3f} |")
    lines += [
        "",
        f"100,000 patients x 52 weeks: **{t100:.2f} s** (target < 5 s: {'met' if t100 < 5 else 'NOT met'}).",
        f"Linear fit time = {intercept:.3f} s + {1e6 * slope:.2f} us x patients; per-patient cost at 12.5k vs 100k: "
        f"{1e6 * per_pt[0]:.2f} vs {1e6 * per_pt[-1]:.2f} us (ratio {per_pt[0] / per_pt[-1]:.2f}; 1.0 = perfectly linear).",
        "",
        "Hypothesis-generating simulation, not treatment advice.",
    ]
    text = "\n".join(lines) + "\n"
    out = out or Path(__file__).with_name("results_simulate.md")
    out.write_text(text)
    return text


def _md(df) -> str:
    cols = list(df.columns)
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(rows)


def validation_section(k: int = 30, n: int = 800) -> str:
    """Calibration, proper scoring against the meta-analytic null (loto + external), stacking over structures,
    identification and the questions' envelopes, as markdown."""
    from lnsynth.simulate.calibrate import calibrate
    from lnsynth.simulate.questions import QUESTIONS, envelope, envelope_text
    from lnsynth.simulate.validate import (_predictions, _settings, compare, external_bank, prior_posterior_widths,
                                           stacking_weights, structure_banks, validate, validate_rates,
                                           validation_summary)

    t0 = time.perf_counter()
    bank = calibrate()
    t_cal = time.perf_counter() - t0
    t0 = time.perf_counter()
    eb = external_bank(bank)
    t_ext = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim = validate(bank=bank, ext_bank=eb)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    null = validate(bank=bank, ext_bank=eb, model="null")
    t_null = time.perf_counter() - t0
    c = compare(sim, null)
    lines = ["", "## Proper scoring against the meta-analytic null (issue 15)", "",
             f"Bank: {len(bank.theta)} draws x 3 trial-effect nodes x {len(bank.targets)} calibration rows, "
             f"{bank.n_sim} virtual patients per arm (load/build {t_cal:.0f} s); external draws: {len(eb.idx)} distinct "
             f"of {int(eb.counts.sum())} resampled ({t_ext:.0f} s). Scoring: simulator {t_sim:.1f} s, null {t_null:.1f} s. "
             f"Full-posterior ESS {bank.ess():.1f}.", "",
             "Total log predictive probability of the observed counts (higher is better) on held-out rows that both "
             "models predict; coverage = share inside the 95% predictive interval.", "",
             "| set | rows | trials | log score simulator | log score null | coverage simulator | coverage null | trials simulator better |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for sset, t in c["totals"].items():
        lines.append(f"| {sset} | {t['rows']} | {t['trials']} | {t['log_score_sim']:.1f} | {t['log_score_null']:.1f} | "
                     f"{100 * t['coverage_sim']:.0f}% | {100 * t['coverage_null']:.0f}% | {t['trials_sim_better']} |")
    only = sim[sim.held_out].merge(null[["trial", "arm", "endpoint", "set"]], how="left", indicator=True,
                                   on=["trial", "arm", "endpoint", "set"])
    only = only[only["_merge"] == "left_only"]
    ss = validation_summary(sim)
    lines += ["", f"Issue-15 criterion (beats the null on loto and external totals, on >= 4 external arms from >= 2 "
              f"trials, coverage >= 80%): **{'met' if c['beats_null'] else 'NOT met'}** (external arms where the "
              f"simulator scores better: {c['external_arms_sim_better']} from {c['external_trials_sim_better']} trials).",
              f"Rows without a null prediction (no other trial of that endpoint family): {len(only)} "
              f"(simulator log score {only.log_pred.sum():.1f}: "
              + ", ".join(f"{r.trial}/{r.arm}/{r.endpoint}" for r in only.itertuples()) + ").",
              f"All held-out rows, simulator: loto {ss.get('loto', {}).get('rows', 0)} rows, coverage "
              f"{100 * ss.get('loto', {}).get('coverage', float('nan')):.0f}%; external {ss.get('external', {}).get('rows', 0)} "
              f"rows, coverage {100 * ss.get('external', {}).get('coverage', float('nan')):.0f}%.", "",
              "### Per trial", "", _md(c["per_trial"]), "", "### Per row", "",
              "| set | trial | arm | regimen | endpoint | observed | simulator 95% | null 95% | log sim | log null |",
              "|---|---|---|---|---|---:|---|---|---:|---:|"]
    for r in c["rows"].itertuples():
        lines.append(f"| {r.set} | {r.trial} | {r.arm} | {r.regimen} | {r.endpoint} | {r.observed_events}/{r.observed_n} | "
                     f"{r.pred_low:.2f}-{r.pred_high:.2f} | {r.pred_low_null:.2f}-{r.pred_high_null:.2f} | "
                     f"{r.log_pred:.2f} | {r.log_pred_null:.2f} |")
    nho = sim[~sim.held_out]
    lines += ["", "Not held out (tuned to, see params/CHANGELOG.md): " + "; ".join(
        f"{r.trial}/{r.arm}/{r.endpoint} {r.observed_events}/{r.observed_n}, interval {r.pred_low:.2f}-{r.pred_high:.2f}, "
        f"log {r.log_pred:.2f}" for r in nho.itertuples()) + ".", ""]
    rates = validate_rates(bank=bank)
    lines += ["### Flare rates (events over person-time; separate command `simulate validate-rates`)", "",
              _md(rates), "", "No null: no other stored trial reports a flare rate.", ""]
    # structural alternatives and stacking (only those whose bank is cached or buildable here)
    t0 = time.perf_counter()
    banks = {"base": bank, **{k_: v for k_, v in structure_banks().items() if k_ != "base"}}
    lines.append("Structures: " + ", ".join(f"{k_} ({len(b.theta)} draws, {b.n_sim} patients per arm)"
                                             for k_, b in banks.items()) + f" ({time.perf_counter() - t0:.0f} s).")
    st = _settings()
    preds = {}
    for s_, b in banks.items():
        preds[s_] = _predictions(b, external_bank(b), "binom", st)
    w = stacking_weights(preds)
    lines += ["", "### Structural alternatives", "",
              "Log scores summed over ALL held-out rows of each set (also those without a null prediction), so they "
              "differ from the simulator-vs-null totals above.", "",
              "| structure | loto log score | external log score | stacking weight |",
              "|---|---:|---:|---:|"]
    for s_, pr in preds.items():
        lo = sum(float(np.log(max(x[3][1][x[0].events], 1e-300))) for x in pr if x[1] == "loto" and x[2])
        ex = sum(float(np.log(max(x[3][1][x[0].events], 1e-300))) for x in pr if x[1] == "external" and x[2])
        lines.append(f"| {s_} | {lo:.1f} | {ex:.1f} | {w[s_]:.2f} |")
    if len(banks) > 1:
        stk = validate(bank=bank, ext_bank=eb, model="stacked", alt_banks=banks)
        sk = validation_summary(stk)
        lines += ["", f"Stacked (weights fitted on the loto rows, so its loto score is optimistic): loto "
                  f"{sk['loto']['log_score']:.1f}, external {sk['external']['log_score']:.1f} (coverage "
                  f"{100 * sk['external']['coverage']:.0f}%)."]
    lines += ["", "### Identification (posterior/prior 95% width ratio)", ""]
    for s_, b in banks.items():
        lines += [f"Structure {s_}:", "", _md(prior_posterior_widths(b)), ""]
    lines += ["## The review's questions over structures and priors", ""]
    for q in QUESTIONS:
        t0 = time.perf_counter()
        kw = {"years": (1, 5, 10)} if q == "c" else {}
        env = envelope(q, banks, k=k if q != "c" else max(k // 2, 10), n=n, **kw)
        lines += [f"### ({q})", "", envelope_text(env, banks, "f_nonimmune" if q == "a" else None) + f" ({time.perf_counter() - t0:.0f} s)", "", _md(env), ""]
    lines += ["Hypothesis-generating simulation, not treatment advice."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = main()
    if "--validate" in sys.argv:
        text += validation_section()
        Path(__file__).with_name("results_simulate.md").write_text(text)
    print(text)
