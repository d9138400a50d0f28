"""One record router for outcomes and adverse events (issue 25, item 4): the same API contract for both
kinds, module-level routers, and the 503 "store busy" answer for SQLite's and PostgreSQL's lock timeouts."""

from __future__ import annotations

import sqlite3

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("argon2")
from fastapi.routing import APIRoute  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import lnsynth.web.auth as auth_mod  # noqa: E402
from lnsynth.web import create_app  # noqa: E402
from lnsynth.web.app import busy_errors  # noqa: E402

TOKEN = "records-router-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TRIAL = "bao2008"
KINDS = ["outcomes", "adverse-events"]


@pytest.fixture(autouse=True)
def fast_argon2(monkeypatch):
    from argon2 import PasswordHasher

    monkeypatch.setattr(auth_mod, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(auth_mod, "_DUMMY", [])


@pytest.fixture()
def client(tmp_path):
    with TestClient(create_app(tmp_path / "store.db", TOKEN), raise_server_exceptions=False) as c:
        yield c


def _routes(routes):
    for r in routes:
        inner = getattr(r, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes)
        elif isinstance(r, APIRoute):
            yield r


def _users(client) -> dict[str, dict]:
    heads = {}
    for name in ("alice", "bob"):
        assert (
            client.post(
                "/api/users", json={"name": name, "role": "curator", "password": f"{name}-password-12"}, headers=AUTH
            ).status_code
            == 201
        )
        tok = client.post(f"/api/users/{name}/tokens", json={"label": "t"}, headers=AUTH).json()["token"]
        heads[name] = {"Authorization": f"Bearer {tok}"}
    return heads


def test_both_kinds_come_from_the_one_record_router(client):
    mods = {(tuple(sorted(r.methods)), r.path): r.endpoint.__module__ for r in _routes(client.app.routes)}
    for kind in KINDS:
        for method, path in [
            ("GET", f"/api/trials/{{trial_id}}/{kind}"),
            ("POST", f"/api/trials/{{trial_id}}/{kind}"),
            ("GET", f"/api/trials/{{trial_id}}/{kind}/{{rid}}"),
            ("PUT", f"/api/trials/{{trial_id}}/{kind}/{{rid}}"),
            ("DELETE", f"/api/trials/{{trial_id}}/{kind}/{{rid}}"),
        ]:
            assert mods[((method,), path)] == "lnsynth.web.routers.records", (method, path)
    assert mods[(("POST",), "/api/users")] == "lnsynth.web.routers.accounts"
    assert mods[(("GET",), "/trials/{trial_id}")] == "lnsynth.web.routers.trials"


@pytest.mark.parametrize("kind", KINDS)
def test_delete_contract_is_the_same_for_both_kinds(client, kind):
    heads = _users(client)
    rec = client.get(f"/api/trials/{TRIAL}/{kind}").json()[0]
    assert rec["status"] == "repository"
    url = f"/api/trials/{TRIAL}/{kind}/{rec['id']}"
    missing = client.delete(url, headers=heads["alice"])
    assert missing.status_code == 422 and missing.json()["fields"] == ["version"]
    assert "JSON body" in missing.json()["error"]
    assert client.delete(url + "?version=99", headers=heads["alice"]).status_code == 409
    assert client.delete(f"/api/trials/{TRIAL}/{kind}/%C2%B2?version=1", headers=heads["alice"]).status_code == 404
    # a value in the analyses: the first DELETE is a proposal (202), the proposer cannot confirm it (403)
    first = client.delete(url + f"?version={rec['version']}", headers=heads["alice"])
    assert first.status_code == 202, first.text
    body = first.json()
    assert set(body) == {"deleted", "status", "version", "record", "note"}
    assert body["deleted"] is None and body["status"] == "pending deletion"
    again = client.request("DELETE", url, json={"version": body["version"]}, headers=heads["alice"])
    assert again.status_code == 403 and "two-person" in again.json()["error"]
    # a second curator confirms, the version in a JSON body (both kinds accept it)
    ok = client.request("DELETE", url, json={"version": body["version"]}, headers=heads["bob"])
    assert ok.status_code == 200, ok.text
    assert ok.json()["deleted"] == rec["id"] and ok.json()["status"] == "deleted"
    assert client.get(url).status_code == 404


def test_store_busy_is_503_for_sqlite_and_postgresql_lock_timeouts(client, monkeypatch):
    kinds = busy_errors()
    assert sqlite3.OperationalError in kinds
    errors = [sqlite3.OperationalError("database is locked")]
    try:
        from psycopg import errors as pg
    except ImportError:  # pragma: no cover - psycopg is optional (the "postgres" extra)
        pg = None
    if pg is not None:
        assert pg.LockNotAvailable in kinds and pg.QueryCanceled in kinds
        errors += [
            pg.LockNotAvailable("canceling statement due to lock timeout"),
            pg.QueryCanceled("canceling statement due to statement timeout"),
        ]
    store = client.app.state.store
    for exc in errors:

        def locked(*a, _e=exc, **k):
            raise _e

        monkeypatch.setattr(store, "outcomes", locked)
        r = client.get(f"/api/trials/{TRIAL}/outcomes")
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", (type(exc), r.status_code)
        assert r.json()["detail"].startswith("store busy")
