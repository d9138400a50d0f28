"""Plots for network meta-analysis: network graph and forest plot vs reference.

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
    fig, ax = _new_axes(ax, (6.0, 6.0))
    p = np.array([pts[t] for t in g.nodes], float)
    if np.all(np.isfinite(p)) and p.max() > 0:
        sizes = 300.0 + 2700.0 * p / p.max()
    else:
        sizes = np.full(len(p), 1200.0)
    ns = np.array([g.edges[e]["n_studies"] for e in g.edges], float)
    widths = 1.0 + 7.0 * ns / ns.max() if len(ns) else []
    nx.draw_networkx_edges(g, pos, ax=ax, width=widths, edge_color="0.45")
    nx.draw_networkx_nodes(g, pos, ax=ax, node_size=sizes, node_color="#9ecae1", edgecolors="#3182bd")
    nx.draw_networkx_labels(g, pos, ax=ax, font_size=9)
    nx.draw_networkx_edge_labels(g, pos, ax=ax, font_size=8,
                                 edge_labels={e: str(g.edges[e]["n_studies"]) for e in g.edges})
    ax.set_title(f"Network: {len(data.studies)} studies, {len(data.treatments)} treatments")
    ax.set_axis_off()
    ax.margins(0.15)
    return fig


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
    fig, ax = _new_axes(ax, (6.5, 0.5 * len(re) + 1.5))
    y = np.arange(len(re))[::-1]
    ax.errorbar(est, y, xerr=[est - lo, hi - est], fmt="s", color="k", ecolor="k", capsize=3)
    ax.axvline(1.0 if exponentiate else 0.0, color="0.5", ls="--", lw=1)
    ax.set_yticks(y, [str(t) for t in re["treatment"]])
    if exponentiate:
        ax.set_xscale("log")
    lab = result.measure if exponentiate else {"OR": "log OR", "RR": "log RR"}.get(result.measure, result.measure)
    pct = int(round(result.level * 100))
    ax.set_xlabel(f"{lab} vs {result.reference} ({pct}% CI)")
    ax.set_title(f"Network estimates vs {result.reference} ({'FE' if result.method == 'FE' else 'RE, REML'})")
    return fig
