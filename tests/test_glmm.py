"""Binomial-likelihood meta-analysis (lnsynth.pairwise.glmm) against metafor's rma.glmm.

Reference values: tests/reference/glmm_reference.json, written by tests/reference/make_glmm.R
(metafor 3.8-1 with lme4 for UM.FS, metafor's exact non-central hypergeometric density for
CM.EL).  The live test re-runs that script with a fresh seed when R, metafor and lme4 are
installed (Debian: r-cran-metafor r-cran-lme4).

Tolerances, and why they are not all 1e-6:

* UM.FS, equal effects (a glm): 1e-7 relative -- both sides are exact Newton/IWLS fits.
* UM.FS, random effects: the *likelihood* is the same to 1e-9 (checked directly: our maximum is
  never below our likelihood at metafor's estimates, and the two maxima agree to 1e-6 absolute),
  but glmer's bobyqa maximises a PIRLS-approximated objective (tolPwrss 1e-10), so metafor's
  estimates sit up to ~5e-6 relative from the maximum (dat.bcg moves by 4e-6 between tolPwrss 1e-7
  and 1e-10), hence 1e-5 (absolute 1e-5 for estimates near 0); lme4's standard errors come from a
  finite-difference Hessian of a deviance of order 1e2-1e5 (step 1e-4), hence 1e-4 for SEs.
* CM.EL: metafor maximises with nlminb at its default tolerance (tighter ones make it report
  non-convergence), so its estimates sit up to ~1.5e-6 (absolute) from the maximum -- ours is never below
  metafor's likelihood (checked) -- hence 1e-5; its SE is a numDeriv Hessian taken through integrate()
  (6e-5 from ours on dat.nielweise2007, whereas ours is stable to 1e-7 across quadrature sizes and
  difference steps, tested below), hence 2e-4 for SEs; its saturated-model Wald test (nlminb plus
  numDeriv per study) 1e-3.
* Wald heterogeneity test: compared only where no study has a zero cell (otherwise the saturated
  model's log odds ratio is infinite and metafor reports where glm stopped; we report the limit).
"""
from __future__ import annotations

import json
import math
import subprocess
import warnings

import numpy as np
import pytest
from scipy import integrate, special, stats

from lnsynth.pairwise.glmm import GLMMWarning, glmm_meta_analysis, profile_loglik
from lnsynth.pairwise import glmm as glmm_mod

from conftest import HAS_R, REFERENCE_DIR, REPO

REF = json.loads((REFERENCE_DIR / "glmm_reference.json").read_text())
CASES = [c for c in REF["cases"] if c["ok"]]


def _has_lme4() -> bool:
    if not HAS_R:
        return False
    try:
        r = subprocess.run(["Rscript", "-e", "library(lme4); library(metadat)"], capture_output=True, timeout=120)
    except Exception:
        return False
    return r.returncode == 0


needs_lme4 = pytest.mark.skipif(not _has_lme4(), reason="Rscript with metafor, metadat and lme4 not found "
                                                       "(CI: apt-get install r-cran-metafor r-cran-lme4)")


def _data(case):
    keep = [x is not None for x in case["ai"]]  # metafor omits studies with missing counts
    return [[x for x, k in zip(case[f], keep) if k] for f in ("ai", "n1i", "ci", "n2i")]


def _fit(case):
    n_agq = int(case["nAGQ"]) if case["model"] == "UM.FS" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GLMMWarning)
        return glmm_meta_analysis(*_data(case), model=case["model"], method=case["method"], n_agq=n_agq,
                                  test=case["test"])


def _close(ours, ref, rtol, atol=0.0, what=""):
    assert ref is not None, f"{what}: no reference value"
    assert abs(ours - ref) <= max(rtol * abs(ref), atol), f"{what}: ours {ours!r} vs metafor {ref!r}"


def _zero_cells(case) -> bool:
    a, n1, c, n2 = (np.asarray(x, float) for x in _data(case))
    keep = ~(((a == 0) & (c == 0)) | ((a == n1) & (c == n2)))
    a, n1, c, n2 = a[keep], n1[keep], c[keep], n2[keep]
    return bool(((a == 0) | (c == 0) | (a == n1) | (c == n2)).any())


def _compare(case):
    res = _fit(case)
    name = f"{case['dataset']} {case['model']} {case['method']} nAGQ={case['nAGQ']} test={case['test']}"
    assert res.k == case["k"], name
    if case["model"] == "UM.FS" and case["method"] == "EE":
        tol_b, tol_se, tol_t2 = 1e-7, 1e-6, 1e-9
    elif case["model"] == "UM.FS":
        tol_b, tol_se, tol_t2 = 1e-5, 1e-4, 1e-5
    else:
        # k = 2 with tau^2 ~ 13: the likelihood is nearly flat in tau and metafor's numDeriv SE is off by 7e-4
        # (ours is stable to 2e-6 across quadrature sizes and steps)
        tol_b, tol_se, tol_t2 = 1e-5, (2e-4 if case["k"] > 2 else 1e-3), 1e-5
    _close(res.estimate, case["estimate"], tol_b, tol_b, name + " estimate")
    _close(res.se, case["se"], tol_se, 0, name + " se")
    _close(res.tau2, case["tau2"], tol_t2, 1e-8, name + " tau2")
    _close(res.zval, case["zval"], tol_se, 1e-5, name + " zval")
    _close(res.ci_low, case["ci_lb"], tol_se, 1e-5, name + " ci.lb")
    _close(res.ci_high, case["ci_ub"], tol_se, 1e-5, name + " ci.ub")
    _close(res.i2, case["I2"], tol_t2, 1e-6, name + " I2")
    _close(res.h2, case["H2"], tol_t2, 1e-8, name + " H2")
    if case["QE_LRT"] is not None:
        assert res.qe_df == case["QE_df"], name
        _close(res.qe_lrt, case["QE_LRT"], 1e-6, 1e-8, name + " QE.LRT")
        if not _zero_cells(case):
            tol_w = 1e-6 if case["model"] == "UM.FS" else 1e-3  # CM.EL: metafor's saturated fit is nlminb+numDeriv
            _close(res.qe_wald, case["QE_Wld"], tol_w, 1e-8, name + " QE.Wld")
    # log-likelihood: metafor's "ll" for UM.FS ML is the conditional log-likelihood at the predicted
    # random effects (ll of the saturated model minus half glmer's deviance); ours is the marginal one
    if case["model"] == "UM.FS" and case["method"] == "ML" and res.tau2 > 0:
        _close(res.extra["loglik_conditional"], case["ll"], 1e-5, 1e-6, name + " ll (conditional)")
        _close(res.extra["aic_conditional"], case["AIC"], 1e-5, 1e-6, name + " AIC")
        _close(res.extra["bic_conditional"], case["BIC"], 1e-5, 1e-6, name + " BIC")
    else:
        _close(res.loglik, case["ll"], 1e-8, 1e-8, name + " ll")
        _close(res.aic, case["AIC"], 1e-8, 1e-8, name + " AIC")
        _close(res.bic, case["BIC"], 1e-8, 1e-8, name + " BIC")
    if True:
        # the same likelihood: our maximum is not below our likelihood at metafor's estimates, and close to it
        n_agq = int(case["nAGQ"]) if case["model"] == "UM.FS" else None
        at_ref = profile_loglik(*_data_kept(case), beta=case["estimate"], tau2=case["tau2"], model=case["model"],
                                n_agq=n_agq)
        assert res.loglik >= at_ref - 1e-9, name
        assert res.loglik - at_ref <= 1e-6, name
    return res


def _data_kept(case):
    a, n1, c, n2 = (np.asarray(x, float) for x in _data(case))
    keep = ~(((a == 0) & (c == 0)) | ((a == n1) & (c == n2)))
    return a[keep], n1[keep], c[keep], n2[keep]


def test_reference_has_cases():
    models = {(c["model"], c["method"]) for c in CASES}
    assert {("UM.FS", "EE"), ("UM.FS", "ML"), ("CM.EL", "EE"), ("CM.EL", "ML")} <= models
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['dataset']}-{c['model']}-{c['method']}-q{c['nAGQ']}-"
                                                   f"{c['test']}")
def test_matches_metafor(case):
    _compare(case)


@needs_lme4
def test_live_against_fresh_r_run(tmp_path):
    out = tmp_path / "glmm_live.json"
    r = subprocess.run(["Rscript", str(REPO / "tests/reference/make_glmm.R"), str(out), "4242", "2", "0"],
                       capture_output=True, text=True, timeout=900, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    live = [c for c in json.loads(out.read_text())["cases"] if c["ok"]]
    assert len(live) >= 20
    for case in live:
        _compare(case)


# --- independent numerical checks -------------------------------------------------------------------
def test_agq_converges_to_the_exact_integral():
    a, n1, c, n2 = (np.array(x, float) for x in ([10, 0, 3], [89, 40, 60], [1, 3, 8], [88, 41, 62]))
    lik = glmm_mod._UMFS(a, n1, c, n2, 101)
    alpha, beta, tau = np.array([-2.0, -2.5, -1.8]), 0.7, 1.3
    agq = lik.study_loglik(alpha, beta, tau) + lik.const
    for i in range(3):
        def f(u, i=i):
            e1 = alpha[i] + beta + tau * u / 2
            e2 = alpha[i] - tau * u / 2
            ll = (stats.binom.logpmf(a[i], n1[i], special.expit(e1)) + stats.binom.logpmf(c[i], n2[i], special.expit(e2)))
            return math.exp(ll) * stats.norm.pdf(u)
        exact = math.log(integrate.quad(f, -12, 12, epsabs=0, epsrel=1e-13, limit=200)[0])
        assert agq[i] == pytest.approx(exact, abs=1e-10)


def test_nagq_1_is_laplace_and_more_nodes_converge():
    d = ([10, 0, 3, 2], [89, 40, 60, 50], [1, 3, 8, 9], [88, 41, 62, 55])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GLMMWarning)
        r1 = glmm_meta_analysis(*d, n_agq=1)
        r51 = glmm_meta_analysis(*d, n_agq=51)
        r101 = glmm_meta_analysis(*d, n_agq=101)
    assert r51.estimate == pytest.approx(r101.estimate, abs=1e-8)
    assert r51.tau2 == pytest.approx(r101.tau2, abs=1e-8)
    assert r51.loglik == pytest.approx(r101.loglik, abs=1e-9)
    assert abs(r1.estimate - r51.estimate) > 1e-6  # the Laplace approximation is visibly different here


def test_arm_swap_negates_the_estimate():
    d = ([4, 6, 3, 62, 33], [123, 306, 231, 13598, 5069], [11, 29, 11, 248, 47], [139, 303, 220, 12867, 5808])
    r = glmm_meta_analysis(*d)
    s = glmm_meta_analysis(d[2], d[3], d[0], d[1])
    assert s.estimate == pytest.approx(-r.estimate, abs=1e-7)
    assert s.tau2 == pytest.approx(r.tau2, rel=1e-6)
    assert s.se == pytest.approx(r.se, rel=1e-5)
    assert s.loglik == pytest.approx(r.loglik, abs=1e-9)


def test_cmel_density_is_fishers_noncentral_hypergeometric():
    a, n1, c, n2 = (np.array(x, float) for x in ([3, 0, 12], [20, 15, 40], [5, 4, 7], [22, 14, 35]))
    lik = glmm_mod._CMEL(a, n1, c, n2, 21)
    theta = np.array([0.3, -1.2, 2.0])
    ours = lik._logp(theta)[0]
    ref = stats.nchypergeom_fisher.logpmf(a, n1 + n2, n1, a + c, np.exp(theta))
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_cmel_single_table_is_the_conditional_mle():
    table = np.array([[7, 93], [2, 98]])
    res = glmm_meta_analysis([7], [100], [2], [100], model="CM.EL", method="EE")
    ref = stats.contingency.odds_ratio(table, kind="conditional")
    assert math.exp(res.estimate) == pytest.approx(ref.statistic, rel=1e-7)
    assert res.k == 1 and res.qe_df == 0 and res.qe_lrt_pvalue == 1.0


def test_cmel_ml_integral_against_quadrature():
    d = ([3, 0, 12, 5], [20, 15, 40, 30], [5, 4, 7, 9], [22, 14, 35, 31])
    beta, tau2 = -0.4, 0.8
    ours = profile_loglik(*d, beta=beta, tau2=tau2, model="CM.EL")
    total = 0.0
    for ai, n1i, ci, n2i in zip(*d):
        def f(th):
            return stats.nchypergeom_fisher.pmf(ai, n1i + n2i, n1i, ai + ci, math.exp(th)) * stats.norm.pdf(
                th, beta, math.sqrt(tau2))
        total += math.log(integrate.quad(f, beta - 12, beta + 12, epsabs=0, epsrel=1e-12, limit=200)[0])
    assert ours == pytest.approx(total, abs=1e-9)


def test_cmel_se_is_stable_across_quadrature():
    case = next(c for c in CASES if c["dataset"] == "nielweise2007" and c["model"] == "CM.EL" and c["method"] == "ML")
    ses = []
    for q in (21, 51, 101):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GLMMWarning)
            ses.append(glmm_meta_analysis(*_data(case), model="CM.EL", n_agq=q).se)
    assert max(ses) - min(ses) < 1e-6 * ses[0]


# --- API ------------------------------------------------------------------------------------------
def test_result_protocol():
    r = glmm_meta_analysis([4, 6, 3, 62], [123, 306, 231, 13598], [11, 29, 11, 248], [139, 303, 220, 12867],
                           labels=["Aronson", "Ferguson", "Rosenthal", "Hart"])
    lo, hi = r.conf_int(0.95)
    assert (lo, hi) == pytest.approx((r.ci_low, r.ci_high))
    lo90, hi90 = r.conf_int(0.90)
    assert lo < lo90 < r.estimate < hi90 < hi
    d = r.to_dict()
    assert d["model"] == "UM.FS" and d["method"] == "ML" and d["n_agq"] == 7 and d["k"] == 4
    assert all(isinstance(v, (int, float, str, bool)) for v in d.values())
    frame = r.to_frame(transf="exp")
    assert frame.loc[0, "estimate"] == pytest.approx(math.exp(r.estimate))
    text = r.summary()
    assert "UM.FS" in text and "tau^2" in text and "LRT" in text and "Odds ratio" in text
    with pytest.raises(Exception):
        r.estimate = 0.0  # frozen


def test_t_test_uses_k_minus_1_df():
    d = ([10, 4, 7], [89, 60, 100], [1, 6, 12], [88, 62, 98])
    z = glmm_meta_analysis(*d)
    t = glmm_meta_analysis(*d, test="t")
    crit = stats.t.isf(0.025, 2)
    assert t.ci_high - t.estimate == pytest.approx(crit * t.se)
    assert t.pvalue > z.pvalue and t.df == 2 and z.df is None


def test_double_zero_studies_are_dropped_with_a_warning():
    with pytest.warns(GLMMWarning, match="Trial B"):
        r = glmm_meta_analysis([3, 0, 5], [50, 40, 60], [1, 0, 9], [50, 41, 58], labels=["Trial A", "Trial B", "C"])
    assert r.k == 2 and r.dropped == ("Trial B",)


@pytest.mark.parametrize("args, match", [
    (([1, -1], [10, 10], [2, 2], [10, 10]), r"events_treat must be a non-negative whole number for study 'Study 2'"),
    (([1, 11], [10, 10], [2, 2], [10, 10]), r"events_treat \(11\) exceeds n_treat \(10\) for study 'Study 2'"),
    (([1, 2.5], [10, 10], [2, 2], [10, 10]), r"whole number"),
    (([1, 2], [10, 10, 3], [2, 2], [10, 10]), r"length mismatch"),
    (([1, float("nan")], [10, 10], [2, 2], [10, 10]), r"missing or not finite for study 'Study 2'"),
    (([1, 2], [10, 0], [2, 2], [10, 10]), r"n_treat must be > 0"),
    (([0, 0], [10, 10], [0, 0], [10, 10]), r"no study has events"),
])
def test_bad_input_is_a_clear_error(args, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GLMMWarning)
        with pytest.raises(ValueError, match=match):
            glmm_meta_analysis(*args)


def test_bad_settings():
    d = ([1, 2], [10, 10], [2, 3], [10, 10])
    with pytest.raises(ValueError, match="unknown model"):
        glmm_meta_analysis(*d, model="UM.RS")
    with pytest.raises(ValueError, match="unknown method"):
        glmm_meta_analysis(*d, method="REML")
    with pytest.raises(ValueError, match="n_agq"):
        glmm_meta_analysis(*d, n_agq=0)
    with pytest.raises(ValueError, match="level"):
        glmm_meta_analysis(*d, level=150)
