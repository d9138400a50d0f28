"""Risk-of-bias traffic-light panel beside the forest plot (issue 24, item 4): one row per study in
the forest's order, one colour per judgement."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from lnsynth.plots.rob import COLUMNS, STYLE, add_rob_panel, judgements_row, rob_table

LABELS = ["Alpha 2001", "Beta 2005", "Gamma 2010"]
ROBS = [
    {"D1": "low", "D2": "low", "D3": "some concerns", "D4": "low", "D5": "low", "overall": "some concerns"},
    None,
    {"randomisation": "high", "deviations": "no information", "missing": "low", "measurement": "low",
     "selection": "low", "overall": "high"},
]


def _forest(**kw):
    from lnsynth.pairwise import meta_analysis
    from lnsynth.plots.forest import forest_plot

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = meta_analysis(yi=[0.1, -0.2, 0.3], vi=[0.04, 0.09, 0.05], method="REML", measure="RR", labels=LABELS)
    return forest_plot(r, **kw)


def _panel(fig):
    return next(a for a in fig.axes if a.get_label() == "rob")


def _label_y(fig, label):
    return next(t.get_position()[1] for t in fig.axes[0].texts if t.get_text() == label)


def test_table_in_forest_order_with_all_key_styles():
    tab = rob_table(LABELS, ROBS)
    assert list(tab["study"]) == LABELS
    assert list(tab.columns) == ["study", *COLUMNS]
    assert tab.loc[0, "D3"] == "some concerns" and tab.loc[0, "Overall"] == "some concerns"
    assert set(tab.loc[1, list(COLUMNS)]) == {"not assessed"}
    assert tab.loc[2, "D1"] == "high" and tab.loc[2, "D2"] == "no information" and tab.loc[2, "D5"] == "low"
    with pytest.raises(ValueError, match="2 assessments for 3 studies"):
        rob_table(LABELS, ROBS[:2])
    with pytest.raises(ValueError, match="judgement"):
        judgements_row({"D1": "dubious"})


def test_panel_has_one_row_per_study_in_forest_order_and_colours_per_judgement():
    fig = add_rob_panel(_forest(), LABELS, ROBS)
    pax = _panel(fig)
    pts = pax.rob_points.get_offsets()
    assert len(pts) == len(LABELS) * len(COLUMNS)
    ys = np.asarray(pts)[:, 1].reshape(len(LABELS), len(COLUMNS))
    # each study's dots sit on its forest row, rows in the forest's order (top to bottom)
    for i, lab in enumerate(LABELS):
        assert np.allclose(ys[i], _label_y(fig, lab))
    assert ys[0, 0] > ys[1, 0] > ys[2, 0]
    assert pax.get_ylim() == fig.axes[0].get_ylim()
    # colours: the judgement's colour at each (study, column)
    fc = pax.rob_points.get_facecolors().reshape(len(LABELS), len(COLUMNS), 4)
    tab = pax.rob_table
    for i in range(len(LABELS)):
        for j, c in enumerate(COLUMNS):
            assert np.allclose(fc[i, j], to_rgba(STYLE[tab.loc[i, c]][0]))
    assert np.allclose(fc[0, 0], to_rgba(STYLE["low"][0]))
    assert np.allclose(fc[2, 0], to_rgba(STYLE["high"][0]))
    assert not np.allclose(to_rgba(STYLE["low"][0]), to_rgba(STYLE["high"][0]))
    # the panel lies right of the forest's effect column, inside the canvas
    r = fig.canvas.get_renderer()
    assert pax.get_window_extent(r).x0 >= fig.axes[0].get_tightbbox(r).x1 - 1
    assert fig.get_tightbbox(r).x1 <= fig.get_size_inches()[0] + 1e-6


def test_forest_plot_rob_parameter_draws_the_panel():
    fig = _forest(rob=ROBS)
    pax = _panel(fig)
    assert list(pax.rob_table["study"]) == LABELS
    assert len([a for a in fig.axes if a.get_label() == "rob"]) == 1
    assert not any(a.get_label() == "rob" for a in _forest().axes)


def test_unknown_study_is_a_clear_error():
    with pytest.raises(ValueError, match="not a row of this forest plot"):
        add_rob_panel(_forest(), ["Alpha 2001", "Beta 2005", "Delta 2020"], ROBS)


def test_stored_rob2_assessments():
    from lnsynth.evidence import load_evidence

    ev = load_evidence()
    st = next(s for s in ev.studies if s.rob is not None and s.rob.assessed)
    row = judgements_row(st.rob)
    assert row["Overall"] == st.rob.overall()
    assert row["D1"] == st.rob.randomisation.judgement
