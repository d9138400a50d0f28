"""Living evidence end to end (issue 22, "done when"), on SQLite and on PostgreSQL.

One scenario per backend, run once (module fixture) and checked by the tests below:

1. ``lnsynth records import`` (CLI) reads a real-format MEDLINE ``.nbib`` file holding one new
   randomised trial (``tests/data/living/new-trial.nbib``: an INVENTED record, labelled as a test
   fixture, never evidence) -> ``new: 1``;
2. two reviewers include it at title/abstract and at full text (screening API) -> ``included``;
3. ``lnsynth update`` (CLI) stores the answers before the trial is curated (first snapshot);
4. a curator enters the trial and its complete-remission counts, a second curator verifies both;
5. ``lnsynth update`` again -> exit 3; ``changed`` holds csa-vs-cyc / complete_remission with the
   new trial added and the declared "lower 95% limit of the RR crosses 1" threshold crossed;
6. the web app's question page (HTTP, and Chromium when present) and the report's question
   section show the update notice.

The invented counts (150/250 vs 75/250, RR 2) are chosen so that the pooled risk ratio of
cyclosporin vs cyclophosphamide (today one trial, CI 0.38-3.2) moves to a CI above 1.  They are
test data in a temporary store, never in the package evidence.

The report: ``lnsynth report --db DB`` (or ``--store`` with ``LNSYNTH_DATABASE_URL``) builds the
whole report from the store's evidence with its notices through ``build_report(ev=store.evidence(),
snapshots=store)``; to keep the suite's time down the check below renders the questions section (the
one that carries the notices) through that same API rather than all sections.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("argon2")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import lnsynth.web.auth as auth_mod  # noqa: E402
from lnsynth.cli import app as cli_app  # noqa: E402
from lnsynth.web import create_app  # noqa: E402

FIXTURE = Path(__file__).parent / "data" / "living" / "new-trial.nbib"
TOKEN = "living-e2e-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUESTION, OUTCOME = "csa-vs-cyc", "complete_remission"
TRIAL = "lnsynthtest2026"
THRESHOLD_LABEL = "complete remission: lower 95% limit of the RR crosses 1"
PROV = {"source": "lnsynth_e2e_fixture", "location": "tests/data/living/new-trial.nbib (invented test record)",
        "quote": "Test fixture: invented counts for the lnsynth end-to-end test, not evidence"}
PASSWORD = "a long enough passphrase 1"
CURATORS = ("alice", "bob")
REVIEWERS = ("ann", "ben")


def _pg_schema_url(pg_server: str) -> Iterator[str]:
    import psycopg
    from conftest_pg import schema_url

    schema = "e2e_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_server, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(pg_server, schema)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


def _cli(runner: CliRunner, args: list[str], env: dict[str, str]):
    res = runner.invoke(cli_app, args, env=env)
    assert res.exit_code in (0, 3), f"lnsynth {' '.join(args)} -> {res.exit_code}\n{res.output}"
    return res


def _token(client: TestClient, name: str) -> dict[str, str]:
    r = client.post(f"/api/users/{name}/tokens", json={"label": "e2e"}, headers=AUTH)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _screen_in(client: TestClient, rid: int, heads: dict[str, dict]) -> dict:
    last: dict = {}
    for stage in ("title_abstract", "full_text"):
        for who in REVIEWERS:
            r = client.post(f"/api/screening/{rid}/decision", json={"decision": "include", "stage": stage},
                            headers=heads[who])
            assert r.status_code == 200, r.text
            last = r.json()
    return last


def _curate(client: TestClient, heads: dict[str, dict]) -> None:
    """alice enters the trial and its counts; bob (a second curator) verifies each."""
    trial = {"id": TRIAL, "label": "lnsynth test fixture 2026 (invented)", "year": "2026",
             "design": "open-label RCT (invented test fixture)", "population": "class III/IV lupus nephritis, induction",
             "n_randomised": "500", **PROV,
             "arm_id_1": "csa", "arm_label_1": "Cyclosporin", "arm_regimen_1": "CSA", "arm_n_1": "250",
             "arm_id_2": "cyc", "arm_label_2": "IV cyclophosphamide", "arm_regimen_2": "IVCYC", "arm_n_2": "250"}
    r = client.post("/api/trials", json=trial, headers=heads["alice"])
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    assert client.post(f"/api/trials/{TRIAL}/verify", headers=heads["alice"]).status_code == 403  # not her own
    r = client.post(f"/api/trials/{TRIAL}/verify", headers=heads["bob"])
    assert r.status_code == 200 and r.json()["status"] == "verified", r.text
    for arm, events in (("csa", 150), ("cyc", 75)):
        body = {"arm": arm, "outcome": "complete remission", "events": events, "n": 250, "timepoint_weeks": 26, **PROV}
        rec = client.post(f"/api/trials/{TRIAL}/outcomes", json=body, headers=heads["alice"])
        assert rec.status_code == 201, rec.text
        rec = rec.json()
        assert client.post(f"/api/trials/{TRIAL}/outcomes/{rec['id']}/verify", json={"version": rec["version"]},
                           headers=heads["alice"]).status_code == 403  # two-person rule
        r = client.post(f"/api/trials/{TRIAL}/outcomes/{rec['id']}/verify", json={"version": rec["version"]},
                        headers=heads["bob"])
        assert r.status_code == 200 and r.json()["status"] == "verified", r.text


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scenario(request, tmp_path_factory) -> Iterator[dict]:
    """The whole loop on one backend; yields what the tests check (the app's client stays open)."""
    from argon2 import PasswordHasher

    tmp = tmp_path_factory.mktemp(f"living-{request.param}")
    db = tmp / "store.sqlite"
    urls: Iterator[str] | None = None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(auth_mod, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        mp.delenv("LNSYNTH_DATABASE_URL", raising=False)
        env = {"LNSYNTH_PASSWORD": PASSWORD, "LNSYNTH_DATABASE_URL": None}
        db_args = ["--db", str(db)]
        if request.param == "postgresql":
            urls = _pg_schema_url(request.getfixturevalue("pg_server"))  # skips with the reason without a server
            url = next(urls)
            mp.setenv("LNSYNTH_DATABASE_URL", url)  # the web app's store (create_app -> open_store)
            env["LNSYNTH_DATABASE_URL"] = url
            db_args = []
        runner = CliRunner()
        try:
            # (1) records in, from a real-format file
            res = _cli(runner, ["records", "import", str(FIXTURE), *db_args, "--format", "json"], env)
            imported = json.loads(res.stdout)
            for name in (*CURATORS, *REVIEWERS):
                _cli(runner, ["users", "add", name, "--role", "curator", *db_args], env)
            with TestClient(create_app(db, TOKEN)) as client:
                store = client.app.state.store
                assert store.backend.name == request.param
                heads = {name: _token(client, name) for name in (*CURATORS, *REVIEWERS)}
                # (2) two reviewers screen it in
                rid = imported["queued"][0]["id"]
                screened = _screen_in(client, rid, heads)
                # (3) the answers before the trial is curated
                first = _cli(runner, ["update", *db_args, "--format", "json"], env)
                # (4) two curators: entered, then verified by the other
                _curate(client, heads)
                # (5) the answers after
                second = _cli(runner, ["update", *db_args, "--format", "json"], env)
                yield {"backend": request.param, "imported": imported, "screened": screened,
                       "first": (first.exit_code, json.loads(first.stdout)),
                       "second": (second.exit_code, json.loads(second.stdout)), "client": client, "store": store,
                       "tmp": tmp}
        finally:
            if urls is not None:
                urls.close()  # drops the schema


def _row(out: dict) -> dict:
    hits = [c for c in out["changed"] if c["question"] == QUESTION and c["outcome"] == OUTCOME]
    assert len(hits) == 1, [(c["question"], c["outcome"]) for c in out["changed"]]
    return hits[0]


def test_records_import_and_two_person_screening(scenario):
    imp = scenario["imported"]
    assert imp["new"] == 1 and imp["duplicates"] == 0 and imp["errors"] == [] and imp["format"] == "medline"
    assert imp["queued"][0]["title"].startswith("Test fixture:")
    s = scenario["screened"]
    assert s["screening"] == "included" and s["open_stage"] is None
    assert s["stages"]["title_abstract"]["outcome"] == "include"
    # a second import of the same file finds nothing new: the queued record is a duplicate
    env = {"LNSYNTH_DATABASE_URL": os.environ.get("LNSYNTH_DATABASE_URL")}
    db_args = [] if scenario["backend"] == "postgresql" else ["--db", str(scenario["tmp"] / "store.sqlite")]
    res = CliRunner().invoke(cli_app, ["records", "import", str(FIXTURE), *db_args, "--format", "json"], env=env)
    assert res.exit_code == 0 and json.loads(res.stdout)["duplicates"] == 1, res.output


def test_update_reports_the_changed_row_and_the_crossed_threshold(scenario):
    code1, out1 = scenario["first"]
    assert code1 == 0 and out1["previous"] is None  # first snapshot: nothing to cross
    assert TRIAL not in _row(out1)["added_trials"]
    code2, out2 = scenario["second"]
    assert code2 == 3, "a crossed threshold must give exit status 3"
    assert out2["previous"] == out1["snapshot"] and out2["snapshot"] != out1["snapshot"]
    row = _row(out2)
    assert row["added_trials"] == [TRIAL] and row["removed_trials"] == []
    b, a = row["before"], row["after"]
    assert set(b) == set(a) == {"k", "estimate", "ci_low", "ci_high", "certainty"}
    assert a["k"] == b["k"] + 1
    assert b["ci_low"] < 1.0 < a["ci_low"]  # the CI's lower limit moved above 1
    assert any(x.startswith("ci_null:") for x in row["crossed"])
    assert any(x.startswith(THRESHOLD_LABEL) for x in row["crossed"]), row["crossed"]
    # the other questions do not analyse a cyclosporin vs cyclophosphamide trial
    assert all(TRIAL not in c["added_trials"] for c in out2["changed"] if c["question"] != QUESTION)


def test_web_question_page_shows_the_notice(scenario):
    client = scenario["client"]
    page = client.get(f"/questions/{QUESTION}")
    assert page.status_code == 200
    html = page.text
    start = html.index(f"id='update-notice-{QUESTION}'")
    notice = html[start:html.index("</div>", start)]
    assert "data-crossed='true'" in notice and "Decision threshold crossed" in notice
    assert TRIAL in notice and THRESHOLD_LABEL in notice
    # a question the new trial does not touch says so
    other = client.get("/questions/tac-vs-mmf").text
    assert "id='update-notice-tac-vs-mmf'" in other and "data-crossed='true'" not in other


def test_report_shows_the_notice(scenario):
    """The report's questions section, built from the store's evidence and its answer snapshots."""
    from lnsynth.report.questions import section_questions

    store = scenario["store"]
    sec = section_questions(store.evidence(), {"snapshots": store})
    html = sec.html
    start = html.index(f"id='update-notice-{QUESTION}'")
    notice = html[start:html.index("</div>", start)]
    assert "data-crossed='true'" in notice and TRIAL in notice and THRESHOLD_LABEL in notice


def test_chromium_shows_the_notice(scenario):
    from _browser import ARGS, CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium to run the browser check")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright Python package not installed")
    from lnsynth.web.server import running

    with running(scenario["client"].app) as base, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            pg = browser.new_page()
            pg.goto(f"{base}/questions/{QUESTION}")
            notice = pg.locator(f"#update-notice-{QUESTION}")
            assert notice.is_visible()
            assert notice.get_attribute("role") == "alert" and notice.get_attribute("data-crossed") == "true"
            text = notice.inner_text()
            assert TRIAL in text and THRESHOLD_LABEL in text
        finally:
            browser.close()
