"""run_sensitivity on the stored trials and on a small synthetic evidence base."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from lnsynth.effects import effect_sizes
from lnsynth.pairwise import meta_analysis
from lnsynth.pairwise.sensitivity import FRAME_COLUMNS, build_contrasts, population_group, run_sensitivity


class FakeEvidence:
    """Minimal stand-in for EvidenceBase: outcomes_frame() and studies (no drug doses)."""

    studies = ()

    def __init__(self, rows):
        self._rows = rows

    def outcomes_frame(self):
        cols = ["study", "study_label", "year", "arm", "arm_label", "regimen", "regimen_class", "endpoint",
                "timepoint_weeks", "percent", "events", "events_derived", "events_candidates", "n", "n_derived",
                "population", "setting"]
        return pd.DataFrame(self._rows, columns=cols)


def _arm(study, year, arm, regimen, cls, endpoint, weeks, events, n, setting=None, cands=None, derived=False):
    return [study, f"{study.title()} {year}", year, arm, arm, regimen, cls, endpoint, weeks, None, events, derived,
            cands, n, False, "lupus nephritis", setting]


def _fake():
    rows = []
    data = [("a", 2010, "TAC+MMF", "CNI+MMF", 26, 12, 30, 6, 30, "China"),
            ("b", 2012, "TAC", "CNI", 52, 20, 40, 14, 40, "Hong Kong"),
            ("c", 2015, "CSA", "CNI", 52, 8, 25, 7, 25, None),
            ("d", 2019, "VCS23.7+MMF", "CNI+MMF", 48, 40, 90, 22, 90, "79 centers in 20 countries"),
            ("e", 2020, "TAC", "CNI", 24, 9, 20, 5, 21, "Japan")]
    for s, y, reg, cls, w, et, nt, ec, nc, setting in data:
        rows.append(_arm(s, y, "t", reg, cls, "complete remission", w, et, nt, setting, derived=True))
        rows.append(_arm(s, y, "c", "IVCYC", "IVCYC", "complete remission", w, ec, nc, setting))
    # ambiguous derived count in study c, second timepoint for a, missing control counts in f
    rows[4][12] = (7, 8, 9)
    rows.append(_arm("a", 2010, "t", "TAC+MMF", "CNI+MMF", "complete remission", 12, 8, 30, "China"))
    rows.append(_arm("a", 2010, "c", "IVCYC", "IVCYC", "complete remission", 12, 3, 30, "China"))
    rows.append(_arm("f", 2021, "t", "TAC", "CNI", "complete remission", 24, 10, 20))
    rows.append(_arm("f", 2021, "c", "MMF", "MMF", "complete remission", 24, None, 20))
    return FakeEvidence(rows)


def test_population_group():
    assert population_group(None, "China") == "Chinese/Asian"
    assert population_group("Chinese patients", None) == "Chinese/Asian"
    assert population_group(None, "79 centers in 20 countries") == "multinational"
    assert population_group(None, None) == "not stated"
    assert population_group("proliferative lupus nephritis", None) == "not stated"
    assert population_group(None, "Italy") == "other: Italy"


def test_contrasts_and_exclusions():
    c, e = build_contrasts(_fake())
    assert set(c["study"]) == {"a", "b", "c", "d", "e"}
    assert (e["study"] == "f").any() and "not reported" in e.loc[e["study"] == "f", "reason"].iloc[0]
    assert bool(c.loc[c["study"] == "c", "ambiguous"].iloc[0])
    assert c.loc[c["study"] == "c", "events_treat_hi"].iloc[0] == 9
    assert c.loc[c["study"] == "c", "events_treat_lo"].iloc[0] == 7


def test_fake_report_numbers_and_honesty():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = run_sensitivity(_fake())
    f = rep.to_frame()
    assert list(f.columns) == list(FRAME_COLUMNS)
    over = f[(f.question == "overall") & (f.outcome == "complete remission")].iloc[0]
    assert over.k == 5
    # latest timepoint per study: a at 26 weeks
    et = np.array([12, 20, 8, 40, 9.0])
    nt = np.array([30, 40, 25, 90, 20.0])
    ec = np.array([6, 14, 7, 22, 5.0])
    nc = np.array([30, 40, 25, 90, 21.0])
    fit = meta_analysis(effect_sizes("RR", events_treat=et, n_treat=nt, events_ctrl=ec, n_ctrl=nc), method="REML")
    assert over.log_estimate == pytest.approx(fit.estimate, rel=1e-12)
    assert over.estimate == pytest.approx(math.exp(fit.estimate), rel=1e-12)
    assert over.ci_low == pytest.approx(math.exp(fit.ci_low), rel=1e-12)
    # the ambiguous study gives a range around the point estimate
    assert over.range_low < over.estimate < over.range_high
    assert "range" in over.note
    # single-study subgroups are marked, not pooled
    pop = f[(f.question == "population") & (f.outcome == "complete remission")]
    multi = pop[pop.subgroup == "multinational"].iloc[0]
    assert multi.k == 1 and "single study" in multi.note
    # an outcome without data says so instead of a number
    ov = f[(f.question == "overall") & (f.outcome == "overall remission")].iloc[0]
    assert ov.k == 0 and ov.note == "no data" and not np.isfinite(ov.estimate)
    # leave-one-out rows: one per study, equal to refits
    loo = f[(f.question == "leave-one-out") & (f.outcome == "complete remission")]
    assert len(loo) == 5
    keep = np.arange(5) != 0
    fit0 = meta_analysis(effect_sizes("RR", events_treat=et[keep], n_treat=nt[keep], events_ctrl=ec[keep],
                                      n_ctrl=nc[keep]), method="REML")
    assert loo.iloc[0].log_estimate == pytest.approx(fit0.estimate, rel=1e-10)
    # timepoint question uses both timepoints of study a
    tp = f[(f.question == "timepoint") & (f.outcome == "complete remission")]
    assert set(tp.subgroup) >= {"<= 26 weeks", "> 26 weeks", "test for subgroup differences"}
    md = rep.to_markdown()
    assert "## complete remission: population" in md and "Contrasts not analysable" in md
    from lnsynth.plots.sensitivity import sensitivity_figures

    figs = sensitivity_figures(rep)
    assert len(figs) >= 2
    import matplotlib.pyplot as plt

    for fig in figs:
        plt.close(fig)


def test_stored_trials_run():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = run_sensitivity()
    f = rep.to_frame()
    assert set(f.outcome) == {"complete remission", "overall remission"}
    assert {"overall", "population", "timepoint", "CNI type", "CNI alone vs CNI + MMF", "dose",
            "leave-one-out"} <= set(f.question)
    # every row either has a number or says why not
    est_rows = f[~f.subgroup.str.startswith(("test for", "meta-regression"))]
    for _, r in est_rows.iterrows():
        assert np.isfinite(r.estimate) or r.note, r
    # pooled rows are consistent with the contrasts used
    for _, r in f[f.question == "overall"].iterrows():
        if r.k >= 1:
            assert r.ci_low <= r.estimate <= r.ci_high
            assert r.log_estimate == pytest.approx(math.log(r.estimate))
    import matplotlib.pyplot as plt

    from lnsynth.plots.sensitivity import sensitivity_figures

    for fig in sensitivity_figures(rep):
        plt.close(fig)
