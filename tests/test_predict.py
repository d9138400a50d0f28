"""Trial predictor (issue 23): contract shape, validation errors, no outcome leak, determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from lnsynth.simulate import mbma
from lnsynth.simulate.design import DesignError, parse_design, stored_targets
from lnsynth.simulate.predict import mbma_fit, predict_designs, training_items

DESIGN = {"trials": [{
    "id": "newtrial2027", "year": 2027, "region": "multinational",
    "population": {"baseline_upcr": 4.0, "class_v_share": 0.1, "black_share": None, "asian_share": None,
                   "hispanic_share": None, "relapsed_share": None},
    "arms": [{"id": "cni", "regimen": "VCS23.7+MMF", "phase": "induction", "steroid": "low", "n": 40},
             {"id": "ctl", "regimen": "PBO+MMF", "phase": "induction", "steroid": "low", "n": 40}],
    "rows": [{"arm": "cni", "endpoint_family": "complete_remission", "week": 52, "upcr_max": 0.5,
              "analysis_set": "itt", "n": 40},
             {"arm": "ctl", "endpoint_family": "complete_remission", "week": 52, "upcr_max": 0.5,
              "analysis_set": "itt", "n": 40},
             {"arm": "ctl", "endpoint_family": "flare", "week": 104, "upcr_max": None, "analysis_set": None, "n": 30},
             {"arm": "ctl", "endpoint_family": "treatment_failure", "week": 52, "n": 40}]}]}


@pytest.fixture(scope="module")
def out_mbma():
    return predict_designs(parse_design(DESIGN), "mbma")


def test_contract_shape_and_pmf(out_mbma):
    assert set(out_mbma) == {"model", "rows"} and out_mbma["model"] == "mbma"
    assert len(out_mbma["rows"]) == 4
    for r in out_mbma["rows"]:
        assert set(r) == {"trial", "arm", "endpoint_family", "week", "n", "pmf", "mean", "low", "high"}
        assert len(r["pmf"]) == r["n"] + 1
        assert abs(sum(r["pmf"]) - 1.0) < 1e-9 and min(r["pmf"]) >= 0
        assert 0 <= r["low"] <= r["mean"] <= r["high"] <= r["n"]


def test_cni_arm_predicted_above_control(out_mbma):
    cr = {r["arm"]: r["mean"] for r in out_mbma["rows"] if r["endpoint_family"] == "complete_remission"}
    assert cr["cni"] > cr["ctl"]


def test_flare_hazard_does_not_vanish(out_mbma):
    # flares among maintained responders stay clearly above zero (hazard not tied to incomplete suppression)
    fl = next(r for r in out_mbma["rows"] if r["endpoint_family"] == "flare")
    assert fl["mean"] / fl["n"] > 0.05


def test_deterministic(out_mbma):
    again = predict_designs(parse_design(DESIGN), "mbma")
    assert again == out_mbma


@pytest.mark.parametrize("bad,needle", [
    ({"region": "mars"}, "unknown code 'mars'"),
    ({"colour": "red"}, "unknown field 'colour'"),
    ({"arms": [{"id": "a", "regimen": "XYZ", "phase": "induction", "steroid": None, "n": 5}],
      "rows": [{"arm": "a", "endpoint_family": "complete_remission", "week": 24, "n": 5}]}, "unknown code 'XYZ'"),
    ({"rows": [{"arm": "ctl", "endpoint_family": "death", "week": 24, "n": 5}]}, "unknown code 'death'"),
    ({"rows": [{"arm": "ctl", "endpoint_family": "flare", "week": 24, "n": 5, "events": 3}]}, "unknown field 'events'"),
])
def test_unknown_codes_and_fields_named(bad, needle):
    d = json.loads(json.dumps(DESIGN))
    d["trials"][0].update(bad)
    with pytest.raises(DesignError, match=needle.replace("(", r"\(")):
        parse_design(d)


def test_cli_exit_2_names_the_code(tmp_path: Path):
    d = json.loads(json.dumps(DESIGN))
    d["trials"][0]["arms"][0]["steroid"] = "enormous"
    f = tmp_path / "d.yaml"
    f.write_text(yaml.safe_dump(d))
    p = subprocess.run([sys.executable, "-m", "lnsynth", "simulate", "predict", "--design", str(f), "--format", "json"],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 2
    assert "enormous" in p.stderr + p.stdout


def test_training_excludes_design_trial_and_same_patients():
    items, pool = training_items(exclude=("saxena2024",))
    ids = {d.id for d, _, _ in items} | {t.trial for t in pool}
    assert "saxena2024" not in ids and "rovin2021" not in ids  # AURORA 2 continues AURORA 1's patients
    assert "liu2015" in ids


def test_no_outcome_leak():
    """Predicting a stored trial gives identical output whether or not its outcomes are in the store."""
    tid = "rovin2019"
    d = next(dd for dd, _, _ in stored_targets() if dd.id == tid)
    design = {"trials": [{
        "id": tid, "year": d.year, "region": d.region, "population": {"baseline_upcr": None},
        "arms": [{"id": a.id, "regimen": a.regimen, "phase": a.phase, "steroid": a.steroid, "n": a.n}
                 for a in d.arms.values()],
        "rows": [{"arm": r.arm, "endpoint_family": r.endpoint_family, "week": r.week, "n": r.n} for r in d.rows]}]}
    trial = parse_design(design)[0]
    with_outcomes, _ = training_items()  # the store as is: rovin2019 outcomes present
    assert any(dd.id == tid for dd, _, _ in with_outcomes)
    without, _ = training_items(exclude=(tid,))  # what the predictor fits on for this design
    stripped = [it for it in with_outcomes if it[0].id != tid]  # a store in which rovin2019 has no outcomes
    assert [(a.id, b, c) for a, b, c in without] == [(a.id, b, c) for a, b, c in stripped]
    p1 = mbma.predict(mbma_fit(exclude=(tid,)), trial)  # the predictor's own (cached) fit
    p2 = mbma.predict(mbma.fit(stripped), trial)  # an independent fit on the outcome-free store
    assert all(np.array_equal(a, b) for a, b in zip(p1, p2))
    # and the fit with the trial's outcomes differs (the exclusion is real, not a no-op)
    assert not np.allclose(mbma_fit().theta, mbma_fit(exclude=(tid,)).theta)
