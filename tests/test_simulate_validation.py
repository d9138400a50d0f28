"""Proper scoring of the simulator against the meta-analytic null (issue 15): the frozen protocol, the
contract table, the predictive mixtures, the null, stacking and identification."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lnsynth.simulate.calibrate import (Bank, Target, calibrate, external_targets, targets, unclassified_outcomes,
                                        validation_protocol)

TINY = dict(n_sim=20, m1=8, m2=8, stages=2, seed=1, loo_min_ess=0)  # same bank as tests/test_simulate.py (cache)
FAMILIES = {"complete_remission", "overall_remission", "flare", "relapse", "composite", "other"}


@pytest.fixture(scope="module")
def bank():
    return calibrate(**TINY)


@pytest.fixture(scope="module")
def ext(bank):
    from lnsynth.simulate.validate import external_bank

    return external_bank(bank, k=4)


@pytest.fixture(scope="module")
def tables(bank, ext):
    from lnsynth.simulate.validate import validate

    return validate(bank=bank, ext_bank=ext), validate(bank=bank, ext_bank=ext, model="null")


# ------------------------------------------------------------------------------------------ frozen protocol
def test_protocol_sets_are_disjoint_and_complete():
    vp = validation_protocol()
    seen = {}
    for sec in ("calibration", "external", "excluded"):
        for study, ids in vp[sec].items():
            for oid in ids:
                assert (study, oid) not in seen, (study, oid, sec, seen.get((study, oid)))
                seen[(study, oid)] = sec
    assert unclassified_outcomes() == []  # every stored outcome of a simulated trial is accounted for
    cal = {(t.trial, t.outcome_id) for t in targets()}
    ex = {(t.trial, t.outcome_id) for t in external_targets()}
    assert len(cal) == 35 and not cal & ex
    assert {t.trial for t in external_targets()} >= {"rovin2021", "saxena2024", "amudalapalli2025", "mok2016",
                                                     "rovin2019"}
    # rows tuned to (activity_loss_per_year <- Mok 2016 5-year composite) are never held out
    nho = {(t.trial, t.outcome_id) for t in targets() if not t.held_out}
    assert nho == {("mok2016", "composite5y_mmf"), ("mok2016", "composite5y_tac")}
    assert set(vp["missing"]) >= {"zheng2022"}


def test_protocol_error_names_study_and_outcome(monkeypatch):
    import importlib

    cal = importlib.import_module("lnsynth.simulate.calibrate")
    vp = validation_protocol()
    vp["calibration"]["li2012"] = ["or_ivc", "no_such_outcome"]
    monkeypatch.setattr(cal, "validation_protocol", lambda: vp)
    with pytest.raises(ValueError, match="li2012.*no_such_outcome"):
        cal.targets()


# ------------------------------------------------------------------------------------------ contract table
def test_contract_columns_and_values(tables):
    from lnsynth.simulate.validate import COLUMNS

    sim, null = tables
    for df in (sim, null):
        assert list(df.columns) == COLUMNS
        assert set(df["set"]) <= {"loto", "external"} and set(df["endpoint_family"]) <= FAMILIES
        assert ((0 <= df.pred_low) & (df.pred_low <= df.pred_high) & (df.pred_high <= 1)).all()
        assert np.isfinite(df.log_pred).all() and (df.log_pred <= 0).all()
        assert (df.observed_events <= df.observed_n).all()
    assert set(sim["set"]) == {"loto", "external"}
    assert "TAC+MMF" in set(sim.regimen) and "VCS23.7+MMF" in set(sim.regimen) and "IVCYC" in set(sim.regimen)
    nho = sim[~sim.held_out]
    assert set(zip(nho.trial, nho.endpoint_family)) == {("mok2016", "composite")}
    assert sim.to_csv(index=False).splitlines()[0] == ",".join(COLUMNS)


def test_log_pred_is_the_mixture_not_a_point_binomial(bank):
    """Recompute one loto row's predictive probability by hand: posterior draws without the trial x 15 trial-effect
    nodes x binomial; it is more dispersed than a binomial at the predictive mean."""
    from lnsynth.simulate.validate import _interp, _loto_pmf

    i = next(j for j, t in enumerate(bank.targets) if t.trial == "liu2015" and t.arm == "mt" and t.kind == "binom")
    t = bank.targets[i]
    xs, pmf = _loto_pmf(bank, i, 15)
    w = bank.weights(exclude="liu2015")
    z, wz = np.polynomial.hermite_e.hermegauss(15)
    wz = wz / wz.sum()
    v3 = (bank.sims[:, :, i] * bank.n_sim + 0.5) / (bank.n_sim + 1)
    p = _interp(v3, z, "binom")
    by_hand = float(np.sum(w[:, None] * wz[None, :] * stats.binom.pmf(t.events, t.n, p)))
    assert np.isclose(pmf[t.events], by_hand, rtol=1e-6)
    assert np.isclose(pmf.sum(), 1.0)
    mean = float((xs * pmf).sum())
    var = float(((xs - mean) ** 2 * pmf).sum())
    assert var >= stats.binom.var(t.n, mean / t.n) * (1 - 1e-9)


def test_interpolation_passes_through_the_bank_nodes():
    from lnsynth.simulate.calibrate import GH_Z
    from lnsynth.simulate.validate import _interp

    v3 = np.array([[0.2, 0.4, 0.7]])
    assert np.allclose(_interp(v3, GH_Z, "binom"), v3)
    assert np.allclose(_interp(np.array([[0.5, 1.0, 3.0]]), GH_Z, "rate"), [[0.5, 1.0, 3.0]])


# ------------------------------------------------------------------------------------------ null
def _t(trial, arm, fam, cls, e, n, week=24.0, kind="binom", yrs=1.0):
    return Target(trial, arm, fam, week, kind, e, n, fam, yrs, regimen=cls, regimen_class=cls, family=fam)


def test_null_pools_other_trials_same_family_and_class():
    from lnsynth.pairwise import meta_analysis
    from lnsynth.simulate.null import null_fit, null_pmf

    pool = [_t("a", "x", "complete_remission", "CNI", 10, 20), _t("b", "x", "complete_remission", "CNI", 30, 50),
            _t("b", "x", "complete_remission", "CNI", 35, 50, week=52.0),  # same arm, later: not the nearest
            _t("c", "y", "complete_remission", "MMF", 5, 40), _t("d", "x", "overall_remission", "CNI", 40, 50),
            _t("new", "x", "complete_remission", "CNI", 1, 10)]  # same trial as the target: never pooled
    target = _t("new", "z", "complete_remission", "CNI", 12, 30)
    fit = null_fit(target, pool)
    assert fit["arms"] == ["a/x", "b/x"] and "same family and class" in fit["rule"]
    y = np.log(np.array([10.5, 30.5]) / np.array([10.5, 20.5]))
    v = 1 / np.array([10.5, 30.5]) + 1 / np.array([10.5, 20.5])
    ref = meta_analysis(yi=y, vi=v, method="REML", ci_tau2=False)
    assert np.isclose(fit["mu"], ref.estimate) and np.isclose(fit["tau2"], ref.tau2)
    pmf, _ = null_pmf(target, pool)
    assert len(pmf) == 31 and np.isclose(pmf.sum(), 1.0)
    # fewer than 2 arms of the class: widen to the family
    fit2 = null_fit(_t("new", "z", "complete_remission", "IVCYC", 3, 20), pool)
    assert set(fit2["arms"]) == {"a/x", "b/x", "c/y"} and "any class" in fit2["rule"]
    # nothing of the family in other trials: no null prediction
    assert null_fit(_t("new", "z", "relapse", "CNI", 3, 20), pool) is None
    # tau2 = 0, huge arms: the predictive approaches the binomial at the pooled proportion
    big = [_t("a", "x", "flare", "CNI", 3000, 10000), _t("b", "x", "flare", "CNI", 3000, 10000)]
    tg = _t("new", "z", "flare", "CNI", 6, 20)
    pmf, fit = null_pmf(tg, big)
    assert np.allclose(pmf, stats.binom.pmf(np.arange(21), 20, 3000.5 / 7000.5 / (1 + 3000.5 / 7000.5)), atol=2e-3)


def test_rates_scored_separately(bank):
    from lnsynth.simulate.validate import RATE_COLUMNS, validate_rates

    df = validate_rates(bank=bank)
    assert list(df.columns) == RATE_COLUMNS and set(df.trial) == {"moroni2006"}
    assert np.allclose(df.person_years, df.observed_n * 4.0)
    assert np.isfinite(df.log_pred).all()
    assert validate_rates(bank=bank, model="null").empty  # no other trial reports a flare rate


def test_compare_totals_match_rows(tables):
    from lnsynth.simulate.validate import compare

    sim, null = tables
    c = compare(sim, null)
    rows = c["rows"]
    for s, tot in c["totals"].items():
        d = rows[rows.set == s]
        assert np.isclose(tot["log_score_sim"], d.log_pred.sum()) and np.isclose(tot["log_score_null"], d.log_pred_null.sum())
        assert tot["rows"] == len(d) and 0 <= tot["coverage_sim"] <= 1
    assert rows.held_out.all()
    assert isinstance(c["beats_null"], bool)


# ------------------------------------------------------------------------------------------ stacking, identification
def test_stacking_weights():
    from lnsynth.simulate.validate import stacking_weights

    t = _t("a", "x", "complete_remission", "CNI", 1, 2)
    good = [(t, "loto", True, (np.arange(3), np.array([0.1, 0.8, 0.1])), None, None)] * 5
    bad = [(t, "loto", True, (np.arange(3), np.array([0.45, 0.1, 0.45])), None, None)] * 5
    w = stacking_weights({"base": good, "alt": bad})
    assert w["base"] > 0.95 and np.isclose(sum(w.values()), 1.0)
    w2 = stacking_weights({"base": good, "alt": good})
    assert np.isclose(w2["base"], 0.5, atol=1e-3)


def test_not_identified_when_posterior_is_prior():
    """Flat likelihood (every draw simulates the same outcomes): posterior = prior, width ratio ~ 1."""
    from lnsynth.simulate.calibrate import from_probit, names
    from lnsynth.simulate.validate import prior_posterior_widths

    tg = targets()[:3]
    d = len(names())
    x = stats.norm.ppf(stats.qmc.Sobol(d, scramble=True, seed=3).random(2048))
    b = Bank(x, from_probit(x), stats.norm.logpdf(x).sum(1), np.full((len(x), 3, len(tg)), 0.5), tg, 300, names())
    df = prior_posterior_widths(b)
    assert np.allclose(df.width_ratio, 1.0, atol=0.03) and not df.identified.any()


def test_cli_validate_csv_contract(monkeypatch, bank, ext):
    from typer.testing import CliRunner

    import lnsynth.simulate as sim
    import lnsynth.simulate.validate as val
    from lnsynth.cli import app
    from lnsynth.simulate.validate import COLUMNS

    monkeypatch.setattr(sim, "calibrate", lambda *a, **k: bank)
    monkeypatch.setattr(val, "external_bank", lambda *a, **k: ext)
    r = CliRunner().invoke(app, ["simulate", "validate", "--format", "csv"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert lines[0] == ",".join(COLUMNS)
    df = pd.read_csv(__import__("io").StringIO("\n".join(lines)))
    assert set(df["set"]) == {"loto", "external"}
    r = CliRunner().invoke(app, ["simulate", "validate-rates", "--model", "stacked"])
    assert r.exit_code == 2
