"""Firth-penalised logistic meta-analysis (lnsynth.pairwise.firth).

R's logistf is not installable here, so the reference (tests/reference/make_firth.R ->
firth_reference.json) is an independent R computation: glm() iterated on Firth's pseudo-data
(y + h/2, n + h) to its fixed point, and plain glm() for maximum likelihood.  The other tests check
properties that identify the Firth solution: the penalised score is 0 at the solution, a single
table gives Haldane's estimator (0.5 added to every cell), estimates stay finite with zero cells,
and the estimate approaches ML as the counts grow.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lnsynth.effects import EffectSizeWarning
from lnsynth.pairwise.firth import _fit, _pieces, firth_core, firth_meta_analysis

REF = json.loads((Path(__file__).parent / "reference" / "firth_reference.json").read_text())["cases"]


def _arr(x):
    return np.atleast_1d(np.asarray(x, dtype=float))


@pytest.mark.parametrize("case", REF, ids=[c["name"] for c in REF])
def test_matches_r_glm_fixed_point(case):
    a, b, c, d = (_arr(case[k]) for k in ("ai", "bi", "ci", "di"))
    out = firth_core(a, b, c, d)
    assert out["estimate"][0] == pytest.approx(case["firth_estimate"], abs=1e-8)
    assert out["se"][0] == pytest.approx(case["firth_se"], abs=1e-8)
    assert out["pl_chisq"][0] == pytest.approx(case["firth_pl_chisq"], abs=1e-7)
    if "ml_estimate" in case:
        ml = firth_core(a, b, c, d, firth=False, profile=False)
        assert ml["estimate"][0] == pytest.approx(case["ml_estimate"], abs=1e-8)
        assert ml["se"][0] == pytest.approx(case["ml_se"], abs=1e-8)


def test_penalised_score_is_zero_at_solution():
    rng = np.random.default_rng(7)
    a = rng.binomial(40, 0.03, (50, 6)).astype(float)
    c = rng.binomial(40, 0.08, (50, 6)).astype(float)
    out = firth_core(a, 40 - a, c, 40 - c, profile=False)
    ok = np.isfinite(out["estimate"])
    assert ok.sum() >= 45
    assert np.all(out["converged"][ok])
    assert np.nanmax(out["max_score"]) < 1e-10
    # recompute the score independently at the reported solution for one analysis
    i = int(np.flatnonzero(ok)[0])
    alpha, beta, inv, score, pll, conv = _fit(a[i:i + 1], 40 - a[i:i + 1], c[i:i + 1], 40 - c[i:i + 1], True)
    _, _, score2, _ = _pieces(alpha, beta, a[i:i + 1], 40 - a[i:i + 1], c[i:i + 1], 40 - c[i:i + 1], True)
    assert np.abs(score2).max() < 1e-10
    assert beta[0] == pytest.approx(out["estimate"][i], abs=1e-12)


def test_single_table_is_haldane():
    for a, b, c, d in [(0, 20, 3, 17), (4, 11, 9, 2), (0, 10, 0, 12 + 1)]:
        if a + c == 0:
            continue
        out = firth_core([a], [b], [c], [d], profile=False)
        assert out["estimate"][0] == pytest.approx(np.log((a + .5) * (d + .5) / ((b + .5) * (c + .5))), abs=1e-10)


def test_finite_with_zero_cells_and_ml_diverges():
    a, b, c, d = [0, 0, 0], [40, 60, 25], [2, 5, 1], [38, 55, 24]
    res = firth_meta_analysis(a, b, c, d)
    assert np.isfinite(res.estimate) and np.isfinite(res.se) and res.estimate < 0
    assert np.isfinite(res.pl_ci_low) and np.isfinite(res.pl_ci_high)
    assert res.pl_ci_low < res.estimate < res.pl_ci_high
    ml = firth_core(a, b, c, d, firth=False, profile=False)
    assert not (np.isfinite(ml["estimate"][0]) and ml["converged"][0] and abs(ml["estimate"][0]) < 10)


def test_approaches_ml_as_counts_grow():
    a, b = np.array([5., 10, 20]), np.array([95., 90, 80])
    c, d = np.array([8., 12, 30]), np.array([92., 88, 70])
    diffs = []
    for m in (1, 10, 100, 1000):
        f = firth_core(a * m, b * m, c * m, d * m, profile=False)["estimate"][0]
        g = firth_core(a * m, b * m, c * m, d * m, firth=False, profile=False)["estimate"][0]
        diffs.append(abs(f - g))
    assert all(x > y for x, y in zip(diffs, diffs[1:]))
    assert diffs[-1] < 1e-5
    assert diffs[0] / diffs[-1] == pytest.approx(1000, rel=0.05)  # O(1/n) bias reduction


def test_profile_ci_solves_deviance_equation():
    from scipy.stats import chi2

    a, b, c, d = [0, 1, 2, 0], [50, 49, 58, 30], [3, 4, 5, 0], [47, 46, 55, 30]
    out = firth_core(a, b, c, d, level=0.9)
    A, B, C, D = (np.asarray([x], float) for x in (a, b, c, d))
    full = _fit(A, B, C, D, True)
    for key in ("pl_ci_low", "pl_ci_high"):
        pl0 = _fit(A, B, C, D, True, np.array([out[key][0]]), full[0])[4][0]
        assert 2 * (full[4][0] - pl0) == pytest.approx(chi2.isf(0.1, 1), abs=1e-8)
    assert out["pl_ci_low"][0] < out["estimate"][0] < out["pl_ci_high"][0]


def test_batch_equals_single_and_missing_studies():
    a = np.array([[0, 1, 2, np.nan], [1, 3, 0, 2]])
    b = np.array([[50, 49, 58, np.nan], [30, 40, 25, 33]])
    c = np.array([[3, 4, 5, np.nan], [2, 6, 1, 4]])
    d = np.array([[47, 46, 55, np.nan], [31, 37, 24, 31]])
    out = firth_core(a, b, c, d)
    one = firth_core(a[0, :3], b[0, :3], c[0, :3], d[0, :3])
    two = firth_core(a[1], b[1], c[1], d[1])
    for key in ("estimate", "se", "pl_ci_low", "pl_ci_high", "pl_chisq"):
        assert out[key][0] == pytest.approx(one[key][0], abs=1e-10)
        assert out[key][1] == pytest.approx(two[key][0], abs=1e-10)
    assert out["k"].tolist() == [3, 4]


def test_result_protocol_and_errors():
    res = firth_meta_analysis([0, 1, 2], [50, 49, 58], [3, 4, 5], [47, 46, 55], level=95)
    assert res.level == 0.95
    lo, hi = res.conf_int(0.99)
    assert lo < res.ci_low < res.estimate < res.ci_high < hi
    d = res.to_dict()
    assert d["measure"] == "OR" and d["k"] == 3 and d["firth"] is True
    assert res.to_frame().shape[0] == 1
    assert "Firth-penalised" in res.summary()
    with pytest.raises(ValueError, match="ai must be a count"):
        firth_core([-1], [3], [1], [2])
    with pytest.raises(ValueError, match="n_ctrl must be > 0"):
        firth_core([1], [3], [0], [0])
    with pytest.warns(EffectSizeWarning, match="not estimable"):
        out = firth_core([0, 0], [10, 12], [0, 0], [9, 11])
    assert np.isnan(out["estimate"][0])
