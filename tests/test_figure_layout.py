"""Layout of every figure the package draws: no text leaves the canvas, no two texts overlap.

Each figure is rendered with the Agg backend; after ``fig.canvas.draw()`` every visible, non-empty
Text artist (titles, axis labels, tick labels matplotlib actually draws, annotations, legend
entries, figure texts) must lie inside the figure canvas (1-pixel tolerance), and no two of them
may overlap (by more than 1 pixel each way).  Failures name the figure and the texts.
"""
from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

TOL = 1.0  # pixels
OUT = None  # set to a folder (e.g. Path("/tmp/figs")) to keep the PNGs for a look by eye
OUT = __import__("os").environ.get("LNSYNTH_FIG_DIR") or OUT


# --------------------------------------------------------------------------- checker
def _drawn_ticks(axis):
    """Ticks matplotlib draws: those inside the view interval (others keep stale labels)."""
    try:
        return list(axis._update_ticks())  # private but stable since matplotlib 3.1
    except Exception:  # pragma: no cover - fall back to every tick
        return list(axis.get_major_ticks()) + list(axis.get_minor_ticks())


def _texts(fig):
    """(owner, Text) for every Text that is drawn and not empty."""
    out = []
    tick_texts = set()
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        name = ax.get_label() or f"axes {fig.axes.index(ax)}"
        for axis in (ax.xaxis, ax.yaxis):
            for t in list(axis.get_major_ticks()) + list(axis.get_minor_ticks()):
                tick_texts.update((id(t.label1), id(t.label2)))  # drawn or not: never a free text
            if not axis.get_visible():
                continue
            for t in _drawn_ticks(axis):
                if not t.get_visible():
                    continue
                for lab in (t.label1, t.label2):
                    tick_texts.add(id(lab))
                    if lab.get_visible():
                        out.append((name, lab))
            tick_texts.add(id(axis.label))
            tick_texts.add(id(axis.offsetText))
            if ax.axison:
                out.append((name, axis.label))
                out.append((name, axis.offsetText))
        for a in ax.findobj(Text):
            if id(a) in tick_texts or a is ax.xaxis.label or a is ax.yaxis.label:
                continue
            out.append((name, a))
    for a in fig.findobj(Text, include_self=False):
        if any(a is t for _, t in out) or id(a) in tick_texts:
            continue
        if a.axes is None:
            out.append(("figure", a))
    seen, uniq = set(), []
    for owner, t in out:
        if id(t) in seen or not t.get_visible() or not t.get_text().strip():
            continue
        if t.get_alpha() == 0:
            continue
        seen.add(id(t))
        uniq.append((owner, t))
    return uniq


def layout_problems(fig, name):
    """Texts outside the canvas and overlapping pairs, as readable strings."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    W, H = fig.canvas.get_width_height()
    items = []
    for owner, t in _texts(fig):
        bb = Text.get_window_extent(t, r)  # the text alone (an Annotation's includes its arrow)
        if bb.width <= 0 or bb.height <= 0:
            continue
        items.append((owner, t, bb))
    probs = []
    for owner, t, bb in items:
        if bb.x0 < -TOL or bb.y0 < -TOL or bb.x1 > W + TOL or bb.y1 > H + TOL:
            probs.append(f"{name}: text {t.get_text()!r} ({owner}) leaves the canvas "
                         f"[{bb.x0:.0f},{bb.y0:.0f},{bb.x1:.0f},{bb.y1:.0f}] vs {W}x{H}")
    for (o1, t1, b1), (o2, t2, b2) in itertools.combinations(items, 2):
        ix = min(b1.x1, b2.x1) - max(b1.x0, b2.x0)
        iy = min(b1.y1, b2.y1) - max(b1.y0, b2.y0)
        if ix > TOL and iy > TOL:
            probs.append(f"{name}: text {t1.get_text()!r} ({o1}) overlaps {t2.get_text()!r} ({o2})")
    return probs


def check(fig, name):
    if OUT is not None:
        Path(OUT).mkdir(parents=True, exist_ok=True)
        fig.savefig(Path(OUT) / f"{name}.png")
    probs = layout_problems(fig, name)
    plt.close(fig)
    assert not probs, "\n".join(probs)


# --------------------------------------------------------------------------- data
Y13 = np.array([-0.89, -1.59, -1.35, -1.44, -0.22, -0.79, -1.62, 0.01, -0.47, -1.37, -0.34, 0.45, -0.02])
V13 = np.array([0.33, 0.19, 0.42, 0.02, 0.05, 0.007, 0.22, 0.004, 0.056, 0.073, 0.012, 0.53, 0.071])
LABELS13 = ["Aronson 1948", "Ferguson & Simes 1949", "Rosenthal et al 1960", "Hart & Sutherland 1977",
            "Frimodt-Moller et al 1973", "Stein & Aronson 1953", "Vandiviere et al 1973", "TPT Madras 1980",
            "Coetzee & Berjak 1968", "Rosenthal et al 1961", "Comstock et al 1974",
            "Comstock & Webster 1969", "Comstock et al 1976"]
ARMS13 = pd.DataFrame({"events_treat": [4, 6, 3, 62, 33, 180, 8, 505, 29, 17, 186, 5, 27],
                       "n_treat": [123, 306, 231, 13598, 5069, 1541, 2545, 88391, 7499, 1716, 50634, 2498, 16913],
                       "events_ctrl": [11, 29, 11, 248, 47, 372, 10, 499, 45, 65, 141, 3, 29],
                       "n_ctrl": [139, 303, 220, 12867, 5808, 1451, 629, 88391, 7277, 1665, 27338, 2341, 17854]})


def _meta(k=13, method="REML", measure="RR", labels=None):
    from lnsynth.pairwise import meta_analysis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return meta_analysis(yi=Y13[:k], vi=V13[:k], method=method, measure=measure,
                             labels=labels or LABELS13[:k])


# --------------------------------------------------------------------------- pairwise forest
@pytest.mark.parametrize("k", [1, 2, 13])
@pytest.mark.parametrize("method", ["REML", "FE"])
def test_forest(k, method):
    from lnsynth.plots.forest import forest_plot

    check(forest_plot(_meta(k, method)), f"forest_k{k}_{method}")


@pytest.mark.parametrize("k", [1, 3, 13])
def test_forest_arm_data(k):
    from lnsynth.plots.forest import forest_plot

    fig = forest_plot(_meta(k), arm_data=ARMS13.iloc[:k], arm_labels=("Vaccinated", "Not vaccinated"),
                      favours=("Favours vaccine", "Favours no vaccine"), title="BCG vaccine and tuberculosis")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "4/123" in texts and "11/139" in texts
    assert any(t.endswith("%") for t in texts)  # weight column
    if k == 1:
        assert not any("Model" in t or "Q =" in t or "Total" in t for t in texts)
    check(fig, f"forest_arms_k{k}")


def test_forest_continuous_arm_data():
    from lnsynth.plots.forest import forest_plot

    arms = pd.DataFrame({"mean_treat": [10.2, 11.5, 9.8], "sd_treat": [2.1, 3.0, 2.5], "n_treat": [40, 55, 61],
                         "mean_ctrl": [12.0, 12.1, 11.0], "sd_ctrl": [2.4, 2.9, 2.2], "n_ctrl": [38, 50, 60]})
    fig = forest_plot(_meta(3, measure="MD"), arm_data=arms, transf=None)
    check(fig, "forest_md_arms")


def test_forest_long_labels_and_plain_ticks():
    from lnsynth.plots.forest import forest_plot

    labs = [f"A very long study label number {i} (multicentre, open label)" for i in range(5)]
    fig = forest_plot(_meta(5, labels=labs))
    ax = fig.axes[0]
    fig.canvas.draw()
    ticks = [t.get_text() for t in _drawn_ticks(ax.xaxis) for t in [t.label1] if t.get_text()]
    assert ticks and all("10^" not in s and "\\times" not in s and "$" not in s for s in ticks), ticks
    check(fig, "forest_long_labels")


def test_subgroup_forest():
    from lnsynth.pairwise.subgroup import subgroup_analysis
    from lnsynth.plots.forest import subgroup_forest_plot

    groups = ["random"] * 6 + ["alternate"] * 4 + ["systematic"] * 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sub = subgroup_analysis(Y13, V13, groups)
    fig = subgroup_forest_plot(sub, groups, labels=LABELS13, measure="RR", arm_data=ARMS13)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("subgroup differences" in t for t in texts)
    check(fig, "subgroup_forest")


# --------------------------------------------------------------------------- funnel, gosh
def test_funnel():
    from lnsynth.pairwise import meta_analysis
    from lnsynth.pairwise.bias import trim_and_fill
    from lnsynth.plots.funnel import funnel_plot

    fit = meta_analysis(yi=Y13, vi=V13, method="REML", measure="RR")
    for i, kw in enumerate(({"trimfill": trim_and_fill(fit)}, {"contours": None}, {"transf": "exp"}, {})):
        fig = funnel_plot(fit, **kw)
        ax = fig.axes[0]
        leg = ax.get_legend() or (fig.legends[0] if fig.legends else None)
        fig.canvas.draw()
        if leg is not None and kw.get("contours", 1) is not None:
            lb = leg.get_window_extent()
            ab = ax.get_window_extent()
            ix = min(lb.x1, ab.x1) - max(lb.x0, ab.x0)
            iy = min(lb.y1, ab.y1) - max(lb.y0, ab.y0)
            assert not (ix > TOL and iy > TOL), "funnel legend covers the plot area"
        check(fig, f"funnel_{i}")


def test_gosh():
    from lnsynth.pairwise import meta_analysis
    from lnsynth.pairwise.gosh import gosh
    from lnsynth.plots.gosh import gosh_plot

    g = gosh(meta_analysis(yi=Y13[:8], vi=V13[:8], method="REML", labels=LABELS13[:8]))
    for i, kw in enumerate(({}, {"highlight": 2}, {"max_points": 100}, {"transf": "exp"})):
        check(gosh_plot(g, **kw), f"gosh_{i}")


# --------------------------------------------------------------------------- network
@pytest.fixture(scope="module")
def nma_fit():
    from lnsynth.analyses.network_data import REFERENCE_NODE, arm_level_data
    from lnsynth.evidence import load_evidence
    from lnsynth.network import network_meta_analysis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = arm_level_data(load_evidence(), "complete remission", approximate=True, warn=False)
        return network_meta_analysis(d.frame, study="study", treatment="treatment", events="events", n="n",
                                     measure="OR", reference=REFERENCE_NODE, method="REML")


def test_nma_forest(nma_fit):
    from lnsynth.plots.network import nma_forest

    fig = nma_forest(nma_fit)
    fig.canvas.draw()
    ticks = [t.label1.get_text() for t in _drawn_ticks(fig.axes[0].xaxis) if t.label1.get_text()]
    assert ticks and all("10^" not in s and "$" not in s for s in ticks), ticks
    check(fig, "nma_forest")
    check(nma_forest(nma_fit, exponentiate=False), "nma_forest_log")


@pytest.mark.parametrize("layout", ["circular", "spring"])
def test_network_graph(nma_fit, layout):
    from lnsynth.plots.network import network_graph

    fig = network_graph(nma_fit, layout=layout)
    assert any("Multitarget" in t.get_text() for t in fig.axes[0].texts)
    check(fig, f"network_graph_{layout}")


def test_network_graph_long_names():
    from lnsynth.plots.network import network_graph

    arms = pd.DataFrame({"study": ["s1", "s1", "s2", "s2", "s3", "s3", "s4", "s4"],
                         "trt": ["Multitarget (TAC+MMF)", "IV cyclophosphamide (NIH)",
                                 "Multitarget (TAC+MMF)", "Mycophenolate mofetil",
                                 "Mycophenolate mofetil", "IV cyclophosphamide (NIH)",
                                 "Tacrolimus alone (CNI monotherapy)", "IV cyclophosphamide (NIH)"],
                         "n": [40, 41, 30, 31, 80, 82, 20, 22]})
    check(network_graph(arms, study="study", treatment="trt", n="n"), "network_graph_long")


def _linde_fit():
    import json

    from lnsynth.network import network_meta_analysis

    ref = json.loads((Path(__file__).parent / "reference" / "network_reference.json").read_text())
    c = next(c for c in ref["cases"] if c["name"] == "linde2015")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return network_meta_analysis(pd.DataFrame(c["arms"]), study="study", treatment="trt", events="x", n="n",
                                     reference="Placebo", method="REML")


def test_net_heat_rankogram_adjusted_funnel(nma_fit):
    from lnsynth.plots.network import adjusted_funnel_plot, net_heat_plot, rankogram

    linde = _linde_fit()
    check(net_heat_plot(nma_fit), "net_heat")
    check(net_heat_plot(linde), "net_heat_linde")
    check(net_heat_plot(linde, random=True), "net_heat_linde_random")
    check(rankogram(nma_fit, small_values="bad", n_sim=4000), "rankogram")
    check(rankogram(linde, cumulative=True, n_sim=4000), "rankogram_cumulative_linde")
    check(adjusted_funnel_plot(nma_fit), "adjusted_funnel")
    check(adjusted_funnel_plot(linde), "adjusted_funnel_linde")


# --------------------------------------------------------------------------- sensitivity
@pytest.fixture(scope="module")
def sens_report():
    from lnsynth.analyses.sensitivity import run_sensitivity
    from lnsynth.evidence import load_evidence

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_sensitivity(load_evidence(), question_ids=["tac-vs-mmf"])


def test_sensitivity_figures(sens_report):
    from lnsynth.plots.sensitivity import sensitivity_figures

    figs = sensitivity_figures(sens_report)
    assert figs
    for i, fig in enumerate(figs):
        check(fig, f"sensitivity_{i}")


def test_sensitivity_long_label_does_not_push_the_plot_aside(sens_report):
    """One very long subgroup label is wrapped (~40 characters a line): the plot area keeps its width
    and the figure grows only by the wrapped label, not by the label's full length."""
    import dataclasses

    from lnsynth.plots.sensitivity import leave_one_out_plot, sensitivity_plot

    q = sens_report.questions[0][0]
    base = sensitivity_plot(sens_report, q)
    base_w = base.get_size_inches()[0]
    base_ax = base.axes[0].get_position().width * base_w
    plt.close(base)
    long = "a subgroup label far longer than any sensible label, " * 4
    rows = list(sens_report.rows)
    i = next(j for j, r in enumerate(rows) if r.question == q and r.analysis not in ("main", "leave-one-out"))
    rows[i] = dataclasses.replace(rows[i], subgroup=long)
    j = next((j for j, r in enumerate(rows) if r.question == q and r.analysis == "leave-one-out" and r.k >= 1
              and r.estimate is not None), None)
    if j is not None:
        rows[j] = dataclasses.replace(rows[j], subgroup=long)
    rep = dataclasses.replace(sens_report, rows=tuple(rows))
    fig = sensitivity_plot(rep, q)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert max(len(line) for lab in labels for line in lab.split("\n")) <= 40
    W = fig.get_size_inches()[0]
    assert fig.axes[0].get_position().width * W == pytest.approx(base_ax, rel=1e-6)
    assert W < base_w + 1.0  # not the label's full length (several inches at 8 pt)
    check(fig, "sensitivity_long_label")
    if j is not None:
        fig = leave_one_out_plot(rep, q)
        assert fig is not None
        check(fig, "sensitivity_long_label_loo")


# --------------------------------------------------------------------------- evidence
@pytest.mark.parametrize("fn", ["response_rates_figure", "adverse_events_figure", "trial_landscape_figure",
                                "provenance_mix_figure"])
def test_evidence_figures(fn):
    from lnsynth.evidence import load_evidence
    from lnsynth.plots import evidence as ep

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = getattr(ep, fn)(load_evidence())
    check(fig, f"evidence_{fn}")


# --------------------------------------------------------------------------- simulate (synthetic inputs)
def _sim_inputs():
    w = np.arange(0, 105, 1.0)
    traj = pd.DataFrame({"week": w, "mmf": 3 * np.exp(-w / 30) + 0.6, "cni_immune_only": 3 * np.exp(-w / 28) + 0.5,
                         "cni_full": 3 * np.exp(-w / 12) + 0.3})
    regs = ["TAC", "CSA", "TAC+MMF", "VCS23.7+MMF", "MMF", "IVCYC"]
    rem = pd.DataFrame([{"regimen": r, "months": m, "complete": 0.2 + 0.05 * i + 0.01 * m,
                         "low": 0.1 + 0.05 * i, "high": 0.4 + 0.05 * i + 0.01 * m}
                        for i, r in enumerate(regs) for m in (6, 12, 24)])
    curves = pd.DataFrame([{"arm": a, "draw": d, "week": wk, "cum_flare": (0.5 if a == "tac" else 0.35) *
                            (1 - np.exp(-wk / 100)) * (1 + 0.05 * d)}
                           for a in ("tac", "mmf") for d in range(4) for wk in range(0, 265, 8)])
    power = pd.DataFrame({"years": [1, 2, 5, 10], "p_cni": [0.02, 0.04, 0.1, 0.2],
                          "p_control": [0.03, 0.06, 0.14, 0.27]})
    share = pd.DataFrame({"regimen": regs[:4], "share": [0.3, 0.25, 0.2, 0.1], "share_low": [0.2, 0.15, 0.1, 0.05],
                          "share_high": [0.4, 0.35, 0.3, 0.2]})
    val = pd.DataFrame([{"trial": f"trial{i}", "arm": a, "endpoint": "complete remission", "observed_events": 10 + i,
                         "observed_n": 50, "pred_low": 0.1, "pred_high": 0.4, "held_out": True,
                         "set": "loto" if i < 8 else "external"}
                        for i in range(12) for a in ("TAC", "MMF")])
    return traj, rem, curves, power, share, val


def test_simulate_figures():
    from lnsynth.plots import simulate as sp

    traj, rem, curves, power, share, val = _sim_inputs()
    check(sp.proteinuria_trajectories(traj), "sim_trajectories")
    check(sp.remission_horizon(rem), "sim_remission")
    check(sp.flares_after_taper(curves, {"tac": 0.54, "mmf": 0.38}, end_week=264), "sim_flares")
    check(sp.power_curves(power), "sim_power")
    check(sp.nonimmune_share(share), "sim_share")
    check(sp.validation_intervals(val), "sim_validation")
    null = val.assign(pred_low=0.15, pred_high=0.45)
    check(sp.validation_intervals(val, null=null), "sim_validation_with_null")


# --------------------------------------------------------------------------- the checker itself
def test_checker_catches_clipping_and_overlap():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.text(0.5, 0.5, "one label", transform=ax.transAxes)
    ax.text(0.52, 0.5, "another label", transform=ax.transAxes)
    ax.text(1.3, 0.5, "far outside the canvas", transform=ax.transAxes)
    probs = layout_problems(fig, "probe")
    plt.close(fig)
    assert any("leaves the canvas" in p and "far outside" in p for p in probs)
    assert any("overlaps" in p for p in probs)
