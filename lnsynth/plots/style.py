"""Shared plotting style: Okabe-Ito colour-blind-safe palette and one rc style.

Computation modules never import this package; plotting is opt-in.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import matplotlib
import matplotlib.pyplot as plt

# Okabe & Ito (2008) colour-universal-design palette
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
PALETTE = tuple(OKABE_ITO.values())[1:] + (OKABE_ITO["black"],)

STUDY_COLOR = OKABE_ITO["blue"]
POOLED_COLOR = OKABE_ITO["vermillion"]
PI_COLOR = OKABE_ITO["black"]  # the prediction interval: a clear dark bar, never a pale one
NULL_COLOR = "#555555"

RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.spines.left": False,
    "axes.prop_cycle": matplotlib.cycler(color=list(PALETTE)),
    "savefig.dpi": 150,
    "figure.dpi": 100,
}


@contextmanager
def lnsynth_style():
    """Context manager applying the lnsynth rc style."""
    with plt.rc_context(RC):
        yield


# --------------------------------------------------------------------------- fonts, ticks, layout
FONT_FAMILY = RC["font.family"]
FONT_SIZE = RC["font.size"]

_RATIO_TICK_SETS = (
    (2.5, (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 1.75, 2.0)),
    (24.0, tuple(2.0 ** e for e in range(-8, 9))),  # 0.25, 0.5, 1, 2, 4 ...
    (math.inf, tuple(m * 10.0 ** e for e in range(-6, 7) for m in (1.0, 2.0, 5.0))),
    (math.inf, tuple(10.0 ** e for e in range(-6, 7))),
)


def ratio_ticks(lo: float, hi: float, max_ticks: int = 8) -> list:
    """Readable ticks for a ratio (log) axis spanning ``lo``..``hi``: 0.25, 0.5, 1, 2, 4 ... for a
    moderate span, 0.5 ... 2 in finer steps for a narrow one, 1-2-5 decades for a wide one."""
    lo, hi = float(min(lo, hi)), float(max(lo, hi))
    if not (lo > 0 and math.isfinite(hi)):
        return [1.0]
    for span, ticks in _RATIO_TICK_SETS:
        if hi / lo <= span:
            out = [t for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]
            if len(out) <= max_ticks:
                break
    if len(out) > max_ticks:  # every step-th tick, keeping the one nearest 1
        step = -(-len(out) // max_ticks)
        i1 = min(range(len(out)), key=lambda i: abs(math.log(out[i])))
        out = [t for i, t in enumerate(out) if (i - i1) % step == 0]
    return out or [1.0]


def plain_number(x: float) -> str:
    """A tick label without scientific notation: 0.25, 0.5, 1, 2, 4, 1000."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    if abs(x) >= 1e6 or abs(x) < 1e-4:
        return f"{x:g}"
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def plain_log_axis(ax, lo: float, hi: float, axis: str = "x") -> None:
    """Log scale on ``axis`` with limits ``lo``..``hi`` and plain tick labels (never 4x10^-1)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    a = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    (ax.set_xlim if axis == "x" else ax.set_ylim)(lo, hi)
    a.set_major_locator(FixedLocator(ratio_ticks(lo, hi)))
    a.set_major_formatter(FuncFormatter(lambda x, _: plain_number(x)))
    a.set_minor_locator(NullLocator())
    a.set_minor_formatter(NullFormatter())


def renderer(fig):
    """The figure's renderer (drawing the canvas once if needed)."""
    canvas = fig.canvas
    if not hasattr(canvas, "get_renderer"):  # a bare Figure(): attach an Agg canvas
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = FigureCanvasAgg(fig)
    return canvas.get_renderer()


def text_size(fig, text) -> tuple:
    """(width, height) of a Text artist in inches."""
    bb = text.get_window_extent(renderer(fig))
    return bb.width / fig.dpi, bb.height / fig.dpi


def freeze_fonts(fig, family: str = FONT_FAMILY) -> None:
    """One font family for every text of ``fig``, and tick labels keep their present size and family
    however the rc settings change before the figure is drawn (matplotlib creates ticks lazily)."""
    from matplotlib.text import Text

    for t in fig.findobj(Text):
        t.set_fontfamily(family)
    for ax in fig.axes:
        for axis, name in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            ticks = axis.get_major_ticks()
            size = ticks[0].label1.get_fontsize() if ticks else FONT_SIZE
            ax.tick_params(axis=name, which="both", labelsize=size, labelfontfamily=family)
            for t in axis.get_ticklabels(which="both"):
                t.set_fontfamily(family)


def fit_canvas(fig, pad: float = 0.06, gap: float = 0.1, iterations: int = 4) -> None:
    """Grow the figure (never shrink it) so that every text lies on the canvas and the decorations
    (tick labels, axis labels, titles, outside texts, legends) of neighbouring axes do not collide.

    Extents are measured with the renderer; axes keep their size in inches.  Figure-level texts and
    legends keep their place relative to the figure edge they are nearest to, and the axes are moved
    clear of them.
    """
    from matplotlib.text import Text

    if getattr(fig, "get_layout_engine", lambda: None)() is not None:
        fig.set_layout_engine("none")
    for _ in range(iterations):
        r = renderer(fig)
        W, H = fig.get_size_inches()
        dpi = fig.dpi
        items = []
        for ax in fig.axes:
            if not ax.get_visible():
                continue
            p = ax.get_position()
            box = [p.x0 * W, p.y0 * H, p.x1 * W, p.y1 * H]
            tb = ax.get_tightbbox(r)
            if tb is None:
                continue
            deco = [max(0.0, box[0] - tb.x0 / dpi), max(0.0, box[1] - tb.y0 / dpi),
                    max(0.0, tb.x1 / dpi - box[2]), max(0.0, tb.y1 / dpi - box[3])]
            items.append([ax, box, deco])
        if not items:
            return
        # separate neighbours left-to-right, then bottom-to-top
        for lo_i, hi_i, d_lo, d_hi in ((0, 2, 0, 2), (1, 3, 1, 3)):
            o_lo, o_hi = (1, 3) if lo_i == 0 else (0, 2)
            items.sort(key=lambda it: it[1][lo_i])
            shifts = []
            for j, (ax, box, deco) in enumerate(items):
                s = 0.0
                for i in range(j):
                    a_box, a_deco, a_s = items[i][1], items[i][2], shifts[i]
                    s = max(s, a_s)
                    if a_box[hi_i] <= box[lo_i] + 1e-6 and min(a_box[o_hi], box[o_hi]) > max(a_box[o_lo], box[o_lo]):
                        need = a_box[hi_i] + a_s + a_deco[d_hi] + gap + deco[d_lo] - box[lo_i]
                        s = max(s, need)
                shifts.append(s)
            for (ax, box, deco), s in zip(items, shifts):
                box[lo_i] += s
                box[hi_i] += s
        # reserves for figure-level texts and legends, by the edge they sit at
        res = {"b": pad, "t": pad, "w": 0.0}
        outside = [t for t in fig.texts if isinstance(t, Text) and t.get_visible() and t.get_text().strip()]
        outside += [lg for lg in fig.legends if lg.get_visible()]
        for a in outside:
            bb = a.get_window_extent(r)
            y0, y1 = bb.y0 / dpi, bb.y1 / dpi
            res["w"] = max(res["w"], bb.width / dpi + 2 * pad)
            if (y0 + y1) / 2 < H / 2:
                res["b"] = max(res["b"], y1 + gap)
            else:
                res["t"] = max(res["t"], H - y0 + gap)
        L = min(b[0] - d[0] for _, b, d in items)
        R = max(b[2] + d[2] for _, b, d in items)
        B = min(b[1] - d[1] for _, b, d in items)
        T = max(b[3] + d[3] for _, b, d in items)
        dx = max(0.0, pad - L)
        dy = max(0.0, res["b"] - B)
        # content moves by (dx, dy); the canvas must reach its far edges (never shrinking)
        newW = max(W, R + dx + pad, res["w"])
        newH = max(H, T + dy + res["t"])
        moved = any(abs(b[0] - ax.get_position().x0 * W) > 1e-6 or abs(b[1] - ax.get_position().y0 * H) > 1e-6
                    for ax, b, _ in items)
        if dx < 1e-3 and dy < 1e-3 and newW - W < 1e-3 and newH - H < 1e-3 and not moved:
            return
        extra_x = (newW - W) / 2 if newW - W > 1e-3 and R + dx <= W - pad else 0.0  # widened by a figure text
        for ax, b, _ in items:
            ax.set_position([(b[0] + dx + extra_x) / newW, (b[1] + dy) / newH,
                             (b[2] - b[0]) / newW, (b[3] - b[1]) / newH])
        fig.set_size_inches(newW, newH, forward=False)


def finalize(fig, *, tight: bool = False, pad: float = 0.06, rect=None) -> None:
    """Fonts frozen to the house family, optional ``tight_layout``, then :func:`fit_canvas`."""
    import warnings

    freeze_fonts(fig)
    if tight:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig.tight_layout(**({"rect": rect} if rect is not None else {}))
    fit_canvas(fig, pad=pad)


def place_point_labels(ax, xs, ys, labels, *, fontsize=7, avoid=(), distances=(4, 10, 18, 28, 40, 54, 70, 90, 115, 140)):
    """Annotate points with labels that do not overlap each other (nor the Text artists in
    ``avoid``): for each point, the first offset (NE, NW, SE, SW, E, W, N, S, then further out) whose
    measured box is free and inside the axes; labels set apart from their point get a leader line.
    A label with no free place keeps the nearest offset."""
    from matplotlib.text import Text

    fig = ax.figure
    ax.set_xlim(ax.get_xlim())  # autoscaling is lazy: fix the limits the labels are measured against
    ax.set_ylim(ax.get_ylim())
    r = renderer(fig)
    ab = ax.get_window_extent(r)
    taken = [t.get_window_extent(r) for t in avoid]
    dirs = ((1, 1, "left", "bottom"), (-1, 1, "right", "bottom"), (1, -1, "left", "top"), (-1, -1, "right", "top"),
            (1, 0, "left", "center"), (-1, 0, "right", "center"), (0, 1, "center", "bottom"), (0, -1, "center", "top"),
            (1, 0.5, "left", "bottom"), (1, -0.5, "left", "top"), (0.5, 1, "left", "bottom"), (0.5, -1, "left", "top"))
    out = []
    order = sorted(range(len(labels)), key=lambda i: (-float(ys[i]), float(xs[i])))
    for i in order:
        probe = ax.annotate(str(labels[i]), (xs[i], ys[i]), xytext=(0, 0), textcoords="offset points",
                            fontsize=fontsize, annotation_clip=False)
        best = None
        for d in distances:
            for ux, uy, ha, va in dirs:
                probe.set_position((ux * d, uy * d))
                probe.set_ha(ha)
                probe.set_va(va)
                probe.update_positions(r)
                bb = Text.get_window_extent(probe, r)
                inside = bb.x0 >= ab.x0 and bb.x1 <= ab.x1 and bb.y0 >= ab.y0 and bb.y1 <= ab.y1
                if inside and not any(bb.overlaps(t) for t in taken):
                    best = (ux * d, uy * d, ha, va, d)
                    break
            if best is not None:
                break
        probe.remove()
        if best is None:
            best = (distances[0], distances[0], "left", "bottom", distances[0])
        dx, dy, ha, va, d = best
        kw = {"arrowprops": dict(arrowstyle="-", color="#888888", lw=0.5, shrinkA=0, shrinkB=3)} if d > 10 else {}
        ann = ax.annotate(str(labels[i]), (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                          fontsize=fontsize, ha=ha, va=va, annotation_clip=False, **kw)
        ann.update_positions(r)
        taken.append(Text.get_window_extent(ann, r))
        out.append(ann)
    return out


def save(fig, paths, dpi: int = 150, pad_inches: float = 0.1) -> list:
    """Write ``fig`` to each of ``paths`` (one figure, several formats), trimmed to its content.

    ``bbox_inches="tight"`` makes every ``savefig`` draw the figure twice (once to find the
    extent, once to write); here the extent is measured once and reused for every format,
    so writing png + svg + pdf costs four draws instead of six.  The figure is closed after.
    """
    import matplotlib.pyplot as plt
    from pathlib import Path

    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    bbox = fig.get_tightbbox(renderer(fig)).padded(pad_inches)
    for p in paths:
        fig.savefig(p, bbox_inches=bbox, dpi=dpi)
    plt.close(fig)
    return paths
