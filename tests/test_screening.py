"""Two-person screening in the web app (issue 22, item 2): two independent reviewers per record and stage,
conflicts side by side and resolved by a third curator, reasons from the protocol's list, PRISMA update."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("argon2")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

import lnsynth.web.auth as auth_mod  # noqa: E402
from lnsynth.evidence.search import CONTRACT_KEYS  # noqa: E402
from lnsynth.web import create_app  # noqa: E402
from lnsynth.web.store import SCHEMA_VERSION, Forbidden  # noqa: E402
from lnsynth.web.store.screening_review import ScreeningInputError, exclusion_reasons  # noqa: E402

TOKEN = "screening-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROLE = {"alice": "curator", "bob": "curator", "carol": "curator", "vic": "viewer"}
RECORDS = [
    {"number": 1, "pmid": "40000001", "title": "Tacrolimus versus mycophenolate for lupus nephritis: a randomised trial",
     "year": 2026, "abstract": "Patients with active lupus nephritis were randomised.", "kind": "article"},
    {"number": 2, "doi": "10.1000/example.2", "title": "A cohort of patients with lupus nephritis on voclosporin",
     "year": 2026, "abstract": "Retrospective cohort.", "kind": "article"},
    {"number": 3, "nct": "NCT09999999", "title": "Voclosporin in lupus nephritis: registry record", "year": 2025,
     "kind": "registry"},
]


@pytest.fixture(autouse=True)
def fast_argon2(monkeypatch):
    from argon2 import PasswordHasher

    monkeypatch.setattr(auth_mod, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(auth_mod, "_DUMMY", [])


@pytest.fixture()
def client(tmp_path):
    with TestClient(create_app(tmp_path / "store.db", TOKEN)) as c:
        c.app.state.store.queue_screening(RECORDS, "new.nbib", "medline")
        yield c


@pytest.fixture()
def heads(client) -> dict[str, dict]:
    out = {}
    for name, role in ROLE.items():
        assert client.post("/api/users", json={"name": name, "role": role, "password": f"{name}-password-123"},
                           headers=AUTH).status_code == 201
        tok = client.post(f"/api/users/{name}/tokens", json={"label": "t"}, headers=AUTH).json()["token"]
        out[name] = {"Authorization": f"Bearer {tok}"}
    return out


def decide(client, who: dict, rid: int, decision: str, reason=None, stage=None, action="decision"):
    body = {"decision": decision}
    if reason is not None:
        body["reason"] = reason
    if stage is not None:
        body["stage"] = stage
    return client.post(f"/api/screening/{rid}/{action}", json=body, headers=who)


def test_migration_adds_the_table(client):
    st = client.app.state.store
    assert SCHEMA_VERSION >= 4
    assert "screening_decisions" in st.backend.tables(st._conn())


def test_two_includes_agree_and_the_full_text_stage_opens(client, heads):
    r = decide(client, heads["alice"], 1, "include")
    assert r.status_code == 200, r.text
    assert r.json()["stages"]["title_abstract"]["state"] == "awaiting second"
    r = decide(client, heads["bob"], 1, "include")
    assert r.status_code == 200
    ta = r.json()["stages"]["title_abstract"]
    assert ta["state"] == "agreed include" and ta["outcome"] == "include"
    assert r.json()["open_stage"] == "full_text" and r.json()["screening"] == "full text: pending"
    # the store's status column follows
    assert client.get("/api/screening/1").json()["status"] == "full text: pending"
    # full text, two includes: included
    assert decide(client, heads["alice"], 1, "include", stage="full_text").status_code == 200
    r = decide(client, heads["carol"], 1, "include", stage="full_text")
    assert r.json()["screening"] == "included" and r.json()["open_stage"] is None


def test_two_excludes_agree(client, heads):
    decide(client, heads["alice"], 2, "exclude", "not_randomised")
    r = decide(client, heads["bob"], 2, "exclude", "not_randomised")
    assert r.json()["stages"]["title_abstract"]["state"] == "agreed exclude"
    assert r.json()["screening"] == "excluded at title/abstract"
    # a closed record takes no more decisions
    assert decide(client, heads["carol"], 2, "include", stage="title_abstract").status_code == 403


def test_conflict_is_shown_with_both_and_a_third_curator_resolves(client, heads):
    decide(client, heads["alice"], 1, "include")
    r = decide(client, heads["bob"], 1, "exclude", "not_randomised")
    assert r.status_code == 200 and r.json()["stages"]["title_abstract"]["state"] == "conflict"
    # side by side in the API and on the page
    q = client.get("/api/screening/queue", headers=heads["carol"]).json()
    assert [c["id"] for c in q["conflicts"]] == [1]
    assert client.get("/api/screening/queue", headers=heads["alice"]).json()["conflicts"] == []
    page = client.get("/screening").text
    sec = page[page.index('id="conflict-1"'):]
    sec = sec[:sec.index("</section>")]
    assert 'data-reviewer="alice">include<' in sec and 'data-reviewer="bob">exclude<' in sec
    assert "not randomised" in sec
    # neither reviewer may resolve her own conflict, nor decide again
    r = decide(client, heads["alice"], 1, "include", action="resolve", stage="title_abstract")
    assert r.status_code == 403 and "third curator" in r.json()["error"]
    assert decide(client, heads["bob"], 1, "include", stage="title_abstract").status_code == 403
    # a third reviewer's ordinary decision is refused: two have decided
    r = decide(client, heads["carol"], 1, "include", stage="title_abstract")
    assert r.status_code == 403 and "third curator" in r.json()["error"]
    # a viewer cannot resolve
    assert decide(client, heads["vic"], 1, "include", action="resolve").status_code == 403
    r = decide(client, heads["carol"], 1, "exclude", "not_randomised", action="resolve")
    assert r.status_code == 200, r.text
    ta = r.json()["stages"]["title_abstract"]
    assert ta["state"] == "resolved" and ta["resolution"]["reviewer"] == "carol" and ta["outcome"] == "exclude"
    assert r.json()["screening"] == "excluded at title/abstract"
    # resolved: nothing left to resolve
    assert decide(client, heads["carol"], 1, "include", action="resolve",
                  stage="title_abstract").status_code == 403
    # every decision and the resolution are audited, naming the user
    audit = client.get("/api/audit", headers=AUTH).json()
    rows = audit if isinstance(audit, list) else audit.get("rows", audit.get("items", []))
    acts = [(a["action"], a.get("user")) for a in rows if a["action"].startswith("screening")]
    assert ("screening decision", "alice") in acts and ("screening decision", "bob") in acts
    assert ("screening resolve", "carol") in acts


def test_the_same_reviewer_cannot_decide_twice(client, heads):
    assert decide(client, heads["alice"], 3, "include").status_code == 200
    r = decide(client, heads["alice"], 3, "exclude", "registry_no_results")
    assert r.status_code == 403 and "already decided" in r.json()["error"]
    # her queue no longer holds the record; bob's does
    assert 3 not in [x["id"] for x in client.get("/api/screening/queue", headers=heads["alice"]).json()["queue"]]
    assert 3 in [x["id"] for x in client.get("/api/screening/queue", headers=heads["bob"]).json()["queue"]]


def test_exclude_needs_a_reason_from_the_protocol(client, heads):
    r = decide(client, heads["alice"], 1, "exclude")
    assert r.status_code == 422 and r.json()["fields"] == ["reason"] and "reason" in r.json()["error"]
    r = decide(client, heads["alice"], 1, "exclude", "i_do_not_like_it")
    assert r.status_code == 422 and "unknown reason" in r.json()["error"]
    r = decide(client, heads["alice"], 1, "maybe")
    assert r.status_code == 422 and r.json()["fields"] == ["decision"]
    # nothing was recorded
    assert client.get("/api/screening/1").json()["stages"]["title_abstract"]["state"] == "pending"
    assert "not_randomised" in client.get("/api/screening").json()["reasons"]
    assert set(client.get("/api/screening").json()["reasons"]) == set(exclusion_reasons())


def test_writes_need_a_curator_token(client, heads):
    assert client.post("/api/screening/1/decision", json={"decision": "include"}).status_code == 401
    assert decide(client, heads["vic"], 1, "include").status_code == 403
    assert decide(client, heads["alice"], 999, "include").status_code == 404


def test_store_rules_directly(client, heads):
    st = client.app.state.store
    with pytest.raises(ScreeningInputError):
        st.record_decision(1, "title_abstract", "alice", "exclude")
    with pytest.raises(Forbidden):  # full text before inclusion at title/abstract
        st.record_decision(1, "full_text", "alice", "include")
    with pytest.raises(Forbidden):  # the bootstrap account is for administration
        st.record_decision(1, "title_abstract", "bootstrap", "include")


def test_prisma_update_counts(client, heads):
    # record 1: included after full text; record 2: excluded at title/abstract (agreed);
    # record 3: conflict at title/abstract resolved to include, full text excluded
    for who in ("alice", "bob"):
        decide(client, heads[who], 1, "include")
    decide(client, heads["alice"], 1, "include", stage="full_text")
    decide(client, heads["bob"], 1, "include", stage="full_text")
    for who in ("alice", "bob"):
        decide(client, heads[who], 2, "exclude", "not_randomised")
    decide(client, heads["alice"], 3, "include")
    decide(client, heads["bob"], 3, "exclude", "registry_no_results")
    decide(client, heads["carol"], 3, "include", action="resolve")
    mid = client.get("/api/screening/prisma").json()["update"]
    assert mid["sought"] == 2 and mid["assessed"] == 1 and mid["awaiting"]["full_text"] == {"pending": 1}
    decide(client, heads["alice"], 3, "exclude", "no_usable_data", stage="full_text")
    decide(client, heads["carol"], 3, "exclude", "no_usable_data", stage="full_text")
    flow = client.get("/api/screening/prisma").json()
    # the computed flow keeps its contract keys exactly; the update is one extra key
    assert set(flow) == set(CONTRACT_KEYS) | {"update"}
    up = flow["update"]
    assert up["identified"] == 3 and up["duplicates_at_import"] is None
    assert up["screened"] == 3 and up["excluded_screening"] == 1
    assert up["excluded_screening_reasons"] == {"not_randomised": 1}
    assert up["sought"] == 2 and up["assessed"] == 2
    assert up["excluded_full"] == {"no_usable_data": 1} and up["included"] == 1
    assert up["awaiting"] == {"title_abstract": {}, "full_text": {}}
    assert "3 record(s) imported" in client.get("/screening").text


def _csrf(c, url="/screening") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', c.get(url).text).group(1)


def _login(c, tok_head: dict) -> None:
    tok = tok_head["Authorization"].split(" ", 1)[1]
    r = c.post("/login", data={"token": tok, "csrf_token": _csrf(c, "/login")}, follow_redirects=False)
    assert r.status_code == 303


def test_forms_need_csrf_and_login_and_show_the_queue(client, heads):
    # no session, no valid CSRF: refused, nothing recorded
    assert client.post("/screening/1/decision", data={"decision": "include", "stage": "title_abstract",
                                                      "csrf_token": "x"}).status_code == 403
    _login(client, heads["alice"])
    page = client.get("/screening").text
    assert 'id="screen-1"' in page and "Tacrolimus versus mycophenolate" in page and "40000001" in page
    assert 'value="not_randomised"' in page
    r = client.post("/screening/1/decision", data={"decision": "exclude", "reason": "", "stage": "title_abstract",
                                                   "csrf_token": _csrf(client)})
    assert r.status_code == 400 and 'id="err-1"' in r.text and "reason" in r.text
    r = client.post("/screening/1/decision", data={"decision": "include", "stage": "title_abstract",
                                                   "csrf_token": _csrf(client)}, follow_redirects=False)
    assert r.status_code == 303
    assert 'id="screen-1"' not in client.get("/screening").text  # decided: out of her queue
    assert client.app.state.store.screening_status(1)["stages"]["title_abstract"]["state"] == "awaiting second"
    r = client.post("/screening/1/decision", data={"decision": "include", "stage": "title_abstract",
                                                   "csrf_token": _csrf(client)})
    assert r.status_code == 403


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_store_screening_on_both_backends(backend, request, tmp_path):
    from lnsynth.web.store import Store

    st = Store(url=request.getfixturevalue("pg_url")) if backend == "postgresql" else Store(tmp_path / "s.sqlite")
    try:
        for name in ("ann", "ben", "cat"):
            st.add_user(name, "curator", None, "cli")
        (rid,) = st.queue_screening(RECORDS[:1], "new.ris", "ris")
        st.record_decision(rid, "title_abstract", "ann", "include")
        with pytest.raises(Forbidden):
            st.record_decision(rid, "title_abstract", "ann", "include")
        assert st.record_decision(rid, "title_abstract", "ben", "exclude",
                                  "not_randomised")["stages"]["title_abstract"]["state"] == "conflict"
        with pytest.raises(Forbidden):
            st.resolve_conflict(rid, "title_abstract", "ben", "include")
        out = st.resolve_conflict(rid, "title_abstract", "cat", "include", note="randomised, see methods")
        assert out["stages"]["title_abstract"]["state"] == "resolved" and out["open_stage"] == "full_text"
        assert st.screening_counts()["sought"] == 1
        assert [r["id"] for r in st.screening_queue("ann")] == [rid]  # the full-text stage is new for everyone
    finally:
        st.close()
