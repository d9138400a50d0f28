"""lnsynth.effects against metafor::escalc (stored reference) and input checks.

Reference: tests/reference/effects_reference.json, written by
tests/reference/make_effects.R (metafor 3.8-1).  All values agree to
rtol 1e-9 (observed max 1.1e-12, SMD "UB" variance; otherwise < 2e-14): the formulas are closed-form and evaluated
in the same order as R, so only last-bit rounding differs.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import needs_r
from lnsynth.effects import MEASURES, EffectSizes, EffectSizeWarning, effect_sizes

REF = json.loads((Path(__file__).parent / "reference" / "effects_reference.json").read_text())
RTOL = 1e-9


def _arr(x):
    return np.array([np.nan if v is None else v for v in x], dtype=float)


def _case_id(c):
    return f"{c['name']}-{c['measure']}-{c['vtype']}-to={c['to']}-drop00={c['drop00']}-add={c['add']}"


def _compute(c):
    args = {k: _arr(v) for k, v in c["args"].items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EffectSizeWarning)
        return effect_sizes(
            c["measure"], **args, add=c["add"], to=c["to"], drop00=c["drop00"], vtype=c["vtype"]
        )


def assert_close(got, want, rtol=RTOL, atol=0.0, what=""):
    got = np.asarray(got, dtype=float)
    want = _arr(want) if isinstance(want, list) else np.asarray(want, dtype=float)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    # NaN where R has NA/NaN, same infinities
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN pattern")
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


@pytest.mark.parametrize("case", REF["escalc"], ids=_case_id)
def test_escalc_reference(case):
    es = _compute(case)
    assert_close(es.yi, case["yi"], atol=1e-15, what="yi")
    assert_close(es.vi, case["vi"], what="vi")


def test_reference_max_relative_difference():
    """Overall agreement; documents the observed precision.

    Observed max 1.06e-12, for SMD vtype="UB" vi where 1 - (m-2)/(m c(m)^2)
    cancels (c(m) ~ 1) and amplifies the last-bit difference between R's
    lgamma and scipy's gammaln; everything else agrees to < 2e-14.
    """
    worst = 0.0
    for c in REF["escalc"]:
        es = _compute(c)
        for got, want in ((es.yi, _arr(c["yi"])), (es.vi, _arr(c["vi"]))):
            ok = np.isfinite(want) & (want != 0)
            if ok.any():
                worst = max(worst, float(np.max(np.abs(got[ok] - want[ok]) / np.abs(want[ok]))))
    assert worst < 1e-11, worst


def test_reference_covers_all_measures():
    assert {c["measure"] for c in REF["escalc"]} == set(MEASURES)


# --------------------------------------------------------------------------- object
def test_effectsizes_object():
    es = effect_sizes("OR", events_treat=[4, 6, 0], n_treat=[123, 306, 20], events_ctrl=[11, 29, 0],
                      n_ctrl=[139, 303, 20], labels=["a", "b", "c"])
    assert isinstance(es, EffectSizes) and es.is_ratio and es.k == 3
    np.testing.assert_array_equal(es.ai, [4, 6, 0])
    np.testing.assert_array_equal(es.bi, [119, 300, 20])
    np.testing.assert_array_equal(es.di, [128, 274, 20])
    assert es.x1i is None
    with pytest.raises(ValueError):
        es.yi[0] = 1.0  # read-only
    with pytest.raises(Exception):
        es.measure = "RR"  # frozen
    df = es.to_frame()
    assert list(df.columns[:3]) == ["label", "yi", "vi"] and {"ai", "bi", "ci", "di"} <= set(df.columns)
    d = es.to_dict()
    assert d["measure"] == "OR" and d["labels"] == ["a", "b", "c"] and len(d["yi"]) == 3
    json.dumps(d)
    s = es.summary()
    assert "OR" in s and "b" in s
    assert not effect_sizes("RD", events_treat=1, n_treat=2, events_ctrl=1, n_ctrl=3).is_ratio
    for m in ("RR", "OR", "PETO", "IRR", "ROM"):
        assert EffectSizes(m, np.zeros(1), np.ones(1)).is_ratio


def test_scalar_series_and_batch():
    s = pd.Series([3, 5], index=["x", "y"])
    es = effect_sizes("RR", events_treat=s, n_treat=[10, 12], events_ctrl=np.array([4, 6]), n_ctrl=(11, 13))
    assert es.yi.shape == (2,)
    na = pd.Series([3, pd.NA], dtype="Int64")
    es_na = effect_sizes("RR", events_treat=na, n_treat=pd.Series([10, None], dtype="Float64"),
                         events_ctrl=[4, np.nan], n_ctrl=[11, np.nan])
    assert np.isfinite(es_na.yi[0]) and np.isnan(es_na.yi[1])
    with pytest.raises(ValueError, match="events_treat must be numeric"):
        effect_sizes("RR", events_treat=pd.Series(["a"]), n_treat=[1], events_ctrl=[1], n_ctrl=[1])
    one = effect_sizes("RR", events_treat=3, n_treat=10, events_ctrl=4, n_ctrl=11)
    assert one.yi.shape == (1,)
    assert one.yi[0] == pytest.approx(es.yi[0], rel=1e-15)
    # batch with a missing study in the second analysis
    et = np.array([[3, 5, 0], [2, np.nan, 7]])
    nt = np.array([[10, 12, 9], [10, np.nan, 20]])
    ec = np.array([[4, 6, 1], [3, np.nan, 0]])
    nc = np.array([[11, 13, 9], [10, np.nan, 21]])
    b = effect_sizes("OR", events_treat=et, n_treat=nt, events_ctrl=ec, n_ctrl=nc, labels=["p", "q", "r"])
    assert b.yi.shape == (2, 3)
    assert np.isnan(b.yi[1, 1]) and np.isnan(b.vi[1, 1])
    for i in range(2):
        keep = ~np.isnan(nt[i])
        row = effect_sizes("OR", events_treat=et[i][keep], n_treat=nt[i][keep], events_ctrl=ec[i][keep],
                           n_ctrl=nc[i][keep])
        np.testing.assert_array_equal(b.yi[i][keep], row.yi)
        np.testing.assert_array_equal(b.vi[i][keep], row.vi)
    df = b.to_frame()
    assert list(df.columns[:2]) == ["analysis", "label"] and len(df) == 6


def test_if0all_is_per_analysis():
    et = np.array([[0, 5], [3, 5]])
    nt = np.array([[10, 12], [10, 12]])
    ec = np.array([[2, 6], [2, 6]])
    nc = np.array([[11, 13], [11, 13]])
    b = effect_sizes("OR", events_treat=et, n_treat=nt, events_ctrl=ec, n_ctrl=nc, to="if0all")
    # first analysis: study 2 corrected too; second analysis: nothing corrected
    assert b.yi[0, 1] == pytest.approx(math.log(5.5 * 7.5 / (7.5 * 6.5)))
    assert b.yi[1, 1] == pytest.approx(math.log(5 * 7 / (7 * 6)))


def test_drop00_warns_and_names_study():
    with pytest.warns(EffectSizeWarning, match="'s2'"):
        es = effect_sizes("RR", events_treat=[3, 0], n_treat=[10, 8], events_ctrl=[2, 0], n_ctrl=[10, 9],
                          labels=["s1", "s2"], drop00=True)
    assert np.isnan(es.yi[1]) and np.isfinite(es.yi[0])
    assert es.ai[1] == 0  # raw cells kept


def test_to_none_nonfinite_warns():
    with pytest.warns(EffectSizeWarning, match="index 0"):
        effect_sizes("OR", events_treat=[0], n_treat=[10], events_ctrl=[2], n_ctrl=[10], to="none")


def test_add_default_zero_for_arcsine():
    es = effect_sizes("AS", events_treat=[0], n_treat=[10], events_ctrl=[2], n_ctrl=[10])
    assert es.add == 0.0
    assert es.yi[0] == pytest.approx(-math.asin(math.sqrt(0.2)))


def test_smd_bias_correction_exact():
    # Hedges' c(m) = Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2)); for m = 10
    m = 10
    c = math.gamma(m / 2) / (math.sqrt(m / 2) * math.gamma((m - 1) / 2))
    es = effect_sizes("SMD", mean_treat=1.0, sd_treat=1.0, n_treat=6, mean_ctrl=0.0, sd_ctrl=1.0, n_ctrl=6)
    assert es.yi[0] == pytest.approx(c, rel=1e-14)
    assert es.vi[0] == pytest.approx(1 / 6 + 1 / 6 + c**2 / 24, rel=1e-14)


# --------------------------------------------------------------------------- errors
BIN = dict(events_treat=[5, 25], n_treat=[20, 20], events_ctrl=[3, 4], n_ctrl=[20, 20])


@pytest.mark.parametrize(
    "measure, kwargs, pattern",
    [
        ("RR", BIN, r"events_treat > n_treat for study 'bao2008' \(index 1\): 25 > 20"),
        ("OR", {**BIN, "events_treat": [-1, 2]}, r"events_treat is negative for study 'chen2002' \(index 0\)"),
        ("OR", {**BIN, "events_treat": [1, 2], "n_ctrl": [20, 0]}, r"n_ctrl must be > 0 for study 'bao2008'"),
        ("OR", {**BIN, "events_treat": [1, 2], "n_ctrl": [20, np.nan]},
         r"n_ctrl is missing \(NaN\) for study 'bao2008' \(index 1\)"),
        ("OR", {**BIN, "events_treat": [1, 2, 3]}, r"events_treat has length 3 but n_treat has length 2"),
        ("OR", {**BIN, "events_treat": ["a", "b"]}, r"events_treat must be numeric"),
        ("OR", {"events_treat": [1, 2], "n_treat": [5, 5], "events_ctrl": [1, 1]}, r"requires field 'n_ctrl'"),
        ("XX", BIN, r"unknown measure 'XX'; valid measures: RR, OR"),
        ("OR", {**BIN, "events_treat": [1, 2], "time": [1, 2]}, r"time not used by measure OR"),
        ("MD", dict(mean_treat=[1, 2], sd_treat=[1, 0], n_treat=[5, 5], mean_ctrl=[1, 1], sd_ctrl=[1, 1],
                    n_ctrl=[5, 5]), r"sd_treat must be > 0 for study 'bao2008' \(index 1\): 0"),
        ("SMD", dict(mean_treat=[1, 2], sd_treat=[1, 1], n_treat=[5, 5], mean_ctrl=[1, 1], sd_ctrl=[-1, 1],
                     n_ctrl=[5, 5]), r"sd_ctrl must be > 0 for study 'chen2002'"),
        ("SMD", dict(mean_treat=[1, 2], sd_treat=[1, 1], n_treat=[5, 2], mean_ctrl=[1, 1], sd_ctrl=[1, 1],
                     n_ctrl=[5, 1]), r"n_treat \+ n_ctrl must be > 3 .* 'bao2008'"),
        ("ROM", dict(mean_treat=[1, -2], sd_treat=[1, 1], n_treat=[5, 5], mean_ctrl=[1, 1], sd_ctrl=[1, 1],
                     n_ctrl=[5, 5]), r"mean_treat / mean_ctrl must be > 0 .* 'bao2008'"),
        ("PR", dict(events=[3, 7], n=[5, 6]), r"events > n for study 'bao2008' \(index 1\): 7 > 6"),
        ("PLO", dict(events=[3, 1], n=[0, 6]), r"n must be > 0 for study 'chen2002'"),
        ("IR", dict(events=[3, 1], time=[10, 0]), r"time must be > 0 for study 'bao2008'"),
        ("IRR", dict(events_treat=[3, 1], time_treat=[10, 5], events_ctrl=[-2, 1], time_ctrl=[4, 4]),
         r"events_ctrl is negative for study 'chen2002'"),
        ("IRR", dict(events_treat=[3, 1], time_treat=[10, -5], events_ctrl=[2, 1], time_ctrl=[4, 4]),
         r"time_treat must be > 0 for study 'bao2008'"),
    ],
)
def test_errors_name_field_and_study(measure, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        effect_sizes(measure, **kwargs, labels=["chen2002", "bao2008"][: len(next(iter(kwargs.values())))])


def test_error_without_labels_and_in_batch():
    with pytest.raises(ValueError, match=r"events_ctrl > n_ctrl for study at analysis 1, index 0: 9 > 8"):
        effect_sizes("OR", events_treat=[[1], [1]], n_treat=[[5], [5]], events_ctrl=[[2], [9]], n_ctrl=[[8], [8]])
    with pytest.raises(ValueError, match="unknown to"):
        effect_sizes("OR", **BIN, to="sometimes")
    with pytest.raises(ValueError, match="vtype"):
        effect_sizes("OR", events_treat=[1], n_treat=[2], events_ctrl=[1], n_ctrl=[2], vtype="HO")
    with pytest.raises(ValueError, match="labels has length 1"):
        effect_sizes("OR", events_treat=[1, 1], n_treat=[2, 2], events_ctrl=[1, 1], n_ctrl=[2, 2], labels=["x"])


# --------------------------------------------------------------------------- properties
@st.composite
def tables(draw, k_max=8):
    k = draw(st.integers(1, k_max))
    n1 = draw(st.lists(st.integers(1, 60), min_size=k, max_size=k))
    n2 = draw(st.lists(st.integers(1, 60), min_size=k, max_size=k))
    e1 = [draw(st.integers(0, n)) for n in n1]
    e2 = [draw(st.integers(0, n)) for n in n2]
    return np.array(e1, float), np.array(n1, float), np.array(e2, float), np.array(n2, float)


@settings(max_examples=60, deadline=None)
@given(tables(), st.sampled_from(["RR", "OR", "RD", "PETO", "AS"]), st.sampled_from(["only0", "all", "if0all"]))
def test_binary_finite_for_any_valid_counts(t, measure, to):
    e1, n1, e2, n2 = t
    with warnings.catch_warnings():
        warnings.simplefilter("error", EffectSizeWarning)
        es = effect_sizes(measure, events_treat=e1, n_treat=n1, events_ctrl=e2, n_ctrl=n2, to=to)
    assert np.all(np.isfinite(es.yi)) and np.all(np.isfinite(es.vi)) and np.all(es.vi > 0)


@settings(max_examples=60, deadline=None)
@given(tables(), st.sampled_from(["OR", "RD", "PETO", "AS"]))
def test_swapping_arms_negates(t, measure):
    e1, n1, e2, n2 = t
    a = effect_sizes(measure, events_treat=e1, n_treat=n1, events_ctrl=e2, n_ctrl=n2)
    b = effect_sizes(measure, events_treat=e2, n_treat=n2, events_ctrl=e1, n_ctrl=n1)
    np.testing.assert_allclose(a.yi, -b.yi, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.vi, b.vi, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.floats(0, 1)), min_size=1, max_size=8),
       st.sampled_from(["PR", "PLO", "PAS", "PFT"]))
def test_proportions_finite(rows, measure):
    n = np.array([r[0] for r in rows], float)
    x = np.floor(n * np.array([r[1] for r in rows]))
    es = effect_sizes(measure, events=x, n=n)
    assert np.all(np.isfinite(es.yi)) and np.all(es.vi > 0)


# ----------------------------------------------------------------------- correlations, change scores, rates
@pytest.mark.parametrize("measure, kw, pattern", [
    ("COR", dict(cor=[0.2, 1.2], n=[20, 30]), r"cor must be in \[-1, 1\] for study at index 1: 1.2"),
    ("ZCOR", dict(cor=[0.2, 0.3], n=[20, 0]), r"n must be > 0 for study at index 1"),
    ("ZCOR", dict(cor=[0.2, 0.3], n=[20, 30], n_treat=[1, 2]), r"field\(s\) n_treat not used by measure ZCOR"),
    ("SMCC", dict(mean_time1=[5.0], mean_time2=[4.0], sd_time1=[1.0], sd_time2=[1.2], n=[2], cor=[0.5]),
     r"n must be > 2 for SMCC"),
    ("SMCC", dict(mean_time1=[5.0], mean_time2=[4.0], sd_time1=[1.0], sd_time2=[-1.0], n=[20], cor=[0.5]),
     r"sd_time2 must be > 0"),
    ("SMCR", dict(mean_time1=[5.0], mean_time2=[4.0], sd_time1=[1.0], n=[20], cor=[-1.5]), r"cor must be in"),
    ("SMCR", dict(mean_time1=[5.0], mean_time2=[4.0], sd_time1=[1.0], n=[20]), r"requires field 'cor'"),
    ("IRD", dict(events_treat=[1], time_treat=[0.0], events_ctrl=[2], time_ctrl=[5.0]), r"time_treat must be > 0"),
    ("IRLN", dict(events=[-1], time=[5.0]), r"events is negative"),
])
def test_new_measure_errors(measure, kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        effect_sizes(measure, **kw)


def test_correlation_small_n_keeps_r_and_warns():
    with pytest.warns(EffectSizeWarning, match="n <= 3"):
        es = effect_sizes("ZCOR", cor=[0.3, 0.5], n=[3, 50])
    assert np.isfinite(es.yi[0]) and np.isnan(es.vi[0]) and es.vi[1] == pytest.approx(1 / 47)
    from lnsynth.pairwise import meta_analysis

    with pytest.raises(ValueError, match="vi is NaN at study index 0"):
        meta_analysis(es)


def test_new_measures_registry_and_back_transforms():
    from lnsynth import registry

    assert registry.back_transform("ZCOR")(np.arctanh(0.4)) == pytest.approx(0.4)
    assert registry.back_transform("IRLN")(np.log(0.02)) == pytest.approx(0.02)
    assert not registry.is_ratio("IRLN") and not registry.is_ratio("IRD")
    assert set(registry.measures_for("correlation")) == {"COR", "ZCOR"}
    assert set(registry.measures_for("change")) == {"SMCC", "SMCR"}
    assert registry.required_fields("SMCR") == ("mean_time1", "mean_time2", "sd_time1", "n", "cor")
    # batch = loop for a change-score measure with a missing study
    m1 = np.array([[5.0, 6.0, np.nan], [4.0, 7.5, 6.1]])
    kw = dict(mean_time2=m1 - 1.0, sd_time1=np.ones_like(m1), sd_time2=np.full_like(m1, 1.5),
              n=np.full_like(m1, 20.0), cor=np.full_like(m1, 0.4))
    kw["mean_time2"][0, 2] = kw["sd_time1"][0, 2] = kw["sd_time2"][0, 2] = kw["n"][0, 2] = kw["cor"][0, 2] = np.nan
    es = effect_sizes("SMCC", mean_time1=m1, **kw)
    one = effect_sizes("SMCC", mean_time1=m1[1], **{k: v[1] for k, v in kw.items()})
    np.testing.assert_allclose(es.yi[1], one.yi, rtol=1e-15)
    assert np.isnan(es.yi[0, 2]) and np.isnan(es.vi[0, 2])


@needs_r
def test_new_measures_live_against_rscript():
    """Fresh random data each run: COR, ZCOR, SMCC, SMCR, IRD, IRLN against escalc."""
    import subprocess

    rng = np.random.default_rng()
    k = 6
    r = np.round(rng.uniform(-0.9, 0.9, k), 3)
    n = rng.integers(4, 80, k).astype(float)
    m1, m2 = np.round(rng.normal(10, 2, k), 2), np.round(rng.normal(9, 2, k), 2)
    s1, s2 = np.round(rng.uniform(1, 4, k), 2), np.round(rng.uniform(1, 4, k), 2)
    x1, x2 = rng.poisson(3, k).astype(float), rng.poisson(4, k).astype(float)
    t1, t2 = np.round(rng.uniform(20, 200, k), 1), np.round(rng.uniform(20, 200, k), 1)
    vec = lambda a: "c(" + ",".join(f"{float(t):.17g}" for t in a) + ")"  # noqa: E731
    code = f"""suppressMessages(library(metafor)); r <- {vec(r)}; n <- {vec(n)}; m1 <- {vec(m1)}; m2 <- {vec(m2)}
    s1 <- {vec(s1)}; s2 <- {vec(s2)}; x1 <- {vec(x1)}; x2 <- {vec(x2)}; t1 <- {vec(t1)}; t2 <- {vec(t2)}
    e <- list(escalc("COR", ri = r, ni = n), escalc("ZCOR", ri = r, ni = n),
              escalc("SMCC", m1i = m1, m2i = m2, sd1i = s1, sd2i = s2, ni = n, ri = r),
              escalc("SMCR", m1i = m1, m2i = m2, sd1i = s1, ni = n, ri = r),
              escalc("IRD", x1i = x1, t1i = t1, x2i = x2, t2i = t2), escalc("IRLN", xi = x1, ti = t1))
    for (z in e) cat(sprintf("%.17g", c(z$yi, z$vi)), sep = "\\n")"""
    out = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, timeout=300, check=True).stdout
    want = np.array([float(t) for t in out.split()]).reshape(6, 2, k)
    got = [effect_sizes("COR", cor=r, n=n), effect_sizes("ZCOR", cor=r, n=n),
           effect_sizes("SMCC", mean_time1=m1, mean_time2=m2, sd_time1=s1, sd_time2=s2, n=n, cor=r),
           effect_sizes("SMCR", mean_time1=m1, mean_time2=m2, sd_time1=s1, n=n, cor=r),
           effect_sizes("IRD", events_treat=x1, time_treat=t1, events_ctrl=x2, time_ctrl=t2),
           effect_sizes("IRLN", events=x1, time=t1)]
    for es, w in zip(got, want):
        np.testing.assert_allclose(es.yi, w[0], rtol=1e-12, atol=1e-15, err_msg=es.measure)
        np.testing.assert_allclose(es.vi, w[1], rtol=1e-11, err_msg=es.measure)
