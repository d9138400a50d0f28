"""Meta-regression and subgroup analysis vs metafor (tests/reference/sensitivity_reference.json)."""
from __future__ import annotations

import json
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import REFERENCE_DIR, needs_r
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lnsynth.pairwise import meta_analysis
from lnsynth.pairwise.regression import design_matrix, meta_regression
from lnsynth.pairwise.subgroup import subgroup_analysis

RTOL = 1e-6
REF = REFERENCE_DIR / "sensitivity_reference.json"
KEYS = ("coefficients", "se", "zval", "pvalue", "ci_low", "ci_high", "tau2", "se_tau2", "qm", "qm_pvalue",
        "qe", "qe_pvalue", "i2", "h2", "r2")
# tau2 that metafor approaches through step halving (never exactly 0) is compared with an absolute floor
ATOL = {"tau2": 1e-10, "se_tau2": 1e-10, "i2": 1e-8, "r2": 1e-8}


def _load(path=None):
    path = REF if path is None else path
    with open(path) as fh:
        return json.load(fh)


def rel_diff(a, b, atol=1e-12):
    a = np.atleast_1d(np.asarray(a, dtype=float))
    b = np.atleast_1d(np.asarray([np.nan if x is None else x for x in np.atleast_1d(b)], dtype=float))
    assert a.shape == b.shape, (a.shape, b.shape)
    both = np.isnan(a) & np.isnan(b)
    d = np.abs(a - b)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(d <= atol, 0.0, d / np.abs(b))  # relative, with an absolute floor atol
    r[both] = 0.0
    return float(np.max(np.where(np.isnan(r), np.inf, r))) if r.size else 0.0


def compare_regression(ref):
    data = {d["name"]: d for d in ref["regression_data"]}
    worst = 0.0
    n = 0
    for c in ref["regression"]:
        assert c["ok"], c
        dd = data[c["data"]]
        mods = pd.DataFrame({v: dd["mods"][v] for v in c["mods"]})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = meta_regression(yi=dd["yi"], vi=dd["vi"], moderators=mods, method=c["method"], test=c["test"])
        d = res.to_dict()
        assert d["names"] == c["names"]
        for key in KEYS:
            if key == "r2" and c["method"] != "FE" and (c["tau2_0"] or 0.0) < 1e-8:
                continue  # R^2 of a model whose tau2_0 is (numerically) 0 is 0/0 in metafor
            e = rel_diff(d[key], c[key], ATOL.get(key, 1e-12))
            assert e < RTOL, (key, c["data"], c["mods"], c["method"], c["test"], d[key], c[key])
            worst = max(worst, e)
        n += 1
    return worst, n


def test_regression_reference():
    worst, n = compare_regression(_load())
    assert n >= 400
    print(f"meta_regression: {n} fits, max rel diff {worst:.2e}")


def test_bcg_known_values():
    ref = _load()
    bcg = next(d for d in ref["regression_data"] if d["name"] == "bcg")
    df = pd.DataFrame(bcg["mods"])
    r = meta_regression(yi=bcg["yi"], vi=bcg["vi"], moderators=df[["ablat", "alloc"]], method="REML")
    assert r.names == ("intrcpt", "ablat", "allocrandom", "allocsystematic")
    # formula interface gives the same fit (formulaic names)
    r2 = meta_regression(yi=bcg["yi"], vi=bcg["vi"], moderators="ablat + alloc", data=df, method="REML")
    np.testing.assert_allclose(r2.coefficients, r.coefficients, rtol=1e-12)
    assert r2.names == r.names
    assert r2.qm == pytest.approx(r.qm, rel=1e-12)
    d = r.to_dict()
    for key in ("coefficients", "se", "tau2", "qm", "qm_pvalue", "qe", "qe_pvalue"):
        assert key in d
    assert len(d["coefficients"]) == 4
    assert r.to_frame().shape == (4, 7)
    assert "Test of Moderators" in r.summary()


def test_categorical_reference_level_and_categorical_order():
    X, names = design_matrix(pd.DataFrame({"g": ["b", "a", "c", "a"]}))
    assert names == ["intrcpt", "gb", "gc"]
    np.testing.assert_array_equal(X[:, 1], [1, 0, 0, 0])
    X, names = design_matrix(pd.DataFrame({"g": pd.Categorical(["b", "a", "c"], categories=["c", "b", "a"])}))
    assert names == ["intrcpt", "gb", "ga"]


def test_errors():
    with pytest.raises(ValueError, match="method"):
        meta_regression(yi=[1, 2, 3], vi=[1, 1, 1], moderators=pd.DataFrame({"x": [1, 2, 4]}), method="XX")
    with pytest.raises(ValueError, match="full rank"):
        meta_regression(yi=[1, 2, 3], vi=[1, 1, 1], moderators=pd.DataFrame({"x": [1, 2, 4], "z": [2, 4, 8]}))
    with pytest.raises(ValueError, match="vi"):
        meta_regression(yi=[1, 2, 3], vi=[1, 0, 1], moderators=pd.DataFrame({"x": [1, 2, 4]}))
    with pytest.raises(ValueError, match="missing"):
        meta_regression(yi=[1, 2, 3], vi=[1, 1, 1], moderators=pd.DataFrame({"x": [1, np.nan, 4]}))


@st.composite
def _data(draw, kmin=3, kmax=12):
    k = draw(st.integers(kmin, kmax))
    y = draw(st.lists(st.floats(-3, 3, allow_nan=False), min_size=k, max_size=k))
    v = draw(st.lists(st.floats(0.01, 2.0, allow_nan=False), min_size=k, max_size=k))
    return np.array(y), np.array(v)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_data(), st.sampled_from(["FE", "DL", "HE", "SJ", "ML", "REML", "PM", "EB"]), st.sampled_from(["z", "knha"]))
def test_intercept_only_equals_meta_analysis(yv, method, test):
    y, v = yv
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = meta_analysis(yi=y, vi=v, method=method, test=test, ci_tau2=False)
        b = meta_regression(yi=y, vi=v, moderators=None, method=method, test=test)
    if a.n_maxima > 1 or b.n_maxima > 1:
        return
    assert b.tau2 == pytest.approx(a.tau2, rel=1e-7, abs=1e-10)
    assert b.coefficients[0] == pytest.approx(a.estimate, rel=1e-7, abs=1e-10)
    assert b.se[0] == pytest.approx(a.se, rel=1e-7, abs=1e-10)
    assert b.qe == pytest.approx(a.q, rel=1e-9, abs=1e-12)
    assert b.i2 == pytest.approx(a.i2, rel=1e-6, abs=1e-7)


@settings(max_examples=25, deadline=None)
@given(_data(kmin=5), st.sampled_from(["DL", "REML"]), st.randoms(use_true_random=False))
def test_permutation_invariance(yv, method, rnd):
    y, v = yv
    x = np.linspace(0, 1, len(y)) ** 2
    perm = list(range(len(y)))
    rnd.shuffle(perm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = meta_regression(yi=y, vi=v, moderators=pd.DataFrame({"x": x}), method=method)
        b = meta_regression(yi=y[perm], vi=v[perm], moderators=pd.DataFrame({"x": x[perm]}), method=method)
    np.testing.assert_allclose(b.coefficients, a.coefficients, rtol=1e-7, atol=1e-9)
    assert b.tau2 == pytest.approx(a.tau2, rel=1e-7, abs=1e-10)


def test_subgroup_reference():
    ref = _load()
    if "subgroup" not in ref:
        pytest.skip("reference has no subgroup section")
    data = {d["name"]: d for d in ref["regression_data"]}
    for c in ref["subgroup"]:
        dd = data[c["data"]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FE + knha warns, as metafor does
            res = subgroup_analysis(dd["yi"], dd["vi"], dd["mods"][c["factor"]], method=c["method"], test=c["test"])
        assert list(res.groups) == c["groups"]
        for key in ("estimate", "se", "tau2"):
            assert rel_diff(res.separate[key], c["separate_" + key], 1e-9) < RTOL, (key, c)
        assert rel_diff(res.test_separate["q"], c["q_between"]) < RTOL
        assert rel_diff(res.test_separate["pvalue"], c["q_between_pvalue"]) < RTOL
        assert rel_diff(res.test_common["q"], c["qm"]) < RTOL
        assert rel_diff(res.test_common["pvalue"], c["qm_pvalue"]) < RTOL
        assert rel_diff(res.common["estimate"], c["common_estimate"]) < RTOL
        assert rel_diff(res.common["se"], c["common_se"]) < RTOL
    assert res.to_frame().shape[0] == 2 * len(res.groups)


@needs_r
def test_live_r_fresh_random(tmp_path):
    out = tmp_path / "ref.json"
    seed = int(np.random.default_rng().integers(1, 2**31 - 1))
    subprocess.run(["Rscript", str(REFERENCE_DIR / "make_sensitivity.R"), str(out), str(seed), "2", "regression"],
                   check=True, capture_output=True, timeout=240)
    ref = _load(out)
    worst, n = compare_regression(ref)
    assert n > 0
    from test_influence import compare_influence_regression

    compare_influence_regression(ref)
