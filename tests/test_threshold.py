"""Decision thresholds set in advance and "what would change the answer" (issue 22, items 4 and 5).

* question files declare ``thresholds:`` (validated: a bad one names the file and the field);
* ``lnsynth threshold ID``: the smallest new two-arm trial that moves the headline conclusion across each
  threshold, by the question's own pipeline (checked against the answer and by refitting at n and n - 1);
* ``lnsynth threshold --network OUTCOME``: the Phillippo threshold analysis of the evidence base's network
  (the engine's published example is tests/test_published_phillippo2018.py).

The evidence changes as trials are added, so these tests take the numbers from the answers themselves.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lnsynth.analyses.answer import answer
from lnsynth.analyses.questions import QuestionError, Threshold, catalogue_dir, load_questions
from lnsynth.analyses.threshold import _new_row, _value, network_thresholds, network_to_text, new_trial_thresholds, refit_with, to_text
from lnsynth.analyses.updates import crossed
from lnsynth.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def results(ev):
    return {q.id: new_trial_thresholds(ev, q.id) for q in load_questions()}


# ----------------------------------------------------------------------------- declared thresholds
def test_main_questions_declare_thresholds_with_their_assumptions():
    qs = {q.id: q for q in load_questions()}
    for qid in ("voclosporin-addon-mmf", "cni-addon-mmf", "tac-vs-mmf", "tac-vs-ivcyc", "multitarget-vs-ivcyc"):
        q = qs[qid]
        head = q.headline_outcome.id
        fields = {t.field for t in q.thresholds if t.outcome == head}
        assert {"ci_low", "per1000_low"} <= fields
        mid = next(t for t in q.thresholds if t.field == "per1000_low")
        assert mid.assumption and "not sourced" in mid.assumption  # a panel choice, flagged
        assert any(t.certainty_levels == 1 for t in q.thresholds)
    assert qs["cni-vs-aza-maintenance"].headline_outcome.id == "kidney_flare"


def _catalogue(tmp_path: Path, qid: str, thresholds_yaml: str) -> Path:
    root = tmp_path / "cat"
    shutil.copytree(catalogue_dir(), root)
    p = root / f"{qid}.yaml"
    text = p.read_text(encoding="utf-8")
    text = text[: text.index("\nthresholds:")] if "\nthresholds:" in text else text
    p.write_text(text.rstrip("\n") + "\n" + thresholds_yaml, encoding="utf-8")
    return root


@pytest.mark.parametrize("yaml_text, needle", [
    ("thresholds:\n  - {outcome: no_such_outcome, field: ci_low, value: 1}\n", "thresholds[0].outcome: no outcome 'no_such_outcome'"),
    ("thresholds:\n  - {outcome: complete_remission, field: ci_middle, value: 1}\n", "field thresholds.0.field"),
    ("thresholds:\n  - {outcome: complete_remission, field: ci_low}\n", "needs both 'field' and 'value'"),
    ("thresholds:\n  - {outcome: complete_remission, certainty_levels: 0}\n", "field thresholds.0.certainty_levels"),
    ("thresholds:\n  - {outcome: complete_remission, field: ci_low, value: 1, certainty_levels: 1}\n", "not both"),
    ("thresholds:\n  - {field: ci_low, value: 1, headline: true}\n", "'headline: true' must name one outcome"),
    ("thresholds: {outcome: complete_remission}\n", "field thresholds"),
])
def test_bad_threshold_names_file_and_field(tmp_path, yaml_text, needle):
    root = _catalogue(tmp_path, "tac-vs-mmf", yaml_text)
    with pytest.raises(QuestionError) as exc:
        load_questions(root)
    assert "tac-vs-mmf.yaml" in str(exc.value) and needle in str(exc.value)


def test_default_thresholds_when_none_declared(tmp_path):
    root = _catalogue(tmp_path, "tac-vs-mmf", "")
    q = next(q for q in load_questions(root) if q.id == "tac-vs-mmf")
    assert q.thresholds == [] and q.headline_outcome.id == "complete_remission"  # first benefit row, not long term


def test_update_names_the_declared_threshold_crossed():
    q = next(q for q in load_questions() if q.id == "voclosporin-addon-mmf")
    row = {"question": q.id, "outcome": "complete_remission", "measure": "RR", "k": 2, "estimate": 1.9, "ci_low": 1.47,
           "ci_high": 2.47, "certainty": "low", "per1000": 210.0, "per1000_low": 109.0, "per1000_high": 340.0}
    after = {**row, "k": 3, "estimate": 1.5, "ci_low": 1.1, "per1000": 116.0, "per1000_low": 23.0}
    got = crossed(row, after, q)
    assert any(x.startswith("complete remission: lower 95% limit of the absolute benefit crosses the MID")
               and "(per1000_low 50): 109 -> 23" in x for x in got)
    assert not any(x.startswith("ci_null") for x in got)  # the CI still excludes 1
    # the declared threshold applies to its own outcome only
    assert crossed({**row, "outcome": "kidney_flare"}, {**after, "outcome": "kidney_flare"}, q) == []
    # certainty by a level: named with the declared label
    assert crossed(row, {**row, "certainty": "moderate"}, q) == \
        ["certainty: low -> moderate (complete remission: certainty changes by a level)"]


# ----------------------------------------------------------------------------- new trial
def test_refit_without_a_new_trial_is_the_answer(ev):
    for q in load_questions():
        oa = answer(ev, q.id).outcome(q.headline_outcome.id)
        if oa.result is None:
            continue
        d, r = oa.to_dict(), refit_with(q, oa, [])
        for f in ("estimate", "ci_low", "ci_high", "per1000_low"):
            assert r[f] == pytest.approx(d[f], rel=1e-10), (q.id, f)


def test_contract_fields(results):
    for qid, d in results.items():
        assert d["question"] == qid and d["results"]
        for r in d["results"]:
            assert {"threshold", "current", "new_trial_n", "direction", "outcome"} <= set(r)
            assert r["new_trial_n"] is not None or r["note"]  # no finite n is explained


def test_smallest_n_crosses_and_n_minus_one_does_not(ev, results):
    checked = 0
    for qid, d in results.items():
        q = next(x for x in load_questions() if x.id == qid)
        oa = answer(ev, qid).outcome(d["outcome"])
        for r in d["results"]:
            n = r["new_trial_n"]
            if n is None:
                continue
            t = Threshold(**{k: r["threshold"][k] for k in ("field", "value")})
            above = r["current"] >= t.value
            effect = r["trial_effect"]
            assert r["after"][t.field] == pytest.approx(refit_with(q, oa, [_new_row(oa.analysed[0], n, oa.control_risk,
                                                                                    effect, d["measure"])])[t.field])
            val = (lambda m: _value(q, oa, t, m, effect, d["measure"]))  # None: a zero cell, not counted
            assert (val(n) >= t.value) != above, (qid, t)
            if n > 2 and val(n - 1) is not None:
                assert (val(n - 1) >= t.value) == above, (qid, t)
            checked += 1
    assert checked >= 3


def test_null_trial_moves_toward_the_null(ev, results):
    """A shown benefit (CI above 1) is lost with a big enough null trial under a fixed-effect-like pool."""
    d = results["voclosporin-addon-mmf"]
    r = next(r for r in d["results"] if r["threshold"]["field"] == "ci_low")
    if r["current"] is None or r["current"] < 1:
        pytest.skip("no shown benefit in the current evidence")
    assert r["direction"].endswith("to below 1") and r["new_trial_n"] and r["trial_result"].startswith("no effect")
    assert r["after"]["ci_low"] < 1 <= r["current"]


def test_not_estimable_headline_says_so(results):
    for d in results.values():
        if d["current"]["estimate"] is None:
            assert all(r["new_trial_n"] is None and "not estimable" in r["note"] for r in d["results"])


# ----------------------------------------------------------------------------- CLI
def test_cli_threshold_json_and_text(results):
    res = runner.invoke(app, ["threshold", "tac-vs-mmf", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == json.loads(json.dumps(results["tac-vs-mmf"]))
    text = to_text(results["tac-vs-mmf"])
    assert "smallest new trial" in text and "tac-vs-mmf" in text


def test_cli_unknown_question_and_bad_usage():
    res = runner.invoke(app, ["threshold", "no-such-question"])
    assert res.exit_code == 2 and "no question 'no-such-question'" in res.stderr and "Traceback" not in res.output
    assert runner.invoke(app, ["threshold"]).exit_code == 2
    assert runner.invoke(app, ["threshold", "tac-vs-mmf", "--format", "xml"]).exit_code == 2
    res = runner.invoke(app, ["threshold", "--network", "no such outcome"])
    assert res.exit_code == 2 and "fewer than two studies" in res.stderr


def test_cli_network_thresholds():
    res = runner.invoke(app, ["threshold", "--network", "complete remission", "--format", "json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["small_values"] == "bad" and d["best"] in d["relative_effects"]
    assert d["study"] and d["contrast"]
    for r in d["study"] + d["contrast"]:
        assert r["lower"] is None or r["lower"] < 0
        assert r["upper"] is None or r["upper"] > 0
        assert (r["lower"] is None) == (r["lower_best"] is None) and (r["upper"] is None) == (r["upper_best"] is None)
        assert d["best"] not in (r["lower_best"], r["upper_best"])  # a threshold changes the best treatment
    assert all(math.isfinite(v) for v in d["relative_effects"].values())
    text = network_to_text(d)
    assert "study level" in text and "contrast level" in text


def test_network_small_values_default_and_override(ev):
    assert network_thresholds(ev, "complete remission", method="FE", small_values="good")["small_values"] == "good"


def test_network_threshold_tie_invariant_on_the_evidence(ev):
    """At each study-level threshold of the evidence's network the new best ties with the current best."""
    from lnsynth.analyses.network_data import REFERENCE_NODE, arm_level_data
    from lnsynth.network import network_meta_analysis
    from lnsynth.network.threshold import influence_matrix, study_thresholds

    d = arm_level_data(ev, "complete remission", warn=False)
    fit = network_meta_analysis(d.frame, study="study", treatment="treatment", events="events", n="n", measure="OR",
                                reference=REFERENCE_NODE, method="FE")
    st = study_thresholds(fit, "bad")
    H = influence_matrix(fit)
    eff = dict(zip([fit.reference, *fit.params], np.r_[0.0, fit.estimate]))
    Hf = dict(zip([fit.reference, *fit.params], np.vstack([np.zeros(H.shape[1]), H])))
    for m, r in enumerate(st.rows):
        for u, new in ((r.lower, r.lower_best), (r.upper, r.upper_best)):
            if math.isfinite(u):
                after = {t: eff[t] + Hf[t][m] * u for t in eff}
                assert after[new] == pytest.approx(after[st.best], abs=1e-9)
                assert max(after.values()) == pytest.approx(after[st.best], abs=1e-9)
