"""Location-scale models (lnsynth.pairwise.location_scale) against metafor's rma(..., scale = ~ z).

Reference values: tests/reference/location_scale_reference.json, written by
tests/reference/make_location_scale.R (metafor 3.8-1; BFGS with reltol 1e-15; the Hessian by pracma, since
metafor's default numDeriv Hessian is off by up to 3e-4 in se(alpha) on dat.bcg with scale ~ ablat, where
pracma's and lnsynth's analytic one agree to 1e-7): dat.bcg (scale ~ ablat; location ~ ablat with scale ~ year)
and three simulated data sets, ML and REML.  Tolerance 1e-6, relative above 1 in size and absolute below,
except 2e-6 for what rests on metafor's numerical Hessian (se, z, p, CI of alpha; QS): the largest such
difference is 1.2e-6 (CI of alpha, dat.bcg, ML), where lnsynth's log-likelihood is not below metafor's and its
analytic Hessian matches central differences; the log-likelihood (metafor's logLik, constants included) to 1e-9.
"""
from __future__ import annotations

import json
import subprocess
import warnings

import numpy as np
import pytest

from lnsynth.pairwise import meta_analysis, meta_regression
from lnsynth.pairwise.location_scale import LocationScaleResult, location_scale

from conftest import REFERENCE_DIR, REPO, needs_r

REF = json.loads((REFERENCE_DIR / "location_scale_reference.json").read_text())
CASES = REF["cases"]
FIELDS = [("coefficients", "beta"), ("se", "se"), ("zval", "zval"), ("pvalue", "pval"), ("ci_low", "ci_low"),
          ("ci_high", "ci_high"), ("alpha", "alpha"), ("se_alpha", "se_alpha"), ("zval_alpha", "zval_alpha"),
          ("pvalue_alpha", "pval_alpha"), ("ci_low_alpha", "ci_low_alpha"), ("ci_high_alpha", "ci_high_alpha"),
          ("tau2", "tau2"), ("qs", "QS"), ("qs_pvalue", "QSp")]
HESSIAN_BASED = {"se_alpha", "zval_alpha", "pval_alpha", "ci_low_alpha", "ci_high_alpha", "QS", "QSp"}


def _close(a, b, tol=1e-6):
    a = np.atleast_1d(np.asarray(a, dtype=float))
    b = np.atleast_1d(np.asarray(b, dtype=float))
    assert a.shape == b.shape
    assert np.all(np.abs(a - b) <= tol * np.maximum(1.0, np.abs(b))), (a, b)


def _check(c):
    res = location_scale(c["yi"], c["vi"], mods=c["x"], scale=c["z"], method=c["method"])
    assert res.converged
    for ours, key in FIELDS:
        # quantities built on metafor's numerical (pracma) Hessian: 2e-6 (see the module docstring)
        _close(getattr(res, ours), c[key], 2e-6 if key in HESSIAN_BASED else 1e-6)
    if c["x"] is not None:
        _close(res.qm, c["QM"])
        _close(res.qm_pvalue, c["QMp"])
    assert res.loglik == pytest.approx(c["loglik"], abs=1e-9)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_against_metafor(case):
    _check(case)


def test_constant_scale_is_the_random_effects_model():
    c = CASES[0]
    for method in ("REML", "ML"):
        ls = location_scale(c["yi"], c["vi"], method=method)
        re = meta_analysis(yi=c["yi"], vi=c["vi"], method=method)
        assert ls.tau2[0] == pytest.approx(re.tau2, rel=1e-8)
        assert ls.estimate == pytest.approx(re.estimate, rel=1e-8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mr = meta_regression(c["yi"], c["vi"], {"x": np.arange(13.0)}, method=method)
        lsx = location_scale(c["yi"], c["vi"], mods={"x": np.arange(13.0)}, method=method)
        _close(lsx.coefficients, mr.coefficients, 1e-8)
        assert lsx.tau2[0] == pytest.approx(mr.tau2, rel=1e-7)


def test_result_protocol_and_errors():
    c = CASES[-1]
    res = location_scale(c["yi"], c["vi"], mods=c["x"], scale=c["z"], method=c["method"])
    assert isinstance(res, LocationScaleResult)
    ci = res.conf_int()
    _close(ci["alpha"][0], c["ci_low_alpha"])
    lo90, hi90 = res.conf_int(0.9)["beta"]
    assert np.all(ci["beta"][0] < lo90) and np.all(hi90 < ci["beta"][1])
    frame = res.to_frame()
    assert list(frame["part"]) == ["location", "location", "scale", "scale"]
    assert res.to_dict()["method"] == c["method"] and "QS" in res.summary()
    with pytest.raises(ValueError, match="REML' or 'ML'"):
        location_scale(c["yi"], c["vi"], method="DL")
    with pytest.raises(ValueError, match="length mismatch"):
        location_scale(c["yi"], c["vi"], scale=[1.0, 2.0])
    with pytest.raises(ValueError, match="vi > 0"):
        location_scale([0.1, 0.2, 0.3, 0.4], [0.1, 0.0, 0.1, 0.1])


@needs_r
def test_reference_script_runs(tmp_path):
    out = tmp_path / "ref.json"
    subprocess.run(["Rscript", str(REPO / "tests/reference/make_location_scale.R"), str(out), "5"], check=True,
                   capture_output=True, timeout=300)
    for c in json.loads(out.read_text())["cases"]:
        _check(c)
