"""Component NMA (additive / interaction models, disconnected networks): lnsynth.network.component.

netmeta (``netcomb`` / ``discomb``) is not installable here, so the checks are
(a) the identity case: with every treatment its own component (reference inactive) the
    additive model *is* the standard NMA, so estimates, SEs, tau^2 and Q must agree to 1e-10;
(b) small examples solved by hand (closed-form GLS with unit variances);
(c) structural properties (invariance to the reference, the interaction model saturating the
    additive one, rank checks naming non-identifiable components).
No published netcomb output is used (none reachable with its numbers; see the report).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lnsynth.network import network_meta_analysis
from lnsynth.network.component import CNMAResult, combination_matrix, component_nma, discomb, netcomb

REF = json.loads((Path(__file__).parent / "reference" / "network_reference.json").read_text())
CASES = {c["name"]: c for c in REF["cases"]}


def triangle() -> pd.DataFrame:  # includes a three-arm study (s2)
    return pd.DataFrame(
        {
            "study": ["s1", "s1", "s2", "s2", "s2", "s3", "s3", "s4", "s4", "s5", "s5"],
            "trt": ["A", "B", "A", "B", "C", "B", "C", "A", "C", "A", "B"],
            "x": [5, 9, 3, 6, 8, 10, 12, 4, 9, 7, 20],
            "n": [50, 50, 40, 40, 40, 60, 60, 30, 30, 45, 44],
        }
    )


def fit_case(case: dict, method: str):
    arms = pd.DataFrame(case["arms"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case["measure"] in ("MD", "SMD"):
            return network_meta_analysis(
                arms,
                study="study",
                treatment="trt",
                mean="m",
                sd="s",
                n="n",
                measure=case["measure"],
                reference=case["reference"],
                method=method,
            )
        return network_meta_analysis(
            arms,
            study="study",
            treatment="trt",
            events="x",
            n="n",
            measure=case["measure"],
            reference=case["reference"],
            method=method,
        )


def identity_C(nma) -> pd.DataFrame:
    comps = [t for t in nma.treatments if t != nma.reference]
    return pd.DataFrame(
        [[1.0 if t == c else 0.0 for c in comps] for t in nma.treatments], index=list(nma.treatments), columns=comps
    )


# ------------------------------------------------------------------ (a) identity case
@pytest.mark.parametrize("method", ["FE", "DL", "REML", "PM"])
def test_each_treatment_own_component_equals_standard_nma_triangle(method):
    nma = network_meta_analysis(
        triangle(), study="study", treatment="trt", events="x", n="n", measure="OR", reference="A", method=method
    )
    cn = component_nma(nma, C=identity_C(nma), method=method)
    np.testing.assert_allclose(cn.tau2, nma.tau2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cn.estimate, nma.estimate, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cn.vcov, nma.vcov, rtol=1e-10, atol=1e-12)
    re_c, re_s = cn.relative_effects(), nma.relative_effects()
    np.testing.assert_allclose(re_c["se"], re_s["se"], rtol=1e-10)
    np.testing.assert_allclose(re_c[["ci_low", "ci_high"]], re_s[["ci_low", "ci_high"]], rtol=1e-10)
    np.testing.assert_allclose(cn.Q_additive, nma.Q, rtol=1e-10, atol=1e-12)
    assert cn.Q_additive_df == nma.Q_df == cn.Q_standard_df
    assert cn.Q_diff == pytest.approx(0.0, abs=1e-10) and cn.Q_diff_df == 0
    pw_c = cn.pairwise_effects()
    pw_s = nma.pairwise_effects()
    np.testing.assert_allclose(pw_c[["estimate", "se"]], pw_s[["estimate", "se"]], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_identity_case_on_reference_networks(name):
    nma = fit_case(CASES[name], "DL")
    # labels parsed with sep="" (no splitting) and the reference inactive: identity C
    cn = component_nma(nma, sep="", inactive=nma.reference, method="DL")
    assert cn.components == nma.params
    np.testing.assert_allclose(cn.estimate, nma.estimate, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.sqrt(np.diag(cn.vcov)), np.sqrt(np.diag(nma.vcov)), rtol=1e-10)
    np.testing.assert_allclose(cn.tau2, nma.tau2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cn.Q_additive, nma.Q, rtol=1e-10, atol=1e-12)
    # Q_standard recomputed independently (whitened least squares) matches the NMA's Q
    data = nma.data
    con = discomb_input(data)
    d = discomb(
        con,
        study="study",
        yi="yi",
        vi="vi",
        treat1="t1",
        treat2="t2",
        cov="cov",
        measure=data.measure,
        reference=data.reference,
        sep="",
        inactive=data.reference,
        method="DL",
    )
    np.testing.assert_allclose(d.Q_standard, nma.Q, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(d.estimate, nma.estimate, rtol=1e-9, atol=1e-12)


def discomb_input(data) -> pd.DataFrame:
    """Contrast rows (shared comparator + cov) from prepared NetworkData."""
    rows = []
    for s in data.studies:
        cov = float(s.V[0, 1]) if len(s.y) > 1 else 0.0  # shared-baseline variance (arm-level input)
        for i, t in enumerate(s.treatments[1:]):
            rows.append((s.study, t, s.treatments[0], float(s.y[i]), float(s.V[i, i]), cov))
    return pd.DataFrame(rows, columns=["study", "t1", "t2", "yi", "vi", "cov"])


# ------------------------------------------------------------------ (b) hand-derived examples
def star() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "study": ["s1", "s2", "s3"],
            "t1": ["B", "C", "B+C"],
            "t2": ["P", "P", "P"],
            "yi": [1.0, 2.0, 4.0],
            "vi": [1.0, 1.0, 1.0],
        }
    )


def test_hand_derived_three_study_star():
    # X C = [[1,0],[0,1],[1,1]], W = I: beta_B = (2 y1 - y2 + y3)/3, beta_C = (2 y2 - y1 + y3)/3,
    # Cov = (X'X)^-1 = [[2,-1],[-1,2]]/3, Q_add = (y1 + y2 - y3)^2 / 3 on 1 df; standard NMA saturated.
    y1, y2, y3 = 1.0, 2.0, 4.0
    nma = network_meta_analysis(
        star(), study="study", yi="yi", vi="vi", treat1="t1", treat2="t2", measure="MD", reference="P", method="FE"
    )
    cn = component_nma(nma, inactive="P", method="FE")
    assert cn.components == ("B", "C")
    np.testing.assert_allclose(cn.estimate, [(2 * y1 - y2 + y3) / 3, (2 * y2 - y1 + y3) / 3], rtol=1e-12)
    np.testing.assert_allclose(cn.vcov, np.array([[2, -1], [-1, 2]]) / 3, rtol=1e-12)
    assert cn.Q_additive == pytest.approx((y1 + y2 - y3) ** 2 / 3, rel=1e-12)
    assert (cn.Q_additive_df, cn.Q_standard_df, cn.Q_diff_df) == (1, 0, 1)
    assert cn.Q_standard == pytest.approx(0.0, abs=1e-12)
    assert cn.Q_diff == pytest.approx(1 / 3, rel=1e-12)
    comb = cn.combination_effects().set_index("treatment")
    assert comb.loc["B+C", "estimate"] == pytest.approx((y1 + y2 + 2 * y3) / 3, rel=1e-12)
    assert comb.loc["B+C", "se"] == pytest.approx(np.sqrt(2 / 3), rel=1e-12)  # (2 - 1 - 1 + 2)/3
    assert comb.loc["P", "estimate"] == 0.0
    # DL on the additive model: tau2 = (Q - df) / tr(P B) with P = I - X(X'X)^-1X' (rank-1 projector
    # onto (1,1,-1)/sqrt(3)), B = I here (two-arm studies): tr(P) = 1, so tau2 = Q - 1 < 0 -> 0.
    assert component_nma(nma, inactive="P").tau2 == 0.0
    # fixed tau2 (netcomb tau.preset^2): W = I/(1 + tau2) scales Cov by (1 + tau2)
    cf = component_nma(nma, inactive="P", tau2=0.5)
    np.testing.assert_allclose(cf.vcov, 1.5 * np.array([[2, -1], [-1, 2]]) / 3, rtol=1e-12)
    np.testing.assert_allclose(cf.estimate, cn.estimate, rtol=1e-12)
    assert cf.method == "fixed" and cf.Q_additive == pytest.approx(cn.Q_additive, rel=1e-12)


def test_hand_derived_dl_tau2_positive():
    # four two-arm studies, unit variances: X C = [[1,0],[0,1],[1,1],[1,0]]
    df = pd.DataFrame(
        {
            "study": list("abcd"),
            "t1": ["B", "C", "B+C", "B"],
            "t2": ["P"] * 4,
            "yi": [0.0, 0.0, 3.0, 2.0],
            "vi": [1.0] * 4,
        }
    )
    d = discomb(df, study="study", yi="yi", vi="vi", treat1="t1", treat2="t2", measure="MD", inactive="P")
    X = np.array([[1, 0], [0, 1], [1, 1], [1, 0]], float)
    y = df["yi"].to_numpy()
    H = X @ np.linalg.solve(X.T @ X, X.T)
    r = y - H @ y
    Q = float(r @ r)
    tau2 = max(0.0, (Q - 2) / np.trace(np.eye(4) - H))
    assert tau2 > 0
    assert d.tau2 == pytest.approx(tau2, rel=1e-12)
    W = np.eye(4) / (1 + tau2)
    beta = np.linalg.solve(X.T @ W @ X, X.T @ W @ y)
    np.testing.assert_allclose(d.estimate, beta, rtol=1e-12)
    np.testing.assert_allclose(d.vcov, np.linalg.inv(X.T @ W @ X), rtol=1e-12)
    assert d.Q_additive == pytest.approx(Q, rel=1e-12) and d.Q_additive_df == 2


# ------------------------------------------------------------------ (c) structure and errors
def test_interaction_model_saturates_star():
    nma = network_meta_analysis(
        star(), study="study", yi="yi", vi="vi", treat1="t1", treat2="t2", measure="MD", reference="P", method="FE"
    )
    ia = component_nma(nma, inactive="P", interactions=["B*C"], method="FE")
    assert ia.components == ("B", "C", "B*C")
    np.testing.assert_allclose(ia.estimate, [1.0, 2.0, 1.0], rtol=1e-12)  # B+C effect 4 = 1 + 2 + 1
    assert ia.Q_additive == pytest.approx(0.0, abs=1e-12) and ia.Q_additive_df == 0 and ia.Q_diff_df == 0


def test_reference_invariance_and_netcomb_alias():
    df = star()
    df.loc[3] = ["s4", "B+C", "B", 2.5, 1.0]
    fits = []
    for ref in ("P", "B"):
        nma = network_meta_analysis(
            df, study="study", yi="yi", vi="vi", treat1="t1", treat2="t2", measure="MD", reference=ref, method="REML"
        )
        fits.append(netcomb(nma, inactive="P"))
    np.testing.assert_allclose(fits[0].estimate, fits[1].estimate, rtol=1e-10)
    np.testing.assert_allclose(fits[0].tau2, fits[1].tau2, rtol=1e-10, atol=1e-14)
    assert fits[0].relative_effects().set_index("treatment").loc["B", "estimate"] == pytest.approx(
        -fits[1].relative_effects().set_index("treatment").loc["P", "estimate"], rel=1e-12
    )


def disconnected() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "study": ["s1", "s2", "s3", "s4"],
            "t1": ["B", "C", "B+C", "B+C"],
            "t2": ["P", "P", "D", "D"],
            "yi": [1.0, 2.0, 2.5, 2.9],
            "vi": [0.5, 0.5, 0.5, 0.4],
        }
    )


def test_discomb_disconnected_network():
    df = disconnected()
    with pytest.raises(ValueError, match="disconnected"):
        network_meta_analysis(df, study="study", yi="yi", vi="vi", treat1="t1", treat2="t2", measure="MD")
    d = discomb(df, study="study", yi="yi", vi="vi", treat1="t1", treat2="t2", measure="MD", inactive="P", method="FE")
    assert len(d.subnetworks) == 2 and d.reference == "P"
    X = np.array([[1, 0, 0], [0, 1, 0], [1, 1, -1], [1, 1, -1]], float)
    W = np.diag(1 / df["vi"].to_numpy())
    y = df["yi"].to_numpy()
    beta = np.linalg.solve(X.T @ W @ X, X.T @ W @ y)
    np.testing.assert_allclose(d.estimate, beta, rtol=1e-12)
    # standard model: Q within sub-networks only (the two B+C vs D studies), df m - rank(X) = 4 - 3
    yd, wd = y[2:], 1 / df["vi"].to_numpy()[2:]
    q_std = float(np.sum(wd * (yd - np.sum(wd * yd) / wd.sum()) ** 2))
    assert d.Q_standard == pytest.approx(q_std, rel=1e-10) and d.Q_standard_df == 1
    assert d.Q_additive_df == 1 and d.Q_diff_df == 0
    # D relative to P is estimable only through the components
    re = d.relative_effects().set_index("treatment")
    assert re.loc["D", "estimate"] == pytest.approx(beta[2], rel=1e-10)


def test_non_identifiable_components_are_named():
    df = disconnected().iloc[[0, 2, 3]]  # without C vs P, C and D only appear as C - D
    with pytest.raises(ValueError, match=r"not identifiable.*C, D"):
        discomb(df, study="study", yi="yi", vi="vi", treat1="t1", treat2="t2", measure="MD", inactive="P")
    nma = network_meta_analysis(
        star().iloc[:2], study="study", yi="yi", vi="vi", treat1="t1", treat2="t2", measure="MD", reference="P"
    )
    with pytest.raises(ValueError, match=r"not identifiable.*B, C, P"):  # P a component: only differences
        component_nma(nma)


def test_bad_arguments():
    nma = network_meta_analysis(
        star(), study="study", yi="yi", vi="vi", treat1="t1", treat2="t2", measure="MD", reference="P"
    )
    with pytest.raises(ValueError, match="tau2"):
        component_nma(nma, inactive="P", tau2=-1)
    with pytest.raises(ValueError, match="method"):
        component_nma(nma, inactive="P", method="XX")
    with pytest.raises(ValueError, match="inactive component 'Q'"):
        component_nma(nma, inactive="Q")
    with pytest.raises(ValueError, match="interaction 'B\\*Z'"):
        component_nma(nma, inactive="P", interactions=["B*Z"])
    with pytest.raises(ValueError, match="rows must be the treatments"):
        component_nma(nma, C=pd.DataFrame({"B": [1.0]}, index=["B"]))
    with pytest.raises(ValueError, match="NMAResult"):
        component_nma("not a fit")


def test_result_protocol():
    nma = network_meta_analysis(
        triangle(), study="study", treatment="trt", events="x", n="n", measure="OR", reference="A", method="DL"
    )
    cn = component_nma(nma, C=identity_C(nma), tau2="standard")
    assert isinstance(cn, CNMAResult) and cn.method == "standard" and cn.tau2 == nma.tau2
    ci90, ci95 = cn.conf_int(0.90), cn.conf_int()
    assert list(ci95.index) == ["B", "C"]
    assert np.all(ci90["ci_high"] - ci90["ci_low"] < ci95["ci_high"] - ci95["ci_low"])
    np.testing.assert_allclose(cn.conf_int(95)["ci_low"], ci95["ci_low"])
    d = cn.to_dict()
    json.dumps(d)
    assert d["components"] == ["B", "C"] and d["Q_diff_df"] == 0 and d["scale"] == "log OR"
    assert list(cn.to_frame()["component"]) == ["B", "C"]
    s = cn.summary()
    assert "Additive component NMA" in s and "Q diff" in s and "B" in s
    C = combination_matrix(["P", "A", "A+B", "A+B+C"], inactive="P", interactions=[("A", "B")])
    assert list(C.columns) == ["A", "B", "C", "A*B"]
    assert C.loc["A+B+C"].tolist() == [1, 1, 1, 1] and C.loc["A"].tolist() == [1, 0, 0, 0]


def test_discomb_arm_level_input_matches_standard_nma():
    nma = network_meta_analysis(
        triangle(), study="study", treatment="trt", events="x", n="n", measure="OR", reference="A", method="REML"
    )
    d = discomb(
        triangle(), study="study", treatment="trt", events="x", n="n", measure="OR", sep="", inactive="A", method="REML"
    )
    assert d.reference == "A" and len(d.subnetworks) == 1
    np.testing.assert_allclose(d.estimate, nma.estimate, rtol=1e-9)
    np.testing.assert_allclose(d.vcov, nma.vcov, rtol=1e-9)
    np.testing.assert_allclose(d.Q_standard, nma.Q, rtol=1e-10)
    with pytest.raises(ValueError, match="unknown reference"):
        discomb(triangle(), study="study", treatment="trt", events="x", n="n", reference="Z", inactive="A")
