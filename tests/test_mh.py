"""lnsynth.pairwise.mh against metafor rma.mh / rma.peto.

Stored reference: tests/reference/effects_reference.json ("pool" cases),
from tests/reference/make_effects.R.  Compared at rtol 1e-9; the observed
maximum relative difference is ~1e-13 (see test_pool_max_relative_difference).
"""

from __future__ import annotations

import csv
import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import needs_r
from lnsynth.effects import EffectSizeWarning
from lnsynth.pairwise.mh import breslow_day, mh_core, mh_rate_core, peto_core

HERE = Path(__file__).parent
REF = json.loads((HERE / "reference" / "effects_reference.json").read_text())
POOL = [c for c in REF["pool"] if "error" not in c["result"]]
POOL_ERR = [c for c in REF["pool"] if "error" in c["result"]]
RTOL = 1e-9
KEYS = ["estimate", "se", "zval", "pvalue", "ci_low", "ci_high", "q", "q_pvalue", "i2", "h2", "k", "tau2"]
BD_KEYS = ["bd", "bd_pvalue", "tarone", "tarone_pvalue", "bd_k"]
POOL_RATE = REF["pool_rate"]


def _arr(x):
    return np.array([np.nan if v is None else v for v in x], dtype=float)


def _id(c):
    return f"{c['name']}-{c['method']}-{c['measure']}-correct={c['correct']}-to={c['to']}-drop00={c['drop00']}-add={c['add']}"


def _run(c):
    cells = [_arr(c[n]) for n in ("ai", "bi", "ci", "di")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EffectSizeWarning)
        if c["method"] == "PETO":
            return peto_core(*cells, add=c["add"], to=c["to"], drop00=c["drop00"])
        return mh_core(*cells, c["measure"], correct=c["correct"], add=c["add"], to=c["to"], drop00=c["drop00"])


def _compare(got: dict, want: dict, idx=0, rtol=RTOL):
    keys = KEYS + (["cmh", "cmh_pvalue"] if "cmh" in want else []) + (BD_KEYS if "bd" in want else [])
    for key in keys:
        g = float(np.asarray(got[key])[idx])
        w = np.nan if want[key] is None else float(want[key])
        if np.isnan(w):
            assert np.isnan(g), (key, g, w)
        else:
            # p-values can underflow towards 0: compare them absolutely too; Tarone's statistic is a
            # difference of two nearly equal sums (BD minus a tiny correction), so absolutely as well
            atol = 1e-15 if "pvalue" in key else (1e-12 if key in ("bd", "tarone") else 1e-300)
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=key)


@pytest.mark.parametrize("case", POOL, ids=_id)
def test_pool_reference(case):
    out = _run(case)
    assert set(out) == set(KEYS + (["cmh", "cmh_pvalue"] + BD_KEYS if case["measure"] == "OR" else []))
    for v in out.values():
        assert v.shape == (1,)
    _compare(out, case["result"])


def test_pool_max_relative_difference():
    worst = 0.0
    for c in POOL:
        out = _run(c)
        for key, w in c["result"].items():
            if key not in out or w is None or w == 0 or key in ("bd", "tarone", "bd_pvalue", "tarone_pvalue"):
                continue
            worst = max(worst, abs(float(out[key][0]) - w) / abs(w))
    assert worst < 1e-11, worst


def test_reference_covers_cases():
    names = {c["name"] for c in POOL}
    assert {"bcg", "k1", "k2", "k2_double_zero", "rand_small_zeros", "with_missing"} <= names
    assert {(c["method"], c["measure"], c["correct"]) for c in POOL} >= {
        ("MH", "OR", True), ("MH", "OR", False), ("MH", "RR", True), ("MH", "RD", True), ("PETO", "PETO", True)}


@pytest.mark.parametrize("case", POOL_ERR, ids=_id)
def test_peto_not_estimable_gives_nan_and_warns(case):
    # metafor stops ("one of the two outcomes never occurred"); we give NaN + warning
    cells = [_arr(case[n]) for n in ("ai", "bi", "ci", "di")]
    with pytest.warns(EffectSizeWarning, match="not estimable"):
        out = peto_core(*cells, add=case["add"], to=case["to"], drop00=case["drop00"])
    assert np.isnan(out["estimate"][0])


def test_or_not_estimable_warns():
    with pytest.warns(EffectSizeWarning, match="analysis \\[0\\]"):
        out = mh_core([0, 0], [10, 12], [2, 3], [8, 9], "OR")
    assert np.isnan(out["estimate"][0]) and np.isfinite(out["cmh"][0])


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "cells, pattern",
    [
        (([1, -2], [5, 5], [1, 1], [5, 5]), r"ai is negative for study at index 1"),
        (([1, 2], [5, 5], [1, 1], [5, np.nan]), r"di is missing \(NaN\) for study at index 1"),
        (([1, 2], [5, 5], [1, 1, 1], [5, 5, 5]), r"ai has length 2 but ci has length 3"),
        (([1, 0], [5, 0], [1, 1], [5, 5]), r"n_treat \(ai \+ bi\) must be > 0 for study at index 1"),
        ((["x", 2], [5, 5], [1, 1], [5, 5]), r"ai must be numeric"),
        (([[1], [2]], [[5], [5]], [[1], [-1]], [[5], [5]]), r"ci is negative for study at analysis 1, index 0"),
    ],
)
def test_errors(cells, pattern):
    with pytest.raises(ValueError, match=pattern):
        mh_core(*cells, "OR")
    with pytest.raises(ValueError, match=pattern):
        peto_core(*cells)


def test_bad_options():
    with pytest.raises(ValueError, match="valid: OR, RR, RD"):
        mh_core([1], [2], [1], [2], "SMD")
    with pytest.raises(ValueError, match="unknown to"):
        mh_core([1], [2], [1], [2], "OR", to="x")
    with pytest.raises(ValueError, match="level"):
        peto_core([1], [2], [1], [2], level=150)  # 95 means 0.95 (lnsynth.stats.normalize_level)


# --------------------------------------------------------------------------- properties
@st.composite
def datasets(draw, k_min=1, k_max=7):
    k = draw(st.integers(k_min, k_max))
    rows = []
    for _ in range(k):
        n1 = draw(st.integers(1, 80))
        n2 = draw(st.integers(1, 80))
        a = draw(st.integers(0, n1))
        c = draw(st.integers(0, n2))
        rows.append((a, n1 - a, c, n2 - c))
    return np.array(rows, dtype=float).T  # (4, k)


def _informative(t, measure):
    a, b, c, d = t
    if measure == "OR":
        return (a * d).sum() > 0 and (b * c).sum() > 0
    if measure == "RR":
        return a.sum() > 0 and c.sum() > 0
    if measure == "PETO":
        return ((a + c) * (b + d)).sum() > 0
    # RD: every risk 0 or 1 gives se = 0 (z, p undefined) in metafor too
    return bool(((a > 0) & (b > 0)).any() or ((c > 0) & (d > 0)).any())


def _pool(t, measure, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EffectSizeWarning)
        if measure == "PETO":
            return peto_core(*t, **kw)
        return mh_core(*t, measure, **kw)


@settings(max_examples=50, deadline=None)
@given(datasets(), st.sampled_from(["OR", "RR", "RD", "PETO"]), st.randoms(use_true_random=False))
def test_permutation_invariance(t, measure, rnd):
    perm = list(range(t.shape[1]))
    rnd.shuffle(perm)
    a = _pool(t, measure)
    b = _pool(t[:, perm], measure)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-10, atol=1e-12, equal_nan=True, err_msg=key)


@settings(max_examples=30, deadline=None)
@given(st.lists(datasets(4, 4), min_size=1, max_size=5), st.sampled_from(["OR", "RR", "RD", "PETO"]),
       st.lists(st.booleans(), min_size=4, max_size=4))
def test_batch_equals_loop(sets, measure, missing):
    batch = np.stack(sets, axis=1)  # (4, B, k)
    # make the last analysis lose some studies (NaN = missing), keeping at least one
    if len(sets) > 1 and not all(missing):
        batch[:, -1, np.array(missing)] = np.nan
    out = _pool(batch, measure)
    for i in range(batch.shape[1]):
        keep = ~np.isnan(batch[0, i])
        one = _pool(batch[:, i][:, keep], measure)
        for key in out:
            assert out[key].shape == (batch.shape[1],)
            np.testing.assert_allclose(out[key][i], one[key][0], rtol=1e-12, atol=1e-14, equal_nan=True,
                                       err_msg=key)


@settings(max_examples=50, deadline=None)
@given(datasets(), st.sampled_from(["OR", "RD", "PETO"]))
def test_swapping_arms_negates(t, measure):
    a, b, c, d = t
    x = _pool(t, measure)
    y = _pool(np.array([c, d, a, b]), measure)
    np.testing.assert_allclose(x["estimate"], -y["estimate"], rtol=1e-10, atol=1e-12)
    for key in ("se", "q", "i2", "h2", "pvalue"):
        np.testing.assert_allclose(x[key], y[key], rtol=1e-9, atol=1e-12, err_msg=key)


@settings(max_examples=60, deadline=None)
@given(datasets(), st.sampled_from(["OR", "RR", "RD", "PETO"]), st.booleans())
def test_finite_for_valid_counts(t, measure, drop00):
    out = _pool(t, measure, drop00=drop00)
    if _informative(t, measure):
        for key in ("estimate", "se", "q", "i2", "h2", "q_pvalue", "ci_low", "ci_high"):
            assert np.isfinite(out[key][0]), key
        # se can be exactly 0 (e.g. RR/RD when every risk is 0 or 1); z and p
        # are then undefined in metafor as well
        if out["se"][0] > 0:
            assert np.isfinite(out["zval"][0]) and np.isfinite(out["pvalue"][0])
        assert out["k"][0] == t.shape[1]


# --------------------------------------------------------------------------- live R
@needs_r
def test_live_against_rscript(tmp_path):
    rng = np.random.default_rng()
    B, k = 3, 6
    rows = []
    for b in range(B):
        n1 = rng.integers(1, 40, k)
        n2 = rng.integers(1, 40, k)
        a = rng.binomial(n1, rng.uniform(0, 0.5, k))
        c = rng.binomial(n2, rng.uniform(0, 0.5, k))
        a[0], c[0] = 0, 0  # a double-zero study
        if b == 1:
            c[1] = 0
        for i in range(k):
            rows.append((b, a[i], n1[i] - a[i], c[i], n2[i] - c[i]))
    inp = tmp_path / "in.csv"
    with inp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["analysis", "ai", "bi", "ci", "di"])
        w.writerows(rows)
    outp = tmp_path / "out.json"
    subprocess.run(["Rscript", str(HERE / "reference" / "make_effects.R"), "--live", str(inp), str(outp)],
                   check=True, capture_output=True, timeout=120)
    ref = json.loads(outp.read_text())
    cells = np.array([r[1:] for r in rows], float).reshape(B, k, 4).transpose(2, 0, 1)
    from lnsynth.effects import effect_sizes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EffectSizeWarning)
        for measure in ("RR", "OR", "RD", "PETO", "AS"):
            es = effect_sizes(measure, events_treat=cells[0], n_treat=cells[0] + cells[1],
                              events_ctrl=cells[2], n_ctrl=cells[2] + cells[3])
            for b in range(B):
                want = ref[b]["escalc"][measure]
                np.testing.assert_allclose(es.yi[b], _arr(want["yi"]), rtol=RTOL, atol=1e-15)
                np.testing.assert_allclose(es.vi[b], _arr(want["vi"]), rtol=RTOL)
        for b in range(B):
            for case in ref[b]["pool"]:
                if "error" in case["result"]:
                    continue
                if case["method"] == "PETO":
                    got = peto_core(*cells)
                else:
                    got = mh_core(*cells, case["measure"], correct=case["correct"])
                _compare(got, case["result"], idx=b)


# --------------------------------------------------------------------------- correct= through the public API
_CMH_DATA = dict(ai=[12, 5, 20, 3, 8], n1i=[50, 40, 60, 30, 45], ci=[7, 4, 11, 2, 9], n2i=[48, 42, 61, 29, 44])


@pytest.mark.parametrize("correct", [True, False])
def test_meta_analysis_passes_correct_to_cmh(correct):
    from lnsynth.effects import effect_sizes
    from lnsynth.pairwise import meta_analysis

    d = _CMH_DATA
    es = effect_sizes("OR", events_treat=d["ai"], n_treat=d["n1i"], events_ctrl=d["ci"], n_ctrl=d["n2i"])
    res = meta_analysis(es, method="MH", correct=correct)
    a, b = np.array(d["ai"], float), np.array(d["n1i"], float) - d["ai"]
    c, dd = np.array(d["ci"], float), np.array(d["n2i"], float) - d["ci"]
    want = mh_core(a, b, c, dd, "OR", correct=correct)
    np.testing.assert_allclose(res.extra["cmh"], want["cmh"][0], rtol=1e-12)
    other = meta_analysis(es, method="MH", correct=not correct)
    assert (res.extra["cmh"] < other.extra["cmh"]) == correct  # the correction shrinks the statistic
    assert res.estimate == pytest.approx(other.estimate, rel=1e-15)  # and touches nothing else


@needs_r
def test_correct_matches_live_rma_mh():
    """rma.mh(measure="OR", correct=TRUE/FALSE)$CMH and $CMHp from Rscript against meta_analysis(correct=)."""
    from lnsynth.effects import effect_sizes
    from lnsynth.pairwise import meta_analysis

    d = _CMH_DATA
    vec = lambda x: "c(" + ",".join(str(v) for v in x) + ")"  # noqa: E731
    code = (f"suppressMessages(library(metafor)); ai <- {vec(d['ai'])}; n1i <- {vec(d['n1i'])}; "
            f"ci <- {vec(d['ci'])}; n2i <- {vec(d['n2i'])}; for (cr in c(TRUE, FALSE)) {{ "
            "r <- rma.mh(ai=ai, n1i=n1i, ci=ci, n2i=n2i, measure='OR', correct=cr); "
            "cat(sprintf('%.17g %.17g\\n', r$MH, r$MHp)) }")
    out = subprocess.run(["Rscript", "-e", code], check=True, capture_output=True, text=True, timeout=120).stdout
    ref = [tuple(float(x) for x in ln.split()) for ln in out.strip().splitlines()]
    es = effect_sizes("OR", events_treat=d["ai"], n_treat=d["n1i"], events_ctrl=d["ci"], n_ctrl=d["n2i"])
    for correct, (cmh, p) in zip((True, False), ref):
        res = meta_analysis(es, method="MH", correct=correct)
        np.testing.assert_allclose(res.extra["cmh"], cmh, rtol=1e-10)
        np.testing.assert_allclose(res.extra["cmh_pvalue"], p, rtol=1e-10)


# --------------------------------------------------------------------------- Breslow-Day / Tarone
def test_breslow_day_reference_covered():
    with_bd = [c for c in POOL if c["measure"] == "OR" and c["result"].get("bd") is not None]
    assert len(with_bd) >= 40
    assert any(c["result"]["bd_k"] < c["result"]["k"] for c in with_bd)  # tables left out of BD (zeros)
    worst = 0.0
    for c in with_bd:
        out = _run(c)
        for key in ("bd", "tarone"):
            w = c["result"][key]
            if w > 1e-6:
                worst = max(worst, abs(float(out[key][0]) - w) / w)
    assert worst < 1e-10, worst


def test_breslow_day_function_and_api():
    from lnsynth.effects import effect_sizes
    from lnsynth.pairwise import meta_analysis

    case = next(c for c in POOL if c["name"] == "bcg" and c["measure"] == "OR" and c["correct"])
    cells = [_arr(case[n]) for n in ("ai", "bi", "ci", "di")]
    out = breslow_day(*cells)
    np.testing.assert_allclose(out["bd"], case["result"]["bd"], rtol=1e-10)
    np.testing.assert_allclose(out["tarone_pvalue"], case["result"]["tarone_pvalue"], rtol=1e-9)
    es = effect_sizes("OR", events_treat=cells[0], n_treat=cells[0] + cells[1], events_ctrl=cells[2],
                      n_ctrl=cells[2] + cells[3])
    res = meta_analysis(es, method="MH")
    assert res.extra["bd"] == pytest.approx(case["result"]["bd"], rel=1e-10)
    assert res.extra["tarone"] == pytest.approx(case["result"]["tarone"], rel=1e-10)
    assert "Breslow-Day" in res.summary()


def test_breslow_day_homogeneous_tables_give_zero():
    # identical tables: the MH odds ratio fits every table exactly
    t = np.array([10.0, 10.0, 10.0])
    out = breslow_day(t * 1, t * 3, t * 2, t * 4)
    assert out["bd"][0] == pytest.approx(0.0, abs=1e-12) and out["bd_pvalue"][0] == pytest.approx(1.0)


# --------------------------------------------------------------------------- MH for person-time (IRR, IRD)
def _id_rate(c):
    return f"{c['name']}-{c['measure']}-correct={c['correct']}-to={c['to']}-drop00={c['drop00']}"


def _run_rate(c):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EffectSizeWarning)
        return mh_rate_core(*[_arr(c[n]) for n in ("x1i", "t1i", "x2i", "t2i")], c["measure"], correct=c["correct"],
                            add=c["add"], to=c["to"], drop00=c["drop00"])


@pytest.mark.parametrize("case", POOL_RATE, ids=_id_rate)
def test_pool_rate_reference(case):
    assert "error" not in case["result"]
    out = _run_rate(case)
    assert set(out) == set(KEYS + (["cmh", "cmh_pvalue"] if case["measure"] == "IRR" else []))
    _compare(out, case["result"])


def test_pool_rate_coverage_and_precision():
    assert {(c["measure"], c["correct"]) for c in POOL_RATE} == {("IRR", True), ("IRR", False), ("IRD", True)}
    assert {"hart1999", "k1", "one_zero_arm", "with_missing"} <= {c["name"] for c in POOL_RATE}
    worst = 0.0
    for c in POOL_RATE:
        out = _run_rate(c)
        for key, w in c["result"].items():
            if key in out and w not in (None, 0):
                worst = max(worst, abs(float(out[key][0]) - w) / abs(w))
    assert worst < 1e-11, worst


def test_mh_rate_through_meta_analysis():
    from lnsynth.effects import effect_sizes
    from lnsynth.pairwise import meta_analysis

    c = next(c for c in POOL_RATE if c["name"] == "hart1999" and c["measure"] == "IRR" and c["to"] == "only0"
             and c["correct"])
    x1, t1, x2, t2 = (_arr(c[n]) for n in ("x1i", "t1i", "x2i", "t2i"))
    for measure in ("IRR", "IRD"):
        want = next(d for d in POOL_RATE if d["name"] == "hart1999" and d["measure"] == measure
                    and d["to"] == "only0")["result"]
        es = effect_sizes(measure, events_treat=x1, time_treat=t1, events_ctrl=x2, time_ctrl=t2)
        res = meta_analysis(es, method="MH")
        assert res.method == "MH" and res.measure == measure
        for key in ("estimate", "se", "ci_low", "ci_high", "q", "i2"):
            assert getattr(res, key) == pytest.approx(want[key], rel=1e-10), key
    assert res.extra.get("cmh") is None  # IRD: no MH test


def test_mh_rate_errors():
    with pytest.raises(ValueError, match="valid: IRR, IRD"):
        mh_rate_core([1], [2.0], [1], [2.0], "OR")
    with pytest.raises(ValueError, match="time_ctrl must be > 0 for study at index 1"):
        mh_rate_core([1, 2], [10.0, 20.0], [1, 3], [10.0, 0.0], "IRR")
    with pytest.raises(ValueError, match="events_treat is negative"):
        mh_rate_core([-1, 2], [10.0, 20.0], [1, 3], [10.0, 5.0], "IRD")
    from lnsynth.effects import effect_sizes
    from lnsynth.pairwise import meta_analysis

    es = effect_sizes("IRLN", events=[3, 4], time=[10.0, 20.0])
    with pytest.raises(ValueError, match="MH"):
        meta_analysis(es, method="MH")


@pytest.mark.parametrize("measure", ["IRR", "IRD"])
def test_mh_rate_batch_equals_loop(measure):
    rng = np.random.default_rng(5)
    t1, t2 = rng.uniform(20, 300, (3, 6)), rng.uniform(20, 300, (3, 6))
    x1, x2 = rng.poisson(t1 * 0.02).astype(float), rng.poisson(t2 * 0.03).astype(float)
    for a in (x1, t1, x2, t2):
        a[1, 4] = np.nan  # a study missing from analysis 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EffectSizeWarning)
        batch = mh_rate_core(x1, t1, x2, t2, measure)
        for b in range(3):
            keep = ~np.isnan(x1[b])
            one = mh_rate_core(x1[b][keep], t1[b][keep], x2[b][keep], t2[b][keep], measure)
            for key, val in one.items():
                np.testing.assert_allclose(batch[key][b], val[0], rtol=1e-13, err_msg=key)
