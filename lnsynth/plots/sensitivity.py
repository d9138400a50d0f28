"""Figures for the sensitivity report: subgroup risk ratios per question, leave-one-out."""
from __future__ import annotations

import numpy as np
from matplotlib.ticker import FuncFormatter

from .style import NULL_COLOR, POOLED_COLOR, STUDY_COLOR, lnsynth_style


def sensitivity_plot(frame, outcome: str, ax=None):
    """Forest-style panel of every subgroup RR (log axis) for one outcome, grouped by question.

    Rows with no pooled number (k = 0, tests, not estimable) are listed with their note
    instead of a point, so a question that cannot be answered is visible as such.
    """
    import matplotlib.pyplot as plt

    f = frame[(frame["outcome"] == outcome) & (frame["question"] != "leave-one-out")]
    rows = []
    for q, g in f.groupby("question", sort=False):
        rows.append(("header", q, None))
        for _, r in g.iterrows():
            if r["subgroup"] in ("test for subgroup differences",) or str(r["subgroup"]).startswith("meta-regression"):
                if np.isfinite(r["test_pvalue"]):
                    rows.append(("text", f"  {r['subgroup']}: p = {r['test_pvalue']:.3f}", None))
                else:
                    rows.append(("text", f"  {r['subgroup']}: {r['note']}", None))
                continue
            rows.append(("est", f"  {r['subgroup']} (k = {r['k']})", r))
    n = len(rows)
    with lnsynth_style():
        own = ax is None
        if own:
            fig, ax = plt.subplots(figsize=(8.5, max(2.5, 0.28 * n + 1.0)))
        else:
            fig = ax.figure
        ylab = []
        for i, (kind, text, r) in enumerate(rows):
            y = n - i
            ylab.append((y, text, kind))
            if kind != "est" or r is None or not np.isfinite(r["estimate"]):
                continue
            col = POOLED_COLOR if r["question"] == "overall" else STUDY_COLOR
            ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=col, lw=1.2)
            mk = "D" if r["k"] > 1 else "s"
            ax.plot([r["estimate"]], [y], marker=mk, color=col, ms=5 if r["k"] > 1 else 4,
                    mfc=col if r["k"] > 1 else "white")
            if np.isfinite(r["range_low"]) and r["range_low"] != r["range_high"]:
                ax.plot([r["range_low"], r["range_high"]], [y + 0.18, y + 0.18], color=col, lw=3, alpha=0.4)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.axvline(1.0, color=NULL_COLOR, lw=0.8, ls="--")
        ax.set_yticks([y for y, _, _ in ylab])
        ax.set_yticklabels([t for _, t, _ in ylab], fontsize=7.5)
        for lab, (_, _, kind) in zip(ax.get_yticklabels(), ylab):
            if kind == "header":
                lab.set_fontweight("bold")
            elif kind == "text":
                lab.set_fontstyle("italic")
                lab.set_color("#555555")
        ax.set_ylim(0.3, n + 0.7)
        ax.set_xlabel("Risk ratio of remission (CNI-containing vs comparator; > 1 favours CNI)")
        ax.set_title(f"Sensitivity analyses: {outcome} (open squares: single study, not pooled)", fontsize=9)
        ax.tick_params(axis="y", length=0)
        if own:
            fig.tight_layout()
    return fig


def leave_one_out_plot(loo, fit=None, outcome: str = "", ax=None):
    """Pooled RR with each study omitted in turn (from :func:`lnsynth.pairwise.influence.leave_one_out`)."""
    import matplotlib.pyplot as plt

    f = loo.to_frame()
    n = len(f)
    with lnsynth_style():
        own = ax is None
        if own:
            fig, ax = plt.subplots(figsize=(6.5, 0.35 * n + 1.6))
        else:
            fig = ax.figure
        for i, r in f.iterrows():
            y = n - i
            ax.plot(np.exp([r["ci_low"], r["ci_high"]]), [y, y], color=STUDY_COLOR, lw=1.2)
            ax.plot([np.exp(r["estimate"])], [y], "D", color=STUDY_COLOR, ms=5)
        labels = [f"omitting {s}" for s in f["study"]]
        if fit is not None:
            ax.axvspan(np.exp(fit.ci_low), np.exp(fit.ci_high), color=POOLED_COLOR, alpha=0.12, lw=0)
            ax.axvline(np.exp(fit.estimate), color=POOLED_COLOR, lw=1.0)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.axvline(1.0, color=NULL_COLOR, lw=0.8, ls="--")
        ax.set_yticks(range(n, 0, -1))
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_ylim(0.4, n + 0.6)
        ax.set_xlabel("Pooled risk ratio (band: all studies)")
        ax.set_title(f"Leave-one-out: {outcome}", fontsize=9)
        ax.tick_params(axis="y", length=0)
        if own:
            fig.tight_layout()
    return fig


def sensitivity_figures(report) -> list:
    """Every figure of a sensitivity report: one subgroup panel per outcome, then leave-one-out plots.

    Parameters
    ----------
    report : lnsynth.pairwise.sensitivity.SensitivityReport
        Output of :func:`lnsynth.pairwise.sensitivity.run_sensitivity`.

    Returns
    -------
    list of matplotlib.figure.Figure
    """
    figs = []
    for outcome in report.frame["outcome"].unique():
        figs.append(sensitivity_plot(report.frame, outcome))
    for outcome, loo in report.loo.items():
        if loo is not None:
            figs.append(leave_one_out_plot(loo, report.fits.get(outcome), outcome))
    return figs
