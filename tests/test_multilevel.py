"""Three-level meta-analysis (lnsynth.pairwise.multilevel) against metafor's rma.mv(random = ~ 1 | cluster/es).

Reference values: tests/reference/multilevel_reference.json, written by tests/reference/make_multilevel.R
(metafor 3.8-1; nlminb with rel.tol 1e-12 -- 1e-10 where it reports false convergence -- or optim's BFGS
with reltol 1e-15 where that reaches a higher log-likelihood, as the JSON records per case): dat.konstantopoulos2011 and dat.assink2016 (metadat), and simulated data sets stored in
the JSON, four of them with a variance component on the boundary.  The live test re-runs the script with
a fresh seed when R and metafor are installed.

Tolerance 1e-6, relative for values above 1 in size and absolute below.  metafor optimises log(sigma2), so
a boundary estimate is ~1e-11 there and exactly 0 here; our log-likelihood is never below metafor's.
"""
from __future__ import annotations

import json
import subprocess
import warnings

import numpy as np
import pytest

from lnsynth.pairwise import MetaAnalysisWarning, multilevel_meta_analysis
from lnsynth.pairwise import multilevel as ml

from conftest import REFERENCE_DIR, REPO, needs_r

REF = json.loads((REFERENCE_DIR / "multilevel_reference.json").read_text())
CASES = REF["cases"]
FIELDS = [("estimate", "estimate"), ("se", "se"), ("zval", "zval"), ("pval", "pval"), ("ci_low", "ci_low"),
          ("ci_high", "ci_high"), ("qe", "QE"), ("qe_pval", "QEp"), ("loglik", "loglik"),
          ("deviance", "deviance"), ("aic", "aic"), ("bic", "bic"), ("aicc", "aicc")]
TOL = 1e-6


def _fit(c, **kw):
    return multilevel_meta_analysis(c["yi"], c["vi"], c["cluster"], method=c["method"], test=c["test"],
                                    level=c["level"], **kw)


def _close(ours, theirs, tol=TOL):
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    return np.all(np.abs(ours - theirs) <= tol * np.maximum(1.0, np.abs(theirs)))


def _check_case(c):
    res = _fit(c)
    assert res.converged
    assert res.k == c["k"] and res.n_clusters == c["n_clusters"]
    for ours, theirs in FIELDS:
        assert _close(getattr(res, ours), c[theirs]), (c["name"], ours, getattr(res, ours), c[theirs])
    assert _close(res.sigma2, c["sigma2"]), (c["name"], res.sigma2, c["sigma2"])
    # our maximum is at least as high as the one metafor's optimiser stopped at
    assert res.loglik >= c["loglik"] - 1e-9
    if c["test"] == "t":
        assert res.df == c["df"] == c["k"] - 1
    return res


def test_reference_has_the_published_data_sets():
    names = {c["name"] for c in CASES}
    assert {"konstantopoulos2011_REML", "konstantopoulos2011_ML", "assink2016_REML"} <= names
    assert sum(n.startswith("sim_boundary") for n in names) == 4
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_matches_metafor(case):
    _check_case(case)


def test_konstantopoulos2011_values():
    """The textbook example (Konstantopoulos 2011, metafor's rma.mv documentation): district/school."""
    c = next(c for c in CASES if c["name"] == "konstantopoulos2011_REML")
    res = _fit(c)
    assert res.k == 56 and res.n_clusters == 11
    assert abs(res.estimate - 0.1847) < 5e-5 and abs(res.se - 0.0846) < 5e-5
    assert np.allclose(res.sigma2, [0.0651, 0.0327], atol=5e-5)


@pytest.mark.parametrize("case", [c for c in CASES if "boundary" in c["name"] or min(c["sigma2"]) < 1e-8],
                         ids=lambda c: c["name"])
def test_boundary_is_exact_zero_and_a_maximum(case):
    res = _fit(case)
    j = int(np.argmin(case["sigma2"]))
    assert case["sigma2"][j] < 1e-8  # metafor: a tiny positive number (log parametrisation)
    assert res.sigma2[j] == 0.0 and res.sigma2[1 - j] > 0.0
    # KKT: the score of the zero component points out of the parameter space, the other is 0
    d = ml._Data(np.asarray([case["yi"]]), np.asarray([case["vi"]]),
                 ml._cluster_codes(case["cluster"], (1, len(case["yi"])), True, np.ones((1, len(case["yi"])), bool)),
                 res.n_clusters)
    ev = ml._evaluate(d, res.sigma2[None, 0], res.sigma2[None, 1], case["method"] == "REML")
    score = ev["score"][0]
    assert score[j] <= 1e-8 and abs(score[1 - j]) < 1e-6


def test_batched_equals_loop_with_padding_and_ragged_clusters():
    cases = [c for c in CASES if c["test"] == "z" and c["level"] == 0.95 and c["method"] == "REML"]
    kmax = max(len(c["yi"]) for c in cases)
    B = len(cases)
    Y = np.full((B, kmax), np.nan)
    V = np.full((B, kmax), np.nan)
    C = np.full((B, kmax), "pad", dtype=object)
    for b, c in enumerate(cases):
        k = len(c["yi"])
        Y[b, :k], V[b, :k], C[b, :k] = c["yi"], c["vi"], c["cluster"]
    batch = multilevel_meta_analysis(Y, V, C)
    assert batch.estimate.shape == batch.se.shape == (B,) and batch.sigma2.shape == (B, 2)
    for b, c in enumerate(cases):
        one = multilevel_meta_analysis(c["yi"], c["vi"], c["cluster"])
        assert batch.k[b] == one.k and batch.n_clusters[b] == one.n_clusters
        for key in ("estimate", "se", "loglik", "qe", "ci_low", "ci_high", "pval"):
            assert abs(getattr(batch, key)[b] - getattr(one, key)) <= 1e-10 * max(1.0, abs(getattr(one, key))), key
        assert np.allclose(batch.sigma2[b], one.sigma2, rtol=1e-9, atol=1e-12)
        assert _close(batch.sigma2[b], c["sigma2"]) and _close(batch.estimate[b], c["estimate"])
        item = batch[b]
        assert item.estimate == batch.estimate[b] and item.sigma2.shape == (2,)


def test_shared_one_dimensional_cluster_for_a_batch_and_order_invariance():
    c = next(c for c in CASES if c["name"] == "konstantopoulos2011_ML")
    y, v = np.asarray(c["yi"]), np.asarray(c["vi"])
    rng = np.random.default_rng(7)
    Y = y + rng.normal(0.0, 0.1, (5, y.size))
    Y[0] = y
    batch = multilevel_meta_analysis(Y, np.tile(v, (5, 1)), c["cluster"], method="ML")
    assert _close(batch.estimate[0], c["estimate"]) and _close(batch.sigma2[0], c["sigma2"])
    perm = rng.permutation(y.size)
    for b in range(5):
        one = multilevel_meta_analysis(Y[b][perm], v[perm], np.asarray(c["cluster"])[perm], method="ML")
        assert abs(one.estimate - batch.estimate[b]) < 1e-10
        assert np.allclose(one.sigma2, batch.sigma2[b], rtol=1e-8, atol=1e-12)
    # numeric cluster labels give the same fit as the strings
    num = multilevel_meta_analysis(y, v, np.unique(c["cluster"], return_inverse=True)[1] * 1.0, method="ML")
    assert abs(num.estimate - batch.estimate[0]) < 1e-12


def test_result_protocol():
    c = next(c for c in CASES if c["name"] == "konstantopoulos2011_ML_t_90")
    res = _fit(c)
    assert res.level == 0.9 and res.test == "t" and res.method == "ML"
    assert res.conf_int() == (res.ci_low, res.ci_high)
    lo95, hi95 = res.conf_int(95)
    assert lo95 < res.ci_low and hi95 > res.ci_high
    d = res.to_dict()
    assert d["sigma2_between"] == res.sigma2[0] and d["sigma2_within"] == res.sigma2[1]
    assert d["df"] == 55 and d["k"] == 56 and d["method"] == "ML"
    frame = res.to_frame()
    assert frame.shape[0] == 1 and frame.loc[0, "estimate"] == res.estimate
    text = res.summary()
    assert "k = 56" in text and "tval" in text and "sigma^2.1" in text and "df = 55" in text
    batch = multilevel_meta_analysis(np.tile(c["yi"], (3, 1)), np.tile(c["vi"], (3, 1)), c["cluster"],
                                     method="ML", test="t", level=90)
    lo, hi = batch.conf_int()
    assert np.allclose(lo, res.ci_low) and np.allclose(hi, res.ci_high)
    bd = batch.to_dict()
    assert bd["sigma2_between"].shape == (3,) and np.all(bd["df"] == 55)
    assert batch.to_frame().shape[0] == 3 and "Batch of 3" in batch.summary()
    assert len(list(batch)) == 3 and batch[-1].estimate == batch.estimate[2]
    with pytest.raises(IndexError):
        batch[3]


@pytest.mark.parametrize("kwargs, field", [
    (dict(method="DL"), "method"),
    (dict(test="knha"), "test"),
    (dict(level=0.0), "level"),
    (dict(control={"foo": 1}), "control"),
])
def test_argument_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        multilevel_meta_analysis([0.1, 0.2, 0.3], [0.01, 0.02, 0.03], [1, 1, 2], **kwargs)


@pytest.mark.parametrize("yi, vi, cluster, field", [
    ([0.1, 0.2, 0.3], [0.01, 0.02], [1, 1, 2], "vi"),
    ([0.1, 0.2, 0.3], [0.01, -0.02, 0.03], [1, 1, 2], "vi must be > 0"),
    ([0.1, np.nan, 0.3], [0.01, 0.02, 0.03], [1, 1, 2], "yi is NaN"),
    ([0.1, 0.2, 0.3], [0.01, 0.02, 0.03], [1, 1], "cluster"),
    ([0.1, 0.2, 0.3], [0.01, 0.02, 0.03], [1, np.nan, 2], "cluster is NaN"),
    ([0.1, 0.2, 0.3], [0.01, 0.02, 0.03], ["a", None, "b"], "cluster is missing"),
    ([0.1, 0.2, 0.3], [0.01, 0.02, 0.03], None, "cluster"),
    ([0.1], [0.01], [1], "k >= 2"),
    (["x", 0.2], [0.01, 0.02], [1, 2], "yi"),
])
def test_input_errors_name_the_field(yi, vi, cluster, field):
    with pytest.raises(ValueError, match=field):
        multilevel_meta_analysis(yi, vi, cluster)


def test_unidentified_structures_warn():
    y, v = [0.1, 0.4, 0.3, 0.7], [0.01, 0.02, 0.03, 0.02]
    with pytest.warns(MetaAnalysisWarning, match="single cluster"):
        multilevel_meta_analysis(y, v, [1, 1, 1, 1])
    with pytest.warns(MetaAnalysisWarning, match="one effect size"):
        res = multilevel_meta_analysis(y, v, [1, 2, 3, 4])
    # only the sum is identified: it equals the REML tau^2 of the two-level model
    from lnsynth.pairwise import meta_analysis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uni = meta_analysis(yi=y, vi=v, method="REML")
    assert abs(res.sigma2.sum() - uni.tau2) < 1e-8 and abs(res.estimate - uni.estimate) < 1e-8


@needs_r
def test_live_against_metafor(tmp_path):
    out = tmp_path / "ml.json"
    r = subprocess.run(["Rscript", str(REPO / "tests/reference/make_multilevel.R"), str(out), "424242"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    for c in json.loads(out.read_text())["cases"]:
        _check_case(c)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_kkt_conditions_on_a_random_batch(method):
    """Every fit of a batch of small, boundary-prone data sets is a maximum on sigma2 >= 0 (KKT)."""
    rng = np.random.default_rng(11)
    B, m = 300, 6
    cl = np.repeat(np.arange(m), [1, 2, 2, 3, 3, 4])
    k = cl.size
    V = rng.uniform(0.01, 0.3, (B, k))
    s1 = rng.choice([0.0, 0.02, 0.2], B)[:, None]
    s2 = rng.choice([0.0, 0.02, 0.2], B)[:, None]
    Y = rng.normal(0, np.sqrt(s1), (B, m))[:, cl] + rng.normal(0, np.sqrt(s2), (B, k)) + rng.normal(0, np.sqrt(V))
    res = multilevel_meta_analysis(Y, V, cl, method=method)
    assert res.converged.all() and (res.sigma2 >= 0).all()
    d = ml._Data(Y, V, np.tile(cl, (B, 1)), m)
    score = ml._evaluate(d, res.sigma2[:, 0], res.sigma2[:, 1], method == "REML")["score"]
    at0 = res.sigma2 == 0.0
    assert at0.any() and (~at0).any()
    assert np.all(score[at0] <= 1e-6)
    assert np.all(np.abs(score[~at0]) <= 1e-5 * np.maximum(1.0, 1.0 / res.sigma2[~at0]))


def test_control_options_and_non_convergence_flag():
    c = next(c for c in CASES if c["name"] == "assink2016_REML")
    with pytest.warns(MetaAnalysisWarning, match="did not converge"):
        res = multilevel_meta_analysis(c["yi"], c["vi"], c["cluster"], control={"max_iter": 1})
    assert not res.converged and "WARNING" in res.summary()
    res = multilevel_meta_analysis(c["yi"], c["vi"], c["cluster"], control={"sigma2_init": [1.0, 0.0], "tol": 1e-12})
    assert res.converged and _close(res.sigma2, c["sigma2"]) and _close(res.estimate, c["estimate"])
    with pytest.raises(ValueError, match="sigma2_init"):
        multilevel_meta_analysis(c["yi"], c["vi"], c["cluster"], control={"sigma2_init": [-1.0, 0.0]})
