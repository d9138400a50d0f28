"""Smoke and content tests for the network plots (no display needed)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure

from lnsynth.network import network_meta_analysis
from lnsynth.plots.network import network_graph, nma_forest

matplotlib.use("Agg")
REF = json.loads((Path(__file__).parent / "reference" / "network_reference.json").read_text())
CASE = next(c for c in REF["cases"] if c["name"] == "hasselblad1998")
ARMS = pd.DataFrame(CASE["arms"])


def result(method="FE"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return network_meta_analysis(ARMS, study="study", treatment="trt", events="x", n="n",
                                     reference="no_contact", method=method)


def test_network_graph_from_result_edges_and_nodes():
    r = result()
    fig = network_graph(r)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    nodes = [c for c in ax.collections if isinstance(c, PathCollection)]
    edges = r.data.edges()
    assert len(lines) == 1 and len(lines[0].get_linewidths()) == len(edges)
    widths = np.sort(np.asarray(lines[0].get_linewidths(), float))
    ns = edges["n_studies"].to_numpy(float)
    np.testing.assert_allclose(widths, np.sort(1.0 + 7.0 * ns / ns.max()))  # width ~ number of studies
    sizes = nodes[0].get_sizes()
    pts = r.data.patients()
    assert sizes.argmax() == list(r.treatments).index(max(pts, key=pts.get))


def test_network_graph_from_dataframe_and_ax():
    fig = Figure()
    ax = fig.add_subplot(1, 1, 1)
    out = network_graph(ARMS, ax=ax, study="study", treatment="trt", n="n")
    assert out is fig
    out2 = network_graph(ARMS[["study", "trt"]], study="study", treatment="trt", layout="spring")
    assert isinstance(out2, Figure)


def test_forest_plot():
    r = result("REML")
    fig = nma_forest(r)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == list(r.params)
    fig2 = nma_forest(r, exponentiate=False)
    assert fig2.axes[0].get_xscale() == "linear"


# --------------------------------------------------------------------------- net heat, rankogram, funnel
def linde(method="REML"):
    c = next(c for c in REF["cases"] if c["name"] == "linde2015")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return network_meta_analysis(pd.DataFrame(c["arms"]), study="study", treatment="trt", events="x", n="n",
                                     reference="Placebo", method=method)


def test_net_heat_plot_cells_and_labels():
    from lnsynth.network import net_heat
    from lnsynth.plots.network import net_heat_plot

    r = linde()
    h = net_heat(r)
    fig = net_heat_plot(h)
    ax = fig.axes[0]
    shown = [t.get_text().replace("\n", " ").replace("- ", "-") for t in ax.get_yticklabels()]
    assert [s.replace(" ", "") for s in shown] == [lab.replace(" ", "") for lab in h.labels]
    img = ax.images[0].get_array()
    assert img.shape == h.diff.shape
    coll = next(c for c in ax.collections if c.get_label() == "hat")
    boxes = [p.get_extents() for p in coll.get_paths()]  # data coordinates
    # largest grey square sits where |hat| is largest
    big = max(boxes, key=lambda b: b.width)
    j, k = np.unravel_index(np.argmax(np.abs(h.hat)), h.hat.shape)
    assert (big.x0 + big.x1) / 2 == pytest.approx(k) and (big.y0 + big.y1) / 2 == pytest.approx(j)
    assert len(fig.axes) == 2  # colour bar
    assert isinstance(net_heat_plot(r, random=True), Figure)


def test_rankogram_bars_are_rank_probabilities():
    from lnsynth.network.ranking import result_rank_probabilities
    from lnsynth.plots.network import rankogram

    r = result("REML")
    P = result_rank_probabilities(r, small_values="bad", n_sim=5000, seed=2)
    fig = rankogram(P)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == len(r.treatments)
    for ax in visible:
        t = ax.get_title().split("\n")[0]
        heights = [p.get_height() for p in ax.patches]
        np.testing.assert_allclose(heights, P.loc[t].to_numpy())
    fig2 = rankogram(r, cumulative=True, n_sim=2000)
    assert all(ax.lines for ax in fig2.axes if ax.get_visible())


def test_adjusted_funnel_plot_points():
    from lnsynth.network import comparison_adjusted_funnel
    from lnsynth.plots.network import adjusted_funnel_plot

    r = linde()
    fd = comparison_adjusted_funnel(r)
    fig = adjusted_funnel_plot(fd)
    ax = fig.axes[0]
    pts = np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])
    assert len(pts) == len(fd.points)
    np.testing.assert_allclose(np.sort(pts[:, 0]), np.sort(fd.points["y_adj"].to_numpy()))
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # standard error axis inverted
    assert ax.get_legend() is not None
