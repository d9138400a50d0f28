"""Figures for the mechanistic simulator (hypothesis-generating simulation, not treatment advice).

Every function takes results computed by :mod:`lnsynth.simulate` and returns a matplotlib Figure;
nothing here simulates. Okabe-Ito colours; axes labelled with units.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .evidence import apply_style
from .style import finalize

OI = {"black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73", "yellow": "#F0E442",
      "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7"}
REGIMEN_COLOURS = {"TAC": OI["sky"], "CSA": OI["purple"], "TAC+MMF": OI["blue"], "VCS23.7+MMF": OI["green"],
                   "MMF": OI["orange"], "IVCYC": OI["vermillion"]}
CAPTION = "Hypothesis-generating simulation, not treatment advice."


def _caption(fig):
    fig.text(0.01, 0.005, CAPTION, fontsize=7, color="#555555", ha="left", va="bottom")
    finalize(fig)  # measured: the axes clear of the caption, every label on the canvas
    return fig


def proteinuria_trajectories(traj: pd.DataFrame, stop_week: int | None = 26) -> plt.Figure:
    """Median true UPCR on a CNI regimen, split into the immune effect (immune-only counterfactual) and
    the non-immune effect (podocyte + haemodynamic), with MMF for reference."""
    apply_style()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    w = traj["week"]
    ax.plot(w, traj["mmf"], color=OI["orange"], lw=1.8, label="MMF")
    ax.plot(w, traj["cni_immune_only"], color=OI["sky"], lw=1.8, ls="--",
            label="CNI regimen, immune channel only (counterfactual)")
    ax.plot(w, traj["cni_full"], color=OI["blue"], lw=2.2, label="CNI regimen, all channels")
    ax.fill_between(w, traj["cni_full"], traj["cni_immune_only"], color=OI["blue"], alpha=0.15,
                    label="non-immune effect (podocyte + haemodynamic)")
    if stop_week:
        ax.axvline(stop_week, color="#777777", lw=0.8, ls=":")
        ax.text(stop_week + 1, ax.get_ylim()[1] * 0.92, "CNI dose step-down", fontsize=7, color="#555555")
    ax.set_xlabel("time since start of induction (weeks)")
    ax.set_ylabel("median UPCR (g/g)")
    ax.set_title("Proteinuria on a CNI regimen: immune vs non-immune effect")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return _caption(fig)


def remission_horizon(tab: pd.DataFrame) -> plt.Figure:
    """Complete remission at 6/12/24 months per regimen (median and 95% interval over posterior draws)."""
    apply_style()
    regs = [r for r in REGIMEN_COLOURS if r in set(tab["regimen"])]
    months = sorted(tab["months"].unique())
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    width = 0.8 / len(regs)
    for i, r in enumerate(regs):
        d = tab[tab.regimen == r].set_index("months").loc[months]
        x = np.arange(len(months)) + (i - (len(regs) - 1) / 2) * width
        ax.bar(x, 100 * d["complete"], width, color=REGIMEN_COLOURS[r], label=r)
        ax.errorbar(x, 100 * d["complete"], yerr=[100 * (d["complete"] - d["low"]), 100 * (d["high"] - d["complete"])],
                    fmt="none", ecolor="#333333", lw=0.8, capsize=2)
    ax.set_xticks(np.arange(len(months)), [f"{m} months" for m in months])
    ax.set_ylabel("complete remission (% of patients)")
    ax.set_xlabel("time since start of induction")
    ax.set_title("Simulated complete remission by regimen and horizon")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    return _caption(fig)


def flares_after_taper(curves: pd.DataFrame, observed: dict | None = None, end_week: float | None = None) -> plt.Figure:
    """Cumulative proportion with a kidney flare after induction (TAC then AZA vs MMF then AZA)."""
    apply_style()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    cols = {"tac": (OI["blue"], "tacrolimus induction, then azathioprine"),
            "mmf": (OI["orange"], "MMF induction, then azathioprine")}
    for arm, (c, lab) in cols.items():
        d = curves[curves.arm == arm]
        for _, g in d.groupby("draw"):
            ax.plot(g["week"] / 52, 100 * g["cum_flare"], color=c, alpha=0.25, lw=0.8)
        m = d.groupby("week")["cum_flare"].median()
        ax.plot(m.index / 52, 100 * m.values, color=c, lw=2.2, label=lab)
    if observed:
        x = (end_week or curves["week"].max()) / 52
        for arm, v in observed.items():
            ax.plot([x], [100 * v], marker="D", color=cols[arm][0], ms=7, mec="black",
                    label=f"observed, Mok 2016 ({arm.upper()})")
    ax.set_xlabel("time since start of induction (years)")
    ax.set_ylabel("patients with >= 1 kidney flare (%)")
    ax.set_title("Kidney flares after induction (model calibrated without Mok 2016)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _caption(fig)


def power_curves(tab: pd.DataFrame, n_max: int = 3000) -> plt.Figure:
    """Power vs patients per arm on eGFR decline >= 40% or ESKD, one curve per follow-up."""
    from lnsynth.simulate.questions import power_two_prop

    apply_style()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ns = np.linspace(10, n_max, 300)
    pal = [OI["sky"], OI["blue"], OI["green"], OI["orange"], OI["vermillion"], OI["purple"]]
    for i, (_, r) in enumerate(tab.iterrows()):
        pw = power_two_prop(ns, r["p_cni"], r["p_control"])
        ax.plot(ns, 100 * pw, color=pal[i % len(pal)], lw=1.8,
                label=f"{int(r['years'])} y follow-up ({100 * r['p_cni']:.1f}% vs {100 * r['p_control']:.1f}%)")
    ax.axhline(80, color="#777777", ls=":", lw=0.8)
    ax.set_xlabel("patients per arm")
    ax.set_ylabel("power (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Power on eGFR decline >= 40% or ESKD (posterior median risks)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _caption(fig)


def nonimmune_share(tab: pd.DataFrame) -> plt.Figure:
    apply_style()
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    y = np.arange(len(tab))
    ax.errorbar(100 * tab["share"], y, xerr=[100 * (tab["share"] - tab["share_low"]), 100 * (tab["share_high"] - tab["share"])],
                fmt="o", color=OI["blue"], ecolor="#333333", capsize=3)
    ax.set_yticks(y, tab["regimen"])
    ax.set_xlabel("share of 6-month complete remission that is non-immune (%)")
    ax.set_title("Non-immune share of CNI remission (counterfactual)")
    fig.tight_layout()
    return _caption(fig)


def validation_intervals(df: pd.DataFrame, null: pd.DataFrame | None = None) -> plt.Figure:
    """Held-out 95% predictive intervals (simulator, and the meta-analytic null when given) vs observed
    proportions, loto and external rows."""
    apply_style()
    d = df[df["held_out"]].reset_index(drop=True)
    if null is not None:
        d = d.merge(null[["trial", "arm", "endpoint", "set", "pred_low", "pred_high"]], how="left",
                    on=["trial", "arm", "endpoint", "set"], suffixes=("", "_null"))
    obs = d["observed_events"] / d["observed_n"]
    inside = (obs >= d["pred_low"]) & (obs <= d["pred_high"])
    fig, ax = plt.subplots(figsize=(7.4, 0.24 * len(d) + 1.6))
    y = np.arange(len(d))
    ax.hlines(y + 0.15, d["pred_low"] * 100, d["pred_high"] * 100, color=OI["sky"], lw=3.5,
              label="simulator 95% predictive interval")
    if null is not None:
        ok = d["pred_low_null"].notna()
        ax.hlines(y[ok] - 0.15, d.loc[ok, "pred_low_null"] * 100, d.loc[ok, "pred_high_null"] * 100,
                  color=OI["orange"], lw=2.0, label="null (random-effects pooling) 95% interval")
    ax.scatter(obs[inside] * 100, y[inside], color=OI["blue"], zorder=3, s=14, label="observed (inside simulator's)")
    ax.scatter(obs[~inside] * 100, y[~inside], color=OI["vermillion"], marker="x", zorder=3, s=20,
               label="observed (outside simulator's)")
    ax.set_yticks(y, [f"[{s}] {t} {a}: {e}" for s, t, a, e in zip(d["set"], d.trial, d.arm, d.endpoint)], fontsize=6)
    ax.set_xlabel("proportion of patients (%)")
    ax.set_title("Held-out (loto) and external validation: simulator vs meta-analytic null")
    ax.legend(fontsize=6.5, loc="lower right")
    fig.tight_layout()
    return _caption(fig)


def question_figure(res) -> plt.Figure:
    """The figure of one :class:`lnsynth.simulate.questions.QuestionResult` (questions a-d)."""
    if res.question == "a":
        return proteinuria_trajectories(res.data["trajectories"])
    if res.question == "b":
        return flares_after_taper(res.data["curves"], {"tac": 0.54, "mmf": 0.38}, end_week=264)
    if res.question == "c":
        return power_curves(res.table)
    if res.question == "d":
        return remission_horizon(res.table)
    raise ValueError(res.question)


def simulator_figures(bank=None, k: int = 20, n: int = 600) -> dict:
    """All simulator figures for the report: {name: (Figure, caption)}. Runs the (cached) calibration and
    the four questions with modest posterior draws (k) and virtual patients per arm (n)."""
    from lnsynth.simulate.questions import (question_flares_after_taper, question_hard_endpoint_power,
                                            question_nonimmune_share, question_remission_horizon)
    from lnsynth.simulate.validate import scorecard

    sc = scorecard(bank=bank)
    bank = sc["bank"]
    out = {}
    tot = sc["compare"]["totals"]
    cap = "; ".join(f"{k}: log score simulator {t['log_score_sim']:.1f} vs null {t['log_score_null']:.1f}, coverage "
                    f"{100 * t['coverage_sim']:.0f}% vs {100 * t['coverage_null']:.0f}% ({t['rows']} rows)"
                    for k, t in tot.items())
    out["sim_validation"] = (validation_intervals(sc["simulator"], sc["null"]), cap + ".")
    a = question_nonimmune_share(bank=bank, k=k, n=n)
    out["sim_q_a_trajectories"] = (question_figure(a), a.text())
    out["sim_q_a_share"] = (nonimmune_share(a.table), a.text())
    b = question_flares_after_taper(bank=bank, k=k, n=n)
    out["sim_q_b_flares"] = (question_figure(b), b.text())
    c = question_hard_endpoint_power(bank=bank, k=max(k // 2, 5), n=n)
    out["sim_q_c_power"] = (question_figure(c), c.text())
    d = question_remission_horizon(bank=bank, k=k, n=n)
    out["sim_q_d_remission"] = (question_figure(d), d.text())
    return out
