"""GOSH plot: pooled estimate vs I^2 over all (or sampled) subsets of studies."""
from __future__ import annotations

import numpy as np

from .style import OKABE_ITO, STUDY_COLOR, finalize, freeze_fonts, lnsynth_style


def gosh_plot(result, ax=None, *, x="estimate", y="i2", highlight=None, gridsize=120, max_points=200_000,
              transf=None, title=None):
    """Scatter (k <= ~17 subsets sets) or hexbin density of a :class:`~lnsynth.pairwise.gosh.GoshResult`.

    ``highlight``: index of a study; subsets containing it are drawn in a second colour
    (as metafor's ``plot(gosh, out=)``).  ``transf="exp"`` back-transforms the estimate axis.
    """
    import matplotlib.pyplot as plt

    xs = np.asarray(getattr(result, x), dtype=float)
    ys = np.asarray(getattr(result, y), dtype=float)
    if transf == "exp" and x == "estimate":
        xs = np.exp(xs)
    ok = np.isfinite(xs) & np.isfinite(ys)
    with lnsynth_style():
        own = ax is None
        if own:
            fig, ax = plt.subplots(figsize=(5.5, 4.5))
        else:
            fig = ax.figure
        n = int(ok.sum())
        if n > max_points and highlight is None:
            hb = ax.hexbin(xs[ok], ys[ok], gridsize=gridsize, bins="log", cmap="Blues", mincnt=1)
            fig.colorbar(hb, ax=ax, label="subsets (log count)")
        else:
            idx = np.flatnonzero(ok)
            if n > max_points:
                idx = np.random.default_rng(0).choice(idx, max_points, replace=False)
            alpha = float(np.clip(2000.0 / max(len(idx), 1), 0.02, 0.6))
            if highlight is None:
                ax.scatter(xs[idx], ys[idx], s=4, color=STUDY_COLOR, alpha=alpha, lw=0)
            else:
                inc = result.incl[idx, int(highlight)]
                lab = result.labels[int(highlight)] if result.labels else f"study {int(highlight) + 1}"
                ax.scatter(xs[idx][~inc], ys[idx][~inc], s=4, color=STUDY_COLOR, alpha=alpha, lw=0,
                           label=f"without {lab}")
                ax.scatter(xs[idx][inc], ys[idx][inc], s=4, color=OKABE_ITO["vermillion"], alpha=alpha, lw=0,
                           label=f"with {lab}")
                ax.legend(fontsize=7, markerscale=3)
        ax.set_xlabel({"estimate": "Pooled estimate" + (" (exp)" if transf == "exp" else "")}.get(x, x))
        ax.set_ylabel({"i2": "I\u00b2 (%)", "tau2": "\u03c4\u00b2", "qe": "Q", "h2": "H\u00b2"}.get(y, y))
        ax.set_title(title or f"GOSH plot ({len(result):,} subsets of k = {result.k_total}, {result.method})")
        if own:
            finalize(fig, tight=True)
        else:
            freeze_fonts(fig)
    return fig
