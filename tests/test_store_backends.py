"""The curation store's contract on both backends: the embedded SQLite file and a PostgreSQL server
(issue 22 item 6).  Every test taking ``store`` runs twice; the PostgreSQL run uses
``$LNSYNTH_TEST_PG_URL`` or a throwaway cluster (``conftest_pg``) and skips with the reason when
there is no PostgreSQL.  ``test_backends_agree`` makes the same writes on both and compares what the
analyses read and what ``export`` writes, byte for byte.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from lnsynth.evidence import load_evidence
from lnsynth.web.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Conflict,
    Forbidden,
    NotFound,
    Store,
    StoreUnavailable,
    export_store,
    import_store,
    migrate,
    open_store,
)

pytest.importorskip("argon2")  # the web extra


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def make_store(backend, request, tmp_path):
    """``make_store()`` opens (creating and seeding on first use) the test's store on the backend."""
    opened: list[Store] = []
    target = request.getfixturevalue("pg_url") if backend == "postgresql" else tmp_path / "store.sqlite"

    def make() -> Store:
        st = Store(url=target) if backend == "postgresql" else Store(target)
        opened.append(st)
        return st

    yield make
    for st in opened:
        st.close()


@pytest.fixture
def store(make_store) -> Store:
    return make_store()


def _rec(store: Store, outcome: str | None = None) -> dict:
    rows = [store.record(r) for r in store.outcome_rows()]
    return next(r for r in rows if r["events"] is not None and r["n"] and (outcome is None or r["outcome"] == outcome))


def _vals(rec: dict, **kw) -> dict:
    vals = {f: rec[f] for f in ("arm", "outcome", "events", "n", "timepoint_weeks", "source", "location", "quote")}
    vals.update(kw)
    return vals


def _users(store: Store) -> None:
    for name, role in (("alice", "curator"), ("bob", "curator"), ("rita", "reviewer")):
        store.add_user(name, role, None, "cli")


# ------------------------------------------------------------------------------------- opening
def test_open_seeds_and_migrates_once(make_store, backend):
    st = make_store()
    versions = [r[0] for r in st._conn().execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == [m[0] for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
    assert st.meta("schema") == str(SCHEMA_VERSION) and st.generation() == 0
    ev, pkg = st.evidence(), load_evidence()
    assert [s.id for s in ev.studies] == [s.id for s in pkg.studies]
    assert ev.studies == pkg.studies  # the seed reads back as the package's own models
    assert st.verification_counts()["pending"] == 0
    again = make_store()  # a second open neither re-seeds nor re-migrates
    assert sum(1 for a in again.audit() if a["action"] == "seed") == 1
    assert [r[0] for r in again._conn().execute("SELECT COUNT(*) FROM schema_version")] == [SCHEMA_VERSION]
    assert again.database.startswith("postgresql://" if backend == "postgresql" else "/")


def test_migrates_an_old_store_and_refuses_a_newer_one(make_store):
    st = make_store()
    be = st.backend
    with st._tx() as tx:  # back to a store of version 1: drop what steps 2.. added
        tx.execute("DELETE FROM schema_version WHERE version > 1")
        if be.name == "postgresql":
            tx.execute('ALTER TABLE audit DROP COLUMN "user"')
            tx.execute("ALTER TABLE sessions DROP COLUMN last_seen")
    if be.name == "sqlite":
        st._conn().execute("ALTER TABLE sessions DROP COLUMN last_seen")
    st.close()
    st2 = make_store()
    assert [r[0] for r in st2._conn().execute("SELECT version FROM schema_version ORDER BY version")] == list(
        range(1, SCHEMA_VERSION + 1))
    assert "last_seen" in be.columns(st2._conn(), "sessions") and "user" in be.columns(st2._conn(), "audit")
    st2.add_user("alice", "curator", None, "cli")
    st2.create_session("h" * 64, "alice", "csrf", 60.0, "127.0.0.1")
    assert st2.session("h" * 64)["user"] == "alice"
    with st2._tx() as tx:
        assert migrate(tx, be) == []  # nothing left to apply
        tx.execute("INSERT INTO schema_version(version, description, applied_at) VALUES (?, 'future', 'now')",
                   (SCHEMA_VERSION + 1,))
    st2.close()
    with pytest.raises(StoreUnavailable, match="newer than this lnsynth"):
        make_store()


# ----------------------------------------------------------------------------- two-person rule
def test_create_update_verify_dispute_resolve(store):
    _users(store)
    base = _rec(store)
    tid = base["trial_id"]
    new = store.create_record("outcome", tid, _vals(base, events=base["events"] + 1), "api", user="alice")
    assert new["status"] == "pending" and new["key"] == f"web_{new['id']}" and not new["in_analyses"]
    gen = store.generation()
    with pytest.raises(Forbidden, match="two-person rule"):
        store.verify_record("outcome", tid, new["id"], new["version"], "alice", "api")
    ok = store.verify_record("outcome", tid, new["id"], new["version"], "bob", "api")
    assert ok["status"] == "verified" and ok["verified_by"] == "bob" and store.generation() == gen + 1
    keys = [o.id for o in store.evidence().study(tid).outcomes]
    assert new["key"] in keys
    # a change of an approved value: pending, the analyses keep the approved value
    ch = store.update_record("outcome", tid, ok["id"], ok["version"], _vals(ok, events=ok["events"] + 1), "api",
                             user="alice")
    assert ch["status"] == "pending" and ch["approved"]["values"]["events"] == ok["events"] and ch["in_analyses"]
    with pytest.raises(Conflict):
        store.update_record("outcome", tid, ok["id"], ok["version"], _vals(ok), "api", user="alice")
    # bob reads the source differently: disputed, both readings in the review queue
    dis = store.verify_record("outcome", tid, ch["id"], ch["version"], "bob", "api",
                              proposed=_vals(ch, events=ch["events"] - 2), note="table 2 says otherwise")
    assert dis["status"] == "disputed"
    item = next(i for i in store.review_queue() if i["record"]["id"] == ch["id"])
    (rv,) = item["reviews"]
    assert rv["decision"] == "dispute" and rv["proposed"]["events"] == ch["events"] - 2
    assert store.verification_counts()["disputed"] == 1
    with pytest.raises(Forbidden, match="reviewer"):
        store.adopt_review("outcome", tid, ch["id"], dis["version"], rv["id"], "alice", "api")
    done = store.adopt_review("outcome", tid, ch["id"], dis["version"], rv["id"], "rita", "api")
    assert (done["status"], done["events"], done["entered_by"], done["verified_by"]) == (
        "verified", ch["events"] - 2, "bob", "rita")
    assert store.reviews_of("outcome", ch["id"]) == []
    assert [a["action"] for a in store.audit(limit=5)][-4:] == ["verify", "update", "dispute", "resolve"]
    # adverse events follow the same rule
    ae = store.adverse_event_rows()[0]
    vals = {f: ae[f] for f in ("arm", "event", "category", "events", "n", "serious", "source", "location", "quote")}
    made = store.create_record("adverse_event", ae["trial_id"], vals, "api", user="alice")
    assert made["key"] == f"web_ae_{made['id']}" and made["serious"] in (None, True, False)
    assert store.verify_record("adverse_event", ae["trial_id"], made["id"], 1, "bob", "api")["status"] == "verified"


def test_pending_deletion_and_keep(store):
    _users(store)
    a, b = [store.record(r) for r in store.outcome_rows()][:2]
    prop = store.delete_record("outcome", a["trial_id"], a["id"], a["version"], "api", user="alice")
    assert prop["delete"] == "pending deletion" and prop["deletion"]["by"] == "alice"
    assert a["key"] in [o.id for o in store.evidence().study(a["trial_id"]).outcomes]  # still analysed
    with pytest.raises(Forbidden):
        store.delete_record("outcome", a["trial_id"], a["id"], prop["version"], "api", user="alice")
    gone = store.delete_record("outcome", a["trial_id"], a["id"], prop["version"], "api", user="bob")
    assert gone["delete"] == "deleted"
    with pytest.raises(NotFound):
        store.outcome(a["trial_id"], a["id"])
    assert a["key"] not in [o.id for o in store.evidence().study(a["trial_id"]).outcomes]
    prop = store.delete_record("outcome", b["trial_id"], b["id"], b["version"], "api", user="alice")
    kept = store.keep_record("outcome", b["trial_id"], b["id"], prop["version"], "bob", "api")
    assert kept["status"] == b["status"] and kept["deletion"] is None and kept["events"] == b["events"]


def test_trials_pending_until_verified(store):
    _users(store)
    doc = {k: v for k, v in store.study_doc(store.trial_ids()[0]).items() if k != "status"}
    doc["id"] = "copytrial2099"
    made = store.create_trial(doc, "api", "alice")
    assert made["status"] == "pending" and "copytrial2099" not in [s.id for s in store.evidence().studies]
    with pytest.raises(Conflict):
        store.create_trial(doc, "api", "alice")
    with pytest.raises(Forbidden):
        store.verify_trial("copytrial2099", "alice", "api")
    assert store.verify_trial("copytrial2099", "bob", "api")["status"] == "verified"
    assert store.trial_ids()[-1] == "copytrial2099" and "copytrial2099" in [s.id for s in store.evidence().studies]


def test_concurrent_writers_queue_and_never_lose_an_update(store):
    _users(store)
    rec = _rec(store)
    results: list[str] = []

    def write(i: int) -> None:
        try:
            store.update_record("outcome", rec["trial_id"], rec["id"], rec["version"],
                                _vals(rec, quote=f"writer {i}"), "api", user="alice")
            results.append("ok")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 5 + ["ok"]  # optimistic concurrency: exactly one wins
    assert store.outcome(rec["trial_id"], rec["id"])["version"] == rec["version"] + 1


# ----------------------------------------------------------------------------------- accounts
def test_users_tokens_sessions_and_throttle(store):
    u = store.add_user("zed", "curator", "hash-1", "cli")
    assert (u["name"], u["role"], u["active"], u["created_by"]) == ("zed", "curator", 1, "cli")
    with pytest.raises(Conflict):
        store.add_user("zed", "viewer", None, "cli")
    store.add_user("Adam", "viewer", None, "zed")
    store.ensure_user("bootstrap", "admin")
    store.ensure_user("bootstrap", "viewer")  # no change when present
    assert [x["name"] for x in store.users()] == ["Adam", "bootstrap", "zed"]  # byte order, as SQLite sorts
    assert store.user("bootstrap")["role"] == "admin" and store.password_hash("zed") == "hash-1"
    store.add_api_token("zed", "a" * 64, "laptop", "zed")
    store.add_api_token("zed", "b" * 64, "ci", "zed")
    assert store.user_for_token("a" * 64) == {"name": "zed", "role": "curator"}
    assert [t["id"] for t in store.api_tokens_of("zed")] == sorted(["a" * 16, "b" * 16])
    assert store.revoke_api_token("zed", "b" * 16, "zed")["label"] == "ci"
    with pytest.raises(NotFound):
        store.revoke_api_token("zed", "b" * 16, "zed")
    store.create_session("s1", "zed", "csrf1", 3600.0, "10.0.0.1")
    store.create_session("s2", "zed", "csrf2", 3600.0, "10.0.0.2")
    s = store.session("s1")
    assert (s["user"], s["csrf"], s["role"]) == ("zed", "csrf1", "curator")
    assert s["expires_at"] - s["last_seen"] == pytest.approx(3600.0, abs=1e-3)  # 8-byte floats
    store.touch_session("s1", s["last_seen"] - 100.0)
    assert store.session("s1", idle_s=50.0) is None and store.session("s1", idle_s=500.0) is not None
    assert store.delete_session("s1") and not store.delete_session("s1")
    store.update_user("zed", "cli", password_hash="hash-2", keep_token="a" * 64)
    assert store.session("s2") is None and store.user_for_token("a" * 64) is not None
    store.update_user("zed", "cli", active=False)
    assert store.user_for_token("a" * 64) is None and store.password_hash("zed") is None
    with pytest.raises(NotFound):
        store.update_user("nobody", "cli", role="viewer")
    # throttling: exponential locks past the free failures, cleared per account
    t = 1_000_000.0
    locks = [store.login_failed("user", "zed", t + i, 3, 1.0, 60.0, 900.0) for i in range(5)]
    assert locks == [0.0, 0.0, 1.0, 2.0, 4.0]
    store.login_failed("pair", "zed|10.0.0.1", t, 1, 1.0, 60.0, 900.0)
    assert store.login_locked([("user", "zed")], t + 4) == pytest.approx(4.0)
    assert store.login_failures("user", "zed", t + 5, 900.0) == 5
    store.login_clear_account("zed")
    assert store.login_locked([("user", "zed"), ("pair", "zed|10.0.0.1")], t + 4) == 0.0
    store.audit_event("zed", "login failed", {"ip": "10.0.0.1"})
    last = store.audit(limit=1)[0]
    assert (last["action"], last["user"], last["after"]) == ("login failed", "zed", {"ip": "10.0.0.1"})


# ------------------------------------------------------------------------------ living evidence
def test_screening_queue_and_answer_snapshots(store):
    recs = [{"number": 1, "pmid": "123", "title": "A trial", "year": 2025, "has_results": True, "kind": "trial"},
            {"number": 2, "doi": "10.1/x", "title": "Another", "abstract": "50% fewer flares"}]
    ids = store.queue_screening(recs, "in.ris", "ris")
    assert len(ids) == 2 and ids[1] > ids[0]
    rows = store.screening_records()
    assert [(r["id"], r["title"], r["has_results"], r["status"]) for r in rows] == [
        (ids[0], "A trial", 1, "awaiting title/abstract screening"), (ids[1], "Another", None,
                                                                      "awaiting title/abstract screening")]
    assert rows[1]["abstract"] == "50% fewer flares" and store.audit(limit=1)[0]["action"] == "records import"
    assert store.latest_answer_snapshot() is None
    row = {"question": "q1", "outcome": "cr", "k": 3, "estimate": 1.5}
    assert store.save_answer_snapshot("snap-a", [row, {**row, "outcome": "pr"}]) == 1
    assert store.save_answer_snapshot("snap-b", [{**row, "k": 4}]) == 2
    last = store.latest_answer_snapshot()
    assert (last["run"], last["snapshot"], last["rows"]) == (2, "snap-b", [{**row, "k": 4}])


# ------------------------------------------------------------------------------ export / import
def test_export_import_round_trip(make_store, tmp_path):
    st = make_store()
    _users(st)
    base = _rec(st)
    new = st.create_record("outcome", base["trial_id"], _vals(base, source="A typed source 2025"), "api",
                           user="alice")
    st.verify_record("outcome", base["trial_id"], new["id"], new["version"], "bob", "api")
    out = export_store(st, tmp_path / "e1")
    assert (out / "sources.yaml").exists() and len(list((out / "studies").glob("*.yaml"))) == len(st.trial_ids())
    import_store(st, out)  # the typed source now goes by its registered slug ...
    out = export_store(st, tmp_path / "e1b")
    assert import_store(st, out)["replaced"] == []  # ... and an export of the same store changes nothing
    text = (out / "studies" / f"{base['trial_id']}.yaml").read_text()
    (out / "studies" / f"{base['trial_id']}.yaml").write_text(text.replace(f"id: {new['key']}", "id: web_999"))
    res = import_store(st, out)
    assert res["replaced"] == [base["trial_id"]]
    made = st.create_record("outcome", base["trial_id"], _vals(base), "api", user="alice")
    assert made["id"] > 999  # new keys web_<id> never meet imported ones
    export_store(st, tmp_path / "e2")
    again = export_store(st, tmp_path / "e3")
    assert _tree(tmp_path / "e2") == _tree(again)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.yaml"))}


def test_backends_agree(pg_url, tmp_path):
    """The same writes on SQLite and PostgreSQL give the same records, evidence and export bytes."""
    stores = {"sqlite": Store(tmp_path / "s.sqlite"), "postgresql": Store(url=pg_url)}
    try:
        seen = {}
        for name, st in stores.items():
            _users(st)
            base = _rec(st, "complete remission")
            a = st.create_record("outcome", base["trial_id"], _vals(base, timepoint_weeks=30.5, quote="q <1>"),
                                 "api", user="alice")
            st.verify_record("outcome", a["trial_id"], a["id"], 1, "bob", "api")
            ch = st.update_record("outcome", base["trial_id"], base["id"], base["version"],
                                  _vals(base, events=base["events"] - 1), "api", user="alice")
            st.verify_record("outcome", ch["trial_id"], ch["id"], ch["version"], "bob", "api")
            now_a = st.outcome(a["trial_id"], a["id"])
            st.delete_record("outcome", a["trial_id"], a["id"], now_a["version"], "api", user="alice")
            drop = {"created_at", "updated_at", "verified_at", "deletion"}
            recs = [{k: v for k, v in st.record(r).items() if k not in drop} for r in st.outcome_rows()]
            seen[name] = (recs, st.evidence().studies, st.verification_counts(), _tree(export_store(
                st, tmp_path / name)), [(x["action"], x["user"]) for x in st.audit()])
        assert seen["sqlite"][0] == seen["postgresql"][0]
        assert seen["sqlite"][1] == seen["postgresql"][1]
        assert seen["sqlite"][2:] == seen["postgresql"][2:]
    finally:
        for st in stores.values():
            st.close()


# ------------------------------------------------------------------------------ selection by URL
def test_open_store_follows_the_database_url(pg_url, tmp_path, monkeypatch):
    monkeypatch.delenv("LNSYNTH_DATABASE_URL", raising=False)
    st = open_store(tmp_path / "a.sqlite")
    assert st.backend.name == "sqlite" and (tmp_path / "a.sqlite").exists()
    st.close()
    monkeypatch.setenv("LNSYNTH_DATABASE_URL", pg_url)
    st = open_store(tmp_path / "unused.sqlite")
    assert st.backend.name == "postgresql" and not (tmp_path / "unused.sqlite").exists()
    assert "password" not in st.database
    st.close()
    monkeypatch.setenv("LNSYNTH_DATABASE_URL", f"sqlite:///{tmp_path / 'b.sqlite'}")
    open_store(None).close()
    assert (tmp_path / "b.sqlite").exists()
    monkeypatch.setenv("LNSYNTH_DATABASE_URL", "mysql://x@y/z")
    with pytest.raises(StoreUnavailable, match="unsupported database"):
        open_store(tmp_path / "c.sqlite")
    with pytest.raises(StoreUnavailable, match="cannot connect"):
        Store(url="postgresql://nobody:secret@127.0.0.1:1/none")
    try:
        Store(url="postgresql://nobody:secret@127.0.0.1:1/none")
    except StoreUnavailable as exc:
        assert "secret" not in str(exc)


def test_cli_commands_use_the_server_database(pg_url, tmp_path, monkeypatch):
    """`records import`, `export`, `import` and `users` reach PostgreSQL through LNSYNTH_DATABASE_URL."""
    from typer.testing import CliRunner

    from lnsynth.cli import app

    runner = CliRunner()
    env = {"LNSYNTH_DATABASE_URL": pg_url, "LNSYNTH_PASSWORD": "a long enough passphrase 1"}
    records = Path(__file__).parent / "data" / "records" / "records.ris"
    res = runner.invoke(app, ["records", "import", str(records), "--format", "json"], env=env)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["new"] >= 1 and not (tmp_path / "lnsynth.sqlite").exists()
    res = runner.invoke(app, ["users", "add", "carol", "--role", "curator"], env=env)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["export", "--out", str(tmp_path / "exp")], env=env)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["import", str(tmp_path / "exp")], env=env)
    assert res.exit_code == 0 and "0 replaced" in res.stdout, res.output
    st = Store(url=pg_url)
    try:
        assert len(st.screening_records()) == out["new"] and st.user("carol")["role"] == "curator"
    finally:
        st.close()
    bad = runner.invoke(app, ["records", "import", str(records)],
                        env={"LNSYNTH_DATABASE_URL": "postgresql://nobody:secret@127.0.0.1:1/none"})
    assert bad.exit_code == 2 and "cannot connect" in bad.stderr and "secret" not in bad.stderr


def test_web_app_serves_from_the_server_database(pg_url, tmp_path, monkeypatch):
    """`lnsynth serve` with LNSYNTH_DATABASE_URL: the app's store is PostgreSQL; curation and analysis work."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from lnsynth.web import create_app

    token = "test-token-7f3a-pg"
    auth = {"Authorization": f"Bearer {token}"}
    monkeypatch.setenv("LNSYNTH_DATABASE_URL", pg_url)
    with TestClient(create_app(tmp_path / "unused.sqlite", token)) as c:
        st = c.app.state.store
        assert st.backend.name == "postgresql" and not (tmp_path / "unused.sqlite").exists()
        body = {"arm": "mt", "outcome": "complete remission", "events": 7, "n": 20, "timepoint_weeks": 26,
                "source": "peleg2020", "location": "Table 1", "quote": "7 of 20 in complete remission"}
        rec = c.post("/api/trials/bao2008/outcomes", json=body, headers=auth)
        assert rec.status_code == 201, rec.text
        rec = rec.json()
        st.add_user("rev", "reviewer", None, "cli")
        tok = c.post("/api/users/rev/tokens", json={}, headers=auth).json()["token"]
        r = c.post(f"/api/trials/bao2008/outcomes/{rec['id']}/verify", json={"version": rec["version"]},
                   headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 200 and r.json()["status"] == "verified", r.text
        assert c.get("/api/trials/bao2008/outcomes").json()[-1]["status"] == "verified"
        page = c.get("/analysis?outcome=complete+remission&treatment=CNI%2BMMF&control=IVCYC&measure=RR&method=FE"
                     "&timepoint=latest")
        assert page.status_code == 200 and "13 / 20" in page.text  # Bao 2008, read from PostgreSQL
        assert [e["action"] for e in c.get("/api/audit", headers=auth).json()][-2:] == ["add api token", "verify"]
