"""RoB 2 judgements: every randomised trial has one, each with its basis, and the
``lnsynth trials --format json`` contract (issue 20, part 5)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from lnsynth.cli import app
from lnsynth.evidence import load_evidence
from lnsynth.evidence.load import EvidenceError, data_dir
from lnsynth.evidence.schema import (
    NO_INFORMATION_MAPS_TO,
    ROB_CONTRACT_KEYS,
    ROB_DOMAINS,
    RiskOfBias,
    RobJudgement,
)

runner = CliRunner()

CONTRACT_KEYS = {"randomisation", "deviations", "missing", "measurement", "selection", "overall"}
JUDGEMENTS = {"low", "some concerns", "high", "no information"}

# Trials whose primary sources another curator is re-extracting (issue 20, part 4) together with
# their RoB 2 block.  Remove an id once its file carries a rob block (the test then passes anyway).
PENDING: set[str] = set()


@pytest.fixture(scope="module")
def ev():
    return load_evidence()


@pytest.fixture(scope="module")
def trials_json():
    res = runner.invoke(app, ["trials", "--format", "json"])
    assert res.exit_code == 0, res.output
    text = res.stdout
    return json.loads(text[text.index("["):text.rindex("]") + 1])


def _randomised_ids() -> list[str]:
    out = []
    for p in sorted((data_dir() / "studies").glob("*.yaml")):
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        if raw.get("randomised", True):
            out.append(str(raw.get("id", p.stem)))
    return out


@pytest.mark.parametrize("sid", [
    pytest.param(s, marks=pytest.mark.xfail(reason="rob block written by the re-extraction of this trial", strict=False))
    if s in PENDING else s
    for s in _randomised_ids()
])
def test_every_randomised_trial_has_five_rob_domains(ev, sid):
    st = ev.study(sid)
    assert st.rob is not None, f"{sid}: randomised trial without a RoB 2 block"
    assert st.rob.assessed
    for d in ROB_DOMAINS:
        j = getattr(st.rob, d)
        assert j is not None and j.judgement in JUDGEMENTS
    assert st.rob.overall() in {"low", "some concerns", "high"}


def test_each_judgement_has_its_basis_or_what_was_looked_for(ev):
    known = {s.id for s in ev.sources}
    n_judged = n_ni = 0
    for st in ev.studies:
        if st.rob is None:
            continue
        for d in ROB_DOMAINS:
            j = getattr(st.rob, d)
            if j is None:
                continue
            if j.judgement == "no information":
                n_ni += 1
                assert j.looked_for and len(j.looked_for.split()) >= 3, f"{st.id}.{d}: looked_for too thin"
                assert "no information: looked for" in j.basis_text()
            else:
                n_judged += 1
                assert j.basis is not None, f"{st.id}.{d}"
                assert j.basis.provenance.quote.strip() and j.basis.value.strip()
                assert j.basis.provenance.quote in j.basis_text() and j.basis.provenance.source in j.basis_text()
            for sid in j.looked_in + [t.provenance.source for t in j.more]:
                assert sid in known, f"{st.id}.{d}: unknown source {sid!r}"
    assert n_judged > 40 and n_ni > 10  # the curated base really records both kinds


def test_no_unclear_left_in_any_rob_block():
    for p in sorted((data_dir() / "studies").glob("*.yaml")):
        rob = (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("rob") or {}
        for d, j in rob.items():
            assert str((j or {}).get("judgement", "")).lower() != "unclear", f"{p.name}: rob.{d}"


def test_trials_json_contract(trials_json, ev):
    assert trials_json, "no trials printed"
    for rec in trials_json:
        rob = rec["rob"]
        assert set(rob) == CONTRACT_KEYS, rec["id"]
        for k, v in rob.items():
            assert {"judgement", "basis"} <= set(v), (rec["id"], k)
            assert isinstance(v["basis"], str) and v["basis"], (rec["id"], k)
        assert rob["overall"]["judgement"] == rec["rob_overall"]
        st = ev.study(rec["id"])
        if st.rob is not None and st.rob.assessed:
            for d in ROB_DOMAINS:
                v = rob[ROB_CONTRACT_KEYS[d]]
                j = getattr(st.rob, d)
                assert v["judgement"] == j.judgement
                if j.judgement == "no information":
                    assert j.looked_for in v["basis"]
                    assert v["counts_as"] == NO_INFORMATION_MAPS_TO[d]
                else:
                    assert j.basis.provenance.quote in v["basis"] and j.basis.provenance.source in v["basis"]
            assert rob["overall"]["judgement"] == st.rob.overall()
        else:
            assert rob["overall"]["judgement"] == "not assessed"
        assert rec["publications"], rec["id"]
        for pub in rec["publications"]:
            assert "source_type" in pub and pub["source_type"], (rec["id"], pub["source"])
    # existing fields are kept
    for key in ("id", "label", "year", "design", "randomised", "n_randomised", "arms", "links", "values"):
        assert key in trials_json[0]


def test_rovin2021_rob_row_is_quoted_from_the_abstract(trials_json):
    rec = next(r for r in trials_json if r["id"] == "rovin2021")
    assert rec["rob"]["randomisation"]["judgement"] == "low"
    assert "interactive web response system" in rec["rob"]["randomisation"]["basis"]
    assert "rovin2021_lancet_pubmed" in rec["rob"]["randomisation"]["basis"]


# ------------------------------------------------------------------ the rules on synthetic cases

def _j(judgement: str) -> dict:
    if judgement == "no information":
        return {"judgement": judgement, "looked_for": "the method of allocation concealment in the abstract"}
    return {"judgement": judgement, "basis": {"value": "x", "provenance": {"source": "s", "location": "l", "quote": "q"}}}


def _rob(**kw: str) -> RiskOfBias:
    doms = {d: "low" for d in ROB_DOMAINS}
    doms.update(kw)
    return RiskOfBias.model_validate({d: _j(v) for d, v in doms.items()})


@pytest.mark.parametrize("doms,expected", [
    ({}, "low"),
    ({"measurement": "some concerns"}, "some concerns"),
    ({"deviations": "high"}, "high"),
    ({"randomisation": "some concerns", "selective_reporting": "high"}, "high"),
    ({"randomisation": "some concerns", "missing_data": "some concerns", "measurement": "some concerns"}, "some concerns"),
    # "no information" counts as the RoB 2 algorithm's proposal for the domain
    ({"randomisation": "no information"}, "some concerns"),
    ({"selective_reporting": "no information"}, "some concerns"),
    ({"missing_data": "no information"}, "high"),
    ({"deviations": "no information"}, "high"),
    ({"measurement": "no information"}, "high"),
    ({d: "no information" for d in ("randomisation", "selective_reporting")}, "some concerns"),
])
def test_overall_follows_rob2(doms, expected):
    assert _rob(**doms).overall() == expected


def test_no_information_mapping_is_the_rob2_algorithm_default():
    assert NO_INFORMATION_MAPS_TO == {"randomisation": "some concerns", "deviations": "high", "missing_data": "high",
                                     "measurement": "high", "selective_reporting": "some concerns"}
    r = _rob(randomisation="no information", missing_data="no information")
    assert r.domain_counts_as()["randomisation"] == "some concerns"
    assert r.domain_counts_as()["missing_data"] == "high"
    c = r.as_contract()
    assert c["randomisation"]["counts_as"] == "some concerns" and c["missing"]["counts_as"] == "high"
    assert "missing no information (counts as high)" in c["overall"]["basis"]


def test_unassessed_trial_is_not_assessed_never_unclear():
    r = RiskOfBias()
    assert r.overall() == "not assessed" and not r.assessed
    assert all(v["judgement"] == "not assessed" for v in r.as_contract().values())


def test_contract_names_are_accepted_in_yaml():
    data = {k: _j("low") for k in ("randomisation", "deviations", "missing", "measurement", "selection")}
    r = RiskOfBias.model_validate(data)
    assert r.missing_data.judgement == "low" and r.selective_reporting.judgement == "low"
    with pytest.raises(ValidationError):  # the same domain under both names
        RiskOfBias.model_validate({**data, "missing_data": _j("high")})


@pytest.mark.parametrize("payload,msg", [
    ({"judgement": "unclear"}, "'unclear' is not a RoB 2 judgement"),
    ({"judgement": "no information"}, "needs 'looked_for'"),
    ({"judgement": "no information", "looked_for": "  "}, "needs 'looked_for'"),
    ({"judgement": "low"}, "needs its quoted 'basis'"),
    ({**_j("high"), "looked_for": "x"}, "belong to 'no information'"),
    ({"judgement": "probably low", "basis": _j("low")["basis"]}, "judgement"),
])
def test_bad_judgements_are_clear_errors(payload, msg):
    with pytest.raises(ValidationError, match=msg):
        RobJudgement.model_validate(payload)


def test_partial_rob_block_is_an_error():
    with pytest.raises(ValidationError, match="not recorded"):
        RiskOfBias.model_validate({"randomisation": _j("low"), "deviations": _j("low")})


def test_unclear_in_a_study_file_names_file_study_and_field(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data_dir(), root)
    path = root / "studies" / "rovin2021.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["rob"]["missing_data"] = {"judgement": "unclear"}
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    with pytest.raises(EvidenceError) as e:
        load_evidence(root)
    msg = str(e.value)
    assert "rovin2021.yaml" in msg and "rob.missing_data" in msg and "no information" in msg
