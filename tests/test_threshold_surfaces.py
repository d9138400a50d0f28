"""Decision thresholds and update notices on the report and the web question page (issue 22, items 4-5)."""

from __future__ import annotations

import html
import re

import pytest

from lnsynth.analyses.answer import answer
from lnsynth.analyses.questions import get_question
from lnsynth.analyses.threshold import new_trial_thresholds
from lnsynth.analyses.updates import StateDir, latest_notices, notices_for, previous_answer_snapshot
from lnsynth.evidence.load import load_evidence
from lnsynth.report.thresholds import notice_html, report_block, thresholds_html

QID = "tac-vs-mmf"  # headline: complete remission, declared thresholds ci_low 1.0 and per1000_low -50


@pytest.fixture(scope="module")
def ev():
    return load_evidence()


@pytest.fixture(scope="module")
def nt(ev):
    return new_trial_thresholds(ev, QID)


def _row(ci_low: float, per1000_low: float, certainty: str = "low", trials=("a",)) -> dict:
    return {"question": QID, "outcome": "complete_remission", "label": "Complete remission", "measure": "RR",
            "k": len(trials), "estimate": 1.2, "ci_low": ci_low, "ci_high": 1.6, "certainty": certainty,
            "per1000": 40.0, "per1000_low": per1000_low, "per1000_high": 200.0, "trials": sorted(trials)}


def _save_crossing(backend) -> None:
    """Two snapshots whose diff crosses the declared ``ci_low 1.0`` threshold (and the CI-against-null default)."""
    backend.save_answer_snapshot("a" * 64, [_row(0.81, -111.7, "very low", ("t1",))])
    backend.save_answer_snapshot("b" * 64, [_row(1.07, 12.5, "low", ("t1", "t2"))])


def test_thresholds_block_lists_each_declared_threshold_with_its_numbers(ev, nt):
    q = get_question(QID)
    d = answer(ev, QID).to_dict()
    h = thresholds_html(nt, q, d)
    assert f"id='thresholds-{QID}'" in h and "Decision thresholds" in h
    by_field = {r["threshold"]["field"]: r for r in nt["results"]}
    for t in q.thresholds:
        assert html.escape(t.name()) in h  # every declared threshold, certainty-level one included
        if t.assumption:
            assert html.escape(t.assumption) in h
    row = re.search(r"<tr data-field='ci_low'>(.*?)</tr>", h).group(1)
    r = by_field["ci_low"]
    assert f"{r['current']:.3g}" in row and ">below<" in row  # 0.811 < 1: the current side
    assert f"{r['new_trial_n']} per arm ({2 * r['new_trial_n']} in total)" in row
    assert html.escape(r["trial_result"]) in row
    p = re.search(r"<tr data-field='per1000_low'>(.*?)</tr>", h).group(1)
    assert f"{by_field['per1000_low']['current']:+.1f}" in p and f"{by_field['per1000_low']['new_trial_n']} per arm" in p
    assert "certainty" in re.search(r"<tr data-field='certainty'>(.*?)</tr>", h).group(1)


def test_error_and_no_snapshot_are_said_not_invented():
    assert "could not be run" in thresholds_html({"question": QID, "error": "boom"})
    assert notice_html(None, QID) == ""


def test_report_section_has_block_and_notice(ev, tmp_path):
    from lnsynth.report.questions import section_questions

    state = StateDir(tmp_path / "state")
    _save_crossing(state)
    ctx: dict = {"snapshots": state}
    sec = section_questions(ev, ctx)
    h = sec.html
    assert h.count("class='thresholds'") == len([a for a in ctx["answers"]])  # one block per question
    block = h.split(f"id='thresholds-{QID}'", 1)[1].split("</div>", 1)[0]
    n = ctx["threshold_cache"][QID]["results"][0]["new_trial_n"]
    assert n is not None and f"{n} per arm" in block
    notice = h.split(f"id='update-notice-{QID}'", 1)[1].split("</div>", 1)[0]
    assert "data-crossed='true'" in notice and "Decision threshold crossed" in notice
    assert "0.81" in notice and "1.07" in notice and "t2" in notice  # before/after and the trial added
    other = next(a.id for a in ctx["answers"] if a.id != QID)
    assert "No change and no decision threshold crossed" in h.split(f"id='update-notice-{other}'", 1)[1][:400]


def test_latest_notices_compares_the_last_two_runs(tmp_path):
    state = StateDir(tmp_path / "s")
    assert latest_notices(state) is None
    state.save_answer_snapshot("a" * 64, [_row(0.81, -111.7)])
    first = latest_notices(state)
    assert first["previous"] is None and first["changed"] == [] and not first["crossed_any"]
    state.save_answer_snapshot("b" * 64, [_row(1.07, 12.5, trials=("a", "b"))])
    assert previous_answer_snapshot(state)["snapshot"] == "a" * 64
    n = notices_for(latest_notices(state), QID)
    assert n["crossed_any"] and n["changed"][0]["added_trials"] == ["b"]
    assert any(x.startswith("ci_null") for x in n["changed"][0]["crossed"])
    assert any("ci_low 1" in x for x in n["changed"][0]["crossed"])  # the declared threshold, by name
    assert notices_for(latest_notices(state), "csa-vs-cyc")["changed"] == []


def test_web_question_page_shows_block_and_notice(tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from lnsynth.web import create_app

    app = create_app(tmp_path / "store.db", "tok-123")
    with TestClient(app) as c:
        r = c.get(f"/questions/{QID}")
        assert r.status_code == 200
        assert f"id='thresholds-{QID}'" in r.text and "Smallest new trial" in r.text
        assert "update-notice" not in r.text  # no snapshot stored: nothing is said
        store = app.state.store
        _save_crossing(store)
        assert previous_answer_snapshot(store)["snapshot"] == "a" * 64
        r = c.get(f"/questions/{QID}")
        notice = r.text.split(f"id='update-notice-{QID}'", 1)[1].split("</div>", 1)[0]
        assert "role='alert'" in notice and "data-crossed='true'" in notice
        assert "0.81" in notice and "1.07" in notice and "very low" in notice and "t2" in notice
        assert "lower 95% limit of the RR crosses 1" in notice  # the declared threshold's label
        other = c.get("/questions/csa-vs-cyc").text
        assert "No change and no decision threshold crossed" in other


def test_report_block_caches_per_question(ev, monkeypatch):
    import lnsynth.analyses.threshold as th

    calls = []
    real = th.new_trial_thresholds
    monkeypatch.setattr(th, "new_trial_thresholds", lambda e, q: calls.append(q) or real(e, q))
    a = answer(ev, "class-v-cni")
    ctx: dict = {}
    assert report_block(ev, ctx, a) == report_block(ev, ctx, a)
    assert calls == ["class-v-cni"]
    assert "update-notice" not in report_block(ev, ctx, a)  # no store/state given: no notice invented


def test_report_cli_refuses_a_missing_state_folder(tmp_path):
    from typer.testing import CliRunner

    from lnsynth.cli import app

    r = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "out"), "--state", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such folder" in (r.stderr if hasattr(r, "stderr") else r.output)
    assert not (tmp_path / "out").exists()
