"""PRISMA 2020 flow diagram drawn from :class:`lnsynth.evidence.search.Prisma` (no counts typed here).

The figure is sized from its text: every box is measured with the renderer first, the columns
take the widest box, the rows the tallest, and the canvas is the sum plus fixed gaps, so a long
reason list or source name grows the figure instead of overflowing a box.

Uses ``matplotlib.figure.Figure`` directly (no pyplot state, no GUI backend).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .style import FONT_FAMILY, FONT_SIZE, OKABE_ITO, freeze_fonts, lnsynth_style, text_size

if TYPE_CHECKING:  # pragma: no cover
    from lnsynth.evidence.search import Prisma

PAD = 0.12  # inches of padding inside a box
COL_GAP = 0.55  # between the main column and the exclusion column
ROW_GAP = 0.38  # between rows
BAR_W = 0.32  # stage label bar
MARGIN = 0.15
LINE_SPACING = 1.35
FILL = "#EAF4FB"
EDGE = OKABE_ITO["blue"]
STAGE_FILL = OKABE_ITO["sky_blue"]


def _label(reason: str) -> str:
    return " ".join("CNI" if w == "cni" else w for w in reason.split("_"))


def _lines(head: str, items: dict[str, int]) -> str:
    ordered = sorted(items.items(), key=lambda kv: (-kv[1], kv[0]))
    return "\n".join([head] + [f"   {_label(k)} (n = {v})" for k, v in ordered])


def flow_boxes(flow: "Prisma") -> list[tuple[str, Optional[str], str]]:
    """The rows of the diagram: ``(main box text, exclusion box text or None, stage)``."""
    databases = {k: v for k, v in flow.identified.items() if k not in flow.identified_other}
    ident = _lines(f"Records identified (n = {flow.identified_total})\nfrom searches:", databases)
    if flow.identified_other:
        ident += "\n" + _lines("from other methods:", flow.identified_other)
    return [
        (ident, f"Records removed before screening:\n   duplicate records (n = {flow.duplicates}),\n"
               "   incl. pages returned by several queries", "Identification"),
        (f"Records screened\n(n = {flow.screened})",
         _lines(f"Records excluded (n = {flow.excluded_screening}):", flow.excluded_screening_reasons), "Screening"),
        (f"Reports sought for retrieval\n(n = {flow.sought})", f"Reports not retrieved\n(n = {flow.not_retrieved})",
         "Screening"),
        (f"Reports assessed for eligibility\n(n = {flow.assessed})",
         _lines(f"Reports excluded (n = {sum(flow.excluded_full.values())}):", flow.excluded_full), "Screening"),
        (f"Studies included in review (n = {flow.studies_included})\n"
         f"Reports of included studies (n = {flow.reports_included})", None, "Included"),
    ]


def _measure(texts: list[str]) -> list[tuple[float, float]]:
    probe = Figure()
    out = []
    for s in texts:
        t = probe.text(0, 0, s, fontsize=FONT_SIZE, family=FONT_FAMILY, linespacing=LINE_SPACING)
        out.append(text_size(probe, t))
    return out


def prisma_figure(flow: "Prisma", title: Optional[str] = "PRISMA 2020 flow diagram") -> Figure:
    """The PRISMA 2020 flow diagram of ``flow``.

    Parameters
    ----------
    flow
        Counts from :func:`lnsynth.evidence.search.prisma`.
    title
        Figure title (``None``: no title).

    Returns
    -------
    matplotlib.figure.Figure
        Sized from its text (inches), fonts frozen to the house family.
    """
    rows = flow_boxes(flow)
    with lnsynth_style():
        left = _measure([r[0] for r in rows])
        right = _measure([r[1] or "" for r in rows])
        (tw, th), = _measure([title or ""])
        lw = max(w for w, _ in left) + 2 * PAD
        rw = max((w for (w, _), r in zip(right, rows) if r[1]), default=0.0) + 2 * PAD
        heights = [max(lh, rh if r[1] else 0.0) + 2 * PAD for (_, lh), (_, rh), r in zip(left, right, rows)]
        stages = [r[2] for r in rows]
        for stage, (sw, _) in zip(dict.fromkeys(stages), _measure(list(dict.fromkeys(stages)))):
            idx = [i for i, s in enumerate(stages) if s == stage]
            span = sum(heights[i] for i in idx) + ROW_GAP * (len(idx) - 1)
            if span < sw + 0.2:  # the rotated stage label must fit its bar
                heights[idx[-1]] += sw + 0.2 - span
        title_h = (th + 0.2) if title else 0.0
        W = max(MARGIN + BAR_W + 0.15 + lw + COL_GAP + rw + MARGIN, tw + 2 * MARGIN)
        H = 2 * MARGIN + title_h + sum(heights) + ROW_GAP * (len(rows) - 1)
        fig = Figure(figsize=(W, H))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, W)
        ax.set_ylim(0, H)
        ax.axis("off")
        x_main = MARGIN + BAR_W + 0.15
        x_right = x_main + lw + COL_GAP
        y = H - MARGIN - title_h
        if title:
            ax.text(W / 2, H - MARGIN, title, ha="center", va="top", fontsize=FONT_SIZE + 1, fontweight="bold",
                    family=FONT_FAMILY)
        centres, spans = [], {}
        for (main, excl, stage), (_, lh), (_, rh), h in zip(rows, left, right, heights):
            top, bottom = y, y - h
            _box(ax, x_main, top - (lh + 2 * PAD), lw, lh + 2 * PAD, main)
            if excl:
                _box(ax, x_right, top - (rh + 2 * PAD), rw, rh + 2 * PAD, excl)
                yc = top - min(lh, rh) / 2 - PAD
                ax.add_patch(FancyArrowPatch((x_main + lw, yc), (x_right, yc), arrowstyle="-|>", mutation_scale=10,
                                             color=EDGE, lw=1))
            centres.append((top, top - (lh + 2 * PAD)))
            lo, hi = spans.get(stage, (bottom, top))
            spans[stage] = (min(lo, bottom), max(hi, top))
            y = bottom - ROW_GAP
        for (_, b0), (t1, _) in zip(centres, centres[1:]):
            ax.add_patch(FancyArrowPatch((x_main + lw / 2, b0), (x_main + lw / 2, t1), arrowstyle="-|>",
                                         mutation_scale=10, color=EDGE, lw=1))
        for stage, (lo, hi) in spans.items():
            ax.add_patch(FancyBboxPatch((MARGIN, lo), BAR_W, hi - lo, boxstyle="round,pad=0,rounding_size=0.05",
                                        fc=STAGE_FILL, ec="none"))
            ax.text(MARGIN + BAR_W / 2, (lo + hi) / 2, stage, rotation=90, ha="center", va="center",
                    fontsize=FONT_SIZE, fontweight="bold", family=FONT_FAMILY)
        freeze_fonts(fig)
    return fig


def _box(ax, x: float, y: float, w: float, h: float, text: str) -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="square,pad=0", fc=FILL, ec=EDGE, lw=1))
    ax.text(x + PAD, y + h / 2, text, ha="left", va="center", fontsize=FONT_SIZE, family=FONT_FAMILY,
            linespacing=LINE_SPACING)
