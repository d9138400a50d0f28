"""Funnel plot (metafor ``funnel()``-like), optionally contour-enhanced, with trim-and-fill studies."""
from __future__ import annotations

import numpy as np
from scipy import special

from .style import NULL_COLOR, OKABE_ITO, POOLED_COLOR, STUDY_COLOR, finalize, freeze_fonts, lnsynth_style


def funnel_plot(fit, ax=None, *, contours=(0.90, 0.95, 0.99), trimfill=None, refline=None, level=0.95,
                xlabel=None, transf=None, title=None):
    """Funnel plot of a fitted meta-analysis (y axis: standard error, inverted).

    ``contours``: significance contours around ``refline`` (default 0, i.e. the
    null) shaded as in Peters et al. (2008): white p > 0.10, then grey shades for
    0.10 > p > 0.05 > p > 0.01 (two-sided z).  ``None`` draws metafor's classic
    pseudo-confidence triangle around the pooled estimate instead.
    ``trimfill``: a :class:`~lnsynth.pairwise.bias.TrimFill` result; its filled
    studies are drawn as open circles and its adjusted estimate as a dashed line.
    ``transf="exp"`` labels the x axis on the ratio scale (points stay on the log scale).
    """
    import matplotlib.pyplot as plt

    y = np.asarray(fit.yi, dtype=float)
    se = np.sqrt(np.asarray(fit.vi, dtype=float))
    fy = np.asarray(trimfill.filled_yi, float) if trimfill is not None and trimfill.k0 else np.array([])
    fse = np.sqrt(np.asarray(trimfill.filled_vi, float)) if trimfill is not None and trimfill.k0 else np.array([])
    smax = float(max(se.max(), fse.max() if fse.size else 0.0)) * 1.1
    with lnsynth_style():
        own = ax is None
        if own:
            fig, ax = plt.subplots(figsize=(5.5, 4.5))
        else:
            fig = ax.figure
        sgrid = np.linspace(0.0, smax, 200)
        if contours:
            centre = 0.0 if refline is None else float(refline)
            levels = sorted(contours)
            shades = ["#f0f0f0", "#cfcfcf", "#a8a8a8"]
            span = max(np.abs(y - centre).max() if y.size else 1.0, smax * special.ndtri(0.9995)) * 1.15
            ax.axvspan(centre - span, centre + span, color="white", zorder=0)
            # nested bands: each level shades everything beyond its contour, darker further out
            for i, lv in enumerate(levels):
                z = special.ndtri(1.0 - (1.0 - lv) / 2.0)
                col = shades[min(i, len(shades) - 1)]
                ax.fill_betweenx(sgrid, centre + z * sgrid, centre + span, color=col, zorder=0, lw=0)
                ax.fill_betweenx(sgrid, centre - span, centre - z * sgrid, color=col, zorder=0, lw=0)
            from matplotlib.patches import Patch

            handles = [Patch(facecolor="white", edgecolor="#999999", label=f"p > {1 - levels[0]:.2f}")]
            for i, lv in enumerate(levels):
                hi = 1 - lv
                lo = 1 - levels[i + 1] if i + 1 < len(levels) else 0.0
                handles.append(Patch(facecolor=shades[min(i, 2)], edgecolor="#999999",
                                     label=f"{lo:.2f} < p < {hi:.2f}" if lo > 0 else f"p < {hi:.2f}"))
            ax.axvline(centre, color=NULL_COLOR, lw=0.8, zorder=1)
            ax.set_xlim(centre - span, centre + span)
        else:
            z = special.ndtri(1.0 - (1.0 - level) / 2.0)
            mu = float(fit.estimate)
            ax.plot(mu - z * sgrid, sgrid, color=NULL_COLOR, lw=0.8, ls=":")
            ax.plot(mu + z * sgrid, sgrid, color=NULL_COLOR, lw=0.8, ls=":")
            handles = []
        ax.axvline(float(fit.estimate), color=POOLED_COLOR, lw=1.2, zorder=2, label="pooled estimate")
        ax.scatter(y, se, s=28, color=STUDY_COLOR, edgecolor="black", lw=0.5, zorder=3, label="studies")
        if fy.size:
            ax.scatter(fy, fse, s=28, facecolor="white", edgecolor="black", lw=0.8, zorder=3,
                       label=f"filled (k0 = {trimfill.k0})")
            ax.axvline(trimfill.estimate, color=OKABE_ITO["orange"], lw=1.2, ls="--", zorder=2,
                       label="trim-and-fill estimate")
        ax.set_ylim(smax, 0.0)
        ax.set_ylabel("Standard error")
        ax.set_xlabel(xlabel or ("Log " + str(fit.measure) if getattr(fit, "measure", None) else "Observed outcome"))
        if transf == "exp":
            ticks = ax.get_xticks()
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{np.exp(t):.2g}" for t in ticks])
            ax.set_xlabel(xlabel or (str(fit.measure) if getattr(fit, "measure", None) else "exp(outcome)"))
        h, lab = ax.get_legend_handles_labels()
        # outside the plot, right of it: never over the contours or the studies
        ax.legend(handles=handles + h, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  frameon=False)
        if title:
            ax.set_title(title)
        if own:
            finalize(fig, tight=True)
        else:
            freeze_fonts(fig)
    return fig
