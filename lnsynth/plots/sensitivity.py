"""Figures for the sensitivity report (:mod:`lnsynth.analyses.sensitivity`): per question, the
estimate of every analysis with its 95% CI (forest-like), and leave-one-out."""
from __future__ import annotations

import math
import textwrap

from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from .style import NULL_COLOR, POOLED_COLOR, STUDY_COLOR, finalize, lnsynth_style, text_size

_HEADER, _EST, _TEXT = "header", "est", "text"
_WRAP = 40  # row labels wrap at this many characters
_TITLE_WRAP = 90
_EXTRA_LINE = 0.6  # data units per extra line of a wrapped label (a row is 1 unit)
_ROW_IN = 0.24  # inches per data unit
_AXES_W = 4.8  # plot area width, inches: labels and CI texts are added around it


def _short(label: str, n: int = 60) -> str:
    """An outcome label without its parenthetical gloss, cut to ``n`` characters."""
    s = label.split(" (")[0] if len(label) > n else label
    return s if len(s) <= n else s[: n - 1] + "…"


_TICK_SETS = ((2.5, (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 1.75, 2.0)),
              (8.0, (0.25, 0.33, 0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0)),
              (300.0, (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)),
              (math.inf, (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)))


def _ticks(lo: float, hi: float) -> list[float]:
    """Readable ratio-scale ticks inside (lo, hi), denser for a narrow axis; 1 is always inside."""
    for span, ticks in _TICK_SETS:
        if hi / lo <= span:
            return [t for t in ticks if lo <= t <= hi]
    return [1.0]


def _ci_text(r) -> str:
    if r.estimate is None:
        return "not estimable"
    return f"{r.estimate:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]"


def _title(report, question: str) -> str:
    return dict(report.questions).get(question, question)


def _k(k) -> str:
    """``(k = 3)`` with no-break spaces, so wrapping never splits it."""
    return f"(k\u00a0=\u00a0{k})"


def _wrap(label: str, width: int = _WRAP) -> str:
    """``label`` wrapped at ``width`` characters; continuation lines keep the leading indent."""
    indent = label[: len(label) - len(label.lstrip())]
    lines = textwrap.wrap(label.strip(), width=max(8, width - len(indent)), break_on_hyphens=True) or [""]
    return "\n".join(indent + ln for ln in lines)


def _positions(labels) -> tuple[list[float], list[float], float]:
    """Row centres (top row highest), row heights in data units (a wrapped label gets more room)
    and the total height; single-line rows sit at ``n, n - 1, ..., 1`` as before."""
    heights = [1.0 + _EXTRA_LINE * lab.count("\n") for lab in labels]
    total = sum(heights)
    ys, cur = [], 0.0
    for h in heights:
        ys.append(total - (cur + h / 2) + 0.5)
        cur += h
    return ys, heights, total


def _draw(rows, title: str, xlabel: str, ax=None, bands=()):
    """Forest-like panel: ``rows`` are (kind, label, row, is_reference); ``bands`` (first, last, lo, hi)
    shade rows ``first..last`` (indices into ``rows``) between ``lo`` and ``hi``.

    Labels are wrapped at ~40 characters; a figure of its own gets a fixed-size plot area (its height
    from the number of text lines) and the canvas is then grown to the measured text
    (:func:`~lnsynth.plots.style.finalize`), so a long label never squeezes the plot.  Callers
    finalize after adding figure-level texts (see :func:`_finish`).
    """
    import matplotlib.pyplot as plt

    labels = [_wrap(lab) for _, lab, _, _ in rows]
    ys, heights, total = _positions(labels)
    with lnsynth_style():
        own = ax is None
        if own:
            h = _ROW_IN * (total + 1.7)
            fig = plt.figure(figsize=(_AXES_W + 0.2, h + 0.2))
            ax = fig.add_axes([0.1 / (_AXES_W + 0.2), 0.1 / (h + 0.2), _AXES_W / (_AXES_W + 0.2), h / (h + 0.2)])
        else:
            fig = ax.figure
        vals = []
        for y, (kind, _, r, ref) in zip(ys, rows):
            if kind != _EST or r is None or r.estimate is None:
                continue
            col = POOLED_COLOR if ref else STUDY_COLOR
            lo, hi = r.ci_low, r.ci_high
            vals += [lo, hi]
            ax.plot([lo, hi], [y, y], color=col, lw=1.2, solid_capstyle="butt")
            single = r.k == 1
            ax.plot([r.estimate], [y], marker="D" if ref else "s", color=col, ms=5 if not single else 4.5,
                    mfc="white" if single else col, mew=1.0, ls="none")
        for a, b, lo, hi in bands:
            y0, y1 = ys[b] - heights[b] / 2 + 0.1, ys[a] + heights[a] / 2 - 0.1
            ax.fill_betweenx([y0, y1], lo, hi, color=POOLED_COLOR, alpha=0.10, lw=0)
        ax.set_xscale("log")
        if vals:
            lo, hi = min(vals), max(vals)
            lo, hi = min(lo, 0.9), max(hi, 1.1)
            pad = (math.log(hi) - math.log(lo)) * 0.06
            ax.set_xlim(math.exp(math.log(lo) - pad), math.exp(math.log(hi) + pad))
            ax.xaxis.set_major_locator(FixedLocator(_ticks(*ax.get_xlim())))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.axvline(1.0, color=NULL_COLOR, lw=0.8, ls="--")
        ax.set_yticks(ys)
        ax.set_yticklabels(labels, fontsize=8)
        for tick, (kind, _, r, _) in zip(ax.get_yticklabels(), rows):
            if kind == _HEADER:
                tick.set_fontweight("bold")
            elif kind == _TEXT or (r is not None and r.estimate is None):
                tick.set_fontstyle("italic")
                tick.set_color("#555555")
        tr = ax.get_yaxis_transform()  # x in axes coordinates, y in data
        for y, (kind, _, r, _) in zip(ys, rows):
            if kind == _EST and r is not None:
                ax.text(1.02, y, _ci_text(r), transform=tr, fontsize=8, va="center", ha="left",
                        color="#555555" if r.estimate is None else "black", clip_on=False)
        ax.text(1.02, total + 0.9, "estimate [95% CI]", transform=tr, fontsize=8, va="center", ha="left",
                fontweight="bold", clip_on=False)
        ax.set_ylim(0.4, total + 1.3)
        ax.set_xlabel(xlabel)
        t = ax.set_title(_wrap(title, _TITLE_WRAP), fontsize=9.5)
        if own:  # a title wider than the plot and its labels is wrapped narrower, from its measured width
            limit = _AXES_W + 3.0
            w, _ = text_size(fig, t)
            if w > limit:
                t.set_text(_wrap(title, max(30, int(_TITLE_WRAP * limit / w))))
        ax.tick_params(axis="y", length=0)
    return fig


def _finish(fig, own: bool):
    """Grow a figure of its own to its measured text (fonts frozen to the house family)."""
    if own:
        with lnsynth_style():
            finalize(fig)
    return fig


def _xlabel(rows) -> str:
    ms = sorted({r.measure for r in rows})
    name = {"RR": "Risk ratio", "OR": "Odds ratio", "RD": "Risk difference"}
    return (" / ".join(name.get(m, m) for m in ms) or "Effect") + " (intervention vs comparator; log scale)"


def sensitivity_plot(report, question: str, ax=None):
    """Every analysis of one question except leave-one-out: estimate and 95% CI per row, grouped by
    outcome; the answer (*main*) in the pooled colour, single-trial results as open squares, rows that
    are not estimable listed with their label in grey italics.

    Returns ``None`` when no outcome of the question has an estimate.
    """
    rows = [r for r in report.question_rows(question) if r.analysis != "leave-one-out"]
    outcomes = [o for o in dict.fromkeys(r.outcome for r in rows)
                if any(r.outcome == o and r.analysis == "main" and r.estimate is not None for r in rows)]
    if not outcomes:
        return None
    lines = []
    for o in outcomes:
        orows = [r for r in rows if r.outcome == o]
        lines.append((_HEADER, _short(orows[0].outcome_label), None, False))
        for r in orows:
            lab = "answer (main)" if r.analysis == "main" else f"{r.analysis}: {r.subgroup}"
            lines.append((_EST, f"  {lab}  {_k(r.k)}", r, r.analysis == "main"))
    skipped = [r.outcome_label for r in rows if r.analysis == "main" and r.estimate is None]
    title = f"Sensitivity analyses: {_title(report, question)}"
    fig = _draw(lines, title, _xlabel(rows), ax=ax)
    if skipped:
        note = "Not estimable (see table): " + "; ".join(_short(s, 70) for s in skipped)
        fig.text(0.01, 0.005, textwrap.fill(note, 110), fontsize=7, color="#555555", ha="left", va="bottom")
    return _finish(fig, ax is None)


def leave_one_out_plot(report, question: str, ax=None):
    """Leave-one-out for one question: per outcome with k >= 2, the answer and the estimate with each
    trial omitted (shaded band: the answer's 95% CI).  Returns ``None`` when no outcome has k >= 2."""
    rows = report.question_rows(question)
    lines, spans = [], []
    for o in dict.fromkeys(r.outcome for r in rows):
        loo = [r for r in rows if r.outcome == o and r.analysis == "leave-one-out" and r.k >= 1]
        main = next(r for r in rows if r.outcome == o and r.analysis == "main")
        if not loo or main.estimate is None:
            continue
        lines.append((_HEADER, _short(main.outcome_label), None, False))
        start = len(lines)
        lines.append((_EST, f"  all trials  {_k(main.k)}", main, True))
        for r in loo:
            lines.append((_EST, f"  {r.subgroup}  {_k(r.k)}", r, False))
        spans.append((start, len(lines) - 1, main.ci_low, main.ci_high))
    if not lines:
        return None
    fig = _draw(lines, f"Leave-one-out: {_title(report, question)}", _xlabel(rows) + "; band: answer's 95% CI",
                ax=ax, bands=spans)
    return _finish(fig, ax is None)


def sensitivity_figures(report) -> list:
    """Every figure of a sensitivity report: per question, the analyses panel then leave-one-out
    (questions without an estimate, or without an outcome of k >= 2 for leave-one-out, give none).

    Parameters
    ----------
    report : lnsynth.analyses.sensitivity.SensitivityReport
        Output of :func:`lnsynth.analyses.sensitivity.run_sensitivity`.

    Returns
    -------
    list of matplotlib.figure.Figure
    """
    figs = []
    for q, _ in report.questions:
        for fn in (sensitivity_plot, leave_one_out_plot):
            f = fn(report, q)
            if f is not None:
                figs.append(f)
    return figs
