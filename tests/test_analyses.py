"""Engines applied to the evidence: comparison selection, re-derivation, certainty rules, CLI."""

from __future__ import annotations

import io
import json
import math
import warnings

import pandas as pd
import pytest
from typer.testing import CliRunner

from lnsynth.analyses.network_data import REFERENCE_NODE, arm_level_data
from lnsynth.analyses.rederive import rederive
from lnsynth.cli import app
from lnsynth.evidence import load_evidence
from lnsynth.analyses.selection import SelectionWarning, adverse_event_data, pairwise_data

runner = CliRunner()


@pytest.fixture(scope="module")
def ev():
    return load_evidence()


def test_selection_warns_about_every_left_out_study(ev):
    with pytest.warns(SelectionWarning, match=r"liu2015.*25\.6% of 181 is reproduced by no count"):
        d = pairwise_data(ev, "complete remission", "CNI-any", "IVCYC,CYC")
    assert set(d.frame["study"]) >= {"bao2008", "zavada2010"}
    assert "liu2015" not in set(d.frame["study"])
    assert ("liu2015" in dict(d.excluded))
    bao = d.frame.set_index("study").loc["bao2008"]
    # 9-month result is the latest; 65% and 15% of 20
    assert (bao["events_treat"], bao["n_treat"], bao["events_ctrl"], bao["n_ctrl"]) == (13, 20, 3, 20)
    assert bao["timepoint_weeks"] == 39.0
    early = pairwise_data(ev, "complete remission", "CNI-any", "IVCYC,CYC", timepoint="earliest", warn=False)
    b6 = early.frame.set_index("study").loc["bao2008"]
    assert (b6["events_treat"], b6["events_ctrl"]) == (10, 1)


def test_approximate_counts_are_flagged(ev):
    d = pairwise_data(ev, "complete remission", "TAC+MMF", "IVCYC", approximate=True, warn=False)
    liu = d.frame.set_index("study").loc["liu2015"]
    assert liu["approximate"] and liu["events_ctrl"] == round(0.256 * 181)
    assert any("approximate" in n for n in d.notes())


def test_multi_arm_studies_are_combined(ev):
    d = pairwise_data(ev, "complete remission", "CNI+MMF", "MMF", warn=False)
    aura = d.frame.set_index("study").loc["rovin2019"]
    assert (aura["events_treat"], aura["n_treat"]) == (44 + 35, 89 + 88)
    assert (aura["events_ctrl"], aura["n_ctrl"]) == (21, 88)
    assert aura["combined_arms"] == 2


def test_selection_errors_name_the_problem(ev):
    with pytest.raises(ValueError, match="overlap"):
        pairwise_data(ev, "complete remission", "CNI", "TAC")
    with pytest.raises(ValueError, match="unknown regimen"):
        pairwise_data(ev, "complete remission", "FOO", "IVCYC")
    with pytest.raises(ValueError, match="no outcome"):
        pairwise_data(ev, "cure", "CNI", "IVCYC")


def test_adverse_event_comparison_uses_wording_of_both_arms(ev):
    d = adverse_event_data(ev, "death", "CNI-any", "MMF")
    aura = d.frame.set_index("study").loc["rovin2019"]
    assert (aura["events_treat"], aura["n_treat"], aura["events_ctrl"], aura["n_ctrl"]) == (12, 177, 1, 88)


def test_network_data_maps_regimens_to_nodes(ev):
    d = arm_level_data(ev, "complete remission", approximate=False, warn=False)
    assert REFERENCE_NODE in set(d.frame["treatment"])
    assert "liu2015" in dict(d.excluded)
    aura = d.frame[d.frame["study"] == "rovin2019"].set_index("treatment")
    assert aura.loc["Voclosporin+MMF", "n"] == 177 and aura.loc["MMF", "n"] == 88
    zav = d.frame[d.frame["study"] == "zavada2010"].set_index("treatment")
    assert "IV cyclophosphamide" in zav.index  # route from the title of ref 10


@pytest.fixture(scope="module")
def red(ev):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rederive(ev)


def test_rederive_has_a_row_per_published_estimate(ev, red):
    f = red.frame
    n_pub = sum(len(s.estimates) for s in ev.syntheses if s.id in ("hannah2016", "palmer2017"))
    assert len(f) == n_pub
    for s in ev.syntheses:
        if s.id not in ("hannah2016", "palmer2017"):  # the review's two syntheses; the newer NMAs are stored, not re-derived
            continue
        for e in s.estimates:
            row = f[(f["synthesis"] == s.label) & (f["treatment"] == e.treatment) & (f["control"] == e.control) & (f["outcome"] == e.outcome)]
            assert len(row) == 1
            assert row["published_estimate"].iloc[0] == e.estimate.value
            assert row["published_ci_low"].iloc[0] == e.ci_low.value
    assert f["why_different"].str.len().gt(10).all()


def test_rederived_pairwise_equals_the_engine_on_the_selected_data(ev, red):
    from lnsynth.pairwise import effect_sizes, meta_analysis

    row = red.frame[(red.frame["synthesis"].str.startswith("Hannah")) & (red.frame["treatment"] == "TAC+MMF")].iloc[0]
    d = pairwise_data(ev, "overall remission", "TAC+MMF", "IVCYC,CYC", approximate=True, warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = meta_analysis(effect_sizes("RR", **d.counts()), method="REML").to_dict()
    assert math.isclose(row["our_estimate"], math.exp(fit["estimate"]), rel_tol=1e-12)
    assert row["our_k"] == d.k


def test_rederived_network_equals_the_engine(ev, red):
    from lnsynth.network import network_meta_analysis

    d = arm_level_data(ev, "complete remission", approximate=True, warn=False)
    fit = network_meta_analysis(d.frame, study="study", treatment="treatment", events="events", n="n", measure="OR", reference=REFERENCE_NODE, method="REML")
    re_ = fit.relative_effects().set_index("treatment")
    row = red.frame[(red.frame["synthesis"].str.startswith("Palmer")) & (red.frame["treatment"] == "TAC+MMF")].iloc[0]
    assert math.isclose(row["our_estimate"], math.exp(re_.loc["Multitarget (TAC+MMF)", "estimate"]), rel_tol=1e-10)
    assert row["range_low"] <= row["our_estimate"] <= row["range_high"]


def test_cli_meta_nma_rederive(tmp_path):
    res = runner.invoke(app, ["meta", "--outcome", "complete remission", "--treatment", "CNI+MMF", "--control", "MMF",
                              "--format", "json", "--plot", str(tmp_path / "f.png"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout[res.stdout.index("{"):])
    assert payload["result"]["k"] >= 1 and "estimate" in payload["result"]
    assert (tmp_path / "f.png").stat().st_size > 1000
    res = runner.invoke(app, ["nma", "--format", "csv", "--out", str(tmp_path / "nma")])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(io.StringIO(res.stdout[res.stdout.index("treatment"):]))
    assert {"treatment", "estimate", "se", "ci_low", "ci_high"} <= set(df.columns)
    res = runner.invoke(app, ["rederive", "--format", "md"])
    assert res.exit_code == 0 and "Palmer" in res.output and "Hannah" in res.output


def test_cli_export_round_trips_the_web_store(tmp_path):
    pytest.importorskip("fastapi")
    from lnsynth.web import create_app

    db = tmp_path / "store.sqlite"
    create_app(db, token="t")  # seeds the store from the package data
    res = runner.invoke(app, ["export", "--db", str(db), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    ev2 = load_evidence(tmp_path / "out")
    assert {s.id for s in ev2.studies} == {s.id for s in load_evidence().studies}
    res = runner.invoke(app, ["export", "--db", str(tmp_path / "missing.sqlite"), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2


def test_cli_sensitivity(tmp_path):
    res = runner.invoke(app, ["sensitivity", "--format", "csv", "--figures", str(tmp_path)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(io.StringIO(res.stdout[res.stdout.index("question"):]))
    assert {"question", "outcome", "subgroup", "k", "estimate", "ci_low", "ci_high"} <= set(df.columns)
    assert len(list(tmp_path.glob("sensitivity-*.png"))) >= 1


def test_cli_simulate_validate_and_question(tmp_path):
    res = runner.invoke(app, ["simulate", "validate", "--format", "csv"])
    assert res.exit_code == 0, res.output
    body = res.stdout[res.stdout.index("trial,"):]
    df = pd.read_csv(io.StringIO(body.split("Hypothesis-generating")[0]))
    assert list(df.columns) == ["trial", "arm", "regimen", "endpoint", "endpoint_family", "observed_events",
                                "observed_n", "pred_low", "pred_high", "held_out", "log_pred", "set"]  # issue 15 contract
    assert len(df) > 10 and ((df["pred_low"] <= df["pred_high"]).all())
    assert set(df["set"]) == {"loto", "external"} and (df["log_pred"] <= 0).all()
    res = runner.invoke(app, ["simulate", "question", "a", "--format", "json", "--plot", str(tmp_path / "a.png")])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout[res.stdout.index("{"):res.stdout.rindex("}") + 1])
    assert payload["low"] <= payload["estimate"] <= payload["high"]
    assert (tmp_path / "a.png").exists()
    res = runner.invoke(app, ["simulate", "question", "z"])
    assert res.exit_code == 2
