"""Web app against an insider (issue 26): findings that the two-person rule and the throttle must hold.

Each test failed on the code before its fix:
- a second curator's edit of *another field* made her the entrant, so the first curator could then
  verify her own count (the store kept only the last editor);
- uvicorn trusted ``X-Forwarded-For`` from 127.0.0.1, so every guess could claim a new address.
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
