"""Forest plot in the layout of metafor's ``forest.rma``.

Rows from top: one per study (square sized by weight, CI whisker), then the
pooled estimate as a diamond, with the prediction interval as a bar for
random-effects models; text columns: study labels on the left, "estimate
[CI]" on the right; heterogeneity statistics under the model label.
"""
from __future__ import annotations

import numpy as np

from .. import registry
from .style import NULL_COLOR, PI_COLOR, POOLED_COLOR, STUDY_COLOR, lnsynth_style

_FE = registry.fixed_effect_methods()  # FE, MH, PETO
_XLABELS = {"RR": "Risk Ratio", "OR": "Odds Ratio", "PETO": "Odds Ratio (Peto)", "IRR": "Incidence Rate Ratio",
            "ROM": "Ratio of Means", "HR": "Hazard Ratio", "RD": "Risk Difference", "MD": "Mean Difference",
            "SMD": "Standardized Mean Difference"}


def _single(result):
    # a batch result: plot only when it holds exactly one analysis
    if hasattr(result, "__len__") and hasattr(result, "__getitem__") and not hasattr(result, "df"):
        if len(result) != 1:
            raise ValueError("result: forest_plot draws one analysis; index the batch (result[i]) first")
        return result[0]
    return result


def forest_plot(result, labels=None, ax=None, transf=None, *, xlabel=None, refline=None, digits=2,
                show_pi=True, show_het=True, title=None, figsize=None):
    """Draw a forest plot of a fitted :class:`~lnsynth.pairwise.MetaResult`.

    Parameters
    ----------
    result : MetaResult (or a MetaBatchResult of length 1)
    labels : sequence of str, optional (defaults to ``result.labels`` or "Study i")
    ax : matplotlib Axes, optional (a new Figure is created otherwise)
    transf : None, "exp" or callable
        Back-transformation of effects for display.  ``None`` means "exp" for
        ratio measures (RR/OR/...) with a log-scaled x axis, identity otherwise.
    refline : float, optional; vertical null line (default 1 if transformed by exp, else 0)

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    r = _single(result)
    yi = np.asarray(r.yi, dtype=float)
    vi = np.asarray(r.vi, dtype=float)
    k = len(yi)
    if labels is None:
        labels = r.labels if r.labels is not None else [f"Study {i + 1}" for i in range(k)]
    labels = [str(x) for x in labels]
    if len(labels) != k:
        raise ValueError(f"labels: {len(labels)} labels for {k} studies")
    if transf is None and getattr(r, "is_ratio", False):
        transf = "exp"
    if transf == "exp":
        f = np.exp
        logx = True
    elif transf is None or transf is False:
        f = lambda x: np.asarray(x, dtype=float)  # noqa: E731
        logx = False
    elif callable(transf):
        f = transf
        logx = False
    else:
        raise ValueError(f"transf: expected None, 'exp' or a callable, got {transf!r}")
    if refline is None:
        refline = float(f(0.0))
    crit = 1.959963984540054 if abs(r.level - 0.95) < 1e-12 else None
    if crit is None:
        from scipy.special import ndtri

        crit = float(ndtri(1 - (1 - r.level) / 2))
    se = np.sqrt(vi)
    lo, hi = yi - crit * se, yi + crit * se
    w = np.asarray(r.weights, dtype=float)
    if not np.all(np.isfinite(w)):
        w = 1.0 / vi
        w = 100 * w / w.sum()

    random = r.method not in _FE
    n_rows = k + 3
    with lnsynth_style():
        if ax is None:
            fig, ax = plt.subplots(figsize=figsize or (8.0, 1.2 + 0.28 * n_rows))
        else:
            fig = ax.figure
        ys = np.arange(k, 0, -1) + 1.5  # study rows, top to bottom
        ax.hlines(ys, f(lo), f(hi), color=STUDY_COLOR, lw=1.0)
        size = 12 + 160 * w / max(w.max(), 1e-300)  # marker area proportional to weight
        ax.scatter(f(yi), ys, s=size, marker="s", color=STUDY_COLOR, zorder=3, linewidths=0)
        # pooled diamond
        yd = 0.5
        ex, cl, ch = f(r.estimate), f(r.ci_low), f(r.ci_high)
        ax.fill([cl, ex, ch, ex], [yd, yd + 0.35, yd, yd - 0.35], color=POOLED_COLOR, zorder=4)
        if random and show_pi and np.isfinite(r.pi_low):
            ax.hlines(yd, f(r.pi_low), f(r.pi_high), color=PI_COLOR, lw=2.5, zorder=2)
            pil, pih = float(f(r.pi_low)), float(f(r.pi_high))
            ax.text(1.02, yd - 0.75, f"PI [{pil:.{digits}f}, {pih:.{digits}f}]",
                    transform=ax.get_yaxis_transform(), ha="left",
                    va="center", color=PI_COLOR, family="DejaVu Sans Mono", fontsize=8)
        ax.axvline(refline, color=NULL_COLOR, lw=0.8, ls="--", zorder=1)
        ax.axhline(1.25, color="#999999", lw=0.6)
        if logx:
            from matplotlib.ticker import FuncFormatter, LogLocator

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
        # text columns (axes-fraction x, data y)
        trans = ax.get_yaxis_transform()
        fmt = f"{{:.{digits}f}}"
        for y, a, b, c, lab in zip(ys, f(yi), f(lo), f(hi), labels):
            ax.text(-0.02, y, lab, transform=trans, ha="right", va="center")
            ax.text(1.02, y, f"{fmt.format(a)} [{fmt.format(b)}, {fmt.format(c)}]", transform=trans,
                    ha="left", va="center", family="DejaVu Sans Mono")
        model = f"RE Model ({r.method})" if random else f"FE Model ({r.method})"
        ax.text(-0.02, yd, model, transform=trans, ha="right", va="center", fontweight="bold")
        ax.text(1.02, yd, f"{fmt.format(ex)} [{fmt.format(cl)}, {fmt.format(ch)}]", transform=trans,
                ha="left", va="center", fontweight="bold", family="DejaVu Sans Mono")
        ax.text(-0.02, n_rows - 0.6, "Study", transform=trans, ha="right", va="center", fontweight="bold")
        ax.text(1.02, n_rows - 0.6, f"Estimate [{int(round(100 * r.level))}% CI]", transform=trans, ha="left",
                va="center", fontweight="bold")
        if show_het:
            het = f"Q = {r.q:.2f}, df = {max(r.k - 1, 0)}, p {_p(r.q_pvalue)}\nI\u00b2 = {r.i2:.1f}%"
            if random:
                het += f", \u03c4\u00b2 = {r.tau2:.{max(digits, 3)}f}"
            ax.text(-0.02, yd - 0.95, het, transform=trans, ha="right", va="center", fontsize=7.5)
        ax.set_ylim(-1.2, n_rows)
        ax.set_yticks([])
        ax.set_xlabel(xlabel or (_XLABELS.get(str(r.measure).upper(), "Observed Outcome") +
                                 (" (log scale)" if logx else "")))
        if title:
            ax.set_title(title)
        fig.subplots_adjust(left=0.32, right=0.72, bottom=0.12 if n_rows > 8 else 0.2, top=0.95)
    return fig


def _p(p):
    return "< 0.0001" if p < 1e-4 else f"= {p:.4f}"
