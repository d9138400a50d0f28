"""Web app: named curators, server-side sessions, throttled login, token strength and the two-person rule."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("argon2")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import lnsynth.web.auth as auth_mod  # noqa: E402
from lnsynth.cli import app as cli_app  # noqa: E402
from lnsynth.web import create_app  # noqa: E402
from lnsynth.web.auth import check_token, read_token  # noqa: E402

TOKEN = "auth-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TRIAL = "bao2008"
PW = {"alice": "alice-password-1", "bob": "bob-password-22", "carol": "carol-password-3", "vic": "viewer-password"}
ROLE = {"alice": "curator", "bob": "curator", "carol": "reviewer", "vic": "viewer"}


@pytest.fixture(autouse=True)
def fast_argon2(monkeypatch):
    """Cheaper argon2 parameters for the tests only (the app uses argon2-cffi's RFC 9106 defaults)."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(auth_mod, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(auth_mod, "_DUMMY", [])


def good(**kw):
    body = {"arm": "mt", "outcome": "complete remission", "events": 15, "n": 20, "timepoint_weeks": 39,
            "source": "peleg2020", "location": "Table 1", "quote": "15 of 20 in complete remission"}
    body.update(kw)
    return body


@pytest.fixture()
def db(tmp_path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture()
def client(db):
    with TestClient(create_app(db, TOKEN)) as c:
        yield c


def make_users(client) -> dict[str, dict]:
    """Users made by the bootstrap admin, each with an API token header."""
    heads = {}
    for name, role in ROLE.items():
        r = client.post("/api/users", json={"name": name, "role": role, "password": PW[name]}, headers=AUTH)
        assert r.status_code == 201, r.text
        tok = client.post(f"/api/users/{name}/tokens", json={"label": "test"}, headers=AUTH).json()["token"]
        heads[name] = {"Authorization": f"Bearer {tok}"}
    return heads


def csrf_of(client, url="/login") -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).text)
    assert m, url
    return m.group(1)


def login(client, name: str, password: str | None = None, **kw):
    return client.post("/login", data={"username": name, "password": PW[name] if password is None else password,
                                       "csrf_token": csrf_of(client)}, follow_redirects=False, **kw)


def analysed(client, trial=TRIAL) -> list[tuple]:
    """(arm, endpoint, events, n) of the trial as the analyses see it (Store.evidence)."""
    ev = client.app.state.store.evidence()
    st = next((s for s in ev.studies if s.id == trial), None)
    if st is None:
        return []
    return [(o.arm, o.endpoint, o.events.value if o.events else None, o.n.value if o.n else None,
             o.timepoint.weeks if o.timepoint else None) for o in st.outcomes]


# ----------------------------------------------------------------- token strength
@pytest.mark.parametrize("tok", ["a", " ", "short-token-15ch", " " + "x" * 20, "x" * 20 + "\n"])
def test_weak_or_blank_tokens_are_refused(tok):
    if len(tok) == 16 and tok.strip() == tok:
        assert check_token(tok) == tok  # exactly 16 characters is enough
        return
    with pytest.raises(ValueError):
        check_token(tok)


def test_insecure_dev_token_allows_short_but_never_blank():
    assert check_token("dev", insecure_dev_token=True) == "dev"
    with pytest.raises(ValueError):
        check_token("   ", insecure_dev_token=True)
    assert check_token(None) is None


def test_token_from_file_or_environment(tmp_path):
    f = tmp_path / "tok"
    f.write_text("file-token-0123456789\n")
    assert read_token(f, env={"LNSYNTH_TOKEN": "env-token"}) == "file-token-0123456789"
    assert read_token(None, env={"LNSYNTH_TOKEN": "env-token"}) == "env-token"
    assert read_token(None, env={}) is None
    with pytest.raises(ValueError, match="cannot read"):
        read_token(tmp_path / "missing")
    (tmp_path / "empty").write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_token(tmp_path / "empty")


def test_serve_refuses_weak_token_and_command_line_token(tmp_path, monkeypatch):
    runner = CliRunner()
    db = tmp_path / "s.db"
    r = runner.invoke(cli_app, ["serve", "--db", str(db), "--token", "x" * 30])
    assert r.exit_code == 2 and "ps" in r.output
    monkeypatch.setenv("LNSYNTH_TOKEN", "a")
    r = runner.invoke(cli_app, ["serve", "--db", str(db)])
    assert r.exit_code == 2 and "16" in r.output and "--insecure-dev-token" in r.output
    monkeypatch.delenv("LNSYNTH_TOKEN")
    (tmp_path / "tok").write_text(" \n")
    r = runner.invoke(cli_app, ["serve", "--db", str(db), "--token-file", str(tmp_path / "tok")])
    assert r.exit_code == 2 and "blank" in r.output
    assert not db.exists()  # refused before anything was created
    with pytest.raises(ValueError):
        create_app(db, " ")  # a token that can never match is an error, not a silent read-only app


# ----------------------------------------------------------------- sessions
def test_cookie_holds_only_a_random_session_id(client, db):
    make_users(client)
    r = login(client, "alice")
    assert r.status_code == 303
    sid = client.cookies.get("lnsynth_session")
    assert sid and len(sid) >= 40
    fp = hashlib.sha256(TOKEN.encode()).hexdigest()
    for cookie in client.cookies.jar:
        assert fp[:12] not in cookie.value and TOKEN not in cookie.value
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    rows = sqlite3.connect(db).execute("SELECT id_hash, user FROM sessions").fetchall()
    assert rows == [(hashlib.sha256(sid.encode()).hexdigest(), "alice")]  # only the id's digest is stored
    assert "alice (curator)" in client.get("/trials").text


def test_logout_revokes_session_and_replayed_cookie_is_refused(client):
    make_users(client)
    assert login(client, "alice").status_code == 303
    sid = client.cookies.get("lnsynth_session")
    csrf = csrf_of(client, f"/trials/{TRIAL}")
    form = {k: str(v) for k, v in good().items()}
    ok = client.post(f"/trials/{TRIAL}/outcomes", data={**form, "csrf_token": csrf}, follow_redirects=False)
    assert ok.status_code == 303
    assert client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    # an attacker replays the captured cookie and CSRF token
    with TestClient(client.app) as thief:
        thief.cookies.set("lnsynth_session", sid)
        r = thief.post(f"/trials/{TRIAL}/outcomes", data={**form, "csrf_token": csrf}, follow_redirects=False)
        assert r.status_code == 403
        assert "Log in" in thief.get("/audit").text and 'id="audit"' not in thief.get("/audit").text
    n = sum(1 for o in client.get(f"/api/trials/{TRIAL}/outcomes").json() if o["entered_by"] == "alice")
    assert n == 1


def test_logout_needs_the_session_csrf(client):
    make_users(client)
    login(client, "alice")
    r = client.post("/logout", data={"csrf_token": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    assert 'id="whoami"' in client.get("/trials").text  # still logged in


def test_login_rotates_the_session_id(client):
    make_users(client)
    login(client, "alice")
    first = client.cookies.get("lnsynth_session")
    login(client, "alice")
    second = client.cookies.get("lnsynth_session")
    assert first != second
    with TestClient(client.app) as other:
        other.cookies.set("lnsynth_session", first)
        assert 'id="whoami"' not in other.get("/trials").text


def test_role_change_ends_sessions(client):
    make_users(client)
    login(client, "alice")
    assert 'id="whoami"' in client.get("/trials").text
    r = client.patch("/api/users/alice", json={"role": "viewer"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert 'id="whoami"' not in client.get("/trials").text


# ----------------------------------------------------------------- throttling
def test_login_throttled_per_username(client):
    make_users(client)
    codes = [login(client, "alice", "wrong-password").status_code for _ in range(6)]
    assert codes[:4] == [403] * 4 and codes[-1] == 429
    r = login(client, "alice")  # even the right password waits while locked
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert login(client, "bob").status_code == 303  # another user from the same address is not locked


def test_login_throttled_per_address(client):
    for i in range(auth_mod.IP_POLICY[0]):
        login(client, f"nobody{i}", "wrong-password")
    r = login(client, "someone", "wrong-password")
    assert r.status_code == 429 and "retry-after" in r.headers


def test_lock_expires(client, monkeypatch):
    make_users(client)
    for _ in range(auth_mod.USER_POLICY[0]):
        login(client, "alice", "wrong-password")
    assert login(client, "alice").status_code == 429
    import time as _time

    later = _time.time() + 3600
    monkeypatch.setattr(auth_mod.time, "time", lambda: later)
    assert login(client, "alice").status_code == 303


# ----------------------------------------------------------------- users, roles, tokens
def test_passwords_are_argon2_hashes_and_users_need_admin(client, db):
    heads = make_users(client)
    hashes = dict(sqlite3.connect(db).execute("SELECT name, password_hash FROM users").fetchall())
    assert hashes["alice"].startswith("$argon2id$") and PW["alice"] not in hashes["alice"]
    assert hashes["bootstrap"] is None  # the shared token is never stored
    tokens = [r[0] for r in sqlite3.connect(db).execute("SELECT hash FROM api_tokens")]
    assert all(re.fullmatch(r"[0-9a-f]{64}", t) for t in tokens)
    assert client.post("/api/users", json={"name": "eve", "role": "admin", "password": "x" * 12},
                       headers=heads["alice"]).status_code == 403
    r = client.post("/api/users", json={"name": "Bad Name", "role": "chief", "password": "short"}, headers=AUTH)
    assert r.status_code == 422 and set(r.json()["fields"]) == {"name", "role", "password"}
    assert client.post("/api/users", json={"name": "alice", "role": "viewer"}, headers=AUTH).status_code == 409
    assert client.get("/api/me", headers=heads["carol"]).json() == {"name": "carol", "role": "reviewer"}
    assert client.get("/api/users", headers=AUTH).status_code == 200
    assert client.get("/api/users", headers=heads["bob"]).status_code == 403


def test_viewer_cannot_write_and_audit_names_the_user(client):
    heads = make_users(client)
    r = client.post(f"/api/trials/{TRIAL}/outcomes", json=good(), headers=heads["vic"])
    assert r.status_code == 403 and "viewer" in r.json()["error"]
    assert client.get("/api/audit", headers=heads["vic"]).status_code == 200
    rec = client.post(f"/api/trials/{TRIAL}/outcomes", json=good(), headers=heads["alice"]).json()
    last = client.get("/api/audit", headers=heads["vic"]).json()[-1]
    assert last["action"] == "create" and last["user"] == "alice" and "alice" in last["actor"]
    assert rec["entered_by"] == "alice" and rec["status"] == "pending"


def test_deactivated_user_loses_tokens_and_login(client):
    heads = make_users(client)
    client.patch("/api/users/bob", json={"active": False}, headers=AUTH)
    assert client.get("/api/me", headers=heads["bob"]).status_code == 403
    assert login(client, "bob").status_code == 403
    # the shared token's bootstrap admin can be retired once real admins exist
    client.post("/api/users", json={"name": "root", "role": "admin"}, headers=AUTH)
    root = {"Authorization": "Bearer " + client.post("/api/users/root/tokens", headers=AUTH).json()["token"]}
    assert client.patch("/api/users/bootstrap", json={"active": False}, headers=root).status_code == 200
    assert client.get("/api/me", headers=AUTH).status_code == 403
    assert client.get("/api/me", headers=root).json()["role"] == "admin"


def test_cli_users_add_and_token(tmp_path, monkeypatch):
    db = tmp_path / "cli.db"
    runner = CliRunner()
    r = runner.invoke(cli_app, ["users", "add", "dora", "--role", "admin", "--db", str(db)],
                      input="dora-password-9\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli_app, ["users", "add", "dora", "--role", "admin", "--db", str(db)], input="valid-unused-pass-9\n")
    assert r.exit_code == 2 and "exists" in r.output
    r = runner.invoke(cli_app, ["users", "add", "ed", "--role", "boss", "--db", str(db)], input="valid-unused-pass-9\n")
    assert r.exit_code == 2 and "--role" in r.output
    r = runner.invoke(cli_app, ["users", "add", "ed", "--role", "curator", "--db", str(db)], input="short\n")
    assert r.exit_code == 2 and "password" in r.output
    tok = runner.invoke(cli_app, ["users", "token", "dora", "--db", str(db)]).output.strip()
    assert tok.startswith("lns_")
    assert "dora\tadmin\tactive" in runner.invoke(cli_app, ["users", "list", "--db", str(db)]).output
    with TestClient(create_app(db)) as c:  # no shared token: per-user credentials only
        assert c.get("/api/me", headers={"Authorization": f"Bearer {tok}"}).json()["name"] == "dora"
        r = c.post("/login", data={"username": "dora", "password": "dora-password-9", "csrf_token": csrf_of(c)},
                   follow_redirects=False)
        assert r.status_code == 303


# ----------------------------------------------------------------- the two-person rule
def test_new_value_enters_analyses_only_after_a_second_curator(client):
    heads = make_users(client)
    before = analysed(client)
    rec = client.post(f"/api/trials/{TRIAL}/outcomes", json=good(), headers=heads["alice"]).json()
    assert analysed(client) == before  # pending: not analysed
    url = f"/api/trials/{TRIAL}/outcomes/{rec['id']}/verify"
    r = client.post(url, json={"version": 1}, headers=heads["alice"])
    assert r.status_code == 403 and "two-person" in r.json()["error"]
    assert client.post(url, json={"version": 1}, headers=heads["vic"]).status_code == 403  # viewer
    assert client.post(url, json={"version": 7}, headers=heads["bob"]).status_code == 409
    r = client.post(url, json={"version": 1}, headers=heads["bob"])
    assert r.status_code == 200 and r.json()["status"] == "verified" and r.json()["verified_by"] == "bob"
    assert ("mt", "complete remission", 15, 20, 39) in analysed(client)
    c = client.get("/api/verification").json()
    assert c["verified"] == 1 and c["pending"] == 0 and c["repository"] > 100
    assert "1 value verified by two people" in c["summary"]
    assert client.post(url, json={"version": 1}, headers=heads["carol"]).status_code == 403  # nothing to verify


def test_changed_repository_value_keeps_approved_value_until_verified(client):
    heads = make_users(client)
    seeded = client.get(f"/api/trials/{TRIAL}/outcomes").json()[0]
    assert seeded["status"] == "repository"
    old = analysed(client)
    r = client.put(f"/api/trials/{TRIAL}/outcomes/{seeded['id']}",
                   json={"version": 1, "events": seeded["events"] + 1}, headers=heads["alice"])
    assert r.status_code == 200 and r.json()["status"] == "pending" and r.json()["in_analyses"]
    assert analysed(client) == old  # the analyses keep the repository value
    client.post(f"/api/trials/{TRIAL}/outcomes/{seeded['id']}/verify", json={"version": 2}, headers=heads["bob"])
    new = analysed(client)
    assert new != old and new[0][2] == seeded["events"] + 1


def test_disagreement_goes_to_queue_and_is_resolved_by_a_reviewer(client):
    heads = make_users(client)
    rec = client.post(f"/api/trials/{TRIAL}/outcomes", json=good(), headers=heads["alice"]).json()
    url = f"/api/trials/{TRIAL}/outcomes/{rec['id']}/verify"
    same = client.post(url, json={"version": 1, "reading": {"events": 15}}, headers=heads["bob"])
    assert same.json()["status"] == "verified"  # the same reading verifies
    rec = client.post(f"/api/trials/{TRIAL}/outcomes", json=good(events=12, quote="12 of 20"),
                      headers=heads["alice"]).json()
    url = f"/api/trials/{TRIAL}/outcomes/{rec['id']}/verify"
    bad = client.post(url, json={"version": 1, "reading": {"events": 99}}, headers=heads["bob"])
    assert bad.status_code == 422 and "reading.events" in bad.json()["fields"]  # events > n, named
    d = client.post(url, json={"version": 1, "reading": {"events": 11}, "note": "Table 1 says 11"},
                    headers=heads["bob"])
    assert d.status_code == 200 and d.json()["status"] == "disputed" and not d.json()["in_analyses"]
    queue = client.get("/api/review").json()
    item = next(i for i in queue if i["record"]["id"] == rec["id"])
    assert item["record"]["events"] == 12 and item["reviews"][0]["proposed"]["events"] == 11
    page = client.get("/review").text
    assert f'id="side-outcome-{rec["id"]}"' in page and "Reading by bob" in page and "12 of 20" in page
    review_id = item["reviews"][0]["id"]
    adopt = {"version": 1, "decision": "adopt", "review_id": review_id}
    assert client.post(url, json=adopt, headers=heads["alice"]).status_code == 403  # curator: no resolving
    r = client.post(url, json=adopt, headers=heads["carol"])
    assert r.status_code == 200 and r.json()["status"] == "verified" and r.json()["events"] == 11
    assert r.json()["entered_by"] == "bob" and r.json()["verified_by"] == "carol"
    assert ("mt", "complete remission", 11, 20, 39) in analysed(client)
    assert not any(i["record"]["id"] == rec["id"] for i in client.get("/api/review").json())


def test_pending_trial_and_adverse_event(client):
    heads = make_users(client)
    body = {"id": "smith2024", "label": "Smith et al. 2024", "year": "2024", "design": "open-label RCT",
            "source": "smith2024_src", "location": "Methods", "quote": "40 patients were randomised",
            "n_randomised": "40", "arm_id_1": "tac", "arm_label_1": "Tacrolimus", "arm_regimen_1": "TAC",
            "arm_n_1": "20", "arm_id_2": "mmf", "arm_label_2": "MMF", "arm_regimen_2": "MMF", "arm_n_2": "20"}
    bad = client.post("/api/trials", json={**body, "year": "²⁰²⁴", "arm_regimen_2": "XYZ"}, headers=heads["alice"])
    assert bad.status_code == 422 and set(bad.json()["fields"]) == {"year", "arm_regimen_2"}
    r = client.post("/api/trials", json=body, headers=heads["alice"])
    assert r.status_code == 201 and r.json()["status"] == "pending"
    ev_ids = [s.id for s in client.app.state.store.evidence().studies]
    assert "smith2024" not in ev_ids
    assert client.post("/api/trials/smith2024/verify", headers=heads["alice"]).status_code == 403
    assert client.post("/api/trials/smith2024/verify", headers=heads["bob"]).json()["status"] == "verified"
    assert "smith2024" in [s.id for s in client.app.state.store.evidence().studies]

    ae = {"arm": "tac", "event": "Pneumonia", "category": "Infection", "events": 2, "n": 20, "serious": True,
          "source": "smith2024_src", "location": "Table 3", "quote": "Pneumonia 2/20"}
    bad = client.post("/api/trials/smith2024/adverse-events", json={**ae, "arm": "x", "serious": "maybe"},
                      headers=heads["alice"])
    assert bad.status_code == 422 and set(bad.json()["fields"]) == {"arm", "serious"}
    bad = client.post("/api/trials/smith2024/adverse-events", json={**ae, "events": 30}, headers=heads["alice"])
    assert bad.status_code == 422 and bad.json()["fields"] == ["events"]
    rec = client.post("/api/trials/smith2024/adverse-events", json=ae, headers=heads["alice"]).json()
    assert rec["category"] == "infection" and rec["status"] == "pending"

    def aes():
        st = next(s for s in client.app.state.store.evidence().studies if s.id == "smith2024")
        return [(a.event, a.events.value) for a in st.adverse_events]

    assert aes() == []
    client.post(f"/api/trials/smith2024/adverse-events/{rec['id']}/verify", json={"version": 1}, headers=heads["bob"])
    assert aes() == [("Pneumonia", 2)]
    upd = client.put(f"/api/trials/smith2024/adverse-events/{rec['id']}", json={"version": 1, "events": 3},
                     headers=heads["bob"])
    assert upd.status_code == 200 and upd.json()["status"] == "pending"
    assert aes() == [("Pneumonia", 2)]  # the verified value stays until the change is verified
    # deleting a value the analyses use is a proposal until a second person confirms it (issue 26)
    assert client.delete(f"/api/trials/smith2024/adverse-events/{rec['id']}?version=2",
                         headers=heads["alice"]).status_code == 202
    assert aes() == [("Pneumonia", 2)]
    assert client.delete(f"/api/trials/smith2024/adverse-events/{rec['id']}?version=3",
                         headers=heads["carol"]).status_code == 200
    assert aes() == []


def test_seeded_adverse_events_are_kept_from_the_package(client):
    from lnsynth.evidence.load import load_evidence

    ev0 = load_evidence()
    ev = client.app.state.store.evidence()
    assert [s.adverse_events for s in ev.studies] == [s.adverse_events for s in ev0.studies]
    some = next(s for s in ev0.studies if s.adverse_events)
    rows = client.get(f"/api/trials/{some.id}/adverse-events").json()
    assert len(rows) == len(some.adverse_events) and all(r["status"] == "repository" for r in rows)
    assert 'id="adverse-events"' in client.get(f"/trials/{some.id}").text


def test_curation_forms_need_session_csrf_and_name_fields(client):
    make_users(client)
    tok = csrf_of(client, "/trials/new")
    r = client.post("/trials/new", data={"csrf_token": tok, "id": "x"}, follow_redirects=False)
    assert r.status_code == 403 and "log in" in r.text  # anonymous
    login(client, "alice")
    r = client.post("/trials/new", data={"id": "jones2023"}, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    tok = csrf_of(client, "/trials/new")
    r = client.post("/trials/new", data={"csrf_token": tok, "id": "Jones", "year": "1800", "label": "J"},
                    follow_redirects=False)
    assert r.status_code == 400
    for f in ("id", "year", "design", "source", "location", "quote", "arm_id_1"):
        assert f'id="err-{f}"' in r.text, f
    rec = client.get(f"/api/trials/{TRIAL}/outcomes").json()[0]
    tok = csrf_of(client, f"/trials/{TRIAL}/outcomes/{rec['id']}/edit")
    r = client.post(f"/trials/{TRIAL}/outcomes/{rec['id']}/edit",
                    data={**{k: str(v) for k, v in good().items()}, "n": "abc", "version": "1", "csrf_token": tok})
    assert r.status_code == 400 and 'id="err-n"' in r.text
    r = client.post(f"/trials/{TRIAL}/outcomes/{rec['id']}/delete", data={"version": "1", "csrf_token": "x"})
    assert r.status_code == 403
    r = client.post(f"/trials/{TRIAL}/outcomes/{rec['id']}/delete", data={"version": "1", "csrf_token": tok},
                    follow_redirects=False)
    assert r.status_code == 303
    # a repository value: the deletion is proposed, a second person confirms it (issue 26)
    assert client.get(f"/api/trials/{TRIAL}/outcomes/{rec['id']}").json()["deletion"]["by"] == "alice"


def test_authenticated_pages_are_not_cached(client):
    make_users(client)
    login(client, "alice")
    for url in ("/trials", "/review", "/audit", "/account"):
        assert client.get(url).headers.get("cache-control") == "no-store", url


def test_verification_counts_on_analysis_pages(client):
    heads = make_users(client)
    client.post(f"/api/trials/{TRIAL}/outcomes", json=good(), headers=heads["alice"])
    for url in ("/analysis", "/network", "/questions"):
        text = client.get(url).text
        assert 'id="verification"' in text and "0 values verified by two people" in text and "1 pending" in text


def test_curation_endpoints_never_5xx_on_junk(client):
    heads = make_users(client)
    a = heads["alice"]
    junk = [None, True, -1, 0, 1.5, 10 ** 40, "", "x" * 3000, [], {}, "<script>", "²", "\ud800", "9" * 5000]
    bad = []

    def check(r, what):
        if r.status_code >= 500:
            bad.append((what, r.status_code))

    def send(method, url, body, headers):  # json.dumps escapes lone surrogates as \ud800, as an attacker would
        return client.request(method, url, content=json.dumps(body).encode(),
                              headers={**headers, "Content-Type": "application/json"})

    rec = client.post(f"/api/trials/{TRIAL}/outcomes", json=good(), headers=a).json()
    for v in junk:
        for url, body in [
            ("/api/users", {"name": v, "role": v, "password": v}),
            ("/api/users/alice/tokens", {"label": v}),
            ("/api/trials", {"id": v, "label": v, "year": v, "design": v, "arm_id_1": v, "arm_n_1": v}),
            (f"/api/trials/{TRIAL}/adverse-events", {"arm": v, "event": v, "category": v, "events": v, "n": v,
                                                     "serious": v, "source": v, "location": v, "quote": v}),
            (f"/api/trials/{TRIAL}/outcomes/{rec['id']}/verify", {"version": v, "reading": {"events": v}, "note": v}),
            (f"/api/trials/{TRIAL}/outcomes/{rec['id']}/verify", {"version": 1, "decision": "adopt", "review_id": v}),
        ]:
            check(send("POST", url, body, heads["carol"] if "verify" in url else AUTH), (url, repr(v)[:20]))
        check(send("PATCH", "/api/users/alice", {"role": v, "active": v, "password": v}, AUTH), ("patch", repr(v)[:20]))
    for path in ["/api/trials/bao2008/outcomes/²/verify", "/api/trials/bao2008/outcomes/" + "9" * 5000 + "/verify",
                 "/api/trials/bao2008/nope/1/verify", "/api/trials/nope2000/outcomes/1/verify",
                 "/api/trials/bao2008/adverse-events/①", "/api/trials/nope2000/verify"]:
        check(client.post(path, json={"version": 1}, headers=a), path)
        check(client.get(path), path)
    login(client, "alice")
    tok = csrf_of(client, "/trials/new")
    for v in ["", "²", "9" * 5000, "x" * 3000, "<b>", "-1"]:
        form = {"csrf_token": tok, "id": v, "year": v, "label": v, "design": v, "n_randomised": v, "arm_id_1": v,
                "arm_n_1": v, "arm_regimen_1": v, "source": v, "location": v, "quote": v}
        check(client.post("/trials/new", data=form), ("trial form", v[:10]))
        ae = {"csrf_token": tok, "arm": v, "event": v, "category": v, "events": v, "n": v, "serious": v}
        check(client.post(f"/trials/{TRIAL}/adverse-events", data=ae), ("ae form", v[:10]))
        check(client.post(f"/review/outcomes/{TRIAL}/{rec['id']}", data={"csrf_token": tok, "version": v,
                                                                         "decision": v, "events": v}), ("review", v))
        check(client.post(f"/trials/{TRIAL}/outcomes/{rec['id']}/delete", data={"csrf_token": tok, "version": v}),
              ("delete", v[:10]))
    for u in ["/trials/bao2008/outcomes/²/edit", "/trials/bao2008/nope/1/edit", "/trials/nope2000/adverse-events/new",
              "/review", "/account"]:
        check(client.get(u), u)
    check(client.post("/login", data={"username": "\x00" * 300, "password": "x", "csrf_token": csrf_of(client)}),
          "login junk")
    assert not bad


def test_csrf_token_is_bound_to_its_own_session(client):
    make_users(client)
    with TestClient(client.app) as other:
        theirs = csrf_of(other)  # another visitor's pre-session token
    r = client.post("/login", data={"username": "alice", "password": PW["alice"], "csrf_token": theirs},
                    follow_redirects=False)
    assert r.status_code == 403  # no pre-session cookie of its own
    csrf_of(client)  # now it has one, with a different token
    r = client.post("/login", data={"username": "alice", "password": PW["alice"], "csrf_token": theirs},
                    follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    assert login(client, "alice").status_code == 303
    before_login = theirs
    mine = csrf_of(client, f"/trials/{TRIAL}")
    assert mine != before_login
    form = {k: str(v) for k, v in good().items()}
    r = client.post(f"/trials/{TRIAL}/outcomes", data={**form, "csrf_token": before_login}, follow_redirects=False)
    assert r.status_code == 403
    audit = client.get("/audit").text
    assert '<b class="audit-user">bootstrap</b>' in audit  # the audit page names the user of each write
