"""egger_test / rank_test / trim_and_fill / fail_safe_n vs metafor (tests/reference/sensitivity_reference.json)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_regression import RTOL, _load, rel_diff

from lnsynth.pairwise import meta_analysis
from lnsynth.pairwise.bias import egger_test, fail_safe_n, kendall_test, rank_test, trim_and_fill


def _fit(s, method, test):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return meta_analysis(yi=s["yi"], vi=s["vi"], method=method, test=test)


def compare_bias(ref):
    sets = {s["name"]: s for s in ref["sets"]}
    worst = {}
    n_tf = 0
    for c in ref["diagnostics"]:
        s = sets[c["data"]]
        fit = _fit(s, c["method"], c["test"])
        if "regtest" in c:
            e = egger_test(fit)
            for key, val in c["regtest"].items():
                d = rel_diff(e[key], val, 1e-12)
                assert d < RTOL, ("regtest", key, c["data"], c["method"], c["test"], e[key], val)
                worst["egger"] = max(worst.get("egger", 0), d)
        if "ranktest" in c:
            r = rank_test(fit)
            for key, val in c["ranktest"].items():
                d = rel_diff(r[key], val, 1e-12)
                assert d < RTOL, ("ranktest", key, c["data"])
                worst["rank"] = max(worst.get("rank", 0), d)
        for key in c:
            if not key.startswith("trimfill_"):
                continue
            _, est, side = key.split("_")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tf = trim_and_fill(fit, side=None if side == "auto" else side, estimator=est)
            ref_tf = c[key]
            assert tf.side == ref_tf["side"]
            assert tf.k0 == ref_tf["k0"], (key, c["data"], c["method"])
            for kk in ("estimate", "se", "tau2", "ci_low", "ci_high", "pvalue", "q", "se_k0"):
                d = rel_diff(tf[kk], ref_tf[kk], 1e-10 if kk == "tau2" else 1e-12)
                assert d < RTOL, (key, kk, c["data"], c["method"], tf[kk], ref_tf[kk])
                worst["trimfill"] = max(worst.get("trimfill", 0), d)
            k = len(s["yi"])
            if tf.k0:
                assert rel_diff(tf.filled_yi, ref_tf["yi"][k:], 1e-12) < RTOL
                assert rel_diff(tf.filled_vi, ref_tf["vi"][k:], 1e-12) < RTOL
            n_tf += 1
    for c in ref["fsn"]:
        s = sets[c["data"]]
        f = fail_safe_n(yi=s["yi"], vi=s["vi"])
        assert f.fsnum == c["fsnum"]
        d = rel_diff(f.pvalue, c["pvalue"], 1e-300)
        assert d < RTOL
        worst["fsn"] = max(worst.get("fsn", 0), d)
    return worst, n_tf


def test_bias_reference():
    worst, n_tf = compare_bias(_load())
    print("max rel diffs:", worst, "trimfill cases:", n_tf)
    assert n_tf >= 100
    assert set(worst) == {"egger", "rank", "trimfill", "fsn"}


def test_trimfill_both_sides_present():
    ref = _load()
    sides = {c[k]["side"] for c in ref["diagnostics"] for k in c if k.startswith("trimfill_") and k.endswith("auto")}
    k0s = [c[k]["k0"] for c in ref["diagnostics"] for k in c if k.startswith("trimfill_")]
    assert sides == {"left", "right"}
    assert max(k0s) > 0


def test_kendall_exact_and_ties_against_known():
    # R: cor.test(1:6, c(2,1,4,3,6,5), method="kendall") -> tau 0.6, p = 0.1361111
    tau, p = kendall_test(np.arange(6), [2, 1, 4, 3, 6, 5])
    assert tau == pytest.approx(0.6)
    assert p == pytest.approx(0.1361111111, rel=1e-8)


@settings(max_examples=25, deadline=None)
@given(st.integers(3, 7), st.integers(0, 10_000))
def test_kendall_exact_matches_permutation_count(n, seed):
    from itertools import permutations

    rng = np.random.default_rng(seed)
    y = rng.permutation(n)
    tau, p = kendall_test(np.arange(n), y)
    if n <= 6:
        taus = []
        for perm in permutations(range(n)):
            t, _ = kendall_test(np.arange(n), perm, exact=False)
            taus.append(t)
        taus = np.array(taus)
        # two-sided: min(1, 2 * smaller tail)
        lo = np.mean(taus <= tau + 1e-12)
        hi = np.mean(taus >= tau - 1e-12)
        assert p == pytest.approx(min(1.0, 2 * min(lo, hi)), rel=1e-9)


def test_fsn_rosenthal_known_bcg():
    ref = _load()
    bcg = next(s for s in ref["sets"] if s["name"] == "bcg")
    f = fail_safe_n(yi=bcg["yi"], vi=bcg["vi"])
    assert f.fsnum == 598  # metafor: fsn(yi, vi, data=dat) for BCG log RR
    assert fail_safe_n(meta_analysis(yi=bcg["yi"], vi=bcg["vi"])).fsnum == 598


def test_funnel_plot_smoke():
    import matplotlib.pyplot as plt

    from lnsynth.plots.funnel import funnel_plot

    ref = _load()
    s = next(x for x in ref["sets"] if x["name"] == "hackshaw1998")
    fit = meta_analysis(yi=s["yi"], vi=s["vi"], method="REML", measure="OR")
    tf = trim_and_fill(fit)
    for kw in ({"trimfill": tf}, {"contours": None}, {"transf": "exp"}):
        fig = funnel_plot(fit, **kw)
        assert fig.axes
        plt.close(fig)


def test_trimfill_equal_vi_needs_side_and_egger_errors():
    fit = meta_analysis(yi=[0.1, 0.4, 0.2, 0.9, 0.5], vi=[0.1] * 5)
    with pytest.raises(ValueError, match="side"):
        trim_and_fill(fit)
    tf = trim_and_fill(fit, side="left")
    assert tf.side == "left" and tf.k0 >= 0
    with pytest.raises(ValueError, match="full rank"):
        egger_test(fit)
    with pytest.raises(ValueError, match="estimator"):
        trim_and_fill(fit, side="left", estimator="Q9")
