"""CINeMA (issue 24, item 4): the domain rules at their boundaries, a hand-checkable network and
the stored induction network (one row per NMA estimate, each domain with its reason)."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest

from lnsynth.network import network_meta_analysis
from lnsynth.network.cinema import (
    CONFIDENCE,
    DOMAINS,
    JUDGEMENTS,
    cinema,
    crossings,
    heterogeneity_level,
    imprecision_level,
    incoherence_areas_level,
    overall_confidence,
    pvalue_level,
    roe_from_ratio,
    study_contributions,
    study_level,
    summarise_levels,
)

ROE = (math.log(0.8), math.log(1.25))  # (-0.223, 0.223)


# ----------------------------------------------------------------------------- rules at their boundaries
def test_study_levels_accept_cinema_codes_and_reject_others():
    assert [study_level(x) for x in ("low", "L", 1, "some concerns", "U", "moderate", 2, "high", "H", 3.0)] == \
        [1, 1, 1, 2, 2, 2, 2, 3, 3, 3]
    with pytest.raises(ValueError, match="not a study level"):
        study_level("probably fine")


def test_majority_average_highest_rules():
    # majority: the level with the largest share; a tie goes to the worse level
    assert summarise_levels({1: 0.6, 3: 0.4}, "majority") == 1
    assert summarise_levels({1: 0.5, 3: 0.5}, "majority") == 3
    assert summarise_levels({1: 0.4, 2: 0.3, 3: 0.3}, "majority") == 1
    # average: sum(level * share) rounded half up (1.5 -> 2, 1.48 -> 1, 2.5 -> 3)
    assert summarise_levels({1: 0.5, 2: 0.5}, "average") == 2
    assert summarise_levels({1: 0.76, 3: 0.24}, "average") == 1
    assert summarise_levels({2: 0.5, 3: 0.5}, "average") == 3
    # highest: any positive share of a worse level
    assert summarise_levels({1: 0.999, 3: 0.001}, "highest") == 3
    assert summarise_levels({1: 1.0}, "highest") == 1
    with pytest.raises(ValueError):
        summarise_levels({1: 1.0}, "median")


def test_imprecision_counts_boundaries_strictly_inside_the_ci():
    lo, hi = ROE
    assert imprecision_level((-0.1, 0.1), ROE) == 0            # within the range of equivalence
    assert imprecision_level((0.3, 0.9), ROE) == 0             # wholly beyond the upper threshold
    assert imprecision_level((lo, 0.1), ROE) == 0              # touching a boundary is not crossing it
    assert imprecision_level((lo - 1e-9, 0.1), ROE) == 1       # just across the lower one
    assert imprecision_level((0.1, 0.9), ROE) == 1
    assert imprecision_level((-0.9, 0.9), ROE) == 2            # important effects both ways
    assert crossings(-1, 1, lo, hi) == 2


def test_heterogeneity_rule_table():
    # CI within the range of equivalence: PI compared with the range itself
    assert heterogeneity_level(0.0, (-0.1, 0.1), (-0.15, 0.15), ROE)[0] == 0
    assert heterogeneity_level(0.0, (-0.1, 0.1), (-0.3, 0.15), ROE)[0] == 1
    assert heterogeneity_level(0.0, (-0.1, 0.1), (-0.3, 0.3), ROE)[0] == 2
    # estimate below the null and CI beyond the lower threshold: boundaries are the null and the upper threshold
    lvl, _, _, bounds = heterogeneity_level(-0.7, (-1.0, -0.4), (-1.5, -0.05), ROE)
    assert (lvl, bounds) == (0, (0.0, ROE[1]))
    assert heterogeneity_level(-0.7, (-1.0, -0.4), (-1.5, 0.1), ROE)[0] == 1      # PI reaches the null
    assert heterogeneity_level(-0.7, (-1.0, -0.4), (-1.5, 0.3), ROE)[0] == 2      # ... and important harm
    # CI already crosses the null: the PI crossing it too raises no concern
    assert heterogeneity_level(0.1, (-0.1, 0.3), (-0.2, 0.4), ROE)[:3] == (0, 1, 1)


def test_incoherence_area_agreement():
    assert incoherence_areas_level((-0.1, 0.1), (-0.15, 0.2), ROE) == (0, 3)     # both within the range
    assert incoherence_areas_level((-0.5, 0.1), (-0.1, 0.1), ROE) == (1, 2)      # one reaches the left area too
    assert incoherence_areas_level((-0.5, 0.1), (-0.1, 0.6), ROE) == (2, 1)      # left vs right
    assert incoherence_areas_level((-0.9, -0.5), (0.5, 0.9), ROE) == (2, 1)
    assert incoherence_areas_level((-0.9, 0.1), (0.5, 0.9), ROE) == (2, 0)


def test_pvalue_rule_boundaries():
    assert pvalue_level(0.5) == 0
    assert pvalue_level(0.1000001) == 0
    assert pvalue_level(0.10) == 1
    assert pvalue_level(0.01) == 1
    assert pvalue_level(0.0099) == 2


def test_overall_confidence_downgrades():
    none = {d: 0 for d in DOMAINS}
    assert overall_confidence(none) == ("high", 0)
    assert overall_confidence({**none, "imprecision": 1}) == ("moderate", 1)
    assert overall_confidence({**none, "imprecision": 2}) == ("low", 2)
    assert overall_confidence({**none, "imprecision": 2, "within_study_bias": 1}) == ("very low", 3)
    assert overall_confidence({d: 2 for d in DOMAINS}) == ("very low", 12)


def test_range_of_equivalence_from_ratios():
    assert roe_from_ratio(0.8) == pytest.approx((math.log(0.8), math.log(1.25)))
    assert roe_from_ratio(1.25, 0.75) == pytest.approx((math.log(0.75), math.log(1.25)))
    with pytest.raises(ValueError, match="null"):
        roe_from_ratio(1.1, 1.5)


# ----------------------------------------------------------------------------- a hand-checkable network
def _star(method="FE"):
    """A star network: B vs A in s1 and s3, C vs A in s2 (no loop)."""
    df = pd.DataFrame({"study": ["s1", "s2", "s3"], "t1": ["B", "C", "B"], "t2": ["A", "A", "A"],
                       "yi": [0.5, -0.1, 0.3], "vi": [0.04, 0.01, 0.12]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return network_meta_analysis(df, study="study", yi="yi", vi="vi", treat1="t1", treat2="t2", measure="OR",
                                     reference="A", method=method)


def test_study_contributions_by_hand():
    fit = _star()
    sc = study_contributions(fit)
    # A:B comes only from its own edge, split by inverse variance 1/0.04 : 1/0.12 = 3 : 1
    assert sc.loc["A:B", "s1"] == pytest.approx(0.75)
    assert sc.loc["A:B", "s3"] == pytest.approx(0.25)
    assert sc.loc["A:B", "s2"] == pytest.approx(0.0)
    # B:C flows over two edges of the path B-A-C: half each
    assert sc.loc["B:C", "s2"] == pytest.approx(0.5)
    assert sc.loc["B:C", ["s1", "s3"]].sum() == pytest.approx(0.5)
    assert sc.sum(axis=1).to_numpy() == pytest.approx([1.0, 1.0, 1.0])


def test_star_network_domains_by_hand():
    fit = _star()
    rob = {"s1": "low", "s2": "high", "s3": "some concerns"}
    res = cinema(fit, rob, roe=ROE, reporting_bias={"C:B": "suspected"})
    f = res.to_frame().set_index("comparison")
    assert list(f.index) == ["B vs A", "C vs A", "C vs B"]
    # B vs A: 75% low (s1), 25% some concerns (s3): majority low
    assert f.loc["B vs A", "within_study_bias"] == "no concerns"
    assert "low 75%, some concerns 25%" in f.loc["B vs A", "within_study_bias_reason"]
    # C vs A: only s2 (high)
    assert f.loc["C vs A", "within_study_bias"] == "major concerns"
    # C vs B: s2 50% high, s1 37.5% low, s3 12.5% some concerns -> majority high
    assert f.loc["C vs B", "within_study_bias"] == "major concerns"
    # imprecision: FE estimate of C vs A is -0.1 with se 0.1 -> CI (-0.296, 0.096) crosses the lower threshold
    assert f.loc["C vs A", "estimate"] == pytest.approx(-0.1)
    assert f.loc["C vs A", "imprecision"] == "some concerns"
    # B vs A pooled: (0.5/0.04 + 0.3/0.12)/(1/0.04 + 1/0.12) = 0.45, se 0.1732 -> CI (0.11, 0.79): one crossing
    assert f.loc["B vs A", "estimate"] == pytest.approx(0.45)
    assert f.loc["B vs A", "imprecision"] == "some concerns"
    # evidence and incoherence: no loop, so the design-by-treatment test has 0 df
    assert f.loc["B vs A", "evidence"] == "direct only" and f.loc["B vs A", "incoherence"] == "no concerns"
    assert f.loc["C vs B", "evidence"] == "indirect only"
    assert "not assessable" in f.loc["C vs B", "incoherence_reason"]
    # reporting bias declared for the comparison in either order; the others take the default
    assert f.loc["C vs B", "reporting_bias"] == "some concerns"
    assert "declared" in f.loc["C vs B", "reporting_bias_reason"]
    assert f.loc["B vs A", "reporting_bias"] == "no concerns"
    # FE: tau^2 = 0, heterogeneity raises no concern
    assert set(f["heterogeneity"]) == {"no concerns"}
    # overall: C vs A = major RoB (2) + some imprecision (1) -> very low
    assert f.loc["C vs A", "confidence"] == "very low"
    assert f.loc["B vs A", "confidence"] == "moderate"
    # other rules
    avg = cinema(fit, rob, roe=ROE, rule="average").to_frame().set_index("comparison")
    assert avg.loc["C vs B", "within_study_bias"] == "some concerns"   # 0.375*1 + 0.125*2 + 0.5*3 = 2.125 -> 2
    hi = cinema(fit, rob, roe=ROE, rule="highest").to_frame().set_index("comparison")
    assert hi.loc["B vs A", "within_study_bias"] == "some concerns"    # s3 contributes


def test_missing_levels_and_bad_thresholds_are_clear_errors():
    fit = _star()
    with pytest.raises(ValueError, match="s3"):
        cinema(fit, {"s1": "low", "s2": "low"}, roe=ROE)
    res = cinema(fit, {"s1": "low", "s2": "low"}, roe=ROE, missing="high")
    assert res.to_frame().set_index("comparison").loc["B vs A", "within_study_bias"] == "no concerns"
    with pytest.raises(ValueError, match="range of equivalence"):
        cinema(fit, {"s1": "low", "s2": "low", "s3": "low"}, roe=(0.1, 0.5))
    with pytest.raises(ValueError, match="reporting bias"):
        cinema(fit, {"s1": "low", "s2": "low", "s3": "low"}, roe=ROE, reporting_bias="maybe")


def _triangle():
    df = pd.DataFrame({"study": ["s1", "s2", "s3", "s4"], "t1": ["B", "C", "C", "B"], "t2": ["A", "A", "B", "A"],
                       "yi": [0.6, 0.1, 0.2, 0.4], "vi": [0.05, 0.04, 0.06, 0.08]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return network_meta_analysis(df, study="study", yi="yi", vi="vi", treat1="t1", treat2="t2", measure="OR",
                                     reference="A", method="FE")


def test_loop_gives_mixed_evidence_with_side_pvalue():
    fit = _triangle()
    rob = {s: "low" for s in ("s1", "s2", "s3", "s4")}
    f = cinema(fit, rob, roe=ROE).to_frame()
    assert set(f["evidence"]) == {"mixed"}
    assert f["side_pvalue"].between(0, 1).all()
    assert f["incoherence_reason"].str.contains("SIDE p =").all()
    strict = cinema(fit, rob, roe=ROE, mixed_rule="areas+p").to_frame()
    order = {j: i for i, j in enumerate(JUDGEMENTS)}
    assert all(order[b] >= order[a] for a, b in zip(f["incoherence"], strict["incoherence"]))


# ----------------------------------------------------------------------------- the stored induction network
@pytest.fixture(scope="module")
def stored():
    from lnsynth.analyses.cinema import network_cinema
    from lnsynth.evidence import load_evidence

    return network_cinema(load_evidence())


def test_stored_network_has_a_row_per_estimate_with_reasons(stored):
    f = stored.frame
    T = len(stored.fit.treatments)
    assert len(f) == T * (T - 1) // 2
    assert f["comparison"].is_unique
    for d in DOMAINS:
        assert f[d].isin(JUDGEMENTS).all()
        assert (f[d + "_reason"].str.len() > 10).all()
    assert f["confidence"].isin(CONFIDENCE).all()
    # the trial inputs: every trial of the network with a stored RoB 2 level and an indirectness level
    assert set(stored.studies["study"]) == set(stored.data.frame["study"])
    assert stored.studies["rob"].isin(["low", "some concerns", "high"]).all()
    # thresholds are the questions' declared default, on the OR scale
    assert stored.thresholds == (0.75, 1.25)
    assert stored.to_dict()["estimates"][0]["comparison"] == f["comparison"].iloc[0]


def test_stored_network_rob_follows_the_contributions(stored):
    f = stored.frame.set_index("comparison")
    rob = dict(zip(stored.studies["study"], stored.studies["rob"]))
    contrib = stored.result.contributions
    # recompute one estimate's majority rule from the study contributions and the RoB 2 levels
    row = f.iloc[0]
    lbl = ":".join(sorted((row["treat1"], row["treat2"])))
    shares = {}
    for s, c in contrib.loc[lbl].items():
        shares[rob[s]] = shares.get(rob[s], 0.0) + c
    top = max(shares, key=lambda k: (shares[k], ["low", "some concerns", "high"].index(k)))
    assert row["within_study_bias"] == {"low": "no concerns", "some concerns": "some concerns",
                                        "high": "major concerns"}[top]


def test_report_block_lists_every_estimate(stored):
    from lnsynth.evidence import load_evidence
    from lnsynth.report.cinema import cinema_html

    html = cinema_html(load_evidence(), fit=stored.fit, data=stored.data)
    assert "id='cinema-table'" in html
    assert html.count("<tr>") == len(stored.frame) + 1  # header + one row per estimate
    assert "Confidence" in html and "Nikolakopoulou" in html


def test_cli_cinema_json_and_errors():
    import json

    from typer.testing import CliRunner

    from lnsynth.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["cinema", "--format", "json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["thresholds"] == [0.75, 1.25] and d["rule"] == "majority"
    assert all(set(DOMAINS) <= set(e) and e["confidence"] in CONFIDENCE for e in d["estimates"])
    bad = runner.invoke(app, ["cinema", "--format", "xml"])
    assert bad.exit_code != 0 and "text or json" in bad.output

