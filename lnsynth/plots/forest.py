"""Forest plots in the layout of RevMan / metafor's ``forest.rma``.

Columns from the left: study label, optionally the arm data (events/N, or mean, SD, N per arm),
then the plot (square sized by weight, CI whisker), then the weight and the effect with its CI.
Under the studies: the pooled estimate as a diamond and, for random-effects models, the
prediction interval as a dark bar in its own row; under the axis: "favours" labels, the axis
label, the heterogeneity line and the test for the overall effect.  A single study gets no model
row, no diamond and no heterogeneity line.

The figure is sized from the measured extents of its texts (every column as wide as its widest
cell), so no label is ever clipped; ratio measures use a log axis with plain ticks (0.25, 0.5, 1,
2, 4).  :func:`subgroup_forest_plot` adds subgroup headers, subgroup diamonds with their
heterogeneity and the test for subgroup differences.
"""
from __future__ import annotations

import math

import numpy as np

from .. import registry
from .style import (FONT_FAMILY, FONT_SIZE, NULL_COLOR, OKABE_ITO, PI_COLOR, POOLED_COLOR, STUDY_COLOR,
                    fit_canvas, freeze_fonts, lnsynth_style, plain_log_axis, renderer)

_FE = registry.fixed_effect_methods()  # FE, MH, PETO
_XLABELS = {"RR": "Risk Ratio", "OR": "Odds Ratio", "PETO": "Odds Ratio (Peto)", "IRR": "Incidence Rate Ratio",
            "ROM": "Ratio of Means", "HR": "Hazard Ratio", "RD": "Risk Difference", "MD": "Mean Difference",
            "SMD": "Standardized Mean Difference"}
_ROW_H = 0.21      # inches per table row
_GAP = 0.16        # inches between columns
_PAD = 0.08        # inches around the content
_SMALL = FONT_SIZE - 1

# arm-data column names accepted (first match wins): metafor's and lnsynth's
_BIN = {"e1": ("events_treat", "events_int", "ai", "x1i"), "n1": ("n_treat", "n_int", "n1i"),
        "e2": ("events_ctrl", "ci", "x2i"), "n2": ("n_ctrl", "n2i")}
_CONT = {"m1": ("mean_treat", "m1i"), "s1": ("sd_treat", "sd1i"), "n1": ("n_treat", "n_int", "n1i"),
         "m2": ("mean_ctrl", "m2i"), "s2": ("sd_ctrl", "sd2i"), "n2": ("n_ctrl", "n2i")}


def _single(result):
    # a batch result: plot only when it holds exactly one analysis
    if hasattr(result, "__len__") and hasattr(result, "__getitem__") and not hasattr(result, "df"):
        if len(result) != 1:
            raise ValueError("result: forest_plot draws one analysis; index the batch (result[i]) first")
        return result[0]
    return result


def _p(p):
    return "< 0.0001" if p < 1e-4 else f"= {p:.4f}"


def _p_short(p):
    if not np.isfinite(p):
        return "p = NA"
    return "p < 0.0001" if p < 1e-4 else (f"p = {p:.4f}" if p < 0.001 else f"p = {p:.3f}")


def _num(x, digits=1):
    x = float(x)
    if not np.isfinite(x):
        return ""
    return str(int(round(x))) if abs(x - round(x)) < 1e-9 else f"{x:.{digits}f}"


def _col(data, names, what):
    for n in names:
        if n in data:
            return np.asarray(data[n], dtype=float)
    return None


def _arm_columns(arm_data, k, arm_labels, digits):
    """The arm columns: list of (group label, [(sub-header, [cells], total cell)])."""
    if arm_data is None:
        return []
    data = arm_data
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        data = {c: data[c].to_numpy() for c in data.columns}
    c = {key: _col(data, names, key) for key, names in _CONT.items()}
    b = {key: _col(data, names, key) for key, names in _BIN.items()}
    if b["n1"] is None and "ai" in data and "bi" in data:
        b["n1"] = np.asarray(data["ai"], float) + np.asarray(data["bi"], float)
    if b["n2"] is None and "ci" in data and "di" in data:
        b["n2"] = np.asarray(data["ci"], float) + np.asarray(data["di"], float)
    if all(v is not None for v in c.values()):
        kind = "cont"
    elif all(v is not None for v in b.values()):
        kind = "bin"
    else:
        raise ValueError("arm_data: expected events/N per arm (events_treat, n_treat, events_ctrl, n_ctrl, or "
                         "metafor's ai, n1i, ci, n2i) or mean/SD/N per arm (mean_treat, sd_treat, n_treat, "
                         "mean_ctrl, sd_ctrl, n_ctrl, or m1i, sd1i, n1i, m2i, sd2i, n2i)")
    cols = c if kind == "cont" else b
    for key, v in cols.items():
        if len(v) != k:
            raise ValueError(f"arm_data: {len(v)} rows for {k} studies")
    out = []
    for arm, lab in zip(("1", "2"), arm_labels):
        if kind == "bin":
            e, n = cols["e" + arm], cols["n" + arm]
            cells = [f"{_num(a)}/{_num(m)}" for a, m in zip(e, n)]
            tot = f"{_num(np.nansum(e))}/{_num(np.nansum(n))}"
            out.append((lab, [("Events/N", cells, tot, np.nansum(e), np.nansum(n))]))
        else:
            m, s, n = cols["m" + arm], cols["s" + arm], cols["n" + arm]
            out.append((lab, [("Mean", [f"{x:.{digits}f}" for x in m], "", None, None),
                              ("SD", [f"{x:.{digits}f}" for x in s], "", None, None),
                              ("N", [_num(x) for x in n], _num(np.nansum(n)), None, np.nansum(n))]))
    return out, kind


def _scale(r, transf):
    if transf is None and getattr(r, "is_ratio", False):
        transf = "exp"
    if transf == "exp":
        return np.exp, True
    if transf is None or transf is False:
        return (lambda x: np.asarray(x, dtype=float)), False
    if callable(transf):
        return transf, False
    raise ValueError(f"transf: expected None, 'exp' or a callable, got {transf!r}")


def _crit(level):
    from lnsynth.stats import critical_value

    return critical_value(level)


def _het_text(r, random, digits):
    """Heterogeneity and overall-effect lines (RevMan wording, metafor numbers)."""
    lines = []
    het = []
    if random:
        het.append(f"\u03c4\u00b2 = {r.tau2:.{max(digits, 3)}f}")
    het += [f"I\u00b2 = {r.i2:.1f}%", f"Q = {r.q:.2f}, df = {max(r.k - 1, 0)} ({_p_short(r.q_pvalue)})"]
    lines.append("Heterogeneity: " + "; ".join(het))
    stat = "t" if getattr(r, "test", "z") == "knha" else "z"
    lines.append(f"Test for overall effect: {stat} = {r.zval:.2f} ({_p_short(r.pvalue)})")
    return lines


class _Table:
    """Rows of a forest table and the machinery that lays them out and draws them."""

    def __init__(self, f, logx, digits):
        self.f, self.logx, self.digits = f, logx, digits
        self.rows = []  # dict(kind, label, cells{col: str}, est/lo/hi (display scale), w, bold, italic)

    def add(self, kind, label="", cells=None, **kw):
        self.rows.append(dict(kind=kind, label=label, cells=cells or {}, **kw))


def _effect_cell(est, lo, hi, digits):
    fmt = f"{{:.{digits}f}}"
    return f"{fmt.format(est)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def _draw(table, *, arm_cols, effect_header, xlabel, refline, favours, title, bottom_lines, ax, figsize,
          panel_width):
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Polygon, Rectangle
    from matplotlib.transforms import ScaledTranslation, blended_transform_factory

    logx = table.logx
    rows = table.rows
    n_head = 2 if arm_cols else 1
    n_rows = n_head + len(rows)
    own = ax is None
    with lnsynth_style():
        if own:
            fig, ax = plt.subplots(figsize=figsize or (8.0, 0.6 + _ROW_H * n_rows))
        else:
            fig = ax.figure
        r = renderer(fig)
        dpi = fig.dpi
        ytr = ax.get_yaxis_transform()

        def place(x_axes, dx_in, y, s, **kw):
            tr = ytr + ScaledTranslation(dx_in, 0, fig.dpi_scale_trans)
            kw.setdefault("fontsize", FONT_SIZE)
            return ax.text(x_axes, y, s, transform=tr, va="center", clip_on=False, family=FONT_FAMILY, **kw)

        def width(t):
            return t.get_window_extent(r).width / dpi

        top = n_rows  # y of the first header row; rows below at top - i
        y_head = top if not arm_cols else top - 1
        y_of = [top - n_head - i for i in range(len(rows))]
        # ---- left block: label column + arm columns -------------------------------------------
        lab_texts = []
        for y, row in zip(y_of, rows):
            if row.get("label"):
                t = place(0, 0, y, row["label"], ha="left", fontweight="bold" if row.get("bold") else "normal",
                          fontstyle="italic" if row.get("italic") else "normal",
                          fontsize=_SMALL if row.get("small") else FONT_SIZE)
                lab_texts.append((t, row.get("indent", 0.0)))
        h_study = place(0, 0, y_head, "Study", ha="left", fontweight="bold")
        w_label = max([width(t) + ind for t, ind in lab_texts] + [width(h_study)])
        arm_layout = []  # (group header text, [(col texts, header text)])
        for glab, subs in arm_cols:
            g = place(0, 0, top, glab, ha="center", fontweight="bold")
            cols = []
            for sub_h, cells, tot, _, _ in subs:
                texts = []
                for y, row in zip(y_of, rows):
                    s = None
                    if row["kind"] == "study":
                        s = cells[row["index"]]
                    elif row["kind"] in ("total", "subtotal"):
                        s = row.get("arm_cells", {}).get((glab, sub_h), "")
                    if s:
                        texts.append(place(0, 0, y, s, ha="right",
                                           fontweight="bold" if row["kind"] in ("total", "subtotal") else "normal"))
                hdr = place(0, 0, y_head, sub_h, ha="right", fontweight="bold")
                cols.append((texts, hdr))
            arm_layout.append((g, cols))
        # widths of arm columns; a group header wider than its columns widens the last one
        arm_w = []
        for g, cols in arm_layout:
            ws = [max([width(t) for t in texts] + [width(h)]) for texts, h in cols]
            span = sum(ws) + _GAP * (len(ws) - 1)
            if width(g) > span:
                ws[-1] += width(g) - span
            arm_w.append(ws)
        # bottom-left lines (heterogeneity ...) must fit under the left block
        bl_texts = [place(0, 0, 0, s, ha="left", fontsize=_SMALL) for s in bottom_lines]
        left_w = w_label + sum(_GAP + sum(ws) + _GAP * (len(ws) - 1) for ws in arm_w)
        need = max([width(t) for t in bl_texts] + [0.0])
        if need > left_w:
            w_label += need - left_w
            left_w = need
        left_w += _GAP
        # x positions (inches from the axes' left edge, negative) of the left block
        x = -left_w
        for t, ind in lab_texts:
            t.set_transform(ytr + ScaledTranslation(x + ind, 0, fig.dpi_scale_trans))
        h_study.set_transform(ytr + ScaledTranslation(x, 0, fig.dpi_scale_trans))
        x += w_label
        for (g, cols), ws in zip(arm_layout, arm_w):
            x0 = x + _GAP
            for (texts, hdr), w in zip(cols, ws):
                x += _GAP + w
                for t in texts + [hdr]:
                    t.set_transform(ytr + ScaledTranslation(x, 0, fig.dpi_scale_trans))
            g.set_transform(ytr + ScaledTranslation((x0 + x) / 2, 0, fig.dpi_scale_trans))
        # ---- right block: weight, effect ---------------------------------------------------------
        w_texts, e_texts = [], []
        for y, row in zip(y_of, rows):
            bold = row["kind"] in ("total", "subtotal") or row.get("bold")
            if row.get("weight"):
                w_texts.append(place(1, 0, y, row["weight"], ha="right", fontweight="bold" if bold else "normal"))
            if row.get("effect"):
                e_texts.append(place(1, 0, y, row["effect"], ha="right", fontweight="bold" if bold else "normal",
                                     fontsize=_SMALL if row["kind"] == "pi" else FONT_SIZE))
        h_w = place(1, 0, y_head, "Weight", ha="right", fontweight="bold")
        h_e = place(1, 0, y_head, effect_header, ha="right", fontweight="bold")
        ww = max([width(t) for t in w_texts] + [width(h_w)])
        we = max([width(t) for t in e_texts] + [width(h_e)])
        for t in w_texts + [h_w]:
            t.set_transform(ytr + ScaledTranslation(_GAP + ww, 0, fig.dpi_scale_trans))
        for t in e_texts + [h_e]:
            t.set_transform(ytr + ScaledTranslation(_GAP + ww + _GAP + we, 0, fig.dpi_scale_trans))
        right_w = _GAP + ww + _GAP + we
        # ---- the plot -----------------------------------------------------------------------------
        vals = [refline]
        for y, row in zip(y_of, rows):
            if row.get("lo") is not None and np.isfinite(row["lo"]):
                vals += [row["lo"], row["hi"]]
        lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
        if logx:
            llo, lhi = math.log(lo), math.log(hi)
            span = max(lhi - llo, math.log(1.5))
            c = (llo + lhi) / 2
            llo, lhi = c - span / 2 * 1.08, c + span / 2 * 1.08
            lo, hi = math.exp(llo), math.exp(lhi)
        else:
            span = (hi - lo) or 1.0
            lo, hi = lo - 0.04 * span, hi + 0.04 * span
        wmax = max([row["w"] for row in rows if row.get("w") is not None] + [1e-300])
        for y, row in zip(y_of, rows):
            if row["kind"] == "study" and row.get("est") is not None and np.isfinite(row["est"]):
                ax.plot([row["lo"], row["hi"]], [y, y], color=STUDY_COLOR, lw=1.0, solid_capstyle="butt",
                        zorder=2, clip_on=False)
                sz = 10 + 80 * row["w"] / wmax if row.get("w") is not None and np.isfinite(row["w"]) else 30
                ax.scatter([row["est"]], [y], s=sz, marker="s", color=STUDY_COLOR, zorder=3, linewidths=0)
            elif row["kind"] in ("total", "subtotal"):
                col = POOLED_COLOR if row["kind"] == "total" else OKABE_ITO["reddish_purple"]
                ax.add_patch(Polygon([(row["lo"], y), (row["est"], y + 0.32), (row["hi"], y), (row["est"], y - 0.32)],
                                     closed=True, facecolor=col, edgecolor=col, zorder=4))
            elif row["kind"] == "pi":
                ax.add_patch(Rectangle((row["lo"], y - 0.12), row["hi"] - row["lo"], 0.24, facecolor=PI_COLOR,
                                       edgecolor=PI_COLOR, zorder=4))
        study_ys = [y for y, row in zip(y_of, rows) if row["kind"] != "text"]
        y_top_line = top - n_head + 0.5
        ax.plot([refline, refline], [min(study_ys + [y_top_line]) - 0.5, y_top_line], color=NULL_COLOR, lw=0.8,
                ls="--", zorder=1)
        if logx:
            plain_log_axis(ax, lo, hi)
        else:
            ax.set_xlim(lo, hi)
        ax.set_ylim(0.45, top + 0.55)
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=_SMALL)
        ax.spines["left"].set_visible(False)
        # rule under the header, across the whole table
        line = Line2D([0, 1], [top - n_head + 0.5] * 2, color="#999999", lw=0.6, clip_on=False, transform=ytr)
        ax.add_line(line)
        # ---- favours labels under the axis, then the axis label ----------------------------------
        fav = []
        if favours:
            ftr = blended_transform_factory(ax.transData, ax.transAxes)
            fl = ax.text(refline, 0, favours[0], ha="right", va="top", fontsize=_SMALL, clip_on=False,
                         family=FONT_FAMILY, transform=ftr)
            fr = ax.text(refline, 0, favours[1], ha="left", va="top", fontsize=_SMALL, clip_on=False,
                         family=FONT_FAMILY, transform=ftr)
            fav = [fl, fr]
        ax.set_xlabel(xlabel, fontsize=FONT_SIZE)
        ttl_text = None
        if title:  # over the whole table, flush with the study column
            ttl_text = ax.text(0, 1, title, transform=ax.transAxes, ha="left", va="bottom", fontsize=FONT_SIZE + 1,
                               fontweight="bold", family=FONT_FAMILY, clip_on=False)
        freeze_fonts(fig)
        # panel width: room for each favours label on its side of the null line
        Pw = panel_width or 3.0
        if fav:
            def frac(v):
                if logx:
                    return (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
                return (v - lo) / (hi - lo)

            fref = min(max(frac(refline), 0.05), 0.95)
            need_w = max((width(fav[0]) + 0.08) / fref, (width(fav[1]) + 0.08) / (1 - fref))
            Pw = max(Pw, min(need_w, 7.0))
        # ---- geometry -----------------------------------------------------------------------------
        Ph = (top + 0.55 - 0.45) * _ROW_H
        if own:
            if figsize is not None:
                Pw = max(1.5, figsize[0] - left_w - right_w - 2 * _PAD)
            fig.set_size_inches(left_w + Pw + right_w + 2 * _PAD, Ph + 2.0, forward=False)
            W, H = fig.get_size_inches()
            ax.set_position([(left_w + _PAD) / W, 1.0 / H, Pw / W, Ph / H])
        r = renderer(fig)
        fig.canvas.draw() if hasattr(fig.canvas, "draw") else None
        ticks = [t.label1 for t in ax.xaxis.get_major_ticks() if t.label1.get_visible() and t.label1.get_text()]
        ab = ax.get_window_extent(r)
        tick_bottom = min([t.get_window_extent(r).y0 for t in ticks] + [ab.y0 - 0.15 * dpi])
        depth = (ab.y0 - tick_bottom) / dpi + 0.03  # inches below the axes
        fav_h = 0.0
        for t, sgn in zip(fav, (-1, 1)):
            t.set_transform(blended_transform_factory(ax.transData, ax.transAxes)
                            + ScaledTranslation(sgn * 0.06, -depth, fig.dpi_scale_trans))
            fav_h = max(fav_h, t.get_window_extent(r).height / dpi + 0.03)
        ax.xaxis.labelpad = (0.03 + fav_h) * 72 + 2.0 if fav else 4.0
        xl_bottom = ax.xaxis.label.get_window_extent(r).y0
        axis_depth = (ab.y0 - xl_bottom) / dpi + 0.03
        yb = 0.0
        for t in bl_texts:
            t.set_transform(ax.transAxes + ScaledTranslation(-left_w, -0.06 - yb, fig.dpi_scale_trans))
            t.set_y(0.0)
            t.set_x(0.0)
            t.set_va("top")
            yb += t.get_window_extent(r).height / dpi + 0.03
        bottom = max(axis_depth, yb + 0.06) + _PAD
        if ttl_text is not None:
            ttl_text.set_transform(ax.transAxes + ScaledTranslation(-left_w, 0.06, fig.dpi_scale_trans))
        if own:
            ttl = ttl_text.get_window_extent(r).height / dpi + 0.1 if title else 0.0
            W = left_w + Pw + right_w + 2 * _PAD
            H = Ph + bottom + ttl + _PAD
            fig.set_size_inches(W, H, forward=False)
            ax.set_position([(left_w + _PAD) / W, bottom / H, Pw / W, Ph / H])
            line.set_xdata([-left_w / Pw, 1 + right_w / Pw])
            fit_canvas(fig, pad=0.02)
        else:
            line.set_xdata([-left_w / ax.get_window_extent(r).width * dpi,
                            1 + right_w / ax.get_window_extent(r).width * dpi])
    return fig


def _setup(r, transf, refline, arm_data, k, arm_labels, digits):
    """What a forest plot of ``r`` needs before drawing rows: scale, null line, critical value, arm columns,
    model type and an empty table (shared by :func:`forest_plot` and :func:`subgroup_forest_plot`)."""
    f, logx = _scale(r, transf)
    if refline is None:
        refline = float(f(0.0))
    arm_cols, kind = _arm_columns(arm_data, k, arm_labels, digits) if arm_data is not None else ([], None)
    return f, logx, refline, _crit(r.level), arm_cols, kind, r.method not in _FE, _Table(f, logx, digits)


def _study_rows(table, r, labels, f, crit, digits, arm, index0=0, indent=0.0, weights=None):
    yi = np.asarray(r.yi, dtype=float)
    se = np.sqrt(np.asarray(r.vi, dtype=float))
    w = np.asarray(r.weights if weights is None else weights, dtype=float)
    if not np.all(np.isfinite(w)):
        w = 1.0 / np.asarray(r.vi, dtype=float)
        w = 100 * w / w.sum()
    for i in range(len(yi)):
        e, lo, hi = float(f(yi[i])), float(f(yi[i] - crit * se[i])), float(f(yi[i] + crit * se[i]))
        table.add("study", labels[i], est=e, lo=lo, hi=hi, w=w[i], weight=f"{w[i]:.1f}%",
                  effect=_effect_cell(e, lo, hi, digits), index=index0 + i, indent=indent)
    return w


def _arm_totals(arm_cols, idx):
    """Bold total cells (sum of events / N) for the studies ``idx``."""
    out = {}
    for glab, subs in arm_cols:
        for sub_h, cells, tot, _, _ in subs:
            if sub_h == "Events/N":
                e = sum(float(cells[i].split("/")[0] or 0) for i in idx)
                n = sum(float(cells[i].split("/")[1] or 0) for i in idx)
                out[(glab, sub_h)] = f"{_num(e)}/{_num(n)}"
            elif sub_h == "N":
                out[(glab, sub_h)] = _num(sum(float(cells[i] or 0) for i in idx))
    return out


def _effect_header(r, level):
    m = str(getattr(r, "measure", "") or "").upper()
    name = m if m in _XLABELS else "Estimate"
    return f"{name} [{int(round(100 * level))}% CI]"


def forest_plot(result, labels=None, ax=None, transf=None, *, xlabel=None, refline=None, digits=2,
                show_pi=True, show_het=True, title=None, figsize=None, arm_data=None,
                arm_labels=("Intervention", "Control"), favours=None, show_weights=True, panel_width=None, rob=None):
    """Draw a forest plot of a fitted :class:`~lnsynth.pairwise.MetaResult`.

    Parameters
    ----------
    result : MetaResult (or a MetaBatchResult of length 1)
    labels : sequence of str, optional (defaults to ``result.labels`` or "Study i")
    ax : matplotlib Axes, optional (a new Figure, sized from its texts, is created otherwise; with
        an ``ax`` the text columns are placed around it and the caller sizes the figure)
    transf : None, "exp" or callable
        Back-transformation of effects for display.  ``None`` means "exp" for
        ratio measures (RR/OR/...) with a log-scaled x axis, identity otherwise.
    refline : float, optional; vertical null line (default 1 if transformed by exp, else 0)
    arm_data : DataFrame or mapping, optional
        One row per study (in the result's order): events and N per arm (``events_treat,
        n_treat, events_ctrl, n_ctrl``, or metafor's ``ai, n1i, ci, n2i`` / ``ai, bi, ci, di``),
        or mean, SD and N per arm (``mean_treat, sd_treat, n_treat, mean_ctrl, sd_ctrl, n_ctrl``
        or ``m1i, sd1i, n1i, m2i, sd2i, n2i``); drawn as columns with totals on the model row.
    arm_labels : (str, str); headers of the two arms' columns.
    favours : (str, str), optional; labels under the axis, left and right of the null line
        (e.g. ``("Favours intervention", "Favours control")`` for a harmful outcome).
    show_weights : bool; the weight column (percentage weights of the model).
    panel_width : float, optional; width of the plot panel in inches (default 3, wider when the
        favours labels need it).
    rob : sequence, optional; one RoB 2 assessment per study (RiskOfBias, mapping or None), drawn
        as a traffic-light panel right of the effect column (:func:`lnsynth.plots.rob.add_rob_panel`).

    A single study (k = 1) is drawn without model row, diamond or heterogeneity line.

    Returns
    -------
    matplotlib.figure.Figure
    """
    r = _single(result)
    yi = np.asarray(r.yi, dtype=float)
    k = len(yi)
    if labels is None:
        labels = r.labels if r.labels is not None else [f"Study {i + 1}" for i in range(k)]
    labels = [str(x) for x in labels]
    if len(labels) != k:
        raise ValueError(f"labels: {len(labels)} labels for {k} studies")
    f, logx, refline, crit, arm_cols, kind, random, table = _setup(r, transf, refline, arm_data, k, arm_labels, digits)
    _study_rows(table, r, labels, f, crit, digits, arm_cols)
    bottom = []
    if k >= 2:
        ex, cl, ch = float(f(r.estimate)), float(f(r.ci_low)), float(f(r.ci_high))
        model = f"RE Model ({r.method})" if random else f"FE Model ({r.method})"
        table.add("total", model, est=ex, lo=cl, hi=ch, weight="100.0%", effect=_effect_cell(ex, cl, ch, digits),
                  bold=True, arm_cells=_arm_totals(arm_cols, range(k)))
        if random and show_pi and np.isfinite(r.pi_low) and np.isfinite(r.pi_high):
            pl, ph = float(f(r.pi_low)), float(f(r.pi_high))
            fmt = f"{{:.{digits}f}}"
            table.add("pi", "Prediction interval", est=None, lo=pl, hi=ph, effect=f"[{fmt.format(pl)}, {fmt.format(ph)}]",
                      small=True, italic=True)
        if show_het:
            bottom = _het_text(r, random, digits)
    if not show_weights:
        for row in table.rows:
            row.pop("weight", None)
    xl = xlabel or (_XLABELS.get(str(r.measure).upper(), "Observed Outcome") + (" (log scale)" if logx else ""))
    fig = _draw(table, arm_cols=arm_cols, effect_header=_effect_header(r, r.level), xlabel=xl, refline=refline,
                favours=favours, title=title, bottom_lines=bottom, ax=ax, figsize=figsize,
                panel_width=panel_width)
    if rob is not None:
        from .rob import add_rob_panel

        add_rob_panel(fig, labels, rob, ax=ax)
    return fig


def subgroup_forest_plot(result, groups, labels=None, ax=None, transf=None, *, measure=None, model="separate",
                         xlabel=None, refline=None, digits=2, title=None, figsize=None, arm_data=None,
                         arm_labels=("Intervention", "Control"), favours=None, panel_width=None):
    """Forest plot of a :class:`~lnsynth.pairwise.subgroup.SubgroupResult`: studies grouped under
    subgroup headers, a diamond per subgroup with its heterogeneity, the overall diamond, and the
    test for subgroup differences under the axis.

    Parameters
    ----------
    result : SubgroupResult (from :func:`lnsynth.pairwise.subgroup.subgroup_analysis`)
    groups : sequence, the subgroup of each study, as passed to ``subgroup_analysis``
    labels : study labels (default ``result.overall.labels`` or "Study i")
    measure : str, optional; effect measure for the axis label and the scale (``"RR"`` etc.;
        default the overall fit's measure)
    model : "separate" (a tau² per subgroup, ``meta``'s default) or "common" (one tau²)
    arm_data, arm_labels, favours, transf, refline, digits, panel_width: as :func:`forest_plot`.
    """
    ov = result.overall
    if ov is None:
        raise ValueError("result: a SubgroupResult with its overall fit (from subgroup_analysis)")
    g = np.asarray(list(groups), dtype=object)
    k = len(np.asarray(ov.yi))
    if len(g) != k:
        raise ValueError(f"groups: {len(g)} entries for {k} studies")
    if labels is None:
        labels = ov.labels if ov.labels is not None else [f"Study {i + 1}" for i in range(k)]
    labels = [str(x) for x in labels]
    if len(labels) != k:
        raise ValueError(f"labels: {len(labels)} labels for {k} studies")
    if model not in ("separate", "common"):
        raise ValueError(f"model: expected 'separate' or 'common', got {model!r}")
    meas = measure if measure is not None else getattr(ov, "measure", None)
    if transf is None and registry_is_ratio(meas):
        transf = "exp"
    f, logx, refline, crit, arm_cols, _, random, table = _setup(ov, transf, refline, arm_data, k, arm_labels, digits)
    yi = np.asarray(ov.yi, float)
    vi = np.asarray(ov.vi, float)
    w = np.asarray(ov.weights, float)
    se = np.sqrt(vi)
    est = result.separate if model == "separate" else result.common
    for j, grp in enumerate(result.groups):
        idx = [i for i in range(k) if g[i] == grp]
        table.add("text", str(grp), bold=True)
        for i in idx:
            e, lo, hi = float(f(yi[i])), float(f(yi[i] - crit * se[i])), float(f(yi[i] + crit * se[i]))
            table.add("study", labels[i], est=e, lo=lo, hi=hi, w=w[i], weight=f"{w[i]:.1f}%",
                      effect=_effect_cell(e, lo, hi, digits), index=i, indent=0.12)
        e, lo, hi = (float(f(est[key][j])) for key in ("estimate", "ci_low", "ci_high"))
        table.add("subtotal", f"Subtotal (k = {len(idx)})", est=e, lo=lo, hi=hi, weight=f"{w[idx].sum():.1f}%",
                  effect=_effect_cell(e, lo, hi, digits), arm_cells=_arm_totals(arm_cols, idx), indent=0.12)
        if model == "separate" and len(idx) >= 2:
            s = result.separate
            het = (f"\u03c4\u00b2 = {s['tau2'][j]:.{max(digits, 3)}f}; " if random else "") + \
                  f"I\u00b2 = {s['i2'][j]:.1f}%; Q = {s['q'][j]:.2f}, df = {len(idx) - 1}"
            table.add("text", "Heterogeneity: " + het, italic=True, small=True, indent=0.12)
    ex, cl, ch = float(f(ov.estimate)), float(f(ov.ci_low)), float(f(ov.ci_high))
    mname = f"RE Model ({ov.method})" if random else f"FE Model ({ov.method})"
    table.add("total", mname, est=ex, lo=cl, hi=ch, weight="100.0%", effect=_effect_cell(ex, cl, ch, digits),
              bold=True, arm_cells=_arm_totals(arm_cols, range(k)))
    if random and np.isfinite(ov.pi_low) and np.isfinite(ov.pi_high):
        pl, ph = float(f(ov.pi_low)), float(f(ov.pi_high))
        fmt = f"{{:.{digits}f}}"
        table.add("pi", "Prediction interval", lo=pl, hi=ph, effect=f"[{fmt.format(pl)}, {fmt.format(ph)}]",
                  small=True, italic=True)
    t = result.test_separate if model == "separate" else result.test_common
    df = t["df"] if not isinstance(t["df"], (list, tuple)) else t["df"][0]
    bottom = _het_text(ov, random, digits)
    bottom.append(f"Test for subgroup differences: Q = {t['q']:.2f}, df = {df} ({_p_short(t['pvalue'])})")
    xl = xlabel or (_XLABELS.get(str(meas).upper(), "Observed Outcome") + (" (log scale)" if logx else ""))

    class _R:  # header needs measure and level only
        pass

    hdr = _R()
    hdr.measure = meas
    return _draw(table, arm_cols=arm_cols, effect_header=_effect_header(hdr, ov.level), xlabel=xl, refline=refline,
                 favours=favours, title=title, bottom_lines=bottom, ax=ax, figsize=figsize, panel_width=panel_width)


def registry_is_ratio(measure):
    try:
        return bool(measure) and registry.is_ratio(str(measure).upper())
    except Exception:
        return False
