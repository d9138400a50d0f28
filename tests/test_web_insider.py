"""Web app against an insider (issue 26): findings that the two-person rule and the throttle must hold.

Each test failed on the code before its fix:
- a second curator's edit of *another field* made her the entrant, so the first curator could then
  verify her own count (the store kept only the last editor);
- uvicorn trusted ``X-Forwarded-For`` from 127.0.0.1, so every guess could claim a new address;
- any curator settled a dispute by verifying the entry, and the entrant's re-save made it vanish from /review
  (deleting and re-entering did too);
- one curator's deletion of a repository or verified value removed it from the analyses at once;
- the bootstrap account verified values, and an admin verified through an account she made (or entered through one);
- API tokens could be neither listed nor revoked one by one;
- 20 failures from one address locked every curator out, and 6 against alice locked her out even of her token's
  lifting; sessions had no idle timeout; users could not change their own password.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("argon2")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

import lnsynth.web.auth as auth_mod  # noqa: E402
from lnsynth.web import create_app  # noqa: E402
from lnsynth.web.server import running, uvicorn_config  # noqa: E402

TOKEN = "insider-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TRIAL = "bao2008"
PW = {"alice": "alice-password-1", "bob": "bob-password-22", "carol": "carol-password-3"}
ROLE = {"alice": "curator", "bob": "curator", "carol": "reviewer"}


@pytest.fixture(autouse=True)
def fast_argon2(monkeypatch):
    from argon2 import PasswordHasher

    monkeypatch.setattr(auth_mod, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(auth_mod, "_DUMMY", [])


@pytest.fixture()
def client(tmp_path):
    with TestClient(create_app(tmp_path / "store.db", TOKEN)) as c:
        yield c


def make_users(client) -> dict[str, dict]:
    heads = {}
    for name, role in ROLE.items():
        assert client.post("/api/users", json={"name": name, "role": role, "password": PW[name]},
                           headers=AUTH).status_code == 201
        tok = client.post(f"/api/users/{name}/tokens", json={"label": "t"}, headers=AUTH).json()["token"]
        heads[name] = {"Authorization": f"Bearer {tok}"}
    return heads


def counts(client, trial=TRIAL) -> list[tuple]:
    st = next(s for s in client.app.state.store.evidence().studies if s.id == trial)
    return [(o.arm, o.events.value if o.events else None, o.timepoint.weeks if o.timepoint else None)
            for o in st.outcomes]


@pytest.mark.parametrize("kind", ["outcomes", "adverse-events"])
def test_entrant_cannot_verify_after_another_curator_edits_another_field(client, kind):
    heads = make_users(client)
    if kind == "outcomes":
        body = {"arm": "mt", "outcome": "complete remission", "events": 20, "n": 20, "timepoint_weeks": 39,
                "source": "peleg2020", "location": "Table 1", "quote": "20 of 20 in complete remission"}
    else:
        body = {"arm": "mt", "event": "Tremor", "category": "tremor", "events": 7, "n": 20, "serious": False,
                "source": "peleg2020", "location": "Table 2", "quote": "tremor (7/20)"}
    base = f"/api/trials/{TRIAL}/{kind}"
    rec = client.post(base, json=body, headers=heads["alice"]).json()
    edit = client.put(f"{base}/{rec['id']}", json={"version": 1, "location": "Table 1, row 2"}, headers=heads["bob"])
    assert edit.status_code == 200 and edit.json()["status"] == "pending"
    url = f"{base}/{rec['id']}/verify"
    r = client.post(url, json={"version": 2}, headers=heads["alice"])  # alice authored the count: refused
    assert r.status_code == 403 and "two-person" in r.json()["error"]
    r = client.post(url, json={"version": 2}, headers=heads["bob"])  # bob authored the location: refused
    assert r.status_code == 403
    if kind == "outcomes":
        assert (("mt", 20, 39.0) not in counts(client)) and (("mt", 20, 39) not in counts(client))
    r = client.post(url, json={"version": 2}, headers=heads["carol"])  # a third person may
    assert r.status_code == 200 and r.json()["status"] == "verified"


def test_authors_reset_after_verification(client):
    """Once verified, a later change starts a new round: its author cannot verify it, others can."""
    heads = make_users(client)
    body = {"arm": "mt", "outcome": "complete remission", "events": 14, "n": 20, "timepoint_weeks": 39,
            "source": "peleg2020", "location": "Table 1", "quote": "14 of 20"}
    base = f"/api/trials/{TRIAL}/outcomes"
    rec = client.post(base, json=body, headers=heads["alice"]).json()
    assert client.post(f"{base}/{rec['id']}/verify", json={"version": 1}, headers=heads["bob"]).status_code == 200
    upd = client.put(f"{base}/{rec['id']}", json={"version": 1, "events": 15}, headers=heads["bob"]).json()
    assert client.post(f"{base}/{rec['id']}/verify", json={"version": upd["version"]},
                       headers=heads["bob"]).status_code == 403
    assert client.post(f"{base}/{rec['id']}/verify", json={"version": upd["version"]},
                       headers=heads["alice"]).status_code == 200


def test_forwarded_headers_are_not_trusted_by_default():
    cfg = uvicorn_config(lambda *a: None, "127.0.0.1", 8000)
    assert cfg.proxy_headers is False
    cfg = uvicorn_config(lambda *a: None, "127.0.0.1", 8000, forwarded_allow_ips="10.0.0.5")
    assert cfg.proxy_headers is True and cfg.forwarded_allow_ips == "10.0.0.5"


def test_spoofed_forwarded_for_does_not_evade_the_login_throttle(tmp_path):
    app = create_app(tmp_path / "store.db", TOKEN)
    with TestClient(app) as c:
        make_users(c)
    with running(app) as base, httpx.Client(base_url=base, follow_redirects=False) as h:
        codes = []
        for i in range(auth_mod.USER_POLICY[0] + 1):
            page = h.get("/login").text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            r = h.post("/login", data={"username": "alice", "password": "wrong-password", "csrf_token": csrf},
                       headers={"X-Forwarded-For": f"203.0.113.{i + 1}"})
            codes.append(r.status_code)
        assert codes[-1] == 429, codes
        rows = app.state.store._conn().execute("SELECT key FROM login_failures WHERE scope = 'ip'").fetchall()
        assert rows and {r[0] for r in rows} == {"127.0.0.1"}, [r[0] for r in rows]


def test_openapi_schema_is_not_served(client):
    assert client.get("/openapi.json").status_code == 404


@pytest.mark.parametrize("pw", ["password123", "aaaaaaaaaaaa", "ababababababab", "Qwerty123456"[:0] + "qwertyuiop"])
def test_common_or_trivial_passwords_are_refused(client, pw):
    r = client.post("/api/users", json={"name": "dora", "role": "curator", "password": pw}, headers=AUTH)
    assert r.status_code == 422 and "password" in r.text


def _login(c, name):
    page = c.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return c.post("/login", data={"username": name, "password": PW[name], "csrf_token": csrf},
                  follow_redirects=False)


def _csrf(c, url="/account"):
    return re.search(r'name="csrf_token" value="([^"]+)"', c.get(url).text).group(1)


def test_password_reset_revokes_api_tokens_and_sessions(client):
    heads = make_users(client)
    assert client.get("/api/me", headers=heads["alice"]).status_code == 200
    r = client.patch("/api/users/alice", json={"password": "a-brand-new-passphrase-7"}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert client.get("/api/me", headers=heads["alice"]).status_code == 403


def test_logout_everywhere_ends_the_users_other_sessions(tmp_path):
    app = create_app(tmp_path / "store.db", TOKEN)
    with TestClient(app) as a, TestClient(app) as b:
        make_users(a)
        assert _login(a, "alice").status_code == 303 and _login(b, "alice").status_code == 303
        assert "Logged in as" in b.get("/account").text
        r = a.post("/logout", data={"csrf_token": _csrf(a), "everywhere": "1"}, follow_redirects=False)
        assert r.status_code == 303
        assert "Logged in as" not in b.get("/account", follow_redirects=True).text
        acts = [(e["actor"], e["action"]) for e in app.state.store.audit()]
        assert ("alice", "login") in acts and ("alice", "logout everywhere") in acts


def test_failed_logins_are_audited_with_the_connection_address(client):
    make_users(client)
    page = client.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"username": "alice", "password": "wrong-password", "csrf_token": csrf},
                headers={"X-Forwarded-For": "198.51.100.7"}, follow_redirects=False)
    rows = [e for e in client.app.state.store.audit() if e["action"] == "login failed"]
    assert rows and rows[0]["actor"] == "alice" and "198.51.100.7" not in str(rows[0])


def test_rotating_the_bootstrap_token_ends_bootstrap_sessions(tmp_path):
    db = tmp_path / "store.db"
    with TestClient(create_app(db, TOKEN)) as c:
        page = c.get("/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert c.post("/login", data={"token": TOKEN, "csrf_token": csrf}, follow_redirects=False).status_code == 303
        cookie = c.cookies.get("lnsynth_session")
        assert "Logged in as" in c.get("/account").text
    with TestClient(create_app(db, "a-rotated-token-9876543210")) as c2:
        c2.cookies.set("lnsynth_session", cookie)
        assert "Logged in as" not in c2.get("/account", follow_redirects=True).text


# ----------------------------------------------------------------- disputes: a reviewer settles them
OUT = {"arm": "mt", "outcome": "complete remission", "events": 12, "n": 20, "timepoint_weeks": 39,
       "source": "peleg2020", "location": "Table 1", "quote": "12 of 20 in complete remission"}


def _disputed(client, heads) -> tuple[str, dict]:
    base = f"/api/trials/{TRIAL}/outcomes"
    rec = client.post(base, json=OUT, headers=heads["alice"]).json()
    d = client.post(f"{base}/{rec['id']}/verify", json={"version": 1, "reading": {"events": 11}},
                    headers=heads["bob"])
    assert d.status_code == 200 and d.json()["status"] == "disputed"
    return f"{base}/{rec['id']}", d.json()


def test_a_dispute_is_not_settled_by_a_curator_who_verifies_the_entry(client):
    heads = make_users(client)
    assert client.post("/api/users", json={"name": "dan", "role": "curator", "password": "dan-password-44"},
                       headers=AUTH).status_code == 201
    dan = {"Authorization": "Bearer " + client.post("/api/users/dan/tokens", json={}, headers=AUTH).json()["token"]}
    url, rec = _disputed(client, heads)
    r = client.post(url + "/verify", json={"version": rec["version"]}, headers=dan)  # a third curator agrees
    assert r.status_code == 403 and "reviewer" in r.json()["error"]
    assert client.get(url).json()["status"] == "disputed"
    assert ("mt", 12, 39) not in counts(client) and ("mt", 12, 39.0) not in counts(client)
    r = client.post(url + "/verify", json={"version": rec["version"]}, headers=heads["carol"])  # the reviewer may
    assert r.status_code == 200 and r.json()["status"] == "verified"


def test_entrant_resaving_keeps_the_dispute_open_with_the_earlier_entry(client):
    heads = make_users(client)
    url, rec = _disputed(client, heads)
    r = client.put(url, json={"version": rec["version"], "events": 13, "quote": "13 of 20 in complete remission"},
                   headers=heads["alice"])
    assert r.status_code == 200 and r.json()["status"] == "disputed", r.text
    item = next(i for i in client.get("/api/review").json() if i["record"]["id"] == rec["id"])
    kinds = {(x["decision"], x["reviewer"], x["proposed"]["events"]) for x in item["reviews"]}
    assert ("dispute", "bob", 11) in kinds and ("earlier entry", "alice", 12) in kinds
    page = client.get("/review").text
    assert f'id="review-outcome-{rec["id"]}"' in page and "Reading by bob" in page and "Earlier entry by alice" in page
    # and bob (not a reviewer) still cannot settle it by agreeing with the new entry
    v = client.get(url).json()["version"]
    assert client.post(url + "/verify", json={"version": v}, headers=heads["bob"]).status_code == 403
    assert client.get(url).json()["status"] == "disputed"


# ----------------------------------------------------------------- deletion needs a second person
def _analysed_ids(client, trial):
    st = next(s for s in client.app.state.store.evidence().studies if s.id == trial)
    return {o.id for o in st.outcomes}


def test_deleting_a_repository_value_is_pending_until_a_second_person_confirms(client):
    heads = make_users(client)
    rows = client.get("/api/trials/liu2015/outcomes").json()
    assert rows and all(r["status"] == "repository" for r in rows)
    before = _analysed_ids(client, "liu2015")
    for r in rows:
        d = client.delete(f"/api/trials/liu2015/outcomes/{r['id']}?version={r['version']}", headers=heads["alice"])
        assert d.status_code == 202 and d.json()["status"] == "pending deletion", d.text
    assert _analysed_ids(client, "liu2015") == before  # the analyses keep every value
    r0 = client.get(f"/api/trials/liu2015/outcomes/{rows[0]['id']}").json()
    assert r0["deletion"]["by"] == "alice" and r0["in_analyses"]
    again = client.delete(f"/api/trials/liu2015/outcomes/{r0['id']}?version={r0['version']}", headers=heads["alice"])
    assert again.status_code == 403 and "two-person" in again.json()["error"]
    boot = client.post(f"/api/trials/liu2015/outcomes/{r0['id']}/verify", json={"version": r0["version"]},
                       headers=AUTH)
    assert boot.status_code == 403 and "bootstrap" in boot.json()["error"]
    ok = client.delete(f"/api/trials/liu2015/outcomes/{r0['id']}?version={r0['version']}", headers=heads["bob"])
    assert ok.status_code == 200 and ok.json()["status"] == "deleted"
    left = _analysed_ids(client, "liu2015")
    assert r0["key"] not in left and len(left) == len(before) - 1
    r1 = client.get(f"/api/trials/liu2015/outcomes/{rows[1]['id']}").json()  # withdrawn: back as it was
    k = client.post(f"/api/trials/liu2015/outcomes/{r1['id']}/verify", json={"version": r1["version"],
                                                                               "decision": "keep"},
                    headers=heads["carol"])
    assert k.status_code == 200 and k.json()["status"] == "repository" and k.json()["deletion"] is None
    acts = [e["action"] for e in client.app.state.store.audit()]
    assert "propose deletion" in acts and "delete" in acts and "keep" in acts


def test_deleting_a_verified_adverse_event_through_the_page_is_a_proposal(client):
    heads = make_users(client)
    base = f"/api/trials/{TRIAL}/adverse-events"
    body = {"arm": "mt", "event": "Tremor", "category": "tremor", "events": 7, "n": 20, "serious": False,
            "source": "peleg2020", "location": "Table 2", "quote": "tremor (7/20)"}
    rec = client.post(base, json=body, headers=heads["alice"]).json()
    assert client.post(f"{base}/{rec['id']}/verify", json={"version": 1}, headers=heads["bob"]).status_code == 200

    def tremor():
        st = next(s for s in client.app.state.store.evidence().studies if s.id == TRIAL)
        return [a.events.value for a in st.adverse_events if a.event == "Tremor"]

    assert tremor() == [7]
    assert _login(client, "alice").status_code == 303
    r = client.post(f"/trials/{TRIAL}/adverse-events/{rec['id']}/delete",
                    data={"version": "1", "csrf_token": _csrf(client, f"/trials/{TRIAL}")}, follow_redirects=False)
    assert r.status_code == 303 and "deletion_proposed" in r.headers["location"]
    assert tremor() == [7]
    page = client.get("/review").text
    assert f'id="deletion-adverse_event-{rec["id"]}"' in page and f'id="keep-adverse_event-{rec["id"]}"' in page
    assert f'id="confirm-delete-adverse_event-{rec["id"]}"' not in page  # not for the proposer


# ----------------------------------------------------------------- the bootstrap and accounts made for the purpose
def test_bootstrap_cannot_verify_and_an_admin_cannot_verify_through_an_account_she_made(client):
    heads = make_users(client)
    assert client.post("/api/users", json={"name": "ann", "role": "admin", "password": "ann-password-55"},
                       headers=AUTH).status_code == 201
    ann = {"Authorization": "Bearer " + client.post("/api/users/ann/tokens", json={}, headers=AUTH).json()["token"]}
    base = f"/api/trials/{TRIAL}/outcomes"
    rec = client.post(base, json=OUT, headers=heads["alice"]).json()
    r = client.post(f"{base}/{rec['id']}/verify", json={"version": 1}, headers=AUTH)
    assert r.status_code == 403 and "bootstrap" in r.json()["error"]
    # ann enters a value, makes a sock account and verifies with it: refused
    mine = client.post(base, json={**OUT, "events": 9, "quote": "9 of 20"}, headers=ann).json()
    assert client.post("/api/users", json={"name": "sock", "role": "reviewer", "password": "sock-password-66"},
                       headers=ann).status_code == 201
    sock = {"Authorization": "Bearer " + client.post("/api/users/sock/tokens", json={}, headers=ann).json()["token"]}
    r = client.post(f"{base}/{mine['id']}/verify", json={"version": 1}, headers=sock)
    assert r.status_code == 403 and "created" in r.json()["error"]
    # the other way round: enter with the sock account, verify with her own
    theirs = client.post(base, json={**OUT, "events": 8, "quote": "8 of 20"}, headers=sock).json()
    r = client.post(f"{base}/{theirs['id']}/verify", json={"version": 1}, headers=ann)
    assert r.status_code == 403 and "created" in r.json()["error"]
    # unrelated people still can
    assert client.post(f"{base}/{mine['id']}/verify", json={"version": 1}, headers=heads["bob"]).status_code == 200
    assert client.post(f"{base}/{rec['id']}/verify", json={"version": 1}, headers=heads["bob"]).status_code == 200


# ----------------------------------------------------------------- individual API tokens
def test_api_tokens_are_listed_and_revocable_one_by_one(client):
    heads = make_users(client)
    second = client.post("/api/users/alice/tokens", json={"label": "laptop"}, headers=heads["alice"]).json()
    lst = client.get("/api/users/alice/tokens", headers=heads["alice"])
    assert lst.status_code == 200 and [t["label"] for t in lst.json()] == ["t", "laptop"]
    assert all(set(t) == {"id", "label", "created_at", "last_used"} for t in lst.json())
    assert second["token"] not in lst.text
    assert client.get("/api/users/alice/tokens", headers=heads["bob"]).status_code == 403  # not hers
    assert client.get("/api/users/alice/tokens", headers=AUTH).status_code == 200  # admin
    laptop = {"Authorization": f"Bearer {second['token']}"}
    r = client.delete(f"/api/users/alice/tokens/{second['id']}", headers=heads["bob"])
    assert r.status_code == 403
    r = client.delete(f"/api/users/alice/tokens/{second['id']}", headers=heads["alice"])
    assert r.status_code == 200 and r.json()["revoked"]["label"] == "laptop"
    assert client.get("/api/me", headers=laptop).status_code == 403  # that token is gone ...
    assert client.get("/api/me", headers=heads["alice"]).status_code == 200  # ... the other one works
    first = client.get("/api/users/alice/tokens", headers=AUTH).json()[0]["id"]
    assert client.delete(f"/api/users/alice/tokens/{first}", headers=AUTH).status_code == 200  # admin revokes
    assert client.get("/api/me", headers=heads["alice"]).status_code == 403
    assert client.delete("/api/users/alice/tokens/0123456789abcdef", headers=AUTH).status_code == 404
    rows = [e for e in client.app.state.store.audit() if e["action"] == "revoke api token"]
    assert [(e["user"], e["before"]["label"]) for e in rows] == [("alice", "laptop"), ("bootstrap", "t")]


# ----------------------------------------------------------------- throttling that cannot be turned against curators
@pytest.fixture()
def frozen(monkeypatch):
    import time as _time

    t0 = _time.time()
    monkeypatch.setattr(auth_mod.time, "time", lambda: t0)  # locks do not expire during the test
    return t0


def test_twenty_failures_from_an_address_do_not_lock_out_another_curator(client, frozen):
    make_users(client)
    for i in range(auth_mod.IP_POLICY[0] + 2):
        client.cookies.clear()
        _login_pw(client, f"nobody{i}", "wrong-password")
    assert _login_pw(client, "nobody0", "wrong-password").status_code == 429  # the address is locked for them
    r = _login(client, "bob")  # bob never failed from here: his right password works
    assert r.status_code == 303, r.text


def test_failures_against_alice_do_not_stop_her_token_login_which_lifts_her_lock(client, frozen):
    heads = make_users(client)
    for _ in range(auth_mod.USER_POLICY[0] + 1):
        _login_pw(client, "alice", "wrong-password")
    assert _login(client, "alice").status_code == 429  # her password waits ...
    tok = heads["alice"]["Authorization"].split()[1]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    r = client.post("/login", data={"token": tok, "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303  # ... her API token does not, and lifts the lock
    client.cookies.clear()
    assert _login(client, "alice").status_code == 303


def _login_pw(c, name, pw):
    page = c.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return c.post("/login", data={"username": name, "password": pw, "csrf_token": csrf}, follow_redirects=False)


# ----------------------------------------------------------------- idle timeout, own password
def test_sessions_end_after_thirty_idle_minutes_and_slide_with_use(client, monkeypatch):
    import time as _time

    make_users(client)
    assert _login(client, "alice").status_code == 303
    t0 = _time.time()
    clock = [t0]
    monkeypatch.setattr(auth_mod.time, "time", lambda: clock[0])
    for minutes in (20, 40, 60):  # used every 20 minutes: still logged in after an hour
        clock[0] = t0 + minutes * 60
        assert "Logged in as" in client.get("/account").text, minutes
    clock[0] = t0 + 60 * 60 + auth_mod.SESSION_IDLE_S + 1
    assert "Logged in as" not in client.get("/account", follow_redirects=True).text


def test_users_change_their_own_password(tmp_path):
    app = create_app(tmp_path / "store.db", TOKEN)
    with TestClient(app) as a, TestClient(app) as b:
        heads = make_users(a)
        assert _login(a, "alice").status_code == 303 and _login(b, "alice").status_code == 303
        r = a.post("/account/password", data={"csrf_token": _csrf(a), "current": "not-her-password",
                                              "new": "a-new-long-passphrase-8"})
        assert r.status_code == 403 and 'id="err-current"' in r.text
        r = a.post("/account/password", data={"csrf_token": _csrf(a), "current": PW["alice"], "new": "password123"})
        assert r.status_code == 400 and 'id="err-new"' in r.text
        r = a.post("/account/password", data={"csrf_token": _csrf(a), "current": PW["alice"],
                                              "new": "a-new-long-passphrase-8"})
        assert r.status_code == 200 and 'id="account-done"' in r.text
        assert "Logged in as" in a.get("/account").text  # this session stays
        assert "Logged in as" not in b.get("/account", follow_redirects=True).text  # the other one ended
        assert a.get("/api/me", headers=heads["alice"]).status_code == 403  # her tokens too
        # through the API with a new token: the token in use is kept, the others end
        t1 = a.post("/api/users/alice/tokens", json={"label": "one"}, headers=AUTH).json()["token"]
        t2 = a.post("/api/users/alice/tokens", json={"label": "two"}, headers=AUTH).json()["token"]
        h1, h2 = {"Authorization": f"Bearer {t1}"}, {"Authorization": f"Bearer {t2}"}
        r = a.post("/api/me/password", json={"current": "a-new-long-passphrase-8", "new": "yet-another-phrase-9"},
                   headers=h1)
        assert r.status_code == 200, r.text
        assert a.get("/api/me", headers=h1).status_code == 200 and a.get("/api/me", headers=h2).status_code == 403
        acts = [e["action"] for e in app.state.store.audit() if e["user"] == "alice"]
        assert "change password failed" in acts and acts.count("change password") == 2


def test_a_dispute_cannot_be_routed_around_by_deleting_or_re_entering(client):
    heads = make_users(client)
    url, rec = _disputed(client, heads)
    r = client.delete(f"{url}?version={rec['version']}", headers=heads["alice"])  # delete and start again: no
    assert r.status_code == 403 and "reviewer" in r.json()["error"]
    assert client.get(url).json()["status"] == "disputed"
    again = client.post(f"/api/trials/{TRIAL}/outcomes", json=OUT, headers=heads["alice"]).json()  # a fresh entry
    r = client.post(f"/api/trials/{TRIAL}/outcomes/{again['id']}/verify", json={"version": 1}, headers=heads["bob"])
    assert r.status_code == 403 and "disputed" in r.json()["error"]
    assert ("mt", 12, 39) not in counts(client) and ("mt", 12, 39.0) not in counts(client)
    assert client.delete(f"{url}?version={rec['version']}", headers=heads["carol"]).status_code == 200  # a reviewer


def test_audit_is_exportable_with_the_evidence(tmp_path):
    from typer.testing import CliRunner

    from lnsynth.cli import app as cli_app

    db = tmp_path / "store.db"
    with TestClient(create_app(db, TOKEN)) as c:
        heads = make_users(c)
        rec = c.post(f"/api/trials/{TRIAL}/outcomes", headers=heads["alice"],
                     json={"arm": "mt", "outcome": "complete remission", "events": 14, "n": 20, "timepoint_weeks": 39,
                           "source": "peleg2020", "location": "Table 1", "quote": "14 of 20"}).json()
        assert c.post(f"/api/trials/{TRIAL}/outcomes/{rec['id']}/verify", json={"version": 1},
                      headers=heads["carol"]).status_code == 200
    out = tmp_path / "export"
    r = CliRunner().invoke(cli_app, ["export", "--db", str(db), "--out", str(out), "--audit"])
    assert r.exit_code == 0, r.output
    import json as _json

    rows = [_json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    acts = [(x["user"], x["action"]) for x in rows]  # user: the authenticated name; actor: how it came
    assert ("alice", "create") in acts and any(a == "carol" and act.startswith("verify") for a, act in acts)
    assert (out / "studies" / f"{TRIAL}.yaml").exists()
