"""Permutation tests (lnsynth.pairwise.permutation) against metafor's exact permutest().

Reference values: tests/reference/permutest_reference.json, written by tests/reference/make_permutest.R
(metafor 3.8-1, permutest(..., exact = TRUE)): intercept-only models (2^k sign flips; REML, PM, DL with
test = "knha"; simulated data and the first 10 studies of dat.bcg) and meta-regressions (all distinct row
permutations of the design: a continuous moderator, k = 6, 720 permutations; a binary one, k = 9, 126; a
moderator with ties, k = 8, 560; REML, FE, DL with knha).  Exact permutation p-values are ratios of counts,
so they must agree exactly (tolerance 1e-12); the observed statistics to 1e-6.  Random permutations use
another random stream than R, so they are checked for their properties (seed reproducibility, the observed
data counted first), not against metafor.
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from lnsynth.pairwise import meta_analysis, meta_regression
from lnsynth.pairwise.permutation import PermutationResult, _multiset_perms, _n_distinct, permutation_test

from conftest import REFERENCE_DIR

REF = json.loads((REFERENCE_DIR / "permutest_reference.json").read_text())
CASES = REF["cases"]


def _fit(c):
    y, v = np.array(c["yi"]), np.array(c["vi"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if c["X"] is None:
            return meta_analysis(yi=y, vi=v, method=c["method"], test=c["test"])
        return meta_regression(y, v, np.array(c["X"]), method=c["method"], test=c["test"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_exact_against_metafor(case):
    res = permutation_test(_fit(case), exact=True)
    assert isinstance(res, PermutationResult)
    assert res.exact and res.n_perm == case["n_perm"]
    want_z = np.atleast_1d(np.asarray(case["zval"], dtype=float))
    assert np.allclose(res.zval, want_z, rtol=1e-6, atol=1e-6)
    assert np.allclose(res.pvalue, np.atleast_1d(case["pval"]), rtol=0, atol=1e-12)
    assert res.qm_pvalue == pytest.approx(case["QMp"], abs=1e-12)


def test_multiset_enumeration():
    g = np.array([0, 0, 1, 1, 1, 2])
    perms = _multiset_perms(g)
    assert perms.shape == (60, 6) == (int(_n_distinct(g)), 6)
    assert len({tuple(r) for r in perms}) == 60
    assert _n_distinct(np.arange(7)) == math.factorial(7)


def test_random_permutations_reproducible():
    c = next(x for x in CASES if x["name"] == "bcg10_int_REML")
    fit = _fit(c)
    a = permutation_test(fit, iter=300, seed=5)
    b = permutation_test(fit, iter=300, seed=5)
    assert not a.exact and a.n_perm == 300
    assert np.array_equal(a.zval_perm, b.zval_perm)
    assert a.zval_perm[0, 0] == pytest.approx(float(fit.zval))  # the observed data come first, as metafor
    assert 1 / 300 <= a.pvalue[0] <= 1.0
    reg = next(x for x in CASES if x["name"] == "reg_k9_binary_REML")
    r = permutation_test(_fit(reg), iter=50, seed=2)
    assert not r.exact or r.n_perm == 126


def test_result_protocol_and_errors():
    c = next(x for x in CASES if x["name"] == "reg_k9_binary_REML")
    res = permutation_test(_fit(c), exact=True)
    d = res.to_dict()
    assert d["n_perm"] == 126 and d["exact"] is True
    assert list(res.to_frame()["term"]) == list(res.names)
    assert "exact, 126 permutations" in res.summary()
    lo, hi = res.conf_int()
    assert np.all(lo < res.coefficients) and np.all(res.coefficients < hi)
    with pytest.raises(ValueError, match="iter must be >= 2"):
        permutation_test(res.fit, iter=1)
    with pytest.raises(TypeError, match="expected a MetaResult"):
        permutation_test(object())


@pytest.mark.parametrize("method,test", [("REML", "z"), ("ML", "z"), ("DL", "knha"), ("FE", "z"), ("REML", "knha")])
def test_vectorised_refit_equals_rma_fit(method, test):
    """The batched refit of permuted designs gives the one-by-one meta-regression fit."""
    from lnsynth.pairwise.permutation import _refit_batch
    from lnsynth.pairwise.regression import rma_fit

    rng = np.random.default_rng(3)
    k = 12
    v = rng.uniform(0.01, 0.2, k)
    X = np.column_stack([np.ones(k), rng.normal(size=k), rng.integers(0, 2, k)])
    y = 0.2 + 0.3 * X[:, 1] + rng.normal(0, np.sqrt(v + 0.05))
    Xs = np.stack([X[rng.permutation(k)] for _ in range(40)])
    z, q, ok = _refit_batch(y, v, Xs, method, test, None)
    assert ok.all()
    for i in range(len(Xs)):
        d = rma_fit(y, v, Xs[i], method=method, test=test, r2=False)
        assert np.allclose(z[i], d["zval"], rtol=1e-8, atol=1e-10)
        assert q[i] == pytest.approx(d["qm"], rel=1e-8)
