"""Smoke and content tests for the network plots (no display needed)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
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
