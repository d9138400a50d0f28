"""Property-based tests of the network meta-analysis on random connected networks."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lnsynth.network import network_meta_analysis

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def networks(draw):
    T = draw(st.integers(3, 5))
    trts = [f"t{i}" for i in range(T)]
    designs = [[i, i + 1] for i in range(T - 1)]  # a chain keeps it connected
    extra = draw(st.lists(st.lists(st.integers(0, T - 1), min_size=2, max_size=3, unique=True),
                          min_size=1, max_size=5))
    designs += extra
    rows = []
    for s, arms in enumerate(designs):
        for a in arms:
            n = draw(st.integers(10, 200))
            x = draw(st.integers(1, n - 1))
            rows.append((f"s{s}", trts[a], x, n))
    return pd.DataFrame(rows, columns=["study", "trt", "x", "n"])


def fit(df, method="FE", reference=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return network_meta_analysis(df, study="study", treatment="trt", events="x", n="n",
                                     reference=reference, method=method)


@SETTINGS
@given(networks(), st.sampled_from(["FE", "REML"]))
def test_pairwise_antisymmetry_and_consistency(df, method):
    r = fit(df, method)
    pw = r.pairwise_effects().set_index(["treat1", "treat2"])
    ts = r.treatments
    for a in ts:
        for b in ts:
            if a == b:
                continue
            ab, ba = pw.loc[(a, b)], pw.loc[(b, a)]
            assert np.isclose(ab.estimate, -ba.estimate, rtol=0, atol=1e-12)
            assert np.isclose(ab.se, ba.se, rtol=1e-12)
            for c in ts:
                if c in (a, b):
                    continue
                assert np.isclose(ab.estimate, pw.loc[(a, c)].estimate + pw.loc[(c, b)].estimate,
                                  rtol=0, atol=1e-10)
    lt = r.league_table()
    assert lt.shape == (len(ts), len(ts))


@SETTINGS
@given(networks(), st.sampled_from(["FE", "REML"]), st.randoms(use_true_random=False))
def test_reference_and_row_order_invariance(df, method, rnd):
    r1 = fit(df, method)
    ref2 = rnd.choice(list(r1.treatments))
    perm = df.sample(frac=1.0, random_state=rnd.randint(0, 10**6)).reset_index(drop=True)
    r2 = fit(perm, method, reference=ref2)
    assert np.isclose(r1.tau2, r2.tau2, rtol=1e-7, atol=1e-10)
    p1 = r1.pairwise_effects().set_index(["treat1", "treat2"]).sort_index()
    p2 = r2.pairwise_effects().set_index(["treat1", "treat2"]).sort_index()
    np.testing.assert_allclose(p1["estimate"], p2["estimate"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(p1["se"], p2["se"], rtol=1e-6)
    assert np.isclose(r1.Q, r2.Q, rtol=1e-10)


@SETTINGS
@given(networks())
def test_q_decomposition_and_ranking_identities(df):
    r = fit(df, "REML")
    qd = r.q_decomposition()
    assert np.isclose(qd.loc["total", "Q"], qd.loc["within designs", "Q"] + qd.loc["between designs", "Q"],
                      rtol=1e-12, atol=1e-12)
    assert (qd["Q"] >= -1e-9).all() and (qd["df"] >= 0).all()
    assert qd.loc["total", "df"] == r.Q_df
    ps = r.pscores("bad")
    assert np.isclose(ps.sum(), len(r.treatments) / 2)
    assert ((ps >= 0) & (ps <= 1)).all()
    assert np.allclose(r.pscores("good"), 1 - ps)
    assert r.tau2 >= 0
    if r.tau2 == 0:
        fe = fit(df, "FE")
        np.testing.assert_allclose(fe.estimate, r.estimate, rtol=1e-14, atol=1e-15)
    # REML estimate is the global maximum of the restricted likelihood
    from lnsynth.network import _core
    stk = _core.stack(r.data.studies, r.params)
    for t in np.concatenate([[0.0], np.geomspace(1e-4, 10, 25), [r.tau2 * 1.01, r.tau2 * 0.99]]):
        assert _core.gls_st(stk, t).loglik_reml <= r.loglik + 1e-10
    # analytic REML score = numerical derivative of the REML log-likelihood
    for t in (0.05, 0.4):
        h = 1e-6
        num = (_core.gls_st(stk, t + h).loglik_reml - _core.gls_st(stk, t - h).loglik_reml) / (2 * h)
        assert np.isclose(_core.reml_score(t, stk), num, rtol=1e-5, atol=1e-6)
    # batched block algebra agrees with the dense computation
    V, B = stk.dense()
    for t in (0.0, 0.3):
        dense, blk = _core.gls(stk.y, V + t * B, stk.X), _core.gls_st(stk, t)
        np.testing.assert_allclose(blk.beta, dense.beta, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(blk.vcov, dense.vcov, rtol=1e-10, atol=1e-14)
        assert np.isclose(blk.Q, dense.Q, rtol=1e-10, atol=1e-12)
        assert np.isclose(blk.loglik_reml, dense.loglik_reml, rtol=1e-12)
    ns = r.node_split()
    if len(ns):
        np.testing.assert_allclose(ns["difference"], ns["direct"] - ns["indirect"], atol=1e-12)
