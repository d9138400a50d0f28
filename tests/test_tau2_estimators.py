"""Further tau² estimators (lnsynth.pairwise.tau2: HS, HSk, GENQ) against metafor's rma.uni.

Reference values: tests/reference/tau2_estimators_reference.json, written by
tests/reference/make_tau2_estimators.R (metafor 3.8-1): dat.bcg (log risk ratios; intercept-only and with
ablat; GENQ with the total sample sizes and with unit weights) and simulated data sets stored in the JSON.
The estimators are closed form; tolerance 1e-6 (relative above 1 in size, absolute below).
"""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from lnsynth import registry
from lnsynth.pairwise import tau2 as t2

from conftest import REFERENCE_DIR, REPO, needs_r

REF = json.loads((REFERENCE_DIR / "tau2_estimators_reference.json").read_text())
CASES = REF["cases"]


def _close(a, b, tol=1e-6):
    a = np.atleast_1d(np.asarray(a, dtype=float))
    b = np.atleast_1d(np.asarray(b, dtype=float))
    assert a.shape == b.shape
    assert np.all(np.abs(a - b) <= tol * np.maximum(1.0, np.abs(b))), (a, b)


def _check(case):
    x = case["x"]
    res = t2.meta_analysis_tau2(case["yi"], case["vi"], case["method"], weights=case["weights"],
                                moderators=None if x is None else {"x": x})
    assert res.method == case["method"]
    _close(res.tau2, case["tau2"])
    _close(res.se_tau2, case["se_tau2"])
    if x is None:
        _close(res.estimate, case["beta"])
        for ours, key in (("se", "se"), ("zval", "zval"), ("pvalue", "pval"), ("ci_low", "ci_low"),
                          ("ci_high", "ci_high"), ("q", "QE"), ("q_pvalue", "QEp"), ("i2", "I2"), ("h2", "H2"),
                          ("pi_low", "pi_low"), ("pi_high", "pi_high")):
            _close(getattr(res, ours), case[key])
    else:
        _close(res.coefficients, case["beta"])
        for ours, key in (("se", "se"), ("zval", "zval"), ("pvalue", "pval"), ("ci_low", "ci_low"),
                          ("ci_high", "ci_high"), ("qe", "QE"), ("qe_pvalue", "QEp"), ("i2", "I2"), ("h2", "H2"),
                          ("qm", "QM"), ("qm_pvalue", "QMp")):
            _close(getattr(res, ours), case[key])
        if case["R2"] is not None:
            _close(res.r2, case["R2"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_against_metafor(case):
    _check(case)


def test_registry_entries_and_dispatch():
    assert registry.tau2_estimators() == ("HS", "HSk", "GENQ")
    assert registry.tau2_estimator("hsk").code == "HSk"
    assert set(t2._KERNELS) == {c.upper() for c in registry.tau2_estimators()}
    # the meta_analysis method list is unchanged
    assert not set(registry.tau2_estimators()) & set(registry.methods())
    with pytest.raises(ValueError, match="unknown tau\\^2 estimator"):
        t2.estimate_tau2([0.1, 0.2, 0.3], [0.1, 0.1, 0.1], "XX")


def test_batch_equals_single_fits():
    cases = [c for c in CASES if c["x"] is None and c["name"].startswith("sim")]
    k = max(len(c["yi"]) for c in cases)
    for method in ("HS", "HSk"):
        sub = [c for c in cases if c["method"] == method]
        Y = np.full((len(sub), k), np.nan)
        V = np.full((len(sub), k), np.nan)
        for i, c in enumerate(sub):
            Y[i, : len(c["yi"])] = c["yi"]
            V[i, : len(c["vi"])] = c["vi"]
        res = t2.meta_analysis_tau2(Y, V, method)
        _close(res.tau2, [c["tau2"] for c in sub])
        _close(res.estimate, [c["beta"] for c in sub])
        _close(res.se_tau2, [c["se_tau2"] for c in sub])


def test_errors():
    with pytest.raises(ValueError, match="weights: method GENQ needs weights"):
        t2.estimate_tau2([0.1, 0.2, 0.3], [0.1, 0.1, 0.1], "GENQ")
    with pytest.raises(ValueError, match="weights must be finite and > 0"):
        t2.estimate_tau2([0.1, 0.2, 0.3], [0.1, 0.1, 0.1], "GENQ", weights=[1, 0, 1])
    with pytest.raises(ValueError, match="k = 1"):
        t2.estimate_tau2([0.1], [0.1], "HS")


@needs_r
def test_reference_script_runs(tmp_path):
    out = tmp_path / "ref.json"
    subprocess.run(["Rscript", str(REPO / "tests/reference/make_tau2_estimators.R"), str(out), "7"], check=True,
                   capture_output=True, timeout=300)
    for case in json.loads(out.read_text())["cases"]:
        _check(case)
