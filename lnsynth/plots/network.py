"""Plots for network meta-analysis: network graph, forest plot vs reference, net heat plot,
rankogram and comparison-adjusted funnel plot (computation lives in :mod:`lnsynth.network`).

Uses ``matplotlib.figure.Figure`` directly (no pyplot state, no GUI backend).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lnsynth import registry

from .style import (FONT_SIZE, NULL_COLOR, STUDY_COLOR, fit_canvas, freeze_fonts, lnsynth_style, plain_log_axis,
                    renderer)

if TYPE_CHECKING:  # pragma: no cover
    from lnsynth.network import NetworkData, NMAResult


def _network_data(obj: Any, **columns: Any) -> "NetworkData":
    from lnsynth.network import NetworkData, NMAResult, prepare

    if isinstance(obj, NMAResult):
        return obj.data
    if isinstance(obj, NetworkData):
        return obj
    if isinstance(obj, pd.DataFrame):
        cols = {"study": "study", "treatment": "treatment", "events": None, "n": None}
        cols.update(columns)
        if cols.get("events") is None and cols.get("mean") is None and cols.get("yi") is None:
            # only the design matters for the graph: fake events so binary validation passes
            df = obj.copy()
            if cols.get("n") is None:
                df["__n"] = 2.0
                cols["n"] = "__n"
            df["__e"] = 1.0
            cols["events"] = "__e"
            cols["measure"] = "RD"
            data = prepare(df, **cols)
            if "__n" in df.columns:  # no patient numbers known
                data = NetworkData(tuple(type(s)(s.study, s.treatments, s.y, s.V, None) for s in data.studies),
                                   data.treatments, data.reference, data.measure, data.dropped)
            return data
        return prepare(obj, **cols)
    raise TypeError("network_graph expects an NMAResult, NetworkData or DataFrame")


def _new_axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size)
    return fig, fig.add_subplot(1, 1, 1)


def network_graph(obj: Any, ax: Axes | None = None, *, layout: str = "circular", **columns: Any) -> Figure:
    """Draw the treatment network.

    Parameters
    ----------
    obj : NMAResult, NetworkData or DataFrame
        For a DataFrame (arm-level), pass column names as keywords
        (``study=``, ``treatment=``, optionally ``n=``/``events=``).
    ax : matplotlib Axes, optional
        Axes to draw into; a new Figure is created otherwise.
    layout : {"circular", "spring"}
        Node placement (``spring`` uses a fixed seed).

    Returns
    -------
    Figure
        Edge width is proportional to the number of studies making the
        comparison directly; node area is proportional to the number of
        patients randomised to the treatment (uniform when unknown).
    """
    data = _network_data(obj, **columns)
    edges = data.edges()
    pts = data.patients()
    g = nx.Graph()
    g.add_nodes_from(data.treatments)
    for r in edges.itertuples(index=False):
        g.add_edge(r.treat1, r.treat2, n_studies=int(r.n_studies))
    pos = (nx.spring_layout(g, seed=1) if layout == "spring" else nx.circular_layout(g))
    with lnsynth_style():
        own = ax is None
        fig, ax = _new_axes(ax, (6.0, 6.0))
        _draw_graph(g, pos, ax, pts, data)
        if own:
            fit_canvas(fig)
    return fig


def _wrap(name: str, width: int = 16) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(str(name), width, break_long_words=False)) or str(name)


def _draw_graph(g, pos, ax, pts, data):
    p = np.array([pts[t] for t in g.nodes], float)
    if np.all(np.isfinite(p)) and p.max() > 0:
        sizes = 300.0 + 2700.0 * p / p.max()
    else:
        sizes = np.full(len(p), 1200.0)
    ns = np.array([g.edges[e]["n_studies"] for e in g.edges], float)
    widths = 1.0 + 7.0 * ns / ns.max() if len(ns) else []
    nx.draw_networkx_edges(g, pos, ax=ax, width=widths, edge_color="0.45")
    nx.draw_networkx_nodes(g, pos, ax=ax, node_size=sizes, node_color="#9ecae1", edgecolors="#3182bd")
    nx.draw_networkx_edge_labels(g, pos, ax=ax, font_size=FONT_SIZE - 1,
                                 edge_labels={e: str(g.edges[e]["n_studies"]) for e in g.edges})
    # node labels outside their node, pointing away from the centre of the layout, never clipped
    xy = np.array([pos[t] for t in g.nodes], float)
    centre = xy.mean(axis=0) if len(xy) else np.zeros(2)
    for (t, p_), s in zip(zip(g.nodes, xy), sizes):
        d = p_ - centre
        nrm = float(np.hypot(*d))
        u = d / nrm if nrm > 1e-9 else np.array([0.0, 1.0])
        off = (np.sqrt(s) / 2.0 + 4.0) * u  # points: node radius plus a gap
        ax.annotate(_wrap(t), xy=p_, xytext=tuple(off), textcoords="offset points", fontsize=FONT_SIZE,
                    ha="left" if u[0] > 0.35 else ("right" if u[0] < -0.35 else "center"),
                    va="bottom" if u[1] > 0.35 else ("top" if u[1] < -0.35 else "center"),
                    annotation_clip=False, clip_on=False)
    ax.set_title(f"Network: {len(data.studies)} studies, {len(data.treatments)} treatments")
    ax.set_axis_off()
    ax.margins(0.12)
    _fit_texts_in_axes(ax)


def _fit_texts_in_axes(ax, iterations: int = 4) -> None:
    """Widen the data limits until every text of ``ax`` (measured) lies inside the axes box."""
    fig = ax.figure
    for _ in range(iterations):
        r = renderer(fig)
        ab = ax.get_window_extent(r)
        texts = [t for t in ax.texts if t.get_visible() and t.get_text()]
        if not texts:
            return
        bbs = [t.get_window_extent(r) for t in texts]
        x0 = min(b.x0 for b in bbs); x1 = max(b.x1 for b in bbs)  # noqa: E702
        y0 = min(b.y0 for b in bbs); y1 = max(b.y1 for b in bbs)  # noqa: E702
        pad = 4.0
        over = (max(0.0, ab.x0 + pad - x0), max(0.0, x1 - (ab.x1 - pad)),
                max(0.0, ab.y0 + pad - y0), max(0.0, y1 - (ab.y1 - pad)))
        if max(over) < 0.5:
            return
        (xa, xb), (ya, yb) = ax.get_xlim(), ax.get_ylim()
        # data per pixel shrinks as limits widen; solve w' = w + over * w'/W for the new span
        W, H = ab.width, ab.height
        sx = (xb - xa) / max(W - over[0] - over[1], 0.3 * W)
        sy = (yb - ya) / max(H - over[2] - over[3], 0.3 * H)
        ax.set_xlim(xa - over[0] * sx, xb + over[1] * sx)
        ax.set_ylim(ya - over[2] * sy, yb + over[3] * sy)


def nma_forest(result: "NMAResult", ax: Axes | None = None, exponentiate: bool | None = None) -> Figure:
    """Forest plot of each treatment vs the reference with confidence intervals.

    Ratio measures (OR, RR) are shown exponentiated on a log axis by default.
    """
    if exponentiate is None:
        exponentiate = registry.is_ratio(result.measure)
    re = result.relative_effects()
    est, lo, hi = re["estimate"].to_numpy(), re["ci_low"].to_numpy(), re["ci_high"].to_numpy()
    if exponentiate:
        est, lo, hi = np.exp(est), np.exp(lo), np.exp(hi)
    with lnsynth_style():
        own = ax is None
        fig, ax = _new_axes(ax, (6.5, 0.5 * len(re) + 1.5))
        y = np.arange(len(re))[::-1]
        ax.errorbar(est, y, xerr=[est - lo, hi - est], fmt="s", color="k", ecolor="k", capsize=3)
        ax.axvline(1.0 if exponentiate else 0.0, color="0.5", ls="--", lw=1)
        ax.set_yticks(y, [str(t) for t in re["treatment"]])
        ax.tick_params(axis="y", length=0)
        if exponentiate:
            vals = np.concatenate([lo, hi, [1.0]])
            vals = vals[np.isfinite(vals) & (vals > 0)]
            a, b = float(vals.min()), float(vals.max())
            span = max(np.log(b / a), np.log(1.5)) * 0.06
            plain_log_axis(ax, a * np.exp(-span), b * np.exp(span))
        lab = result.measure if exponentiate else {"OR": "log OR", "RR": "log RR"}.get(result.measure, result.measure)
        pct = int(round(result.level * 100))
        ax.set_xlabel(f"{lab} vs {result.reference} ({pct}% CI)")
        ax.set_title(f"Network estimates vs {result.reference} ({'FE' if result.method == 'FE' else 'RE, REML'})")
        freeze_fonts(fig)
        if own:
            fig.subplots_adjust(left=0.05, right=0.95)
            fit_canvas(fig)  # the figure grows to the measured treatment names: never clipped
    return fig


# --------------------------------------------------------------------------- net heat plot
def net_heat_plot(obj: Any, ax: Axes | None = None, *, random: bool = False, tau2: Any = "full") -> Figure:
    """Net heat plot (Krahn, Binder & König 2013).

    Parameters
    ----------
    obj : NMAResult or NetHeat
        A fitted network (the data are computed with
        :func:`lnsynth.network.inconsistency.net_heat`) or precomputed data.
    random, tau2 : passed to :func:`~lnsynth.network.inconsistency.net_heat`.

    Returns
    -------
    Figure
        Cell (row *j*, column *k*): background colour = change of design *j*'s
        contribution to between-design Q when design *k* is detached (warm:
        detaching *k* reduces the inconsistency seen at *j*; cool: increases
        it); grey square area proportional to the hat-matrix element
        ``|H[j, k]|`` (how much design *k*'s direct estimate contributes to
        *j*'s network estimate).  Light grey cells: detaching design *k*
        disconnects the network (no value).  Colours are clipped at +-8.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle

    from lnsynth.network.inconsistency import NetHeat, net_heat

    h = obj if isinstance(obj, NetHeat) else net_heat(obj, random=random, tau2=tau2)
    n = len(h.labels)
    D = np.ma.masked_invalid(np.clip(h.diff, -8.0, 8.0))  # NaN: detaching disconnects (drawn light grey)
    lim = max(float(np.abs(D).max()) if D.count() else 0.0, 1e-9)
    size = np.abs(h.hat)
    smax = float(size.max()) if size.size else 1.0
    with lnsynth_style():
        own = ax is None
        side = max(3.0, 0.42 * n + 1.0)
        fig, ax = _new_axes(ax, (side + 1.2, side))
        import matplotlib

        cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.88")
        im = ax.imshow(D, cmap=cmap, norm=TwoSlopeNorm(vmin=-lim, vcenter=0.0, vmax=lim),
                       extent=(-0.5, n - 0.5, n - 0.5, -0.5), interpolation="nearest")
        squares = []
        for j in range(n):
            for k in range(n):
                a = 0.9 * np.sqrt(size[j, k] / smax) if smax > 0 else 0.0
                if a > 0.02:
                    squares.append(Rectangle((k - a / 2, j - a / 2), a, a))
        ax.add_collection(PatchCollection(squares, facecolor="0.45", edgecolor="none", alpha=0.75,
                                          label="hat"), autolim=False)
        grid = np.arange(n + 1) - 0.5
        ax.hlines(grid, -0.5, n - 0.5, color="white", lw=0.6)
        ax.vlines(grid, -0.5, n - 0.5, color="white", lw=0.6)
        short = [_wrap(lab, 22) for lab in h.labels]
        ax.set_xticks(range(n), short, rotation=90, fontsize=FONT_SIZE - 1)
        ax.set_yticks(range(n), short, fontsize=FONT_SIZE - 1)
        ax.xaxis.tick_top()
        ax.tick_params(length=0)
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_ylim(n - 0.5, -0.5)
        for sp in ax.spines.values():
            sp.set_visible(False)
        cb = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03)
        cb.set_label("Q change when column design is detached", fontsize=FONT_SIZE - 1)
        cb.ax.tick_params(labelsize=FONT_SIZE - 1)
        ax.set_xlabel(f"Net heat plot ({'RE, tau^2 = %.3g' % h.tau2 if h.tau2 > 0 else 'FE'}); "
                      "rows: designs, columns: detached designs", fontsize=FONT_SIZE - 1)
        freeze_fonts(fig)
        if own:
            fit_canvas(fig)
    return fig


# --------------------------------------------------------------------------- rankogram
def rankogram(obj: Any, *, small_values: str = "good", cumulative: bool = False, n_sim: int = 100000,
              seed: int | None = 1, ncols: int = 4) -> Figure:
    """Rankogram: probability of each rank for each treatment (small multiples).

    Parameters
    ----------
    obj : NMAResult or DataFrame
        A fitted network (rank probabilities are simulated with
        :func:`lnsynth.network.ranking.rank_probabilities`) or a rank
        probability table (rows: treatments, columns: ranks 1..T).
    small_values : {"good", "bad"}
    cumulative : bool
        Plot cumulative rank probabilities (area under the curve = SUCRA).
    """
    from lnsynth.network.ranking import (cumulative_rank_probabilities, result_rank_probabilities,
                                         sucra_from_probabilities)

    P = obj if isinstance(obj, pd.DataFrame) else result_rank_probabilities(obj, small_values=small_values,
                                                                           n_sim=n_sim, seed=seed)
    sucra = sucra_from_probabilities(P)
    Y = cumulative_rank_probabilities(P) if cumulative else P
    T = P.shape[1]
    trts = list(sucra.sort_values(ascending=False).index)
    nc = max(1, min(ncols, len(trts)))
    nr = int(np.ceil(len(trts) / nc))
    ranks = np.asarray(P.columns, float)
    with lnsynth_style():
        fig = Figure(figsize=(2.4 * nc, 2.0 * nr + 0.4))
        axes = fig.subplots(nr, nc, squeeze=False)
        for i, ax in enumerate(axes.ravel()):
            if i >= len(trts):
                ax.set_visible(False)
                continue
            t = trts[i]
            y = Y.loc[t].to_numpy(float)
            if cumulative:
                ax.plot(ranks, y, color=STUDY_COLOR, marker="o", ms=3)
                ax.fill_between(ranks, 0, y, color=STUDY_COLOR, alpha=0.2)
            else:
                ax.bar(ranks, y, color=STUDY_COLOR, width=0.7)
            ax.set_ylim(0, 1.0)
            ax.set_xticks(ranks if T <= 8 else ranks[:: int(np.ceil(T / 8))])
            ax.set_title(f"{_wrap(t, 22)}\nSUCRA {sucra[t]:.2f}", fontsize=FONT_SIZE - 1)
            if i % nc == 0:
                ax.set_ylabel("cumulative P" if cumulative else "probability", fontsize=FONT_SIZE - 1)
            else:
                ax.set_yticklabels([])
                ax.tick_params(axis="y", left=False)
            if i >= len(trts) - nc:
                ax.set_xlabel("rank (1 = best)", fontsize=FONT_SIZE - 1)
            ax.tick_params(labelsize=FONT_SIZE - 1)
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.15, top=0.85, wspace=0.25, hspace=0.8)
        freeze_fonts(fig)
        fit_canvas(fig)
    return fig


# --------------------------------------------------------------------------- comparison-adjusted funnel
def adjusted_funnel_plot(obj: Any, ax: Axes | None = None, *, order: Any = None, level: float = 0.95,
                         legend: bool = True) -> Figure:
    """Comparison-adjusted funnel plot (Chaimani & Salanti 2012).

    Parameters
    ----------
    obj : NMAResult or AdjustedFunnel
        A fitted network (data computed with
        :func:`lnsynth.network.funnel.comparison_adjusted_funnel`) or precomputed data.
    order : sequence of str, optional
        Treatment order orienting the contrasts (later vs earlier).
    level : float
        Pseudo-confidence limits drawn around 0.

    Returns
    -------
    Figure
        x: study contrast minus its comparison-specific direct estimate; y:
        standard error (inverted axis); one colour and marker per comparison.
    """
    from scipy import stats

    from lnsynth.network.funnel import AdjustedFunnel, comparison_adjusted_funnel

    from .style import PALETTE

    fd = obj if isinstance(obj, AdjustedFunnel) else comparison_adjusted_funnel(obj, order=order)
    pts = fd.points
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    smax = float(pts["se"].max()) * 1.05 if len(pts) else 1.0
    markers = "osD^v<>ph*"
    with lnsynth_style():
        own = ax is None
        fig, ax = _new_axes(ax, (6.0, 4.5))
        se = np.linspace(0.0, smax, 50)
        ax.plot(-z * se, se, color=NULL_COLOR, ls="--", lw=0.8)
        ax.plot(z * se, se, color=NULL_COLOR, ls="--", lw=0.8)
        ax.axvline(0.0, color=NULL_COLOR, lw=0.8)
        for i, (comp, g) in enumerate(pts.groupby("comparison", sort=True)):
            ax.scatter(g["y_adj"], g["se"], s=22, color=PALETTE[i % len(PALETTE)], marker=markers[i % len(markers)],
                       label=_wrap(comp.replace(":", " vs "), 28), edgecolors="none", alpha=0.9)
        ax.set_ylim(smax, 0.0)
        xm = max(float(np.abs(pts["y_adj"]).max()) if len(pts) else 0.0, z * smax) * 1.08
        ax.set_xlim(-xm, xm)
        lab = {"OR": "log OR", "RR": "log RR"}.get(fd.measure, fd.measure)
        ax.set_xlabel(f"{lab} centred at comparison-specific effect")
        ax.set_ylabel("standard error")
        e = fd.egger
        ttl = "Comparison-adjusted funnel plot"
        if np.isfinite(e.get("pvalue", np.nan)):
            ttl += f" (Egger-type test p = {e['pvalue']:.3f})"
        ax.set_title(ttl, fontsize=FONT_SIZE)
        if legend and len(pts):
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=FONT_SIZE - 1,
                      title="comparison", title_fontsize=FONT_SIZE - 1)
        freeze_fonts(fig)
        if own:
            fit_canvas(fig)
    return fig
