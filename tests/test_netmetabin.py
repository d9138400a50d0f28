"""Mantel-Haenszel and NCH network meta-analysis (lnsynth.network.rare, netmeta ``netmetabin``).

netmeta is not installable here (no Debian package r-cran-netmeta), so exactness is checked by:
* a two-treatment network, where MH-NMA must equal pairwise Mantel-Haenszel (rma.mh) exactly;
* a network of two-arm designs, where MH-NMA is the common-effect NMA of the per-design MH log odds
  ratios with their Robins-Breslow-Greenland variances (lnsynth's own NMA, checked against netmeta);
* tests/reference/netmetabin_reference.json: netmetabin's stage-II MH code (transcribed from netmeta's
  R/netmetabin.R, run in R on the stage-I data; the transcription is not in this repository) on
  four-treatment networks with three- and four-arm designs and dropped arms: basic parameters,
  their covariance and Q.inconsistency to 1e-10;
* invariance of every estimate to relabelling the treatments (a different baseline arm per design).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lnsynth.network import network_meta_analysis
from lnsynth.network.rare import RareEventWarning, mh_design, netmetabin
from lnsynth.pairwise.mh import mh_core

REF = json.loads((Path(__file__).parent / "reference" / "netmetabin_reference.json").read_text())["cases"]


def _two_arm(rows):
    return pd.DataFrame(rows, columns=["study", "treatment", "events", "n"])


def test_two_treatments_equal_pairwise_mh():
    df = _two_arm([("s1", "A", 1, 100), ("s1", "B", 4, 100), ("s2", "A", 0, 80), ("s2", "B", 3, 80),
                   ("s3", "A", 2, 120), ("s3", "B", 5, 110), ("s4", "A", 0, 40), ("s4", "B", 0, 45)])
    with pytest.warns(RareEventWarning, match="s4"):
        res = netmetabin(df, reference="B")
    mh = mh_core([1, 0, 2], [99, 80, 118], [4, 3, 5], [96, 77, 105], "OR")
    assert res.TE[0, 1] == pytest.approx(mh["estimate"][0], abs=1e-12)
    assert res.seTE[0, 1] == pytest.approx(mh["se"][0], abs=1e-12)
    assert res.TE_direct[0, 1] == pytest.approx(mh["estimate"][0], abs=1e-12)
    assert res.df_Q == 0 and res.excluded["studies"] == ["s4"]
    rel = res.relative_effects()
    assert rel["estimate"].iloc[0] == pytest.approx(mh["estimate"][0], abs=1e-12)  # A vs B
    assert rel["ci_low"].iloc[0] == pytest.approx(mh["ci_low"][0], abs=1e-12)


def test_two_arm_network_equals_fe_nma_of_design_mh_estimates():
    rows = [("s1", "A", 1, 100), ("s1", "B", 4, 100), ("s2", "A", 0, 80), ("s2", "B", 3, 80),
            ("s3", "B", 2, 120), ("s3", "C", 6, 110), ("s4", "B", 1, 90), ("s4", "C", 3, 95),
            ("s5", "A", 2, 60), ("s5", "C", 9, 70), ("s6", "A", 3, 150), ("s6", "C", 7, 140)]
    df = _two_arm(rows)
    res = netmetabin(df, reference="A")
    con = []
    for t1, t2 in [("A", "B"), ("B", "C"), ("A", "C")]:
        tabs = []
        for _, g in df[df.treatment.isin([t1, t2])].groupby("study"):
            if len(g) == 2:
                g = g.set_index("treatment")
                tabs.append((g.events[t1], g.n[t1] - g.events[t1], g.events[t2], g.n[t2] - g.events[t2]))
        a = np.array(tabs, float)
        o = mh_core(a[:, 0], a[:, 1], a[:, 2], a[:, 3], "OR")
        con.append({"study": t1 + t2, "t1": t1, "t2": t2, "yi": o["estimate"][0], "vi": o["se"][0] ** 2})
    nm = network_meta_analysis(pd.DataFrame(con), study="study", yi="yi", vi="vi", treat1="t1", treat2="t2",
                               method="FE", reference="A")
    ref = nm.relative_effects().set_index("treatment")
    mine = res.relative_effects().set_index("treatment")
    for t in ("B", "C"):
        assert mine.loc[t, "estimate"] == pytest.approx(ref.loc[t, "estimate"], abs=1e-10)
        assert mine.loc[t, "se"] == pytest.approx(ref.loc[t, "se"], abs=1e-10)
    assert res.Q == pytest.approx(nm.Q, abs=1e-10)
    assert res.df_Q == nm.Q_df == 1


@pytest.mark.parametrize("case", REF, ids=[c["name"] for c in REF])
def test_matches_netmetabin_stage2_reference(case):
    df = pd.DataFrame({k: case[k] for k in ("study", "treatment", "events", "n")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RareEventWarning)
        res = netmetabin(df)
    assert list(res.treatments) == case["treatments"]
    assert res.excluded == case["excluded"]
    np.testing.assert_allclose(res.TE[0, 1:], case["TE_basic"], atol=1e-10, rtol=0)
    np.testing.assert_allclose(res.vcov_basic, np.array(case["vcov_basic"]), atol=1e-10, rtol=0)
    assert res.Q == pytest.approx(case["Q"], abs=1e-9)
    assert res.df_Q == case["df_Q"]


def test_invariant_to_treatment_labels():
    case = REF[0]
    df = pd.DataFrame({k: case[k] for k in ("study", "treatment", "events", "n")})
    ren = {"a": "z", "b": "y", "c": "x", "d": "w"}  # reverses the sort order: new design baselines
    r1 = netmetabin(df, warn=False)
    r2 = netmetabin(df.assign(treatment=df.treatment.map(ren)), warn=False)
    np.testing.assert_allclose(r2.TE[::-1, ::-1], r1.TE, atol=1e-12)
    np.testing.assert_allclose(r2.seTE[::-1, ::-1], r1.seTE, atol=1e-12)
    assert r2.Q == pytest.approx(r1.Q, abs=1e-10)
    # consistency of the full matrix
    assert r1.TE[1, 3] == pytest.approx(r1.TE[1, 0] + r1.TE[0, 3], abs=1e-12)


def test_mh_design_two_arms_is_rbg_variance():
    E = np.array([[2.0, 5.0], [1.0, 4.0], [0.0, 3.0]])
    N = np.array([[50.0, 50.0], [40.0, 45.0], [30.0, 30.0]])
    y, V = mh_design(E, N)
    o = mh_core(E[:, 0], N[:, 0] - E[:, 0], E[:, 1], N[:, 1] - E[:, 1], "OR")
    assert y[0] == pytest.approx(o["estimate"][0], abs=1e-13)
    assert V[0, 0] == pytest.approx(o["se"][0] ** 2, abs=1e-13)


def test_stage1_exclusions():
    df = _two_arm([("s1", "A", 0, 50), ("s1", "B", 2, 50), ("s1", "C", 3, 50),
                   ("s2", "A", 0, 60), ("s2", "B", 1, 60), ("s2", "C", 4, 60),
                   ("s3", "A", 2, 40), ("s3", "B", 5, 40), ("s4", "B", 0, 30), ("s4", "C", 0, 30),
                   ("s5", "A", 0, 20), ("s5", "C", 0, 20), ("s6", "A", 1, 20), ("s6", "C", 3, 20)])
    with pytest.warns(RareEventWarning) as rec:
        res = netmetabin(df)
    assert "A in A:B:C" in str(rec[0].message)
    assert res.excluded == {"studies": ["s4", "s5"], "arms": ["A in A:B:C"], "designs": []}
    assert res.k == 4 and set(res.designs) == {"A:B", "A:B:C", "A:C"}
    assert res.df_Q == (1 + 1 + 1) - 2


def test_nch_maximises_conditional_likelihood():
    df = pd.DataFrame({k: REF[0][k] for k in ("study", "treatment", "events", "n")})
    res = netmetabin(df, method="NCH", warn=False)
    assert res.converged and np.isnan(res.Q)
    assert json.loads(json.dumps(res.to_dict(), allow_nan=False))["Q"] is None
    # single two-arm study: closed form log((e1/n1)/(e2/n2))
    one = netmetabin(_two_arm([("s", "A", 3, 100), ("s", "B", 7, 90)]), method="NCH")
    assert one.TE[0, 1] == pytest.approx(np.log((3 / 100) / (7 / 90)), abs=1e-10)
    assert one.seTE[0, 1] == pytest.approx(np.sqrt(1 / 3 + 1 / 7), abs=1e-10)
    # gradient of the conditional log-likelihood is 0 at the estimate (numerical check)
    from lnsynth.network.rare import _fit_nch, _read, _stage1

    st, _ = _stage1(_read(df, "study", "treatment", "events", "n"), False)
    trts = sorted(st["treat"].unique())

    def ll(theta):
        tot = 0.0
        for _, g in st.groupby("study"):
            th = np.array([theta[trts.index(t)] for t in g["treat"]])
            e, n = g["event"].to_numpy(float), g["n"].to_numpy(float)
            tot += e @ th - e.sum() * np.log(np.sum(n * np.exp(th)))
        return tot

    theta = np.concatenate([[0.0], -_fit_nch(st, trts)[0]])
    for j in range(1, len(trts)):
        h = np.zeros_like(theta)
        h[j] = 1e-6
        assert abs((ll(theta + h) - ll(theta - h)) / 2e-6) < 1e-6


def test_result_protocol_and_errors():
    df = pd.DataFrame({k: REF[0][k] for k in ("study", "treatment", "events", "n")})
    res = netmetabin(df, reference="b", level=90)
    assert res.level == 0.9
    ci = res.conf_int(0.95)
    rel = res.relative_effects()
    assert list(ci["treatment"]) == ["a", "c", "d"]
    assert (ci["ci_low"] < rel["ci_low"]).all()
    d = res.to_dict()
    assert d["method"] == "MH" and d["reference"] == "b" and len(d["TE"]) == 4
    json.dumps(d)
    assert res.to_frame().shape == (3, 8)
    assert "inconsistency" in res.summary()
    with pytest.raises(ValueError, match="unknown method"):
        netmetabin(df, method="IV")
    with pytest.raises(ValueError, match="reference"):
        netmetabin(df, reference="zz")
    with pytest.raises(ValueError, match="row 0"):
        netmetabin(_two_arm([("s", "A", 5, 3), ("s", "B", 1, 3)]))
    with pytest.raises(ValueError, match="fewer than two arms"):
        netmetabin(_two_arm([("s", "A", 1, 3), ("t", "B", 1, 3), ("t", "A", 1, 4)]))
    with pytest.raises(ValueError, match="disconnected"):
        netmetabin(_two_arm([("s", "A", 1, 30), ("s", "B", 2, 30), ("t", "C", 1, 40), ("t", "D", 3, 40)]))
    with pytest.raises(ValueError, match="column"):
        netmetabin(df, events="deaths")
