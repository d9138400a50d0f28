"""Bayesian binomial-logit NMA (lnsynth.network.bayes): data checks, reproducibility, agreement with the
exact-likelihood frequentist fit, ranking.  Published posteriors: tests/test_published_tsd4_*.py.

MCMC runs here are short (2 chains x 500-1000 draws) and tolerances are derived from the Monte Carlo
standard errors that ArviZ reports for the same run.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import pytest

from lnsynth.network.bayes import prepare_arms

os.environ.setdefault("LNSYNTH_JAX_CACHE_DIR", os.path.join(tempfile.gettempdir(), "lnsynth-jax-cache"))


def _arms():
    return pd.DataFrame({
        "study": ["s1", "s1", "s2", "s2", "s3", "s3", "s4", "s4", "s4", "s5", "s5"],
        "trt": ["A", "B", "A", "C", "B", "C", "A", "B", "C", "A", "B"],
        "r": [30, 45, 28, 50, 40, 38, 20, 30, 33, 15, 22],
        "n": [200, 210, 180, 190, 220, 215, 150, 150, 155, 120, 118],
    })


def test_import_does_not_load_jax():
    code = "import lnsynth, lnsynth.network, lnsynth.network.bayes, sys; print('jax' in sys.modules, 'numpyro' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_prepare_orders_baseline_and_pads():
    net = prepare_arms(_arms(), study="study", treatment="trt", events="r", n="n", reference="A")
    assert net.treatments == ("A", "B", "C") and net.reference == "A"
    assert net.trt.shape == (5, 3) and net.narms.tolist() == [2, 2, 2, 3, 2]
    assert net.trt[2, :2].tolist() == [1, 2]  # study s3: B (baseline) then C
    assert not net.mask[0, 2]


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.drop(index=1), r"study 's1' .* single arm"),
    (lambda d: d.assign(trt=d["trt"].where(d.index != 1, "A")), r"study 's1' has more than one arm with treatment 'A'"),
    (lambda d: d.assign(r=d["r"].where(d.index != 3, 500)), r"row 3 \(study 's2'\): 'r' \(500\) exceeds 'n'"),
    (lambda d: d.assign(r=d["r"].where(d.index != 2, -1)), r"row 2 .*non-negative whole number"),
    (lambda d: d.assign(n=d["n"].astype(float).where(d.index != 0, np.nan)), r"row 0 .*'n'"),
    (lambda d: pd.concat([d, pd.DataFrame({"study": ["s9", "s9"], "trt": ["X", "Y"], "r": [1, 2], "n": [10, 10]})]),
     r"disconnected"),
])
def test_bad_data_is_a_clear_error(mutate, match):
    with pytest.raises(ValueError, match=match):
        prepare_arms(mutate(_arms()), study="study", treatment="trt", events="r", n="n")


def test_bad_columns_and_reference():
    with pytest.raises(ValueError, match="column 'events'"):
        prepare_arms(_arms(), study="study", treatment="trt", events="events", n="n")
    with pytest.raises(ValueError, match="unknown reference treatment 'Z'"):
        prepare_arms(_arms(), study="study", treatment="trt", events="r", n="n", reference="Z")


# --- fits (need the bayes extra) ----------------------------------------------------------------------
from lnsynth.network.bayes import bayesian_nma  # noqa: E402
from lnsynth.pairwise.glmm import glmm_meta_analysis  # noqa: E402

_HAS_BAYES = all(importlib.util.find_spec(m) is not None for m in ("numpyro", "jax", "arviz"))
needs_bayes = pytest.mark.skipif(not _HAS_BAYES, reason="the 'bayes' extra (numpyro, jax, arviz) is not installed")


@pytest.fixture(scope="module")
def fe_fit():
    return bayesian_nma(_arms(), study="study", treatment="trt", events="r", n="n", reference="A",
                        effects="fixed", chains=2, warmup=500, samples=1000, seed=11)


@needs_bayes
def test_bad_settings():
    with pytest.raises(ValueError, match="effects"):
        bayesian_nma(_arms(), study="study", treatment="trt", events="r", n="n", effects="mixed")
    with pytest.raises(ValueError, match="chains"):
        bayesian_nma(_arms(), study="study", treatment="trt", events="r", n="n", chains=0)


@needs_bayes
def test_seeded_and_reproducible(fe_fit):
    again = bayesian_nma(_arms(), study="study", treatment="trt", events="r", n="n", reference="A",
                         effects="fixed", chains=2, warmup=500, samples=1000, seed=11)
    np.testing.assert_array_equal(fe_fit.d, again.d)
    other = bayesian_nma(_arms(), study="study", treatment="trt", events="r", n="n", reference="A",
                         effects="fixed", chains=2, warmup=500, samples=1000, seed=12)
    assert not np.array_equal(fe_fit.d, other.d)


@needs_bayes
def test_fixed_effect_pairwise_agrees_with_the_exact_likelihood_mle():
    # two treatments: the FE model is the logistic model with study intercepts (UM.FS, EE); with N(0, 100^2)
    # priors the posterior mean and sd match the MLE and its SE up to MC error and O(1/n) skewness
    d = pd.DataFrame({"study": np.repeat(["a", "b", "c", "d"], 2), "trt": ["C", "T"] * 4,
                      "r": [30, 45, 28, 50, 40, 52, 20, 30], "n": [200, 210, 180, 190, 220, 215, 150, 150]})
    fit = bayesian_nma(d, study="study", treatment="trt", events="r", n="n", reference="C", effects="fixed",
                       chains=2, warmup=500, samples=1000, seed=3)
    ctrl, trt = d[d.trt == "C"], d[d.trt == "T"]
    mle = glmm_meta_analysis(trt.r.to_numpy(), trt.n.to_numpy(), ctrl.r.to_numpy(), ctrl.n.to_numpy(), method="EE")
    s = fit.contrast("C", "T")
    assert abs(s["mean"] - mle.estimate) <= 4 * s["mcse_mean"] + 0.02 * mle.se
    assert abs(s["sd"] - mle.se) <= 4 * s["mcse_sd"] + 0.03 * mle.se


@needs_bayes
def test_result_protocol(fe_fit):
    assert fe_fit.tau is None and fe_fit.effects == "fixed"
    re = fe_fit.relative_effects()
    assert list(re["trt"]) == ["B", "C"] and {"mean", "sd", "lower", "upper", "rhat", "ess_bulk", "ess_tail"} <= set(re)
    allc = fe_fit.relative_effects(all_contrasts=True)
    assert len(allc) == 3
    bc = fe_fit.contrast("B", "C")
    cb = fe_fit.contrast("C", "B")
    assert bc["mean"] == pytest.approx(-cb["mean"]) and bc["sd"] == pytest.approx(cb["sd"])
    # consistency: d_BC = d_AC - d_AB draw by draw
    assert bc["mean"] == pytest.approx(fe_fit.contrast("A", "C")["mean"] - fe_fit.contrast("A", "B")["mean"])
    ci = fe_fit.conf_int(0.9)
    assert set(ci) == {"B", "C"} and ci["B"][0] < ci["B"][1]
    d = fe_fit.to_dict()
    assert d["divergences"] == 0 and d["max_rhat"] < 1.05 and d["min_ess_bulk"] > 100
    assert "Fixed-effect" in fe_fit.summary() and "R-hat" in fe_fit.summary()
    with pytest.raises(ValueError, match="random-effects"):
        fe_fit.tau_summary()
    with pytest.raises(ValueError, match="unknown treatment"):
        fe_fit.contrast("A", "Z")


@needs_bayes
def test_rank_probabilities(fe_fit):
    p = fe_fit.rank_probabilities(larger_is_better=True)
    np.testing.assert_allclose(p.to_numpy().sum(axis=0), 1.0)
    np.testing.assert_allclose(p.to_numpy().sum(axis=1), 1.0)
    q = fe_fit.rank_probabilities(larger_is_better=False)
    np.testing.assert_allclose(q.to_numpy(), p.to_numpy()[:, ::-1])
    s = fe_fit.sucra()
    assert all(0 <= v <= 1 for v in s.values())
    # SUCRA equals the mean of (T - rank) / (T - 1)
    T = 3
    expected = {t: float(((T - (np.arange(1, T + 1))) / (T - 1) * p.loc[t].to_numpy()).sum()) for t in p.index}
    assert s == pytest.approx(expected)


@needs_bayes
def test_random_effects_diagnostics_reported():
    fit = bayesian_nma(_arms(), study="study", treatment="trt", events="r", n="n", reference="A",
                       effects="random", chains=2, warmup=500, samples=500, seed=5, prior_tau_max=2.0)
    assert fit.tau.shape == (2, 500) and (fit.tau > 0).all() and (fit.tau < 2.0).all()
    dg = fit.diagnostics
    assert {"r_hat", "ess_bulk", "ess_tail"} <= set(dg.columns)
    assert {"d[B]", "d[C]", "tau"} <= set(dg.index)
    assert isinstance(fit.divergences, int)
    t = fit.tau_summary()
    assert t["lower"] < t["median"] < t["upper"]
