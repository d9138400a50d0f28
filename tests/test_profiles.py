"""Patient profiles (issue 21, item 6): the review's statements with verbatim quotes, the included
trials' stored subgroup records with their sources, on every surface (JSON, markdown, report HTML)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lnsynth.analyses.profiles import NONE_STATEMENT, SUBGROUP_PROFILES, ProfileError, load_profiles, profile_rows
from lnsynth.analyses.questions import load_questions
from lnsynth.cli import app
from lnsynth.report.sof import answer_html, answer_markdown

runner = CliRunner()
PREGNANCY = "pregnancy and lactation"


def test_every_quote_is_verbatim_in_the_review(source_text_path):
    rows = load_profiles(review_text=source_text_path)
    text = source_text_path.read_text(encoding="utf-8")
    assert len(rows) >= 5
    for r in rows:
        assert r.quote in text, r.id
        assert r.source == "peleg2020" and len(r.quote) <= 160
    profiles = {r.profile for r in rows}
    assert {PREGNANCY, "younger patients with refractory disease", "heavy (nephrotic-range) proteinuria",
            "Asian vs non-Asian populations"} <= profiles


def test_a_quote_not_in_the_review_is_an_error(tmp_path, source_text_path):
    p = tmp_path / "_profiles.yaml"
    p.write_text("profiles:\n  - {id: x, profile: p, questions: all, statement: s, source: peleg2020, location: Abstract,"
                 " quote: \"calcineurin inhibitors cure every patient\"}\n", encoding="utf-8")
    with pytest.raises(ProfileError, match=r"_profiles\.yaml: row 0 \(x\): field 'quote'"):
        load_profiles(p, review_text=source_text_path)


def test_bad_rows_name_file_row_and_field(tmp_path):
    p = tmp_path / "_profiles.yaml"
    p.write_text("profiles:\n  - {id: y, profile: p, questions: [no-such-question], statement: s, source: peleg2020,"
                 " location: Abstract, quote: q}\n", encoding="utf-8")
    with pytest.raises(ProfileError, match=r"row 0 \(y\): field 'questions'.*no-such-question"):
        load_profiles(p)
    p.write_text("profiles:\n  - {id: z, profile: p, questions: all, statement: s, location: Abstract, quote: q}\n",
                 encoding="utf-8")
    with pytest.raises(ProfileError, match=r"row 0 \(z\): field 'source' is missing"):
        load_profiles(p)


def test_every_question_json_has_the_pregnancy_row_and_sourced_subgroups(answers):
    assert set(answers) == {q.id for q in load_questions()}
    for qid, a in answers.items():
        d = json.loads(json.dumps(a.to_dict()))
        rows = d["profiles"]
        preg = [r for r in rows if r["profile"] == PREGNANCY]
        assert preg and preg[0]["kind"] == "review statement" and preg[0]["source"] == "peleg2020", qid
        for r in rows:
            assert set(r) == {"profile", "kind", "statement", "trials", "source", "location", "quote"}
            assert r["kind"] in ("review statement", "subgroup")
            if r["kind"] == "subgroup":
                if r["trials"]:
                    assert r["source"] and r["location"] and r["quote"], (qid, r)
                    assert set(r["trials"]) <= set(d["included"]), (qid, r)
                else:
                    assert r["statement"] == NONE_STATEMENT and r["source"] is None
        # every subgroup profile is answered, by stored records or by saying none is stored
        assert {r["profile"] for r in rows if r["kind"] == "subgroup"} == set(SUBGROUP_PROFILES)


def test_stored_subgroups_are_reported(ev, answers):
    # Mok 2016 stores its pure class 5 subgroup (16 patients); Fu 1998 is a trial in children.
    mok = [r for r in answers["tac-vs-mmf"].to_dict()["profiles"]
           if r["trials"] == ["mok2016"] and "class 5" in r["statement"] and "subgroup" in r["statement"]]
    assert mok and "16 patients" in mok[0]["statement"]
    kids = [r for r in answers["csa-vs-cyc"].to_dict()["profiles"] if r["profile"] == "children" and r["trials"]]
    assert kids and kids[0]["trials"] == ["fu1998"] and "children" in kids[0]["quote"]
    # a trial that is not included contributes nothing
    none = profile_rows(ev, "cni-addon-mmf", [])
    assert all(r["statement"] == NONE_STATEMENT for r in none if r["kind"] == "subgroup")


def test_markdown_report_and_cli_show_patient_profiles(answers):
    a = answers["class-v-cni"]
    md = answer_markdown(a)
    assert "### Patient profiles" in md and "Calcineurin inhibitors along with azathioprine" in md
    html = answer_html(a)
    assert "Patient profiles" in html and "pregnancy and lactation" in html
    r = runner.invoke(app, ["answer", "cni-addon-mmf", "--format", "md"])
    assert r.exit_code == 0, r.output
    assert "Patient profiles" in r.output


def test_web_api_and_question_page_show_patient_profiles(tmp_path):
    from fastapi.testclient import TestClient

    from lnsynth.web import create_app

    client = TestClient(create_app(tmp_path / "store.sqlite"))
    api = client.get("/api/questions/cni-addon-mmf").json()
    assert any(r["profile"] == PREGNANCY for r in api["profiles"])
    page = client.get("/questions/cni-addon-mmf")
    assert page.status_code == 200 and "Patient profiles" in page.text
