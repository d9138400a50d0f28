"""NMA tau^2 estimators (REML, ML, PM, DL), Hartung-Knapp, prediction intervals, I^2,
the full design-by-treatment model, batched fits and netmeta-style all-pairwise input.

References: ``tests/reference/network_reference.json`` written by
``tests/reference/make_network.R`` (metafor ``rma.mv``/``rma``/``predict`` and dense
matrix algebra in R for the estimators metafor's ``rma.mv`` lacks), plus independent
dense brute-force implementations below.
"""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import linalg, optimize, stats

from lnsynth import registry
from lnsynth.network import _core, network_meta_analysis, prepare
from lnsynth.network.inconsistency import tau2_within
from lnsynth.network.model import fit, fit_arrays, fit_batch, fit_design_by_treatment, heterogeneity_stats

REF = json.loads((Path(__file__).parent / "reference" / "network_reference.json").read_text())
CASES = {c["name"]: c for c in REF["cases"]}
# metafor's optimiser on a flat (RE)ML surface limits agreement of tau^2 to ~1e-7 relative
RTOL_ML = 1e-6


def fit_case(case, method, **kw):
    arms = pd.DataFrame(case["arms"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case["measure"] in ("MD", "SMD"):
            return network_meta_analysis(arms, study="study", treatment="trt", mean="m", sd="s", n="n",
                                         measure=case["measure"], reference=case["reference"], method=method, **kw)
        return network_meta_analysis(arms, study="study", treatment="trt", events="x", n="n",
                                     measure=case["measure"], reference=case["reference"], method=method, **kw)


def close(a, b, rtol, atol=0.0):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=rtol, atol=atol)


def test_registry_lists_network_estimators():
    assert registry.methods("network") == ("FE", "DL", "REML", "ML", "PM")
    for m in ("DL", "REML", "ML", "PM"):
        assert registry.method(m).network and registry.method(m).random_effects


# ------------------------------------------------------------------ metafor rma.mv
@pytest.mark.parametrize("name", list(CASES))
def test_ml_matches_metafor(name):
    case = CASES[name]
    ref = case["fits"]["ML"]
    res = fit_case(case, "ML")
    re = res.relative_effects()
    atol = 1e-7 * float(np.max(ref["se"]))
    close(res.tau2, ref["tau2"], RTOL_ML, 1e-8)
    close(re["estimate"], ref["estimate"], RTOL_ML, atol)
    close(re["se"], ref["se"], RTOL_ML)
    close(res.vcov, np.array(ref["vcov"]), RTOL_ML, atol * 0.1)
    close(res.loglik, ref["loglik"], 1e-9, 1e-7)
    assert res.loglik >= ref["loglik"] - 1e-9  # at least metafor's optimum
    assert res.converged


@pytest.mark.parametrize("name,method", [(n, m) for n in CASES for m in ("REML", "ML")])
def test_t_test_prediction_and_hartung_knapp_match_metafor(name, method):
    case = CASES[name]
    ref = case["fits"][method]["inference"]
    atol = 1e-6 * float(np.max(case["fits"][method]["se"]))  # metafor tau2 is good to ~1e-8 abs
    rt = fit_case(case, method, test="t").relative_effects()
    close(rt["ci_low"], ref["ci_low_t"], RTOL_ML, atol)
    close(rt["ci_high"], ref["ci_high_t"], RTOL_ML, atol)
    close(rt["pvalue"], ref["pval_t"], 1e-5, 1e-9)
    rz = fit_case(case, method)
    pz = rz.prediction_intervals(dist="z")
    close(pz["pi_low"], ref["pi_low_z"], RTOL_ML, atol)
    close(pz["pi_high"], ref["pi_high_z"], RTOL_ML, atol)
    pt = rz.prediction_intervals(dist="t")  # metafor predict() of the test = "t" fit
    close(pt["pi_low"], ref["pi_low_t"], RTOL_ML, atol)
    close(pt["pi_high"], ref["pi_high_t"], RTOL_ML, atol)
    hk = fit_case(case, method, test="hk")
    close(hk.Q_re, ref["Q_re"], 1e-5)
    re = hk.relative_effects()
    close(re["se"], ref["se_hk"], RTOL_ML)
    close(re["ci_low"], ref["ci_low_hk"], RTOL_ML, atol)
    close(re["ci_high"], ref["ci_high_hk"], RTOL_ML, atol)
    # the HK PI uses the adjusted SE
    close(hk.prediction_intervals()["pi_high"] - re["estimate"],
          stats.t.ppf(0.975, hk.Q_df) * np.sqrt(re["se"] ** 2 + hk.tau2), 1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_dl_and_pm_match_dense_r(name):
    case = CASES[name]
    mo = case["moments"]
    for m in ("DL", "PM"):
        res = fit_case(case, m)
        close(res.tau2, mo[m]["tau2"], 1e-9, 1e-13)
        close(res.estimate, mo[m]["estimate"], 1e-9, 1e-12)
        close(np.sqrt(np.diag(res.vcov)), mo[m]["se"], 1e-9)
    # PM solves the generalised Q equation
    pm = fit_case(case, "PM")
    if pm.tau2 > 0:
        close(pm.Q_re, pm.Q_df, 1e-9)


@pytest.mark.parametrize("name", list(CASES))
def test_full_design_by_treatment_tau2(name):
    case = CASES[name]
    mo = case["moments"]
    data = fit_case(case, "FE").data
    full = fit_design_by_treatment(data, "DL")
    close(full["tau2"], mo["tau2_within_DL"], 1e-9, 1e-13)
    close(full["tau2"], tau2_within(data), 1e-10, 1e-14)  # the inconsistency module uses this fit
    close(full["Q_within"], case["fits"]["FE"]["Q_within_FE"], 1e-9, 1e-10)
    assert full["df_within"] == case["fits"]["FE"]["Q_within_df"]
    res = fit_case(case, "REML")
    dbt = res.design_by_treatment(random=True)  # default: the full model's tau^2 (netmeta)
    close(dbt["tau2"], full["tau2"], 1e-10, 1e-14)
    close(dbt["chi2"], mo["Q_between_RE_within"], 1e-8, 1e-9)
    # other estimators of the interaction model's tau^2 and a fixed value
    for m in ("REML", "ML", "PM"):
        f = fit_design_by_treatment(data, m)
        assert f["tau2"] >= 0 and f["converged"]
    assert fit_design_by_treatment(data, tau2=0.3)["tau2"] == 0.3


# ------------------------------------------- two treatments: NMA == pairwise rma()
@pytest.mark.parametrize("method", ["DL", "PM", "REML", "ML"])
def test_two_treatment_network_equals_rma(method):
    pw = REF["pairwise_bcg"]
    ref = pw["fits"][method]
    arms = pd.DataFrame(pw["arms"])
    kw = dict(study="study", treatment="trt", events="x", n="n", reference="Control", method=method)
    r = network_meta_analysis(arms, **kw)
    close(r.tau2, ref["tau2"], 1e-9, 1e-12)
    close(r.estimate[0], ref["estimate"], 1e-9)
    close(np.sqrt(r.vcov[0, 0]), ref["se"], 1e-9)
    close(r.Q, ref["QE"], 1e-10)
    pi = r.prediction_intervals(dist="z")
    close(pi["pi_low"], [ref["pi_low_z"]], 1e-9)
    close(pi["pi_high"], [ref["pi_high_z"]], 1e-9)
    hk = network_meta_analysis(arms, test="knha", **kw).relative_effects()
    close(hk["se"], [ref["se_knha"]], 1e-9)
    close(hk["ci_low"], [ref["ci_low_knha"]], 1e-9)
    close(hk["ci_high"], [ref["ci_high_knha"]], 1e-9)
    if method == "DL":  # metafor's I^2 is the Q-based one for DL
        close(100 * r.heterogeneity()["I2"], ref["I2"], 1e-10)


# ------------------------------------------------- independent dense brute force
def random_network(seed, T=5, S=12, q3=0.3):
    rng = np.random.default_rng(seed)
    trts = [f"T{i}" for i in range(T)]
    d = np.concatenate([[0.0], rng.normal(0, 0.5, T - 1)])
    rows = []
    for s in range(S):
        if s < T - 1:
            arms = [s, s + 1]
        else:
            arms = sorted(rng.choice(T, size=3 if rng.random() < q3 else 2, replace=False))
        mu = rng.normal(-0.5, 0.5)
        for a in arms:
            n = int(rng.integers(30, 150))
            p = 1 / (1 + np.exp(-(mu + d[a] + rng.normal(0, 0.35))))
            rows.append((f"S{s:02d}", trts[a], int(np.clip(rng.binomial(n, p), 1, n - 1)), n))
    return pd.DataFrame(rows, columns=["study", "trt", "x", "n"])


def dense(data):
    params = [t for t in data.treatments if t != data.reference]
    st = _core.stack(data.studies, params)
    V, B = st.dense()
    return st.y, V, B, st.X


def brute(y, V, B, X):
    m, p = X.shape

    def gls(t):
        W = np.linalg.inv(V + t * B)
        C = np.linalg.inv(X.T @ W @ X)
        b = C @ X.T @ W @ y
        r = y - X @ b
        return W, C, b, float(r @ W @ r)

    def ll(t, restricted):
        S = V + t * B
        W, C, b, Q = gls(t)
        out = -0.5 * (np.linalg.slogdet(S)[1] + Q)
        return out - 0.5 * np.linalg.slogdet(np.linalg.inv(C))[1] if restricted else out

    W0, C0, _, Q0 = gls(0.0)
    P0 = W0 - W0 @ X @ C0 @ X.T @ W0
    dl = max(0.0, (Q0 - (m - p)) / np.trace(P0 @ B))
    if Q0 <= m - p:
        pm = 0.0
    else:
        hi = 1.0
        while gls(hi)[3] > m - p:
            hi *= 2
        pm = optimize.brentq(lambda t: gls(t)[3] - (m - p), 0.0, hi, xtol=1e-15, rtol=1e-15)
    out = {"DL": dl, "PM": pm}
    for name, restricted in (("REML", True), ("ML", False)):
        r = optimize.minimize_scalar(lambda t: -ll(t, restricted), bounds=(0.0, 5.0), method="bounded",
                                     options={"xatol": 1e-12})
        out[name] = r.x if -r.fun > ll(0.0, restricted) else 0.0
    return out


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_estimators_match_dense_brute_force(seed):
    df = random_network(seed)
    data = prepare(df, study="study", treatment="trt", events="x", n="n", reference="T0")
    bf = brute(*dense(data))
    for m in ("DL", "PM"):
        close(fit(data, m).tau2, bf[m], 1e-9, 1e-12)
    for m in ("REML", "ML"):  # bounded Brent on the likelihood: ~1e-6 abs
        close(fit(data, m).tau2, bf[m], 1e-4, 2e-6)


@pytest.mark.parametrize("seed", [11, 12])
def test_numpy_and_compiled_kernels_agree(seed):
    df = random_network(seed, T=6, S=16, q3=0.4)
    data = prepare(df, study="study", treatment="trt", events="x", n="n", reference="T0")
    params = [t for t in data.treatments if t != data.reference]
    pk = _core.pack([data.studies], params)
    for m in ("FE", "DL", "PM", "REML", "ML"):
        a = _core.fit_packed(pk, m, engine="numpy")
        b = _core.fit_packed(pk, m, engine="jit")
        close(b.tau2, a.tau2, 1e-10, 1e-14)
        close(b.beta, a.beta, 1e-10, 1e-13)
        close(b.vcov, a.vcov, 1e-10, 1e-14)
        close(b.Q_re, a.Q_re, 1e-10)
        close(b.loglik_reml, a.loglik_reml, 1e-12)
        assert a.converged.all() and b.converged.all()


def test_batch_equals_single_fits():
    base = random_network(21, T=5, S=14)
    rng = np.random.default_rng(5)
    studies = base["study"].unique()
    reps = []
    for _ in range(6):  # bootstrap over studies; relabel so resampled copies stay separate
        pick = rng.choice(studies, len(studies))
        parts = [base[base.study == s].assign(study=f"{s}_{i}") for i, s in enumerate(pick)]
        d = pd.concat(parts, ignore_index=True)
        try:
            reps.append(prepare(d, study="study", treatment="trt", events="x", n="n", reference="T0"))
        except ValueError:  # disconnected or missing a treatment: skip that replicate
            continue
    reps = [r for r in reps if r.treatments == reps[0].treatments]
    assert len(reps) >= 3
    for m in ("REML", "DL", "PM"):
        for engine in ("numpy", "jit"):
            params = [t for t in reps[0].treatments if t != "T0"]
            bf = _core.fit_packed(_core.pack([r.studies for r in reps], params), m, engine=engine)
            for i, r in enumerate(reps):
                one = fit(r, m)
                close(bf.tau2[i], one.tau2, 1e-10, 1e-14)
                close(bf.beta[i], one.estimate, 1e-10, 1e-13)
        batch = fit_batch(reps, method=m, test="hk")
        one = fit(reps[1], m, test="hk")
        lo, hi = batch.conf_int()
        close(lo[1], one.relative_effects()["ci_low"], 1e-10, 1e-13)
        assert batch.result(1).tau2 == pytest.approx(one.tau2, rel=1e-10, abs=1e-14)
        fr = batch.to_frame()
        assert len(fr) == len(reps) * len(batch.params)
        json.dumps(batch.to_dict())
        assert "network fits" in batch.summary()
    with pytest.raises(ValueError, match="treatments"):
        has4 = base.groupby("study")["trt"].transform(lambda t: (t == "T4").any())
        other = prepare(base[~has4], study="study", treatment="trt", events="x", n="n", reference="T0")
        fit_batch([reps[0], other])


def test_fit_arrays_simulation_replicates():
    # a fixed design of two-arm and three-arm studies, simulated contrasts
    rng = np.random.default_rng(3)
    S, qm, p = 10, 2, 3
    q = np.array([1, 1, 1, 2, 1, 2, 1, 1, 2, 1])
    X = np.zeros((S, qm, p))
    design = [[(0, -1)], [(1, -1)], [(2, -1)], [(0, -1), (1, -1)], [(1, 0)], [(2, -1), (0, -1)],
              [(2, 1)], [(2, 0)], [(1, -1), (2, -1)], [(0, -1)]]
    for s, rows in enumerate(design):
        for i, (a, b) in enumerate(rows):
            X[s, i, a] += 1
            if b >= 0:
                X[s, i, b] -= 1
    B = 200
    V = np.zeros((B, S, qm, qm))
    y = np.zeros((B, S, qm))
    for s in range(S):
        arm = rng.uniform(0.02, 0.1, q[s] + 1)
        Vs = np.diag(arm[1:]) + arm[0]
        V[:, s, :q[s], :q[s]] = Vs
        L = np.linalg.cholesky(Vs + 0.05 * (np.eye(q[s]) + 1) / 2)
        y[:, s, :q[s]] = X[s, :q[s]] @ np.array([0.2, -0.1, 0.4]) + rng.standard_normal((B, q[s])) @ L.T
    res = fit_arrays(y, V, X, q, method="REML")
    assert res.converged.all() and res.estimate.shape == (B, p)
    # the same replicate through the dense brute force
    for b in (0, 7):
        keep = [(s, i) for s in range(S) for i in range(q[s])]
        yy = np.array([y[b, s, i] for s, i in keep])
        XX = np.array([X[s, i] for s, i in keep])
        blocks_V = [V[b, s, :q[s], :q[s]] for s in range(S)]
        blocks_B = [(np.eye(q[s]) + 1) / 2 for s in range(S)]
        bf = brute(yy, linalg.block_diag(*blocks_V), linalg.block_diag(*blocks_B), XX)
        close(res.tau2[b], bf["REML"], 1e-4, 2e-6)
    # simulated coverage is not asserted (stochastic); the mean is near the truth
    assert np.abs(res.estimate.mean(axis=0) - [0.2, -0.1, 0.4]).max() < 0.05


# ---------------------------------------------------------------- I^2 and protocol
def test_heterogeneity_i2_interval():
    h = heterogeneity_stats(30.0, 10, 0.95)
    assert h["I2"] == pytest.approx(2 / 3)
    assert 0 <= h["I2_low"] < h["I2"] < h["I2_high"] < 1
    # Q > df + 1 branch: se(ln H) = (ln Q - ln df) / (2 (sqrt(2Q) - sqrt(2df - 1)))
    se = 0.5 * (np.log(30) - np.log(10)) / (np.sqrt(60) - np.sqrt(19))
    H = np.sqrt(3.0)
    close(h["H_high"], H * np.exp(stats.norm.ppf(0.975) * se), 1e-12)
    low = heterogeneity_stats(8.0, 10, 0.95)  # Q < df: I^2 = 0, interval from the other branch
    assert low["I2"] == 0.0 and low["I2_low"] == 0.0 and low["I2_high"] > 0
    assert np.isnan(heterogeneity_stats(1.0, 0)["I2_low"])
    wider = heterogeneity_stats(30.0, 10, 0.99)
    assert wider["I2_low"] < h["I2_low"] and wider["I2_high"] > h["I2_high"]


def test_result_protocol_with_new_options():
    r = fit_case(CASES["hasselblad1998"], "DL", test="hk")
    assert r.method == "DL" and r.test == "hk"
    c90, c99 = r.conf_int(0.90), r.conf_int(0.99)
    assert ((c99["ci_high"] - c99["ci_low"]) > (c90["ci_high"] - c90["ci_low"])).all()
    d = r.to_dict()
    json.dumps(d)
    assert d["test"] == "hk" and "I2_low" in d["heterogeneity"] and len(d["prediction_intervals"]) == 3
    s = r.summary()
    assert "tau^2 by DL" in s and "Hartung-Knapp" in s and "I^2" in s
    pi = r.prediction_intervals(pairs=True)
    assert len(pi) == 12 and (pi["pi_low"] < pi["estimate"]).all()
    assert r.hk_scale == pytest.approx(r.Q_re / r.Q_df)
    with pytest.raises(ValueError, match="dist"):
        r.prediction_intervals(dist="normal")
    with pytest.raises(ValueError, match="level"):
        r.conf_int(0)
    one = pd.DataFrame({"study": ["a", "a", "b", "b"], "trt": ["A", "B", "B", "C"], "x": [3, 5, 4, 6],
                        "n": [30] * 4})
    with pytest.raises(ValueError, match="degrees of freedom"):
        network_meta_analysis(one, study="study", treatment="trt", events="x", n="n", test="hk")


# ------------------------------------------------------------ all-pairwise input
def senn_all_pairs():
    a = pd.DataFrame(CASES["senn2013_MD"]["arms"])
    rows = []
    for sid, g in a.groupby("study", sort=False):
        g = g.reset_index(drop=True)
        for i, j in itertools.combinations(range(len(g)), 2):
            rows.append((sid, g.trt[i], g.trt[j], g.m[i] - g.m[j], g.s[i] ** 2 / g.n[i] + g.s[j] ** 2 / g.n[j]))
    return a, pd.DataFrame(rows, columns=["study", "t1", "t2", "yi", "vi"])


@pytest.mark.parametrize("method", ["FE", "DL", "REML"])
def test_all_pairwise_multiarm_input_equals_arm_level(method):
    arms, cl = senn_all_pairs()
    assert (cl["study"] == "Willms (1999)").sum() == 3  # the three-arm study as 3 contrasts
    kw = dict(measure="MD", reference="placebo", method=method)
    r = network_meta_analysis(cl, study="study", yi="yi", vi="vi", treat1="t1", treat2="t2", **kw)
    ra = network_meta_analysis(arms, study="study", treatment="trt", mean="m", sd="s", n="n", **kw)
    close(r.tau2, ra.tau2, 1e-10, 1e-14)
    close(r.estimate, ra.estimate, 1e-10, 1e-13)
    close(r.vcov, ra.vcov, 1e-10, 1e-14)
    close(r.Q, CASES["senn2013_MD"]["fits"]["FE"]["QE"], 1e-10)


def test_all_pairwise_input_errors():
    _, cl = senn_all_pairs()
    kw = dict(study="study", yi="yi", vi="vi", treat1="t1", treat2="t2", measure="MD", reference="placebo")
    w = cl.index[cl["study"] == "Willms (1999)"]
    bad = cl.copy()
    bad.loc[w[0], "yi"] += 0.5
    with pytest.raises(ValueError, match=r"Willms.*not consistent"):
        network_meta_analysis(bad, **kw)
    # a four-arm study: six pairwise variances must come from four arm variances
    th, sv = {"A": 0.0, "B": 0.3, "C": -0.2, "D": 0.5}, {"A": 0.05, "B": 0.08, "C": 0.04, "D": 0.1}
    four = pd.DataFrame([("F4", a, b, th[a] - th[b], sv[a] + sv[b]) for a, b in itertools.combinations("ABCD", 2)]
                        + [("T2", "A", "B", 0.2, 0.1)], columns=["study", "t1", "t2", "yi", "vi"])
    kw4 = dict(study="study", yi="yi", vi="vi", treat1="t1", treat2="t2", measure="MD", reference="A",
               method="FE")
    r4 = network_meta_analysis(four, **kw4)
    f4 = next(s for s in r4.data.studies if s.study == "F4")
    close(f4.V, np.diag([0.08, 0.04, 0.1]) + 0.05, 1e-12)  # arm variances recovered exactly
    bad = four.copy()
    bad.loc[0, "vi"] *= 3
    with pytest.raises(ValueError, match=r"F4.*arm variances"):
        network_meta_analysis(bad, **kw4)
    bad = cl.copy()
    bad.loc[w[1], ["t1", "t2"]] = bad.loc[w[0], ["t1", "t2"]].to_numpy()
    with pytest.raises(ValueError, match=r"Willms.*more than once.*own label"):
        network_meta_analysis(bad, **kw)
    # one label for two different two-arm studies with disjoint treatments
    two = pd.concat([cl, pd.DataFrame({"study": ["Dup", "Dup"], "t1": ["metformin", "acarbose"],
                                       "t2": ["placebo", "sitagliptin"], "yi": [-1.0, 0.2],
                                       "vi": [0.1, 0.1]})], ignore_index=True)
    with pytest.raises(ValueError, match=r"study 'Dup'.*unconnected.*two different studies"):
        network_meta_analysis(two, **kw)


def test_near_duplicate_treatment_labels_warn_and_stay_apart():
    arms, _ = senn_all_pairs()
    a2 = arms.copy()
    i = a2.index[a2["trt"] == "metformin"][0]
    a2.loc[i, "trt"] = "Metformin "
    with pytest.warns(UserWarning, match=r"'Metformin '.*'metformin'|'metformin'.*'Metformin '"):
        r = network_meta_analysis(a2, study="study", treatment="trt", mean="m", sd="s", n="n", measure="MD",
                                  reference="placebo", method="FE")
    assert "Metformin " in r.treatments and "metformin" in r.treatments  # never merged silently


def test_same_treatment_twice_names_study_and_label():
    arms, _ = senn_all_pairs()
    bad = arms.copy()
    s = bad["study"].iloc[0]
    rows = bad.index[bad["study"] == s]
    bad.loc[rows[1], "trt"] = bad.loc[rows[0], "trt"]
    with pytest.raises(ValueError, match=rf"{s[:6]}.*duplicate arms.*two different studies"):
        network_meta_analysis(bad, study="study", treatment="trt", mean="m", sd="s", n="n", measure="MD")


@pytest.mark.parametrize("method", ["DL", "PM", "REML", "ML"])
def test_estimators_invariant_to_reference_and_row_order(method):
    df = random_network(31, T=5, S=14, q3=0.4)
    kw = dict(study="study", treatment="trt", events="x", n="n", method=method)
    a = network_meta_analysis(df, reference="T0", **kw)
    b = network_meta_analysis(df.iloc[::-1].reset_index(drop=True), reference="T3", **kw)
    close(b.tau2, a.tau2, 1e-9, 1e-13)
    pa = a.pairwise_effects().set_index(["treat1", "treat2"]).sort_index()
    pb = b.pairwise_effects().set_index(["treat1", "treat2"]).sort_index()
    close(pb["estimate"], pa["estimate"], 1e-8, 1e-11)
    close(pb["se"], pa["se"], 1e-8)
    close(b.Q_re, a.Q_re, 1e-9)


@pytest.mark.parametrize("engine", ["numpy", "jit"])
def test_batch_with_different_study_counts(engine):
    df = random_network(41, T=4, S=12)
    full = prepare(df, study="study", treatment="trt", events="x", n="n", reference="T0")
    sub = full.subset([i % 4 != 3 or i < 3 for i in range(len(full.studies))])
    assert len(sub.studies) < len(full.studies)
    params = [t for t in full.treatments if t != "T0"]
    bf = _core.fit_packed(_core.pack([full.studies, sub.studies], params), "REML", engine=engine)
    for i, d in enumerate((full, sub)):
        one = fit(d, "REML")
        close(bf.tau2[i], one.tau2, 1e-10, 1e-14)
        close(bf.beta[i], one.estimate, 1e-10, 1e-13)
        close(bf.loglik_reml[i], one.loglik, 1e-12)
