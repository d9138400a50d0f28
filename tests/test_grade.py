"""GRADE domains a methodologist would sign, several baseline risks, files only under --out (issue 21)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
from typer.testing import CliRunner

from lnsynth.analyses.baselines import BaselineRiskError, absolute_rows, add_user_baseline, check_user_risk
from lnsynth.analyses.grade import TrialFacts, rate_outcome, trial_indirectness
from lnsynth.analyses.questions import QuestionError, load_questions
from lnsynth.cli import app

runner = CliRunner()
EX = Path(__file__).resolve().parents[1] / "docs" / "examples"
DOMAIN_KEYS = {"name", "downgrade", "judgement", "reason"}
BASELINE_KEYS = {"label", "risk", "source", "per1000", "per1000_low", "per1000_high"}


def _t(study="a", patients=100, events=30, est=0.3, se=0.2, rob="some concerns", setting=None, secondary=False,
       drugs=frozenset({"TAC"}), indirect=(), tp=52.0, recorded_high=False, concerns=1):
    return TrialFacts(study, patients, events, est, tp, setting, rob, secondary, se, frozenset(drugs), tuple(indirect),
                      recorded_high, rob_concerns=concerns)


def _rate(trials, ci=(0.1, 0.6), pi=(None, None), i2=0.0, k=None, endpoints=("kidney flare",), cr=0.3, **kw):
    return rate_outcome(measure="RR", k=len(trials) if k is None else k, estimate_ci=ci, pi=pi, i2=i2, trials=trials,
                        endpoints=list(endpoints), relation="substitution", control_risk=cr, **kw)


def _dom(cert, name):
    return next(d for d in cert.domains if d.name == name)


# ----------------------------------------------------------------------------- risk of bias


def test_unassessed_trials_are_not_rated_down_and_are_named():
    cert = _rate([_t("x", rob="not assessed"), _t("y", rob="not assessed")])
    rob = _dom(cert, "risk of bias")
    assert rob.downgrade == 0 and rob.judgement == "not assessed"
    assert "not rated down" in rob.reason and "x" in rob.reason
    # one trial with some concerns (30% of patients) and two unassessed: no downgrade, the unassessed named
    mixed = _rate([_t("sc", patients=60), _t("u1", patients=70, rob="not assessed"), _t("u2", patients=70, rob="unclear")])
    rob = _dom(mixed, "risk of bias")
    assert rob.downgrade == 0 and rob.judgement == "not serious"
    assert "not assessed" in rob.reason and "u1" in rob.reason and "u2" in rob.reason and "70%" in rob.reason
    # some concerns in one or two domains (e.g. no reachable analysis plan): stated, not rated down
    assert _dom(_rate([_t("a", concerns=2), _t("b", concerns=1)]), "risk of bias").downgrade == 0
    # some concerns in three or more domains for most patients (RoB 2 "multiple domains"): rated down once
    rob = _dom(_rate([_t("a", concerns=3), _t("b", concerns=3)]), "risk of bias")
    assert rob.downgrade == 1 and ">= 3 domains" in rob.reason


def test_high_only_from_no_information_is_rated_down_once_recorded_high_twice():
    assert _dom(_rate([_t(rob="high", recorded_high=False)]), "risk of bias").downgrade == 1
    assert _dom(_rate([_t(rob="high", recorded_high=True)]), "risk of bias").downgrade == 2


def test_news_only_counts_are_a_reporting_concern_not_indirectness():
    cert = _rate([_t("n", rob="low", secondary=True, setting="China")])
    assert _dom(cert, "risk of bias").downgrade == 1 and "news" in _dom(cert, "risk of bias").reason
    assert _dom(cert, "indirectness").downgrade == 0
    assert "news" not in _dom(cert, "indirectness").reason.split("; relation")[0]


def test_unassessed_trials_in_real_answers_are_never_rated_down_for_it(answers):
    """A question whose analysed trials are all without RoB 2 assessment keeps its risk-of-bias level."""
    from lnsynth.evidence import load_evidence

    ev = load_evidence()
    seen = 0
    for a in answers:
        for o in a.outcomes:
            if o.certainty is None:
                continue
            rob = [(ev.study(t.study).rob.overall() if ev.study(t.study).rob is not None else "not assessed") for t in o.analysed]
            d = _dom(o.certainty, "risk of bias")
            if all(r == "not assessed" for r in rob):
                seen += 1
                assert d.downgrade == 0 and d.judgement == "not assessed", (a.id, o.spec.id, d)
    # every analysed randomised trial now has a RoB 2 assessment (issue 20), so no real outcome rests only on
    # unassessed trials; the rule itself is checked on synthetic trials above
    assert seen == 0


# ----------------------------------------------------------------------------- inconsistency


def test_no_prediction_interval_rule_with_fewer_than_three_trials():
    two = [_t("a", est=0.5), _t("b", est=0.4)]
    cert = _rate(two, ci=(0.1, 0.8), pi=(-2.0, 3.0), i2=10.0)
    inc = _dom(cert, "inconsistency")
    assert inc.downgrade == 0 and "prediction interval not used" in inc.reason
    three = two + [_t("c", est=0.45)]
    inc3 = _dom(_rate(three, ci=(0.1, 0.8), pi=(-2.0, 3.0), i2=10.0), "inconsistency")
    assert inc3.downgrade == 1 and "prediction interval includes no effect" in inc3.reason


def test_single_trial_inconsistency_is_not_applicable():
    inc = _dom(_rate([_t()]), "inconsistency")
    assert inc.downgrade == 0 and inc.judgement == "not applicable"


def test_high_i2_needs_a_signal_beyond_i2():
    # overlapping CIs and no Q p-value: I² alone does not rate down
    two = [_t("a", est=0.5, se=0.4), _t("b", est=-0.3, se=0.4)]
    assert _dom(_rate(two, i2=80.0), "inconsistency").downgrade == 0
    # Q p < 0.10 with estimates on both sides and I² > 75%: very serious
    d = _dom(_rate(two, i2=80.0, q_pvalue=0.02), "inconsistency")
    assert d.downgrade == 2 and "Q p = 0.020" in d.reason


# ----------------------------------------------------------------------------- imprecision


def test_imprecision_is_counted_once():
    # CI crosses no effect AND far below the optimal information size: one level, not two
    d = _dom(_rate([_t(patients=100, events=20)], ci=(math.log(0.9), math.log(1.2)), cr=0.2), "imprecision")
    assert d.downgrade == 1 and "includes no effect" in d.reason and "optimal information size" not in d.reason
    # CI excludes no effect: the OIS is the check (one level when not met)
    d = _dom(_rate([_t(patients=100, events=20)], ci=(math.log(1.3), math.log(2.0)), cr=0.2), "imprecision")
    assert d.downgrade == 1 and "optimal information size" in d.reason
    d = _dom(_rate([_t(patients=5000, events=900)], ci=(math.log(1.3), math.log(1.5)), cr=0.2), "imprecision")
    assert d.downgrade == 0
    # both thresholds: two levels
    d = _dom(_rate([_t()], ci=(math.log(0.5), math.log(2.0))), "imprecision")
    assert d.downgrade == 2 and d.judgement == "very serious"


# ----------------------------------------------------------------------------- indirectness


def test_country_is_never_indirectness():
    trials = [_t("a", setting="nine nephrology centres in China", patients=200),
              _t("b", setting="Chandigarh, India", patients=100)]
    d = _dom(_rate(trials), "indirectness")
    assert d.downgrade == 0 and "country" not in d.reason.split("; relation")[0]


def test_country_is_never_indirectness_in_any_answer(answers):
    for a in answers:
        for o in a.to_dict()["outcomes"]:
            for dm in o["domains"]:
                if dm["name"] == "indirectness":
                    assert "single-country" not in dm["reason"] and "single country" not in dm["reason"], (a.id, o["outcome_id"])


def test_indirectness_kinds():
    drug = _dom(_rate([_t(drugs={"VCS"})], question_drugs=frozenset({"VCS", "TAC"})), "indirectness")
    assert drug.downgrade == 1 and "drug: the question covers tacrolimus and voclosporin" in drug.reason
    sur = _dom(_rate([_t(drugs={"TAC"})], endpoints=("complete remission",)), "indirectness")
    assert sur.downgrade == 1 and "surrogate endpoint" in sur.reason and "52 wk" in sur.reason
    three = _dom(_rate([_t(drugs={"VCS"}, indirect=[("steroid regimen", "low-dose steroids", 1.0)])],
                       endpoints=("complete remission",), question_drugs=frozenset({"VCS", "TAC"})), "indirectness")
    assert three.downgrade == 2 and three.judgement == "very serious"
    minor = _dom(_rate([_t(indirect=[("dose", "dose-ranging arm", 0.3)])]), "indirectness")
    assert minor.downgrade == 0 and "not counted" in minor.reason and "dose-ranging" in minor.reason


def _arm(i, regimen, n=50, background=None, doses=()):
    drugs = [NS(dose=NS(value=d)) for d in doses]
    return NS(id=i, label=i, regimen=regimen, n=NS(value=n), background=NS(value=background) if background else None,
              drugs=drugs)


def test_trial_indirectness_reads_the_stored_trial():
    study = NS(population=NS(value="children and adults aged >=10 years with clinical or biopsy-proven lupus nephritis"),
               links=[NS(type="maintenance_phase_of", trial="liu2015")])
    got = trial_indirectness(study, [_arm("t", "VCS39.5+MMF", background="MMF and rapidly tapered corticosteroids")],
                             [_arm("c", "IVCYC", doses=["0.5 to 1.0 g/m2 in monthly pulses"],
                                   background="MMF and rapidly tapered corticosteroids")])
    kinds = {k for k, _, _ in got}
    assert kinds == {"dose", "comparator regimen", "steroid regimen", "population", "design"}
    texts = " ".join(t for _, t, _ in got)
    assert "children" in texts and "biopsy" in texts and "NIH" in texts and "liu2015" in texts
    # a concern about one side touches the comparison in the share of that side it covers
    share = {k: s for k, _, s in got}
    assert share["comparator regimen"] == 1.0 and share["dose"] == 1.0 and share["steroid regimen"] == 1.0
    half = trial_indirectness(NS(population=None, links=[]), [_arm("lo", "VCS23.7+MMF"), _arm("hi", "VCS39.5+MMF")],
                              [_arm("c", "PBO+MMF")])
    assert [(k, s) for k, _, s in half] == [("dose", 0.5)]
    euro = trial_indirectness(NS(population=None, links=[]), [_arm("t", "TAC")],
                              [_arm("c", "IVCYC-LOW", doses=["six fortnightly infusions of 500 mg"])])
    assert euro == ()


# ----------------------------------------------------------------------------- overrides


def test_panel_override_is_applied_and_shown():
    cert = _rate([_t()], overrides={"imprecision": {"downgrade": 0, "reason": "the panel judges the CI narrow enough"}})
    d = _dom(cert, "imprecision")
    assert d.overridden and d.downgrade == 0 and "panel override: the panel judges" in d.reason
    assert d.rule["downgrade"] >= 1 and d.to_dict()["rule"]["judgement"] in ("serious", "very serious")
    assert "panel override" in " ".join(cert.reasons())


def _catalogue_copy(tmp_path, extra: str) -> Path:
    from lnsynth.analyses.questions import catalogue_dir

    root = tmp_path / "cat"
    shutil.copytree(catalogue_dir(), root)
    qfile = sorted(p for p in root.glob("*.yaml") if not p.name.startswith("_"))[0]
    qfile.write_text(qfile.read_text(encoding="utf-8") + "\n" + extra, encoding="utf-8")
    return qfile


def test_overrides_in_the_question_file_are_validated(tmp_path):
    q = load_questions()[0]
    oid = q.outcomes[0].id
    qfile = _catalogue_copy(tmp_path, f"overrides: {{{oid}: {{indirectness: {{downgrade: 0, reason: 'panel: steroids as used locally'}}}}}}\n")
    got = {x.id: x for x in load_questions(qfile.parent)}[qfile.stem]
    assert got.overrides[oid]["indirectness"].downgrade == 0
    bad = _catalogue_copy(tmp_path / "b", f"overrides: {{{oid}: {{country: {{downgrade: 1, reason: 'not a GRADE domain at all'}}}}}}\n")
    with pytest.raises(QuestionError, match=rf"{bad.name}.*overrides"):
        load_questions(bad.parent)


def test_override_flows_to_the_answer_and_the_summary_of_findings(monkeypatch):
    from lnsynth.analyses import answer as A
    from lnsynth.evidence import load_evidence
    from lnsynth.report.sof import answer_html, answer_markdown

    ev = load_evidence()
    base = A.answer(ev, load_questions()[0].id)
    o = next(x for x in base.outcomes if x.certainty is not None)
    dom = next(d for d in o.certainty.domains if d.downgrade > 0)
    q = base.question.model_copy(update={"overrides": {o.spec.id: {dom.name: {"downgrade": 0, "reason": "written panel reason xyz"}}}})
    monkeypatch.setattr(A, "get_question", lambda qid: q)
    A._CACHE.clear()
    try:
        a = A.answer(ev, q.id)
        d = a.to_dict()
        od = next(x for x in d["outcomes"] if x["outcome_id"] == o.spec.id)
        got = next(x for x in od["domains"] if x["name"] == dom.name)
        assert got["overridden"] and got["downgrade"] == 0 and got["rule"]["downgrade"] == dom.downgrade
        assert "written panel reason xyz" in answer_markdown(d) and "panel override" in answer_html(d)
    finally:
        A._CACHE.clear()


# ----------------------------------------------------------------------------- contract and baseline risks


def _json(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout[r.stdout.index("{"):])


def test_contract_domains_and_baseline_risks():
    qid = load_questions()[0].id
    d = _json(["answer", qid, "--format", "json"])
    for o in d["outcomes"]:
        assert {"domains", "baseline_risks", "reasons", "per1000", "certainty"} <= set(o)
        if o["estimate"] is None:
            continue
        assert [x["name"] for x in o["domains"]] == ["risk of bias", "inconsistency", "indirectness", "imprecision",
                                                     "publication bias"]
        for x in o["domains"]:
            assert DOMAIN_KEYS <= set(x) and x["downgrade"] in (0, 1, 2) and x["reason"]
        assert len(o["baseline_risks"]) >= 3
        first = o["baseline_risks"][0]
        assert BASELINE_KEYS <= set(first) and first["risk"] == o["control_risk"] and first["per1000"] == o["per1000"]
        for b in o["baseline_risks"]:
            assert BASELINE_KEYS <= set(b) and b["source"]


def test_baseline_risk_user_row_cli_and_validation():
    qid = load_questions()[0].id
    d = _json(["answer", qid, "--format", "json", "--baseline-risk", "0.35"])
    for o in d["outcomes"]:
        user = [b for b in o["baseline_risks"] if b["label"] == "user"]
        assert len(user) == 1 and user[0]["risk"] == 0.35
        if o["estimate"] is not None and o["measure"] == "RR":
            assert user[0]["per1000"] == pytest.approx(1000 * (min(0.35 * o["estimate"], 1) - 0.35))
            assert user[0]["per1000_low"] == pytest.approx(1000 * (min(0.35 * o["ci_low"], 1) - 0.35))
    for bad in ("0", "1", "1.5", "-0.1", "abc", "nan", "inf"):
        r = runner.invoke(app, ["answer", qid, "--format", "json", "--baseline-risk", bad])
        assert r.exit_code == 2, (bad, r.output)
        assert "between 0 and 1" in r.output
    md = runner.invoke(app, ["answer", qid, "--baseline-risk", "0.2"])
    assert md.exit_code == 0 and "Baseline: user" in md.stdout


def test_baseline_helpers():
    assert check_user_risk("0.35") == 0.35
    with pytest.raises(BaselineRiskError):
        check_user_risk(1.0)
    rows = absolute_rows("OR", 2.0, 1.0, 4.0, [{"label": "x", "risk": 0.5, "source": "s"}, {"label": "none", "risk": None}])
    assert rows[0]["per1000"] == pytest.approx(1000 * (2 * 0.5 / (1 - 0.5 + 2 * 0.5) - 0.5))
    assert rows[0]["per1000_low"] == pytest.approx(0.0) and rows[1]["per1000"] is None
    d = add_user_baseline({"outcomes": [{"measure": "RR", "estimate": None, "ci_low": None, "ci_high": None,
                                         "baseline_risks": []}]}, 0.4)
    assert d["outcomes"][0]["baseline_risks"][0]["label"] == "user" and d["outcomes"][0]["baseline_risks"][0]["per1000"] is None


def test_baseline_rows_are_computed_from_stored_control_arms(answers):
    """Each declared row states its rule and the control arms behind it; medians are recomputable."""
    import statistics

    for a in answers:
        for o in a.to_dict()["outcomes"]:
            for b in o["baseline_risks"][1:]:
                if b["risk"] is None or b.get("rule") not in ("median",):
                    continue
                parts = b["source"].split(": ", 1)[1].split("; ")
                vals = []
                for p in parts:
                    cnt = p.split(" ")[1].rstrip(",")
                    vals.append(int(cnt.split("/")[0]) / int(cnt.split("/")[1]) if "/" in cnt else float(cnt.rstrip("%")) / 100)
                assert b["risk"] == pytest.approx(statistics.median(vals), abs=1e-3), (a.id, o["outcome_id"], b)


def test_web_api_and_page_baseline_risk(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from lnsynth.web import create_app

    qid = load_questions()[0].id
    client = TestClient(create_app(tmp_path / "store.sqlite"))
    api = client.get(f"/api/questions/{qid}", params={"baseline_risk": "0.35"})
    assert api.status_code == 200
    assert api.json() == _json(["answer", qid, "--format", "json", "--baseline-risk", "0.35"])
    for bad in ("1.5", "0", "abc", "1e-1", "0." + "1" * 80):
        r = client.get(f"/api/questions/{qid}", params={"baseline_risk": bad})
        assert r.status_code == 422, bad
        assert "between 0 and 1" in r.json()["error"]
    page = client.get(f"/questions/{qid}", params={"baseline_risk": "0.35"})
    assert page.status_code == 200
    assert "id=\"baseline_risk\"" in page.text and "<th>Baseline: user" in page.text
    assert client.get(f"/questions/{qid}", params={"baseline_risk": "2"}).status_code == 422
    plain = client.get(f"/questions/{qid}")
    assert plain.status_code == 200 and "<th>Baseline: user" not in plain.text


# ----------------------------------------------------------------------------- files only under --out


def test_meta_and_nma_json_write_no_files_in_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["meta", "--outcome", "complete remission", "--treatment", "CNI-any", "--control", "IVCYC,CYC",
                            "--format", "json"])
    assert r.exit_code == 0, r.output
    json.loads(r.stdout[r.stdout.index("{"):])
    r = runner.invoke(app, ["meta", "--input", str(EX / "bcg.csv"), "--format", "json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["nma", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert list(tmp_path.iterdir()) == []
    r = runner.invoke(app, ["nma", "--format", "json", "--out", "nma-out"])
    assert r.exit_code == 0, r.output
    assert {"league.csv", "summary.json"} <= {p.name for p in (tmp_path / "nma-out").iterdir()}


@pytest.fixture(scope="module")
def answers():
    from lnsynth.analyses.answer import answer_all
    from lnsynth.evidence import load_evidence

    return answer_all(load_evidence())
