"""Network meta-analysis: agreement with metafor rma.mv, input handling, invariances."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import needs_r
from lnsynth.network import network_meta_analysis

REF_PATH = Path(__file__).parent / "reference" / "network_reference.json"
REF = json.loads(REF_PATH.read_text())
CASES = {c["name"]: c for c in REF["cases"]}
R_SCRIPT = Path(__file__).parent / "reference" / "make_network.R"

# FE is closed-form: agreement to rounding.  REML agreement is limited by
# metafor's BFGS optimiser on a flat likelihood (max seen ~1e-7 relative).
RTOL = {"FE": 1e-10, "REML": 1e-6}
ATOL_TAU2 = 1e-8  # metafor cannot reach tau2 = 0 exactly (log-scale optimiser)


def fit_case(case: dict, method: str, **kw):
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


PARAMS = [(name, m) for name in CASES for m in ("FE", "REML")]


@pytest.mark.parametrize("name,method", PARAMS)
def test_matches_metafor(name, method):
    case = CASES[name]
    ref = case["fits"][method]
    res = fit_case(case, method)
    assert res.reference == ref["reference"]
    assert list(res.treatments) == ref["treatments"]
    assert list(res.dropped_studies) == list(case["dropped"])
    re = res.relative_effects()
    assert list(re["treatment"]) == ref["params"]
    rtol = RTOL[method]
    # estimates near zero: absolute floor tied to the SE scale
    atol = 1e-7 * float(np.max(ref["se"])) if method == "REML" else 1e-12
    close(re["estimate"], ref["estimate"], rtol, atol)
    close(re["se"], ref["se"], rtol)
    close(re["ci_low"], ref["ci_low"], rtol, atol)
    close(re["ci_high"], ref["ci_high"], rtol, atol)
    close(res.vcov, np.array(ref["vcov"]), rtol, atol * 1e-1)
    close(res.tau2, ref["tau2"], rtol, ATOL_TAU2)
    close(res.Q, ref["QE"], 1e-10)
    assert res.Q_df == ref["QE_df"]
    close(res.loglik, ref["loglik"], 1e-9, 1e-7 if method == "REML" else 0.0)
    # REML: ours should be at least as high as metafor's optimum
    if method == "REML":
        assert res.loglik >= ref["loglik"] - 1e-9


@pytest.mark.parametrize("name", list(CASES))
def test_two_arm_contrasts_match_escalc(name):
    """Effect sizes and 0.5 zero-cell correction agree with metafor escalc on two-arm studies."""
    case = CASES[name]
    ref = case["escalc_two_arm"]
    res = fit_case(case, "FE")
    studies = {s.study: s for s in res.data.studies}
    assert len(ref["study"]) > 0
    for sid, yi, vi in zip(ref["study"], ref["yi"], ref["vi"]):
        s = studies[sid]
        close(s.y, [yi], 1e-12, 1e-15)
        close(s.V, [[vi]], 1e-12)


@pytest.mark.parametrize("name,method", PARAMS)
def test_q_decomposition_matches_reference(name, method):
    case = CASES[name]
    ref = case["fits"][method]
    res = fit_case(case, method)
    qd = res.q_decomposition()
    close(qd.loc["within designs", "Q"], ref["Q_within_FE"], 1e-9, 1e-10)
    close(qd.loc["between designs", "Q"], ref["Q_between_FE"], 1e-9, 1e-10)
    assert qd.loc["within designs", "df"] == ref["Q_within_df"]
    assert qd.loc["between designs", "df"] == ref["Q_between_df"]
    # decomposition sums exactly
    close(qd.loc["total", "Q"], qd.loc["within designs", "Q"] + qd.loc["between designs", "Q"], 1e-12)
    assert qd.loc["total", "df"] == qd.loc["within designs", "df"] + qd.loc["between designs", "df"]
    close(qd.loc["total", "Q"], res.Q, 1e-12)
    dbt = res.design_by_treatment(random=True, tau2="consistency")
    close(dbt["chi2"], ref["Q_between_RE"], RTOL[method], 1e-9)
    assert dbt["df"] == ref["Q_between_df"]
    by = res.q_decomposition(by_design=True)
    close(by["Q"].sum(), qd.loc["within designs", "Q"], 1e-12)


NS_CASES = [(name, m) for name, c in CASES.items() if "node_split" in c for m in ("FE", "REML")]


@pytest.mark.parametrize("name,method", NS_CASES)
def test_node_split_matches_reference(name, method):
    case = CASES[name]
    res = fit_case(case, method)
    ns = res.node_split()
    ref = pd.DataFrame(case["node_split"][method])
    # R lists treat2 = earlier in sorted order; ours puts the reference second
    flip = ref["treat1"] == res.reference
    ref.loc[flip, ["treat1", "treat2"]] = ref.loc[flip, ["treat2", "treat1"]].to_numpy()
    ref.loc[flip, ["direct", "indirect"]] *= -1
    assert (ns["treat1"] != res.reference).all()
    assert len(ns) == len(ref) > 0
    m = ns.merge(ref, on=["treat1", "treat2"], suffixes=("", "_r"))
    assert len(m) == len(ref)
    for k in ("direct", "direct_se", "indirect", "indirect_se"):
        close(m[k], m[k + "_r"], RTOL[method], 1e-7 * float(m["direct_se"].max()))
    close(m["difference"], m["direct"] - m["indirect"], 1e-12, 1e-15)
    close(m["difference_se"], np.hypot(m["direct_se"], m["indirect_se"]), 1e-12)
    assert ((m["pvalue"] >= 0) & (m["pvalue"] <= 1)).all()


@pytest.mark.parametrize("method", ["FE", "REML"])
def test_contrast_input_with_cov_matches_arm_level(method):
    case = CASES["senn2013_MD"]
    cl = pd.DataFrame(case["contrasts"])
    res = network_meta_analysis(cl, study="study", yi="yi", vi="vi", treat1="treat1", treat2="treat2",
                                cov="cov", measure="MD", reference="placebo", method=method)
    ref = case["fits"][method]
    re = res.relative_effects()
    close(re["estimate"], ref["estimate"], RTOL[method], 1e-9)
    close(re["se"], ref["se"], RTOL[method])
    close(res.tau2, ref["tau2"], RTOL[method], ATOL_TAU2)
    # the contrasts' comparator does not matter: flip two-arm rows
    two = cl.groupby("study")["study"].transform("size") == 1
    fl = cl.copy()
    fl.loc[two, ["treat1", "treat2"]] = cl.loc[two, ["treat2", "treat1"]].to_numpy()
    fl.loc[two, "yi"] = -cl.loc[two, "yi"]
    res2 = network_meta_analysis(fl, study="study", yi="yi", vi="vi", treat1="treat1", treat2="treat2",
                                 cov="cov", measure="MD", reference="placebo", method=method)
    close(res2.estimate, res.estimate, 1e-10, 1e-13)
    # another reference gives the same network (re-expressed)
    res3 = network_meta_analysis(cl, study="study", yi="yi", vi="vi", treat1="treat1", treat2="treat2",
                                 cov="cov", measure="MD", reference="metformin", method=method)
    close(res3.tau2, res.tau2, 1e-9, 1e-12)
    pw, pw3 = res.pairwise_effects(), res3.pairwise_effects()
    close(pw3["estimate"], pw["estimate"], 1e-8, 1e-10)
    close(pw3["se"], pw["se"], 1e-8)


def test_multi_arm_contrast_input_requires_cov():
    cl = pd.DataFrame(CASES["senn2013_MD"]["contrasts"])
    with pytest.raises(ValueError, match="Willms.*cov"):
        network_meta_analysis(cl, study="study", yi="yi", vi="vi", treat1="treat1", treat2="treat2",
                              measure="MD", method="FE")
    bad = cl.copy()
    i = bad.index[bad["study"] == "Willms (1999)"][0]
    bad.loc[i, "treat2"] = "acarbose"
    with pytest.raises(ValueError, match="Willms.*same comparator"):
        network_meta_analysis(bad, study="study", yi="yi", vi="vi", treat1="treat1", treat2="treat2",
                              cov="cov", measure="MD", method="FE")


# ------------------------------------------------------------ small fixtures
def triangle() -> pd.DataFrame:
    return pd.DataFrame({
        "study": ["s1", "s1", "s2", "s2", "s2", "s3", "s3", "s4", "s4", "s5", "s5"],
        "trt": ["A", "B", "A", "B", "C", "B", "C", "A", "C", "A", "B"],
        "x": [5, 9, 3, 6, 8, 10, 12, 4, 9, 7, 20],
        "n": [50, 50, 40, 40, 40, 60, 60, 30, 30, 45, 44],
    })


def fit(df, method="FE", **kw):
    args = dict(study="study", treatment="trt", events="x", n="n", measure="OR", reference="A", method=method)
    args.update(kw)
    return network_meta_analysis(df, **args)


def test_fe_equals_reml_when_tau2_zero():
    case = CASES["random1"]
    fe, reml = fit_case(case, "FE"), fit_case(case, "REML")
    assert reml.tau2 == 0.0 and reml.tau2_at_boundary
    np.testing.assert_array_equal(fe.estimate, reml.estimate)
    np.testing.assert_array_equal(fe.vcov, reml.vcov)


@pytest.mark.parametrize("method", ["FE", "REML"])
def test_row_order_permutation_invariance(method):
    case = CASES["hasselblad1998"]
    arms = pd.DataFrame(case["arms"])
    base = fit_case(case, method)
    rng = np.random.default_rng(7)
    for _ in range(2):
        perm = arms.iloc[rng.permutation(len(arms))].reset_index(drop=True)
        r = network_meta_analysis(perm, study="study", treatment="trt", events="x", n="n",
                                  reference=case["reference"], method=method)
        close(r.estimate, base.estimate, 1e-10, 1e-13)
        close(r.vcov, base.vcov, 1e-10, 1e-13)
        close(r.tau2, base.tau2, 1e-10, 1e-13)


def test_errors_name_study_and_field():
    df = triangle()
    bad = df.copy()
    bad.loc[3, "x"] = 99
    with pytest.raises(ValueError, match=r"s2.*'x'.*exceeds.*'n'"):
        fit(bad)
    bad = df.copy()
    bad.loc[0, "x"] = -1
    with pytest.raises(ValueError, match=r"s1.*'x'.*negative"):
        fit(bad)
    bad = df.copy()
    bad.loc[4, "n"] = np.nan
    with pytest.raises(ValueError, match=r"s2.*'n'"):
        fit(bad)
    with pytest.raises(ValueError, match="column 'events'"):
        fit(df, events="events")
    with pytest.raises(ValueError, match="unknown reference.*'Z'"):
        fit(df, reference="Z")
    single = pd.concat([df, pd.DataFrame({"study": ["s9"], "trt": ["C"], "x": [1], "n": [10]})])
    with pytest.raises(ValueError, match=r"s9.*single-arm"):
        fit(single)
    dup = df.copy()
    dup.loc[1, "trt"] = "A"
    with pytest.raises(ValueError, match=r"s1.*duplicate arms.*\['A'\]"):
        fit(dup)
    with pytest.raises(ValueError, match="method"):
        fit(df, method="SJ")  # a pairwise-only estimator
    with pytest.raises(ValueError, match="test"):
        fit(df, test="wald")
    with pytest.raises(ValueError, match="measure"):
        fit(df, measure="HR")
    with pytest.raises(ValueError, match="level"):
        fit(df, level=150)  # 1.5 would be 1.5%, as metafor's level = 95
    with pytest.raises(ValueError, match=r"s1.*'sd'.*positive"):
        cont = df.assign(m=1.0, sd=1.0)
        cont.loc[0, "sd"] = 0.0
        fit(cont, measure="MD", events=None, mean="m", sd="sd")


def test_numeric_treatment_labels():
    df = triangle()
    df["trt"] = df["trt"].map({"A": 1, "B": 2, "C": 3})
    r = fit(df, reference=1)
    assert r.reference == "1" and r.treatments == ("1", "2", "3")
    close(r.estimate, fit(triangle()).estimate, 1e-14)


def test_disconnected_network_lists_components():
    df = triangle()
    extra = pd.DataFrame({"study": ["d1", "d1", "d2", "d2"], "trt": ["X", "Y", "Y", "Z"],
                          "x": [3, 4, 5, 6], "n": [20, 20, 20, 20]})
    with pytest.raises(ValueError, match=r"disconnected.*A, B, C.*X, Y, Z"):
        fit(pd.concat([df, extra], ignore_index=True))


def test_zero_events_correction_and_drop_warning():
    df = triangle()
    df.loc[df["study"] == "s4", "x"] = 0       # all-zero: dropped (OR)
    df.loc[0, "x"] = 0                          # single zero arm: corrected
    with pytest.warns(UserWarning, match="s4"):
        r = fit(df)
    assert r.dropped_studies == ("s4",)
    s1 = next(s for s in r.data.studies if s.study == "s1")
    # 0.5 added to events and non-events of both arms
    expect = np.log(9.5 / 41.5) - np.log(0.5 / 50.5)
    close(s1.y, [expect], 1e-14)
    close(s1.V, [[1 / 9.5 + 1 / 41.5 + 1 / 0.5 + 1 / 50.5]], 1e-14)
    # all-events study also dropped for OR
    df2 = triangle()
    df2.loc[df2["study"] == "s5", "x"] = df2.loc[df2["study"] == "s5", "n"]
    with pytest.warns(UserWarning, match="s5"):
        assert fit(df2).dropped_studies == ("s5",)


def test_baseline_is_reference_or_first_sorted():
    r = fit(triangle(), reference="B")
    for s in r.data.studies:
        assert s.baseline == ("B" if "B" in s.treatments else sorted(s.treatments)[0])
        assert list(s.treatments[1:]) == sorted(s.treatments[1:])


def test_node_split_without_loops_is_empty():
    star = pd.DataFrame({"study": ["a", "a", "b", "b", "c", "c", "d", "d", "e", "e", "e"],
                         "trt": ["A", "B", "D", "E", "A", "D", "A", "B", "A", "B", "C"],
                         "x": [3, 8, 4, 9, 5, 7, 6, 9, 2, 5, 6], "n": [30] * 11})
    # the only loop A-B-C lies inside the 3-arm study e -> no indirect evidence
    for method in ("FE", "REML"):
        ns = fit(star, method=method).node_split()
        assert ns.empty and "indirect" in ns.columns
    # adding a two-arm B-C study closes a real loop
    loop = pd.concat([star, pd.DataFrame({"study": ["f", "f"], "trt": ["B", "C"], "x": [4, 6], "n": [30, 30]})])
    ns = fit(loop).node_split()
    # A-C: direct from e, indirect A-B-C via a/d and f; A-B and B-C lose B or C when split
    assert set(zip(ns["treat1"], ns["treat2"])) == {("C", "A")}
    assert ns.loc[0, "nma"] == pytest.approx(fit(loop).relative_effects().set_index("treatment").loc["C", "estimate"])


def test_league_table_and_pairwise():
    r = fit(triangle())
    lt = r.league_table()
    assert list(lt.index) == list(r.treatments) == list(lt.columns)
    assert lt.loc["A", "A"] == "A"
    pw = r.pairwise_effects().set_index(["treat1", "treat2"])
    b = pw.loc[("B", "A")]
    assert lt.loc["B", "A"] == f"{b.estimate:.2f} [{b.ci_low:.2f}; {b.ci_high:.2f}]"
    re = r.relative_effects().set_index("treatment")
    close(b.estimate, re.loc["B", "estimate"], 1e-14)
    lte = r.league_table(exponentiate=True, digits=3)
    assert lte.loc["B", "A"].startswith(f"{np.exp(b.estimate):.3f}")


def test_pscores_and_sucra():
    r = fit(triangle())
    th, S = r._full()
    good, bad = r.pscores("good"), r.pscores("bad")
    close(good + bad, np.ones(3), 1e-14)
    close(good.sum(), 1.5, 1e-14)  # mean P-score is 1/2
    from scipy.stats import norm
    i, j, k = 1, 0, 2  # B vs A, B vs C, larger is better
    pb = (norm.cdf((th[i] - th[j]) / np.sqrt(S[i, i] + S[j, j] - 2 * S[i, j]))
          + norm.cdf((th[i] - th[k]) / np.sqrt(S[i, i] + S[k, k] - 2 * S[i, k]))) / 2
    close(bad["B"], pb, 1e-12)
    sc = r.sucra("bad", n_sim=20000, seed=3).set_index("treatment")
    close(sc["sucra"], bad[sc.index], 0, 0.02)
    close(r.sucra("bad", n_sim=500, seed=3)["sucra"], r.sucra("bad", n_sim=500, seed=3)["sucra"], 0)
    rk = r.ranking("bad", n_sim=2000)
    assert rk["pscore"].is_monotonic_decreasing
    with pytest.raises(ValueError):
        r.pscores("better")


def test_outputs_serialise():
    r = fit_case(CASES["hasselblad1998"], "REML")
    d = r.to_dict()
    json.dumps(d)
    assert d["method"] == "REML" and d["reference"] == "no_contact"
    assert len(d["relative_effects"]) == 3
    fr = r.to_frame()
    assert {"treatment", "estimate", "se", "ci_low", "ci_high", "pvalue", "exp_estimate"} <= set(fr.columns)
    s = r.summary()
    assert "tau^2" in s and "self_help" in s
    with pytest.raises(Exception):
        r.tau2 = 1.0  # frozen
    with pytest.raises(ValueError):
        r.estimate[0] = 0.0  # read-only arrays


# ------------------------------------------------------------------ live R
def random_network(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    T = int(rng.integers(4, 6))
    trts = [f"T{i}" for i in range(T)]
    d = np.concatenate([[0.0], rng.normal(0, 0.5, T - 1)])
    rows = []
    for s in range(int(rng.integers(8, 12))):
        if s < T - 1:
            arms = [s, s + 1] + ([s + 2] if s == 0 else [])
        else:
            arms = sorted(rng.choice(T, size=int(rng.choice([2, 2, 3])), replace=False))
        mu = rng.normal(-1.0, 0.5)
        for a in arms:
            n = int(rng.integers(20, 120))
            p = 1 / (1 + np.exp(-(mu + d[a] + rng.normal(0, 0.3))))
            rows.append((f"S{s:02d}", trts[a], int(rng.binomial(n, p)), n))
    return pd.DataFrame(rows, columns=["study", "trt", "x", "n"])


@needs_r
def test_live_r_random_network(tmp_path):
    """Fresh random network each run: FE to 1e-10; REML estimates equal rma.mv's at our
    tau^2 (fixed) to 1e-9, free-REML tau^2 agrees to 1e-6 relative-ish and our REML
    log-likelihood is at least metafor's."""
    seed = int(np.random.default_rng().integers(1, 10**6))
    arms = random_network(seed)
    reml = network_meta_analysis(arms, study="study", treatment="trt", events="x", n="n",
                                 reference="T0", method="REML")
    csv, out = tmp_path / "arms.csv", tmp_path / "out.json"
    arms.to_csv(csv, index=False)
    code = (
        'Sys.setenv(LNSYNTH_NETWORK_LIB="1"); source("' + str(R_SCRIPT) + '");'
        'a <- read.csv("' + str(csv) + '", stringsAsFactors=FALSE);'
        'cd <- build(a, "OR", "T0");'
        'params <- setdiff(csort(unique(c(cd$base, cd$trt))), "T0"); X <- design_X(cd, params);'
        'comp <- paste(cd$base, cd$trt, sep="-"); study <- cd$study;'
        f'fx <- rma.mv(cd$yi, cd$V, mods=X, intercept=FALSE, random=~comp|study, rho=1/2, tau2={reml.tau2!r});'
        'res <- list(FE=fit_one(cd, "T0", "FE"), REML=fit_one(cd, "T0", "REML"),'
        ' fixed=list(estimate=unname(as.vector(coef(fx))), se=unname(fx$se)));'
        'writeLines(to_json(res), "' + str(out) + '")'
    )
    p = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"seed {seed}: {p.stderr[-800:]}"
    ref = json.loads(out.read_text())
    fe = network_meta_analysis(arms, study="study", treatment="trt", events="x", n="n",
                               reference="T0", method="FE")
    f = ref["FE"]
    close(fe.estimate, f["estimate"], 1e-10, 1e-13)
    close(np.sqrt(np.diag(fe.vcov)), f["se"], 1e-10)
    close(fe.Q, f["QE"], 1e-10)
    close(fe.loglik, f["loglik"], 1e-10)
    close(reml.estimate, ref["fixed"]["estimate"], 1e-9, 1e-12)
    close(np.sqrt(np.diag(reml.vcov)), ref["fixed"]["se"], 1e-9)
    f = ref["REML"]
    close(reml.tau2, f["tau2"], 1e-6, 1e-7)
    assert reml.loglik >= f["loglik"] - 1e-9, f"seed {seed}"
    close(reml.estimate, f["estimate"], 1e-5, 1e-6 * float(np.max(f["se"])))
