"""Figures drawn straight from the evidence base (no model): response rates per arm,
adverse-event rates, trial sizes and follow-up, provenance mix.

Every function takes an :class:`~lnsynth.evidence.EvidenceBase` and returns a
matplotlib Figure; nothing here computes statistics beyond a Wilson interval for a
single proportion (shown only to convey sample size).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lnsynth.stats import Z95

from .style import FONT_FAMILY, finalize
from .style import OKABE_ITO as _OI

# Okabe-Ito colour-blind-safe palette (shared with the other figures), by regimen class.
OKABE_ITO = [_OI[c] for c in ("blue", "orange", "bluish_green", "reddish_purple", "sky_blue", "vermillion", "yellow", "black")]
CLASS_COLOURS = {
    "CNI+MMF": _OI["blue"],
    "CNI": _OI["sky_blue"],
    "MMF": _OI["bluish_green"],
    "IVCYC": _OI["vermillion"],
    "CYC": _OI["orange"],
    "AZA": _OI["reddish_purple"],
    "PRED": _OI["black"],
}
CLASS_LABELS = {
    "CNI+MMF": "CNI + MMF (multitarget / voclosporin)",
    "CNI": "CNI alone (tacrolimus, cyclosporin)",
    "MMF": "MMF (incl. placebo + MMF)",
    "IVCYC": "IV cyclophosphamide",
    "CYC": "cyclophosphamide (route not stated)",
    "AZA": "azathioprine",
    "PRED": "corticosteroids alone",
}


def apply_style() -> None:
    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "font.family": FONT_FAMILY,
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.titlesize": 10,
            "axes.titleweight": "bold",
            "legend.frameon": False,
            "svg.fonttype": "none",
        }
    )


def wilson(events: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for one proportion (Wilson 1927)."""
    if n <= 0:
        raise ValueError("n must be positive")
    p = events / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def response_rates_figure(ev, endpoints=("complete remission", "overall remission")):
    """Dot plot: printed response percentage per arm, one panel per endpoint.

    Points are the printed percentages; whiskers are Wilson 95% intervals where the arm
    size is known (hollow marker when the count was derived from the percentage).
    """
    apply_style()
    df = ev.outcomes_frame()
    df = df[df["endpoint"].isin(endpoints) & df["percent"].notna()].copy()
    fig, axes = plt.subplots(1, len(endpoints), figsize=(5.2 * len(endpoints), 0.36 * max(8, df.groupby("endpoint").size().max() + 2)), squeeze=False)
    for ax, ep in zip(axes[0], endpoints):
        d = df[df["endpoint"] == ep].copy()
        d["row"] = d["study_label"] + ", " + d["timepoint"].fillna("") + ": " + d["arm_label"]
        d = d.sort_values(["year", "study", "timepoint_weeks", "regimen_class"])
        y = np.arange(len(d))[::-1]
        for yi, (_, r) in zip(y, d.iterrows()):
            c = CLASS_COLOURS.get(r["regimen_class"], "#999999")
            if pd.notna(r["n"]):
                lo, hi = wilson(float(r["percent"]) / 100 * r["n"], r["n"])
                ax.plot([100 * lo, 100 * hi], [yi, yi], color=c, lw=1.2)
            derived = bool(r["events_derived"]) if pd.notna(r["events_derived"]) else True
            ax.plot(r["percent"], yi, "o", color=c, mfc="white" if derived else c, ms=6)
        ax.set_yticks(y)
        ax.set_yticklabels(d["row"], fontsize=7.5)
        ax.set_xlim(0, 100)
        ax.set_xlabel(f"{ep} (% of arm)")
        ax.set_title(ep.capitalize())
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=CLASS_LABELS[k]) for k, c in CLASS_COLOURS.items() if k in set(df["regimen_class"])]
    handles.append(plt.Line2D([], [], marker="o", ls="", color="grey", mfc="white", label="count derived from printed %"))
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7.5, bbox_to_anchor=(0.5, 0.005))
    fig.suptitle("Response rates per arm as printed in the review (Wilson 95% CI where arm size is known)", fontsize=10)
    finalize(fig, tight=True, rect=(0, 0.08, 1, 0.95))
    return fig


def adverse_events_figure(ev):
    """Adverse-event proportions per CNI-containing arm (events / printed denominator)."""
    apply_style()
    df = ev.adverse_events_frame()
    df = df[df["events"].notna() & df["n"].notna()].copy()
    df["pct"] = 100 * df["events"] / df["n"]
    df["row"] = df["study_label"] + ": " + df["arm_label"] + " - " + df["event"]
    cats = sorted(df["category"].unique())
    cmap = {c: OKABE_ITO[i % len(OKABE_ITO)] for i, c in enumerate(cats)}
    df = df.sort_values(["category", "pct"])
    fig, ax = plt.subplots(figsize=(8, 0.22 * len(df) + 1.5))
    y = np.arange(len(df))
    for yi, (_, r) in zip(y, df.iterrows()):
        lo, hi = wilson(r["events"], r["n"])
        ax.plot([100 * lo, 100 * hi], [yi, yi], color=cmap[r["category"]], lw=1)
        ax.plot(r["pct"], yi, "s", color=cmap[r["category"]], ms=4)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r} ({e}/{n})" for r, e, n in zip(df["row"], df["events"], df["n"])], fontsize=6.5)
    ax.set_xlabel("patients with the event (% of printed denominator, Wilson 95% CI)")
    ax.set_xlim(0, 100)
    ax.set_title("Adverse events reported for calcineurin-inhibitor arms (review Table 2 and text)")
    handles = [plt.Line2D([], [], marker="s", ls="", color=cmap[c], label=c) for c in cats]
    ax.legend(handles=handles, loc="lower right", fontsize=7)
    finalize(fig, tight=True)
    return fig


def trial_landscape_figure(ev):
    """Trial size against follow-up, the review's 'short follow-up' critique in one picture."""
    apply_style()
    df = ev.studies_frame()
    df = df[df["n_randomised"].notna() & df["follow_up_weeks"].notna()]
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    for _, r in df.iterrows():
        colour = "#0072B2" if "RCT" in str(r["design"]) else "#E69F00"
        ax.scatter(r["follow_up_weeks"], r["n_randomised"], s=30 + r["n_randomised"] / 2, color=colour, alpha=0.75, edgecolor="black", lw=0.5)
    ax.axvline(26, color="grey", ls="--", lw=0.8)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from .style import place_point_labels, plain_number

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: plain_number(x)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ymax = float(df["n_randomised"].max()) if len(df) else 1.0
    ax.set_ylim(top=ymax * 1.12)
    six = ax.text(26, ax.get_ylim()[1] * 0.97, " 6 months", fontsize=7, color="grey", va="top")
    fig.tight_layout()
    place_point_labels(ax, df["follow_up_weeks"].to_numpy(float), df["n_randomised"].to_numpy(float),
                       list(df["label"]), fontsize=7, avoid=[six])
    ax.set_xlabel("follow-up duration (weeks, log scale)")
    ax.set_ylabel("patients (N as printed)")
    ax.set_title("Size and follow-up of the trials (blue: RCT, orange: observational)")
    finalize(fig)  # tight layout ran before the labels were placed
    return fig


def provenance_mix_figure(ev):
    """Stored values per study: printed versus derived (counts from %, arm sizes from N)."""
    apply_style()
    df = ev.provenance_frame(numbers_only=True)
    tab = df.groupby(["study", "derived"]).size().unstack(fill_value=0).reindex(columns=[False, True], fill_value=0)
    tab = tab.sort_values(False)
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(tab) + 1.4))
    ax.barh(tab.index, tab[False], color="#0072B2", label="printed in the source")
    ax.barh(tab.index, tab[True], left=tab[False], color="#E69F00", label="derived (rule recorded)")
    ax.set_xlabel("numeric values stored")
    ax.set_title("Provenance of the stored numbers")
    ax.legend(loc="lower right", fontsize=7)
    finalize(fig, tight=True)
    return fig
