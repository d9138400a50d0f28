"""Inconsistency, node-splitting (back-calculation), net heat, contribution matrix, ranking,
network meta-regression and comparison-adjusted funnel data.

Checks: metafor ``rma.mv`` references for network meta-regression (tests/reference/
make_network_extra.R, 1e-6), and independent brute-force identities for the rest.
"""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import linalg

from lnsynth.network import (comparison_adjusted_funnel, contribution_matrix, cumulative_rank_probabilities,
                             design_by_treatment, direct_evidence_proportions, hat_matrix, mean_rank, net_heat,
                             network_meta_analysis, network_meta_regression, node_split, rank_probabilities,
                             sucra_from_probabilities, tau2_within)
from lnsynth.network.contribution import _random_walk_row

HERE = Path(__file__).parent / "reference"
EXTRA = json.loads((HERE / "network_extra_reference.json").read_text())
EXTRA_CASES = {c["name"]: c for c in EXTRA["cases"]}
NETREF = {c["name"]: c for c in json.loads((HERE / "network_reference.json").read_text())["cases"]}
STOWE = pd.DataFrame(EXTRA_CASES["stowe2010"]["arms"])


def stowe(method="REML"):
    return network_meta_analysis(STOWE, study="study", treatment="trt", mean="m", sd="s", n="n", measure="MD",
                                 reference="Placebo", method=method)


def binary(name, method="REML"):
    c = NETREF[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return network_meta_analysis(pd.DataFrame(c["arms"]), study="study", treatment="trt", events="x", n="n",
                                     reference=c["reference"], method=method)


def two_arm_loop():
    """Two-arm studies forming loops A-B-C-D (with replication), binary."""
    rows = []
    spec = [("A", "B", 12, 20), ("A", "B", 8, 15), ("B", "C", 10, 9), ("A", "C", 14, 7), ("C", "D", 9, 13),
            ("B", "D", 11, 16), ("A", "D", 7, 17), ("A", "C", 10, 12), ("B", "C", 12, 8)]
    for i, (a, b, xa, xb) in enumerate(spec):
        rows += [{"study": f"s{i}", "trt": a, "x": xa, "n": 40}, {"study": f"s{i}", "trt": b, "x": xb, "n": 40}]
    return pd.DataFrame(rows)


def fit(df, method="FE", **kw):
    return network_meta_analysis(df, study="study", treatment="trt", events="x", n="n", method=method, **kw)


# --------------------------------------------------------------------------- design-by-treatment
def _dense_tau2_within(studies):
    """Brute force: method-of-moments tau^2 of the full design-by-treatment model, dense algebra."""
    cols = {}
    for s in studies:
        for t in sorted(s.treatments)[1:]:
            cols.setdefault((s.design, t), len(cols))
    m = sum(len(s.y) for s in studies)
    X, y = np.zeros((m, len(cols))), np.concatenate([s.y for s in studies])
    r = 0
    for s in studies:
        for i, t in enumerate(s.treatments[1:]):
            if (s.design, t) in cols:
                X[r + i, cols[(s.design, t)]] += 1
            if (s.design, s.treatments[0]) in cols:
                X[r + i, cols[(s.design, s.treatments[0])]] -= 1
        r += len(s.y)
    W = linalg.block_diag(*[np.linalg.inv(s.V) for s in studies])
    B = linalg.block_diag(*[0.5 * (np.eye(len(s.y)) + 1) for s in studies])
    C = np.linalg.inv(X.T @ W @ X)
    res = y - X @ C @ X.T @ W @ y
    Q = res @ W @ res
    den = np.trace(W @ B) - np.trace(C @ X.T @ W @ B @ W @ X)
    return max(0.0, (Q - (m - X.shape[1])) / den)


def test_design_by_treatment_full_model_tau2_default_and_options():
    r = stowe()
    full = design_by_treatment(r)
    cons = design_by_treatment(r, tau2="consistency")
    fe = design_by_treatment(r, random=False)
    assert full["tau2_source"] == "full" and cons["tau2_source"] == "consistency"
    assert full["tau2"] == pytest.approx(_dense_tau2_within(r.data.studies), rel=1e-10)
    assert full["tau2"] == pytest.approx(tau2_within(r), rel=1e-12)
    assert cons["tau2"] == r.tau2 and fe["tau2"] == 0.0
    assert fe["chi2"] == pytest.approx(r.q_decomposition().loc["between designs", "Q"], rel=1e-12)
    fixed = design_by_treatment(r, tau2=full["tau2"])
    assert fixed["chi2"] == pytest.approx(full["chi2"], rel=1e-12)
    assert full["df"] == cons["df"] == fe["df"] == 2
    with pytest.raises(ValueError, match="tau2 must be"):
        design_by_treatment(r, tau2="bogus")
    with pytest.raises(ValueError, match="tau2 must be"):
        design_by_treatment(r, tau2=-1.0)


def test_tau2_within_two_arm_designs_matches_pooled_dl_formula():
    """With only two-arm designs the full model is one pairwise MA per design sharing tau^2:
    tau^2 = (sum Q_d - sum df_d) / sum (S1_d - S2_d / S1_d)."""
    r = fit(two_arm_loop())
    num, den = 0.0, 0.0
    by = {}
    for s in r.data.studies:
        by.setdefault(s.design, []).append((float(s.y[0]), float(s.V[0, 0])))
    for items in by.values():
        y, v = np.array(items).T
        w = 1 / v
        mu = np.sum(w * y) / np.sum(w)
        num += np.sum(w * (y - mu) ** 2) - (len(y) - 1)
        den += np.sum(w) - np.sum(w ** 2) / np.sum(w)
    assert tau2_within(r) == pytest.approx(max(0.0, num / den), rel=1e-10, abs=1e-14)


# --------------------------------------------------------------------------- node-splitting
def test_stowe_back_calculation_splits_three_exclusion_one():
    r = stowe()
    bc = node_split(r, method="back-calculation")
    ex = node_split(r, method="exclusion")
    assert set(zip(bc["treat1"], bc["treat2"])) == {("MAOBI", "COMTI"), ("COMTI", "Placebo"), ("MAOBI", "Placebo")}
    assert set(zip(ex["treat1"], ex["treat2"])) == {("MAOBI", "COMTI")}
    assert r.node_split().equals(ex)  # NMAResult default kept: exclusion
    with pytest.raises(ValueError, match="method must be"):
        node_split(r, method="sidde")


@pytest.mark.parametrize("method", ["FE", "REML"])
def test_back_calculation_identities(method):
    r = binary("linde2015", method)
    bc = node_split(r, method="back-calculation")
    assert len(bc) > 0
    # network = precision-weighted combination of direct and indirect
    wd, wi = 1 / bc["direct_se"] ** 2, 1 / bc["indirect_se"] ** 2
    np.testing.assert_allclose(1 / (wd + wi), bc["nma_se"] ** 2, rtol=1e-10)
    np.testing.assert_allclose((wd * bc["direct"] + wi * bc["indirect"]) / (wd + wi), bc["nma"], rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(bc["prop_direct"], (bc["nma_se"] / bc["direct_se"]) ** 2, rtol=1e-12)
    assert ((bc["prop_direct"] > 0) & (bc["prop_direct"] < 1)).all()
    np.testing.assert_allclose(bc["difference"], bc["direct"] - bc["indirect"], rtol=1e-12, atol=1e-15)


def test_back_calculated_direct_is_pairwise_meta_analysis_of_direct_studies():
    from lnsynth.pairwise import meta_analysis

    r = fit(two_arm_loop(), "FE")
    bc = node_split(r, method="back-calculation")
    for row in bc.itertuples(index=False):
        yv = [s.pair_contrast(row.treat1, row.treat2) for s in r.data.studies
              if set(s.treatments) == {row.treat1, row.treat2}]
        y, v = np.array(yv).T
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ma = meta_analysis(yi=y, vi=v, method="FE")
        assert row.direct == pytest.approx(float(ma.estimate), rel=1e-10)
        assert row.direct_se == pytest.approx(float(ma.se), rel=1e-10)


@pytest.mark.parametrize("method", ["FE", "REML"])
def test_two_arm_network_back_calculation_equals_exclusion(method):
    """With two-arm studies only (and tau^2 fixed), the network estimate is exactly the
    inverse-variance combination of the direct studies and the rest of the network, so the
    back-calculated indirect estimate equals the one from refitting without the direct studies."""
    r = fit(two_arm_loop(), method)
    bc = node_split(r, method="back-calculation").set_index(["treat1", "treat2"])
    ex = node_split(r, method="exclusion").set_index(["treat1", "treat2"])
    assert set(bc.index) == set(ex.index) and len(bc) >= 4
    for k in ("direct", "direct_se", "indirect", "indirect_se"):
        np.testing.assert_allclose(bc.loc[ex.index, k], ex[k], rtol=1e-9, atol=1e-12)


def test_direct_evidence_proportions():
    r = stowe()
    p = direct_evidence_proportions(r).set_index(["treat1", "treat2"])["prop_direct"]
    assert p[("Dopamine Agonist", "Placebo")] == pytest.approx(1.0, abs=1e-12)  # no other route
    assert p[("Dopamine Agonist", "COMTI")] == 0.0  # indirect only
    assert ((p >= 0) & (p <= 1 + 1e-12)).all()
    bc = node_split(r, method="back-calculation").set_index(["treat1", "treat2"])
    np.testing.assert_allclose(p.loc[bc.index], bc["prop_direct"], rtol=1e-12)


# --------------------------------------------------------------------------- net heat
@pytest.mark.parametrize("random", [False, True])
def test_net_heat_sums_and_shapes(random):
    r = binary("linde2015")
    h = net_heat(r, random=random, showall=True)
    n = len(h.labels)
    assert h.hat.shape == h.diff.shape == (n, n)
    tau2 = design_by_treatment(r, random=random)["tau2"]
    assert h.tau2 == pytest.approx(tau2, rel=1e-12)
    # design contributions add up to the between-design Q at the same tau^2
    assert np.sum(h.q_design) == pytest.approx(design_by_treatment(r, random=random)["chi2"], rel=1e-9)
    assert np.isfinite(h.diff).any()
    d = h.to_dict()
    json.dumps(d)
    assert len(h.to_frame()) == n * n


def test_net_heat_detaching_a_design_removes_its_own_inconsistency():
    r = binary("linde2015", "FE")
    h = net_heat(r, showall=True)
    finite = np.isfinite(np.diag(h.diff))
    # detached design is fitted exactly: its own Q contribution drops to 0, so diff = its Q contribution
    np.testing.assert_allclose(np.diag(h.diff)[finite], h.q_design[finite], rtol=1e-9, atol=1e-12)


def test_net_heat_needs_three_designs():
    tri = pd.DataFrame({"study": ["a", "a", "b", "b"], "trt": ["A", "B", "A", "C"], "x": [3, 5, 4, 6],
                        "n": [20] * 4})
    with pytest.raises(ValueError, match="at least 3 designs"):
        net_heat(fit(tri))


# --------------------------------------------------------------------------- contribution matrix
@pytest.mark.parametrize("method", ["shortestpath", "randomwalk"])
@pytest.mark.parametrize("name", ["linde2015", "hasselblad1998"])
def test_contribution_rows_sum_to_one(method, name):
    r = binary(name)
    cm = contribution_matrix(r, method)
    M = cm.matrix.to_numpy()
    np.testing.assert_allclose(M.sum(axis=1), 1.0, atol=1e-10)
    assert (M >= -1e-12).all()
    json.dumps(cm.to_dict())
    assert "Contribution matrix" in cm.summary()


def test_aggregate_hat_matrix_reproduces_network_estimates():
    r = stowe("REML")
    H = hat_matrix(r, "aggregate")
    # aggregate direct estimates with the same (Rucker) edge weights
    from lnsynth.network.contribution import _edge_weights

    t2 = r.tau2
    num, den = {}, {}
    for s in r.data.studies:
        ts, q = s.treatments, len(s.treatments) - 1
        G = np.zeros((q, q + 1))
        G[:, 0] = -1
        G[np.arange(q), np.arange(1, q + 1)] = 1
        L = G.T @ np.linalg.solve(s.V + t2 * 0.5 * (np.eye(q) + 1), G)
        for i, j in itertools.combinations(range(q + 1), 2):
            a, b = sorted((ts[i], ts[j]))
            y, _ = s.pair_contrast(a, b)
            num[(a, b)] = num.get((a, b), 0) - L[i, j] * y
            den[(a, b)] = den.get((a, b), 0) - L[i, j]
    w = _edge_weights(r, "aggregate", t2)
    ydir = np.array([num[tuple(c.split(":"))] / den[tuple(c.split(":"))] for c in H.columns])
    assert all(den[k] == pytest.approx(w[k]) for k in w)
    pw = r.pairwise_effects().set_index(["treat1", "treat2"])["estimate"]
    est = H.to_numpy() @ ydir
    for row, e in zip(H.index, est):
        a, b = row.split(":")
        assert e == pytest.approx(pw[(a, b)], rel=1e-9, abs=1e-12)


def test_naive_and_aggregate_hat_agree_for_two_arm_networks():
    r = fit(two_arm_loop(), "REML")
    np.testing.assert_allclose(hat_matrix(r, "naive"), hat_matrix(r, "aggregate"), atol=1e-12)


def test_random_walk_dp_equals_path_enumeration():
    r = binary("linde2015")
    H = hat_matrix(r, "aggregate")
    trts = list(r.treatments)
    edges = [tuple(c.split(":")) for c in H.columns]
    for row in list(H.index)[:6]:
        a, b = row.split(":")
        h = H.loc[row].to_numpy()
        dp = _random_walk_row(h, edges, trts, a, b)
        # brute force: enumerate every directed path from a to b along positive flows
        out = {}
        for e, ((x, y), v) in enumerate(zip(edges, h)):
            if abs(v) > 1e-12:
                u, w = (x, y) if v > 0 else (y, x)
                out.setdefault(u, []).append((w, abs(v), e))
        bf = np.zeros(len(edges))

        def walk(u, prob, path):
            if u == b:
                for e in path:
                    bf[e] += prob / len(path)
                return
            tot = sum(f for _, f, _ in out.get(u, []))
            for w, f, e in out.get(u, []):
                walk(w, prob * f / tot, path + [e])

        walk(a, 1.0, [])
        np.testing.assert_allclose(dp, bf, atol=1e-12)


def test_direct_only_comparison_contributes_to_itself():
    star = pd.DataFrame({"study": ["a", "a", "b", "b", "c", "c", "d", "d"], "trt": ["A", "B", "A", "C", "A", "D",
                                                                                  "B", "C"],
                         "x": [3, 8, 4, 9, 5, 7, 6, 9], "n": [30] * 8})
    r = fit(star)
    for m in ("shortestpath", "randomwalk"):
        cm = contribution_matrix(r, m).matrix
        assert cm.loc["A:D", "A:D"] == pytest.approx(1.0)  # D hangs on A only
        assert cm.loc["B:D", "A:D"] > 0.3
    with pytest.raises(ValueError, match="method must be"):
        contribution_matrix(r, "stream")


# --------------------------------------------------------------------------- ranking
def test_rank_probabilities_sum_and_sucra_matches_pscore():
    r = binary("linde2015")
    th, S = r._full()
    P = rank_probabilities(th, S, r.treatments, small_values="bad", n_sim=40000, seed=3)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_allclose(P.sum(axis=0), 1.0)
    su = sucra_from_probabilities(P)
    ps = r.pscores("bad")
    # Monte Carlo error of SUCRA is below 1/sqrt(n_sim)
    assert np.max(np.abs(su.to_numpy() - ps.reindex(su.index).to_numpy())) < 4 / np.sqrt(40000)
    cum = cumulative_rank_probabilities(P)
    np.testing.assert_allclose(cum.iloc[:, -1], 1.0)
    T = P.shape[1]
    np.testing.assert_allclose(su, (T - mean_rank(P)) / (T - 1), rtol=1e-12)
    P2 = rank_probabilities(th, S, r.treatments, small_values="bad", n_sim=40000, seed=3)
    assert P.equals(P2)  # seeded: reproducible


def test_sucra_from_probabilities_equals_resampling_sucra_same_draws():
    r = stowe()
    th, S = r._full()
    P = rank_probabilities(th, S, r.treatments, n_sim=5000, seed=7)
    old = r.sucra(n_sim=5000, seed=7).set_index("treatment")
    np.testing.assert_allclose(sucra_from_probabilities(P).reindex(old.index), old["sucra"], rtol=1e-12)
    np.testing.assert_allclose(P[1].reindex(old.index), old["p_best"], rtol=1e-12)


# --------------------------------------------------------------------------- network meta-regression
REG = [(c, k) for c in EXTRA_CASES for k in EXTRA_CASES[c]["fits"]]


@pytest.mark.parametrize("name,key", REG)
def test_network_meta_regression_matches_metafor(name, key):
    case = EXTRA_CASES[name]
    ref = case["fits"][key]
    method, assumption = key.split("_")
    arms = pd.DataFrame(case["arms"])
    kw = dict(mean="m", sd="s", n="n") if case["measure"] == "MD" else dict(events="x", n="n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = network_meta_regression(arms, study="study", treatment="trt", covariate="covariate",
                                    measure=case["measure"], reference=case["reference"], method=method,
                                    assumption=assumption, **kw)
    assert list(r.coef_names) == ref["coef_names"]
    np.testing.assert_allclose(r.estimate, ref["estimate"], rtol=1e-6, atol=1e-6 * max(ref["se"]))
    np.testing.assert_allclose(np.sqrt(np.diag(r.vcov)), ref["se"], rtol=1e-6)
    np.testing.assert_allclose(r.vcov, np.array(ref["vcov"]), rtol=1e-5, atol=1e-7 * max(ref["se"]) ** 2)
    assert r.tau2 == pytest.approx(ref["tau2"], rel=1e-6, abs=1e-6)
    assert r.loglik >= ref["loglik"] - 1e-9  # at least as high as metafor's optimum
    assert r.loglik == pytest.approx(ref["loglik"], abs=1e-6)
    assert r.Q == pytest.approx(ref["QE"], rel=1e-10) and r.Q_df == ref["QE_df"]
    fr = r.to_frame()
    assert list(fr.index) == ref["coef_names"]
    json.dumps(r.to_dict())
    assert "Network meta-regression" in r.summary()


def test_network_meta_regression_effects_at_and_centering():
    case = EXTRA_CASES["stowe2010"]
    arms = pd.DataFrame(case["arms"])
    kw = dict(study="study", treatment="trt", covariate="covariate", mean="m", sd="s", n="n", measure="MD",
              reference="Placebo")
    r0 = network_meta_regression(arms, **kw)
    rc = network_meta_regression(arms, center=True, **kw)
    x = rc.center
    np.testing.assert_allclose(r0.effects_at(x)["estimate"], rc.estimate[:len(rc.params)], rtol=1e-6, atol=1e-8)
    assert rc.estimate[-1] == pytest.approx(r0.estimate[-1], rel=1e-6)
    assert r0.tau2 == pytest.approx(rc.tau2, rel=1e-6)
    # common interaction: a contrast between two non-reference treatments does not depend on x
    e1, e2 = r0.effects_at(0.0).set_index("treatment"), r0.effects_at(5.0).set_index("treatment")
    d1 = e1.loc["COMTI", "estimate"] - e1.loc["MAOBI", "estimate"]
    d2 = e2.loc["COMTI", "estimate"] - e2.loc["MAOBI", "estimate"]
    assert d1 == pytest.approx(d2, rel=1e-12)


def test_network_meta_regression_errors():
    arms = pd.DataFrame(EXTRA_CASES["stowe2010"]["arms"])
    kw = dict(study="study", treatment="trt", mean="m", sd="s", n="n", measure="MD", reference="Placebo")
    with pytest.raises(ValueError, match="not found"):
        network_meta_regression(arms, covariate="nope", **kw)
    bad = arms.copy()
    bad.loc[0, "covariate"] = 99.0
    with pytest.raises(ValueError, match="differs between its rows"):
        network_meta_regression(bad, covariate="covariate", **kw)
    const = arms.assign(covariate=1.0)
    with pytest.raises(ValueError, match="does not vary"):
        network_meta_regression(const, covariate="covariate", **kw)
    miss = arms.copy()
    miss.loc[3, "covariate"] = np.nan
    with pytest.raises(ValueError, match="covariate"):
        network_meta_regression(miss, covariate="covariate", **kw)
    with pytest.raises(ValueError, match="assumption"):
        network_meta_regression(arms, covariate="covariate", assumption="shared", **kw)


# --------------------------------------------------------------------------- comparison-adjusted funnel
def test_adjusted_funnel_centres_each_comparison_and_orients_by_order():
    r = stowe("FE")
    fd = comparison_adjusted_funnel(r, order=["Placebo", "Dopamine Agonist", "COMTI", "MAOBI"])
    pts = fd.points
    assert len(pts) == sum(len(s.treatments) * (len(s.treatments) - 1) // 2 for s in r.data.studies)
    rank = {t: i for i, t in enumerate(fd.order)}
    assert all(rank[a] > rank[b] for a, b in zip(pts["treat1"], pts["treat2"]))
    for _, g in pts.groupby("comparison"):
        w = 1 / g["se"] ** 2  # FE: weighted adjusted effects sum to zero within each comparison
        assert float(np.sum(w * g["y_adj"])) == pytest.approx(0.0, abs=1e-10)
    assert np.isfinite(fd.egger["pvalue"]) and fd.egger["df"] == len(pts) - 2
    json.dumps(fd.to_dict())
    assert "Egger" in fd.summary()
    with pytest.raises(ValueError, match="order must list"):
        comparison_adjusted_funnel(r, order=["Placebo", "COMTI"])


def test_egger_regression_detects_asymmetry():
    from lnsynth.network.funnel import _egger

    se = np.linspace(0.1, 0.8, 30)
    sym = np.tile([-1.0, 1.0], 15) * 0.05
    assert abs(_egger(sym, se)["intercept"]) < 0.5
    asym = 1.5 * se + sym * se  # effects grow with SE: strong small-study effect
    e = _egger(asym, se)
    assert e["intercept"] == pytest.approx(1.5, abs=0.05) and e["pvalue"] < 1e-6


@pytest.mark.parametrize("method", ["shortestpath", "randomwalk"])
def test_contribution_single_loop_analytic(method):
    """Triangle of two-arm studies: the A:B estimate takes h from the direct A-B edge and 1 - h
    through the only other path A-C-B, split equally over its two edges."""
    tri = pd.DataFrame({"study": ["a", "a", "b", "b", "c", "c", "d", "d"], "trt": ["A", "B", "B", "C", "A", "C",
                                                                                 "A", "B"],
                        "x": [5, 9, 7, 12, 6, 11, 4, 10], "n": [40] * 8})
    r = fit(tri)
    h = hat_matrix(r).loc["A:B", "A:B"]
    assert 0 < h < 1
    cm = contribution_matrix(r, method).matrix
    assert cm.loc["A:B", "A:B"] == pytest.approx(h, rel=1e-12)
    assert cm.loc["A:B", "A:C"] == pytest.approx((1 - h) / 2, rel=1e-12)
    assert cm.loc["A:B", "B:C"] == pytest.approx((1 - h) / 2, rel=1e-12)


BC = [(c, m) for c in EXTRA_CASES for m in ("FE", "REML")]


@pytest.mark.parametrize("name,method", BC)
def test_back_calculation_matches_metafor_components(name, method):
    """Direct estimates (metafor rma, FE or with the network tau^2 fixed), NMA estimates (rma.mv) and
    the back-calculated split (tests/reference/make_network_extra.R)."""
    case = EXTRA_CASES[name]
    ref = case["back_calculation"][method]
    arms = pd.DataFrame(case["arms"])
    kw = dict(mean="m", sd="s", n="n") if case["measure"] == "MD" else dict(events="x", n="n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = network_meta_analysis(arms, study="study", treatment="trt", measure=case["measure"],
                                  reference=case["reference"], method=method, **kw)
    assert r.tau2 == pytest.approx(ref["tau2"], rel=1e-6, abs=1e-10)
    rows = pd.DataFrame(ref["rows"]).set_index(["treat1", "treat2"])
    prop = direct_evidence_proportions(r).set_index(["treat1", "treat2"])
    assert set(prop.index) == set(rows.index)
    np.testing.assert_allclose(prop.loc[rows.index, "prop_direct"], rows["prop_direct"], rtol=1e-6, atol=1e-9)
    assert (prop.loc[rows.index, "n_direct"] == rows["n_direct"]).all()
    bc = node_split(r, method="back-calculation").set_index(["treat1", "treat2"])
    both = rows[rows["indirect"].notna() & (rows["prop_direct"] > 5e-4)]
    assert set(bc.index) == set(both.index) and len(bc) > 0
    for k in ("direct", "direct_se", "nma", "nma_se", "indirect", "indirect_se"):
        np.testing.assert_allclose(bc.loc[both.index, k], both[k], rtol=1e-6, atol=1e-8)
