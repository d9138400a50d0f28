"""GOSH vs metafor's gosh() (all subsets, small k) and properties of the batched subset fits."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_regression import RTOL, _load, rel_diff

from lnsynth.pairwise import meta_analysis
from lnsynth.pairwise.gosh import all_subsets, gosh, random_subsets


def test_gosh_reference():
    ref = _load()
    sets = {s["name"]: s for s in ref["sets"]}
    worst = 0.0
    assert len(ref["gosh"]) >= 6
    for c in ref["gosh"]:
        s = sets[c["data"]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = meta_analysis(yi=s["yi"], vi=s["vi"], method=c["method"])
            g = gosh(fit)
        assert g.exact
        np.testing.assert_array_equal(g.mask, np.asarray(c["mask"], dtype=np.int64))
        for key in ("k", "qe", "i2", "h2", "tau2", "estimate"):
            e = rel_diff(getattr(g, key), c[key], 1e-10 if key in ("tau2",) else (1e-8 if key == "i2" else 1e-12))
            assert e < RTOL, (key, c["data"], c["method"])
            worst = max(worst, e)
    print(f"gosh max rel diff {worst:.2e}")


@pytest.mark.parametrize("method", ["FE", "REML", "PM"])
def test_full_set_row_equals_fit(method):
    rng = np.random.default_rng(3)
    y = rng.normal(0.2, 0.5, 9)
    v = rng.uniform(0.02, 0.4, 9)
    fit = meta_analysis(yi=y, vi=v, method=method)
    g = gosh(fit)
    assert len(g) == 2**9 - 1
    last = g.incl.all(axis=1)
    assert last.sum() == 1 and last[-1]
    assert g.estimate[-1] == pytest.approx(fit.estimate, rel=1e-12)
    assert g.tau2[-1] == pytest.approx(fit.tau2, rel=1e-12, abs=1e-15)
    assert g.qe[-1] == pytest.approx(fit.q, rel=1e-12)
    # every size-1 subset is that study
    one = g.k == 1
    np.testing.assert_allclose(g.estimate[one], y, rtol=1e-14)


def test_subset_row_equals_meta_analysis():
    rng = np.random.default_rng(5)
    y = rng.normal(0.2, 0.5, 7)
    v = rng.uniform(0.02, 0.4, 7)
    fit = meta_analysis(yi=y, vi=v, method="REML")
    g = gosh(fit)
    for i in rng.choice(len(g), 15, replace=False):
        m = g.incl[i]
        if m.sum() < 2:
            continue
        r = meta_analysis(yi=y[m], vi=v[m], method="REML", ci_tau2=False)
        assert g.estimate[i] == pytest.approx(r.estimate, rel=1e-12)
        assert g.tau2[i] == pytest.approx(r.tau2, rel=1e-12, abs=1e-15)


def test_random_subsets_seeded_and_large_k():
    a = random_subsets(30, 500, seed=1)
    b = random_subsets(30, 500, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.sum(axis=1).min() >= 1
    rng = np.random.default_rng(0)
    y = rng.normal(0, 0.3, 25)
    v = rng.uniform(0.05, 0.2, 25)
    g = gosh(meta_analysis(yi=y, vi=v, method="DL"), subsets=2000, seed=4)
    assert not g.exact and len(g) == 2000
    assert np.all(np.diff(g.k) >= 0)
    assert g.to_frame().shape == (2000, 6)


def test_all_subsets_order():
    m = all_subsets(3)
    assert list(m) == [1, 2, 4, 3, 5, 6, 7]


def test_gosh_plot_smoke():
    import matplotlib.pyplot as plt

    from lnsynth.plots.gosh import gosh_plot

    rng = np.random.default_rng(2)
    y = rng.normal(0.2, 0.5, 8)
    v = rng.uniform(0.02, 0.4, 8)
    g = gosh(meta_analysis(yi=y, vi=v, method="REML", labels=list("abcdefgh")))
    for kw in ({}, {"highlight": 2}, {"max_points": 100}):
        fig = gosh_plot(g, **kw)
        assert fig.axes
        plt.close(fig)
